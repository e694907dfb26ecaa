//! The proof bundle a client fetches with the config
//! (`GET <config_url>.proof?old=N`), and the C2SP `tlog-proof` inside it.
//!
//! ```text
//! old 5                                  one section per size asked for:
//! <base64 hash>                            the consistency proof from that
//! <base64 hash>                            size to the checkpoint's, then
//!                                          a blank line
//! c2sp.org/tlog-proof@v1                 from here on: a C2SP tlog-proof
//! index 6                                  the served config's leaf index
//! <base64 hash>                            its inclusion proof
//! <base64 hash>
//! <base64 hash>
//!
//! config.example.org/log                 the signed checkpoint, with its
//! 7                                        cosignatures
//! <base64 root>
//!
//! — config.example.org/log <base64 signature>
//! — witness.example/w1 <base64 cosignature>
//! ```
//!
//! The sections mirror the body of a C2SP `tlog-witness` `add-checkpoint`
//! request (`old N`, proof lines, blank line); everything from the
//! `c2sp.org/tlog-proof@v1` line on is a standard tlog-proof, which any
//! tlog-proof verifier can check on its own.

use super::FormatError;
use super::b64;
use super::checkpoint::{SignedCheckpoint, parse_decimal, parse_hash};
use super::merkle::Hash;

/// The first line of a C2SP tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most hashes in one proof (a tree of 2^63 leaves needs fewer).
pub const MAX_PROOF_HASHES: usize = 63;

/// Most consistency sections in a bundle.
pub const MAX_SECTIONS: usize = 8;

/// A C2SP tlog-proof: a leaf index, its inclusion proof, and the signed
/// checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque extra data (the `extra` line), unauthenticated; clearcount
    /// writes none.
    pub extra: Option<Vec<u8>>,
    /// The leaf index.
    pub index: u64,
    /// The inclusion proof, leaf's sibling first.
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: SignedCheckpoint,
}

/// A consistency proof from an older tree size to the checkpoint's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    /// The older tree size.
    pub old: u64,
    /// The proof (empty from size 0 or from the same size).
    pub proof: Vec<Hash>,
}

/// What `<config_url>.proof` answers: consistency proofs from the sizes
/// the client asked for, then a tlog-proof of the served config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// One section per size asked for, by increasing size.
    pub consistency: Vec<Consistency>,
    /// The inclusion proof of the config and the signed checkpoint.
    pub proof: TlogProof,
}

fn hash_lines(lines: &[Hash]) -> String {
    lines
        .iter()
        .map(|h| format!("{}\n", b64::encode(h)))
        .collect()
}

/// Reads hash lines up to (and consuming) a blank line.
fn read_hashes<'a>(
    it: &mut impl Iterator<Item = &'a str>,
    what: &str,
) -> Result<Vec<Hash>, FormatError> {
    let mut out = Vec::new();
    loop {
        let line = it
            .next()
            .ok_or_else(|| FormatError::new(format!("{what} does not end with a blank line")))?;
        if line.is_empty() {
            return Ok(out);
        }
        if out.len() == MAX_PROOF_HASHES {
            return Err(FormatError::new(format!(
                "{what} has more than {MAX_PROOF_HASHES} hashes"
            )));
        }
        out.push(parse_hash(line).ok_or_else(|| {
            FormatError::new(format!("{what}: {line:?} is not a base64 SHA-256 hash"))
        })?);
    }
}

impl TlogProof {
    /// The tlog-proof text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{TLOG_PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", b64::encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        out.push_str(&hash_lines(&self.inclusion));
        out.push('\n');
        out.push_str(&self.checkpoint.to_text());
        out
    }

    /// Parses a tlog-proof.
    pub fn parse(text: &str) -> Result<TlogProof, FormatError> {
        let rest = text
            .strip_prefix(TLOG_PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| {
                FormatError::new(format!("a tlog-proof starts with {TLOG_PROOF_HEADER}"))
            })?;
        // The proof part ends at the first blank line; the checkpoint follows.
        let end = rest.find("\n\n").ok_or_else(|| {
            FormatError::new("the tlog-proof has no blank line before its checkpoint")
        })?;
        let (head, checkpoint) = (&rest[..end + 2], &rest[end + 2..]);
        let mut lines = head.split('\n');
        let mut line = lines.next().unwrap_or("");
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra =
                Some(b64::decode(e).ok_or_else(|| {
                    FormatError::new("the tlog-proof's extra data is not base64")
                })?);
            line = lines.next().unwrap_or("");
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| FormatError::new(format!("expected index N, found {line:?}")))?;
        let inclusion = read_hashes(&mut lines, "the inclusion proof")?;
        Ok(TlogProof {
            extra,
            index,
            inclusion,
            checkpoint: SignedCheckpoint::parse(checkpoint)?,
        })
    }
}

impl Bundle {
    /// The bundle text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.consistency {
            out.push_str(&format!("old {}\n", c.old));
            out.push_str(&hash_lines(&c.proof));
            out.push('\n');
        }
        out.push_str(&self.proof.to_text());
        out
    }

    /// Parses a bundle: sections `old N` (sizes increasing), then a
    /// tlog-proof.
    pub fn parse(text: &str) -> Result<Bundle, FormatError> {
        let mut consistency: Vec<Consistency> = Vec::new();
        let mut rest = text;
        while let Some(after) = rest.strip_prefix("old ") {
            if consistency.len() == MAX_SECTIONS {
                return Err(FormatError::new(format!(
                    "the bundle has more than {MAX_SECTIONS} consistency proofs"
                )));
            }
            let end = after.find("\n\n").ok_or_else(|| {
                FormatError::new("a consistency proof does not end with a blank line")
            })?;
            let mut lines = after[..end + 2].split('\n');
            let first = lines.next().unwrap_or("");
            let old = parse_decimal(first).ok_or_else(|| {
                FormatError::new(format!("old size {first:?} is not a decimal number"))
            })?;
            if consistency.last().is_some_and(|c| c.old >= old) {
                return Err(FormatError::new(
                    "the consistency proofs are not by increasing size",
                ));
            }
            let proof = read_hashes(&mut lines, "a consistency proof")?;
            consistency.push(Consistency { old, proof });
            rest = &after[end + 2..];
        }
        Ok(Bundle {
            consistency,
            proof: TlogProof::parse(rest)?,
        })
    }

    /// The consistency proof from `old`, if the bundle has one.
    pub fn consistency_from(&self, old: u64) -> Option<&[Hash]> {
        self.consistency
            .iter()
            .find(|c| c.old == old)
            .map(|c| c.proof.as_slice())
    }
}

/// The query a client adds to `<config_url>.proof` for these sizes:
/// `?old=5&old=9`, or nothing when no size is above 0.
pub fn proof_query(olds: &[u64]) -> String {
    let mut sizes: Vec<u64> = olds.iter().copied().filter(|&s| s > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}old={s}", if i == 0 { '?' } else { '&' }))
        .collect()
}

/// The key ID a proof request's query names with `log=<8 hex digits>`
/// (the log a client compiled in, when a server serves a config from two
/// logs during a key rotation: `counters-spec/config-log.md` §13), if it
/// names one.
pub fn parse_proof_log(query: &str) -> Option<u32> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("log="))
        .filter(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// Reads the sizes of a proof request's query (`old=5&old=9`, without the
/// `?`); other parameters are ignored. `None` if an `old` value is not a
/// decimal number or there are more than [`MAX_SECTIONS`].
pub fn parse_proof_query(query: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(v) = pair.strip_prefix("old=") {
            out.push(parse_decimal(v)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    (out.len() <= MAX_SECTIONS).then_some(out)
}
