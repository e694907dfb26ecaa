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

use super::charts::{ChartData, esc};
use super::store::{ObjectMeta, check_key};
use super::{AppState, LoadedConfig};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::fmt::Write;
use std::sync::Arc;

const CSS: &str = r#"
:root{--fg:#1d2430;--muted:#5b6575;--line:#e3e6ea;--accent:#0b62a4;--bg:#fbfbfc}
*{box-sizing:border-box}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line)}
header .in,main{max-width:1000px;margin:0 auto;padding:0 20px}
header .in{display:flex;align-items:center;gap:24px;height:56px}
header .brand{font-weight:700;font-size:18px;color:var(--fg);text-decoration:none}
nav a{color:var(--muted);text-decoration:none;margin-right:16px}
nav a:hover,nav a.on{color:var(--accent)}
main{padding-top:8px;padding-bottom:48px}
h1{font-size:28px;margin:24px 0 8px}h2{font-size:21px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}
a{color:var(--accent)}
p.lead{color:var(--muted);font-size:18px;margin-top:0}
.muted{color:var(--muted)}
figure{margin:12px 0 24px;background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px}
figcaption{font-weight:600;margin-bottom:6px}
svg.chart{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px;overflow:auto;font-size:13px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:20px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px}
.card a{font-weight:600}
"#;

