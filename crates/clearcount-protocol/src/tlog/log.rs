//! The log itself: [`Log`] in memory (pure), and [`LogDir`], its layout in
//! a directory (published with the config, served by the server):
//!
//! ```text
//! config/log/
//!   log.vkey             the log's verifier key (one line)
//!   policy               optional: the C2SP tlog-policy clients compile in
//!   entries/0            the exact bytes of each published config.toml,
//!   entries/1              by leaf index (decimal, no padding)
//!   ...
//!   checkpoints/1        every signed checkpoint ever published, by tree
//!   checkpoints/2          size, with the cosignatures gathered for it
//!   ...
//!   checkpoint           the latest signed checkpoint (= the largest above)
//!   minimum              the latest checkpoint as the log signed it (no
//!                          cosignature): what a release compiles in as
//!                          its floor (`UploadSettings::with_minimum_checkpoint`)
//! ```
//!
//! Publishing appends an entry and signs a new checkpoint with the log's
//! secret key, which stays offline: the maintainer publishes on the offline
//! machine, then commits `config/log/` with the config.

use super::FormatError;
use super::bundle::{Bundle, Consistency, TlogProof};
use super::checkpoint::{Checkpoint, SignedCheckpoint};
use super::merkle::{self, Hash};
use super::note::{Note, NoteSignature, SignerKey, VerifierKey};
use crate::config::CollectionConfig;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a log operation failed. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// A file could not be read or written.
    Io(String),
    /// A file does not follow its format.
    Format(FormatError),
    /// The config to append is invalid.
    Config(String),
    /// The config's version is not higher than the last entry's.
    VersionNotHigher {
        /// The version of the config to append.
        version: u64,
        /// The last entry's version.
        last: u64,
    },
    /// The secret key is not the log's.
    WrongKey {
        /// The log's key.
        log: String,
        /// The key given.
        given: String,
    },
    /// Anything else wrong with the log's contents or a request.
    Invalid(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Io(m) | LogError::Config(m) | LogError::Invalid(m) => f.write_str(m),
            LogError::Format(e) => e.fmt(f),
            LogError::VersionNotHigher { version, last } => write!(
                f,
                "config version {version} is not higher than version {last}, the last in the log: raise `version`"
            ),
            LogError::WrongKey { log, given } => write!(
                f,
                "the secret key is for {given}, but this log is signed by {log}"
            ),
        }
    }
}

impl std::error::Error for LogError {}

impl From<FormatError> for LogError {
    fn from(e: FormatError) -> LogError {
        LogError::Format(e)
    }
}

/// The version of a config to log, or why it cannot be logged.
fn config_version(data: &[u8], what: &str) -> Result<u64, LogError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| LogError::Config(format!("{what} is not UTF-8 text")))?;
    CollectionConfig::parse(text, what)
        .map(|c| c.version)
        .map_err(|e| LogError::Config(format!("{what} is not a valid config: {e}")))
}

/// A config log in memory: the entries, their leaf hashes and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    origin: String,
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    versions: Vec<u64>,
}

impl Log {
    /// An empty log with this origin (the log key's name).
    pub fn new(origin: &str) -> Log {
        Log {
            origin: origin.to_string(),
            entries: Vec::new(),
            leaves: Vec::new(),
            versions: Vec::new(),
        }
    }

    /// A log of these entries (each checked as [`Log::append`] does).
    pub fn from_entries(origin: &str, entries: Vec<Vec<u8>>) -> Result<Log, LogError> {
        let mut log = Log::new(origin);
        for e in entries {
            log.append(e)?;
        }
        Ok(log)
    }

    /// Appends a config (its exact bytes): it must be a valid config whose
    /// version is higher than the last entry's. Returns its leaf index.
    pub fn append(&mut self, config: Vec<u8>) -> Result<u64, LogError> {
        let index = self.entries.len() as u64;
        let version = config_version(&config, &format!("entry {index}"))?;
        if let Some(&last) = self.versions.last()
            && version <= last
        {
            return Err(LogError::VersionNotHigher { version, last });
        }
        self.leaves.push(merkle::leaf_hash(&config));
        self.versions.push(version);
        self.entries.push(config);
        Ok(index)
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of entries.
    pub fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The entries' bytes.
    pub fn entries(&self) -> &[Vec<u8>] {
        &self.entries
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// The entries' versions.
    pub fn versions(&self) -> &[u64] {
        &self.versions
    }

    /// The (unsigned) checkpoint of the first `size` entries.
    pub fn checkpoint_at(&self, size: u64) -> Result<Checkpoint, LogError> {
        if size > self.size() {
            return Err(LogError::Invalid(format!(
                "the log has {} entries, not {size}",
                self.size()
            )));
        }
        Ok(Checkpoint::new(
            &self.origin,
            size,
            merkle::root(&self.leaves[..size as usize]),
        ))
    }

    /// The (unsigned) checkpoint of the whole log.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::new(&self.origin, self.size(), merkle::root(&self.leaves))
    }

    /// Signs the checkpoint of the whole log with the log's key (whose
    /// name must be the origin).
    pub fn sign_checkpoint(&self, key: &SignerKey) -> Result<SignedCheckpoint, LogError> {
        if key.verifier().name() != self.origin {
            return Err(LogError::WrongKey {
                log: self.origin.clone(),
                given: key.verifier().name().to_string(),
            });
        }
        let checkpoint = self.checkpoint();
        let mut note = Note::new(&checkpoint.to_text())?;
        note.add_signature(key.sign(&note.text)?);
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        if index >= size || size > self.size() {
            return Err(LogError::Invalid(format!(
                "no entry {index} in a tree of {size} (the log has {})",
                self.size()
            )));
        }
        Ok(merkle::inclusion_proof(
            &self.leaves[..size as usize],
            index,
        ))
    }

    /// The consistency proof from `old` entries to `size` entries.
    pub fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        if old > size || size > self.size() {
            return Err(LogError::Invalid(format!(
                "no consistency proof from {old} to {size} entries (the log has {})",
                self.size()
            )));
        }
        Ok(merkle::consistency_proof(
            &self.leaves[..size as usize],
            old,
        ))
    }

