//! The gateway's fixtures: a mock data provider (`Upstream`), the environment of an
//! exchange (`Env`: a platform, a provider, a habilitation and its credentials), and
//! the journal entries an exchange leaves.

use crate::support::back_office::{Call, PRODUCER, REQUESTER, admin, sign_in, user};
use crate::support::identity::{ADMIN_TOKEN, LOGOUT, REDIRECT, TestClient};
use crate::support::{Backend, TestApp};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A request as the provider received it: its request line and headers.
pub(crate) type Seen = (String, Vec<(String, String)>);

/// A provider's API: a hand-written HTTP/1.1 server, so that it can misbehave.
pub(crate) struct Upstream {
    pub(crate) url: String,
    /// (request line, headers) of each request received.
    seen: Mutex<Vec<Seen>>,
}

impl Upstream {
    pub(crate) async fn start() -> Arc<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Arc::new(Upstream {
            url: format!("http://{}/api", listener.local_addr().unwrap()),
            seen: Mutex::new(Vec::new()),
        });
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let Some(buf) = crate::support::read_head(&mut sock).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let mut lines = head.split("\r\n");
                    let line = lines.next().unwrap_or_default().to_string();
                    let headers: Vec<(String, String)> = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    me.seen.lock().unwrap().push((line.clone(), headers));
                    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
                    let route = path.split('?').next().unwrap_or_default();
                    let (status, ctype, body): (u16, &str, String) = match route {
                        "/api/quotient-familial" | "/api/scoped" => (
                            200,
                            "application/json",
                            json!({"quotientFamilial": 640, "allocataires": [{"nom": "Dupont"}],
                                   "enfants": [{"prenom": "Léa"}], "adresse": "1 rue de la Paix",
                                   "interne": {"score": 7}})
                            .to_string(),
                        ),
                        "/api/sujet" => (
                            200,
                            "application/json",
                            json!({"quotientFamilial": 640}).to_string(),
                        ),
                        "/api/slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (200, "application/json", "{}".into())
                        }
                        "/api/reset" => return, // drops the connection, no answer
                        "/api/garbage" => {
                            (200, "application/json", "{\"quotientFamilial\": 6".into())
                        }
                        "/api/text" => (200, "text/plain", "quotient familial : 640".into()),
                        "/api/page" => (
                            200,
                            "text/html",
                            "<!doctype html><script>fetch('/mon-espace/export')</script>".into(),
                        ),
                        "/api/personnes/recherche" => (
                            200,
                            "application/json",
                            json!({"nom": "Dupont", "resultats": [{"nom": "Dupont"}, {"nom": "Durand"}]}).to_string(),
                        ),
                        r if r.starts_with("/api/personnes/") => (
                            200,
                            "application/json",
                            json!({"nom": "Dupont", "resultats": []}).to_string(),
                        ),
                        "/api/bad-request" => (
                            400,
                            "application/json",
                            "{\"error\":\"identifiant inconnu\"}".into(),
                        ),
                        "/api/fail" => (
                            500,
                            "text/plain",
                            "panic at src/db.rs:42: password=hunter2".into(),
                        ),
                        _ => (404, "application/json", "{\"error\":\"inconnu\"}".into()),
                    };
                    // A provider naming its person: `?sujet=` becomes its Socle-Subject.
                    let extra = path
                        .split_once('?')
                        .and_then(|(_, q)| {
                            url::form_urlencoded::parse(q.as_bytes())
                                .find(|(k, _)| k == "sujet")
                                .map(|(_, v)| format!("socle-subject: {v}\r\n"))
                        })
                        .unwrap_or_default();
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\n{extra}content-type: {ctype}\r\ncontent-length: {}\r\nserver: internal-42\r\ncache-control: public, max-age=86400\r\nset-cookie: s=1\r\nx-powered-by: secret-stack\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        up
    }

    pub(crate) fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    pub(crate) fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

pub(crate) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) const OPS: [&str; 10] = [
    "/quotient-familial",
    "/sujet",
    "/slow",
    "/reset",
    "/garbage",
    "/text",
    "/fail",
    "/missing",
    "/scoped",
    "/bad-request",
];

/// Publishes the organisations and two APIs pointing at the upstream.
pub(crate) async fn publish(app: &TestApp, up: &Upstream) {
    for (siret, name, acronym, kind) in [
        (PRODUCER, "Caisse démo", "CAF démo", "operator"),
        (
            REQUESTER,
            "Mairie de Démoville",
            "Démoville",
            "local_authority",
        ),
    ] {
        admin(
            app,
            "/api/admin/organisations",
            json!({"siret": siret, "name": name, "acronym": acronym, "kind": kind}),
        )
        .await;
    }
    let mut paths = serde_json::Map::new();
    for p in OPS {
        let mut op = json!({"responses": {"200": {"description": "ok"}}});
        if p == "/scoped" {
            op["security"] = json!([{"socle": ["composition"]}]);
        }
        paths.insert(p.into(), json!({"get": op}));
    }
    let openapi =
        json!({"openapi": "3.0.3", "info": {"title": "QF", "version": "1.2.0"}, "paths": paths})
            .to_string();
    for (slug, rate, mode) in [
        ("quotient-familial", 1000, "habilitation"),
        ("limitee", 2, "habilitation"),
        ("differee", 100, "habilitation"),
        ("ouverte", 1, "open"),
    ] {
        admin(app, "/api/admin/apis", json!({
            "slug": slug, "organisation": PRODUCER, "title": format!("API {slug}"),
            "description": "Le quotient familial", "openapi": openapi, "upstream_url": up.url,
            "allow_private_upstream": true, "rate_limit": rate,
            "access_mode": mode, "contact": "api@caf.example.fr",
            "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/quotientFamilial"]},
                       {"name": "composition", "description": "Foyer", "fields": ["/allocataires", "/enfants"]}]
        }))
        .await;
    }
}

