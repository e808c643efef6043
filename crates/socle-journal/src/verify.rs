//! Offline verification of a journal copy, trusting nothing but the checkpoint key.
//!
//! The verifier is fed every entry in order (from the HTTP API or a bundle) with the
//! leaf hash the server stored for it. It recomputes the tree twice — from the entries'
//! own hashes and from the stored hashes — and compares both with every signed
//! checkpoint. A copy passes only if the entries reproduce every signed root. When
//! they do not but the stored hashes do, those hashes are the authentic leaf hashes
//! (by collision resistance), so the first entry whose hash differs is the first
//! changed, removed, reordered or inserted entry, and is named.

use crate::entry::Entry;
use crate::merkle::{Frontier, Hash, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid verifier key: {0}")]
    Key(String),
    #[error("checkpoint rejected: {0}")]
    Checkpoint(String),
    #[error("entry {index}: {why}")]
    Tampered { index: u64, why: String },
    #[error("fork: {0}")]
    Fork(String),
}

impl VerifyError {
    /// The first bad index, when the failure is about an entry.
    pub fn index(&self) -> Option<u64> {
        match self {
            VerifyError::Tampered { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub checkpoints: usize,
}

pub struct Verifier {
    verifier: NoteVerifier,
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    computed: Frontier,
    stored: Frontier,
    first_hash_mismatch: Option<u64>,
    previous: Option<(u64, Hash)>,
    next_index: u64,
    target: u64,
    verified_size: u64,
}

impl Verifier {
    /// Checks every checkpoint's signature; `previous` is a checkpoint seen before
    /// (size, root), which the log must still contain.
    pub fn new(
        key: &str,
        notes: &[String],
        previous: Option<(u64, Hash)>,
    ) -> Result<Self, VerifyError> {
        let verifier = NoteVerifier::parse(key).map_err(|e| VerifyError::Key(e.to_string()))?;
        let mut checkpoints: Vec<Checkpoint> = Vec::with_capacity(notes.len());
        for note in notes {
            let cp = Checkpoint::open(note, &verifier)
                .map_err(|e| VerifyError::Checkpoint(e.to_string()))?;
            checkpoints.push(cp);
        }
        checkpoints.sort_by_key(|c| c.size);
        for pair in checkpoints.windows(2) {
            if pair[0].size == pair[1].size && pair[0].root != pair[1].root {
                return Err(VerifyError::Fork(format!(
                    "two different signed checkpoints of size {}",
                    pair[0].size
                )));
            }
        }
        checkpoints.dedup_by_key(|c| c.size);
        let target = checkpoints.last().map(|c| c.size).unwrap_or(0);
        if let Some((size, _)) = previous
            && size > target
        {
            return Err(VerifyError::Fork(format!(
                "the journal was seen with {size} entries before, it now claims {target}: entries were removed"
            )));
        }
        Ok(Self {
            verifier,
            checkpoints,
            next_checkpoint: 0,
            computed: Frontier::new(),
            stored: Frontier::new(),
            first_hash_mismatch: None,
            previous,
            next_index: 0,
            target,
            verified_size: 0,
        })
    }

    pub fn origin(&self) -> &str {
        self.verifier.name()
    }

    /// The size of the largest signed checkpoint: how many entries to feed.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Feeds the next entry: its index, its leaf bytes, and the leaf hash the server
    /// stored for it (if known).
    pub fn feed(
        &mut self,
        index: u64,
        leaf: &[u8],
        stored_hash: Option<Hash>,
    ) -> Result<(), VerifyError> {
        if index != self.next_index {
            let why = if index > self.next_index {
                "missing (the next entry given is a later one)"
            } else {
                "given twice or out of order"
            };
            return Err(VerifyError::Tampered {
                index: self.next_index,
                why: why.into(),
            });
        }
        if index >= self.target {
            return Ok(());
        }
        let computed = leaf_hash(leaf);
        let stored = stored_hash.unwrap_or(computed);
        if computed != stored && self.first_hash_mismatch.is_none() {
            self.first_hash_mismatch = Some(index);
        }
        self.computed.push(computed, &mut Vec::new());
        self.stored.push(stored, &mut Vec::new());
        self.next_index += 1;

        if let Some((size, root)) = self.previous
            && size == self.next_index
            && self.computed.root() != root
        {
            return Err(self.explain(format!(
                "the journal no longer matches the checkpoint of size {size} seen before"
            )));
        }
        while let Some(cp) = self.checkpoints.get(self.next_checkpoint) {
            if cp.size != self.next_index {
                break;
            }
            let (size, root) = (cp.size, cp.root);
            if self.computed.root() != root {
                return Err(self.explain(format!(
                    "the entries do not match the signed checkpoint of size {size}"
                )));
            }
            if let Some(i) = self.first_hash_mismatch {
                return Err(VerifyError::Tampered {
                    index: i,
                    why: "its stored leaf hash is wrong (the entries themselves match the signed checkpoints)".into(),
                });
            }
            self.verified_size = size;
            self.next_checkpoint += 1;
        }
        if let Err(e) = Entry::decode(leaf) {
            return Err(VerifyError::Tampered {
                index,
                why: format!("not a valid journal entry ({e})"),
            });
        }
        Ok(())
    }

    /// Names the first bad entry after a root mismatch.
    fn explain(&self, context: String) -> VerifyError {
        let signed_stored_ok = self
            .checkpoints
            .get(self.next_checkpoint)
            .filter(|cp| cp.size == self.next_index)
            .map(|cp| cp.root == self.stored.root())
            .unwrap_or(false);
        match self.first_hash_mismatch {
            Some(index) if signed_stored_ok || self.previous.is_some() => VerifyError::Tampered {
                index,
                why: format!("changed, removed, inserted or reordered: {context}"),
            },
            _ => VerifyError::Tampered {
                index: self.verified_size,
                why: format!(
                    "{context}; the first bad entry is between {} and {}",
                    self.verified_size,
                    self.next_index.saturating_sub(1)
                ),
            },
        }
    }

    /// Ends the verification: every entry up to the latest checkpoint must have come.
    pub fn finish(self) -> Result<Report, VerifyError> {
        if self.next_index < self.target {
            return Err(VerifyError::Tampered {
                index: self.next_index,
                why: format!(
                    "missing: the latest checkpoint covers {} entries",
                    self.target
                ),
            });
        }
        Ok(Report {
            origin: self.verifier.name().to_string(),
            size: self.target,
            root: self.computed.root(),
            checkpoints: self.checkpoints.len(),
        })
    }
}
