//! The journal's redo log on SQLite: what makes an append durable, so that SQLite
//! itself no longer has to be on the append's path.
//!
//! An append used to be acknowledged after a `synchronous = FULL` SQLite transaction:
//! each commit rewrote whole pages (entries, tree nodes, index) in the write-ahead log,
//! and now and then ran a checkpoint inside the commit, so that an exchange waited
//! 2–14 ms behind it. Now the sequencer's batch — entries with their indices, the tree
//! nodes they complete, the queue rows they came from — is one checksummed record,
//! written at the end of a pre-allocated file and `fdatasync`ed (one small write and
//! one flush); the callers are acknowledged; then the same batch is applied to SQLite
//! on the journal's SQLite thread with `synchronous = NORMAL`, off their path.
//!
//! The log is two files used in turn ("halves"). A half is reused only once SQLite
//! holds everything written in it durably: the first hand-over to SQLite after a
//! switch is committed with `synchronous = FULL` (which syncs every commit before
//! it), and only then frees the half left. That hand-over is sent at the latest when
//! the log needs the half back, so a log kept busy never waits for itself. SQLite
//! takes a hand-over only if it continues its size, and none after one it refused: a
//! batch applied beyond a gap would hide the gap from recovery. After a crash the node
//! that takes the lease replays, in one such durable transaction, the records that
//! continue SQLite's size ([`pending`]) before writing the log over from its start;
//! stale records (already in SQLite) have smaller sizes and are skipped, a torn last
//! record fails its checksum and was never acknowledged.
//!
//! One process at a time writes the log: the lease is an exclusive `flock` on a lock
//! file beside the database ([`LogLock`]); other nodes on the same file queue their
//! appends durably in SQLite, as followers do on PostgreSQL.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use crate::error::StoreError;
use crate::journal::{Batch, NewEntry, NodeHash};
use crate::{Result, direct};

/// Records written now: each entry carries the sequencer's MAC (a flag byte, then
/// the 32 bytes when present).
const MAGIC: [u8; 4] = *b"SJL2";
/// Records of a version from before MACs, still replayed after an upgrade.
const MAGIC_V1: [u8; 4] = *b"SJL1";
/// Magic, payload length, CRC-32 of the payload.
const HEADER: usize = 12;
/// Larger lengths are damage, not records.
const MAX_PAYLOAD: usize = 1 << 30;
/// Size of each half, allocated up front: a record written into allocated space
/// costs one data flush; one that grows the file also rewrites its size (measured on
/// the benchmark disk: `fdatasync` p99 0.23 ms against 0.69 ms). A batch larger than
/// what is left starts the other half; one larger than a half grows it.
pub(crate) const HALF_SIZE: u64 = 8 << 20;
/// Longest wait for SQLite to make a half reusable before the log refuses appends.
const FREE_WAIT: Duration = Duration::from_secs(30);

