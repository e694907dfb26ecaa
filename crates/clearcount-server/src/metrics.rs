//! Operators' metrics: `GET /metrics` in the OpenMetrics text format, on an
//! address of its own ([`crate::ServerOptions::metrics_addr`],
//! `--metrics-addr`), never on the public port; off unless given.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `clearcount_uploads_accepted_total` | counter | `result`: `stored`, `duplicate`, `nothing_kept` | uploads answered 2xx |
//! | `clearcount_uploads_refused_total` | counter | `reason`: `rate_limited`, `too_large`, `busy`, `timeout`, `unreadable`, `no_config`, `invalid`, `store_error` | uploads refused (429, 413, 503, 408, 400, 503, 400, 503) |
//! | `clearcount_connections_accepted_total` | counter | | connections served |
//! | `clearcount_connections_refused_total` | counter | `reason`: `over_cap` (answered 503), `overflow` (closed at once) | connections over `--max-connections` |
//! | `clearcount_connections_open` | gauge | | connections being served |
//! | `clearcount_merge_runs_total` | counter | `result`: `ok`, `failed` | scheduled merges (archive, tables, site) |
//! | `clearcount_merge_duration_seconds` | histogram | | how long each took |
//! | `clearcount_merge_last_success_timestamp_seconds` | gauge | | when the last one succeeded (Unix time) |
//! | `clearcount_archive_reports` | gauge | `week` | reports in the week's archive file, as last merged by this server |
//! | `clearcount_archive_weeks` | gauge | | weekly archive files |
//! | `clearcount_archive_bytes` | gauge | `format`: `ndjson`, `parquet`, `csv` | bytes of the archive and its tables, after the last merge |
//! | `clearcount_config_version` | gauge | | version of the config in force (0: none) |
//! | `clearcount_config_log_size` | gauge | | size of its config log's checkpoint (entries) |
//! | `clearcount_store_errors_total` | counter | `op`: the store operation | store operations that failed, anywhere |
//!
//! No metric carries anything about a sender: no address, no source hash,
//! no program or version (those are in the public archive, per week).

use super::AppState;
use super::store::{
    AsyncObjectReader, BoxFuture, Expect, Listing, ObjectReader, PutOutcome, Replaced, Store,
};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// One label with a fixed value.
type Label = [(&'static str, &'static str); 1];

/// Why an upload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The source's rate limit (429).
    RateLimited,
    /// Over the body limit (413).
    TooLarge,
    /// The budget of upload bytes in flight is spent (503).
    Busy,
    /// The body did not come in time (408).
    Timeout,
    /// The body could not be read (400).
    Unreadable,
    /// The server has no config (503).
    NoConfig,
    /// Not a valid report, or a week out of range (400).
    Invalid,
    /// The store failed (503).
    StoreError,
}

impl Refused {
    const ALL: [Refused; 8] = [
        Refused::RateLimited,
        Refused::TooLarge,
        Refused::Busy,
        Refused::Timeout,
        Refused::Unreadable,
        Refused::NoConfig,
        Refused::Invalid,
        Refused::StoreError,
    ];

    fn label(self) -> Label {
        [(
            "reason",
            match self {
                Refused::RateLimited => "rate_limited",
                Refused::TooLarge => "too_large",
                Refused::Busy => "busy",
                Refused::Timeout => "timeout",
                Refused::Unreadable => "unreadable",
                Refused::NoConfig => "no_config",
                Refused::Invalid => "invalid",
                Refused::StoreError => "store_error",
            },
        )]
    }
}

/// How an upload was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Stored (201).
    Stored,
    /// Already stored (200).
    Duplicate,
    /// Nothing of it is collected (200).
    NothingKept,
}

impl Accepted {
    fn label(self) -> Label {
        [(
            "result",
            match self {
                Accepted::Stored => "stored",
                Accepted::Duplicate => "duplicate",
                Accepted::NothingKept => "nothing_kept",
            },
        )]
    }
}

/// The store operations counted in `clearcount_store_errors_total`.
const STORE_OPS: [&str; 9] = [
    "put_if_absent",
    "put",
    "replace_file",
    "version",
    "get",
    "open",
    "open_async",
    "list",
    "delete",
];

