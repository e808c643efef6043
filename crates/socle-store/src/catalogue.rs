//! Catalogue tables: organisations, data items, APIs and their versions' OpenAPI
//! documents, stored as JSON documents owned by `socle-catalogue`.

use crate::error::StoreError;
use crate::{Backend, Result, Store, on_pool};

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
    /// Inserts or replaces an organisation or data item.
    fn put_catalogue_doc(
        &self,
        kind: CatalogueKind,
        key: &str,
        doc: &str,
        now: i64,
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
    /// once per version), in one transaction.
    fn put_api(&self, api: &ApiRecord<'_>, now: i64) -> impl Future<Output = Result<()>> + Send;
    fn api(&self, id: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn apis(&self) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// The versions recorded for an API, oldest first.
    fn api_versions(&self, id: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
}

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_runtime(e)
}

impl CatalogueStore for Store {
    async fn put_catalogue_doc(
        &self,
        kind: CatalogueKind,
        key: &str,
        doc: &str,
        now: i64,
    ) -> Result<()> {
        let (table, column) = kind.table();
        let sql = format!(
            "INSERT INTO {table} ({column}, doc, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT ({column}) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at"
        );
        on_pool!(self, |pool| {
            sqlx::query(&sql)
                .bind(key)
                .bind(doc)
                .bind(now)
                .execute(pool)
                .await
                .map_err(err)?
                .rows_affected()
        });
        Ok(())
    }

    async fn catalogue_doc(&self, kind: CatalogueKind, key: &str) -> Result<Option<String>> {
        let (table, column) = kind.table();
        let sql = format!("SELECT doc FROM {table} WHERE {column} = $1");
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(|r| r.0))
    }

    async fn catalogue_docs(&self, kind: CatalogueKind) -> Result<Vec<String>> {
        let (table, column) = kind.table();
        let sql = format!("SELECT doc FROM {table} ORDER BY {column}");
        let rows: Vec<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(&sql).fetch_all(pool).await.map_err(err)?
        });
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn put_api(&self, api: &ApiRecord<'_>, now: i64) -> Result<()> {
        let ApiRecord {
            id,
            organisation,
            doc,
            version,
            openapi,
        } = *api;
        macro_rules! write {
            ($pool:ident) => {{
                let mut tx = $pool.begin().await.map_err(err)?;
                sqlx::query(
                    "INSERT INTO catalogue_apis (id, organisation, doc, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET organisation = excluded.organisation, \
                     doc = excluded.doc, updated_at = excluded.updated_at",
                )
                .bind(id)
                .bind(organisation)
                .bind(doc)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::Conflict(
                        format!("organisation {organisation} is not registered"),
                    ),
                    other => err(other),
                })?;
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
                .await
                .map_err(err)?;
                tx.commit().await.map_err(err)
            }};
        }
        match &self.backend {
            Backend::Sqlite(pool) => write!(pool),
            Backend::Postgres(pool) => write!(pool),
        }
    }

    async fn api(&self, id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT doc FROM catalogue_apis WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(|r| r.0))
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
    fn insert_user(
        &self,
        email: &str,
        doc: &str,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn user(&self, email: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn insert_user_token(
        &self,
        token_hash: &str,
        email: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The e-mail of a live token's user.
    fn user_by_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
    fn insert_habilitation(
        &self,
        h: &HabilitationRow<'_>,
        now: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn habilitation(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredHabilitation>>> + Send;
    /// Replaces the document if its version is still `expected`; false otherwise.
    fn update_habilitation(
        &self,
        h: &HabilitationRow<'_>,
        expected: i64,
        now: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
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

impl BackOfficeStore for Store {
    async fn insert_user(&self, email: &str, doc: &str, now: i64) -> Result<()> {
        let r = on_pool!(self, |pool| {
            sqlx::query("INSERT INTO catalogue_users (email, doc, created_at) VALUES ($1, $2, $3)")
                .bind(email)
                .bind(doc)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(StoreError::Conflict(
                format!("an account {email} already exists"),
            )),
            Err(e) => Err(err(e)),
        }
    }

    async fn user(&self, email: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT doc FROM catalogue_users WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await
                .map_err(err)?
        });
        Ok(row.map(|r| r.0))
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

    async fn insert_habilitation(&self, h: &HabilitationRow<'_>, now: i64) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO catalogue_habilitations (id, requester, producer, api_id, state, doc, \
                 version, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)",
            )
            .bind(h.id)
            .bind(h.requester)
            .bind(h.producer)
            .bind(h.api_id)
            .bind(h.state)
            .bind(h.doc)
            .bind(now)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        });
        Ok(())
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

    async fn update_habilitation(
        &self,
        h: &HabilitationRow<'_>,
        expected: i64,
        now: i64,
    ) -> Result<bool> {
        let n = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE catalogue_habilitations SET state = $1, doc = $2, version = version + 1, \
                 updated_at = $3 WHERE id = $4 AND version = $5",
            )
            .bind(h.state)
            .bind(h.doc)
            .bind(now)
            .bind(h.id)
            .bind(expected)
            .execute(pool)
            .await
            .map_err(err)?
            .rows_affected()
        });
        Ok(n == 1)
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
