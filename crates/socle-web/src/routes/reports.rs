//! Content-Security-Policy violation reports sent by browsers (`report-uri`).
//!
//! The strict CSP forbids inline scripts and foreign resources; when a page breaks it
//! (a template mistake, an injected script, a browser extension), browsers post a
//! report here. Reports are counted by directive; their content (which may hold page
//! addresses, hence personal data) is neither stored nor logged.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::Value;

use crate::error::{ApiError, ErrorBody};

/// Receive a CSP violation report (`application/csp-report` or `application/reports+json`).
#[utoipa::path(post, path = "/api/v1/csp-reports", tag = "operations",
    request_body(content = Object, description = "A CSP report as browsers send it",
        content_type = "application/csp-report"),
    responses(
        (status = 204, description = "Report counted"),
        (status = 400, description = "Not a JSON report", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
    ))]
pub async fn csp_report(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                "the request body exceeds the configured limit",
            )
        } else {
            ApiError::bad_request(format!(
                "the request body could not be read: {}",
                e.body_text()
            ))
        }
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    // Legacy format: {"csp-report": {...}}; Reporting API: [{"type": "csp-violation", "body": {...}}].
    let reports: Vec<&Value> = match &value {
        Value::Object(o) if o.contains_key("csp-report") => vec![&o["csp-report"]],
        Value::Array(items) => items.iter().filter_map(|i| i.get("body")).collect(),
        _ => {
            return Err(ApiError::bad_request(
                "expected {\"csp-report\": {…}} or a Reporting API array",
            ));
        }
    };
    for report in reports {
        let directive = report
            .get("effective-directive")
            .or_else(|| report.get("violated-directive"))
            .or_else(|| report.get("effectiveDirective"))
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        // Bound the label set: only the directive's name, from a known list.
        let directive = KNOWN_DIRECTIVES
            .iter()
            .find(|d| directive.split_whitespace().next() == Some(**d))
            .copied()
            .unwrap_or("other");
        metrics::counter!("socle_csp_violations_total", "directive" => directive).increment(1);
    }
    Ok(StatusCode::NO_CONTENT)
}

const KNOWN_DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "object-src",
    "base-uri",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "media-src",
    "worker-src",
    "manifest-src",
];
