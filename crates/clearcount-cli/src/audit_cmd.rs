//! `clearcount config audit URL|DIR`: anyone's check of a whole config log
//! (`counters-spec/config-log.md` §10), over HTTP from the log's URL or
//! from a log directory.
//!
//! Fetches `log.vkey`, `policy` (if any) and `checkpoint`, whose log
//! signature is verified before anything else is read; then the entries it
//! covers, `entries/0` … `entries/<size>` (one more, to see any entry beyond
//! it), the checkpoint history (`checkpoints`, the list of sizes; a static
//! file server that cannot answer it is probed at `checkpoints/1` …
//! `checkpoints/<size>`); adds the checkpoints given with `--checkpoint`;
//! then recomputes everything with `clearcount_protocol::tlog::audit`
//! (which reads entries as configs only once signed roots cover them) and
//! prints the history. Any failure is one line and a non-zero exit.
//!
//! Bounded for a hostile log: at most [`MAX_ENTRIES`] entries of at most
//! [`MAX_ENTRY_BYTES`] each and [`MAX_TOTAL_BYTES`] together, checkpoints
//! of at most [`MAX_CHECKPOINT_BYTES`] each and [`MAX_TOTAL_BYTES`]
//! together, policies and keys of at most [`MAX_CHECKPOINT_BYTES`]; every
//! answer is read only up to its limit.

use crate::http;
use crate::log_cmd::read_vkey;
use clearcount_protocol::tlog::audit::{
    AuditReport, MAX_ENTRIES, MAX_ENTRY_BYTES, MAX_TOTAL_BYTES, audit, check_entry_size,
};
use clearcount_protocol::tlog::base64_encode;
use clearcount_protocol::tlog::checkpoint::SignedCheckpoint;
use clearcount_protocol::tlog::log::LogDir;
use clearcount_protocol::tlog::note::VerifierKey;
use clearcount_protocol::tlog::policy::Policy;
use std::path::PathBuf;

/// Largest checkpoint, key or policy file read (a checkpoint with 100
/// signature lines is under 16 KiB).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 10;

/// Arguments of `config audit`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AuditArgs {
    /// The log: its URL (serving log.vkey, checkpoint, checkpoints,
    /// checkpoints/N, entries/I; the collection server's
    /// `/log`) or a log directory such as `config/log`.
    #[arg(value_name = "URL|DIR")]
    source: String,
    /// The trust policy toolchains compile in: its log key must be the
    /// log's, its witnesses' cosignatures must verify, and the latest
    /// checkpoint must meet its quorum. Without it, the policy the log
    /// publishes (if any) names the witnesses shown, without a quorum.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The log key a toolchain compiled in (file or key): the log's
    /// log.vkey must be this key.
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// A signed checkpoint seen elsewhere (kept by a client, held by a
    /// witness, found in a bug report): it must be one of this log's
    /// history. Repeatable.
    #[arg(long, value_name = "FILE")]
    checkpoint: Vec<PathBuf>,
}

/// Where the log's files come from.
enum Source {
    Dir(PathBuf),
    Http { agent: ureq::Agent, base: String },
}