impl Batch {
    /// The record: header, then `from_size`, counts, entries (leaf hash, subject, leaf),
    /// nodes, queue rows; integers little-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|e| 73 + e.leaf.len() + e.subject.as_ref().map_or(0, String::len))
            .sum::<usize>()
            + self.nodes.len() * 40
            + self.seqs.len() * 8
            + 20;
        let mut out = Vec::with_capacity(HEADER + size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.from_size.to_le_bytes());
        for n in [self.entries.len(), self.nodes.len(), self.seqs.len()] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for e in &self.entries {
            out.extend_from_slice(&e.leaf_hash);
            match &e.subject {
                None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(s) => {
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            out.extend_from_slice(&(e.leaf.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.leaf);
            match &e.mac {
                None => out.push(0),
                Some(mac) => {
                    out.push(1);
                    out.extend_from_slice(mac);
                }
            }
        }
        for (pos, hash) in &self.nodes {
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(hash);
        }
        for s in &self.seqs {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let len = (out.len() - HEADER) as u32;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[4..8].copy_from_slice(&len.to_le_bytes());
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The record at the start of `buf` and its length; `None` where there is none
    /// (zeroes of allocated space), or it is torn or damaged.
    pub(crate) fn decode(buf: &[u8]) -> Option<(Batch, usize)> {
        let mut r = Reader(buf);
        let with_macs = match r.take(4)? {
            m if m == MAGIC => true,
            m if m == MAGIC_V1 => false,
            _ => return None,
        };
        let len = r.u32()? as usize;
        let crc = r.u32()?;
        if len > MAX_PAYLOAD {
            return None;
        }
        let payload = r.take(len)?;
        if crc32fast::hash(payload) != crc {
            return None;
        }
        let mut p = Reader(payload);
        let from_size = p.u64()?;
        let (n_entries, n_nodes, n_seqs) = (p.u32()?, p.u32()?, p.u32()?);
        let mut entries = Vec::with_capacity((n_entries as usize).min(len / 40));
        for i in 0..u64::from(n_entries) {
            let leaf_hash: NodeHash = p.take(32)?.try_into().ok()?;
            let subject = match p.u32()? {
                u32::MAX => None,
                n => Some(String::from_utf8(p.take(n as usize)?.to_vec()).ok()?),
            };
            let n = p.u32()? as usize;
            let leaf = p.take(n)?.to_vec();
            let mac = match with_macs {
                false => None,
                true => match p.take(1)?[0] {
                    0 => None,
                    1 => Some(p.take(32)?.try_into().ok()?),
                    _ => return None,
                },
            };
            entries.push(NewEntry {
                index: from_size.checked_add(i)?,
                leaf,
                leaf_hash,
                subject,
                mac,
            });
        }
        let mut nodes = Vec::with_capacity((n_nodes as usize).min(len / 40));
        for _ in 0..n_nodes {
            let pos = p.u64()?;
            nodes.push((pos, p.take(32)?.try_into().ok()?));
        }
        let mut seqs = Vec::with_capacity((n_seqs as usize).min(len / 8));
        for _ in 0..n_seqs {
            seqs.push(p.u64()? as i64);
        }
        if !p.0.is_empty() {
            return None;
        }
        Some((
            Batch {
                from_size,
                entries,
                nodes,
                seqs,
            },
            HEADER + len,
        ))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The log's files beside an SQLite database: `socle.db` → `socle.journal-log.0`,
/// `socle.journal-log.1`, and the lease's `socle.journal.lock`.
pub(crate) fn paths(database: &Path) -> ([PathBuf; 2], PathBuf) {
    let stem = database
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "socle".into());
    let at = |name: String| database.with_file_name(name);
    (
        [
            at(format!("{stem}.journal-log.0")),
            at(format!("{stem}.journal-log.1")),
        ],
        at(format!("{stem}.journal.lock")),
    )
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("journal log: {what} {}: {e}", path.display()))
}

/// The sequencer's lease on an SQLite database: an exclusive `flock`, released when
/// the process ends, however it ends.
#[derive(Debug)]
pub struct LogLock {
    _file: File,
}

/// Takes the lease, or `None` if another process (or another store in this one)
/// holds it.
pub(crate) fn try_lock(database: &Path) -> Result<Option<LogLock>> {
    let (_, path) = paths(database);
    let file = crate::open::private_file(&path).map_err(|e| io_error("cannot open", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(LogLock { _file: file })),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(io_error("cannot lock", &path, e)),
    }
}

/// The batches of the log that continue a database of `size` entries, in order.
pub(crate) fn pending(database: &Path, size: u64) -> Result<Vec<Batch>> {
    let (halves, _) = paths(database);
    let mut found = Vec::new();
    for path in &halves {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("cannot read", path, e)),
        };
        found.extend(scan(std::io::BufReader::new(file), size));
    }
    Ok(continuing(found, size))
}

/// The records at the start of a half, up to the first that is absent or damaged,
/// read one at a time; those wholly within the first `size` entries (already in the
/// database) are not kept.
fn scan(mut r: impl std::io::Read, size: u64) -> Vec<Batch> {
    let mut out = Vec::new();
    loop {
        let mut record = vec![0; HEADER];
        if r.read_exact(&mut record).is_err() || (record[..4] != MAGIC && record[..4] != MAGIC_V1) {
            return out;
        }
        let mut len = [0; 4];
        len.copy_from_slice(&record[4..8]);
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_PAYLOAD {
            return out;
        }
        record.resize(HEADER + len, 0);
        if r.read_exact(&mut record[HEADER..]).is_err() {
            return out;
        }
        let Some((batch, _)) = Batch::decode(&record) else {
            return out;
        };
        if batch.from_size + batch.entries.len() as u64 > size {
            out.push(batch);
        }
    }
}

/// Of `found`, the chain of batches starting at `size` with no gap.
fn continuing(mut found: Vec<Batch>, size: u64) -> Vec<Batch> {
    found.sort_by_key(|b| b.from_size);
    let mut next = size;
    let mut out = Vec::new();
    for b in found {
        if b.from_size == next && !b.entries.is_empty() {
            next += b.entries.len() as u64;
            out.push(b);
        } else if b.from_size > next {
            break;
        }
    }
    out
}

/// Writes batches into SQLite in one transaction; `durable`: committed so that it and
/// everything committed before are on disk.
pub(crate) type Apply = fn(&mut rusqlite::Connection, &[Batch], bool) -> Result<()>;

/// Called once a logged batch is durable, or could not be made so.
pub(crate) type Done = Box<dyn FnOnce(Result<()>) + Send>;

/// Why the log stopped taking appends (a failed write, or SQLite behind it); set under
/// the lock of the halves' state, so that a switch waiting for a half cannot miss it.
#[derive(Clone)]
struct Poison {
    why: Arc<Mutex<Option<String>>>,
    free: Free,
}

impl Poison {
    fn new(free: Free) -> Poison {
        Poison {
            why: Arc::default(),
            free,
        }
    }

    fn set(&self, why: String) {
        let (lock, cvar) = &*self.free;
        let held = lock.lock();
        if let Ok(mut p) = self.why.lock()
            && p.is_none()
        {
            tracing::error!(reason = %why, "journal log stopped; the sequencer will reload");
            *p = Some(why);
        }
        drop(held);
        cvar.notify_all();
    }

    /// A lock poisoned by a panic counts as stopped.
    fn get(&self) -> Option<String> {
        match self.why.lock() {
            Ok(p) => p.clone(),
            Err(_) => Some("the journal log's state was left by a panic".into()),
        }
    }

    fn is_set(&self) -> bool {
        self.get().is_some()
    }
}

/// Which halves may be written over.
type Free = Arc<(Mutex<[bool; 2]>, Condvar)>;

pub(crate) enum Job {
    /// Write, flush, then `done`.
    Append {
        batch: Batch,
        done: Done,
    },
    /// `done` once everything logged before is in SQLite and readable.
    Flush(tokio::sync::oneshot::Sender<Result<()>>),
    Stop,
}

/// Batches that are durable in the log, held a moment so that SQLite takes several in
/// one transaction (a commit rewrites whole pages: one per batch wrote eight kilobytes
/// per exchange at the gateway's pace).
const APPLY_EVERY: Duration = Duration::from_millis(10);
const APPLY_ENTRIES: usize = 2048;
/// Most appends written before one flush.
const GROUP: usize = 256;

/// The running log: a thread that writes the records waiting, flushes them once,
/// calls their `done`, and hands their batches to the journal's SQLite thread.
pub(crate) struct Log {
    jobs: mpsc::Sender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
    poison: Poison,
    _lock: Arc<LogLock>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("journal::Log")
    }
}

impl Log {
    /// Starts writing the log of `database` from its first half (everything in it is
    /// durable in SQLite: the caller has just replayed [`pending`]).
    pub(crate) fn start(
        database: &Path,
        lock: Arc<LogLock>,
        sqlite: mpsc::Sender<direct::Job>,
        apply: Apply,
    ) -> Result<Log> {
        let (halves, _) = paths(database);
        let mut files = Vec::with_capacity(2);
        for path in &halves {
            files.push(allocate(path)?);
        }
        if let Some(dir) = database.parent()
            && let Ok(d) = File::open(dir)
        {
            // The files' names must survive a crash too.
            let _ = d.sync_all();
        }
        let [first, second]: [File; 2] = files
            .try_into()
            .map_err(|_| StoreError::Unavailable("journal log: files".into()))?;
        let free: Free = Arc::new((Mutex::new([false, true]), Condvar::new()));
        let poison = Poison::new(free.clone());
        let mut writer = Writer {
            files: [first, second],
            paths: halves,
            current: 0,
            offset: 0,
            dirty: [false; 2],
            unsynced: Vec::new(),
            free,
            freeing: None,
            pending: Vec::new(),
            pending_entries: 0,
            pending_since: None,
            sqlite,
            apply,
            poison: poison.clone(),
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("socle-journal-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the journal log: {e}")))?;
        Ok(Log {
            jobs,
            thread: Some(thread),
            poison,
            _lock: lock,
        })
    }

