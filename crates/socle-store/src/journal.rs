//! Storage of the journal (the Merkle log): queue, entries, tree nodes, checkpoints.
//!
//! The hashing and signing happen in `socle-journal`; this module only moves bytes,
//! in transactions: an acknowledged append is a committed queue row; integrating a
//! batch into the log (entries, nodes, queue rows removed, size advanced) is one
//! transaction guarded by the expected size, so two sequencers can never both extend
//! the log from the same point.

use sqlx::Row;

use crate::error::StoreError;
use crate::{Backend, Result, Store, on_pool};

pub type NodeHash = [u8; 32];

/// A leaf waiting in the queue to be given an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedLeaf {
    pub seq: i64,
    pub leaf: Vec<u8>,
    pub subject: Option<String>,
}

/// A leaf given its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub subject: Option<String>,
}

/// A stored entry with its stored leaf hash (the level-0 node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Option<NodeHash>,
}

/// A signed checkpoint as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: NodeHash,
    pub note: String,
    pub created_at: String,
}

/// The journal's persistent state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalState {
    pub origin: String,
    pub size: u64,
}

/// Rows per multi-row statement; batches are split into power-of-two chunks so only a
/// handful of distinct statements exist (and are cached as prepared statements).
const CHUNK: usize = 64;

fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= CHUNK {
            CHUNK
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

fn values(rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            s.push('$');
            s.push_str(&(r * cols + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Database(format!("{v} does not fit the store")))
}

fn to_u64(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Database(format!("negative value {v} in the journal")))
}

fn to_hash(v: Vec<u8>) -> Result<NodeHash> {
    v.try_into()
        .map_err(|_| StoreError::Database("a stored hash is not 32 bytes".into()))
}

/// Contiguous runs of sorted sequence numbers, as inclusive ranges.
fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => out.push((s, s)),
        }
    }
    out
}

/// The journal's tables.
pub trait JournalStore {
    /// Returns the secret named `name`, storing `fresh` first if there is none yet
    /// (the first node to start wins; every node then reads the same value).
    fn journal_secret(
        &self,
        name: &str,
        fresh: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// Returns the journal state, creating it with `origin` on first use.
    fn journal_state(&self, origin: &str) -> impl Future<Output = Result<JournalState>> + Send;
    /// Reads a secret without creating it.
    fn journal_read_secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Reads the journal state without creating it.
    fn journal_read_state(&self) -> impl Future<Output = Result<Option<JournalState>>> + Send;
    /// Durably queues leaves; returns once committed.
    fn journal_enqueue(
        &self,
        leaves: &[(Vec<u8>, Option<String>)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The oldest queued leaves, at most `limit`.
    fn journal_queued(&self, limit: usize) -> impl Future<Output = Result<Vec<QueuedLeaf>>> + Send;
    /// In one transaction: checks the log has `from_size` entries, adds `entries` and
    /// `nodes`, removes the queue rows `seqs`, and sets the size. Fails with
    /// [`StoreError::Conflict`] if another sequencer moved the log.
    fn journal_integrate(
        &self,
        from_size: u64,
        entries: &[NewEntry],
        nodes: &[(u8, u64, NodeHash)],
        seqs: &[i64],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The stored hashes of the given nodes (missing ones are left out).
    fn journal_nodes(
        &self,
        ids: &[(u8, u64)],
    ) -> impl Future<Output = Result<Vec<((u8, u64), NodeHash)>>> + Send;
    /// Entries with index in `[start, end)`, in order.
    fn journal_entries(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<StoredEntry>>> + Send;
    /// Records a signed checkpoint.
    fn journal_add_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The checkpoint of the largest size.
    fn journal_latest_checkpoint(
        &self,
    ) -> impl Future<Output = Result<Option<StoredCheckpoint>>> + Send;
    /// Checkpoints with size > `after`, by increasing size, at most `limit`.
    fn journal_checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredCheckpoint>>> + Send;
    /// Indices of the entries of `subject` below `before`, newest first, at most `limit`.
    fn journal_subject_indices(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u64>>> + Send;
}

impl JournalStore for Store {
    async fn journal_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        let now = crate::open::now_rfc3339();
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO journal_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(fresh)
                .bind(&now)
                .execute(pool)
                .await
                .map_err(StoreError::from_runtime)?;
            let row: (Vec<u8>,) =
                sqlx::query_as("SELECT value FROM journal_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::from_runtime)?;
            Ok(row.0)
        })
    }

    async fn journal_state(&self, origin: &str) -> Result<JournalState> {
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO journal_state (id, origin, size) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING")
                .bind(origin)
                .execute(pool)
                .await
                .map_err(StoreError::from_runtime)?;
            let (origin, size): (String, i64) =
                sqlx::query_as("SELECT origin, size FROM journal_state WHERE id = 1")
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::from_runtime)?;
            Ok(JournalState {
                origin,
                size: to_u64(size)?,
            })
        })
    }

    async fn journal_read_secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT value FROM journal_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        Ok(row.map(|r| r.0))
    }

