//! The journal on PostgreSQL, top to bottom: the sequencer writes on one pooled
//! connection, one durable transaction per batch (multi-row statements in a few
//! shapes, `super::chunks`); the sequencer is elected among nodes by a session
//! advisory lock held on a connection of its own.

use sqlx::{PgConnection, Row};

use super::{Batch, EntryRow, QueuedLeaf, chunks, runs, to_i64, values};
use crate::Result;
use crate::error::StoreError;

/// The advisory-lock key of the journal sequencer ("socle" + 2).
const SEQUENCER_LOCK: i64 = 0x736f_636c_6502;

/// A connection holding the sequencer's lock, if no other node holds it. Detached
/// from the pool: the lock must die with this connection, never be handed to another
/// caller with it.
pub(super) async fn try_lead(pool: &sqlx::PgPool) -> Result<Option<PgConnection>> {
    let mut conn = pool.acquire().await.map_err(StoreError::from_runtime)?;
    let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
        .bind(SEQUENCER_LOCK)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from_runtime)?;
    Ok(got.then(|| conn.detach()))
}

/// Durably queues leaves with their MACs, in one transaction.
pub(super) async fn enqueue(
    conn: &mut PgConnection,
    leaves: &[(Vec<u8>, Option<String>)],
    macs: &[Vec<u8>],
) -> Result<()> {
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .map_err(StoreError::from_runtime)?;
    let rows: Vec<_> = leaves.iter().zip(macs).collect();
    for chunk in chunks(&rows) {
        let sql = format!(
            "INSERT INTO journal_queue (leaf, subject, mac) VALUES {}",
            values(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for ((leaf, subject), mac) in chunk {
            q = q
                .bind(leaf.as_slice())
                .bind(subject.as_deref())
                .bind(mac.as_slice());
        }
        q.execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
    }
    tx.commit().await.map_err(StoreError::from_runtime)
}

/// The oldest queued leaves, at most `limit`.
pub(super) async fn queued(conn: &mut PgConnection, limit: i64) -> Result<Vec<QueuedLeaf>> {
    let rows =
        sqlx::query("SELECT seq, leaf, subject, mac FROM journal_queue ORDER BY seq LIMIT $1")
            .bind(limit)
            .fetch_all(conn)
            .await
            .map_err(StoreError::from_runtime)?;
    Ok(rows
        .into_iter()
        .map(|r| QueuedLeaf {
            seq: r.get(0),
            leaf: r.get(1),
            subject: r.get(2),
            mac: r.get(3),
        })
        .collect())
}

/// The batch in one transaction, committed durably (the default
/// `synchronous_commit`): appends are acknowledged after it. A taken index is a
/// [`StoreError::Conflict`]: another sequencer moved the log.
pub(super) async fn integrate(conn: &mut PgConnection, batch: &Batch) -> Result<()> {
    let from_size = batch.from_size;
    let conflict = move || {
        StoreError::Conflict(format!(
            "the journal is no longer at size {from_size}: another sequencer extended it"
        ))
    };
    let entries: Vec<EntryRow<'_>> = batch
        .entries
        .iter()
        .map(|e| {
            Ok((
                to_i64(e.index)?,
                e.leaf.as_slice(),
                e.leaf_hash.as_slice(),
                e.subject.as_deref(),
                e.mac.as_ref().map(|m| m.as_slice()),
            ))
        })
        .collect::<Result<_>>()?;
    let nodes: Vec<(i64, &[u8])> = batch
        .nodes
        .iter()
        .map(|(p, h)| Ok((to_i64(*p)?, h.as_slice())))
        .collect::<Result<_>>()?;
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .map_err(StoreError::from_runtime)?;
    for chunk in chunks(&entries) {
        let sql = format!(
            "INSERT INTO journal_entries (idx, leaf, leaf_hash, subject, mac) VALUES {}",
            values(chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql);
        for (idx, leaf, leaf_hash, subject, mac) in chunk {
            q = q
                .bind(*idx)
                .bind(*leaf)
                .bind(*leaf_hash)
                .bind(*subject)
                .bind(*mac);
        }
        q.execute(&mut *tx).await.map_err(|e| {
            if crate::error::is_unique_violation(&e) {
                conflict()
            } else {
                StoreError::from_runtime(e)
            }
        })?;
    }
    for chunk in chunks(&nodes) {
        let sql = format!(
            "INSERT INTO journal_nodes (pos, hash) VALUES {}",
            values(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (pos, hash) in chunk {
            q = q.bind(*pos).bind(*hash);
        }
        q.execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
    }
    for (lo, hi) in runs(&batch.seqs) {
        sqlx::query("DELETE FROM journal_queue WHERE seq >= $1 AND seq <= $2")
            .bind(lo)
            .bind(hi)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
    }
    tx.commit().await.map_err(StoreError::from_runtime)
}
