//! The journal on SQLite, top to bottom: one writing connection on its own thread
//! (`crate::direct::Writer`), point reads of the tree on the direct read connections,
//! and the sequencer's redo log ([`log`]): a batch is durable once the log has it, and
//! SQLite takes it a moment later on the writer's thread (`apply_logged`); at the next
//! lead, [`recover`] replays what the log holds beyond the database.

pub(crate) mod log;

use std::path::PathBuf;
use std::sync::Arc;

use super::{Batch, NodeHash, QueuedLeaf, StoredCheckpoint, runs, to_hash, to_i64, to_u64};
use crate::Result;
use crate::direct::{self, Writer};
use crate::error::StoreError;

/// Becomes the sequencer on `w`: replays the log beyond the database, in one durable
/// transaction, then starts the log.
pub(super) async fn lead(w: &Writer, path: PathBuf, lock: Arc<log::LogLock>) -> Result<log::Log> {
    let at = path.clone();
    let replayed = w.run(move |conn| recover(conn, &at)).await?;
    if replayed > 0 {
        tracing::info!(
            entries = replayed,
            "journal: acknowledged appends replayed from the log"
        );
    }
    log::Log::start(&path, lock, w.sender(), apply_logged)
}

/// Durably queues leaves with their MACs.
pub(super) async fn enqueue(
    w: &Writer,
    leaves: Vec<(Vec<u8>, Option<String>)>,
    macs: Vec<Vec<u8>>,
) -> Result<()> {
    w.run(move |conn| {
        direct::immediate(conn, |tx| {
            direct::execute_each(
                tx,
                "INSERT INTO journal_queue (leaf, subject, mac) VALUES (?1, ?2, ?3)",
                leaves
                    .iter()
                    .zip(&macs)
                    .map(|((leaf, subject), mac)| (leaf, subject, mac)),
                direct::error,
            )
        })
    })
    .await
}

