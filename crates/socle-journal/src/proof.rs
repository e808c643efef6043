//! A proof bundle for one entry (`socle-proof/1`): everything needed to check, offline
//! and with nothing but the journal's public key, that an entry is in the journal —
//! the entry's bytes, the signed checkpoint, the RFC 9162 inclusion proof. The citizen
//! space hands one out per exchange; `socle journal verify --proof FILE` checks it.
//! Pure: no I/O.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, NoteVerifier};

/// The bundle's format identifier.
pub const PROOF_FORMAT: &str = "socle-proof/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofBundle {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The journal's verifier key (`<origin>+<hash>+<base64>`), also at `/journal/key`.
    pub key: String,
    /// The signed checkpoint note the proof leads to.
    pub checkpoint: String,
    /// The entry's index (0-based).
    pub index: u64,
    /// The entry's bytes (the Merkle leaf), base64.
    pub leaf: String,
    /// The inclusion proof's hashes, base64, from the leaf up.
    pub hashes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofBundleError {
    #[error("not a proof bundle: {0}")]
    Malformed(String),
    #[error("the journal key differs from the one expected")]
    WrongKey,
    #[error("the checkpoint's signature does not verify: {0}")]
    Signature(String),
    #[error("the inclusion proof does not lead to the checkpoint's root: {0}")]
    Inclusion(String),
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, ProofBundleError> {
    B64.decode(s)
        .map_err(|_| ProofBundleError::Malformed(format!("{what} is not base64")))
}

impl ProofBundle {
    /// Checks the bundle: the key (against `pinned` when given), the checkpoint's
    /// signature, the entry's encoding, and the inclusion proof to the signed root.
    /// Returns the checkpoint and the entry.
    pub fn verify(&self, pinned: Option<&str>) -> Result<(Checkpoint, Entry), ProofBundleError> {
        if self.format != PROOF_FORMAT {
            return Err(ProofBundleError::Malformed(format!(
                "format {:?}, expected {PROOF_FORMAT}",
                self.format
            )));
        }
        if pinned.is_some_and(|k| k.trim() != self.key.trim()) {
            return Err(ProofBundleError::WrongKey);
        }
        let verifier = NoteVerifier::parse(&self.key)
            .map_err(|e| ProofBundleError::Malformed(format!("key: {e}")))?;
        let checkpoint = Checkpoint::open(&self.checkpoint, &verifier)
            .map_err(|e| ProofBundleError::Signature(e.to_string()))?;
        let leaf = b64(&self.leaf, "leaf")?;
        let entry =
            Entry::decode(&leaf).map_err(|e| ProofBundleError::Malformed(format!("entry: {e}")))?;
        let mut hashes: Vec<Hash> = Vec::with_capacity(self.hashes.len());
        for h in &self.hashes {
            hashes.push(
                b64(h, "a proof hash")?.try_into().map_err(|_| {
                    ProofBundleError::Malformed("a proof hash is not 32 bytes".into())
                })?,
            );
        }
        merkle::verify_inclusion(
            self.index,
            checkpoint.size,
            &merkle::leaf_hash(&leaf),
            &hashes,
            &checkpoint.root,
        )
        .map_err(|e| ProofBundleError::Inclusion(e.to_string()))?;
        Ok((checkpoint, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryKind;
    use crate::merkle::{Frontier, NodeMap};
    use crate::note::NoteSigner;

    fn bundle() -> ProofBundle {
        let signer = NoteSigner::from_seed("test.example/journal", &[7; 32]).unwrap();
        let leaves: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                Entry::new(EntryKind::Exchange, format!("client:{i}"), "ok")
                    .encode()
                    .unwrap()
            })
            .collect();
        let mut frontier = Frontier::new();
        let mut nodes = NodeMap::new();
        for l in &leaves {
            let mut new = Vec::new();
            frontier.push(merkle::leaf_hash(l), &mut new);
            nodes.extend(new);
        }
        let root = merkle::root(5, &nodes).unwrap();
        let note = signer
            .sign(
                &Checkpoint {
                    origin: "test.example/journal".into(),
                    size: 5,
                    root,
                }
                .to_text(),
            )
            .unwrap();
        let proof = merkle::inclusion_proof(3, 5, &nodes).unwrap();
        ProofBundle {
            format: PROOF_FORMAT.into(),
            key: signer.verifier().encode(),
            checkpoint: note,
            index: 3,
            leaf: B64.encode(&leaves[3]),
            hashes: proof.iter().map(|h| B64.encode(h)).collect(),
        }
    }

    #[test]
    fn a_good_bundle_verifies_and_any_change_is_caught() {
        let b = bundle();
        let (cp, entry) = b.verify(None).unwrap();
        assert_eq!(cp.size, 5);
        assert_eq!(entry.actor, "client:3");
        assert!(b.verify(Some(&b.key)).is_ok());
        assert_eq!(
            b.verify(Some("other+00000000+AQ==")),
            Err(ProofBundleError::WrongKey)
        );
        let mut wrong_index = b.clone();
        wrong_index.index = 2;
        assert!(matches!(
            wrong_index.verify(None),
            Err(ProofBundleError::Inclusion(_))
        ));
        let mut other_leaf = b.clone();
        other_leaf.leaf = bundle_leaf(1);
        assert!(matches!(
            other_leaf.verify(None),
            Err(ProofBundleError::Inclusion(_))
        ));
        let mut forged = b.clone();
        forged.checkpoint = forged.checkpoint.replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            forged.verify(None),
            Err(ProofBundleError::Signature(_))
        ));
    }

    fn bundle_leaf(i: usize) -> String {
        B64.encode(
            Entry::new(EntryKind::Exchange, format!("client:{i}"), "ok")
                .encode()
                .unwrap(),
        )
    }
}