impl Source {
    fn new(s: &str) -> Result<Source, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Source::Http {
                agent: http::agent(),
                base: s.trim_end_matches('/').to_string(),
            });
        }
        let p = PathBuf::from(s);
        if !p.is_dir() {
            return Err(format!("{s} is neither an http(s) URL nor a log directory"));
        }
        Ok(Source::Dir(p))
    }

    /// Where `rel` is, for messages.
    fn name(&self, rel: &str) -> String {
        match self {
            Source::Dir(d) => d.join(rel).display().to_string(),
            Source::Http { base, .. } => format!("{base}/{rel}"),
        }
    }

    /// The file `rel` of the log, at most `limit` bytes of it (a larger
    /// one is refused); `None` if it does not exist.
    fn get(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        match self {
            Source::Dir(d) => {
                use std::io::Read;
                let p = d.join(rel);
                let f = match std::fs::File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
                };
                let mut b = Vec::new();
                f.take(limit + 1)
                    .read_to_end(&mut b)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                if b.len() as u64 > limit {
                    return Err(http::too_large(&p.display().to_string(), limit));
                }
                Ok(Some(b))
            }
            Source::Http { agent, base } => http::get(agent, &format!("{base}/{rel}"), limit),
        }
    }

    /// A small text file of the log (a key, a policy, a checkpoint).
    fn get_text(&self, rel: &str) -> Result<Option<String>, String> {
        match self.get(rel, MAX_CHECKPOINT_BYTES)? {
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| format!("{} is not UTF-8 text", self.name(rel))),
            None => Ok(None),
        }
    }

    /// In a directory: the decimal names in `sub`, sorted (temporary files
    /// of an interrupted write ignored; anything else is an error).
    fn list(&self, sub: &str) -> Result<Option<Vec<u64>>, String> {
        let Source::Dir(d) = self else {
            return Ok(None);
        };
        let dir = d.join(sub);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                continue;
            }
            match decimal(&name) {
                Some(n) => out.push(n),
                None => {
                    return Err(format!(
                        "{} is not named by a number: not part of a log",
                        dir.join(&name).display()
                    ));
                }
            }
        }
        out.sort_unstable();
        Ok(Some(out))
    }
}

/// A decimal without leading zeros.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The entries a checkpoint of `size` covers, and the one after it if it
/// exists (the audit then says it is in no checkpoint), within the audit's
/// limits.
fn fetch_entries(src: &Source, size: u64) -> Result<Vec<Vec<u8>>, String> {
    if size > MAX_ENTRIES {
        return Err(format!(
            "{} covers {size} entries, more than the {MAX_ENTRIES} an audit reads: not a config log",
            src.name(LogDir::CHECKPOINT)
        ));
    }
    if let Some(names) = src.list(LogDir::ENTRIES)? {
        for (i, &n) in names.iter().enumerate() {
            if n != i as u64 {
                return Err(format!(
                    "{} is missing but {} exists: entries were removed",
                    src.name(&format!("entries/{i}")),
                    src.name(&format!("entries/{n}"))
                ));
            }
        }
    }
    let mut entries = Vec::new();
    let mut total = 0usize;
    for i in 0..=size {
        let rel = format!("{}/{i}", LogDir::ENTRIES);
        match src.get(&rel, MAX_ENTRY_BYTES as u64)? {
            Some(b) => {
                check_entry_size(i, b.len(), total).map_err(|e| e.to_string())?;
                total += b.len();
                entries.push(b);
            }
            None => break,
        }
    }
    Ok(entries)
}

/// The sizes of the published checkpoint history (at most one per size up
/// to `top`, the latest checkpoint's).
fn history_sizes(src: &Source, top: u64) -> Result<Vec<u64>, String> {
    let too_many = |n: usize| {
        format!(
            "the log lists {n} checkpoints, more than one per size up to its latest ({top}): not a config log"
        )
    };
    if let Some(sizes) = src.list(LogDir::CHECKPOINTS)? {
        if sizes.len() as u64 > top {
            return Err(too_many(sizes.len()));
        }
        return Ok(sizes);
    }
    // The server's list of sizes, one decimal a line.
    // (Generous enough for a web server's directory listing, which is then
    // not a list of sizes.)
    if let Some(b) = src.get(LogDir::CHECKPOINTS, (64 << 10) + 256 * (top + 1))? {
        let text = String::from_utf8_lossy(&b);
        let sizes: Option<Vec<u64>> = text.lines().map(decimal).collect();
        if let Some(mut sizes) = sizes.filter(|s| !s.is_empty()) {
            sizes.sort_unstable();
            sizes.dedup();
            if sizes.len() as u64 > top {
                return Err(too_many(sizes.len()));
            }
            return Ok(sizes);
        }
    }
    // A static file server: probe every size up to the latest.
    let mut sizes = Vec::new();
    for s in 1..=top {
        if src
            .get(
                &format!("{}/{s}", LogDir::CHECKPOINTS),
                MAX_CHECKPOINT_BYTES,
            )?
            .is_some()
        {
            sizes.push(s);
        }
    }
    Ok(sizes)
}

