//! Service providers registered as OpenID Connect clients, and how they authenticate
//! at the token endpoint (`client_secret_basic`, `client_secret_post`,
//! `private_key_jwt`; `none` for public clients, which must use PKCE).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use josekit::jwk::{Jwk, JwkSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socle_store::{IdentityStore, Store};

use crate::error::{IdentityError, OidcError, Result};
use crate::pivot::{Eidas, SCOPES};

/// The rules a client is held to. OpenID Connect's by default; FranceConnect's stricter
/// ones (its partner documentation) when the service asks for them at registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientProfile {
    /// OpenID Connect: `state` of at least 16 characters, `nonce` optional (at least 16
    /// characters when sent), userinfo as JSON unless a signing algorithm is
    /// registered, `state` optional at logout, access tokens of
    /// `identity.access_token_lifetime` (5 minutes by default).
    #[default]
    Standard,
    /// FranceConnect v2: `state` and `nonce` required, of at least 32 characters;
    /// userinfo always signed; `state` required at logout; access tokens of 60 seconds
    /// at most.
    Franceconnect,
}

impl ClientProfile {
    /// Fewest characters of `state` (and of `nonce`, when sent).
    pub fn min_state_len(self) -> usize {
        match self {
            ClientProfile::Standard => 16,
            ClientProfile::Franceconnect => 32,
        }
    }

    /// Whether `nonce` must be sent (OpenID Connect Core §3.1.2.1: optional in the
    /// code flow).
    pub fn nonce_required(self) -> bool {
        self == ClientProfile::Franceconnect
    }

    /// Whether `state` must be sent at logout (RP-Initiated Logout 1.0: optional).
    pub fn logout_state_required(self) -> bool {
        self == ClientProfile::Franceconnect
    }

    /// The lifetime of this client's access tokens, given the configured one.
    pub fn access_token_ttl(self, configured: i64) -> i64 {
        match self {
            ClientProfile::Standard => configured,
            ClientProfile::Franceconnect => configured.min(60),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClientProfile::Standard => "standard",
            ClientProfile::Franceconnect => "franceconnect",
        }
    }
}

/// A registered client, as stored (the secret only as its SHA-256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SIRET of the organisation responsible for the service.
    pub organisation: String,
    /// The rules it is held to (clients stored before profiles: OpenID Connect's).
    #[serde(default)]
    pub profile: ClientProfile,
    /// A sandbox client: only the demonstration identity provider (fictitious people)
    /// is offered, so no real person's identity ever reaches it.
    #[serde(default)]
    pub sandbox: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// The secret before the last renewal (its hash), accepted until
    /// `previous_secret_until`: the service's grace period to deploy the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<i64>,
    /// Public keys of the client: `sig` keys for `private_key_jwt`, `enc` keys to
    /// encrypt ID tokens and userinfo to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Or where to fetch them (crate::service_keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where a logout token is POSTed when a session that logged in to the service
    /// ends (OpenID Connect Back-Channel Logout 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// Whether the service needs `sid` in logout tokens (Socle always sends it).
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    pub scopes: Vec<String>,
    /// Lowest eIDAS level the service accepts.
    pub eidas_level: u8,
    pub id_token_signed_response_alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_encrypted_response_enc: Option<String>,
    /// `Some(alg)`: userinfo is a signed JWT; `None`: plain JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_encrypted_response_alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_encrypted_response_enc: Option<String>,
    /// Declared exempt from the consent screen (e.g. the person's own administration
    /// acting under a legal obligation).
    #[serde(default)]
    pub consent_exempt: bool,
    #[serde(default)]
    pub disabled: bool,
}

