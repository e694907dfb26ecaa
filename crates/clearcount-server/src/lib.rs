//! The clearcount collection server and the public archive.
//!
//! # What it does
//!
//! The server is the other half of transparency: it takes anonymous weekly
//! reports, keeps nothing that could identify a sender, and publishes every
//! report it keeps.
//!
//! ```text
//!  POST /upload ──▶ size limit (64 KiB) ──▶ strict parse (Report::from_slice)
//!                   ──▶ week within [today − 8 weeks, today] ──▶ config.filter
//!                   ──▶ store.put_if_absent("reports/<week>/<h2>/<sha256>.json")
//!
//!  every merge interval (and `clearcount merge`):
//!      reports/<week>/**  ──stream──▶  archive/<week>.ndjson   (atomic replace)
//!      archive/<week>.ndjson ──▶ archive/<week>.parquet, .csv  (tidy tables)
//!      then the static site: site/*.html  (see `publish`)
//!
//!  GET /  /charts  /data/  /config  /counters   (plain HTML + inline SVG,
//!                                               built once per change)
//!  GET /config.toml (+ .minisig, .proof?old=N, .tlog-proof)   the config and
//!  GET /log/…                                 its config log, from memory
//!  GET /metrics   on --metrics-addr only      OpenMetrics, for operators
//! ```
//!
//! 0. **Connections** (`listen.rs`, `limits.rs`). HTTP/1.1 over hyper with
//!    the [`Limits`]: a cap on connections and on upload bytes in flight
//!    (both answered `503` with `Retry-After`, never by stalling), header,
//!    idle, body and write timeouts, a per-source upload rate limit (`429`
//!    with `Retry-After`) keyed by a salted hash that rotates daily and
//!    lives in memory only, and security headers on every response.
//!
//!    Who runs what: every connection is an async task on the runtime's
//!    worker threads. A report is written to the directory store on the
//!    worker that received it: a handful of system calls on a local
//!    directory, no `fsync`, cheaper than a hop to another thread and back
//!    (which cost more processor time than the write, in wakeups and
//!    switches). The blocking pool runs the other short file operations (a
//!    listing, one 16 KiB read of an archive file when its client can take
//!    it), so a slow client holds a connection slot and a buffer, never a
//!    thread, and the kernel holds at most 16 KiB it has not sent for it
//!    (see `listen.rs`). Merges and page builds run on threads of their
//!    own at a lower priority (nice 10), so they neither share a pool with
//!    ingest nor take its processors.
//! 1. **Ingest** (`ingest.rs`). A body over 64 KiB is refused (413). The
//!    report is parsed strictly: unknown fields, wrong types, a bad week, X
//!    out of `[0, 1)`, negative counts or a bad counter name are refused with
//!    a 400 and a one-line plain-text reason. A week that starts in the
//!    future (by the server clock: `CLEARCOUNT_NOW` if set, else the wall
//!    clock) or more than 56 days ago is refused too. Then the
//!    collection config reduces the report: programs, versions, systems and
//!    counters it does not declare are dropped, as are counters whose rate is
//!    below the report's X. If nothing is left the answer is a 200 saying so
//!    and nothing is stored.
//! 2. **Storage** (`store.rs`, `s3.rs`). A kept report is stored under the SHA-256 of
//!    the report's canonical bytes, with a put-if-absent: sending the same
//!    report twice (even to two server instances on one store) stores it
//!    once, and the second answer is a 200 like the first. Writes are atomic:
//!    a process killed mid-write leaves no partial object. The sender's
//!    address is never read, logged or stored; the server keeps no access
//!    log.
//! 3. **The archive** (`merge.rs`). Every week's kept reports are merged into
//!    one newline-delimited JSON file, `archive/<week>.ndjson`, in key order,
//!    so a rebuild gives the same bytes. The merge streams (one report in
//!    memory at a time, one shard of keys listed at a time) into a temporary
//!    file that then atomically replaces the old archive, if the archive is
//!    still the version read before the listing (`If-Match` on its `ETag`
//!    on S3): merges running at once in several processes can neither
//!    corrupt it nor replace it with an older listing. The server merges the
//!    weeks it can still receive reports for every
//!    [`ServerOptions::merge_interval`]; `clearcount merge` rebuilds them all.
//!    After each week's merge, its tidy tables are rebuilt from the archive
//!    file ([`tables`]): `archive/<week>.parquet` and `.csv`, one row per
//!    build, counter bucket and stack with the reports that have it and the
//!    sum of their counts, leaving out rows of fewer than
//!    [`ServerOptions::min_reports`] reports.
//! 4. **Public pages** (`pages.rs`, `charts.rs`, `render.rs`, `publish.rs`). `/` says what this is,
//!    `/charts` draws per program the distribution of versions, systems and
//!    architectures, and each declared counter's buckets over the weeks, as
//!    inline SVG (counting reports that have a bucket; a bucket seen in fewer
//!    than [`ServerOptions::min_reports`] reports in a week is not shown;
//!    the 10 most reported values per chart, the rest as `other`, at most
//!    200 values tracked per chart), built by streaming the archive files.
//!    `/data/` lists the archive files and their tables, with their sizes,
//!    for download, `/config` shows the config being served, its signature,
//!    the public key, its config log (every version with its leaf index,
//!    hashes and when it was witnessed, the latest checkpoint and its
//!    cosignatures, how to audit it) and every version the server has
//!    used, `/counters` the
//!    declared counters with their descriptions. The pages are built once
//!    per change (a merge, a config change) by one task and served from
//!    memory; archive files are sent as the client reads them.
//! 5. **The config and its log** (`config_log.rs`,
//!    `counters-spec/config-log.md`). The server serves only a config it
//!    verified: its minisign signature against `--public-key` (required
//!    with a config), and the config log (`--log`, default `log/` beside
//!    the config): the config must be the log's last entry, under a
//!    checkpoint signed by the log's key and meeting the log's policy (its
//!    witness quorum), and the whole log must pass an audit. Anything else
//!    and the server does not start (one line says why). The log is loaded
//!    once, and every answer of its endpoints is built then: the proof
//!    bundle a client fetches (`/config.toml.proof?old=N`, consistency
//!    proofs from each published checkpoint's size), the C2SP tlog-proof,
//!    and the auditor's files under `/log/`. A copy of the log goes into
//!    the store (`config/log/`), so the static site serves it too.
//! 6. **Config reload.** The config file, its `.minisig` and the log's
//!    `checkpoint`, `log.vkey` and `policy` are polled every second; on a
//!    change all are read and verified again (off the runtime), and the new
//!    state replaces the old one only if it verifies, its version is higher
//!    (or it is the same config under a log state that changed, such as new
//!    cosignatures), and its log extends the one served. Otherwise the old
//!    config keeps being served and one line says why. Each version used is
//!    recorded under `config/history/` in the store.
//! 7. **The local view** ([`local`]). Not part of the collection server:
//!    `clearcount view --web` serves one installation's own data (this
//!    week's counts, its local reports, what the next upload would send)
//!    on 127.0.0.1 behind a random token, with these pages' layout,
//!    charts, connection layer and security headers.
//! 8. **Metrics** (`metrics.rs`). With [`ServerOptions::metrics_addr`], a
//!    second listener serves `/metrics` in OpenMetrics text: uploads
//!    accepted and refused by reason, connections served and refused over
//!    the cap, merge runs and their durations, the archive's reports and
//!    bytes, the config's version and its log's size, and store errors by
//!    operation. Nothing about a sender is in them.
//!
//! # Example
//!
//! ```no_run
//! use clearcount_server::{serve_with_shutdown, ServerOptions};
//! # async fn demo() -> Result<(), String> {
//! let opts = ServerOptions {
//!     addr: "127.0.0.1:0".parse().unwrap(),
//!     data: "./clearcount-data".into(),
//!     config: Some("config/config.toml".into()),
//!     public_key: Some("config/clearcount.pub".into()),
//!     // `log: None`: config/log/, beside the config.
//!     ..ServerOptions::default()
//! };
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let server = tokio::spawn(serve_with_shutdown(opts, Some(tx), std::future::pending()));
//! println!("listening on http://{}/", rx.await.unwrap());
//! server.await.unwrap()
//! # }
//! ```

