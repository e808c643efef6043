//! Public test vectors: transparency-dev/merkle's RFC 6962 inclusion and consistency
//! cases (valid and mutated), the Go sumdb signed-note golden vector, and properties
//! checked with proptest.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use serde_json::Value;

use crate::merkle::{self, Frontier, Hash, NodeMap};
use crate::note::{Checkpoint, NoteSigner, NoteVerifier};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

fn vector_files(kind: &str) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(testdata(&format!("merkle/{kind}"))).unwrap() {
        let dir = dir.unwrap().path();
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.push((path, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A base64 field as a hash; `None` when it is not 32 bytes (mutated vectors use that).
fn hash(v: &Value) -> Option<Hash> {
    B64.decode(v.as_str()?).ok()?.try_into().ok()
}

fn hashes(v: &Value) -> Option<Vec<Hash>> {
    v.as_array()?.iter().map(hash).collect()
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let files = vector_files("inclusion");
    assert!(files.len() >= 40, "{}", files.len());
    let (mut valid, mut invalid) = (0, 0);
    for (path, v) in files {
        let want_err = v["wantErr"].as_bool().unwrap();
        let ok = (|| {
            let index = v["leafIdx"].as_i64()?;
            let size = v["treeSize"].as_i64()?;
            let (index, size) = (u64::try_from(index).ok()?, u64::try_from(size).ok()?);
            let proof = hashes(&v["proof"]).unwrap_or_default();
            if v["proof"]
                .as_array()
                .is_some_and(|a| a.len() != proof.len())
            {
                return Some(false);
            }
            let leaf = hash(&v["leafHash"])?;
            let root = hash(&v["root"])?;
            Some(merkle::verify_inclusion(index, size, &leaf, &proof, &root).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(ok, !want_err, "{}: {}", path.display(), v["desc"]);
        if want_err { invalid += 1 } else { valid += 1 }
    }
    assert!(
        valid >= 5 && invalid >= 30,
        "{valid} valid, {invalid} mutated"
    );
}

#[test]
fn transparency_dev_consistency_vectors() {
    let files = vector_files("consistency");
    assert!(files.len() >= 30, "{}", files.len());
    for (path, v) in files {
        let want_err = v["wantErr"].as_bool().unwrap();
        let ok = (|| {
            let first = u64::try_from(v["size1"].as_i64()?).ok()?;
            let second = u64::try_from(v["size2"].as_i64()?).ok()?;
            let proof = hashes(&v["proof"]).unwrap_or_default();
            if v["proof"]
                .as_array()
                .is_some_and(|a| a.len() != proof.len())
            {
                return Some(false);
            }
            let r1 = hash(&v["root1"])?;
            let r2 = hash(&v["root2"])?;
            Some(merkle::verify_consistency(first, second, &r1, &r2, &proof).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(ok, !want_err, "{}: {}", path.display(), v["desc"]);
    }
}

/// The happy-path vectors are all over one 8-leaf reference tree: our prover must
/// produce exactly the published proofs.
#[test]
fn our_proofs_equal_the_published_ones() {
    let inputs: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    for i in inputs {
        f.push(merkle::leaf_hash(i), &mut nodes);
    }
    let nodes: NodeMap = nodes.into_iter().collect();
    let mut checked = 0;
    for (path, v) in vector_files("inclusion")
        .into_iter()
        .chain(vector_files("consistency"))
    {
        if v["desc"] != "happy path" {
            continue;
        }
        let expected = hashes(&v["proof"]).unwrap_or_default();
        let produced = if v.get("leafIdx").is_some() {
            merkle::inclusion_proof(
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &nodes,
            )
            .unwrap()
        } else {
            merkle::consistency_proof(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &nodes,
            )
            .unwrap()
        };
        assert_eq!(produced, expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 8, "{checked}");
}

#[test]
fn go_sumdb_note_golden_vector() {
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("note/golden.json")).unwrap())
            .unwrap();
    let signer = NoteSigner::parse(g["signer_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        signer.verifier().encode(),
        g["verifier_key"].as_str().unwrap()
    );
    let signed = signer.sign(g["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        signed,
        g["signed"].as_str().unwrap(),
        "byte-exact signed note"
    );
    let verifier = NoteVerifier::parse(g["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(verifier.open(&signed).unwrap(), g["text"].as_str().unwrap());
    // A note signed by two keys opens with either.
    let two = g["extra"]["signed"].as_str().unwrap();
    assert!(verifier.open(two).is_ok());
    let enoch = NoteVerifier::parse(g["extra"]["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(enoch.open(two).unwrap(), g["text"].as_str().unwrap());
}

fn flip(bytes: &mut [u8], bit: usize) {
    let i = bit % (bytes.len() * 8);
    bytes[i / 8] ^= 1 << (i % 8);
}

fn tree(n: u64) -> (Vec<Hash>, NodeMap) {
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    let leaves: Vec<Hash> = (0..n)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    for l in &leaves {
        f.push(*l, &mut nodes);
    }
    (leaves, nodes.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_any_bit_flip_fails(size in 1u64..300, index_seed in any::<u64>(), bit in any::<usize>(), target in 0u8..3) {
        let (leaves, nodes) = tree(size);
        let index = index_seed % size;
        let root = merkle::root(size, &nodes).unwrap();
        let proof = merkle::inclusion_proof(index, size, &nodes).unwrap();
        prop_assert!(merkle::verify_inclusion(index, size, &leaves[index as usize], &proof, &root).is_ok());
        let (mut leaf, mut proof, mut root) = (leaves[index as usize], proof, root);
        match target {
            0 => flip(&mut leaf, bit),
            1 if !proof.is_empty() => { let n = proof.len(); flip(&mut proof[bit % n], bit / 7) }
            _ => flip(&mut root, bit),
        }
        prop_assert!(merkle::verify_inclusion(index, size, &leaf, &proof, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_any_bit_flip_fails(second in 2u64..300, first_seed in any::<u64>(), bit in any::<usize>(), target in 0u8..3) {
        let (_, nodes) = tree(second);
        let first = 1 + first_seed % (second - 1);
        let r1 = merkle::root(first, &nodes).unwrap();
        let r2 = merkle::root(second, &nodes).unwrap();
        let proof = merkle::consistency_proof(first, second, &nodes).unwrap();
        prop_assert!(merkle::verify_consistency(first, second, &r1, &r2, &proof).is_ok());
        let (mut r1, mut r2, mut proof) = (r1, r2, proof);
        match target {
            0 => flip(&mut r1, bit),
            1 => flip(&mut r2, bit),
            _ => { let n = proof.len(); flip(&mut proof[bit % n], bit / 7) }
        }
        prop_assert!(merkle::verify_consistency(first, second, &r1, &r2, &proof).is_err());
    }

    #[test]
    fn any_bit_flip_in_a_checkpoint_note_fails(size in 0u64..1_000_000, root in any::<[u8; 32]>(), bit in any::<usize>()) {
        let signer = NoteSigner::from_seed("socle.example/journal", &[3u8; 32]).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(&Checkpoint { origin: "socle.example/journal".into(), size, root }.to_text()).unwrap();
        prop_assert!(Checkpoint::open(&note, &verifier).is_ok());
        let mut bytes = note.into_bytes();
        flip(&mut bytes, bit);
        if let Ok(tampered) = String::from_utf8(bytes) {
            prop_assert!(Checkpoint::open(&tampered, &verifier).is_err());
        }
    }
}