    /// The bundle served with the config: consistency proofs from each of
    /// `olds` (a size larger than the checkpoint's gets an empty section,
    /// which the client refuses), then the tlog-proof of the checkpoint's
    /// last entry. The signed checkpoint must be one of this log's (its
    /// root is checked).
    pub fn bundle(&self, signed: &SignedCheckpoint, olds: &[u64]) -> Result<Bundle, LogError> {
        let c = &signed.checkpoint;
        if c.size == 0 || self.checkpoint_at(c.size)?.root != c.root {
            return Err(LogError::Invalid(format!(
                "the checkpoint of size {} is not one of this log's",
                c.size
            )));
        }
        let mut sizes = olds.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let consistency = sizes
            .into_iter()
            .filter(|&o| o > 0)
            .map(|old| Consistency {
                old,
                proof: self.consistency_proof(old, c.size).unwrap_or_default(),
            })
            .collect();
        Ok(Bundle {
            consistency,
            proof: TlogProof {
                extra: None,
                index: c.size - 1,
                inclusion: self.inclusion_proof(c.size - 1, c.size)?,
                checkpoint: signed.clone(),
            },
        })
    }
}

/// Adds signature lines (such as a witness's `add-checkpoint` answer) to
/// a signed checkpoint, replacing older signatures of the same keys.
pub fn add_signatures(signed: &mut SignedCheckpoint, lines: &str) -> Result<(), FormatError> {
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        signed.note.add_signature(NoteSignature::parse_line(line)?);
    }
    Ok(())
}

/// What [`LogDir::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The new entry's leaf index.
    pub index: u64,
    /// The config's version.
    pub version: u64,
    /// The new signed checkpoint (no cosignature yet).
    pub checkpoint: SignedCheckpoint,
}

/// A config log in a directory (layout above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    root: PathBuf,
}

