//! `socle journal …`: verify a journal (over HTTP or from a bundle), export a bundle,
//! and benchmark appends on the configured store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use socle_journal::merkle::{self, Hash};
use socle_journal::{Entry, EntryKind, NoteSigner, Verifier, VerifyError};
use socle_store::JournalStore;

use crate::config::Config;

/// The bundle format's identifier (first line of a bundle).
pub const BUNDLE_FORMAT: &str = "socle-journal-bundle/1";

#[derive(Debug, Serialize, Deserialize)]
struct BundleHeader {
    format: String,
    origin: String,
    key: String,
    checkpoints: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BundleEntry {
    index: u64,
    leaf: String,
    #[serde(default)]
    leaf_hash: Option<String>,
}

/// Checkpoints seen by earlier runs, per origin.
#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifyStateFile {
    logs: BTreeMap<String, SeenLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeenLog {
    key: String,
    size: u64,
    root: String,
}

/// How `socle journal verify` ended.
pub enum Outcome {
    Verified(String),
    Failed(VerifyError),
}

fn decode_hash(s: &str) -> anyhow::Result<Hash> {
    B64.decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| anyhow!("{s:?} is not a base64 SHA-256 hash"))
}

/// A proof as served by `/journal/proof/*` (the root only on inclusion proofs).
#[derive(Deserialize)]
struct ServedProof {
    #[serde(default)]
    root: Option<String>,
    hashes: Vec<String>,
}

impl ServedProof {
    fn hashes(&self) -> anyhow::Result<Vec<Hash>> {
        self.hashes.iter().map(|h| decode_hash(h)).collect()
    }
}

/// Decodes one served or bundled entry and feeds it to the verifier.
fn feed(verifier: &mut Verifier, e: &BundleEntry) -> anyhow::Result<Result<Vec<u8>, VerifyError>> {
    let leaf = B64
        .decode(&e.leaf)
        .with_context(|| format!("entry {}: leaf is not base64", e.index))?;
    let stored = e.leaf_hash.as_deref().map(decode_hash).transpose()?;
    Ok(verifier.feed(e.index, &leaf, stored).map(|()| leaf))
}

fn progress(total: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() || total < 10_000 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} verifying [{bar:40}] {pos}/{len} entries ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn load_state(path: &Path) -> anyhow::Result<VerifyStateFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a journal verification state file",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VerifyStateFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_state(path: &Path, state: &VerifyStateFile) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Checks the key against the one given and the one seen before; returns the previous
/// checkpoint seen for this origin.
fn previous_for(
    state: &VerifyStateFile,
    key: &str,
    pinned: Option<&str>,
) -> Result<Option<(u64, Hash)>, VerifyError> {
    let verifier =
        socle_journal::NoteVerifier::parse(key).map_err(|e| VerifyError::Key(e.to_string()))?;
    if let Some(pinned) = pinned
        && pinned.trim() != key
    {
        return Err(VerifyError::Key(format!(
            "the journal's key {key} is not the expected {}",
            pinned.trim()
        )));
    }
    match state.logs.get(verifier.name()) {
        None => Ok(None),
        Some(seen) if seen.key != key => Err(VerifyError::Fork(format!(
            "the journal {} now signs with key {key}, it signed with {} before",
            verifier.name(),
            seen.key
        ))),
        Some(seen) => Ok(Some((
            seen.size,
            decode_hash(&seen.root).map_err(|e| VerifyError::Key(e.to_string()))?,
        ))),
    }
}

