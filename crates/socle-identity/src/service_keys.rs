//! A service's public keys, registered inline (`jwks`) or by URL (`jwks_uri`, as
//! FranceConnect+ requires for encryption keys it rotates): for `private_key_jwt`
//! assertions and to encrypt ID tokens and userinfo to.
//!
//! A `jwks_uri` is fetched with the client for calls made on someone else's word (no
//! redirects, host names resolving to public addresses only), within 5 s and 64 KiB,
//! and kept as long as its `Cache-Control: max-age` says (at most an hour; 5 minutes
//! when it says nothing). An assertion signed with a key id the kept set does not have
//! makes one new fetch: a rotated key is found at once. Whatever requests arrive, a
//! URI is fetched at most once a second (a failure is kept that long too).
//! A fetch that fails, or a document that is not a JWKS, is the client's problem:
//! `invalid_client` with the reason, logged — never a server error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use josekit::jwk::Jwk;
use serde_json::Value;

use crate::client::{Client, find_key, parse_jwks};

/// Largest JWKS document read.
const MAX_BYTES: usize = 64 * 1024;
/// How long a set is kept when the server says nothing.
const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Longest a set is kept, whatever the server says.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Shortest time between two fetches of one URI for an unknown key id.
const REFETCH_AFTER: Duration = Duration::from_secs(1);

/// The last fetch of a URI: its set, or why it failed (kept [`REFETCH_AFTER`], so
/// that requests cannot make the platform call a service faster than that).
struct Kept {
    set: Result<Value, String>,
    fetched: Instant,
    ttl: Duration,
}

/// The keys of services registered by URL, fetched and kept.
#[derive(Default)]
pub struct ServiceKeys {
    http: Option<reqwest::Client>,
    kept: Mutex<HashMap<String, Kept>>,
}

impl ServiceKeys {
    /// Fetches with `http` (without it, no `jwks_uri` can be used).
    pub fn new(http: Option<reqwest::Client>) -> Self {
        ServiceKeys {
            http,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The client's key for `usage` (`sig` or `enc`), suitable for `alg`, with `kid`
    /// when given; the reason when there is none.
    pub async fn key(
        &self,
        client: &Client,
        usage: &str,
        alg: Option<&str>,
        kid: Option<&str>,
    ) -> Result<Jwk, String> {
        let Some(uri) = &client.jwks_uri else {
            return client
                .key(usage, alg, kid)
                .ok_or_else(|| "no registered key of the client matches".to_string());
        };
        let (set, age) = match self.kept(uri) {
            Some((set, age)) => (set?, age),
            None => (self.fetch(uri).await?, Duration::ZERO),
        };
        if let Some(key) = find_key(&set, usage, alg, kid) {
            return Ok(key);
        }
        // A key rotated since the last fetch: fetch again, once.
        if age >= REFETCH_AFTER {
            let set = self.fetch(uri).await?;
            if let Some(key) = find_key(&set, usage, alg, kid) {
                return Ok(key);
            }
        }
        Err(format!("no key of the JWKS at {uri} matches"))
    }

    /// The outcome kept for `uri` while fresh, and its age.
    fn kept(&self, uri: &str) -> Option<(Result<Value, String>, Duration)> {
        let kept = self.kept.lock().ok()?;
        let k = kept.get(uri)?;
        let age = k.fetched.elapsed();
        (age < k.ttl.max(REFETCH_AFTER)).then(|| (k.set.clone(), age))
    }

    /// Fetches `uri` and keeps the outcome (a failure too, for [`REFETCH_AFTER`]).
    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        let (outcome, ttl) = match self.get(uri).await {
            Ok((set, ttl)) => (Ok(set), ttl),
            Err(why) => (Err(why), REFETCH_AFTER),
        };
        if let Ok(mut kept) = self.kept.lock() {
            // Bounded: the URIs of registered clients, rarely more than a few.
            if kept.len() > 10_000 {
                kept.clear();
            }
            kept.insert(
                uri.to_string(),
                Kept {
                    set: outcome.clone(),
                    fetched: Instant::now(),
                    ttl,
                },
            );
        }
        outcome
    }

    async fn get(&self, uri: &str) -> Result<(Value, Duration), String> {
        let Some(http) = &self.http else {
            return Err("keys by URL cannot be fetched on this node".into());
        };
        let failed = |why: String| {
            tracing::warn!(%uri, reason = %why, "a service's jwks_uri cannot be used");
            format!("the client's jwks_uri {uri}: {why}")
        };
        let mut r = http
            .get(uri)
            .timeout(Duration::from_secs(5))
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| {
                failed(if e.is_timeout() {
                    "no answer within 5 s".into()
                } else {
                    "cannot be reached at a public address".into()
                })
            })?;
        if !r.status().is_success() {
            return Err(failed(format!("HTTP {}", r.status().as_u16())));
        }
        let ttl = max_age(r.headers().get("cache-control"));
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|_| failed("cut off".into()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BYTES {
                return Err(failed("larger than 64 KiB".into()));
            }
        }
        let set: Value = serde_json::from_slice(&body).map_err(|_| failed("not JSON".into()))?;
        parse_jwks(&set).map_err(|e| failed(format!("not a JWKS ({e})")))?;
        Ok((set, ttl))
    }
}

/// How long to keep a set, from its `Cache-Control` (RFC 9111 §5.2.2): `max-age`
/// bounded by an hour; `no-store` or `no-cache`, not at all (but a second, as any
/// fetch, [`REFETCH_AFTER`]); 5 minutes otherwise.
fn max_age(header: Option<&reqwest::header::HeaderValue>) -> Duration {
    let Some(v) = header.and_then(|h| h.to_str().ok()) else {
        return DEFAULT_TTL;
    };
    let mut ttl = DEFAULT_TTL;
    for d in v.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(secs) = d.strip_prefix("max-age=")
            && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
        {
            ttl = Duration::from_secs(secs).min(MAX_TTL);
        }
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_bounds_how_long_keys_are_kept() {
        let h = |s: &str| reqwest::header::HeaderValue::from_str(s).unwrap();
        assert_eq!(max_age(None), DEFAULT_TTL);
        assert_eq!(
            max_age(Some(&h("public, max-age=120"))),
            Duration::from_secs(120)
        );
        assert_eq!(max_age(Some(&h("max-age=999999"))), MAX_TTL);
        assert_eq!(max_age(Some(&h("max-age=0"))), Duration::ZERO);
        assert_eq!(max_age(Some(&h("no-store"))), Duration::ZERO);
        assert_eq!(max_age(Some(&h("max-age=abc"))), DEFAULT_TTL);
    }
}
