//! What lets the sequencer tell the entries it wrote from rows someone else added to
//! its database: every stored entry and every queued leaf carries an HMAC-SHA256 under
//! the journal's MAC key, which is sealed under the master key (never in the database
//! in clear). The sequencer checks the entries no checkpoint covers yet when it loads,
//! and each queued leaf before integrating it; anything else halts it. Format in
//! `docs/JOURNAL.md` ("Entries the sequencer wrote").

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Domain labels: an entry MAC is never a valid queue MAC, nor the reverse.
const ENTRY_LABEL: &[u8] = b"socle-journal-entry-mac-v1\n";
const QUEUE_LABEL: &[u8] = b"socle-journal-queue-mac-v1\n";

/// The journal's MAC key.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

impl MacKey {
    pub fn new(key: [u8; 32]) -> Self {
        MacKey(key)
    }

    fn mac(
        &self,
        label: &[u8],
        index: Option<u64>,
        leaf: &[u8],
        subject: Option<&str>,
    ) -> Hmac<Sha256> {
        // Infallible: HMAC takes a key of any length.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(label);
        if let Some(index) = index {
            m.update(&index.to_be_bytes());
        }
        match subject {
            None => m.update(&[0]),
            Some(s) => {
                m.update(&[1]);
                m.update(&(s.len() as u64).to_be_bytes());
                m.update(s.as_bytes());
            }
        }
        m.update(leaf);
        m
    }

    /// The MAC of the entry at `index`: its leaf and the subject it is indexed under.
    pub fn entry(&self, index: u64, leaf: &[u8], subject: Option<&str>) -> [u8; 32] {
        self.mac(ENTRY_LABEL, Some(index), leaf, subject)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The MAC of a queued leaf (no index yet).
    pub fn queued(&self, leaf: &[u8], subject: Option<&str>) -> [u8; 32] {
        self.mac(QUEUE_LABEL, None, leaf, subject)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the entry's (in constant time); a missing one is not.
    pub fn entry_ok(
        &self,
        index: u64,
        leaf: &[u8],
        subject: Option<&str>,
        mac: Option<&[u8]>,
    ) -> bool {
        mac.is_some_and(|mac| {
            self.mac(ENTRY_LABEL, Some(index), leaf, subject)
                .verify_slice(mac)
                .is_ok()
        })
    }

    /// Whether `mac` is the queued leaf's (in constant time); a missing one is not.
    pub fn queued_ok(&self, leaf: &[u8], subject: Option<&str>, mac: Option<&[u8]>) -> bool {
        mac.is_some_and(|mac| {
            self.mac(QUEUE_LABEL, None, leaf, subject)
                .verify_slice(mac)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_index_subject_and_kind() {
        let k = MacKey::new([9; 32]);
        let m = k.entry(3, b"leaf", Some("p"));
        assert!(k.entry_ok(3, b"leaf", Some("p"), Some(&m)));
        assert!(
            !k.entry_ok(4, b"leaf", Some("p"), Some(&m)),
            "another index"
        );
        assert!(!k.entry_ok(3, b"leaf", None, Some(&m)), "another subject");
        assert!(!k.entry_ok(3, b"leaF", Some("p"), Some(&m)), "another leaf");
        assert!(!k.entry_ok(3, b"leaf", Some("p"), None), "no MAC");
        assert!(!k.entry_ok(3, b"leaf", Some("p"), Some(&m[..31])), "cut");
        assert!(
            !MacKey::new([8; 32]).entry_ok(3, b"leaf", Some("p"), Some(&m)),
            "another key"
        );
        let q = k.queued(b"leaf", Some("p"));
        assert!(k.queued_ok(b"leaf", Some("p"), Some(&q)));
        assert_ne!(q, m, "a queue MAC is not an entry MAC");
        // RFC 4231-style check of the construction: HMAC-SHA256 over label ‖ index ‖
        // subject ‖ leaf, as docs/JOURNAL.md says (computed independently with
        // Python: hmac.new(b"\x09"*32, b"socle-journal-entry-mac-v1\n" +
        // (3).to_bytes(8, "big") + b"\x01" + (1).to_bytes(8, "big") + b"p" + b"leaf",
        // "sha256").hexdigest()).
        assert_eq!(hex::encode(m), ENTRY_VECTOR);
    }

    const ENTRY_VECTOR: &str = "21a99e7d72dd7a35025a2756e9571b64824a913eab0a7e62a7bb1d356ec539de";
}