mod charts;
mod config_log;
mod ingest;
mod limits;
mod listen;
pub mod local;
mod merge;
mod metrics;
mod pages;
mod publish;
mod render;
#[cfg(feature = "s3")]
mod s3;
mod store;
pub mod tables;

#[cfg(test)]
mod race_tests;

pub use limits::Limits;
pub use merge::{MergeStats, merge_archive_blocking, merge_blocking};
pub use tables::{TableStats, tables_blocking};

use axum::Router;
use axum::routing::{get, post};
use clearcount_protocol::config::CollectionConfig;
use clearcount_protocol::tlog::log::LogDir;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use store::Store;

/// Reports whose week started more than this many days before the server's
/// date are refused.
pub(crate) const ACCEPTED_AGE_DAYS: i64 = 56;

/// Largest accepted upload body, in bytes.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Everything `clearcount serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on (port 0: any free port, see `ready`).
    pub addr: SocketAddr,
    /// Where data lives: a local directory, or `s3://bucket/prefix` (feature
    /// `s3`).
    pub data: String,
    /// The collection config file; its signature is `<file>.minisig`.
    /// Without a config every upload is refused with a 503.
    pub config: Option<PathBuf>,
    /// The minisign public key file the config must be signed with:
    /// required with a config (the server serves no config it did not
    /// verify).
    pub public_key: Option<PathBuf>,
    /// The config log directory (`counters-spec/config-log.md` §7): the
    /// config must be its last entry, under a checkpoint signed by its key.
    /// Default: `log/` beside the config, if it exists ([`ServerOptions::log_dir`]).
    pub log: Option<PathBuf>,
    /// More config logs the config must also be the last entry of, during
    /// a key rotation (`counters-spec/config-log.md` §13): a proof request
    /// that names one of their keys (`?log=<key ID>`) is answered from it,
    /// any other from [`ServerOptions::log`], whose copy the store and the
    /// auditor's endpoints (`/log/`) publish.
    pub also_logs: Vec<PathBuf>,
    /// A directory of declared-counter files (`<program>.toml`), shown on
    /// `/counters`.
    pub counters: Option<PathBuf>,
    /// A bucket seen in fewer reports than this in a week is not charted,
    /// and a row of the archive's tables that fewer reports of its week
    /// have is left out of them ([`tables`]).
    pub min_reports: u64,
    /// How often the archive of recent weeks is rebuilt.
    pub merge_interval: Duration,
    /// Connection, upload and rate limits.
    pub limits: Limits,
    /// Where to serve `/metrics` (OpenMetrics text, for operators): an
    /// address of its own, never the public one. `None`: no metrics.
    pub metrics_addr: Option<SocketAddr>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: "./clearcount-data".into(),
            config: None,
            public_key: None,
            log: None,
            also_logs: Vec::new(),
            counters: None,
            min_reports: 10,
            merge_interval: Duration::from_secs(60),
            limits: Limits::default(),
            metrics_addr: None,
        }
    }
}

