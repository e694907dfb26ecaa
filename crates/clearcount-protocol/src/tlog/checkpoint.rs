//! C2SP checkpoints (`c2sp.org/tlog-checkpoint`): a signed note whose text
//! is the log's origin, its tree size and its root hash, one per line.
//!
//! ```
//! use clearcount_protocol::tlog::checkpoint::Checkpoint;
//! let text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
//! let c = Checkpoint::parse(text).unwrap();
//! assert_eq!((c.origin.as_str(), c.size), ("example.com/behind-the-sofa", 20852163));
//! assert_eq!(c.to_text(), text);
//! ```

use super::FormatError;
use super::b64;
use super::merkle::Hash;
use super::note::Note;

/// A checkpoint's note text: origin, tree size, root hash, and optional
/// extension lines (clearcount writes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (clearcount: the log key's name).
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 6962 root hash of those leaves.
    pub root: Hash,
    /// Extension lines, opaque, each non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a checkpoint's note text: at least three non-empty lines,
    /// each ending in a newline; the size in decimal without leading
    /// zeros; the root hash in base64 (32 bytes).
    pub fn parse(text: &str) -> Result<Checkpoint, FormatError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| FormatError::new("a checkpoint must end with a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 || lines.iter().any(|l| l.is_empty()) {
            return Err(FormatError::new(
                "a checkpoint is at least three non-empty lines: origin, tree size, root hash",
            ));
        }
        let size = parse_decimal(lines[1]).ok_or_else(|| {
            FormatError::new(format!(
                "checkpoint tree size {:?} is not a decimal number without leading zeros",
                lines[1]
            ))
        })?;
        let root = parse_hash(lines[2]).ok_or_else(|| {
            FormatError::new(format!(
                "checkpoint root hash {:?} is not a base64 SHA-256 hash",
                lines[2]
            ))
        })?;
        Ok(Checkpoint {
            origin: lines[0].to_string(),
            size,
            root,
            extensions: lines[3..].iter().map(|l| l.to_string()).collect(),
        })
    }

    /// The note text: origin, size, base64 root, extension lines, each
    /// followed by a newline.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            b64::encode(&self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }
}

/// Parses an ASCII decimal without leading zeros (`0` alone is zero).
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses a base64 SHA-256 hash.
pub(crate) fn parse_hash(s: &str) -> Option<Hash> {
    b64::decode(s)?.try_into().ok()
}

/// A checkpoint with its signatures (log signature, cosignatures, and any
/// other signature, kept as they came).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed note text.
    pub checkpoint: Checkpoint,
    /// The signed note.
    pub note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint (a signed note whose text is a
    /// checkpoint). Signatures are not verified here: see
    /// [`Policy::verify`](super::policy::Policy::verify).
    pub fn parse(text: &str) -> Result<SignedCheckpoint, FormatError> {
        let note = Note::parse(text)?;
        let checkpoint = Checkpoint::parse(&note.text)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// The signed note's text.
    pub fn to_text(&self) -> String {
        self.note.to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_rules() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let ok = format!("o\n0\n{root}\n");
        assert_eq!(Checkpoint::parse(&ok).unwrap().size, 0);
        let ext = format!("o\n5\n{root}\next one\n");
        assert_eq!(Checkpoint::parse(&ext).unwrap().to_text(), ext);
        for bad in [
            format!("o\n5\n{root}"),
            format!("o\n05\n{root}\n"),
            format!("o\n+5\n{root}\n"),
            "o\n5\n".to_string(),
            format!("\n5\n{root}\n"),
            format!("o\n5\n{root}\n\n"),
            "o\n5\nAAAA\n".to_string(),
            format!("o\n99999999999999999999\n{root}\n"),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }
}
