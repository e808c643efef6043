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
    axum::Json(state.identity.discovery()).into_response()
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = &state.identity.keys;
    // On a first start, until the RSA key generated in the background is in.
    keys.settled().await;
    let mut r = axum::Json(keys.jwks()).into_response();
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

// ----- authorization ------------------------------------------------------------------

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    authorize(state, headers, query_pairs(&uri)).await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let pairs = form_pairs(&headers, &body)?;
    authorize(state, headers, pairs).await
}

async fn authorize(
    state: AppState,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, PageError> {
    let p = &state.identity;
    let request = match p.authorize(&pairs).await {
        Ok(r) => r,
        Err(AuthorizeRefusal::Page(message)) => {
            return Err(PageError {
                status: StatusCode::BAD_REQUEST,
                title: "Connexion impossible",
                message,
            });
        }
        Err(AuthorizeRefusal::Redirect(url)) => return Ok(redirect(&url)),
    };
    // The browser session is stored with the interaction when new (an existing one
    // keeps its expiry).
    let given = session_cookie(&headers, p);
    let (session, begun) = p.begin(given.as_deref(), request).await?;
    let to = match begun {
        Begun::Choice(id) => redirect(&format!("/api/v2/interaction/{id}")),
        // idp_hint: straight to the identity provider the service named (an
        // unreachable one gives the choice page).
        Begun::Provider(fi_url) => redirect(&fi_url),
        // Single sign-on: the person is authenticated in this session already.
        Begun::Consent(id) => redirect(&format!("/api/v2/interaction/{id}/consent")),
        Begun::Redirect(url) => redirect(&url),
    };
    Ok(match session {
        Some(session) => with_session(to, p, &session),
        None => to,
    })
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
) -> Result<Response, PageError> {
    let p = &state.identity;
    let view = p
        .choice(&id, session_cookie(&headers, p).as_deref())
        .await?;
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
    Ok(no_store(csp_with(render(&page), &form_action, &img)))
}

fn parse_form(headers: &HeaderMap, body: &Bytes) -> Result<BTreeMap<String, String>, ApiError> {
    unique(form_pairs(headers, body)?).map_err(ApiError::bad_request)
}

pub async fn choose(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let p = &state.identity;
    let form = parse_form(&headers, &body)?;
    let Some(fi) = form.get("provider") else {
        return Err(
            IdentityError::Interaction("Choisissez un fournisseur d’identité.".into()).into(),
        );
    };
    let session_cookie = session_cookie(&headers, p);
    let answer = match p
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
        Err(e) => return Err(e.into()),
    };
    Ok(answer)
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
) -> Result<Response, PageError> {
    callback(State(state), Path(String::new()), headers, uri).await
}

/// Each identity provider sends the person back to its own address here.
pub async fn callback(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let p = &state.identity;
    let params = unique(query_pairs(&uri))
        .map_err(|m| IdentityError::Page(format!("Réponse invalide : {m}.")))?;
    Ok(
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
            Ok((CallbackOutcome::Redirect(url), session)) => {
                with_session(redirect(&url), p, &session)
            }
            Err(f) => upstream_page(f),
        },
    )
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
) -> Result<Response, PageError> {
    let p = &state.identity;
    let view = p
        .consent_view(&id, session_cookie(&headers, p).as_deref())
        .await?;
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
    Ok(csp_with(no_store(render(&page)), &targets, &[]))
}

pub async fn consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, PageError> {
    let p = &state.identity;
    let form = parse_form(&headers, &body)?;
    let accept = match form.get("decision").map(String::as_str) {
        Some("accept") => true,
        Some("refuse") => false,
        _ => {
            return Err(IdentityError::Interaction(
                "Choisissez de transmettre vos données ou de refuser.".into(),
            )
            .into());
        }
    };
    let session_cookie = session_cookie(&headers, p);
    let url = p
        .consent(
            &id,
            session_cookie.as_deref(),
            form.get("csrf").map(String::as_str),
            accept,
        )
        .await?;
    Ok(redirect(&url))
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

pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = form_pairs(&headers, &body).map_err(|_| {
        ApiError::oauth(
            OidcError::InvalidRequest,
            "send the parameters as application/x-www-form-urlencoded",
        )
    })?;
    let form = unique(pairs).map_err(|m| ApiError::oauth(OidcError::InvalidRequest, m))?;
    let basic =
        basic_credentials(&headers).map_err(|m| ApiError::oauth(OidcError::InvalidClient, m))?;
    let v = if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
        // The token endpoint answers every refusal as OAuth 2.0 does (RFC 6749 §5.2).
        state
            .gateway
            .issue_token(&form, basic)
            .map_err(|e| ApiError {
                oauth: true,
                ..ApiError::from(e)
            })?
    } else {
        state.identity.token(&form, basic).await?
    };
    let mut r = no_store(axum::Json(v).into_response());
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        let mut e = ApiError::oauth(
            OidcError::InvalidToken,
            "an access token is required (Authorization: Bearer)",
        );
        // RFC 6750 §3.1: no error code when the request carries no token.
        e.headers = vec![("www-authenticate", "Bearer".into())];
        return Err(e);
    };
    Ok(match state.identity.userinfo(token).await? {
        Userinfo::Json(v) => no_store(axum::Json(v).into_response()),
        Userinfo::Jwt(jwt) => no_store(
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwt"),
                )],
                jwt,
            )
                .into_response(),
        ),
    })
}

// ----- logout -------------------------------------------------------------------------

pub async fn end_session_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    end_session(state, headers, query_pairs(&uri)).await
}

pub async fn end_session_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let pairs = form_pairs(&headers, &body)?;
    end_session(state, headers, pairs).await
}

async fn end_session(
    state: AppState,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
) -> Result<Response, PageError> {
    let p = &state.identity;
    let params =
        unique(pairs).map_err(|m| IdentityError::Page(format!("Demande invalide : {m}.")))?;
    let session = p.session(session_cookie(&headers, p).as_deref()).await?;
    let (url, ended) = p.end_session(&params, &session).await?;
    let mut r = redirect(&url);
    if ended && let Some(v) = session::SESSION.clear(p.config().secure_cookies()) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

pub async fn logout_callback(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, PageError> {
    let params: BTreeMap<String, String> = query_pairs(&uri).into_iter().collect();
    let Some(s) = params.get("state") else {
        return Err(IdentityError::Page("Vous êtes déconnecté.".into()).into());
    };
    Ok(redirect(&state.identity.logout_callback(s).await?))
}