/// The server's metrics, and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    accepted: Family<Label, Counter>,
    refused: Family<Label, Counter>,
    connections: Counter,
    connections_refused: Family<Label, Counter>,
    connections_open: Gauge,
    merge_runs: Family<Label, Counter>,
    merge_duration: Histogram,
    merge_last_success: Gauge<f64, AtomicU64>,
    archive_reports: Family<[(&'static str, String); 1], Gauge>,
    archive_weeks: Gauge,
    archive_bytes: Family<Label, Gauge>,
    config_version: Gauge,
    config_log_size: Gauge,
    store_errors: Family<Label, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("clearcount"),
            accepted: Family::default(),
            refused: Family::default(),
            connections: Counter::default(),
            connections_refused: Family::default(),
            connections_open: Gauge::default(),
            merge_runs: Family::default(),
            merge_duration: Histogram::new(exponential_buckets(0.01, 4.0, 8)),
            merge_last_success: Gauge::default(),
            archive_reports: Family::default(),
            archive_weeks: Gauge::default(),
            archive_bytes: Family::default(),
            config_version: Gauge::default(),
            config_log_size: Gauge::default(),
            store_errors: Family::default(),
        };
        // Every label value shows from the first scrape on, at 0.
        for a in [Accepted::Stored, Accepted::Duplicate, Accepted::NothingKept] {
            let _ = m.accepted.get_or_create(&a.label());
        }
        for r in Refused::ALL {
            let _ = m.refused.get_or_create(&r.label());
        }
        for r in ["over_cap", "overflow"] {
            let _ = m.connections_refused.get_or_create(&[("reason", r)]);
        }
        for r in ["ok", "failed"] {
            let _ = m.merge_runs.get_or_create(&[("result", r)]);
        }
        for f in ["ndjson", "parquet", "csv"] {
            let _ = m.archive_bytes.get_or_create(&[("format", f)]);
        }
        for op in STORE_OPS {
            let _ = m.store_errors.get_or_create(&[("op", op)]);
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "uploads_accepted",
            "Uploads answered 2xx, by result",
            self.accepted.clone(),
        );
        r.register(
            "uploads_refused",
            "Uploads refused, by reason",
            self.refused.clone(),
        );
        r.register(
            "connections_accepted",
            "Connections served",
            self.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections over the connection cap: answered 503 (over_cap) or closed at once (overflow)",
            self.connections_refused.clone(),
        );
        r.register(
            "connections_open",
            "Connections being served",
            self.connections_open.clone(),
        );
        r.register(
            "merge_runs",
            "Scheduled merges (archive, tables, static site), by result",
            self.merge_runs.clone(),
        );
        r.register_with_unit(
            "merge_duration",
            "How long each scheduled merge took",
            Unit::Seconds,
            self.merge_duration.clone(),
        );
        r.register_with_unit(
            "merge_last_success_timestamp",
            "When the last scheduled merge succeeded (Unix time)",
            Unit::Seconds,
            self.merge_last_success.clone(),
        );
        r.register(
            "archive_reports",
            "Reports in a week's archive file, as last merged by this server",
            self.archive_reports.clone(),
        );
        r.register(
            "archive_weeks",
            "Weekly archive files",
            self.archive_weeks.clone(),
        );
        r.register_with_unit(
            "archive",
            "Bytes of the archive files and their tables, by format, after the last merge",
            Unit::Bytes,
            self.archive_bytes.clone(),
        );
        r.register(
            "config_version",
            "Version of the collection config in force (0: none)",
            self.config_version.clone(),
        );
        r.register(
            "config_log_size",
            "Entries in the config log's checkpoint",
            self.config_log_size.clone(),
        );
        r.register(
            "store_errors",
            "Store operations that failed, by operation",
            self.store_errors.clone(),
        );
        self
    }

    /// Counts an accepted upload.
    pub(crate) fn accepted(&self, a: Accepted) {
        self.accepted.get_or_create(&a.label()).inc();
    }

    /// Counts a refused upload.
    pub(crate) fn refused(&self, r: Refused) {
        self.refused.get_or_create(&r.label()).inc();
    }

    /// Counts a connection served, and holds it open until dropped.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.connections.inc();
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    /// Counts a connection over the cap: `answered` with a 503, or closed.
    pub(crate) fn connection_refused(&self, answered: bool) {
        let reason = if answered { "over_cap" } else { "overflow" };
        self.connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Records a scheduled merge that took `secs`.
    pub(crate) fn merge_run(&self, ok: bool, secs: f64) {
        let result = if ok { "ok" } else { "failed" };
        self.merge_runs.get_or_create(&[("result", result)]).inc();
        self.merge_duration.observe(secs);
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.merge_last_success.set(now);
        }
    }

    /// Records the reports of a week's archive file, as merged.
    pub(crate) fn archive_week(&self, week: &str, reports: u64) {
        self.archive_reports
            .get_or_create(&[("week", week.to_owned())])
            .set(i64::try_from(reports).unwrap_or(i64::MAX));
    }

    /// Records the archive's files after a merge, from a listing of
    /// `archive/`.
    pub(crate) fn archive_listing(&self, listing: &Listing) {
        let mut weeks = 0;
        for format in ["ndjson", "parquet", "csv"] {
            let files = listing
                .objects
                .iter()
                .filter(|o| o.key.ends_with(&format!(".{format}")));
            let bytes: u64 = files.clone().map(|o| o.size).sum();
            if format == "ndjson" {
                weeks = files.count();
            }
            self.archive_bytes
                .get_or_create(&[("format", format)])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.archive_weeks
            .set(i64::try_from(weeks).unwrap_or(i64::MAX));
    }

    fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&[("op", op)]).inc();
    }

    /// The OpenMetrics text of every metric.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A connection being served: [`Metrics::connection`] until dropped.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The OpenMetrics media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`.
