//! Persistence for Socle.
//!
//! This crate owns every line of SQL in the project. It exposes a [`Store`] handle
//! that speaks either to an embedded SQLite file (the default: WAL mode, created with
//! its directory on first start) or to a PostgreSQL server (pooled, for production and
//! for several stateless nodes). Callers see small traits in domain terms
//! ([`InstanceStore`], …) and never SQL; the HTTP layer never sees `sqlx`.
//!
//! Migrations are embedded per dialect and applied in order by [`Store::migrate`];
//! a database written by a newer binary is refused rather than guessed at.
//! The same test suite (in the `socle` crate's integration tests) runs on both backends.

mod backchannel;
mod catalogue;
mod contest;
mod direct;
mod error;
mod gateway;
mod identity;
mod journal;

mod migrate;
mod open;

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool};

pub use backchannel::{NewBackchannel, StoredBackchannel};
pub use catalogue::{
    ApiRecord, BackOfficeStore, CatalogueKind, CatalogueStore, ClientWrite, HabilitationCommit,
    HabilitationRow, NewMail, NotificationStore, StoredDelivery, StoredHabilitation, StoredWebhook,
};
pub use contest::{NewContest, StoredContest, StoredDigest};
pub use error::{Result, StoreError};
pub use gateway::{GatewayStore, StoredConsent};
pub use identity::{
    CodeUse, FiStateMatch, IdentityStore, NewCode, NewInteraction, SessionWrite, StoredClient,
    StoredKey, StoredToken,
};
pub use journal::{
    JournalBatch, JournalSink, JournalState, JournalStore, JournalWriter, NewEntry, NodeHash,
    QueueMac, QueuedLeaf, SequencerLease, StoredCheckpoint, StoredEntry,
};
pub use migrate::{LATEST_SCHEMA_VERSION, SchemaStatus};

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum Location {
    /// An embedded SQLite database file; its directory is created if missing.
    Sqlite { path: PathBuf },
    /// A PostgreSQL server, as a `postgres://` URL.
    Postgres { url: String },
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub location: Location,
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the store is reported
    /// unavailable.
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    pub fn new(location: Location) -> Self {
        Self {
            location,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// A handle on the store; cheap to clone (it wraps a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// PostgreSQL only: the same database, relaxed durability, for the records of logins
    /// in progress (see `open::postgres_ephemeral`). On SQLite they are in a file of
    /// their own, on `ephemeral_direct`.
    ephemeral_pg: Option<PgPool>,
    /// SQLite only: the file, and direct read connections for the journal's proofs.
    sqlite_path: Option<PathBuf>,
    readers: Option<std::sync::Arc<direct::Readers>>,
    /// SQLite only: the writer of the records of logins in progress, on a thread of its
    /// own, opened on first use, to their own file beside the database (see
    /// [`logins_path`]).
    ephemeral_direct:
        Option<std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<direct::Writer>>>>>,
    max_connections: u32,
    /// How queued journal leaves are authenticated, given by the journal when it opens
    /// (shared by every clone of the store).
    queue_mac: std::sync::Arc<std::sync::RwLock<Option<QueueMac>>>,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Connection-pool figures, exported as gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

/// The Socle instance, recorded on first start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// A random identifier, stable for the life of the database.
    pub instance_id: String,
    pub name: String,
    /// RFC 3339 time of the first start.
    pub created_at: String,
}

/// SQL that is the same text in both dialects, run against whichever pool is open.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// The one text column of the row `sql` finds by `key` (its `$1`), if any.
    pub(crate) async fn one_text(&self, sql: &str, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::from_runtime)?
        });
        Ok(row.map(|r| r.0))
    }
}

