//! The demonstration of `socle demo`: an identity provider under `/demo/fi/` (reached
//! by Socle's broker over HTTP like any external provider) and a service, the
//! "Démarche de démonstration", under `/demo/fs/`: a relying party that logs in
//! through Socle over HTTP and shows the identity it received.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use josekit::jwk::JwkSet;
use serde_json::Value;
use socle_identity::IdentityError;
use socle_identity::pivot::claim_label;
use socle_web::AppState;
use socle_web::error::{ApiError, PageError};
use socle_web::pages::{Layout, render};
use socle_web::routes::oidc::query_pairs;

use crate::Demo;
use crate::catalogue::{BENEFITS_FUND, TAX_OFFICE, TOWN_HALL};
use crate::fi::DemoRequest;

/// The demonstration service provider (a confidential client of Socle).
pub struct DemoFs {
    pub client_id: String,
    pub client_secret: String,
    pub public_url: String,
    pub(crate) http: reqwest::Client,
    /// state → (nonce, PKCE verifier)
    pending: Mutex<HashMap<String, (String, String)>>,
}

impl DemoFs {
    pub fn new(public_url: &str, client_id: String, client_secret: String) -> DemoFs {
        DemoFs {
            client_id,
            client_secret,
            public_url: public_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Asks the gateway, on the person's behalf (their access token), for the data the
    /// town hall's habilitations cover; says why when a call is refused.
    pub async fn fetch_data(&self, access_token: &str) -> Vec<(String, String)> {
        let calls = [
            (
                "Quotient familial (CAF, habilitation « Tarification de la cantine »)",
                format!(
                    "{}/gateway/{}/quotient-familial/v1/quotient-familial",
                    self.public_url, BENEFITS_FUND
                ),
                "/quotientFamilial",
                "Tarification cantine 2027",
            ),
            (
                "Revenu fiscal de référence (impôts, avec votre accord)",
                format!(
                    "{}/gateway/{}/impot-particulier/v1/foyers-fiscaux",
                    self.public_url, TAX_OFFICE
                ),
                "/revenuFiscalReference",
                "Tarifs du centre de loisirs 2027",
            ),
        ];
        let mut out = Vec::new();
        for (label, url, pointer, context) in calls {
            let answer = self
                .http
                .get(&url)
                .bearer_auth(access_token)
                .query(&[
                    ("context", context),
                    ("recipient", TOWN_HALL),
                    ("object", "demarche-demo"),
                ])
                .send()
                .await;
            let shown = match answer {
                Ok(r) => {
                    let ok = r.status().is_success();
                    match r.json::<Value>().await {
                        Ok(v) if ok => match v.pointer(pointer) {
                            Some(Value::Number(n)) => format!("{n} €"),
                            Some(other) => other.to_string(),
                            None => "non transmis".into(),
                        },
                        Ok(v) => match v.get("code").and_then(Value::as_str) {
                            Some("consent_required") => {
                                "non transmis : votre accord est nécessaire (Mes autorisations)"
                                    .into()
                            }
                            Some("not_found_at_provider") => "aucun dossier à votre nom".into(),
                            Some(code) => format!("non transmis (code : {code})"),
                            None => "non transmis".into(),
                        },
                        Err(_) => "réponse illisible".into(),
                    }
                }
                Err(_) => "la plateforme n’a pas répondu".into(),
            };
            out.push((label.to_string(), shown));
        }
        out
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/demo/fs/callback", self.public_url)
    }

    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/demo/fs/logged-out", self.public_url)
    }
}

/// The demonstration, for its routes (an `Extension` of the demonstration's router).
pub type OnDemo = Extension<Arc<Demo>>;

/// A claim's value as a person reads it: the sex in words, a date as 25/12/1980.
fn in_french(claim: &str, value: &str) -> String {
    match (claim, value) {
        ("gender", "female") => "féminin".into(),
        ("gender", "male") => "masculin".into(),
        ("birthdate", d) => match d.split('-').collect::<Vec<_>>().as_slice() {
            [y, m, day] if y.len() == 4 => format!("{day}/{m}/{y}"),
            _ => d.to_string(),
        },
        (_, v) => v.to_string(),
    }
}

fn map(uri: &Uri) -> BTreeMap<String, String> {
    query_pairs(uri).into_iter().collect()
}

/// The demonstration identity provider refuses: a page says why.
fn refused(e: IdentityError) -> PageError {
    PageError {
        status: StatusCode::BAD_REQUEST,
        title: "Demande refusée",
        message: e.to_string(),
    }
}

/// At its token and userinfo endpoints, a protocol error is JSON.
fn fi_error(e: IdentityError) -> Response {
    match e {
        IdentityError::Oidc { error, description } => {
            ApiError::oauth(error, description).into_response()
        }
        e => refused(e).into_response(),
    }
}

// ----- the identity provider ----------------------------------------------------------

pub async fn fi_discovery(Extension(d): OnDemo) -> Response {
    axum::Json(d.fi.discovery()).into_response()
}

pub async fn fi_jwks(Extension(d): OnDemo) -> Response {
    axum::Json(d.fi.jwks()).into_response()
}

#[derive(Template)]
#[template(path = "demo_fi.html")]
pub struct DemoFiPage {
    pub layout: Layout,
    pub level_acr: &'static str,
    pub hidden: Vec<(String, String)>,
    pub people: Vec<(&'static str, &'static str)>,
}

const FORWARDED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "acr_values",
    "scope",
];

