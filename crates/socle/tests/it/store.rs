//! The store test suite, identical for SQLite and PostgreSQL.

use socle_store::{
    InstanceStore, LATEST_SCHEMA_VERSION, Location, Store, StoreError, StoreOptions,
};

use crate::on_both_stores;
use crate::support::{Backend, TestApp, TestDb};

async fn open(db: &TestDb) -> Store {
    socle::open_store(&db.config()).await.unwrap()
}

async fn migrations_apply_once_and_are_idempotent(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    assert_eq!(
        store.kind(),
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    let before = store.schema_status().await.unwrap();
    assert_eq!(before.current, 0);
    assert!(!before.is_current());
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied, (1..=LATEST_SCHEMA_VERSION).collect::<Vec<_>>());
    assert!(
        store.migrate().await.unwrap().is_empty(),
        "second run applies nothing"
    );
    let after = store.schema_status().await.unwrap();
    assert_eq!(after.current, LATEST_SCHEMA_VERSION);
    assert!(after.is_current());
    store.ping().await.unwrap();
    store.close().await;
}

async fn concurrent_migrations_do_not_collide(backend: Backend) {
    let db = TestDb::new(backend).await;
    let a = open(&db).await;
    let b = open(&db).await;
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.len() + rb.len(),
        LATEST_SCHEMA_VERSION as usize,
        "{ra:?} {rb:?}"
    );
    assert!(a.schema_status().await.unwrap().is_current());
}

async fn instance_is_created_once_and_keeps_its_identity(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.migrate().await.unwrap();
    let first = store.ensure_instance("Préfecture A").await.unwrap();
    assert_eq!(first.name, "Préfecture A");
    assert_eq!(first.instance_id.len(), 32);
    let again = store.ensure_instance("Préfecture B").await.unwrap();
    assert_eq!(again.instance_id, first.instance_id);
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(again.name, "Préfecture B");
    // Persisted: a new handle on the same database sees it.
    store.close().await;
    let reopened = open(&db).await;
    assert_eq!(
        reopened.ensure_instance("Préfecture B").await.unwrap(),
        again
    );
}

async fn a_newer_schema_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.migrate().await.unwrap();
    store
        .__test_bump_schema(LATEST_SCHEMA_VERSION + 1)
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("database schema is newer than this binary"),
        "{err}"
    );
    store.close().await;
    // The server refuses to start on it, with the same message.
    let Err(err) = socle::Application::build(db.config()).await else {
        panic!("a server started on a database from the future");
    };
    assert!(
        format!("{err:#}").contains("database schema is newer than this binary"),
        "{err:#}"
    );
}

async fn pool_stats_report_the_configured_maximum(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.database.max_connections = 3;
    let store = socle::open_store(&config).await.unwrap();
    store.ping().await.unwrap();
    let stats = store.pool_stats();
    assert_eq!(stats.max, 3);
    assert!(stats.size >= 1 && stats.size <= 3, "{stats:?}");
}

async fn readiness_follows_the_schema(backend: Backend) {
    // A node started without auto-migration on an empty database is alive but not
    // ready until someone migrates it.
    let app = TestApp::spawn_with(backend, |c| c.database.auto_migrate = false).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_ready");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("version 0") && detail.contains("run `socle migrate`"),
        "{detail}"
    );

    let other = open(&app.db).await;
    other.migrate().await.unwrap();
    // Migrated, but this node opened nothing at start: it says so until restarted.
    not_ready(app.get("/readyz").await, "restart this node").await;
    let r = app.get("/etat").await;
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("momentanément indisponible") && page.contains("restart it"),
        "{page}"
    );
    assert_eq!(app.get("/journal/checkpoint").await.status(), 503);
    // Restarted (SQLite: one process per file), it is ready.
    let mut app = app;
    app.stop_in_place().await.unwrap();
    let mut config = app.db.config();
    config.database.auto_migrate = false;
    let node = socle::Application::build(config).await.unwrap();
    let readyz = format!("http://{}/readyz", node.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.run_until_stopped(async {
        let _ = rx.await;
    }));
    assert_eq!(reqwest::get(&readyz).await.unwrap().status(), 200);

    // A newer binary migrated the database further: this node stops being ready.
    other
        .__test_bump_schema(LATEST_SCHEMA_VERSION + 1)
        .await
        .unwrap();
    not_ready(
        reqwest::get(&readyz).await.unwrap(),
        "newer than this binary",
    )
    .await;
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

/// A 503 from `/readyz` whose `detail` says `why`.
async fn not_ready(r: reqwest::Response, why: &str) {
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
}

