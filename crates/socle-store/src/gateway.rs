//! Gateway tables: the validated habilitations the hot path is built from, daily quota
//! counters, and people's consents for consent-based habilitations.

use crate::error::err;
use crate::{Backend, Journaled, Result, Store, on_pool};

/// A person's consent, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    pub id: String,
    /// The person's journal pseudonym.
    pub subject: String,
    pub habilitation_id: String,
    /// The record (service, data items, purpose…), owned by the gateway crate.
    pub doc: String,
    pub granted_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

type ConsentRow = (String, String, String, String, i64, i64, Option<i64>);

fn consent(r: ConsentRow) -> StoredConsent {
    StoredConsent {
        id: r.0,
        subject: r.1,
        habilitation_id: r.2,
        doc: r.3,
        granted_at: r.4,
        expires_at: r.5,
        revoked_at: r.6,
    }
}

const CONSENT_COLUMNS: &str =
    "id, subject, habilitation_id, doc, granted_at, expires_at, revoked_at";

/// Persistence of the gateway, in its own terms.
pub trait GatewayStore {
    /// The documents of every validated habilitation.
    fn validated_habilitations(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Adds `delta` accepted calls to a habilitation's counter for `day`; returns the
    /// counter's new total (all nodes included).
    fn add_quota_use(
        &self,
        habilitation_id: &str,
        day: &str,
        delta: i64,
    ) -> impl Future<Output = Result<i64>> + Send;
    /// Stores a new consent and, in the same transaction, revokes the person's active
    /// consent for the same habilitation (at most one is active: a unique index says
    /// so) and queues the grant's journal entries (the journal's durable queue: no
    /// consent without its entry, no entry without its consent); returns the ids of the
    /// consents it replaced.
    fn replace_consent(
        &self,
        c: &StoredConsent,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// A person's consents, newest first.
    fn consents_of(&self, subject: &str)
    -> impl Future<Output = Result<Vec<StoredConsent>>> + Send;
    /// Whether the person has an unrevoked, unexpired consent for the habilitation.
    fn active_consent(
        &self,
        subject: &str,
        habilitation_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<StoredConsent>>> + Send;
    /// Revokes one of the person's consents and, in the same transaction, queues the
    /// withdrawal's journal entries; `false` (nothing written) if there is none to
    /// revoke.
    fn revoke_consent(
        &self,
        id: &str,
        subject: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

impl GatewayStore for Store {
    async fn validated_habilitations(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT doc FROM catalogue_habilitations WHERE state = 'validated'")
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn add_quota_use(&self, habilitation_id: &str, day: &str, delta: i64) -> Result<i64> {
        let (used,): (i64,) = on_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO gateway_quotas (habilitation_id, day, used) VALUES ($1, $2, $3) \
                 ON CONFLICT (habilitation_id, day) DO UPDATE SET used = gateway_quotas.used + $3 \
                 RETURNING CAST(used AS BIGINT)",
            )
            .bind(habilitation_id)
            .bind(day)
            .bind(delta)
            .fetch_one(pool)
            .await
            .map_err(err)?
        });
        Ok(used)
    }

    async fn replace_consent(
        &self,
        c: &StoredConsent,
        journal: Journaled<'_>,
    ) -> Result<Vec<String>> {
        // Two grants at once (a double click): on PostgreSQL the second transaction's
        // insert waits for the first and then breaks the unique index; its retry sees the
        // first consent and replaces it. SQLite runs writing transactions one at a time.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let outcome = on_pool!(self, |pool| {
                async {
                    let mut tx = pool.begin().await?;
                    let replaced: Vec<(String,)> = sqlx::query_as(
                        "UPDATE consents SET revoked_at = $1 WHERE subject = $2 \
                         AND habilitation_id = $3 AND revoked_at IS NULL RETURNING id",
                    )
                    .bind(c.granted_at)
                    .bind(&c.subject)
                    .bind(&c.habilitation_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO consents (id, subject, habilitation_id, doc, granted_at, \
                         expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&c.id)
                    .bind(&c.subject)
                    .bind(&c.habilitation_id)
                    .bind(&c.doc)
                    .bind(c.granted_at)
                    .bind(c.expires_at)
                    .bind(c.revoked_at)
                    .execute(&mut *tx)
                    .await?;
                    crate::queue_leaves!(self, tx, journal)?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(replaced.into_iter().map(|r| r.0).collect())
                }
                .await
            });
            match outcome {
                Err(e) if crate::error::is_unique_violation(&e) && attempts < 3 => {}
                other => return other.map_err(err),
            }
        }
    }

    async fn consents_of(&self, subject: &str) -> Result<Vec<StoredConsent>> {
        let rows: Vec<ConsentRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = $1 \
                 ORDER BY (revoked_at IS NULL) DESC, granted_at DESC, id"
            ))
            .bind(subject)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        Ok(rows.into_iter().map(consent).collect())
    }

    async fn active_consent(
        &self,
        subject: &str,
        habilitation_id: &str,
        now: i64,
    ) -> Result<Option<StoredConsent>> {
        let row: Option<ConsentRow> = on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = $1 \
                 AND habilitation_id = $2 AND revoked_at IS NULL AND expires_at > $3 \
                 ORDER BY granted_at DESC LIMIT 1"
            ))
            .bind(subject)
            .bind(habilitation_id)
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(consent))
    }

    async fn revoke_consent(
        &self,
        id: &str,
        subject: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<bool> {
        crate::journaled!(self, journal, |tx| {
            let n = sqlx::query(
                "UPDATE consents SET revoked_at = $1 WHERE id = $2 AND subject = $3 \
                 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .bind(subject)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Ok(false);
            }
            true
        })
        .map_err(err)
    }
}

impl Store {
    /// Test support: hides the habilitations from every reader (or shows them again),
    /// as a store that cannot be read would.
    #[doc(hidden)]
    #[cfg(feature = "test-hooks")]
    pub async fn __test_hide_habilitations(&self, hidden: bool) -> Result<()> {
        let sql = if hidden {
            "ALTER TABLE catalogue_habilitations RENAME TO catalogue_habilitations_hidden"
        } else {
            "ALTER TABLE catalogue_habilitations_hidden RENAME TO catalogue_habilitations"
        };
        on_pool!(self, |pool| {
            sqlx::query(sql)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(err)
        })
    }
}
