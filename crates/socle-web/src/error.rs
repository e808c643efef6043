//! The one public error shape, and its HTML counterpart.
//!
//! Every JSON API answers errors as `{"code", "title", "detail", "request_id"}` with a
//! stable machine `code`; pages answer a DSFR error page in French. Domain and store
//! errors are mapped here, once, by `From` impls: handlers return
//! `Result<_, ApiError>` or `Result<_, PageError>` and use `?`. Internal details are
//! logged, never sent.
//!
//! The protocol endpoints (OAuth 2.0, OpenID Connect) add the standard
//! `error`/`error_description` to the same shape ([`ApiError::oauth`]); the gateway
//! adds `meta.provider` when a data provider is at fault.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use socle_catalogue::CatalogueError;
use socle_citizen::CitizenError;
use socle_gateway::GatewayError;
use socle_identity::{IdentityError, OidcError};
use socle_journal::JournalError;
use socle_store::StoreError;

use crate::middleware::current_request_id;
use crate::pages;

/// A JSON API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: String,
    pub detail: String,
    /// Seconds for a `Retry-After` header (503 answers get 5 without it).
    pub retry_after: Option<u32>,
    /// Also answer `error`/`error_description` (RFC 6749 §5.2), `error` being `code`,
    /// with `Cache-Control: no-store`.
    pub oauth: bool,
    /// The data provider at fault (`meta.provider`).
    pub provider: Option<Box<str>>,
    /// Other headers (`WWW-Authenticate`, `RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

/// The serialised form, also described in the OpenAPI document.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    /// Short human summary, the same for every occurrence of the code.
    pub title: String,
    /// What went wrong this time, and what to do about it.
    pub detail: String,
    /// The request id, also in the `X-Request-Id` response header: quote it to the operator.
    pub request_id: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title: title.into(),
            detail: detail.into(),
            retry_after: None,
            oauth: false,
            provider: None,
            headers: Vec::new(),
        }
    }

    /// An OAuth 2.0 / OpenID Connect protocol error: `code` is also the standard
    /// `error`, and the challenges of RFC 6750 §3 and RFC 6749 §5.2 are sent.
    pub fn oauth(error: OidcError, description: impl Into<String>) -> Self {
        let description = description.into();
        let status = match error {
            OidcError::InvalidClient | OidcError::InvalidToken => StatusCode::UNAUTHORIZED,
            OidcError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OidcError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut e = Self::new(status, error.code(), "OpenID Connect error", description);
        e.oauth = true;
        if error == OidcError::InvalidToken {
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                e.detail.replace('"', "'")
            );
            e.headers.push(("www-authenticate", challenge));
        } else if error == OidcError::InvalidClient {
            e.headers
                .push(("www-authenticate", "Basic realm=\"socle\"".to_string()));
        }
        e
    }

    /// With a `Retry-After` header of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(u32::try_from(seconds).unwrap_or(u32::MAX));
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Resource not found",
            detail,
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "this resource does not accept this HTTP method",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid request",
            detail,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Request body too large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn request_timeout(after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request timed out",
            format!(
                "the request was not completed within {} ms",
                after.as_millis()
            ),
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal error",
            "an unexpected error occurred; quote the request id to the operator",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable",
            detail,
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            title: self.title.clone(),
            detail: self.detail.clone(),
            request_id: current_request_id().unwrap_or_default(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!(self.body());
        if self.oauth {
            body["error"] = json!(self.code);
            body["error_description"] = json!(self.detail);
        }
        if let Some(p) = &self.provider {
            body["meta"] = json!({ "provider": p });
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let h = response.headers_mut();
        if self.oauth {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        for (k, v) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(HeaderName::from_static(k), v);
            }
        }
        let retry_after = match self.retry_after {
            Some(seconds) => HeaderValue::from_str(&seconds.to_string()).ok(),
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                Some(HeaderValue::from_static("5"))
            }
            None => None,
        };
        if let Some(v) = retry_after
            && !response.headers().contains_key(header::RETRY_AFTER)
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Oidc { error, description } => ApiError::oauth(error, description),
            IdentityError::Invalid(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_client_registration",
                "Invalid client registration",
                m,
            ),
            IdentityError::NotFound(m) => ApiError::not_found(m),
            IdentityError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Changed meanwhile", m)
            }
            IdentityError::Store(s) => ApiError::from(s),
            other => {
                tracing::error!(error = %other, "identity error");
                ApiError::oauth(
                    OidcError::ServerError,
                    "an unexpected error occurred; quote the request id",
                )
            }
        }
    }
}

