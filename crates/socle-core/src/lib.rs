//! Domain types and rules of Socle, with no I/O — and the few helpers every crate
//! shares (one clock, one hash, one token bucket: [`rate`]; SIREN and SIRET numbers:
//! [`siret`]), so that none keeps its own copy.
//!
//! Everything here is plain data and validation ("parse, don't validate"): once a value
//! of one of these types exists it is valid, so the layers above (store, HTTP, CLI)
//! never re-check it. This crate knows nothing of HTTP, SQL or the file system; the
//! other crates depend on it, never the reverse.

use std::fmt;

/// The name an instance publishes itself under: shown in page headers and, later,
/// used as the origin line of journal checkpoints (C2SP signed notes), so it must be a
/// single printable line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceName(String);

/// Why a value was refused; the message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl InstanceName {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Invalid("must not be empty".into()));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid(
                "must be a single line without control characters".into(),
            ));
        }
        // A signed note's origin line may not contain "+" before the key hash
        // separator nor start with "—" (signature lines); keep names unambiguous.
        if name.starts_with('\u{2014}') {
            return Err(Invalid("must not start with an em dash".into()));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names() {
        assert_eq!(
            InstanceName::parse("  Socle démo ").unwrap().as_str(),
            "Socle démo"
        );
        assert!(InstanceName::parse("").is_err());
        assert!(InstanceName::parse("a\nb").is_err());
        assert!(InstanceName::parse(&"x".repeat(101)).is_err());
    }
}

/// The hex SHA-256 of `data`: the platform's one hash helper.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The platform's one clock (UTC).
pub mod rate;
pub mod siret;

pub mod clock {
    /// Unix seconds.
    pub fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// RFC 3339, to the second (`2026-12-07T21:58:51Z`).
    pub fn now_rfc3339() -> String {
        let t = time::OffsetDateTime::now_utc();
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
    }

    /// Today, `YYYY-MM-DD`.
    pub fn today() -> String {
        let d = time::OffsetDateTime::now_utc().date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }
}

#[cfg(test)]
mod shared_tests {
    #[test]
    fn one_hash_and_one_clock() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = super::clock::now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.starts_with(&super::clock::today()));
        assert!(super::clock::now() > 1_700_000_000);
    }
}
