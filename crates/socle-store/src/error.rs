use std::io;

/// Everything that can go wrong in the store, phrased for the operator who reads it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {reason}")]
    CreateDir { path: String, reason: String },
    #[error("cannot open database at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("PostgreSQL at {target} refused the connection")]
    Refused { target: String },
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error(
        "database schema is newer than this binary (database at version {found}, this binary \
         knows up to {known}): run a newer socle"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration {
        version: i64,
        name: &'static str,
        reason: String,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Maps an error met while serving (not while opening) to a variant: connectivity
    /// problems become [`StoreError::Unavailable`], the rest [`StoreError::Database`].
    /// A write's error: [`StoreError::Conflict`] with `what` when it broke a
    /// uniqueness rule (the row exists already), else as [`StoreError::from_runtime`].
    pub(crate) fn unique_or_runtime(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
        if is_unique_violation(&e) {
            StoreError::Conflict(what())
        } else {
            StoreError::from_runtime(e)
        }
    }

    pub(crate) fn from_runtime(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::PoolTimedOut => {
                StoreError::Unavailable("no database connection within the acquire timeout".into())
            }
            sqlx::Error::PoolClosed => StoreError::Unavailable("the store is closed".into()),
            sqlx::Error::Io(io) => StoreError::Unavailable(io_reason(&io)),
            sqlx::Error::Tls(t) => StoreError::Unavailable(format!("TLS: {t}")),
            other => StoreError::Database(other.to_string()),
        }
    }

    /// True when the database could not be reached, as opposed to refusing a query.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Refused { .. }
        )
    }
}

/// A short, lower-case reason for an I/O error, without the OS error number.
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::NotADirectory => "a parent path is not a directory".into(),
        io::ErrorKind::IsADirectory => "it is a directory".into(),
        io::ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        io::ErrorKind::StorageFull => "no space left on device".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => {
            let text = e.to_string();
            // "Permission denied (os error 13)" -> "permission denied"
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            text.to_lowercase()
        }
    }
}

/// Whether a statement broke a uniqueness rule (a primary key, a unique index), on
/// either backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A driver error in the store's own terms (`map_err(err)`).
pub(crate) fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_runtime(e)
}
