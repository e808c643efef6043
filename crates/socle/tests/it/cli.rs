//! The command line: configuration checking, clear start-up errors, migrations.

use crate::on_both_stores;
use crate::support::{Backend, TestDb, free_port, run_binary};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn config_check_lists_every_invalid_setting_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("socle.toml"),
        "[server]\nlisten = \"127.0.0.1:99999\"\nbody_limit = \"12 parsecs\"\n\n[log]\nformat = \"xml\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_binary(
        &["config", "check"],
        &env(&[
            ("SOCLE_DATABASE__URL", "mysql://root@db/x"),
            ("SOCLE_SERVER__SHUTDOWN_TIMOUT", "3s"),
        ]),
        dir.path(),
    );
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("invalid configuration (5 problems)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "server.listen (from file socle.toml): \"127.0.0.1:99999\" is not an address"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("server.body_limit (from file"), "{stderr}");
    assert!(stderr.contains("log.format (from file"), "{stderr}");
    assert!(
        stderr.contains(
            "database.url (from environment variable SOCLE_DATABASE__URL): must be a postgres://"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("server.shutdown_timout (from environment variable SOCLE_SERVER__SHUTDOWN_TIMOUT): unknown setting"), "{stderr}");
    assert!(
        !stderr.contains("root@db"),
        "the URL itself is not echoed: {stderr}"
    );

    // A missing explicit file is an error too; a broken TOML file names the line.
    let (code, _, stderr) = run_binary(
        &["config", "check", "--config", "/nonexistent/socle.toml"],
        &[],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the configuration file"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("broken.toml"), "[server\nlisten = 1").unwrap();
    let (code, _, stderr) = run_binary(&["config", "check", "-c", "broken.toml"], &[], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("not valid TOML") && stderr.contains("line 1"),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("socle.toml"),
        "[instance]\nname = \"Région test\"\n[server]\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("db-url"),
        "postgres://socle:s3cr3t-pw@db.internal:5432/socle\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_binary(
        &["config", "check", "--data-dir", "/var/lib/socle"],
        &env(&[
            ("SOCLE_SERVER__LISTEN", "127.0.0.1:9001"),
            ("SOCLE_DATABASE__URL_FILE", "db-url"),
            ("SOCLE_LOG__FORMAT", "json"),
        ]),
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("name = \"Région test\""), "{stdout}");
    assert!(
        stdout.contains("listen = \"127.0.0.1:9001\""),
        "env overrides the file: {stdout}"
    );
    assert!(
        stdout.contains("data_dir = \"/var/lib/socle\""),
        "flags override: {stdout}"
    );
    assert!(
        stdout.contains("url = \"postgres://socle:***@db.internal:5432/socle\""),
        "{stdout}"
    );
    assert!(stdout.contains("format = \"json\""), "{stdout}");
    assert!(!stdout.contains("s3cr3t-pw") && !stderr.contains("s3cr3t-pw"));
    // What it prints is itself a valid configuration file.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &stdout).unwrap();
    let (code, again, _) = run_binary(&["config", "check", "-c", "printed.toml"], &[], dir.path());
    assert_eq!(code, 0);
    assert!(again.contains("listen = \"127.0.0.1:9001\""));
}

#[test]
fn version_and_help_speak_to_a_newcomer() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run_binary(&["version"], &[], dir.path());
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("socle {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let (code, stdout, _) = run_binary(&["--help"], &[], dir.path());
    assert_eq!(code, 0);
    for word in [
        "serve",
        "demo",
        "migrate",
        "config",
        "version",
        "socle demo",
    ] {
        assert!(stdout.contains(word), "{word} in {stdout}");
    }
    let (code, _, stderr) = run_binary(&["frobnicate"], &[], dir.path());
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn serve_explains_why_the_store_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let (code, _, stderr) = run_binary(
        &[
            "serve",
            "--data-dir",
            "not-a-dir/data",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "error: cannot create data directory not-a-dir/data: a parent path is not a directory"
        ),
        "{stderr}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = rt.block_on(free_port());
    let (code, _, stderr) = run_binary(
        &["serve", "--listen", "127.0.0.1:0"],
        &env(&[(
            "SOCLE_DATABASE__URL",
            &format!("postgres://socle:pw@127.0.0.1:{port}/socle"),
        )]),
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "error: PostgreSQL at 127.0.0.1:{port}/socle refused the connection"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(":pw@"), "{stderr}");
}

async fn migrate_command_reports_what_it_did(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cwd = tempfile::tempdir().unwrap();
    let env = db.env();
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let env = env.clone();
        let cwd = cwd.path().to_path_buf();
        move || run_binary(&["migrate"], &env, &cwd)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("applied migration(s)"), "{stdout}");
    let cwd2 = cwd.path().to_path_buf();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || run_binary(&["migrate"], &env, &cwd2))
            .await
            .unwrap();
    assert_eq!(code, 0);
    assert!(stdout.contains("already at version"), "{stdout}");
}

/// `socle demo --reset` removes only a demonstration's files: pointed at a data
/// directory whose database is not one (say `SOCLE_DATA_DIR` left exported), it refuses
/// and removes nothing.
#[test]
fn demo_reset_never_removes_a_real_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let (code, _, err) = run_binary(&["migrate", "--data-dir", &data_s], &[], dir.path());
    assert_eq!(code, 0, "{err}");
    let db = data.join("socle.db");
    let before = std::fs::metadata(&db).unwrap().len();
    let (code, out, err) = run_binary(
        &[
            "demo",
            "--reset",
            "--data-dir",
            &data_s,
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
        dir.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not a demonstration database"), "{err}");
    assert!(!out.contains("removed"), "{out}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), before, "left alone");
}

/// `socle journal bench` refuses arguments it cannot honour, and a journal that has
/// entries already (its entries are permanent) unless told it is scratch.
async fn journal_bench_refuses_bad_arguments_and_a_used_journal(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cwd = tempfile::tempdir().unwrap();
    let env = db.env();
    let bench = |args: &'static [&'static str]| {
        let (env, cwd) = (env.clone(), cwd.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["journal", "bench", "--writers", "2"];
            all.extend_from_slice(args);
            run_binary(&all, &env, &cwd)
        })
    };
    for (args, says) in [
        (&["--seconds", "nan"][..], "--seconds"),
        (&["--seconds=-1"][..], "--seconds"),
        (&["--seconds", "1", "--rate", "1e-300"][..], "--rate"),
    ] {
        let (code, out, err) = bench(args).await.unwrap();
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, out, err) = bench(&["--entries", "50", "--seconds", "1"]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = bench(&["--entries", "50", "--seconds", "1"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(
        err.contains("already has") && err.contains("--existing-journal"),
        "{err}"
    );
    let (code, out, err) = bench(&["--entries", "50", "--seconds", "1", "--existing-journal"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
}

/// Runs the binary's commands on `db` from `cwd` (off the async workers).
fn commands(
    db: &TestDb,
    cwd: &std::path::Path,
) -> impl Fn(&'static [&'static str]) -> tokio::task::JoinHandle<(i32, String, String)> + use<> {
    let (env, cwd) = (db.env(), cwd.to_path_buf());
    move |args| {
        let (env, cwd) = (env.clone(), cwd.clone());
        tokio::task::spawn_blocking(move || run_binary(args, &env, &cwd))
    }
}

/// Operator commands set up an empty database but never migrate one in use behind its
/// nodes' back, and say which binary to use when the schema is newer.
async fn operator_commands_do_not_migrate_a_database_in_use(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cwd = tempfile::tempdir().unwrap();
    let run = commands(&db, cwd.path());
    let (code, out, err) = run(&["admin", "client", "list"]).await.unwrap();
    assert_eq!(code, 0, "an empty database is set up: {out}{err}");
    let store = socle::open_store(&db.config()).await.unwrap();
    let latest = socle_store::LATEST_SCHEMA_VERSION;
    store.__test_forget_migration(latest).await.unwrap();
    let (code, _, err) = run(&["admin", "client", "list"]).await.unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("run `socle migrate`"), "{err}");
    let status = store.schema_status().await.unwrap();
    assert_eq!(status.current, latest - 1, "not migrated by the command");
    store.__test_bump_schema(latest + 1).await.unwrap();
    let (code, _, err) = run(&["admin", "client", "list"]).await.unwrap();
    assert_ne!(code, 0);
    assert!(err.contains("newer than this binary"), "{err}");
    store.close().await;
}

/// `socle admin client create` and `socle keys rotate` write their change and its
/// journal entry in one transaction: while the journal's queue refuses inserts (as a
/// full disk would) they fail and change nothing; then each change is made and
/// journaled once.
async fn operator_commands_journal_their_change_in_its_transaction(backend: Backend) {
    use socle_store::IdentityStore;
    let db = TestDb::new(backend).await;
    let cwd = tempfile::tempdir().unwrap();
    let run = commands(&db, cwd.path());
    const CREATE: &[&str] = &[
        "admin",
        "client",
        "create",
        "--name",
        "Service test",
        "--organisation",
        "13002526500013",
        "--redirect-uri",
        "https://fs.example.fr/callback",
    ];
    const ROTATE: &[&str] = &["keys", "rotate", "--alg", "ES256"];
    let (code, out, err) = run(&["admin", "client", "list"]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let store = socle::open_store(&db.config()).await.unwrap();
    let es256 = || async {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let keys = store.keys(now).await.unwrap();
        let current = keys
            .iter()
            .filter(|k| k.alg == "ES256" && k.retired_at.is_none())
            .count();
        (keys.iter().filter(|k| k.alg == "ES256").count(), current)
    };

    store.__test_refuse_queued_entries(true).await.unwrap();
    let (code, out, _) = run(CREATE).await.unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(
        !out.contains("client_secret"),
        "no secret for a client not made: {out}"
    );
    let (code, out, _) = run(ROTATE).await.unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(store.clients().await.unwrap().is_empty());
    // The first key (made when the command opened the key ring) is still the only one.
    assert_eq!(es256().await, (1, 1));

    store.__test_refuse_queued_entries(false).await.unwrap();
    let (code, out, err) = run(CREATE).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("client_secret"), "{out}");
    let (code, out, err) = run(ROTATE).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(store.clients().await.unwrap().len(), 1);
    assert_eq!(
        es256().await,
        (2, 1),
        "the old key retired, still published"
    );
    store.close().await;

    // A server on the database integrates the queued entries: one per change.
    let config = db.config();
    let app = crate::support::TestApp::start(db, config).await;
    crate::catalogue::wait_for_actions(&app, &[("client.created", 1), ("oidc.key.rotated", 1)])
        .await;
}

on_both_stores!(
    operator_commands_journal_their_change_in_its_transaction,
    operator_commands_do_not_migrate_a_database_in_use,
    migrate_command_reports_what_it_did,
    journal_bench_refuses_bad_arguments_and_a_used_journal
);
