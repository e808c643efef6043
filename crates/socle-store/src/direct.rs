//! Direct SQLite access (rusqlite) for the hot paths where sqlx's design costs
//! more than the work itself: sqlx runs every statement on a worker thread and hands
//! each step of it over a channel, so a journal batch (begin, inserts, delete, commit)
//! or a proof lookup pays several thread wake-ups.
//!
//! - [`Writer`]: one OS thread owning one connection (`synchronous = FULL`, no memory
//!   map); a whole journal batch is one job, one hand-off.
//! - [`Readers`]: a few read-only connections (memory-mapped) used from tokio's
//!   blocking pool; a proof's lookups are one job.
//! - The records of logins in progress (sessions, interactions, codes, tokens) go
//!   through a second [`Writer`] with `synchronous = NORMAL`: a login made about 14
//!   statements, each of which crossed sqlx's worker thread several times.
//!
//! Same file, same schema, same libsqlite3 as the sqlx pools; PostgreSQL is untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Result;
use crate::error::StoreError;

pub(crate) type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) fn error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// True for a PRIMARY KEY or UNIQUE violation.
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation
            && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE))
}

/// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed if it succeeds.
pub(crate) fn immediate<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(error)?;
    let out = f(&tx)?;
    tx.commit().map_err(error)?;
    Ok(out)
}

/// Executes the cached statement `sql` once per parameter set.
pub(crate) fn execute_each<P: rusqlite::Params>(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    rows: impl IntoIterator<Item = P>,
    on_error: impl Fn(rusqlite::Error) -> StoreError,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(sql).map_err(error)?;
    for params in rows {
        stmt.execute(params).map_err(&on_error)?;
    }
    Ok(())
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The journal: `synchronous = FULL`, a commit is on disk when it returns.
    Full,
    /// Logins in progress: `synchronous = OFF`, never `fsync`ed, so a commit survives a
    /// crash of the process (it is in the operating system's cache) but may be lost with
    /// the machine, which costs the people concerned one new login. On the disk of the
    /// benchmarks, `NORMAL` (an `fsync` at each WAL checkpoint) kept the logins' writer
    /// waiting on the disk a third of its time.
    Ephemeral,
}

fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    open_as(path, read_only, Durability::Full)
}

