//! The source review's findings (issue 29), each held by a test that fails on the code
//! before its fix: the gateway's operation matching, provider content kept inert, and
//! the other defences listed in docs/SECURITY.md.

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::back_office::{PRODUCER, admin, complete_form};
use crate::support::gateway::{Env, PURPOSE, exchange_entry, refused};
use crate::support::{Backend, TestApp, TestDb};

/// An API whose document lists a templated path before a literal one, each with its
/// own scope.
async fn publish_personnes(env: &Env) {
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "Personnes", "version": "1.0.0"},
        "paths": {
            "/personnes/{id}": {"get": {"security": [{"socle": ["lecture"]}],
                                        "responses": {"200": {"description": "ok"}}}},
            "/personnes/recherche": {"get": {"security": [{"socle": ["recherche"]}],
                                             "responses": {"200": {"description": "ok"}}}}
        }
    })
    .to_string();
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "personnes", "organisation": PRODUCER, "title": "API personnes",
            "description": "Des personnes", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "habilitation", "contact": "api@caf.example.fr",
            "scopes": [{"name": "lecture", "description": "Lire une personne", "fields": ["/nom"]},
                       {"name": "recherche", "description": "Rechercher", "fields": ["/resultats"]}]
        }),
    )
    .await;
}

/// Item 1: with a habilitation granting only `lecture`, neither the literal path
/// written after a template nor its percent-encoded spelling reaches `recherche`; the
/// path the provider sees is the normalised one; the journal names the operation.
async fn gateway_matches_operations_as_openapi_says(backend: Backend) {
    let env = Env::new(backend, false).await;
    publish_personnes(&env).await;
    let mut form = complete_form();
    form["scopes"] = json!(["lecture"]);
    let (_, client_id, secret) = env.habilitation("personnes", form).await;
    let (s, t) = env.token(&client_id, &secret, None).await;
    assert_eq!(s, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    let url = |p: &str| format!("/gateway/{PRODUCER}/personnes/v1{p}?{PURPOSE}");

    let before = env.up.count();
    for path in [
        "/personnes/recherche",
        "/personnes/%72echerche",
        "/personnes/%72%65cherche",
        "/personnes/re%63herche",
    ] {
        let r = env.call(&url(path), Some(&token)).await;
        refused(r, 403, "scope_not_granted").await;
    }
    // An encoding that the provider could decode into another path is refused.
    for path in [
        "/personnes/%2572echerche",
        "/personnes/a%2Fb",
        "/personnes/a%3Bb",
        // What a provider matching routes loosely would read as `recherche`.
        "/personnes/RECHERCHE",
        "/personnes/recherche.json",
        "/personnes/%C0%AE%C0%AE",
    ] {
        let r = env.call(&url(path), Some(&token)).await;
        refused(r, 400, "invalid_path").await;
    }
    // A method in another case is not the document's.
    let r = env
        .app
        .client
        .request(
            reqwest::Method::from_bytes(b"Get").unwrap(),
            env.app.url(&url("/personnes/42")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    refused(r, 404, "unknown_operation").await;
    assert_eq!(env.up.count(), before, "the provider was reached");

    // The operation granted works, and the provider sees the normalised path.
    let r = env.call(&url("/personnes/%34%32"), Some(&token)).await;
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"nom": "Dupont"}));
    let (line, _) = env.up.last();
    assert_eq!(line, "GET /api/personnes/42 HTTP/1.1");
    let e = exchange_entry(&env.app, &headers).await;
    assert_eq!(e["details"]["operation"], "GET /personnes/{id}", "{e}");
}

