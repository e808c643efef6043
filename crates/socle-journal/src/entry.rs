//! Journal entries and their byte encoding (the Merkle leaves).
//!
//! An entry is encoded as canonical JSON: one object, keys in ascending byte order,
//! no insignificant whitespace, absent fields omitted, strings escaped as RFC 8785
//! (JCS) does, the only number being the version `v`. For the values an entry can
//! hold this is exactly RFC 8785, so any JCS library re-creates the bytes. The leaf is
//! these bytes; `docs/JOURNAL.md` specifies them.
//!
//! Entries hold no clear personal data: a person appears only as `subject`, a value
//! that only the platform and the person can recognise and that differs in every entry
//! (a random nonce and its HMAC under the person's subject key), so that the public log
//! does not link one person's entries together. The store indexes entries beside the log
//! by the person's stable pseudonym (HMAC-SHA256 of a stable person key under the
//! platform's journal secret), which is never published.

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
    /// A person contested an exchange about them, or an organisation answered.
    Contest,
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
            EntryKind::Contest => "contest",
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
    /// The person concerned, as a blinded subject ([`Subject`]): recognisable with the
    /// person's subject key only, different in every entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The person's stable pseudonym, under which the store indexes the entry beside
    /// the log; never part of the leaf. Set with `subject` by [`Entry::subject`] only.
    #[serde(skip)]
    pub(crate) indexed_as: Option<String>,
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
            indexed_as: None,
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

    /// The person concerned: the leaf holds the blinded subject, the index the
    /// pseudonym.
    pub fn subject(mut self, subject: Subject) -> Self {
        self.subject = Some(subject.published);
        self.indexed_as = Some(subject.pseudonym);
        self
    }

    /// The pseudonym the store indexes the entry under (set by [`Entry::subject`]).
    pub fn indexed_as(&self) -> Option<&str> {
        self.indexed_as.as_deref()
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

/// A person as one journal entry records them.
#[derive(Clone, PartialEq, Eq)]
pub struct Subject {
    /// The stable pseudonym: the store's index key, never published.
    pub pseudonym: String,
    /// What the leaf holds: `base64url(nonce) "." base64url(HMAC-SHA256(subject key,
    /// nonce))`, a fresh 16-byte nonce each time.
    pub published: String,
    key: [u8; 32],
    nonce: [u8; 16],
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subject(..)")
    }
}

impl Subject {
    /// A reference about the person (a consent id…) as this entry may publish it:
    /// base64url(HMAC-SHA256(subject key, nonce ‖ `"\n"` ‖ value)). Different in every
    /// entry; the person, with their key, the nonce of the entry's subject and the
    /// value, checks it.
    pub fn keyed(&self, value: &str) -> String {
        URL_SAFE_NO_PAD
            .encode(hmac(&self.key, &[&self.nonce, b"\n", value.as_bytes()]).unwrap_or_default())
    }
}

/// Label of the subject key's derivation (`docs/JOURNAL.md`).
const SUBJECT_KEY_LABEL: &[u8] = b"socle-journal-subject-key/1\n";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    // HMAC accepts keys of any length: `None` is unreachable, but never panic.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

/// The blinded subject of one entry: `nonce` and its tag under `key`.
pub fn blinded_subject(key: &[u8; 32], nonce: &[u8; 16]) -> String {
    let tag = hmac(key, &[nonce]).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Whether a leaf's `subject` is the blinded subject of the person whose subject key is
/// `key` (constant-time comparison of the tag).
pub fn subject_matches(key: &[u8; 32], subject: &str) -> bool {
    let Some((nonce, tag)) = subject.split_once('.') else {
        return false;
    };
    let (Ok(nonce), Ok(tag)) = (URL_SAFE_NO_PAD.decode(nonce), URL_SAFE_NO_PAD.decode(tag)) else {
        return false;
    };
    if nonce.len() != 16 {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    mac.update(&nonce);
    mac.verify_slice(&tag).is_ok()
}

/// Derives a person's journal identifiers from the platform's journal secret: the
/// stable pseudonym (base64url(HMAC-SHA256(secret, person key)), 43 characters), the
/// subject key (HMAC-SHA256(secret, label ‖ pseudonym)) and from it each entry's
/// blinded subject.
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
        URL_SAFE_NO_PAD.encode(hmac(&self.secret, &[person_key.as_bytes()]).unwrap_or_default())
    }

    /// The subject key of the person whose pseudonym is `pseudonym`: with it (and
    /// nothing else) the person recognises their entries in the public log.
    pub fn subject_key(&self, pseudonym: &str) -> [u8; 32] {
        hmac(&self.secret, &[SUBJECT_KEY_LABEL, pseudonym.as_bytes()]).unwrap_or_default()
    }

    /// The `sub` of a consent receipt (a document made to be shown): the person for
    /// that consent only, base64url(HMAC-SHA256(subject key, `"receipt\n"` ‖ consent
    /// id)), never the pseudonym.
    pub fn receipt_subject(&self, pseudonym: &str, consent_id: &str) -> String {
        let key = self.subject_key(pseudonym);
        URL_SAFE_NO_PAD
            .encode(hmac(&key, &[b"receipt\n", consent_id.as_bytes()]).unwrap_or_default())
    }

    /// A new subject for one entry about the person whose pseudonym is `pseudonym`.
    pub fn subject_of(&self, pseudonym: &str) -> Subject {
        let mut nonce = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let key = self.subject_key(pseudonym);
        Subject {
            published: blinded_subject(&key, &nonce),
            pseudonym: pseudonym.to_string(),
            key,
            nonce,
        }
    }

    /// Whether a leaf's `subject` designates the person whose pseudonym is
    /// `pseudonym`: their blinded subject, or the pseudonym itself (entries written
    /// before subjects were blinded).
    pub fn is_subject(&self, pseudonym: &str, subject: &str) -> bool {
        SubjectMatcher::new(self, pseudonym).matches(subject)
    }
}

