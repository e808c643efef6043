//! Socle as an OpenID Connect provider toward services: the authorization code flow
//! with PKCE, exact `redirect_uri`, eIDAS `acr_values`, pairwise `sub`, codes
//! single-use for 30 s, RP-initiated logout chained to the identity provider. Each
//! client is held to OpenID Connect's rules or, when it registered the `franceconnect`
//! profile, to FranceConnect v2's stricter ones (`state` and `nonce` of at least 32
//! characters, signed userinfo, `state` at logout, 60-second access tokens):
//! [`ClientProfile`](crate::client::ClientProfile).
//!
//! The browser-facing steps keep their state in the store (browser session, login
//! interaction) so any node can serve any step.

use std::collections::BTreeMap;
use std::sync::Arc;

use josekit::jwe::{ECDH_ES, JweHeader, RSA_OAEP, RSA_OAEP_256};
use josekit::jwt::JwtPayload;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use socle_journal::{Entry, EntryKind, Journal};
use socle_store::{CodeUse, IdentityStore, NewCode, NewInteraction, SessionWrite, Store};

use crate::broker::{Authenticated, Broker, Pending, ProviderSettings};
use crate::claims::{RequestedClaims, registered_amr};
use crate::client::{Client, Clients};
use crate::error::{IdentityError, OidcError, Result};
use crate::keys::KeyRing;
use crate::pivot::{self, Eidas, Identity};
use crate::service_keys::ServiceKeys;

/// Lifetimes and addresses.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Public base URL of Socle, without trailing slash.
    pub public_url: String,
    /// Authorization codes live this long (seconds).
    pub code_ttl: i64,
    /// Access tokens live this long (seconds).
    pub access_token_ttl: i64,
    /// ID tokens expire after this long (seconds).
    pub id_token_ttl: i64,
    /// A browser session lasts this long after its last use (seconds).
    pub session_ttl: i64,
    /// A login must complete within this time (seconds).
    pub interaction_ttl: i64,
}

impl ProviderConfig {
    pub fn new(public_url: &str) -> Self {
        ProviderConfig {
            public_url: public_url.trim_end_matches('/').to_string(),
            code_ttl: 30,
            access_token_ttl: 300,
            id_token_ttl: 300,
            session_ttl: 1800,
            interaction_ttl: 900,
        }
    }

    /// `{public_url}/api/v2`, as FranceConnect v2.
    pub fn issuer(&self) -> String {
        format!("{}/api/v2", self.public_url)
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// How long a retired signing key must stay published.
    pub fn key_publication(&self) -> i64 {
        self.id_token_ttl.max(self.access_token_ttl) + 3600
    }
}

/// A browser session (cookie `socle_session`), stored under the cookie's hash.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrowserSession {
    /// CSRF token of this session's forms.
    pub csrf: String,
    /// Set once the person is logged in: the session id given to services (`sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The identity provider of the login and its ID token (to chain logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id_token: Option<String>,
    /// The person's authentication in this session: a service that asks within the
    /// session's lifetime gets them without the choice page (single sign-on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SessionAuth>,
    /// The services this session logged the person in to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<String>,
    /// What the person consented to in this session, by service: the claims (not
    /// asked again for those; asked for any more).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consented: BTreeMap<String, Vec<String>>,
}

/// An authentication kept in a browser session for single sign-on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionAuth {
    done: AuthDone,
    /// When the person logged in at the identity provider through the platform.
    at: i64,
}

/// A session as handled by the web layer: the cookie value and its document.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub cookie: String,
    pub id: String,
    pub doc: BrowserSession,
    /// The stored session this one replaces once saved: a login gives the browser a
    /// new cookie (and CSRF token), so that a session cookie known before the login —
    /// planted by someone else, say — is worth nothing after it (session fixation).
    pub replaces: Option<String>,
}

impl SessionHandle {
    /// A new cookie, id and CSRF token for this session; the stored one it replaces is
    /// removed when this one is saved.
    fn renew(&mut self) {
        let cookie = crate::random_token(32);
        let old = std::mem::replace(&mut self.id, crate::sha256_hex(cookie.as_bytes()));
        self.cookie = cookie;
        self.doc.csrf = crate::csrf_token();
        if self.replaces.is_none() {
            self.replaces = Some(old);
        }
    }

    fn write<'a>(&'a self, doc: &'a str, expires_at: i64) -> SessionWrite<'a> {
        SessionWrite {
            id: &self.id,
            doc,
            expires_at,
            replaces: self.replaces.as_deref(),
        }
    }
}

/// A validated authorization request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub nonce: String,
    pub scopes: Vec<String>,
    pub acr: Eidas,
    #[serde(default)]
    pub code_challenge: Option<String>,
    /// The identity provider the service asked for (`idp_hint`), if any.
    #[serde(default)]
    pub idp_hint: Option<String>,
    /// `prompt=login` and `max_age`, passed on to the identity provider.
    #[serde(default)]
    pub reauthenticate: bool,
    #[serde(default)]
    pub max_age: Option<i64>,
    /// `prompt=consent`: the consent page is shown even to a service exempt from it.
    #[serde(default)]
    pub ask_consent: bool,
    /// `prompt=none`: a code from the live session, or an error; never a page.
    #[serde(default)]
    pub no_prompt: bool,
    /// The `claims` parameter (Core §5.5).
    #[serde(default)]
    pub claims: RequestedClaims,
    /// The client is a sandbox one: the demonstration identity provider only.
    #[serde(default)]
    pub sandbox: bool,
}

impl AuthRequest {
    /// What the login releases: the scopes, and the claims asked for by name that the
    /// client is registered for (a claim name is a scope of its own).
    fn release(&self, client: &Client) -> Vec<String> {
        let allowed = pivot::claims_for(&client.scopes);
        let mut out = self.scopes.clone();
        for c in self
            .claims
            .userinfo_names()
            .into_iter()
            .chain(self.claims.id_token_names())
        {
            if allowed.contains(&c.as_str()) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// The claims asked for in the ID token that the client is registered for.
    fn id_token_claims(&self, client: &Client) -> Vec<String> {
        let allowed = pivot::claims_for(&client.scopes);
        self.claims
            .id_token_names()
            .into_iter()
            .filter(|c| allowed.contains(&c.as_str()))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthDone {
    provider: String,
    identity: Identity,
    acr: Eidas,
    amr: Vec<String>,
    auth_time: i64,
    id_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Interaction {
    request: AuthRequest,
    #[serde(default)]
    pending: Option<Pending>,
    #[serde(default)]
    done: Option<AuthDone>,
    /// Set for a logout waiting for the identity provider's return.
    #[serde(default)]
    logout_return: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeDoc {
    redirect_uri: String,
    nonce: String,
    scopes: Vec<String>,
    acr: Eidas,
    amr: Vec<String>,
    auth_time: i64,
    sid: String,
    sub: String,
    claims: Map<String, Value>,
    #[serde(default)]
    code_challenge: Option<String>,
    /// The verified pivot identity, for data providers reached through the gateway on
    /// the person's behalf (never released to the service by this record).
    #[serde(default)]
    person: Option<Identity>,
    /// Identity claims asked for in the ID token (`claims` parameter).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    id_claims: Map<String, Value>,
    /// Whether the ID token carries `amr` (asked for with the `claims` parameter).
    #[serde(default)]
    amr_asked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenDoc {
    sub: String,
    scopes: Vec<String>,
    claims: Map<String, Value>,
    acr: Eidas,
    #[serde(default)]
    person: Option<Identity>,
}

/// What an access token issued to a service says about the person, for the gateway's
/// calls on the person's behalf ("FranceConnect-ed" mode).
#[derive(Debug, Clone)]
pub struct PersonToken {
    pub client_id: String,
    /// SIRET of the service's organisation.
    pub organisation: String,
    pub scopes: Vec<String>,
    pub acr: Eidas,
    /// The verified pivot identity.
    pub identity: Identity,
    /// The person key behind the journal pseudonym (hash of the pivot identity).
    pub identity_hash: String,
    pub expires_at: i64,
}

/// What the authorization endpoint answers when the request is refused.
#[derive(Debug)]
pub enum AuthorizeRefusal {
    /// No trustworthy redirect: show this (French) message.
    Page(String),
    /// Redirect to the client with an error.
    Redirect(String),
}

/// Where an authorization request leads the browser.
#[derive(Debug)]
pub enum Begun {
    /// The choice page of this interaction.
    Choice(String),
    /// The login of the identity provider the service named (`idp_hint`).
    Provider(String),
    /// Already authenticated in this session: the consent page of this interaction.
    Consent(String),
    /// Back to the service: a code (single sign-on) or an error (`prompt=none`).
    Redirect(String),
}

/// How the person agreed to what a login releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consent {
    /// On the consent page, now.
    Given,
    /// The service is exempt from consent.
    Exempt,
    /// Earlier in this browser session, to the same service.
    Earlier,
}

/// The choice page's content.
#[derive(Debug, Clone)]
pub struct ChoiceView {
    pub client_name: String,
    pub level: Eidas,
    pub providers: Vec<ProviderSettings>,
    pub csrf: String,
    /// Where the person goes to give up (the service, with `access_denied`).
    pub cancel_url: String,
}

/// The consent page's content.
#[derive(Debug, Clone)]
pub struct ConsentView {
    pub client_name: String,
    pub provider_label: String,
    /// (label, value) of each claim released.
    pub claims: Vec<(&'static str, String)>,
    pub csrf: String,
    /// Where the answer leads (the service), for the page's `form-action`.
    pub redirect_uri: String,
}

/// Where the identity provider's answer leads.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Show the consent page of this interaction.
    Consent(String),
    /// Redirect the browser (back to the service).
    Redirect(String),
}

/// An identity provider failure shown to the person, with a way back.
#[derive(Debug)]
pub struct UpstreamFailure {
    /// Whose doing it was: what the page's status says.
    pub kind: FailureKind,
    pub message: String,
    /// Back to the service with an OIDC error (`None` if the login is unknown).
    pub back_url: Option<String>,
    /// Back to the choice page of the same login.
    pub retry_url: Option<String>,
    pub client_name: Option<String>,
}

/// Why a return from an identity provider did not log the person in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The person refused or cancelled at the provider: their choice, not an error.
    Refused,
    /// An old tab, a login begun in another browser or expired: the person's mistake.
    Unknown,
    /// The platform cannot read its store right now.
    Unavailable,
    /// The provider misbehaved: unreachable, an error of its own, an answer that does
    /// not verify, an answer at another provider's address.
    Provider,
}

/// The userinfo answer.
#[derive(Debug)]
pub enum Userinfo {
    Json(Value),
    /// `application/jwt` (signed, possibly then encrypted).
    Jwt(String),
}

/// The OpenID Connect provider.
#[derive(Clone)]
pub struct Provider {
    pub(crate) store: Store,
    pub(crate) journal: Journal,
    pub keys: KeyRing,
    pub clients: Clients,
    pub broker: Broker,
    config: Arc<ProviderConfig>,
    /// Services' keys registered by URL, fetched and kept.
    service_keys: Arc<ServiceKeys>,
}

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn redirect_with(base: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => base.to_string(),
    }
}

fn at_hash(token: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..16])
}

fn valid_pkce(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn to_doc<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| IdentityError::Crypto(e.to_string()))
}

fn from_doc<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| IdentityError::Crypto(format!("stored record: {e}")))
}

