//! The running journal: group commit, sequencer, checkpoints, and the reads behind the
//! public endpoints.
//!
//! `append` hands entries to the **committer** task, which writes everything waiting
//! into the durable queue in one transaction and acknowledges each caller once that
//! transaction is committed (group commit: concurrent callers share one commit; a
//! caller waits for its batch, never for the tree). The **sequencer** task — on
//! PostgreSQL only in the node holding the advisory lock — moves queued leaves into
//! the log, giving them indices, extending the stored tree, and signs a checkpoint
//! when there is new data (every `checkpoint_interval`, so at least once a second).
//! Before signing it proves to itself, from the stored tree, that the new checkpoint
//! is consistent with the last one published: it never signs a fork.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use socle_store::Store;
use socle_store::{JournalStore, NewEntry, StoreError, StoredCheckpoint, StoredEntry};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::entry::{Entry, EntryError, Pseudonymiser};
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
}

impl JournalConfig {
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            origin_explicit: false,
            checkpoint_interval: Duration::from_millis(500),
            max_batch: 4096,
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
    requests: mpsc::Sender<Request>,
    wake: Notify,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    published: watch::Sender<Option<StoredCheckpoint>>,
    config: JournalConfig,
}

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

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b
}

fn secret32(v: Vec<u8>, name: &str) -> Result<[u8; 32], JournalError> {
    v.try_into()
        .map_err(|_| JournalError::Integrity(format!("the stored {name} is not 32 bytes")))
}

async fn read_nodes(store: &Store, ids: &[NodeId]) -> Result<NodeMap, JournalError> {
    let wanted: Vec<(u8, u64)> = ids.iter().map(|n| (n.level, n.index)).collect();
    let rows = store.journal_nodes(&wanted).await?;
    Ok(rows
        .into_iter()
        .map(|((level, index), h)| (NodeId { level, index }, h))
        .collect())
}

impl Journal {
    /// Opens the journal on `store` (migrated), creating its keys and state on first
    /// use, and starts the committer and sequencer tasks.
    pub async fn open(store: Store, config: JournalConfig) -> Result<Journal, JournalError> {
        let state = store.journal_state(&config.origin).await?;
        if state.origin != config.origin && config.origin_explicit {
            return Err(JournalError::Config(format!(
                "journal.origin is {:?} but this journal was created with origin {:?}; an origin \
                 cannot change (it names every checkpoint ever signed)",
                config.origin, state.origin
            )));
        }
        let seed = secret32(
            store.journal_secret(SIGNING_KEY, &random32()).await?,
            SIGNING_KEY,
        )?;
        let pseudonym = secret32(
            store.journal_secret(PSEUDONYM_KEY, &random32()).await?,
            PSEUDONYM_KEY,
        )?;
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
            requests,
            wake: Notify::new(),
            stop,
            tasks: tokio::sync::Mutex::new(Vec::new()),
            published,
            config,
        });
        let committer = tokio::spawn(committer(inner.clone(), rx));
        let sequencer = tokio::spawn(sequencer(inner.clone()));
        inner.tasks.lock().await.extend([committer, sequencer]);
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

    /// The pseudonym of a person in journal entries.
    pub fn pseudonym(&self, person_key: &str) -> String {
        self.inner.pseudonymiser.pseudonym(person_key)
    }

    /// Appends entries; returns once they are durable (they will be in every later
    /// checkpoint). Fails without writing anything if an entry is invalid.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), JournalError> {
        let mut leaves = Vec::with_capacity(entries.len());
        for e in entries {
            let leaf = e.encode()?;
            leaves.push((leaf, e.subject));
        }
        if leaves.is_empty() {
            return Ok(());
        }
        if *self.inner.stop.borrow() {
            return Err(JournalError::Closed);
        }
        let (done, wait) = oneshot::channel();
        self.inner
            .requests
            .send(Request { leaves, done })
            .await
            .map_err(|_| JournalError::Closed)?;
        wait.await.map_err(|_| JournalError::Closed)?
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

    /// Indices of a person's entries (by pseudonym), newest first, below `before`.
    pub async fn subject_indices(
        &self,
        subject: &str,
        before: u64,
        limit: usize,
    ) -> Result<Vec<u64>, JournalError> {
        Ok(self
            .inner
            .store
            .journal_subject_indices(subject, before, limit)
            .await?)
    }

    async fn check_size(&self, size: u64) -> Result<(), JournalError> {
        let latest = self.latest_checkpoint().await.map(|c| c.size).unwrap_or(0);
        if size > latest {
            return Err(JournalError::Range(format!(
                "size {size} is beyond the latest checkpoint (size {latest})"
            )));
        }
        Ok(())
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
        let nodes = read_nodes(&self.inner.store, &ids).await?;
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
        let nodes = read_nodes(&self.inner.store, &ids).await?;
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

/// Group commit: everything waiting goes into one transaction.
async fn committer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => return },
            _ = stopped(&mut stop) => {
                // Drain what was already submitted, then stop.
                rx.close();
                match rx.recv().await { Some(r) => r, None => return }
            }
        };
        let mut batch = vec![first];
        let mut count = batch[0].leaves.len();
        while count < 8192 {
            match rx.try_recv() {
                Ok(r) => {
                    count += r.leaves.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let mut leaves = Vec::with_capacity(count);
        let mut waiters = Vec::with_capacity(batch.len());
        for r in batch {
            leaves.extend(r.leaves);
            waiters.push(r.done);
        }
        let result = inner
            .store
            .journal_enqueue(&leaves)
            .await
            .map_err(JournalError::from);
        if let Err(e) = &result {
            tracing::error!(error = %e, entries = leaves.len(), "journal append failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
        metrics::counter!("socle_journal_appended_total").increment(leaves.len() as u64);
        inner.wake.notify_one();
    }
}

/// The sequencer's view of the log.
struct Sequencing {
    frontier: Frontier,
    last_signed: Option<(u64, Hash)>,
    last_sign_at: Instant,
}

async fn sequencer(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    'lead: loop {
        // Leadership: on PostgreSQL only one node sequences; the others retry.
        let lease = loop {
            match inner.store.journal_try_lead().await {
                Ok(Some(lease)) => break lease,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "journal sequencer cannot reach the store"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped(&mut stop) => return,
            }
        };
        let mut seq = match load(&inner).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "journal sequencer cannot load the log; retrying");
                drop(lease);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'lead,
                    _ = stopped(&mut stop) => return,
                }
            }
        };
        tracing::info!(size = seq.frontier.size(), origin = %inner.origin, "journal sequencer running");
        loop {
            let stopping = *stop.borrow();
            match integrate(&inner, &mut seq).await {
                Ok(()) => {}
                Err(JournalError::Conflict(_)) => {
                    tracing::warn!("journal moved under this sequencer; reloading");
                    drop(lease);
                    continue 'lead;
                }
                Err(e) => tracing::error!(error = %e, "journal sequencing failed; retrying"),
            }
            let due = seq.last_sign_at.elapsed() >= inner.config.checkpoint_interval || stopping;
            if due
                && seq.last_signed.map(|(s, _)| s) != Some(seq.frontier.size())
                && seq.frontier.size() > 0
                && let Err(e) = sign(&inner, &mut seq).await
            {
                tracing::error!(error = %e, "journal checkpoint not signed");
            }
            if stopping {
                return;
            }
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stopped(&mut stop) => {}
            }
        }
    }
}

