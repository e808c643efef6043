//! The back office's fixtures: organisations and accounts, signing in, a habilitation
//! request's form and its steps, a published API, and a webhook receiver.

use crate::support::TestApp;
use serde_json::{Value, json};

pub(crate) const PLATFORM: &str = "13002526500013";
pub(crate) const PRODUCER: &str = "99002002600011";
pub(crate) const REQUESTER: &str = "99003003300015";
pub(crate) const OTHER: &str = "99001001900018";
pub(crate) const PASSWORD: &str = "un mot de passe assez long";

pub(crate) async fn admin(app: &TestApp, path: &str, body: Value) {
    let (status, answer) = crate::catalogue::post(app, path, body).await;
    assert_eq!(status, 201, "{path}: {answer}");
}

pub(crate) async fn user(
    app: &TestApp,
    email: &str,
    org: &str,
    role: socle_catalogue::people::Role,
) {
    socle_catalogue::back_office::create_user(
        &app.store,
        email,
        "Agent test",
        org,
        vec![role],
        PASSWORD,
        Some("operator:test"),
    )
    .await
    .unwrap();
}

pub(crate) async fn sign_in(app: &TestApp, email: &str) -> String {
    let r = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) struct Call<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Call<'_> {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn act(&self, id: &str, action: &str, comment: Option<&str>) -> (u16, Value) {
        self.post(
            &format!("/api/v1/habilitations/{id}/actions"),
            json!({"action": action, "comment": comment}),
        )
        .await
    }
}

pub(crate) fn complete_form() -> Value {
    json!({
        "title": "Tarification de la cantine",
        "purpose": "Calculer le tarif de la cantine scolaire selon le quotient familial, sans demander d’attestation.",
        "legal_basis": {"nature": "mission d’intérêt public", "text": "Code de l’éducation, article L. 551-1",
                        "url": "https://www.legifrance.gouv.fr/"},
        "scopes": ["quotient_familial"],
        "retention_months": 12,
        "recipients": ["Service enfance de la mairie"],
        "controller": {"name": "Maire de Démoville", "email": "maire@demoville.fr"},
        "dpo": {"name": "DPD", "email": "dpd@demoville.fr"},
        "technical_contact": {"name": "DSI", "email": "dsi@demoville.fr"},
        "accreditation": {"authority": "Maire", "start": "2026-01-01", "end": "2029-01-01"},
        "expected_volume": 500,
        "go_live": "2027-01-15"
    })
}

pub(crate) async fn loop_until<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("condition not met within 10 s");
}

/// `(signature header, event header, body)` of each request received.
pub(crate) type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A webhook receiver: records what it gets, answers 500 twice, then 204.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) received: Received,
}

pub(crate) async fn hook(
    axum::extract::State(r): axum::extract::State<Received>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut all = r.lock().unwrap();
    all.push((h("x-hub-signature-256"), h("x-socle-event"), body));
    if all.len() <= 2 {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::NO_CONTENT
    }
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let received: Received = Default::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, received }
    }
}

/// The organisations, and the family-benefits fund's API with two scopes.
pub(crate) async fn publish(app: &TestApp) {
    for (siret, name, kind) in [
        (PLATFORM, "DINUM", "ministry"),
        (PRODUCER, "CAF démo", "operator"),
        (REQUESTER, "Mairie de Démoville", "local_authority"),
        (OTHER, "Centre des finances publiques démo", "operator"),
    ] {
        admin(
            app,
            "/api/admin/organisations",
            json!({"siret": siret, "name": name, "kind": kind}),
        )
        .await;
    }
    let openapi = json!({"openapi": "3.0.3", "info": {"title": "QF", "version": "1.0.0"},
        "paths": {"/qf": {"get": {"responses": {"200": {"description": "ok"}}}}}})
    .to_string();
    admin(app, "/api/admin/apis", json!({
        "slug": "quotient-familial", "organisation": PRODUCER, "title": "API Quotient familial",
        "description": "Le quotient familial", "openapi": openapi, "upstream_url": "https://qf.example.fr",
        "access_mode": "habilitation", "contact": "api@caf.example.fr",
        "scopes": [{"name": "quotient_familial", "description": "QF", "fields": ["/qf"]},
                   {"name": "composition", "description": "Foyer", "fields": ["/enfants"]}]
    }))
    .await;
}
