//! The gateway's one error type: a public error (stable `code`, `title`, `detail`),
//! the provider it concerns, and the headers that go with it (`Retry-After`,
//! `RateLimit-*`, `WWW-Authenticate`). `socle-web` maps it to HTTP once.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayError {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Name of the data provider, when the error concerns one (`meta.provider`).
    pub provider: Option<String>,
    pub headers: Vec<(&'static str, String)>,
    /// An error of the token endpoint, answered with OAuth 2.0's `error` too.
    pub oauth: bool,
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.detail)
    }
}

impl std::error::Error for GatewayError {}

pub type Result<T> = std::result::Result<T, GatewayError>;

impl GatewayError {
    pub fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            provider: None,
            headers: Vec::new(),
            oauth: false,
        }
    }

    pub fn provider(mut self, name: &str) -> Self {
        self.provider = Some(name.to_string());
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(404, code, "Not found", detail)
    }

    pub fn unauthenticated(code: &'static str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let challenge = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            detail.replace('"', "'")
        );
        Self::new(401, code, "Authentication required", detail)
            .header("www-authenticate", challenge)
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(403, code, "Access refused", detail)
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, code, "Invalid request", detail)
    }

    /// An OAuth 2.0 error of the token endpoint (RFC 6749 §5.2): the code is the
    /// OAuth `error`.
    pub fn oauth(status: u16, error: &'static str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(status, error, "Token request refused", detail);
        e.oauth = true;
        e
    }

    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(503, code, "Service unavailable", detail)
    }
}

impl From<socle_store::StoreError> for GatewayError {
    fn from(e: socle_store::StoreError) -> Self {
        tracing::error!(error = %e, "gateway: store error");
        GatewayError::unavailable(
            "store_unavailable",
            "the platform cannot reach its database; nothing was sent to the provider",
        )
    }
}
