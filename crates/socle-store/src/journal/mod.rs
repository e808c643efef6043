//! Storage of the journal (the Merkle log): queue, entries, tree nodes, checkpoints.
//!
//! The hashing and signing happen in `socle-journal`; this module only moves bytes,
//! in transactions: an acknowledged append is a committed queue row; integrating a
//! batch into the log (entries, nodes, queue rows removed, size advanced) is one
//! transaction guarded by the expected size, so two sequencers can never both extend
//! the log from the same point.
//!
//! Here: the types, the reads (one SQL for both dialects, through sqlx), and the
//! writer that the sequencer drives, which hands each write to its backend:
//!
//! - [`sqlite`]: one connection on its own thread (`crate::direct`), direct point
//!   reads of the tree, and the redo log ([`sqlite::log`]) that makes a batch durable
//!   before SQLite has it, replayed at the next start;
//! - [`postgres`]: one pooled connection, one durable transaction per batch, and the
//!   advisory lock that elects the sequencer among nodes.
//!
//! The test hooks (an attacker's writes) are in `hooks.rs`.

mod hooks;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use sqlx::Row;

use crate::error::StoreError;
use crate::{Backend, Result, Store, on_pool};

pub type NodeHash = [u8; 32];

/// One sequencer batch: entries with their indices, the tree nodes they complete, the
/// queue rows they came from; as logged (SQLite) and as applied to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The log's size before the batch; entries take the indices that follow.
    pub from_size: u64,
    pub entries: Vec<NewEntry>,
    /// `(storage position, hash)` of the tree nodes above the leaves it completes.
    pub nodes: Vec<(u64, NodeHash)>,
    /// Queue rows (other nodes' appends) the batch integrates, to delete.
    pub seqs: Vec<i64>,
}

pub use Batch as JournalBatch;

/// How a queued leaf is authenticated: `(leaf, subject) -> MAC`, under a key only the
/// journal holds (`socle_journal`, which defines the format); the store stores the
/// result beside the leaf ([`crate::Store::set_queue_mac`]).
#[derive(Clone)]
pub struct QueueMac(pub std::sync::Arc<QueueMacFn>);

/// `(leaf, subject) -> MAC`.
pub type QueueMacFn = dyn Fn(&[u8], Option<&str>) -> Vec<u8> + Send + Sync;

impl std::fmt::Debug for QueueMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueMac")
    }
}

/// A leaf waiting in the queue to be given an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedLeaf {
    pub seq: i64,
    pub leaf: Vec<u8>,
    pub subject: Option<String>,
    /// Its MAC as stored (none on a row from before MACs, or a forged one).
    pub mac: Option<Vec<u8>>,
}

/// A leaf given its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    /// SHA-256(0x00 ‖ leaf), the level-0 node.
    pub leaf_hash: NodeHash,
    pub subject: Option<String>,
    /// The sequencer's MAC of the entry (none only for a batch logged by a version
    /// from before MACs).
    pub mac: Option<NodeHash>,
}

/// A stored entry with its stored leaf hash (the level-0 node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: NodeHash,
    /// The entry's MAC as stored, checked by the sequencer (`socle_journal`).
    pub mac: Option<Vec<u8>>,
    /// Its subject index key, as stored.
    pub subject: Option<String>,
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