/// Item 3: an open API whose provider answers HTML with a script: the answer is
/// released (a scope grants the whole document) but inert, sandboxed and downloaded.
async fn provider_content_is_never_active(backend: Backend) {
    let env = Env::new(backend, false).await;
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "Pages", "version": "1.0.0"},
        "paths": {"/page": {"get": {"responses": {"200": {"description": "ok"}}}},
                  "/quotient-familial": {"get": {"responses": {"200": {"description": "ok"}}}}}
    })
    .to_string();
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "pages", "organisation": PRODUCER, "title": "API pages",
            "description": "Des pages", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "open", "contact": "api@caf.example.fr",
            "scopes": [{"name": "tout", "description": "Tout", "fields": [""]}]
        }),
    )
    .await;
    let r = env
        .call(&format!("/gateway/{PRODUCER}/pages/v1/page"), None)
        .await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/html");
    assert_eq!(
        h["content-security-policy"],
        "sandbox; default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(h["content-disposition"], "attachment");
    assert_eq!(h["cross-origin-resource-policy"], "same-origin");
    assert!(r.text().await.unwrap().contains("<script>"));

    // JSON stays inline, sandboxed too; errors carry the same policy.
    let r = env
        .call(
            &format!("/gateway/{PRODUCER}/pages/v1/quotient-familial"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-disposition").is_none());
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox;")
    );
    let r = env
        .call(&format!("/gateway/{PRODUCER}/pages/v1/absente"), None)
        .await;
    assert_eq!(r.headers()["cross-origin-resource-policy"], "same-origin");
    refused(r, 404, "unknown_operation").await;
}

/// Every value stored in the database, as bytes (text as its UTF-8, `bytea` as its
/// bytes on PostgreSQL), with the table and column it is in.
async fn every_value(db: &TestDb, config: &socle::Config) -> Vec<(String, Vec<u8>)> {
    use sqlx::{Connection, Row};
    let mut out = Vec::new();
    match db.database_url() {
        None => {
            let url = format!("sqlite://{}?mode=ro", config.sqlite_path().display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let tables: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                for col in cols {
                    let rows = sqlx::query(&format!("SELECT CAST(\"{col}\" AS BLOB) FROM \"{t}\""))
                        .fetch_all(&mut c)
                        .await
                        .unwrap();
                    for r in rows {
                        if let Some(v) = r.get::<Option<Vec<u8>>, _>(0) {
                            out.push((format!("{t}.{col}"), v));
                        }
                    }
                }
            }
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let cols: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = 'public'",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            for (t, col, kind) in cols {
                let sql = if kind == "bytea" {
                    format!("SELECT \"{col}\" FROM \"{t}\"")
                } else {
                    format!("SELECT convert_to(\"{col}\"::text, 'UTF8') FROM \"{t}\"")
                };
                for r in sqlx::query(&sql).fetch_all(&mut c).await.unwrap() {
                    if let Some(v) = r.get::<Option<Vec<u8>>, _>(0) {
                        out.push((format!("{t}.{col}"), v));
                    }
                }
            }
        }
    }
    out
}

/// Runs one statement with byte parameters on the test database, as someone with
/// write access to it would.
async fn execute(db: &TestDb, config: &socle::Config, sql: &str, params: &[&[u8]]) {
    use sqlx::Connection;
    match db.database_url() {
        None => {
            let url = format!("sqlite://{}", config.sqlite_path().display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let mut q = sqlx::query(sql);
            for p in params {
                q = q.bind(p.to_vec());
            }
            assert_eq!(q.execute(&mut c).await.unwrap().rows_affected(), 1);
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut q = sqlx::query(sql);
            for p in params {
                q = q.bind(p.to_vec());
            }
            assert_eq!(q.execute(&mut c).await.unwrap().rows_affected(), 1);
        }
    }
}

/// The 32-byte strings a stored value could be read as: its bytes, or its text in hex
/// or base64.
fn seeds(value: &[u8]) -> Vec<[u8; 32]> {
    use base64::Engine;
    let mut out: Vec<Vec<u8>> = vec![value.to_vec()];
    if let Ok(text) = std::str::from_utf8(value) {
        let text = text.trim().trim_start_matches("\\x");
        out.extend(hex::decode(text).ok());
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            out.extend(engine.decode(text).ok());
        }
    }
    out.into_iter().filter_map(|v| v.try_into().ok()).collect()
}

