//! The config log, served (`counters-spec/config-log.md` §5–§7).
//!
//! The server serves only a config it can verify: the config must be the
//! last entry of its log, whose latest checkpoint is signed by the log's key
//! (`log.vkey`) and meets the log's published policy, if any (its witness
//! quorum). [`ServedLog::verify`] checks that, audits the whole history
//! (every entry, every published checkpoint: one history, as `clearcount
//! config audit` checks it), and then computes everything the log's
//! endpoints answer, once:
//!
//! | request | answer, from memory |
//! |---|---|
//! | `GET /config.toml.proof` | the tlog-proof of the config (its inclusion proof and the signed checkpoint) |
//! | `GET /config.toml.proof?old=N&old=M` | one consistency section per size, then the tlog-proof |
//! | `GET /config.toml.proof?log=<key ID>&old=N` | the same from the log of that key, when the server serves the config from two logs (a key rotation: `--also-log`) |
//! | `GET /config.toml.tlog-proof` | the tlog-proof alone |
//! | `GET /log/log.vkey`, `/log/policy`, `/log/checkpoint` | the log directory's files |
//! | `GET /log/checkpoints` | the sizes of the published checkpoints, one a line |
//! | `GET /log/checkpoints/<size>`, `/log/entries/<index>` | the log directory's files |
//!
//! The consistency section from each published checkpoint's size is built
//! when the log is loaded, so an answer is a concatenation of strings built
//! before: no request computes a hash. A size the log never published a
//! checkpoint of (below the current size) is refused (404) rather than
//! computed: clients ask from sizes they were served. A size above the
//! current one gets an empty section, as the spec says (the client then
//! refuses: a smaller tree). At most [`MAX_SECTIONS`] sizes.
//!
//! The log is read again (off the runtime) when the config, its signature
//! or the log's `checkpoint`, `log.vkey` or `policy` change; a new state is
//! used only if it verifies and extends the one served.

use super::AppState;
use super::pages::{plain, raw};
use super::store::Store;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use clearcount_protocol::tlog::audit::{self, AuditedCheckpoint, HistoryEntry};
use clearcount_protocol::tlog::bundle::{MAX_SECTIONS, parse_proof_log, parse_proof_query};
use clearcount_protocol::tlog::log::{Log, LogDir};
use clearcount_protocol::tlog::{Policy, Refusal, SignedCheckpoint, VerifierKey, base64_encode};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The longest query a proof request may have.
const MAX_QUERY: usize = 512;

/// The content type of every text of the log.
const TEXT: &str = "text/plain; charset=utf-8";

/// Where the store keeps its copy of the log (published with the store, so
/// a plain web server serves the auditor's endpoints from it).
pub(crate) const STORE_PREFIX: &str = "config/log/";

/// A log's files, as read from a log directory or from the store's copy.
pub(crate) struct LogFiles {
    /// `log.vkey`, as it is.
    vkey: String,
    /// `policy`, if there is one.
    policy: Option<String>,
    /// `entries/0`, `entries/1`, ….
    entries: Vec<Vec<u8>>,
    /// `checkpoint`, if there is one.
    checkpoint: Option<String>,
    /// `checkpoints/<size>`, by size.
    history: BTreeMap<u64, String>,
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8 text"))
}