/// The oldest queued leaves above `after` (rows up to it are in the log already).
pub(super) async fn queued(w: &Writer, limit: i64, after: i64) -> Result<Vec<QueuedLeaf>> {
    w.run(move |conn| {
        let mut q = conn
            .prepare_cached(
                "SELECT seq, leaf, subject, mac FROM journal_queue WHERE seq > ?2 \
                 ORDER BY seq LIMIT ?1",
            )
            .map_err(direct::error)?;
        let rows = q
            .query_map([limit, after], |r| {
                Ok(QueuedLeaf {
                    seq: r.get(0)?,
                    leaf: r.get(1)?,
                    subject: r.get(2)?,
                    mac: r.get(3)?,
                })
            })
            .map_err(direct::error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(direct::error)
    })
    .await
}

/// One durable transaction (SQLite outside a lease: no log).
pub(super) async fn integrate(w: &Writer, batch: Batch) -> Result<()> {
    w.run(move |conn| direct::immediate(conn, |tx| apply(tx, &batch)))
        .await
}

/// Records a checkpoint on the journal's SQLite thread (it never waits for the write
/// lock behind the log's batches).
pub(super) async fn add_checkpoint(
    jobs: &std::sync::mpsc::Sender<direct::Job>,
    cp: &StoredCheckpoint,
) -> Result<()> {
    const SQL: &str = "INSERT INTO journal_checkpoints (size, root, note, created_at) \
                       VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING";
    let size = to_i64(cp.size)?;
    let cp = cp.clone();
    direct::run_on(jobs, move |conn| {
        conn.prepare_cached(SQL)
            .and_then(|mut q| q.execute((size, &cp.root[..], &cp.note, &cp.created_at)))
            .map(|_| ())
            .map_err(direct::error)
    })
    .await
}

/// SQLite: leaf hashes and tree nodes by point lookups on the rowid, in one job on a
/// direct read connection (no per-statement hand-off).
pub(super) async fn direct_hashes(
    readers: &Arc<direct::Readers>,
    leaves: &[u64],
    positions: &[u64],
) -> Result<Vec<(bool, u64, NodeHash)>> {
    let leaves: Vec<i64> = leaves.iter().map(|k| to_i64(*k)).collect::<Result<_>>()?;
    let positions: Vec<i64> = positions
        .iter()
        .map(|k| to_i64(*k))
        .collect::<Result<_>>()?;
    readers
        .read(move |conn| {
            let mut out = Vec::with_capacity(leaves.len() + positions.len());
            for (sql, keys, leaf) in [
                (
                    "SELECT leaf_hash FROM journal_entries WHERE idx = ?1",
                    &leaves,
                    true,
                ),
                (
                    "SELECT hash FROM journal_nodes WHERE pos = ?1",
                    &positions,
                    false,
                ),
            ] {
                let mut q = conn.prepare_cached(sql).map_err(direct::error)?;
                for k in keys {
                    let mut rows = q.query([k]).map_err(direct::error)?;
                    if let Some(row) = rows.next().map_err(direct::error)? {
                        let h: Vec<u8> = row.get(0).map_err(direct::error)?;
                        out.push((leaf, to_u64(*k)?, to_hash(h)?));
                    }
                }
            }
            Ok(out)
        })
        .await
}

/// Writes a sequencer batch into the SQLite tables: entries, the tree nodes they
/// complete, and the removal of the queue rows they came from. A taken index is a
/// [`StoreError::Conflict`] (another sequencer moved the log): nothing is written.
fn apply(tx: &rusqlite::Transaction<'_>, batch: &Batch) -> Result<()> {
    let from_size = batch.from_size;
    let mut entries = Vec::with_capacity(batch.entries.len());
    for e in &batch.entries {
        entries.push((
            to_i64(e.index)?,
            &e.leaf,
            &e.leaf_hash[..],
            &e.subject,
            e.mac.as_ref().map(|m| &m[..]),
        ));
    }
    let mut nodes = Vec::with_capacity(batch.nodes.len());
    for (pos, hash) in &batch.nodes {
        nodes.push((to_i64(*pos)?, &hash[..]));
    }
    direct::execute_each(
        tx,
        "INSERT INTO journal_entries (idx, leaf, leaf_hash, subject, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
        entries,
        |e| {
            if direct::is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "the journal is no longer at size {from_size}: another sequencer extended it"
                ))
            } else {
                direct::error(e)
            }
        },
    )?;
    direct::execute_each(
        tx,
        "INSERT INTO journal_nodes (pos, hash) VALUES (?1, ?2)",
        nodes,
        direct::error,
    )?;
    direct::execute_each(
        tx,
        "DELETE FROM journal_queue WHERE seq >= ?1 AND seq <= ?2",
        runs(&batch.seqs).into_iter().map(|(lo, hi)| [lo, hi]),
        direct::error,
    )
}

/// Logged batches into SQLite, in one transaction (on the journal's SQLite thread,
/// after the log made them durable), with `synchronous = NORMAL`; `durable`: a
/// durable point, with everything committed before (the log reuses a half).
///
/// The first batch must continue the database: after a refused batch the log stops,
/// and one applied beyond a gap would hide it from recovery, which continues from the
/// largest index.
fn apply_logged(conn: &mut rusqlite::Connection, batches: &[Batch], durable: bool) -> Result<()> {
    in_transaction(conn, durable, |tx| {
        let mut size = stored_size(tx)?;
        for b in batches {
            if b.from_size != size {
                return Err(StoreError::Conflict(format!(
                    "the journal's database holds {size} entries; a logged batch starts at {}",
                    b.from_size
                )));
            }
            apply(tx, b)?;
            size += b.entries.len() as u64;
        }
        Ok(())
    })
}

