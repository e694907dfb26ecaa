//! A witness (C2SP `tlog-witness`): it keeps the latest checkpoint of each
//! log it follows and cosigns a new one only if it extends it.
//!
//! [`AddCheckpoint`] is the `add-checkpoint` request body (`old N`, the
//! consistency proof lines, a blank line, the signed checkpoint);
//! [`Witness::add_checkpoint`] is the decision, pure: given what the
//! witness stored for the log, it returns the checkpoint to store and the
//! cosignature line to answer, or the refusal with its HTTP status.
//! [`WitnessDir`] stores the latest checkpoint per origin in a directory.
//! The caller must check and store atomically (one request at a time per
//! log), and store before answering.

use super::FormatError;
use super::b64;
use super::checkpoint::{Checkpoint, SignedCheckpoint, parse_decimal};
use super::merkle::{self, Hash};
use super::note::{KeyType, SignerKey, VerifierKey};
use super::policy::Policy;
use std::fmt;
use std::path::{Path, PathBuf};

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the log believes the witness has.
    pub old: u64,
    /// The consistency proof from `old` to the new checkpoint.
    pub proof: Vec<Hash>,
    /// The new signed checkpoint, as sent.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_text(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&b64::encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a request body.
    pub fn parse(body: &str) -> Result<AddCheckpoint, FormatError> {
        let rest = body
            .strip_prefix("old ")
            .ok_or_else(|| FormatError::new("the request does not start with old <size>"))?;
        let end = rest.find("\n\n").ok_or_else(|| {
            FormatError::new("the request has no blank line before the checkpoint")
        })?;
        let mut lines = rest[..end].split('\n');
        let first = lines.next().unwrap_or("");
        let old = parse_decimal(first).ok_or_else(|| {
            FormatError::new(format!("old size {first:?} is not a decimal number"))
        })?;
        let proof = lines
            .map(|l| {
                super::checkpoint::parse_hash(l)
                    .ok_or_else(|| FormatError::new(format!("{l:?} is not a base64 hash")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > super::bundle::MAX_PROOF_HASHES {
            return Err(FormatError::new(
                "the consistency proof has more than 63 lines",
            ));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: rest[end + 2..].to_string(),
        })
    }

    /// The origin of the checkpoint sent (to look up what the witness
    /// stored for it).
    pub fn origin(&self) -> Result<String, FormatError> {
        Ok(SignedCheckpoint::parse(&self.checkpoint)?.checkpoint.origin)
    }
}

/// Why a witness does not cosign, with the HTTP status `tlog-witness`
/// gives it. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessError {
    /// 400: the request is malformed or its old size exceeds the new.
    BadRequest(String),
    /// 403: no valid log signature, or a failing one.
    Forbidden(String),
    /// 404: the witness does not follow this log.
    UnknownLog(String),
    /// 409: the old size is not the size the witness has.
    Conflict {
        /// The size of the checkpoint the witness has.
        latest: u64,
    },
    /// 422: the proof does not verify (or a size-0 tree's root is not the
    /// empty root): the log does not extend what the witness saw.
    Unprocessable(String),
}

impl WitnessError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::Forbidden(_) => 403,
            WitnessError::UnknownLog(_) => 404,
            WitnessError::Conflict { .. } => 409,
            WitnessError::Unprocessable(_) => 422,
        }
    }

    /// The response body: for 409, the witness's size and a newline (sent
    /// as `text/x.tlog.size`); otherwise the message.
    pub fn body(&self) -> String {
        match self {
            WitnessError::Conflict { latest } => format!("{latest}\n"),
            other => format!("{other}\n"),
        }
    }
}

impl fmt::Display for WitnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitnessError::BadRequest(m)
            | WitnessError::Forbidden(m)
            | WitnessError::UnknownLog(m)
            | WitnessError::Unprocessable(m) => f.write_str(m),
            WitnessError::Conflict { latest } => write!(
                f,
                "the witness has a checkpoint of size {latest}, not of the old size given"
            ),
        }
    }
}

impl std::error::Error for WitnessError {}

/// A witness: its cosigning key and the logs it follows.
#[derive(Debug, Clone)]
pub struct Witness {
    key: SignerKey,
    logs: Vec<VerifierKey>,
}

/// What the witness does on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    /// The checkpoint to store as the log's latest (before answering).
    pub latest: Checkpoint,
    /// The answer: the cosignature line.
    pub response: String,
}

impl Witness {
    /// A witness with this `cosignature/v1` key, following these logs
    /// (Ed25519 keys named by their origins).
    pub fn new(key: SignerKey, logs: Vec<VerifierKey>) -> Result<Witness, FormatError> {
        if key.verifier().key_type() != KeyType::CosignatureV1 {
            return Err(FormatError::new(
                "a witness key must be a cosignature/v1 (type 0x04) key",
            ));
        }
        Ok(Witness { key, logs })
    }

