//! The client's rules: whether a fetched config may be used, as pure
//! functions (the caller fetches, stores and decides what to do).
//!
//! A toolchain compiles in a [`ClientPolicy`]: the log's policy (log key,
//! witnesses, quorum) and optionally a minimum checkpoint and a maximum
//! cosignature age. An installation keeps the [`Kept`] state of the last
//! config it accepted. To fetch a config, the client:
//!
//! 1. fetches `config_url` and [`ClientPolicy::proof_url`]`(config_url,
//!    kept)` (`<config_url>.proof?old=N`);
//! 2. calls [`verify_config`] with the policy, the kept state, both texts
//!    and the current time;
//! 3. on `Ok`, uses the config and keeps the returned [`Kept`]; on `Err`,
//!    uses nothing, sends nothing, and shows the [`Refusal`] (one line).
//!
//! The served config must be the **last** leaf of a checkpoint signed by
//! the log and cosigned by the quorum; the checkpoint must extend the
//! minimum checkpoint and the kept one; the config's version must not be
//! lower than the kept one, nor equal to it with other bytes.

use super::FormatError;
use super::b64;
use super::bundle::{Bundle, proof_query};
use super::checkpoint::{Checkpoint, SignedCheckpoint, parse_decimal, parse_hash};
use super::merkle::{self, Hash};
use super::policy::Policy;
use crate::config::{CollectionConfig, ConfigError};
use std::fmt;

