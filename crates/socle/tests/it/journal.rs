//! The journal over HTTP, on both stores: checkpoints, proofs, errors, verification,
//! tampering detection and crash safety.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use socle_journal::merkle::{self, Hash};
use socle_journal::{Checkpoint, Entry, EntryKind, NoteSigner, NoteVerifier};
use socle_store::JournalStore;

use crate::on_both_stores;
use crate::support::{Backend, Process, TestApp, TestDb, binary};

fn h(v: &Value) -> Hash {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

async fn append_n(app: &TestApp, n: usize) -> u64 {
    let journal = app.journal.as_ref().unwrap();
    let before = journal
        .latest_checkpoint()
        .await
        .map(|c| c.size)
        .unwrap_or(0);
    let entries: Vec<Entry> = (0..n)
        .map(|i| {
            Entry::new(EntryKind::Exchange, "client:test-fs", "ok")
                .organisation("13002526500013")
                .subject(journal.subject(&format!("person-{}", i % 3)))
                .detail("api", "dgfip/impot-particulier")
                .detail("n", i.to_string())
        })
        .collect();
    journal.append(entries).await.unwrap();
    journal
        .wait_for_size(before + n as u64, Duration::from_secs(10))
        .await
        .unwrap()
        .size
}

async fn checkpoint(app: &TestApp) -> (Checkpoint, NoteVerifier) {
    let key = app.get("/journal/key").await.text().await.unwrap();
    let verifier = NoteVerifier::parse(key.trim()).unwrap();
    let r = app.get("/journal/checkpoint").await;
    assert_eq!(r.status(), 200);
    assert_eq!(crate::support::media_type(&r), "text/plain");
    let note = r.text().await.unwrap();
    (Checkpoint::open(&note, &verifier).unwrap(), verifier)
}

async fn every_served_proof_verifies(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let size = append_n(&app, 37).await;
    let (cp, verifier) = checkpoint(&app).await;
    assert_eq!(cp.size, size);
    assert_eq!(cp.origin, verifier.name());
    assert_eq!(
        cp.origin, "socle-test",
        "origin derived from the instance name"
    );

    let page: Value = app
        .get(&format!("/journal/entries?start=0&count={size}"))
        .await
        .json()
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len() as u64, size);
    assert_eq!(
        entries[0]["kind"], "key_rotation",
        "the journal opens with its key"
    );
    let mut leaves = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["index"], i as u64);
        let leaf = B64.decode(e["leaf"].as_str().unwrap()).unwrap();
        assert_eq!(merkle::leaf_hash(&leaf), h(&e["leaf_hash"]));
        let decoded = Entry::decode(&leaf).unwrap();
        assert_eq!(e["kind"], decoded.kind.as_str());
        leaves.push(merkle::leaf_hash(&leaf));
    }
    for s in [1, 2, 5, 16, size] {
        for index in (0..s).step_by(3) {
            let p: Value = app
                .get(&format!("/journal/proof/inclusion?index={index}&size={s}"))
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(p["index"], index);
            let hashes: Vec<Hash> = p["hashes"].as_array().unwrap().iter().map(h).collect();
            merkle::verify_inclusion(index, s, &leaves[index as usize], &hashes, &h(&p["root"]))
                .unwrap();
            if s == size {
                assert_eq!(h(&p["root"]), cp.root);
            }
        }
    }
    // Consistency from every earlier size (roots recomputed independently).
    let mut f = merkle::Frontier::new();
    for (i, leaf) in leaves.iter().enumerate() {
        f.push(*leaf, &mut Vec::new());
        let from = i as u64 + 1;
        let p: Value = app
            .get(&format!("/journal/proof/consistency?from={from}&to={size}"))
            .await
            .json()
            .await
            .unwrap();
        let hashes: Vec<Hash> = p["hashes"].as_array().unwrap().iter().map(h).collect();
        merkle::verify_consistency(from, size, &f.root(), &cp.root, &hashes).unwrap();
    }
    // Every checkpoint ever signed is listed, and they are mutually consistent.
    let list: Value = app.get("/journal/checkpoints").await.json().await.unwrap();
    let list = list["checkpoints"].as_array().unwrap();
    assert!(!list.is_empty());
    for c in list {
        let parsed = Checkpoint::open(c["note"].as_str().unwrap(), &verifier).unwrap();
        let p: Value = app
            .get(&format!(
                "/journal/proof/consistency?from={}&to={size}",
                parsed.size
            ))
            .await
            .json()
            .await
            .unwrap();
        let hashes: Vec<Hash> = p["hashes"].as_array().unwrap().iter().map(h).collect();
        merkle::verify_consistency(parsed.size, size, &parsed.root, &cp.root, &hashes).unwrap();
    }
}