/// Inserts encoded journal leaves (`&[(leaf, subject)]`), with their MACs
/// ([`Store::set_queue_mac`]), into the journal's durable queue inside the open
/// transaction `$tx`, on either backend, so that a change and its
/// entries commit together; the running sequencer integrates them. Evaluates to a
/// `Result<(), sqlx::Error>`.
macro_rules! queue_leaves {
    ($store:expr, $tx:ident, $leaves:expr) => {
        async {
            let leaves: crate::Journaled<'_> = $leaves;
            let macs = $store.queue_macs(leaves)?;
            for ((leaf, subject), mac) in leaves.iter().zip(macs) {
                sqlx::query("INSERT INTO journal_queue (leaf, subject, mac) VALUES ($1, $2, $3)")
                    .bind(leaf.as_slice())
                    .bind(subject.as_deref())
                    .bind(mac)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await
    };
}
pub(crate) use queue_leaves;

/// Encoded journal leaves and their subjects (`socle_journal::encode`) that record a
/// change: the store writes them to the journal's durable queue in the change's own
/// transaction, so that no change is stored without its entries, nor entries without
/// their change. Empty for a change journaled otherwise (the demonstration's seeding).
pub type Journaled<'a> = &'a [(Vec<u8>, Option<String>)];

/// Runs `$body` — statements on the open transaction `$tx`, evaluating to the result —
/// then queues the journal leaves `$leaves` and commits, on either backend. A
/// `return Ok(..)` inside the body ends without committing (nothing changed, nothing to
/// record). Evaluates to a `Result<_, sqlx::Error>`.
macro_rules! journaled {
    ($store:expr, $leaves:expr, |$tx:ident| $body:expr) => {
        crate::on_pool!($store, |pool| {
            async {
                let mut $tx = pool.begin().await?;
                let out = $body;
                crate::queue_leaves!($store, $tx, $leaves)?;
                $tx.commit().await?;
                Ok::<_, sqlx::Error>(out)
            }
            .await
        })
    };
}
pub(crate) use journaled;

impl Store {
    /// Opens (and for SQLite, creates) the database. It does not migrate: call
    /// [`Store::migrate`] or check [`Store::schema_status`].
    pub async fn open(options: &StoreOptions) -> Result<Store> {
        let (backend, ephemeral_pg) = match &options.location {
            Location::Sqlite { path } => {
                (Backend::Sqlite(open::sqlite(path, options).await?), None)
            }
            Location::Postgres { url } => (
                Backend::Postgres(open::postgres(url, options).await?),
                Some(open::postgres_ephemeral(url, options)?),
            ),
        };
        let sqlite_path = match &options.location {
            Location::Sqlite { path } => Some(path.clone()),
            Location::Postgres { .. } => None,
        };
        Ok(Store {
            backend,
            ephemeral_pg,
            readers: sqlite_path.as_deref().map(direct::Readers::new),
            ephemeral_direct: sqlite_path.as_ref().map(|_| Default::default()),
            sqlite_path,
            max_connections: options.max_connections,
            queue_mac: Default::default(),
        })
    }

    /// Sets how queued journal leaves are authenticated (`socle_journal::Journal::open`
    /// does): until then, nothing can be written to the journal's queue.
    pub fn set_queue_mac(&self, mac: QueueMac) {
        *self
            .queue_mac
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(mac);
    }

    /// The MACs of `leaves` for the journal's queue; an I/O error (the store is then
    /// unavailable to the caller) when no journal is open in this process.
    pub(crate) fn queue_macs(
        &self,
        leaves: &[(Vec<u8>, Option<String>)],
    ) -> std::result::Result<Vec<Vec<u8>>, sqlx::Error> {
        if leaves.is_empty() {
            return Ok(Vec::new());
        }
        let guard = self
            .queue_mac
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(mac) = guard.as_ref() else {
            return Err(sqlx::Error::Io(std::io::Error::other(
                "the journal is not open in this process: nothing it must record can be written",
            )));
        };
        Ok(leaves
            .iter()
            .map(|(leaf, subject)| (mac.0)(leaf, subject.as_deref()))
            .collect())
    }

    /// Runs `f` on the SQLite connection of the records of logins in progress.
    pub(crate) async fn ephemeral_run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (Some(slot), Some(path)) = (&self.ephemeral_direct, &self.sqlite_path) else {
            return Err(StoreError::Unavailable("not an SQLite store".into()));
        };
        let writer = {
            let mut w = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &*w {
                Some(x) => x.clone(),
                None => {
                    let x = std::sync::Arc::new(direct::Writer::open_logins(&logins_path(path))?);
                    *w = Some(x.clone());
                    x
                }
            }
        };
        writer.run(move |c| f(c).map_err(direct::error)).await
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Round-trips a trivial query: is the database reachable now?
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
        })
        .map_err(StoreError::from_runtime)
    }

    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match &self.backend {
            Backend::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Backend::Postgres(pool) => (pool.size(), pool.num_idle()),
        };
        PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.max_connections,
        }
    }

    /// Closes every pooled connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        if let Some(r) = &self.readers {
            r.close();
        }
        if let Some(slot) = &self.ephemeral_direct
            && let Ok(mut w) = slot.lock()
        {
            *w = None;
        }
        if let Some(pool) = &self.ephemeral_pg {
            pool.close().await;
        }
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// The file of the records of logins in progress beside an SQLite database:
/// `socle.db` → `socle.logins.db`. They have a file (and a write-ahead log) of their
/// own so that their commits never wait for the journal's `fsync` on the shared log, nor
/// the journal for theirs; they are recreated empty if the file is lost, which costs the
/// people concerned one new login.
pub fn logins_path(database: &std::path::Path) -> PathBuf {
    let stem = database
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "socle".into());
    database.with_file_name(format!("{stem}.logins.db"))
}

