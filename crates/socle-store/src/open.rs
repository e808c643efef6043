//! Opening the pools, with the operator-facing error messages the CLI prints.

use std::path::Path;
use std::str::FromStr;

use rand::RngCore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};

use crate::error::{StoreError, io_reason};
use crate::{Result, StoreOptions};

/// Creates the directories missing on the way to `dir`, readable by this account only
/// (the database holds the journal's signing key and pseudonym secret).
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens `path` for reading and writing, creating it readable by this account only
/// (SQLite gives its `-wal` and `-shm` files the database file's mode).
pub(crate) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

pub(crate) async fn sqlite(path: &Path, options: &StoreOptions) -> Result<SqlitePool> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir).map_err(|e| StoreError::CreateDir {
            path: dir.display().to_string(),
            reason: io_reason(&e),
        })?;
    }
    // Open the file ourselves first: SQLite only says "unable to open database file",
    // the operating system says why.
    private_file(path).map_err(|e| StoreError::Open {
        path: shown.clone(),
        reason: io_reason(&e),
    })?;

    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk when it returns, so an acknowledged write survives
        // a crash of the process or of the machine.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // 16 MiB of page cache per connection (the default is 2 MiB).
        .pragma("cache_size", "-16000")
        // Reads through a memory map: proofs touch a few dozen random pages.
        .pragma("mmap_size", "1073741824")
        .busy_timeout(std::time::Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) => StoreError::Open {
                path: shown.clone(),
                reason: db.message().to_lowercase(),
            },
            sqlx::Error::Io(io) => StoreError::Open {
                path: shown.clone(),
                reason: io_reason(&io),
            },
            other => StoreError::Open {
                path: shown.clone(),
                reason: other.to_string(),
            },
        })
}

/// A second pool on the same database for the ephemeral records of logins in progress
/// (browser sessions, interactions, codes, tokens): `synchronous_commit = off` on its
/// connections (a commit may be lost with the server, never half-applied), which costs
/// the people concerned one new login. On SQLite those records have a file of their own
/// (`crate::logins_path`, `direct::Writer::open_logins`).
pub(crate) fn postgres_ephemeral(url: &str, options: &StoreOptions) -> Result<PgPool> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl(redact_url_error(&e.to_string(), url)))?;
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET synchronous_commit = off").await?;
                Ok(())
            })
        })
        .connect_lazy_with(connect))
}

pub(crate) async fn postgres(url: &str, options: &StoreOptions) -> Result<PgPool> {
    let target = describe_postgres_target(url)?;
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl(redact_url_error(&e.to_string(), url)))?;
    // One direct attempt first: the pool retries until its timeout and then reports
    // only "timed out", while the operator needs the first real reason.
    let probe = tokio::time::timeout(
        options.acquire_timeout,
        PgConnection::connect_with(&connect),
    )
    .await
    .map_err(|_| StoreError::Connect {
        target: target.clone(),
        reason: format!(
            "no answer within {} ms",
            options.acquire_timeout.as_millis()
        ),
    })?
    .map_err(|e| postgres_connect_error(&target, e))?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| postgres_connect_error(&target, e))
}

fn postgres_connect_error(target: &str, e: sqlx::Error) -> StoreError {
    let target = target.to_string();
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            StoreError::Refused { target }
        }
        sqlx::Error::Io(io) => StoreError::Connect {
            target,
            reason: io_reason(&io),
        },
        sqlx::Error::PoolTimedOut => StoreError::Connect {
            target,
            reason: "no answer within the acquire timeout".into(),
        },
        sqlx::Error::Database(db) => {
            let reason = match db.code().as_deref() {
                Some("3D000") => format!("the database does not exist ({})", db.message()),
                Some("28P01") | Some("28000") => {
                    format!("authentication failed ({})", db.message())
                }
                _ => db.message().to_string(),
            };
            StoreError::Connect { target, reason }
        }
        other => StoreError::Connect {
            target,
            reason: other.to_string(),
        },
    }
}

/// `host:port/dbname`, never the user's password.
pub(crate) fn describe_postgres_target(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).map_err(|e| {
        StoreError::InvalidUrl(format!("{e} (expected postgres://user@host:port/database)"))
    })?;
    if parsed.scheme() != "postgres" && parsed.scheme() != "postgresql" {
        return Err(StoreError::InvalidUrl(format!(
            "scheme {:?} is not postgres:// (use database.url = \"postgres://…\", or leave it \
             unset for the embedded SQLite store)",
            parsed.scheme()
        )));
    }
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5432);
    let db = parsed.path().trim_start_matches('/');
    Ok(if db.is_empty() {
        format!("{host}:{port}")
    } else {
        format!("{host}:{port}/{db}")
    })
}

fn redact_url_error(message: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(pw) if !pw.is_empty() => message.replace(&pw, "***"),
        _ => message.to_string(),
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_hides_password() {
        let t = describe_postgres_target("postgres://u:secret@db.example:6543/socle").unwrap();
        assert_eq!(t, "db.example:6543/socle");
        assert!(describe_postgres_target("mysql://x").is_err());
    }
}