/// What an administrator gives to register a client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientInput {
    pub name: String,
    /// SIRET (14 digits) of the organisation.
    pub organisation: String,
    /// `standard` (default: OpenID Connect's rules) or `franceconnect` (FranceConnect
    /// v2's stricter ones: 32-character `state` and `nonce`, signed userinfo, `state`
    /// at logout, 60-second access tokens).
    #[serde(default)]
    pub profile: Option<ClientProfile>,
    /// A sandbox client: logins only through the demonstration identity provider.
    #[serde(default)]
    pub sandbox: bool,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where Socle POSTs a logout token when a session that logged in to the service
    /// ends (Back-Channel Logout 1.0): https, or http on localhost; no fragment.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    /// Whether logout tokens must carry `sid` (they always do).
    #[serde(default)]
    pub backchannel_logout_session_required: bool,
    /// Defaults to `openid identite_pivot email`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// 1, 2 or 3; default 1.
    #[serde(default)]
    pub eidas_level: Option<u8>,
    /// `client_secret_basic` (default), `client_secret_post`, `private_key_jwt`, `none`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Required for `private_key_jwt` and for encryption, or `jwks_uri`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<Value>,
    /// Where Socle fetches the client's keys instead (https, or http on localhost),
    /// kept as its `Cache-Control` says and fetched again for an unknown key id.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// `ES256` (default) or `RS256`.
    #[serde(default)]
    pub id_token_signed_response_alg: Option<String>,
    /// `RSA-OAEP`, `RSA-OAEP-256` or `ECDH-ES`.
    #[serde(default)]
    pub id_token_encrypted_response_alg: Option<String>,
    /// `A256GCM`.
    #[serde(default)]
    pub id_token_encrypted_response_enc: Option<String>,
    /// `ES256` or `RS256`: userinfo as a signed JWT; unset or `"none"`: plain JSON
    /// (OpenID Connect Registration §2). The `franceconnect` profile signs it always
    /// (`ES256` unless `RS256` is given).
    #[serde(default)]
    pub userinfo_signed_response_alg: Option<String>,
    #[serde(default)]
    pub userinfo_encrypted_response_alg: Option<String>,
    #[serde(default)]
    pub userinfo_encrypted_response_enc: Option<String>,
    #[serde(default)]
    pub consent_exempt: bool,
}

/// A freshly created client and its secret, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewClientSecret {
    pub client_id: String,
    /// Shown once; only its hash is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// Longest a renewed secret's predecessor stays valid.
pub const MAX_GRACE: i64 = 30 * 86_400;

const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
const ENC_ALGS: &[&str] = &["RSA-OAEP", "RSA-OAEP-256", "ECDH-ES"];

/// Checks a redirect URI: absolute, no fragment, `https` except on a loopback host.
pub fn valid_redirect_uri(uri: &str) -> std::result::Result<(), String> {
    let u = url::Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL: {e}"))?;
    if u.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{uri:?} must use https (http is accepted only for localhost)"
        )),
    }
}

fn encryption_pair(
    what: &str,
    alg: &Option<String>,
    enc: &Option<String>,
) -> std::result::Result<(Option<String>, Option<String>), String> {
    match (alg, enc) {
        (None, None) => Ok((None, None)),
        (Some(a), e) => {
            if !ENC_ALGS.contains(&a.as_str()) {
                return Err(format!(
                    "{what}_encrypted_response_alg {a:?} is not supported (RSA-OAEP, RSA-OAEP-256, ECDH-ES)"
                ));
            }
            let e = e.clone().unwrap_or_else(|| "A256GCM".into());
            if e != "A256GCM" {
                return Err(format!(
                    "{what}_encrypted_response_enc {e:?} is not supported (A256GCM)"
                ));
            }
            Ok((Some(a.clone()), Some(e)))
        }
        (None, Some(_)) => Err(format!(
            "{what}_encrypted_response_enc needs {what}_encrypted_response_alg"
        )),
    }
}

