//! The catalogue: organisations, the data dictionary, and the APIs administrations
//! publish, with their scopes (the unit of data minimisation the gateway enforces).
//!
//! This crate holds the rules — SIREN/SIRET checks, what a valid API record is (an
//! OpenAPI 3 document that parses, an upstream URL that is not a private or metadata
//! address, scopes as JSON pointers linked to data items) — and the search over
//! published APIs. It has no HTTP and no SQL: `socle-store` keeps the records as
//! documents, `socle-web` serves the catalogue pages and JSON API. Habilitations (who
//! may call which scope, and why) come next and build on these records.

pub mod address;
pub mod back_office;
pub mod habilitation;
pub mod model;
pub mod notify;
pub mod people;
pub mod service;
pub use socle_core::siret;
pub mod throttle;

pub use back_office::BackOffice;
pub use model::{
    Api, ApiInput, DataItem, DataItemInput, Organisation, OrganisationInput, PivotFields, Scope,
    Subject, SubjectMode,
};
pub use service::{Catalogue, Listed, Search};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Invalid input: every problem, in one message.
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request changed since the revision the person acted on.
    #[error("the request changed since revision {seen} (now {now}): read it again")]
    Stale { seen: usize, now: usize },
    /// This person may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed sign-ins on this address: the next attempt waits.
    #[error("too many failed sign-ins on this address: retry in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error(transparent)]
    Store(socle_store::StoreError),
}

impl From<socle_store::StoreError> for CatalogueError {
    fn from(e: socle_store::StoreError) -> Self {
        match e {
            socle_store::StoreError::Conflict(m) => CatalogueError::Conflict(m),
            other => CatalogueError::Store(other),
        }
    }
}

pub type Result<T, E = CatalogueError> = std::result::Result<T, E>;

// Small helpers shared by the modules.

pub(crate) use socle_core::clock::{now, now_rfc3339};

pub(crate) fn random(n: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn sha256_hex(s: &str) -> String {
    socle_core::sha256_hex(s.as_bytes())
}
