//! Which checkpoints to trust: a C2SP transparency log policy
//! (`c2sp.org/tlog-policy`) with exactly one log, the config log.
//!
//! ```text
//! # clearcount's config log and its witnesses
//! log config.clearcount.example/log+1b8a0f22+AQ...
//! witness w1 witness1.example/w+4c5e7a10+BA...
//! witness w2 witness2.example/w+9e00d1c2+BA...
//! witness w3 witness3.example/w+0a1b2c3d+BA...
//! group two-of-three 2 w1 w2 w3
//! quorum two-of-three
//! ```
//!
//! A checkpoint is trusted when its origin is the log key's name, the log
//! signed it, and the witnesses that cosigned it meet the quorum (`quorum
//! none`: no cosignature needed). A toolchain compiles its policy in.

use super::FormatError;
use super::checkpoint::{Checkpoint, SignedCheckpoint};
use super::client::Refusal;
use super::note::{KeyType, VerifierKey};

/// A witness of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The name the policy gives it.
    pub name: String,
    /// Its `cosignature/v1` verifier key.
    pub key: VerifierKey,
    /// Its submission URL, if the policy gives one.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A trust policy: the log's key, the witnesses, and the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    log: VerifierKey,
    log_url: Option<String>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
}

/// A checkpoint whose signatures satisfied a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The policy's witnesses whose cosignature verified: (name in the
    /// policy, cosignature time).
    pub cosigners: Vec<(String, u64)>,
}

impl Policy {
    /// A policy with this log key and `k` of these witnesses (named by
    /// their key names); `k` = 0 needs no cosignature.
    pub fn new(
        log: VerifierKey,
        witnesses: Vec<VerifierKey>,
        k: usize,
    ) -> Result<Policy, FormatError> {
        let mut text = format!("log {log}\n");
        for w in &witnesses {
            text.push_str(&format!("witness {} {w}\n", w.name()));
        }
        if k == 0 {
            text.push_str("quorum none\n");
        } else {
            let names: Vec<&str> = witnesses.iter().map(|w| w.name()).collect();
            text.push_str(&format!(
                "group quorum-group {k} {}\nquorum quorum-group\n",
                names.join(" ")
            ));
        }
        Policy::parse(&text)
    }

