//! Operators' metrics: `clearcount serve --metrics-addr` serves `/metrics`
//! on an address of its own (never on the public one), in OpenMetrics text
//! that the Prometheus project's Python parser
//! (`prometheus_client.openmetrics.parser`, installed by `.ci/run`) accepts;
//! scraped before and after known traffic (uploads kept, a duplicate, one
//! with nothing to keep, bad ones, one too large, one the store cannot
//! write, rate-limited ones, a connection over the cap, merges), every
//! counter moved exactly as that traffic says.

mod common;

use clearcount_protocol::report::{ProgramReport, Report};
use common::moto::agent;
use common::{KillOnDrop, TempDir};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
version = 1
sample_rate = 0.5

[[program]]
name = "tool"
versions = ["1.*"]

[[program.counter]]
name = "tool/command:{build,test,run}"
rate = 0.5
"#;

const COUNTERS: &str = r#"
program = "tool"

[[counter]]
name = "tool/command:{build,test,run}"
kind = "plain"
description = "Which subcommand was run."
question = "Which commands matter most?"
"#;

fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn report(program: &str, week: &str, i: u64) -> Vec<u8> {
    let mut p = ProgramReport::new(program, "1.2.0", "linux", "x86_64");
    p.counters.insert(format!("{program}/command:build"), 1 + i);
    Report {
        week: week.to_owned(),
        x: 0.001 * (i + 1) as f64,
        config: 1,
        programs: vec![p],
    }
    .to_bytes()
}

/// One sample: its labels (sorted) and value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// What the Python parser made of a scrape: each family's (type, unit),
/// and every sample.
struct Scrape {
    families: BTreeMap<String, (String, String)>,
    samples: Samples,
}

impl Scrape {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        l.sort();
        *self
            .samples
            .get(&(name.to_owned(), l))
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape"))
    }
}

/// Scrapes `url` and parses the text with `tests/python/openmetrics.py`.
fn scrape(url: &str) -> Scrape {
    let mut r = agent().get(url).call().expect("cannot scrape");
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.body_mut().read_to_string().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/openmetrics.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to parse the metrics (and prometheus_client: see .ci/run)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut families = BTreeMap::new();
    let mut samples = Samples::new();
    for f in json.as_array().unwrap() {
        let s = |k: &str| f[k].as_str().unwrap_or("").to_owned();
        families.insert(s("name"), (s("type"), s("unit")));
        for smp in f["samples"].as_array().unwrap() {
            let mut labels: Vec<(String, String)> = smp["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            labels.sort();
            samples.insert(
                (smp["name"].as_str().unwrap().to_owned(), labels),
                smp["value"].as_f64().unwrap(),
            );
        }
    }
    Scrape { families, samples }
}

/// A `clearcount serve` process: its public base URL and its metrics URL.
struct ServeProc {
    base: String,
    metrics: String,
    _child: KillOnDrop,
}

fn serve(data: &Path, config: &Path, extra: &[&str]) -> ServeProc {
    let mut child = KillOnDrop(
        common::clearcount()
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .arg("--public-key")
            .arg(config.with_file_name("config.pub"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start clearcount serve"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let url_in = |line: &str| {
        let rest = line.split("http://").nth(1)?;
        let url = rest.split_whitespace().next()?;
        Some(format!("http://{}", url.trim_end_matches('/')))
    };
    for pipe in [
        Box::new(child.0.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.0.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("server: {line}");
                let _ = tx.send(line);
            }
        });
    }
    let (mut base, mut metrics) = (None, None);
    while base.is_none() || metrics.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("clearcount serve did not print both addresses");
        if line.contains("listening on") {
            base = url_in(&line);
        } else if line.contains("metrics (OpenMetrics) on") {
            metrics = url_in(&line);
        }
    }
    ServeProc {
        base: base.unwrap(),
        metrics: metrics.unwrap(),
        _child: child,
    }
}

/// Posts `body` on a connection of its own; the status.
fn post(base: &str, body: &[u8]) -> u16 {
    agent()
        .post(&format!("{base}/upload"))
        .content_type("application/json")
        .send(body)
        .expect("transport error")
        .status()
        .as_u16()
}

