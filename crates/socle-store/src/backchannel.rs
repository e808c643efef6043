//! The outbox of back-channel logout tokens (`oidc_backchannel`): rows queued when a
//! browser session ends, taken by whichever node advances a due row's attempts first,
//! and marked delivered or failed. What the token says is the identity crate's.

use crate::error::StoreError;
use crate::{Backend, Result, Store, on_pool};

/// A logout owed to a service, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackchannel {
    /// Also the token's `jti`.
    pub id: String,
    pub client_id: String,
    /// What the token will say, as JSON.
    pub doc: String,
}

/// A queued logout and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBackchannel {
    pub id: String,
    pub client_id: String,
    pub doc: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
}

type Row = (String, String, String, String, i64, i64, Option<String>);

const COLUMNS: &str = "id, client_id, doc, state, attempts, next_at, last_error";

fn row((id, client_id, doc, state, attempts, next_at, last_error): Row) -> StoredBackchannel {
    StoredBackchannel {
        id,
        client_id,
        doc,
        state,
        attempts,
        next_at,
        last_error,
    }
}

impl Store {
    /// Queues logouts, due at once, in one transaction.
    pub async fn queue_backchannel(&self, rows: &[NewBackchannel], now: i64) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool| {
            async {
                let mut tx = pool.begin().await?;
                for r in rows {
                    sqlx::query(
                        "INSERT INTO oidc_backchannel (id, client_id, doc, state, attempts, next_at, \
                         created_at, updated_at) VALUES ($1, $2, $3, 'pending', 0, $4, $4, $4)",
                    )
                    .bind(&r.id)
                    .bind(&r.client_id)
                    .bind(&r.doc)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            }
            .await
            .map_err(StoreError::from_runtime)
        })
    }

    /// Pending logouts due by `now`, oldest first, at most `limit`.
    pub async fn due_backchannel(&self, now: i64, limit: i64) -> Result<Vec<StoredBackchannel>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM oidc_backchannel WHERE state = 'pending' AND next_at <= $1 \
             ORDER BY next_at, id LIMIT $2"
        );
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    /// The logouts queued for `client_id`, newest first (operators, tests).
    pub async fn backchannel_of(&self, client_id: &str) -> Result<Vec<StoredBackchannel>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM oidc_backchannel WHERE client_id = $1 \
             ORDER BY created_at DESC, id"
        );
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(client_id)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    /// Takes a due logout for one attempt: true when this caller advanced its attempts
    /// from `seen_attempts` (no other node or loop is sending it), and it is not due
    /// again before `until`.
    pub async fn claim_backchannel(
        &self,
        id: &str,
        seen_attempts: i64,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        claim_outbox_row(self, "oidc_backchannel", id, seen_attempts, until, now).await
    }

    /// Records the outcome of the attempt `b.attempts` (state, next time, last error),
    /// unless another attempt was made since (a node that outlived its claim).
    pub async fn update_backchannel(&self, b: &StoredBackchannel, now: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE oidc_backchannel SET state = $1, next_at = $2, last_error = $3, \
                 updated_at = $4 WHERE id = $5 AND attempts = $6",
            )
            .bind(&b.state)
            .bind(b.next_at)
            .bind(&b.last_error)
            .bind(now)
            .bind(&b.id)
            .bind(b.attempts)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(StoreError::from_runtime)
        })
    }

    /// Removes the logouts delivered or given up before `before` (they name a person's
    /// pairwise subject and session); returns how many.
    pub async fn purge_backchannel(&self, before: i64) -> Result<u64> {
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM oidc_backchannel WHERE state <> 'pending' AND updated_at < $1")
                .bind(before)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(StoreError::from_runtime)
        })
    }
}

/// Takes a pending, due row of an outbox table (`id`, `state`, `attempts`, `next_at`,
/// `updated_at`) for one attempt: true when this caller advanced its attempts from
/// `seen_attempts`, so that one node or loop at a time sends it; it is not due again
/// before `until`.
pub(crate) async fn claim_outbox_row(
    store: &Store,
    table: &'static str,
    id: &str,
    seen_attempts: i64,
    until: i64,
    now: i64,
) -> Result<bool> {
    let sql = format!(
        "UPDATE {table} SET attempts = attempts + 1, next_at = $1, updated_at = $2 \
         WHERE id = $3 AND state = 'pending' AND attempts = $4 AND next_at <= $2"
    );
    let n = on_pool!(store, |pool| {
        sqlx::query(&sql)
            .bind(until)
            .bind(now)
            .bind(id)
            .bind(seen_attempts)
            .execute(pool)
            .await
            .map_err(StoreError::from_runtime)?
            .rows_affected()
    });
    Ok(n == 1)
}
