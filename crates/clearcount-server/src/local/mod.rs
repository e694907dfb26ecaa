//! The local view: one installation's own telemetry as pages, for the
//! person at that machine (`clearcount --namespace NS view --web`).
//!
//! | path (under `/<token>/`) | what |
//! |---|---|
//! | `` | this week's counts, live (read at each request), the mode, the counter files |
//! | `reports` | every local report, sent or not and why, with its counts |
//! | `charts` | the public pages' charts (`render.rs`, `charts.rs`), drawn from the local reports and this week's counts |
//! | `upload` | the uploader's state, and the exact bytes the next upload would send |
//!
//! The data comes from a [`LocalSource`] (the `clearcount` crate reads the
//! telemetry directory); this module only serves it, through the public
//! server's renderer, charts, connection layer and security headers.
//!
//! **Who can see it.** The server listens on `127.0.0.1` only (any other
//! address is refused), on a free port unless told one. Every page is
//! under a path made of a random 128-bit token (`/<token>/`): a request
//! without it gets `403 Forbidden`, so other users of the machine, and web
//! pages in the browser that guess the port, cannot read the data. The
//! pages carry the public server's security headers (a strict
//! `Content-Security-Policy`, no script at all, `nosniff`, `no-referrer`,
//! `DENY` framing) and `Cache-Control: no-store`.
//!
//! **When it stops.** On Ctrl-C (or SIGTERM), or after
//! [`ViewOptions::idle_timeout`] without a request that had the token.

mod pages;

use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::pages::{plain, security_headers};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use clearcount_protocol::report::Report;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One installation's data at one moment, as the pages show it.
#[derive(Debug, Clone, Default)]
pub struct LocalData {
    /// The namespace (`mytool`).
    pub namespace: String,
    /// The mode in force and why, in words (`local (the default)`).
    pub mode: String,
    /// What users type to reach the telemetry commands
    /// (`clearcount --namespace mytool`, `mytool telemetry`).
    pub command: String,
    /// The telemetry directory.
    pub dir: String,
    /// The first day of this week, if the installation has counted.
    pub week_begin: Option<String>,
    /// This week's counter files: the path, and why it cannot be read.
    pub files: Vec<(String, Option<String>)>,
    /// This week's plain counters, summed over the files (as `status
    /// --json` prints them).
    pub counters: BTreeMap<String, u64>,
    /// This week's stack counters, summed over the files.
    pub stacks: BTreeMap<String, u64>,
    /// This week's counts as a report of the week so far (one program
    /// build each), for the charts.
    pub this_week: Option<Report>,
    /// Every local report, oldest first.
    pub reports: Vec<LocalReport>,
    /// The uploader's state, in words (the lines of `status`).
    pub upload: Vec<String>,
}

/// One local report and what became of it.
#[derive(Debug, Clone)]
pub struct LocalReport {
    /// The week (its first day).
    pub week: String,
    /// Sent or not, and why, in words.
    pub fate: String,
    /// The full local report, or why it cannot be read.
    pub report: Result<Report, String>,
}

/// What the next upload would send, week by week.
#[derive(Debug, Clone, Default)]
pub struct NextUpload {
    /// Notes on the whole (the mode is not `on`; why nothing can be
    /// computed).
    pub notes: Vec<String>,
    /// The weeks the next upload would look at.
    pub weeks: Vec<NextWeek>,
}

/// One week of the next upload.
#[derive(Debug, Clone)]
pub struct NextWeek {
    /// The week.
    pub week: String,
    /// What would happen to it, in words.
    pub what: String,
    /// The bytes shown: exactly what would be sent, or (when it cannot be
    /// decided now) the full local report, as `what` says.
    pub bytes: Option<String>,
}

/// Where the local view reads its data; called on a blocking thread for
/// each request of a page.
pub trait LocalSource: Send + Sync + 'static {
    /// This week's counts, the reports and the uploader's state (reads
    /// files; cheap).
    fn data(&self) -> LocalData;
    /// What the next upload would send: the same decision the upload
    /// takes, sending nothing (may fetch the signed config).
    fn next_upload(&self) -> NextUpload;
}

/// How the local view is served.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Where to listen: `127.0.0.1`, port 0 for a free one.
    pub addr: SocketAddr,
    /// Stop after this long without a request that had the token.
    pub idle_timeout: Duration,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            idle_timeout: DEFAULT_IDLE,
        }
    }
}

/// The default idle timeout: 30 minutes.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);