impl ServerOptions {
    /// The config log directory: [`ServerOptions::log`], else `log/` beside
    /// the config if it exists; `None` without a config or a log.
    pub fn log_dir(&self) -> Option<PathBuf> {
        if let Some(l) = &self.log {
            return Some(l.clone());
        }
        let config = self.config.as_ref()?;
        let dir = config.parent().unwrap_or(Path::new("")).join("log");
        dir.is_dir().then_some(dir)
    }
}

/// The config in force, with the text and signature it was read from, and
/// its config log.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed config.
    pub config: CollectionConfig,
    /// Its text, as served on `/config`.
    pub text: String,
    /// The minisign signature, if one was found.
    pub signature: Option<String>,
    /// The config log it is the last entry of, verified (always there on
    /// the live server; in the static site, when the store's copy of the
    /// log verifies).
    pub(crate) log: Option<Arc<config_log::ServedLog>>,
    /// The other logs it is the last entry of ([`ServerOptions::also_logs`]),
    /// verified.
    pub(crate) also_logs: Vec<Arc<config_log::ServedLog>>,
}

/// State shared by every request handler.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: RwLock<Option<Arc<LoadedConfig>>>,
    pub(crate) public_key: Option<String>,
    pub(crate) counters: Option<PathBuf>,
    pub(crate) min_reports: u64,
    /// Weeks that received a report since the last merge.
    pub(crate) dirty: Mutex<BTreeSet<String>>,
    /// The pages, built once per change.
    pub(crate) pages: pages::PageCache,
    pub(crate) merge_now: tokio::sync::Notify,
    pub(crate) limits: Limits,
    /// `None` when the rate limit is off.
    pub(crate) rate: Option<limits::RateLimiter>,
    /// The proxy's header that holds the client's address, if trusted.
    pub(crate) client_ip_header: Option<axum::http::HeaderName>,
    /// Upload bytes that may be in flight (one permit a byte).
    pub(crate) upload_budget: Arc<tokio::sync::Semaphore>,
    /// Operators' metrics (served only on `metrics_addr`).
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub(crate) fn current_config(&self) -> Option<Arc<LoadedConfig>> {
        self.config.read().ok().and_then(|g| g.clone())
    }
}

