//! Static publishing: the public pages written into the store under
//! `site/`, so that a plain web server or a CDN can publish the archive
//! straight from the directory or the bucket, with `clearcount serve` kept
//! only for ingest.
//!
//! | key | what |
//! |---|---|
//! | `site/index.html` | what this is, links |
//! | `site/charts.html` | the charts of `/charts` (same data, same SVG) |
//! | `site/data.html` | the weekly archive files and their tables, linking to `../archive/<week>.ndjson` (`.parquet`, `.csv`) |
//! | `site/config.html` | the config in force, its signature, the public key, its config log (every version, the latest checkpoint and its cosignatures, how to audit it; linking to `../config/log/`), every version used (linking to `../config/history/`) |
//! | `site/config.toml`, `site/config.toml.minisig`, `site/public.key` | copies of `config/current.toml`, its signature and the key |
//! | `site/config.toml.tlog-proof`, `site/config.toml.proof` | the config's C2SP tlog-proof (a copy of `config/current.toml.tlog-proof`), twice: a static server cannot answer `?old=N`, so its `.proof` carries no consistency proof |
//!
//! Every link is relative, so the pages work wherever the store's root is
//! published (`https://telemetry.example.org/site/index.html` with the
//! archive at `https://telemetry.example.org/archive/…`). The archive files
//! are not copied: `archive/` is published as it is, and so is the server's
//! copy of the config log, `config/log/` (the log directory's files as they
//! are: an auditor runs `clearcount config audit
//! https://telemetry.example.org/config/log`).
//!
//! Each object is written atomically, so a reader sees an old page or a new
//! one. Pages are rebuilt from the store alone (archive and
//! `config/current.toml`), so any instance or job can publish, any number of
//! times; two publishes at once write the same pages from the same archive.
//! `clearcount merge` publishes after it merged (see
//! [`super::merge::merge_blocking_with`]), and so does the server after each
//! of its scheduled merges, with its own `--min-reports`. The pages are
//! drawn by [`super::render`], as the live pages are.

use super::LoadedConfig;
use super::charts::ChartData;
use super::config_log::{LogFiles, ServedLog};
use super::render::{self, Links};
use super::store::{ObjectMeta, Store};
use clearcount_protocol::config::CollectionConfig;
use std::io;
use std::sync::Arc;

/// How the site is rendered.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Objects written under `site/`.
    pub objects: usize,
    /// Archive files linked from `site/data.html`.
    pub archive_files: usize,
    /// Reports counted in the charts (the weeks the charts show).
    pub reports: u64,
}

/// What the site is built from, read from the store.
struct Inputs {
    archive: Vec<ObjectMeta>,
    /// The archive's tables (Parquet, CSV).
    tables: Vec<ObjectMeta>,
    /// The text of `config/current.toml`, copied as `site/config.toml`.
    config_text: Option<String>,
    /// `config/current.toml.minisig`, copied as `site/config.toml.minisig`.
    signature: Option<String>,
    /// The config text parsed, with its signature (`None` if it does not
    /// parse).
    config: Option<LoadedConfig>,
    public_key: Option<String>,
    /// `config/current.toml.tlog-proof`.
    tlog_proof: Option<String>,
    history: Vec<ObjectMeta>,
    charts: Arc<ChartData>,
}

async fn text(store: &dyn Store, key: &str) -> io::Result<Option<String>> {
    Ok(store
        .get(key)
        .await?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// The config log shown with the config `text`: `log` if it is that
/// config's, else the store's copy (`config/log/`) if it verifies for it.
async fn log_for(
    store: &dyn Store,
    text: &str,
    log: Option<Arc<ServedLog>>,
) -> Option<Arc<ServedLog>> {
    if let Some(l) = log
        && l.size() > 0
        && l.entry(l.size() - 1)
            .is_some_and(|e| e[..] == *text.as_bytes())
    {
        return Some(l);
    }
    let files = match LogFiles::read_store(store).await {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("clearcount: the static site shows no config log: {e}");
            return None;
        }
    };
    // Verifying hashes the whole log: off the runtime.
    let config = text.as_bytes().to_vec();
    let verified =
        tokio::task::spawn_blocking(move || ServedLog::verify(files, &config, "config/log"))
            .await
            .unwrap_or_else(|e| Err(format!("verifying the log failed: {e}")));
    match verified {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            eprintln!("clearcount: the static site shows no config log: {e}");
            None
        }
    }
}