fn page(title: &str, active: &str, body: &str) -> Response {
    let mut nav = String::new();
    for (href, label) in [
        ("/charts", "Charts"),
        ("/data/", "Data"),
        ("/config", "Config"),
        ("/counters", "Counters"),
    ] {
        let class = if href == active { r#" class="on""# } else { "" };
        let _ = write!(nav, r#"<a href="{href}"{class}>{label}</a>"#);
    }
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · clearcount</title><style>{CSS}</style></head><body><header><div class="in"><a class="brand" href="/">clearcount</a><nav>{nav}</nav></div></header><main>{body}</main></body></html>"#,
        esc(title)
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
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

fn human_size(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

async fn archive_files(state: &AppState) -> Vec<ObjectMeta> {
    match state.store.list("archive/").await {
        Ok(l) => l
            .objects
            .into_iter()
            .filter(|o| o.key.ends_with(".ndjson"))
            .collect(),
        Err(e) => {
            eprintln!("clearcount serve: cannot list the archive: {e}");
            Vec::new()
        }
    }
}

/// The chart data, recomputed when the archive files changed (by name or
/// size) since the last computation.
async fn chart_data(state: &AppState) -> std::io::Result<Arc<ChartData>> {
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
    let version = cfg
        .as_ref()
        .map_or("none".to_owned(), |c| c.config.version.to_string());
    let programs = cfg.as_ref().map_or(0, |c| c.config.programs.len());
    let body = format!(
        r#"<h1>Transparent telemetry</h1>
<p class="lead">This server collects anonymous weekly counter reports from the programs listed in its collection config, and publishes every report it keeps.</p>
<p>Programs count how often things happen (a command run, a flag used, a crash site) in a file on the user's machine. Once a week, a small random sample of installations sends a report: the week, a random number, and the counts of the counters this config declares. There is no identifier of any kind, no time finer than the week, and the server never records the sender's address.</p>
<div class="cards">
<div class="card"><a href="/charts">Charts</a><div class="muted">Versions, systems and counters over the weeks.</div></div>
<div class="card"><a href="/data/">Data</a><div class="muted">Every kept report, one file per week ({} files).</div></div>
<div class="card"><a href="/config">Config</a><div class="muted">The signed collection config (version {}, {} programs) and its history.</div></div>
<div class="card"><a href="/counters">Counters</a><div class="muted">What each counter counts and why.</div></div>
</div>
<h2>How a report is kept</h2>
<p>Reports are sent with <code>POST /upload</code>. Malformed reports are refused with a reason. Programs, versions, systems and counters the config does not declare are dropped before anything is written. What is left is stored once, however often it is sent, and merged into the weekly archive. Charts count the reports that have a bucket, and show no bucket seen in fewer than {} reports in a week.</p>"#,
        files.len(),
        esc(&version),
        programs,
        state.min_reports
    );
    page("Transparent telemetry", "/", &body)
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
    let mut body = String::from("<h1>Charts</h1>");
    let _ = write!(
        body,
        r#"<p class="lead">{} reports over {} weeks. Each chart counts the reports that have a bucket; a bucket seen in fewer than {} reports in a week is not shown.</p>"#,
        data.total,
        data.weeks.len(),
        state.min_reports
    );
    // Programs: those the config declares, then any others in the archive.
    let mut programs: Vec<(String, Vec<String>)> = cfg
        .as_ref()
        .map(|c| {
            c.config
                .programs
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.counters.iter().map(|c| c.name.clone()).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for name in data.programs.keys() {
        if !programs.iter().any(|(p, _)| p == name) {
            programs.push((name.clone(), Vec::new()));
        }
    }
    if programs.is_empty() || data.total == 0 {
        body.push_str(r#"<p class="muted">No reports in the archive yet.</p>"#);
    }
    if programs.len() > 1 {
        body.push_str("<p>Programs: ");
        for (i, (p, _)) in programs.iter().enumerate() {
            let sep = if i > 0 { " · " } else { "" };
            let _ = write!(body, r##"{sep}<a href="#p-{0}">{0}</a>"##, esc(p));
        }
        body.push_str("</p>");
    }
    for (program, declared) in &programs {
        let reports: u64 = data
            .programs
            .get(program)
            .map_or(0, |t| t.reports.values().sum());
        let _ = write!(
            body,
            r#"<h2 id="p-{0}">{0}</h2><p class="muted">{1} reports.</p>"#,
            esc(program),
            reports
        );
        for chart in data.to_charts(program, declared, state.min_reports) {
            let note = if chart.hidden > 0 {
                format!(
                    r#" <span class="muted">({} more buckets not shown)</span>"#,
                    chart.hidden
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<figure><figcaption>{}{note}</figcaption>{}</figure>",
                esc(&chart.title),
                chart.to_svg()
            );
        }
    }
    page("Charts", "/charts", &body)
}

pub(crate) async fn data_redirect() -> Redirect {
    Redirect::permanent("/data/")
}

pub(crate) async fn data_index(State(state): State<Arc<AppState>>) -> Response {
    let files = archive_files(&state).await;
    let mut body = String::from(
        r#"<h1>Data</h1><p class="lead">Every report the server kept, one newline-delimited JSON file per week (one report per line, as stored). Rebuilt from the stored reports; the same reports give the same bytes.</p>"#,
    );
    if files.is_empty() {
        body.push_str(r#"<p class="muted">No archive files yet.</p>"#);
    } else {
        body.push_str("<table><tr><th>week</th><th>file</th><th>size</th></tr>");
        for f in files.iter().rev() {
            let name = f.name();
            let week = name.strip_suffix(".ndjson").unwrap_or(name);
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td><a href="/data/{}" download>{}</a></td><td class="n">{}</td></tr>"#,
                esc(week),
                esc(name),
                esc(name),
                human_size(f.size)
            );
        }
        body.push_str("</table>");
    }
    page("Data", "/data/", &body)
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
    let cfg: Option<Arc<LoadedConfig>> = state.current_config();
    let mut body = String::from("<h1>Collection config</h1>");
    match &cfg {
        None => body.push_str(
            r#"<p class="lead">This server has no collection config: it accepts no reports.</p>"#,
        ),
        Some(c) => {
            let status = if c.verified {
                "its signature was verified with the public key below"
            } else {
                "its signature was <strong>not</strong> checked by this server (no public key configured)"
            };
            let _ = write!(
                body,
                r#"<p class="lead">Version {} is in force; {status}. Clients verify it themselves before using it.</p><h2>config.toml</h2><p><a href="/config.toml">raw</a></p><pre><code>{}</code></pre>"#,
                c.config.version,
                esc(&c.text)
            );
            match &c.signature {
                Some(sig) => {
                    let _ = write!(
                        body,
                        r#"<h2>Signature</h2><p><a href="/config.toml.minisig">config.toml.minisig</a> (minisign, Ed25519)</p><pre><code>{}</code></pre>"#,
                        esc(sig)
                    );
                }
                None => body.push_str(r#"<h2>Signature</h2><p class="muted">None.</p>"#),
            }
        }
    }
    match &state.public_key {
        Some(pk) => {
            let _ = write!(
                body,
                r#"<h2>Public key</h2><p><a href="/public.key">public.key</a>. Verify with <code>minisign -Vm config.toml -p public.key</code>.</p><pre><code>{}</code></pre>"#,
                esc(pk)
            );
        }
        None => body.push_str(r#"<h2>Public key</h2><p class="muted">Not configured.</p>"#),
    }
    body.push_str("<h2>History</h2><p>Every config version this server has used.</p>");
    let hist = state
        .store
        .list("config/history/")
        .await
        .map(|l| l.objects)
        .unwrap_or_default();
    let mut versions: Vec<(u64, &ObjectMeta)> = hist
        .iter()
        .filter_map(|o| {
            let v = o.name().strip_prefix('v')?.strip_suffix(".toml")?;
            Some((v.parse().ok()?, o))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    if versions.is_empty() {
        body.push_str(r#"<p class="muted">None yet.</p>"#);
    } else {
        body.push_str("<table><tr><th>version</th><th>config</th><th>signature</th></tr>");
        for (v, o) in versions {
            let sig_name = format!("{}.minisig", o.name());
            let sig = if hist.iter().any(|h| h.name() == sig_name) {
                format!(r#"<a href="/config/history/{0}">{0}</a>"#, esc(&sig_name))
            } else {
                r#"<span class="muted">none</span>"#.to_owned()
            };
            let _ = write!(
                body,
                r#"<tr><td>{v}</td><td><a href="/config/history/{0}">{0}</a></td><td>{sig}</td></tr>"#,
                esc(o.name())
            );
        }
        body.push_str("</table>");
    }
    page("Config", "/config", &body)
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
        return page("Counters", "/counters", &body);
    };
    let loaded =
        tokio::task::spawn_blocking(move || crate::config::DeclaredCounters::load_dir(&dir)).await;
    let declared = match loaded {
        Ok(Ok(d)) => d,
        Ok(Err(errors)) => {
            body.push_str(r#"<p>The declared-counter files have errors:</p><ul>"#);
            for e in errors {
                let _ = write!(body, "<li><code>{}</code></li>", esc(&e.to_string()));
            }
            body.push_str("</ul>");
            return page("Counters", "/counters", &body);
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
    page("Counters", "/counters", &body)
}

pub(crate) async fn style() -> Response {
    raw("text/css; charset=utf-8", CSS)
}

pub(crate) async fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "not found")
}