/// An entry as bound to an INSERT: index, leaf, leaf hash, subject, MAC.
type EntryRow<'a> = (i64, &'a [u8], &'a [u8], Option<&'a str>, Option<&'a [u8]>);

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
    /// Rewrites, in one transaction, every stored secret for which `reseal` returns a
    /// new value (a secret an earlier version wrote in clear, sealed now); a value
    /// another node rewrote meanwhile is left as it is. Returns how many were rewritten.
    fn journal_reseal_secrets<F>(&self, reseal: F) -> impl Future<Output = Result<usize>> + Send
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync;
    /// The sequence number of the oldest leaf waiting in the durable queue above
    /// `after` (on SQLite, rows up to the writer's logged sequence are already in the
    /// redo log and only wait for their background deletion), if any.
    fn journal_oldest_queued(&self, after: i64)
    -> impl Future<Output = Result<Option<i64>>> + Send;
    /// Reads a secret without creating it.
    fn journal_read_secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;
    /// Reads the journal state without creating it.
    fn journal_read_state(&self) -> impl Future<Output = Result<Option<JournalState>>> + Send;
    /// The stored hashes of the given nodes (missing ones are left out).
    fn journal_nodes(
        &self,
        positions: &[u64],
    ) -> impl Future<Output = Result<Vec<(u64, NodeHash)>>> + Send;
    /// Leaf hashes of the entries `leaves` and hashes of the nodes at `positions`, in
    /// one round trip: `(true, index, hash)` for leaves, `(false, position, hash)` for
    /// nodes (missing ones are left out).
    fn journal_hashes(
        &self,
        leaves: &[u64],
        positions: &[u64],
    ) -> impl Future<Output = Result<Vec<(bool, u64, NodeHash)>>> + Send;
    /// The stored leaf hashes of the given entries (missing ones are left out).
    fn journal_leaf_hashes(
        &self,
        indices: &[u64],
    ) -> impl Future<Output = Result<Vec<(u64, NodeHash)>>> + Send;
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
    /// The entries of `subject` below `before`, newest first, at most `limit`, in one
    /// query (the citizen space lists a person's entries this way).
    fn journal_subject_entries(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEntry>>> + Send;
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
            sqlx::query(
                "INSERT INTO journal_state (id, origin) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(origin)
            .execute(pool)
            .await
            .map_err(StoreError::from_runtime)?;
            let (origin, size): (String, i64) =
                sqlx::query_as(
                "SELECT origin, (SELECT COALESCE(MAX(idx) + 1, 0) FROM journal_entries) FROM journal_state WHERE id = 1",
            )
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::from_runtime)?;
            Ok(JournalState {
                origin,
                size: to_u64(size)?,
            })
        })
    }

    async fn journal_reseal_secrets<F>(&self, reseal: F) -> Result<usize>
    where
        F: Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync,
    {
        let err = StoreError::from_runtime;
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(err)?;
            let rows: Vec<(String, Vec<u8>)> =
                sqlx::query_as("SELECT name, value FROM journal_secrets ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(err)?;
            let mut rewritten = 0;
            for (name, value) in rows {
                let Some(new) = reseal(&value) else { continue };
                rewritten += sqlx::query(
                    "UPDATE journal_secrets SET value = $1 WHERE name = $2 AND value = $3",
                )
                .bind(&new)
                .bind(&name)
                .bind(&value)
                .execute(&mut *tx)
                .await
                .map_err(err)?
                .rows_affected() as usize;
            }
            tx.commit().await.map_err(err)?;
            Ok(rewritten)
        })
    }

    async fn journal_oldest_queued(&self, after: i64) -> Result<Option<i64>> {
        let row: (Option<i64>,) = on_pool!(self, |pool| {
            sqlx::query_as("SELECT MIN(seq) FROM journal_queue WHERE seq > $1")
                .bind(after)
                .fetch_one(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        Ok(row.0)
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
            sqlx::query_as(
                "SELECT origin, (SELECT COALESCE(MAX(idx) + 1, 0) FROM journal_entries) FROM journal_state WHERE id = 1",
            )
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

    async fn journal_nodes(&self, positions: &[u64]) -> Result<Vec<(u64, NodeHash)>> {
        if let Some(readers) = &self.readers {
            return Ok(sqlite::direct_hashes(readers, &[], positions)
                .await?
                .into_iter()
                .map(|(_, k, h)| (k, h))
                .collect());
        }
        self.hashes_by_key(
            "SELECT pos, hash FROM journal_nodes WHERE pos IN",
            positions,
        )
        .await
    }

    async fn journal_hashes(
        &self,
        leaves: &[u64],
        positions: &[u64],
    ) -> Result<Vec<(bool, u64, NodeHash)>> {
        if let Some(readers) = &self.readers {
            return sqlite::direct_hashes(readers, leaves, positions).await;
        }
        if leaves.len() > CHUNK
            || positions.len() > CHUNK
            || leaves.is_empty()
            || positions.is_empty()
        {
            let mut out: Vec<(bool, u64, NodeHash)> = Vec::new();
            out.extend(
                self.journal_leaf_hashes(leaves)
                    .await?
                    .into_iter()
                    .map(|(k, h)| (true, k, h)),
            );
            out.extend(
                self.journal_nodes(positions)
                    .await?
                    .into_iter()
                    .map(|(k, h)| (false, k, h)),
            );
            return Ok(out);
        }
        // Lists padded to a power of two (repeating a key) so that a few statement
        // shapes serve every proof from the prepared-statement cache.
        let pad = |keys: &[u64]| -> Vec<u64> {
            let mut v = keys.to_vec();
            let target = keys.len().next_power_of_two().max(4);
            while v.len() < target {
                v.push(keys[0]);
            }
            v
        };
        let (leaves, positions) = (pad(leaves), pad(positions));
        let leaf_params = (1..=leaves.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(",");
        let node_params = (leaves.len() + 1..=leaves.len() + positions.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT 1, idx, leaf_hash FROM journal_entries WHERE idx IN ({leaf_params}) \
             UNION ALL SELECT 0, pos, hash FROM journal_nodes WHERE pos IN ({node_params})"
        );
        let keys: Vec<i64> = leaves
            .iter()
            .chain(&positions)
            .map(|k| to_i64(*k))
            .collect::<Result<_>>()?;
        let rows: Vec<(i32, i64, Vec<u8>)> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(&sql);
            for k in &keys {
                q = q.bind(*k);
            }
            q.fetch_all(pool).await.map_err(StoreError::from_runtime)?
        });
        rows.into_iter()
            .map(|(leaf, k, h)| Ok((leaf == 1, to_u64(k)?, to_hash(h)?)))
            .collect()
    }

    async fn journal_leaf_hashes(&self, indices: &[u64]) -> Result<Vec<(u64, NodeHash)>> {
        if let Some(readers) = &self.readers {
            return Ok(sqlite::direct_hashes(readers, indices, &[])
                .await?
                .into_iter()
                .map(|(_, k, h)| (k, h))
                .collect());
        }
        self.hashes_by_key(
            "SELECT idx, leaf_hash FROM journal_entries WHERE idx IN",
            indices,
        )
        .await
    }

    async fn journal_entries(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>> {
        let (start, end) = (to_i64(start)?, to_i64(end)?);
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT idx, leaf, leaf_hash, mac, subject FROM journal_entries \
                 WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(start)
            .bind(end)
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_runtime)?
            .into_iter()
            .map(entry_row)
            .collect::<Vec<_>>()
        });
        stored_entries(rows)
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

    async fn journal_subject_entries(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>> {
        let before = to_i64(before.min(i64::MAX as u64))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT idx, leaf, leaf_hash, mac, subject FROM journal_entries \
                 WHERE subject = $1 AND idx < $2 ORDER BY idx DESC LIMIT $3",
            )
            .bind(subject)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_runtime)?
            .into_iter()
            .map(entry_row)
            .collect::<Vec<_>>()
        });
        stored_entries(rows)
    }
}

