//! The gateway: carries data from providers to services under habilitation —
//! "Dites-le nous une fois" with the proofs.
//!
//! A call to `/gateway/{organisation}/{api}/v{major}/{path}` is routed to the API's
//! registered upstream only ([`policy`]: the snapshot of published APIs and validated
//! habilitations, rebuilt off the request path and swapped whole); the caller is
//! authenticated by a `client_credentials` token of a habilitation or by a person's
//! access token from identity federation (verified once, then cached by hash); it is
//! authorised deny-by-default (habilitation in force, scopes covering the operation,
//! the purpose triple `context`/`recipient`/`object`, the person's consent where the
//! legal basis is consent — [`consent`]); rate limits and daily quotas apply
//! ([`limits`]); the request goes upstream with a signed caller assertion; the JSON
//! answer is cut to the granted fields ([`minimise`]); one journal entry per exchange
//! is made durable before anything is released ([`service`]). The crate has no HTTP
//! server and no SQL: `socle-web` maps [`GatewayError`] once, `socle-store` keeps the
//! quota counters and consents.

pub mod consent;
pub mod error;
mod jwt;
pub mod limits;
pub mod minimise;
pub mod policy;
pub mod service;
pub mod stats;
mod upstream;

pub use consent::{Consent, ConsentTerms, Consents};
pub use error::GatewayError;
pub use service::{Call, Delivered, Gateway, GatewayConfig, is_json};
pub use stats::Usage;
