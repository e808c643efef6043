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

/// The legacy format (`report-uri`, `application/csp-report`): `{"csp-report": {…}}`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct LegacyReport {
    #[serde(rename = "csp-report")]
    #[schema(value_type = Object)]
    pub csp_report: serde_json::Map<String, Value>,
}

/// One report of the Reporting API (`application/reports+json`, an array of them).
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct ReportingApiReport {
    /// `csp-violation` for these (others are accepted and not counted).
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub body: serde_json::Map<String, Value>,
}

/// Receive a CSP violation report (`application/csp-report` or `application/reports+json`).
#[utoipa::path(post, path = "/api/v1/csp-reports", tag = "operations",
    request_body(description = "A CSP report as browsers send it",
        content(
            (LegacyReport = "application/csp-report"),
            (Vec<ReportingApiReport> = "application/reports+json"),
            (LegacyReport = "application/json"),
        )),
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
    let shape = || {
        ApiError::bad_request(
            "expected {\"csp-report\": {…}} or a Reporting API array of {\"type\", \"body\": {…}}",
        )
    };
    let reports: Vec<serde_json::Map<String, Value>> = if value.is_array() {
        serde_json::from_value::<Vec<ReportingApiReport>>(value)
            .map_err(|_| shape())?
            .into_iter()
            .filter(|r| r.kind == "csp-violation")
            .map(|r| r.body)
            .collect()
    } else {
        vec![
            serde_json::from_value::<LegacyReport>(value)
                .map_err(|_| shape())?
                .csp_report,
        ]
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