/// An entry row as read: index, leaf, leaf hash, MAC, subject.
type ReadRow = (i64, Vec<u8>, Vec<u8>, Option<Vec<u8>>, Option<String>);

/// An entry row (`idx, leaf, leaf_hash, mac, subject`) read from either dialect.
fn entry_row<R: sqlx::Row>(r: R) -> ReadRow
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (
        r.get::<i64, _>(0),
        r.get::<Vec<u8>, _>(1),
        r.get::<Vec<u8>, _>(2),
        r.get::<Option<Vec<u8>>, _>(3),
        r.get::<Option<String>, _>(4),
    )
}

fn stored_entries(rows: Vec<ReadRow>) -> Result<Vec<StoredEntry>> {
    rows.into_iter()
        .map(|(idx, leaf, hash, mac, subject)| {
            Ok(StoredEntry {
                index: to_u64(idx)?,
                leaf,
                leaf_hash: to_hash(hash)?,
                mac,
                subject,
            })
        })
        .collect()
}

/// The journal's writing connection, kept for the life of the writer task: appends
/// always go through the same connection (on SQLite, the same page cache and worker
/// thread), and a connection that failed is replaced on the next call.
pub struct JournalWriter {
    store: Store,
    conn: Option<WriterConn>,
    /// SQLite, on the sequencer: the redo log appends are made durable in (see
    /// `journal_log`); SQLite is written after, on the connection's thread.
    log: Option<sqlite::log::Log>,
    /// The last queue row handed to the log: SQLite deletes queue rows when it
    /// applies a batch, a moment later, so the next drain skips them meanwhile
    /// (`AUTOINCREMENT` keys only grow).
    logged_seq: i64,
}

/// The checkpoint signer's access to the journal's storage, beside the writer: a
/// barrier (everything integrated so far readable) and the checkpoints' table.
#[derive(Clone)]
pub struct JournalSink {
    store: Store,
    /// SQLite with the log: where to ask for a flush.
    log: Option<std::sync::mpsc::Sender<sqlite::log::Job>>,
    /// SQLite with the log: the journal's SQLite thread (checkpoints are written there,
    /// so they never wait for the write lock behind the log's batches).
    sqlite: Option<std::sync::mpsc::Sender<crate::direct::Job>>,
}

