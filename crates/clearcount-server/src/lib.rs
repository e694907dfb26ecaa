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
//!      then the static site: site/*.html  (see `publish`)
//!
//!  GET /  /charts  /data/  /config  /counters   (plain HTML + inline SVG,
//!                                               built once per change)
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
//!    worker threads, and none blocks one. The blocking pool only runs
//!    short file operations (a report written, a listing, one 16 KiB read of
//!    an archive file when its client can take it), so a slow client holds
//!    a connection slot and a buffer, never a thread. Merges and page builds
//!    run on threads of their own at a lower priority (nice 10), so they
//!    neither share a pool with ingest nor take its processors.
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
//! 4. **Public pages** (`pages.rs`, `charts.rs`, `render.rs`, `publish.rs`). `/` says what this is,
//!    `/charts` draws per program the distribution of versions, systems and
//!    architectures, and each declared counter's buckets over the weeks, as
//!    inline SVG (counting reports that have a bucket; a bucket seen in fewer
//!    than [`ServerOptions::min_reports`] reports in a week is not shown;
//!    the 10 most reported values per chart, the rest as `other`, at most
//!    200 values tracked per chart), built by streaming the archive files.
//!    `/data/` lists the archive files
//!    for download, `/config` shows the config being served, its signature,
//!    the public key and every version the server has used, `/counters` the
//!    declared counters with their descriptions. The pages are built once
//!    per change (a merge, a config change) by one task and served from
//!    memory; archive files are sent as the client reads them.
//! 5. **Config reload.** The config file (and its `.minisig`) is polled every
//!    second; a new version is verified (with `--public-key`), and replaces
//!    the old one only if it is valid and its version is higher. Each version
//!    used is recorded under `config/history/` in the store.
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
//!     ..ServerOptions::default()
//! };
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let server = tokio::spawn(serve_with_shutdown(opts, Some(tx), std::future::pending()));
//! println!("listening on http://{}/", rx.await.unwrap());
//! server.await.unwrap()
//! # }
//! ```

mod charts;
mod ingest;
mod limits;
mod listen;
mod merge;
mod pages;
mod publish;
mod render;
#[cfg(feature = "s3")]
mod s3;
mod store;

#[cfg(test)]
mod race_tests;

pub use limits::Limits;
pub use merge::{MergeStats, merge_blocking};

use axum::Router;
use axum::routing::{get, post};
use clearcount_protocol::config::CollectionConfig;
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
    /// The minisign public key file the config must be signed with. Without
    /// it the config is parsed but not verified (a warning is printed).
    pub public_key: Option<PathBuf>,
    /// A directory of declared-counter files (`<program>.toml`), shown on
    /// `/counters`.
    pub counters: Option<PathBuf>,
    /// A bucket seen in fewer reports than this in a week is not charted.
    pub min_reports: u64,
    /// How often the archive of recent weeks is rebuilt.
    pub merge_interval: Duration,
    /// Connection, upload and rate limits.
    pub limits: Limits,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: "./clearcount-data".into(),
            config: None,
            public_key: None,
            counters: None,
            min_reports: 10,
            merge_interval: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// The config in force, with the text and signature it was read from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed config.
    pub config: CollectionConfig,
    /// Its text, as served on `/config`.
    pub text: String,
    /// The minisign signature, if one was found.
    pub signature: Option<String>,
    /// True when the signature was checked against the public key.
    pub verified: bool,
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

/// Reads, verifies and parses a config file. `last` is the version in force:
/// a config whose version is not higher is refused.
pub fn load_config(
    path: &Path,
    public_key: Option<&str>,
    last: Option<u64>,
) -> Result<LoadedConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let sig_path = sig_path(path);
    let signature = match std::fs::read_to_string(&sig_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", sig_path.display())),
    };
    let source = path.display().to_string();
    let (config, verified) = match public_key {
        Some(pk) => {
            let sig = signature
                .as_deref()
                .ok_or_else(|| format!("config signature {} is missing", sig_path.display()))?;
            (verify(pk, &text, sig, &source)?, true)
        }
        None => (
            CollectionConfig::parse(&text, &source).map_err(|e| e.to_string())?,
            false,
        ),
    };
    if let Some(last) = last
        && config.version <= last
    {
        return Err(format!(
            "config {} has version {}, not higher than {last} in force",
            source, config.version
        ));
    }
    Ok(LoadedConfig {
        config,
        text,
        signature,
        verified,
    })
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

