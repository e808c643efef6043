//! RFC 9162 Merkle tree hashing, proofs and their verification.
//!
//! The tree is never re-hashed: it is stored as the hashes of its *perfect* subtrees
//! ([`NodeId`]: level `L` covers `2^L` leaves starting at `index * 2^L`). Any subtree
//! hash the RFC needs is either one stored node or is folded from the few perfect
//! subtrees that tile its range, so a root of any past size or any proof needs
//! O(log n) stored nodes. Producing a proof is two passes over the same recursion:
//! [`nodes_for_inclusion`] / [`nodes_for_consistency`] say which nodes to read, then
//! [`inclusion_proof`] / [`consistency_proof`] compute from what was read.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// A perfect subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// Position of a node in creation order: leaf `n` is followed by the perfect nodes it
/// completes, lowest level first (the layout of Go's `sumdb/tlog` stored hashes). Nodes
/// stored under this key are appended at the end of one index, never scattered.
pub fn storage_index(id: NodeId) -> u64 {
    // The leaf whose arrival completes this node.
    let last_leaf = ((id.index + 1) << id.level) - 1;
    // Hashes stored before that leaf: for every level i, floor(leaf / 2^i) nodes.
    let mut before = 0u64;
    let mut n = last_leaf;
    while n > 0 {
        before += n;
        n >>= 1;
    }
    before + u64::from(id.level)
}

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("size {first} is larger than size {second}")]
    SizesReversed { first: u64, second: u64 },
    #[error("the tree node {0:?} is missing from the store")]
    MissingNode(NodeId),
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees tiling `[a, b)`, left to right, as they occur in RFC 9162's
/// recursion (the range must start on a boundary of its largest tile, which every
/// range produced by the recursion does).
fn tiles(a: u64, b: u64, out: &mut Vec<NodeId>) {
    let n = b - a;
    if n == 0 {
        return;
    }
    if n.is_power_of_two() && a.is_multiple_of(n) {
        out.push(NodeId {
            level: n.trailing_zeros() as u8,
            index: a / n,
        });
        return;
    }
    let k = split(n);
    tiles(a, a + k, out);
    tiles(a + k, b, out);
}

/// Hash of the subtree over `[a, b)` from stored perfect nodes.
fn range_hash(a: u64, b: u64, nodes: &impl Fn(NodeId) -> Option<Hash>) -> Result<Hash, ProofError> {
    let n = b - a;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && a.is_multiple_of(n) {
        let id = NodeId {
            level: n.trailing_zeros() as u8,
            index: a / n,
        };
        return nodes(id).ok_or(ProofError::MissingNode(id));
    }
    let k = split(n);
    Ok(node_hash(
        &range_hash(a, a + k, nodes)?,
        &range_hash(a + k, b, nodes)?,
    ))
}

/// RFC 9162 §2.1.3.1 PATH, as the list of ranges whose hashes form the proof (bottom up).
fn inclusion_ranges(m: u64, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
    let n = b - a;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        inclusion_ranges(m, a, a + k, out);
        out.push((a + k, b));
    } else {
        inclusion_ranges(m - k, a + k, b, out);
        out.push((a, a + k));
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF, as ranges.
fn consistency_ranges(m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
    let n = b - a;
    if m == n {
        if !complete {
            out.push((a, b));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        consistency_ranges(m, a, a + k, complete, out);
        out.push((a + k, b));
    } else {
        consistency_ranges(m - k, a + k, b, false, out);
        out.push((a, a + k));
    }
}

fn check_inclusion_args(index: u64, size: u64) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    Ok(())
}

fn check_consistency_args(first: u64, second: u64) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    Ok(())
}