async fn invalid_ranges_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let size = append_n(&app, 4).await;
    for path in [
        format!("/journal/proof/inclusion?index={size}&size={size}"),
        format!("/journal/proof/inclusion?index=0&size={}", size + 1),
        "/journal/proof/consistency?from=3&to=2".to_string(),
        format!("/journal/proof/consistency?from=1&to={}", size + 100),
        "/journal/entries?start=0&count=1001".to_string(),
        "/journal/entries?start=0&count=0".to_string(),
        format!("/journal/entries?start={}", size + 1),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_range", "{path}: {body}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    for path in [
        "/journal/proof/inclusion?index=abc&size=2",
        "/journal/proof/inclusion",
        "/journal/entries?start=-1",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "bad_request", "{path}: {body}");
    }
    let r = app
        .client
        .post(app.url("/journal/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "read-only");
}

async fn entries_carry_pseudonyms_not_people(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let journal = app.journal.as_ref().unwrap();
    let person = "Marie Curie 1867-11-07 Varsovie";
    let pseudonym = journal.pseudonym(person);
    assert_eq!(pseudonym.len(), 43);
    let size = append_n(&app, 2).await;
    journal
        .append(vec![
            Entry::new(EntryKind::Consent, "citizen", "ok").subject(journal.subject(person)),
        ])
        .await
        .unwrap();
    journal
        .wait_for_size(size + 1, Duration::from_secs(10))
        .await
        .unwrap();
    let page = app.get("/journal/entries").await.text().await.unwrap();
    assert!(!page.contains("Marie"));
    assert!(
        !page.contains(&pseudonym),
        "the stable pseudonym is never published: {page}"
    );
    let mine: Vec<u64> = journal
        .subject_entries(&pseudonym, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.index)
        .collect();
    assert_eq!(
        mine,
        vec![size],
        "the per-pseudonym index finds the person's entry"
    );
    // The citizen space reads a person's entries in one query, newest first.
    append_n(&app, 1).await;
    journal
        .append(vec![
            Entry::new(EntryKind::Consent, "citizen", "revoked").subject(journal.subject(person)),
        ])
        .await
        .unwrap();
    journal
        .wait_for_size(size + 3, Duration::from_secs(10))
        .await
        .unwrap();
    let entries = journal.subject_entries(&pseudonym, 10).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![size + 2, size]
    );
    // In the public log each entry has its own subject: nothing links the two, but
    // the person's subject key recognises both, and no other key does.
    let subjects: Vec<String> = entries
        .iter()
        .map(|e| Entry::decode(&e.leaf).unwrap().subject.unwrap())
        .collect();
    assert_ne!(subjects[0], subjects[1]);
    let key = journal.subject_key(&pseudonym);
    let other = journal.subject_key(&journal.pseudonym("someone else"));
    for s in &subjects {
        assert_ne!(s, &pseudonym);
        assert!(socle_journal::subject_matches(&key, s));
        assert!(!socle_journal::subject_matches(&other, s));
        assert!(journal.is_subject(&pseudonym, s));
    }
    let page: Value = app.get("/journal/entries").await.json().await.unwrap();
    let recognised: Vec<u64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["subject"]
                .as_str()
                .is_some_and(|s| socle_journal::subject_matches(&key, s))
        })
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        recognised,
        vec![size, size + 2],
        "the key finds exactly the person's entries in the public log"
    );
    let newest = journal.subject_entries(&pseudonym, 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].index, size + 2);
    assert!(
        journal
            .subject_entries(&journal.pseudonym("someone else"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_journal_endpoints_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.journal.rate_limit = 2).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(app.get("/journal/key").await);
    }
    let limited = statuses.iter().filter(|r| r.status() == 429).count();
    assert!(limited >= 3, "{limited}");
    let r = statuses.into_iter().find(|r| r.status() == 429).unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    // Other endpoints are not limited.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// Behind a trusted reverse proxy (`server.trusted_proxies`) the limit applies to each
/// client `X-Forwarded-For` names, not to the proxy; from anyone else the header changes
/// nothing, so a client cannot dodge the limit by writing it.
async fn the_journal_rate_limit_follows_trusted_proxies(backend: Backend) {
    let behind_proxy = TestApp::spawn_with(backend, |c| {
        c.journal.rate_limit = 2;
        c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let statuses = |app: &TestApp, forwarded: Vec<String>| {
        let requests: Vec<_> = forwarded
            .into_iter()
            .map(|f| {
                app.client
                    .get(app.url("/journal/key"))
                    .header("x-forwarded-for", f)
                    .send()
            })
            .collect();
        async move {
            let mut out = Vec::new();
            for r in requests {
                out.push(r.await.unwrap().status().as_u16());
            }
            out
        }
    };
    let limited = |s: &[u16]| s.iter().filter(|c| **c == 429).count();
    let a = statuses(&behind_proxy, vec!["203.0.113.1".to_string(); 8]).await;
    assert!(limited(&a) >= 3, "{a:?}");
    // Another client through the same proxy has its own budget.
    let b = statuses(&behind_proxy, vec!["203.0.113.2".to_string()]).await;
    assert_eq!(b, [200]);
    // The first client writing another address on the left is still itself.
    let forged = statuses(
        &behind_proxy,
        vec!["198.51.100.9, 203.0.113.1".to_string(); 4],
    )
    .await;
    assert!(limited(&forged) >= 1, "{forged:?}");
    behind_proxy.stop().await.unwrap();

    // No trusted proxy: a new address in the header each time changes nothing.
    let direct = TestApp::spawn_with(backend, |c| c.journal.rate_limit = 2).await;
    let s = statuses(&direct, (0..8).map(|i| format!("203.0.113.{i}")).collect()).await;
    assert!(limited(&s) >= 3, "{s:?}");
}

fn verify_cli(args: &[&str], cwd: &std::path::Path) -> (i32, String) {
    let out = Command::new(binary())
        .args(["journal", "verify"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

pub(crate) async fn verify_in_thread(args: Vec<String>, cwd: std::path::PathBuf) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        verify_cli(&args, &cwd)
    })
    .await
    .unwrap()
}

async fn export_in_thread(db: &TestDb, out: std::path::PathBuf) {
    let env = db.env();
    let status = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["journal", "export", "--out", out.to_str().unwrap()])
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// `socle journal verify` accepts an intact journal (online and as a bundle) and
/// names the first bad index when an entry is changed, removed or reordered, or a
/// checkpoint is forged.
async fn verify_names_the_first_tampered_entry(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let state = |name: &str| cwd.join(name).display().to_string();
    let app = TestApp::spawn(backend).await;
    let size = append_n(&app, 40).await;
    let url = app.base.clone();
    let leaf = |i: u64| {
        let store = app.store.clone();
        async move {
            store
                .journal_entries(i, i + 1)
                .await
                .unwrap()
                .remove(0)
                .leaf
        }
    };
    let (original17, original20) = (leaf(17).await, leaf(20).await);

    /// What is done to the database before a verification (cumulative).
    enum Tamper {
        Nothing,
        /// Entry 17's bytes rewritten ("ok" becomes "denied").
        Change17,
        /// Entries 17 and 20 swapped.
        Swap17And20,
        /// Entry 9 deleted.
        Delete9,
    }
    /// Where the verifier reads the journal: the server, or a bundle exported then.
    enum Source {
        Url,
        Bundle,
    }
    // (tampering, source, the first bad index the verifier must name, if any)
    let cases = [
        (Tamper::Nothing, Source::Url, None),
        (Tamper::Nothing, Source::Bundle, None),
        (Tamper::Change17, Source::Url, Some(17)),
        (Tamper::Nothing, Source::Bundle, Some(17)),
        (Tamper::Swap17And20, Source::Url, Some(17)),
        (Tamper::Delete9, Source::Url, Some(9)),
    ];
    let bundle = cwd.join("journal.bundle");
    for (n, (tamper, from, first_bad)) in cases.into_iter().enumerate() {
        match tamper {
            Tamper::Nothing => {}
            Tamper::Change17 => {
                let forged = String::from_utf8(original17.clone())
                    .unwrap()
                    .replace("\"ok\"", "\"denied\"");
                app.store
                    .__test_tamper_entry(17, forged.as_bytes())
                    .await
                    .unwrap();
            }
            Tamper::Swap17And20 => {
                app.store
                    .__test_tamper_entry(17, &original20)
                    .await
                    .unwrap();
                app.store
                    .__test_tamper_entry(20, &original17)
                    .await
                    .unwrap();
            }
            Tamper::Delete9 => app.store.__test_delete_entry(9).await.unwrap(),
        }
        let source = match from {
            Source::Url => vec!["--url".to_string(), url.clone()],
            Source::Bundle => {
                export_in_thread(&app.db, bundle.clone()).await;
                vec!["--bundle".to_string(), bundle.display().to_string()]
            }
        };
        let args = [source, vec!["--state".into(), state(&format!("s{n}.json"))]].concat();
        let (code, out) = verify_in_thread(args, cwd.clone()).await;
        match first_bad {
            None => {
                assert_eq!(code, 0, "case {n}: {out}");
                assert!(
                    out.contains(&format!("{size} entries verified")),
                    "case {n}: {out}"
                );
            }
            Some(index) => {
                assert_eq!(code, 1, "case {n}: {out}");
                assert!(
                    out.contains(&format!("first bad index {index}")),
                    "case {n}: {out}"
                );
            }
        }
    }

    // A checkpoint forged with another key is rejected.
    let app2 = TestApp::spawn(backend).await;
    let size2 = append_n(&app2, 3).await;
    let (cp, verifier) = checkpoint(&app2).await;
    let other = NoteSigner::from_seed(verifier.name(), &[42u8; 32]).unwrap();
    let fake = other
        .sign(
            &Checkpoint {
                origin: cp.origin.clone(),
                size: size2 + 5,
                root: [1u8; 32],
            }
            .to_text(),
        )
        .unwrap();
    app2.store
        .__test_insert_checkpoint(size2 + 5, &fake)
        .await
        .unwrap();
    let (code, out) = verify_in_thread(
        vec![
            "--url".into(),
            app2.base.clone(),
            "--state".into(),
            state("forged.json"),
        ],
        cwd.clone(),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoint rejected"), "{out}");
}

/// Verifying twice with the same state file checks the new checkpoint against the one
/// seen before; a different key for the same origin is reported.
async fn verify_remembers_what_it_saw(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let app = TestApp::spawn(backend).await;
    append_n(&app, 5).await;
    let args = vec!["--url".to_string(), app.base.clone()];
    let (code, out) = verify_in_thread(args.clone(), cwd.clone()).await;
    assert_eq!(code, 0, "{out}");
    let size = append_n(&app, 7).await;
    let (code, out) = verify_in_thread(args.clone(), cwd.clone()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{size} entries")), "{out}");
    // Another instance publishing under the same origin with its own key.
    let other = TestApp::spawn(backend).await;
    append_n(&other, 1).await;
    let (code, out) = verify_in_thread(vec!["--url".into(), other.base.clone()], cwd.clone()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("now signs with key"), "{out}");
}

/// `kill -9` under concurrent appends: every acknowledged append is in the tree after
/// a restart, and the new checkpoint is consistent with the last one published.
async fn kill_9_loses_no_acknowledged_append(backend: Backend) {
    let db = TestDb::new(backend).await;
    let env = db.env();
    let mut child = Command::new(binary())
        .args([
            "journal",
            "bench",
            "--writers",
            "32",
            "--seconds",
            "60",
            "--print-acks",
            "--print-checkpoints",
        ])
        .envs(env.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id();
    let (acked, last_checkpoint) = tokio::task::spawn_blocking(move || {
        let mut acked = HashSet::new();
        let mut last: Option<(u64, Hash)> = None;
        let mut checkpoints = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ack ") {
                acked.insert(id.to_string());
            } else if let Some(rest) = line.strip_prefix("checkpoint ") {
                let (size, root) = rest.split_once(' ').unwrap();
                last = Some((
                    size.parse().unwrap(),
                    B64.decode(root).unwrap().try_into().unwrap(),
                ));
                checkpoints += 1;
            }
            if acked.len() >= 3000 && checkpoints >= 2 {
                // Mid-load: the writers are still appending.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                break;
            }
        }
        (acked, last)
    })
    .await
    .unwrap();
    let _ = child.wait();
    let (old_size, old_root) =
        last_checkpoint.expect("a checkpoint was published before the crash");
    assert!(acked.len() >= 3000, "{}", acked.len());

    // Restart on the same database: the queue is sequenced, a new checkpoint signed.
    let process = Process::serve(&env).await;
    let client = reqwest::Client::new();
    let key = client
        .get(format!("{}/journal/key", process.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let verifier = NoteVerifier::parse(key.trim()).unwrap();
    let mut cp = None;
    for _ in 0..100 {
        let note = client
            .get(format!("{}/journal/checkpoint", process.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let parsed = Checkpoint::open(&note, &verifier).unwrap();
        if parsed.size >= old_size + acked.len() as u64 - (old_size.min(acked.len() as u64))
            && parsed.size > old_size
        {
            cp = Some(parsed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cp = cp.expect("a new checkpoint after restart");
    // Let the sequencer drain anything left, then take the final checkpoint.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let note = client
        .get(format!("{}/journal/checkpoint", process.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cp = Checkpoint::open(&note, &verifier).unwrap_or(cp);

    let p: Value = client
        .get(format!(
            "{}/journal/proof/consistency?from={old_size}&to={}",
            process.base, cp.size
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hashes: Vec<Hash> = p["hashes"].as_array().unwrap().iter().map(h).collect();
    merkle::verify_consistency(old_size, cp.size, &old_root, &cp.root, &hashes)
        .expect("the checkpoint after the crash extends the one published before it");

    let mut found = HashSet::new();
    let mut start = 0;
    while start < cp.size {
        let page: Value = client
            .get(format!(
                "{}/journal/entries?start={start}&count=1000",
                process.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        for e in entries {
            if let Some(id) = e["details"]["id"].as_str() {
                assert!(found.insert(id.to_string()), "entry {id} appears twice");
            }
            start = e["index"].as_u64().unwrap() + 1;
        }
    }
    let lost: Vec<&String> = acked.iter().filter(|id| !found.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged appends lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    let dir = tempfile::tempdir().unwrap();
    let (code, out) = verify_in_thread(
        vec!["--url".into(), process.base.clone()],
        dir.path().to_path_buf(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
}

/// A journal that cannot write makes the node not ready (the gateway would refuse every
/// exchange), without store internals in the public answer; once it writes again the
/// node is ready, and every append acknowledged before the failure is in the log.
async fn readiness_reports_a_journal_that_cannot_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let journal = app.journal.as_ref().unwrap();
    let base = append_n(&app, 1).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let probe = |n: usize| {
        vec![Entry::new(EntryKind::Admin, "system", "ok").detail("probe", n.to_string())]
    };

    app.store.__test_refuse_journal_writes(true).await.unwrap();
    // SQLite acknowledges an append once its redo log has it, and learns of the refusal
    // when the database takes the batch, a moment later: the appends after it fail.
    let mut acknowledged = 0;
    let mut failed = false;
    for n in 0..100 {
        if journal.append(probe(n)).await.is_err() {
            failed = true;
            break;
        }
        acknowledged += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed, "appends kept succeeding");
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("journal"), "{detail}");
    assert!(!detail.contains("refused by the test"), "{detail}");
    assert!(journal.append(probe(1000)).await.is_err(), "still refused");
    assert_eq!(app.get("/readyz").await.status(), 503);

    app.store.__test_refuse_journal_writes(false).await.unwrap();
    // Writing again (SQLite: once the sequencer has taken its lease back and replayed
    // its redo log).
    let mut back = false;
    for n in 0..100 {
        if journal.append(probe(2000 + n)).await.is_ok() {
            back = true;
            acknowledged += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the journal did not write again");
    // Ready again once the sequencer runs again too (on SQLite it retries its lease,
    // and the redo log's replay, every second).
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "not ready again");
    let cp = journal
        .wait_for_size(base + acknowledged, Duration::from_secs(10))
        .await
        .unwrap();
    let (_, rows) = journal.entries(0, cp.size).await.unwrap();
    let probes = rows
        .iter()
        .filter_map(|r| Entry::decode(&r.leaf).ok())
        .filter(|e| e.details.contains_key("probe"))
        .count() as u64;
    assert!(
        probes >= acknowledged,
        "{probes} of {acknowledged} acknowledged"
    );
}

on_both_stores!(
    readiness_reports_a_journal_that_cannot_write,
    every_served_proof_verifies,
    invalid_ranges_are_refused,
    entries_carry_pseudonyms_not_people,
    the_journal_endpoints_are_rate_limited,
    the_journal_rate_limit_follows_trusted_proxies,
    verify_names_the_first_tampered_entry,
    verify_remembers_what_it_saw,
    kill_9_loses_no_acknowledged_append,
);

/// Several nodes on one PostgreSQL database: one holds the sequencer lock and
/// integrates the appends the others queue; when it stops, another takes over, and the
/// log stays one consistent history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_one_sequencer() {
    let mut leader = TestApp::spawn(Backend::Postgres).await;
    let size = append_n(&leader, 3).await;
    let (cp_before, verifier) = checkpoint(&leader).await;

    // A second node on the same database.
    let follower_app = socle::Application::build(leader.db.config()).await.unwrap();
    let follower = follower_app.journal().cloned().unwrap();
    let follower_base = format!("http://{}", follower_app.local_addr());
    let (stop_follower, rx) = tokio::sync::oneshot::channel::<()>();
    let follower_task = tokio::spawn(follower_app.run_until_stopped(async {
        let _ = rx.await;
    }));
    assert_eq!(
        follower.verifier_key(),
        leader.journal.as_ref().unwrap().verifier_key(),
        "one key for all nodes"
    );

    let entries: Vec<Entry> = (0..25)
        .map(|i| Entry::new(EntryKind::Admin, "operator:test", "ok").detail("n", i.to_string()))
        .collect();
    follower.append(entries).await.unwrap();
    // The leader integrates the follower's queued appends and signs.
    let cp = leader
        .journal
        .as_ref()
        .unwrap()
        .wait_for_size(size + 25, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(cp.size, size + 25);
    assert!(
        follower
            .subscribe()
            .borrow()
            .as_ref()
            .is_none_or(|c| c.size < cp.size),
        "the follower did not sign"
    );
    // Both nodes serve the same signed checkpoint.
    let note = reqwest::get(format!("{follower_base}/journal/checkpoint"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(Checkpoint::open(&note, &verifier).unwrap().size, cp.size);

    // The leader stops: the follower takes the lock and carries on from the same tree.
    leader.stop_in_place().await.unwrap();
    follower
        .append(vec![
            Entry::new(EntryKind::Admin, "operator:test", "ok").detail("n", "after-failover"),
        ])
        .await
        .unwrap();
    let after = follower
        .wait_for_size(cp.size + 1, Duration::from_secs(15))
        .await
        .unwrap();
    let p = follower
        .consistency_proof(cp_before.size, after.size)
        .await
        .unwrap();
    merkle::verify_consistency(
        cp_before.size,
        after.size,
        &cp_before.root,
        &after.root,
        &p.hashes,
    )
    .unwrap();
    let _ = stop_follower.send(());
    follower_task.await.unwrap().unwrap();
}

/// The public journal page shows the latest checkpoint, the key and the last entries.
async fn the_journal_page_shows_the_signed_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let size = append_n(&app, 4).await;
    let r = app.get("/journal").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Journal des échanges</h1>"));
    assert!(html.contains(&format!("<dd>{size}</dd>")), "{html}");
    assert!(html.contains(&app.journal.as_ref().unwrap().verifier_key()));
    assert!(html.contains("Échange de données") && html.contains("Clé de signature"));
    // Actions in words: the instance's creation, not its code.
    assert!(
        html.contains("Création de l’instance") && !html.contains("instance.created"),
        "{html}"
    );
    assert!(html.contains(&format!("socle journal verify --url http://{}", app.addr)));
}

on_both_stores!(the_journal_page_shows_the_signed_state);
