//! Socle's journal: a tamper-evident log of every exchange, login, consent, habilitation
//! change, admin action and key rotation.
//!
//! The pure parts — entry encoding ([`entry`]), RFC 9162 hashing and proofs
//! ([`merkle`]), signed notes and checkpoints ([`note`]), and the offline verifier
//! ([`verify`]) — have no I/O and are what an independent auditor needs. The running
//! [`Journal`] ([`service`]) adds group commit, the sequencer and checkpoint signing on
//! top of the store's journal tables (`socle_store::JournalStore`); it holds no SQL and
//! no HTTP. `docs/JOURNAL.md` specifies the formats precisely enough to re-implement.

pub mod entry;
pub mod mac;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod service;
pub mod verify;

#[cfg(test)]
mod vectors;

pub use entry::{
    Entry, EntryError, EntryKind, Pseudonymiser, Subject, SubjectMatcher, subject_matches,
};
pub use merkle::Hash;
pub use note::{Checkpoint, NoteSigner, NoteVerifier};
pub use proof::{PROOF_FORMAT, ProofBundle, ProofBundleError};
pub use service::{
    ConsistencyProof, InclusionProof, Journal, JournalConfig, JournalError, Leaf, SecretSeal,
    TROUBLE_HOLD, authenticate_queue, check_stored_tree, encode, enqueue, read_mac_key,
    read_signing_seed,
};
pub use verify::{Report, Verifier, VerifyError};

/// A checkpoint origin (and key name) derived from an instance name: lowercase,
/// accents removed, runs of other characters turned into `-`.
pub fn origin_from_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ö' | 'ó' => 'o',
            'ù' | 'û' | 'ü' | 'ú' => 'u',
            'ç' => 'c',
            'ÿ' => 'y',
            c => c,
        };
        if c.is_ascii_alphanumeric() || c == '.' || c == '/' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "socle".to_string()
    } else {
        trimmed.to_string()
    }
}