/// Nice value of background threads (merges, page builds): they yield the
/// processors to ingest and to requests.
const BACKGROUND_NICE: i32 = 10;

/// Runs `f` on a thread of its own at a lower priority (nice
/// [`BACKGROUND_NICE`] on Unix), and waits for it without holding a runtime
/// thread: long work that must not slow down ingest (merges, building the
/// pages).
pub(crate) async fn background<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            #[cfg(unix)]
            // SAFETY: setpriority only reads its arguments; on Linux, who = 0
            // is the calling thread.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
            }
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other(format!("the {name} thread failed")))?
}

/// The server's clock: `CLEARCOUNT_NOW` (RFC 3339) if set, else the wall
/// clock.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    std::env::var("CLEARCOUNT_NOW")
        .ok()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now)
}

/// Reads and verifies a config file for serving: its minisign signature
/// (`<file>.minisig`) against `public_key` (the key's text), and the config
/// log in `log`: the config must be its last entry, under a checkpoint
/// signed by the log's key that meets the log's policy, and the whole log
/// must pass an audit (`counters-spec/config-log.md` §10). Every refusal is
/// one line.
pub fn load_config(path: &Path, public_key: &str, log: &Path) -> Result<LoadedConfig, String> {
    load_config_with(path, public_key, log, &[])
}