impl LogFiles {
    /// Reads the log directory `dir` (`config publish` writes it).
    pub(crate) fn read_dir(dir: &Path) -> Result<LogFiles, String> {
        let log = LogDir::open(dir).map_err(|e| {
            format!("{e}: publish the config with `clearcount config publish`, or give --log DIR")
        })?;
        let read = |rel: &str| {
            let p = dir.join(rel);
            std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let vkey = utf8(
            read(LogDir::VKEY)?,
            &dir.join(LogDir::VKEY).display().to_string(),
        )?;
        let policy = log.policy_text().map_err(|e| e.to_string())?;
        let entries = log.load().map_err(|e| e.to_string())?.entries().to_vec();
        let checkpoint = match dir.join(LogDir::CHECKPOINT).is_file() {
            true => Some(utf8(
                read(LogDir::CHECKPOINT)?,
                &dir.join(LogDir::CHECKPOINT).display().to_string(),
            )?),
            false => None,
        };
        let mut history = BTreeMap::new();
        for size in log.checkpoint_sizes().map_err(|e| e.to_string())? {
            let rel = format!("{}/{size}", LogDir::CHECKPOINTS);
            history.insert(
                size,
                utf8(read(&rel)?, &dir.join(&rel).display().to_string())?,
            );
        }
        Ok(LogFiles {
            vkey,
            policy,
            entries,
            checkpoint,
            history,
        })
    }

    /// Reads the store's copy of a log (see [`record`]); `None` if the
    /// store holds none.
    pub(crate) async fn read_store(store: &dyn Store) -> Result<Option<LogFiles>, String> {
        let get = |rel: String| async move {
            let key = format!("{STORE_PREFIX}{rel}");
            store
                .get(&key)
                .await
                .map_err(|e| format!("cannot read {key}: {e}"))
        };
        let list = |rel: &'static str| async move {
            let prefix = format!("{STORE_PREFIX}{rel}/");
            let listing = store
                .list(&prefix)
                .await
                .map_err(|e| format!("cannot list {prefix}: {e}"))?;
            let mut names: Vec<u64> = listing
                .objects
                .iter()
                .filter_map(|o| decimal(o.name()))
                .collect();
            names.sort_unstable();
            Ok::<_, String>(names)
        };
        let Some(vkey) = get(LogDir::VKEY.into()).await? else {
            return Ok(None);
        };
        let text = |b: Vec<u8>, rel: &str| utf8(b, &format!("{STORE_PREFIX}{rel}"));
        let vkey = text(vkey, LogDir::VKEY)?;
        let policy = match get(LogDir::POLICY.into()).await? {
            Some(b) => Some(text(b, LogDir::POLICY)?),
            None => None,
        };
        let mut entries = Vec::new();
        for (n, i) in list(LogDir::ENTRIES).await?.into_iter().enumerate() {
            if i != n as u64 {
                return Err(format!("{STORE_PREFIX}entries/{n} is missing"));
            }
            let rel = format!("{}/{i}", LogDir::ENTRIES);
            entries.push(
                get(rel.clone())
                    .await?
                    .ok_or_else(|| format!("{STORE_PREFIX}{rel} vanished"))?,
            );
        }
        let checkpoint = match get(LogDir::CHECKPOINT.into()).await? {
            Some(b) => Some(text(b, LogDir::CHECKPOINT)?),
            None => None,
        };
        let mut history = BTreeMap::new();
        for size in list(LogDir::CHECKPOINTS).await? {
            let rel = format!("{}/{size}", LogDir::CHECKPOINTS);
            if let Some(b) = get(rel.clone()).await? {
                history.insert(size, text(b, &rel)?);
            }
        }
        Ok(Some(LogFiles {
            vkey,
            policy,
            entries,
            checkpoint,
            history,
        }))
    }
}

/// A decimal without a sign or leading zeros.
pub(crate) fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Who made a signature line of the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signer {
    /// The log key.
    Log,
    /// A witness of the policy, whose cosignature verified: its name in
    /// the policy, and when it cosigned (POSIX seconds).
    Witness(String, u64),
    /// A key the policy does not know: not checked, ignored by clients.
    Unknown,
}

/// One signature line of the latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureLine {
    /// The key's name.
    pub(crate) name: String,
    /// The key's ID.
    pub(crate) key_id: u32,
    /// Who it is.
    pub(crate) signer: Signer,
}

