//! The platform when its own journal fails (issue 30): a sequencer that cannot load
//! the log makes the node not ready, and once entries wait unsequenced longer than
//! `journal.max_unsequenced`, what needs recording is refused (fail closed).

use std::time::Duration;

use serde_json::{Value, json};

use crate::gateway::{Upstream, refused};
use crate::habilitations::{PRODUCER, admin};
use crate::identity::ADMIN_TOKEN;
use crate::on_both_stores;
use crate::support::{Backend, TestApp, TestDb};

/// Publishes an open API (callable without a habilitation) at `up`.
async fn open_api(app: &TestApp, up: &Upstream) {
    admin(
        app,
        "/api/admin/organisations",
        json!({"siret": PRODUCER, "name": "Caisse démo", "acronym": "CAF démo", "kind": "operator"}),
    )
    .await;
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "QF", "version": "1.0.0"},
        "paths": {"/quotient-familial": {"get": {"responses": {"200": {"description": "ok"}}}}}
    })
    .to_string();
    admin(
        app,
        "/api/admin/apis",
        json!({
            "slug": "libre", "organisation": PRODUCER, "title": "API libre",
            "description": "Ouverte", "openapi": openapi, "upstream_url": up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "open", "contact": "api@caf.example.fr",
            "scopes": [{"name": "qf", "description": "QF", "fields": ["/quotientFamilial"]}]
        }),
    )
    .await;
}

const CALL: &str = "/gateway/99002002600011/libre/v1/quotient-familial";

/// Item 3: a checkpoint the stored log cannot match (a tampered database) halts the
/// sequencer at start: `/readyz` is 503 and says why, a metric says so, and once a
/// queued entry waits longer than the bound, exchanges are refused before reaching
/// the provider.
async fn a_halted_sequencer_fails_closed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    config.admin.token = Some(ADMIN_TOKEN.into());
    config.journal.max_unsequenced = Duration::from_millis(600);
    let mut app = TestApp::start(db, config.clone()).await;
    let up = Upstream::start().await;
    open_api(&app, &up).await;
    assert_eq!(app.get(CALL).await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);

    // A checkpoint beyond the stored log, as a database written by someone else.
    let size: u64 = app
        .get("/journal/checkpoint")
        .await
        .text()
        .await
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    app.store
        .__test_insert_checkpoint(size + 5, "forged")
        .await
        .unwrap();
    app.stop_in_place().await.unwrap();
    let db = std::mem::replace(&mut app.db, TestDb::new(Backend::Sqlite).await);
    drop(app);
    let app = TestApp::start(db, config).await;

    // Not ready, and why.
    let mut ready = None;
    for _ in 0..50 {
        let r = app.get("/readyz").await;
        if r.status() == 503 {
            ready = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = ready.expect("/readyz stayed 200 with a halted sequencer");
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .contains("sequencer is halted")
            || ready["detail"]
                .as_str()
                .unwrap()
                .contains("sequenced nothing"),
        "{ready}"
    );
    // (The metrics recorder is shared by every test of this process: only the
    // series' presence can be asserted here, not another node's value.)
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("socle_journal_sequencer_halted"),
        "the metric says so"
    );

    // Exchanges go to the queue until the oldest waits past the bound; then they are
    // refused, and the provider is not reached.
    let mut refusal = None;
    for _ in 0..60 {
        let r = app.get(CALL).await;
        if r.status() == 503 {
            refusal = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = refusal.expect("exchanges kept being accepted under no checkpoint");
    let before = up.count();
    refused(r, 503, "journal_unavailable").await;
    refused(app.get(CALL).await, 503, "journal_unavailable").await;
    assert_eq!(up.count(), before, "the provider was reached");
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .contains("sequenced nothing"),
        "{ready}"
    );
}

on_both_stores!(a_halted_sequencer_fails_closed);