fn open_as(path: &Path, read_only: bool, durability: Durability) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    if read_only {
        conn.busy_timeout(Duration::from_secs(10))?;
    } else {
        conn.busy_handler(Some(wait_for_lock))?;
    }
    if read_only {
        conn.pragma_update(None, "mmap_size", 1_073_741_824_i64)?;
        conn.pragma_update(None, "cache_size", -16_000_i64)?;
    } else {
        if durability == Durability::Ephemeral {
            // The logins' file has this one connection: holding its lock for good
            // spares a file lock and the shared-memory index at every transaction.
            // (Set before the first access, so the index is never created.)
            conn.pragma_update(None, "locking_mode", "exclusive")?;
        }
        // The pools already put the file in WAL mode; FULL: a commit is on disk when
        // it returns. Plain I/O: the memory map slows an append-only writer down.
        conn.pragma_update(None, "journal_mode", "wal")?;
        let synchronous = match durability {
            Durability::Full => "full",
            Durability::Ephemeral => "off",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "mmap_size", 0_i64)?;
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// The writer's busy handler: while another connection (the sqlx pools: sessions,
/// quota counters…) holds the write lock, retry every 50 µs, for up to 10 s. SQLite's
/// default handler sleeps 1, 2, 5, 10… ms between tries, which turned every brief
/// overlap into a multi-millisecond stall of all the journal's waiting appends.
fn wait_for_lock(tries: i32) -> bool {
    const STEP: Duration = Duration::from_micros(50);
    if tries >= 200_000 {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

/// The schema of the logins' file, by version (`PRAGMA user_version`), applied in
/// order like the main database's migrations. Version 1 is the first schema, written
/// with `IF NOT EXISTS` so that files created before versions (at 0) adopt it.
const LOGINS_MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../sql/sqlite_logins.sql"))];

/// The connection of the records of logins in progress, on their own file (see
/// [`crate::logins_path`]), created with its tables on first use and migrated to the
/// schema this binary knows. A file that fails SQLite's integrity check (possible
/// after a machine crash, as it is never `fsync`ed) is replaced by an empty one: the
/// people concerned log in again. A file of a newer schema is refused, as the main
/// database is.
fn open_logins(path: &Path) -> Result<Connection> {
    let latest = LOGINS_MIGRATIONS.last().map_or(0, |m| m.0);
    let newer = std::cell::Cell::new(None);
    let prepare = || -> rusqlite::Result<bool> {
        // Created private first, like the main database (SQLite would use the umask).
        let _ = crate::open::private_file(path);
        let conn = Connection::open(path)?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Ok(false);
        }
        conn.pragma_update(None, "journal_mode", "wal")?;
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > latest {
            newer.set(Some(version));
            return Ok(true);
        }
        for (v, sql) in LOGINS_MIGRATIONS.iter().filter(|(v, _)| *v > version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v)?;
            tx.commit()?;
        }
        Ok(true)
    };
    // Damaged: the check fails, or SQLite does not recognise the file. Any other error
    // (a lock held too long, permissions) leaves the file alone.
    let first = prepare();
    if let Some(found) = newer.get() {
        return Err(StoreError::Unavailable(format!(
            "{} has schema version {found}, newer than this binary's {latest}: run the \
             newer binary, or remove the file (people in the middle of a login will log \
             in again)",
            path.display()
        )));
    }
    let damaged = match first {
        Ok(ok) => !ok,
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            true
        }
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    };
    if damaged {
        tracing::warn!(
            file = %path.display(),
            "the file of logins in progress is damaged; starting a new one (people in \
             the middle of a login will log in again)"
        );
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StoreError::Unavailable(format!(
                    "cannot replace {}: {e}",
                    path.display()
                )));
            }
        }
        if !matches!(prepare(), Ok(true)) {
            return Err(StoreError::Unavailable(format!(
                "cannot create {}",
                path.display()
            )));
        }
    }
    open_as(path, false, Durability::Ephemeral).map_err(error)
}

/// The most jobs of the logins' writer run in one transaction.
const LOGINS_BATCH: usize = 64;

/// One writing connection on its own thread.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    pub(crate) fn open(path: &Path) -> Result<Writer> {
        let conn = open_as(path, false, Durability::Full).map_err(error)?;
        Self::spawn(conn, "socle-sqlite-writer", 1)
    }

    /// The writer of the records of logins in progress (see [`open_logins`]). The jobs
    /// waiting when it takes one (up to [`LOGINS_BATCH`]) run in one transaction: a
    /// commit writes whole pages to the write-ahead log, and one commit per statement
    /// was the largest part of this thread's work. Each job is answered as soon as its
    /// statement ran, before the commit: only this connection ever reads the file, so
    /// every later statement sees the write; a commit that fails (a full disk) loses
    /// the batch as a crash of the machine would, and the people concerned log in
    /// again.
    pub(crate) fn open_logins(path: &Path) -> Result<Writer> {
        Self::spawn(open_logins(path)?, "socle-sqlite-logins", LOGINS_BATCH)
    }

    fn spawn(mut conn: Connection, name: &str, batch: usize) -> Result<Writer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Ends when every sender is dropped (the writer released).
                while let Ok(job) = rx.recv() {
                    let mut waiting = Vec::new();
                    while waiting.len() + 1 < batch {
                        match rx.try_recv() {
                            Ok(next) => waiting.push(next),
                            Err(_) => break,
                        }
                    }
                    if waiting.is_empty() {
                        job(&mut conn);
                        continue;
                    }
                    let began = conn.execute_batch("BEGIN").is_ok();
                    job(&mut conn);
                    for next in waiting {
                        next(&mut conn);
                    }
                    if began
                        && !conn.is_autocommit()
                        && let Err(e) = conn.execute_batch("COMMIT")
                    {
                        tracing::warn!(error = %e, "a batch of login records was not committed");
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Where to send jobs from another thread (the journal's log hands its batches to
    /// SQLite through it, in order with the jobs sent by [`Writer::run`]).
    pub(crate) fn sender(&self) -> mpsc::Sender<Job> {
        self.jobs.clone()
    }

    /// Runs `f` on the writer's connection; returns its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        run_on(&self.jobs, f).await
    }
}

/// Runs `f` on the connection of the writer `jobs` go to; returns its result.
pub(crate) async fn run_on<T: Send + 'static>(
    jobs: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    jobs.send(Box::new(move |conn| {
        let _ = tx.send(f(conn));
    }))
    .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?;
    rx.await
        .map_err(|_| StoreError::Unavailable("the SQLite writer stopped".into()))?
}