impl From<CatalogueError> for ApiError {
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::Invalid(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_catalogue_record",
                "Invalid catalogue record",
                m,
            ),
            CatalogueError::NotFound(m) => ApiError::not_found(m),
            CatalogueError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", m)
            }
            e @ CatalogueError::Stale { .. } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "Changed since you read it",
                e.to_string(),
            ),
            CatalogueError::Forbidden(m) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", m)
            }
            e @ CatalogueError::Throttled { retry_after } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "Too many failed sign-ins",
                e.to_string(),
            )
            .retry_after(retry_after),
            CatalogueError::Store(s) => ApiError::from(s),
        }
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Range(detail) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_range",
                "Invalid range",
                detail,
            ),
            JournalError::NoCheckpoint => {
                ApiError::not_found("no checkpoint has been published yet")
            }
            JournalError::Unavailable(_) | JournalError::Closed => {
                tracing::warn!(error = %e, "journal unavailable");
                ApiError::unavailable("the journal is temporarily unavailable; try again shortly")
            }
            JournalError::Entry(e) => ApiError::bad_request(e.to_string()),
            other => {
                tracing::error!(error = %other, "journal error");
                ApiError::internal()
            }
        }
    }
}

impl From<GatewayError> for ApiError {
    /// The gateway's refusals keep their code; the status is the one the gateway
    /// journaled for the exchange.
    fn from(e: GatewayError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut a = ApiError::new(status, e.code, e.title, e.detail);
        a.oauth = e.oauth;
        a.provider = e.provider.map(String::into_boxed_str);
        a.headers = e.headers;
        a
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store unavailable");
            ApiError::unavailable("the data store is unreachable; try again shortly")
        } else {
            tracing::error!(error = %e, "store error");
            ApiError::internal()
        }
    }
}

/// An error shown to a person in a browser.
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl PageError {
    pub fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            title: "Page non trouvée",
            message: "La page que vous cherchez est introuvable. Excusez-nous pour la gêne \
                      occasionnée. Si vous avez tapé l’adresse web dans le navigateur, \
                      vérifiez qu’elle est correcte."
                .into(),
        }
    }

    pub fn from_api(e: &ApiError) -> Self {
        let (title, message) = match e.status.as_u16() {
            404 => return Self::not_found(),
            405 => (
                "Action non autorisée",
                "Cette page n’accepte pas cette action.".to_string(),
            ),
            408 => (
                "Délai dépassé",
                "La demande a pris trop de temps. Veuillez réessayer.".to_string(),
            ),
            413 => (
                "Envoi trop volumineux",
                "Les données envoyées dépassent la taille autorisée.".to_string(),
            ),
            503 => (
                "Service momentanément indisponible",
                "Le service est temporairement indisponible. Veuillez réessayer dans quelques \
                 instants."
                    .to_string(),
            ),
            400..=499 => (
                "Demande invalide",
                "La demande n’a pas pu être traitée.".to_string(),
            ),
            _ => (
                "Erreur inattendue",
                "Une erreur inattendue est survenue. Veuillez réessayer plus tard.".to_string(),
            ),
        };
        Self {
            status: e.status,
            title,
            message,
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::from_api(&e)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::from(ApiError::from(e))
    }
}

