//! The administration API: service providers (OpenID Connect clients). Closed unless
//! `admin.token` is configured; every change is journaled, in the change's own
//! transaction (a change whose entry cannot be written is not made).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use socle_identity::{ClientInput, NewClientSecret};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// The actor of the administration API's journal entries.
pub(crate) const ADMIN_API: &str = "operator:admin-api";

/// A client as listed (never its secret or its hash).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub organisation: String,
    /// The rules the service is held to: `standard` or `franceconnect`.
    pub profile: socle_identity::ClientProfile,
    /// Logins through the demonstration identity provider only.
    pub sandbox: bool,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub jwks_uri: Option<String>,
    pub scopes: Vec<String>,
    pub eidas_level: u8,
    pub id_token_signed_response_alg: String,
    pub userinfo_signed_response_alg: Option<String>,
    pub id_token_encrypted_response_alg: Option<String>,
    pub userinfo_encrypted_response_alg: Option<String>,
    pub consent_exempt: bool,
    pub disabled: bool,
}

impl From<socle_identity::Client> for ClientView {
    fn from(c: socle_identity::Client) -> Self {
        ClientView {
            client_id: c.client_id,
            name: c.name,
            organisation: c.organisation,
            profile: c.profile,
            sandbox: c.sandbox,
            token_endpoint_auth_method: c.token_endpoint_auth_method,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            backchannel_logout_uri: c.backchannel_logout_uri,
            jwks_uri: c.jwks_uri,
            scopes: c.scopes,
            eidas_level: c.eidas_level,
            id_token_signed_response_alg: c.id_token_signed_response_alg,
            userinfo_signed_response_alg: c.userinfo_signed_response_alg,
            id_token_encrypted_response_alg: c.id_token_encrypted_response_alg,
            userinfo_encrypted_response_alg: c.userinfo_encrypted_response_alg,
            consent_exempt: c.consent_exempt,
            disabled: c.disabled,
        }
    }
}

pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "send the administration token as Authorization: Bearer <token>",
        )
    };
    // No credentials at all: 401 (RFC 9110 §15.5.2), whether or not the API is open.
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(missing());
    }
    let Some(expected) = state.settings.admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_closed",
            "Administration API closed",
            "set admin.token (or admin.token_file) to open the administration API",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let a = socle_identity::sha256_hex(given.as_bytes());
    let b = socle_identity::sha256_hex(expected.as_bytes());
    if a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        != 0
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            "send the administration token as Authorization: Bearer <token>",
        ));
    }
    Ok(())
}

/// Registers a service provider; the secret is in the answer, once.
#[utoipa::path(post, path = "/api/admin/clients", tag = "administration",
    request_body = ClientInput,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Registered: the client id and, for secret-based authentication, the secret (shown once)", body = NewClientSecret),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 422, description = "Invalid registration: every problem listed", body = ErrorBody),
    ))]
pub async fn create_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let input: ClientInput = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON client registration: {e}")))?;
    let (_, secret) = state.identity.clients.create(input, ADMIN_API).await?;
    Ok((StatusCode::CREATED, Json(secret)).into_response())
}

/// Lists the registered service providers.
#[utoipa::path(get, path = "/api/admin/clients", tag = "administration",
    security(("admin_token" = [])),
    responses((status = 200, description = "Every client", body = Vec<ClientView>),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list_clients(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<ClientView>>, ApiError> {
    authorize(&state, &headers)?;
    let list = state.identity.clients.list().await?;
    Ok(Json(list.into_iter().map(ClientView::from).collect()))
}

/// A client's new addresses.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectUris {
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// Replaces a client's redirect and post-logout redirect URIs (checked as at
/// registration); journaled.
#[utoipa::path(put, path = "/api/admin/clients/{client_id}/redirect-uris", tag = "administration",
    request_body = RedirectUris,
    security(("admin_token" = [])),
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The client as it is now", body = ClientView),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 409, description = "The client changed meanwhile", body = ErrorBody),
        (status = 422, description = "Invalid URIs: every problem listed", body = ErrorBody),
    ))]
pub async fn set_redirect_uris(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ClientView>, ApiError> {
    authorize(&state, &headers)?;
    let input: RedirectUris = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let client = state
        .identity
        .clients
        .set_redirect_uris(
            &client_id,
            input.redirect_uris,
            input.post_logout_redirect_uris,
            ADMIN_API,
        )
        .await?;
    Ok(Json(ClientView::from(client)))
}

/// How long the current secret stays valid after a renewal.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRenewal {
    /// Seconds, from 0 (at once) to 2,592,000 (30 days); 0 when absent.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_seconds: i64,
}

/// Gives a client a new secret, shown once in the answer; the current one stays valid
/// for the grace period, for the service to deploy the new one without an outage.
#[utoipa::path(post, path = "/api/admin/clients/{client_id}/secret", tag = "administration",
    request_body = SecretRenewal,
    security(("admin_token" = [])),
    params(("client_id" = String, Path, description = "The client")),
    responses(
        (status = 200, description = "The new secret (shown once)", body = NewClientSecret),
        (status = 404, description = "No such client", body = ErrorBody),
        (status = 409, description = "The client changed meanwhile", body = ErrorBody),
        (status = 422, description = "A grace period out of range, or a client without a secret", body = ErrorBody),
    ))]
pub async fn renew_client_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<NewClientSecret>, ApiError> {
    authorize(&state, &headers)?;
    let input: SecretRenewal = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let secret = state
        .identity
        .clients
        .renew_secret(&client_id, input.grace_seconds, ADMIN_API)
        .await?;
    Ok(Json(secret))
}

/// Disables a client: its logins, tokens and userinfo calls are refused.
#[utoipa::path(post, path = "/api/admin/clients/{client_id}/disable", tag = "administration",
    security(("admin_token" = [])),
    params(("client_id" = String, Path, description = "The client")),
    responses((status = 204, description = "Disabled"),
        (status = 404, description = "No such client", body = ErrorBody)))]
pub async fn disable_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers)?;
    state
        .identity
        .clients
        .set_disabled(&client_id, true, ADMIN_API)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
