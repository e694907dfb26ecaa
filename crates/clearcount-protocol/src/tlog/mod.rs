//! The config transparency log: every published config in an append-only
//! log, so every installation can check it is served the same config as
//! everyone else (normative text: `counters-spec/config-log.md`).
//!
//! Open standards throughout: RFC 6962 Merkle trees, C2SP
//! [signed notes](note), [checkpoints](checkpoint),
//! `cosignature/v1` witness cosignatures, `tlog-policy` trust
//! [policies](policy), `tlog-proof` inclusion proofs (in the
//! [bundle] a client fetches), and the `tlog-witness`
//! `add-checkpoint` request (feature `tlog-sign`).
//!
//! | module | what | feature |
//! |---|---|---|
//! | [`merkle`] | RFC 6962 hashes, inclusion and consistency proofs | `tlog-verify` |
//! | [`note`] | signed notes, vkeys, Ed25519 and `cosignature/v1`; skeys | `tlog-verify`; signing `tlog-sign` |
//! | [`checkpoint`] | checkpoints, signed checkpoints | `tlog-verify` |
//! | [`policy`] | the trust policy: log key, witnesses, quorum | `tlog-verify` |
//! | [`bundle`] | the proof bundle served with a config | `tlog-verify` |
//! | [`client`] | the client's acceptance rules and kept state | `tlog-verify` |
//! | [`audit`] | recompute a whole log and check its checkpoints | `tlog-verify` |
//! | `log` | a log in memory and in a directory; publishing | `tlog-sign` |
//! | `witness` | a witness: cosign only what extends what it saw | `tlog-sign` |
//!
//! Everything is a pure function of its inputs except `log::LogDir` and
//! `witness::WitnessDir` (file layout helpers) and key generation (system
//! randomness). No function reads a clock: callers pass the time.

use std::fmt;

pub mod audit;
mod b64;
pub mod bundle;
pub mod checkpoint;
pub mod client;
pub mod merkle;
pub mod note;
pub mod policy;

#[cfg(feature = "tlog-sign")]
pub mod log;
#[cfg(feature = "tlog-sign")]
pub mod witness;

pub use bundle::Bundle;
pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use client::{Accepted, ClientPolicy, Kept, Refusal, verify_config};
pub use merkle::Hash;
pub use note::{KeyType, Note, VerifierKey};
pub use policy::Policy;

#[cfg(feature = "tlog-sign")]
pub use note::SignerKey;

/// Text that does not follow its format (a note, key, checkpoint, policy,
/// proof or bundle). Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(String);

impl FormatError {
    pub(crate) fn new(message: impl Into<String>) -> FormatError {
        FormatError(message.into())
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FormatError {}

/// Standard base64 (with padding) of `data`, as the formats write hashes.
pub fn base64_encode(data: &[u8]) -> String {
    b64::encode(data)
}

/// Decodes standard base64 (with padding, canonical only).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    b64::decode(text)
}