pub async fn fi_authorize(Extension(d): OnDemo, uri: Uri) -> Result<Response, PageError> {
    let q = map(&uri);
    let req = d.fi.authorize(&q).map_err(refused)?;
    let hidden = q
        .into_iter()
        .filter(|(k, _)| FORWARDED.contains(&k.as_str()))
        .collect();
    Ok(render(&DemoFiPage {
        layout: Layout::current("Fournisseur d’identité de démonstration"),
        level_acr: req.acr.acr(),
        hidden,
        people: d
            .fi
            .people()
            .iter()
            .map(|p| (p.login, p.description))
            .collect(),
    }))
}

pub async fn fi_login(Extension(d): OnDemo, body: Bytes) -> Result<Response, PageError> {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let req: DemoRequest = d.fi.authorize(&form).map_err(refused)?;
    let url = if form.get("decision").map(String::as_str) == Some("refuse") {
        d.fi.refuse(&req)
    } else {
        let login = form.get("login").map(String::as_str).unwrap_or_default();
        d.fi.login(&req, login).map_err(refused)?
    };
    Ok(Redirect::to(&url).into_response())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (a, b) = text.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(a), dec(b)))
}

pub async fn fi_token(
    Extension(d): OnDemo,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let v = d.fi.token(&form, basic(&headers)).map_err(fi_error)?;
    Ok(axum::Json(v).into_response())
}

pub async fn fi_userinfo(Extension(d): OnDemo, headers: HeaderMap) -> Result<Response, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let v = d.fi.userinfo(token).map_err(fi_error)?;
    Ok(axum::Json(v).into_response())
}

pub async fn fi_end_session(Extension(d): OnDemo, uri: Uri) -> Result<Response, PageError> {
    let url = d.fi.end_session(&map(&uri)).map_err(refused)?;
    Ok(Redirect::to(&url).into_response())
}

// ----- the service --------------------------------------------------------------------

#[derive(Template)]
#[template(path = "demo_fs.html")]
pub struct DemoFsPage {
    pub layout: Layout,
    pub identity: Option<Vec<(String, String)>>,
    pub logout_url: Option<String>,
    pub message: Option<String>,
    /// Data obtained through the gateway: (what, value or why not).
    pub data: Vec<(String, String)>,
    /// Where the person can authorise the consent-based exchange, when it was refused.
    pub consent_url: Option<String>,
}