/// Read-only connections, opened on demand and kept (at most `MAX_IDLE`).
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const MAX_IDLE: usize = 4;

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readers({})", self.path.display())
    }
}

impl Readers {
    pub(crate) fn new(path: &Path) -> Arc<Readers> {
        Arc::new(Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a read connection, on tokio's blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match me.idle.lock().ok().and_then(|mut v| v.pop()) {
                Some(c) => c,
                None => open(&me.path, true).map_err(error)?,
            };
            let out = f(&conn);
            if let Ok(mut v) = me.idle.lock()
                && v.len() < MAX_IDLE
            {
                v.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite reader failed: {e}")))?
    }

    /// Drops the idle connections (the store is closing).
    pub(crate) fn close(&self) {
        if let Ok(mut v) = self.idle.lock() {
            v.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM oidc_sessions", [], |r| r.get(0))
            .unwrap()
    }

    /// The logins' file: kept across openings, replaced when damaged, never removed
    /// because it is only busy.
    #[test]
    fn the_logins_file_is_replaced_only_when_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socle.logins.db");
        let conn = open_logins(&path).unwrap();
        conn.execute(
            "INSERT INTO oidc_sessions (id, doc, expires_at) VALUES ('s', '{}', 1)",
            [],
        )
        .unwrap();
        assert_eq!(sessions(&conn), 1);
        drop(conn);
        assert_eq!(sessions(&open_logins(&path).unwrap()), 1, "kept");

        // Locked by another connection for longer than the busy timeout: an error,
        // and the file is left alone.
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE")
            .unwrap();
        let busy = open_logins(&path);
        assert!(
            matches!(&busy, Err(StoreError::Unavailable(m)) if m.contains("cannot open")),
            "{busy:?}"
        );
        holder.execute_batch("ROLLBACK").unwrap();
        drop(holder);
        assert_eq!(sessions(&open_logins(&path).unwrap()), 1, "not replaced");

        // Garbage where the file was: a new, empty one.
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::write(&path, b"not a database, what a crash left ".repeat(200)).unwrap();
        assert_eq!(sessions(&open_logins(&path).unwrap()), 0, "replaced");
    }

    fn version(conn: &Connection) -> i32 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    /// The logins' file has a schema version, migrated like the main database: a new
    /// file is at the latest; a file from before versions (tables, version 0) adopts
    /// it with its rows; a newer file is refused and left alone.
    #[test]
    fn the_logins_file_has_a_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let latest = LOGINS_MIGRATIONS.last().unwrap().0;
        let fresh = dir.path().join("fresh.logins.db");
        assert_eq!(version(&open_logins(&fresh).unwrap()), latest);

        let old = dir.path().join("old.logins.db");
        let conn = Connection::open(&old).unwrap();
        conn.execute_batch(include_str!("../sql/sqlite_logins.sql"))
            .unwrap();
        conn.execute(
            "INSERT INTO oidc_sessions (id, doc, expires_at) VALUES ('s', '{}', 1)",
            [],
        )
        .unwrap();
        assert_eq!(version(&conn), 0);
        drop(conn);
        let conn = open_logins(&old).unwrap();
        assert_eq!((version(&conn), sessions(&conn)), (latest, 1));
        drop(conn);

        let newer = dir.path().join("newer.logins.db");
        let conn = Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", latest + 1)
            .unwrap();
        drop(conn);
        let refused = open_logins(&newer);
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("newer than this binary")),
            "{refused:?}"
        );
        assert_eq!(
            version(&Connection::open(&newer).unwrap()),
            latest + 1,
            "left alone"
        );
    }
}
