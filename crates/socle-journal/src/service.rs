//! The running journal: group commit, sequencer, checkpoints, and the reads behind the
//! public endpoints.
//!
//! `append` hands entries to the node's **writer** task. On the node holding the
//! sequencer lease (SQLite: a file lock; PostgreSQL: an advisory lock) it takes every
//! append waiting, gives the leaves their indices, computes the tree nodes they
//! complete, and hands that batch to the store, which calls back once it is durable —
//! then each caller is answered (group commit: concurrent callers share one write).
//! It also drains the durable queue of the other nodes' appends into the log. A task
//! beside it signs a checkpoint when there is new data (every `checkpoint_interval`,
//! so at least once a second), once the tree is readable; before signing it proves to
//! itself, from the stored tree, that the new checkpoint is consistent with the last
//! one published: it never signs a fork. On the other nodes the writer commits appends
//! to the durable queue and answers after that commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use socle_store::Store;
use socle_store::{
    JournalBatch, JournalSink, JournalStore, JournalWriter, NewEntry, QueueMac, QueuedLeaf,
    StoreError, StoredCheckpoint, StoredEntry,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::entry::{Entry, EntryError, Pseudonymiser, Subject, SubjectMatcher};
use crate::mac::MacKey;
use crate::merkle::{self, Frontier, Hash, NodeId, NodeMap, ProofError};
use crate::note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};

/// Settings of the journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The log's origin: checkpoint origin line and signing key name. Fixed when the
    /// journal is created; a different value later is refused.
    pub origin: String,
    /// Whether `origin` was set explicitly (then a mismatch with the stored origin is
    /// an error) or derived (then the stored origin wins).
    pub origin_explicit: bool,
    /// Shortest time between two checkpoints while entries keep arriving.
    pub checkpoint_interval: Duration,
    /// Most leaves moved from the queue into the log in one transaction.
    pub max_batch: usize,
    /// Longest a leaf may wait in the durable queue without being sequenced: past it
    /// the sequencer is taken as halted, and new appends are refused (fail closed)
    /// rather than acknowledged under no checkpoint.
    pub max_unsequenced: Duration,
}

impl JournalConfig {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            origin_explicit: false,
            checkpoint_interval: Duration::from_millis(500),
            max_batch: 4096,
            max_unsequenced: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("journal store: {0}")]
    Store(String),
    #[error("the journal store is unreachable: {0}")]
    Unavailable(String),
    #[error("the journal is shut down")]
    Closed,
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("{0}")]
    Range(String),
    #[error("no checkpoint has been published yet")]
    NoCheckpoint,
    #[error("journal integrity: {0}")]
    Integrity(String),
    /// Rows the journal did not write (no MAC, or not its MAC): someone else wrote
    /// the database.
    #[error("journal integrity: not written by this journal: {0}")]
    Forged(String),
    #[error("journal configuration: {0}")]
    Config(String),
    #[error("another sequencer extended the journal: {0}")]
    Conflict(String),
}

impl From<StoreError> for JournalError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            JournalError::Unavailable(e.to_string())
        } else {
            JournalError::Store(e.to_string())
        }
    }
}

impl From<NoteError> for JournalError {
    fn from(e: NoteError) -> Self {
        JournalError::Integrity(e.to_string())
    }
}

struct Request {
    leaves: Vec<(Vec<u8>, Option<String>)>,
    done: oneshot::Sender<Result<(), JournalError>>,
}

/// A handle on the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    origin: String,
    signer: NoteSigner,
    verifier: NoteVerifier,
    pseudonymiser: Pseudonymiser,
    /// Authenticates what the journal writes (entries, queued leaves).
    mac: MacKey,
    /// Nothing to adopt: the MAC key existed before this start, or the rows from before
    /// MACs were given theirs.
    adopted: std::sync::atomic::AtomicBool,
    requests: mpsc::Sender<Request>,
    wake: Notify,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    published: watch::Sender<Option<StoredCheckpoint>>,
    /// Largest checkpoint size known to be published (a lower bound; only grows).
    known_size: AtomicU64,
    cache: NodeCache,
    config: JournalConfig,
    /// Appends failing, until one succeeds (readiness).
    health: std::sync::Mutex<Health>,
    /// Appends handed to the writer so far (orders their outcomes).
    submitted: AtomicU64,
    /// Why this node, holding the sequencer's lease, could not load the log (the
    /// stored tree does not match a published checkpoint…); `None` when it can.
    halted: std::sync::Mutex<Option<String>>,
    /// How long the oldest queued leaf has waited, as the lag watcher last saw it.
    lag: std::sync::Mutex<Lag>,
    /// Queue rows already sequenced into the redo log (SQLite), which the watcher
    /// does not count as waiting.
    logged_seq: std::sync::atomic::AtomicI64,
}

/// The durable queue's oldest leaf, as the lag watcher follows it.
struct Lag {
    oldest: Option<i64>,
    since: Instant,
    /// Set once `oldest` has waited longer than `max_unsequenced`.
    stalled: Option<Duration>,
}

#[derive(Default)]
struct Health {
    /// The newest append whose outcome was recorded: an older one finishing later says
    /// nothing new.
    newest: u64,
    failing: Option<Failing>,
}

struct Failing {
    /// The first failure of the run.
    since: Instant,
    /// The last one.
    last: Instant,
    why: &'static str,
}

/// How long a failed append keeps [`Journal::trouble`] reporting it when no append
/// follows (a node taken out of rotation receives none): then the node says it is
/// ready again, and the next append tells whether the journal writes.
pub const TROUBLE_HOLD: Duration = Duration::from_secs(30);

/// An inclusion proof as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub root: Hash,
    pub hashes: Vec<Hash>,
}

/// A consistency proof as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<Hash>,
}

const SIGNING_KEY: &str = "checkpoint_signing_key";
const PSEUDONYM_KEY: &str = "pseudonym_key";
const MAC_KEY: &str = "entry_mac_key";

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b
}