pub(crate) struct Env {
    pub app: TestApp,
    pub up: Arc<Upstream>,
    pub(crate) dev: String,
    pub(crate) inst: String,
}

impl Env {
    pub async fn new(backend: Backend, demo: bool) -> Env {
        Self::new_with(backend, demo, |_| {}).await
    }

    pub async fn new_with(
        backend: Backend,
        demo: bool,
        tweak: impl FnOnce(&mut socle::Config),
    ) -> Env {
        use socle_catalogue::people::Role;
        let app = TestApp::spawn_with(backend, |c| {
            c.admin.token = Some(ADMIN_TOKEN.into());
            c.gateway.timeout = Duration::from_millis(700);
            c.gateway.stale_after = Duration::from_secs(2);
            c.demo = demo;
            tweak(c);
        })
        .await;
        let up = Upstream::start().await;
        publish(&app, &up).await;
        user(&app, "dev@demoville.fr", REQUESTER, Role::Developer).await;
        user(&app, "instructeur@caf.fr", PRODUCER, Role::Instructor).await;
        let dev = sign_in(&app, "dev@demoville.fr").await;
        let inst = sign_in(&app, "instructeur@caf.fr").await;
        Env { app, up, dev, inst }
    }

    pub(crate) fn dev(&self) -> Call<'_> {
        Call {
            app: &self.app,
            token: self.dev.clone(),
        }
    }

    pub(crate) fn inst(&self) -> Call<'_> {
        Call {
            app: &self.app,
            token: self.inst.clone(),
        }
    }

    /// A validated habilitation with its credentials: (id, client_id, secret).
    pub async fn habilitation(&self, api: &str, form: Value) -> (String, String, String) {
        let (s, h) = self
            .dev()
            .post("/api/v1/habilitations", json!({"api": api, "form": form}))
            .await;
        assert_eq!(s, 201, "{h}");
        let id = h["id"].as_str().unwrap().to_string();
        assert_eq!(self.dev().act(&id, "submit", None).await.0, 200);
        assert_eq!(self.inst().act(&id, "validate", None).await.0, 200);
        let (s, c) = self
            .dev()
            .get(&format!("/api/v1/habilitations/{id}/credentials"))
            .await;
        assert_eq!(s, 200, "{c}");
        (
            id,
            c["client_id"].as_str().unwrap().into(),
            c["client_secret"].as_str().unwrap().into(),
        )
    }

    /// A service registered as an OpenID Connect client of `organisation`.
    pub async fn service(&self, name: &str, organisation: &str) -> TestClient {
        crate::support::identity::register(
            &self.app,
            json!({"name": name, "organisation": organisation,
                   "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [LOGOUT],
                   "scopes": ["openid", "identite_pivot", "email"]}),
        )
        .await
    }

    /// The access token `client` obtains when `person` logs in (demo provider).
    pub async fn person_token(
        &self,
        client: &TestClient,
        person: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let login = crate::support::identity::demo_login(&self.app, client, person, extra).await;
        let t: Value = crate::support::identity::token(&self.app, client, &login)
            .await
            .json()
            .await
            .unwrap();
        t["access_token"].as_str().unwrap().to_string()
    }

    pub async fn token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> (u16, Value) {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self
            .app
            .client
            .post(self.app.url("/api/v2/token"))
            .basic_auth(client_id, Some(secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn call(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.app.client.get(self.app.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap()
    }
}

pub(crate) const PURPOSE: &str =
    "context=Cantine%202027&recipient=99003003300015&object=dossier-42";

pub(crate) fn qf(path: &str) -> String {
    format!("/gateway/{PRODUCER}/quotient-familial/v1{path}?{PURPOSE}")
}

pub(crate) async fn refused(r: reqwest::Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (got, body["code"].as_str().unwrap_or_default()),
        (status, code),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The public journal's first thousand entries, decoded, once they are sequenced.
pub(crate) async fn journal_entries(app: &TestApp) -> Vec<Value> {
    let page: Value = app
        .get("/journal/entries?start=0&count=1000")
        .await
        .json()
        .await
        .unwrap();
    page["entries"].as_array().cloned().unwrap_or_default()
}

/// The first journal entry matching, waiting for it to be in a checkpoint.
pub(crate) async fn find_entry(app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        if let Some(e) = journal_entries(app).await.into_iter().find(|e| pred(e)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no journal entry: {what}");
}

/// What the public journal holds of an exchange's hash: HMAC-SHA256 of the hash's hex
/// under the exchange's key (`X-Socle-Journal-Key`), computed here independently.
pub(crate) fn keyed(key_hex: &str, hash_hex: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&hex::decode(key_hex).unwrap())
            .unwrap();
    mac.update(hash_hex.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The journal entry of the exchange whose answer carried these headers.
pub(crate) async fn exchange_entry(app: &TestApp, h: &reqwest::header::HeaderMap) -> Value {
    let key = h["x-socle-journal-key"].to_str().unwrap();
    let want = keyed(key, h["x-socle-request-hash"].to_str().unwrap());
    find_entry(app, "exchange", |e| e["request_hash"] == want.as_str()).await
}