fn fs_page(
    identity: Option<Vec<(String, String)>>,
    logout_url: Option<String>,
    message: Option<String>,
) -> Response {
    fs_page_with(identity, logout_url, message, Vec::new(), None)
}

fn fs_page_with(
    identity: Option<Vec<(String, String)>>,
    logout_url: Option<String>,
    message: Option<String>,
    data: Vec<(String, String)>,
    consent_url: Option<String>,
) -> Response {
    // Each state says where the person is (RGAA 8.6).
    let title = match (&identity, &message) {
        (Some(_), _) => "Vous êtes connecté — Démarche de démonstration".to_string(),
        (None, Some(m)) => format!("{} — Démarche de démonstration", m.trim_end_matches('.')),
        (None, None) => "Démarche de démonstration".to_string(),
    };
    let mut r = render(&DemoFsPage {
        layout: Layout::current(&title),
        identity,
        logout_url,
        message,
        consent_url: data
            .iter()
            .any(|(_, v)| v.contains("votre accord est nécessaire"))
            .then(|| consent_url.clone())
            .flatten(),
        data,
    });
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn fs_home(_: OnDemo) -> Response {
    fs_page(None, None, None)
}

pub async fn fs_logged_out(_: OnDemo) -> Response {
    fs_page(
        None,
        None,
        Some("Vous êtes déconnecté du service et de la plateforme.".into()),
    )
}

pub async fn fs_login(Extension(d): OnDemo) -> Result<Response, PageError> {
    let fs = &d.fs;
    let state_value = socle_identity::random_token(32);
    let nonce = socle_identity::random_token(32);
    let verifier = socle_identity::random_token(32);
    let challenge = socle_identity::sha256_b64url(verifier.as_bytes());
    if let Ok(mut p) = fs.pending.lock() {
        if p.len() > 10_000 {
            p.clear();
        }
        p.insert(state_value.clone(), (nonce.clone(), verifier));
    }
    let mut u = url::Url::parse(&format!("{}/api/v2/authorize", fs.public_url))
        .map_err(|_| ApiError::internal())?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &fs.client_id)
        .append_pair("redirect_uri", &fs.redirect_uri())
        .append_pair("scope", "openid identite_pivot email preferred_username")
        .append_pair("state", &state_value)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("acr_values", "eidas1");
    Ok(Redirect::to(u.as_str()).into_response())
}

async fn fetch_jwks(fs: &DemoFs) -> Result<JwkSet, String> {
    platform_jwks(&fs.http, &fs.public_url).await
}