/// Why a config was refused. Displays as one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The bundle (or a checkpoint in it) cannot be read.
    Malformed(String),
    /// The checkpoint is of another log.
    WrongOrigin {
        /// The checkpoint's origin.
        origin: String,
        /// The log key's name.
        expected: String,
    },
    /// A signature of a known key (the log's or a witness's) fails.
    BadSignature {
        /// The key's name.
        key: String,
    },
    /// No signature of the log key.
    NotSignedByLog {
        /// The log key's name.
        log: String,
    },
    /// The cosigning witnesses do not meet the quorum.
    TooFewCosignatures {
        /// The policy's witnesses that did cosign.
        cosigners: Vec<String>,
        /// The quorum in words.
        quorum: String,
    },
    /// The quorum is met only with cosignatures older than allowed.
    Stale {
        /// The checkpoint's size.
        size: u64,
        /// The largest age allowed, in seconds.
        max_age: u64,
    },
    /// The config is not the last leaf of the checkpoint.
    NotLatest {
        /// Its leaf index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The inclusion proof does not lead from the config to the
    /// checkpoint's root.
    NotIncluded {
        /// The leaf index claimed.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The checkpoint is for a smaller tree than one already trusted.
    SmallerTree {
        /// The checkpoint's size.
        size: u64,
        /// The trusted size.
        trusted: u64,
        /// Which checkpoint is trusted: "this installation" or "the
        /// toolchain's minimum".
        whose: &'static str,
    },
    /// A checkpoint of the same size as a trusted one, with another root.
    Forked {
        /// The size.
        size: u64,
        /// Which checkpoint is trusted.
        whose: &'static str,
    },
    /// No consistency proof from a trusted size.
    MissingConsistency {
        /// The trusted size.
        old: u64,
        /// Which checkpoint is trusted.
        whose: &'static str,
    },
    /// The consistency proof from a trusted checkpoint fails.
    Inconsistent {
        /// The trusted size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
        /// Which checkpoint is trusted.
        whose: &'static str,
    },
    /// The config is invalid.
    Config(ConfigError),
    /// The config's version is lower than one accepted before.
    Rollback {
        /// The served version.
        version: u64,
        /// The accepted version.
        accepted: u64,
    },
    /// The same version as one accepted before, with other bytes.
    SameVersionOtherBytes {
        /// The version.
        version: u64,
    },
}

/// Which trusted checkpoint a refusal is about.
const KEPT: &str = "this installation";
const MINIMUM: &str = "the toolchain's minimum";

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(m) => write!(f, "the log proof is malformed: {m}"),
            Refusal::WrongOrigin { origin, expected } => write!(
                f,
                "the checkpoint is of log {origin:?}, not of the config log {expected:?}"
            ),
            Refusal::BadSignature { key } => write!(
                f,
                "the checkpoint carries a signature of key {key} that does not verify"
            ),
            Refusal::NotSignedByLog { log } => {
                write!(f, "the checkpoint is not signed by the log key {log}")
            }
            Refusal::TooFewCosignatures { cosigners, quorum } => write!(
                f,
                "too few witness cosignatures: the policy needs {quorum}, the checkpoint has {}",
                if cosigners.is_empty() {
                    "none".to_string()
                } else {
                    cosigners.join(", ")
                }
            ),
            Refusal::Stale { size, max_age } => write!(
                f,
                "the checkpoint of size {size} has no quorum of cosignatures younger than {max_age} s: a replayed old checkpoint?"
            ),
            Refusal::NotLatest { index, size } => write!(
                f,
                "the config is entry {index} of a log of {size}, not the latest entry: it is not the current config"
            ),
            Refusal::NotIncluded { index, size } => write!(
                f,
                "the config is not in the log: its inclusion proof as entry {index} does not lead to the signed root of size {size}"
            ),
            Refusal::SmallerTree {
                size,
                trusted,
                whose,
            } => write!(
                f,
                "the checkpoint is for a smaller log ({size} entries) than the one {whose} trusts ({trusted}): a truncated log or a replayed old checkpoint"
            ),
            Refusal::Forked { size, whose } => write!(
                f,
                "the checkpoint of size {size} differs from the one {whose} trusts at that size: the log shows two histories"
            ),
            Refusal::MissingConsistency { old, whose } => write!(
                f,
                "the log proof has no consistency proof from size {old} ({whose})"
            ),
            Refusal::Inconsistent { old, size, whose } => write!(
                f,
                "the checkpoint of size {size} does not extend the one of size {old} {whose} trusts: history was rewritten or this is a split view"
            ),
            Refusal::Config(e) => write!(f, "the logged config is invalid: {e}"),
            Refusal::Rollback { version, accepted } => write!(
                f,
                "config version {version} is older than version {accepted} already accepted"
            ),
            Refusal::SameVersionOtherBytes { version } => write!(
                f,
                "config version {version} differs from the version {version} already accepted (same version, other bytes)"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

impl From<FormatError> for Refusal {
    fn from(e: FormatError) -> Refusal {
        Refusal::Malformed(e.to_string())
    }
}

/// What a toolchain compiles in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    /// Log key, witnesses, quorum.
    pub policy: Policy,
    /// A checkpoint every accepted checkpoint must extend (so a cleaned
    /// state file does not reopen rollbacks below it).
    pub minimum: Option<Checkpoint>,
    /// When set, the quorum must be met by cosignatures at most this many
    /// seconds old (the server has witnesses re-cosign regularly).
    pub max_age: Option<u64>,
}

impl ClientPolicy {
    /// A policy without minimum checkpoint or age limit.
    pub fn new(policy: Policy) -> ClientPolicy {
        ClientPolicy {
            policy,
            minimum: None,
            max_age: None,
        }
    }

    /// Parses the policy file and, if not empty, the minimum checkpoint (a
    /// signed checkpoint; the log's signature must verify, cosignatures are
    /// not required: the toolchain's build vouches for it).
    pub fn parse(policy: &str, minimum: &str) -> Result<ClientPolicy, FormatError> {
        let policy = Policy::parse(policy)?;
        let mut out = ClientPolicy::new(policy);
        if !minimum.trim().is_empty() {
            out = out.with_minimum(minimum)?;
        }
        Ok(out)
    }

    /// Sets the minimum checkpoint (a signed checkpoint of the log).
    pub fn with_minimum(mut self, signed: &str) -> Result<ClientPolicy, FormatError> {
        let s = SignedCheckpoint::parse(signed)?;
        let only_log = Policy::new(self.policy.log().clone(), Vec::new(), 0)?;
        only_log
            .verify(&s, 0, None)
            .map_err(|e| FormatError::new(format!("the minimum checkpoint is refused: {e}")))?;
        self.minimum = Some(s.checkpoint);
        Ok(self)
    }

    /// Sets the largest cosignature age, in seconds.
    pub fn with_max_age(mut self, seconds: u64) -> ClientPolicy {
        self.max_age = Some(seconds);
        self
    }

    /// The query to add to `<config_url>.proof`: consistency proofs from
    /// the kept size and the minimum's size (`?old=5&old=9`, or empty).
    pub fn proof_query(&self, kept: Option<&Kept>) -> String {
        let mut sizes = Vec::new();
        if let Some(m) = &self.minimum {
            sizes.push(m.size);
        }
        if let Some(k) = kept {
            sizes.push(k.checkpoint.size);
        }
        proof_query(&sizes)
    }

    /// The URL of the proof bundle for the config at `config_url`: it
    /// names the log by its key ID (`?log=1a2b3c4d`: a server that serves
    /// the config from two logs during a key rotation answers from this
    /// one), then the sizes of [`ClientPolicy::proof_query`].
    pub fn proof_url(&self, config_url: &str, kept: Option<&Kept>) -> String {
        let sizes = self.proof_query(kept);
        let sizes = sizes.strip_prefix('?').unwrap_or("");
        let sep = if sizes.is_empty() { "" } else { "&" };
        format!(
            "{config_url}.proof?log={:08x}{sep}{sizes}",
            self.policy.log().id()
        )
    }

    /// True when `kept` was kept under this policy's log: its checkpoint
    /// is of this log and signed by this log key. A checkpoint kept under
    /// another log or another key (an earlier release's policy, before a
    /// key rotation) is not: the client sets it aside and starts again from
    /// its minimum checkpoint (`counters-spec/config-log.md` §9, §13).
    pub fn trusts_kept(&self, kept: &Kept) -> bool {
        let Ok(signed) = SignedCheckpoint::parse(&kept.signed) else {
            return false;
        };
        Policy::new(self.policy.log().clone(), Vec::new(), 0)
            .is_ok_and(|only_log| only_log.verify(&signed, 0, None).is_ok())
    }
}

/// What an installation keeps of the last config it accepted: the signed
/// checkpoint, the config's version and leaf hash. Stored as text
/// ([`Kept::to_text`]): `config <version> <base64 leaf hash>`, then the
/// signed checkpoint (kept whole: two conflicting checkpoints signed by
/// the log are proof of its misbehaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The checkpoint accepted with the config.
    pub checkpoint: Checkpoint,
    /// The signed checkpoint, as accepted.
    pub signed: String,
    /// The accepted config's version.
    pub version: u64,
    /// The accepted config's leaf hash.
    pub config_hash: Hash,
}