/// A verified config log, and every answer of its endpoints.
#[derive(Debug)]
pub(crate) struct ServedLog {
    /// The log's key (its name is the origin).
    pub(crate) vkey: VerifierKey,
    vkey_text: Bytes,
    policy_text: Option<Bytes>,
    /// The policy checkpoints are verified with: the log's, or the log key
    /// alone (no witness) when it publishes none.
    pub(crate) policy: Policy,
    /// True when the log publishes its policy.
    pub(crate) has_policy: bool,
    entries: Vec<Bytes>,
    /// Every entry: index, version, hashes, when first witnessed.
    pub(crate) history: Vec<HistoryEntry>,
    /// Every published checkpoint, with its cosigners.
    pub(crate) checkpoints: Vec<AuditedCheckpoint>,
    /// `checkpoints/<size>`, by size.
    checkpoint_files: BTreeMap<u64, Bytes>,
    /// The sizes, one decimal a line.
    sizes: Bytes,
    /// The latest signed checkpoint, as served.
    pub(crate) checkpoint: SignedCheckpoint,
    /// Its text (the `checkpoint` file).
    pub(crate) checkpoint_text: Bytes,
    /// Its signature lines, and who made them.
    pub(crate) signatures: Vec<SignatureLine>,
    /// The tlog-proof of the config: what `/config.toml.proof` answers
    /// without `old`.
    pub(crate) tlog_proof: Bytes,
    /// The consistency section from each published size.
    sections: BTreeMap<u64, String>,
}

/// Why a proof request is refused: a status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadRequest {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

impl ServedLog {
    /// Verifies a log for serving `config` (the exact bytes served), and
    /// builds its answers. `source` names the log in messages (its
    /// directory). Refuses, in one line: an unreadable key or policy, a
    /// policy of another log key, an invalid entry, no checkpoint, a
    /// checkpoint whose signature or quorum fails, one that does not cover
    /// every entry or whose root is not the entries', a config that is not
    /// the last entry, and a history that does not pass an audit.
    pub(crate) fn verify(
        files: LogFiles,
        config: &[u8],
        source: &str,
    ) -> Result<ServedLog, String> {
        let vkey = VerifierKey::parse(&files.vkey)
            .map_err(|e| format!("{source}/{}: {e}", LogDir::VKEY))?;
        let policy = match &files.policy {
            Some(text) => {
                let p =
                    Policy::parse(text).map_err(|e| format!("{source}/{}: {e}", LogDir::POLICY))?;
                if p.log() != &vkey {
                    return Err(format!(
                        "{source}/{}: its log key is {}, not the log's {vkey}",
                        LogDir::POLICY,
                        p.log()
                    ));
                }
                p
            }
            None => Policy::new(vkey.clone(), Vec::new(), 0).map_err(|e| e.to_string())?,
        };
        let log = Log::from_entries(vkey.name(), files.entries)
            .map_err(|e| format!("the config log {source}: {e}"))?;
        let n = log.size();
        if n == 0 {
            return Err(format!(
                "the config log {source} has no entry: publish the config with `clearcount config publish`"
            ));
        }
        let text = files
            .checkpoint
            .ok_or_else(|| format!("the config log {source} has no checkpoint"))?;
        let where_ = format!("{source}/{}", LogDir::CHECKPOINT);
        let signed =
            SignedCheckpoint::parse(&text).map_err(|e| format!("{where_} is malformed: {e}"))?;
        policy.verify(&signed, 0, None).map_err(|r| {
            let hint = match r {
                Refusal::TooFewCosignatures { .. } => {
                    " (ask the witnesses: `clearcount config cosign`)"
                }
                _ => "",
            };
            format!("{where_} is refused: {r}{hint}")
        })?;
        let c = &signed.checkpoint;
        if c.size != n {
            return Err(format!(
                "{where_} covers {} entries, but the log has {n}: a publish in progress, or a truncated log",
                c.size
            ));
        }
        if log.checkpoint().root != c.root {
            return Err(format!(
                "{where_} does not match the log's entries (another root hash): history was rewritten or the checkpoint was tampered with"
            ));
        }
        let last = &log.entries()[n as usize - 1];
        if last.as_slice() != config {
            let version = log.versions()[n as usize - 1];
            return Err(match log.entries().iter().position(|e| e == config) {
                Some(i) => format!(
                    "the config is entry {i} of the config log {source}, not its last entry ({}, version {version}): it is not the current config",
                    n - 1
                ),
                None => format!(
                    "the config is not in the config log {source} (its last entry is version {version}): publish it with `clearcount config publish`"
                ),
            });
        }
        // The history: the published checkpoints, and the latest (which
        // `config publish` also writes as checkpoints/<size>).
        let mut history = files.history;
        history.entry(n).or_insert_with(|| text.clone());
        let texts: Vec<&str> = history
            .values()
            .map(String::as_str)
            .chain([text.as_str()])
            .collect();
        let report = audit::audit(&policy, log.entries(), &texts)
            .map_err(|e| format!("the config log {source} does not pass its audit: {e}"))?;
        // Every answer, once.
        let tlog_proof = log
            .bundle(&signed, &[])
            .map_err(|e| format!("the config log {source}: {e}"))?
            .to_text();
        let mut sections = BTreeMap::new();
        for &size in history.keys().filter(|&&s| s > 0 && s <= n) {
            let proof = log
                .consistency_proof(size, n)
                .map_err(|e| format!("the config log {source}: {e}"))?;
            let mut s = format!("old {size}\n");
            for h in &proof {
                s.push_str(&base64_encode(h));
                s.push('\n');
            }
            s.push('\n');
            sections.insert(size, s);
        }
        let signatures = signed
            .note
            .signatures
            .iter()
            .map(|s| {
                let signer = if vkey.matches(s) {
                    Signer::Log
                } else if let Some(w) = policy.witnesses().iter().find(|w| w.key.matches(s)) {
                    // The policy verified every line of a known key.
                    Signer::Witness(w.name.clone(), s.timestamp().unwrap_or(0))
                } else {
                    Signer::Unknown
                };
                SignatureLine {
                    name: s.name.clone(),
                    key_id: s.key_id,
                    signer,
                }
            })
            .collect();
        let sizes: String = history.keys().map(|s| format!("{s}\n")).collect();
        Ok(ServedLog {
            vkey,
            vkey_text: Bytes::from(files.vkey),
            has_policy: files.policy.is_some(),
            policy_text: files.policy.map(Bytes::from),
            policy,
            entries: log.entries().iter().cloned().map(Bytes::from).collect(),
            history: report.history,
            checkpoints: report.checkpoints,
            checkpoint_files: history
                .into_iter()
                .map(|(s, t)| (s, Bytes::from(t)))
                .collect(),
            sizes: Bytes::from(sizes),
            checkpoint_text: Bytes::from(text),
            checkpoint: signed,
            signatures,
            tlog_proof: Bytes::from(tlog_proof),
            sections,
        })
    }