    /// Parses a policy file (C2SP tlog-policy): `log`, `witness`, `group`
    /// and `quorum` lines, `#` comments and blank lines. clearcount
    /// requires exactly one `log` line, an Ed25519 (type 0x01) log key and
    /// `cosignature/v1` (type 0x04) witness keys.
    pub fn parse(text: &str) -> Result<Policy, FormatError> {
        let mut log: Option<(VerifierKey, Option<String>)> = None;
        let mut witnesses: Vec<PolicyWitness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut quorum: Option<Option<Member>> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let at = |m: String| FormatError::new(format!("policy line {}: {m}", i + 1));
            if raw.bytes().any(|b| b < 0x20 && b != b'\t') {
                return Err(at("holds a control character".into()));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            if words.is_empty() || words[0].starts_with('#') {
                continue;
            }
            let name_taken = |n: &str| {
                n == "none"
                    || witnesses.iter().any(|w| w.name == n)
                    || groups.iter().any(|g| g.name == n)
            };
            let lookup = |n: &str| -> Option<Member> {
                witnesses
                    .iter()
                    .position(|w| w.name == n)
                    .map(Member::Witness)
                    .or_else(|| groups.iter().position(|g| g.name == n).map(Member::Group))
            };
            match words[0] {
                "log" => {
                    if !(2..=3).contains(&words.len()) {
                        return Err(at("expected: log <vkey> [<url>]".into()));
                    }
                    if log.is_some() {
                        return Err(at("a clearcount policy names exactly one log".into()));
                    }
                    let key = VerifierKey::parse(words[1]).map_err(|e| at(e.to_string()))?;
                    if key.key_type() != KeyType::Ed25519 {
                        return Err(at("the log key must be an Ed25519 (type 0x01) key".into()));
                    }
                    log = Some((key, words.get(2).map(|s| s.to_string())));
                }
                "witness" => {
                    if !(3..=4).contains(&words.len()) {
                        return Err(at("expected: witness <name> <vkey> [<url>]".into()));
                    }
                    if name_taken(words[1]) {
                        return Err(at(format!("name {} is already defined", words[1])));
                    }
                    let key = VerifierKey::parse(words[2]).map_err(|e| at(e.to_string()))?;
                    if key.key_type() != KeyType::CosignatureV1 {
                        return Err(at(
                            "a witness key must be a cosignature/v1 (type 0x04) key".into()
                        ));
                    }
                    if witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(at("this witness key is listed twice".into()));
                    }
                    witnesses.push(PolicyWitness {
                        name: words[1].to_string(),
                        key,
                        url: words.get(3).map(|s| s.to_string()),
                    });
                }
                "group" => {
                    if words.len() < 4 {
                        return Err(at("expected: group <name> <all|any|k> <name>...".into()));
                    }
                    if name_taken(words[1]) {
                        return Err(at(format!("name {} is already defined", words[1])));
                    }
                    let mut members = Vec::new();
                    for n in &words[3..] {
                        let m = lookup(n).ok_or_else(|| at(format!("{n} is not defined above")))?;
                        if members.contains(&m) {
                            return Err(at(format!("{n} is listed twice")));
                        }
                        members.push(m);
                    }
                    let threshold = match words[2] {
                        "all" => members.len(),
                        "any" => 1,
                        k => super::checkpoint::parse_decimal(k)
                            .filter(|&k| k >= 1 && k as usize <= members.len())
                            .ok_or_else(|| {
                                at(format!(
                                    "threshold {k} is not all, any or 1..={}",
                                    members.len()
                                ))
                            })? as usize,
                    };
                    groups.push(Group {
                        name: words[1].to_string(),
                        threshold,
                        members,
                    });
                }
                "quorum" => {
                    if words.len() != 2 {
                        return Err(at("expected: quorum <name>".into()));
                    }
                    if quorum.is_some() {
                        return Err(at("a policy has exactly one quorum line".into()));
                    }
                    quorum = Some(if words[1] == "none" {
                        None
                    } else {
                        Some(
                            lookup(words[1])
                                .ok_or_else(|| at(format!("{} is not defined above", words[1])))?,
                        )
                    });
                }
                other => return Err(at(format!("unknown keyword {other:?}"))),
            }
        }
        let (log, log_url) = log.ok_or_else(|| FormatError::new("the policy names no log"))?;
        let quorum = quorum.ok_or_else(|| FormatError::new("the policy has no quorum line"))?;
        Ok(Policy {
            log,
            log_url,
            witnesses,
            groups,
            quorum,
        })
    }

    /// The policy file text (parses back to the same policy).
    pub fn to_text(&self) -> String {
        let mut out = format!("log {}", self.log);
        if let Some(u) = &self.log_url {
            out.push_str(&format!(" {u}"));
        }
        out.push('\n');
        for w in &self.witnesses {
            out.push_str(&format!("witness {} {}", w.name, w.key));
            if let Some(u) = &w.url {
                out.push_str(&format!(" {u}"));
            }
            out.push('\n');
        }
        for g in &self.groups {
            let names: Vec<&str> = g.members.iter().map(|&m| self.member_name(m)).collect();
            out.push_str(&format!(
                "group {} {} {}\n",
                g.name,
                g.threshold,
                names.join(" ")
            ));
        }
        out.push_str(&format!(
            "quorum {}\n",
            self.quorum.map_or("none", |m| self.member_name(m))
        ));
        out
    }

    fn member_name(&self, m: Member) -> &str {
        match m {
            Member::Witness(i) => &self.witnesses[i].name,
            Member::Group(i) => &self.groups[i].name,
        }
    }

    /// The log's verifier key; its name is the log's origin.
    pub fn log(&self) -> &VerifierKey {
        &self.log
    }

    /// The log's URL, if the policy gives one.
    pub fn log_url(&self) -> Option<&str> {
        self.log_url.as_deref()
    }

    /// The witnesses.
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// True when cosignatures from the witnesses marked `true` (indexed as
    /// [`witnesses`](Policy::witnesses)) meet the quorum.
    pub fn quorum_met(&self, cosigned: &[bool]) -> bool {
        self.quorum.is_none_or(|m| self.witnessed(m, cosigned))
    }

    fn witnessed(&self, m: Member, cosigned: &[bool]) -> bool {
        match m {
            Member::Witness(i) => cosigned.get(i).copied().unwrap_or(false),
            Member::Group(g) => {
                let g = &self.groups[g];
                g.members
                    .iter()
                    .filter(|&&m| self.witnessed(m, cosigned))
                    .count()
                    >= g.threshold
            }
        }
    }

    /// The quorum in words, for messages.
    pub fn describe_quorum(&self) -> String {
        match self.quorum {
            None => "no cosignature".into(),
            Some(Member::Witness(i)) => {
                format!("a cosignature from witness {}", self.witnesses[i].name)
            }
            Some(Member::Group(g)) => self.describe_group(g),
        }
    }

    fn describe_group(&self, g: usize) -> String {
        let g = &self.groups[g];
        let names: Vec<String> = g
            .members
            .iter()
            .map(|&m| match m {
                Member::Witness(i) => self.witnesses[i].name.clone(),
                Member::Group(j) => format!("({})", self.describe_group(j)),
            })
            .collect();
        format!("{} of {}", g.threshold, names.join(", "))
    }

    /// Verifies a signed checkpoint: its origin is the log key's name, the
    /// log's signature verifies, no signature of a known key fails, and
    /// the cosigning witnesses meet the quorum. Cosignatures older than
    /// `max_age` seconds before `now` do not count (when `max_age` is
    /// given): a replayed old checkpoint then lacks fresh cosignatures.
    pub fn verify(
        &self,
        signed: &SignedCheckpoint,
        now: u64,
        max_age: Option<u64>,
    ) -> Result<Trusted, Refusal> {
        let c = &signed.checkpoint;
        if c.origin != self.log.name() {
            return Err(Refusal::WrongOrigin {
                origin: c.origin.clone(),
                expected: self.log.name().to_string(),
            });
        }
        let mut keys: Vec<&VerifierKey> = vec![&self.log];
        keys.extend(self.witnesses.iter().map(|w| &w.key));
        let verified = signed
            .note
            .verify(&keys)
            .map_err(|e| Refusal::BadSignature { key: e.name })?;
        if !verified.iter().any(|v| v.key == 0) {
            return Err(Refusal::NotSignedByLog {
                log: self.log.name().to_string(),
            });
        }
        let mut cosigned = vec![false; self.witnesses.len()];
        let mut fresh = vec![false; self.witnesses.len()];
        let mut cosigners = Vec::new();
        for v in verified.iter().filter(|v| v.key > 0) {
            let w = v.key - 1;
            cosigned[w] = true;
            fresh[w] = max_age.is_none_or(|age| now.saturating_sub(v.timestamp) <= age);
            cosigners.push((self.witnesses[w].name.clone(), v.timestamp));
        }
        if !self.quorum_met(&cosigned) {
            return Err(Refusal::TooFewCosignatures {
                cosigners: cosigners.iter().map(|c| c.0.clone()).collect(),
                quorum: self.describe_quorum(),
            });
        }
        if !self.quorum_met(&fresh) {
            return Err(Refusal::Stale {
                size: c.size,
                max_age: max_age.unwrap_or(0),
            });
        }
        Ok(Trusted {
            checkpoint: c.clone(),
            cosigners,
        })
    }
}
