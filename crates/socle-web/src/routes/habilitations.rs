//! Habilitation requests over JSON: sign-in of back-office accounts, then drafting,
//! submitting, reviewing and deciding requests, and fetching credentials. Every rule
//! (who may do what in which state) is in `socle_catalogue::habilitation`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use socle_catalogue::habilitation::{Action, Form, Habilitation};
use socle_catalogue::people::Actor;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ClientIp;

async fn actor(state: &AppState, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "sign in at POST /api/v1/session and send the token as Authorization: Bearer <token>",
        )
    };
    if token.is_empty() {
        return Err(unauthorized());
    }
    state
        .back_office
        .actor(token)
        .await?
        .ok_or_else(unauthorized)
}

/// This node's identity provider reads the client afresh (an integration's secret
/// changed).
fn forget_client(state: &AppState, client_id: &str) {
    state.identity.clients.forget(client_id);
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON {what}: {e}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Token {
    pub token: String,
    pub token_type: &'static str,
    pub expires_in: u32,
}

/// Signs a back-office account in.
#[utoipa::path(post, path = "/api/v1/session", tag = "habilitations", request_body = SignIn,
    responses((status = 200, description = "A bearer token, valid 8 hours", body = Token),
        (status = 401, description = "Wrong e-mail or password", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins on this address: retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    ClientIp(from): ClientIp,
    body: axum::body::Bytes,
) -> Result<Json<Token>, ApiError> {
    let input: SignIn = json_body(&body, "sign-in")?;
    match state
        .back_office
        .sign_in(&input.email, &input.password, from)
        .await?
    {
        Some(token) => Ok(Json(Token {
            token,
            token_type: "Bearer",
            expires_in: 8 * 3600,
        })),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "Sign-in refused",
            "wrong e-mail or password",
        )),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HabilitationList {
    pub habilitations: Vec<Habilitation>,
}

/// The requests the signed-in person may see.
#[utoipa::path(get, path = "/api/v1/habilitations", tag = "habilitations",
    security(("user_token" = [])),
    responses((status = 200, description = "Most recently changed first", body = HabilitationList)))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<HabilitationList>, ApiError> {
    let actor = actor(&state, &headers).await?;
    let list = state.back_office.list(&actor).await?;
    Ok(Json(HabilitationList {
        habilitations: list.into_iter().map(Habilitation::public).collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewRequest {
    /// The API's slug.
    pub api: String,
    #[serde(default)]
    pub form: Form,
}

/// Starts a draft request for an API, for the signed-in person's organisation.
#[utoipa::path(post, path = "/api/v1/habilitations", tag = "habilitations",
    security(("user_token" = [])), request_body = NewRequest,
    responses((status = 201, description = "The draft", body = Habilitation),
        (status = 403, description = "Not a developer or administrator of a requesting organisation", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let input: NewRequest = json_body(&body, "request")?;
    let h = state
        .back_office
        .create(&actor, &input.api, input.form)
        .await?;
    Ok((StatusCode::CREATED, Json(h.public())).into_response())
}

/// One request, with its full history.
#[utoipa::path(get, path = "/api/v1/habilitations/{id}", tag = "habilitations",
    security(("user_token" = [])), params(("id" = String, Path, description = "The request")),
    responses((status = 200, description = "The request; `ETag` is its revision, to send as `If-Match` with a change", body = Habilitation),
        (status = 404, description = "No such request, or not visible to you", body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let h = state.back_office.get(&actor, &id).await?;
    Ok(with_etag(h.revision(), Json(h.public()).into_response()))
}

/// `ETag: "<revision>"`, and never cached (the request names people).
fn with_etag(revision: usize, mut r: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The revision named by `If-Match` (RFC 9110 §13.1.1), if any: a change is then made
/// only to that revision. `*` or no header: any.
fn if_match(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "If-Match must be one ETag of this request, as GET returned it (\"3\")",
            )
        })
}

/// Replaces the form of a draft, or of a request sent back for changes.
#[utoipa::path(put, path = "/api/v1/habilitations/{id}", tag = "habilitations",
    security(("user_token" = [])), request_body = Form,
    params(("id" = String, Path, description = "The request")),
    responses((status = 200, description = "Updated", body = Habilitation),
        (status = 403, description = "Not yours to edit, or not in an editable state", body = ErrorBody),
        (status = 409, description = "Changed meanwhile", body = ErrorBody),
        (status = 412, description = "Changed since the revision named by `If-Match`", body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let form: Form = json_body(&body, "form")?;
    let seen = if_match(&headers)?;
    let h = state.back_office.update(&actor, &id, form, seen).await?;
    Ok(with_etag(h.revision(), Json(h.public()).into_response()))
}

/// The steps of a request, as the API names them (the document's enumeration; the
/// domain checks them again with who may take which).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    Submit,
    RequestChanges,
    Validate,
    Refuse,
    Revoke,
    Archive,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Act {
    /// `submit`, `request_changes`, `validate`, `refuse`, `revoke` or `archive`.
    #[schema(value_type = ActionName)]
    pub action: String,
    /// Required to request changes, refuse or revoke.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Moves a request on (submit, request changes, validate, refuse, revoke, archive).
#[utoipa::path(post, path = "/api/v1/habilitations/{id}/actions", tag = "habilitations",
    security(("user_token" = [])), request_body = Act,
    params(("id" = String, Path, description = "The request")),
    responses((status = 200, description = "The request in its new state", body = Habilitation),
        (status = 403, description = "Not allowed to you", body = ErrorBody),
        (status = 409, description = "Not possible in this state", body = ErrorBody),
        (status = 412, description = "Changed since the revision named by `If-Match`", body = ErrorBody),
        (status = 422, description = "Comment missing, or the request is incomplete", body = ErrorBody)))]
pub async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let input: Act = json_body(&body, "action")?;
    let Some(action) = Action::parse(&input.action).filter(|a| *a != Action::Expire) else {
        return Err(ApiError::bad_request(format!(
            "{:?} is not an action: submit, request_changes, validate, refuse, revoke or archive",
            input.action
        )));
    };
    let seen = if_match(&headers)?;
    let h = state
        .back_office
        .act(&actor, &id, action, input.comment, seen)
        .await?;
    crate::routes::agent::client_changed(&state, &h);
    state.gateway_changed().await;
    Ok(with_etag(h.revision(), Json(h.public()).into_response()))
}

/// Reopens a validated habilitation as a new draft; the old one stays valid until the
/// new one is validated (then it is archived).
#[utoipa::path(post, path = "/api/v1/habilitations/{id}/reopen", tag = "habilitations",
    security(("user_token" = [])), params(("id" = String, Path, description = "The validated request")),
    responses((status = 201, description = "The new draft", body = Habilitation),
        (status = 403, description = "Not the requesting organisation", body = ErrorBody),
        (status = 409, description = "Not validated", body = ErrorBody)))]
pub async fn reopen(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let h = state.back_office.reopen(&actor, &id).await?;
    Ok((StatusCode::CREATED, Json(h.public())).into_response())
}

/// Asks for production: a new request (a draft with the validated sandbox
/// integration's form, to complete with the production addresses and the
/// accreditation); validated, it creates the production client, the sandbox one kept.
#[utoipa::path(post, path = "/api/v1/habilitations/{id}/production", tag = "habilitations",
    security(("user_token" = [])), params(("id" = String, Path, description = "The validated sandbox integration")),
    responses((status = 201, description = "The new draft", body = Habilitation),
        (status = 403, description = "Not the requesting organisation", body = ErrorBody),
        (status = 404, description = "No such request", body = ErrorBody),
        (status = 409, description = "Not a validated sandbox integration", body = ErrorBody)))]