    /// Why the log stopped, if it did.
    pub(crate) fn stopped(&self) -> Option<String> {
        self.poison.get()
    }

    /// Stops taking appends (the SQLite side failed); the sequencer reloads.
    pub(crate) fn stop(&self, why: String) {
        self.poison.set(why);
    }

    /// Hands `batch` to the log; `done` is called once it is on disk (or failed).
    pub(crate) fn append(&self, batch: Batch, done: Done) {
        if let Err(mpsc::SendError(Job::Append { done, .. })) =
            self.jobs.send(Job::Append { batch, done })
        {
            done(Err(StoreError::Unavailable(
                "the journal log stopped".into(),
            )));
        }
    }

    /// Where to ask for a flush from elsewhere (the checkpoint signer).
    pub(crate) fn sender(&self) -> mpsc::Sender<Job> {
        self.jobs.clone()
    }
}

/// Returns once everything logged before is in SQLite and readable.
pub(crate) async fn flush(jobs: &mpsc::Sender<Job>) -> Result<()> {
    let (done, wait) = tokio::sync::oneshot::channel();
    let gone = || StoreError::Unavailable("the journal log stopped".into());
    jobs.send(Job::Flush(done)).map_err(|_| gone())?;
    wait.await.map_err(|_| gone())?
}

