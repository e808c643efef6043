//! The running gateway: the snapshot it decides from (rebuilt off the request path),
//! machine-to-machine tokens, the verified-token cache, and what the call pipeline
//! (`service/call.rs`: ready, resolve, authenticate, authorise, admit, forward,
//! minimise, journal, deliver) needs: the habilitation check, the caller assertion,
//! the provider's answer, the journal entry.

mod call;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use socle_catalogue::{Catalogue, PivotFields, Search};
use socle_identity::{Identity, KeyRing, Provider};
use socle_journal::{Entry, EntryKind, Journal};
use socle_store::{GatewayStore, Store};

use crate::error::{GatewayError, Result};
use crate::jwt;
use crate::limits::{Quotas, RateLimits, RateState};
use crate::minimise::minimise;
use crate::policy::{self, Grant, Operation, Purpose, Route, Snapshot};
use crate::stats::Stats;
use crate::upstream::{Answer, Failure, Upstream};

/// Settings of the gateway, validated by the binary's configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The platform's public URL (issuer of tokens and assertions).
    pub public_url: String,
    pub connect_timeout: Duration,
    /// Longest wait for the provider's whole answer.
    pub timeout: Duration,
    /// Lifetime of machine-to-machine access tokens, seconds.
    pub token_ttl: i64,
    /// Lifetime of caller assertions, seconds (reused within it).
    pub assertion_ttl: i64,
    /// Largest answer accepted from a provider, bytes.
    pub max_response: usize,
    /// Bytes of providers' answers held at once across all calls (then `503
    /// gateway_busy`): bounds the gateway's memory whatever the providers send.
    pub response_memory: usize,
    /// Calls per second one client address may make to an open API.
    pub open_rate: u32,
    /// Seconds the gateway keeps serving on a snapshot it could not rebuild.
    pub stale_after: i64,
}

impl GatewayConfig {
    pub fn new(public_url: &str) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            token_ttl: 900,
            assertion_ttl: 60,
            max_response: 8 * 1024 * 1024,
            response_memory: 32 * 1024 * 1024,
            open_rate: 10,
            stale_after: 10,
        }
    }

    /// The issuer of the platform's tokens (the OpenID provider's).
    pub fn issuer(&self) -> String {
        format!("{}/api/v2", self.public_url)
    }

    fn audience(&self) -> String {
        format!("{}/gateway", self.public_url)
    }
}

/// One call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub organisation: String,
    pub api: String,
    /// `v1`…
    pub version: String,
    /// The rest of the path after the version, without its leading `/`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client_ip: IpAddr,
    pub request_id: String,
}

/// The answer released to the caller.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Who calls.
#[derive(Debug, Clone)]
enum Caller {
    /// A service with the credentials of a habilitation.
    Machine {
        habilitation: String,
        client_id: String,
        scopes: Vec<String>,
        /// Tag of the secret the token was obtained with.
        credentials: String,
    },
    /// A service on a person's behalf, with the access token the person's login gave it.
    Person {
        client_id: String,
        organisation: String,
        identity: Box<Identity>,
        identity_hash: String,
        /// The login released the pivot identity to the service.
        pivot: bool,
        /// The eIDAS level of the person's login.
        acr: socle_identity::Eidas,
    },
}

#[derive(Debug, Clone)]
struct Cached {
    caller: Caller,
    /// Unix seconds.
    until: i64,
}

/// One forwarded exchange, as journaled.
#[derive(Clone, Copy)]
struct Exchange<'a> {
    call: &'a Call,
    route: &'a Route,
    /// The operation performed, as the document names it (method and template).
    operation: &'a Operation,
    grant: &'a Option<Arc<Grant>>,
    caller: &'a Option<Caller>,
    purpose: &'a Option<Purpose>,
    granted: &'a [String],
    request_hash: &'a str,
    /// Hex of the exchange's 32 random bytes that key the journal's hashes.
    journal_key: &'a str,
    started: Instant,
    consent: Option<&'a str>,
    /// The identity hash of the person a machine call is about (from the pivot it
    /// carries, or as the provider named them).
    subject: Option<&'a str>,
}

/// What a caller assertion is reused for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AssertionKey {
    client_id: String,
    habilitation: String,
    scopes: Vec<String>,
    purpose: Purpose,
    person: Option<String>,
}

const PURPOSE_PARAMS: [&str; 3] = ["context", "recipient", "object"];