pub async fn ask_production(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let h = state.back_office.ask_production(&actor, &id).await?;
    Ok((StatusCode::CREATED, Json(h.public())).into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Credentials {
    pub client_id: String,
    /// Present the first time only: keep it, Socle keeps only its hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// The machine-to-machine credentials of a validated request (requesting organisation).
#[utoipa::path(get, path = "/api/v1/habilitations/{id}/credentials", tag = "habilitations",
    security(("user_token" = [])), params(("id" = String, Path, description = "The request")),
    responses((status = 200, description = "The client id, and the secret the first time", body = Credentials),
        (status = 403, description = "Not the requesting organisation", body = ErrorBody),
        (status = 409, description = "Not validated", body = ErrorBody)))]
pub async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let (client_id, client_secret) = state.back_office.credentials(&actor, &id).await?;
    forget_client(&state, &client_id);
    state.gateway_changed().await;
    let mut r = Json(Credentials {
        client_id,
        client_secret,
    })
    .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

/// How long the replaced secret stays valid.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// For an integration (a service logging users in): seconds the old secret still
    /// works, 0 to 2592000 (30 days), so the service deploys the new one without an
    /// outage. An API habilitation's old secret stops at once (0 only).
    #[serde(default)]
    pub grace_seconds: i64,
}

/// Replaces the secret of a validated habilitation (lost or leaked, or rotated): the
/// new secret is shown once. An API habilitation's old secret stops working at once on
/// this node, within a second on the others; an integration's, after the grace period
/// given (the body is optional).
#[utoipa::path(post, path = "/api/v1/habilitations/{id}/credentials/renew", tag = "habilitations",
    security(("user_token" = [])), params(("id" = String, Path, description = "The validated request")),
    request_body(content = Option<Renewal>, description = "Optional: the grace period"),
    responses((status = 200, description = "The client id and the new secret", body = Credentials),
        (status = 400, description = "A grace period out of range, or one for an API habilitation", body = ErrorBody),
        (status = 403, description = "Not the requesting organisation", body = ErrorBody),
        (status = 409, description = "Not validated", body = ErrorBody)))]
pub async fn renew_credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let grace = if body.iter().all(u8::is_ascii_whitespace) {
        0
    } else {
        json_body::<Renewal>(&body, "renewal")?.grace_seconds
    };
    let (client_id, secret) = state
        .back_office
        .renew_secret_with_grace(&actor, &id, grace)
        .await?;
    forget_client(&state, &client_id);
    state.gateway_changed().await;
    let mut r = Json(Credentials {
        client_id,
        client_secret: Some(secret),
    })
    .into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegisterQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Register {
    pub organisation: String,
    pub processing: Vec<socle_catalogue::back_office::Processing>,
}

/// The register of processing (GDPR art. 30) of the signed-in person's organisation,
/// generated from its validated habilitations; JSON or CSV.
#[utoipa::path(get, path = "/api/v1/register", tag = "habilitations",
    security(("user_token" = [])), params(RegisterQuery),
    responses((status = 200, description = "The register", body = Register),
        (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<RegisterQuery>,
) -> Result<Response, ApiError> {
    let actor = actor(&state, &headers).await?;
    let entries = state.back_office.register(&actor.organisation).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(Register {
            organisation: actor.organisation,
            processing: entries,
        })
        .into_response()),
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"registre-des-traitements.csv\"",
                ),
            ],
            socle_catalogue::back_office::register_csv(&entries),
        )
            .into_response()),
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: use json or csv"
        ))),
    }
}