/// [`load_config`], the config also the last entry of each of the logs in
/// `also` (verified the same way): a key rotation's other log.
pub fn load_config_with(
    path: &Path,
    public_key: &str,
    log: &Path,
    also: &[PathBuf],
) -> Result<LoadedConfig, String> {
    load_config_lines(path, public_key, log, also).map_err(|e| {
        e.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn load_config_lines(
    path: &Path,
    public_key: &str,
    log: &Path,
    also: &[PathBuf],
) -> Result<LoadedConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let sig_path = sig_path(path);
    let signature = match std::fs::read_to_string(&sig_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "config signature {} is missing: sign the config (`clearcount config publish`)",
                sig_path.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", sig_path.display())),
    };
    let source = path.display().to_string();
    let config = verify(public_key, &text, &signature, &source)?;
    let files = config_log::LogFiles::read_dir(log)?;
    let served = config_log::ServedLog::verify(files, text.as_bytes(), &log.display().to_string())
        .map_err(|e| format!("{source}: {e}"))?;
    let mut also_logs: Vec<Arc<config_log::ServedLog>> = Vec::new();
    for dir in also {
        let files = config_log::LogFiles::read_dir(dir)?;
        let other =
            config_log::ServedLog::verify(files, text.as_bytes(), &dir.display().to_string())
                .map_err(|e| format!("{source}: {e}"))?;
        if other.vkey.id() == served.vkey.id()
            || also_logs.iter().any(|l| l.vkey.id() == other.vkey.id())
        {
            return Err(format!(
                "{}: its key ID {:08x} is another log's: a proof request could not choose between them",
                dir.display(),
                other.vkey.id()
            ));
        }
        also_logs.push(Arc::new(other));
    }
    Ok(LoadedConfig {
        config,
        text,
        signature: Some(signature),
        log: Some(Arc::new(served)),
        also_logs,
    })
}

/// Whether `new` may replace `old`, the config in force: `Ok(false)` when
/// nothing changed, `Ok(true)` for a higher version, or the same config
/// under a log state that changed (new cosignatures); the log must extend
/// the one served.
fn may_replace(old: &LoadedConfig, new: &LoadedConfig) -> Result<bool, String> {
    let (Some(old_log), Some(new_log)) = (&old.log, &new.log) else {
        return Ok(true);
    };
    let same_also = new.also_logs.len() == old.also_logs.len()
        && new
            .also_logs
            .iter()
            .zip(&old.also_logs)
            .all(|(n, o)| n.same_as(o));
    if new.text == old.text {
        if new_log.same_as(old_log) && same_also {
            return Ok(false);
        }
    } else if new.config.version <= old.config.version {
        return Err(format!(
            "config version {} is not higher than version {} in force",
            new.config.version, old.config.version
        ));
    }
    new_log.extends(old_log)?;
    for n in &new.also_logs {
        if let Some(o) = old.also_logs.iter().find(|o| o.vkey == n.vkey) {
            n.extends(o)?;
        }
    }
    Ok(true)
}

fn verify(pk: &str, text: &str, sig: &str, source: &str) -> Result<CollectionConfig, String> {
    clearcount_protocol::sign::verify_config(pk, text, sig, None)
        .map_err(|e| format!("{source}: {e}"))
}

fn sig_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// Records a config in the store: `config/current.toml` (+ `.minisig`,
/// `.tlog-proof`), `config/public.key`, `config/history/v<version>.toml`
/// (+ `.minisig`), and a copy of its config log under `config/log/`.
async fn record_config(
    store: &dyn Store,
    cfg: &LoadedConfig,
    public_key: Option<&str>,
) -> std::io::Result<()> {
    let v = cfg.config.version;
    let hist = format!("config/history/v{v}.toml");
    store
        .put_if_absent(&hist, cfg.text.clone().into_bytes())
        .await?;
    store
        .put("config/current.toml", cfg.text.clone().into_bytes())
        .await?;
    if let Some(sig) = &cfg.signature {
        store
            .put_if_absent(&format!("{hist}.minisig"), sig.clone().into_bytes())
            .await?;
        store
            .put("config/current.toml.minisig", sig.clone().into_bytes())
            .await?;
    } else {
        store.delete("config/current.toml.minisig").await?;
    }
    if let Some(pk) = public_key {
        store
            .put("config/public.key", pk.as_bytes().to_vec())
            .await?;
    }
    if let Some(log) = &cfg.log {
        config_log::record(store, log).await?;
    }
    Ok(())
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// What the config watcher looks at: the config, its signature, and the
/// logs' files that change when a config is published or cosigned.
fn config_stamps(config: &Path, logs: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    let mut v = vec![file_stamp(config), file_stamp(&sig_path(config))];
    for log in logs {
        for f in [LogDir::CHECKPOINT, LogDir::VKEY, LogDir::POLICY] {
            v.push(file_stamp(&log.join(f)));
        }
    }
    v
}

/// Polls the config file, its signature and the config log every second;
/// when one changed, reads and verifies them again (off the runtime), and
/// swaps in the new config if it verifies, has a higher version (or is the
/// same config under a log state that changed, such as new cosignatures)
/// and its log extends the one served. Otherwise the config in force stays,
/// and one line says why.
async fn watch_config(state: Arc<AppState>, path: PathBuf, log: PathBuf, also: Vec<PathBuf>) {
    let logs: Vec<PathBuf> = std::iter::once(log.clone()).chain(also.clone()).collect();
    let mut seen = config_stamps(&path, &logs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (p, l) = (path.clone(), logs.clone());
        let Ok(stamp) = tokio::task::spawn_blocking(move || config_stamps(&p, &l)).await else {
            continue;
        };
        if stamp == seen {
            continue;
        }
        seen = stamp;
        let (p, l, a) = (path.clone(), log.clone(), also.clone());
        let pk = state.public_key.clone().unwrap_or_default();
        let loaded = tokio::task::spawn_blocking(move || load_config_with(&p, &pk, &l, &a)).await;
        let Some(old) = state.current_config() else {
            continue;
        };
        let cfg = match loaded {
            Ok(Ok(cfg)) => cfg,
            Ok(Err(e)) => {
                eprintln!(
                    "clearcount serve: keeping config version {}: {e}",
                    old.config.version
                );
                continue;
            }
            Err(e) => {
                eprintln!("clearcount serve: config reload failed: {e}");
                continue;
            }
        };
        match may_replace(&old, &cfg) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                eprintln!(
                    "clearcount serve: keeping config version {}: {e}",
                    old.config.version
                );
                continue;
            }
        }
        if let Err(e) = record_config(&*state.store, &cfg, state.public_key.as_deref()).await {
            eprintln!("clearcount serve: cannot record config history: {e}");
        }
        let log_state = cfg.log.as_ref().map_or(String::new(), |l| {
            format!("entry {} of the config log, {}", l.size() - 1, l.cosigned())
        });
        let same_text = cfg.text == old.text;
        let version = cfg.config.version;
        if let Ok(mut g) = state.config.write() {
            *g = Some(Arc::new(cfg));
        }
        if same_text {
            eprintln!(
                "clearcount serve: config version {version}: the config log changed ({log_state})"
            );
        } else {
            eprintln!("clearcount serve: config version {version} now in force ({log_state})");
        }
        // The pages show the config: build them again.
        let s = state.clone();
        tokio::spawn(async move { s.pages.refresh().await });
    }
}

/// Rebuilds the archive of the weeks still open for reports, and their
/// tables, every `interval` and whenever asked, then the static site.
async fn merge_loop(state: Arc<AppState>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.merge_now.notified() => {}
        }
        let dirty: BTreeSet<String> = match state.dirty.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => BTreeSet::new(),
        };
        // On the first run, and for the weeks this process saw, merge; other
        // instances on a shared store cover their own weeks, and every
        // instance rebuilds all open weeks at start.
        let started = std::time::Instant::now();
        let weeks = if first {
            merge::open_weeks(&*state.store, now()).await
        } else if dirty.is_empty() {
            continue;
        } else {
            Ok(dirty.iter().cloned().collect())
        };
        first = false;
        let result = match weeks {
            Ok(weeks) => merge_weeks(&state, weeks).await,
            Err(e) => Err(e),
        };
        state
            .metrics
            .merge_run(result.is_ok(), started.elapsed().as_secs_f64());
        match result {
            Ok(()) => publish(&state).await,
            Err(e) => {
                eprintln!("clearcount serve: merge failed: {e}");
                if let Ok(mut d) = state.dirty.lock() {
                    d.extend(dirty);
                }
            }
        }
    }
}

