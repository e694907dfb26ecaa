//! Auditing a config log: given every entry and any number of signed
//! checkpoints (the log's history, ones kept by clients, ones held by
//! witnesses), recompute every hash, verify every signature, check that all
//! checkpoints are consistent with each other and with the entries, and
//! produce the history: index, version, hash of each config.

use super::checkpoint::SignedCheckpoint;
use super::merkle::{self, Hash};
use super::policy::Policy;
use crate::config::CollectionConfig;
use std::collections::BTreeMap;
use std::fmt;

/// Why an audit failed. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditError(String);

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuditError {}

/// One published config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its leaf index.
    pub index: u64,
    /// Its `version`.
    pub version: u64,
    /// Its leaf hash, `SHA-256(0x00 || bytes)`.
    pub leaf_hash: Hash,
    /// SHA-256 of its bytes (what `sha256sum` prints).
    pub sha256: Hash,
    /// The earliest witness cosignature time of a checkpoint whose last
    /// entry it is (POSIX seconds): when it was first witnessed as current.
    pub witnessed: Option<u64>,
}

/// One checkpoint that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditedCheckpoint {
    /// Its tree size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The policy's witnesses that cosigned it: (name, time).
    pub cosigners: Vec<(String, u64)>,
}

/// The result of a successful audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Every entry, in log order.
    pub history: Vec<HistoryEntry>,
    /// Every distinct checkpoint, by size.
    pub checkpoints: Vec<AuditedCheckpoint>,
}

/// Most entries an audit reads (a config log has a few thousand).
pub const MAX_ENTRIES: u64 = 100_000;
/// Largest entry an audit reads: a config is far smaller (and a client
/// fetches at most this much of one).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;
/// Most bytes of entries an audit holds in memory, all together.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// Checks that entries of these sizes fit the audit's limits
/// ([`MAX_ENTRIES`], [`MAX_ENTRY_BYTES`], [`MAX_TOTAL_BYTES`]); `total`
/// is what was read before this entry.
pub fn check_entry_size(index: u64, len: usize, total: usize) -> Result<(), AuditError> {
    if index >= MAX_ENTRIES {
        return Err(AuditError(format!(
            "the log has more than {MAX_ENTRIES} entries, more than an audit reads: not a config log"
        )));
    }
    if len > MAX_ENTRY_BYTES {
        return Err(AuditError(format!(
            "entry {index} is {len} bytes, more than the {} MiB an entry may have: not a config",
            MAX_ENTRY_BYTES >> 20
        )));
    }
    if total.saturating_add(len) > MAX_TOTAL_BYTES {
        return Err(AuditError(format!(
            "entries 0..={index} hold more than {} MiB, more than an audit reads: not a config log",
            MAX_TOTAL_BYTES >> 20
        )));
    }
    Ok(())
}