/// Scrapes until `done` holds (up to 30 s).
fn scrape_until(url: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(url);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_are_openmetrics_on_their_own_address_and_every_counter_moves_with_the_traffic() {
    let dir = TempDir::new("metrics");
    let counters = dir.0.join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    std::fs::write(counters.join("tool.toml"), COUNTERS).unwrap();
    let config = common::publish_config(&dir.0, CONFIG, &counters);
    let data = dir.0.join("data");
    // A second week's directory cannot be made: the store fails to write
    // its reports.
    std::fs::create_dir_all(data.join("reports")).unwrap();
    std::fs::write(data.join("reports").join(week(2)), b"in the way").unwrap();
    let server = serve(
        &data,
        &config,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--merge-interval",
            "1",
            "--min-reports",
            "1",
            "--max-connections",
            "4",
            "--rate-limit",
            "1",
            "--rate-burst",
            "12",
        ],
    );
    assert_ne!(
        server.metrics.split('/').nth(2),
        server.base.split('/').nth(2),
        "metrics on the public address"
    );
    // The public port has no /metrics.
    let r = agent()
        .get(&format!("{}/metrics", server.base))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    let before = scrape(&server.metrics);
    let counters_at = |s: &Scrape| -> Vec<f64> {
        [
            ("clearcount_uploads_accepted_total", ("result", "stored")),
            ("clearcount_uploads_refused_total", ("reason", "invalid")),
            (
                "clearcount_connections_refused_total",
                ("reason", "over_cap"),
            ),
            ("clearcount_store_errors_total", ("op", "put_if_absent")),
        ]
        .iter()
        .map(|(n, l)| s.get(n, &[*l]))
        .collect()
    };
    assert_eq!(counters_at(&before), [0.0; 4]);
    assert_eq!(before.get("clearcount_config_version", &[]), 1.0);
    assert_eq!(before.get("clearcount_config_log_size", &[]), 1.0);

    // The traffic: 12 uploads (the burst), then 3 over the rate limit.
    let w = week(1);
    for i in 0..5 {
        assert_eq!(post(&server.base, &report("tool", &w, i)), 201);
    }
    assert_eq!(post(&server.base, &report("tool", &w, 0)), 200); // duplicate
    assert_eq!(post(&server.base, &report("other", &w, 9)), 200); // nothing kept
    assert_eq!(post(&server.base, b"{not json"), 400);
    assert_eq!(post(&server.base, b"[]"), 400);
    assert_eq!(post(&server.base, &report("tool", &week(-1), 1)), 400); // future
    assert_eq!(post(&server.base, &vec![b' '; 70 * 1024]), 413);
    assert_eq!(post(&server.base, &report("tool", &week(2), 1)), 503); // store
    for i in 10..13 {
        assert_eq!(post(&server.base, &report("tool", &w, i)), 429);
    }
    // Every upload connection is closed (the agent kept none).
    scrape_until(&server.metrics, "no open connection", |s| {
        s.get("clearcount_connections_open", &[]) == 0.0
    });
    // Four connections fill the cap; a fifth is answered 503.
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(server.base.trim_start_matches("http://")).unwrap())
        .collect();
    scrape_until(&server.metrics, "four open connections", |s| {
        s.get("clearcount_connections_open", &[]) == 4.0
    });
    let mut fifth = TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    fifth
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    fifth.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(idle);

    // The server merges the week it received reports for within a second.
    let after = scrape_until(&server.metrics, "the merge of the week", |s| {
        s.samples.contains_key(&(
            "clearcount_archive_reports".into(),
            vec![("week".into(), w.clone())],
        )) && s.get("clearcount_connections_open", &[]) == 0.0
    });
    let expect = [
        (
            "clearcount_uploads_accepted_total",
            ("result", "stored"),
            5.0,
        ),
        (
            "clearcount_uploads_accepted_total",
            ("result", "duplicate"),
            1.0,
        ),
        (
            "clearcount_uploads_accepted_total",
            ("result", "nothing_kept"),
            1.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "invalid"),
            3.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "too_large"),
            1.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "store_error"),
            1.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "rate_limited"),
            3.0,
        ),
        ("clearcount_uploads_refused_total", ("reason", "busy"), 0.0),
        (
            "clearcount_uploads_refused_total",
            ("reason", "timeout"),
            0.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "unreadable"),
            0.0,
        ),
        (
            "clearcount_uploads_refused_total",
            ("reason", "no_config"),
            0.0,
        ),
        (
            "clearcount_connections_refused_total",
            ("reason", "over_cap"),
            1.0,
        ),
        (
            "clearcount_connections_refused_total",
            ("reason", "overflow"),
            0.0,
        ),
        (
            "clearcount_store_errors_total",
            ("op", "put_if_absent"),
            1.0,
        ),
        ("clearcount_store_errors_total", ("op", "replace_file"), 0.0),
        ("clearcount_store_errors_total", ("op", "list"), 0.0),
        ("clearcount_archive_reports", ("week", w.as_str()), 5.0),
    ];
    for (name, label, want) in expect {
        assert_eq!(after.get(name, &[label]), want, "{name}{label:?}");
    }
    // 15 uploads, the 4 idle connections and the scrapes' absence: the
    // metrics listener is not counted, the public one is.
    assert!(after.get("clearcount_connections_accepted_total", &[]) >= 20.0);
    let runs = after.get("clearcount_merge_runs_total", &[("result", "ok")]);
    assert!(runs >= 2.0, "the merge at start and the week's: {runs}");
    assert_eq!(
        after.get("clearcount_merge_runs_total", &[("result", "failed")]),
        0.0
    );
    assert_eq!(
        after.get("clearcount_merge_duration_seconds_count", &[]),
        runs
    );
    assert!(after.get("clearcount_merge_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(after.get("clearcount_archive_weeks", &[]), 1.0);
    for format in ["ndjson", "parquet", "csv"] {
        let size = std::fs::metadata(data.join(format!("archive/{w}.{format}")))
            .unwrap()
            .len() as f64;
        assert_eq!(
            after.get("clearcount_archive_bytes", &[("format", format)]),
            size,
            "{format}"
        );
    }
    for (family, kind, unit) in [
        ("clearcount_uploads_accepted", "counter", ""),
        ("clearcount_connections_open", "gauge", ""),
        ("clearcount_merge_duration_seconds", "histogram", "seconds"),
        ("clearcount_archive_bytes", "gauge", "bytes"),
        ("clearcount_config_version", "gauge", ""),
    ] {
        assert_eq!(
            after.families.get(family),
            Some(&(kind.to_owned(), unit.to_owned())),
            "{family}"
        );
    }
}