/// The caller's headers forwarded to the provider: content negotiation, the body's
/// type and conditional requests. Everything else stays behind — hop-by-hop headers
/// (RFC 9110 §7.6.1), credentials, cookies, addressing (`Forwarded`, `X-Forwarded-*`,
/// `True-Client-IP`…), and the method and URL overrides some frameworks honour
/// (`X-HTTP-Method-Override`, `X-Original-URL`…), which would let a caller reach an
/// operation its scopes do not cover. No `Accept-Encoding` or `Range`: the answer is
/// read whole and minimised.
const FORWARDED: [&str; 8] = [
    "accept",
    "accept-language",
    "content-type",
    "content-language",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Response headers the provider may send through; everything else (Server,
/// Set-Cookie, X-Powered-By, Cache-Control, internal tracing…) stays behind. Every
/// answer carries `Cache-Control: no-store` instead (RFC 9111 §5.2.2.5): it was
/// obtained with the caller's credentials and usually concerns a person.
const PASSED_BACK: [&str; 2] = ["content-type", "content-language"];

/// A short tag of a secret's hash, carried in tokens (not enough to guess anything).
fn secret_tag(hash: &str) -> String {
    sha256_hex(format!("tag:{hash}").as_bytes())[..16].to_string()
}

/// What the journal publishes of an exchange's request or response hash: hex
/// HMAC-SHA256 of the hash's hex under the exchange's key (hex, as sent in
/// `X-Socle-Journal-Key`). Whoever holds the key and the hash finds the entry; no one
/// else learns anything from it.
pub fn journal_hash(key_hex: &str, hash_hex: &str) -> String {
    use hmac::{KeyInit, Mac};
    let key = hex::decode(key_hex).unwrap_or_default();
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(hash_hex.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

use socle_core::clock::{now, today};
use socle_core::sha256_hex;

fn seconds_to_midnight() -> i64 {
    let n = time::OffsetDateTime::now_utc();
    86_400 - i64::from(n.hour()) * 3600 - i64::from(n.minute()) * 60 - i64::from(n.second())
}

struct Inner {
    config: GatewayConfig,
    store: Store,
    catalogue: Catalogue,
    journal: Journal,
    keys: KeyRing,
    identity: Provider,
    upstream: Upstream,
    snapshot: RwLock<Arc<Snapshot>>,
    tokens: RwLock<HashMap<[u8; 32], Cached>>,
    assertions: Mutex<HashMap<AssertionKey, (String, i64)>>,
    rates: RateLimits,
    quotas: Quotas,
    stats: Stats,
    reloading: tokio::sync::Mutex<()>,
    /// When the snapshot was last rebuilt (Unix seconds).
    snapshot_at: std::sync::atomic::AtomicI64,
}

/// The gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Builds the gateway and its first snapshot.
    pub async fn open(
        config: GatewayConfig,
        store: Store,
        catalogue: Catalogue,
        journal: Journal,
        keys: KeyRing,
        identity: Provider,
    ) -> Result<Gateway> {
        let upstream = Upstream::new(
            config.connect_timeout,
            config.timeout,
            config.max_response,
            config.response_memory,
        )
        .map_err(|e| {
            GatewayError::unavailable("gateway_unavailable", format!("HTTP client: {e}"))
        })?;
        let g = Gateway {
            inner: Arc::new(Inner {
                config,
                store,
                catalogue,
                journal,
                keys,
                identity,
                upstream,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                tokens: RwLock::new(HashMap::new()),
                assertions: Mutex::new(HashMap::new()),
                rates: RateLimits::default(),
                quotas: Quotas::default(),
                stats: Stats::default(),
                reloading: tokio::sync::Mutex::new(()),
                snapshot_at: std::sync::atomic::AtomicI64::new(0),
            }),
        };
        g.reload().await?;
        Ok(g)
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rebuilds the snapshot from the store and swaps it in (every second in the
    /// background, and at once after a change made on this node).
    pub async fn reload(&self) -> Result<()> {
        let _one = self.inner.reloading.lock().await;
        let catalogue_error = |e: socle_catalogue::CatalogueError| {
            tracing::error!(error = %e, "gateway: cannot read the catalogue");
            GatewayError::unavailable("store_unavailable", "the catalogue cannot be read")
        };
        let apis = self
            .inner
            .catalogue
            .search(&Search::default())
            .await
            .map_err(catalogue_error)?
            .into_iter()
            .map(|l| l.api)
            .collect();
        let organisations = self
            .inner
            .catalogue
            .organisations()
            .await
            .map_err(catalogue_error)?;
        let mut habilitations = Vec::new();
        for doc in self.inner.store.validated_habilitations().await? {
            match serde_json::from_str::<socle_catalogue::habilitation::Habilitation>(&doc) {
                // An integration's client logs people in; it calls no API.
                Ok(h) if h.is_integration() => {}
                Ok(h) => habilitations.push(h),
                Err(e) => tracing::error!(error = %e, "gateway: unreadable habilitation skipped"),
            }
        }
        // The dictionary's items about people: an API declaring one names its person.
        let personal: std::collections::BTreeSet<String> = self
            .inner
            .catalogue
            .data_items()
            .await
            .map_err(catalogue_error)?
            .into_iter()
            .filter(|d| d.personal)
            .map(|d| d.id)
            .collect();
        let (snapshot, skipped) = Snapshot::build(apis, organisations, habilitations, &personal);
        for s in skipped {
            tracing::error!(api = %s, "gateway: API with an unusable upstream URL left out");
        }
        let snapshot = Arc::new(snapshot);
        match self.inner.snapshot.write() {
            Ok(mut s) => *s = snapshot,
            Err(p) => *p.into_inner() = snapshot,
        }
        self.inner
            .snapshot_at
            .store(now(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Background upkeep, every second: snapshot, quota counters, expired cache
    /// entries.
    pub async fn tick(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "gateway: snapshot not rebuilt");
        }
        if let Err(e) = self.inner.quotas.flush(&self.inner.store).await {
            tracing::warn!(error = %e, "gateway: quota counters not saved (kept for the next try)");
        }
        let t = now();
        if let Ok(mut c) = self.inner.tokens.write() {
            c.retain(|_, v| v.until > t);
        }
        if let Ok(mut a) = self.inner.assertions.lock() {
            a.retain(|_, v| v.1 > t);
        }
    }

    /// Saves the quota counters (at shutdown).
    pub async fn flush(&self) {
        if let Err(e) = self.inner.quotas.flush(&self.inner.store).await {
            tracing::warn!(error = %e, "gateway: quota counters not saved");
        }
    }

    // ----- tokens -------------------------------------------------------------------

    /// The token endpoint's `client_credentials` grant (RFC 6749 §4.4) for the
    /// credentials of a validated habilitation: a signed JWT access token (RFC 9068)
    /// whose scopes are the validated ones, or the requested subset of them.
    pub fn issue_token(
        &self,
        form: &BTreeMap<String, String>,
        basic: Option<(String, String)>,
    ) -> Result<Value> {
        let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(b), None, None) => b,
            (None, Some(id), Some(s)) => (id.clone(), s.clone()),
            (Some(_), _, _) => {
                return Err(GatewayError::oauth(
                    400,
                    "invalid_request",
                    "authenticate with one method only",
                ));
            }
            _ => {
                return Err(GatewayError::oauth(
                    401,
                    "invalid_client",
                    "client authentication is required (client_secret_basic or client_secret_post)",
                ));
            }
        };
        let bad_client = || {
            GatewayError::oauth(
                401,
                "invalid_client",
                "unknown client, wrong secret, or habilitation not in force",
            )
            .header("www-authenticate", "Basic realm=\"socle\"")
        };
        let snapshot = self.snapshot();
        let Some(grant) = snapshot.grant_by_client(&client_id) else {
            return Err(bad_client());
        };
        let Some(hash) = &grant.secret_hash else {
            return Err(bad_client());
        };
        if !socle_identity::ct_eq(sha256_hex(secret.as_bytes()).as_bytes(), hash.as_bytes()) {
            return Err(bad_client());
        }
        if !grant.in_force(&today()) {
            return Err(bad_client());
        }
        let scopes: Vec<String> = match form.get("scope") {
            None => grant.scopes.clone(),
            Some(s) => {
                let asked: Vec<String> = s
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect();
                if asked.is_empty() {
                    // RFC 6749 §3.3: a token for nothing is of no use; name the scopes
                    // or leave the parameter out to get all of the habilitation's.
                    return Err(GatewayError::oauth(
                        400,
                        "invalid_scope",
                        "the scope parameter is empty: name the scopes wanted, or omit it for all those of the habilitation",
                    ));
                }
                if let Some(x) = asked.iter().find(|x| !grant.scopes.contains(x)) {
                    return Err(GatewayError::oauth(
                        400,
                        "invalid_scope",
                        format!("scope {x:?} is not granted by the habilitation"),
                    ));
                }
                asked
            }
        };
        let t = now();
        let ttl = self.inner.config.token_ttl;
        let token = jwt::sign(
            &self.inner.keys,
            "at+jwt",
            vec![
                ("iss", json!(self.inner.config.issuer())),
                ("sub", json!(client_id)),
                ("aud", json!(self.inner.config.audience())),
                ("iat", json!(t)),
                ("exp", json!(t + ttl)),
                ("jti", json!(socle_identity::random_token(16))),
                ("client_id", json!(client_id)),
                ("scope", json!(scopes.join(" "))),
                ("habilitation", json!(grant.id)),
                // Which secret it was obtained with: a renewed secret ends it.
                ("credentials", json!(secret_tag(hash))),
            ],
        )?;
        metrics::counter!("socle_gateway_tokens_issued_total").increment(1);
        Ok(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scopes.join(" "),
        }))
    }

    /// Who presents `token`: from the cache, or verified now and cached (by hash,
    /// until the token expires; at most a minute for a person's token, so that a
    /// revoked login stops being accepted within a minute).
    async fn caller(&self, token: &str) -> Result<Caller> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let t = now();
        if let Ok(c) = self.inner.tokens.read()
            && let Some(hit) = c.get(&key)
            && hit.until > t
        {
            return Ok(hit.caller.clone());
        }
        let invalid = |d: &str| GatewayError::unauthenticated("invalid_token", d);
        let cached = if token.split('.').count() == 3 {
            let p = self
                .inner
                .keys
                .verify(token)
                .map_err(|_| invalid("the access token is not signed by this platform"))?;
            let claim = |k: &str| p.claim(k).and_then(Value::as_str).map(str::to_string);
            if claim("iss").as_deref() != Some(self.inner.config.issuer().as_str())
                || !p
                    .audience()
                    .is_some_and(|a| a.contains(&self.inner.config.audience().as_str()))
            {
                return Err(invalid("the access token is not meant for the gateway"));
            }
            let exp = p.claim("exp").and_then(Value::as_i64).unwrap_or(0);
            if exp <= t {
                return Err(invalid("the access token has expired"));
            }
            let (Some(habilitation), Some(client_id)) = (claim("habilitation"), claim("client_id"))
            else {
                return Err(invalid("the access token names no habilitation"));
            };
            let scopes = claim("scope")
                .unwrap_or_default()
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            Cached {
                caller: Caller::Machine {
                    habilitation,
                    client_id,
                    scopes,
                    credentials: claim("credentials").unwrap_or_default(),
                },
                until: exp,
            }
        } else {
            let p = self
                .inner
                .identity
                .person_token(token)
                .await
                .map_err(|e| match e {
                    socle_identity::IdentityError::Store(s) => GatewayError::from(s),
                    other => invalid(&other.to_string()),
                })?;
            Cached {
                caller: Caller::Person {
                    pivot: p.scopes.iter().any(|s| s == "identite_pivot"),
                    client_id: p.client_id,
                    organisation: p.organisation,
                    identity: Box::new(p.identity),
                    identity_hash: p.identity_hash,
                    acr: p.acr,
                },
                until: p.expires_at.min(t + 60),
            }
        };
        if let Ok(mut c) = self.inner.tokens.write() {
            if c.len() > 200_000 {
                c.retain(|_, v| v.until > t);
            }
            c.insert(key, cached.clone());
        }
        Ok(cached.caller)
    }

    // ----- calls (the pipeline itself: `call.rs`) ------------------------------------

    /// Checks the caller's habilitation for the route; returns it and the scopes
    /// granted for this call.
    fn habilitation(
        &self,
        snapshot: &Snapshot,
        route: &Route,
        caller: &Caller,
    ) -> Result<(Arc<Grant>, Vec<String>)> {
        let (grant, token_scopes) = match caller {
            Caller::Machine {
                habilitation,
                scopes,
                credentials,
                ..
            } => {
                let g = snapshot.grant(habilitation).ok_or_else(|| {
                    GatewayError::forbidden(
                        "habilitation_inactive",
                        "the habilitation of these credentials is no longer validated (revoked, expired or replaced)",
                    )
                })?;
                if g.secret_hash.as_deref().map(secret_tag).as_deref() != Some(credentials.as_str())
                {
                    return Err(GatewayError::unauthenticated(
                        "invalid_token",
                        "the habilitation's secret was renewed: obtain a new token",
                    ));
                }
                (g, Some(scopes))
            }
            Caller::Person {
                organisation,
                pivot,
                ..
            } => {
                if !pivot {
                    return Err(GatewayError::forbidden(
                        "identity_not_released",
                        "the person's login did not release their pivot identity (scope identite_pivot) to the service",
                    ));
                }
                let g = snapshot
                    .grant_for(organisation, &route.api.id)
                    .ok_or_else(|| {
                        GatewayError::forbidden(
                            "no_habilitation",
                            "the service has no validated habilitation for this API",
                        )
                    })?;
                (g, None)
            }
        };
        if grant.api != route.api.id {
            return Err(GatewayError::forbidden(
                "wrong_api",
                format!(
                    "the habilitation covers the API {:?}, not this one",
                    grant.api
                ),
            ));
        }
        let today = today();
        if !grant.in_force(&today) {
            return Err(GatewayError::forbidden(
                "habilitation_expired",
                format!(
                    "the habilitation is in force from {} to {}",
                    grant.valid_from, grant.valid_until
                ),
            ));
        }
        let granted: Vec<String> = grant
            .scopes
            .iter()
            .filter(|s| token_scopes.is_none_or(|t| t.contains(s)))
            .cloned()
            .collect();
        Ok((grant, granted))
    }

    /// The caller assertion for (caller, habilitation, purpose, person), reused for
    /// its short lifetime; the request itself is bound by `X-Socle-Request-Hash`.
    fn assertion(
        &self,
        grant: &Grant,
        caller: &Caller,
        purpose: &Purpose,
        scopes: &[String],
    ) -> Result<String> {
        let (client_id, person) = match caller {
            Caller::Machine { client_id, .. } => (client_id.clone(), None),
            Caller::Person {
                client_id,
                identity_hash,
                ..
            } => (client_id.clone(), Some(identity_hash.clone())),
        };
        let key = AssertionKey {
            client_id: client_id.clone(),
            habilitation: grant.id.clone(),
            scopes: scopes.to_vec(),
            purpose: purpose.clone(),
            person,
        };
        let t = now();
        if let Ok(a) = self.inner.assertions.lock()
            && let Some((jwt, exp)) = a.get(&key)
            && *exp > t + 10
        {
            return Ok(jwt.clone());
        }
        let exp = t + self.inner.config.assertion_ttl;
        let mut claims = vec![
            ("iss", json!(self.inner.config.issuer())),
            ("sub", json!(grant.requester)),
            ("aud", json!(grant.producer)),
            ("iat", json!(t)),
            ("exp", json!(exp)),
            ("jti", json!(socle_identity::random_token(16))),
            ("client_id", json!(client_id)),
            ("habilitation", json!(grant.id)),
            ("api", json!(grant.api)),
            ("scope", json!(scopes.join(" "))),
            ("context", json!(purpose.context)),
            ("recipient", json!(purpose.recipient)),
            ("object", json!(purpose.object)),
            ("legal_basis", json!(grant.legal_reference())),
        ];
        if let Caller::Person { identity, .. } = caller {
            claims.push((
                "person",
                serde_json::to_value(identity.as_ref()).unwrap_or(Value::Null),
            ));
        }
        let jwt = jwt::sign(&self.inner.keys, "socle-assertion+jwt", claims)?;
        if let Ok(mut a) = self.inner.assertions.lock() {
            if a.len() > 100_000 {
                a.retain(|_, v| v.1 > t);
            }
            a.insert(key, (jwt.clone(), exp));
        }
        Ok(jwt)
    }

    fn signature(
        &self,
        request_id: &str,
        request_hash: &str,
        response_hash: &str,
        grant: &Option<Arc<Grant>>,
    ) -> Result<String> {
        let mut claims = vec![
            ("iss", json!(self.inner.config.issuer())),
            ("iat", json!(now())),
            ("request_id", json!(request_id)),
            ("request_hash", json!(request_hash)),
            ("response_hash", json!(response_hash)),
        ];
        if let Some(g) = grant {
            claims.push(("aud", json!(g.requester)));
        }
        jwt::sign(&self.inner.keys, "socle-delivery+jwt", claims)
    }

    fn record(&self, route: &Route, grant: &Option<Arc<Grant>>, error: bool, micros: u64) {
        let service = grant
            .as_ref()
            .map(|g| g.requester.clone())
            .unwrap_or_else(|| "open".into());
        self.inner
            .stats
            .record(&route.api.id, &service, error, micros);
        metrics::counter!("socle_gateway_calls_total", "api" => route.api.id.clone(), "service" => service,
            "outcome" => if error { "error" } else { "ok" })
        .increment(1);
        metrics::histogram!("socle_gateway_call_duration_seconds", "api" => route.api.id.clone())
            .record(micros as f64 / 1e6);
    }

    /// Sends the request upstream and reads the answer (bounded).
    async fn send(
        &self,
        call: &Call,
        route: &Route,
        headers: HeaderMap,
        uri: http::Uri,
    ) -> Result<Answer> {
        let sent = self
            .inner
            .upstream
            .send(call.method.clone(), uri, headers, call.body.clone())
            .await;
        sent.map_err(|f| match f {
            Failure::Timeout => GatewayError::new(
                504,
                "upstream_timeout",
                "Provider timeout",
                format!(
                    "the provider did not answer within {} ms",
                    self.inner.config.timeout.as_millis()
                ),
            ),
            Failure::TooLarge(max) => GatewayError::new(
                502,
                "upstream_invalid",
                "Invalid provider answer",
                format!("the provider's answer exceeds {max} bytes"),
            ),
            Failure::CutOff(reason) => {
                tracing::warn!(api = %route.api.id, error = %reason, "gateway: provider's answer cut off");
                GatewayError::new(
                    502,
                    "upstream_invalid",
                    "Invalid provider answer",
                    "the provider's answer was cut off",
                )
            }
            Failure::Busy => GatewayError::unavailable(
                "gateway_busy",
                "the gateway is reading as many providers' answers as its memory allows; retry in a moment",
            )
            .header("retry-after", "1"),
            Failure::Unreachable(reason) => {
                // The reason names no URL: its path and query may identify a person.
                tracing::warn!(api = %route.api.id, error = %reason, "gateway: provider unreachable");
                GatewayError::new(
                    502,
                    "upstream_unavailable",
                    "Provider unavailable",
                    "the provider could not be reached",
                )
            }
        })
    }

    async fn journal(
        &self,
        ex: &Exchange<'_>,
        response_hash: Option<&str>,
        status: u16,
    ) -> Result<()> {
        let Exchange {
            call,
            route,
            operation,
            grant,
            caller,
            purpose,
            granted,
            request_hash,
            journal_key,
            started,
            consent,
            subject,
        } = *ex;
        let actor = match caller {
            Some(Caller::Machine { client_id, .. }) | Some(Caller::Person { client_id, .. }) => {
                format!("client:{client_id}")
            }
            None => "anonymous".to_string(),
        };
        let outcome = if (200..400).contains(&status) {
            "ok"
        } else {
            "error"
        };
        let mut e = Entry::new(EntryKind::Exchange, actor, outcome);
        if let Some(g) = grant {
            e = e.organisation(g.requester.clone());
        }
        e = e.organisation(route.api.organisation.clone());
        e.request_hash = Some(journal_hash(journal_key, request_hash));
        e.response_hash = response_hash.map(|h| journal_hash(journal_key, h));
        if let Some(p) = purpose {
            e.purpose = Some(format!("{} / {}", p.context, p.object));
            e = e.detail("recipient", p.recipient.clone());
        }
        let person = match (caller, subject) {
            (Some(Caller::Person { identity_hash, .. }), _) => Some(identity_hash.as_str()),
            (_, named) => named,
        };
        let person = match person {
            Some(identity_hash) => {
                let key = match grant {
                    Some(g) if g.visible_after.is_some() => {
                        policy::deferred_person_key(&g.id, identity_hash)
                    }
                    _ => identity_hash.to_string(),
                };
                Some(self.inner.journal.subject(&key))
            }
            _ => None,
        };
        if let Some(g) = grant {
            e.legal_basis = Some(match (consent, &person) {
                // The consent's id keyed to this entry's subject: in clear it would
                // chain the person's exchanges together (docs/JOURNAL.md).
                (Some(c), Some(p)) => format!("consentement ({})", p.keyed(c)),
                (Some(_), None) => "consentement".to_string(),
                (None, _) => g.legal_reference(),
            });
            e = e
                .detail("habilitation", g.id.clone())
                .detail("service", g.requester.clone());
        }
        if let Some(p) = person {
            e = e.subject(p);
        }
        e = e
            .detail("provider", route.api.organisation.clone())
            .detail("api", route.api.id.clone())
            .detail("api_version", route.api.version.clone())
            .detail("method", call.method.as_str())
            .detail("operation", operation.name())
            .detail("scopes", granted.join(","))
            .detail("data_items", route.data_items(granted).join(","))
            .detail("status", status.to_string())
            .detail("request_id", call.request_id.clone())
            .detail(
                "latency_ms",
                format!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
            );
        self.inner.journal.append(vec![e]).await.map_err(|err| {
            tracing::error!(error = %err, "gateway: journal unavailable, answer withheld");
            GatewayError::unavailable(
                "journal_unavailable",
                "the exchange could not be recorded in the journal, so its answer is withheld; retry later",
            )
        })
    }
}

fn rate_headers(s: RateState) -> [(&'static str, String); 3] {
    [
        ("ratelimit-limit", s.limit.to_string()),
        ("ratelimit-remaining", s.remaining.to_string()),
        ("ratelimit-reset", s.reset.to_string()),
    ]
}

/// The person a request names by its pivot identity (`spec` says where): their
/// identity hash, as the identity federation computes it. The error names what is
/// missing or invalid, never a value.
fn pivot_subject(
    spec: &PivotFields,
    query: &str,
    body: &[u8],
) -> std::result::Result<String, String> {
    // Each pivot field once: a repeated one could be read one way here and another
    // way by the provider, attributing the exchange to someone else.
    let mut params: HashMap<String, Option<String>> = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(k.into_owned())
            .and_modify(|seen| *seen = None)
            .or_insert_with(|| Some(v.into_owned()));
    }
    let names: Vec<&str> = spec.names().iter().map(|(_, n)| *n).collect();
    let in_query =
        url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| names.contains(&k.as_ref()));
    let body_object = serde_json::from_slice::<UniqueObject>(body);
    // The pivot in one place only: a provider that merges query and body (as some
    // frameworks do) must not read another person than the one hashed here.
    let json: Option<serde_json::Map<String, Value>> = if spec.in_body() {
        if in_query {
            return Err("the pivot identity belongs in the body, not the query".into());
        }
        match body_object {
            Ok(UniqueObject(m)) => Some(m),
            Err(e) => {
                return Err(format!(
                    "the body must be a JSON object carrying the pivot identity once ({e})"
                ));
            }
        }
    } else {
        if let Ok(UniqueObject(m)) = &body_object
            && names.iter().any(|n| m.contains_key(*n))
        {
            return Err("the pivot identity belongs in the query, not the body".into());
        }
        None
    };
    let mut claims = serde_json::Map::new();
    for (field, name) in spec.names() {
        let value = match &json {
            Some(m) => m.get(name).cloned(),
            None => match params.get(name) {
                Some(Some(v)) => Some(Value::String(v.clone())),
                Some(None) => {
                    return Err(format!("the pivot identity's {name:?} is given twice"));
                }
                None => None,
            },
        };
        match value {
            Some(v) => {
                claims.insert(field.to_string(), v);
            }
            // Born abroad: no commune.
            None if field == "birthplace" => {}
            None => return Err(format!("the pivot identity's {name:?} is missing")),
        }
    }
    socle_identity::Identity::from_claims(&claims)
        .map(|i| i.identity_hash())
        .map_err(|e| format!("the pivot identity is invalid: {e}"))
}