/// The column holding a seed whose Ed25519 key is the journal's `key`, if any.
async fn journal_seed_in(db: &TestDb, config: &socle::Config, key: &str) -> Option<String> {
    let key = key.trim();
    let origin = key.split('+').next().unwrap();
    let values = every_value(db, config).await;
    assert!(
        values
            .iter()
            .filter(|(c, _)| c == "journal_secrets.value")
            .count()
            == 3,
        "the journal's three secrets are stored"
    );
    for (column, value) in &values {
        for seed in seeds(value) {
            let derived = socle_journal::NoteSigner::from_seed(origin, &seed)
                .unwrap()
                .verifier()
                .encode();
            if derived == key {
                return Some(column.clone());
            }
        }
    }
    None
}

/// Item 4: the journal's signing seed, pseudonym key (and entry MAC key) are sealed under the master key;
/// a database written by a version that kept them in clear is sealed at the next start,
/// with the same keys.
async fn journal_secrets_are_sealed(backend: Backend) {
    use socle_journal::SecretSeal;
    let db = TestDb::new(backend).await;
    let config = db.config();
    let mut app = TestApp::start(db, config.clone()).await;
    let key = app.get("/journal/key").await.text().await.unwrap();
    assert_eq!(journal_seed_in(&app.db, &config, &key).await, None);

    // As an earlier version stored them: in clear.
    app.stop_in_place().await.unwrap();
    let master = socle::app::master_key(&config).unwrap();
    let stored = every_value(&app.db, &config)
        .await
        .into_iter()
        .filter(|(c, _)| c == "journal_secrets.value")
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    assert_eq!(stored.len(), 3);
    for sealed in &stored {
        let clear = SecretSeal::unseal(&master, sealed).unwrap();
        assert_eq!(clear.len(), 32);
        execute(
            &app.db,
            &config,
            "UPDATE journal_secrets SET value = $1 WHERE value = $2",
            &[&clear, sealed],
        )
        .await;
    }
    // The scan finds a seed in clear.
    assert_eq!(
        journal_seed_in(&app.db, &config, &key).await.as_deref(),
        Some("journal_secrets.value")
    );
    // A node started with another master key refuses to start and seals nothing.
    let mut stranger = config.clone();
    stranger.identity.master_key = Some(socle_identity::MasterKey::generate_text().into());
    let refused = socle::Application::build(stranger).await;
    assert!(refused.is_err(), "a node with the wrong master key started");
    assert_eq!(
        journal_seed_in(&app.db, &config, &key).await.as_deref(),
        Some("journal_secrets.value"),
        "the secrets were resealed under the wrong key"
    );
    let app = app.restart(config.clone()).await;
    assert_eq!(
        app.get("/journal/key").await.text().await.unwrap(),
        key,
        "the same signing key, sealed now"
    );
    assert_eq!(journal_seed_in(&app.db, &config, &key).await, None);
    let resealed = every_value(&app.db, &config)
        .await
        .into_iter()
        .filter(|(c, _)| c == "journal_secrets.value")
        .map(|(_, v)| v)
        .collect::<Vec<_>>();
    for v in &resealed {
        assert!(v.len() > 32 && SecretSeal::unseal(&master, v).unwrap().len() == 32);
    }
}

/// Every `Set-Cookie` of a response, checked `__Host-`: Secure, Path=/, no Domain.
fn host_only(r: &crate::support::identity::Resp, name: &str) -> String {
    let mut found = None;
    for v in r.headers.get_all("set-cookie") {
        let v = v.to_str().unwrap();
        assert!(v.starts_with("__Host-"), "{v}");
        assert!(
            v.contains("; Secure") && v.contains("Path=/;") && !v.contains("Domain"),
            "{v}"
        );
        if v.starts_with(&format!("__Host-{name}=")) {
            found = Some(v.to_string());
        }
    }
    found.unwrap_or_else(|| panic!("no cookie {name}: {:?}", r.headers))
}

