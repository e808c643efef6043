//! Identity federation: Socle as an OpenID Connect provider toward services (FS) and
//! as a strict relying party toward identity providers (FI), FranceConnect v2 style.
//!
//! [`Provider`] runs the authorization code flow of a service: it validates the
//! authorization request, keeps the login interaction in the store, lets the
//! [`Broker`] authenticate the person at the chosen identity provider, checks and
//! normalises the returned pivot identity ([`pivot`]), derives the pairwise `sub`,
//! records consent and login in the journal under the person's pseudonym, then issues
//! single-use codes, access tokens, signed (optionally encrypted) ID tokens and
//! userinfo. Keys are generated on first start and kept sealed under the master key
//! ([`keys`]). The crate has no HTTP server and no SQL: `socle-web` maps its results
//! and errors to HTTP once, `socle-store` keeps its records. The demonstration identity
//! provider's people and protocol state live in [`demo`].

pub mod backchannel;
pub mod broker;
pub mod claims;
pub mod client;
pub mod error;
pub mod es256;
pub mod keys;
pub mod pivot;
pub mod provider;
pub mod service_keys;

pub use broker::{Broker, ProviderSettings as FiSettings};
pub use client::{Client, ClientInput, ClientProfile, NewClientSecret, PlatformService};
pub use error::{IdentityError, OidcError};
pub use keys::{KeyRing, MasterKey};
pub use pivot::{Eidas, Identity};
pub use provider::{Begun, FailureKind, PersonToken, Provider, ProviderConfig};

/// Seconds since the Unix epoch.
pub use socle_core::clock::now;

/// `n` random bytes, base64url without padding (tokens, codes, states).
pub fn random_token(n: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A CSRF token: 32 bytes from the operating system's generator (`getrandom`), in
/// base64url. Should the OS refuse, the thread's generator (itself seeded from the OS)
/// answers instead.
pub fn csrf_token() -> String {
    use base64::Engine;
    use rand::{RngCore, TryRngCore};
    let mut bytes = [0u8; 32];
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        tracing::warn!(
            "the operating system's generator failed; CSRF token from the thread generator"
        );
        rand::rng().fill_bytes(&mut bytes);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256, how codes, tokens, secrets and session ids are stored.
pub use socle_core::sha256_hex;

/// base64url SHA-256: PKCE S256 challenges.
pub fn sha256_b64url(data: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data))
}

/// Constant-time comparison of secrets' hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