    async fn journal_read_state(&self) -> Result<Option<JournalState>> {
        let row: Option<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT origin, size FROM journal_state WHERE id = 1")
                .fetch_optional(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        row.map(|(origin, size)| {
            Ok(JournalState {
                origin,
                size: to_u64(size)?,
            })
        })
        .transpose()
    }

    async fn journal_enqueue(&self, leaves: &[(Vec<u8>, Option<String>)]) -> Result<()> {
        if leaves.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(StoreError::from_runtime)?;
            for chunk in chunks(leaves) {
                let sql = format!(
                    "INSERT INTO journal_queue (leaf, subject) VALUES {}",
                    values(chunk.len(), 2)
                );
                let mut q = sqlx::query(&sql);
                for (leaf, subject) in chunk {
                    q = q.bind(leaf.as_slice()).bind(subject.as_deref());
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_runtime)?;
            }
            tx.commit().await.map_err(StoreError::from_runtime)
        })
    }

    async fn journal_queued(&self, limit: usize) -> Result<Vec<QueuedLeaf>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = on_pool!(self, |pool| {
            sqlx::query("SELECT seq, leaf, subject FROM journal_queue ORDER BY seq LIMIT $1")
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
                .into_iter()
                .map(|r| QueuedLeaf {
                    seq: r.get(0),
                    leaf: r.get(1),
                    subject: r.get(2),
                })
                .collect::<Vec<_>>()
        });
        Ok(rows)
    }

    async fn journal_integrate(
        &self,
        from_size: u64,
        entries: &[NewEntry],
        nodes: &[(u8, u64, NodeHash)],
        seqs: &[i64],
    ) -> Result<()> {
        let from = to_i64(from_size)?;
        let to = to_i64(from_size + entries.len() as u64)?;
        let entries: Vec<(i64, &[u8], Option<&str>)> = entries
            .iter()
            .map(|e| Ok((to_i64(e.index)?, e.leaf.as_slice(), e.subject.as_deref())))
            .collect::<Result<_>>()?;
        let nodes: Vec<(i32, i64, &[u8])> = nodes
            .iter()
            .map(|(l, i, h)| Ok((i32::from(*l), to_i64(*i)?, h.as_slice())))
            .collect::<Result<_>>()?;
        let ranges = runs(seqs);
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(StoreError::from_runtime)?;
            // A write first: on SQLite it takes the write lock before anything is read.
            let moved =
                sqlx::query("UPDATE journal_state SET size = $1 WHERE id = 1 AND size = $2")
                    .bind(to)
                    .bind(from)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_runtime)?
                    .rows_affected();
            if moved != 1 {
                return Err(StoreError::Conflict(format!(
                    "the journal is no longer at size {from_size}: another sequencer extended it"
                )));
            }
            for chunk in chunks(&entries) {
                let sql = format!(
                    "INSERT INTO journal_entries (idx, leaf, subject) VALUES {}",
                    values(chunk.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for (idx, leaf, subject) in chunk {
                    q = q.bind(*idx).bind(*leaf).bind(*subject);
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_runtime)?;
            }
            for chunk in chunks(&nodes) {
                let sql = format!(
                    "INSERT INTO journal_nodes (level, idx, hash) VALUES {}",
                    values(chunk.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for (level, idx, hash) in chunk {
                    q = q.bind(*level).bind(*idx).bind(*hash);
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_runtime)?;
            }
            for (lo, hi) in &ranges {
                sqlx::query("DELETE FROM journal_queue WHERE seq >= $1 AND seq <= $2")
                    .bind(*lo)
                    .bind(*hi)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_runtime)?;
            }
            tx.commit().await.map_err(StoreError::from_runtime)
        })
    }

    async fn journal_nodes(&self, ids: &[(u8, u64)]) -> Result<Vec<((u8, u64), NodeHash)>> {
        let mut out = Vec::with_capacity(ids.len());
        let ids: Vec<(i32, i64)> = ids
            .iter()
            .map(|(l, i)| Ok((i32::from(*l), to_i64(*i)?)))
            .collect::<Result<_>>()?;
        for chunk in chunks(&ids) {
            let sql = format!(
                "SELECT level, idx, hash FROM journal_nodes WHERE (level, idx) IN (VALUES {})",
                values(chunk.len(), 2)
            );
            let rows = on_pool!(self, |pool| {
                let mut q = sqlx::query(&sql);
                for (level, idx) in chunk {
                    q = q.bind(*level).bind(*idx);
                }
                q.fetch_all(pool)
                    .await
                    .map_err(StoreError::from_runtime)?
                    .into_iter()
                    .map(|r| {
                        (
                            r.get::<i32, _>(0),
                            r.get::<i64, _>(1),
                            r.get::<Vec<u8>, _>(2),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            for (level, idx, hash) in rows {
                let level = u8::try_from(level)
                    .map_err(|_| StoreError::Database("bad node level".into()))?;
                out.push(((level, to_u64(idx)?), to_hash(hash)?));
            }
        }
        Ok(out)
    }

    async fn journal_entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>> {
        let (start, end) = (to_i64(start)?, to_i64(end)?);
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT e.idx, e.leaf, n.hash FROM journal_entries e \
                 LEFT JOIN journal_nodes n ON n.level = 0 AND n.idx = e.idx \
                 WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx",
            )
            .bind(start)
            .bind(end)
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_runtime)?
            .into_iter()
            .map(|r| {
                (
                    r.get::<i64, _>(0),
                    r.get::<Vec<u8>, _>(1),
                    r.get::<Option<Vec<u8>>, _>(2),
                )
            })
            .collect::<Vec<_>>()
        });
        rows.into_iter()
            .map(|(idx, leaf, hash)| {
                Ok(StoredEntry {
                    index: to_u64(idx)?,
                    leaf,
                    leaf_hash: hash.map(to_hash).transpose()?,
                })
            })
            .collect()
    }

    async fn journal_add_checkpoint(&self, cp: &StoredCheckpoint) -> Result<()> {
        let size = to_i64(cp.size)?;
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO journal_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING")
                .bind(size)
                .bind(cp.root.as_slice())
                .bind(&cp.note)
                .bind(&cp.created_at)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    }

    async fn journal_latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        Ok(self
            .journal_checkpoints_query(None, 1)
            .await?
            .into_iter()
            .next())
    }

    async fn journal_checkpoints(&self, after: u64, limit: usize) -> Result<Vec<StoredCheckpoint>> {
        self.journal_checkpoints_query(Some(after), limit).await
    }

    async fn journal_subject_indices(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>> {
        let before = to_i64(before.min(i64::MAX as u64))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT idx FROM journal_entries WHERE subject = $1 AND idx < $2 ORDER BY idx DESC LIMIT $3")
                .bind(subject)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        rows.into_iter().map(|(i,)| to_u64(i)).collect()
    }
}