/// Runs `f` in one immediate transaction; `durable`: committed with `synchronous =
/// FULL` after writing the row of `journal_log_syncs`, which makes every commit
/// before it durable too. (A `FULL` commit syncs SQLite's write-ahead log only if it
/// writes something, and the log's file must never be flushed from outside SQLite:
/// closing another descriptor of it drops SQLite's POSIX locks.)
fn in_transaction<T>(
    conn: &mut rusqlite::Connection,
    durable: bool,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    if durable {
        conn.pragma_update(None, "synchronous", "full")
            .map_err(direct::error)?;
    }
    let result = direct::immediate(conn, |tx| {
        let out = f(tx)?;
        if durable {
            // An upsert: it writes even if the row went missing.
            tx.execute(
                "INSERT INTO journal_log_syncs (id, n) VALUES (1, 1) \
                 ON CONFLICT (id) DO UPDATE SET n = n + 1",
                [],
            )
            .map_err(direct::error)?;
        }
        Ok(out)
    });
    if durable {
        conn.pragma_update(None, "synchronous", "normal")
            .map_err(direct::error)?;
    }
    result
}

/// The number of entries SQLite holds (indices have no gaps).
fn stored_size(tx: &rusqlite::Connection) -> Result<u64> {
    let size: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM journal_entries",
            [],
            |r| r.get(0),
        )
        .map_err(direct::error)?;
    to_u64(size)
}

