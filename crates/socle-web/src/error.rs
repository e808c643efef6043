//! The one public error shape, and its HTML counterpart.
//!
//! Every JSON API answers errors as `{"code", "title", "detail", "request_id"}` with a
//! stable machine `code`; pages answer a DSFR error page in French. Domain and store
//! errors are mapped here, once; internal details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
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
    pub retry_after: Option<u64>,
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
        }
    }

    /// With a `Retry-After` header of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
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
        let mut response = (self.status, axum::Json(self.body())).into_response();
        let retry_after = match self.retry_after {
            Some(seconds) => HeaderValue::from_str(&seconds.to_string()).ok(),
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => {
                Some(HeaderValue::from_static("5"))
            }
            None => None,
        };
        if let Some(v) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
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

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = pages::ErrorPage {
            layout: pages::Layout::current(self.title),
            status: self.status.as_u16(),
            heading: self.title,
            message: &self.message,
            request_id: current_request_id().unwrap_or_default(),
        };
        match askama::Template::render(&page) {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "error page failed to render");
                (self.status, self.title).into_response()
            }
        }
    }
}