    /// The witness's verifier key (for clients' policies).
    pub fn verifier(&self) -> &VerifierKey {
        self.key.verifier()
    }

    /// Handles an `add-checkpoint` request, given the checkpoint the
    /// witness stored for that log (`None`: never cosigned one) and the
    /// time now (POSIX seconds). Cosigns only a checkpoint signed by the
    /// log that extends the stored one.
    pub fn add_checkpoint(
        &self,
        stored: Option<&Checkpoint>,
        request: &AddCheckpoint,
        now: u64,
    ) -> Result<Cosigned, WitnessError> {
        let signed = SignedCheckpoint::parse(&request.checkpoint)
            .map_err(|e| WitnessError::BadRequest(format!("the checkpoint is malformed: {e}")))?;
        let c = &signed.checkpoint;
        let log = self
            .logs
            .iter()
            .find(|l| l.name() == c.origin)
            .ok_or_else(|| {
                WitnessError::UnknownLog(format!("this witness does not follow log {}", c.origin))
            })?;
        let policy = Policy::new(log.clone(), Vec::new(), 0)
            .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
        policy
            .verify(&signed, now, None)
            .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
        if request.old > c.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is larger than the checkpoint's size {}",
                request.old, c.size
            )));
        }
        let latest = stored.map_or(0, |s| s.size);
        if request.old != latest {
            return Err(WitnessError::Conflict { latest });
        }
        if c.size == 0 && c.root != merkle::empty_root() {
            return Err(WitnessError::Unprocessable(
                "a checkpoint of size 0 must have the empty tree's root".into(),
            ));
        }
        let old_root = stored.map_or_else(merkle::empty_root, |s| s.root);
        merkle::verify_consistency(request.old, &old_root, c.size, &c.root, &request.proof).map_err(
            |e| {
                WitnessError::Unprocessable(format!(
                    "the checkpoint of size {} does not extend the one of size {} this witness cosigned: {e}",
                    c.size, request.old
                ))
            },
        )?;
        let sig = self
            .key
            .cosign(&signed.note.text, now)
            .map_err(|e| WitnessError::BadRequest(e.to_string()))?;
        Ok(Cosigned {
            latest: c.clone(),
            response: sig.line(),
        })
    }
}

impl Witness {
    /// Cosigns again, at `now`, the checkpoint this witness stored for a
    /// log (it verified and stored it before: nothing to check), so that a
    /// quiet log's latest checkpoint carries a recent cosignature. Returns
    /// the `cosignature/v1` line.
    pub fn recosign(&self, stored: &Checkpoint, now: u64) -> Result<String, FormatError> {
        if !self.logs.iter().any(|l| l.name() == stored.origin) {
            return Err(FormatError::new(format!(
                "this witness does not follow log {}",
                stored.origin
            )));
        }
        Ok(self.key.cosign(&stored.to_text(), now)?.line())
    }
}

/// A witness's state in a directory: one file per log, named by its
/// origin (bytes other than `A-Za-z0-9.-_` written `%XX`), holding the
/// latest cosigned checkpoint's note text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessDir {
    root: PathBuf,
}

impl WitnessDir {
    /// The state directory (created if missing).
    pub fn open(dir: impl AsRef<Path>) -> Result<WitnessDir, FormatError> {
        let root = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&root)
            .map_err(|e| FormatError::new(format!("cannot create {}: {e}", root.display())))?;
        Ok(WitnessDir { root })
    }

    fn file(&self, origin: &str) -> PathBuf {
        let name: String = origin
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.root.join(name)
    }

    /// The stored checkpoint of a log, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Checkpoint>, FormatError> {
        let p = self.file(origin);
        match std::fs::read_to_string(&p) {
            Ok(t) => Checkpoint::parse(&t).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FormatError::new(format!(
                "cannot read {}: {e}",
                p.display()
            ))),
        }
    }

    /// Stores a log's latest checkpoint durably: written to a temporary
    /// file, flushed to disk, renamed over the old one, and the directory
    /// flushed, so that once this returns (and the witness answers) a
    /// crash cannot bring back an older checkpoint.
    pub fn store(&self, checkpoint: &Checkpoint) -> Result<(), FormatError> {
        use std::io::Write;
        let p = self.file(&checkpoint.origin);
        let mut tmp = p.clone().into_os_string();
        tmp.push(".tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(checkpoint.to_text().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &p)?;
            #[cfg(unix)]
            std::fs::File::open(&self.root)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| FormatError::new(format!("cannot write {}: {e}", p.display())))
    }
}