impl Provider {
    pub fn new(
        store: Store,
        journal: Journal,
        keys: KeyRing,
        broker: Broker,
        config: ProviderConfig,
    ) -> Provider {
        Provider {
            clients: Clients::new(store.clone()),
            store,
            journal,
            keys,
            broker,
            config: Arc::new(config),
            service_keys: Arc::new(ServiceKeys::new(None)),
        }
    }

    /// Gives the client that fetches services' keys registered by URL (`jwks_uri`):
    /// the one for calls made on someone else's word (public addresses only, no
    /// redirects). Without it, a client registered with `jwks_uri` cannot authenticate
    /// nor be encrypted to.
    pub fn with_service_http(mut self, http: Option<reqwest::Client>) -> Self {
        self.service_keys = Arc::new(ServiceKeys::new(http));
        self
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    pub fn issuer(&self) -> String {
        self.config.issuer()
    }

    /// The discovery document (OpenID Connect Discovery 1.0 §3).
    pub fn discovery(&self) -> Value {
        let iss = self.issuer();
        let levels: Vec<&str> = (1..=3)
            .filter_map(Eidas::from_level)
            .filter(|l| !self.broker.able(*l).is_empty())
            .map(Eidas::acr)
            .collect();
        json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "end_session_endpoint": format!("{iss}/session/end"),
            "jwks_uri": format!("{iss}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "subject_types_supported": ["pairwise"],
            "scopes_supported": pivot::SCOPES,
            "claims_supported": ["sub", "given_name", "given_name_array", "family_name", "birthdate",
                "gender", "birthplace", "birthcountry", "email", "preferred_username",
                "acr", "amr", "auth_time", "sid"],
            "acr_values_supported": levels,
            "id_token_signing_alg_values_supported": crate::keys::SIGNING_ALGS,
            "userinfo_signing_alg_values_supported": crate::keys::SIGNING_ALGS,
            "id_token_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256", "ECDH-ES"],
            "id_token_encryption_enc_values_supported": ["A256GCM"],
            "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256", "ECDH-ES"],
            "userinfo_encryption_enc_values_supported": ["A256GCM"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256"],
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["none", "login", "consent"],
            "claims_parameter_supported": true,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "frontchannel_logout_supported": false,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
        })
    }

    // ----- browser sessions -------------------------------------------------------

    /// The session of this cookie, or a new one (not yet stored).
    pub async fn session(&self, cookie: Option<&str>) -> Result<SessionHandle> {
        if let Some(c) = cookie.filter(|c| c.len() >= 32 && c.len() <= 64) {
            let id = crate::sha256_hex(c.as_bytes());
            if let Some(doc) = self.store.session(&id, crate::now()).await? {
                let doc: BrowserSession = from_doc(&doc)?;
                return Ok(SessionHandle {
                    cookie: c.to_string(),
                    id,
                    doc,
                    replaces: None,
                });
            }
        }
        let cookie = crate::random_token(32);
        Ok(SessionHandle {
            id: crate::sha256_hex(cookie.as_bytes()),
            cookie,
            doc: BrowserSession {
                csrf: crate::csrf_token(),
                ..Default::default()
            },
            replaces: None,
        })
    }

    pub async fn save_session(&self, s: &SessionHandle) -> Result<()> {
        let doc = to_doc(&s.doc)?;
        let expires_at = crate::now() + self.config.session_ttl;
        if s.replaces.is_some() {
            self.store.renew_session(s.write(&doc, expires_at)).await?;
        } else {
            self.store.put_session(&s.id, &doc, expires_at).await?;
        }
        Ok(())
    }

    // ----- authorization endpoint -------------------------------------------------

    /// Validates an authorization request (query or form parameters, in order).
    pub async fn authorize(
        &self,
        params: &[(String, String)],
    ) -> std::result::Result<AuthRequest, AuthorizeRefusal> {
        let mut map: BTreeMap<&str, &str> = BTreeMap::new();
        let mut duplicated: Vec<&str> = Vec::new();
        for (k, v) in params {
            if map.insert(k.as_str(), v.as_str()).is_some() {
                duplicated.push(k.as_str());
            }
        }
        for key in ["client_id", "redirect_uri"] {
            if duplicated.contains(&key) {
                return Err(AuthorizeRefusal::Page(format!(
                    "Le paramètre {key} est répété dans la demande du service."
                )));
            }
        }
        let Some(client_id) = map.get("client_id").copied() else {
            return Err(AuthorizeRefusal::Page(
                "La demande du service ne précise pas son identifiant (client_id).".into(),
            ));
        };
        let client = match self.clients.get(client_id).await {
            Ok(Some(c)) if !c.disabled => c,
            Ok(_) => {
                return Err(AuthorizeRefusal::Page(
                    "Le service qui vous a envoyé ici n’est pas connu de la plateforme ou a été désactivé."
                        .into(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a client");
                return Err(AuthorizeRefusal::Page(
                    "La plateforme ne peut pas traiter votre demande pour le moment. Réessayez dans quelques minutes."
                        .into(),
                ));
            }
        };
        let Some(redirect_uri) = map.get("redirect_uri").copied() else {
            return Err(AuthorizeRefusal::Page(
                "La demande du service ne précise pas son adresse de retour (redirect_uri).".into(),
            ));
        };
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AuthorizeRefusal::Page(
                "L’adresse de retour demandée n’est pas celle que ce service a déclarée : par sécurité, vous n’y êtes pas renvoyé."
                    .into(),
            ));
        }
        let iss = self.issuer();
        let state_param = map.get("state").copied();
        let fail = |error: OidcError, description: &str| {
            let mut p = vec![("error", error.code()), ("error_description", description)];
            if let Some(s) = state_param {
                p.push(("state", s));
            }
            p.push(("iss", iss.as_str()));
            AuthorizeRefusal::Redirect(redirect_with(redirect_uri, &p))
        };
        if let Some(d) = duplicated.first() {
            return Err(fail(
                OidcError::InvalidRequest,
                &format!("parameter {d} is repeated"),
            ));
        }
        // Request objects are not supported (discovery says so): a service that signed
        // its request must learn that its content was not read, not see it ignored.
        if map.contains_key("request") {
            return Err(fail(
                OidcError::RequestNotSupported,
                "request objects are not supported: send the parameters in the query",
            ));
        }
        if map.contains_key("request_uri") {
            return Err(fail(
                OidcError::RequestUriNotSupported,
                "request_uri is not supported: send the parameters in the query",
            ));
        }
        match map.get("response_type") {
            Some(&"code") => {}
            Some(_) => {
                return Err(fail(
                    OidcError::UnsupportedResponseType,
                    "only response_type=code is supported",
                ));
            }
            None => return Err(fail(OidcError::InvalidRequest, "response_type is required")),
        }
        if let Some(m) = map.get("response_mode")
            && *m != "query"
        {
            return Err(fail(
                OidcError::InvalidRequest,
                "only response_mode=query is supported",
            ));
        }
        let min = client.profile.min_state_len();
        let state = state_param.unwrap_or_default();
        if state.chars().count() < min {
            return Err(fail(
                OidcError::InvalidRequest,
                &format!("state is required and must be at least {min} characters"),
            ));
        }
        let nonce = map.get("nonce").copied().unwrap_or_default();
        let nonce_len = nonce.chars().count();
        if (client.profile.nonce_required() || nonce_len > 0) && nonce_len < min {
            return Err(fail(
                OidcError::InvalidRequest,
                &if client.profile.nonce_required() {
                    format!("nonce is required and must be at least {min} characters")
                } else {
                    format!("nonce must be at least {min} characters")
                },
            ));
        }
        // Scope values the platform does not know (`address`, `phone`, another
        // platform's) are ignored, as OpenID Connect Core §3.1.2.1 and FranceConnect do;
        // a known one the client was not registered for is refused below.
        let mut scopes: Vec<String> = Vec::new();
        for s in map.get("scope").copied().unwrap_or_default().split(' ') {
            if crate::pivot::SCOPES.contains(&s) && !scopes.iter().any(|k| k == s) {
                scopes.push(s.to_string());
            }
        }
        if !scopes.iter().any(|s| s == "openid") {
            return Err(fail(OidcError::InvalidScope, "scope must include openid"));
        }
        if let Some(s) = scopes.iter().find(|s| !client.scopes.contains(s)) {
            return Err(fail(
                OidcError::InvalidScope,
                &format!("scope {s} is not allowed for this client"),
            ));
        }
        let challenge = map.get("code_challenge").copied();
        let method = map.get("code_challenge_method").copied();
        match (challenge, method) {
            (Some(c), Some("S256")) if valid_pkce(c) => {}
            (Some(_), Some("S256")) => {
                return Err(fail(
                    OidcError::InvalidRequest,
                    "code_challenge is malformed",
                ));
            }
            (Some(_), None) | (Some(_), Some(_)) => {
                return Err(fail(
                    OidcError::InvalidRequest,
                    "code_challenge_method must be S256",
                ));
            }
            (None, Some(_)) => {
                return Err(fail(
                    OidcError::InvalidRequest,
                    "code_challenge_method without code_challenge",
                ));
            }
            (None, None) if client.is_public() => {
                return Err(fail(
                    OidcError::InvalidRequest,
                    "PKCE (code_challenge, S256) is required for public clients",
                ));
            }
            (None, None) => {}
        }
        let requested = match map.get("claims") {
            None => RequestedClaims::default(),
            Some(text) => match RequestedClaims::parse(text) {
                Ok(r) => r,
                Err(m) => return Err(fail(OidcError::InvalidRequest, &m)),
            },
        };
        let franceconnect = client.profile == crate::client::ClientProfile::Franceconnect;
        let unmet = |why: &str| {
            if franceconnect {
                fail(OidcError::InvalidRequest, "acr_values not supported")
            } else {
                fail(OidcError::UnmetAuthenticationRequirements, why)
            }
        };
        let mut acr = Eidas(client.eidas_level);
        // `acr` asked for with the claims parameter: as acr_values (Core §5.5.1.1); as
        // essential with no eIDAS level among its values, it cannot be met.
        if let Some((levels, essential)) = requested.acr() {
            match levels.iter().min() {
                Some(lowest) => acr = acr.max(*lowest),
                None if essential => {
                    return Err(unmet("the essential acr asked for is not an eIDAS level"));
                }
                None => {}
            }
        }
        if let Some(values) = map.get("acr_values") {
            // Values other than eidas1, eidas2 and eidas3 are ignored (FranceConnect: « toute
            // valeur différente … sera ignorée »; acr is a voluntary claim in OpenID Connect
            // Core §5.5.1.1). Several values: any of them is acceptable, so the lowest is
            // what is needed.
            if let Some(lowest) = values.split(' ').filter_map(Eidas::parse).min() {
                acr = acr.max(lowest);
            }
        }
        let able = self.able(acr, client.sandbox);
        if able.is_empty() {
            // OpenID Connect's registered code; FranceConnect answers invalid_request
            // (its error Y020002, "acr_values not supported").
            return Err(unmet(&format!(
                "no identity provider can deliver {}",
                acr.acr()
            )));
        }
        // An `idp_hint` naming no provider able to serve the level: the choice page, as
        // for any hint (it is not OpenID Connect's); FranceConnect refuses it (its error
        // Y030016, "invalid idp_hint parameter").
        if franceconnect
            && let Some(hint) = map.get("idp_hint")
            && !able.iter().any(|p| p.id == *hint)
        {
            return Err(fail(
                OidcError::InvalidRequest,
                "invalid idp_hint parameter",
            ));
        }
        let prompt: Vec<&str> = map
            .get("prompt")
            .map(|p| p.split(' ').filter(|x| !x.is_empty()).collect())
            .unwrap_or_default();
        // Core §3.1.2.1: `none` with any other value is an error.
        if prompt.contains(&"none") && prompt.len() > 1 {
            return Err(fail(
                OidcError::InvalidRequest,
                "prompt=none cannot be combined with other prompt values",
            ));
        }
        // OpenID Connect Core §3.1.2.1: a non-negative number of seconds.
        let max_age = match map.get("max_age") {
            None => None,
            Some(m) => match m.parse::<u32>() {
                Ok(m) => Some(i64::from(m)),
                Err(_) => {
                    return Err(fail(
                        OidcError::InvalidRequest,
                        "max_age must be a non-negative number of seconds",
                    ));
                }
            },
        };
        Ok(AuthRequest {
            client_id: client.client_id,
            redirect_uri: redirect_uri.to_string(),
            state: state.to_string(),
            nonce: nonce.to_string(),
            scopes,
            acr,
            code_challenge: challenge.map(str::to_string),
            idp_hint: map.get("idp_hint").map(|h| h.to_string()),
            reauthenticate: prompt.contains(&"login"),
            max_age,
            ask_consent: prompt.contains(&"consent"),
            no_prompt: prompt.contains(&"none"),
            claims: requested,
            sandbox: client.sandbox,
        })
    }

    /// The identity providers able to deliver `acr`; for a sandbox client, only those
    /// of fictitious people.
    fn able(&self, acr: Eidas, sandbox: bool) -> Vec<&ProviderSettings> {
        self.broker
            .able(acr)
            .into_iter()
            .filter(|p| !sandbox || p.sandbox)
            .collect()
    }

    /// The authentication of this session that satisfies `request`, if any (single
    /// sign-on): not when the service asks for a new one (`prompt=login`), nor past
    /// the session's lifetime since the login, nor below the level asked, nor older
    /// than `max_age`, nor at another provider than the one named by `idp_hint`, nor
    /// at a provider no longer able to serve the level.
    fn single_sign_on(
        &self,
        session: &BrowserSession,
        request: &AuthRequest,
        now: i64,
    ) -> Option<AuthDone> {
        let a = session.auth.as_ref()?;
        let fresh = request
            .max_age
            .is_none_or(|m| now.saturating_sub(a.done.auth_time) <= m);
        let provider_ok = request
            .idp_hint
            .as_ref()
            .is_none_or(|h| *h == a.done.provider)
            && self
                .able(request.acr, request.sandbox)
                .iter()
                .any(|p| p.id == a.done.provider);
        (!request.reauthenticate
            && now.saturating_sub(a.at) <= self.config.session_ttl
            && a.done.acr >= request.acr
            && fresh
            && provider_ok)
            .then(|| a.done.clone())
    }

    /// Opens a login for a validated request, in the browser session of `cookie`.
    ///
    /// When that session holds an authentication that satisfies the request (single
    /// sign-on), no identity provider is asked: the consent page when the service
    /// needs one (not exempt and not consented to in this session, or
    /// `prompt=consent`), otherwise straight back to the service with a code. With
    /// `prompt=none`, only that: otherwise the service gets `login_required` or
    /// `consent_required` (Core §3.1.2.6), and the person never sees a page.
    ///
    /// Otherwise a login interaction is opened in the session (a new one when there is
    /// none, or it is not stored any more, or has expired; a live one keeps its
    /// expiry), session and interaction written together: its choice page, or, when
    /// the service named an identity provider able to serve it (`idp_hint`, as
    /// FranceConnect and ProConnect), that provider's login.
    pub async fn begin(
        &self,
        cookie: Option<&str>,
        request: AuthRequest,
    ) -> Result<(Option<SessionHandle>, Begun)> {
        let now = crate::now();
        let live = match cookie {
            Some(_) => Some(self.session(cookie).await?).filter(|s| s.doc.auth.is_some()),
            None => None,
        };
        let sso = live
            .as_ref()
            .and_then(|s| self.single_sign_on(&s.doc, &request, now));
        match (live, sso) {
            (Some(session), Some(done)) => {
                let client = self.clients.active(&request.client_id).await?;
                // Consent given in this session covers the same claims, or fewer.
                let consented = session
                    .doc
                    .consented
                    .get(&client.client_id)
                    .is_some_and(|given| {
                        pivot::claims_for(&request.release(&client))
                            .iter()
                            .all(|c| given.iter().any(|g| g == c))
                    });
                let ask = request.ask_consent || !(client.consent_exempt || consented);
                let id = crate::random_token(24);
                let i = Interaction {
                    request,
                    pending: None,
                    done: Some(done),
                    logout_return: None,
                };
                if ask && i.request.no_prompt {
                    let back = self.cancel_url(
                        &i.request,
                        OidcError::ConsentRequired,
                        "the person has not consented to this service in this session",
                    );
                    return Ok((None, Begun::Redirect(back)));
                }
                if ask {
                    self.store
                        .put_interaction(
                            &id,
                            &session.id,
                            None,
                            &to_doc(&i)?,
                            now + self.config.interaction_ttl,
                        )
                        .await?;
                    return Ok((Some(session), Begun::Consent(id)));
                }
                let consent = if consented {
                    Consent::Earlier
                } else {
                    Consent::Exempt
                };
                let url = self.complete(&id, &session, &i, consent).await?;
                metrics::counter!("socle_single_sign_on_total").increment(1);
                Ok((Some(session), Begun::Redirect(url)))
            }
            _ if request.no_prompt => {
                let back = self.cancel_url(
                    &request,
                    OidcError::LoginRequired,
                    "no session of the person satisfies the request",
                );
                Ok((None, Begun::Redirect(back)))
            }
            _ => {
                let (session, id, url) = self.open_login(cookie, request).await?;
                Ok((
                    Some(session),
                    match url {
                        Some(url) => Begun::Provider(url),
                        None => Begun::Choice(id),
                    },
                ))
            }
        }
    }

    /// A new login interaction, in the session of `cookie` or a new one: its id and,
    /// with a usable `idp_hint`, that provider's login URL.
    async fn open_login(
        &self,
        cookie: Option<&str>,
        request: AuthRequest,
    ) -> Result<(SessionHandle, String, Option<String>)> {
        // A cookie the platform does not know is never adopted: a new session gets a
        // new random one.
        let given = cookie.filter(|c| c.len() >= 32 && c.len() <= 64);
        let fresh = crate::random_token(32);
        let mut session = SessionHandle {
            id: crate::sha256_hex(fresh.as_bytes()),
            cookie: fresh,
            doc: BrowserSession {
                csrf: crate::csrf_token(),
                ..Default::default()
            },
            replaces: None,
        };
        let given_id = given.map(|c| crate::sha256_hex(c.as_bytes()));
        let id = crate::random_token(24);
        let hint = request.idp_hint.clone().filter(|h| {
            self.able(request.acr, request.sandbox)
                .iter()
                .any(|p| p.id == *h)
        });
        let mut doc = Interaction {
            request,
            pending: None,
            done: None,
            logout_return: None,
        };
        let mut url = None;
        if let Some(provider) = hint {
            match self.prepare_login(&doc, &provider).await {
                Ok((at, pending)) => {
                    doc.pending = Some(pending);
                    url = Some(at);
                }
                // The named provider cannot be reached: the choice page instead, where
                // the person can pick another one or go back to the service (which then
                // gets an OIDC error), rather than a dead end.
                Err(IdentityError::Upstream { provider, reason }) => {
                    tracing::warn!(%provider, %reason, "identity provider of idp_hint unreachable: choice page");
                }
                Err(e) => return Err(e),
            }
        }
        let now = crate::now();
        let used = self
            .store
            .begin_login(
                given_id.as_deref(),
                (
                    &session.id,
                    &to_doc(&session.doc)?,
                    now + self.config.session_ttl,
                ),
                now,
                NewInteraction {
                    id: &id,
                    fi_state: doc.pending.as_ref().map(|p| p.state.as_str()),
                    doc: &to_doc(&doc)?,
                    expires_at: now + self.config.interaction_ttl,
                },
            )
            .await?;
        if let (Some(cookie), true) = (given, Some(&used) == given_id.as_ref()) {
            // The live session kept: the handle only carries its cookie on.
            session.cookie = cookie.to_string();
            session.id = used;
        }
        Ok((session, id, url))
    }

    /// The browser session (by its cookie) and one of its login interactions, read
    /// together; the errors say which is missing.
    async fn open(&self, id: &str, cookie: Option<&str>) -> Result<(SessionHandle, Interaction)> {
        let expired = || {
            IdentityError::Interaction(
                "Votre session a expiré ou les cookies sont bloqués par votre navigateur. Recommencez depuis le service."
                    .into(),
            )
        };
        let cookie = cookie
            .filter(|c| c.len() >= 32 && c.len() <= 64)
            .ok_or_else(expired)?;
        let session_id = crate::sha256_hex(cookie.as_bytes());
        let now = crate::now();
        if let Some((session, interaction)) = self
            .store
            .interaction_in_session(id, &session_id, now)
            .await?
        {
            return Ok((
                SessionHandle {
                    cookie: cookie.to_string(),
                    id: session_id,
                    doc: from_doc(&session)?,
                    replaces: None,
                },
                from_doc(&interaction)?,
            ));
        }
        // Why not: only on this (rare) path.
        Err(match self.store.interaction(id, now).await? {
            Some((sid, _)) if sid != session_id => IdentityError::Interaction(
                "Cette connexion a été commencée dans un autre navigateur.".into(),
            ),
            Some(_) => expired(),
            None => IdentityError::Interaction(
                "Cette connexion a expiré ou n’existe pas. Recommencez depuis le service.".into(),
            ),
        })
    }

    fn check_csrf(session: &SessionHandle, csrf: Option<&str>) -> Result<()> {
        let ok = csrf.is_some_and(|c| {
            let a = c.as_bytes();
            let b = session.doc.csrf.as_bytes();
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        });
        if ok { Ok(()) } else { Err(IdentityError::Csrf) }
    }

    fn cancel_url(&self, r: &AuthRequest, error: OidcError, description: &str) -> String {
        redirect_with(
            &r.redirect_uri,
            &[
                ("error", error.code()),
                ("error_description", description),
                ("state", &r.state),
                ("iss", &self.issuer()),
            ],
        )
    }

    /// The choice page of an interaction.
    pub async fn choice(&self, id: &str, cookie: Option<&str>) -> Result<ChoiceView> {
        let (session, i) = self.open(id, cookie).await?;
        let client = self.clients.active(&i.request.client_id).await?;
        Ok(ChoiceView {
            client_name: client.name,
            level: i.request.acr,
            providers: self
                .able(i.request.acr, i.request.sandbox)
                .into_iter()
                .cloned()
                .collect(),
            csrf: session.doc.csrf.clone(),
            cancel_url: self.cancel_url(
                &i.request,
                OidcError::AccessDenied,
                "the person cancelled the login",
            ),
        })
    }

    /// The person chose `provider`: where to send them.
    pub async fn choose(
        &self,
        id: &str,
        cookie: Option<&str>,
        csrf: Option<&str>,
        provider: &str,
    ) -> Result<String> {
        let (session, i) = self.open(id, cookie).await?;
        Self::check_csrf(&session, csrf)?;
        self.start_login(id, &session.id, i, provider).await
    }

    /// The login at `provider` for an interaction: its URL and what to check of its
    /// answer (not yet recorded).
    async fn prepare_login(&self, i: &Interaction, provider: &str) -> Result<(String, Pending)> {
        let able = self
            .able(i.request.acr, i.request.sandbox)
            .iter()
            .any(|p| p.id == provider);
        if !able {
            return Err(IdentityError::Interaction(
                "Ce fournisseur d’identité ne peut pas être utilisé pour ce service.".into(),
            ));
        }
        let fresh = crate::broker::Freshness {
            again: i.request.reauthenticate,
            max_age: i.request.max_age,
        };
        self.broker.start(provider, i.request.acr, fresh).await
    }

    /// Starts the login at `provider` and records what to check of its answer.
    async fn start_login(
        &self,
        id: &str,
        session_id: &str,
        mut i: Interaction,
        provider: &str,
    ) -> Result<String> {
        let (url, pending) = self.prepare_login(&i, provider).await?;
        let state = pending.state.clone();
        i.pending = Some(pending);
        self.store
            .put_interaction(
                id,
                session_id,
                Some(&state),
                &to_doc(&i)?,
                crate::now() + self.config.interaction_ttl,
            )
            .await?;
        Ok(url)
    }

    /// The identity provider's answer (`state` plus `code`, or `error`). Once the person
    /// is authenticated the browser session has a new cookie (the returned handle's),
    /// which the answer must set.
    pub async fn callback(
        &self,
        cookie: Option<&str>,
        answered_at: &str,
        params: &BTreeMap<String, String>,
    ) -> std::result::Result<(CallbackOutcome, SessionHandle), UpstreamFailure> {
        let unknown = |message: &str| UpstreamFailure {
            kind: FailureKind::Unknown,
            message: message.to_string(),
            back_url: None,
            retry_url: None,
            client_name: None,
        };
        let Some(state) = params.get("state") else {
            return Err(unknown(
                "La réponse du fournisseur d’identité est incomplète.",
            ));
        };
        let found = self
            .store
            .interaction_by_fi_state(state, crate::now())
            .await
            .map_err(|_| UpstreamFailure {
                kind: FailureKind::Unavailable,
                ..unknown("La plateforme ne peut pas traiter votre connexion pour le moment. Réessayez dans quelques instants.")
            })?;
        let Some((id, sid, doc, session_doc)) = found else {
            return Err(unknown(
                "Cette connexion a expiré ou n’existe pas. Recommencez depuis le service.",
            ));
        };
        let cookie_id = cookie.map(|c| crate::sha256_hex(c.as_bytes()));
        if cookie_id.as_deref() != Some(sid.as_str()) {
            return Err(unknown(
                "Cette connexion a été commencée dans un autre navigateur. Recommencez depuis le service.",
            ));
        }
        let Some(session_doc) = session_doc else {
            return Err(unknown(
                "Votre session a expiré. Recommencez depuis le service.",
            ));
        };
        let mut session = SessionHandle {
            cookie: cookie.unwrap_or_default().to_string(),
            id: sid,
            doc: from_doc(&session_doc).map_err(|_| unknown("Session illisible."))?,
            replaces: None,
        };
        let mut i: Interaction = from_doc(&doc).map_err(|_| unknown("Connexion illisible."))?;
        let client = self.clients.active(&i.request.client_id).await.ok();
        let fail_with = |i: &Interaction, error: OidcError, message: String, description: &str| {
            UpstreamFailure {
                kind: FailureKind::Provider,
                message,
                back_url: Some(self.cancel_url(&i.request, error, description)),
                retry_url: Some(format!(
                    "{}/api/v2/interaction/{id}",
                    self.config.public_url
                )),
                client_name: client.as_ref().map(|c| c.name.clone()),
            }
        };
        let fail = |i: &Interaction, message: String, description: &str| UpstreamFailure {
            kind: FailureKind::Provider,
            message,
            back_url: Some(self.cancel_url(&i.request, OidcError::AccessDenied, description)),
            retry_url: Some(format!(
                "{}/api/v2/interaction/{id}",
                self.config.public_url
            )),
            client_name: client.as_ref().map(|c| c.name.clone()),
        };
        let Some(pending) = i.pending.take() else {
            return Err(unknown("Cette connexion n’attend pas de réponse."));
        };
        // Each provider sends people back to its own address: an answer at another
        // provider's address than the one this login waits for is a mix-up (RFC 9700
        // §4.4): its code must reach no token endpoint, and nobody is logged in.
        if pending.provider != answered_at {
            tracing::warn!(
                waiting_for = %pending.provider,
                answered_at = %answered_at.chars().take(64).collect::<String>(),
                "identity provider answer at another provider's address refused (mix-up)"
            );
            return Err(fail(
                &i,
                "La réponse reçue ne vient pas du fournisseur d’identité que vous avez choisi : par sécurité, la connexion est refusée. Recommencez depuis le service.".into(),
                "the identity provider's answer came back at another provider's address",
            ));
        }
        let label = self
            .broker
            .provider(&pending.provider)
            .map(|p| p.label.clone())
            .unwrap_or_default();
        if params.get("error").map(String::as_str) == Some("access_denied") {
            // The person said no at the provider (OAuth 2.0 §4.1.2.1): a page that says
            // so, with the way back to the service, which gets access_denied.
            tracing::info!(provider = %pending.provider, "the person refused at the identity provider");
            return Err(UpstreamFailure {
                kind: FailureKind::Refused,
                ..fail(
                    &i,
                    format!(
                        "Vous n’avez pas autorisé {label} à vous identifier : vous n’êtes pas connecté. Vous pouvez revenir au service, ou choisir un autre moyen de vous connecter."
                    ),
                    "the person refused at the identity provider",
                )
            });
        }
        if let Some(error) = params.get("error") {
            tracing::warn!(provider = %pending.provider, error = %error.chars().take(64).collect::<String>(), "identity provider returned an error");
            return Err(fail(
                &i,
                format!("{label} n’a pas pu vous authentifier."),
                "the identity provider did not authenticate the person",
            ));
        }
        let Some(code) = params.get("code") else {
            return Err(fail(
                &i,
                format!("{label} a répondu sans code d’autorisation."),
                "the identity provider answered without a code",
            ));
        };
        let iss = params.get("iss").map(String::as_str);
        let auth: Authenticated = match self.broker.finish(&pending, code, iss).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "identity provider login refused");
                let message = match &e {
                    IdentityError::Upstream { reason, .. }
                        if reason.starts_with("invalid identity") =>
                    {
                        format!(
                            "{label} a transmis une identité incomplète ou mal formée : elle ne peut pas être utilisée."
                        )
                    }
                    IdentityError::Upstream { reason, .. }
                        if reason.contains("in time") || reason.contains("connect") =>
                    {
                        format!("{label} ne répond pas pour le moment.")
                    }
                    IdentityError::Upstream { reason, .. }
                        if reason.starts_with(crate::broker::NOT_AGAIN) =>
                    {
                        // Core §3.1.2.1: the re-authentication did not happen.
                        return Err(fail_with(
                            &i,
                            OidcError::LoginRequired,
                            format!(
                                "{label} ne vous a pas demandé de vous authentifier à nouveau, comme le service l’exige."
                            ),
                            "the identity provider did not authenticate the person again",
                        ));
                    }
                    _ => format!("La réponse de {label} n’a pas pu être vérifiée."),
                };
                return Err(fail(
                    &i,
                    message,
                    "the identity provider’s answer was refused",
                ));
            }
        };
        if auth.acr < i.request.acr {
            return Err(fail(
                &i,
                format!(
                    "{label} vous a authentifié avec un niveau de garantie {} alors que le service demande le niveau {}.",
                    auth.acr.label(),
                    i.request.acr.label()
                ),
                "the identity provider did not reach the requested eIDAS level",
            ));
        }
        i.done = Some(AuthDone {
            provider: pending.provider.clone(),
            identity: auth.identity,
            acr: auth.acr,
            amr: auth.amr,
            auth_time: auth.auth_time,
            id_token: auth.id_token.clone(),
        });
        session.renew();
        session.doc.provider = Some(pending.provider.clone());
        session.doc.provider_id_token = Some(auth.id_token);
        let server = |e: IdentityError| {
            tracing::error!(error = %e, "cannot record a login");
            UpstreamFailure {
                kind: FailureKind::Unavailable,
                ..unknown(
                    "La plateforme ne peut pas enregistrer votre connexion pour le moment. Réessayez dans quelques instants.",
                )
            }
        };
        // The same person again (prompt=login, max_age): the same session for the
        // services (`sid`), which logout and back-channel logout name. Another person
        // in this browser: the previous one's services are told, as at a logout, and
        // nothing of theirs (authentication, services, consents) stays.
        let new_hash = i.done.as_ref().map(|d| d.identity.identity_hash());
        let previous = session
            .doc
            .auth
            .as_ref()
            .map(|a| a.done.identity.identity_hash());
        let same_person = previous.is_some() && previous == new_hash;
        if !same_person {
            if previous.is_some() {
                self.queue_backchannel(&session.doc)
                    .await
                    .map_err(&server)?;
            }
            session.doc.auth = None;
            session.doc.clients.clear();
            session.doc.consented.clear();
        }
        if !same_person || session.doc.sid.is_none() {
            session.doc.sid = Some(crate::random_token(24));
        }
        // OpenID Connect Core §3.1.2.1: with prompt=consent the person is asked even
        // where the service is exempt.
        let exempt = client.as_ref().is_some_and(|c| c.consent_exempt) && !i.request.ask_consent;
        if exempt {
            // The session is saved with the code, in one write.
            let url = self
                .complete(&id, &session, &i, Consent::Exempt)
                .await
                .map_err(server)?;
            Ok((CallbackOutcome::Redirect(url), session))
        } else {
            // The renewed session and the authenticated interaction: one transaction.
            let t = crate::now();
            let (session_doc, doc) = (
                to_doc(&session.doc).map_err(&server)?,
                to_doc(&i).map_err(&server)?,
            );
            self.store
                .save_session_and_interaction(
                    session.write(&session_doc, t + self.config.session_ttl),
                    NewInteraction {
                        id: &id,
                        fi_state: None,
                        doc: &doc,
                        expires_at: t + self.config.interaction_ttl,
                    },
                )
                .await
                .map_err(|e| server(e.into()))?;
            Ok((CallbackOutcome::Consent(id), session))
        }
    }

    /// The consent page of an authenticated interaction.
    pub async fn consent_view(&self, id: &str, cookie: Option<&str>) -> Result<ConsentView> {
        let (session, i) = self.open(id, cookie).await?;
        let Some(done) = &i.done else {
            return Err(IdentityError::Interaction(
                "Vous n’êtes pas encore authentifié pour cette connexion.".into(),
            ));
        };
        let client = self.clients.active(&i.request.client_id).await?;
        let release = i.request.release(&client);
        let released = done.identity.released(&release);
        let claims = pivot::claims_for(&release)
            .into_iter()
            .filter_map(|c| {
                released
                    .get(c)
                    .and_then(Value::as_str)
                    .map(|v| (pivot::claim_label(c), pivot::display_value(c, v)))
            })
            .collect();
        Ok(ConsentView {
            client_name: client.name,
            provider_label: self
                .broker
                .provider(&done.provider)
                .map(|p| p.label.clone())
                .unwrap_or_default(),
            claims,
            csrf: session.doc.csrf.clone(),
            redirect_uri: i.request.redirect_uri.clone(),
        })
    }

    /// The person's answer on the consent page: where to send them.
    pub async fn consent(
        &self,
        id: &str,
        cookie: Option<&str>,
        csrf: Option<&str>,
        accept: bool,
    ) -> Result<String> {
        let (session, i) = self.open(id, cookie).await?;
        Self::check_csrf(&session, csrf)?;
        if i.done.is_none() {
            return Err(IdentityError::Interaction(
                "Vous n’êtes pas encore authentifié pour cette connexion.".into(),
            ));
        }
        if !accept {
            let done = i.done.as_ref();
            if let Some(d) = done {
                let client = self.clients.active(&i.request.client_id).await?;
                let claims = pivot::claims_for(&i.request.release(&client)).join(",");
                self.journal
                    .append(vec![
                        Entry::new(
                            EntryKind::Consent,
                            format!("client:{}", client.client_id),
                            "refused",
                        )
                        .organisation(client.organisation.clone())
                        .subject(self.journal.subject(&d.identity.identity_hash()))
                        .detail("client_id", client.client_id.clone())
                        .detail("claims", claims),
                    ])
                    .await?;
            }
            self.store.delete_interaction(id).await?;
            return Ok(self.cancel_url(
                &i.request,
                OidcError::AccessDenied,
                "the person refused to share their data",
            ));
        }
        self.complete(id, &session, &i, Consent::Given).await
    }

    /// Journals the login (and consent), then issues the code, ends the interaction
    /// and saves the session (which now names the service) in one write; returns the
    /// redirect. A journal that cannot write leaves the interaction as it was.
    async fn complete(
        &self,
        id: &str,
        session: &SessionHandle,
        i: &Interaction,
        consent: Consent,
    ) -> Result<String> {
        let consented = consent == Consent::Given;
        let Some(done) = &i.done else {
            return Err(IdentityError::Interaction("not authenticated".into()));
        };
        let client = self.clients.active(&i.request.client_id).await?;
        let identity_hash = done.identity.identity_hash();
        let sub = pivot::pairwise_sub(
            &client.client_id,
            &identity_hash,
            &self.keys.pairwise_secret(),
        );
        let release = i.request.release(&client);
        // Userinfo: the scopes and the claims asked for at userinfo (or in the ID token,
        // which are released too); the ID token: those asked for in it.
        let claims = done.identity.released(&release);
        let id_claims = done.identity.released(&i.request.id_token_claims(&client));
        let code = crate::random_token(32);
        let doc = CodeDoc {
            redirect_uri: i.request.redirect_uri.clone(),
            nonce: i.request.nonce.clone(),
            scopes: i.request.scopes.clone(),
            acr: done.acr,
            amr: done.amr.clone(),
            auth_time: done.auth_time,
            sid: session.doc.sid.clone().unwrap_or_default(),
            sub,
            claims,
            code_challenge: i.request.code_challenge.clone(),
            person: Some(done.identity.clone()),
            id_claims,
            amr_asked: i.request.claims.wants_amr(),
        };
        let code_doc = to_doc(&doc)?;
        let pseudonym = self.journal.pseudonym(&identity_hash);
        let claim_names = pivot::claims_for(&release).join(",");
        let actor = format!("client:{}", client.client_id);
        let mut entries = Vec::new();
        if consented {
            entries.push(
                Entry::new(EntryKind::Consent, actor.clone(), "granted")
                    .organisation(client.organisation.clone())
                    .subject(self.journal.subject_of(&pseudonym))
                    .detail("client_id", client.client_id.clone())
                    .detail("claims", claim_names.clone()),
            );
        }
        entries.push(
            Entry::new(EntryKind::Login, actor, "ok")
                .organisation(client.organisation.clone())
                .subject(self.journal.subject_of(&pseudonym))
                .detail("client_id", client.client_id.clone())
                .detail("client_name", client.name.clone())
                .detail("provider", done.provider.clone())
                .detail("acr", done.acr.acr())
                .detail("claims", claim_names)
                .detail(
                    "consent",
                    match consent {
                        Consent::Given => "given",
                        Consent::Exempt => "exempt",
                        Consent::Earlier => "earlier",
                    },
                ),
        );
        self.journal.append(entries).await?;
        let mut session = session.clone();
        let now = crate::now();
        // A login completed: the session keeps its authentication for single sign-on
        // (one reused keeps its time; another person's was cleared at the callback).
        let same = |a: &SessionAuth| {
            a.done.auth_time == done.auth_time
                && a.done.provider == done.provider
                && a.done.identity.identity_hash() == identity_hash
        };
        if !session.doc.auth.as_ref().is_some_and(same) {
            session.doc.auth = Some(SessionAuth {
                done: done.clone(),
                at: now,
            });
        }
        if !session.doc.clients.contains(&client.client_id) {
            session.doc.clients.push(client.client_id.clone());
        }
        if consented {
            let given = session
                .doc
                .consented
                .entry(client.client_id.clone())
                .or_default();
            for c in pivot::claims_for(&release) {
                if !given.iter().any(|g| g == c) {
                    given.push(c.to_string());
                }
            }
        }
        let session_doc = to_doc(&session.doc)?;
        self.store
            .complete_login(
                Some(session.write(&session_doc, now + self.config.session_ttl)),
                NewCode {
                    code_hash: &crate::sha256_hex(code.as_bytes()),
                    client_id: &client.client_id,
                    doc: &code_doc,
                    expires_at: now + self.config.code_ttl,
                },
                id,
            )
            .await?;
        metrics::counter!("socle_logins_total", "provider" => done.provider.clone()).increment(1);
        Ok(redirect_with(
            &i.request.redirect_uri,
            &[
                ("code", &code),
                ("state", &i.request.state),
                ("iss", &self.issuer()),
            ],
        ))
    }

    // ----- token endpoint ---------------------------------------------------------

    async fn authenticate_client(
        &self,
        form: &BTreeMap<String, String>,
        basic: Option<(String, String)>,
    ) -> Result<Client> {
        let invalid = |d: &str| IdentityError::oidc(OidcError::InvalidClient, d);
        let assertion = form.get("client_assertion");
        let post_secret = form.get("client_secret");
        let methods = usize::from(basic.is_some())
            + usize::from(assertion.is_some())
            + usize::from(post_secret.is_some());
        if methods > 1 {
            return Err(IdentityError::invalid_request(
                "use exactly one client authentication method",
            ));
        }
        if let Some((id, secret)) = basic {
            if form.get("client_id").is_some_and(|c| *c != id) {
                return Err(invalid("client_id differs from the authenticated client"));
            }
            let client = self.clients.active(&id).await?;
            return check_secret(&client, &secret).map(|()| client);
        }
        if let Some(assertion) = assertion {
            if form.get("client_assertion_type").map(String::as_str) != Some(CLIENT_ASSERTION_TYPE)
            {
                return Err(IdentityError::invalid_request(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            return self.check_assertion(assertion, form.get("client_id")).await;
        }
        let Some(id) = form.get("client_id") else {
            return Err(invalid("client authentication is required"));
        };
        let client = self.clients.active(id).await?;
        match post_secret {
            Some(secret) => check_secret(&client, secret).map(|()| client),
            None if client.is_public() => Ok(client),
            None => Err(invalid("client authentication is required")),
        }
    }

    async fn check_assertion(&self, jwt: &str, claimed: Option<&String>) -> Result<Client> {
        let invalid = |d: &str| IdentityError::oidc(OidcError::InvalidClient, d);
        // Read the claims without trusting them yet: the issuer names the client whose
        // keys then verify the signature.
        let (unverified, header) = {
            use base64::Engine;
            let parts: Vec<&str> = jwt.split('.').collect();
            let dec = |s: &str| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(s)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            };
            let (Some(h), Some(p)) = (
                parts.first().and_then(|s| dec(s)),
                parts.get(1).and_then(|s| dec(s)),
            ) else {
                return Err(invalid("client_assertion is not a JWT"));
            };
            if parts.len() != 3 {
                return Err(invalid("client_assertion is not a JWT"));
            }
            let p =
                JwtPayload::from_map(p).map_err(|_| invalid("client_assertion is not a JWT"))?;
            let h = josekit::jws::JwsHeader::from_map(h)
                .map_err(|_| invalid("client_assertion is not a JWT"))?;
            (p, h)
        };
        if header.algorithm() == Some("none") {
            return Err(invalid("unsigned client_assertion"));
        }
        let Some(client_id) = unverified.issuer().map(str::to_string) else {
            return Err(invalid("client_assertion has no iss"));
        };
        if claimed.is_some_and(|c| *c != client_id) {
            return Err(invalid("client_id differs from the assertion’s issuer"));
        }
        let client = self.clients.active(&client_id).await?;
        if client.token_endpoint_auth_method != "private_key_jwt" {
            return Err(invalid(
                "this client does not authenticate with private_key_jwt",
            ));
        }
        let alg = header.algorithm().unwrap_or_default().to_string();
        let key = self
            .service_keys
            .key(&client, "sig", Some(&alg), header.key_id())
            .await
            .map_err(|why| invalid(&format!("the assertion cannot be checked: {why}")))?;
        let verified = match alg.as_str() {
            "ES256" => crate::es256::Es256Verifier::from_jwk(&key)
                .ok()
                .and_then(|v| josekit::jwt::decode_with_verifier(jwt, &v).ok()),
            "RS256" => josekit::jws::RS256
                .verifier_from_jwk(&key)
                .ok()
                .and_then(|v| josekit::jwt::decode_with_verifier(jwt, &v).ok()),
            "PS256" => josekit::jws::PS256
                .verifier_from_jwk(&key)
                .ok()
                .and_then(|v| josekit::jwt::decode_with_verifier(jwt, &v).ok()),
            _ => None,
        };
        let Some((payload, _)) = verified else {
            return Err(invalid("client_assertion signature is not valid"));
        };
        let c = payload.claims_set();
        if c.get("sub").and_then(Value::as_str) != Some(client_id.as_str()) {
            return Err(invalid("client_assertion sub must be the client_id"));
        }
        let token_endpoint = format!("{}/token", self.issuer());
        let issuer = self.issuer();
        let aud_ok = |a: &str| a == token_endpoint || a == issuer;
        let aud = match c.get("aud") {
            Some(Value::String(a)) => aud_ok(a),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(aud_ok),
            _ => false,
        };
        if !aud {
            return Err(invalid("client_assertion aud must be the token endpoint"));
        }
        let now = crate::now();
        let exp = c
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .unwrap_or(0);
        if exp <= now || exp > now + 600 {
            return Err(invalid("client_assertion is expired or valid for too long"));
        }
        let Some(jti) = c.get("jti").and_then(Value::as_str) else {
            return Err(invalid("client_assertion has no jti"));
        };
        if !self.store.use_assertion(&client_id, jti, exp).await? {
            return Err(invalid("client_assertion was already used"));
        }
        Ok(client)
    }

    /// The token endpoint: form parameters and the decoded Basic credentials.
    pub async fn token(
        &self,
        form: &BTreeMap<String, String>,
        basic: Option<(String, String)>,
    ) -> Result<Value> {
        let client = self.authenticate_client(form, basic).await?;
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {}
            Some(_) => {
                return Err(IdentityError::oidc(
                    OidcError::UnsupportedGrantType,
                    "only authorization_code is supported",
                ));
            }
            None => return Err(IdentityError::invalid_request("grant_type is required")),
        }
        let Some(code) = form.get("code") else {
            return Err(IdentityError::invalid_request("code is required"));
        };
        let grant = |d: &str| IdentityError::oidc(OidcError::InvalidGrant, d);
        // A key to encrypt the ID token to, before the code is spent: a service whose
        // jwks_uri fails keeps its code for when it works again.
        if let Some(alg) = &client.id_token_encrypted_response_alg {
            self.encryption_key(&client, alg).await?;
        }
        let now = crate::now();
        // One write binds the new access token to the code; it happens before the
        // checks below so that a code is never usable twice, whatever the outcome.
        let access_token = crate::random_token(32);
        let access_ttl = client
            .profile
            .access_token_ttl(self.config.access_token_ttl);
        let code_hash = crate::sha256_hex(code.as_bytes());
        let (doc, expires_at) = match self
            .store
            .exchange_code(
                &code_hash,
                &crate::sha256_hex(access_token.as_bytes()),
                now,
                now + access_ttl,
            )
            .await?
        {
            CodeUse::Fresh {
                client_id,
                doc,
                expires_at,
            } => {
                if client_id != client.client_id {
                    self.store.revoke_code(&code_hash).await?;
                    return Err(grant("the code was issued to another client"));
                }
                (doc, expires_at)
            }
            CodeUse::Replayed { client_id } => {
                tracing::warn!(%client_id, "authorization code replayed: its grant and token are revoked");
                return Err(grant("the code was already used; its tokens are revoked"));
            }
            CodeUse::Unknown => return Err(grant("unknown code")),
        };
        let refuse = |d: &'static str| async move {
            self.store.revoke_code(&code_hash).await?;
            Err::<Value, IdentityError>(grant(d))
        };
        if expires_at <= now {
            return refuse("the code has expired").await;
        }
        let doc: CodeDoc = from_doc(&doc)?;
        if form.get("redirect_uri") != Some(&doc.redirect_uri) {
            return refuse("redirect_uri differs from the authorization request’s").await;
        }
        match (&doc.code_challenge, form.get("code_verifier")) {
            (Some(challenge), Some(verifier)) => {
                if !valid_pkce(verifier) || crate::sha256_b64url(verifier.as_bytes()) != *challenge
                {
                    return refuse("code_verifier does not match the code_challenge").await;
                }
            }
            (Some(_), None) => return refuse("code_verifier is required").await,
            (None, Some(_)) => {
                return refuse("code_verifier sent but no code_challenge was").await;
            }
            (None, None) => {}
        }
        let mut p = JwtPayload::new();
        p.set_issuer(self.issuer());
        p.set_subject(&doc.sub);
        p.set_audience(vec![client.client_id.clone()]);
        p.set_claim("iat", Some(json!(now)))?;
        p.set_claim("exp", Some(json!(now + self.config.id_token_ttl)))?;
        let set = |p: &mut JwtPayload, k: &str, v: Value| p.set_claim(k, Some(v));
        if !doc.nonce.is_empty() {
            set(&mut p, "nonce", json!(doc.nonce))?;
        }
        set(&mut p, "acr", json!(doc.acr.acr()))?;
        // amr on request only (the claims parameter), RFC 8176 values only.
        let amr = registered_amr(&doc.amr);
        if doc.amr_asked && !amr.is_empty() {
            set(&mut p, "amr", json!(amr))?;
        }
        for (k, v) in &doc.id_claims {
            set(&mut p, k, v.clone())?;
        }
        set(&mut p, "auth_time", json!(doc.auth_time))?;
        set(&mut p, "sid", json!(doc.sid))?;
        set(&mut p, "at_hash", json!(at_hash(&access_token)))?;
        self.keys.settled().await;
        let signed = self
            .keys
            .sign(&client.id_token_signed_response_alg, &p, Some("JWT"))?;
        let id_token = match &client.id_token_encrypted_response_alg {
            Some(alg) => {
                let sealed = self
                    .encrypt_to(
                        &client,
                        alg,
                        client.id_token_encrypted_response_enc.as_deref(),
                        &signed,
                    )
                    .await?;
                // The platform cannot read it back: remember which session it names,
                // for the service's logout — a day beyond the longest the session can
                // live, as a signed hint works expired. Without it that logout shows
                // a page; the login itself must not fail for it (its code is spent).
                if let Err(e) = self
                    .store
                    .put_logout_hint(
                        &crate::sha256_hex(sealed.as_bytes()),
                        &client.client_id,
                        &doc.sid,
                        now + self.config.session_ttl + 86_400,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "encrypted ID token not remembered for logout");
                }
                sealed
            }
            None => signed,
        };
        metrics::counter!("socle_tokens_issued_total").increment(1);
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": access_ttl,
            "id_token": id_token,
            "scope": doc.scopes.join(" "),
        }))
    }

    // ----- userinfo ---------------------------------------------------------------

    /// An access token that is known, unrevoked, unexpired, of an active client.
    async fn live_token(&self, access_token: &str) -> Result<(TokenDoc, Client, i64)> {
        let invalid = |d: &str| IdentityError::oidc(OidcError::InvalidToken, d);
        let Some(t) = self
            .store
            .token(&crate::sha256_hex(access_token.as_bytes()))
            .await?
        else {
            return Err(invalid("unknown access token"));
        };
        if t.revoked {
            return Err(invalid("the access token was revoked"));
        }
        if t.expires_at <= crate::now() {
            return Err(invalid("the access token has expired"));
        }
        let doc: TokenDoc = from_doc(&t.doc)?;
        let client = self
            .clients
            .active(&t.client_id)
            .await
            .map_err(|_| invalid("the client is disabled"))?;
        Ok((doc, client, t.expires_at))
    }

    pub async fn userinfo(&self, access_token: &str) -> Result<Userinfo> {
        let (doc, client, _) = self.live_token(access_token).await?;
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(doc.sub));
        claims.extend(doc.claims);
        match &client.userinfo_signed_response_alg {
            None => Ok(Userinfo::Json(Value::Object(claims))),
            Some(alg) => {
                let mut p = JwtPayload::from_map(claims)?;
                p.set_issuer(self.issuer());
                p.set_audience(vec![client.client_id.clone()]);
                p.set_claim("iat", Some(json!(crate::now())))?;
                self.keys.settled().await;
                let signed = self.keys.sign(alg, &p, Some("JWT"))?;
                let out = match &client.userinfo_encrypted_response_alg {
                    Some(a) => {
                        self.encrypt_to(
                            &client,
                            a,
                            client.userinfo_encrypted_response_enc.as_deref(),
                            &signed,
                        )
                        .await?
                    }
                    None => signed,
                };
                Ok(Userinfo::Jwt(out))
            }
        }
    }

    /// Checks an access token presented to the gateway on a person's behalf.
    pub async fn person_token(&self, access_token: &str) -> Result<PersonToken> {
        let (doc, client, expires_at) = self.live_token(access_token).await?;
        let Some(identity) = doc.person else {
            return Err(IdentityError::oidc(
                OidcError::InvalidToken,
                "the access token carries no identity",
            ));
        };
        Ok(PersonToken {
            client_id: client.client_id,
            organisation: client.organisation,
            scopes: doc.scopes,
            acr: doc.acr,
            identity_hash: identity.identity_hash(),
            identity,
            expires_at,
        })
    }

    // ----- logout -----------------------------------------------------------------

    /// RP-initiated logout: `id_token_hint` and a registered `post_logout_redirect_uri`
    /// are required, `state` too for the `franceconnect` profile. When the hint names this browser's
    /// session (its `sid`), ends it and returns where to go: the identity provider's
    /// logout when it has one (it comes back to `/api/v2/client/logout-callback`),
    /// otherwise straight back to the service. A hint naming another session — someone
    /// else's ID token in a link, or a login since replaced — is suspect (RP-Initiated
    /// Logout 1.0 §2): the service is sent back, this browser's session is left alone
    /// and no provider logout is chained. The flag says whether the session ended.
    pub async fn end_session(
        &self,
        params: &BTreeMap<String, String>,
        session: &SessionHandle,
    ) -> Result<(String, bool)> {
        let page = |m: &str| IdentityError::Page(m.to_string());
        let Some(hint) = params.get("id_token_hint") else {
            return Err(page(
                "La demande de déconnexion ne contient pas id_token_hint.",
            ));
        };
        let (client_id, hint_sid) = self.hint_session(hint).await?;
        let client = self
            .clients
            .active(&client_id)
            .await
            .map_err(|_| page("Le service qui demande la déconnexion n’est pas connu."))?;
        let Some(uri) = params.get("post_logout_redirect_uri") else {
            return Err(page(
                "La demande de déconnexion ne précise pas post_logout_redirect_uri.",
            ));
        };
        if !client.post_logout_redirect_uris.contains(uri) {
            return Err(page(
                "L’adresse de retour après déconnexion n’a pas été déclarée par ce service : par sécurité, vous n’y êtes pas renvoyé.",
            ));
        }
        // RP-Initiated Logout 1.0 §2: `state` is optional; FranceConnect requires it.
        let state = params.get("state").filter(|s| !s.is_empty());
        if state.is_none() && client.profile.logout_state_required() {
            return Err(page("La demande de déconnexion ne contient pas state."));
        }
        let back = match state {
            Some(state) => redirect_with(uri, &[("state", state)]),
            None => uri.clone(),
        };
        if session.doc.sid.as_deref() != Some(hint_sid.as_str()) {
            tracing::info!("logout hint names another session than this browser's: left alone");
            return Ok((back, false));
        }
        // Every service the session logged in to is told (Back-Channel Logout), from the
        // durable outbox, before the session is gone.
        self.queue_backchannel(&session.doc).await?;
        self.store.delete_session(&session.id).await?;
        if let (Some(provider), Some(id_token)) =
            (&session.doc.provider, &session.doc.provider_id_token)
        {
            let fi_state = crate::random_token(32);
            let callback = format!("{}/api/v2/client/logout-callback", self.config.public_url);
            if let Some(url) = self
                .broker
                .end_session_url(provider, id_token, &callback, &fi_state)
                .await
            {
                let doc = Interaction {
                    request: AuthRequest {
                        client_id,
                        redirect_uri: uri.clone(),
                        state: state.cloned().unwrap_or_default(),
                        nonce: String::new(),
                        scopes: Vec::new(),
                        acr: Eidas::LOW,
                        code_challenge: None,
                        idp_hint: None,
                        reauthenticate: false,
                        max_age: None,
                        ask_consent: false,
                        no_prompt: false,
                        claims: RequestedClaims::default(),
                        sandbox: false,
                    },
                    pending: None,
                    done: None,
                    logout_return: Some(back),
                };
                self.store
                    .put_interaction(
                        &crate::random_token(24),
                        "logout",
                        Some(&fi_state),
                        &to_doc(&doc)?,
                        crate::now() + self.config.interaction_ttl,
                    )
                    .await?;
                return Ok((url, true));
            }
        }
        Ok((back, true))
    }

    /// Queues a logout token for each service `session` logged in to that registered a
    /// `backchannel_logout_uri` (crate::backchannel).
    pub(crate) async fn queue_backchannel(&self, session: &BrowserSession) -> Result<usize> {
        let (Some(auth), Some(sid)) = (&session.auth, &session.sid) else {
            return Ok(0);
        };
        let identity_hash = auth.done.identity.identity_hash();
        let subject = self.journal.pseudonym(&identity_hash);
        let mut rows = Vec::new();
        for client_id in &session.clients {
            let Some(client) = self.clients.get(client_id).await? else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let owed = crate::backchannel::Owed {
                uri,
                sub: pivot::pairwise_sub(client_id, &identity_hash, &self.keys.pairwise_secret()),
                sid: sid.clone(),
                subject: subject.clone(),
            };
            rows.push(socle_store::NewBackchannel {
                id: crate::random_token(24),
                client_id: client_id.clone(),
                doc: to_doc(&owed)?,
            });
        }
        self.store.queue_backchannel(&rows, crate::now()).await?;
        Ok(rows.len())
    }

    /// The service and session an `id_token_hint` names: a signed ID token of the
    /// platform (expired or not), or an encrypted one the platform issued (it cannot
    /// decrypt it, so it knows it by its hash).
    async fn hint_session(&self, hint: &str) -> Result<(String, String)> {
        let page = |m: &str| IdentityError::Page(m.to_string());
        let foreign = "Le jeton transmis pour la déconnexion n’a pas été émis par la plateforme.";
        if hint.split('.').count() == 5 {
            return self
                .store
                .logout_hint(&crate::sha256_hex(hint.as_bytes()), crate::now())
                .await?
                .ok_or_else(|| {
                    page(
                        "Le jeton chiffré transmis pour la déconnexion n’est pas connu de la plateforme (ou la session qu’il désigne a expiré).",
                    )
                });
        }
        let Ok(payload) = self.keys.verify(hint) else {
            return Err(page(foreign));
        };
        if payload.issuer() != Some(self.issuer().as_str()) {
            return Err(page(foreign));
        }
        let Some(client_id) = payload
            .audience()
            .and_then(|a| a.first().map(|s| s.to_string()))
        else {
            return Err(page(
                "Le jeton transmis pour la déconnexion ne désigne aucun service.",
            ));
        };
        // Only an ID token names a session; a userinfo JWT, signed by the same keys for
        // the same audience, does not.
        let Some(sid) = payload
            .claim("sid")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Err(page(
                "Le jeton transmis pour la déconnexion n’est pas un jeton d’identité (id_token).",
            ));
        };
        Ok((client_id, sid))
    }

    /// The identity provider logged the person out: back to the service.
    pub async fn logout_callback(&self, state: &str) -> Result<String> {
        let Some((id, _, doc, _)) = self
            .store
            .interaction_by_fi_state(state, crate::now())
            .await?
        else {
            return Err(IdentityError::Page(
                "Vous êtes déconnecté, mais le service à retrouver n’est plus connu.".into(),
            ));
        };
        let i: Interaction = from_doc(&doc)?;
        self.store.delete_interaction(&id).await?;
        i.logout_return
            .ok_or_else(|| IdentityError::Page("Vous êtes déconnecté.".into()))
    }

    /// Removes expired sessions, interactions, codes and tokens.
    pub async fn purge(&self) -> Result<u64> {
        let now = crate::now();
        // Back-channel logouts settled a week ago: their outcome is in the journal.
        let settled = self.store.purge_backchannel(now - 7 * 86_400).await?;
        Ok(self.store.purge_identity(now).await? + settled)
    }
}

