//! Token signing keys: generated on first start, stored sealed under the master key,
//! rotated on demand; a retired key stays in the JWKS until every token it signed has
//! expired.
//!
//! Sealing is a compact JWE with `alg: dir` and `enc: A256GCM` (RFC 7516) under the
//! 256-bit master key, so a database dump alone reveals no private key. The platform's
//! pairwise-subject secret is kept the same way, as the key row `kid = "pairwise"`.
//!
//! On a first start the RSA key (a 2048-bit prime search: 50–500 ms) is generated in
//! the background, so that a fresh instance is ready in milliseconds; signing with it
//! and the JWKS wait for it ([`KeyRing::settled`]), ES256 is there at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use josekit::jwe::{Dir, JweHeader};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader, JwsSigner, RS256};
use josekit::jwt::JwtPayload;
use serde_json::Value;
use socle_store::{IdentityStore, Store, StoredKey};

use crate::error::{IdentityError, Result};

/// Algorithms Socle signs tokens with.
pub const SIGNING_ALGS: &[&str] = &["ES256", "RS256"];

const PAIRWISE: &str = "pairwise";

/// The 256-bit key that seals private keys at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// Reads the key from its text form: 32 bytes, base64 (standard or url-safe) or hex.
    pub fn parse(text: &str) -> Result<Self> {
        use base64::Engine;
        let t = text.trim();
        let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(t).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok()
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(b) => Ok(MasterKey(b)),
            None => Err(IdentityError::Invalid(
                "the master key must be 32 bytes, written in base64 or hex".into(),
            )),
        }
    }

    /// A fresh random key, in base64 (what `socle keys generate-master` prints).
    pub fn generate_text() -> String {
        use base64::Engine;
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String> {
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        let encrypter = Dir.encrypter_from_bytes(self.0)?;
        Ok(josekit::jwe::serialize_compact(
            plaintext, &header, &encrypter,
        )?)
    }

    pub fn unseal(&self, sealed: &str) -> Result<Vec<u8>> {
        let decrypter = Dir.decrypter_from_bytes(self.0)?;
        let (bytes, _) = josekit::jwe::deserialize_compact(sealed, &decrypter).map_err(|_| {
            IdentityError::Crypto(
                "cannot unseal a stored key: the master key is not the one it was sealed with"
                    .into(),
            )
        })?;
        Ok(bytes)
    }
}