/// What keeps the journal's secrets (the checkpoint signing seed, the pseudonym key)
/// out of reach of whoever reads the database or a backup of it: they are stored
/// sealed, never in clear. The platform's master key implements it
/// (`socle_identity::MasterKey`); an HSM can later.
pub trait SecretSeal: Send + Sync {
    /// Seals a secret for storage.
    fn seal(&self, secret: &[u8]) -> Result<Vec<u8>, String>;
    /// Opens a sealed secret; an error when it was sealed under another key.
    fn unseal(&self, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// A secret stored by a version that kept them in clear: exactly its 32 raw bytes (a
/// sealed one is a much longer compact JWE).
fn in_clear(stored: &[u8]) -> bool {
    stored.len() == 32
}

fn secret32(stored: Vec<u8>, name: &str, seal: &dyn SecretSeal) -> Result<[u8; 32], JournalError> {
    if in_clear(&stored) {
        return Err(JournalError::Integrity(format!(
            "the stored {name} is in clear: it should have been sealed at start"
        )));
    }
    seal.unseal(&stored)
        .map_err(|e| JournalError::Config(format!("the journal's {name}: {e}")))?
        .try_into()
        .map_err(|_| JournalError::Integrity(format!("the stored {name} is not 32 bytes")))
}

/// Seals the secrets an earlier version stored in clear (in one transaction), then
/// reads (creating on first use) and opens the signing seed and the pseudonym key.
async fn open_secrets(
    store: &Store,
    seal: &dyn SecretSeal,
) -> Result<([u8; 32], [u8; 32]), JournalError> {
    // A seal that fails says why here, rather than leaving a secret in clear.
    seal.seal(&random32())
        .map_err(|e| JournalError::Config(format!("cannot seal the journal's secrets: {e}")))?;
    let sealed = store
        .journal_reseal_secrets(|v| if in_clear(v) { seal.seal(v).ok() } else { None })
        .await?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "journal: secrets stored in clear are now sealed under the master key"
        );
    }
    let fresh = |name: &str| {
        seal.seal(&random32())
            .map_err(|e| JournalError::Config(format!("cannot seal the journal's {name}: {e}")))
    };
    let seed = secret32(
        store
            .journal_secret(SIGNING_KEY, &fresh(SIGNING_KEY)?)
            .await?,
        SIGNING_KEY,
        seal,
    )?;
    let pseudonym = secret32(
        store
            .journal_secret(PSEUDONYM_KEY, &fresh(PSEUDONYM_KEY)?)
            .await?,
        PSEUDONYM_KEY,
        seal,
    )?;
    Ok((seed, pseudonym))
}

/// Opens (creating on first use) the journal's MAC key and gives the store the MAC of
/// queued leaves, so that this process can write what must be journaled to the durable
/// queue: [`Journal::open`] does it, and so must a command-line tool that changes the
/// store beside a running server.
pub async fn authenticate_queue(
    store: &Store,
    seal: &dyn SecretSeal,
) -> Result<MacKey, JournalError> {
    Ok(open_mac_key(store, seal).await?.0)
}

/// The MAC key (created on first use) set up for the queue, and whether this call
/// created it.
async fn open_mac_key(
    store: &Store,
    seal: &dyn SecretSeal,
) -> Result<(MacKey, bool), JournalError> {
    let fresh = seal
        .seal(&random32())
        .map_err(|e| JournalError::Config(format!("cannot seal the journal's {MAC_KEY}: {e}")))?;
    let stored = store.journal_secret(MAC_KEY, &fresh).await?;
    let created = stored == fresh;
    let key = MacKey::new(secret32(stored, MAC_KEY, seal)?);
    let queue = key.clone();
    store.set_queue_mac(QueueMac(Arc::new(move |leaf, subject| {
        queue.queued(leaf, subject).to_vec()
    })));
    Ok((key, created))
}

/// The entry MAC key as stored, opened (`socle journal check`, offline); `None` when
/// the journal has none yet.
pub async fn read_mac_key(
    store: &Store,
    seal: &dyn SecretSeal,
) -> Result<Option<MacKey>, JournalError> {
    match store.journal_read_secret(MAC_KEY).await? {
        None => Ok(None),
        Some(v) => Ok(Some(MacKey::new(secret32(v, MAC_KEY, seal)?))),
    }
}

/// The checkpoint signing key as stored, opened (`socle journal export`, offline).
pub async fn read_signing_seed(
    store: &Store,
    seal: &dyn SecretSeal,
) -> Result<Option<[u8; 32]>, JournalError> {
    match store.journal_read_secret(SIGNING_KEY).await? {
        None => Ok(None),
        Some(v) if in_clear(&v) => Ok(v.try_into().ok()),
        Some(v) => secret32(v, SIGNING_KEY, seal).map(Some),
    }
}

/// Perfect-subtree hashes never change once written, so the upper levels — shared by
/// every proof — are kept in memory (bounded; levels 6 and up, i.e. one node per 64
/// leaves or fewer).
#[derive(Default)]
struct NodeCache {
    nodes: std::sync::Mutex<std::collections::HashMap<NodeId, Hash>>,
}

const CACHE_MIN_LEVEL: u8 = 6;
const CACHE_MAX_NODES: usize = 500_000;

impl NodeCache {
    fn get(&self, id: &NodeId) -> Option<Hash> {
        self.nodes.lock().ok()?.get(id).copied()
    }

    fn put(&self, id: NodeId, h: Hash) {
        if id.level < CACHE_MIN_LEVEL {
            return;
        }
        if let Ok(mut nodes) = self.nodes.lock()
            && nodes.len() < CACHE_MAX_NODES
        {
            nodes.insert(id, h);
        }
    }
}

async fn read_nodes_cached(
    store: &Store,
    cache: &NodeCache,
    ids: &[NodeId],
) -> Result<NodeMap, JournalError> {
    let mut map = NodeMap::with_capacity(ids.len());
    let mut missing = Vec::with_capacity(ids.len());
    for id in ids {
        match cache.get(id) {
            Some(h) => {
                map.insert(*id, h);
            }
            None => missing.push(*id),
        }
    }
    if !missing.is_empty() {
        for (id, h) in read_nodes(store, &missing).await? {
            cache.put(id, h);
            map.insert(id, h);
        }
    }
    Ok(map)
}

async fn read_nodes(store: &Store, ids: &[NodeId]) -> Result<NodeMap, JournalError> {
    // Level 0 is the leaf hash kept beside each entry; higher levels are stored by
    // their creation-order position.
    let leaves: Vec<u64> = ids
        .iter()
        .filter(|n| n.level == 0)
        .map(|n| n.index)
        .collect();
    let above: Vec<(u64, NodeId)> = ids
        .iter()
        .filter(|n| n.level > 0)
        .map(|n| (merkle::storage_index(*n), *n))
        .collect();
    let mut map = NodeMap::with_capacity(ids.len());
    let positions: Vec<u64> = above.iter().map(|(p, _)| *p).collect();
    let by_pos: std::collections::HashMap<u64, NodeId> = above.into_iter().collect();
    for (is_leaf, key, h) in store.journal_hashes(&leaves, &positions).await? {
        if is_leaf {
            map.insert(
                NodeId {
                    level: 0,
                    index: key,
                },
                h,
            );
        } else if let Some(id) = by_pos.get(&key) {
            map.insert(*id, h);
        }
    }
    Ok(map)
}