fn tiles_of(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut out = Vec::new();
    for &(a, b) in ranges {
        tiles(a, b, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Nodes to read for the root of a tree of `size` leaves.
pub fn nodes_for_root(size: u64) -> Vec<NodeId> {
    tiles_of(&[(0, size)])
}

/// Nodes to read for an inclusion proof of leaf `index` in a tree of `size` leaves.
pub fn nodes_for_inclusion(index: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    check_inclusion_args(index, size)?;
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    Ok(tiles_of(&ranges))
}

/// Nodes to read for a consistency proof between sizes `first` and `second`.
pub fn nodes_for_consistency(first: u64, second: u64) -> Result<Vec<NodeId>, ProofError> {
    check_consistency_args(first, second)?;
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    consistency_ranges(first, 0, second, true, &mut ranges);
    Ok(tiles_of(&ranges))
}

/// The nodes read from the store.
pub type NodeMap = HashMap<NodeId, Hash>;

fn lookup(map: &NodeMap) -> impl Fn(NodeId) -> Option<Hash> + '_ {
    |id| map.get(&id).copied()
}

/// The root of a tree of `size` leaves, from [`nodes_for_root`].
pub fn root(size: u64, nodes: &NodeMap) -> Result<Hash, ProofError> {
    range_hash(0, size, &lookup(nodes))
}

/// The inclusion proof (audit path), from [`nodes_for_inclusion`].
pub fn inclusion_proof(index: u64, size: u64, nodes: &NodeMap) -> Result<Vec<Hash>, ProofError> {
    check_inclusion_args(index, size)?;
    let mut ranges = Vec::new();
    inclusion_ranges(index, 0, size, &mut ranges);
    ranges
        .iter()
        .map(|&(a, b)| range_hash(a, b, &lookup(nodes)))
        .collect()
}

/// The consistency proof, from [`nodes_for_consistency`].
pub fn consistency_proof(
    first: u64,
    second: u64,
    nodes: &NodeMap,
) -> Result<Vec<Hash>, ProofError> {
    check_consistency_args(first, second)?;
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    let mut ranges = Vec::new();
    consistency_ranges(first, 0, second, true, &mut ranges);
    ranges
        .iter()
        .map(|&(a, b)| range_hash(a, b, &lookup(nodes)))
        .collect()
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf_hash` at `index` in the tree of `size`
/// with `root`?
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    check_inclusion_args(index, size)?;
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: is the tree of `second` leaves with `second_root` an extension of
/// the tree of `first` leaves with `first_root`?
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_consistency_args(first, second)?;
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == 0 {
        // The empty tree is a prefix of every tree.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let mut f_n = first - 1;
    let mut s_n = second - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut f_r = path[0];
    let mut s_r = path[0];
    for c in &path[1..] {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &f_r != first_root || &s_r != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of the perfect subtrees that tile
/// `[0, size)`, largest first. Appending a leaf yields the new perfect nodes to store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash), levels strictly decreasing.
    stack: Vec<(u8, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nodes to read to rebuild the frontier of a tree of `size` leaves.
    pub fn nodes_for(size: u64) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                out.push(NodeId {
                    level,
                    index: start >> level,
                });
                start += 1u64 << level;
            }
        }
        out
    }

    /// Rebuilds the frontier from the nodes named by [`Frontier::nodes_for`].
    pub fn from_nodes(size: u64, nodes: &NodeMap) -> Result<Self, ProofError> {
        let mut stack = Vec::new();
        for id in Self::nodes_for(size) {
            stack.push((
                id.level,
                *nodes.get(&id).ok_or(ProofError::MissingNode(id))?,
            ));
        }
        Ok(Self { size, stack })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; pushes every perfect node it completes (the leaf itself
    /// at level 0 included) into `new_nodes`.
    pub fn push(&mut self, leaf: Hash, new_nodes: &mut Vec<(NodeId, Hash)>) {
        let index = self.size;
        new_nodes.push((NodeId { level: 0, index }, leaf));
        let mut level = 0u8;
        let mut current = leaf;
        while let Some(&(top_level, top)) = self.stack.last() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            current = node_hash(&top, &current);
            level += 1;
            new_nodes.push((
                NodeId {
                    level,
                    index: index >> level,
                },
                current,
            ));
        }
        self.stack.push((level, current));
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(last, |acc, (_, h)| node_hash(h, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference implementation straight from RFC 9162 §2.1.1, over leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, NodeMap, Frontier) {
        let mut f = Frontier::new();
        let mut nodes = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let h = leaf_hash(format!("leaf {i}").as_bytes());
            leaves.push(h);
            f.push(h, &mut nodes);
        }
        (leaves, nodes.into_iter().collect(), f)
    }

    #[test]
    fn frontier_root_matches_the_rfc_definition() {
        let (leaves, nodes, f) = build(70);
        for size in 0..=70u64 {
            assert_eq!(
                root(size, &nodes).unwrap(),
                mth(&leaves[..size as usize]),
                "size {size}"
            );
        }
        assert_eq!(f.root(), mth(&leaves));
        let rebuilt = Frontier::from_nodes(70, &nodes).unwrap();
        assert_eq!(rebuilt, f);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies() {
        let (leaves, nodes, _) = build(40);
        for size in 1..=40u64 {
            let r = root(size, &nodes).unwrap();
            for index in 0..size {
                let needed = nodes_for_inclusion(index, size).unwrap();
                let subset: NodeMap = needed.iter().map(|id| (*id, nodes[id])).collect();
                let proof = inclusion_proof(index, size, &subset).unwrap();
                verify_inclusion(index, size, &leaves[index as usize], &proof, &r).unwrap();
            }
            for first in 0..=size {
                let needed = nodes_for_consistency(first, size).unwrap();
                let subset: NodeMap = needed.iter().map(|id| (*id, nodes[id])).collect();
                let proof = consistency_proof(first, size, &subset).unwrap();
                let r1 = root(first, &nodes).unwrap();
                verify_consistency(first, size, &r1, &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn storage_order_is_creation_order() {
        let mut f = Frontier::new();
        let mut created = Vec::new();
        for i in 0..300u64 {
            f.push(leaf_hash(&i.to_be_bytes()), &mut created);
        }
        let positions: Vec<u64> = created.iter().map(|(id, _)| storage_index(*id)).collect();
        let expected: Vec<u64> = (0..positions.len() as u64).collect();
        assert_eq!(positions, expected, "dense and in creation order");
    }

    #[test]
    fn proofs_read_logarithmically_many_nodes() {
        let size = 1_000_003u64;
        for index in [0, 1, 524_287, 999_999, size - 1] {
            assert!(
                nodes_for_inclusion(index, size).unwrap().len() <= 2 * 21,
                "{index}"
            );
        }
        assert!(nodes_for_consistency(333_333, size).unwrap().len() <= 2 * 21);
        assert!(nodes_for_root(size).len() <= 21);
    }

    #[test]
    fn rfc_6962_reference_roots() {
        // The eight leaves of RFC 6962's test suite (certificate-transparency-go
        // merkle tests), and the roots it publishes for each size.
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
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut f = Frontier::new();
        let mut sink = Vec::new();
        for (input, expected) in inputs.iter().zip(roots) {
            f.push(leaf_hash(input), &mut sink);
            assert_eq!(hex::encode(f.root()), expected);
        }
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
