//! Socle as a strict OpenID Connect relying party toward identity providers (FI).
//!
//! Each provider is configured by its issuer (discovery at
//! `{issuer}/.well-known/openid-configuration` unless a discovery URL is given),
//! client credentials and the eIDAS levels it can deliver. Every login uses `state`,
//! `nonce` and PKCE S256; the ID token's signature (provider JWKS), `iss`, `aud`,
//! `azp`, `exp`, `iat` and `nonce` are checked; userinfo is fetched with the access
//! token and its `sub` must match the ID token's. Any failure is an
//! [`IdentityError::Upstream`] with a reason fit for logs (no personal data).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use josekit::jwk::{Jwk, JwkSet};
use josekit::jws::{JwsVerifier, PS256, RS256};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{IdentityError, Result};
use crate::pivot::{Eidas, Identity};

/// One identity provider, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    /// Short stable identifier (`[a-z0-9-]+`), used in forms and the journal.
    pub id: String,
    /// Name shown on the choice page.
    pub label: String,
    /// Logo URL shown on the choice page (optional).
    pub logo: Option<String>,
    pub issuer: String,
    pub discovery_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    /// eIDAS levels the provider can deliver (its contract), e.g. `[1, 2]`.
    pub eidas_levels: Vec<u8>,
    /// Scopes asked of the provider.
    pub scope: String,
    /// Longest wait for any request to the provider.
    pub timeout: Duration,
    /// A provider of fictitious people (the demonstration one): the only kind a
    /// sandbox client is offered.
    pub sandbox: bool,
}

impl ProviderSettings {
    /// The highest level this provider can deliver.
    pub fn max_level(&self) -> Eidas {
        Eidas(self.eidas_levels.iter().copied().max().unwrap_or(1))
    }

    pub fn min_level(&self) -> Eidas {
        Eidas(self.eidas_levels.iter().copied().min().unwrap_or(1))
    }
}

/// The part of the provider's discovery document the broker uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// RFC 9207: the provider puts `iss` in its authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

struct Cached {
    discovery: Discovery,
    jwks: JwkSet,
    /// Verifiers built once per key and algorithm (building one from a JWK is costly).
    verifiers: Mutex<HashMap<(usize, String), Arc<dyn JwsVerifier>>>,
    fetched: Instant,
}

/// The login parameters kept between the redirect to the provider and its answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// The provider's `auth_time` must be at least this (the service asked for a new
    /// authentication, `prompt=login`, or a recent one, `max_age`).
    #[serde(default)]
    pub fresh_after: Option<i64>,
}

/// What the service asked about the age of the authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// `prompt=login`: the person authenticates again.
    pub again: bool,
    /// `max_age`: the authentication is at most this many seconds old.
    pub max_age: Option<i64>,
}

/// What the provider vouched for.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub identity: Identity,
    /// The level really obtained: the provider's `acr` when it is an eIDAS level it is
    /// configured to deliver, otherwise the lowest level it is configured for.
    pub acr: Eidas,
    pub amr: Vec<String>,
    pub auth_time: i64,
    /// Kept to chain logout to the provider (`id_token_hint`).
    pub id_token: String,
}

/// The configured identity providers and an HTTP client to reach them.
#[derive(Clone)]
pub struct Broker {
    providers: Arc<Vec<ProviderSettings>>,
    http: reqwest::Client,
    cache: Arc<Mutex<HashMap<String, Arc<Cached>>>>,
    /// Where the providers send people back, one address per provider:
    /// `{public_url}/api/v2/oidc-callback/{id}` ([`Broker::redirect_uri`]).
    callback_base: String,
}

const CACHE_TTL: Duration = Duration::from_secs(300);
const MAX_BODY: usize = 256 * 1024;
/// Tolerated clock difference with providers.
const SKEW: i64 = 60;
/// How a refused freshness check's reason begins (the provider maps it to
/// `login_required`).
pub(crate) const NOT_AGAIN: &str = "not authenticated again as asked";

