//! The public pages as HTML strings: one layout and one body builder per
//! page, shared by the live pages ([`super::pages`], served by
//! `clearcount serve`) and the static site ([`super::publish`], written
//! under `site/` after a merge).
//!
//! The functions are pure: they take what the page shows (the chart data,
//! the archive listing, the config in force, the bucket threshold `k`) and a
//! [`Links`] value saying where the pages are read from, so that links work
//! both on the server (`/charts`, `/data/<week>.ndjson`) and in the static
//! site (`charts.html`, `../archive/<week>.ndjson`).

use super::LoadedConfig;
use super::charts::{ChartData, esc};
use super::config_log::{ServedLog, Signer};
use super::store::ObjectMeta;
use clearcount_protocol::config::CollectionConfig;
use std::fmt::Write as _;

/// The style sheet of every page (inlined in each, and served as
/// `/style.css`).
pub const CSS: &str = r#"
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
td code{word-break:break-all}
"#;

/// The `Content-Security-Policy` of the pages: nothing may load, run or
/// frame them; the only style is the inline style sheet, allowed by its
/// SHA-256; inline SVG needs nothing more. Sent as a header on every live
/// response (with `frame-ancestors 'none'`, which only a header can carry),
/// and as a `<meta>` element in the static site's pages.
pub fn content_security_policy() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| format!("{}; frame-ancestors 'none'", meta_policy()))
}

/// The policy without `frame-ancestors`, as a `<meta>` element may carry it.
fn meta_policy() -> String {
    use sha2::Digest;
    let hash = base64(&sha2::Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
    )
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where the pages are read from, and so how they link to each other and to
/// the files they list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Served by `clearcount serve`: absolute paths (`/charts`, `/data/…`,
    /// `/config/history/…`).
    Live,
    /// The static site under `site/` in the store: relative links
    /// (`charts.html`, `../archive/…`, `../config/history/…`), no
    /// `/counters` page.
    Static,
}

impl Links {
    /// The entry page.
    pub fn home(self) -> &'static str {
        self.pick("/", "index.html")
    }

    /// The charts page.
    pub fn charts(self) -> &'static str {
        self.pick("/charts", "charts.html")
    }

    /// The archive listing.
    pub fn data(self) -> &'static str {
        self.pick("/data/", "data.html")
    }

    /// The config page.
    pub fn config(self) -> &'static str {
        self.pick("/config", "config.html")
    }

    /// The declared counters page (only served live).
    pub fn counters(self) -> Option<&'static str> {
        match self {
            Links::Live => Some("/counters"),
            Links::Static => None,
        }
    }

    /// A weekly archive file (`<week>.ndjson`).
    pub fn archive_file(self, name: &str) -> String {
        format!("{}{name}", self.pick("/data/", "../archive/"))
    }

    /// A file of the config history (`v<n>.toml`, `v<n>.toml.minisig`).
    pub fn history_file(self, name: &str) -> String {
        format!(
            "{}{name}",
            self.pick("/config/history/", "../config/history/")
        )
    }

    /// A file next to the pages: `config.toml`, `config.toml.minisig`,
    /// `public.key`.
    pub fn file(self, name: &str) -> String {
        format!("{}{name}", self.pick("/", ""))
    }

    /// A file of the config log (`log.vkey`, `entries/<i>`, …): served
    /// under `/log/`; in the static site, the store's copy under
    /// `config/log/`.
    pub fn log_file(self, rel: &str) -> String {
        format!("{}{rel}", self.pick("/log/", "../config/log/"))
    }

    /// The pages of the navigation bar, as (link, label).
    fn nav(self) -> Vec<(&'static str, &'static str)> {
        let mut nav = vec![
            (self.charts(), "Charts"),
            (self.data(), "Data"),
            (self.config(), "Config"),
        ];
        if let Some(c) = self.counters() {
            nav.push((c, "Counters"));
        }
        nav
    }

    fn pick(self, live: &'static str, stat: &'static str) -> &'static str {
        match self {
            Links::Live => live,
            Links::Static => stat,
        }
    }
}

