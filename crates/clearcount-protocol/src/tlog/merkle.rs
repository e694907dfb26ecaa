//! RFC 6962 Merkle tree hashing, inclusion proofs and consistency proofs
//! (the algorithms of RFC 9162 §2.1, which restates RFC 6962 §2.1).
//!
//! A leaf is hashed as `SHA-256(0x00 || data)`, an interior node as
//! `SHA-256(0x01 || left || right)`, and the tree of no leaf has the hash of
//! the empty string. Trees are split at the largest power of two smaller
//! than their size. Proofs list hashes from the leaf (or the old tree) up
//! to the root's children, as RFC 6962 and C2SP `tlog-proof` order them.
//!
//! Proofs are built from the list of all leaf hashes (a config log has a
//! few thousand leaves at most: building one proof is linear in the size,
//! microseconds). Verification needs only the proof.
//!
//! ```
//! use clearcount_protocol::tlog::merkle;
//! let leaves: Vec<_> = ["a", "b", "c"].iter().map(|d| merkle::leaf_hash(d.as_bytes())).collect();
//! let root = merkle::root(&leaves);
//! let proof = merkle::inclusion_proof(&leaves, 2);
//! assert!(merkle::verify_inclusion(&leaves[2], 2, 3, &proof, &root).is_ok());
//! let old = merkle::root(&leaves[..2]);
//! let cons = merkle::consistency_proof(&leaves, 2);
//! assert!(merkle::verify_consistency(2, &old, 3, &root, &cons).is_ok());
//! ```

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 hash: a leaf, a node or a tree root.
pub type Hash = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root hash of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// The largest power of two strictly smaller than `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root hash (RFC 6962 MTH) of the tree whose leaf hashes are `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The root hashes of the trees of the first `sizes[i]` leaves, for sizes
/// in increasing order, in one pass over the leaves: O(n + k log n) for
/// `n` leaves and `k` sizes (an auditor checks every published checkpoint
/// of a log this way, where one [`root`] per checkpoint would be
/// quadratic).
///
/// # Panics
/// If the sizes are not increasing or one is larger than the number of
/// leaves.
pub fn prefix_roots(leaves: &[Hash], sizes: &[u64]) -> Vec<Hash> {
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "sizes must increase");
    // The perfect subtrees of the prefix read so far, left to right, with
    // their heights: the binary digits of its size.
    let mut stack: Vec<(u32, Hash)> = Vec::new();
    let mut out = Vec::with_capacity(sizes.len());
    let mut wanted = sizes.iter().peekable();
    while wanted.peek() == Some(&&0) {
        out.push(empty_root());
        wanted.next();
    }
    for (i, leaf) in leaves.iter().enumerate() {
        let Some(&&size) = wanted.peek() else {
            break;
        };
        let mut top = (0u32, *leaf);
        while let Some(&(h, left)) = stack.last() {
            if h != top.0 {
                break;
            }
            stack.pop();
            top = (h + 1, node_hash(&left, &top.1));
        }
        stack.push(top);
        if i as u64 + 1 == size {
            // RFC 6962 splits at the largest power of two: the root folds
            // the subtrees from the right.
            let mut acc = stack[stack.len() - 1].1;
            for (_, h) in stack[..stack.len() - 1].iter().rev() {
                acc = node_hash(h, &acc);
            }
            out.push(acc);
            wanted.next();
        }
    }
    assert!(wanted.peek().is_none(), "a size beyond the leaves");
    out
}

/// The inclusion proof (RFC 6962 audit path) of leaf `index` in the tree of
/// all `leaves`.
///
/// # Panics
/// If `index` is not below the number of leaves.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Vec<Hash> {
    assert!(index < leaves.len() as u64, "leaf index out of the tree");
    let mut proof = Vec::new();
    path(index as usize, leaves, &mut proof);
    proof
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The consistency proof (RFC 6962) from the tree of the first `old_size`
/// leaves to the tree of all `leaves`. Empty when `old_size` is 0 or the
/// whole tree (nothing to prove).
///
/// # Panics
/// If `old_size` is larger than the number of leaves.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Vec<Hash> {
    assert!(old_size <= leaves.len() as u64, "old size beyond the tree");
    let mut proof = Vec::new();
    if old_size > 0 {
        subproof(old_size as usize, leaves, true, &mut proof);
    }
    proof
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    IndexOutOfTree,
    /// The proof has the wrong number of hashes for these sizes.
    WrongLength,
    /// The proof does not lead to the expected root hash(es).
    Mismatch,
    /// The old tree is larger than the new one.
    OldLarger,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProofError::IndexOutOfTree => "the leaf index is not in the tree",
            ProofError::WrongLength => "the proof has the wrong number of hashes",
            ProofError::Mismatch => "the proof does not lead to the signed root hash",
            ProofError::OldLarger => "the old tree is larger than the new one",
        })
    }
}

impl std::error::Error for ProofError {}

/// Verifies that `leaf` (a leaf hash) is leaf `index` of the tree of size
/// `size` with root hash `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfTree);
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies that the tree of size `old_size` with root `old_root` is a
/// prefix of the tree of size `new_size` with root `new_root` (RFC 9162
/// §2.1.4.2). The empty tree is a prefix of every tree (its root must be
/// [`empty_root`] and the proof empty); a tree is a prefix of itself when
/// the roots are equal (and the proof empty).
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldLarger);
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // When the old tree is a complete subtree, its root starts the path.
    let path: Vec<Hash> = if old_size.is_power_of_two() {
        std::iter::once(*old_root)
            .chain(proof.iter().copied())
            .collect()
    } else {
        proof.to_vec()
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_roots_are_the_roots_of_each_prefix() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let sizes: Vec<u64> = (0..=70).collect();
        let roots = prefix_roots(&leaves, &sizes);
        for (&n, r) in sizes.iter().zip(&roots) {
            assert_eq!(*r, root(&leaves[..n as usize]), "size {n}");
        }
        assert_eq!(
            prefix_roots(&leaves, &[3, 64]),
            [root(&leaves[..3]), root(&leaves[..64])]
        );
        assert!(prefix_roots(&leaves, &[]).is_empty());
    }

    #[test]
    fn every_proof_of_small_trees_verifies_and_mutations_fail() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let t = &leaves[..n];
            let r = root(t);
            for i in 0..n {
                let p = inclusion_proof(t, i as u64);
                verify_inclusion(&t[i], i as u64, n as u64, &p, &r).unwrap();
                if !p.is_empty() {
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(verify_inclusion(&t[i], i as u64, n as u64, &bad, &r).is_err());
                    assert!(verify_inclusion(&t[i], i as u64, n as u64, &p[1..], &r).is_err());
                }
            }
            for m in 0..=n {
                let p = consistency_proof(t, m as u64);
                let old = root(&t[..m]);
                verify_consistency(m as u64, &old, n as u64, &r, &p).unwrap();
                if m > 0 && m < n {
                    let mut bad = p.clone();
                    let last = bad.len() - 1;
                    bad[last][5] ^= 4;
                    assert!(verify_consistency(m as u64, &old, n as u64, &r, &bad).is_err());
                    assert!(verify_consistency(m as u64, &r, n as u64, &r, &p).is_err());
                }
            }
        }
    }
}