impl From<JournalError> for PageError {
    fn from(e: JournalError) -> Self {
        PageError::from(ApiError::from(e))
    }
}

/// What an agent is told when the request changed since they opened it.
pub(crate) const STALE: &str = "Cette demande a été modifiée depuis que vous l’avez ouverte : \
                                rien n’a été fait. Relisez-la dans son état actuel avant d’agir.";

impl From<CatalogueError> for PageError {
    fn from(e: CatalogueError) -> Self {
        let (status, title) = match &e {
            CatalogueError::NotFound(_) => return PageError::not_found(),
            CatalogueError::Forbidden(_) => (StatusCode::FORBIDDEN, "Action non autorisée"),
            CatalogueError::Conflict(_) => (StatusCode::CONFLICT, "Action impossible"),
            CatalogueError::Stale { .. } => {
                return PageError {
                    status: StatusCode::CONFLICT,
                    title: "Demande modifiée entre-temps",
                    message: STALE.into(),
                };
            }
            CatalogueError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Demande invalide"),
            CatalogueError::Throttled { .. } | CatalogueError::Store(_) => {
                return PageError::from(ApiError::from(e));
            }
        };
        PageError {
            status,
            title,
            message: e.to_string(),
        }
    }
}

impl From<CitizenError> for PageError {
    fn from(e: CitizenError) -> Self {
        match e {
            CitizenError::NotFound(m) => PageError {
                message: format!(
                    "{} ({m}).",
                    PageError::not_found().message.trim_end_matches('.')
                ),
                ..PageError::not_found()
            },
            CitizenError::Invalid(m) => PageError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                title: "Demande invalide",
                message: m,
            },
            CitizenError::Unavailable(_) => PageError::from(ApiError::unavailable(
                "the citizen space cannot read its records now",
            )),
        }
    }
}

impl From<IdentityError> for PageError {
    fn from(e: IdentityError) -> Self {
        let (status, title, message) = match e {
            IdentityError::Csrf => (
                StatusCode::FORBIDDEN,
                "Formulaire expiré",
                "Ce formulaire a expiré ou ne vient pas de cette plateforme. Revenez au service \
                 et recommencez."
                    .to_string(),
            ),
            IdentityError::Page(m) | IdentityError::Interaction(m) => {
                (StatusCode::BAD_REQUEST, "Connexion impossible", m)
            }
            IdentityError::Upstream { reason, .. } => {
                tracing::warn!(%reason, "identity provider unusable");
                (
                    StatusCode::BAD_GATEWAY,
                    "Fournisseur d’identité indisponible",
                    "Le fournisseur d’identité choisi ne répond pas correctement. Réessayez ou \
                     choisissez-en un autre."
                        .to_string(),
                )
            }
            IdentityError::Oidc { description, .. } => (
                StatusCode::BAD_REQUEST,
                "Connexion impossible",
                format!("La demande n’est pas valide ({description})."),
            ),
            IdentityError::Store(s) => return PageError::from(s),
            // The journal cannot record the login or the consent: nothing was done (fail
            // closed), and it is the platform's state, not the person's mistake.
            IdentityError::Journal(e) => {
                tracing::error!(error = %e, "identity: the journal cannot record; refused");
                return PageError::from(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unavailable",
                    "Journal unavailable",
                    "the platform cannot record this step right now, so nothing was done; retry \
                     in a moment",
                ));
            }
            other => {
                tracing::error!(error = %other, "identity error");
                return PageError::from(ApiError::internal());
            }
        };
        PageError {
            status,
            title,
            message,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = pages::ErrorPage {
            layout: pages::Layout::current(self.title),
            status: self.status.as_u16(),
            heading: self.title,
            message: &self.message,
            request_id: current_request_id().unwrap_or_default(),
        };
        // An error page is about this request only: never kept by a cache.
        let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
        match askama::Template::render(&page) {
            Ok(html) => (self.status, no_store, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page failed to render");
                (self.status, no_store, self.title).into_response()
            }
        }
    }
}