impl Kept {
    /// The text to store.
    pub fn to_text(&self) -> String {
        format!(
            "config {} {}\n{}",
            self.version,
            b64::encode(&self.config_hash),
            self.signed
        )
    }

    /// Reads stored text back (signatures are not verified again).
    pub fn parse(text: &str) -> Result<Kept, FormatError> {
        let (first, signed) = text
            .split_once('\n')
            .ok_or_else(|| FormatError::new("the kept log state is truncated"))?;
        let mut words = first.split(' ');
        let (Some("config"), Some(v), Some(h), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(FormatError::new(
                "the kept log state does not start with config <version> <hash>",
            ));
        };
        let version = parse_decimal(v)
            .ok_or_else(|| FormatError::new("the kept config version is not a number"))?;
        let config_hash = parse_hash(h)
            .ok_or_else(|| FormatError::new("the kept config hash is not a base64 hash"))?;
        let checkpoint = SignedCheckpoint::parse(signed)?.checkpoint;
        Ok(Kept {
            checkpoint,
            signed: signed.to_string(),
            version,
            config_hash,
        })
    }
}

/// A config the client may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The parsed config.
    pub config: CollectionConfig,
    /// The state to keep from now on.
    pub kept: Kept,
    /// The witnesses that cosigned the checkpoint: (policy name, time).
    pub cosigners: Vec<(String, u64)>,
}

