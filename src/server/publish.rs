//! Static publishing: the public pages written into the store under
//! `site/`, so that a plain web server or a CDN can publish the archive
//! straight from the directory or the bucket, with `clearcount serve` kept
//! only for ingest.
//!
//! | key | what |
//! |---|---|
//! | `site/index.html` | what this is, links |
//! | `site/charts.html` | the charts of `/charts` (same data, same SVG) |
//! | `site/data.html` | the weekly archive files, linking to `../archive/<week>.ndjson` |
//! | `site/config.html` | the config in force, its signature, the public key, every version used (linking to `../config/history/`) |
//! | `site/config.toml`, `site/config.toml.minisig`, `site/public.key` | copies of `config/current.toml`, its signature and the key |
//!
//! Every link is relative, so the pages work wherever the store's root is
//! published (`https://telemetry.example.org/site/index.html` with the
//! archive at `https://telemetry.example.org/archive/…`). The archive files
//! are not copied: `archive/` is published as it is.
//!
//! Each object is written atomically, so a reader sees an old page or a new
//! one. Pages are rebuilt from the store alone (archive and
//! `config/current.toml`), so any instance or job can publish, any number of
//! times; two publishes at once write the same pages from the same archive.
//! `clearcount merge` publishes after it merged (see
//! [`super::merge::merge_blocking`]).

use super::charts::{ChartData, esc};
use super::store::{ObjectMeta, Store};
use crate::config::CollectionConfig;
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;

/// Prefix of the static site in the store.
pub const SITE_PREFIX: &str = "site/";

/// How the site is rendered.
///
/// ```
/// let o = clearcount::server::publish::PublishOptions::default();
/// assert_eq!(o.min_reports, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    /// A bucket seen in fewer reports than this in a week is not charted
    /// (as `clearcount serve --min-reports`).
    pub min_reports: u64,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions { min_reports: 10 }
    }
}

/// What a publish wrote.
///
/// ```
/// let s = clearcount::server::publish::PublishStats::default();
/// assert_eq!((s.objects, s.archive_files, s.reports), (0, 0, 0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Objects written under `site/`.
    pub objects: usize,
    /// Archive files linked from `site/data.html`.
    pub archive_files: usize,
    /// Reports counted in the charts (the weeks the charts show).
    pub reports: u64,
}

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