/// `socle journal verify --proof FILE [--key KEY]`: one entry's proof bundle.
/// Exit 0 when it verifies, 1 when it does not, 2 when the file cannot be read.
pub fn verify_proof(path: &Path, pinned_key: Option<&str>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let bundle: socle_journal::ProofBundle = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: cannot read the proof bundle {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    match bundle.verify(pinned_key) {
        Ok((checkpoint, entry)) => {
            println!(
                "OK: entry {} ({} of {}) is in the journal {} of {} entries, root {}, checkpoint signed by {}",
                bundle.index,
                entry.kind.as_str(),
                entry.time,
                checkpoint.origin,
                checkpoint.size,
                B64.encode(checkpoint.root),
                bundle.key
            );
            if pinned_key.is_none() {
                println!(
                    "note: compare the key with the one published at /journal/key, or pass --key"
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("TAMPERED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `socle journal verify --url URL` or `--bundle FILE`.
pub async fn verify(
    url: Option<&str>,
    bundle: Option<&Path>,
    state_path: &Path,
    pinned_key: Option<&str>,
) -> anyhow::Result<Outcome> {
    let mut state = load_state(state_path)?;
    let result = match (url, bundle) {
        (Some(url), None) => verify_url(url.trim_end_matches('/'), &state, pinned_key).await?,
        (None, Some(path)) => verify_bundle(path, &state, pinned_key)?,
        _ => bail!("give either --url or --bundle"),
    };
    match result {
        Err(e) => Ok(Outcome::Failed(e)),
        Ok((key, report)) => {
            state.logs.insert(
                report.origin.clone(),
                SeenLog {
                    key,
                    size: report.size,
                    root: B64.encode(report.root),
                },
            );
            save_state(state_path, &state)?;
            Ok(Outcome::Verified(format!(
                "journal {}: {} entries verified against {} signed checkpoint(s); root {}",
                report.origin,
                report.size,
                report.checkpoints,
                B64.encode(report.root)
            )))
        }
    }
}

type Checked = Result<(String, socle_journal::Report), VerifyError>;

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    let mut attempt = 0;
    loop {
        let r = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS && attempt < 20 {
            attempt += 1;
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait.min(10))).await;
            continue;
        }
        if !r.status().is_success() {
            bail!(
                "GET {url}: HTTP {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        return r
            .json()
            .await
            .with_context(|| format!("GET {url}: not the expected JSON"));
    }
}

/// Compares the nodes the entries `[start, end)` completed, recomputed here, with the
/// ones the server stores (`/journal/nodes`): a damaged node would make its inclusion
/// proofs fail for the entries under it. A server without that endpoint (an older
/// version) is not checked this way.
async fn compare_nodes(
    client: &reqwest::Client,
    base: &str,
    start: u64,
    end: u64,
    created: &[(merkle::NodeId, Hash)],
    served_here: &mut Option<bool>,
) -> anyhow::Result<Result<(), VerifyError>> {
    #[derive(Deserialize)]
    struct Node {
        level: u8,
        index: u64,
        hash: String,
    }
    #[derive(Deserialize)]
    struct Page {
        nodes: Vec<Node>,
    }
    if end <= start {
        return Ok(Ok(()));
    }
    let url = format!("{base}/journal/nodes?start={start}&count={}", end - start);
    // Asked once per run whether the server has the endpoint.
    if served_here.is_none() {
        let probe = client
            .get(format!("{base}/journal/nodes?start=0&count=1"))
            .send()
            .await
            .with_context(|| format!("GET {base}/journal/nodes"))?;
        *served_here = Some(probe.status() != reqwest::StatusCode::NOT_FOUND);
    }
    if *served_here == Some(false) {
        return Ok(Ok(()));
    }
    let page: Page = get_json(client, &url).await?;
    let mut served = BTreeMap::new();
    for n in page.nodes {
        served.insert((n.level, n.index), decode_hash(&n.hash)?);
    }
    for (id, h) in created.iter().filter(|(id, _)| id.level > 0) {
        let first = id.index << id.level;
        let last = first + (1u64 << id.level) - 1;
        match served.get(&(id.level, id.index)) {
            Some(s) if s == h => {}
            found => {
                return Ok(Err(VerifyError::Tampered {
                    index: first,
                    why: format!(
                        "the server's stored tree node over entries {first} to {last} (level {}) {}: its inclusion proofs through it do not verify",
                        id.level,
                        if found.is_some() {
                            "does not match the entries"
                        } else {
                            "is missing"
                        }
                    ),
                }));
            }
        }
    }
    Ok(Ok(()))
}

async fn verify_url(
    base: &str,
    state: &VerifyStateFile,
    pinned: Option<&str>,
) -> anyhow::Result<Checked> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let key_response = client
        .get(format!("{base}/journal/key"))
        .send()
        .await
        .context("GET /journal/key")?;
    if !key_response.status().is_success() {
        bail!("GET {base}/journal/key: HTTP {}", key_response.status());
    }
    let key = key_response.text().await?.trim().to_string();
    let previous = match previous_for(state, &key, pinned) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };

    let mut notes = Vec::new();
    let mut after = 0u64;
    loop {
        #[derive(Deserialize)]
        struct Page {
            checkpoints: Vec<Cp>,
        }
        #[derive(Deserialize)]
        struct Cp {
            size: u64,
            note: String,
        }
        let page: Page = get_json(
            &client,
            &format!("{base}/journal/checkpoints?after={after}&limit=1000"),
        )
        .await?;
        let Some(last) = page.checkpoints.last() else {
            break;
        };
        // Each page must move forward: a server that repeats itself is not a journal.
        anyhow::ensure!(
            last.size > after,
            "the server answered checkpoints not after size {after}: it is not following the protocol"
        );
        after = last.size;
        notes.extend(page.checkpoints.into_iter().map(|c| c.note));
    }
    let mut verifier = match Verifier::new(&key, &notes, previous) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let target = verifier.target();
    let bar = progress(target);
    let mut samples: BTreeMap<u64, Hash> = BTreeMap::new();
    let sample_at = [0, target / 2, target.saturating_sub(1)];
    // The tree recomputed from the entries, to compare with the nodes the server
    // stores (what its proofs are read from).
    let mut tree = merkle::Frontier::new();
    let mut nodes_served: Option<bool> = None;
    let mut next = 0u64;
    while next < target {
        #[derive(Deserialize)]
        struct Page {
            entries: Vec<BundleEntry>,
        }
        let page: Page = get_json(
            &client,
            &format!("{base}/journal/entries?start={next}&count=1000"),
        )
        .await?;
        if page.entries.is_empty() {
            break;
        }
        let first = next;
        let mut created = Vec::new();
        for e in page.entries {
            let leaf = match feed(&mut verifier, &e)? {
                Ok(leaf) => leaf,
                Err(err) => {
                    bar.finish_and_clear();
                    return Ok(Err(err));
                }
            };
            if e.index < target {
                tree.push(merkle::leaf_hash(&leaf), &mut created);
            }
            if sample_at.contains(&e.index) {
                samples.insert(e.index, merkle::leaf_hash(&leaf));
            }
            next = e.index + 1;
        }
        if let Err(err) = compare_nodes(
            &client,
            base,
            first,
            next.min(target),
            &created,
            &mut nodes_served,
        )
        .await?
        {
            bar.finish_and_clear();
            return Ok(Err(err));
        }
        bar.set_position(next);
    }
    bar.finish_and_clear();
    let report = match verifier.finish() {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };

    // The server's own proofs must agree with what was recomputed.
    for (index, leaf_hash) in samples {
        let p: ServedProof = get_json(
            &client,
            &format!("{base}/journal/proof/inclusion?index={index}&size={target}"),
        )
        .await?;
        let hashes = p.hashes()?;
        if p.root.as_deref().map(decode_hash).transpose()? != Some(report.root)
            || merkle::verify_inclusion(index, target, &leaf_hash, &hashes, &report.root).is_err()
        {
            return Ok(Err(VerifyError::Tampered {
                index,
                why: "the server's inclusion proof does not verify".into(),
            }));
        }
    }
    if let Some((size, root)) = previous
        && size > 0
        && size < target
    {
        let p: ServedProof = get_json(
            &client,
            &format!("{base}/journal/proof/consistency?from={size}&to={target}"),
        )
        .await?;
        let hashes = p.hashes()?;
        if merkle::verify_consistency(size, target, &root, &report.root, &hashes).is_err() {
            return Ok(Err(VerifyError::Fork(format!(
                "the server's consistency proof from size {size} to {target} does not verify"
            ))));
        }
    }
    Ok(Ok((key, report)))
}

fn verify_bundle(
    path: &Path,
    state: &VerifyStateFile,
    pinned: Option<&str>,
) -> anyhow::Result<Checked> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: BundleHeader =
        serde_json::from_str(&lines.next().ok_or_else(|| anyhow!("empty bundle"))??)
            .context("the first line is not a bundle header")?;
    if header.format != BUNDLE_FORMAT {
        bail!(
            "unknown bundle format {:?} (expected {BUNDLE_FORMAT})",
            header.format
        );
    }
    let previous = match previous_for(state, &header.key, pinned) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let mut verifier = match Verifier::new(&header.key, &header.checkpoints, previous) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let bar = progress(verifier.target());
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: BundleEntry =
            serde_json::from_str(&line).with_context(|| format!("bundle line {}", n + 2))?;
        if let Err(err) = feed(&mut verifier, &e)? {
            bar.finish_and_clear();
            return Ok(Err(err));
        }
        if e.index.is_multiple_of(4096) {
            bar.set_position(e.index);
        }
    }
    bar.finish_and_clear();
    Ok(verifier.finish().map(|r| (header.key, r)))
}

/// The configured store, refused unless its schema is this binary's.
async fn current_store(config: &Config) -> anyhow::Result<socle_store::Store> {
    let store = crate::open_store(config).await?;
    let status = store.schema_status().await?;
    if !status.is_current() {
        bail!(
            "the database schema is at version {}, this binary needs {}: run `socle migrate`",
            status.current,
            status.latest
        );
    }
    Ok(store)
}

/// Every stored checkpoint, by increasing size.
async fn all_checkpoints(
    store: &socle_store::Store,
) -> anyhow::Result<Vec<socle_store::StoredCheckpoint>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.journal_checkpoints(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.size;
        out.extend(page);
    }
    Ok(out)
}

/// `socle journal check`: the stored journal recomputed from its entries, offline.
/// `Ok(Err(problem))` names the first entry, node or checkpoint that does not match.
pub async fn check(config: &Config) -> anyhow::Result<Result<String, String>> {
    let store = current_store(config).await?;
    // Checkpoints first, then the size: on a running node a checkpoint signed in
    // between is then within the size read.
    let checkpoints: Vec<(u64, Hash)> = all_checkpoints(&store)
        .await?
        .into_iter()
        .map(|c| (c.size, c.root))
        .collect();
    let state = store
        .journal_read_state()
        .await?
        .ok_or_else(|| anyhow!("this database has no journal yet"))?;
    if let Some((size, _)) = checkpoints.iter().find(|(s, _)| *s > state.size) {
        return Ok(Err(format!(
            "a checkpoint of size {size} was published but the stored log has only {} entries",
            state.size
        )));
    }
    // The entries no checkpoint covers must carry the journal's MAC (as the sequencer
    // checks at start), when the master key is at hand to open it.
    let signed = checkpoints.last().map_or(0, |(size, _)| *size);
    let mac = match crate::app::existing_master_key(config) {
        Ok(key) => socle_journal::read_mac_key(&store, &key)
            .await
            .ok()
            .flatten(),
        Err(_) => None,
    };
    let bar = indicatif::ProgressBar::new(state.size);
    let outcome = async {
        let signed_part = socle_journal::check_stored_tree(
            &store,
            socle_journal::merkle::Frontier::new(),
            signed,
            &checkpoints,
            None,
            |n| bar.set_position(n),
        )
        .await?;
        socle_journal::check_stored_tree(
            &store,
            signed_part,
            state.size,
            &checkpoints,
            mac.as_ref(),
            |n| bar.set_position(n),
        )
        .await
    }
    .await;
    bar.finish_and_clear();
    store.close().await;
    let macs = match (&mac, state.size - signed) {
        (_, 0) => String::new(),
        (Some(_), n) => {
            format!("; the {n} entries after the last checkpoint carry the journal's MAC")
        }
        (None, n) => format!(
            "; the MACs of the {n} entries after the last checkpoint were not checked (no master key here)"
        ),
    };
    Ok(match outcome {
        Ok(f) => Ok(format!(
            "{} entries, every stored node and {} checkpoints match{macs}; root {}",
            f.size(),
            checkpoints.len(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, f.root())
        )),
        Err(
            socle_journal::JournalError::Integrity(problem)
            | socle_journal::JournalError::Forged(problem),
        ) => Err(problem),
        Err(e) => return Err(e.into()),
    })
}

/// `socle journal export --out FILE`: the journal up to its latest checkpoint, as a
/// self-contained bundle (JSON lines: a header with the key and every checkpoint, then
/// one line per entry).
pub async fn export(config: &Config, out: &Path) -> anyhow::Result<u64> {
    let store = current_store(config).await?;
    let state = store
        .journal_read_state()
        .await?
        .ok_or_else(|| anyhow!("this database has no journal yet"))?;
    let seed: [u8; 32] =
        socle_journal::read_signing_seed(&store, &crate::app::existing_master_key(config)?)
            .await?
            .ok_or_else(|| anyhow!("this database has no journal key"))?;
    let key = NoteSigner::from_seed(&state.origin, &seed)?
        .verifier()
        .encode();
    let stored = all_checkpoints(&store).await?;
    let size = stored.last().map_or(0, |c| c.size);
    let checkpoints: Vec<String> = stored.into_iter().map(|c| c.note).collect();
    let tmp = out.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let header = BundleHeader {
        format: BUNDLE_FORMAT.into(),
        origin: state.origin,
        key,
        checkpoints,
    };
    serde_json::to_writer(&mut w, &header)?;
    w.write_all(b"\n")?;
    let mut next = 0;
    while next < size {
        let page = store.journal_entries(next, (next + 1000).min(size)).await?;
        if page.is_empty() {
            bail!("entry {next} is missing from the store");
        }
        for e in page {
            let line = BundleEntry {
                index: e.index,
                leaf: B64.encode(&e.leaf),
                leaf_hash: Some(B64.encode(e.leaf_hash)),
            };
            serde_json::to_writer(&mut w, &line)?;
            w.write_all(b"\n")?;
            next = e.index + 1;
        }
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    store.close().await;
    Ok(size)
}

/// Options of `socle journal bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub writers: usize,
    pub seconds: f64,
    /// Total appends per second across writers; 0 for as fast as possible.
    pub rate: f64,
    pub print_acks: bool,
    pub print_checkpoints: bool,
    pub baseline: bool,
    /// Stop after this many appends in all (0: run for `seconds`).
    pub entries: u64,
    /// Then time this many inclusion and consistency proofs on the journal.
    pub proofs: usize,
    /// Append even if the journal already has entries.
    pub existing_journal: bool,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `socle journal bench`: W concurrent writers append single entries for a while on the
/// configured store; prints durable appends per second and latency percentiles, and with
/// `--baseline` the same number of plain single-row INSERTs by the same writers.
pub async fn bench(config: &Config, opts: BenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(
        opts.seconds.is_finite() && opts.seconds > 0.0 && opts.seconds <= 86_400.0,
        "--seconds must be a number of seconds between 0 and 86400"
    );
    anyhow::ensure!(
        opts.rate.is_finite() && opts.rate >= 0.0,
        "--rate must be a number of entries per second (0: as fast as possible)"
    );
    anyhow::ensure!(opts.writers > 0, "--writers must be at least 1");
    anyhow::ensure!(
        opts.rate == 0.0 || opts.writers as f64 / opts.rate <= 86_400.0,
        "--rate is too low for {} writers",
        opts.writers
    );
    let store = crate::open_store(config).await?;
    // A scratch database is set up; one in use is not migrated behind its nodes' back.
    if store.schema_status().await?.current == 0 || opts.existing_journal {
        store.migrate().await?;
    }
    let journal = crate::app::open_journal(&store, config).await?;
    let initial = journal
        .latest_checkpoint()
        .await
        .map(|c| c.size)
        .unwrap_or(0);
    // A new journal's one entry is its own (the signing key it was created with).
    anyhow::ensure!(
        initial <= 1 || opts.existing_journal,
        "this journal already has {initial} entries: benchmark entries are permanent, so \
         point the benchmark at a scratch data directory or database (or pass \
         --existing-journal if this one is scratch)"
    );
    if opts.print_checkpoints {
        let mut rx = journal.subscribe();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let cp = rx.borrow_and_update().clone();
                if let Some(cp) = cp {
                    say(&format!("checkpoint {} {}", cp.size, B64.encode(cp.root)));
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs_f64(opts.seconds);
    let per_writer_interval =
        (opts.rate > 0.0).then(|| Duration::from_secs_f64(opts.writers as f64 / opts.rate));
    let started = Instant::now();
    // With --entries, writers stop when the count is reached (not at the deadline).
    let count_mode = opts.entries > 0;
    let remaining = Arc::new(std::sync::atomic::AtomicU64::new(if count_mode {
        opts.entries
    } else {
        u64::MAX
    }));
    let mut tasks = Vec::new();
    for w in 0..opts.writers {
        let journal = journal.clone();
        let remaining = remaining.clone();
        let print = opts.print_acks;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            let mut next_at = Instant::now();
            while count_mode || Instant::now() < deadline {
                if remaining
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |r| r.checked_sub(1),
                    )
                    .is_err()
                {
                    break;
                }
                if let Some(interval) = per_writer_interval {
                    tokio::time::sleep_until(next_at.into()).await;
                    next_at += interval;
                }
                let id = format!("{w}-{n}");
                let entry = Entry::new(EntryKind::Admin, "benchmark", "ok")
                    .detail("action", "journal.benchmark")
                    .detail("id", id.clone());
                let t0 = Instant::now();
                if journal.append(vec![entry]).await.is_err() {
                    break;
                }
                latencies.push(t0.elapsed());
                if print {
                    say(&format!("ack {id}"));
                }
                n += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = started.elapsed();
    let appended = latencies.len() as u64;
    latencies.sort_unstable();
    say(&format!(
        "journal appends ({} store, {} writers{}): {} durable appends in {:.2} s = {:.0} appends/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        store.kind(),
        opts.writers,
        if opts.rate > 0.0 {
            format!(", paced at {:.0}/s", opts.rate)
        } else {
            String::new()
        },
        appended,
        elapsed.as_secs_f64(),
        appended as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    ));
    let seq_started = Instant::now();
    let cp = journal
        .wait_for_size(initial + appended, Duration::from_secs(300))
        .await?;
    say(&format!(
        "sequencing: every append sequenced and covered by a signed checkpoint (size {}) {:.0} ms after the last one",
        cp.size,
        seq_started.elapsed().as_secs_f64() * 1000.0
    ));
    if opts.proofs > 0 {
        let size = journal.latest_checkpoint().await?.size;
        let mut inclusion = Vec::with_capacity(opts.proofs);
        let mut consistency = Vec::with_capacity(opts.proofs);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // xorshift: spread indices without a dependency
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..opts.proofs {
            let index = next() % size;
            let t0 = Instant::now();
            journal.inclusion_proof(index, size).await?;
            inclusion.push(t0.elapsed());
            let from = 1 + next() % size;
            let t0 = Instant::now();
            journal.consistency_proof(from.min(size), size).await?;
            consistency.push(t0.elapsed());
        }
        inclusion.sort_unstable();
        consistency.sort_unstable();
        say(&format!(
            "proofs at size {size} ({} store): inclusion p50 {:.0} µs, p99 {:.0} µs; consistency p50 {:.0} µs, p99 {:.0} µs ({} of each, served from the stored tree)",
            store.kind(),
            percentile(&inclusion, 0.5).as_secs_f64() * 1e6,
            percentile(&inclusion, 0.99).as_secs_f64() * 1e6,
            percentile(&consistency, 0.5).as_secs_f64() * 1e6,
            percentile(&consistency, 0.99).as_secs_f64() * 1e6,
            opts.proofs
        ));
    }
    if opts.baseline {
        store.bench_baseline_reset().await?;
        let per_writer = appended.div_ceil(opts.writers as u64);
        let payload = Arc::new(vec![b'x'; 200]);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..opts.writers {
            let store = store.clone();
            let payload = payload.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_writer {
                    store.bench_baseline_insert(&payload).await?;
                }
                Ok::<_, socle_store::StoreError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let base = started.elapsed();
        let inserts = per_writer * opts.writers as u64;
        let base_rate = inserts as f64 / base.as_secs_f64();
        say(&format!(
            "baseline: {inserts} plain single-row INSERTs (one transaction each) by {} writers in {:.2} s = {base_rate:.0} inserts/s; journal/baseline = {:.2}",
            opts.writers,
            base.as_secs_f64(),
            (appended as f64 / elapsed.as_secs_f64()) / base_rate
        ));
        store.bench_baseline_drop().await?;
    }
    journal.shutdown().await;
    store.close().await;
    Ok(())
}

/// Prints a line; a closed standard output (the reader went away) is not an error.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Where `socle journal verify` keeps the checkpoints it has seen, by default.
pub fn default_state_path() -> PathBuf {
    PathBuf::from("socle-journal-state.json")
}