impl Journal {
    /// Opens the journal on `store` (migrated), creating its keys and state on first
    /// use, and starts the committer and sequencer tasks.
    pub async fn open(
        store: Store,
        config: JournalConfig,
        seal: &dyn SecretSeal,
    ) -> Result<Journal, JournalError> {
        let state = store.journal_state(&config.origin).await?;
        if state.origin != config.origin && config.origin_explicit {
            return Err(JournalError::Config(format!(
                "journal.origin is {:?} but this journal was created with origin {:?}; an origin \
                 cannot change (it names every checkpoint ever signed)",
                config.origin, state.origin
            )));
        }
        let (seed, pseudonym) = open_secrets(&store, seal).await?;
        let (mac, mac_created) = open_mac_key(&store, seal).await?;
        let signer = NoteSigner::from_seed(&state.origin, &seed)
            .map_err(|e| JournalError::Config(format!("journal origin {:?}: {e}", state.origin)))?;
        let verifier = signer.verifier();
        let latest = store.journal_latest_checkpoint().await?;
        let (requests, rx) = mpsc::channel(16_384);
        let (stop, _) = watch::channel(false);
        let (published, _) = watch::channel(latest.clone());
        let inner = Arc::new(Inner {
            store,
            origin: state.origin,
            signer,
            verifier,
            pseudonymiser: Pseudonymiser::new(pseudonym),
            mac,
            // Rows from before MACs are adopted only by the start that creates the key
            // (and once per database, the marker): a key in place means any row
            // without its MAC was written by someone else.
            adopted: std::sync::atomic::AtomicBool::new(!mac_created),
            requests,
            wake: Notify::new(),
            stop,
            tasks: tokio::sync::Mutex::new(Vec::new()),
            published,
            known_size: AtomicU64::new(0),
            cache: NodeCache::default(),
            config,
            health: std::sync::Mutex::new(Health::default()),
            submitted: AtomicU64::new(0),
            halted: std::sync::Mutex::new(None),
            lag: std::sync::Mutex::new(Lag {
                oldest: None,
                since: Instant::now(),
                stalled: None,
            }),
            logged_seq: std::sync::atomic::AtomicI64::new(0),
        });
        let writer = tokio::spawn(writer(inner.clone(), rx));
        inner.tasks.lock().await.push(writer);
        let watcher = tokio::spawn(watch_lag(inner.clone()));
        inner.tasks.lock().await.push(watcher);
        let journal = Journal { inner };
        if state.size == 0 && latest.is_none() {
            // A new journal: its first entry records its signing key.
            journal
                .append(vec![
                    Entry::new(crate::EntryKind::KeyRotation, "system", "ok")
                        .detail("action", "journal.key.created")
                        .detail("key", journal.verifier_key()),
                ])
                .await?;
        }
        Ok(journal)
    }

    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The checkpoint verifier key, `<origin>+<hash>+<base64 key>`.
    pub fn verifier_key(&self) -> String {
        self.inner.verifier.encode()
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.inner.verifier
    }

    /// The stable pseudonym of a person: the key of the index of their entries,
    /// never published in a leaf.
    pub fn pseudonym(&self, person_key: &str) -> String {
        self.inner.pseudonymiser.pseudonym(person_key)
    }

    /// A new subject for one entry about the person whose stable key is `person_key`.
    pub fn subject(&self, person_key: &str) -> Subject {
        self.subject_of(&self.pseudonym(person_key))
    }

    /// A new subject for one entry about the person whose pseudonym is `pseudonym`.
    pub fn subject_of(&self, pseudonym: &str) -> Subject {
        self.inner.pseudonymiser.subject_of(pseudonym)
    }

    /// The subject key of the person whose pseudonym is `pseudonym`, which lets them
    /// recognise their entries in the public log (`docs/JOURNAL.md`).
    pub fn subject_key(&self, pseudonym: &str) -> [u8; 32] {
        self.inner.pseudonymiser.subject_key(pseudonym)
    }

    /// Whether a leaf's `subject` designates the person whose pseudonym is `pseudonym`.
    pub fn is_subject(&self, pseudonym: &str, subject: &str) -> bool {
        self.inner.pseudonymiser.is_subject(pseudonym, subject)
    }

    /// The `sub` of a consent receipt of the person whose pseudonym is `pseudonym`.
    pub fn receipt_subject(&self, pseudonym: &str, consent_id: &str) -> String {
        self.inner
            .pseudonymiser
            .receipt_subject(pseudonym, consent_id)
    }

    /// Recognises the entries of the person whose pseudonym is `pseudonym`.
    pub fn matcher(&self, pseudonym: &str) -> SubjectMatcher {
        SubjectMatcher::new(&self.inner.pseudonymiser, pseudonym)
    }