/// A JSON object whose keys are each given once (serde_json keeps the last of a
/// repeated key; a provider may read the first).
struct UniqueObject(serde_json::Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<UniqueObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("{k:?} is given twice")));
                    }
                    out.insert(k, v);
                }
                Ok(UniqueObject(out))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// The person a provider's `Socle-Subject` names: an identity hash (base64 of 32
/// bytes, as the federation computes it) or the pivot identity as a JSON object.
fn provider_subject(value: &[u8]) -> std::result::Result<String, String> {
    use base64::Engine;
    if value.first() == Some(&b'{') {
        let Ok(Value::Object(claims)) = serde_json::from_slice(value) else {
            return Err("Socle-Subject is not a JSON object".into());
        };
        return socle_identity::Identity::from_claims(&claims)
            .map(|i| i.identity_hash())
            .map_err(|e| format!("Socle-Subject's pivot identity is invalid: {e}"));
    }
    let text = std::str::from_utf8(value).map_err(|_| "Socle-Subject is not text".to_string())?;
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(b) if b.len() == 32 => Ok(text.to_string()),
        _ => Err("Socle-Subject is neither an identity hash nor a pivot identity".into()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Splits the query into the purpose parameters and the query forwarded to the
/// provider (without them).
fn split_query(query: Option<&str>) -> (HashMap<String, String>, String) {
    let mut purpose = HashMap::new();
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if PURPOSE_PARAMS.contains(&k.as_ref()) {
            purpose
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        } else {
            rest.append_pair(&k, &v);
        }
    }
    (purpose, rest.finish())
}

/// Whether a `Content-Type` is JSON (`application/json` or `application/*+json`): what
/// the gateway minimises, and what its web face lets a browser show inline.
pub fn is_json(ct: Option<&HeaderValue>) -> bool {
    ct.and_then(|v| v.to_str().ok())
        .map(|v| {
            let m = v
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// What may be released of the provider's answer: minimised JSON on success; the
/// provider's own errors become the platform's, without their body.
fn deliverable(
    route: &Route,
    granted: &[String],
    status: u16,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(u16, Option<HeaderValue>, Bytes)> {
    let invalid =
        |d: &str| GatewayError::new(502, "upstream_invalid", "Invalid provider answer", d);
    match status {
        200..=299 => {}
        404 | 410 => {
            return Err(GatewayError::not_found(
                "not_found_at_provider",
                "the provider has no record matching this request",
            ));
        }
        400 | 422 => {
            return Err(GatewayError::bad_request(
                "rejected_by_provider",
                "the provider rejected the request's parameters; check them against the API's OpenAPI document",
            ));
        }
        _ => {
            tracing::warn!(api = %route.api.id, status, "gateway: provider error");
            return Err(GatewayError::new(
                502,
                "upstream_error",
                "Provider error",
                format!("the provider answered with an error (HTTP {status})"),
            ));
        }
    }
    let fields = route.fields(granted);
    let ct = headers.get(http::header::CONTENT_TYPE);
    if status == 204 || body.is_empty() {
        return Ok((status, None, Bytes::new()));
    }
    if is_json(ct) {
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| invalid("the provider's answer is not valid JSON"))?;
        let out = match &fields {
            None => doc,
            Some(f) => minimise(&doc, f),
        };
        let bytes = serde_json::to_vec(&out).map_err(|_| invalid("unserialisable answer"))?;
        Ok((
            status,
            Some(HeaderValue::from_static("application/json")),
            Bytes::from(bytes),
        ))
    } else if fields.is_none() {
        Ok((status, ct.cloned(), body))
    } else {
        Err(invalid(
            "the provider answered a non-JSON body, which the granted scopes cannot be applied to",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_hashes_are_keyed() {
        let plain = sha256_hex(b"{\"quotientFamilial\":640}");
        let key = hex::encode([7u8; 32]);
        let keyed = journal_hash(&key, &plain);
        // Python: hmac.new(bytes([7] * 32), plain.encode(), hashlib.sha256).hexdigest()
        assert_eq!(
            plain,
            "4c153a61eae3acdda3c3e76a48f1589d7cf03aca3fd24f93960b758391f21a43"
        );
        assert_eq!(
            keyed,
            "e1e20be7761dd394df3473717a952fac9198aa514380d4ba8bfbeb639d810762"
        );
        assert_eq!(keyed, journal_hash(&key, &plain), "deterministic");
        assert_ne!(keyed, journal_hash(&hex::encode([8u8; 32]), &plain));
    }

    #[test]
    fn purpose_parameters_are_taken_out() {
        let (p, rest) = split_query(Some(
            "identifiant=12&context=Cantine&recipient=1&object=o&x=%20y",
        ));
        assert_eq!(p.get("context").unwrap(), "Cantine");
        assert_eq!(p.len(), 3);
        assert_eq!(rest, "identifiant=12&x=+y");
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!crate::upstream::public_ip(ip.parse().unwrap()), "{ip}");
        }
        assert!(crate::upstream::public_ip("193.52.1.1".parse().unwrap()));
    }
}
