//! The identity federation as a service and a person see it: a browser with its
//! cookies, registered clients, the authorization URL, logins through the demonstration
//! provider, the token and userinfo calls, and a mock identity provider that can
//! misbehave on purpose.

use crate::support::{Backend, TestApp};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Value, json};
use socle::config::IdentityProviderConfig;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdefghijklmnop";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const LOGOUT: &str = "http://127.0.0.1:9/logged-out";

// ----- a browser that keeps cookies and does not follow redirects ----------------------

pub struct Resp {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

#[derive(Clone)]
pub struct Browser {
    pub base: String,
    client: reqwest::Client,
    pub(crate) cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn url(&self, u: &str) -> String {
        if u.starts_with("http") {
            u.to_string()
        } else {
            format!("{}{u}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn absorb(&mut self, r: reqwest::Response) -> Resp {
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        Resp {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|l| l.to_str().unwrap().to_string()),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, u: &str) -> Resp {
        let r = self
            .client
            .get(self.url(u))
            .header("cookie", self.cookie_header())
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }

    pub async fn post(&mut self, u: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .client
            .post(self.url(u))
            .header("cookie", self.cookie_header())
            .header("accept", "text/html")
            .form(form)
            .send()
            .await
            .unwrap();
        self.absorb(r).await
    }
}

pub(crate) fn unescape(s: &str) -> String {
    // Named and numeric character references, as askama writes them.
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(j) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..j];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[j + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = text.find(start)? + start.len();
    let j = text[i..].find(end)? + i;
    Some(&text[i..j])
}

pub(crate) fn form_action(body: &str) -> String {
    unescape(between(body, "<form method=\"post\" action=\"", "\"").expect("a form"))
}

pub fn csrf(body: &str) -> String {
    between(body, "name=\"csrf\" value=\"", "\"")
        .expect("a CSRF field")
        .to_string()
}

pub(crate) fn hidden_fields(body: &str) -> Vec<(String, String)> {
    body.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let name = part.split('"').next().unwrap().to_string();
            let value = between(part, "value=\"", "\"").unwrap_or_default();
            (name, unescape(value))
        })
        .collect()
}

pub fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

// ----- clients ---------------------------------------------------------------------------

#[derive(Clone)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
}