impl std::fmt::Debug for JournalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalSink")
    }
}

impl JournalSink {
    /// Returns once every batch integrated before the call is readable by other
    /// connections (the proofs' and the checkpoint's reads).
    pub async fn barrier(&self) -> Result<()> {
        match &self.log {
            None => Ok(()),
            Some(log) => sqlite::log::flush(log).await,
        }
    }

    /// Records a signed checkpoint (once per size).
    pub async fn add_checkpoint(&self, cp: &StoredCheckpoint) -> Result<()> {
        match &self.sqlite {
            Some(jobs) => sqlite::add_checkpoint(jobs, cp).await,
            None => self.store.journal_add_checkpoint(cp).await,
        }
    }
}

enum WriterConn {
    /// SQLite: a dedicated connection on its own thread (see `direct`).
    Sqlite(crate::direct::Writer),
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Store {
    /// A writer for the journal's appends.
    pub fn journal_writer(&self) -> JournalWriter {
        JournalWriter {
            store: self.clone(),
            conn: None,
            log: None,
            logged_seq: 0,
        }
    }
}

impl JournalWriter {
    async fn connection(&mut self) -> Result<&mut WriterConn> {
        if self.conn.is_none() {
            let conn = match &self.store.backend {
                Backend::Sqlite(_) => {
                    let path = self.store.sqlite_path.as_deref().ok_or_else(|| {
                        StoreError::Unavailable("no SQLite file for the writer".into())
                    })?;
                    WriterConn::Sqlite(crate::direct::Writer::open(path)?)
                }
                Backend::Postgres(pool) => {
                    WriterConn::Postgres(pool.acquire().await.map_err(StoreError::from_runtime)?)
                }
            };
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    fn forget_if_unavailable<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && e.is_unavailable()
        {
            match &self.log {
                // The log's batches go to this connection's thread in order with its
                // other jobs: never swap it under the log. The sequencer reloads.
                Some(log) => log.stop(format!("the journal's SQLite connection failed: {e}")),
                None => self.conn = None,
            }
        }
        result
    }

    /// Gives the connection back (the writer is idle, stopping, or reloading); stops
    /// the log, if any (what it acknowledged stays in it until SQLite has it).
    pub async fn release(&mut self) {
        self.logged_seq = 0;
        if let Some(log) = self.log.take() {
            // Stopping the log joins its thread (its last write, its last hand-over to
            // SQLite): not on a runtime worker.
            let _ = tokio::task::spawn_blocking(move || drop(log)).await;
            // Then the SQLite thread finishes what the log handed it before the
            // connection goes: a next leader must not replay beside it.
            if let Some(WriterConn::Sqlite(w)) = &self.conn {
                let _ = w.run(|_| Ok(())).await;
            }
        }
        self.conn = None;
    }

    /// Becomes the sequencer under `lease`. On SQLite: replays, in one durable
    /// transaction, what the log holds beyond the database (appends acknowledged
    /// before a crash), then starts the log; appends are then durable once logged.
    pub async fn lead(&mut self, lease: &SequencerLease) -> Result<()> {
        self.release().await;
        let Some(lock) = &lease.lock else {
            return Ok(());
        };
        let path = self
            .store
            .sqlite_path
            .clone()
            .ok_or_else(|| StoreError::Unavailable("no SQLite file for the journal".into()))?;
        let WriterConn::Sqlite(w) = self.connection().await? else {
            return Ok(());
        };
        self.log = Some(sqlite::lead(w, path, lock.clone()).await?);
        Ok(())
    }

    /// Returns once every batch integrated so far is readable by other connections
    /// (on SQLite with the log, applied by the writer's thread; elsewhere at once).
    pub async fn barrier(&mut self) -> Result<()> {
        match &self.log {
            None => Ok(()),
            Some(log) => sqlite::log::flush(&log.sender()).await,
        }
    }

    /// What the checkpoint signer needs, to run beside the writer: a barrier and the
    /// checkpoints' table.
    pub async fn sink(&mut self) -> Result<JournalSink> {
        let logged = self.log.is_some();
        let sqlite = match self.connection().await? {
            WriterConn::Sqlite(w) if logged => Some(w.sender()),
            _ => None,
        };
        Ok(JournalSink {
            store: self.store.clone(),
            log: self.log.as_ref().map(sqlite::log::Log::sender),
            sqlite,
        })
    }

    /// The writer stops: lets SQLite take what the log acknowledged, then releases.
    pub async fn finish(&mut self) {
        if let Err(e) = self.barrier().await {
            tracing::warn!(error = %e, "journal: the database will take the log's last batches at the next start");
        }
        self.release().await;
    }

    /// Durably queues leaves (a node that does not sequence), with their MACs
    /// ([`crate::Store::set_queue_mac`]); returns once committed.
    pub async fn enqueue(&mut self, leaves: &[(Vec<u8>, Option<String>)]) -> Result<()> {
        if leaves.is_empty() {
            return Ok(());
        }
        let macs = self
            .store
            .queue_macs(leaves)
            .map_err(StoreError::from_runtime)?;
        let result = match self.connection().await? {
            WriterConn::Sqlite(w) => sqlite::enqueue(w, leaves.to_vec(), macs).await,
            WriterConn::Postgres(conn) => postgres::enqueue(conn, leaves, &macs).await,
        };
        self.forget_if_unavailable(result)
    }

    /// The highest queue row already in the redo log (SQLite; 0 elsewhere).
    pub fn logged_seq(&self) -> i64 {
        self.logged_seq
    }

    /// The oldest queued leaves (other nodes' appends), at most `limit`.
    pub async fn queued(&mut self, limit: usize) -> Result<Vec<QueuedLeaf>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = self.logged_seq;
        let result = match self.connection().await? {
            WriterConn::Sqlite(w) => sqlite::queued(w, limit, after).await,
            WriterConn::Postgres(conn) => postgres::queued(conn, limit).await,
        };
        self.forget_if_unavailable(result)
    }