impl Broker {
    /// `callback_base`: `{public_url}/api/v2/oidc-callback`; each provider sends people
    /// back to it followed by `/{id}`.
    pub fn new(providers: Vec<ProviderSettings>, callback_base: String) -> Result<Broker> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("socle/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IdentityError::Crypto(format!("HTTP client: {e}")))?;
        Ok(Broker {
            providers: Arc::new(providers),
            http,
            cache: Arc::new(Mutex::new(HashMap::new())),
            callback_base: callback_base.trim_end_matches('/').to_string(),
        })
    }

    /// The redirect URI registered at provider `id`. Each provider has its own (RFC 9700
    /// §4.4.2.2), so an answer that comes back at one provider's address while the
    /// login waits for another is a mix-up attack, refused before any code is sent
    /// anywhere — also with providers that do not send RFC 9207's `iss`.
    pub fn redirect_uri(&self, id: &str) -> String {
        format!("{}/{id}", self.callback_base)
    }

    pub fn providers(&self) -> &[ProviderSettings] {
        &self.providers
    }

    pub fn provider(&self, id: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Providers able to deliver at least `level`.
    pub fn able(&self, level: Eidas) -> Vec<&ProviderSettings> {
        self.providers
            .iter()
            .filter(|p| p.max_level() >= level)
            .collect()
    }

    async fn get_json(&self, p: &ProviderSettings, url: &str) -> Result<Value> {
        let resp = self
            .http
            .get(url)
            .timeout(p.timeout)
            .send()
            .await
            .map_err(|e| IdentityError::upstream(&p.id, describe(&e, url)))?;
        read_json(p, url, resp).await
    }

    async fn metadata(&self, p: &ProviderSettings, refresh_keys: bool) -> Result<Arc<Cached>> {
        if !refresh_keys
            && let Ok(cache) = self.cache.lock()
            && let Some(c) = cache.get(&p.id)
            && c.fetched.elapsed() < CACHE_TTL
        {
            return Ok(c.clone());
        }
        let url = p.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                p.issuer.trim_end_matches('/')
            )
        });
        let doc = self.get_json(p, &url).await?;
        let discovery: Discovery = serde_json::from_value(doc).map_err(|e| {
            IdentityError::upstream(&p.id, format!("discovery document is malformed: {e}"))
        })?;
        if discovery.issuer != p.issuer {
            return Err(IdentityError::upstream(
                &p.id,
                format!(
                    "discovery issuer {:?} is not the configured issuer {:?}",
                    discovery.issuer, p.issuer
                ),
            ));
        }
        let jwks = self.get_json(p, &discovery.jwks_uri).await?;
        let jwks = match jwks {
            Value::Object(m) => JwkSet::from_map(m)
                .map_err(|e| IdentityError::upstream(&p.id, format!("JWKS is malformed: {e}")))?,
            _ => return Err(IdentityError::upstream(&p.id, "JWKS is not an object")),
        };
        let cached = Arc::new(Cached {
            discovery,
            jwks,
            verifiers: Mutex::new(HashMap::new()),
            fetched: Instant::now(),
        });
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(p.id.clone(), cached.clone());
        }
        Ok(cached)
    }

    /// Starts a login at `provider`: the URL to send the person to, and what to keep.
    pub async fn start(
        &self,
        provider: &str,
        acr: Eidas,
        fresh: Freshness,
    ) -> Result<(String, Pending)> {
        let p = self
            .provider(provider)
            .ok_or_else(|| IdentityError::Interaction("unknown identity provider".into()))?;
        let meta = self.metadata(p, false).await?;
        let now = crate::now();
        let pending = Pending {
            provider: p.id.clone(),
            state: crate::random_token(32),
            nonce: crate::random_token(32),
            verifier: crate::random_token(32),
            fresh_after: [
                fresh.again.then_some(now),
                fresh.max_age.map(|m| now.saturating_sub(m)),
            ]
            .into_iter()
            .flatten()
            .max(),
        };
        let mut url = url::Url::parse(&meta.discovery.authorization_endpoint)
            .map_err(|_| IdentityError::upstream(&p.id, "authorization_endpoint is not a URL"))?;
        // Ask for the level the service needs, not less, never more than the provider has.
        let asked = acr.max(p.min_level()).min(p.max_level());
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &p.client_id)
            .append_pair("redirect_uri", &self.redirect_uri(&p.id))
            .append_pair("scope", &p.scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair(
                "code_challenge",
                &crate::sha256_b64url(pending.verifier.as_bytes()),
            )
            .append_pair("code_challenge_method", "S256")
            .append_pair("acr_values", asked.acr());
        // Passed on, so that a provider with its own session authenticates the person
        // again (OpenID Connect Core §3.1.2.1); its auth_time is checked on return. With
        // prompt=login, max_age=0 too: Core §2 makes auth_time required only when
        // max_age was sent.
        if fresh.again {
            url.query_pairs_mut().append_pair("prompt", "login");
        }
        if let Some(m) = if fresh.again { Some(0) } else { fresh.max_age } {
            url.query_pairs_mut().append_pair("max_age", &m.to_string());
        }
        Ok((url.to_string(), pending))
    }

    /// Completes a login: checks the answer's issuer (RFC 9207), exchanges the code,
    /// checks the ID token, fetches userinfo and validates the identity.
    ///
    /// `iss` is the authorization response's `iss` parameter: when present it must be
    /// the provider's issuer, and a provider that announces it must send it — otherwise
    /// another provider could have the person's code for this one sent to it (a
    /// mix-up attack, RFC 9207 §1).
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        iss: Option<&str>,
    ) -> Result<Authenticated> {
        let p = self
            .provider(&pending.provider)
            .ok_or_else(|| IdentityError::Interaction("unknown identity provider".into()))?;
        let meta = self.metadata(p, false).await?;
        match iss {
            Some(i) if i != p.issuer => {
                return Err(IdentityError::upstream(
                    &p.id,
                    "authorization response iss is not the provider's issuer",
                ));
            }
            None if meta
                .discovery
                .authorization_response_iss_parameter_supported =>
            {
                return Err(IdentityError::upstream(
                    &p.id,
                    "authorization response has no iss although the provider announces it",
                ));
            }
            _ => {}
        }
        let redirect_uri = self.redirect_uri(&p.id);
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let post_only = meta
            .discovery
            .token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|m| {
                m.iter().any(|x| x == "client_secret_post")
                    && !m.iter().any(|x| x == "client_secret_basic")
            });
        let mut req = self
            .http
            .post(&meta.discovery.token_endpoint)
            .timeout(p.timeout);
        req = if post_only {
            let mut f: Vec<(&str, &str)> = form.to_vec();
            f.push(("client_id", &p.client_id));
            f.push(("client_secret", &p.client_secret));
            req.form(&f)
        } else {
            req.basic_auth(
                form_encode(&p.client_id),
                Some(form_encode(&p.client_secret)),
            )
            .form(&form)
        };
        let resp = req
            .send()
            .await
            .map_err(|e| IdentityError::upstream(&p.id, describe(&e, "token endpoint")))?;
        let token = read_json(p, "token endpoint", resp).await?;
        let id_token = token
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| IdentityError::upstream(&p.id, "token response has no id_token"))?
            .to_string();
        let access_token = token
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| IdentityError::upstream(&p.id, "token response has no access_token"))?
            .to_string();

        let claims = match self.verify_id_token(p, &meta, &id_token) {
            Ok(c) => c,
            Err(_) => {
                // The provider may have rotated its keys: fetch them once more.
                let meta = self.metadata(p, true).await?;
                self.verify_id_token(p, &meta, &id_token)?
            }
        };
        if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
            return Err(IdentityError::upstream(
                &p.id,
                "ID token nonce does not match",
            ));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| IdentityError::upstream(&p.id, "ID token has no sub"))?
            .to_string();

        let mut identity_claims = claims.clone();
        if let Some(ui) = &meta.discovery.userinfo_endpoint {
            let resp = self
                .http
                .get(ui)
                .bearer_auth(&access_token)
                .timeout(p.timeout)
                .send()
                .await
                .map_err(|e| IdentityError::upstream(&p.id, describe(&e, "userinfo endpoint")))?;
            let is_jwt = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/jwt"));
            let info = if is_jwt {
                let body = read_text(p, "userinfo endpoint", resp).await?;
                let c = self.verify_jwt(p, &meta, body.trim())?;
                // OpenID Connect Core §5.3.2: a signed userinfo names its issuer and
                // audience; when it does, they must be the provider and Socle.
                if c.get("iss")
                    .is_some_and(|i| i.as_str() != Some(p.issuer.as_str()))
                {
                    return Err(IdentityError::upstream(
                        &p.id,
                        "userinfo issuer is not the provider",
                    ));
                }
                let aud_ok = match c.get("aud") {
                    None => true,
                    Some(Value::String(a)) => *a == p.client_id,
                    Some(Value::Array(a)) => {
                        a.iter().any(|x| x.as_str() == Some(p.client_id.as_str()))
                    }
                    Some(_) => false,
                };
                if !aud_ok {
                    return Err(IdentityError::upstream(
                        &p.id,
                        "userinfo audience is not Socle",
                    ));
                }
                Value::Object(c)
            } else {
                read_json(p, "userinfo endpoint", resp).await?
            };
            let Value::Object(info) = info else {
                return Err(IdentityError::upstream(&p.id, "userinfo is not an object"));
            };
            if info.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                return Err(IdentityError::upstream(
                    &p.id,
                    "userinfo sub differs from the ID token's",
                ));
            }
            identity_claims.extend(info);
        }
        let identity = Identity::from_claims(&identity_claims).map_err(|reason| {
            IdentityError::upstream(&p.id, format!("invalid identity: {reason}"))
        })?;
        let acr = claims
            .get("acr")
            .and_then(Value::as_str)
            .and_then(Eidas::parse)
            .filter(|l| p.eidas_levels.contains(&l.0))
            .unwrap_or_else(|| p.min_level());
        let amr = claims
            .get("amr")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // An auth_time in the future is not believed (nor copied into Socle's tokens).
        let given = numeric(&claims, "auth_time").filter(|t| *t <= crate::now() + SKEW);
        // As recent as the service asked: the provider's own auth_time, with SKEW.
        if let Some(bound) = pending.fresh_after
            && given.is_none_or(|t| t.saturating_add(SKEW) < bound)
        {
            return Err(IdentityError::upstream(
                &p.id,
                format!("{NOT_AGAIN} (prompt=login or max_age): auth_time missing or too old"),
            ));
        }
        Ok(Authenticated {
            identity,
            acr,
            amr,
            auth_time: given.unwrap_or_else(crate::now),
            id_token,
        })
    }

    fn verify_jwt(
        &self,
        p: &ProviderSettings,
        meta: &Cached,
        jwt: &str,
    ) -> Result<Map<String, Value>> {
        let header = josekit::jwt::decode_header(jwt)
            .map_err(|_| IdentityError::upstream(&p.id, "token is not a JWT"))?;
        let alg = header
            .claim("alg")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string();
        let kid = header
            .claim("kid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let candidates: Vec<&Jwk> = match &kid {
            Some(k) => meta.jwks.get(k),
            None => meta.jwks.keys(),
        };
        let mut last = "no key of the provider matches the token".to_string();
        for jwk in candidates {
            let index = meta
                .jwks
                .keys()
                .iter()
                .position(|k| std::ptr::eq(*k, jwk))
                .unwrap_or(usize::MAX);
            let cached = meta
                .verifiers
                .lock()
                .ok()
                .and_then(|v| v.get(&(index, alg.clone())).cloned());
            let verifier: Arc<dyn JwsVerifier> = match cached {
                Some(v) => v,
                None => {
                    let built: Arc<dyn JwsVerifier> = match alg.as_str() {
                        "RS256" => match RS256.verifier_from_jwk(jwk) {
                            Ok(v) => Arc::new(v),
                            Err(_) => continue,
                        },
                        "PS256" => match PS256.verifier_from_jwk(jwk) {
                            Ok(v) => Arc::new(v),
                            Err(_) => continue,
                        },
                        "ES256" => match crate::es256::Es256Verifier::from_jwk(jwk) {
                            Ok(v) => Arc::new(v),
                            Err(_) => continue,
                        },
                        other => {
                            return Err(IdentityError::upstream(
                                &p.id,
                                format!("token signed with unaccepted algorithm {other:?}"),
                            ));
                        }
                    };
                    if let Ok(mut v) = meta.verifiers.lock() {
                        v.insert((index, alg.clone()), built.clone());
                    }
                    built
                }
            };
            match josekit::jwt::decode_with_verifier(jwt, verifier.as_ref()) {
                Ok((payload, _)) => return Ok(payload.claims_set().clone()),
                Err(_) => last = "token signature is not valid".into(),
            }
        }
        Err(IdentityError::upstream(&p.id, last))
    }

    fn verify_id_token(
        &self,
        p: &ProviderSettings,
        meta: &Cached,
        jwt: &str,
    ) -> Result<Map<String, Value>> {
        let claims = self.verify_jwt(p, meta, jwt)?;
        let now = crate::now();
        if claims.get("iss").and_then(Value::as_str) != Some(p.issuer.as_str()) {
            return Err(IdentityError::upstream(
                &p.id,
                "ID token issuer is not the provider",
            ));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == p.client_id,
            Some(Value::Array(a)) => {
                a.iter().any(|x| x.as_str() == Some(p.client_id.as_str()))
                    && (a.len() == 1
                        || claims.get("azp").and_then(Value::as_str) == Some(p.client_id.as_str()))
            }
            _ => false,
        };
        if !aud_ok {
            return Err(IdentityError::upstream(
                &p.id,
                "ID token audience is not Socle",
            ));
        }
        match numeric(&claims, "exp") {
            Some(exp) if exp + SKEW > now => {}
            Some(_) => return Err(IdentityError::upstream(&p.id, "ID token has expired")),
            None => return Err(IdentityError::upstream(&p.id, "ID token has no exp")),
        }
        match numeric(&claims, "iat") {
            Some(iat) if iat <= now + SKEW => {}
            Some(_) => {
                return Err(IdentityError::upstream(
                    &p.id,
                    "ID token issued in the future",
                ));
            }
            None => return Err(IdentityError::upstream(&p.id, "ID token has no iat")),
        }
        Ok(claims)
    }

    /// Where to send the person to log out of the provider, if it supports it.
    pub async fn end_session_url(
        &self,
        provider: &str,
        id_token: &str,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<String> {
        let p = self.provider(provider)?;
        let meta = self.metadata(p, false).await.ok()?;
        let end = meta.discovery.end_session_endpoint.as_ref()?;
        let mut url = url::Url::parse(end).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
            .append_pair("state", state);
        Some(url.to_string())
    }
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A NumericDate claim (integer or, as some libraries write it, a float).
fn numeric(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = claims.get(name)?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn describe(e: &reqwest::Error, what: &str) -> String {
    if e.is_timeout() {
        format!("{what} did not answer in time")
    } else if e.is_connect() {
        format!("cannot connect to {what}")
    } else {
        format!("request to {what} failed")
    }
}

async fn read_text(
    p: &ProviderSettings,
    what: &str,
    mut resp: reqwest::Response,
) -> Result<String> {
    let status = resp.status();
    let too_large = || IdentityError::upstream(&p.id, format!("{what} answer is too large"));
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(too_large());
    }
    // Read by chunks, so that an endless answer is cut at the limit, not held whole.
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| IdentityError::upstream(&p.id, describe(&e, what)))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let code = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        return Err(IdentityError::upstream(
            &p.id,
            format!("{what} answered HTTP {status} {code}"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| IdentityError::upstream(&p.id, format!("{what} answer is not UTF-8")))
}

async fn read_json(p: &ProviderSettings, what: &str, resp: reqwest::Response) -> Result<Value> {
    let text = read_text(p, what, resp).await?;
    serde_json::from_str(&text)
        .map_err(|_| IdentityError::upstream(&p.id, format!("{what} answer is not JSON")))
}