/// Merges the archive of `weeks` and rebuilds their tables, with the
/// server's `min_reports`; records what it did in the metrics.
async fn merge_weeks(state: &AppState, weeks: Vec<String>) -> std::io::Result<()> {
    let done = tables::merge_and_tabulate(state.store.clone(), weeks, state.min_reports).await?;
    for w in &done {
        state.metrics.archive_week(&w.week, w.merged.reports);
    }
    // On a store that ignores conditional writes: a week whose listing
    // moved after its write is merged again at the next merge.
    if let Ok(mut d) = state.dirty.lock() {
        d.extend(
            done.iter()
                .filter(|w| w.merged.unsettled > 0)
                .map(|w| w.week.clone()),
        );
    }
    if let Ok(listing) = state.store.list("archive/").await {
        state.metrics.archive_listing(&listing);
    }
    Ok(())
}

/// Rebuilds the static site (`site/`) after a merge, with the server's
/// `min_reports` and the chart data of `/charts` (built once for both).
async fn publish(state: &AppState) {
    let opts = publish::PublishOptions {
        min_reports: state.min_reports,
    };
    let charts = pages::chart_data_after_refresh(state).await;
    let log = state.current_config().and_then(|c| c.log.clone());
    if let Err(e) = publish::publish_site_with(state.store.clone(), &opts, charts, log).await {
        eprintln!("clearcount serve: publishing the static site failed: {e}");
    }
}

