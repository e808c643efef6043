//! The OpenID Connect provider's HTTP surface, on FranceConnect v2's paths:
//! discovery, `/api/v2/authorize`, the choice and consent pages, the identity
//! provider callback, `/api/v2/token`, `/api/v2/userinfo`, `/api/v2/session/end`,
//! `/api/v2/jwks`.
//!
//! Protocol errors at the token and userinfo endpoints carry the standard
//! `error`/`error_description` (RFC 6749 §5.2, RFC 6750 §3) together with the
//! platform's `code`/`title`/`detail`/`request_id`.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use socle_identity::provider::{
    AuthorizeRefusal, CallbackOutcome, SessionHandle, UpstreamFailure, Userinfo,
};
use socle_identity::{Begun, IdentityError, OidcError, Provider};

use crate::AppState;
use crate::error::{ApiError, PageError};
use crate::middleware::{CSP, current_request_id};
use crate::pages::{Layout, render};
use crate::session;

/// The browser session's cookie for this platform's scheme (`crate::session`).
fn session_cookie(headers: &HeaderMap, p: &Provider) -> Option<String> {
    session::SESSION.read(headers, p.config().secure_cookies())
}

/// Query parameters in order (duplicates kept, to be refused).
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn form_pairs(headers: &HeaderMap, body: &Bytes) -> Result<Vec<(String, String)>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

pub(crate) fn unique(pairs: Vec<(String, String)>) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(format!("parameter {k} is repeated"));
        }
    }
    Ok(map)
}

fn provider(state: &AppState) -> Result<&Provider, ApiError> {
    state
        .identity
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("identity federation is not available"))
}

/// A protocol error as JSON: standard fields plus the platform's error shape.
pub fn oidc_json(error: OidcError, description: &str) -> Response {
    let status = match error {
        OidcError::InvalidClient | OidcError::InvalidToken => StatusCode::UNAUTHORIZED,
        OidcError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OidcError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({
        "error": error.code(),
        "error_description": description,
        "code": error.code(),
        "title": "OpenID Connect error",
        "detail": description,
        "request_id": current_request_id().unwrap_or_default(),
    });
    let mut r = (status, axum::Json(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if error == OidcError::InvalidToken {
        let v = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            description.replace('"', "'")
        );
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    } else if error == OidcError::InvalidClient {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"socle\""),
        );
    }
    r
}

/// Maps an identity error for a JSON endpoint.
fn api_error(e: IdentityError) -> Response {
    match e {
        IdentityError::Oidc { error, description } => oidc_json(error, &description),
        IdentityError::Store(s) => ApiError::from(s).into_response(),
        other => {
            tracing::error!(error = %other, "identity error");
            oidc_json(
                OidcError::ServerError,
                "an unexpected error occurred; quote the request id",
            )
        }
    }
}

/// Maps an identity error for a page.
fn page_error(e: IdentityError) -> Response {
    let (status, title, message) = match e {
        IdentityError::Csrf => (
            StatusCode::FORBIDDEN,
            "Formulaire expiré",
            "Ce formulaire a expiré ou ne vient pas de cette plateforme. Revenez au service et recommencez.".to_string(),
        ),
        IdentityError::Page(m) | IdentityError::Interaction(m) => {
            (StatusCode::BAD_REQUEST, "Connexion impossible", m)
        }
        IdentityError::Upstream { reason, .. } => {
            tracing::warn!(%reason, "identity provider unusable");
            (
                StatusCode::BAD_GATEWAY,
                "Fournisseur d’identité indisponible",
                "Le fournisseur d’identité choisi ne répond pas correctement. Réessayez ou choisissez-en un autre.".to_string(),
            )
        }
        IdentityError::Oidc { description, .. } => (
            StatusCode::BAD_REQUEST,
            "Connexion impossible",
            format!("La demande n’est pas valide ({description})."),
        ),
        IdentityError::Store(s) => {
            return crate::middleware::respond(ApiError::from(s), true);
        }
        // The journal cannot record the login or the consent: nothing was done (fail
        // closed), and it is the platform's state, not the person's mistake.
        IdentityError::Journal(e) => {
            tracing::error!(error = %e, "identity: the journal cannot record; refused");
            return crate::middleware::respond(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unavailable",
                    "Journal unavailable",
                    "the platform cannot record this step right now, so nothing was done; retry in a moment",
                ),
                true,
            );
        }
        other => {
            tracing::error!(error = %other, "identity error");
            return crate::middleware::respond(ApiError::internal(), true);
        }
    };
    PageError {
        status,
        title,
        message,
    }
    .into_response()
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A redirect (303 after a form, 302 otherwise: both keep the browser on GET).
fn redirect(url: &str) -> Response {
    no_store(Redirect::to(url).into_response())
}

fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let o = u.origin();
    o.is_tuple().then(|| o.ascii_serialization())
}

/// The default CSP with extra `form-action` and `img-src` sources (the identity
/// providers or the service the form leads to; their logos).
fn csp_with(mut r: Response, form_action: &[String], img: &[String]) -> Response {
    let mut csp = CSP.to_string();
    if !form_action.is_empty() {
        csp = csp.replace(
            "form-action 'self'",
            &format!("form-action 'self' {}", form_action.join(" ")),
        );
    }
    if !img.is_empty() {
        csp = csp.replace(
            "img-src 'self' data:",
            &format!("img-src 'self' data: {}", img.join(" ")),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn with_session(mut r: Response, p: &Provider, s: &SessionHandle) -> Response {
    if let Some(v) = session::SESSION.set(
        &s.cookie,
        Some(p.config().session_ttl),
        p.config().secure_cookies(),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

// ----- discovery, keys ----------------------------------------------------------------

pub async fn discovery(State(state): State<AppState>) -> Response {
    match provider(&state) {
        Ok(p) => axum::Json(p.discovery()).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    match provider(&state) {
        Ok(p) => {
            // On a first start, until the RSA key generated in the background is in.
            p.keys.settled().await;
            let mut r = axum::Json(p.keys.jwks()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            r
        }
        Err(e) => e.into_response(),
    }
}

// ----- authorization ------------------------------------------------------------------

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    authorize(state, headers, query_pairs(&uri)).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match form_pairs(&headers, &body) {
        Ok(pairs) => authorize(state, headers, pairs).await,
        Err(e) => crate::middleware::respond(e, true),
    }
}

async fn authorize(state: AppState, headers: HeaderMap, pairs: Vec<(String, String)>) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let request = match p.authorize(&pairs).await {
        Ok(r) => r,
        Err(AuthorizeRefusal::Page(message)) => {
            return PageError {
                status: StatusCode::BAD_REQUEST,
                title: "Connexion impossible",
                message,
            }
            .into_response();
        }
        Err(AuthorizeRefusal::Redirect(url)) => return redirect(&url),
    };
    // The browser session is stored with the interaction when new (an existing one
    // keeps its expiry).
    let given = session_cookie(&headers, p);
    let (session, begun) = match p.begin(given.as_deref(), request).await {
        Ok(b) => b,
        Err(e) => return page_error(e),
    };
    let to = match begun {
        Begun::Choice(id) => redirect(&format!("/api/v2/interaction/{id}")),
        // idp_hint: straight to the identity provider the service named (an
        // unreachable one gives the choice page).
        Begun::Provider(fi_url) => redirect(&fi_url),
        // Single sign-on: the person is authenticated in this session already.
        Begun::Consent(id) => redirect(&format!("/api/v2/interaction/{id}/consent")),
        Begun::Redirect(url) => redirect(&url),
    };
    match session {
        Some(session) => with_session(to, p, &session),
        None => to,
    }
}

pub struct ProviderChoice {
    pub id: String,
    pub label: String,
    pub logo: Option<String>,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "choice.html")]
pub struct ChoicePage {
    pub layout: Layout,
    pub id: String,
    pub client_name: String,
    pub level_label: &'static str,
    pub level_acr: &'static str,
    pub providers: Vec<ProviderChoice>,
    pub csrf: String,
    pub cancel_url: String,
}

pub async fn choice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let view = match p.choice(&id, session_cookie(&headers, p).as_deref()).await {
        Ok(v) => v,
        Err(e) => return page_error(e),
    };
    let last = session::FI_CHOICE.read(&headers, p.config().secure_cookies());
    let mut providers: Vec<ProviderChoice> = view
        .providers
        .iter()
        .map(|f| ProviderChoice {
            id: f.id.clone(),
            label: f.label.clone(),
            logo: f.logo.clone(),
            last: last.as_deref() == Some(f.id.as_str()),
        })
        .collect();
    // The last choice on this device comes first.
    providers.sort_by_key(|f| !f.last);
    let form_action: Vec<String> = view
        .providers
        .iter()
        .filter_map(|f| origin_of(&f.issuer))
        .collect();
    let img: Vec<String> = view
        .providers
        .iter()
        .filter_map(|f| f.logo.as_deref().and_then(origin_of))
        .collect();
    let page = ChoicePage {
        layout: Layout::current("Choisir un compte"),
        id,
        client_name: view.client_name,
        level_label: view.level.label(),
        level_acr: view.level.acr(),
        providers,
        csrf: view.csrf,
        cancel_url: view.cancel_url,
    };
    no_store(csp_with(render(&page), &form_action, &img))
}

fn parse_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Provider, BTreeMap<String, String>), Box<Response>> {
    let p = provider(state)
        .map_err(|e| Box::new(crate::middleware::respond(e, true)))?
        .clone();
    let pairs =
        form_pairs(headers, body).map_err(|e| Box::new(crate::middleware::respond(e, true)))?;
    let form = unique(pairs)
        .map_err(|m| Box::new(crate::middleware::respond(ApiError::bad_request(m), true)))?;
    Ok((p, form))
}

pub async fn choose(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (p, form) = match parse_form(&state, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(fi) = form.get("provider") else {
        return page_error(IdentityError::Interaction(
            "Choisissez un fournisseur d’identité.".into(),
        ));
    };
    let session_cookie = session_cookie(&headers, &p);
    match p
        .choose(
            &id,
            session_cookie.as_deref(),
            form.get("csrf").map(String::as_str),
            fi,
        )
        .await
    {
        Ok(url) => {
            let mut r = redirect(&url);
            if let Some(v) =
                session::FI_CHOICE.set(fi, Some(31_536_000), p.config().secure_cookies())
            {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(IdentityError::Upstream { provider, reason }) => {
            tracing::warn!(%provider, %reason, "identity provider unreachable");
            upstream_page(UpstreamFailure {
                kind: socle_identity::FailureKind::Provider,
                message: "Ce fournisseur d’identité ne répond pas pour le moment. Réessayez ou choisissez-en un autre.".into(),
                back_url: None,
                retry_url: Some(format!("/api/v2/interaction/{id}")),
                client_name: None,
            })
        }
        Err(e) => page_error(e),
    }
}

#[derive(Template)]
#[template(path = "login_error.html")]
pub struct LoginErrorPage {
    pub layout: Layout,
    /// The person cancelled or refused: said as information, not as an error.
    pub cancelled: bool,
    pub message: String,
    pub back_url: Option<String>,
    pub retry_url: Option<String>,
    pub client_name: Option<String>,
    pub request_id: String,
}

fn upstream_page(f: UpstreamFailure) -> Response {
    let cancelled = f.kind == socle_identity::FailureKind::Refused;
    let page = LoginErrorPage {
        layout: Layout::current(if cancelled {
            "Connexion annulée"
        } else {
            "La connexion n’a pas abouti"
        }),
        cancelled,
        message: f.message,
        back_url: f.back_url,
        retry_url: f.retry_url,
        client_name: f.client_name,
        request_id: current_request_id().unwrap_or_default(),
    };
    let mut r = no_store(render(&page));
    // 502 only when a provider misbehaved; a person's refusal or old tab is theirs.
    *r.status_mut() = match f.kind {
        socle_identity::FailureKind::Refused => StatusCode::OK,
        socle_identity::FailureKind::Unknown => StatusCode::BAD_REQUEST,
        socle_identity::FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        socle_identity::FailureKind::Provider => StatusCode::BAD_GATEWAY,
    };
    r
}

/// The address every provider shared before each had its own: an answer arriving
/// there names no provider, so it cannot be matched to the login it claims (a
/// provider still configured with it must register `/api/v2/oidc-callback/{id}`).
pub async fn callback_without_provider(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    callback(State(state), Path(String::new()), headers, uri).await
}

/// Each identity provider sends the person back to its own address here.
pub async fn callback(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let params = match unique(query_pairs(&uri)) {
        Ok(m) => m,
        Err(m) => return page_error(IdentityError::Page(format!("Réponse invalide : {m}."))),
    };
    match p
        .callback(
            session_cookie(&headers, p).as_deref(),
            &provider_id,
            &params,
        )
        .await
    {
        Ok((CallbackOutcome::Consent(id), session)) => with_session(
            redirect(&format!("/api/v2/interaction/{id}/consent")),
            p,
            &session,
        ),
        Ok((CallbackOutcome::Redirect(url), session)) => with_session(redirect(&url), p, &session),
        Err(f) => upstream_page(f),
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub layout: Layout,
    pub id: String,
    pub client_name: String,
    pub provider_label: String,
    pub claims: Vec<(&'static str, String)>,
    pub csrf: String,
}

pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let view = match p
        .consent_view(&id, session_cookie(&headers, p).as_deref())
        .await
    {
        Ok(v) => v,
        Err(e) => return page_error(e),
    };
    // The form leads back to the service: allow its origin as a form target.
    let targets: Vec<String> = origin_of(&view.redirect_uri).into_iter().collect();
    let page = ConsentPage {
        layout: Layout::current("Transmettre vos données"),
        id,
        client_name: view.client_name,
        provider_label: view.provider_label,
        claims: view.claims,
        csrf: view.csrf,
    };
    let mut r = no_store(render(&page));
    r = csp_with(r, &targets, &[]);
    r
}

pub async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (p, form) = match parse_form(&state, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let accept = match form.get("decision").map(String::as_str) {
        Some("accept") => true,
        Some("refuse") => false,
        _ => {
            return page_error(IdentityError::Interaction(
                "Choisissez de transmettre vos données ou de refuser.".into(),
            ));
        }
    };
    let session_cookie = session_cookie(&headers, &p);
    match p
        .consent(
            &id,
            session_cookie.as_deref(),
            form.get("csrf").map(String::as_str),
            accept,
        )
        .await
    {
        Ok(url) => redirect(&url),
        Err(e) => page_error(e),
    }
}

// ----- token, userinfo ----------------------------------------------------------------

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, &'static str> {
    use base64::Engine;
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(b64) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let bad = || "malformed Basic credentials";
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((dec(id), dec(secret))))
}

pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let pairs = match form_pairs(&headers, &body) {
        Ok(x) => x,
        Err(_) => {
            return oidc_json(
                OidcError::InvalidRequest,
                "send the parameters as application/x-www-form-urlencoded",
            );
        }
    };
    let form = match unique(pairs) {
        Ok(f) => f,
        Err(m) => return oidc_json(OidcError::InvalidRequest, &m),
    };
    let basic = match basic_credentials(&headers) {
        Ok(b) => b,
        Err(m) => return oidc_json(OidcError::InvalidClient, m),
    };
    if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
        let Some(g) = state.gateway.as_ref() else {
            return ApiError::unavailable("the gateway is not ready").into_response();
        };
        return match g.issue_token(&form, basic) {
            Ok(v) => {
                let mut r = no_store(axum::Json(v).into_response());
                r.headers_mut()
                    .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                r
            }
            Err(e) => crate::routes::gateway::oauth_response(e),
        };
    }
    match p.token(&form, basic).await {
        Ok(v) => {
            let mut r = no_store(axum::Json(v).into_response());
            r.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => api_error(e),
    }
}

pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let mut r = oidc_json(
            OidcError::InvalidToken,
            "an access token is required (Authorization: Bearer)",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    match p.userinfo(token).await {
        Ok(Userinfo::Json(v)) => no_store(axum::Json(v).into_response()),
        Ok(Userinfo::Jwt(jwt)) => no_store(
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwt"),
                )],
                jwt,
            )
                .into_response(),
        ),
        Err(e) => api_error(e),
    }
}