    /// In one durable transaction: adds `entries` (indices from `from_size` on) and
    /// `nodes` (`(position, hash)` of the nodes above the leaves), removes the queue
    /// rows `seqs`. Fails with [`StoreError::Conflict`] if another sequencer moved the
    /// log (the indices are the primary key: nothing of the batch is then written).
    pub async fn integrate(
        &mut self,
        from_size: u64,
        entries: &[NewEntry],
        nodes: &[(u64, NodeHash)],
        seqs: &[i64],
    ) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let batch = Batch {
            from_size,
            entries: entries.to_vec(),
            nodes: nodes.to_vec(),
            seqs: seqs.to_vec(),
        };
        self.integrate_with(batch, done).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the journal log stopped".into()))?
    }

    /// As [`JournalWriter::integrate`], without waiting: returns once the batch is
    /// handed over (then the sequencer may go on from its end), and calls `done` once
    /// it is durable or could not be made so. On SQLite the log writes what is
    /// waiting with one flush, so batches handed in a row share it. An error returned
    /// here (`done` is then called with it too) means nothing was handed over; a
    /// [`StoreError::Conflict`] that the sequencer must reload from the store.
    pub async fn integrate_with(
        &mut self,
        batch: Batch,
        done: Box<dyn FnOnce(Result<()>) + Send>,
    ) -> Result<()> {
        if let Some(log) = &self.log {
            if let Some(why) = log.stopped() {
                let e = StoreError::Conflict(format!(
                    "the journal's log stopped ({why}); the sequencer reloads from the store"
                ));
                done(Err(e.clone()));
                return Err(e);
            }
            if let Some(last) = batch.seqs.iter().max() {
                self.logged_seq = self.logged_seq.max(*last);
            }
            log.append(batch, done);
            return Ok(());
        }
        let result = self.integrate_now(batch).await;
        done(result.clone());
        result
    }

    /// One durable transaction (no log: PostgreSQL, or SQLite outside a lease).
    async fn integrate_now(&mut self, batch: Batch) -> Result<()> {
        let result = match self.connection().await? {
            WriterConn::Sqlite(w) => sqlite::integrate(w, batch).await,
            WriterConn::Postgres(conn) => postgres::integrate(conn, &batch).await,
        };
        self.forget_if_unavailable(result)
    }
}

impl Store {
    /// `(key, hash)` rows of `select` (which ends with `… WHERE key IN`) for `keys`.
    async fn hashes_by_key(&self, select: &str, keys: &[u64]) -> Result<Vec<(u64, NodeHash)>> {
        let keys: Vec<i64> = keys.iter().map(|k| to_i64(*k)).collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in chunks(&keys) {
            let sql = format!("{select} {}", values(1, chunk.len()));
            let rows: Vec<(i64, Vec<u8>)> = on_pool!(self, |pool| {
                let mut q = sqlx::query_as(&sql);
                for k in chunk {
                    q = q.bind(*k);
                }
                q.fetch_all(pool).await.map_err(StoreError::from_runtime)?
            });
            for (k, hash) in rows {
                out.push((to_u64(k)?, to_hash(hash)?));
            }
        }
        Ok(out)
    }

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

