//! Catalogue tables: organisations, data items, APIs and their versions' OpenAPI
//! documents, stored as JSON documents owned by `socle-catalogue`.

use crate::error::{StoreError, err};
use crate::{Backend, Journaled, Result, Store, journaled, on_pool};

/// Which catalogue table a document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogueKind {
    Organisation,
    DataItem,
}

impl CatalogueKind {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            CatalogueKind::Organisation => ("catalogue_organisations", "siret"),
            CatalogueKind::DataItem => ("catalogue_data_items", "id"),
        }
    }
}

/// An API as written: its record and the OpenAPI document of its version.
#[derive(Debug, Clone, Copy)]
pub struct ApiRecord<'a> {
    pub id: &'a str,
    pub organisation: &'a str,
    pub doc: &'a str,
    pub version: &'a str,
    pub openapi: &'a str,
}

/// Persistence of the catalogue, in its own terms.
pub trait CatalogueStore {
    /// Inserts or replaces an organisation or data item, with the journal entries
    /// recording it, in one transaction.
    fn put_catalogue_doc(
        &self,
        kind: CatalogueKind,
        key: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn catalogue_doc(
        &self,
        kind: CatalogueKind,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    fn catalogue_docs(
        &self,
        kind: CatalogueKind,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Inserts or replaces an API and records its version's OpenAPI document (kept
    /// once per version), with the journal entries recording it, in one transaction.
    fn put_api(
        &self,
        api: &ApiRecord<'_>,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn api(&self, id: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn apis(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The versions recorded for an API, oldest first.
    fn api_versions(&self, id: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
}

impl CatalogueStore for Store {
    async fn put_catalogue_doc(
        &self,
        kind: CatalogueKind,
        key: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<()> {
        let (table, column) = kind.table();
        let sql = format!(
            "INSERT INTO {table} ({column}, doc, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT ({column}) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at"
        );
        journaled!(self, journal, |tx| {
            sqlx::query(&sql)
                .bind(key)
                .bind(doc)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        })
        .map_err(err)?;
        Ok(())
    }

    async fn catalogue_doc(&self, kind: CatalogueKind, key: &str) -> Result<Option<String>> {
        let (table, column) = kind.table();
        self.one_text(&format!("SELECT doc FROM {table} WHERE {column} = $1"), key)
            .await
    }

    async fn catalogue_docs(&self, kind: CatalogueKind) -> Result<Vec<String>> {
        let (table, column) = kind.table();
        let sql = format!("SELECT doc FROM {table} ORDER BY {column}");
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(&sql).fetch_all(pool).await.map_err(err)?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn put_api(&self, api: &ApiRecord<'_>, now: i64, journal: Journaled<'_>) -> Result<()> {
        let ApiRecord {
            id,
            organisation,
            doc,
            version,
            openapi,
        } = *api;
        let written = journaled!(self, journal, |tx| {
            // An API stays with the organisation that published it: the update applies
            // only to the same organisation's record, in the same statement (two
            // publications at once cannot take it over).
            let written = sqlx::query(
                "INSERT INTO catalogue_apis (id, organisation, doc, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, \
                 updated_at = excluded.updated_at \
                 WHERE catalogue_apis.organisation = excluded.organisation",
            )
            .bind(id)
            .bind(organisation)
            .bind(doc)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO catalogue_api_versions (api_id, version, openapi, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (api_id, version) DO UPDATE SET \
                 openapi = excluded.openapi",
            )
            .bind(id)
            .bind(version)
            .bind(openapi)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            true
        })
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::Conflict(format!("organisation {organisation} is not registered"))
            }
            other => err(other),
        })?;
        if !written {
            return Err(StoreError::Conflict(format!(
                "the API {id} is published by another organisation"
            )));
        }
        Ok(())
    }

    async fn api(&self, id: &str) -> Result<Option<String>> {
        self.one_text("SELECT doc FROM catalogue_apis WHERE id = $1", id)
            .await
    }

    async fn apis(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT doc FROM catalogue_apis ORDER BY id")
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn api_versions(&self, id: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT version FROM catalogue_api_versions WHERE api_id = $1 ORDER BY created_at, version",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(err)?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

/// A stored habilitation: its document and the version guarding updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHabilitation {
    pub doc: String,
    pub version: i64,
}

/// Back-office accounts and habilitation requests.
pub trait BackOfficeStore {
    /// Creates an account, with the journal entries recording it, in one transaction.
    fn insert_user(
        &self,
        email: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn user(&self, email: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn insert_user_token(
        &self,
        token_hash: &str,
        email: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_user_token(&self, token_hash: &str) -> impl Future<Output = Result<()>> + Send;
    /// The e-mail of a live token's user.
    fn user_by_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Writes changes to habilitation requests and what they cause, in **one**
    /// transaction: all of it or nothing. False (nothing written) when an update's
    /// stored version is no longer the expected one.
    fn commit_habilitations(
        &self,
        c: &HabilitationCommit<'_>,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn habilitation(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredHabilitation>>> + Send;
    /// Requests where `organisation` is the requester or the producer (all with `None`).
    fn habilitations(
        &self,
        organisation: Option<&str>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// A habilitation as written.
#[derive(Debug, Clone, Copy)]
pub struct HabilitationRow<'a> {
    pub id: &'a str,
    pub requester: &'a str,
    pub producer: &'a str,
    pub api_id: &'a str,
    pub state: &'a str,
    pub doc: &'a str,
}

/// A unit of change of the back office: new and changed requests (each change applied
/// only if the stored version is still the expected one), with their journal entries —
/// written to the journal's durable queue, which the running sequencer integrates
/// within a fraction of a second — and the webhook deliveries and e-mails they cause.
/// No state change without its entry, no entry without its change.
#[derive(Debug, Default)]
pub struct HabilitationCommit<'a> {
    pub inserts: Vec<HabilitationRow<'a>>,
    pub updates: Vec<(HabilitationRow<'a>, i64)>,
    /// Encoded journal leaves and their subjects (`socle_journal::encode`).
    pub journal: Vec<(Vec<u8>, Option<String>)>,
    pub deliveries: Vec<StoredDelivery>,
    pub mails: Vec<NewMail>,
    /// Identity clients the step creates or changes (an integration request validated,
    /// revoked, its secret issued): written in the same transaction.
    pub clients: Vec<ClientWrite>,
}

/// An identity client written by a back-office step: inserted when `expected` is
/// `None`, else replaced only if its stored document is still `expected` (a change
/// meanwhile makes the whole step write nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientWrite {
    pub client_id: String,
    pub doc: String,
    /// The stored document and `disabled` flag read (an operator's disabling, meanwhile,
    /// is a change too).
    pub expected: Option<(String, bool)>,
    pub disabled: bool,
}

/// An e-mail for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

const INSERT_HABILITATION: &str = "INSERT INTO catalogue_habilitations (id, requester, producer, \
     api_id, state, doc, version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)";
const UPDATE_HABILITATION: &str = "UPDATE catalogue_habilitations SET state = $1, doc = $2, \
     version = version + 1, updated_at = $3 WHERE id = $4 AND version = $5";
pub(crate) const INSERT_DELIVERY: &str = "INSERT INTO catalogue_deliveries (id, webhook_id, event, body, \
     state, attempts, next_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7)";
pub(crate) const INSERT_MAIL: &str = "INSERT INTO catalogue_outbox (id, recipient, subject, body, \
     created_at) VALUES ($1, $2, $3, $4, $5)";

impl BackOfficeStore for Store {
    async fn insert_user(
        &self,
        email: &str,
        doc: &str,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<()> {
        let r = journaled!(self, journal, |tx| {
            sqlx::query("INSERT INTO catalogue_users (email, doc, created_at) VALUES ($1, $2, $3)")
                .bind(email)
                .bind(doc)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        r.map(|_| ()).map_err(|e| {
            StoreError::unique_or_runtime(e, || format!("an account {email} already exists"))
        })
    }

    async fn user(&self, email: &str) -> Result<Option<String>> {
        self.one_text("SELECT doc FROM catalogue_users WHERE email = $1", email)
            .await
    }

    async fn insert_user_token(
        &self,
        token_hash: &str,
        email: &str,
        expires_at: i64,
    ) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO catalogue_user_tokens (token_hash, email, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(token_hash)
            .bind(email)
            .bind(expires_at)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        });
        Ok(())
    }

    async fn delete_user_token(&self, token_hash: &str) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("DELETE FROM catalogue_user_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await
                .map_err(err)?
                .rows_affected()
        });
        Ok(())
    }

    async fn user_by_token(&self, token_hash: &str, now: i64) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT email FROM catalogue_user_tokens WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(|r| r.0))
    }

    async fn commit_habilitations(&self, c: &HabilitationCommit<'_>, now: i64) -> Result<bool> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await.map_err(err)?;
            for h in &c.inserts {
                sqlx::query(INSERT_HABILITATION)
                    .bind(h.id)
                    .bind(h.requester)
                    .bind(h.producer)
                    .bind(h.api_id)
                    .bind(h.state)
                    .bind(h.doc)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            for (h, expected) in &c.updates {
                let n = sqlx::query(UPDATE_HABILITATION)
                    .bind(h.state)
                    .bind(h.doc)
                    .bind(now)
                    .bind(h.id)
                    .bind(*expected)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected();
                if n != 1 {
                    tx.rollback().await.map_err(err)?;
                    return Ok(false);
                }
            }
            for w in &c.clients {
                let n = match &w.expected {
                    None => sqlx::query(
                        "INSERT INTO oidc_clients (client_id, doc, disabled, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $4)",
                    )
                    .bind(&w.client_id)
                    .bind(&w.doc)
                    .bind(i64::from(w.disabled))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?,
                    Some((expected, was_disabled)) => sqlx::query(
                        "UPDATE oidc_clients SET doc = $1, disabled = $2, updated_at = $3 \
                         WHERE client_id = $4 AND doc = $5 AND disabled = $6",
                    )
                    .bind(&w.doc)
                    .bind(i64::from(w.disabled))
                    .bind(now)
                    .bind(&w.client_id)
                    .bind(expected)
                    .bind(i64::from(*was_disabled))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?,
                }
                .rows_affected();
                if n != 1 {
                    tx.rollback().await.map_err(err)?;
                    return Ok(false);
                }
            }
            crate::queue_leaves!(self, tx, &c.journal).map_err(err)?;
            for d in &c.deliveries {
                sqlx::query(INSERT_DELIVERY)
                    .bind(&d.id)
                    .bind(&d.webhook_id)
                    .bind(&d.event)
                    .bind(&d.body)
                    .bind(&d.state)
                    .bind(d.next_at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            for m in &c.mails {
                sqlx::query(INSERT_MAIL)
                    .bind(&m.id)
                    .bind(&m.recipient)
                    .bind(&m.subject)
                    .bind(&m.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
        });
        Ok(true)
    }

    async fn habilitation(&self, id: &str) -> Result<Option<StoredHabilitation>> {
        let row: Option<(String, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT doc, CAST(version AS BIGINT) FROM catalogue_habilitations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(err)?
        });
        Ok(row.map(|(doc, version)| StoredHabilitation { doc, version }))
    }

    async fn habilitations(&self, organisation: Option<&str>) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            match organisation {
                Some(org) => sqlx::query_as(
                    "SELECT doc FROM catalogue_habilitations WHERE requester = $1 OR producer = $1 \
                     ORDER BY updated_at DESC, id",
                )
                .bind(org)
                .fetch_all(pool)
                .await
                .map_err(err)?,
                None => sqlx::query_as(
                    "SELECT doc FROM catalogue_habilitations ORDER BY updated_at DESC, id",
                )
                .fetch_all(pool)
                .await
                .map_err(err)?,
            }
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWebhook {
    pub id: String,
    pub organisation: String,
    pub url: String,
    pub secret: String,
    pub enabled: bool,
    pub failures: i64,
}

/// A delivery of an event to a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
);

fn delivery(r: DeliveryRow) -> StoredDelivery {
    StoredDelivery {
        id: r.0,
        webhook_id: r.1,
        event: r.2,
        body: r.3,
        state: r.4,
        attempts: r.5,
        next_at: r.6,
        last_status: r.7,
        last_error: r.8,
        created_at: r.9,
    }
}

type WebhookRow = (String, String, String, String, i64, i64);

fn webhook_row(r: WebhookRow) -> StoredWebhook {
    StoredWebhook {
        id: r.0,
        organisation: r.1,
        url: r.2,
        secret: r.3,
        enabled: r.4 != 0,
        failures: r.5,
    }
}

const WEBHOOK_COLUMNS: &str =
    "id, organisation, url, secret, CAST(enabled AS BIGINT), CAST(failures AS BIGINT)";

const DELIVERY_COLUMNS: &str = "id, webhook_id, event, body, state, CAST(attempts AS BIGINT), next_at, \
     CAST(last_status AS BIGINT), last_error, created_at";

/// Webhooks, deliveries and the e-mail outbox.
pub trait NotificationStore {
    /// Registers a webhook, with the journal entries recording it, in one transaction.
    fn insert_webhook(
        &self,
        w: &StoredWebhook,
        now: i64,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn webhooks(
        &self,
        organisation: &str,
    ) -> impl Future<Output = Result<Vec<StoredWebhook>>> + Send;
    fn webhook(&self, id: &str) -> impl Future<Output = Result<Option<StoredWebhook>>> + Send;
    /// Records the outcome for the webhook: `failed` counts consecutive give-ups; the
    /// webhook is disabled when `disable`.
    fn set_webhook_health(
        &self,
        id: &str,
        failures: i64,
        disable: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Pending deliveries due at `now`, oldest first.
    fn due_deliveries(
        &self,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredDelivery>>> + Send;
    fn update_delivery(
        &self,
        d: &StoredDelivery,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Takes a due delivery for one attempt: still pending, due at `now` and at the
    /// attempt count read (`seen_attempts`), its count goes up by one and it is made due
    /// again only at `until`, so that no other node (nor another loop) sends it
    /// meanwhile; false if someone else took it first. An attempt cut short (its node
    /// stopped) is counted, so retries stay bounded.
    fn claim_delivery(
        &self,
        id: &str,
        seen_attempts: i64,
        until: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn deliveries(
        &self,
        organisation: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StoredDelivery>>> + Send;
    /// `(recipient, subject, body)` of the outbox, newest first.
    fn outbox(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, String, String)>>> + Send;
}

impl NotificationStore for Store {
    async fn insert_webhook(
        &self,
        w: &StoredWebhook,
        now: i64,
        journal: Journaled<'_>,
    ) -> Result<()> {
        journaled!(self, journal, |tx| {
            sqlx::query(
                "INSERT INTO catalogue_webhooks (id, organisation, url, secret, enabled, failures, created_at) \
                 VALUES ($1, $2, $3, $4, 1, 0, $5)",
            )
            .bind(&w.id)
            .bind(&w.organisation)
            .bind(&w.url)
            .bind(&w.secret)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        })
        .map_err(err)?;
        Ok(())
    }

    async fn webhooks(&self, organisation: &str) -> Result<Vec<StoredWebhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM catalogue_webhooks WHERE organisation = $1 \
             ORDER BY created_at, id"
        );
        let rows: Vec<WebhookRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(organisation)
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows.into_iter().map(webhook_row).collect())
    }

    async fn webhook(&self, id: &str) -> Result<Option<StoredWebhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM catalogue_webhooks WHERE id = $1");
        let row: Option<WebhookRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(webhook_row))
    }

    async fn set_webhook_health(&self, id: &str, failures: i64, disable: bool) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE catalogue_webhooks SET failures = $1, \
                 enabled = CASE WHEN $2 = 1 THEN 0 ELSE enabled END WHERE id = $3",
            )
            .bind(failures)
            .bind(i64::from(disable))
            .bind(id)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        });
        Ok(())
    }

    async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<StoredDelivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM catalogue_deliveries \
             WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2"
        );
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows.into_iter().map(delivery).collect())
    }

    async fn update_delivery(&self, d: &StoredDelivery, now: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE catalogue_deliveries SET state = $1, attempts = $2, next_at = $3, last_status = $4, \
                 last_error = $5, updated_at = $6 WHERE id = $7",
            )
            .bind(&d.state)
            .bind(d.attempts)
            .bind(d.next_at)
            .bind(d.last_status)
            .bind(&d.last_error)
            .bind(now)
            .bind(&d.id)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        });
        Ok(())
    }

    async fn claim_delivery(
        &self,
        id: &str,
        seen_attempts: i64,
        until: i64,
        now: i64,
    ) -> Result<bool> {
        crate::backchannel::claim_outbox_row(
            self,
            "catalogue_deliveries",
            id,
            seen_attempts,
            until,
            now,
        )
        .await
    }

    async fn deliveries(&self, organisation: &str, limit: i64) -> Result<Vec<StoredDelivery>> {
        let sql = format!(
            "SELECT {} FROM catalogue_deliveries d JOIN catalogue_webhooks w ON w.id = d.webhook_id \
             WHERE w.organisation = $1 ORDER BY d.created_at DESC, d.id LIMIT $2",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| if c.starts_with("CAST(") {
                    c.replacen("CAST(", "CAST(d.", 1)
                } else {
                    format!("d.{c}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(organisation)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(err)?
        });
        Ok(rows.into_iter().map(delivery).collect())
    }

    async fn outbox(&self, limit: i64) -> Result<Vec<(String, String, String)>> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT recipient, subject, body FROM catalogue_outbox ORDER BY created_at DESC, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(err)?
        }))
    }
}