    /// Appends entries; returns once they are durable (they will be in every later
    /// checkpoint). Fails without writing anything if an entry is invalid.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), JournalError> {
        let leaves = encode(entries)?;
        if leaves.is_empty() {
            return Ok(());
        }
        if *self.inner.stop.borrow() {
            return Err(JournalError::Closed);
        }
        self.sequencing()?;
        let started = Instant::now();
        let seq = self.inner.submitted.fetch_add(1, Ordering::Relaxed) + 1;
        let (done, wait) = oneshot::channel();
        self.inner
            .requests
            .send(Request { leaves, done })
            .await
            .map_err(|_| JournalError::Closed)?;
        let result = wait.await.map_err(|_| JournalError::Closed)?;
        metrics::histogram!("socle_journal_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("socle_journal_append_failures_total").increment(1);
        }
        let mut health = self
            .inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seq < health.newest {
            return result;
        }
        health.newest = seq;
        match &result {
            Ok(()) => health.failing = None,
            Err(e) => {
                // The reason without details: it is shown on the public readiness probe.
                let why = match e {
                    JournalError::Unavailable(_) => "the journal's store is unreachable",
                    JournalError::Closed => "the journal is shut down",
                    JournalError::Conflict(_) => "another sequencer extended the journal",
                    _ => "the journal's store refused the write",
                };
                let now = Instant::now();
                // Since the first failure of this run (one the hold let go is over).
                let since = health
                    .failing
                    .as_ref()
                    .filter(|f| f.last.elapsed() < TROUBLE_HOLD)
                    .map_or(now, |f| f.since);
                health.failing = Some(Failing {
                    since,
                    last: now,
                    why,
                });
            }
        }
        drop(health);
        result
    }

    /// Why this node should not take traffic as far as the journal knows, for the
    /// readiness probe: it is shut down, or its last append failed and none succeeded
    /// since (reported for at most [`TROUBLE_HOLD`] after the last append, so that a
    /// node out of rotation is tried again). `None` while appends are written. Appends
    /// are counted here whatever their caller (gateway exchanges, logins, tools).
    pub fn trouble(&self) -> Option<String> {
        if *self.inner.stop.borrow() {
            return Some("the journal is shut down".into());
        }
        if let Err(JournalError::Unavailable(why)) = self.sequencing() {
            return Some(why);
        }
        if let Some(why) = self
            .inner
            .halted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Some(format!("the journal's sequencer is halted: {why}"));
        }
        let health = self
            .inner
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = health
            .failing
            .as_ref()
            .filter(|f| f.last.elapsed() < TROUBLE_HOLD)?;
        Some(format!(
            "{}: appends have failed for {} s (exchanges are refused until it writes again)",
            f.why,
            f.since.elapsed().as_secs()
        ))
    }

    /// Fails closed when the log is not being sequenced: the oldest leaf of the durable
    /// queue has waited longer than `journal.max_unsequenced` (the sequencer is halted,
    /// or no node holds it). What needs recording must then not happen: exchanges,
    /// logins and consents are refused until it moves again.
    pub fn sequencing(&self) -> Result<(), JournalError> {
        let lag = self
            .inner
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match lag.stalled {
            None => Ok(()),
            Some(waited) => Err(JournalError::Unavailable(format!(
                "the journal has sequenced nothing for {} s (entries wait unsigned in its queue): nothing that needs recording is accepted until it does",
                waited.as_secs()
            ))),
        }
    }

    /// Waits until a checkpoint covering at least `size` entries is published (tests,
    /// tools), up to `timeout`.
    pub async fn wait_for_size(
        &self,
        size: u64,
        timeout: Duration,
    ) -> Result<StoredCheckpoint, JournalError> {
        let mut rx = self.inner.published.subscribe();
        let wait = async {
            loop {
                if let Some(cp) = rx.borrow_and_update().clone().filter(|cp| cp.size >= size) {
                    return Ok(cp);
                }
                if rx.changed().await.is_err() {
                    return Err(JournalError::Closed);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            JournalError::Range(format!("no checkpoint of size {size} within {timeout:?}"))
        })?
    }

    /// Subscribes to the checkpoints this node publishes.
    pub fn subscribe(&self) -> watch::Receiver<Option<StoredCheckpoint>> {
        self.inner.published.subscribe()
    }

    /// The latest signed checkpoint, from the store (so every node serves the same).
    pub async fn latest_checkpoint(&self) -> Result<StoredCheckpoint, JournalError> {
        self.inner
            .store
            .journal_latest_checkpoint()
            .await?
            .ok_or(JournalError::NoCheckpoint)
    }

    /// Signed checkpoints of size > `after`, by increasing size.
    pub async fn checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, JournalError> {
        Ok(self.inner.store.journal_checkpoints(after, limit).await?)
    }

    /// Entries `[start, start + count)` among those covered by the latest checkpoint.
    pub async fn entries(
        &self,
        start: u64,
        count: u64,
    ) -> Result<(u64, Vec<StoredEntry>), JournalError> {
        let size = self.latest_checkpoint().await.map(|c| c.size).unwrap_or(0);
        if start > size {
            return Err(JournalError::Range(format!(
                "start {start} is beyond the latest checkpoint (size {size})"
            )));
        }
        let end = start.saturating_add(count).min(size);
        Ok((size, self.inner.store.journal_entries(start, end).await?))
    }

    /// A person's entries (by pseudonym) among those covered by the latest checkpoint,
    /// newest first, at most `limit`, read in one query.
    pub async fn subject_entries(
        &self,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, JournalError> {
        let size = self.latest_checkpoint().await.map(|c| c.size).unwrap_or(0);
        Ok(self
            .inner
            .store
            .journal_subject_entries(subject, size, limit)
            .await?)
    }

    /// A person's entries (by pseudonym) below index `before`, among those covered by
    /// the latest checkpoint, newest first, at most `limit`: one page of a keyset walk
    /// through all of them (start with `u64::MAX`, then the last index read).
    pub async fn subject_entries_before(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, JournalError> {
        // A checkpoint that cannot be read is an error, not an empty list: a walk
        // would end early and say less than the person's whole history.
        let size = match self.latest_checkpoint().await {
            Ok(c) => c.size,
            Err(JournalError::NoCheckpoint) => 0,
            Err(e) => return Err(e),
        };
        Ok(self
            .inner
            .store
            .journal_subject_entries(subject, size.min(before), limit)
            .await?)
    }

    async fn check_size(&self, size: u64) -> Result<(), JournalError> {
        // Checkpoints only grow: a size already known to be covered needs no query.
        if size <= self.inner.known_size.load(Ordering::Relaxed) {
            return Ok(());
        }
        let latest = self.latest_checkpoint().await.map(|c| c.size).unwrap_or(0);
        self.inner.known_size.fetch_max(latest, Ordering::Relaxed);
        if size > latest {
            return Err(JournalError::Range(format!(
                "size {size} is beyond the latest checkpoint (size {latest})"
            )));
        }
        Ok(())
    }

    /// The stored tree nodes (above the leaves) that the entries `[start, end)` complete,
    /// as proofs are read from them: a verifier that recomputes them from the entries
    /// finds a corrupted node that its own root computation would never meet.
    /// `end` is at most the latest checkpoint's size.
    pub async fn stored_nodes(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<(NodeId, Hash)>, JournalError> {
        self.check_size(end).await?;
        let mut ids = Vec::new();
        for i in start..end {
            // Leaf i completes one node per trailing one bit of i.
            for level in 1..=(i + 1).trailing_zeros().min(63) as u8 {
                ids.push(NodeId {
                    level,
                    index: i >> level,
                });
            }
        }
        let nodes = read_nodes_cached(&self.inner.store, &self.inner.cache, &ids).await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| nodes.get(&id).map(|h| (id, *h)))
            .collect())
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<InclusionProof, JournalError> {
        self.check_size(size).await?;
        let mut ids = merkle::nodes_for_inclusion(index, size).map_err(range_error)?;
        ids.extend(merkle::nodes_for_root(size));
        let nodes = read_nodes_cached(&self.inner.store, &self.inner.cache, &ids).await?;
        let hashes = merkle::inclusion_proof(index, size, &nodes).map_err(integrity_error)?;
        let root = merkle::root(size, &nodes).map_err(integrity_error)?;
        Ok(InclusionProof {
            index,
            size,
            root,
            hashes,
        })
    }

    /// The consistency proof between the trees of `from` and `to` entries.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, JournalError> {
        self.check_size(to).await?;
        let ids = merkle::nodes_for_consistency(from, to).map_err(range_error)?;
        let nodes = read_nodes_cached(&self.inner.store, &self.inner.cache, &ids).await?;
        let hashes = merkle::consistency_proof(from, to, &nodes).map_err(integrity_error)?;
        Ok(ConsistencyProof { from, to, hashes })
    }

    /// The root of the stored tree of `size` entries.
    pub async fn root(&self, size: u64) -> Result<Hash, JournalError> {
        let nodes = read_nodes(&self.inner.store, &merkle::nodes_for_root(size)).await?;
        merkle::root(size, &nodes).map_err(integrity_error)
    }

    /// Stops accepting appends, commits what was acknowledged-pending, sequences the
    /// queue and signs a last checkpoint, then stops the tasks.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.wake.notify_one();
        let tasks: Vec<JoinHandle<()>> = self.inner.tasks.lock().await.drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn range_error(e: ProofError) -> JournalError {
    JournalError::Range(e.to_string())
}

fn integrity_error(e: ProofError) -> JournalError {
    JournalError::Integrity(e.to_string())
}

/// Resolves once shutdown has been requested (the watch guard is not held across
/// awaits, so the futures stay `Send`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The sequencer's view of the log.
struct Sequencing {
    frontier: Frontier,
    last_signed: Option<(u64, Hash)>,
    last_sign_at: Instant,
    /// When the durable queue (other nodes' appends) was last drained.
    last_drain: Instant,
}

/// Takes every request waiting (at least one, unless shutting down or idle for
/// `idle`): group commit shares one transaction among concurrent callers.
async fn next_batch(
    rx: &mut mpsc::Receiver<Request>,
    stop: &mut watch::Receiver<bool>,
    idle: Duration,
) -> Vec<Request> {
    let first = tokio::select! {
        r = rx.recv() => r,
        _ = stopped(stop) => {
            // Drain what was already submitted, then nothing more is accepted.
            rx.close();
            rx.recv().await
        }
        _ = tokio::time::sleep(idle) => None,
    };
    let Some(first) = first else {
        return Vec::new();
    };
    let mut count = first.leaves.len();
    let mut batch = vec![first];
    while count < 8192 {
        match rx.try_recv() {
            Ok(r) => {
                count += r.leaves.len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    batch
}

fn ack(batch: Vec<Request>, result: &Result<(), JournalError>) {
    for r in batch {
        let _ = r.done.send(result.clone());
    }
}

/// Writes entries to the durable queue without sequencing them: the running sequencer,
/// or the next one to start, integrates them. For command-line tools that change the
/// store beside a running server.
pub async fn enqueue(store: &Store, entries: Vec<Entry>) -> Result<(), JournalError> {
    store.journal_writer().enqueue(&encode(entries)?).await?;
    Ok(())
}

/// An encoded entry as the journal stores it, and the pseudonym it is indexed under.
pub type Leaf = (Vec<u8>, Option<String>);

/// Entries as the leaves (and subjects) the journal stores, for a caller that writes
/// them to the durable queue in its own transaction, with the change they record
/// (`socle_store::HabilitationCommit`); the running sequencer integrates them. Fails if
/// an entry is invalid.
pub fn encode(entries: Vec<Entry>) -> Result<Vec<Leaf>, JournalError> {
    entries
        .into_iter()
        .map(|e| {
            if e.subject.is_some() && e.indexed_as.is_none() {
                // A subject set by hand would never be indexed: the person would not
                // find the entry.
                return Err(EntryError::Invalid("a subject is set with Entry::subject").into());
            }
            Ok((e.encode()?, e.indexed_as))
        })
        .collect()
}

/// The journal's one writer task per node.
///
/// On the node that holds the sequencer lease (always with SQLite; on PostgreSQL the
/// holder of the advisory lock), a batch of appends is given its indices and written
/// with the tree nodes it completes in **one** durable transaction, which is what the
/// callers wait for; the queue of other nodes' appends is drained into the same kind of
/// transaction; checkpoints are signed apart, at most every `checkpoint_interval`. On
/// the other nodes, a batch is written to the durable queue and acknowledged; those
/// nodes keep trying to take the lease.
async fn writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut stop = inner.stop.subscribe();
    let mut w = inner.store.journal_writer();
    let idle = Duration::from_millis(100);
    loop {
        let lease = match inner.store.journal_try_lead().await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "journal writer cannot reach the store");
                None
            }
        };
        let mut seq = match &lease {
            None => {
                // Not leading: whatever this node could not load before is another
                // node's to sequence now (the lag watcher sees a platform-wide stall).
                if let Ok(mut halted) = inner.halted.lock()
                    && halted.take().is_some()
                {
                    metrics::gauge!("socle_journal_sequencer_halted").set(0.0);
                }
                None
            }
            Some(l) => {
                // On SQLite, leading first replays what the redo log acknowledged
                // beyond the database, so that the stored tree is complete.
                let loaded = match w.lead(l).await {
                    Err(e) => Err(JournalError::from(e)),
                    Ok(()) => load(&inner, &mut w).await,
                };
                let mut halted = inner
                    .halted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *halted = loaded.as_ref().err().map(|e| match e {
                    // Said on the public readiness probe: the kind, not the store's text.
                    JournalError::Integrity(_) => {
                        "the stored log does not match what was signed".to_string()
                    }
                    JournalError::Forged(_) => {
                        "the stored log holds rows this journal did not write".to_string()
                    }
                    JournalError::Unavailable(_) => "its store is unreachable".to_string(),
                    _ => "it cannot load the log".to_string(),
                });
                metrics::gauge!("socle_journal_sequencer_halted").set(if halted.is_some() {
                    1.0
                } else {
                    0.0
                });
                drop(halted);
                loaded
                .inspect(|s| {
                    tracing::info!(size = s.frontier.size(), origin = %inner.origin, "journal sequencer running");
                })
                .inspect_err(|e| {
                    tracing::error!(error = %e, "journal sequencer halted: cannot load the log; appends go to the queue");
                })
                .ok()
            }
        };
        let lease = match (seq.is_some(), lease) {
            (true, lease) => lease,
            (false, None) => None,
            (false, Some(_)) => {
                // Could not sequence: give the lease back for another node, and queue
                // appends on a plain durable connection meanwhile.
                w.release().await;
                inner.logged_seq.store(0, Ordering::Relaxed);
                None
            }
        };
        let follower_since = Instant::now();
        // The checkpoint being signed, beside the loop (never in the appends' way).
        let mut signing: Option<JoinHandle<Result<(u64, Hash), JournalError>>> = None;
        loop {
            let stopping = *stop.borrow();
            let mut batch = next_batch(&mut rx, &mut stop, idle).await;
            let stopping = stopping || *stop.borrow();
            let mut leaves = Vec::new();
            for r in &mut batch {
                leaves.append(&mut r.leaves);
            }
            match seq.as_mut() {
                Some(s) => {
                    let drain = stopping || s.last_drain.elapsed() >= idle || batch.is_empty();
                    let done = acknowledge(batch, leaves.len());
                    let result = integrate(&inner, &mut w, s, leaves, drain, done).await;
                    inner.logged_seq.store(w.logged_seq(), Ordering::Relaxed);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "journal append failed");
                    }
                    if matches!(result, Err(JournalError::Conflict(_))) {
                        tracing::warn!("journal moved under this sequencer; reloading");
                        break;
                    }
                    if matches!(result, Err(JournalError::Forged(_))) {
                        // Reloading finds the same rows and halts with the reason.
                        tracing::error!(
                            "journal sequencer stopping: the queue holds a leaf this journal did not write"
                        );
                        break;
                    }
                    if signing.as_ref().is_some_and(JoinHandle::is_finished)
                        && let Some(h) = signing.take()
                    {
                        settle(s, h.await);
                    }
                    let changed = s.last_signed.map(|(size, _)| size) != Some(s.frontier.size())
                        && s.frontier.size() > 0;
                    let finished = stopping && rx.is_closed() && rx.is_empty();
                    if finished {
                        // A last checkpoint covering everything acknowledged.
                        if let Some(h) = signing.take() {
                            settle(s, h.await);
                        }
                        let changed =
                            s.last_signed.map(|(size, _)| size) != Some(s.frontier.size());
                        if changed && s.frontier.size() > 0 {
                            match w.sink().await {
                                Ok(sink) => {
                                    let last = sign(
                                        inner.clone(),
                                        sink,
                                        s.frontier.size(),
                                        s.frontier.root(),
                                        s.last_signed,
                                    )
                                    .await;
                                    settle(s, Ok(last));
                                }
                                Err(e) => {
                                    tracing::error!(error = %e, "journal checkpoint not signed")
                                }
                            }
                        }
                        w.finish().await;
                        return;
                    }
                    let due = s.last_sign_at.elapsed() >= inner.config.checkpoint_interval;
                    if due && changed && signing.is_none() {
                        match w.sink().await {
                            Ok(sink) => {
                                s.last_sign_at = Instant::now();
                                signing = Some(tokio::spawn(sign(
                                    inner.clone(),
                                    sink,
                                    s.frontier.size(),
                                    s.frontier.root(),
                                    s.last_signed,
                                )));
                            }
                            Err(e) => tracing::error!(error = %e, "journal checkpoint not signed"),
                        }
                    }
                }
                None => {
                    if !leaves.is_empty() {
                        let n = leaves.len() as u64;
                        let result = w.enqueue(&leaves).await.map_err(JournalError::from);
                        if let Err(e) = &result {
                            tracing::error!(error = %e, "journal append failed");
                        } else {
                            metrics::counter!("socle_journal_appended_total").increment(n);
                        }
                        ack(batch, &result);
                    }
                    if stopping && rx.is_closed() && rx.is_empty() {
                        w.finish().await;
                        return;
                    }
                    if !stopping && follower_since.elapsed() >= Duration::from_secs(1) {
                        break; // try to take the lease again
                    }
                }
            }
        }
        if let Some(h) = signing.take() {
            let _ = h.await;
        }
        w.release().await;
        inner.logged_seq.store(0, Ordering::Relaxed);
        drop(lease);
    }
}

