//! The public pages: plain HTML with inline CSS and SVG, no JavaScript.
//!
//! | path | what |
//! |---|---|
//! | `/` | what this is, links |
//! | `/charts` | per program: versions, OS, arch, every counter's buckets over the weeks |
//! | `/data/`, `/data/<week>.ndjson`, `/data/<week>.parquet`, `/data/<week>.csv` | the archive files and their tables (see `tables.rs`), downloadable, with their sizes |
//! | `/config` | the config in force, its signature, the public key, its config log (every version, the latest checkpoint and its cosignatures, how to audit it), every version served |
//! | `/config.toml`, `/config.toml.minisig`, `/public.key`, `/config/history/<file>` | the same as raw files |
//! | `/log/` | the config log: its key and policy, every entry, the latest checkpoint and its cosignatures, links to every file, how to audit it |
//! | `/config.toml.proof`, `/config.toml.tlog-proof`, `/log/…` | the config log's proofs and files (see `config_log.rs`) |
//! | `/counters` | the declared counters with their descriptions |
//!
//! # Built once per change, served from memory
//!
//! The pages `/`, `/charts`, `/data/`, `/config`, `/log/` and `/counters` are built
//! by one task ([`keep_pages`]) and kept as bytes; a request only clones
//! them. The task builds when something they show changed: a merge
//! committed in this process (it is woken at once), the config in force
//! changed, or, checked every [`POLL`], the archive listing (another
//! instance's or `clearcount merge`'s merge), the config history or the
//! declared-counter files. The chart data is rebuilt only when the archive
//! changed, on a background thread at a lower priority; a merge's build
//! waits until the merge has written the tables too (see
//! [`crate::tables`]), so a merge makes one build. One task builds,
//! so a change is built once however many requests come (single flight): a
//! request that comes after an in-process merge or a config change and
//! before its build waits for that build, at most [`WAIT`], and then gets
//! the pages it has. Every page carries the build's number as its `ETag`.
//!
//! Every response, pages and files alike, carries the security headers of
//! [`security_headers`].

use super::AppState;
use super::charts::{ChartData, esc};
use super::render::{self, CSS, Links};
use super::store::{ObjectMeta, check_key};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How often the archive, the config history and the declared counters
/// are checked for changes made elsewhere.
pub(crate) const POLL: Duration = Duration::from_secs(2);

/// How long a request waits for the build of a change it must show.
pub(crate) const WAIT: Duration = Duration::from_millis(900);

/// What the pages show, as far as a cheap check can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inputs {
    archive: Vec<ObjectMeta>,
    /// The archive's tables (Parquet, CSV).
    tables: Vec<ObjectMeta>,
    history: Vec<ObjectMeta>,
    /// The config in force: its version, its text's length, and its log's
    /// checkpoint (which changes with new cosignatures).
    config: Option<(u64, usize, Bytes)>,
    /// The declared-counter files: (name, modified, size).
    counters: Vec<(String, Option<SystemTime>, u64)>,
}

impl Inputs {
    /// Whether only the archive's tables differ.
    fn same_but_tables(&self, o: &Inputs) -> bool {
        self.archive == o.archive
            && self.history == o.history
            && self.config == o.config
            && self.counters == o.counters
    }
}

/// One build of the pages.
pub(crate) struct Built {
    /// 1, 2, ...: the `ETag` of this build's pages.
    generation: u64,
    /// The value of [`crate::merge::ARCHIVE_COMMITS`] when the build began.
    commits: u64,
    /// The value of [`PageCache::asked`] when the build began.
    asked: u64,
    inputs: Inputs,
    /// Builds of the data page alone under this generation: when only the
    /// archive's tables changed (written after the archive, maybe by
    /// another process), its `ETag` is `g<generation>-<n>`, and the other
    /// pages keep theirs.
    tables_generation: u64,
    pub(crate) chart_data: Arc<ChartData>,
    index: Bytes,
    charts: Bytes,
    data: Bytes,
    config: Bytes,
    log: Bytes,
    counters: Bytes,
}