impl MasterKey {
    /// Checks that this is the key the store's secrets were sealed with, by opening a
    /// stored one (none stored yet: a first start, any key will do). Run before anything
    /// is sealed with it, so that a node started with the wrong key seals nothing over
    /// the others' secrets.
    pub async fn check_against(&self, store: &Store) -> Result<()> {
        let keys = store.keys(crate::now()).await?;
        match keys.first() {
            Some(k) => self.unseal(&k.sealed).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// The journal's secrets are sealed the same way as the signing keys (a compact JWE's
/// bytes), so that a database dump signs no checkpoint and links no person's entries.
impl socle_journal::SecretSeal for MasterKey {
    fn seal(&self, secret: &[u8]) -> std::result::Result<Vec<u8>, String> {
        MasterKey::seal(self, secret)
            .map(String::into_bytes)
            .map_err(|e| e.to_string())
    }

    fn unseal(&self, sealed: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let text = std::str::from_utf8(sealed).map_err(|_| "not a sealed value".to_string())?;
        MasterKey::unseal(self, text).map_err(|e| e.to_string())
    }
}

struct Loaded {
    /// Active signer per algorithm: (kid, signer).
    signers: HashMap<&'static str, (String, Box<dyn JwsSigner>)>,
    /// Every published public key (active and retired-but-published).
    public: Vec<Value>,
    pairwise: Vec<u8>,
}

/// The signing keys in memory, reloaded from the store after a rotation.
#[derive(Clone)]
pub struct KeyRing {
    store: Store,
    master: MasterKey,
    loaded: Arc<RwLock<Arc<Loaded>>>,
    /// False while a key generated in the background is not yet stored and loaded.
    settled: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Marks a background generation finished when dropped: at its end, or if its task
/// panics or is dropped with the runtime, so that [`KeyRing::settled`] never hangs.
struct Settle(Arc<tokio::sync::watch::Sender<bool>>);

impl Drop for Settle {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Keys slow enough to generate that a first start does it in the background.
const SLOW: &[&str] = &["RS256"];

fn generate(alg: &str) -> Result<Jwk> {
    let mut jwk = match alg {
        "ES256" => {
            use josekit::jwk::KeyPair;
            ES256.generate_key_pair()?.to_jwk_key_pair()
        }
        "RS256" => {
            use josekit::jwk::KeyPair;
            RS256.generate_key_pair(2048)?.to_jwk_key_pair()
        }
        other => {
            return Err(IdentityError::Invalid(format!(
                "{other} is not a signing algorithm Socle uses (ES256, RS256)"
            )));
        }
    };
    let kid = crate::random_token(16);
    jwk.set_key_id(kid);
    jwk.set_algorithm(alg);
    jwk.set_key_use("sig");
    Ok(jwk)
}

fn public_of(jwk: &Jwk) -> Result<Jwk> {
    let mut public = jwk.to_public_key()?;
    if let Some(k) = jwk.key_id() {
        public.set_key_id(k);
    }
    if let Some(a) = jwk.algorithm() {
        public.set_algorithm(a);
    }
    public.set_key_use("sig");
    Ok(public)
}

fn signer_for(alg: &str, jwk: &Jwk) -> Result<Box<dyn JwsSigner>> {
    Ok(match alg {
        "ES256" => Box::new(crate::es256::Es256Signer::from_jwk(jwk)?),
        "RS256" => Box::new(RS256.signer_from_jwk(jwk)?),
        other => {
            return Err(IdentityError::Crypto(format!(
                "stored key with unknown algorithm {other}"
            )));
        }
    })
}

impl KeyRing {
    /// Loads the keys, generating what is missing (first start). A missing RSA key is
    /// generated in the background: [`KeyRing::settled`] waits for it.
    pub async fn open(store: Store, master: MasterKey) -> Result<KeyRing> {
        let ring = KeyRing {
            store,
            master,
            loaded: Arc::new(RwLock::new(Arc::new(Loaded {
                signers: HashMap::new(),
                public: Vec::new(),
                pairwise: Vec::new(),
            }))),
            settled: Arc::new(tokio::sync::watch::Sender::new(true)),
        };
        let now = crate::now();
        let keys = ring.store.keys(now).await?;
        let missing: Vec<&'static str> = SIGNING_ALGS
            .iter()
            .copied()
            .filter(|alg| !keys.iter().any(|k| k.alg == *alg && k.retired_at.is_none()))
            .collect();
        for alg in missing.iter().filter(|a| !SLOW.contains(a)) {
            ring.insert_new(alg, now).await?;
            tracing::info!(alg, "generated a token signing key");
        }
        if !keys.iter().any(|k| k.kid == PAIRWISE) {
            use rand::RngCore;
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let row = StoredKey {
                kid: PAIRWISE.into(),
                alg: PAIRWISE.into(),
                sealed: ring.master.seal(&secret)?,
                public_jwk: "{}".into(),
                created_at: now,
                retired_at: None,
                publish_until: None,
            };
            // Two nodes starting together: the first insert wins, the other reloads it.
            if let Err(e) = ring.store.insert_key(&row).await {
                tracing::debug!(error = %e, "pairwise secret already created");
            }
        }
        ring.reload().await?;
        let slow: Vec<&'static str> = missing.into_iter().filter(|a| SLOW.contains(a)).collect();
        ring.generate_in_background(slow);
        Ok(ring)
    }

    /// Generates and stores keys of `algs` on a task of their own (unless a generation
    /// is already running), then reloads; [`KeyRing::settled`] waits for it. A failure
    /// is logged; [`KeyRing::ensure`] tries again.
    fn generate_in_background(&self, algs: Vec<&'static str>) {
        if algs.is_empty() {
            return;
        }
        // Settled → generating, under the channel's lock: one generation at a time.
        let started = self
            .settled
            .send_if_modified(|done| std::mem::replace(done, false));
        if !started {
            return;
        }
        let settle = Settle(self.settled.clone());
        let ring = self.clone();
        tokio::spawn(async move {
            let _settle = settle;
            for alg in algs {
                match ring.insert_new(alg, crate::now()).await {
                    Ok(_) => tracing::info!(alg, "generated a token signing key"),
                    Err(e) => {
                        tracing::warn!(alg, error = %e, "cannot generate a token signing key yet")
                    }
                }
            }
            if let Err(e) = ring.reload().await {
                tracing::warn!(error = %e, "cannot load the generated signing keys yet");
            }
        });
    }

    /// Starts generating any signing key still missing (its first generation failed:
    /// the store was unreachable); run with the periodic reload.
    pub fn ensure(&self) {
        if !*self.settled.borrow() {
            return;
        }
        let loaded = self.current();
        let missing: Vec<&'static str> = SIGNING_ALGS
            .iter()
            .copied()
            .filter(|alg| !loaded.signers.contains_key(alg))
            .collect();
        self.generate_in_background(missing);
    }

    /// Waits until the keys generated in the background at a first start are loaded
    /// (at once otherwise).
    pub async fn settled(&self) {
        if *self.settled.borrow() {
            return;
        }
        let mut rx = self.settled.subscribe();
        // The sender lives as long as the ring: this ends when the generation does.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Generates a key of `alg` (off the runtime: an RSA prime search) and stores it.
    async fn insert_new(&self, alg: &str, now: i64) -> Result<String> {
        let row = self.new_key(alg, now).await?;
        self.store.insert_key(&row).await?;
        Ok(row.kid)
    }

    /// A new key of `alg`, sealed, as stored.
    async fn new_key(&self, alg: &str, now: i64) -> Result<StoredKey> {
        let owned = alg.to_string();
        let jwk = tokio::task::spawn_blocking(move || generate(&owned))
            .await
            .map_err(|e| IdentityError::Crypto(format!("key generation stopped: {e}")))??;
        let kid = jwk.key_id().unwrap_or_default().to_string();
        let public = public_of(&jwk)?;
        let row = StoredKey {
            kid: kid.clone(),
            alg: alg.to_string(),
            sealed: self.master.seal(jwk.to_string().as_bytes())?,
            public_jwk: public.to_string(),
            created_at: now,
            retired_at: None,
            publish_until: None,
        };
        Ok(row)
    }

    /// Re-reads the keys from the store (after a rotation by another process).
    pub async fn reload(&self) -> Result<()> {
        let now = crate::now();
        let keys = self.store.keys(now).await?;
        let mut signers = HashMap::new();
        let mut public = Vec::new();
        let mut pairwise = Vec::new();
        for k in &keys {
            if k.kid == PAIRWISE {
                pairwise = self.master.unseal(&k.sealed)?;
                continue;
            }
            let alg: &'static str = match k.alg.as_str() {
                "ES256" => "ES256",
                "RS256" => "RS256",
                _ => continue,
            };
            if let Ok(v) = serde_json::from_str::<Value>(&k.public_jwk) {
                public.push(v);
            }
            // Newest first: the first active key of an algorithm signs.
            if k.retired_at.is_none() && !signers.contains_key(alg) {
                let private = self.master.unseal(&k.sealed)?;
                let jwk = Jwk::from_bytes(&private)?;
                signers.insert(alg, (k.kid.clone(), signer_for(alg, &jwk)?));
            }
        }
        if pairwise.is_empty() {
            return Err(IdentityError::Crypto(
                "the pairwise secret is missing".into(),
            ));
        }
        let loaded = Loaded {
            signers,
            public,
            pairwise,
        };
        if let Ok(mut guard) = self.loaded.write() {
            *guard = Arc::new(loaded);
        }
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the signing key of `alg`; the old one stays published for
    /// `publish_for` seconds (the longest token lifetime). The new key, the old one's
    /// retirement and the journal entry (`oidc.key.rotated`, actor `by`) are one
    /// transaction. Returns the new kid.
    pub async fn rotate(&self, alg: &str, publish_for: i64, by: &str) -> Result<String> {
        self.settled().await;
        let now = crate::now();
        let row = self.new_key(alg, now).await?;
        let journal = socle_journal::encode(vec![
            socle_journal::Entry::new(socle_journal::EntryKind::KeyRotation, by, "ok")
                .detail("action", "oidc.key.rotated")
                .detail("alg", alg)
                .detail("kid", row.kid.clone()),
        ])?;
        self.store
            .rotate_key(&row, now + publish_for, &journal)
            .await?;
        self.reload().await?;
        Ok(row.kid)
    }

    /// The JWKS document: every published public key.
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": self.current().public })
    }

    /// The secret of pairwise subjects.
    pub fn pairwise_secret(&self) -> Vec<u8> {
        self.current().pairwise.clone()
    }

    /// Signs a JWT with the active key of `alg`.
    pub fn sign(&self, alg: &str, payload: &JwtPayload, typ: Option<&str>) -> Result<String> {
        let loaded = self.current();
        let Some((kid, signer)) = loaded.signers.get(alg) else {
            return Err(IdentityError::Crypto(format!("no active {alg} key")));
        };
        let mut header = JwsHeader::new();
        header.set_key_id(kid.clone());
        if let Some(t) = typ {
            header.set_token_type(t);
        }
        Ok(josekit::jwt::encode_with_signer(
            payload,
            &header,
            signer.as_ref(),
        )?)
    }

    /// Verifies a JWT signed by one of Socle's published keys (ID token hints);
    /// expiry is the caller's business.
    pub fn verify(&self, jwt: &str) -> Result<JwtPayload> {
        let loaded = self.current();
        let header = josekit::jwt::decode_header(jwt)
            .map_err(|_| IdentityError::invalid_request("not a JWT"))?;
        let kid = header
            .claim("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| IdentityError::invalid_request("the JWT has no kid"))?;
        let jwk = loaded
            .public
            .iter()
            .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
            .ok_or_else(|| IdentityError::invalid_request("the JWT was not signed by Socle"))?;
        let jwk = match jwk {
            Value::Object(m) => Jwk::from_map(m.clone())?,
            _ => return Err(IdentityError::Crypto("stored JWK is not an object".into())),
        };
        let alg = jwk.algorithm().unwrap_or("ES256");
        let result = match alg {
            "ES256" => josekit::jwt::decode_with_verifier(
                jwt,
                &crate::es256::Es256Verifier::from_jwk(&jwk)?,
            ),
            "RS256" => josekit::jwt::decode_with_verifier(jwt, &RS256.verifier_from_jwk(&jwk)?),
            _ => return Err(IdentityError::invalid_request("unsupported JWT algorithm")),
        };
        let (payload, _) =
            result.map_err(|_| IdentityError::invalid_request("the JWT signature is not valid"))?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_refuses_another_key() {
        let k = MasterKey::parse(&MasterKey::generate_text()).unwrap();
        let sealed = k.seal(b"private").unwrap();
        assert_eq!(sealed.split('.').count(), 5);
        assert_eq!(k.unseal(&sealed).unwrap(), b"private");
        let other = MasterKey::new([7; 32]);
        assert!(other.unseal(&sealed).is_err());
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
    }
}
