//! The gateway's HTTP face: `/gateway/{organisation}/{api}/v{major}/{path…}` (thin:
//! the pipeline is `socle_gateway::Gateway::call`), its answer made inert on the platform's origin (errors are mapped in `crate::error`).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use socle_gateway::{Call, GatewayError};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ClientIp;
use crate::middleware::new_exchange_id;

/// A call to a data provider's API through the gateway. Any method the API's OpenAPI
/// document declares; the answer is the provider's, cut down to the fields of the
/// scopes granted, with `X-Socle-Request-Id`, `X-Socle-Request-Hash`,
/// `X-Socle-Response-Hash`, `X-Socle-Journal-Key` (the key of the journal entry's
/// HMAC-ed hashes), `Cache-Control: no-store` and `RateLimit-*` headers (and
/// `X-Socle-Signature`, a JWT over both hashes, when the request carries
/// `X-Socle-Sign`). The path is taken raw
/// from the URI (not percent-decoded), so that an encoded `/` or `..` is refused.
#[utoipa::path(get, path = "/gateway/{organisation}/{api}/{version}/{path}", tag = "gateway",
    security(("gateway_token" = [])),
    params(
        ("organisation" = String, Path, description = "SIRET, SIREN or acronym of the providing organisation"),
        ("api" = String, Path, description = "The API's slug"),
        ("version" = String, Path, description = "`v` and the major version, e.g. `v1`"),
        ("path" = String, Path, description = "The operation's path in the API's OpenAPI document"),
        ("context" = String, Query, description = "The procedure the call serves (or header X-Socle-Context)"),
        ("recipient" = String, Query, description = "SIRET of the organisation receiving the data (or X-Socle-Recipient)"),
        ("object" = String, Query, description = "The case or file reference, at most 50 characters (or X-Socle-Object)"),
    ),
    responses(
        (status = 200, description = "The provider's answer, minimised"),
        (status = 400, description = "`missing_purpose`, `invalid_path`, `invalid_body`, `rejected_by_provider`", body = ErrorBody),
        (status = 401, description = "`missing_token`, `invalid_token`", body = ErrorBody),
        (status = 403, description = "`habilitation_inactive`, `habilitation_expired`, `no_habilitation`, `wrong_api`, `scope_not_granted`, `consent_required`", body = ErrorBody),
        (status = 404, description = "`unknown_api`, `unknown_version`, `unknown_operation`, `not_found_at_provider`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the request body exceeds the platform's limit", body = ErrorBody),
        (status = 429, description = "`rate_limited`, `quota_exceeded` (with Retry-After)", body = ErrorBody),
        (status = 502, description = "`upstream_unavailable`, `upstream_error`, `upstream_invalid`", body = ErrorBody),
        (status = 503, description = "`journal_unavailable`: the exchange could not be journaled, nothing is released; `gateway_busy`: the answers being read fill the gateway's memory budget (Retry-After); `gateway_stale`", body = ErrorBody),
        (status = 504, description = "`upstream_timeout`", body = ErrorBody)))]
pub async fn call(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut r = match exchange(&state, client, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => ApiError::from(e).into_response(),
    };
    inert(r.headers_mut());
    r
}

/// The call, up to the provider's answer or the gateway's refusal.
async fn exchange(
    state: &AppState,
    client: Option<std::net::IpAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, GatewayError> {
    // A body over the limit (or cut off) while it streamed in: the same error shape.
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(GatewayError::new(
                413,
                "payload_too_large",
                "Payload too large",
                format!(
                    "the request body exceeds {} bytes",
                    state.settings.body_limit
                ),
            ));
        }
        Err(_) => {
            return Err(GatewayError::bad_request(
                "invalid_body",
                "the request body could not be read whole",
            ));
        }
    };
    let raw = uri.path().strip_prefix("/gateway/").unwrap_or_default();
    let mut parts = raw.splitn(4, '/');
    let (Some(organisation), Some(api), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(GatewayError::not_found(
            "unknown_api",
            "call /gateway/{organisation}/{api}/v{major}/{path}",
        ));
    };
    let client_ip = client.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let call = Call {
        method,
        organisation: organisation.to_string(),
        api: api.to_string(),
        version: version.to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
        client_ip,
        request_id: new_exchange_id(),
    };
    let d = state.gateway.call(call).await?;
    let status = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
    let mut r = (status, d.body).into_response();
    r.headers_mut().extend(d.headers);
    Ok(r)
}

/// A provider's content is never active on the platform's origin, whatever it says it
/// is: no script runs in it, nothing loads from it (`sandbox; default-src 'none'`), a
/// browser downloads anything but JSON instead of rendering it, and no other site may
/// embed it. Without this, an HTML answer released whole by a scope would run with the
/// citizen space's and the Espace agent's cookies.
fn inert(h: &mut HeaderMap) {
    h.insert(
        axum::http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    let json = socle_gateway::is_json(h.get(axum::http::header::CONTENT_TYPE));
    if !json {
        h.insert(
            axum::http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
}