/// Follows the age of the durable queue's oldest leaf, every quarter of the bound
/// (at most a second): a leaf that waits longer than `max_unsequenced` means nobody is
/// sequencing, and appends are then refused ([`Journal::sequencing`]).
async fn watch_lag(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let period =
        (inner.config.max_unsequenced / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = stopped(&mut stop) => return,
        }
        let after = inner.logged_seq.load(Ordering::Relaxed);
        let oldest = match inner.store.journal_oldest_queued(after).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "journal: the queue's age cannot be read");
                continue;
            }
        };
        let mut lag = inner
            .lag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if oldest != lag.oldest {
            lag.oldest = oldest;
            lag.since = Instant::now();
        }
        let waited = lag.since.elapsed();
        let stalled = (oldest.is_some() && waited > inner.config.max_unsequenced).then_some(waited);
        if stalled.is_some() && lag.stalled.is_none() {
            tracing::error!(
                waited_ms = waited.as_millis() as u64,
                "journal: a queued entry waits unsequenced; refusing what needs recording until it moves"
            );
        } else if stalled.is_none() && lag.stalled.is_some() {
            tracing::info!("journal: sequencing again; accepting appends");
        }
        lag.stalled = stalled;
        metrics::gauge!("socle_journal_unsequenced_age_seconds").set(if oldest.is_some() {
            waited.as_secs_f64()
        } else {
            0.0
        });
    }
}