fn page(title: &str, active: &str, body: &str) -> String {
    let mut nav = String::new();
    for (href, label) in [
        ("charts.html", "Charts"),
        ("data.html", "Data"),
        ("config.html", "Config"),
    ] {
        let class = if href == active { r#" class="on""# } else { "" };
        let _ = write!(nav, r#"<a href="{href}"{class}>{label}</a>"#);
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · clearcount</title><style>{CSS}</style></head><body><header><div class="in"><a class="brand" href="index.html">clearcount</a><nav>{nav}</nav></div></header><main>{body}</main></body></html>"#,
        esc(title)
    )
}

fn human_size(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// What the site is built from, read from the store.
struct Inputs {
    archive: Vec<ObjectMeta>,
    config_text: Option<String>,
    config: Option<CollectionConfig>,
    signature: Option<String>,
    public_key: Option<String>,
    history: Vec<ObjectMeta>,
    charts: ChartData,
}

async fn text(store: &dyn Store, key: &str) -> io::Result<Option<String>> {
    Ok(store
        .get(key)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

async fn read_inputs(store: Arc<dyn Store>) -> io::Result<Inputs> {
    let archive: Vec<ObjectMeta> = store
        .list("archive/")
        .await?
        .objects
        .into_iter()
        .filter(|o| o.key.ends_with(".ndjson"))
        .collect();
    let config_text = text(&*store, "config/current.toml").await?;
    let config = config_text
        .as_deref()
        .and_then(|t| CollectionConfig::parse(t, "config/current.toml").ok());
    let signature = text(&*store, "config/current.toml.minisig").await?;
    let public_key = text(&*store, "config/public.key").await?;
    let history = store.list("config/history/").await?.objects;
    let charts = ChartData::from_archive(store).await?;
    Ok(Inputs {
        archive,
        config_text,
        config,
        signature,
        public_key,
        history,
        charts,
    })
}

fn index_html(i: &Inputs, opts: &PublishOptions) -> String {
    let version = i
        .config
        .as_ref()
        .map_or("none".to_owned(), |c| c.version.to_string());
    let programs = i.config.as_ref().map_or(0, |c| c.programs.len());
    let body = format!(
        r#"<h1>Transparent telemetry</h1>
<p class="lead">Anonymous weekly counter reports from the programs listed in the collection config, and every report that was kept.</p>
<p>Programs count how often things happen (a command run, a flag used, a crash site) in a file on the user's machine. Once a week, a small random sample of installations sends a report: the week, a random number, and the counts of the counters the config declares. There is no identifier of any kind, no time finer than the week, and the collection server never records the sender's address.</p>
<div class="cards">
<div class="card"><a href="charts.html">Charts</a><div class="muted">Versions, systems and counters over the weeks.</div></div>
<div class="card"><a href="data.html">Data</a><div class="muted">Every kept report, one file per week ({} files).</div></div>
<div class="card"><a href="config.html">Config</a><div class="muted">The signed collection config (version {}, {} programs) and its history.</div></div>
</div>
<p class="muted">These pages are static files, rebuilt after every merge of the archive. Charts count the reports that have a bucket, and show no bucket seen in fewer than {} reports in a week.</p>"#,
        i.archive.len(),
        esc(&version),
        programs,
        opts.min_reports
    );
    page("Transparent telemetry", "index.html", &body)
}

/// The charts page, drawn with the server's own chart code
/// ([`ChartData::to_charts`], [`super::charts::Chart::to_svg`]).
fn charts_html(i: &Inputs, opts: &PublishOptions) -> String {
    let data = &i.charts;
    let mut body = String::from("<h1>Charts</h1>");
    let _ = write!(
        body,
        r#"<p class="lead">{} reports over {} weeks. Each chart counts the reports that have a bucket; a bucket seen in fewer than {} reports in a week is not shown.</p>"#,
        data.total,
        data.weeks.len(),
        opts.min_reports
    );
    let mut programs: Vec<(String, Vec<String>)> = i
        .config
        .as_ref()
        .map(|c| {
            c.programs
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
        for (n, (p, _)) in programs.iter().enumerate() {
            let sep = if n > 0 { " · " } else { "" };
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
        for chart in data.to_charts(program, declared, opts.min_reports) {
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
    page("Charts", "charts.html", &body)
}

fn data_html(i: &Inputs) -> String {
    let mut body = String::from(
        r#"<h1>Data</h1><p class="lead">Every kept report, one newline-delimited JSON file per week (one report per line). Rebuilt from the stored reports; the same reports give the same bytes.</p>"#,
    );
    if i.archive.is_empty() {
        body.push_str(r#"<p class="muted">No archive files yet.</p>"#);
    } else {
        body.push_str("<table><tr><th>week</th><th>file</th><th>size</th></tr>");
        for f in i.archive.iter().rev() {
            let name = f.name();
            let week = name.strip_suffix(".ndjson").unwrap_or(name);
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td><a href="../archive/{}" download>{}</a></td><td class="n">{}</td></tr>"#,
                esc(week),
                esc(name),
                esc(name),
                human_size(f.size)
            );
        }
        body.push_str("</table>");
    }
    page("Data", "data.html", &body)
}

fn config_html(i: &Inputs) -> String {
    let mut body = String::from("<h1>Collection config</h1>");
    match (&i.config_text, &i.config) {
        (Some(t), Some(c)) => {
            let _ = write!(
                body,
                r#"<p class="lead">Version {} is in force. Clients verify its signature themselves before using it.</p><h2>config.toml</h2><p><a href="config.toml">raw</a></p><pre><code>{}</code></pre>"#,
                c.version,
                esc(t)
            );
        }
        (Some(t), None) => {
            let _ = write!(
                body,
                r#"<p class="lead">The config in force could not be parsed here; its text:</p><pre><code>{}</code></pre>"#,
                esc(t)
            );
        }
        _ => body.push_str(r#"<p class="lead">No collection config has been recorded yet.</p>"#),
    }
    match &i.signature {
        Some(sig) => {
            let _ = write!(
                body,
                r#"<h2>Signature</h2><p><a href="config.toml.minisig">config.toml.minisig</a> (minisign, Ed25519)</p><pre><code>{}</code></pre>"#,
                esc(sig)
            );
        }
        None => body.push_str(r#"<h2>Signature</h2><p class="muted">None.</p>"#),
    }
    match &i.public_key {
        Some(pk) => {
            let _ = write!(
                body,
                r#"<h2>Public key</h2><p><a href="public.key">public.key</a>. Verify with <code>minisign -Vm config.toml -p public.key</code>.</p><pre><code>{}</code></pre>"#,
                esc(pk)
            );
        }
        None => body.push_str(r#"<h2>Public key</h2><p class="muted">Not recorded.</p>"#),
    }
    body.push_str("<h2>History</h2><p>Every config version the server has used.</p>");
    let mut versions: Vec<(u64, &ObjectMeta)> = i
        .history
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
            let sig = if i.history.iter().any(|h| h.name() == sig_name) {
                format!(r#"<a href="../config/history/{0}">{0}</a>"#, esc(&sig_name))
            } else {
                r#"<span class="muted">none</span>"#.to_owned()
            };
            let _ = write!(
                body,
                r#"<tr><td>{v}</td><td><a href="../config/history/{0}">{0}</a></td><td>{sig}</td></tr>"#,
                esc(o.name())
            );
        }
        body.push_str("</table>");
    }
    page("Config", "config.html", &body)
}

/// Writes the static site under `site/` from what the store holds now (the
/// archive files and the recorded config). Streams the archive (memory does
/// not grow with the number of reports); each object is replaced
/// atomically. Works the same on every [`Store`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use clearcount::server::publish::{publish_site, PublishOptions};
/// let store = clearcount::server::store::open_store("./clearcount-data")?;
/// let s = publish_site(store, &PublishOptions::default()).await?;
/// println!("{} objects under site/", s.objects);
/// # Ok(()) }
/// ```
pub async fn publish_site(
    store: Arc<dyn Store>,
    opts: &PublishOptions,
) -> io::Result<PublishStats> {
    let i = read_inputs(store.clone()).await?;
    let mut objects: Vec<(&str, Vec<u8>)> = vec![
        ("site/charts.html", charts_html(&i, opts).into_bytes()),
        ("site/data.html", data_html(&i).into_bytes()),
        ("site/config.html", config_html(&i).into_bytes()),
    ];
    if let Some(t) = &i.config_text {
        objects.push(("site/config.toml", t.clone().into_bytes()));
    }
    if let Some(s) = &i.signature {
        objects.push(("site/config.toml.minisig", s.clone().into_bytes()));
    }
    if let Some(k) = &i.public_key {
        objects.push(("site/public.key", k.clone().into_bytes()));
    }
    // The entry page last: once it is there, the pages it links to are too.
    objects.push(("site/index.html", index_html(&i, opts).into_bytes()));
    let n = objects.len();
    for (key, bytes) in objects {
        store.put(key, bytes).await?;
    }
    Ok(PublishStats {
        objects: n,
        archive_files: i.archive.len(),
        reports: i.charts.total,
    })
}

/// `publish_site` in its own runtime, for a data store named as for
/// `clearcount serve --data` (a directory or `s3://bucket/prefix`).
///
/// ```no_run
/// let s = clearcount::server::publish::publish_blocking("./clearcount-data", &Default::default()).unwrap();
/// println!("{} reports charted", s.reports);
/// ```
pub fn publish_blocking(data: &str, opts: &PublishOptions) -> Result<PublishStats, String> {
    let store = super::store::open_store(data)
        .map_err(|e| format!("cannot open data store {data}: {e}"))?;
    let rt = super::runtime()?;
    rt.block_on(publish_site(store, opts))
        .map_err(|e| format!("publishing the static site failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_relatively_and_escape() {
        let i = Inputs {
            archive: vec![ObjectMeta {
                key: "archive/2026-11-16.ndjson".into(),
                size: 2048,
            }],
            config_text: Some("version = 3\nsample_rate = 0.1\n# <b>\n".into()),
            config: CollectionConfig::parse("version = 3\nsample_rate = 0.1\n", "c").ok(),
            signature: None,
            public_key: None,
            history: vec![ObjectMeta {
                key: "config/history/v3.toml".into(),
                size: 10,
            }],
            charts: ChartData::default(),
        };
        let d = data_html(&i);
        assert!(d.contains(r#"href="../archive/2026-11-16.ndjson""#), "{d}");
        let c = config_html(&i);
        assert!(c.contains("# &lt;b&gt;") && c.contains("../config/history/v3.toml"));
        let x = charts_html(&i, &PublishOptions::default());
        assert!(x.contains("No reports in the archive yet."));
        assert!(!index_html(&i, &PublishOptions::default()).contains("href=\"/"));
    }
}