/// Item 7: on an https public address every cookie the pages set is `__Host-`; every
/// CSRF token is 256 bits; logging in to the citizen space always starts a fresh
/// session, so a session planted in the browser (someone else's, logged in) does not
/// survive the person's login.
async fn cookies_and_csrf(backend: Backend) {
    use crate::support::identity::{Browser, csrf, identity_app_with};
    use socle_catalogue::people::Role;
    let app = identity_app_with(backend, |c| {
        c.server.public_url = Some("https://socle.example.gouv.fr".into());
    })
    .await;

    // Identity pages: the session, the identity provider chosen.
    let client = crate::support::identity::register_default(&app).await;
    let mut b = Browser::new(&app);
    let (url, _) = crate::support::identity::authorize_url(&client, &[]);
    let r = b.get(&url).await;
    host_only(&r, "socle_session");
    let choice = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(choice.status, 200, "{}", choice.body);
    assert_eq!(csrf(&choice.body).len(), 43, "256 bits");
    // (The identity provider chosen is remembered in `__Host-socle_fi`: the demo
    // provider is not reachable at the https address, so `session`'s unit test covers
    // that cookie.)

    // The citizen space.
    let mut person = Browser::new(&app);
    let r = person.get("/mon-espace/connexion").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let planted = host_only(&r, "socle_espace");
    let planted = planted
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    // A session already in the browser (planted, or the person's own) never survives
    // a login: a new cookie, and the old session is gone.
    let mut victim = Browser::new(&app);
    victim
        .cookies
        .insert("__Host-socle_espace".into(), planted.clone());
    let r = victim.get("/mon-espace/connexion").await;
    assert_eq!(r.status, 303);
    let fresh = host_only(&r, "socle_espace");
    assert!(!fresh.contains(&planted), "{fresh}");
    let r = person.get("/mon-espace/retour?code=x&state=y").await;
    assert!(
        r.body.contains("a expiré ou n’a pas été commencée ici"),
        "the planted session ended: {}",
        r.body
    );

    // The Espace agent: the sign-in form's token and the session.
    crate::support::back_office::publish(&app).await;
    crate::support::back_office::user(
        &app,
        "dev@demoville.fr",
        crate::support::back_office::REQUESTER,
        Role::Developer,
    )
    .await;
    let mut agent = Browser::new(&app);
    let page = agent.get("/espace-agent/connexion").await;
    let token = host_only(&page, "socle_agent_csrf");
    assert!(token.contains("SameSite=Strict"), "{token}");
    let form_token = csrf(&page.body);
    assert_eq!(form_token.len(), 43, "256 bits");
    let r = agent
        .post(
            "/espace-agent/connexion",
            &[
                ("csrf", &form_token),
                ("email", "dev@demoville.fr"),
                ("password", crate::support::back_office::PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    host_only(&r, "socle_agent");
    assert_eq!(agent.get("/espace-agent").await.status, 200);
    // Under the bare name, the same session is nobody's.
    let value = agent.cookies.remove("__Host-socle_agent").unwrap();
    agent.cookies.insert("socle_agent".into(), value);
    assert_eq!(agent.get("/espace-agent").await.status, 303);
}

/// The choice page of a login begun at `url`, the provider `provider` chosen: where
/// Socle sends the browser (the provider's authorization request).
async fn choose(b: &mut crate::support::identity::Browser, url: &str, provider: &str) -> String {
    use crate::support::identity::{csrf, form_action};
    let r = b.get(url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let choice = b.get(r.location.as_deref().unwrap()).await;
    assert_eq!(choice.status, 200, "{}", choice.body);
    let r = b
        .post(
            &form_action(&choice.body),
            &[("csrf", &csrf(&choice.body)), ("provider", provider)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    r.location.unwrap()
}

/// Item 2: a configured identity provider turned malicious runs the mix-up attack
/// (RFC 9207 §1, RFC 9700 §4.4) against an honest provider that does not send `iss`:
/// the victim, who chose the attacker's provider, is sent on to the honest one with
/// the attacker's nonce and PKCE challenge; the honest code comes back to Socle. It
/// must reach no token endpoint (the attacker's provider would otherwise learn it and
/// redeem it in the attacker's own login), and nobody is logged in.
async fn identity_provider_mix_up(backend: Backend) {
    use crate::support::identity::{
        Browser, MockFi, Mode, authorize_url, identity_app_with, query, register_default,
    };
    let honest = MockFi::start().await;
    let evil = MockFi::start().await;
    honest.set(Mode::NoIss);
    honest
        .announces_iss
        .store(false, std::sync::atomic::Ordering::Relaxed);
    evil.announces_iss
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let (h, e) = (
        honest.provider("honnete", vec![1, 2]),
        evil.provider("malveillant", vec![1, 2]),
    );
    let app = identity_app_with(backend, move |c| {
        c.identity.providers.push(h);
        c.identity.providers.push(e);
    })
    .await;
    let client = register_default(&app).await;

    // The attacker begins its own login with the honest provider and keeps the
    // request Socle made there.
    let mut attacker = Browser::new(&app);
    let (url, _) = authorize_url(&client, &[]);
    let to_honest = choose(&mut attacker, &url, "honnete").await;
    let a = query(&to_honest);
    assert!(
        a["redirect_uri"].ends_with("/api/v2/oidc-callback/honnete"),
        "{}",
        a["redirect_uri"]
    );

    // The victim picks the attacker's provider, which forwards them to the honest one.
    let mut victim = Browser::new(&app);
    let (url, victim_login) = authorize_url(&client, &[]);
    let to_evil = choose(&mut victim, &url, "malveillant").await;
    let v = query(&to_evil);
    let mut forwarded = url::Url::parse(&format!("{}/authorize", honest.issuer)).unwrap();
    forwarded
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &a["client_id"])
        .append_pair("redirect_uri", &a["redirect_uri"])
        .append_pair("scope", &a["scope"])
        .append_pair("state", &v["state"])
        .append_pair("nonce", &a["nonce"])
        .append_pair("code_challenge", &a["code_challenge"])
        .append_pair("code_challenge_method", "S256");
    let r = victim.get(forwarded.as_str()).await;
    assert_eq!(r.status, 303);
    let back = r.location.unwrap();
    assert!(
        !back.contains("iss="),
        "the honest provider sends no iss: {back}"
    );
    let r = victim.get(&back).await;
    // The honest code went to no token endpoint.
    assert_eq!(
        *evil.codes_received.lock().unwrap(),
        Vec::<String>::new(),
        "the honest code reached the attacker's provider"
    );
    assert!(honest.codes_received.lock().unwrap().is_empty());
    assert_ne!(r.status, 303, "{}", r.body);
    assert!(
        r.body
            .contains("ne vient pas du fournisseur d’identité que vous avez choisi"),
        "{}",
        r.body
    );
    // Nobody is logged in: whatever the attacker's provider could have learnt, the
    // attacker's own login gets no code from it.
    let stolen_codes = evil.codes_received.lock().unwrap().clone();
    for stolen in stolen_codes {
        let cb = format!("{}?code={stolen}&state={}", a["redirect_uri"], a["state"]);
        let r = attacker.get(&cb).await;
        assert!(
            r.location.as_deref().is_none_or(|l| !l.contains("code=")),
            "the attacker logged in as the victim"
        );
    }
    // The victim's service got no code either; the way back says access_denied.
    assert!(
        r.body.contains(&format!("state={}", victim_login.state))
            || r.body.contains("access_denied"),
        "{}",
        r.body
    );

    // The old shared address names no provider: refused as well.
    let r = victim
        .get(&format!(
            "/api/v2/oidc-callback?code=x&state={}",
            v["state"]
        ))
        .await;
    assert_ne!(r.status, 303);
    assert!(evil.codes_received.lock().unwrap().is_empty());

    // The honest path still works end to end at its own address.
    let r = attacker.get(&to_honest).await;
    assert_eq!(r.status, 303);
    let r = attacker.get(r.location.as_deref().unwrap()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(honest.codes_received.lock().unwrap().len(), 1);
}

/// Item 3: with `gateway.public_url`, the gateway answers on its own host only, and
/// that host serves nothing else; the catalogue names the gateway's address.
async fn gateway_on_a_host_of_its_own(backend: Backend) {
    let env = Env::new_with(backend, false, |c| {
        c.gateway.public_url = Some("https://passerelle.test".into());
    })
    .await;
    let openapi = crate::support::qf_openapi("3.1.0");
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "libre", "organisation": PRODUCER, "title": "API libre",
            "description": "Ouverte", "openapi": openapi, "upstream_url": env.up.url,
            "allow_private_upstream": true, "rate_limit": 1000,
            "access_mode": "open", "contact": "api@caf.example.fr",
            "scopes": [{"name": "qf", "description": "QF", "fields": ["/quotientFamilial"]}]
        }),
    )
    .await;
    let path = format!("/gateway/{PRODUCER}/libre/v1/quotient-familial");
    let on = |host: &'static str, p: &str| {
        env.app
            .client
            .get(env.app.url(p))
            .header("host", host)
            .send()
    };
    let before = env.up.count();
    // On the platform's address, the gateway is not served: the error names it.
    let r = env.call(&path, None).await;
    let e = refused(r, 404, "not_found").await;
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("https://passerelle.test/gateway/"),
        "{e}"
    );
    assert_eq!(env.up.count(), before, "the provider was reached");
    // On its own host, it is.
    let r = on("passerelle.test", &path).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"quotientFamilial": 640})
    );
    let r = on("PASSERELLE.test:443", &path).await.unwrap();
    assert_eq!(r.status(), 200);
    // That host serves nothing else (but health and readiness).
    for p in [
        "/",
        "/mon-espace/",
        "/espace-agent/connexion",
        "/api/v2/authorize",
    ] {
        let r = on("passerelle.test", p).await.unwrap();
        refused(r, 404, "not_found").await;
    }
    assert_eq!(
        on("passerelle.test", "/readyz").await.unwrap().status(),
        200
    );
    // The catalogue names the gateway's address.
    let api: Value = env
        .app
        .get("/api/v1/apis/libre")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        api["gateway_path"],
        format!("https://passerelle.test/gateway/{PRODUCER}/libre/v1/")
    );
}

