//! The catalogue over real HTTP, on both stores: registering organisations, data items
//! and APIs through the admin API (every refusal changes nothing), searching the
//! public JSON API, the pages, the DCAT-AP export, and the journal of admin changes.

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::identity::ADMIN_TOKEN;
use crate::support::{Backend, TestApp};

const ORG: &str = "13002526500013";
const OTHER: &str = "99002002600011";

pub async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn openapi(version: &str) -> String {
    json!({"openapi": "3.0.3", "info": {"title": "API test", "version": version},
           "paths": {"/foyers": {"get": {"summary": "Un foyer", "responses": {"200": {"description": "ok"}}}}}})
    .to_string()
}

fn api(slug: &str, version: &str) -> Value {
    json!({
        "slug": slug, "organisation": ORG, "title": "API Revenus", "description": "Les revenus d’un foyer",
        "themes": ["Fiscalité"], "openapi": openapi(version), "upstream_url": "https://api.example.gouv.fr/v1",
        "access_mode": "habilitation", "contact": "api@example.gouv.fr",
        "scopes": [{"name": "rfr", "description": "Revenu fiscal", "fields": ["/rfr"], "data_items": ["rfr"]}]
    })
}

async fn count(app: &TestApp) -> usize {
    let v: Value = app.get("/api/v1/apis").await.json().await.unwrap();
    v["apis"].as_array().unwrap().len()
}