/// The platform's published keys, fetched over HTTP as any partner would.
pub(crate) async fn platform_jwks(
    http: &reqwest::Client,
    public_url: &str,
) -> Result<JwkSet, String> {
    let v: Value = http
        .get(format!("{public_url}/api/v2/jwks"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    match v {
        Value::Object(m) => JwkSet::from_map(m).map_err(|e| e.to_string()),
        _ => Err("JWKS is not an object".into()),
    }
}

pub(crate) fn verify(jwt: &str, jwks: &JwkSet) -> Result<serde_json::Map<String, Value>, String> {
    let header = josekit::jwt::decode_header(jwt).map_err(|e| e.to_string())?;
    let kid = header
        .claim("kid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = jwks
        .get(kid)
        .into_iter()
        .next()
        .ok_or("unknown signing key")?;
    let (payload, _) = match key.algorithm() {
        Some("RS256") => josekit::jwt::decode_with_verifier(
            jwt,
            &josekit::jws::RS256
                .verifier_from_jwk(key)
                .map_err(|e| e.to_string())?,
        ),
        _ => josekit::jwt::decode_with_verifier(
            jwt,
            &josekit::jws::ES256
                .verifier_from_jwk(key)
                .map_err(|e| e.to_string())?,
        ),
    }
    .map_err(|e| e.to_string())?;
    Ok(payload.claims_set().clone())
}

pub async fn fs_callback(
    State(state): State<AppState>,
    Extension(d): OnDemo,
    uri: Uri,
) -> Response {
    let fs = &d.fs;
    let q = map(&uri);
    let pending = q
        .get("state")
        .and_then(|s| fs.pending.lock().ok().and_then(|mut p| p.remove(s)));
    let Some((nonce, verifier)) = pending else {
        return fs_page(
            None,
            None,
            Some("Cette connexion est inconnue ou a déjà abouti : recommencez.".into()),
        );
    };
    if let Some(error) = q.get("error") {
        let why = match error.as_str() {
            "access_denied" => "La connexion a été annulée ou refusée.",
            _ => "La plateforme a refusé la connexion.",
        };
        return fs_page(None, None, Some(format!("{why} (code : {error})")));
    }
    type Rows = Vec<(String, String)>;
    let result: Result<(Rows, String, Rows), String> = async {
        let code = q.get("code").ok_or("no code")?;
        let token: Value = fs
            .http
            .post(format!("{}/api/v2/token", fs.public_url))
            .basic_auth(&fs.client_id, Some(&fs.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", fs.redirect_uri().as_str()),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id_token = token
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or("no id_token")?;
        let access = token
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or("no access_token")?;
        let jwks = fetch_jwks(fs).await?;
        let claims = verify(id_token, &jwks)?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce.as_str()) {
            return Err("nonce mismatch".into());
        }
        let ui = fs
            .http
            .get(format!("{}/api/v2/userinfo", fs.public_url))
            .bearer_auth(access)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let info = verify(ui.trim(), &jwks)?;
        let mut rows = Vec::new();
        for k in [
            "given_name",
            "family_name",
            "birthdate",
            "gender",
            "birthplace",
            "birthcountry",
            "email",
            "preferred_username",
        ] {
            if let Some(v) = info.get(k).and_then(Value::as_str) {
                rows.push((claim_label(k).to_string(), in_french(k, v)));
            }
        }
        rows.push((
            "Identifiant (sub, propre à ce service)".into(),
            info.get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ));
        rows.push((
            "Niveau eIDAS obtenu (acr)".into(),
            claims
                .get("acr")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ));
        let data = fs.fetch_data(access).await;
        Ok((rows, id_token.to_string(), data))
    }
    .await;
    match result {
        Ok((rows, id_token, data)) => {
            let logout = url::Url::parse_with_params(
                &format!("{}/api/v2/session/end", fs.public_url),
                &[
                    ("id_token_hint", id_token.as_str()),
                    ("state", socle_identity::random_token(32).as_str()),
                    (
                        "post_logout_redirect_uri",
                        fs.post_logout_redirect_uri().as_str(),
                    ),
                ],
            )
            .map(|u| u.to_string())
            .ok();
            // The town hall's consent-based habilitation, for the authorisation request.
            let consent_url = state
                .gateway
                .snapshot()
                .grants_of(TOWN_HALL)
                .into_iter()
                .find(|h| h.consent_based)
                .map(|h| format!("/mon-espace/autorisations/demande?habilitation={}", h.id));
            fs_page_with(Some(rows), logout, None, data, consent_url)
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo service: login failed");
            fs_page(
                None,
                None,
                Some(
                    "Le service n’a pas pu obtenir votre identité auprès de la plateforme.".into(),
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::in_french;

    #[test]
    fn claims_in_french() {
        assert_eq!(in_french("gender", "female"), "féminin");
        assert_eq!(in_french("gender", "male"), "masculin");
        assert_eq!(in_french("birthdate", "1980-12-25"), "25/12/1980");
        assert_eq!(in_french("birthdate", "1980"), "1980");
        assert_eq!(in_french("given_name", "Marie"), "Marie");
    }
}