/// What was already sound, held here too: text from a publisher is escaped in pages
/// (askama), and a search is a parameter of its statement, never SQL.
async fn markup_and_sql_in_input_are_inert(backend: Backend) {
    let env = Env::new(backend, false).await;
    let openapi = json!({
        "openapi": "3.1.0", "info": {"title": "T", "version": "1.0.0"},
        "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}}
    })
    .to_string();
    admin(
        &env.app,
        "/api/admin/apis",
        json!({
            "slug": "balises", "organisation": PRODUCER,
            "title": "<script>alert(1)</script> API",
            "description": "\"><img src=x onerror=alert(2)>", "openapi": openapi,
            "upstream_url": env.up.url, "allow_private_upstream": true, "rate_limit": 10,
            "access_mode": "open", "contact": "api@caf.example.fr",
            "scopes": [{"name": "s", "description": "<b>gras</b>", "fields": ["/x"]}]
        }),
    )
    .await;
    for page in ["/catalogue/balises", "/catalogue?q=script"] {
        let html = env.app.get(page).await.text().await.unwrap();
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{page}: {html}"
        );
        assert!(!html.contains("<script>alert"), "{page}");
        assert!(!html.contains("<img src=x"), "{page}");
        assert!(!html.contains("<b>gras</b>"), "{page}");
    }
    for q in [
        "' OR 1=1 --",
        "%' OR '1'='1",
        "\"; DROP TABLE catalogue_apis; --",
    ] {
        let r = env
            .app
            .client
            .get(env.app.url("/api/v1/apis"))
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let found: Value = r.json().await.unwrap();
        let text = found.to_string();
        assert!(!text.contains("balises"), "{q} matched everything: {text}");
    }
    let r = env.app.get("/api/v1/apis/balises").await;
    assert_eq!(r.status(), 200, "the table is still there");
}

on_both_stores!(
    markup_and_sql_in_input_are_inert,
    gateway_on_a_host_of_its_own,
    identity_provider_mix_up,
    cookies_and_csrf,
    gateway_matches_operations_as_openapi_says,
    provider_content_is_never_active,
    journal_secrets_are_sealed,
);
