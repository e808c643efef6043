//! Journal entries and their byte encoding (the Merkle leaves).
//!
//! An entry is encoded as canonical JSON: one object, keys in ascending byte order,
//! no insignificant whitespace, absent fields omitted, strings escaped as RFC 8785
//! (JCS) does, the only number being the version `v`. For the values an entry can
//! hold this is exactly RFC 8785, so any JCS library re-creates the bytes. The leaf is
//! these bytes; `docs/JOURNAL.md` specifies them.
//!
//! Entries hold no clear personal data: a person appears only as `subject`, a keyed
//! pseudonym (HMAC-SHA256 of a stable person key under the platform's journal secret).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The encoding version written in every entry.
pub const ENTRY_VERSION: u32 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A call of a service provider to a data provider through the gateway.
    Exchange,
    /// A person logged in to a service through identity federation.
    Login,
    /// A consent was granted or revoked.
    Consent,
    /// A habilitation changed state.
    Habilitation,
    /// An administrative change to the platform's configuration or data.
    Admin,
    /// A key was created or rotated.
    KeyRotation,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Exchange => "exchange",
            EntryKind::Login => "login",
            EntryKind::Consent => "consent",
            EntryKind::Habilitation => "habilitation",
            EntryKind::Admin => "admin",
            EntryKind::KeyRotation => "key_rotation",
        }
    }
}

/// One journal entry. Field order is the canonical (alphabetical) key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Who acted: `system`, `operator:<id>`, `client:<client_id>`, `agent:<pseudonym>`…
    pub actor: String,
    /// What else identifies the event (action name, API, habilitation id…), never
    /// personal data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    pub kind: EntryKind,
    /// Reference of the legal basis (e.g. a habilitation's legal text id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// Organisations involved, by SIRET or SIREN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<String>,
    /// `ok`, `denied`, `error`…
    pub outcome: String,
    /// Purpose reference (`context` / `object` of a gateway call, consent purpose…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Hex SHA-256 of the request, X-Road style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// Hex SHA-256 of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_hash: Option<String>,
    /// The person concerned, as a pseudonym ([`Pseudonymiser`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RFC 3339 UTC time with milliseconds, e.g. `2026-11-29T14:03:07.123Z`.
    pub time: String,
    /// Encoding version, [`ENTRY_VERSION`].
    pub v: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not a journal entry: {0}")]
    Malformed(String),
    #[error("the entry is not in canonical form")]
    NotCanonical,
    #[error("unsupported entry version {0}")]
    Version(u32),
    #[error("invalid entry: {0}")]
    Invalid(&'static str),
}

const MAX_FIELD: usize = 512;

impl Entry {
    /// A new entry stamped with the current time.
    pub fn new(kind: EntryKind, actor: impl Into<String>, outcome: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            details: BTreeMap::new(),
            kind,
            legal_basis: None,
            organisations: Vec::new(),
            outcome: outcome.into(),
            purpose: None,
            request_hash: None,
            response_hash: None,
            subject: None,
            time: now_millis(),
            v: ENTRY_VERSION,
        }
    }

    pub fn detail(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn organisation(mut self, id: impl Into<String>) -> Self {
        self.organisations.push(id.into());
        self
    }

    pub fn subject(mut self, pseudonym: impl Into<String>) -> Self {
        self.subject = Some(pseudonym.into());
        self
    }

    /// Checks the rules the encoding relies on.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.v != ENTRY_VERSION {
            return Err(EntryError::Version(self.v));
        }
        let strings = [&self.actor, &self.outcome, &self.time]
            .into_iter()
            .chain(self.legal_basis.iter())
            .chain(self.purpose.iter())
            .chain(self.request_hash.iter())
            .chain(self.response_hash.iter())
            .chain(self.subject.iter())
            .chain(self.organisations.iter())
            .chain(self.details.values());
        for s in strings {
            if s.len() > MAX_FIELD {
                return Err(EntryError::Invalid("a field is longer than 512 bytes"));
            }
        }
        if self.actor.is_empty() || self.outcome.is_empty() {
            return Err(EntryError::Invalid("actor and outcome are required"));
        }
        if self.details.len() > 32 || self.organisations.len() > 16 {
            return Err(EntryError::Invalid("too many details or organisations"));
        }
        if !self.details.keys().all(|k| {
            !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        }) {
            return Err(EntryError::Invalid("detail keys are lowercase ASCII words"));
        }
        if time::OffsetDateTime::parse(&self.time, &time::format_description::well_known::Rfc3339)
            .is_err()
            || !self.time.ends_with('Z')
        {
            return Err(EntryError::Invalid("time must be RFC 3339 in UTC (Z)"));
        }
        Ok(())
    }

    /// The canonical bytes: the Merkle leaf.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.validate()?;
        serde_json::to_vec(self).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// Parses leaf bytes, refusing anything that is not exactly the canonical encoding.
    pub fn decode(leaf: &[u8]) -> Result<Self, EntryError> {
        let entry: Entry =
            serde_json::from_slice(leaf).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.v != ENTRY_VERSION {
            return Err(EntryError::Version(entry.v));
        }
        if entry.encode()? != leaf {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// Current UTC time, RFC 3339 with milliseconds.
pub fn now_millis() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Derives subject pseudonyms: base64url(HMAC-SHA256(secret, person key)), 43 characters.
#[derive(Clone)]
pub struct Pseudonymiser {
    secret: [u8; 32],
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(..)")
    }
}

impl Pseudonymiser {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The pseudonym of the person whose stable key is `person_key` (for a citizen, a
    /// key derived from the verified pivot identity, never an identity provider's
    /// own subject).
    pub fn pseudonym(&self, person_key: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret) else {
            // HMAC accepts keys of any length; unreachable, but never panic.
            return String::new();
        };
        mac.update(person_key.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_encoding_is_sorted_compact_and_strict() {
        let e = Entry {
            time: "2026-11-29T14:03:07.123Z".into(),
            ..Entry::new(EntryKind::Exchange, "client:fs-42", "ok")
        }
        .detail("api", "impots/v1/revenus")
        .organisation("13002526500013")
        .subject("abc");
        let bytes = e.encode().unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"actor":"client:fs-42","details":{"api":"impots/v1/revenus"},"kind":"exchange","organisations":["13002526500013"],"outcome":"ok","subject":"abc","time":"2026-11-29T14:03:07.123Z","v":1}"#
        );
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let spaced = String::from_utf8(bytes)
            .unwrap()
            .replace(",\"kind\"", ", \"kind\"");
        assert_eq!(
            Entry::decode(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        assert!(Entry::decode(br#"{"actor":"a","kind":"exchange","outcome":"ok","time":"2026-11-29T14:03:07.123Z","v":2}"#).is_err());
        assert!(Entry::decode(br#"{"actor":"a","kind":"exchange","nir":"1","outcome":"ok","time":"2026-11-29T14:03:07.123Z","v":1}"#).is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let a = Pseudonymiser::new([1u8; 32]);
        let b = Pseudonymiser::new([2u8; 32]);
        assert_eq!(a.pseudonym("person-1"), a.pseudonym("person-1"));
        assert_ne!(a.pseudonym("person-1"), a.pseudonym("person-2"));
        assert_ne!(a.pseudonym("person-1"), b.pseudonym("person-1"));
        assert_eq!(a.pseudonym("person-1").len(), 43);
    }
}