/// Rebuilds the frontier from the stored tree and checks it against the last
/// published checkpoint.
async fn load(inner: &Inner) -> Result<Sequencing, JournalError> {
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
    Ok(Sequencing {
        frontier,
        last_signed,
        last_sign_at: Instant::now() - inner.config.checkpoint_interval,
    })
}

/// Moves everything queued into the log.
async fn integrate(inner: &Inner, seq: &mut Sequencing) -> Result<(), JournalError> {
    loop {
        let queued = inner.store.journal_queued(inner.config.max_batch).await?;
        if queued.is_empty() {
            return Ok(());
        }
        let start = seq.frontier.size();
        let mut frontier = seq.frontier.clone();
        let mut nodes = Vec::with_capacity(queued.len() * 2 + 8);
        let mut entries = Vec::with_capacity(queued.len());
        let mut seqs = Vec::with_capacity(queued.len());
        for (i, q) in queued.into_iter().enumerate() {
            frontier.push(merkle::leaf_hash(&q.leaf), &mut nodes);
            entries.push(NewEntry {
                index: start + i as u64,
                leaf: q.leaf,
                subject: q.subject,
            });
            seqs.push(q.seq);
        }
        let nodes: Vec<(u8, u64, Hash)> = nodes
            .into_iter()
            .map(|(id, h)| (id.level, id.index, h))
            .collect();
        match inner
            .store
            .journal_integrate(start, &entries, &nodes, &seqs)
            .await
        {
            Ok(()) => {
                metrics::counter!("socle_journal_sequenced_total").increment(entries.len() as u64);
                metrics::gauge!("socle_journal_size").set(frontier.size() as f64);
                seq.frontier = frontier;
            }
            Err(StoreError::Conflict(m)) => return Err(JournalError::Conflict(m)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Signs a checkpoint of the current tree, after checking it extends the last one.
async fn sign(inner: &Inner, seq: &mut Sequencing) -> Result<(), JournalError> {
    let size = seq.frontier.size();
    let root = seq.frontier.root();
    if let Some((old_size, old_root)) = seq.last_signed {
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
    inner.store.journal_add_checkpoint(&cp).await?;
    seq.last_signed = Some((size, root));
    seq.last_sign_at = Instant::now();
    metrics::gauge!("socle_journal_checkpoint_size").set(size as f64);
    let _ = inner.published.send(Some(cp));
    Ok(())
}