    /// Gives a MAC to the rows written before MACs existed (migration 11), once per
    /// database (the marker `journal.macs.adopted`, set in the same transaction): the
    /// entries from index `from` on (those no checkpoint covers) get
    /// `entry_mac(index, leaf, subject)`, the queued leaves the store's queue MAC, and
    /// `record(entries, queued)` gives the journal leaves recording it (queued in the
    /// same transaction). `None` when it was done before.
    pub async fn journal_adopt_macs(
        &self,
        from: u64,
        entry_mac: impl Fn(u64, &[u8], Option<&str>) -> Vec<u8>,
        record: impl FnOnce(usize, usize) -> Vec<(Vec<u8>, Option<String>)>,
    ) -> Result<Option<(usize, usize)>> {
        const MARKER: &str = "journal.macs.adopted";
        let from = to_i64(from)?;
        let done: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM instance_markers WHERE name = $1")
                .bind(MARKER)
                .fetch_one(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        if done > 0 {
            return Ok(None);
        }
        let entries: Vec<ReadRow> = on_pool!(self, |pool| {
            sqlx::query(
                "SELECT idx, leaf, leaf_hash, mac, subject FROM journal_entries \
                 WHERE idx >= $1 AND mac IS NULL ORDER BY idx",
            )
            .bind(from)
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_runtime)?
            .into_iter()
            .map(entry_row)
            .collect()
        });
        let queued: Vec<(i64, Vec<u8>, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT seq, leaf, subject FROM journal_queue WHERE mac IS NULL")
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        let leaves: Vec<(Vec<u8>, Option<String>)> = queued
            .iter()
            .map(|(_, l, s)| (l.clone(), s.clone()))
            .collect();
        let queue_macs = self.queue_macs(&leaves).map_err(StoreError::from_runtime)?;
        let mut entry_macs = Vec::with_capacity(entries.len());
        for (idx, leaf, _, _, subject) in &entries {
            entry_macs.push((*idx, entry_mac(to_u64(*idx)?, leaf, subject.as_deref())));
        }
        let counts = (entry_macs.len(), queue_macs.len());
        let journal = record(counts.0, counts.1);
        let now = crate::open::now_rfc3339();
        let adopted = crate::journaled!(self, &journal, |tx| {
            let marked = sqlx::query(
                "INSERT INTO instance_markers (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(MARKER)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked != 1 {
                return Ok(None);
            }
            for (idx, mac) in &entry_macs {
                sqlx::query("UPDATE journal_entries SET mac = $1 WHERE idx = $2 AND mac IS NULL")
                    .bind(mac.as_slice())
                    .bind(*idx)
                    .execute(&mut *tx)
                    .await?;
            }
            for ((seq, _, _), mac) in queued.iter().zip(&queue_macs) {
                sqlx::query("UPDATE journal_queue SET mac = $1 WHERE seq = $2 AND mac IS NULL")
                    .bind(mac.as_slice())
                    .bind(*seq)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(counts)
        })
        .map_err(StoreError::from_runtime)?;
        Ok(adopted)
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

/// Held by the one process allowed to sequence the journal. On PostgreSQL it owns a
/// dedicated connection holding a session advisory lock, released when dropped or
/// when the connection dies; SQLite has a single writer process.
pub struct SequencerLease {
    _conn: Option<sqlx::PgConnection>,
    /// SQLite: the exclusive lock on the database's journal log.
    lock: Option<std::sync::Arc<sqlite::log::LogLock>>,
}

impl Store {
    /// Tries to become the journal's sequencer; `None` if another node is.
    pub async fn journal_try_lead(&self) -> Result<Option<SequencerLease>> {
        match &self.backend {
            Backend::Sqlite(_) => {
                // One process (one store) at a time writes the log; the others queue.
                let path = self.sqlite_path.as_deref().ok_or_else(|| {
                    StoreError::Unavailable("no SQLite file for the journal".into())
                })?;
                Ok(sqlite::log::try_lock(path)?.map(|lock| SequencerLease {
                    _conn: None,
                    lock: Some(std::sync::Arc::new(lock)),
                }))
            }
            Backend::Postgres(pool) => {
                Ok(postgres::try_lead(pool).await?.map(|conn| SequencerLease {
                    _conn: Some(conn),
                    lock: None,
                }))
            }
        }
    }
}