pub async fn register(app: &TestApp, body: Value) -> TestClient {
    let r = app
        .client
        .post(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let v: Value = r.json().await.unwrap();
    TestClient {
        id: v["client_id"].as_str().unwrap().to_string(),
        secret: v["client_secret"].as_str().map(str::to_string),
    }
}

/// The registered clients, as the admin API lists them.
pub async fn clients(app: &TestApp) -> Vec<Value> {
    let r = app
        .client
        .get(app.url("/api/admin/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub async fn register_default(app: &TestApp) -> TestClient {
    register(
        app,
        json!({"name": "Service test", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [LOGOUT],
               "scopes": ["openid", "identite_pivot", "email"]}),
    )
    .await
}

/// A service held to FranceConnect's rules (`profile = "franceconnect"`).
pub async fn register_franceconnect(app: &TestApp) -> TestClient {
    register(
        app,
        json!({"name": "Service test", "organisation": "13002526500013",
               "profile": "franceconnect",
               "redirect_uris": [REDIRECT], "post_logout_redirect_uris": [LOGOUT],
               "scopes": ["openid", "identite_pivot", "email"]}),
    )
    .await
}

/// A service exempt from consent, with the pivot identity.
pub async fn register_exempt(app: &TestApp) -> TestClient {
    register(
        app,
        json!({"name": "Service exempté", "organisation": "13002526500013",
               "redirect_uris": [REDIRECT], "scopes": ["openid", "identite_pivot"],
               "consent_exempt": true}),
    )
    .await
}

pub fn long(tag: &str) -> String {
    format!("{tag}-{}", "x".repeat(40))
}

pub(crate) fn verifier_and_challenge() -> (String, String) {
    let verifier = format!("v{}", "0123456789".repeat(5));
    let challenge = socle_identity::sha256_b64url(verifier.as_bytes());
    (verifier, challenge)
}

pub struct Login {
    pub code: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

pub fn authorize_url(client: &TestClient, extra: &[(&str, &str)]) -> (String, Login) {
    let (verifier, challenge) = verifier_and_challenge();
    let state = long("state");
    let nonce = long("nonce");
    let mut params: BTreeMap<&str, String> = BTreeMap::new();
    params.insert("response_type", "code".into());
    params.insert("client_id", client.id.clone());
    params.insert("redirect_uri", REDIRECT.into());
    params.insert("scope", "openid identite_pivot email".into());
    params.insert("state", state.clone());
    params.insert("nonce", nonce.clone());
    params.insert("code_challenge", challenge);
    params.insert("code_challenge_method", "S256".into());
    params.insert("acr_values", "eidas1".into());
    for (k, v) in extra {
        if v.is_empty() {
            params.remove(k);
        } else {
            params.insert(k, v.to_string());
        }
    }
    let url = url::Url::parse_with_params("http://x/api/v2/authorize", params.iter()).unwrap();
    // What was sent, extras included.
    let sent = |k: &str, default: String| match extra.iter().find(|(e, _)| *e == k) {
        Some((_, v)) => v.to_string(),
        None => default,
    };
    (
        format!("/api/v2/authorize?{}", url.query().unwrap()),
        Login {
            code: String::new(),
            state: sent("state", state),
            nonce: sent("nonce", nonce),
            verifier,
        },
    )
}

/// Logs `person` in on the demonstration provider's page `fi`: its answer.
pub async fn demo_fi(b: &mut Browser, fi: &Resp, person: &str) -> Resp {
    let mut fields = hidden_fields(&fi.body);
    fields.push(("login".into(), person.into()));
    fields.push(("decision".into(), "login".into()));
    let f: Vec<(&str, &str)> = fields
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    b.post("/demo/fi/authorize", &f).await
}

/// Authorize, choose `provider`, pass its login, consent: the redirect to the service.
pub async fn login_via(b: &mut Browser, url: &str, provider: &str, person: &str) -> Resp {
    let choice_url = match url.strip_prefix('@') {
        Some(existing) => existing.to_string(),
        None => {
            let r = b.get(url).await;
            assert_eq!(r.status, 303, "authorize: {}", r.body);
            r.location.unwrap()
        }
    };
    let choice = b.get(&choice_url).await;
    assert_eq!(choice.status, 200, "{}", choice.body);
    let r = b
        .post(
            &form_action(&choice.body),
            &[("csrf", &csrf(&choice.body)), ("provider", provider)],
        )
        .await;
    assert_eq!(r.status, 303, "choose: {}", r.body);
    let mut fi = b.get(r.location.as_deref().unwrap()).await;
    if provider == "demo" {
        assert_eq!(fi.status, 200, "demo FI page: {}", fi.body);
        fi = demo_fi(b, &fi, person).await;
    }
    assert!(
        fi.status == 302 || fi.status == 303,
        "FI: {} {}",
        fi.status,
        fi.body
    );
    let cb = b.get(fi.location.as_deref().unwrap()).await;
    if cb.status != 303
        || !cb
            .location
            .as_deref()
            .unwrap_or_default()
            .contains("/consent")
    {
        return cb;
    }
    let consent = b.get(cb.location.as_deref().unwrap()).await;
    assert_eq!(consent.status, 200);
    b.post(
        &form_action(&consent.body),
        &[("csrf", &csrf(&consent.body)), ("decision", "accept")],
    )
    .await
}

pub async fn demo_login(
    app: &TestApp,
    client: &TestClient,
    person: &str,
    extra: &[(&str, &str)],
) -> Login {
    let mut b = Browser::new(app);
    let (url, mut login) = authorize_url(client, extra);
    let r = login_via(&mut b, &url, "demo", person).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.location.unwrap();
    assert!(back.starts_with(REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q.get("state"), Some(&login.state));
    assert!(q.get("iss").unwrap().ends_with("/api/v2"));
    login.code = q.get("code").expect("a code").clone();
    login
}

pub async fn token(app: &TestApp, client: &TestClient, login: &Login) -> reqwest::Response {
    app.client
        .post(app.url("/api/v2/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", login.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", login.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn userinfo(app: &TestApp, access_token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v2/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
}

pub async fn jwks(app: &TestApp) -> JwkSet {
    let v: Value = app.get("/api/v2/jwks").await.json().await.unwrap();
    JwkSet::from_map(v.as_object().unwrap().clone()).unwrap()
}

pub fn verify(jwt: &str, set: &JwkSet) -> serde_json::Map<String, Value> {
    let header = josekit::jwt::decode_header(jwt).unwrap();
    let kid = header.claim("kid").unwrap().as_str().unwrap();
    let key = set.get(kid)[0];
    let (p, _) = match header.claim("alg").unwrap().as_str().unwrap() {
        "ES256" => josekit::jwt::decode_with_verifier(jwt, &ES256.verifier_from_jwk(key).unwrap()),
        "RS256" => josekit::jwt::decode_with_verifier(
            jwt,
            &josekit::jws::RS256.verifier_from_jwk(key).unwrap(),
        ),
        a => panic!("unexpected alg {a}"),
    }
    .unwrap();
    p.claims_set().clone()
}

pub async fn identity_app(backend: Backend) -> TestApp {
    identity_app_with(backend, |_| {}).await
}

pub async fn identity_app_with(
    backend: Backend,
    tweak: impl FnOnce(&mut socle::Config),
) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.demo = true;
        c.admin.token = Some(ADMIN_TOKEN.into());
        tweak(c);
    })
    .await
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Good,
    Deny,
    Forged,
    Expired,
    WrongIssuer,
    WrongAudience,
    WrongNonce,
    InvalidIdentity,
    Slow,
    NotJson,
    /// RFC 9207: the authorization response names another issuer (a mix-up).
    MixUpIss,
    /// The provider announces `iss` in its responses but leaves it out.
    NoIss,
    /// A signed userinfo (application/jwt) for another audience.
    UserinfoWrongAudience,
    /// A userinfo answer without end (no Content-Length, over the size limit).
    Huge,
    /// An ID token whose auth_time is an hour old (a session of the provider's own).
    OldAuthTime,
    /// An ID token without auth_time.
    NoAuthTime,
    /// An ID token whose auth_time is a day ahead.
    FutureAuthTime,
}

pub struct MockFi {
    pub issuer: String,
    key: Jwk,
    forger: Jwk,
    mode: Mutex<Mode>,
    nonces: Mutex<BTreeMap<String, String>>,
    /// The query of the last authorization request.
    pub last_authorize: Mutex<BTreeMap<String, String>>,
    /// Whether its discovery announces RFC 9207's `iss` (a provider that does not).
    pub announces_iss: std::sync::atomic::AtomicBool,
    /// Every code its token endpoint was sent.
    pub codes_received: Mutex<Vec<String>>,
}

pub(crate) fn es256_key(kid: &str) -> Jwk {
    use josekit::jwk::KeyPair;
    let mut k = ES256.generate_key_pair().unwrap().to_jwk_key_pair();
    k.set_key_id(kid);
    k.set_algorithm("ES256");
    k
}

impl MockFi {
    pub async fn start() -> Arc<MockFi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fi = Arc::new(MockFi {
            issuer: format!("http://{addr}"),
            key: es256_key("good"),
            forger: es256_key("good"),
            mode: Mutex::new(Mode::Good),
            nonces: Mutex::new(BTreeMap::new()),
            last_authorize: Mutex::new(BTreeMap::new()),
            announces_iss: std::sync::atomic::AtomicBool::new(true),
            codes_received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(mock_discovery),
            )
            .route("/jwks", axum::routing::get(mock_jwks))
            .route("/authorize", axum::routing::get(mock_authorize))
            .route("/token", axum::routing::post(mock_token))
            .route("/userinfo", axum::routing::get(mock_userinfo))
            .with_state(fi.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fi
    }

    pub fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    pub fn provider(&self, id: &str, levels: Vec<u8>) -> IdentityProviderConfig {
        IdentityProviderConfig {
            id: id.into(),
            label: format!("FI {id}"),
            logo: None,
            issuer: self.issuer.clone(),
            discovery_url: None,
            client_id: "socle".into(),
            client_secret: "mock-secret".into(),
            eidas_levels: levels,
            scope: "openid identite_pivot".into(),
            timeout: Duration::from_millis(800),
        }
    }
}

pub(crate) async fn mock_discovery(State(fi): State<Arc<MockFi>>) -> impl IntoResponse {
    let i = &fi.issuer;
    axum::Json(
        json!({"issuer": i, "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"), "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "authorization_response_iss_parameter_supported":
            fi.announces_iss.load(std::sync::atomic::Ordering::Relaxed)}),
    )
}

pub(crate) async fn mock_jwks(State(fi): State<Arc<MockFi>>) -> impl IntoResponse {
    let mut public = fi.key.to_public_key().unwrap();
    public.set_key_id("good");
    axum::Json(json!({"keys": [Value::Object(public.as_ref().clone())]}))
}

pub(crate) async fn mock_authorize(
    State(fi): State<Arc<MockFi>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> impl IntoResponse {
    assert_eq!(q["code_challenge_method"], "S256", "Socle always uses PKCE");
    assert!(q["nonce"].len() >= 32 && q["state"].len() >= 32);
    *fi.last_authorize.lock().unwrap() = q.clone();
    let mut u = url::Url::parse(&q["redirect_uri"]).unwrap();
    if fi.mode() == Mode::Deny {
        u.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &q["state"]);
    } else {
        let code = format!("code-{}", q["state"]);
        fi.nonces
            .lock()
            .unwrap()
            .insert(code.clone(), q["nonce"].clone());
        u.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
    }
    match fi.mode() {
        Mode::NoIss => {}
        Mode::MixUpIss => {
            u.query_pairs_mut()
                .append_pair("iss", "https://evil.example");
        }
        _ => {
            u.query_pairs_mut().append_pair("iss", &fi.issuer);
        }
    }
    Redirect::to(u.as_str())
}

pub(crate) async fn mock_token(
    State(fi): State<Arc<MockFi>>,
    body: String,
) -> axum::response::Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert!(form.contains_key("code_verifier"));
    fi.codes_received.lock().unwrap().push(form["code"].clone());
    let nonce = fi
        .nonces
        .lock()
        .unwrap()
        .get(&form["code"])
        .cloned()
        .unwrap_or_default();
    let mode = fi.mode();
    if mode == Mode::Slow {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if mode == Mode::NotJson {
        return "<html>oops</html>".into_response();
    }
    let now = socle_identity::now();
    let mut p = JwtPayload::new();
    p.set_issuer(if mode == Mode::WrongIssuer {
        "https://evil.example"
    } else {
        fi.issuer.as_str()
    });
    p.set_subject("fi-subject-42");
    p.set_audience(vec![if mode == Mode::WrongAudience {
        "someone-else"
    } else {
        "socle"
    }]);
    p.set_claim("iat", Some(json!(now))).unwrap();
    p.set_claim(
        "exp",
        Some(json!(if mode == Mode::Expired {
            now - 600
        } else {
            now + 60
        })),
    )
    .unwrap();
    p.set_claim(
        "nonce",
        Some(json!(if mode == Mode::WrongNonce {
            "other"
        } else {
            nonce.as_str()
        })),
    )
    .unwrap();
    p.set_claim("acr", Some(json!("eidas2"))).unwrap();
    match mode {
        Mode::NoAuthTime => {}
        Mode::OldAuthTime => p.set_claim("auth_time", Some(json!(now - 3600))).unwrap(),
        Mode::FutureAuthTime => p.set_claim("auth_time", Some(json!(now + 86_400))).unwrap(),
        _ => p.set_claim("auth_time", Some(json!(now))).unwrap(),
    }
    let mut h = JwsHeader::new();
    h.set_key_id("good");
    let key = if mode == Mode::Forged {
        &fi.forger
    } else {
        &fi.key
    };
    let jwt =
        josekit::jwt::encode_with_signer(&p, &h, &ES256.signer_from_jwk(key).unwrap()).unwrap();
    axum::Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": jwt}))
        .into_response()
}

pub(crate) async fn mock_userinfo(State(fi): State<Arc<MockFi>>) -> axum::response::Response {
    let place = if fi.mode() == Mode::InvalidIdentity {
        "ABCDE"
    } else {
        "35238"
    };
    let claims = json!({"sub": "fi-subject-42", "given_name": "Yann", "family_name": "Le Goff",
        "birthdate": "1985-11-01", "gender": "male", "birthplace": place, "birthcountry": "99100"});
    match fi.mode() {
        Mode::UserinfoWrongAudience => {
            let mut p = JwtPayload::new();
            for (k, v) in claims.as_object().unwrap() {
                p.set_claim(k, Some(v.clone())).unwrap();
            }
            p.set_issuer(&fi.issuer);
            p.set_audience(vec!["someone-else"]);
            let mut h = JwsHeader::new();
            h.set_key_id("good");
            let jwt =
                josekit::jwt::encode_with_signer(&p, &h, &ES256.signer_from_jwk(&fi.key).unwrap())
                    .unwrap();
            ([("content-type", "application/jwt")], jwt).into_response()
        }
        Mode::Huge => {
            // Chunks without end: the broker must stop at its limit, not hold it all.
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            (
                [("content-type", "application/json")],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
        _ => axum::Json(claims).into_response(),
    }
}

/// The RP-initiated logout's address with these parameters (empty ones left out).
pub fn logout_path(params: &[(&str, &str)]) -> String {
    let u = url::Url::parse_with_params(
        "http://x/api/v2/session/end",
        params.iter().filter(|(_, v)| !v.is_empty()),
    )
    .unwrap();
    format!("/api/v2/session/end?{}", u.query().unwrap())
}