/// Checks that the checkpoint extends a trusted one.
fn extends(bundle: &Bundle, trusted: &Checkpoint, whose: &'static str) -> Result<(), Refusal> {
    let c = &bundle.proof.checkpoint.checkpoint;
    if trusted.origin != c.origin {
        return Err(Refusal::WrongOrigin {
            origin: c.origin.clone(),
            expected: trusted.origin.clone(),
        });
    }
    if c.size < trusted.size {
        return Err(Refusal::SmallerTree {
            size: c.size,
            trusted: trusted.size,
            whose,
        });
    }
    if c.size == trusted.size {
        return if c.root == trusted.root {
            Ok(())
        } else {
            Err(Refusal::Forked {
                size: c.size,
                whose,
            })
        };
    }
    if trusted.size == 0 {
        return Ok(());
    }
    let proof = bundle
        .consistency_from(trusted.size)
        .ok_or(Refusal::MissingConsistency {
            old: trusted.size,
            whose,
        })?;
    merkle::verify_consistency(trusted.size, &trusted.root, c.size, &c.root, proof).map_err(|_| {
        Refusal::Inconsistent {
            old: trusted.size,
            size: c.size,
            whose,
        }
    })
}

/// Decides whether the fetched config (`config_text`, the exact bytes
/// served) may be used, given its proof bundle, the compiled-in policy,
/// what this installation kept (if anything) and the time now (POSIX
/// seconds; used only with [`ClientPolicy::max_age`]).
///
/// Checks, in order: the bundle parses; the checkpoint is the log's,
/// signed by the log key, cosigned by the quorum (fresh enough); the
/// config is its last leaf and the inclusion proof verifies; it extends
/// the minimum checkpoint and the kept one; the config is valid; its
/// version is not lower than the kept one, nor equal with other bytes.
pub fn verify_config(
    policy: &ClientPolicy,
    kept: Option<&Kept>,
    config_text: &str,
    bundle_text: &str,
    now: u64,
) -> Result<Accepted, Refusal> {
    let bundle = Bundle::parse(bundle_text)?;
    let signed = &bundle.proof.checkpoint;
    let trusted = policy.policy.verify(signed, now, policy.max_age)?;
    let c = &signed.checkpoint;
    let index = bundle.proof.index;
    if c.size == 0 || index != c.size - 1 {
        return Err(Refusal::NotLatest {
            index,
            size: c.size,
        });
    }
    let leaf = merkle::leaf_hash(config_text.as_bytes());
    merkle::verify_inclusion(&leaf, index, c.size, &bundle.proof.inclusion, &c.root).map_err(
        |_| Refusal::NotIncluded {
            index,
            size: c.size,
        },
    )?;
    if let Some(m) = &policy.minimum {
        extends(&bundle, m, MINIMUM)?;
    }
    if let Some(k) = kept {
        extends(&bundle, &k.checkpoint, KEPT)?;
    }
    let config = CollectionConfig::parse(config_text, "config.toml").map_err(Refusal::Config)?;
    if let Some(k) = kept {
        if config.version < k.version {
            return Err(Refusal::Rollback {
                version: config.version,
                accepted: k.version,
            });
        }
        if config.version == k.version && leaf != k.config_hash {
            return Err(Refusal::SameVersionOtherBytes {
                version: config.version,
            });
        }
    }
    let kept = Kept {
        checkpoint: c.clone(),
        signed: signed.to_text(),
        version: config.version,
        config_hash: leaf,
    };
    Ok(Accepted {
        config,
        kept,
        cosigners: trusted.cosigners,
    })
}