/// What to do once a batch is durable: answer its callers.
fn acknowledge(batch: Vec<Request>, entries: usize) -> Done {
    let began = Instant::now();
    Box::new(move |result| {
        if entries > 0 {
            metrics::histogram!("socle_journal_commit_duration_seconds")
                .record(began.elapsed().as_secs_f64());
            metrics::histogram!("socle_journal_batch_entries").record(entries as f64);
        }
        ack(batch, &result.map_err(JournalError::from));
    })
}

/// Takes a signing's outcome: its checkpoint is what the next must extend.
fn settle(
    seq: &mut Sequencing,
    signed: Result<Result<(u64, Hash), JournalError>, tokio::task::JoinError>,
) {
    match signed {
        Ok(Ok(last)) => seq.last_signed = Some(last),
        Ok(Err(e)) => tracing::error!(error = %e, "journal checkpoint not signed"),
        Err(e) => tracing::error!(error = %e, "journal checkpoint signer failed"),
    }
}

/// Recomputes the stored tree from `frontier` (trusted, at its size) up to `to`
/// entries, from the entries' leaves: each entry's leaf hash from its bytes, and every
/// node its leaf completes from the leaf hashes, compared with the stored ones. Returns
/// the frontier at `to`, or names the first stored node or entry that does not match
/// (a corrupted node would otherwise be served in inclusion proofs that do not verify).
/// `checkpoints` (size, root, by increasing size) met on the way are checked too;
/// `progress` is told the size reached after each page.
pub async fn check_stored_tree(
    store: &Store,
    mut frontier: Frontier,
    to: u64,
    checkpoints: &[(u64, Hash)],
    macs: Option<&MacKey>,
    mut progress: impl FnMut(u64),
) -> Result<Frontier, JournalError> {
    const PAGE: u64 = 4096;
    let bad = |m: String| JournalError::Integrity(m);
    // The next checkpoint to meet (they come sorted): one comparison per entry.
    let mut next_cp = checkpoints.partition_point(|(s, _)| *s <= frontier.size());
    while frontier.size() < to {
        let start = frontier.size();
        let end = to.min(start + PAGE);
        let entries = store.journal_entries(start, end).await?;
        if entries.len() as u64 != end - start {
            return Err(bad(format!(
                "entries {start} to {end}: {} stored, {} expected",
                entries.len(),
                end - start
            )));
        }
        let mut created = Vec::with_capacity(entries.len() * 2);
        for e in &entries {
            if e.index != frontier.size() {
                return Err(bad(format!("entry {} is missing", frontier.size())));
            }
            let h = merkle::leaf_hash(&e.leaf);
            if h != e.leaf_hash {
                return Err(bad(format!(
                    "entry {}: its stored leaf hash is not its leaf's",
                    e.index
                )));
            }
            if let Some(key) = macs
                && !key.entry_ok(e.index, &e.leaf, e.subject.as_deref(), e.mac.as_deref())
            {
                return Err(JournalError::Forged(format!(
                    "entry {} carries no valid MAC: it was not written by this journal's sequencer",
                    e.index
                )));
            }
            frontier.push(h, &mut created);
            while let Some((size, root)) = checkpoints.get(next_cp)
                && *size <= frontier.size()
            {
                if *size == frontier.size() && frontier.root() != *root {
                    return Err(bad(format!(
                        "the entries do not give the root signed in the checkpoint of size {size}"
                    )));
                }
                next_cp += 1;
            }
        }
        let above: Vec<(NodeId, Hash)> =
            created.into_iter().filter(|(id, _)| id.level > 0).collect();
        let ids: Vec<NodeId> = above.iter().map(|(id, _)| *id).collect();
        let stored = read_nodes(store, &ids).await?;
        for (id, h) in &above {
            let first = id.index << id.level;
            let last = first + (1u64 << id.level) - 1;
            match stored.get(id) {
                None => {
                    return Err(bad(format!(
                        "the tree node over entries {first} to {last} (level {}) is missing",
                        id.level
                    )));
                }
                Some(s) if s != h => {
                    return Err(bad(format!(
                        "the stored tree node over entries {first} to {last} (level {}) does not match the entries",
                        id.level
                    )));
                }
                Some(_) => {}
            }
        }
        progress(frontier.size());
    }
    Ok(frontier)
}