/// Recognises one person's entries, the subject key computed once.
pub struct SubjectMatcher {
    pseudonym: String,
    key: [u8; 32],
}

impl SubjectMatcher {
    pub fn new(p: &Pseudonymiser, pseudonym: &str) -> Self {
        Self {
            pseudonym: pseudonym.to_string(),
            key: p.subject_key(pseudonym),
        }
    }

    /// The person's blinded subject, or (entries written before subjects were
    /// blinded) their pseudonym itself.
    pub fn matches(&self, subject: &str) -> bool {
        if subject.contains('.') {
            subject_matches(&self.key, subject)
        } else {
            subject == self.pseudonym
        }
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
        .organisation("13002526500013");
        let e = Entry {
            subject: Some("abc".into()),
            ..e
        };
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

    #[test]
    fn subjects_differ_in_every_entry_and_only_the_key_recognises_them() {
        let a = Pseudonymiser::new([1u8; 32]);
        let p = a.pseudonym("person-1");
        let (s1, s2) = (a.subject_of(&p), a.subject_of(&p));
        assert_eq!(s1.pseudonym, p);
        assert_ne!(s1.published, s2.published);
        assert_eq!(s1.published.len(), 22 + 1 + 43);
        assert!(!s1.published.contains(&p));
        assert!(a.is_subject(&p, &s1.published) && a.is_subject(&p, &s2.published));
        let q = a.pseudonym("person-2");
        assert!(!a.is_subject(&q, &s1.published));
        // With the person's key alone, and under another platform secret it fails.
        assert!(subject_matches(&a.subject_key(&p), &s1.published));
        let b = Pseudonymiser::new([2u8; 32]);
        assert!(!b.is_subject(&p, &s1.published));
        // References keyed to an entry's subject differ between entries, as do receipts'
        // subjects between consents; none is the pseudonym.
        assert_ne!(s1.keyed("cons-1"), s2.keyed("cons-1"));
        assert_ne!(s1.keyed("cons-1"), s1.keyed("cons-2"));
        assert_eq!(s1.keyed("cons-1"), s1.keyed("cons-1"));
        assert_ne!(
            a.receipt_subject(&p, "cons-1"),
            a.receipt_subject(&p, "cons-2")
        );
        assert_ne!(a.receipt_subject(&p, "cons-1"), p);
        assert!(
            !format!("{s1:?}").contains(&s1.published),
            "no key material in logs"
        );
        // A subject set by hand would not be indexed: refused.
        let by_hand = Entry {
            subject: Some(s1.published.clone()),
            ..Entry::new(EntryKind::Consent, "person", "granted")
        };
        assert!(crate::service::encode(vec![by_hand]).is_err());
        let leaves = crate::service::encode(vec![
            Entry::new(EntryKind::Consent, "person", "granted").subject(s1.clone()),
        ])
        .unwrap();
        assert_eq!(leaves[0].1.as_deref(), Some(p.as_str()));
        // Legacy entries carry the pseudonym itself.
        assert!(a.is_subject(&p, &p));
        for bad in ["", ".", "abc", "AAAA.AAAA", &format!("{}x", s1.published)] {
            assert!(!a.is_subject(&q, bad) && !subject_matches(&a.subject_key(&p), bad));
        }
        // Vectors computed with Python's hmac module (docs/JOURNAL.md): secret =
        // 32 × 0x01, person key "person-1", nonce = 16 × 0x02.
        assert_eq!(p, "RB5ClMNcPbl4v45KRVWHkDFMi5lAyBHsyW3pR1V4d7k");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(a.subject_key(&p)),
            "Ir-pQw6hLKKEHOu9rhnp-5r3BCJfJM42lOJ797tSH-Q"
        );
        assert_eq!(
            blinded_subject(&[1u8; 32], &[2u8; 16]),
            "AgICAgICAgICAgICAgICAg.aNpbgN5PpE9RzM4eJFMU7QEN-fd889DFnm8Cj17N-F8"
        );
    }
}