/// The layout around every page: the head with the style sheet, the header
/// with the navigation (`active` is the link of the current page, shown
/// highlighted), and `body` (HTML) in `<main>`.
pub fn page(title: &str, active: &str, body: &str, links: Links) -> String {
    let csp = match links {
        Links::Live => String::new(),
        Links::Static => format!(
            r#"<meta http-equiv="Content-Security-Policy" content="{}"><meta name="referrer" content="no-referrer">"#,
            meta_policy()
        ),
    };
    layout(title, links.home(), &links.nav(), active, &csp, body)
}

/// The layout of [`page`] with any navigation: `home` is the brand's link,
/// `nav` the (link, label) pairs of the header (`active` the current one),
/// `head` extra elements for `<head>` (HTML), `body` (HTML) goes in
/// `<main>`. The local view of one's own data (`crate::local`) uses it
/// with its own pages.
pub fn layout(
    title: &str,
    home: &str,
    nav: &[(&str, &str)],
    active: &str,
    head: &str,
    body: &str,
) -> String {
    let mut links = String::new();
    for (href, label) in nav {
        let class = if *href == active {
            r#" class="on""#
        } else {
            ""
        };
        let _ = write!(links, r#"<a href="{href}"{class}>{label}</a>"#);
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">{head}<meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · clearcount</title><style>{CSS}</style></head><body><header><div class="in"><a class="brand" href="{home}">clearcount</a><nav>{links}</nav></div></header><main>{body}</main></body></html>"#,
        esc(title),
    )
}

/// A byte count for people: `512 B`, `2.0 KiB`, `1.5 MiB`.
pub fn human_size(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// The body of the entry page: what this is, a card per page, and how
/// reports are kept. `archive_files` is the number of weekly archive files,
/// `config` the config in force, `k` the bucket threshold of the charts.
pub fn index_body(
    links: Links,
    archive_files: usize,
    config: Option<&CollectionConfig>,
    k: u64,
) -> String {
    let version = config.map_or("none".to_owned(), |c| c.version.to_string());
    let programs = config.map_or(0, |c| c.programs.len());
    let lead = match links {
        Links::Live => {
            "This server collects anonymous weekly counter reports from the programs listed in its collection config, and publishes every report it keeps."
        }
        Links::Static => {
            "Anonymous weekly counter reports from the programs listed in the collection config, and every report that was kept."
        }
    };
    let mut body = format!(
        r#"<h1>Transparent telemetry</h1>
<p class="lead">{lead}</p>
<p>Programs count how often things happen (a command run, a flag used, a crash site) in a file on the user's machine. Once a week, a small random sample of installations sends a report: the week, a random number, and the counts of the counters this config declares. There is no identifier of any kind, no time finer than the week, and the server never records the sender's address.</p>
<div class="cards">
<div class="card"><a href="{}">Charts</a><div class="muted">Versions, systems and counters over the weeks.</div></div>
<div class="card"><a href="{}">Data</a><div class="muted">Every kept report, one file per week ({archive_files} files).</div></div>
<div class="card"><a href="{}">Config</a><div class="muted">The signed collection config (version {}, {programs} programs) and its history.</div></div>
"#,
        links.charts(),
        links.data(),
        links.config(),
        esc(&version),
    );
    if let Some(counters) = links.counters() {
        let _ = writeln!(
            body,
            r#"<div class="card"><a href="{counters}">Counters</a><div class="muted">What each counter counts and why.</div></div>"#
        );
    }
    body.push_str("</div>\n");
    match links {
        Links::Live => {
            let _ = write!(
                body,
                r#"<h2>How a report is kept</h2>
<p>Reports are sent with <code>POST /upload</code>. Malformed reports are refused with a reason. Programs, versions, systems and counters the config does not declare are dropped before anything is written. What is left is stored once, however often it is sent, and merged into the weekly archive. Charts count the reports that have a bucket, and show no bucket seen in fewer than {k} reports in a week.</p>"#
            );
        }
        Links::Static => {
            let _ = write!(
                body,
                r#"<p class="muted">These pages are static files, rebuilt after every merge of the archive. Charts count the reports that have a bucket, and show no bucket seen in fewer than {k} reports in a week.</p>"#
            );
        }
    }
    body
}

/// The body of the charts page: per program (those `config` declares, then
/// any other in the archive), its report count and every chart of
/// [`ChartData::to_charts`] with threshold `k`, as inline SVG.
pub fn charts_body(data: &ChartData, config: Option<&CollectionConfig>, k: u64) -> String {
    let mut body = String::from("<h1>Charts</h1>");
    // With k = 1 (the local view of one installation's reports) no bucket
    // is hidden, and the page does not say so.
    let threshold = if k > 1 {
        format!("; a bucket seen in fewer than {k} reports in a week is not shown")
    } else {
        String::new()
    };
    let _ = write!(
        body,
        r#"<p class="lead">{} reports over {} weeks. Each chart counts the reports that have a bucket{threshold}.</p>"#,
        data.total,
        data.weeks.len(),
    );
    // Programs: those the config declares, then any others in the archive.
    let mut programs: Vec<(String, Vec<String>)> = config
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
        for chart in data.to_charts(program, declared, k) {
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
    body
}

/// The body of the data page: the weekly archive files (`archive/*.ndjson`,
/// in key order; listed newest first) and their tables (`tables`: the
/// `.parquet` and `.csv` files beside them), each linked for download with
/// its size.
pub fn data_body(links: Links, files: &[ObjectMeta], tables: &[ObjectMeta]) -> String {
    let mut body = String::from(
        r#"<h1>Data</h1><p class="lead">Every report the server kept, one newline-delimited JSON file per week (one report per line, as stored). Rebuilt from the stored reports; the same reports give the same bytes.</p><p>Beside each, the same week as a tidy table in Parquet and CSV, rebuilt from it: one row per program build (<code>kind</code> <code>reports</code>), per counter bucket (<code>counter</code>) and per stack (<code>stack</code>), with the number of reports that have it (<code>reports</code>) and the sum of their counts (<code>total</code>). A row fewer reports have than the charts' threshold is left out of the tables; the JSON file keeps every report.</p>"#,
    );
    if files.is_empty() {
        body.push_str(r#"<p class="muted">No archive files yet.</p>"#);
    } else {
        body.push_str(
            "<table><tr><th>week</th><th>reports (NDJSON)</th><th>table (Parquet)</th><th>table (CSV)</th></tr>",
        );
        let link = |f: &ObjectMeta| {
            format!(
                r#"<a href="{}" download>{}</a> <span class="muted">{}</span>"#,
                esc(&links.archive_file(f.name())),
                esc(f.name()),
                human_size(f.size)
            )
        };
        for f in files.iter().rev() {
            let name = f.name();
            let week = name.strip_suffix(".ndjson").unwrap_or(name);
            let table = |ext: &str| {
                let want = format!("{week}.{ext}");
                tables
                    .iter()
                    .find(|t| t.name() == want)
                    .map_or(String::new(), link)
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(week),
                link(f),
                table("parquet"),
                table("csv")
            );
        }
        body.push_str("</table>");
    }
    body
}

/// The live `/config` page's note on the store (`store`: its description,
/// `s3://…` or `dir:…`, of which only the kind is shown): whether it
/// honours conditional writes, what keeps racing merges from losing a
/// report.
pub fn store_section(store: &str, conditional: &str) -> String {
    let kind = if store.starts_with("s3://") {
        "S3-compatible object storage"
    } else {
        "a directory"
    };
    format!(
        "<h2>Storage</h2><p>Reports and the archive are kept in {kind}; {}.</p>",
        esc(conditional)
    )
}

/// The body of the config page: the config in force (`config`) with its
/// signature, the public key (`public_key`), and every version recorded
/// under `config/history/` (`history`, the listing of that prefix), newest
/// first.
pub fn config_body(
    links: Links,
    config: Option<&LoadedConfig>,
    public_key: Option<&str>,
    history: &[ObjectMeta],
) -> String {
    let mut body = String::from("<h1>Collection config</h1>");
    match config {
        None => body.push_str(match links {
            Links::Live => {
                r#"<p class="lead">This server has no collection config: it accepts no reports.</p>"#
            }
            Links::Static => {
                r#"<p class="lead">No collection config has been recorded yet.</p>"#
            }
        }),
        Some(c) => {
            let lead = match (links, &c.log) {
                (Links::Static, Some(_)) => "is in force, the latest entry of the config log below. Clients verify its signature and the log themselves before using it.",
                (Links::Static, None) => "is in force. Clients verify its signature and its config log themselves before using it.",
                (Links::Live, _) => "is in force; this server verified its signature with the public key below, and that it is the latest entry of the config log below. Clients verify both themselves before using it.",
            };
            let _ = write!(
                body,
                r#"<p class="lead">Version {} {lead}</p><h2>config.toml</h2><p><a href="{}">raw</a></p><pre><code>{}</code></pre>"#,
                c.config.version,
                links.file("config.toml"),
                esc(&c.text)
            );
            match &c.signature {
                Some(sig) => {
                    let _ = write!(
                        body,
                        r#"<h2>Signature</h2><p><a href="{}">config.toml.minisig</a> (minisign, Ed25519)</p><pre><code>{}</code></pre>"#,
                        links.file("config.toml.minisig"),
                        esc(sig)
                    );
                }
                None => body.push_str(r#"<h2>Signature</h2><p class="muted">None.</p>"#),
            }
        }
    }
    if let Some(log) = config.and_then(|c| c.log.as_deref()) {
        body.push_str(&log_section(links, log));
    }
    match public_key {
        Some(pk) => {
            let _ = write!(
                body,
                r#"<h2>Public key</h2><p><a href="{}">public.key</a>. Verify with <code>minisign -Vm config.toml -p public.key</code>.</p><pre><code>{}</code></pre>"#,
                links.file("public.key"),
                esc(pk)
            );
        }
        None => body.push_str(match links {
            Links::Live => r#"<h2>Public key</h2><p class="muted">Not configured.</p>"#,
            Links::Static => r#"<h2>Public key</h2><p class="muted">Not recorded.</p>"#,
        }),
    }
    let _ = write!(
        body,
        "<h2>History</h2><p>Every config version {} has used.</p>",
        links.pick("this server", "the server")
    );
    let mut versions: Vec<(u64, &ObjectMeta)> = history
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
            let sig = if history.iter().any(|h| h.name() == sig_name) {
                format!(
                    r#"<a href="{}">{}</a>"#,
                    esc(&links.history_file(&sig_name)),
                    esc(&sig_name)
                )
            } else {
                r#"<span class="muted">none</span>"#.to_owned()
            };
            let _ = write!(
                body,
                r#"<tr><td>{v}</td><td><a href="{}">{}</a></td><td>{sig}</td></tr>"#,
                esc(&links.history_file(o.name())),
                esc(o.name())
            );
        }
        body.push_str("</table>");
    }
    body
}

/// A POSIX time as `2026-11-16 09:30 UTC`.
fn utc(t: u64) -> String {
    i64::try_from(t)
        .ok()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
}

/// `1 entry`, `2 entries`.
fn entries(n: u64) -> String {
    format!("{n} {}", if n == 1 { "entry" } else { "entries" })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The body of the config log's own page (`/log/`): what
/// [`config_body`] shows of the log, and links to every file of the log.
pub fn log_body(links: Links, log: Option<&ServedLog>) -> String {
    let mut body = String::from("<h1>Config log</h1>");
    match log {
        None => body.push_str(
            r#"<p class="lead">This server serves no config log (it has no collection config).</p>"#,
        ),
        Some(log) => {
            let _ = write!(
                body,
                r#"<p class="lead">The append-only public log of every collection config published, for clients, auditors and witnesses. Its files, as plain text: <a href="{}">log.vkey</a>, {}<a href="{}">checkpoint</a>, <a href="{}">checkpoints</a> (the sizes published; each at <code>checkpoints/SIZE</code>) and <code>entries/INDEX</code> (each entry, linked below). The config in force is on the <a href="{}">config page</a>.</p>"#,
                esc(&links.log_file("log.vkey")),
                if log.has_policy {
                    format!(r#"<a href="{}">policy</a>, "#, esc(&links.log_file("policy")))
                } else {
                    String::new()
                },
                esc(&links.log_file("checkpoint")),
                esc(&links.log_file("checkpoints")),
                links.config(),
            );
            body.push_str(&log_section(links, log));
        }
    }
    body
}

/// The config log's part of the config page: the log key and policy,
/// every entry (newest first), the latest checkpoint and who signed it,
/// and how to audit the log and what a client fetches.
fn log_section(links: Links, log: &ServedLog) -> String {
    use clearcount_protocol::tlog::base64_encode;
    let witnesses = log.policy.witnesses().len();
    let quorum = if log.has_policy && witnesses > 0 {
        format!(
            ", and cosigned by the witnesses its policy requires ({})",
            esc(&log.policy.describe_quorum())
        )
    } else {
        String::new()
    };
    let mut body = format!(
        r#"<h2 id="log">Config log</h2><p>Every published config is an entry of an append-only public log (an RFC 6962 Merkle tree whose states are C2SP checkpoints; clearcount's <code>counters-spec/config-log.md</code>). A client uses a config only if it is the latest entry of a checkpoint signed by the log key{quorum}, and only if that checkpoint extends every one it accepted before. Serving one installation another config than everyone else would take a second history, which clients, witnesses and auditors all detect.</p>
<p>The log key (<a href="{}">log.vkey</a>; its name is the log's origin):</p><pre><code>{}</code></pre>"#,
        esc(&links.log_file("log.vkey")),
        esc(&log.vkey.to_string()),
    );
    if log.has_policy {
        let _ = write!(
            body,
            r#"<p>The trust policy toolchains compile in (<a href="{}">policy</a>): {}.</p>"#,
            esc(&links.log_file("policy")),
            if witnesses == 0 {
                "no witness yet".to_owned()
            } else {
                format!(
                    "{witnesses} witnesses, quorum {}",
                    esc(&log.policy.describe_quorum())
                )
            }
        );
    }
    let _ = write!(
        body,
        r#"<h3>Every version</h3><p>{}, newest first. <em>Witnessed</em>: the earliest cosignature of the checkpoint whose latest entry it is.</p><table><tr><th>entry</th><th>version</th><th>witnessed</th><th>SHA-256 of the file</th><th>leaf hash</th></tr>"#,
        entries(log.history.len() as u64)
    );
    for h in log.history.iter().rev() {
        let witnessed = h.witnessed.map_or_else(
            || r#"<span class="muted">not witnessed</span>"#.to_owned(),
            utc,
        );
        let _ = write!(
            body,
            r#"<tr><td><a href="{}">{}</a></td><td>{}</td><td>{witnessed}</td><td><code>{}</code></td><td><code>{}</code></td></tr>"#,
            esc(&links.log_file(&format!("entries/{}", h.index))),
            h.index,
            h.version,
            hex(&h.sha256),
            base64_encode(&h.leaf_hash)
        );
    }
    body.push_str("</table>");
    let c = &log.checkpoint.checkpoint;
    let _ = write!(
        body,
        r#"<h3>Latest checkpoint</h3><p>The log's state after {} (<a href="{}">checkpoint</a>, a C2SP signed note), with every cosignature gathered:</p><pre><code>{}</code></pre><table><tr><th>signature</th><th>key ID</th><th>what</th></tr>"#,
        entries(c.size),
        esc(&links.log_file("checkpoint")),
        esc(std::str::from_utf8(&log.checkpoint_text).unwrap_or_default())
    );
    for s in &log.signatures {
        let what = match &s.signer {
            Signer::Log => "the log key".to_owned(),
            Signer::Witness(name, t) => {
                format!("witness <strong>{}</strong>, cosigned {}", esc(name), utc(*t))
            }
            Signer::Unknown => {
                r#"<span class="muted">a key the policy does not list (not checked; clients ignore it)</span>"#
                    .to_owned()
            }
        };
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td><code>{:08x}</code></td><td>{what}</td></tr>",
            esc(&s.name),
            s.key_id
        );
    }
    body.push_str("</table>");
    if !log
        .signatures
        .iter()
        .any(|s| matches!(s.signer, Signer::Witness(..)))
    {
        body.push_str(r#"<p class="muted">No witness has cosigned this checkpoint.</p>"#);
    }
    let sizes: Vec<String> = log
        .checkpoints
        .iter()
        .map(|a| {
            format!(
                r#"<a href="{}">{}</a>"#,
                esc(&links.log_file(&format!("checkpoints/{}", a.size))),
                a.size
            )
        })
        .collect();
    let _ = write!(
        body,
        "<p>Every checkpoint published, by size: {}.</p>",
        sizes.join(", ")
    );
    let (url, where_) = match (log.policy.log_url(), links) {
        (Some(u), _) => (esc(u), String::new()),
        (None, Links::Live) => (
            "URL/log".to_owned(),
            " (URL: this server's address)".to_owned(),
        ),
        (None, Links::Static) => (
            "URL/config/log".to_owned(),
            " (URL: where the store is published, this page being <code>URL/site/config.html</code>)"
                .to_owned(),
        ),
    };
    let _ = write!(
        body,
        r#"<h3>Audit it</h3><p>Anyone can fetch the whole log, recompute every hash, check every checkpoint's signatures and that all are one history, and print it{where_}:</p><pre><code>clearcount config audit {url}</code></pre><p>What a client fetches with the config: <a href="{}">config.toml.proof</a> (with <code>?old=N</code>, also the consistency proof from the checkpoint of size N it kept) and <a href="{}">config.toml.tlog-proof</a> (a C2SP tlog-proof, for offline verifiers).</p>"#,
        esc(&links.file("config.toml.proof")),
        esc(&links.file("config.toml.tlog-proof")),
    );
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_the_style_hash() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        let csp = super::content_security_policy();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
        let page = super::page("t", "/", "", super::Links::Static);
        assert!(page.contains(&super::meta_policy()) && !page.contains("frame-ancestors"));
    }

    /// Live pages link by absolute path; the static site relatively, so it
    /// works from any folder, and has no counters page.
    #[test]
    fn links_of_the_live_server_and_the_static_site() {
        let week = "2026-11-16.ndjson";
        let l = Links::Live;
        assert_eq!(
            (l.home(), l.charts(), l.data(), l.config()),
            ("/", "/charts", "/data/", "/config")
        );
        assert_eq!(l.counters(), Some("/counters"));
        assert_eq!(l.archive_file(week), "/data/2026-11-16.ndjson");
        assert_eq!(l.history_file("v1.toml"), "/config/history/v1.toml");
        assert_eq!(l.file("public.key"), "/public.key");
        let s = Links::Static;
        assert_eq!(
            (s.home(), s.charts(), s.data(), s.config()),
            ("index.html", "charts.html", "data.html", "config.html")
        );
        assert_eq!(s.counters(), None);
        assert_eq!(s.archive_file(week), "../archive/2026-11-16.ndjson");
        assert_eq!(s.history_file("v1.toml"), "../config/history/v1.toml");
        assert_eq!(s.file("public.key"), "public.key");
    }

    #[test]
    fn the_layout_escapes_the_title_and_marks_the_current_page() {
        let html = page("A & B", "/charts", "<p>hi</p>", Links::Live);
        assert!(html.contains("<title>A &amp; B · clearcount</title>"));
        assert!(html.contains(r#"<a href="/charts" class="on">Charts</a>"#));
        assert!(html.contains(r#"<a href="/counters">Counters</a>"#));
        assert!(html.contains("<main><p>hi</p></main>"));
        let html = page("Data", Links::Static.data(), "", Links::Static);
        assert!(html.contains(r#"<a href="data.html" class="on">Data</a>"#));
        assert!(!html.contains(r#"href="/"#));
    }

    #[test]
    fn bodies_say_what_the_archive_holds() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
        let b = index_body(Links::Live, 3, None, 10);
        assert!(
            b.contains("(3 files)") && b.contains("version none, 0 programs"),
            "{b}"
        );
        assert!(b.contains(r#"href="/counters""#));
        let b = charts_body(&ChartData::default(), None, 10);
        assert!(b.contains("0 reports over 0 weeks"), "{b}");
        let files = [ObjectMeta {
            key: "archive/2026-11-16.ndjson".into(),
            size: 2048,
        }];
        let tables = [ObjectMeta {
            key: "archive/2026-11-16.csv".into(),
            size: 700,
        }];
        let b = data_body(Links::Static, &files, &tables);
        assert!(
            b.contains(r#"href="../archive/2026-11-16.ndjson" download"#),
            "{b}"
        );
        assert!(b.contains("2.0 KiB"));
        assert!(
            b.contains(r#"href="../archive/2026-11-16.csv" download>2026-11-16.csv</a> <span class="muted">700 B</span>"#),
            "{b}"
        );
        let text = "version = 3\nsample_rate = 0.1\n";
        let cfg = LoadedConfig {
            config: CollectionConfig::parse(text, "c").unwrap(),
            text: text.into(),
            signature: None,
            log: None,
            also_logs: Vec::new(),
        };
        let history = [ObjectMeta {
            key: "config/history/v3.toml".into(),
            size: 30,
        }];
        let b = config_body(Links::Static, Some(&cfg), None, &history);
        assert!(b.contains("Version 3 is in force"), "{b}");
    }
}