/// The client's secret, or the one before its last renewal during the grace period.
fn check_secret(client: &Client, secret: &str) -> Result<()> {
    use crate::ct_eq;
    let given = crate::sha256_hex(secret.as_bytes());
    let matches = |h: &Option<String>| {
        h.as_ref()
            .is_some_and(|h| ct_eq(h.as_bytes(), given.as_bytes()))
    };
    let in_grace = client
        .previous_secret_until
        .is_some_and(|until| crate::now() < until);
    if matches(&client.secret_hash) || (in_grace && matches(&client.previous_secret_hash)) {
        Ok(())
    } else {
        Err(IdentityError::oidc(
            OidcError::InvalidClient,
            "client authentication failed",
        ))
    }
}

impl Provider {
    /// Nested JWT: the signed token encrypted to the client's `enc` key (RFC 7519
    /// §5.2). No key to encrypt to (a `jwks_uri` that fails, or serves none) is the
    /// client's problem: `invalid_client`, with the reason.
    async fn encrypt_to(
        &self,
        client: &Client,
        alg: &str,
        enc: Option<&str>,
        signed: &str,
    ) -> Result<String> {
        let key = self.encryption_key(client, alg).await?;
        seal_to(&key, alg, enc, signed)
    }

    /// The client's key to encrypt to with `alg`, or `invalid_client` with why not.
    async fn encryption_key(&self, client: &Client, alg: &str) -> Result<josekit::jwk::Jwk> {
        self.service_keys
            .key(client, "enc", Some(alg), None)
            .await
            .map_err(|why| {
                IdentityError::oidc(
                    OidcError::InvalidClient,
                    format!("no key to encrypt to: {why}"),
                )
            })
    }
}

/// The signed token `signed` encrypted to `key`.
fn seal_to(key: &josekit::jwk::Jwk, alg: &str, enc: Option<&str>, signed: &str) -> Result<String> {
    let mut header = JweHeader::new();
    header.set_content_encryption(enc.unwrap_or("A256GCM"));
    header.set_content_type("JWT");
    if let Some(kid) = key.key_id() {
        header.set_key_id(kid);
    }
    let payload = signed.as_bytes();
    let out = match alg {
        "RSA-OAEP" => {
            josekit::jwe::serialize_compact(payload, &header, &RSA_OAEP.encrypter_from_jwk(key)?)?
        }
        "RSA-OAEP-256" => josekit::jwe::serialize_compact(
            payload,
            &header,
            &RSA_OAEP_256.encrypter_from_jwk(key)?,
        )?,
        "ECDH-ES" => {
            josekit::jwe::serialize_compact(payload, &header, &ECDH_ES.encrypter_from_jwk(key)?)?
        }
        other => {
            return Err(IdentityError::Crypto(format!(
                "unsupported encryption {other}"
            )));
        }
    };
    Ok(out)
}