async fn scrape(State(state): State<Arc<AppState>>) -> Response {
    let m = &state.metrics;
    let cfg = state.current_config();
    m.config_version.set(
        cfg.as_ref()
            .map_or(0, |c| i64::try_from(c.config.version).unwrap_or(i64::MAX)),
    );
    m.config_log_size.set(
        cfg.as_ref()
            .and_then(|c| c.log.as_ref())
            .map_or(0, |l| i64::try_from(l.size()).unwrap_or(i64::MAX)),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode()).into_response()
}

/// Serves `/metrics` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("clearcount serve: the metrics listener stopped: {e}");
    }
}

/// A store that counts its failed operations in
/// `clearcount_store_errors_total` and otherwise is `inner`.
pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    pub(crate) fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn count<T>(&self, op: &'static str, r: std::io::Result<T>) -> std::io::Result<T> {
        if r.is_err() {
            self.metrics.store_error(op);
        }
        r
    }
}

impl Store for MeteredStore {
    fn put_if_absent<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, PutOutcome> {
        Box::pin(
            async move { self.count("put_if_absent", self.inner.put_if_absent(key, bytes).await) },
        )
    }

    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.count("put", self.inner.put(key, bytes).await) })
    }

    fn replace_file<'a>(
        &'a self,
        key: &'a str,
        path: &'a Path,
        expect: Expect,
    ) -> BoxFuture<'a, Replaced> {
        Box::pin(async move {
            self.count(
                "replace_file",
                self.inner.replace_file(key, path, expect).await,
            )
        })
    }

    fn version<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.count("version", self.inner.version(key).await) })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.count("get", self.inner.get(key).await) })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<ObjectReader>> {
        Box::pin(async move { self.count("open", self.inner.open(key).await) })
    }

    fn open_async<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<AsyncObjectReader>> {
        Box::pin(async move { self.count("open_async", self.inner.open_async(key).await) })
    }

    fn open_sized<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Option<(AsyncObjectReader, Option<u64>)>> {
        Box::pin(async move { self.count("open_async", self.inner.open_sized(key).await) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Listing> {
        Box::pin(async move { self.count("list", self.inner.list(prefix).await) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.count("delete", self.inner.delete(key).await) })
    }

    fn scratch_dir(&self) -> PathBuf {
        self.inner.scratch_dir()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn conditional_writes(&self) -> super::store::ConditionalWrites {
        self.inner.conditional_writes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text is OpenMetrics: every family has its HELP and TYPE, every
    /// label value shows at 0 before anything happened, and it ends with
    /// `# EOF`.
    #[test]
    fn every_family_shows_from_the_start_and_the_text_ends_with_eof() {
        let m = Metrics::new();
        m.refused(Refused::RateLimited);
        m.connection_refused(true);
        let open = m.connection();
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in [
            "# TYPE clearcount_uploads_refused counter",
            "clearcount_uploads_refused_total{reason=\"rate_limited\"} 1",
            "clearcount_uploads_refused_total{reason=\"store_error\"} 0",
            "clearcount_uploads_accepted_total{result=\"nothing_kept\"} 0",
            "clearcount_connections_refused_total{reason=\"over_cap\"} 1",
            "clearcount_connections_open 1",
            "# UNIT clearcount_merge_duration_seconds seconds",
            "clearcount_store_errors_total{op=\"replace_file\"} 0",
            "clearcount_archive_bytes{format=\"parquet\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        drop(open);
        assert!(
            m.encode()
                .lines()
                .any(|l| l == "clearcount_connections_open 0")
        );
    }
}