/// The queued leaves in `queued` whose MAC is not the journal's, named for the log.
fn check_queued(key: &MacKey, queued: &[QueuedLeaf]) -> Result<(), JournalError> {
    match queued
        .iter()
        .find(|q| !key.queued_ok(&q.leaf, q.subject.as_deref(), q.mac.as_deref()))
    {
        None => Ok(()),
        Some(q) => Err(JournalError::Forged(format!(
            "queued leaf {} carries no valid MAC: it was not written through this platform",
            q.seq
        ))),
    }
}

/// Rebuilds the frontier from the stored tree and checks it against the last
/// published checkpoint; the entries after it (the right edge, written since the last
/// signature) must carry the journal's MAC, and the nodes they complete are
/// recomputed from their leaves; the head of the queue must carry MACs too. On the
/// first start with a new MAC key, the rows from before MACs are adopted first.
async fn load(inner: &Inner, w: &mut JournalWriter) -> Result<Sequencing, JournalError> {
    let state = inner.store.journal_state(&inner.origin).await?;
    let nodes = read_nodes(&inner.store, &Frontier::nodes_for(state.size)).await?;
    let frontier = Frontier::from_nodes(state.size, &nodes).map_err(integrity_error)?;
    let latest = inner.store.journal_latest_checkpoint().await?;
    let last_signed = match latest {
        None => None,
        Some(cp) => {
            if cp.size > state.size {
                return Err(JournalError::Integrity(format!(
                    "a checkpoint of size {} was published but the stored log has only {} entries",
                    cp.size, state.size
                )));
            }
            let nodes = read_nodes(&inner.store, &merkle::nodes_for_root(cp.size)).await?;
            let root = merkle::root(cp.size, &nodes).map_err(integrity_error)?;
            if root != cp.root {
                return Err(JournalError::Integrity(format!(
                    "the stored tree does not match the checkpoint of size {} published earlier",
                    cp.size
                )));
            }
            Some((cp.size, cp.root))
        }
    };
    // The entries after the last checkpoint are covered by no signature yet: they
    // must be the sequencer's, and their leaves and the nodes they complete the ones
    // stored.
    let signed = last_signed.map_or(0, |(size, _)| size);
    if !inner.adopted.load(Ordering::Relaxed) {
        let key = &inner.mac;
        let mut recorded = Ok(());
        let adopted = inner
            .store
            .journal_adopt_macs(
                signed,
                |i, leaf, subject| key.entry(i, leaf, subject).to_vec(),
                |entries, queued| {
                    if entries + queued == 0 {
                        return Vec::new();
                    }
                    encode(vec![
                        Entry::new(crate::EntryKind::Admin, "system", "ok")
                            .detail("action", "journal.macs.adopted")
                            .detail("entries", entries.to_string())
                            .detail("queued", queued.to_string()),
                    ])
                    .unwrap_or_else(|e| {
                        recorded = Err(e);
                        Vec::new()
                    })
                },
            )
            .await?;
        recorded?;
        if let Some((entries, queued)) = adopted
            && entries + queued > 0
        {
            tracing::warn!(
                entries,
                queued,
                "journal: the unsigned entries and queued leaves written before MACs were adopted as they are (once per database)"
            );
        }
        inner.adopted.store(true, Ordering::Relaxed);
    }
    check_queued(&inner.mac, &w.queued(inner.config.max_batch).await?)?;
    if signed < state.size {
        let nodes = read_nodes(&inner.store, &Frontier::nodes_for(signed)).await?;
        let from = Frontier::from_nodes(signed, &nodes).map_err(integrity_error)?;
        let rebuilt = check_stored_tree(
            &inner.store,
            from,
            state.size,
            &[],
            Some(&inner.mac),
            |_| {},
        )
        .await?;
        if rebuilt.root() != frontier.root() {
            return Err(JournalError::Integrity(
                "the stored right edge of the tree does not match the entries".into(),
            ));
        }
    }
    let long_ago = Instant::now() - inner.config.checkpoint_interval;
    Ok(Sequencing {
        frontier,
        last_signed,
        last_sign_at: long_ago,
        last_drain: long_ago,
    })
}

