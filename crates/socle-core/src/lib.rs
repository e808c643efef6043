//! Domain types and rules of Socle, with no I/O.
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
