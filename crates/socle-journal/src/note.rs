//! Signed notes (C2SP `signed-note`, the format of Go's `golang.org/x/mod/sumdb/note`)
//! with Ed25519 keys, and checkpoints (C2SP `tlog-checkpoint`) carried in them.
//!
//! A note is UTF-8 text ending in a newline, then a blank line, then one line per
//! signature: `— <key name> <base64(key hash (4 bytes) ‖ signature)>`. The key hash is
//! the first four bytes of SHA-256(`<name>\n` ‖ 0x01 ‖ public key). Keys are written
//! `<name>+<key hash, 8 hex digits>+<base64(0x01 ‖ key)>`, the signer key with a
//! `PRIVATE+KEY+` prefix.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("invalid key name (it must be non-empty, without spaces or '+')")]
    InvalidName,
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note carries no valid signature by {0}")]
    Unverified(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// Is `name` usable as a key name (and so as a checkpoint origin)?
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A note signer: a key name and an Ed25519 private key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    hash: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::InvalidName);
        }
        let key = SigningKey::from_bytes(seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_string(),
            key,
            hash,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey("no PRIVATE+KEY+ prefix"))?;
        let (name, hash, data) = split_key(rest)?;
        let data = B64
            .decode(data)
            .map_err(|_| NoteError::MalformedKey("key data is not base64"))?;
        if data.len() != 33 || data[0] != ALG_ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&data[1..]);
        let signer = Self::from_seed(name, &seed)?;
        if hex::encode(signer.hash) != hash {
            return Err(NoteError::MalformedKey("key hash does not match"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, `<name>+<hash>+<base64(0x01 ‖ public key)>`.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            hash: self.hash,
        }
    }

    /// Signs `text` (which must end with a newline) into a note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.hash);
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

fn split_key(s: &str) -> Result<(&str, &str, &str), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey("expected name+hash+data"));
    };
    if !valid_key_name(name) {
        return Err(NoteError::InvalidName);
    }
    if hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey("key hash is not 8 hex digits"));
    }
    Ok((name, hash, data))
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed(
            "the text must not contain a blank line",
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed(
            "the text must not contain control characters",
        ));
    }
    Ok(())
}

/// A note verifier: a key name and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    hash: [u8; 4],
}

impl NoteVerifier {
    /// Parses `<name>+<hash>+<base64(0x01 ‖ public key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, hash, data) = split_key(text.trim())?;
        let data = B64
            .decode(data)
            .map_err(|_| NoteError::MalformedKey("key data is not base64"))?;
        if data.len() != 33 || data[0] != ALG_ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&data[1..]);
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::MalformedKey("invalid Ed25519 public key"))?;
        let computed = key_hash(name, &public);
        if hex::encode(computed) != hash {
            return Err(NoteError::MalformedKey("key hash does not match"));
        }
        Ok(Self {
            name: name.to_string(),
            key,
            hash: computed,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text form, `<name>+<hash>+<base64(0x01 ‖ public key)>`.
    pub fn encode(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.hash),
            B64.encode(data)
        )
    }

    /// Checks that `note` carries a valid signature by this key; returns its text.
    /// Signatures by other keys are ignored, as the format requires.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no signature block"))?;
        let text = &note[..split + 1];
        check_text(text)?;
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the signature block must end with a newline",
            ));
        }
        let mut ok = false;
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "a signature line must start with an em dash",
            ))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line needs a name and a signature",
            ))?;
            let blob = B64
                .decode(blob)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            if name != self.name || blob[..4] != self.hash {
                continue;
            }
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&blob[4..]) else {
                return Err(NoteError::Unverified(self.name.clone()));
            };
            if self.key.verify(text.as_bytes(), &sig).is_err() {
                return Err(NoteError::Unverified(self.name.clone()));
            }
            ok = true;
        }
        if ok {
            Ok(text)
        } else {
            Err(NoteError::Unverified(self.name.clone()))
        }
    }
}

/// A checkpoint: the origin of the log, its size and root (C2SP tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root, each on its own line.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint text (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split_inclusive('\n');
        let origin = lines
            .next()
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or(NoteError::MalformedCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or(NoteError::MalformedCheckpoint("no size line"))?;
        let root = lines
            .next()
            .and_then(|l| l.strip_suffix('\n'))
            .ok_or(NoteError::MalformedCheckpoint("no root line"))?;
        if origin.is_empty() {
            return Err(NoteError::MalformedCheckpoint("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(NoteError::MalformedCheckpoint(
                "the size is not a decimal number",
            ));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| NoteError::MalformedCheckpoint("the size is too large"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the root is not 32 bytes of base64",
            ))?;
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// Verifies `note` with `verifier` and parses the checkpoint it carries; the origin
    /// must be the verifier's key name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        let text = verifier.open(note)?;
        let checkpoint = Self::parse(text)?;
        if checkpoint.origin != verifier.name() {
            return Err(NoteError::MalformedCheckpoint(
                "the origin is not the key's name",
            ));
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_open_roundtrip_and_tampering() {
        let signer = NoteSigner::from_seed("example.org/log", &[7u8; 32]).unwrap();
        let verifier = NoteVerifier::parse(&signer.verifier().encode()).unwrap();
        let cp = Checkpoint {
            origin: "example.org/log".into(),
            size: 42,
            root: [9u8; 32],
        };
        let note = signer.sign(&cp.to_text()).unwrap();
        assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), cp);
        let forged = note.replace("\n42\n", "\n43\n");
        assert!(Checkpoint::open(&forged, &verifier).is_err());
        let other = NoteSigner::from_seed("example.org/log", &[8u8; 32]).unwrap();
        assert!(matches!(
            other.verifier().open(&note),
            Err(NoteError::Unverified(_))
        ));
        assert!(NoteSigner::from_seed("has space", &[1u8; 32]).is_err());
    }
}