impl ClientInput {
    /// Validates the input into a client; returns it with the secret to show once.
    pub fn into_client(self) -> Result<(Client, NewClientSecret)> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() || self.name.len() > 200 {
            problems.push("name must be 1 to 200 characters".to_string());
        }
        if self.organisation.len() != 14 || !self.organisation.chars().all(|c| c.is_ascii_digit()) {
            problems.push("organisation must be a SIRET (14 digits)".to_string());
        }
        if self.redirect_uris.is_empty() {
            problems.push("redirect_uris must list at least one URI".to_string());
        }
        for u in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
            .chain(&self.backchannel_logout_uri)
        {
            if let Err(e) = valid_redirect_uri(u) {
                problems.push(e);
            }
        }
        let mut scopes = if self.scopes.is_empty() {
            vec!["openid".into(), "identite_pivot".into(), "email".into()]
        } else {
            self.scopes.clone()
        };
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        for s in &scopes {
            if !SCOPES.contains(&s.as_str()) {
                problems.push(format!("scope {s:?} is not one Socle offers"));
            }
        }
        let eidas_level = self.eidas_level.unwrap_or(1);
        if Eidas::from_level(eidas_level).is_none() {
            problems.push("eidas_level must be 1, 2 or 3".into());
        }
        let method = self
            .token_endpoint_auth_method
            .clone()
            .unwrap_or_else(|| "client_secret_basic".into());
        if !AUTH_METHODS.contains(&method.as_str()) {
            problems.push(format!(
                "token_endpoint_auth_method {method:?} is not supported ({})",
                AUTH_METHODS.join(", ")
            ));
        }
        if let Some(jwks) = &self.jwks
            && let Err(e) = parse_jwks(jwks)
        {
            problems.push(e);
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            problems.push("give jwks or jwks_uri, not both".into());
        }
        if let Some(uri) = &self.jwks_uri
            && let Err(e) = valid_redirect_uri(uri)
        {
            problems.push(format!("jwks_uri: {e}"));
        }
        let keys = self.jwks.is_some() || self.jwks_uri.is_some();
        if method == "private_key_jwt" && !keys {
            problems.push("private_key_jwt needs the client's jwks or jwks_uri".into());
        }
        let id_alg = self
            .id_token_signed_response_alg
            .clone()
            .unwrap_or_else(|| "ES256".into());
        if id_alg != "ES256" && id_alg != "RS256" {
            problems.push("id_token_signed_response_alg must be ES256 or RS256".into());
        }
        let profile = self.profile.unwrap_or_default();
        let ui_alg = match (self.userinfo_signed_response_alg.as_deref(), profile) {
            (None, ClientProfile::Franceconnect) => Some("ES256".to_string()),
            (None | Some("none"), ClientProfile::Standard) => None,
            (Some("none"), ClientProfile::Franceconnect) => {
                problems.push(
                    "the franceconnect profile signs userinfo: userinfo_signed_response_alg cannot be \"none\"".into(),
                );
                None
            }
            (Some(a @ ("ES256" | "RS256")), _) => Some(a.to_string()),
            (Some(_), _) => {
                problems
                    .push("userinfo_signed_response_alg must be ES256, RS256 or \"none\"".into());
                None
            }
        };
        let (ide_alg, ide_enc) = encryption_pair(
            "id_token",
            &self.id_token_encrypted_response_alg,
            &self.id_token_encrypted_response_enc,
        )
        .unwrap_or_else(|e| {
            problems.push(e);
            (None, None)
        });
        let (uie_alg, uie_enc) = encryption_pair(
            "userinfo",
            &self.userinfo_encrypted_response_alg,
            &self.userinfo_encrypted_response_enc,
        )
        .unwrap_or_else(|e| {
            problems.push(e);
            (None, None)
        });
        if (ide_alg.is_some() || uie_alg.is_some()) && !keys {
            problems
                .push("encryption needs the client's jwks or jwks_uri (with an enc key)".into());
        }
        // A key to encrypt to, now: found missing at the token endpoint, it would cost
        // the person's login (the code is spent by then).
        if let Some(jwks) = &self.jwks {
            for (what, alg) in [("id_token", &ide_alg), ("userinfo", &uie_alg)] {
                if let Some(a) = alg
                    && find_key(jwks, "enc", Some(a), None).is_none()
                {
                    problems.push(format!(
                        "{what}_encrypted_response_alg {a:?} needs an encryption key of the matching type in jwks ({} key, use \"enc\" or none)",
                        if a.starts_with("RSA") { "RSA" } else { "EC" }
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(IdentityError::Invalid(problems.join("; ")));
        }
        let client_id = hex::encode(rand_bytes::<32>());
        let secret = matches!(
            method.as_str(),
            "client_secret_basic" | "client_secret_post"
        )
        .then(|| crate::random_token(32));
        let client = Client {
            client_id: client_id.clone(),
            name: self.name.trim().to_string(),
            organisation: self.organisation,
            profile,
            sandbox: self.sandbox,
            secret_hash: secret.as_ref().map(|s| crate::sha256_hex(s.as_bytes())),
            previous_secret_hash: None,
            previous_secret_until: None,
            jwks: self.jwks,
            jwks_uri: self.jwks_uri,
            token_endpoint_auth_method: method,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            backchannel_logout_uri: self.backchannel_logout_uri,
            backchannel_logout_session_required: self.backchannel_logout_session_required,
            scopes,
            eidas_level,
            id_token_signed_response_alg: id_alg,
            id_token_encrypted_response_alg: ide_alg,
            id_token_encrypted_response_enc: ide_enc,
            userinfo_signed_response_alg: ui_alg,
            userinfo_encrypted_response_alg: uie_alg,
            userinfo_encrypted_response_enc: uie_enc,
            consent_exempt: self.consent_exempt,
            disabled: false,
        };
        Ok((
            client,
            NewClientSecret {
                client_id,
                client_secret: secret,
            },
        ))
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Parses a JWKS document.
pub fn parse_jwks(v: &Value) -> std::result::Result<JwkSet, String> {
    match v {
        Value::Object(m) => JwkSet::from_map(m.clone()).map_err(|e| format!("jwks: {e}")),
        _ => Err("jwks must be a JSON object {\"keys\": [...]}".into()),
    }
}

/// What a service of the platform's own is (the citizen space, the demonstration
/// service): a confidential client authenticated by `client_secret_basic`, ES256 ID
/// tokens, JSON userinfo, nothing encrypted, no back-channel logout.
pub struct PlatformService<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub organisation: &'a str,
    /// The secret, generated at each start (only its hash is kept).
    pub secret: &'a str,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    pub scopes: &'a [&'a str],
    pub eidas_level: u8,
}

impl From<PlatformService<'_>> for Client {
    fn from(s: PlatformService<'_>) -> Client {
        Client {
            client_id: s.client_id.to_string(),
            name: s.name.to_string(),
            organisation: s.organisation.to_string(),
            profile: ClientProfile::Standard,
            sandbox: false,
            secret_hash: Some(crate::sha256_hex(s.secret.as_bytes())),
            previous_secret_hash: None,
            previous_secret_until: None,
            jwks: None,
            jwks_uri: None,
            token_endpoint_auth_method: "client_secret_basic".into(),
            redirect_uris: vec![s.redirect_uri],
            post_logout_redirect_uris: vec![s.post_logout_redirect_uri],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            scopes: s.scopes.iter().map(|x| x.to_string()).collect(),
            eidas_level: s.eidas_level,
            id_token_signed_response_alg: "ES256".into(),
            id_token_encrypted_response_alg: None,
            id_token_encrypted_response_enc: None,
            userinfo_signed_response_alg: None,
            userinfo_encrypted_response_alg: None,
            userinfo_encrypted_response_enc: None,
            consent_exempt: false,
            disabled: false,
        }
    }
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == "none"
    }

    /// Whether the client authenticates with a secret.
    pub fn uses_secret(&self) -> bool {
        matches!(
            self.token_endpoint_auth_method.as_str(),
            "client_secret_basic" | "client_secret_post"
        )
    }

    /// Gives a client registered without its secret yet (the partner space's: the
    /// secret is generated when its developers first ask for it) its first one,
    /// returned to show once; `None` if it has one or uses no secret.
    pub fn issue_secret(&mut self) -> Option<String> {
        if !self.uses_secret() || self.secret_hash.is_some() {
            return None;
        }
        let secret = crate::random_token(32);
        self.secret_hash = Some(crate::sha256_hex(secret.as_bytes()));
        Some(secret)
    }

    /// A new secret (returned, to show once), the current one staying valid for
    /// `grace` seconds (at most [`MAX_GRACE`]) so that the service can deploy the new
    /// one without an outage.
    pub fn renew_secret(&mut self, grace: i64) -> Result<String> {
        if !(0..=MAX_GRACE).contains(&grace) {
            return Err(IdentityError::Invalid(format!(
                "grace_seconds must be from 0 to {MAX_GRACE} (30 days)"
            )));
        }
        if !self.uses_secret() {
            return Err(IdentityError::Invalid(format!(
                "client {} authenticates with {}, not a secret",
                self.client_id, self.token_endpoint_auth_method
            )));
        }
        let secret = crate::random_token(32);
        self.previous_secret_hash = self.secret_hash.take();
        self.previous_secret_until = Some(crate::now() + grace);
        self.secret_hash = Some(crate::sha256_hex(secret.as_bytes()));
        Ok(secret)
    }

    /// The client as `input` describes it now (name, addresses, scopes, level,
    /// profile, sandbox), checked as at registration, its identifier, secrets, keys and
    /// authentication method kept.
    pub fn reconfigured(&self, input: ClientInput) -> Result<Client> {
        let (mut c, _) = input.into_client()?;
        c.client_id = self.client_id.clone();
        c.secret_hash = self.secret_hash.clone();
        c.previous_secret_hash = self.previous_secret_hash.clone();
        c.previous_secret_until = self.previous_secret_until;
        c.jwks = self.jwks.clone();
        c.jwks_uri = self.jwks_uri.clone();
        c.token_endpoint_auth_method = self.token_endpoint_auth_method.clone();
        c.consent_exempt = self.consent_exempt;
        c.disabled = self.disabled;
        // Settings the partner space's form does not carry stay as they were.
        c.id_token_signed_response_alg = self.id_token_signed_response_alg.clone();
        c.id_token_encrypted_response_alg = self.id_token_encrypted_response_alg.clone();
        c.id_token_encrypted_response_enc = self.id_token_encrypted_response_enc.clone();
        c.userinfo_encrypted_response_alg = self.userinfo_encrypted_response_alg.clone();
        c.userinfo_encrypted_response_enc = self.userinfo_encrypted_response_enc.clone();
        c.userinfo_signed_response_alg = self
            .userinfo_signed_response_alg
            .clone()
            .or(c.userinfo_signed_response_alg);
        c.backchannel_logout_session_required = self.backchannel_logout_session_required;
        Ok(c)
    }

    /// The client's key for `use` (`sig` or `enc`) and, for `enc`, suitable for `alg`.
    pub fn key(&self, usage: &str, alg: Option<&str>, kid: Option<&str>) -> Option<Jwk> {
        find_key(self.jwks.as_ref()?, usage, alg, kid)
    }
}

/// The key of a JWKS for `use` (`sig` or `enc`) and, for `enc`, suitable for `alg`.
pub(crate) fn find_key(
    jwks: &Value,
    usage: &str,
    alg: Option<&str>,
    kid: Option<&str>,
) -> Option<Jwk> {
    let set = parse_jwks(jwks).ok()?;
    set.keys()
        .into_iter()
        .filter(|k| k.key_use().is_none_or(|u| u == usage))
        .filter(|k| kid.is_none_or(|id| k.key_id() == Some(id)))
        .filter(|k| match alg {
            Some(a) if a.starts_with("RSA") => k.key_type() == "RSA",
            Some(a) if a.starts_with("ECDH") => k.key_type() == "EC",
            Some("ES256") => k.key_type() == "EC",
            Some("RS256") => k.key_type() == "RSA",
            _ => true,
        })
        .map(|k| (*k).clone())
        .next()
}

/// How long a client read from the store is trusted (a client disabled on another
/// node is refused there within this time; at once on the node that disabled it).
const CACHE_TTL: Duration = Duration::from_secs(5);

type Cache = HashMap<String, (Instant, Option<Client>)>;

/// The registry of clients, over the store, with a short-lived cache: every step of a
/// login and every token request looks the client up.
#[derive(Clone)]
pub struct Clients {
    store: Store,
    cache: Arc<Mutex<Cache>>,
}

impl Clients {
    pub fn new(store: Store) -> Self {
        Clients {
            store,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Drops this node's cached copy of a client another writer changed (the partner
    /// space writes clients with its steps); other nodes see it within the cache's 5 s.
    pub fn forget(&self, client_id: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(client_id);
        }
    }

    /// Registers a client; `by` (e.g. `operator:admin-api`) is the journal entry's
    /// actor, written in the same transaction as the client.
    pub async fn create(&self, input: ClientInput, by: &str) -> Result<(Client, NewClientSecret)> {
        let (client, secret) = input.into_client()?;
        let doc =
            serde_json::to_string(&client).map_err(|e| IdentityError::Crypto(e.to_string()))?;
        let journal = admin_entry(by, "client.created", &client.client_id)?;
        self.store
            .insert_client(&client.client_id, &doc, crate::now(), &journal)
            .await?;
        self.forget(&client.client_id);
        Ok((client, secret))
    }

    /// Stores a client as given (demo seeding: a known client id and secret).
    pub async fn put(&self, client: &Client) -> Result<()> {
        self.forget(&client.client_id);
        let doc =
            serde_json::to_string(client).map_err(|e| IdentityError::Crypto(e.to_string()))?;
        if !self
            .store
            .update_client(&client.client_id, &doc, crate::now(), None, &[])
            .await?
        {
            // Journaled with the demonstration's seeding.
            self.store
                .insert_client(&client.client_id, &doc, crate::now(), &[])
                .await?;
        }
        Ok(())
    }

    pub async fn get(&self, client_id: &str) -> Result<Option<Client>> {
        if let Ok(c) = self.cache.lock()
            && let Some((at, client)) = c.get(client_id)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(client.clone());
        }
        let client = match self.store.client(client_id).await? {
            None => None,
            Some(row) => {
                let mut c: Client = serde_json::from_str(&row.doc).map_err(|e| {
                    IdentityError::Crypto(format!("stored client is unreadable: {e}"))
                })?;
                c.disabled = row.disabled;
                Some(c)
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(client_id.to_string(), (Instant::now(), client.clone()));
        }
        Ok(client)
    }

    /// An enabled client, or the OAuth error `invalid_client`.
    pub async fn active(&self, client_id: &str) -> Result<Client> {
        match self.get(client_id).await? {
            Some(c) if !c.disabled => Ok(c),
            _ => Err(IdentityError::oidc(
                OidcError::InvalidClient,
                "unknown or disabled client",
            )),
        }
    }

    pub async fn list(&self) -> Result<Vec<Client>> {
        let mut out = Vec::new();
        for row in self.store.clients().await? {
            if let Ok(mut c) = serde_json::from_str::<Client>(&row.doc) {
                c.disabled = row.disabled;
                out.push(c);
            }
        }
        Ok(out)
    }

    /// A client as stored (not cached), and its stored document.
    async fn stored(&self, client_id: &str) -> Result<(Client, String)> {
        let Some(row) = self.store.client(client_id).await? else {
            return Err(IdentityError::NotFound(format!("client {client_id}")));
        };
        let mut client: Client = serde_json::from_str(&row.doc)
            .map_err(|e| IdentityError::Crypto(format!("stored client is unreadable: {e}")))?;
        client.disabled = row.disabled;
        Ok((client, row.doc))
    }

    /// Writes `client` over the document `stored` it was read from, with `entry`, in
    /// one transaction; a conflict when it changed meanwhile.
    async fn rewrite(
        &self,
        client: &Client,
        stored: &str,
        entry: socle_journal::Entry,
    ) -> Result<()> {
        let doc =
            serde_json::to_string(client).map_err(|e| IdentityError::Crypto(e.to_string()))?;
        let journal = socle_journal::encode(vec![entry])?;
        let written = self
            .store
            .update_client(
                &client.client_id,
                &doc,
                crate::now(),
                Some(stored),
                &journal,
            )
            .await?;
        self.forget(&client.client_id);
        if written {
            Ok(())
        } else {
            Err(IdentityError::Conflict(format!(
                "client {} changed meanwhile: try again",
                client.client_id
            )))
        }
    }

    /// Replaces a client's redirect and post-logout redirect URIs (checked as at
    /// registration), journaled as by `by` in the same transaction: an address the
    /// service no longer uses stops being a place codes can be sent to.
    pub async fn set_redirect_uris(
        &self,
        client_id: &str,
        redirect_uris: Vec<String>,
        post_logout_redirect_uris: Vec<String>,
        by: &str,
    ) -> Result<Client> {
        let mut problems = Vec::new();
        if redirect_uris.is_empty() {
            problems.push("redirect_uris must list at least one URI".to_string());
        }
        for u in redirect_uris.iter().chain(&post_logout_redirect_uris) {
            if let Err(e) = valid_redirect_uri(u) {
                problems.push(e);
            }
        }
        if !problems.is_empty() {
            return Err(IdentityError::Invalid(problems.join("; ")));
        }
        let (mut client, stored) = self.stored(client_id).await?;
        client.redirect_uris = redirect_uris;
        client.post_logout_redirect_uris = post_logout_redirect_uris;
        let entry = socle_journal::Entry::new(socle_journal::EntryKind::Admin, by, "ok")
            .detail("action", "client.redirect_uris_changed")
            .detail("client_id", client_id)
            .detail("redirect_uris", client.redirect_uris.join(" "));
        self.rewrite(&client, &stored, entry).await?;
        Ok(client)
    }

    /// Gives a client a new secret (returned, to show once), the current one staying
    /// valid for `grace` seconds (at most 30 days) so that the service can deploy the
    /// new one without an outage; journaled as by `by` in the same transaction.
    pub async fn renew_secret(
        &self,
        client_id: &str,
        grace: i64,
        by: &str,
    ) -> Result<NewClientSecret> {
        let (mut client, stored) = self.stored(client_id).await?;
        let secret = client.renew_secret(grace)?;
        let entry = socle_journal::Entry::new(socle_journal::EntryKind::Admin, by, "ok")
            .detail("action", "client.secret_renewed")
            .detail("client_id", client_id)
            .detail("grace_seconds", grace.to_string());
        self.rewrite(&client, &stored, entry).await?;
        Ok(NewClientSecret {
            client_id: client_id.to_string(),
            client_secret: Some(secret),
        })
    }

    /// Disables (or enables again) a client, journaled as by `by` in the same
    /// transaction.
    pub async fn set_disabled(&self, client_id: &str, disabled: bool, by: &str) -> Result<()> {
        self.forget(client_id);
        let action = if disabled {
            "client.disabled"
        } else {
            "client.enabled"
        };
        let journal = admin_entry(by, action, client_id)?;
        if self
            .store
            .set_client_disabled(client_id, disabled, crate::now(), &journal)
            .await?
        {
            Ok(())
        } else {
            Err(IdentityError::NotFound(format!("client {client_id}")))
        }
    }
}

/// The journal entry of an administrative change of a client, encoded for the store.
fn admin_entry(by: &str, action: &str, client_id: &str) -> Result<Vec<socle_journal::Leaf>> {
    Ok(socle_journal::encode(vec![
        socle_journal::Entry::new(socle_journal::EntryKind::Admin, by, "ok")
            .detail("action", action)
            .detail("client_id", client_id),
    ])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ClientInput {
        ClientInput {
            name: "Service".into(),
            organisation: "13002526500013".into(),
            redirect_uris: vec!["https://fs.example.fr/callback".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_secret_shown_once() {
        let (c, s) = input().into_client().unwrap();
        assert_eq!(c.token_endpoint_auth_method, "client_secret_basic");
        assert_eq!(c.profile, ClientProfile::Standard);
        // OpenID Connect Registration §2: JSON unless a signing algorithm is registered.
        assert_eq!(c.userinfo_signed_response_alg, None);
        assert_eq!(c.id_token_signed_response_alg, "ES256");
        // FranceConnect's profile signs userinfo.
        let mut fc = input();
        fc.profile = Some(ClientProfile::Franceconnect);
        let (signed, _) = fc.into_client().unwrap();
        assert_eq!(
            signed.userinfo_signed_response_alg.as_deref(),
            Some("ES256")
        );
        let secret = s.client_secret.unwrap();
        assert_eq!(
            c.secret_hash.as_deref(),
            Some(crate::sha256_hex(secret.as_bytes()).as_str())
        );
        assert!(!serde_json::to_string(&c).unwrap().contains(&secret));
    }

    #[test]
    fn lists_every_problem() {
        let mut i = input();
        i.organisation = "123".into();
        i.redirect_uris = vec!["http://fs.example.fr/cb".into(), "https://x/#f".into()];
        i.scopes = vec!["openid".into(), "everything".into()];
        i.eidas_level = Some(4);
        i.token_endpoint_auth_method = Some("private_key_jwt".into());
        let IdentityError::Invalid(msg) = i.into_client().unwrap_err() else {
            panic!()
        };
        for part in [
            "SIRET",
            "https",
            "fragment",
            "everything",
            "eidas_level",
            "jwks",
        ] {
            assert!(msg.contains(part), "{part} missing from {msg}");
        }
    }
}
