//! One error type for the crate, carrying the OAuth 2.0 / OpenID Connect error code
//! the web layer sends (RFC 6749 §4.1.2.1 and §5.2, OIDC Core §3.1.2.6).

use std::fmt;

/// The standard error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcError {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    /// `prompt=none` and the person would have to consent (Core §3.1.2.6).
    ConsentRequired,
    /// OIDC: the requested acr cannot be met (OpenID Connect Core §3.1.2.6 lists it
    /// as `unmet_authentication_requirements` in the extension registry).
    UnmetAuthenticationRequirements,
    InvalidToken,
    /// OpenID Connect Core §3.1.2.6: request objects are not supported.
    RequestNotSupported,
    RequestUriNotSupported,
    ServerError,
    TemporarilyUnavailable,
}

impl OidcError {
    pub fn code(self) -> &'static str {
        match self {
            OidcError::InvalidRequest => "invalid_request",
            OidcError::InvalidClient => "invalid_client",
            OidcError::InvalidGrant => "invalid_grant",
            OidcError::UnauthorizedClient => "unauthorized_client",
            OidcError::UnsupportedGrantType => "unsupported_grant_type",
            OidcError::UnsupportedResponseType => "unsupported_response_type",
            OidcError::InvalidScope => "invalid_scope",
            OidcError::AccessDenied => "access_denied",
            OidcError::LoginRequired => "login_required",
            OidcError::ConsentRequired => "consent_required",
            OidcError::UnmetAuthenticationRequirements => "unmet_authentication_requirements",
            OidcError::InvalidToken => "invalid_token",
            OidcError::RequestNotSupported => "request_not_supported",
            OidcError::RequestUriNotSupported => "request_uri_not_supported",
            OidcError::ServerError => "server_error",
            OidcError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl fmt::Display for OidcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What went wrong, and to whom it is reported.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A protocol error returned to the client (JSON at the token and userinfo
    /// endpoints, a redirect from the authorization endpoint).
    #[error("{error}: {description}")]
    Oidc {
        error: OidcError,
        description: String,
    },
    /// The request cannot be trusted to carry a redirect (unknown client, bad
    /// redirect_uri…): the person gets a page, nobody is redirected.
    #[error("{0}")]
    Page(String),
    /// A login in progress is unknown, expired or was opened in another browser.
    #[error("{0}")]
    Interaction(String),
    /// The identity provider failed or answered something unusable; the person gets a
    /// page with a way back to the service, the service an error.
    #[error("identity provider {provider}: {reason}")]
    Upstream { provider: String, reason: String },
    /// A form without this session's CSRF token.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    /// Invalid input to an administrative operation.
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// An administrative change raced another one: nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] socle_store::StoreError),
    #[error("journal: {0}")]
    Journal(#[from] socle_journal::JournalError),
    #[error("cryptography: {0}")]
    Crypto(String),
}

impl IdentityError {
    pub fn oidc(error: OidcError, description: impl Into<String>) -> Self {
        IdentityError::Oidc {
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::oidc(OidcError::InvalidRequest, description)
    }

    pub fn upstream(provider: &str, reason: impl Into<String>) -> Self {
        IdentityError::Upstream {
            provider: provider.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<josekit::JoseError> for IdentityError {
    fn from(e: josekit::JoseError) -> Self {
        IdentityError::Crypto(e.to_string())
    }
}

pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