async fn read_inputs(
    store: Arc<dyn Store>,
    charts: Option<Arc<ChartData>>,
    log: Option<Arc<ServedLog>>,
) -> io::Result<Inputs> {
    let (archive, tables) = super::store::archive_and_tables(&*store).await?;
    let config_text = text(&*store, "config/current.toml").await?;
    let signature = text(&*store, "config/current.toml.minisig").await?;
    let tlog_proof = text(&*store, "config/current.toml.tlog-proof").await?;
    let config = match &config_text {
        Some(t) => match CollectionConfig::parse(t, "config/current.toml") {
            Ok(config) => Some(LoadedConfig {
                config,
                text: t.clone(),
                signature: signature.clone(),
                log: log_for(&*store, t, log).await,
                also_logs: Vec::new(),
            }),
            Err(_) => None,
        },
        None => None,
    };
    let public_key = text(&*store, "config/public.key").await?;
    let history = store.list("config/history/").await?.objects;
    let charts = match charts {
        Some(c) => c,
        None => Arc::new(ChartData::from_archive(store).await?),
    };
    Ok(Inputs {
        archive,
        tables,
        config_text,
        signature,
        config,
        public_key,
        tlog_proof,
        history,
        charts,
    })
}

/// The pages of the site, as (key, HTML), the entry page last.
fn pages(i: &Inputs, opts: &PublishOptions) -> Vec<(&'static str, String)> {
    let l = Links::Static;
    let config = i.config.as_ref().map(|c| &c.config);
    let page = |title: &str, active: &str, body: String| render::page(title, active, &body, l);
    vec![
        (
            "site/charts.html",
            page(
                "Charts",
                l.charts(),
                render::charts_body(&i.charts, config, opts.min_reports),
            ),
        ),
        (
            "site/data.html",
            page(
                "Data",
                l.data(),
                render::data_body(l, &i.archive, &i.tables),
            ),
        ),
        (
            "site/config.html",
            page(
                "Config",
                l.config(),
                render::config_body(l, i.config.as_ref(), i.public_key.as_deref(), &i.history),
            ),
        ),
        (
            "site/index.html",
            page(
                "Transparent telemetry",
                l.home(),
                render::index_body(l, i.archive.len(), config, opts.min_reports),
            ),
        ),
    ]
}

/// Writes the static site under `site/` from what the store holds now (the
/// archive files and the recorded config). Streams the archive (memory does
/// not grow with the number of reports); each object is replaced
/// atomically. Works the same on every [`Store`].
pub async fn publish_site(
    store: Arc<dyn Store>,
    opts: &PublishOptions,
) -> io::Result<PublishStats> {
    publish_site_with(store, opts, None, None).await
}

/// [`publish_site`], with the chart data of the archive and the config log
/// if the caller has them already (the server keeps them for its pages).
pub(crate) async fn publish_site_with(
    store: Arc<dyn Store>,
    opts: &PublishOptions,
    charts: Option<Arc<ChartData>>,
    log: Option<Arc<ServedLog>>,
) -> io::Result<PublishStats> {
    let i = read_inputs(store.clone(), charts, log).await?;
    let mut pages = pages(&i, opts);
    // The entry page last: once it is there, the pages it links to are too.
    let index = pages.pop();
    let mut objects: Vec<(&str, Vec<u8>)> = pages
        .into_iter()
        .map(|(k, html)| (k, html.into_bytes()))
        .collect();
    for (key, copy) in [
        ("site/config.toml", &i.config_text),
        ("site/config.toml.minisig", &i.signature),
        ("site/public.key", &i.public_key),
        ("site/config.toml.tlog-proof", &i.tlog_proof),
        ("site/config.toml.proof", &i.tlog_proof),
    ] {
        if let Some(t) = copy {
            objects.push((key, t.clone().into_bytes()));
        }
    }
    objects.extend(index.map(|(k, html)| (k, html.into_bytes())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_relatively_and_escape() {
        let text = "version = 3\nsample_rate = 0.1\n# <b>\n";
        let i = Inputs {
            archive: vec![ObjectMeta {
                key: "archive/2026-11-16.ndjson".into(),
                size: 2048,
            }],
            tables: vec![ObjectMeta {
                key: "archive/2026-11-16.parquet".into(),
                size: 1024,
            }],
            config_text: Some(text.into()),
            signature: None,
            config: CollectionConfig::parse(text, "c")
                .ok()
                .map(|config| LoadedConfig {
                    config,
                    text: text.into(),
                    signature: None,
                    log: None,
                    also_logs: Vec::new(),
                }),
            public_key: None,
            tlog_proof: None,
            history: vec![ObjectMeta {
                key: "config/history/v3.toml".into(),
                size: 10,
            }],
            charts: Arc::default(),
        };
        let pages = pages(&i, &PublishOptions::default());
        let page = |k: &str| &pages.iter().find(|p| p.0 == k).unwrap().1;
        let d = page("site/data.html");
        assert!(d.contains(r#"href="../archive/2026-11-16.ndjson""#), "{d}");
        assert!(d.contains(r#"href="../archive/2026-11-16.parquet""#), "{d}");
        let c = page("site/config.html");
        assert!(c.contains("# &lt;b&gt;") && c.contains("../config/history/v3.toml"));
        assert!(page("site/charts.html").contains("No reports in the archive yet."));
        assert_eq!(pages.last().unwrap().0, "site/index.html");
        for (k, html) in &pages {
            assert!(!html.contains("href=\"/"), "{k}: {html}");
            assert!(!html.contains(">Counters<"), "{k}: {html}");
        }
    }
}