fn io(what: &str, path: &Path, e: impl fmt::Display) -> LogError {
    LogError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Writes a file through a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LogError> {
    let mut tmp = path.to_path_buf().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).map_err(|e| io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replace", path, e))
}

impl LogDir {
    /// The file with the log's verifier key.
    pub const VKEY: &'static str = "log.vkey";
    /// The optional policy file.
    pub const POLICY: &'static str = "policy";
    /// The entries' directory.
    pub const ENTRIES: &'static str = "entries";
    /// The checkpoint history's directory.
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// The latest signed checkpoint.
    pub const CHECKPOINT: &'static str = "checkpoint";
    /// The latest checkpoint with the log's signature only: what a release
    /// compiles in as its minimum (it changes only when a config is
    /// published, not when witnesses cosign again).
    pub const MINIMUM: &'static str = "minimum";

    /// Creates an empty log in `dir` (created if missing, must not hold a
    /// log already) for this log key.
    pub fn init(dir: impl AsRef<Path>, log_key: &VerifierKey) -> Result<LogDir, LogError> {
        let root = dir.as_ref().to_path_buf();
        if root.join(Self::VKEY).exists() {
            return Err(LogError::Invalid(format!(
                "{} already holds a log",
                root.display()
            )));
        }
        for d in [Self::ENTRIES, Self::CHECKPOINTS] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| io("create", &root.join(d), e))?;
        }
        let vkey = root.join(Self::VKEY);
        std::fs::write(&vkey, format!("{log_key}\n")).map_err(|e| io("write", &vkey, e))?;
        Ok(LogDir { root })
    }

    /// Opens the log in `dir` (it must have a `log.vkey`).
    pub fn open(dir: impl AsRef<Path>) -> Result<LogDir, LogError> {
        let root = dir.as_ref().to_path_buf();
        if !root.join(Self::VKEY).is_file() {
            return Err(LogError::Invalid(format!(
                "{} is not a config log: it has no {} (`clearcount config log-init` makes one)",
                root.display(),
                Self::VKEY
            )));
        }
        Ok(LogDir { root })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, LogError> {
        let p = self.root.join(rel);
        std::fs::read(&p).map_err(|e| io("read", &p, e))
    }

    fn read_text(&self, rel: &str) -> Result<String, LogError> {
        String::from_utf8(self.read(rel)?)
            .map_err(|_| LogError::Invalid(format!("{rel} is not UTF-8 text")))
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> Result<VerifierKey, LogError> {
        Ok(VerifierKey::parse(&self.read_text(Self::VKEY)?)?)
    }

    /// The policy file's text, if there is one.
    pub fn policy_text(&self) -> Result<Option<String>, LogError> {
        if self.root.join(Self::POLICY).is_file() {
            self.read_text(Self::POLICY).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads every entry, in order (they must be numbered 0, 1, … without
    /// a gap), and checks them as [`Log::append`] does.
    pub fn load(&self) -> Result<Log, LogError> {
        let origin = self.verifier()?.name().to_string();
        let dir = self.root.join(Self::ENTRIES);
        let count = std::fs::read_dir(&dir)
            .map_err(|e| io("list", &dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            entries.push(self.read(&format!("{}/{i}", Self::ENTRIES))?);
        }
        Log::from_entries(&origin, entries)
    }

    /// The latest signed checkpoint, if any.
    pub fn checkpoint(&self) -> Result<Option<SignedCheckpoint>, LogError> {
        if !self.root.join(Self::CHECKPOINT).is_file() {
            return Ok(None);
        }
        Ok(Some(SignedCheckpoint::parse(
            &self.read_text(Self::CHECKPOINT)?,
        )?))
    }

    /// The sizes in the checkpoint history, increasing.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>, LogError> {
        let dir = self.root.join(Self::CHECKPOINTS);
        let mut sizes: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| io("list", &dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| super::checkpoint::parse_decimal(&e.file_name().to_string_lossy()))
            .collect();
        sizes.sort_unstable();
        Ok(sizes)
    }

    /// The signed checkpoint published at `size`.
    pub fn checkpoint_of_size(&self, size: u64) -> Result<SignedCheckpoint, LogError> {
        Ok(SignedCheckpoint::parse(
            &self.read_text(&format!("{}/{size}", Self::CHECKPOINTS))?,
        )?)
    }

    /// Appends a config to the log and signs the new checkpoint with the
    /// log's secret key: writes `entries/<index>`, `checkpoints/<size>`,
    /// `checkpoint` and `minimum`. Refuses an invalid config, a version not higher than
    /// the last, and another key than the log's.
    pub fn publish(&self, config: &[u8], key: &SignerKey) -> Result<Published, LogError> {
        let vkey = self.verifier()?;
        if key.verifier() != &vkey {
            return Err(LogError::WrongKey {
                log: vkey.to_string(),
                given: key.verifier().to_string(),
            });
        }
        let mut log = self.load()?;
        let index = log.append(config.to_vec())?;
        let signed = log.sign_checkpoint(key)?;
        let entry = self.root.join(format!("{}/{index}", Self::ENTRIES));
        if entry.exists() {
            return Err(LogError::Invalid(format!(
                "{} already exists",
                entry.display()
            )));
        }
        write_atomic(&entry, config)?;
        self.store_checkpoint(&signed)?;
        write_atomic(&self.root.join(Self::MINIMUM), signed.to_text().as_bytes())?;
        Ok(Published {
            index,
            version: log.versions()[index as usize],
            checkpoint: signed,
        })
    }

    /// Writes a signed checkpoint to `checkpoints/<size>` and, when it is
    /// the largest, to `checkpoint`.
    pub fn store_checkpoint(&self, signed: &SignedCheckpoint) -> Result<(), LogError> {
        let text = signed.to_text();
        let size = signed.checkpoint.size;
        write_atomic(
            &self.root.join(format!("{}/{size}", Self::CHECKPOINTS)),
            text.as_bytes(),
        )?;
        let latest = self.checkpoint()?.map_or(0, |c| c.checkpoint.size);
        if size >= latest {
            write_atomic(&self.root.join(Self::CHECKPOINT), text.as_bytes())?;
        }
        Ok(())
    }

    /// Adds signature lines (a witness's answer) to the checkpoint of that
    /// size; the cosignatures must be over that checkpoint (checked by the
    /// caller against its policy). Returns the updated checkpoint.
    pub fn add_cosignatures(&self, size: u64, lines: &str) -> Result<SignedCheckpoint, LogError> {
        let mut signed = self.checkpoint_of_size(size)?;
        add_signatures(&mut signed, lines)?;
        self.store_checkpoint(&signed)?;
        Ok(signed)
    }

    /// The bundle for a client's request (`?old=…` sizes): the latest
    /// checkpoint and its proofs, as text.
    pub fn bundle(&self, olds: &[u64]) -> Result<String, LogError> {
        let signed = self
            .checkpoint()?
            .ok_or_else(|| LogError::Invalid("the log has no checkpoint yet".into()))?;
        Ok(self.load()?.bundle(&signed, olds)?.to_text())
    }
}