impl Drop for Log {
    fn drop(&mut self) {
        // Jobs sent after this (by a signer still holding a sender) are dropped with
        // the receiver: their callers see the log stopped.
        let _ = self.jobs.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a half, allocated to [`HALF_SIZE`].
fn allocate(path: &Path) -> Result<File> {
    let file = crate::open::private_file(path).map_err(|e| io_error("cannot open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_error("cannot read", path, e))?
        .len();
    if len < HALF_SIZE {
        // Where the file system cannot allocate ahead, records grow the file instead.
        if let Err(e) =
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, HALF_SIZE)
        {
            tracing::debug!(error = %e, file = %path.display(), "journal log not allocated ahead");
        }
        file.sync_all()
            .map_err(|e| io_error("cannot sync", path, e))?;
    }
    Ok(file)
}

struct Writer {
    files: [File; 2],
    paths: [PathBuf; 2],
    current: usize,
    offset: u64,
    /// Written and not yet flushed.
    dirty: [bool; 2],
    /// Batches written and not yet flushed, in order; durable (pending) after a flush.
    unsynced: Vec<Batch>,
    free: Free,
    /// The half left at the last switch, freed by the next (durable) SQLite apply.
    freeing: Option<usize>,
    /// Durable in the log, not yet handed to SQLite.
    pending: Vec<Batch>,
    pending_entries: usize,
    pending_since: Option<std::time::Instant>,
    sqlite: mpsc::Sender<direct::Job>,
    apply: Apply,
    poison: Poison,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let first = match self.pending_since {
                None => rx.recv().map_err(|_| ()),
                Some(since) => {
                    let left = APPLY_EVERY.saturating_sub(since.elapsed());
                    match rx.recv_timeout(left) {
                        Ok(job) => Ok(job),
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.hand_to_sqlite(None);
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
                    }
                }
            };
            let Ok(first) = first else { break };
            // Everything waiting: one flush for all of it (group commit).
            let mut jobs = vec![first];
            while jobs.len() < GROUP {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let mut appended: Vec<(Batch, Done)> = Vec::new();
            let mut flushes = Vec::new();
            let mut stop = false;
            for job in jobs {
                match job {
                    Job::Append { batch, done } => appended.push((batch, done)),
                    Job::Flush(done) => flushes.push(done),
                    Job::Stop => stop = true,
                }
            }
            if !appended.is_empty() {
                self.write_group(appended);
            }
            // Under steady load the receive above never times out: the delay is
            // checked here too, or SQLite would only get batches at a switch.
            let due = self
                .pending_since
                .is_some_and(|since| since.elapsed() >= APPLY_EVERY);
            if !flushes.is_empty() || stop {
                self.hand_to_sqlite(Some(flushes));
            } else if self.pending_entries >= APPLY_ENTRIES || due {
                self.hand_to_sqlite(None);
            }
            if stop {
                break;
            }
        }
    }

    fn write_group(&mut self, group: Vec<(Batch, Done)>) {
        let mut dones = Vec::with_capacity(group.len());
        let mut written = Ok(());
        for (batch, done) in group {
            dones.push(done);
            if written.is_ok() {
                written = self
                    .write(&batch.encode())
                    .map(|()| self.unsynced.push(batch));
            }
        }
        match written.and_then(|()| self.sync()) {
            Ok(()) => {
                for done in dones {
                    done(Ok(()));
                }
            }
            Err(e) => {
                // After a failed write or flush the file's state is unknown. (Batches
                // of the group flushed at a switch before the failure may still be
                // replayed: like a timed-out commit, the outcome is unknown.)
                self.poison.set(e.to_string());
                self.unsynced.clear();
                for done in dones {
                    done(Err(e.clone()));
                }
            }
        }
    }

    fn write(&mut self, record: &[u8]) -> Result<()> {
        if let Some(why) = self.poison.get() {
            return Err(StoreError::Unavailable(format!(
                "the journal log stopped: {why}"
            )));
        }
        if self.offset > 0 && self.offset + record.len() as u64 > HALF_SIZE {
            self.switch()?;
        }
        let (file, path) = (&self.files[self.current], &self.paths[self.current]);
        file.write_all_at(record, self.offset)
            .map_err(|e| io_error("cannot write", path, e))?;
        self.dirty[self.current] = true;
        self.offset += record.len() as u64;
        Ok(())
    }

    /// Flushes what was written.
    fn sync(&mut self) -> Result<()> {
        for half in 0..2 {
            if self.dirty[half] {
                let began = std::time::Instant::now();
                self.files[half]
                    .sync_data()
                    .map_err(|e| io_error("cannot flush", &self.paths[half], e))?;
                metrics::histogram!("socle_journal_log_flush_seconds")
                    .record(began.elapsed().as_secs_f64());
                self.dirty[half] = false;
            }
        }
        if !self.unsynced.is_empty() {
            for batch in self.unsynced.drain(..) {
                self.pending_entries += batch.entries.len();
                self.pending.push(batch);
            }
            self.pending_since
                .get_or_insert_with(std::time::Instant::now);
        }
        Ok(())
    }

    /// Moves to the other half, once SQLite holds all it contains.
    fn switch(&mut self) -> Result<()> {
        self.sync()?;
        let next = 1 - self.current;
        let began = std::time::Instant::now();
        if self.freeing == Some(next) {
            // No batch went to SQLite since the last switch: the one that frees the
            // other half is sent now, not left to a timer that a busy log never sees.
            self.hand_to_sqlite(None);
        }
        let free = self.free.clone();
        let (lock, cvar) = &*free;
        let guard = lock
            .lock()
            .map_err(|_| StoreError::Unavailable("journal log: lock".into()))?;
        let poison = self.poison.clone();
        let (mut free, waited) = cvar
            .wait_timeout_while(guard, FREE_WAIT, |f| !f[next] && !poison.is_set())
            .map_err(|_| StoreError::Unavailable("journal log: lock".into()))?;
        if let Some(why) = self.poison.get() {
            return Err(StoreError::Unavailable(format!(
                "the journal log stopped: {why}"
            )));
        }
        if waited.timed_out() {
            return Err(StoreError::Unavailable(
                "the journal's database has not caught up with its log".into(),
            ));
        }
        free[next] = false;
        metrics::histogram!("socle_journal_log_switch_wait_seconds")
            .record(began.elapsed().as_secs_f64());
        self.freeing = Some(self.current);
        self.current = next;
        self.offset = 0;
        Ok(())
    }

    /// Sends the pending batches to SQLite in one job; then answers `flushes`.
    fn hand_to_sqlite(&mut self, flushes: Option<Vec<tokio::sync::oneshot::Sender<Result<()>>>>) {
        let batches = std::mem::take(&mut self.pending);
        self.pending_entries = 0;
        self.pending_since = None;
        // The first hand-over after a switch is durable and frees the half left: every
        // batch of it was applied before, or is in this transaction.
        let frees = self.freeing.take();
        let (free, poison, apply) = (self.free.clone(), self.poison.clone(), self.apply);
        let flushes = flushes.unwrap_or_default();
        let job: direct::Job = Box::new(move |conn| {
            let began = std::time::Instant::now();
            let result = if let Some(why) = poison.get() {
                // A batch before these was refused: applying these would leave a
                // hole that recovery (which continues from the largest index) skips.
                Err(StoreError::Unavailable(why))
            } else if batches.is_empty() && frees.is_none() {
                Ok(())
            } else {
                apply(conn, &batches, frees.is_some())
            };
            if !batches.is_empty() {
                metrics::histogram!("socle_journal_sqlite_apply_seconds")
                    .record(began.elapsed().as_secs_f64());
            }
            // A switch waiting wakes up either way (to go on, or to fail).
            match &result {
                Ok(()) => {
                    if let Some(half) = frees {
                        let (lock, cvar) = &*free;
                        if let Ok(mut f) = lock.lock() {
                            f[half] = true;
                        }
                        cvar.notify_all();
                    }
                }
                Err(e) => poison.set(format!("SQLite did not take logged batches: {e}")),
            }
            let stopped = poison.get();
            for done in flushes {
                let _ = done.send(match &stopped {
                    None => Ok(()),
                    Some(why) => Err(StoreError::Unavailable(format!(
                        "the journal log stopped: {why}"
                    ))),
                });
            }
        });
        if self.sqlite.send(job).is_err() {
            self.poison
                .set("the journal's SQLite thread stopped".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u64, n: u64) -> Batch {
        Batch {
            from_size: from,
            entries: (0..n)
                .map(|i| NewEntry {
                    index: from + i,
                    leaf: format!("leaf {}", from + i).into_bytes(),
                    leaf_hash: [i as u8; 32],
                    subject: (i % 2 == 0).then(|| format!("p{i}")),
                    mac: (i % 3 != 0).then_some([i as u8 ^ 0x5a; 32]),
                })
                .collect(),
            nodes: vec![(from, [7; 32])],
            seqs: vec![3, 4],
        }
    }

    #[test]
    fn records_round_trip_and_damage_is_seen() {
        let b = batch(10, 3);
        let rec = b.encode();
        assert_eq!(Batch::decode(&rec), Some((b.clone(), rec.len())));
        // Torn: any prefix is no record.
        for cut in [0, 5, HEADER, rec.len() - 1] {
            assert_eq!(Batch::decode(&rec[..cut]), None, "cut at {cut}");
        }
        // Any flipped byte is seen.
        for at in 0..rec.len() {
            let mut bad = rec.clone();
            bad[at] ^= 0x40;
            assert!(Batch::decode(&bad).is_none_or(|(d, _)| d != b), "byte {at}");
        }
        // Allocated space reads as zeroes: no record.
        assert_eq!(Batch::decode(&[0; 64]), None);
    }

    /// A record written before MACs (`SJL1`: no MAC after each leaf) is still replayed
    /// after an upgrade, its entries without MAC.
    #[test]
    fn records_from_before_macs_still_decode() {
        let mut b = batch(4, 2);
        for e in &mut b.entries {
            e.mac = None;
        }
        let mut payload = Vec::new();
        payload.extend_from_slice(&b.from_size.to_le_bytes());
        for n in [b.entries.len(), b.nodes.len(), b.seqs.len()] {
            payload.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for e in &b.entries {
            payload.extend_from_slice(&e.leaf_hash);
            match &e.subject {
                None => payload.extend_from_slice(&u32::MAX.to_le_bytes()),
                Some(s) => {
                    payload.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    payload.extend_from_slice(s.as_bytes());
                }
            }
            payload.extend_from_slice(&(e.leaf.len() as u32).to_le_bytes());
            payload.extend_from_slice(&e.leaf);
        }
        for (pos, hash) in &b.nodes {
            payload.extend_from_slice(&pos.to_le_bytes());
            payload.extend_from_slice(hash);
        }
        for s in &b.seqs {
            payload.extend_from_slice(&s.to_le_bytes());
        }
        let mut rec = MAGIC_V1.to_vec();
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        rec.extend_from_slice(&payload);
        assert_eq!(Batch::decode(&rec), Some((b, rec.len())));
    }

    #[test]
    fn recovery_takes_the_chain_after_the_database() {
        // Half 1 reused: new records at its start, stale ones behind them.
        let mut half0 = Vec::new();
        for b in [batch(0, 2), batch(2, 3), batch(5, 1)] {
            half0.extend(b.encode());
        }
        let mut half1 = Vec::new();
        for b in [batch(6, 2), batch(8, 2)] {
            half1.extend(b.encode());
        }
        half1.extend(batch(1, 1).encode()); // stale, and out of line
        let mut torn = batch(10, 4).encode();
        torn.truncate(torn.len() - 3);
        half1.extend(torn);
        let found: Vec<Batch> = scan(&half0[..], 0)
            .into_iter()
            .chain(scan(&half1[..], 0))
            .collect();
        // What the database already holds is not kept while reading.
        assert_eq!(scan(&half0[..], 5).len(), 1);
        let sizes = |v: Vec<Batch>| v.iter().map(|b| b.from_size).collect::<Vec<_>>();
        assert_eq!(sizes(continuing(found.clone(), 5)), [5, 6, 8]);
        assert_eq!(sizes(continuing(found.clone(), 10)), Vec::<u64>::new());
        assert_eq!(sizes(continuing(found.clone(), 0)), [0, 2, 5, 6, 8]);
        // A gap stops the chain.
        assert_eq!(sizes(continuing(found, 4)), Vec::<u64>::new());
    }

    /// The sizes `slow_then_refuse` was given, in order.
    static APPLIED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    /// An SQLite that takes its time over the first hand-over and then refuses it.
    fn slow_then_refuse(_: &mut rusqlite::Connection, batches: &[Batch], _: bool) -> Result<()> {
        let first = {
            let mut applied = APPLIED.lock().unwrap();
            applied.extend(batches.iter().map(|b| b.from_size));
            applied.len() == batches.len()
        };
        if first {
            std::thread::sleep(Duration::from_millis(300));
            return Err(StoreError::Unavailable("disk full".into()));
        }
        Ok(())
    }

    /// A batch logged while SQLite was failing an earlier hand-over is not applied
    /// after it: that would leave a hole recovery skips.
    #[tokio::test]
    async fn nothing_is_applied_after_a_refused_hand_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("socle.db");
        drop(rusqlite::Connection::open(&db).unwrap());
        let sqlite = direct::Writer::open(&db).unwrap();
        let lock = Arc::new(try_lock(&db).unwrap().unwrap());
        let log = Log::start(&db, lock, sqlite.sender(), slow_then_refuse).unwrap();
        let logged = |from| {
            let (tx, rx) = std::sync::mpsc::channel();
            log.append(batch(from, 2), Box::new(move |r| tx.send(r).unwrap()));
            rx.recv().unwrap()
        };
        let flushed = |jobs: mpsc::Sender<Job>| tokio::spawn(async move { flush(&jobs).await });
        logged(0).unwrap();
        let first = flushed(log.sender());
        // SQLite is busy failing the first hand-over: the next batch is logged
        // meanwhile and handed over behind it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        logged(2).unwrap();
        let second = flushed(log.sender());
        assert!(first.await.unwrap().is_err());
        assert!(second.await.unwrap().is_err());
        assert_eq!(
            *APPLIED.lock().unwrap(),
            [0],
            "the second hand-over was skipped"
        );
        assert!(log.stopped().is_some());
    }

    #[test]
    fn one_lease_per_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("socle.db");
        let first = try_lock(&db).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&db).unwrap().is_none(), "held");
        drop(first);
        assert!(try_lock(&db).unwrap().is_some(), "released");
    }
}
