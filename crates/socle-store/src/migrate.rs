//! Embedded, ordered migrations, one list per dialect: `migrations/sqlite/` and
//! `migrations/postgres/`, or `migrations/common/` when both dialects take the same
//! SQL.
//!
//! Each migration runs in its own transaction together with the row that records it,
//! so a crash leaves the schema at a known version. On PostgreSQL an advisory lock
//! serialises nodes that start at the same time.

use sqlx::Connection;

use crate::error::StoreError;
use crate::{Backend, Result, Store};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $name, ".sql")),
        }
    };
    ($version:expr, $name:literal, common) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/common/", $name, ".sql")),
            postgres: include_str!(concat!("../migrations/common/", $name, ".sql")),
        }
    };
}

impl Migration {
    /// The error of this migration's SQL, for the operator.
    fn failed(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| StoreError::Migration {
            version: self.version,
            name: self.name,
            reason: e.to_string(),
        }
    }
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_instance"),
    migration!(2, "0002_journal"),
    migration!(3, "0003_identity", common),
    migration!(4, "0004_catalogue", common),
    migration!(5, "0005_gateway", common),
    migration!(6, "0006_logins_file"),
    migration!(7, "0007_journal_log_syncs"),
    migration!(8, "0008_one_active_consent", common),
    migration!(9, "0009_interactions_by_session"),
    migration!(10, "0010_logout_hints"),
    migration!(11, "0011_journal_macs"),
    migration!(12, "0012_backchannel_logout"),
    migration!(13, "0013_integration_requests"),
    migration!(14, "0014_contests", common),
    migration!(15, "0015_digests", common),
];

/// The schema version this binary writes and expects.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Key of the PostgreSQL advisory lock held while migrating ("socle" + 1).
const PG_MIGRATION_LOCK: i64 = 0x736f_636c_6501;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS socle_schema (\
     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// Where the database's schema stands relative to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Highest migration applied to the database (0 for an empty database).
    pub current: i64,
    /// Highest migration this binary knows.
    pub latest: i64,
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        self.current == self.latest
    }
}

impl Store {
    /// Reads the schema version without changing anything.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let current: i64 = match &self.backend {
            Backend::Sqlite(pool) => {
                let exists: Option<(String,)> = sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'socle_schema'",
                )
                .fetch_optional(pool)
                .await
                .map_err(StoreError::from_runtime)?;
                if exists.is_none() {
                    0
                } else {
                    let (v,): (Option<i64>,) =
                        sqlx::query_as("SELECT MAX(version) FROM socle_schema")
                            .fetch_one(pool)
                            .await
                            .map_err(StoreError::from_runtime)?;
                    v.unwrap_or(0)
                }
            }
            Backend::Postgres(pool) => {
                let (exists,): (bool,) =
                    sqlx::query_as("SELECT to_regclass('socle_schema') IS NOT NULL")
                        .fetch_one(pool)
                        .await
                        .map_err(StoreError::from_runtime)?;
                if !exists {
                    0
                } else {
                    let (v,): (Option<i32>,) =
                        sqlx::query_as("SELECT MAX(version) FROM socle_schema")
                            .fetch_one(pool)
                            .await
                            .map_err(StoreError::from_runtime)?;
                    i64::from(v.unwrap_or(0))
                }
            }
        };
        Ok(SchemaStatus {
            current,
            latest: LATEST_SCHEMA_VERSION,
        })
    }

    /// Applies every pending migration. Returns the versions applied now (empty when
    /// the schema was already current). Refuses a database newer than this binary.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let mut conn = pool.acquire().await.map_err(StoreError::from_runtime)?;
                migrate_sqlite(&mut conn).await
            }
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await.map_err(StoreError::from_runtime)?;
                migrate_postgres(&mut conn).await
            }
        }
    }
}

fn check_not_newer(current: i64) -> Result<()> {
    if current > LATEST_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known: LATEST_SCHEMA_VERSION,
        });
    }
    Ok(())
}

async fn migrate_sqlite(conn: &mut sqlx::SqliteConnection) -> Result<Vec<i64>> {
    sqlx::query(CREATE_TABLE)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from_runtime)?;
    let mut applied = Vec::new();
    loop {
        // BEGIN IMMEDIATE takes the write lock before reading the version, so two
        // processes cannot both apply the same migration.
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_runtime)?;
        let step = async {
            let (v,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM socle_schema")
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::from_runtime)?;
            let current = v.unwrap_or(0);
            check_not_newer(current)?;
            let Some(m) = MIGRATIONS.iter().find(|m| m.version == current + 1) else {
                return Ok(None);
            };
            sqlx::raw_sql(m.sqlite)
                .execute(&mut *conn)
                .await
                .map_err(m.failed())?;
            sqlx::query("INSERT INTO socle_schema (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(crate::open::now_rfc3339())
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_runtime)?;
            Ok(Some(m.version))
        }
        .await;
        match step {
            Ok(Some(version)) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from_runtime)?;
                tracing::info!(version, "applied migration");
                applied.push(version);
            }
            Ok(None) => {
                sqlx::query("COMMIT")
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from_runtime)?;
                return Ok(applied);
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e);
            }
        }
    }
}

async fn migrate_postgres(conn: &mut sqlx::PgConnection) -> Result<Vec<i64>> {
    let mut applied = Vec::new();
    loop {
        let mut tx = conn.begin().await.map_err(StoreError::from_runtime)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
        sqlx::query(CREATE_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
        let (v,): (Option<i32>,) = sqlx::query_as("SELECT MAX(version) FROM socle_schema")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
        let current = i64::from(v.unwrap_or(0));
        check_not_newer(current)?;
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == current + 1) else {
            tx.commit().await.map_err(StoreError::from_runtime)?;
            return Ok(applied);
        };
        sqlx::raw_sql(m.postgres)
            .execute(&mut *tx)
            .await
            .map_err(m.failed())?;
        sqlx::query("INSERT INTO socle_schema (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(i32::try_from(m.version).unwrap_or(i32::MAX))
            .bind(m.name)
            .bind(crate::open::now_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_runtime)?;
        tx.commit().await.map_err(StoreError::from_runtime)?;
        tracing::info!(version = m.version, "applied migration");
        applied.push(m.version);
    }
}

/// Test support: marks the database as written by a future binary.
#[doc(hidden)]
impl Store {
    #[cfg(feature = "test-hooks")]
    pub async fn __test_bump_schema(&self, version: i64) -> Result<()> {
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        crate::on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO socle_schema (version, name, applied_at) VALUES ($1, 'future', '')",
            )
            .bind(version)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(StoreError::from_runtime)
    }

    /// Test support: the database as an older binary left it (its schema row for
    /// `version` removed; the tables stay).
    #[cfg(feature = "test-hooks")]
    pub async fn __test_forget_migration(&self, version: i64) -> Result<()> {
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        crate::on_pool!(self, |pool| {
            sqlx::query("DELETE FROM socle_schema WHERE version = $1")
                .bind(version)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(StoreError::from_runtime)
    }
}