    /// The number of entries.
    pub(crate) fn size(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Entry `i`'s bytes.
    pub(crate) fn entry(&self, i: u64) -> Option<&Bytes> {
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The bundle for a proof request's query (`old=N&old=M`, without the
    /// `?`): the consistency sections of the sizes asked for, by increasing
    /// size, then the tlog-proof.
    pub(crate) fn bundle(&self, query: Option<&str>) -> Result<Bytes, BadRequest> {
        let q = query.unwrap_or("");
        let bad = |reason: String| BadRequest {
            status: StatusCode::BAD_REQUEST,
            reason,
        };
        if q.len() > MAX_QUERY {
            return Err(bad(format!("the query is longer than {MAX_QUERY} bytes")));
        }
        if q.split('&').filter(|p| p.starts_with("old=")).count() > MAX_SECTIONS {
            return Err(bad(format!(
                "at most {MAX_SECTIONS} old sizes may be asked for"
            )));
        }
        let olds = parse_proof_query(q)
            .ok_or_else(|| bad("an old size is not a decimal number (?old=N&old=M)".into()))?;
        let n = self.size();
        let mut out = String::new();
        for old in olds.into_iter().filter(|&s| s > 0) {
            if old > n {
                // No proof from a larger tree: the client refuses it.
                out.push_str(&format!("old {old}\n\n"));
                continue;
            }
            match self.sections.get(&old) {
                Some(s) => out.push_str(s),
                None => {
                    return Err(BadRequest {
                        status: StatusCode::NOT_FOUND,
                        reason: format!(
                            "the config log published no checkpoint of size {old} (its sizes are at /log/checkpoints)"
                        ),
                    });
                }
            }
        }
        if out.is_empty() {
            return Ok(self.tlog_proof.clone());
        }
        out.push_str(std::str::from_utf8(&self.tlog_proof).unwrap_or_default());
        Ok(Bytes::from(out))
    }

    /// The log's files, by path relative to the log directory, as a static
    /// server would serve them.
    pub(crate) fn files(&self) -> Vec<(String, Bytes)> {
        let mut out = vec![(LogDir::VKEY.to_string(), self.vkey_text.clone())];
        if let Some(p) = &self.policy_text {
            out.push((LogDir::POLICY.to_string(), p.clone()));
        }
        for (i, e) in self.entries.iter().enumerate() {
            out.push((format!("{}/{i}", LogDir::ENTRIES), e.clone()));
        }
        for (s, t) in &self.checkpoint_files {
            out.push((format!("{}/{s}", LogDir::CHECKPOINTS), t.clone()));
        }
        out.push((LogDir::CHECKPOINT.to_string(), self.checkpoint_text.clone()));
        out
    }

    /// Checks that this log extends `served` (the one served so far): the
    /// same key, and its entries start with all of `served`'s.
    pub(crate) fn extends(&self, served: &ServedLog) -> Result<(), String> {
        if self.vkey != served.vkey {
            return Err(format!(
                "the config log's key is now {}, not {}: another log",
                self.vkey, served.vkey
            ));
        }
        let old = served.entries.len();
        if self.entries.len() < old || self.entries[..old] != served.entries[..] {
            return Err(format!(
                "the config log does not extend the one served ({old} entries): history was rewritten"
            ));
        }
        Ok(())
    }

    /// True when this is the same log state as `other` (same checkpoint
    /// and history, cosignatures included).
    pub(crate) fn same_as(&self, other: &ServedLog) -> bool {
        self.checkpoint_text == other.checkpoint_text
            && self.checkpoint_files == other.checkpoint_files
            && self.entries.len() == other.entries.len()
            && self.policy_text == other.policy_text
            && self.vkey_text == other.vkey_text
    }

    /// The witnesses that cosigned the latest checkpoint, for messages:
    /// `cosigned by w1, w2` or `no witness cosignature`.
    pub(crate) fn cosigned(&self) -> String {
        let names: Vec<&str> = self
            .signatures
            .iter()
            .filter_map(|s| match &s.signer {
                Signer::Witness(n, _) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            "no witness cosignature".into()
        } else {
            format!("cosigned by {}", names.join(", "))
        }
    }
}

/// Copies the log into the store under [`STORE_PREFIX`] (what a static
/// server publishes), and the config's tlog-proof as
/// `config/current.toml.tlog-proof`. Entries and older checkpoints already
/// there (same key, same size) are not written again; objects of another
/// log state are removed.
pub(crate) async fn record(store: &dyn Store, log: &ServedLog) -> io::Result<()> {
    let vkey_key = format!("{STORE_PREFIX}{}", LogDir::VKEY);
    let same_log = store.get(&vkey_key).await?.as_deref() == Some(&log.vkey_text[..]);
    let mut existing: BTreeMap<String, u64> = BTreeMap::new();
    for sub in [LogDir::ENTRIES, LogDir::CHECKPOINTS] {
        for o in store.list(&format!("{STORE_PREFIX}{sub}/")).await?.objects {
            existing.insert(o.key.clone(), o.size);
        }
    }
    let latest = format!("{}/{}", LogDir::CHECKPOINTS, log.size());
    let mut wanted = std::collections::BTreeSet::new();
    // The checkpoint last: once it is there, what it covers is too.
    for (rel, bytes) in log.files() {
        let key = format!("{STORE_PREFIX}{rel}");
        wanted.insert(key.clone());
        let unchanged = same_log
            && rel != latest
            && (rel.starts_with(LogDir::ENTRIES) || rel.starts_with(LogDir::CHECKPOINTS))
            && existing.get(&key) == Some(&(bytes.len() as u64));
        if !unchanged {
            store.put(&key, bytes.to_vec()).await?;
        }
    }
    if log.policy_text.is_none() {
        store
            .delete(&format!("{STORE_PREFIX}{}", LogDir::POLICY))
            .await?;
    }
    for key in existing.keys().filter(|k| !wanted.contains(*k)) {
        store.delete(key).await?;
    }
    store
        .put("config/current.toml.tlog-proof", log.tlog_proof.to_vec())
        .await
}

// ---------------------------------------------------------------------------
// Handlers

fn served(state: &AppState) -> Option<Arc<ServedLog>> {
    state.current_config().and_then(|c| c.log.clone())
}

/// The log a proof request names by its key ID (`log=1a2b3c4d`), among the
/// ones served; the main log when it names none of them (a client of
/// another log then refuses the answer: the wrong log).
fn served_for(state: &AppState, query: Option<&str>) -> Option<Arc<ServedLog>> {
    let c = state.current_config()?;
    let wanted = query.and_then(parse_proof_log);
    wanted
        .and_then(|id| c.also_logs.iter().find(|l| l.vkey.id() == id).cloned())
        .or_else(|| c.log.clone())
}

fn no_log() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "this server serves no config, so no config log",
    )
}

/// `GET /config.toml.proof[?old=N&old=M]`.
pub(crate) async fn config_proof(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(log) = served_for(&state, query.as_deref()) else {
        return no_log();
    };
    match log.bundle(query.as_deref()) {
        Ok(b) => raw(TEXT, b),
        Err(e) => plain(e.status, &e.reason),
    }
}

/// `GET /config.toml.tlog-proof`.
pub(crate) async fn config_tlog_proof(State(state): State<Arc<AppState>>) -> Response {
    match served(&state) {
        Some(log) => raw(TEXT, log.tlog_proof.clone()),
        None => no_log(),
    }
}

/// `GET /log/<file>`: `log.vkey`, `policy`, `checkpoint`, `checkpoints`.
pub(crate) async fn log_file(
    State(state): State<Arc<AppState>>,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let Some(log) = served(&state) else {
        return no_log();
    };
    let body = match file.as_str() {
        LogDir::VKEY => Some(log.vkey_text.clone()),
        LogDir::POLICY => log.policy_text.clone(),
        LogDir::CHECKPOINT => Some(log.checkpoint_text.clone()),
        LogDir::CHECKPOINTS => Some(log.sizes.clone()),
        _ => None,
    };
    match body {
        Some(b) => raw(TEXT, b),
        None => plain(StatusCode::NOT_FOUND, "no such file in the config log"),
    }
}

/// `GET /log/checkpoints/<size>`.
pub(crate) async fn log_checkpoint(
    State(state): State<Arc<AppState>>,
    UrlPath(size): UrlPath<String>,
) -> Response {
    let Some(log) = served(&state) else {
        return no_log();
    };
    match decimal(&size).and_then(|s| log.checkpoint_files.get(&s)) {
        Some(b) => raw(TEXT, b.clone()),
        None => plain(
            StatusCode::NOT_FOUND,
            "the config log published no checkpoint of that size",
        ),
    }
}

/// `GET /log/entries/<index>`.
pub(crate) async fn log_entry(
    State(state): State<Arc<AppState>>,
    UrlPath(index): UrlPath<String>,
) -> Response {
    let Some(log) = served(&state) else {
        return no_log();
    };
    match decimal(&index).and_then(|i| log.entry(i)) {
        Some(b) => raw(TEXT, b.clone()),
        None => plain(StatusCode::NOT_FOUND, "no such entry in the config log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearcount_protocol::tlog::client::{ClientPolicy, verify_config};
    use clearcount_protocol::tlog::note::{KeyType, SignerKey};
    use std::time::Instant;

    fn config(version: u64) -> Vec<u8> {
        format!("version = {version}\nsample_rate = 0.1\n").into_bytes()
    }

    /// A log of `n` versions in memory, a checkpoint published at every
    /// size, as `config publish` leaves the directory.
    fn files(n: u64) -> (LogFiles, SignerKey) {
        let key = SignerKey::generate("figures.example/log", KeyType::Ed25519).unwrap();
        let mut log = Log::new(key.verifier().name());
        let mut history = BTreeMap::new();
        for v in 1..=n {
            log.append(config(v)).unwrap();
            history.insert(v, log.sign_checkpoint(&key).unwrap().to_text());
        }
        let files = LogFiles {
            vkey: format!("{}\n", key.verifier()),
            policy: None,
            entries: log.entries().to_vec(),
            checkpoint: history.get(&n).cloned(),
            history,
        };
        (files, key)
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("17"), Some(17));
        for bad in ["", "01", "-1", "+1", "1.0", " 1", "99999999999999999999999"] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    /// The answers built at load are the protocol's bundles, byte for
    /// byte, and a client accepts them.
    #[test]
    fn bundles_are_the_protocols() {
        let (f, key) = files(5);
        let entries = f.entries.clone();
        let log = Log::from_entries("figures.example/log", entries.clone()).unwrap();
        let signed = log.sign_checkpoint(&key).unwrap();
        let served = ServedLog::verify(f, &config(5), "mem").unwrap();
        let policy = ClientPolicy::new(Policy::new(key.verifier().clone(), Vec::new(), 0).unwrap());
        for (q, olds) in [
            (None, vec![]),
            (Some("old=3"), vec![3]),
            (Some("old=5&old=1&x=y"), vec![1, 5]),
            (Some("old=2&old=9"), vec![2, 9]),
        ] {
            let b = served.bundle(q).unwrap();
            let want = log.bundle(&signed, &olds).unwrap().to_text();
            assert_eq!(std::str::from_utf8(&b).unwrap(), want, "{q:?}");
            let text = std::str::from_utf8(&config(5)).unwrap().to_owned();
            verify_config(&policy, None, &text, &want, 0).unwrap();
        }
        assert_eq!(served.bundle(Some("old=a")).unwrap_err().status, 400);
        assert_eq!(served.size(), 5);
        assert_eq!(served.files().len(), 1 + 5 + 5 + 1);
        // A state extends itself, not another log.
        let (f4, _) = files(4);
        let other = ServedLog::verify(f4, &config(4), "mem").unwrap();
        assert!(served.extends(&served).is_ok());
        assert!(served.extends(&other).is_err(), "another key");
    }

    /// Figures: loading (verifying, auditing, building every answer) a log
    /// of 1,000 versions with a checkpoint at every size, the size of the
    /// bundles, and the time to answer one. `cargo test --release -p
    /// clearcount-server --lib figures -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn figures() {
        let n = 1000;
        let (f, _) = files(n);
        let t = Instant::now();
        let served = ServedLog::verify(f, &config(n), "mem").unwrap();
        let load = t.elapsed();
        let sizes: Vec<(String, usize)> = [None, Some("old=999"), Some("old=500&old=999")]
            .into_iter()
            .map(|q| (format!("{q:?}"), served.bundle(q).unwrap().len()))
            .collect();
        let reps = 100_000;
        let t = Instant::now();
        for i in 0..reps {
            let q = format!("old={}", 1 + i % 999);
            std::hint::black_box(served.bundle(Some(&q)).unwrap());
        }
        let per = t.elapsed() / reps;
        eprintln!(
            "log of {n} versions, {n} checkpoints: load {load:?}; bundle sizes {sizes:?}; one bundle with ?old=N: {per:?}"
        );
    }
}