async fn registering_and_searching(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;

    // Organisations: SIRET checked (Luhn, La Poste's rule), every problem listed.
    let (s, e) = post(
        &app,
        "/api/admin/organisations",
        json!({"siret": "13002526500014", "name": "", "kind": "club"}),
    )
    .await;
    assert_eq!(s, 422);
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("check digit") && detail.contains("name") && detail.contains("kind"),
        "{detail}"
    );
    let (s, o) = post(
        &app,
        "/api/admin/organisations",
        json!({"siret": ORG, "name": "DINUM", "kind": "ministry"}),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(o["siren"], "130025265");
    let (s, _) = post(&app, "/api/admin/organisations",
        json!({"siret": "35600000000001", "name": "La Poste, bureau de démonstration", "kind": "company"})).await;
    assert_eq!(s, 201, "La Poste's establishments follow their own rule");
    let (s, _) = post(
        &app,
        "/api/admin/organisations",
        json!({"siret": OTHER, "name": "CAF démo", "kind": "operator"}),
    )
    .await;
    assert_eq!(s, 201);
    // Without the token: refused.
    let r = app
        .client
        .post(app.url("/api/admin/organisations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Data items: the producer must be registered.
    let item = json!({"id": "rfr", "name": "Revenu fiscal de référence", "meaning": "Le revenu du foyer",
                      "type": "integer", "unit": "euros", "producer": "99001001900018", "legal_source": "CGI 1417"});
    let (s, e) = post(&app, "/api/admin/data-items", item.clone()).await;
    assert_eq!(s, 422, "{e}");
    let mut item = item;
    item["producer"] = json!(ORG);
    assert_eq!(post(&app, "/api/admin/data-items", item).await.0, 201);

    // APIs: each refusal says why and writes nothing.
    let mut bad = api("revenus", "1.0.0");
    bad["openapi"] = json!("{\"openapi\": \"3.0.3\",\n  \"info\": }");
    let (s, e) = post(&app, "/api/admin/apis", bad).await;
    assert_eq!(s, 422);
    assert!(
        e["detail"].as_str().unwrap().contains("line 2"),
        "the parser's error: {e}"
    );
    for (field, value, needle) in [
        (
            "upstream_url",
            json!("https://169.254.169.254/latest"),
            "metadata",
        ),
        ("upstream_url", json!("http://api.example.gouv.fr"), "https"),
        ("access_mode", json!("free"), "access_mode"),
        ("organisation", json!("12345678901234"), "organisation"),
        ("slug", json!("Revenus!"), "slug"),
    ] {
        let mut bad = api("revenus", "1.0.0");
        bad[field] = value;
        let (s, e) = post(&app, "/api/admin/apis", bad).await;
        assert_eq!(s, 422, "{field}");
        assert!(
            e["detail"].as_str().unwrap().contains(needle),
            "{field}: {e}"
        );
    }
    let mut bad = api("revenus", "1.0.0");
    bad["scopes"][0]["fields"] = json!(["rfr"]);
    bad["scopes"][0]["data_items"] = json!(["unknown-item"]);
    let (_, e) = post(&app, "/api/admin/apis", bad).await;
    let d = e["detail"].as_str().unwrap();
    assert!(
        d.contains("JSON pointer") && d.contains("unknown-item"),
        "{d}"
    );
    let mut bad = api("revenus", "1.0.0");
    bad["organisation"] = json!("99003003300015");
    assert_eq!(
        post(&app, "/api/admin/apis", bad).await.0,
        422,
        "unregistered organisation"
    );
    assert_eq!(count(&app).await, 0, "nothing written by a refusal");

    // Published, then a second version: the record follows, both documents are kept.
    assert_eq!(
        post(&app, "/api/admin/apis", api("revenus", "1.0.0"))
            .await
            .0,
        201
    );
    assert_eq!(
        post(&app, "/api/admin/apis", api("revenus", "2.0.0"))
            .await
            .0,
        201
    );
    let mut other = api("qf", "1.0.0");
    other["organisation"] = json!(OTHER);
    other["title"] = json!("API Quotient familial");
    other["description"] = json!("Pour la cantine et la crèche");
    other["themes"] = json!(["Famille"]);
    other["scopes"][0]["data_items"] = json!([]);
    assert_eq!(post(&app, "/api/admin/apis", other).await.0, 201);
    // An API stays with the organisation that published it.
    let mut taken = api("revenus", "3.0.0");
    taken["organisation"] = json!(OTHER);
    taken["scopes"][0]["data_items"] = json!([]);
    let (s, e) = post(&app, "/api/admin/apis", taken).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["code"], "conflict");
    assert!(e["detail"].as_str().unwrap().contains(ORG), "{e}");
    let d: Value = app.get("/api/v1/apis/revenus").await.json().await.unwrap();
    assert_eq!(d["version"], "2.0.0");
    assert_eq!(d["versions"], json!(["1.0.0", "2.0.0"]));
    assert_eq!(d["producer"]["name"], "DINUM");
    assert_eq!(d["openapi"]["info"]["version"], "2.0.0");
    assert_eq!(app.get("/api/v1/apis/none").await.status(), 404);

    // Search by keyword (accents folded), producer, theme, data item.
    let ids = |v: Value| -> Vec<String> {
        v["apis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |p: &str| {
        let app = &app;
        let p = p.to_string();
        async move {
            ids(app
                .get(&format!("/api/v1/apis?{p}"))
                .await
                .json()
                .await
                .unwrap())
        }
    };
    assert_eq!(q("q=creche").await, vec!["qf"]);
    assert_eq!(q(&format!("producer={ORG}")).await, vec!["revenus"]);
    assert_eq!(q("theme=Famille").await, vec!["qf"]);
    assert_eq!(q("data_item=rfr").await, vec!["revenus"]);
    assert_eq!(
        q("q=cantine&theme=Fiscalit%C3%A9").await,
        Vec::<String>::new()
    );
    let items: Value = app.get("/api/v1/data-items").await.json().await.unwrap();
    assert_eq!(items["data_items"][0]["id"], "rfr");
    let found: Value = app
        .get("/api/v1/data-items?q=reference%20fiscal")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        found["data_items"].as_array().unwrap().len(),
        1,
        "accents folded, every word"
    );
    let none: Value = app
        .get("/api/v1/data-items?q=cantine")
        .await
        .json()
        .await
        .unwrap();
    assert!(none["data_items"].as_array().unwrap().is_empty());

    // DCAT-AP export and pages.
    let r = app.get("/api/v1/catalogue.jsonld").await;
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let dcat: Value = r.json().await.unwrap();
    assert_eq!(dcat["@type"], "dcat:Catalog");
    assert_eq!(dcat["dcat:service"].as_array().unwrap().len(), 2);
    for (path, needle) in [
        ("/catalogue?q=creche", "API Quotient familial"),
        ("/catalogue/revenus", "Demander l’accès"),
        ("/catalogue/revenus", "/foyers"),
        ("/catalogue/donnees", "Revenu fiscal de référence"),
    ] {
        let r = app
            .client
            .get(app.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path}: {needle}");
    }
    let r = app
        .client
        .get(app.url("/catalogue/none"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("lang=\"fr\""));

    // Every registration is journaled (with the change, through the journal's queue,
    // which the sequencer integrates within a fraction of a second).
    let journaled = |action: &'static str, n: usize| (action, n);
    wait_for_actions(
        &app,
        &[
            journaled("organisation.registered", 3),
            journaled("data_item.registered", 1),
            journaled("api.published", 3),
        ],
    )
    .await;
}

/// The actions of the administrative and key-rotation entries covered by the latest
/// checkpoint.
pub(crate) async fn actions(app: &TestApp) -> Vec<String> {
    let journal = app.journal.as_ref().unwrap();
    let Ok(cp) = journal.latest_checkpoint().await else {
        return Vec::new();
    };
    let (_, rows) = journal.entries(0, cp.size).await.unwrap();
    rows.iter()
        .filter_map(|r| socle_journal::Entry::decode(&r.leaf).ok())
        .filter(|e| {
            matches!(
                e.kind,
                socle_journal::EntryKind::Admin | socle_journal::EntryKind::KeyRotation
            )
        })
        .filter_map(|e| e.details.get("action").cloned())
        .collect()
}

/// Waits (up to 5 s) until the journal holds exactly `n` entries of each `action`.
pub(crate) async fn wait_for_actions(app: &TestApp, expected: &[(&str, usize)]) {
    let counts = |seen: &[String]| -> Vec<(String, usize)> {
        expected
            .iter()
            .map(|(a, _)| (a.to_string(), seen.iter().filter(|s| s == a).count()))
            .collect()
    };
    let want: Vec<(String, usize)> = expected.iter().map(|(a, n)| (a.to_string(), *n)).collect();
    let mut got = Vec::new();
    for _ in 0..50 {
        got = counts(&actions(app).await);
        if got == want {
            // And no more arrive later (a change journaled twice).
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert_eq!(counts(&actions(app).await), want);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("journal entries {got:?}, expected {want:?}");
}

/// An administrative change whose journal entry cannot be written is not made: the
/// change and its entry are one transaction (here the journal's queue refuses every
/// insert, as a full disk would). Once the journal writes again, the same requests
/// succeed and each change is journaled once.
async fn an_admin_change_is_made_only_with_its_journal_entry(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.admin.token = Some(ADMIN_TOKEN.into())).await;
    let org = json!({"siret": ORG, "name": "DINUM", "kind": "ministry"});
    assert_eq!(post(&app, "/api/admin/organisations", org).await.0, 201);
    let item = json!({"id": "rfr", "name": "Revenu fiscal de référence", "meaning": "Le revenu du foyer",
                      "type": "integer", "unit": "euros", "producer": ORG, "legal_source": "CGI 1417"});
    assert_eq!(post(&app, "/api/admin/data-items", item).await.0, 201);
    let client = crate::support::identity::register_default(&app).await;
    let clients = || crate::support::identity::clients(&app);
    let webhooks = format!("/api/admin/organisations/{ORG}/webhooks");
    let hook = json!({"url": "http://127.0.0.1:9/hook", "allow_private": true});
    let other = json!({"siret": OTHER, "name": "CAF démo", "kind": "operator"});
    let new_client = json!({"name": "Service refusé", "organisation": ORG,
                            "redirect_uris": [crate::support::identity::REDIRECT], "scopes": ["openid"]});
    let disable = format!("/api/admin/clients/{}/disable", client.id);
    let user = || {
        socle_catalogue::back_office::create_user(
            &app.store,
            "agent@dinum.fr",
            "Agent",
            ORG,
            vec![socle_catalogue::people::Role::Developer],
            "un mot de passe assez long",
            Some("operator:cli"),
        )
    };
    let user_exists = || async {
        socle_store::BackOfficeStore::user(&app.store, "agent@dinum.fr")
            .await
            .unwrap()
            .is_some()
    };

    let before = clients().await.len();
    let disabled = |listed: &[Value]| {
        listed
            .iter()
            .find(|c| c["client_id"] == client.id.as_str())
            .map(|c| c["disabled"] == true)
    };

    app.store.__test_refuse_queued_entries(true).await.unwrap();
    for (path, body) in [
        ("/api/admin/organisations", other.clone()),
        ("/api/admin/apis", api("revenus", "1.0.0")),
        (webhooks.as_str(), hook.clone()),
        ("/api/admin/clients", new_client.clone()),
        (disable.as_str(), Value::Null),
    ] {
        let (s, e) = post(&app, path, body).await;
        assert!(s >= 500, "{path}: {s} {e}");
        assert!(e["code"].is_string() && e["detail"].is_string(), "{e}");
    }
    assert!(user().await.is_err(), "the account is refused too");
    // Nothing was changed.
    let catalogue = socle_catalogue::Catalogue::new(app.store.clone());
    assert!(catalogue.organisation(OTHER).await.unwrap().is_none());
    assert_eq!(count(&app).await, 0);
    assert!(
        socle_store::NotificationStore::webhooks(&app.store, ORG)
            .await
            .unwrap()
            .is_empty()
    );
    let listed = clients().await;
    assert_eq!(listed.len(), before, "{listed:?}");
    assert_eq!(disabled(&listed), Some(false));
    assert!(!user_exists().await);

    app.store.__test_refuse_queued_entries(false).await.unwrap();
    assert_eq!(post(&app, "/api/admin/organisations", other).await.0, 201);
    assert_eq!(
        post(&app, "/api/admin/apis", api("revenus", "1.0.0"))
            .await
            .0,
        201
    );
    assert_eq!(post(&app, &webhooks, hook).await.0, 201);
    assert_eq!(post(&app, "/api/admin/clients", new_client).await.0, 201);
    let r = app
        .client
        .post(app.url(&disable))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    user().await.unwrap();
    assert!(user_exists().await);
    assert!(catalogue.organisation(OTHER).await.unwrap().is_some());
    assert_eq!(count(&app).await, 1);
    let listed = clients().await;
    assert_eq!(listed.len(), before + 1);
    assert_eq!(disabled(&listed), Some(true));
    wait_for_actions(
        &app,
        &[
            ("organisation.registered", 2),
            ("data_item.registered", 1),
            ("api.published", 1),
            ("webhook.registered", 1),
            ("client.created", 2),
            ("client.disabled", 1),
            ("user.created", 1),
        ],
    )
    .await;
}

on_both_stores!(
    registering_and_searching,
    an_admin_change_is_made_only_with_its_journal_entry
);