/// The latest build, and requests for a new one.
pub(crate) struct PageCache {
    current: tokio::sync::watch::Sender<Option<Arc<Built>>>,
    /// Bumped by [`PageCache::refresh`] (a config change, a merge): builds
    /// that began before do not count as fresh.
    asked: AtomicU64,
    wake: tokio::sync::Notify,
}

impl PageCache {
    pub(crate) fn new() -> PageCache {
        PageCache {
            current: tokio::sync::watch::Sender::new(None),
            asked: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Asks for a build and waits (up to a minute) for one that began
    /// after the call.
    pub(crate) async fn refresh(&self) -> Option<Arc<Built>> {
        let asked = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        self.wait_for(asked, Duration::from_secs(60)).await
    }

    /// The pages after `asked` and every in-process merge so far, waiting
    /// up to `wait` for their build; else the latest build (`None` before
    /// the first).
    async fn wait_for(&self, asked: u64, wait: Duration) -> Option<Arc<Built>> {
        let commits = super::merge::ARCHIVE_COMMITS.load(Ordering::SeqCst);
        let fresh = |b: &Option<Arc<Built>>| {
            b.as_ref()
                .is_some_and(|b| b.asked >= asked && b.commits >= commits)
        };
        let mut rx = self.current.subscribe();
        let now = rx.borrow().clone();
        if fresh(&now) {
            return now;
        }
        self.wake.notify_one();
        let waited = tokio::time::timeout(wait, async {
            rx.wait_for(fresh).await.ok().and_then(|b| b.clone())
        })
        .await;
        match waited {
            Ok(Some(b)) => Some(b),
            _ => self.current.borrow().clone(),
        }
    }

    async fn get(&self) -> Option<Arc<Built>> {
        self.wait_for(self.asked.load(Ordering::SeqCst), WAIT).await
    }
}

/// Reads what the pages show, cheaply (listings and file stamps).
async fn read_inputs(state: &AppState) -> std::io::Result<Inputs> {
    let (archive, tables) = super::store::archive_and_tables(&*state.store).await?;
    let history = state.store.list("config/history/").await?.objects;
    let config = state.current_config().map(|c| {
        let checkpoint = c.log.as_ref().map(|l| l.checkpoint_text.clone());
        (
            c.config.version,
            c.text.len(),
            checkpoint.unwrap_or_default(),
        )
    });
    let counters = match state.counters.clone() {
        None => Vec::new(),
        Some(dir) => tokio::task::spawn_blocking(move || {
            let mut v: Vec<(String, Option<SystemTime>, u64)> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| {
                            let m = e.metadata().ok()?;
                            Some((
                                e.file_name().to_string_lossy().into_owned(),
                                m.modified().ok(),
                                m.len(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        })
        .await
        .unwrap_or_default(),
    };
    Ok(Inputs {
        archive,
        tables,
        history,
        config,
        counters,
    })
}

/// Builds the pages whenever what they show changed (see the module
/// documentation); runs for the server's life.
pub(crate) async fn keep_pages(state: Arc<AppState>) {
    let cache = &state.pages;
    let mut generation = 0;
    let mut warned = false;
    loop {
        let merged = super::merge::ARCHIVE_CHANGED.notified();
        let woken = cache.wake.notified();
        tokio::pin!(merged, woken);
        merged.as_mut().enable();
        woken.as_mut().enable();
        // A merge writes the archive, then its tables: one build shows both.
        super::tables::tabulated().await;
        let asked = cache.asked.load(Ordering::SeqCst);
        let commits = super::merge::ARCHIVE_COMMITS.load(Ordering::SeqCst);
        match build(&state, generation + 1, asked, commits).await {
            Ok(Some(b)) => {
                generation = b.generation;
                cache.current.send_replace(Some(Arc::new(b)));
                warned = false;
            }
            Ok(None) => {}
            Err(e) => {
                if !warned {
                    eprintln!("clearcount serve: cannot build the pages: {e}");
                    warned = true;
                }
            }
        }
        tokio::select! {
            () = merged => {}
            () = woken => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// A new build, or `None` when nothing changed (the current build then
/// counts as fresh for `asked` and `commits`).
async fn build(
    state: &AppState,
    generation: u64,
    asked: u64,
    commits: u64,
) -> std::io::Result<Option<Built>> {
    let inputs = read_inputs(state).await?;
    let prev = state.pages.current.borrow().clone();
    if let Some(p) = &prev
        && p.inputs == inputs
    {
        if p.asked < asked || p.commits < commits {
            let same = Built {
                generation: p.generation,
                commits,
                asked,
                inputs,
                tables_generation: p.tables_generation,
                chart_data: p.chart_data.clone(),
                index: p.index.clone(),
                charts: p.charts.clone(),
                data: p.data.clone(),
                config: p.config.clone(),
                log: p.log.clone(),
                counters: p.counters.clone(),
            };
            state.pages.current.send_replace(Some(Arc::new(same)));
        }
        return Ok(None);
    }
    if let Some(p) = &prev
        && p.inputs.same_but_tables(&inputs)
    {
        // Only the tables changed: the data page alone.
        let data = Bytes::from(render::page(
            "Data",
            Links::Live.data(),
            &render::data_body(Links::Live, &inputs.archive, &inputs.tables),
            Links::Live,
        ));
        let same = Built {
            generation: p.generation,
            commits: commits.max(p.commits),
            asked: asked.max(p.asked),
            inputs,
            tables_generation: p.tables_generation + 1,
            chart_data: p.chart_data.clone(),
            index: p.index.clone(),
            charts: p.charts.clone(),
            data,
            config: p.config.clone(),
            log: p.log.clone(),
            counters: p.counters.clone(),
        };
        state.pages.current.send_replace(Some(Arc::new(same)));
        return Ok(None);
    }
    let chart_data = match &prev {
        Some(p) if p.inputs.archive == inputs.archive => p.chart_data.clone(),
        _ => Arc::new(ChartData::from_archive(state.store.clone()).await?),
    };
    let cfg = state.current_config();
    let min_reports = state.min_reports;
    let public_key = state.public_key.clone();
    let declared = match state.counters.clone() {
        Some(dir) => Some(
            tokio::task::spawn_blocking(move || {
                clearcount_protocol::config::DeclaredCounters::load_dir(&dir)
            })
            .await
            .map_err(|e| std::io::Error::other(format!("reading the counters failed: {e}")))?,
        ),
        None => None,
    };
    let data = chart_data.clone();
    let archive = inputs.archive.clone();
    let tables = inputs.tables.clone();
    let history = inputs.history.clone();
    let store_line = render::store_section(
        &state.store.describe(),
        &state.store.conditional_writes().describe(),
    );
    // Rendering the charts is the costly part: in the background too.
    let pages = super::background("clearcount-pages", move || {
        let config = cfg.as_ref().map(|c| &c.config);
        let l = Links::Live;
        let html = |title: &str, active: &str, body: &str| {
            Bytes::from(render::page(title, active, body, l))
        };
        Ok([
            html(
                "Transparent telemetry",
                l.home(),
                &render::index_body(l, archive.len(), config, min_reports),
            ),
            html(
                "Charts",
                l.charts(),
                &render::charts_body(&data, config, min_reports),
            ),
            html("Data", l.data(), &render::data_body(l, &archive, &tables)),
            html(
                "Config",
                l.config(),
                &(render::config_body(l, cfg.as_deref(), public_key.as_deref(), &history)
                    + &store_line),
            ),
            html(
                "Config log",
                l.config(),
                &render::log_body(l, cfg.as_ref().and_then(|c| c.log.as_deref())),
            ),
            html("Counters", COUNTERS, &counters_body(config, declared)),
        ])
    })
    .await?;
    let [index, charts, data, config, log, counters] = pages;
    Ok(Some(Built {
        generation,
        commits,
        asked,
        inputs,
        tables_generation: 0,
        chart_data,
        index,
        charts,
        data,
        config,
        log,
        counters,
    }))
}

/// The headers every response carries: a strict `Content-Security-Policy`
/// (see [`render::content_security_policy`]), `X-Content-Type-Options:
/// nosniff`, `Referrer-Policy: no-referrer`, and `X-Frame-Options: DENY`
/// for browsers without `frame-ancestors`.
pub(crate) async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(render::content_security_policy()),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

pub(crate) fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

pub(crate) fn raw(content_type: &'static str, body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

/// A page of the latest build, with its `ETag` (a `304` when the client
/// has it).
async fn cached(state: &AppState, headers: &HeaderMap, pick: fn(&Built) -> &Bytes) -> Response {
    cached_as(state, headers, pick, false).await
}

/// [`cached`]; the data page (`data`) also names its tables' builds in its
/// `ETag`.
async fn cached_as(
    state: &AppState,
    headers: &HeaderMap,
    pick: fn(&Built) -> &Bytes,
    data: bool,
) -> Response {
    let Some(built) = state.pages.get().await else {
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pages are being built; try again in a second",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let etag = match built.tables_generation {
        n if data && n > 0 => format!("\"g{}-{n}\"", built.generation),
        _ => format!("\"g{}\"", built.generation),
    };
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"g\""));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, etag),
        ],
        pick(&built).clone(),
    )
        .into_response()
}

/// The chart data of the latest build (the static site is published with
/// it after a merge).
pub(crate) async fn chart_data_after_refresh(state: &AppState) -> Option<Arc<ChartData>> {
    state.pages.refresh().await.map(|b| b.chart_data.clone())
}

pub(crate) async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached(&state, &headers, |b| &b.index).await
}

pub(crate) async fn charts(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached(&state, &headers, |b| &b.charts).await
}

pub(crate) async fn data_redirect() -> Redirect {
    Redirect::permanent("/data/")
}

pub(crate) async fn data_index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached_as(&state, &headers, |b| &b.data, true).await
}

pub(crate) async fn config(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached(&state, &headers, |b| &b.config).await
}

pub(crate) async fn log_redirect() -> Redirect {
    Redirect::permanent("/log/")
}

/// `/log/`: the config log as a page (its files are under it).
pub(crate) async fn log_index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached(&state, &headers, |b| &b.log).await
}

pub(crate) async fn counters(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    cached(&state, &headers, |b| &b.counters).await
}

pub(crate) async fn data_file(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Response {
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("ndjson") => "application/x-ndjson",
        Some("parquet") => "application/vnd.apache.parquet",
        Some("csv") => "text/csv; charset=utf-8",
        _ => return plain(StatusCode::NOT_FOUND, "no such archive file"),
    };
    if check_key(&file).is_err() {
        return plain(StatusCode::NOT_FOUND, "no such archive file");
    }
    stream_object(&state, &format!("archive/{file}"), content_type).await
}

/// Bytes read from a file per poll of a response body.
const CHUNK: usize = 16 * 1024;

/// Sends an object as the client reads it: one [`CHUNK`] is read when the
/// connection can take it, so a slow reader holds a connection and a chunk,
/// never a thread. Its `Content-Length` is the size of the object opened,
/// when the store tells it (DuckDB's `read_parquet` over HTTP needs it).
async fn stream_object(state: &AppState, key: &str, content_type: &'static str) -> Response {
    let (reader, size) = match state.store.open_sized(key).await {
        Ok(Some(r)) => r,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "not found"),
        Err(e) => {
            eprintln!("clearcount serve: cannot read {key}: {e}");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "cannot read the file");
        }
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK);
    let mut r = raw(content_type, Body::from_stream(stream));
    if let Some(n) = size {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

pub(crate) async fn config_text(State(state): State<Arc<AppState>>) -> Response {
    match state.current_config() {
        Some(c) => raw("text/plain; charset=utf-8", c.text.clone()),
        None => plain(StatusCode::NOT_FOUND, "no config"),
    }
}

pub(crate) async fn config_sig(State(state): State<Arc<AppState>>) -> Response {
    match state.current_config().and_then(|c| c.signature.clone()) {
        Some(s) => raw("text/plain; charset=utf-8", s),
        None => plain(StatusCode::NOT_FOUND, "no signature"),
    }
}

pub(crate) async fn public_key(State(state): State<Arc<AppState>>) -> Response {
    match &state.public_key {
        Some(k) => raw("text/plain; charset=utf-8", k.clone()),
        None => plain(StatusCode::NOT_FOUND, "no public key"),
    }
}

pub(crate) async fn history_file(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Response {
    if check_key(&file).is_err() || !(file.ends_with(".toml") || file.ends_with(".minisig")) {
        return plain(StatusCode::NOT_FOUND, "no such file");
    }
    match state.store.get(&format!("config/history/{file}")).await {
        Ok(Some(b)) => raw("text/plain; charset=utf-8", b),
        Ok(None) => plain(StatusCode::NOT_FOUND, "no such file"),
        Err(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "cannot read the file"),
    }
}

/// The link of the counters page (served live only).
const COUNTERS: &str = "/counters";

/// The body of the counters page: the declared counters (`None`: the
/// server was started without `--counters`), and whether `config` collects
/// each.
fn counters_body(
    config: Option<&clearcount_protocol::config::CollectionConfig>,
    declared: Option<
        Result<
            clearcount_protocol::config::DeclaredCounters,
            Vec<clearcount_protocol::config::ConfigError>,
        >,
    >,
) -> String {
    let mut body = String::from(
        r#"<h1>Declared counters</h1><p class="lead">Every counter a program may count, what it counts, and the question it answers. A counter is collected only if the collection config also lists it.</p>"#,
    );
    let collected: std::collections::BTreeSet<(String, String)> = config
        .map(|c| {
            c.programs
                .iter()
                .flat_map(|p| p.counters.iter().map(|c| (p.name.clone(), c.name.clone())))
                .collect()
        })
        .unwrap_or_default();
    let declared = match declared {
        None => {
            body.push_str(
                r#"<p class="muted">This server was started without <code>--counters</code>.</p>"#,
            );
            return body;
        }
        Some(Ok(d)) => d,
        Some(Err(errors)) => {
            body.push_str(r#"<p>The declared-counter files have errors:</p><ul>"#);
            for e in errors {
                let _ = write!(body, "<li><code>{}</code></li>", esc(&e.to_string()));
            }
            body.push_str("</ul>");
            return body;
        }
    };
    if declared.programs.is_empty() {
        body.push_str(r#"<p class="muted">No declared counters.</p>"#);
    }
    for p in &declared.programs {
        let _ = write!(
            body,
            r#"<h2>{}</h2><table><tr><th>counter</th><th>kind</th><th>what it counts</th><th>question</th><th>collected</th></tr>"#,
            esc(&p.program)
        );
        for c in &p.counters {
            let kind = match c.depth {
                Some(d) => format!("{} (≤ {d} frames)", c.kind),
                None => c.kind.to_string(),
            };
            let n_collected = c
                .names
                .iter()
                .filter(|n| collected.contains(&(p.program.clone(), (*n).clone())))
                .count();
            let coll = match n_collected {
                0 => "no".to_owned(),
                n if n == c.names.len() => "yes".to_owned(),
                n => format!("{n} of {} buckets", c.names.len()),
            };
            let _ = write!(
                body,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.pattern),
                esc(&kind),
                esc(&c.description),
                esc(&c.question),
                coll
            );
        }
        body.push_str("</table>");
    }
    body
}

pub(crate) async fn style() -> Response {
    raw("text/css; charset=utf-8", CSS)
}

pub(crate) async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found")
}
