//! The public pages: plain HTML with inline CSS and SVG, no JavaScript.
//!
//! | path | what |
//! |---|---|
//! | `/` | what this is, links |
//! | `/charts` | per program: versions, OS, arch, every counter's buckets over the weeks |
//! | `/data/` and `/data/<week>.ndjson` | the archive files, downloadable |
//! | `/config` | the config in force, its signature, the public key, every version served |
//! | `/config.toml`, `/config.toml.minisig`, `/public.key`, `/config/history/<file>` | the same as raw files |
//! | `/counters` | the declared counters with their descriptions |

use super::AppState;
use super::charts::{ChartData, esc};
use super::render::{self, CSS, Links};
use super::store::{self, ObjectMeta, check_key};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write;
use std::sync::Arc;

/// A page of the layout in [`render::page`], as an HTML response.
fn page(title: &str, active: &str, body: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        render::page(title, active, body, Links::Live),
    )
        .into_response()
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn raw(content_type: &'static str, body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

async fn archive_files(state: &AppState) -> Vec<ObjectMeta> {
    store::archive_files(&*state.store)
        .await
        .unwrap_or_else(|e| {
            eprintln!("clearcount serve: cannot list the archive: {e}");
            Vec::new()
        })
}

/// The chart data, recomputed when the archive files changed (by name or
/// size) since the last computation.
pub(crate) async fn chart_data(state: &AppState) -> std::io::Result<Arc<ChartData>> {
    let files = archive_files(state).await;
    if let Ok(g) = state.charts.lock()
        && let Some((seen, data)) = &*g
        && *seen == files
    {
        return Ok(data.clone());
    }
    let data = Arc::new(ChartData::from_archive(state.store.clone()).await?);
    if let Ok(mut g) = state.charts.lock() {
        *g = Some((files, data.clone()));
    }
    Ok(data)
}

pub(crate) async fn index(State(state): State<Arc<AppState>>) -> Response {
    let files = archive_files(&state).await;
    let cfg = state.current_config();
    let body = render::index_body(
        Links::Live,
        files.len(),
        cfg.as_ref().map(|c| &c.config),
        state.min_reports,
    );
    page("Transparent telemetry", Links::Live.home(), &body)
}

pub(crate) async fn charts(State(state): State<Arc<AppState>>) -> Response {
    let data = match chart_data(&state).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("clearcount serve: cannot read the archive: {e}");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "cannot read the archive");
        }
    };
    let cfg = state.current_config();
    let body = render::charts_body(&data, cfg.as_ref().map(|c| &c.config), state.min_reports);
    page("Charts", Links::Live.charts(), &body)
}

pub(crate) async fn data_redirect() -> Redirect {
    Redirect::permanent("/data/")
}

pub(crate) async fn data_index(State(state): State<Arc<AppState>>) -> Response {
    let files = archive_files(&state).await;
    let body = render::data_body(Links::Live, &files);
    page("Data", Links::Live.data(), &body)
}

pub(crate) async fn data_file(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
) -> Response {
    if !file.ends_with(".ndjson") || check_key(&file).is_err() {
        return plain(StatusCode::NOT_FOUND, "no such archive file");
    }
    stream_object(&state, &format!("archive/{file}"), "application/x-ndjson").await
}

/// Streams an object in 64 KiB chunks (memory does not grow with its size).
async fn stream_object(state: &AppState, key: &str, content_type: &'static str) -> Response {
    let reader = match state.store.open(key).await {
        Ok(Some(r)) => r,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "not found"),
        Err(e) => {
            eprintln!("clearcount serve: cannot read {key}: {e}");
            return plain(StatusCode::SERVICE_UNAVAILABLE, "cannot read the file");
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf.into())).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = tokio_util::io::ReaderStream::new(ChannelReader {
        rx,
        buf: axum::body::Bytes::new(),
    });
    raw(content_type, Body::from_stream(stream))
}

use std::io::Read as _;

/// An async reader over chunks received from a blocking reader thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<axum::body::Bytes>>,
    buf: axum::body::Bytes,
}

impl tokio::io::AsyncRead for ChannelReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if !this.buf.is_empty() {
                let n = out.remaining().min(this.buf.len());
                out.put_slice(&this.buf[..n]);
                this.buf = this.buf.slice(n..);
                return Poll::Ready(Ok(()));
            }
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(b))) => this.buf = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
            }
        }
    }
}

pub(crate) async fn config(State(state): State<Arc<AppState>>) -> Response {
    let cfg = state.current_config();
    let history = state
        .store
        .list("config/history/")
        .await
        .map(|l| l.objects)
        .unwrap_or_default();
    let body = render::config_body(
        Links::Live,
        cfg.as_deref(),
        state.public_key.as_deref(),
        &history,
    );
    page("Config", Links::Live.config(), &body)
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

pub(crate) async fn counters(State(state): State<Arc<AppState>>) -> Response {
    let mut body = String::from(
        r#"<h1>Declared counters</h1><p class="lead">Every counter a program may count, what it counts, and the question it answers. A counter is collected only if the collection config also lists it.</p>"#,
    );
    let collected: std::collections::BTreeSet<(String, String)> = state
        .current_config()
        .map(|c| {
            c.config
                .programs
                .iter()
                .flat_map(|p| p.counters.iter().map(|c| (p.name.clone(), c.name.clone())))
                .collect()
        })
        .unwrap_or_default();
    let Some(dir) = state.counters.clone() else {
        body.push_str(
            r#"<p class="muted">This server was started without <code>--counters</code>.</p>"#,
        );
        return page("Counters", COUNTERS, &body);
    };
    let loaded = tokio::task::spawn_blocking(move || {
        clearcount_protocol::config::DeclaredCounters::load_dir(&dir)
    })
    .await;
    let declared = match loaded {
        Ok(Ok(d)) => d,
        Ok(Err(errors)) => {
            body.push_str(r#"<p>The declared-counter files have errors:</p><ul>"#);
            for e in errors {
                let _ = write!(body, "<li><code>{}</code></li>", esc(&e.to_string()));
            }
            body.push_str("</ul>");
            return page("Counters", COUNTERS, &body);
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read counters"),
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
    page("Counters", COUNTERS, &body)
}

pub(crate) async fn style() -> Response {
    raw("text/css; charset=utf-8", CSS)
}

pub(crate) async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found")
}
