//! Cross-cutting request handling: request ids, security headers, metrics, time and
//! size limits, panics. Each concern is one small function, applied in `router()`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use tracing::Instrument;

use crate::NodeState;
use crate::error::{ApiError, PageError};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every part of a request's handling may need without threading it through:
/// its id (for logs and error bodies) and the instance name (for error pages).
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    /// The id came from the caller's `X-Request-Id` (good for following logs across
    /// systems; not unique, so never an exchange's id).
    pub from_caller: bool,
    pub instance_name: Arc<str>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

pub fn current_request_id() -> Option<String> {
    CONTEXT.try_with(|c| c.request_id.clone()).ok()
}

/// The id of an exchange that begins with this request: the request's own id when the
/// platform made it, a new one when the caller chose it — a caller must not be able
/// to give two exchanges the same id.
pub fn new_exchange_id() -> String {
    match CONTEXT.try_with(|c| (!c.from_caller).then(|| c.request_id.clone())) {
        Ok(Some(id)) => id,
        _ => new_request_id(),
    }
}

pub fn current_instance_name() -> Option<Arc<str>> {
    CONTEXT.try_with(|c| c.instance_name.clone()).ok()
}

/// Accepts a caller's `X-Request-Id` when it is a sane token (so ids can be followed
/// across systems), generates one otherwise, and echoes it on the response. The id is
/// a field of the request's tracing span, hence of every log line of the request.
pub async fn request_context(State(state): State<NodeState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_string);
    let from_caller = given.is_some();
    let request_id = given.unwrap_or_else(new_request_id);
    let ctx = RequestContext {
        request_id: request_id.clone(),
        from_caller,
        instance_name: state.instance_name(),
    };
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut response = CONTEXT.scope(ctx, next.run(req)).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The Content-Security-Policy of every response: no inline script or style, nothing
/// from elsewhere, never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'self'; form-action 'self'; frame-ancestors 'none'; \
     report-uri /api/v1/csp-reports";

pub async fn security_headers(
    State(state): State<NodeState>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    // A handler may widen the policy for its page (form targets, logos).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Answers name people, carry tokens or CSRF tokens: stored nowhere unless the
    // handler says otherwise (static assets, public journal checkpoints).
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if state.settings.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}

/// Counts requests by route template (never the raw path, which may carry personal
/// data) and status, times them, and writes one access-log line.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let labels = [
        ("method", method_label(&method)),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("socle_http_requests_total", &labels).increment(1);
    metrics::histogram!(
        "socle_http_request_duration_seconds",
        &[("method", method_label(&method)), ("route", route.clone())]
    )
    .record(elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

fn method_label(m: &Method) -> String {
    match *m {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => m.as_str().to_string(),
        _ => "OTHER".to_string(),
    }
}

/// The host a request was sent to (`Host`, or HTTP/2's `:authority`), in lower case,
/// without its port.
fn request_host(req: &Request) -> Option<String> {
    let authority = match req.headers().get(header::HOST) {
        Some(h) => h
            .to_str()
            .ok()?
            .parse::<axum::http::uri::Authority>()
            .ok()?,
        None => req.uri().authority()?.clone(),
    };
    Some(
        authority
            .host()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase(),
    )
}

/// With `gateway.public_url`, the gateway has a host of its own: `/gateway/…` is served
/// there only, and that host serves nothing else (but health and readiness, for its
/// load balancer). Providers' answers, inert as they are, then never share an origin
/// with the citizen space or the Espace agent.
pub async fn gateway_origin(State(state): State<NodeState>, req: Request, next: Next) -> Response {
    let Some((gateway_host, gateway_url)) = state.settings.gateway.as_ref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    let gateway_path = path == "/gateway" || path.starts_with("/gateway/");
    let on_gateway_host = request_host(&req).as_deref() == Some(gateway_host.as_str());
    if on_gateway_host && !(gateway_path || path == "/healthz" || path == "/readyz") {
        return respond(
            ApiError::not_found(
                "this host serves the gateway only: /gateway/{organisation}/{api}/v{major}/…",
            ),
            false,
        );
    }
    if gateway_path && !on_gateway_host {
        return respond(
            ApiError::not_found(format!("the gateway is served at {gateway_url}/gateway/")),
            false,
        );
    }
    next.run(req).await
}

/// Turns the framework's own refusals (a path or query segment that does not parse:
/// plain text, in English) into the platform's: the error shape for APIs, a French page
/// for people. The gateway's answers are left as they are (a provider's own errors).
pub async fn plain_rejections(req: Request, next: Next) -> Response {
    let html = wants_html(&req);
    let gateway = req.uri().path().starts_with("/gateway/");
    let response = next.run(req).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/plain"));
    if gateway || !plain || !status.is_client_error() {
        return response;
    }
    let text = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
        response.into_body(),
        4096,
    ))
    .await
    {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let detail = if text.trim().is_empty() {
        "this request cannot be read".to_string()
    } else {
        text.trim().to_string()
    };
    if html {
        PageError {
            status,
            title: "Adresse invalide",
            message: "Cette adresse ne peut pas être lue : un de ses éléments n’a pas la \
                      forme attendue. Vérifiez-la, ou revenez à la page précédente."
                .into(),
        }
        .into_response()
    } else {
        ApiError::new(status, "bad_request", "Invalid request", detail).into_response()
    }
}

/// Refuses bodies over the limit with a clear 413, whether announced by
/// `Content-Length` or discovered while streaming, and bounds the whole handling of a
/// request in time (408).
pub async fn limits(State(state): State<NodeState>, req: Request, next: Next) -> Response {
    let limit = state.settings.body_limit;
    let wants_html = wants_html(&req);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return respond(ApiError::payload_too_large(limit), wants_html);
    }
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    let timeout = state.settings.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => respond(ApiError::request_timeout(timeout), wants_html),
    }
}

/// True when the client is a browser asking for a page rather than an API client.
pub fn wants_html(req: &Request) -> bool {
    let path = req.uri().path();
    if path.starts_with("/api/") || path.starts_with("/journal/") || path == "/metrics" {
        return false;
    }
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

pub fn respond(error: ApiError, html: bool) -> Response {
    if html {
        PageError::from_api(&error).into_response()
    } else {
        error.into_response()
    }
}

/// Turns a panic in a handler into a 500 with the error shape; the panic message is
/// logged (it may contain input) only at debug level.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic)");
    tracing::error!("handler panicked");
    tracing::debug!(panic = message, "panic message");
    ApiError::internal().into_response()
}