/// Audits a log. `entries` are the exact bytes of every entry, in order;
/// `checkpoints` are signed checkpoints from anywhere. Checks, verifying
/// before parsing:
///
/// - the entries fit the limits ([`check_entry_size`]);
/// - every checkpoint is the log's, signed by the log key, with no failing
///   signature of a known key (cosignatures are reported, not required);
/// - every checkpoint's size is at most the number of entries, and its root
///   is the root recomputed from the entries (so all checkpoints are
///   prefixes of one history, hence consistent with each other: the roots
///   of every prefix are computed in one pass);
/// - the largest checkpoint covers every entry;
/// - only then, every entry (now signed by the log through those roots) is
///   read as a config: a valid one, with a version higher than the previous
///   entry's.
///
/// Time is linear in the entries' bytes (plus a logarithm per checkpoint),
/// memory is the entries given plus a hash per entry, and no recursion
/// depends on the input.
pub fn audit(
    policy: &Policy,
    entries: &[Vec<u8>],
    checkpoints: &[&str],
) -> Result<AuditReport, AuditError> {
    let err = |m: String| Err(AuditError(m));
    let mut total = 0usize;
    for (i, e) in entries.iter().enumerate() {
        check_entry_size(i as u64, e.len(), total)?;
        total += e.len();
    }
    let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let mut audited: BTreeMap<u64, AuditedCheckpoint> = BTreeMap::new();
    for (n, text) in checkpoints.iter().enumerate() {
        let signed = match SignedCheckpoint::parse(text) {
            Ok(s) => s,
            Err(e) => return err(format!("checkpoint {n} is malformed: {e}")),
        };
        let trusted = match policy.verify(&signed, 0, None) {
            Ok(t) => t,
            Err(super::client::Refusal::TooFewCosignatures { .. }) => {
                // Reported below, not required: recount without a quorum.
                let only = Policy::new(
                    policy.log().clone(),
                    policy.witnesses().iter().map(|w| w.key.clone()).collect(),
                    0,
                )
                .map_err(|e| AuditError(e.to_string()))?;
                only.verify(&signed, 0, None)
                    .map_err(|e| AuditError(format!("checkpoint {n}: {e}")))?
            }
            Err(e) => {
                return err(format!(
                    "checkpoint {n} (size {}): {e}",
                    signed.checkpoint.size
                ));
            }
        };
        let c = &trusted.checkpoint;
        if c.size > entries.len() as u64 {
            return err(format!(
                "checkpoint of size {} is beyond the {} entries: the log is truncated or entries are missing",
                c.size,
                entries.len()
            ));
        }
        match audited.get_mut(&c.size) {
            Some(a) if a.root != c.root => {
                // Two roots for one size: one of them is not the entries'.
                return err(format!(
                    "checkpoint of size {} does not match entries 0..{}: history was rewritten or the log shows two histories",
                    c.size, c.size
                ));
            }
            Some(a) => {
                for cs in trusted.cosigners {
                    if !a.cosigners.iter().any(|x| x.0 == cs.0) {
                        a.cosigners.push(cs);
                    }
                }
            }
            None => {
                audited.insert(
                    c.size,
                    AuditedCheckpoint {
                        size: c.size,
                        root: c.root,
                        cosigners: trusted.cosigners,
                    },
                );
            }
        }
    }
    let audited: Vec<AuditedCheckpoint> = audited.into_values().collect();
    let sizes: Vec<u64> = audited.iter().map(|a| a.size).collect();
    for (a, root) in audited.iter().zip(merkle::prefix_roots(&leaves, &sizes)) {
        if root != a.root {
            return err(format!(
                "checkpoint of size {} does not match entries 0..{}: history was rewritten or the log shows two histories",
                a.size, a.size
            ));
        }
    }
    let covered = audited.last().map_or(0, |a| a.size);
    if covered < entries.len() as u64 {
        return err(format!(
            "entries {covered}.. are in no signed checkpoint (the largest has size {covered})"
        ));
    }
    // Every entry is now the log's: read each as a config.
    let mut history: Vec<HistoryEntry> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Ok(text) = std::str::from_utf8(e) else {
            return err(format!("entry {i} is not UTF-8 text"));
        };
        let cfg = match CollectionConfig::parse(text, &format!("entry {i}")) {
            Ok(c) => c,
            Err(e) => return err(format!("entry {i} is not a valid config: {e}")),
        };
        if let Some(prev) = history.last()
            && cfg.version <= prev.version
        {
            return err(format!(
                "entry {i} has version {} but entry {} already had version {}: versions must increase",
                cfg.version, prev.index, prev.version
            ));
        }
        history.push(HistoryEntry {
            index: i as u64,
            version: cfg.version,
            leaf_hash: leaves[i],
            sha256: merkle::sha256(e),
            witnessed: None,
        });
    }
    for a in &audited {
        if a.size > 0
            && let Some(t) = a.cosigners.iter().map(|c| c.1).min()
        {
            let h = &mut history[a.size as usize - 1];
            h.witnessed = Some(h.witnessed.map_or(t, |w| w.min(t)));
        }
    }
    Ok(AuditReport {
        history,
        checkpoints: audited,
    })
}