on_both_stores!(
    migrations_apply_once_and_are_idempotent,
    concurrent_migrations_do_not_collide,
    instance_is_created_once_and_keeps_its_identity,
    a_newer_schema_is_refused,
    pool_stats_report_the_configured_maximum,
    readiness_follows_the_schema,
);

#[tokio::test]
async fn sqlite_open_errors_name_the_path_and_the_reason() {
    let options = StoreOptions::new(Location::Sqlite {
        path: "/dev/null/socle/socle.db".into(),
    });
    let err = Store::open(&options).await.unwrap_err().to_string();
    assert!(
        err.starts_with("cannot create data directory /dev/null/socle:"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("socle.db")).unwrap();
    let options = StoreOptions::new(Location::Sqlite {
        path: dir.path().join("socle.db"),
    });
    let err = Store::open(&options).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot open database at {}: it is a directory",
            dir.path().join("socle.db").display()
        )
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").join("socle");
    let mut config = TestDb::new(Backend::Sqlite).await.config();
    config.data_dir = data.clone();
    let app = socle::Application::build(config).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    let mut seen = 0;
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            seen += 1;
            assert_eq!(mode(&f) & 0o077, 0, "{} is readable by others", f.display());
        }
    }
    assert!(
        seen >= 4,
        "the database, its log, the journal's log, the master key"
    );
    drop(app);
}

#[tokio::test]
async fn postgres_refusal_is_reported_plainly() {
    let port = crate::support::free_port().await;
    let url = format!("postgres://postgres:pw@127.0.0.1:{port}/socle");
    let err = Store::open(&StoreOptions::new(Location::Postgres { url }))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("PostgreSQL at 127.0.0.1:{port}/socle refused the connection")
    );
    let url = format!("{}_does_not_exist", crate::support::postgres_admin_url());
    let err = Store::open(&StoreOptions::new(Location::Postgres { url }))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the database does not exist"), "{err}");
}

/// Two sequencers extending the log from the same point: the second fails whole.
async fn two_sequencers_cannot_fork_the_log(backend: Backend) {
    use socle_store::{JournalStore, NewEntry};
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.migrate().await.unwrap();
    store.journal_state("test").await.unwrap();
    let entry = |leaf: &[u8]| NewEntry {
        index: 0,
        leaf: leaf.to_vec(),
        leaf_hash: [7u8; 32],
        subject: None,
        mac: None,
    };
    let mut a = store.journal_writer();
    let mut b = store.journal_writer();
    a.integrate(0, &[entry(b"first")], &[], &[]).await.unwrap();
    let err = b
        .integrate(0, &[entry(b"second")], &[(1, [9u8; 32])], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let stored = store.journal_entries(0, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].leaf, b"first");
    assert!(
        store.journal_nodes(&[1]).await.unwrap().is_empty(),
        "nothing of the losing batch"
    );
    assert_eq!(store.journal_state("test").await.unwrap().size, 1);
}

on_both_stores!(two_sequencers_cannot_fork_the_log);

/// A login that completes in a session ended meanwhile (a logout between the single
/// sign-on's read of the session and its write) does not bring the session back; a
/// renewed session (a new cookie after a login) is written anew.
async fn a_completed_login_does_not_revive_an_ended_session(backend: Backend) {
    use socle_store::{IdentityStore, NewCode, SessionWrite};
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    store.migrate().await.unwrap();
    let now = 1_000;
    store
        .put_session("s1", "{\"v\":1}", now + 600)
        .await
        .unwrap();
    store.delete_session("s1").await.unwrap();
    let code = |hash: &'static str| NewCode {
        code_hash: hash,
        client_id: "c",
        doc: "{}",
        expires_at: now + 30,
    };
    let write = |id: &'static str, replaces: Option<&'static str>| SessionWrite {
        id,
        doc: "{\"v\":2}",
        expires_at: now + 600,
        replaces,
    };
    store
        .complete_login(Some(write("s1", None)), code("k1"), "i1")
        .await
        .unwrap();
    assert_eq!(store.session("s1", now).await.unwrap(), None, "revived");
    // An existing session is updated; a renewed one replaces the old.
    store
        .put_session("s2", "{\"v\":1}", now + 600)
        .await
        .unwrap();
    store
        .complete_login(Some(write("s2", None)), code("k2"), "i2")
        .await
        .unwrap();
    assert_eq!(
        store.session("s2", now).await.unwrap().as_deref(),
        Some("{\"v\":2}")
    );
    store
        .complete_login(Some(write("s3", Some("s2"))), code("k3"), "i3")
        .await
        .unwrap();
    assert_eq!(store.session("s2", now).await.unwrap(), None);
    assert!(store.session("s3", now).await.unwrap().is_some());
}

on_both_stores!(a_completed_login_does_not_revive_an_ended_session);