/// Every file of an embedded store whose database is at `database`: the database and
/// its write-ahead log, the journal's redo log and its lock, the logins' file and its
/// log (what `socle demo --reset` removes).
pub fn embedded_files(database: &std::path::Path) -> Vec<PathBuf> {
    let with = |p: &std::path::Path, suffix: &str| {
        let mut name = p.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let logins = logins_path(database);
    let (halves, lock) = journal::sqlite::log::paths(database);
    let mut files = Vec::new();
    for db in [database, logins.as_path()] {
        files.extend(["", "-wal", "-shm", "-journal"].map(|s| with(db, s)));
    }
    files.extend(halves);
    files.push(lock);
    files
}

/// What an embedded database is, for `socle demo --reset`, which must never remove
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedKind {
    /// No database there, or one with no tables yet.
    Absent,
    /// Seeded by `socle demo` (its `demo.seeded` marker).
    Demo,
    /// Anything else, including a file SQLite cannot read.
    Other,
}

/// Reads (only reads) what the embedded database at `database` is.
pub fn embedded_kind(database: &std::path::Path) -> EmbeddedKind {
    if !database.exists() {
        return EmbeddedKind::Absent;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(database, flags) else {
        return EmbeddedKind::Other;
    };
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    match count("SELECT COUNT(*) FROM instance_markers WHERE name = 'demo.seeded'") {
        Ok(n) if n > 0 => EmbeddedKind::Demo,
        Ok(_) => EmbeddedKind::Other,
        Err(_) => match count("SELECT COUNT(*) FROM sqlite_master") {
            Ok(0) => EmbeddedKind::Absent,
            _ => EmbeddedKind::Other,
        },
    }
}

/// The instance record: who this Socle is.
pub trait InstanceStore {
    /// Returns the instance, creating it with `name` on first call. Later calls keep
    /// the original identifier and creation time but follow a renamed instance.
    fn ensure_instance(&self, name: &str) -> impl Future<Output = Result<Instance>> + Send;

    /// Records the one-time event `marker` with the journal entries recording it, in
    /// one transaction; true only for the caller that recorded it first (so "first
    /// start" work happens once, even with several nodes; the entries are written once).
    fn mark_once(
        &self,
        marker: &str,
        journal: Journaled<'_>,
    ) -> impl Future<Output = Result<bool>> + Send;
}

impl InstanceStore for Store {
    async fn ensure_instance(&self, name: &str) -> Result<Instance> {
        let now = open::now_rfc3339();
        let fresh_id = open::random_id();
        let row: (String, String, String) = on_pool!(self, |pool| {
            sqlx::query_as(
                "INSERT INTO instance (id, instance_id, name, created_at) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name \
                 RETURNING instance_id, name, created_at",
            )
            .bind(&fresh_id)
            .bind(name)
            .bind(&now)
            .fetch_one(pool)
            .await
            .map_err(StoreError::from_runtime)?
        });
        Ok(Instance {
            instance_id: row.0,
            name: row.1,
            created_at: row.2,
        })
    }

    async fn mark_once(&self, marker: &str, journal: Journaled<'_>) -> Result<bool> {
        let now = open::now_rfc3339();
        journaled!(self, journal, |tx| {
            let inserted = sqlx::query(
                "INSERT INTO instance_markers (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(marker)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted != 1 {
                return Ok(false);
            }
            true
        })
        .map_err(StoreError::from_runtime)
    }
}