impl Store {
    async fn journal_checkpoints_query(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = on_pool!(self, |pool| {
            let q = match after {
                None => sqlx::query("SELECT size, root, note, created_at FROM journal_checkpoints ORDER BY size DESC LIMIT $1").bind(limit),
                Some(after) => sqlx::query("SELECT size, root, note, created_at FROM journal_checkpoints WHERE size > $1 ORDER BY size LIMIT $2")
                    .bind(to_i64(after)?)
                    .bind(limit),
            };
            q.fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
                .into_iter()
                .map(|r| {
                    (
                        r.get::<i64, _>(0),
                        r.get::<Vec<u8>, _>(1),
                        r.get::<String, _>(2),
                        r.get::<String, _>(3),
                    )
                })
                .collect::<Vec<_>>()
        });
        rows.into_iter()
            .map(|(size, root, note, created_at)| {
                Ok(StoredCheckpoint {
                    size: to_u64(size)?,
                    root: to_hash(root)?,
                    note,
                    created_at,
                })
            })
            .collect()
    }

    /// Test support: overwrites an entry's leaf bytes, as an attacker with write
    /// access to the database would.
    #[doc(hidden)]
    pub async fn __test_tamper_entry(&self, index: u64, leaf: &[u8]) -> Result<()> {
        let index = to_i64(index)?;
        on_pool!(self, |pool| {
            sqlx::query("UPDATE journal_entries SET leaf = $1 WHERE idx = $2")
                .bind(leaf)
                .bind(index)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    }
}

impl Store {
    /// Benchmark baseline: one plain single-row INSERT, in its own transaction, into a
    /// scratch table (created on first use).
    pub async fn bench_baseline_insert(&self, payload: &[u8]) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO socle_bench_baseline (payload) VALUES ($1)")
                .bind(payload)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    }

    /// Creates the benchmark's scratch table, empty.
    pub async fn bench_baseline_reset(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlx::raw_sql(
                "DROP TABLE IF EXISTS socle_bench_baseline; \
                 CREATE TABLE socle_bench_baseline (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)",
            )
            .execute(pool)
            .await
            .map(|_| ()),
            Backend::Postgres(pool) => sqlx::raw_sql(
                "DROP TABLE IF EXISTS socle_bench_baseline; \
                 CREATE TABLE socle_bench_baseline (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)",
            )
            .execute(pool)
            .await
            .map(|_| ()),
        }
        .map_err(StoreError::from_runtime)
    }