/// Builds the router (all routes) over a state.
fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/upload", post(ingest::upload))
        .route("/", get(pages::index))
        .route("/charts", get(pages::charts))
        .route("/data", get(pages::data_redirect))
        .route("/data/", get(pages::data_index))
        .route("/data/{file}", get(pages::data_file))
        .route("/config", get(pages::config))
        .route("/config.toml", get(pages::config_text))
        .route("/config.toml.minisig", get(pages::config_sig))
        .route("/config.toml.proof", get(config_log::config_proof))
        .route(
            "/config.toml.tlog-proof",
            get(config_log::config_tlog_proof),
        )
        .route("/log", get(pages::log_redirect))
        .route("/log/", get(pages::log_index))
        .route("/log/{file}", get(config_log::log_file))
        .route("/log/checkpoints/{size}", get(config_log::log_checkpoint))
        .route("/log/entries/{index}", get(config_log::log_entry))
        .route("/public.key", get(pages::public_key))
        .route("/config/history/{file}", get(pages::history_file))
        .route("/counters", get(pages::counters))
        .route("/style.css", get(pages::style))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .with_state(state)
}

/// Raises this process's soft limit of open files to its hard limit (as
/// Go's runtime does for every program): each connection holds a
/// descriptor, and a soft limit of 1,024, still a common default, is below
/// the connection cap. Where it cannot be raised, the cap still holds:
/// connections past the limit are refused, never a crash.
pub fn raise_open_file_limit() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

/// Runs the server until `shutdown` completes, then finishes the requests in
/// flight. Sends the bound address on `ready` once listening (use port 0 to
/// get a free port).
pub async fn serve_with_shutdown(
    opts: ServerOptions,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let store = store::open_store(&opts.data)
        .map_err(|e| format!("cannot open data store {}: {e}", opts.data))?;
    serve_store(opts, store, ready, shutdown).await
}