/// Why the view stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Ctrl-C or SIGTERM.
    Signal,
    /// No request for [`ViewOptions::idle_timeout`].
    Idle,
}

/// Checks that `addr` is on 127.0.0.1: the view of one's own data is never
/// served to the network.
pub fn check_addr(addr: SocketAddr) -> Result<(), String> {
    if addr.ip() == std::net::IpAddr::V4(Ipv4Addr::LOCALHOST) {
        Ok(())
    } else {
        Err(format!(
            "the local view listens on 127.0.0.1 only, not {addr}"
        ))
    }
}

/// A fresh random token: 128 bits, as 32 hex digits.
fn new_token() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for the token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Equality that takes the same time wherever two strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

pub(crate) struct ViewState {
    token: String,
    source: Arc<dyn LocalSource>,
    started: Instant,
    /// Milliseconds from `started` to the last request with the token.
    last: AtomicU64,
}

impl ViewState {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Refuses any request whose path does not start with the token.
async fn guard(State(state): State<Arc<ViewState>>, req: Request, next: Next) -> Response {
    let first = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if !same(first.as_bytes(), state.token.as_bytes()) {
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: open the URL that `view --web` printed (it holds a random token)",
        );
    }
    state.touch();
    next.run(req).await
}

/// Nothing of the local view is kept by the browser or a proxy.
async fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn router(state: Arc<ViewState>) -> Router {
    Router::new()
        .route("/{token}", get(to_home))
        .route("/{token}/", get(pages::home))
        .route("/{token}/reports", get(pages::reports))
        .route("/{token}/charts", get(pages::charts))
        .route("/{token}/upload", get(pages::upload))
        .fallback(crate::pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::map_response(no_store))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn to_home(State(state): State<Arc<ViewState>>) -> Response {
    Redirect::to(&format!("/{}/", state.token)).into_response()
}

/// Serves the local view until `shutdown` completes or it is idle for
/// [`ViewOptions::idle_timeout`]. Sends the view's URL
/// (`http://127.0.0.1:PORT/<token>/`) on `ready` once listening.
pub async fn serve(
    opts: ViewOptions,
    source: Arc<dyn LocalSource>,
    ready: Option<tokio::sync::oneshot::Sender<String>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, String> {
    check_addr(opts.addr)?;
    let token = new_token()?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.addr))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let state = Arc::new(ViewState {
        token: token.clone(),
        source,
        started: Instant::now(),
        last: AtomicU64::new(0),
    });
    if let Some(tx) = ready {
        let _ = tx.send(format!("http://{addr}/{token}/"));
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Stopped>();
    let idle = opts.idle_timeout;
    let watched = state.clone();
    let stop = async move {
        let why = tokio::select! {
            () = shutdown => Stopped::Signal,
            () = idle_until(watched, idle) => Stopped::Idle,
        };
        let _ = stop_tx.send(why);
    };
    let limits = Limits::default();
    crate::listen::serve(
        listener,
        router(state),
        &limits,
        Arc::new(Metrics::new()),
        stop,
    )
    .await?;
    Ok(stop_rx.await.unwrap_or(Stopped::Signal))
}

/// Completes once no request with the token came for `idle`.
async fn idle_until(state: Arc<ViewState>, idle: Duration) {
    loop {
        let quiet = state.idle_for();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// Builds a small runtime and serves the local view until Ctrl-C,
/// SIGTERM or the idle timeout. `ready` gets the URL once listening.
pub fn run_blocking(
    opts: ViewOptions,
    source: Arc<dyn LocalSource>,
    ready: impl FnOnce(&str) + Send + 'static,
) -> Result<Stopped, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(serve(opts, source, Some(tx), crate::shutdown_signal()));
        if let Ok(url) = rx.await {
            ready(&url);
        }
        server
            .await
            .map_err(|e| format!("the view's task failed: {e}"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_random_tokens() {
        assert!(check_addr("127.0.0.1:0".parse().unwrap()).is_ok());
        for a in ["0.0.0.0:8080", "192.168.1.2:80", "[::1]:80", "127.0.0.2:80"] {
            let e = check_addr(a.parse().unwrap()).unwrap_err();
            assert!(e.contains("127.0.0.1 only"), "{a}: {e}");
        }
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert!(same(a.as_bytes(), a.clone().as_bytes()));
        assert!(!same(a.as_bytes(), b.as_bytes()));
        assert!(!same(a.as_bytes(), &a.as_bytes()[..31]));
    }
}