/// Records a config in the store: `config/current.toml` (+ `.minisig`),
/// `config/public.key`, and `config/history/v<version>.toml` (+ `.minisig`).
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
    Ok(())
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls the config file and its signature every second, and swaps in a new
/// valid config with a higher version.
async fn watch_config(state: Arc<AppState>, path: PathBuf) {
    let sig = sig_path(&path);
    let mut seen = (file_stamp(&path), file_stamp(&sig));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stamp = (file_stamp(&path), file_stamp(&sig));
        if stamp == seen {
            continue;
        }
        seen = stamp;
        let last = state.current_config().map(|c| c.config.version);
        let p = path.clone();
        let pk = state.public_key.clone();
        let loaded =
            tokio::task::spawn_blocking(move || load_config(&p, pk.as_deref(), last)).await;
        match loaded {
            Ok(Ok(cfg)) => {
                if let Err(e) =
                    record_config(&*state.store, &cfg, state.public_key.as_deref()).await
                {
                    eprintln!("clearcount serve: cannot record config history: {e}");
                }
                eprintln!(
                    "clearcount serve: config version {} now in force",
                    cfg.config.version
                );
                if let Ok(mut g) = state.config.write() {
                    *g = Some(Arc::new(cfg));
                }
                // The pages show the config: build them again.
                let s = state.clone();
                tokio::spawn(async move { s.pages.refresh().await });
            }
            Ok(Err(e)) => eprintln!("clearcount serve: keeping the current config: {e}"),
            Err(e) => eprintln!("clearcount serve: config reload failed: {e}"),
        }
    }
}

/// Rebuilds the archive of the weeks still open for reports, every
/// `interval` and whenever asked, then the static site.
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
        let result = if first {
            merge::merge_open_weeks(state.store.clone(), now()).await
        } else if dirty.is_empty() {
            continue;
        } else {
            merge::merge_weeks(state.store.clone(), dirty.iter().cloned().collect()).await
        };
        first = false;
        match result {
            Ok(_) => publish(&state).await,
            Err(e) => {
                eprintln!("clearcount serve: merge failed: {e}");
                if let Ok(mut d) = state.dirty.lock() {
                    d.extend(dirty);
                }
            }
        }
    }
}

/// Rebuilds the static site (`site/`) after a merge, with the server's
/// `min_reports` and the chart data of `/charts` (built once for both).
async fn publish(state: &AppState) {
    let opts = publish::PublishOptions {
        min_reports: state.min_reports,
    };
    let charts = pages::chart_data_after_refresh(state).await;
    if let Err(e) = publish::publish_site_with(state.store.clone(), &opts, charts).await {
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
        .route("/public.key", get(pages::public_key))
        .route("/config/history/{file}", get(pages::history_file))
        .route("/counters", get(pages::counters))
        .route("/style.css", get(pages::style))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .with_state(state)
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
    let public_key = match &opts.public_key {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read public key {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let config = match &opts.config {
        Some(path) => {
            if public_key.is_none() {
                eprintln!(
                    "clearcount serve: warning: no --public-key given; the config is parsed but its signature is not checked"
                );
            }
            let cfg = load_config(path, public_key.as_deref(), None)?;
            record_config(&*store, &cfg, public_key.as_deref())
                .await
                .map_err(|e| format!("cannot record config in {}: {e}", store.describe()))?;
            Some(Arc::new(cfg))
        }
        None => {
            eprintln!("clearcount serve: warning: no --config given; uploads are refused");
            None
        }
    };
    let client_ip_header = match &opts.limits.client_ip_header {
        Some(h) => Some(
            axum::http::HeaderName::try_from(h.trim())
                .map_err(|_| format!("{h:?} is not a header name"))?,
        ),
        None => None,
    };
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
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let mut tasks = Vec::new();
    if let Some(path) = opts.config.clone() {
        tasks.push(tokio::spawn(watch_config(state.clone(), path)));
    }
    tasks.push(tokio::spawn(merge_loop(state.clone(), opts.merge_interval)));
    tasks.push(tokio::spawn(pages::keep_pages(state.clone())));
    if let Some(tx) = ready {
        let _ = tx.send(addr);
    }
    let app = router(state.clone());
    let result = listen::serve(listener, app, &opts.limits, shutdown).await;
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
        && let Err(e) = merge::merge_weeks(state.store.clone(), weeks).await
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