/// Replays, in one durable transaction, the log's batches that continue the database
/// — durable even when nothing is replayed: the log is about to be written over from
/// its start, and commits made with `synchronous = NORMAL` before a restart may still
/// be only in memory. The connection writes with `synchronous = NORMAL` from then on
/// (the log carries durability). Returns the number of entries replayed.
fn recover(conn: &mut rusqlite::Connection, database: &std::path::Path) -> Result<u64> {
    in_transaction(conn, true, |tx| {
        let size = stored_size(tx)?;
        let mut n = 0;
        for batch in log::pending(database, size)? {
            apply(tx, &batch)?;
            n += batch.entries.len() as u64;
        }
        Ok(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::*;
    use crate::{Location, StoreOptions};

    async fn sqlite_store(dir: &std::path::Path) -> Store {
        let store = Store::open(&StoreOptions::new(Location::Sqlite {
            path: dir.join("socle.db"),
        }))
        .await
        .unwrap();
        store.migrate().await.unwrap();
        store.journal_state("test").await.unwrap();
        store
    }

    /// A store on `dir` whose writer holds the lease.
    async fn leading(dir: &std::path::Path) -> (Store, SequencerLease, JournalWriter) {
        let store = sqlite_store(dir).await;
        let lease = store.journal_try_lead().await.unwrap().unwrap();
        let mut w = store.journal_writer();
        w.lead(&lease).await.unwrap();
        (store, lease, w)
    }

    fn batch(from: u64, n: u64) -> Vec<NewEntry> {
        (from..from + n)
            .map(|i| NewEntry {
                index: i,
                leaf: format!("entry {i} {}", "x".repeat(2000)).into_bytes(),
                leaf_hash: [(i % 251) as u8; 32],
                subject: (i % 3 == 0).then(|| format!("p{i}")),
                mac: Some([(i % 7) as u8; 32]),
            })
            .collect()
    }

    /// Appends acknowledged by the log and lost by SQLite (a power cut takes the
    /// commits made with `synchronous = NORMAL` since the last durable one) come back
    /// when the next sequencer takes the lease; a second store on the same file
    /// cannot lead meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_gives_back_what_sqlite_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let lease = store.journal_try_lead().await.unwrap().unwrap();
        let other = sqlite_store(dir.path()).await;
        assert!(
            other.journal_try_lead().await.unwrap().is_none(),
            "one sequencer"
        );
        let mut w = store.journal_writer();
        w.lead(&lease).await.unwrap();
        // 100 batches of 2 MB or so: the log goes round its two halves several times.
        for b in 0..100 {
            w.integrate(b * 100, &batch(b * 100, 100), &[(b, [1; 32])], &[])
                .await
                .unwrap();
        }
        w.barrier().await.unwrap();
        assert_eq!(store.journal_state("test").await.unwrap().size, 10_000);
        w.finish().await;
        drop(lease);

        // The last three batches vanish from SQLite, as after a power cut.
        on_pool!(store, |pool| {
            sqlx::query("DELETE FROM journal_entries WHERE idx >= 9700")
                .execute(pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM journal_nodes WHERE pos >= 97")
                .execute(pool)
                .await
                .unwrap();
        });
        assert_eq!(store.journal_state("test").await.unwrap().size, 9_700);

        let lease = other.journal_try_lead().await.unwrap().unwrap();
        let mut w = other.journal_writer();
        w.lead(&lease).await.unwrap();
        assert_eq!(other.journal_state("test").await.unwrap().size, 10_000);
        let back = other.journal_entries(9_650, 10_000).await.unwrap();
        assert_eq!(back.len(), 350);
        for (e, want) in back.iter().zip(batch(9_650, 350)) {
            assert_eq!(
                (e.index, &e.leaf, e.leaf_hash),
                (want.index, &want.leaf, want.leaf_hash)
            );
        }
        let nodes = other.journal_hashes(&[], &[97, 98, 99]).await.unwrap();
        assert_eq!(nodes.len(), 3, "the tree nodes too");
        // And the log carries on from there.
        w.integrate(10_000, &batch(10_000, 1), &[], &[])
            .await
            .unwrap();
        w.finish().await;
        assert_eq!(other.journal_state("test").await.unwrap().size, 10_001);
    }

    /// A batch SQLite refuses after the log took it stops the log: the next append is
    /// a conflict, so that the sequencer reloads from the store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_sqlite_refuses_stops_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, lease, mut w) = leading(dir.path()).await;
        w.integrate(0, &batch(0, 2), &[], &[]).await.unwrap();
        // The same indices again (only a second sequencer could do this).
        w.integrate(0, &batch(0, 2), &[], &[]).await.unwrap();
        let flushed = w.barrier().await;
        assert!(
            matches!(&flushed, Err(StoreError::Unavailable(m)) if m.contains("stopped")),
            "{flushed:?}"
        );
        let next = w.integrate(2, &batch(2, 1), &[], &[]).await;
        assert!(matches!(next, Err(StoreError::Conflict(_))), "{next:?}");
        // Reloading: the lease is taken again and appends go on.
        w.release().await;
        drop(lease);
        let lease = store.journal_try_lead().await.unwrap().unwrap();
        w.lead(&lease).await.unwrap();
        // The first batch is there (applied before, or refused with the duplicate in
        // one transaction and replayed from the log); the duplicate is not.
        w.integrate(2, &batch(2, 1), &[], &[]).await.unwrap();
        w.finish().await;
        assert_eq!(store.journal_state("test").await.unwrap().size, 3);
    }

    /// Appends handed over in one burst, more than both halves of the log hold, go
    /// through without the log waiting on itself: the hand-over that frees a half is
    /// sent at the switch, not left to the timer that a busy log never sees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_larger_than_the_log_goes_through() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _lease, mut w) = leading(dir.path()).await;
        let syncs = || async {
            on_pool!(store, |pool| {
                sqlx::query_scalar::<_, i64>("SELECT n FROM journal_log_syncs")
                    .fetch_one(pool)
                    .await
                    .unwrap()
            })
        };
        // Taking the lease made a durable point, with nothing to replay.
        assert_eq!(syncs().await, 1);
        // 200 batches of 5 entries of 20 kB: 20 MB, both halves and more, in fewer
        // entries than make the log hand over by their number; built first, so that
        // the log finds them all waiting.
        let batches: Vec<JournalBatch> = (0..200)
            .map(|b| {
                let mut entries = batch(b * 5, 5);
                for e in &mut entries {
                    e.leaf.resize(20_000, b'y');
                }
                JournalBatch {
                    from_size: b * 5,
                    entries,
                    nodes: vec![],
                    seqs: vec![],
                }
            })
            .collect();
        let began = std::time::Instant::now();
        let mut waits = Vec::new();
        for batch in batches {
            let (tx, rx) = tokio::sync::oneshot::channel();
            w.integrate_with(batch, Box::new(move |r| drop(tx.send(r))))
                .await
                .unwrap();
            waits.push(rx);
        }
        for (i, rx) in waits.into_iter().enumerate() {
            rx.await
                .unwrap()
                .unwrap_or_else(|e| panic!("batch {i}: {e}"));
        }
        assert!(
            began.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            began.elapsed()
        );
        w.finish().await;
        assert_eq!(store.journal_state("test").await.unwrap().size, 1_000);
        // And each half was written over only after one: two switches at least.
        assert!(syncs().await >= 3, "{}", syncs().await);
    }

    /// A valid batch that SQLite fails to take (here a trigger; a full disk in life)
    /// stops the log, and nothing after it reaches SQLite: the next leader replays it
    /// from the log, with no hole in the journal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_sqlite_fails_comes_back_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (store, lease, mut w) = leading(dir.path()).await;
        w.integrate(0, &batch(0, 2), &[], &[]).await.unwrap();
        w.barrier().await.unwrap();
        on_pool!(store, |pool| {
            sqlx::query(
                "CREATE TRIGGER refuse BEFORE INSERT ON journal_entries WHEN NEW.idx = 2 \
                 BEGIN SELECT RAISE(ABORT, 'injected'); END",
            )
            .execute(pool)
            .await
            .unwrap();
        });
        w.integrate(2, &batch(2, 2), &[], &[]).await.unwrap();
        assert!(w.barrier().await.is_err(), "SQLite refused it");
        on_pool!(store, |pool| {
            sqlx::query("DROP TRIGGER refuse")
                .execute(pool)
                .await
                .unwrap();
        });
        let next = w.integrate(4, &batch(4, 2), &[], &[]).await;
        assert!(matches!(next, Err(StoreError::Conflict(_))), "{next:?}");
        assert_eq!(store.journal_state("test").await.unwrap().size, 2);
        w.release().await;
        drop(lease);
        let lease = store.journal_try_lead().await.unwrap().unwrap();
        w.lead(&lease).await.unwrap();
        assert_eq!(store.journal_state("test").await.unwrap().size, 4);
        w.integrate(4, &batch(4, 2), &[], &[]).await.unwrap();
        w.finish().await;
        let all = store.journal_entries(0, 6).await.unwrap();
        let indices: Vec<u64> = all.iter().map(|e| e.index).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5]);
    }

    /// Logged batches are applied only where they continue the database: one beyond a
    /// gap, or over entries already there, is refused and writes nothing.
    #[tokio::test]
    async fn logged_batches_must_continue_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let _store = sqlite_store(dir.path()).await;
        let mut conn = rusqlite::Connection::open(dir.path().join("socle.db")).unwrap();
        let b = |from, n| JournalBatch {
            from_size: from,
            entries: batch(from, n),
            nodes: vec![],
            seqs: vec![],
        };
        apply_logged(&mut conn, &[b(0, 2), b(2, 1)], false).unwrap();
        for (bad, why) in [
            (vec![b(4, 1)], "a gap"),
            (vec![b(1, 3)], "overlap"),
            (vec![b(3, 1), b(5, 1)], "a gap after a good one"),
        ] {
            let r = apply_logged(&mut conn, &bad, true);
            assert!(matches!(r, Err(StoreError::Conflict(_))), "{why}: {r:?}");
        }
        let size: i64 = conn
            .query_row("SELECT COUNT(*) FROM journal_entries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, 3, "nothing of the refused batches");
        apply_logged(&mut conn, &[b(3, 1)], true).unwrap();
    }

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