/// Called once a batch is durable, or could not be made so.
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Gives `fresh` leaves (this node's appends) and, when `drain`, the queued leaves of
/// other nodes their indices, and hands them with the tree nodes they complete to the
/// store as one batch; `done` (the callers' answer) is called once it is durable.
/// Returns once handed over: the frontier then includes the batch.
async fn integrate(
    inner: &Inner,
    w: &mut JournalWriter,
    seq: &mut Sequencing,
    fresh: Vec<(Vec<u8>, Option<String>)>,
    drain: bool,
    done: Done,
) -> Result<(), JournalError> {
    let mut fresh = Some(fresh);
    let mut done = Some(done);
    loop {
        let queued = if drain {
            let checked = w
                .queued(inner.config.max_batch)
                .await
                .map_err(JournalError::from)
                .and_then(|q| check_queued(&inner.mac, &q).map(|()| q));
            match checked {
                Ok(q) => q,
                Err(e) => {
                    if let Some(d) = done.take() {
                        d(Err(StoreError::Unavailable(
                            "the journal's sequencer stopped".into(),
                        )));
                    }
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        let local = fresh.take().unwrap_or_default();
        if queued.is_empty() && local.is_empty() {
            if let Some(d) = done.take() {
                d(Ok(()));
            }
            if drain {
                seq.last_drain = Instant::now();
            }
            return Ok(());
        }
        let more_queued = queued.len() >= inner.config.max_batch;
        let start = seq.frontier.size();
        let mut frontier = seq.frontier.clone();
        let mut nodes = Vec::with_capacity((queued.len() + local.len()) * 2 + 8);
        let mut entries = Vec::with_capacity(queued.len() + local.len());
        let mut seqs = Vec::with_capacity(queued.len());
        let queued_leaves = queued.into_iter().map(|q| {
            seqs.push(q.seq);
            (q.leaf, q.subject)
        });
        let all: Vec<(Vec<u8>, Option<String>)> = queued_leaves.chain(local).collect();
        let appended = all.len() as u64;
        for (i, (leaf, subject)) in all.into_iter().enumerate() {
            let leaf_hash = merkle::leaf_hash(&leaf);
            frontier.push(leaf_hash, &mut nodes);
            let index = start + i as u64;
            let mac = inner.mac.entry(index, &leaf, subject.as_deref());
            entries.push(NewEntry {
                index,
                leaf,
                leaf_hash,
                subject,
                mac: Some(mac),
            });
        }
        let nodes: Vec<(u64, Hash)> = nodes
            .into_iter()
            .filter(|(id, _)| id.level > 0)
            .map(|(id, h)| (merkle::storage_index(id), h))
            .collect();
        let callers = done.take();
        let counted: Done = Box::new(move |result| {
            match &result {
                Ok(()) => metrics::counter!("socle_journal_appended_total").increment(appended),
                Err(e) if callers.is_none() => {
                    tracing::error!(error = %e, "journal: queued appends not integrated");
                }
                Err(_) => {}
            }
            if let Some(d) = callers {
                d(result);
            }
        });
        let batch = JournalBatch {
            from_size: start,
            entries,
            nodes,
            seqs,
        };
        match w.integrate_with(batch, counted).await {
            Ok(()) => {
                metrics::gauge!("socle_journal_size").set(frontier.size() as f64);
                seq.frontier = frontier;
            }
            Err(StoreError::Conflict(m)) => return Err(JournalError::Conflict(m)),
            Err(e) => return Err(e.into()),
        }
        if !(drain && more_queued) {
            if drain {
                seq.last_drain = Instant::now();
            }
            return Ok(());
        }
    }
}

/// Signs a checkpoint of the tree of `size` entries and `root`, once it is readable
/// and after checking it extends the last one signed; publishes it.
async fn sign(
    inner: Arc<Inner>,
    sink: JournalSink,
    size: u64,
    root: Hash,
    last: Option<(u64, Hash)>,
) -> Result<(u64, Hash), JournalError> {
    let began = Instant::now();
    // The tree as far as `size` must be readable before a checkpoint says so.
    sink.barrier().await?;
    if let Some((old_size, old_root)) = last {
        let ids = merkle::nodes_for_consistency(old_size, size).map_err(integrity_error)?;
        let nodes = read_nodes(&inner.store, &ids).await?;
        let proof = merkle::consistency_proof(old_size, size, &nodes).map_err(integrity_error)?;
        merkle::verify_consistency(old_size, size, &old_root, &root, &proof).map_err(|e| {
            JournalError::Integrity(format!(
                "refusing to sign size {size}: not consistent with size {old_size} ({e})"
            ))
        })?;
    }
    let text = Checkpoint {
        origin: inner.origin.clone(),
        size,
        root,
    }
    .to_text();
    let note = inner.signer.sign(&text)?;
    let cp = StoredCheckpoint {
        size,
        root,
        note,
        created_at: crate::entry::now_millis(),
    };
    sink.add_checkpoint(&cp).await?;
    metrics::gauge!("socle_journal_checkpoint_size").set(size as f64);
    metrics::histogram!("socle_journal_checkpoint_duration_seconds")
        .record(began.elapsed().as_secs_f64());
    inner.known_size.fetch_max(size, Ordering::Relaxed);
    // send_replace: `send` keeps the old value when nobody is subscribed at that
    // moment, and a later subscriber would then wait for a checkpoint already signed.
    inner.published.send_replace(Some(cp));
    Ok((size, root))
}