    /// Drops the benchmark's scratch table.
    pub async fn bench_baseline_drop(&self) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("DROP TABLE IF EXISTS socle_bench_baseline")
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(StoreError::from_runtime)
    }
}

impl Store {
    /// Test support: removes an entry, as an attacker with write access would.
    #[doc(hidden)]
    pub async fn __test_delete_entry(&self, index: u64) -> Result<()> {
        let index = to_i64(index)?;
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM journal_entries WHERE idx = $1")
                .bind(index)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    }

    /// Test support: stores a checkpoint note as is (a forged one).
    #[doc(hidden)]
    pub async fn __test_insert_checkpoint(&self, size: u64, note: &str) -> Result<()> {
        let size = to_i64(size)?;
        on_pool!(self, |pool| {
            sqlx::query("INSERT INTO journal_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, '')")
                .bind(size)
                .bind([0u8; 32].as_slice())
                .bind(note)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(StoreError::from_runtime)
        })
    }
}

/// The advisory-lock key of the journal sequencer ("socle" + 2).
const PG_SEQUENCER_LOCK: i64 = 0x736f_636c_6502;

/// Held by the one process allowed to sequence the journal. On PostgreSQL it owns a
/// dedicated connection holding a session advisory lock, released when dropped or
/// when the connection dies; SQLite has a single writer process.
pub struct SequencerLease {
    _conn: Option<sqlx::PgConnection>,
}

impl Store {
    /// Tries to become the journal's sequencer; `None` if another node is.
    pub async fn journal_try_lead(&self) -> Result<Option<SequencerLease>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(SequencerLease { _conn: None })),
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(StoreError::from_runtime)?;
                let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(PG_SEQUENCER_LOCK)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(StoreError::from_runtime)?;
                // Detached from the pool: the lock must die with this connection, never
                // be handed to another caller with it.
                Ok(got.then(|| SequencerLease {
                    _conn: Some(conn.detach()),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_uses_few_statement_shapes() {
        let items: Vec<u32> = (0..200).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8]);
        assert_eq!(sizes.iter().sum::<usize>(), 200);
        assert_eq!(values(2, 2), "($1,$2),($3,$4)");
        assert_eq!(runs(&[5, 3, 4, 9, 10, 12]), [(3, 5), (9, 10), (12, 12)]);
    }
}