/// [`serve_with_shutdown`] on a store already open (`opts.data` unused).
pub(crate) async fn serve_store(
    opts: ServerOptions,
    store: Arc<dyn Store>,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    raise_open_file_limit();
    let public_key = match &opts.public_key {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read public key {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let log_dir = opts.log_dir();
    let config = match &opts.config {
        Some(path) => {
            let Some(pk) = public_key.clone() else {
                return Err(format!(
                    "{} needs --public-key: the server serves only a config whose signature it verified",
                    path.display()
                ));
            };
            let Some(log) = log_dir.clone() else {
                return Err(format!(
                    "{} needs its config log: give --log DIR (made by `clearcount config log-init`, filled by `clearcount config publish`), or keep it in log/ beside the config",
                    path.display()
                ));
            };
            let (p, also) = (path.clone(), opts.also_logs.clone());
            let cfg = tokio::task::spawn_blocking(move || load_config_with(&p, &pk, &log, &also))
                .await
                .map_err(|e| format!("loading the config failed: {e}"))??;
            record_config(&*store, &cfg, public_key.as_deref())
                .await
                .map_err(|e| format!("cannot record config in {}: {e}", store.describe()))?;
            if let Some(l) = &cfg.log {
                eprintln!(
                    "clearcount serve: config version {} (entry {} of the config log in {}, {})",
                    cfg.config.version,
                    l.size() - 1,
                    log_dir.as_deref().unwrap_or(Path::new("")).display(),
                    l.cosigned()
                );
            }
            for (l, dir) in cfg.also_logs.iter().zip(&opts.also_logs) {
                eprintln!(
                    "clearcount serve: also entry {} of the config log in {} (key ID {:08x}, for releases that trust {}; {})",
                    l.size() - 1,
                    dir.display(),
                    l.vkey.id(),
                    l.vkey.name(),
                    l.cosigned()
                );
            }
            Some(Arc::new(cfg))
        }
        None => {
            eprintln!("clearcount serve: warning: no --config given; uploads are refused");
            None
        }
    };
    // (Said once the config is in force: a refusal stays one line.)
    eprintln!(
        "clearcount serve: store {}: {}",
        store.describe(),
        store.conditional_writes().describe()
    );
    let client_ip_header = match &opts.limits.client_ip_header {
        Some(h) => Some(
            axum::http::HeaderName::try_from(h.trim())
                .map_err(|_| format!("{h:?} is not a header name"))?,
        ),
        None => None,
    };
    // Every store error anywhere counts in the metrics.
    let metrics = Arc::new(metrics::Metrics::new());
    let store = metrics::MeteredStore::wrap(store, metrics.clone());
    let state = Arc::new(AppState {
        store,
        config: RwLock::new(config),
        public_key,
        counters: opts.counters.clone(),
        min_reports: opts.min_reports,
        dirty: Mutex::new(BTreeSet::new()),
        pages: pages::PageCache::new(),
        merge_now: tokio::sync::Notify::new(),
        rate: limits::RateLimiter::new(&opts.limits),
        client_ip_header,
        upload_budget: Arc::new(tokio::sync::Semaphore::new(
            opts.limits
                .max_upload_bytes
                .clamp(MAX_BODY, tokio::sync::Semaphore::MAX_PERMITS),
        )),
        limits: opts.limits.clone(),
        metrics,
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let mut tasks = Vec::new();
    if let Some(at) = opts.metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| format!("cannot listen for metrics on {at}: {e}"))?;
        let bound = metrics_listener
            .local_addr()
            .map_err(|e| format!("cannot read the metrics address: {e}"))?;
        eprintln!("clearcount serve: metrics (OpenMetrics) on http://{bound}/metrics");
        tasks.push(tokio::spawn(metrics::serve(
            metrics_listener,
            state.clone(),
            std::future::pending(),
        )));
    }
    if let (Some(path), Some(log)) = (opts.config.clone(), log_dir) {
        tasks.push(tokio::spawn(watch_config(
            state.clone(),
            path,
            log,
            opts.also_logs.clone(),
        )));
    }
    tasks.push(tokio::spawn(merge_loop(state.clone(), opts.merge_interval)));
    tasks.push(tokio::spawn(pages::keep_pages(state.clone())));
    if let Some(tx) = ready {
        let _ = tx.send(addr);
    }
    let app = router(state.clone());
    let result = listen::serve(listener, app, &opts.limits, state.metrics.clone(), shutdown).await;
    for t in &tasks {
        t.abort();
    }
    // A last merge, so that what was accepted is in the archive.
    let weeks: Vec<String> = state
        .dirty
        .lock()
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default();
    if !weeks.is_empty()
        && let Err(e) = merge_weeks(&state, weeks).await
    {
        eprintln!("clearcount serve: final merge failed: {e}");
    }
    result
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(
    opts: ServerOptions,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), String> {
    serve_with_shutdown(opts, ready, shutdown_signal()).await
}

/// Completes on Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Builds a multi-threaded runtime and runs [`serve`] in it until Ctrl-C or
/// SIGTERM. `ready` is called with the bound address once listening.
///
/// ```no_run
/// let opts = clearcount_server::ServerOptions::default();
/// clearcount_server::run_blocking(opts, |addr| println!("http://{addr}/")).unwrap();
/// ```
pub fn run_blocking(
    opts: ServerOptions,
    ready: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), String> {
    let rt = runtime()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(opts, Some(tx)));
        if let Ok(addr) = rx.await {
            ready(addr);
        }
        server
            .await
            .map_err(|e| format!("server task failed: {e}"))?
    })
}

/// A multi-threaded tokio runtime for the server and the merge.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