// ----- logout -------------------------------------------------------------------------

pub async fn end_session_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    end_session(state, headers, query_pairs(&uri)).await
}

pub async fn end_session_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match form_pairs(&headers, &body) {
        Ok(pairs) => end_session(state, headers, pairs).await,
        Err(e) => crate::middleware::respond(e, true),
    }
}

async fn end_session(
    state: AppState,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let params = match unique(pairs) {
        Ok(m) => m,
        Err(m) => return page_error(IdentityError::Page(format!("Demande invalide : {m}."))),
    };
    let session = match p.session(session_cookie(&headers, p).as_deref()).await {
        Ok(s) => s,
        Err(e) => return page_error(e),
    };
    match p.end_session(&params, &session).await {
        Ok((url, false)) => redirect(&url),
        Ok((url, true)) => {
            let mut r = redirect(&url);
            if let Some(v) = session::SESSION.clear(p.config().secure_cookies()) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => page_error(e),
    }
}

pub async fn logout_callback(State(state): State<AppState>, uri: Uri) -> Response {
    let p = match provider(&state) {
        Ok(p) => p,
        Err(e) => return crate::middleware::respond(e, true),
    };
    let params: BTreeMap<String, String> = query_pairs(&uri).into_iter().collect();
    let Some(s) = params.get("state") else {
        return page_error(IdentityError::Page("Vous êtes déconnecté.".into()));
    };
    match p.logout_callback(s).await {
        Ok(url) => redirect(&url),
        Err(e) => page_error(e),
    }
}