/// A checkpoint to audit, with where it came from.
struct Named {
    name: String,
    text: String,
    signed: SignedCheckpoint,
}

/// Parses a checkpoint and checks its signatures against the log key and
/// the policy's witnesses (no quorum), so a failure names the file.
fn named(name: String, text: String, keys: &Policy) -> Result<Named, String> {
    let signed = SignedCheckpoint::parse(&text).map_err(|e| format!("{name} is malformed: {e}"))?;
    keys.verify(&signed, 0, None)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(Named { name, text, signed })
}

fn time(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the audit.
pub(crate) fn run(args: AuditArgs) -> Result<(), String> {
    let src = Source::new(&args.source)?;
    let fail = |m: String| format!("audit of {} failed: {m}", args.source);

    // The log's key, checked against the one given.
    let vkey_text = src.get_text(LogDir::VKEY)?.ok_or_else(|| {
        fail(format!(
            "{} does not exist: this is not a config log",
            src.name(LogDir::VKEY)
        ))
    })?;
    let vkey = VerifierKey::parse(&vkey_text)
        .map_err(|e| fail(format!("{}: {e}", src.name(LogDir::VKEY))))?;
    if let Some(k) = &args.log_key {
        let expected = read_vkey(k)?;
        if expected != vkey {
            return Err(fail(format!(
                "the log's key is {vkey}, not the expected {expected}"
            )));
        }
    }
    // The policy: given, or published by the log (for names only).
    let published = match src.get_text(LogDir::POLICY)? {
        Some(t) => Some(
            Policy::parse(&t).map_err(|e| fail(format!("{}: {e}", src.name(LogDir::POLICY))))?,
        ),
        None => None,
    };
    let given = match &args.policy {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Some(Policy::parse(&t).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    for (p, what) in [
        (&given, "the policy given".to_string()),
        (&published, src.name(LogDir::POLICY)),
    ] {
        if let Some(p) = p
            && p.log() != &vkey
        {
            return Err(fail(format!(
                "the log's key is {vkey}, but {what} names the log key {}",
                p.log()
            )));
        }
    }
    let (policy, policy_note) = match (&given, &published) {
        (Some(p), _) => (
            p.clone(),
            format!(
                "{} (the latest checkpoint needs {})",
                args.policy
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                p.describe_quorum()
            ),
        ),
        (None, Some(p)) => (
            p.clone(),
            "the one the log publishes (its witnesses are shown; no quorum is required)".into(),
        ),
        (None, None) => (
            Policy::new(vkey.clone(), Vec::new(), 0).map_err(|e| e.to_string())?,
            "none (the log key only; cosignatures are not checked)".into(),
        ),
    };
    let keys = Policy::new(
        vkey.clone(),
        policy.witnesses().iter().map(|w| w.key.clone()).collect(),
        0,
    )
    .map_err(|e| e.to_string())?;

    // The latest checkpoint first: its log signature is verified before
    // any entry is read, and its size bounds what is read.
    let latest = match src.get_text(LogDir::CHECKPOINT).map_err(&fail)? {
        Some(t) => Some(named(src.name(LogDir::CHECKPOINT), t, &keys).map_err(&fail)?),
        None => None,
    };
    let top = latest.as_ref().map_or(0, |l| l.signed.checkpoint.size);
    let entries = fetch_entries(&src, top).map_err(&fail)?;
    let sizes = history_sizes(&src, top).map_err(&fail)?;
    let mut checkpoints = Vec::new();
    let mut held = 0u64;
    for &s in &sizes {
        let rel = format!("{}/{s}", LogDir::CHECKPOINTS);
        let text = src
            .get_text(&rel)
            .map_err(&fail)?
            .ok_or_else(|| fail(format!("{} is listed but missing", src.name(&rel))))?;
        held += text.len() as u64;
        if held > MAX_TOTAL_BYTES as u64 {
            return Err(fail(format!(
                "the checkpoints up to {} hold more than {} MiB: not a config log",
                src.name(&rel),
                MAX_TOTAL_BYTES >> 20
            )));
        }
        let n = named(src.name(&rel), text, &keys).map_err(&fail)?;
        if n.signed.checkpoint.size != s {
            return Err(fail(format!(
                "{} holds a checkpoint of size {}",
                n.name, n.signed.checkpoint.size
            )));
        }
        checkpoints.push(n);
    }
    match (&latest, checkpoints.last()) {
        (None, None) if entries.is_empty() => {
            println!("log {vkey} ({}): empty, no checkpoint yet", args.source);
            return Ok(());
        }
        (None, _) => {
            return Err(fail(format!(
                "{} does not exist",
                src.name(LogDir::CHECKPOINT)
            )));
        }
        (Some(l), last) => {
            let top = last.map_or(0, |c| c.signed.checkpoint.size);
            if l.signed.checkpoint.size != top {
                return Err(fail(format!(
                    "{} is of size {}, but the largest checkpoint of the history is of size {top}",
                    l.name, l.signed.checkpoint.size
                )));
            }
        }
    }
    let mut extra = Vec::new();
    for p in &args.checkpoint {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        extra.push(named(p.display().to_string(), text, &keys).map_err(&fail)?);
    }

    // The audit proper: every hash recomputed, every checkpoint a prefix
    // of the one history the entries make.
    let texts: Vec<&str> = checkpoints
        .iter()
        .chain(latest.iter())
        .chain(extra.iter())
        .map(|n| n.text.as_str())
        .collect();
    let report = audit(&policy, &entries, &texts).map_err(|e| fail(e.to_string()))?;
    let latest = latest.expect("checked above");
    let quorum = policy.verify(&latest.signed, 0, None);
    if given.is_some()
        && let Err(e) = &quorum
    {
        return Err(fail(format!(
            "the latest checkpoint (size {}) does not satisfy the policy: {e}",
            latest.signed.checkpoint.size
        )));
    }
    print_report(&args.source, &vkey, &policy_note, &report);
    if let Err(e) = quorum {
        println!("note: clients compiled with the log's policy refuse its latest checkpoint: {e}");
    }
    let current = report.history.last().expect("a checkpoint covers entries");
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    println!(
        "audit ok: {}, {}{} in one consistent history; the current config is entry {} (version {})",
        plural(report.history.len(), "entry", "entries"),
        plural(checkpoints.len(), "checkpoint", "checkpoints"),
        if extra.is_empty() {
            String::new()
        } else {
            format!(" and {} given", extra.len())
        },
        current.index,
        current.version
    );
    Ok(())
}

fn print_report(source: &str, vkey: &VerifierKey, policy: &str, report: &AuditReport) {
    println!("log     {vkey}");
    println!("from    {source}");
    println!("policy  {policy}");
    println!();
    println!(
        "{:>5}  {:>7}  {:<20}  {:<64}  leaf hash",
        "index", "version", "witnessed", "sha256"
    );
    for h in &report.history {
        println!(
            "{:>5}  {:>7}  {:<20}  {}  {}",
            h.index,
            h.version,
            h.witnessed.map_or_else(|| "-".to_string(), time),
            hex(&h.sha256),
            base64_encode(&h.leaf_hash)
        );
    }
    println!();
    println!("{:>5}  {:<44}  cosigned by", "size", "root");
    for c in &report.checkpoints {
        let by: Vec<String> = c
            .cosigners
            .iter()
            .map(|(n, t)| format!("{n} at {}", time(*t)))
            .collect();
        println!(
            "{:>5}  {}  {}",
            c.size,
            base64_encode(&c.root),
            if by.is_empty() {
                "-".to_string()
            } else {
                by.join(", ")
            }
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimals() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("17"), Some(17));
        for bad in ["", "01", "+1", "1.tmp", "x"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }
}
