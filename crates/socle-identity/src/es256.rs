//! ES256 (ECDSA P-256 with SHA-256, RFC 7518 §3.4) signing and verification with ring,
//! behind josekit's `JwsSigner` and `JwsVerifier` traits, so JWTs are still framed by
//! josekit. josekit's own ES256 goes through OpenSSL 3, which sets up a fresh
//! signing context (algorithm fetch, key export) and converts the signature to and from
//! DER on every call; in a profile of the login flows that setup cost more than the
//! arithmetic. ring is the P-256 code rustls already uses here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::JoseError;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsAlgorithm, JwsSigner, JwsVerifier};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

fn key_error(what: &str) -> JoseError {
    JoseError::InvalidKeyFormat(anyhow::anyhow!("{what}"))
}

fn coordinate(jwk: &Jwk, name: &str) -> Result<Vec<u8>, JoseError> {
    let v = jwk
        .parameter(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| key_error(&format!("the EC key has no {name}")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(v)
        .map_err(|_| key_error(&format!("the EC key's {name} is not base64url")))?;
    if bytes.len() != 32 {
        return Err(key_error(&format!("the EC key's {name} is not 32 bytes")));
    }
    Ok(bytes)
}

/// The uncompressed point `04 ‖ x ‖ y` of a P-256 JWK.
fn public_point(jwk: &Jwk) -> Result<Vec<u8>, JoseError> {
    if jwk.key_type() != "EC" || jwk.curve() != Some("P-256") {
        return Err(key_error("not a P-256 key"));
    }
    let mut point = Vec::with_capacity(65);
    point.push(4);
    point.extend(coordinate(jwk, "x")?);
    point.extend(coordinate(jwk, "y")?);
    Ok(point)
}

/// Signs with a P-256 private JWK.
#[derive(Clone)]
pub struct Es256Signer {
    key: Arc<EcdsaKeyPair>,
    rng: SystemRandom,
    kid: Option<String>,
}

impl std::fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Signer")
            .field("kid", &self.kid)
            .finish()
    }
}

impl Es256Signer {
    pub fn from_jwk(jwk: &Jwk) -> Result<Es256Signer, JoseError> {
        let public = public_point(jwk)?;
        let d = coordinate(jwk, "d")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &public,
            &rng,
        )
        .map_err(|_| key_error("the EC private key does not match its public key"))?;
        Ok(Es256Signer {
            key: Arc::new(key),
            rng,
            kid: jwk.key_id().map(str::to_string),
        })
    }
}

impl JwsSigner for Es256Signer {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &ES256
    }
    fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    fn signature_len(&self) -> usize {
        64
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| JoseError::InvalidSignature(anyhow::anyhow!("ES256 signing failed")))
    }
    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

/// Verifies with a P-256 public JWK.
#[derive(Clone, Debug)]
pub struct Es256Verifier {
    point: Vec<u8>,
    kid: Option<String>,
}

impl Es256Verifier {
    pub fn from_jwk(jwk: &Jwk) -> Result<Es256Verifier, JoseError> {
        Ok(Es256Verifier {
            point: public_point(jwk)?,
            kid: jwk.key_id().map(str::to_string),
        })
    }
}

impl JwsVerifier for Es256Verifier {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &ES256
    }
    fn key_id(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        // The JWS form is r ‖ s, 32 bytes each; ring's FIXED format is the same and
        // refuses any other length.
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(message, signature)
            .map_err(|_| JoseError::InvalidSignature(anyhow::anyhow!("signature mismatch")))
    }
    fn box_clone(&self) -> Box<dyn JwsVerifier> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jwk::KeyPair;
    use josekit::jws::JwsHeader;
    use josekit::jwt::JwtPayload;

    fn key() -> Jwk {
        let mut k = ES256.generate_key_pair().unwrap().to_jwk_key_pair();
        k.set_key_id("k1");
        k
    }

    #[test]
    fn ring_and_openssl_agree_both_ways() {
        let jwk = key();
        let public = jwk.to_public_key().unwrap();
        let mut p = JwtPayload::new();
        p.set_subject("abc");
        let header = JwsHeader::new();
        // Signed by ring, verified by josekit's OpenSSL verifier, and the reverse.
        let ours =
            josekit::jwt::encode_with_signer(&p, &header, &Es256Signer::from_jwk(&jwk).unwrap())
                .unwrap();
        let (back, h) =
            josekit::jwt::decode_with_verifier(&ours, &ES256.verifier_from_jwk(&public).unwrap())
                .unwrap();
        assert_eq!(back.subject(), Some("abc"));
        assert_eq!(h.key_id(), Some("k1"));
        let theirs =
            josekit::jwt::encode_with_signer(&p, &header, &ES256.signer_from_jwk(&jwk).unwrap())
                .unwrap();
        let v = Es256Verifier::from_jwk(&public).unwrap();
        assert!(josekit::jwt::decode_with_verifier(&theirs, &v).is_ok());
        // A flipped bit, a truncated signature and another key are refused.
        let mut bad = theirs.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(
            josekit::jwt::decode_with_verifier(std::str::from_utf8(&bad).unwrap(), &v).is_err()
        );
        let cut = &theirs[..theirs.len() - 4];
        assert!(josekit::jwt::decode_with_verifier(cut, &v).is_err());
        let other = Es256Verifier::from_jwk(&key().to_public_key().unwrap()).unwrap();
        assert!(josekit::jwt::decode_with_verifier(&theirs, &other).is_err());
    }

    #[test]
    fn refuses_keys_that_are_not_p256() {
        let rsa = josekit::jws::RS256
            .generate_key_pair(2048)
            .unwrap()
            .to_jwk_key_pair();
        assert!(Es256Verifier::from_jwk(&rsa.to_public_key().unwrap()).is_err());
        assert!(Es256Signer::from_jwk(&rsa).is_err());
        let mut public_only = key().to_public_key().unwrap();
        public_only.set_key_id("x");
        assert!(Es256Signer::from_jwk(&public_only).is_err());
    }
}
