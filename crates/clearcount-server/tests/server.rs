//! The collection server against real HTTP over loopback: ingest, refusals,
//! filtering, dedup, the archive, the pages, config reload, load. Only the
//! crate's public API: the server runs in-process (`serve_with_shutdown`,
//! `run_blocking` in a child process) and the archive is rebuilt with
//! `merge_blocking`, as `clearcount merge` does.

mod common;

use clearcount_protocol::report::{ProgramReport, Report};
use clearcount_server::{MergeStats, ServerOptions, merge_blocking};
use common::{KillOnDrop, TempDir};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CONFIG_V1: &str = r#"
version = 1
sample_rate = 0.5

[[program]]
name = "tool"
versions = ["1.*"]
os = ["linux", "macos"]
arch = ["x86_64", "aarch64"]

[[program.counter]]
name = "tool/command:{build,test,run}"
rate = 0.5

[[program.counter]]
name = "tool/crash"
rate = 0.5
"#;

const COUNTERS: &str = r#"
program = "tool"

[[counter]]
name = "tool/command:{build,test,run}"
kind = "plain"
description = "Which subcommand was run."
question = "Which commands matter most?"

[[counter]]
name = "tool/crash"
kind = "stack"
depth = 8
description = "Where the tool crashed."
question = "Which crashes are most common?"
"#;

/// A server running in its own runtime, stopped on drop.
struct Server {
    base: String,
    data: PathBuf,
    config: PathBuf,
    min_reports: u64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
    _dir: TempDir,
}

impl Server {
    fn start(config: &str, min_reports: u64) -> Server {
        Self::start_with(config, min_reports, |_| {})
    }

    fn start_with(config: &str, min_reports: u64, tune: impl FnOnce(&mut ServerOptions)) -> Server {
        let dir = TempDir::new("srv");
        let data = dir.0.join("data");
        // Signed and in its config log (`<dir>/log`, found beside it).
        let published = common::publish(&dir.0, config);
        let cfg = published.config.clone();
        let counters = dir.0.join("counters");
        std::fs::create_dir_all(&counters).unwrap();
        std::fs::write(counters.join("tool.toml"), COUNTERS).unwrap();
        let mut opts = ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            data: data.display().to_string(),
            config: Some(cfg.clone()),
            public_key: Some(published.public_key.clone()),
            log: None,
            also_logs: Vec::new(),
            counters: Some(counters),
            min_reports,
            merge_interval: Duration::from_secs(3600),
            // These tests send hundreds of uploads from one address.
            limits: clearcount_server::Limits {
                uploads_per_minute: 0,
                ..Default::default()
            },
            metrics_addr: None,
        };
        tune(&mut opts);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let r = clearcount_server::serve_with_shutdown(opts, Some(ready_tx), async {
                let _ = stop_rx.await;
            })
            .await;
            if let Err(e) = r {
                eprintln!("server stopped: {e}");
            }
        });
        let addr = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), ready_rx).await })
            .expect("server did not start in time")
            .expect("server failed to start");
        Server {
            base: format!("http://{addr}"),
            data,
            config: cfg,
            min_reports,
            stop: Some(stop_tx),
            rt: Some(rt),
            _dir: dir,
        }
    }

    fn post(&self, body: &[u8]) -> (u16, String) {
        let mut r = agent()
            .post(&format!("{}/upload", self.base))
            .content_type("application/json")
            .send(body)
            .expect("transport error");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = agent()
            .get(&format!("{}{path}", self.base))
            .call()
            .expect("transport error");
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .with_config()
            .limit(100 << 20)
            .read_to_string()
            .unwrap_or_default();
        (status, body)
    }

    fn stored(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.data.join("reports"), &mut out);
        out.sort();
        out
    }

    /// `clearcount merge --data DATA --min-reports K`, K as the server's.
    fn merge(&self) -> MergeStats {
        merge_blocking(&self.data.display().to_string(), self.min_reports).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// The Monday-or-whatever `weeks` weeks before today (UTC).
fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn report(x: f64, counters: &[(&str, u64)]) -> Report {
    let mut p = ProgramReport::new("tool", "1.2.0", "linux", "x86_64");
    for (n, c) in counters {
        p.counters.insert((*n).into(), *c);
    }
    Report {
        week: week(1),
        x,
        config: 1,
        programs: vec![p],
    }
}

#[test]
fn valid_report_is_kept() {
    let s = Server::start(CONFIG_V1, 10);
    let r = report(0.25, &[("tool/command:build", 3), ("tool/command:test", 1)]);
    let (status, body) = s.post(&r.to_bytes());
    assert_eq!(status, 201, "{body}");
    assert!(body.starts_with("stored "), "{body}");
    let stored = s.stored();
    assert_eq!(stored.len(), 1);
    let kept = Report::from_slice(&std::fs::read(&stored[0]).unwrap()).unwrap();
    assert_eq!(kept.programs, r.programs);
    assert!(
        stored[0]
            .to_string_lossy()
            .contains(&format!("reports/{}/", r.week))
    );
    // Nothing but reports, the archive dirs and the config history: no
    // address, no log.
    let all = {
        let mut v = Vec::new();
        walk(&s.data, &mut v);
        v
    };
    for p in all {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        assert!(
            !text.contains("127.0.0.1"),
            "{} holds an address",
            p.display()
        );
    }
}

#[test]
fn bad_inputs_are_refused_with_a_reason_and_nothing_stored() {
    let s = Server::start(CONFIG_V1, 10);
    let good = report(0.25, &[("tool/command:build", 3)]);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_slice(&good.to_bytes()).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let mut big = report(0.25, &[]);
    for i in 0..5000 {
        big.programs[0]
            .counters
            .insert(format!("tool/command:padding-{i:08}"), 1);
    }
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("not json", b"hello".to_vec(), 400, "invalid report"),
        ("empty", Vec::new(), 400, "invalid report"),
        (
            "unknown field",
            with(&|v| v["installation"] = "abc".into()),
            400,
            "unknown field",
        ),
        (
            "wrong type",
            with(&|v| v["x"] = "0.5".into()),
            400,
            "invalid type",
        ),
        (
            "wrong nested type",
            with(&|v| v["programs"][0]["counters"]["tool/command:build"] = serde_json::json!([1])),
            400,
            "invalid type",
        ),
        ("deep nesting", deep.into_bytes(), 400, "invalid"),
        (
            "negative count",
            with(&|v| v["programs"][0]["counters"]["tool/command:build"] = (-3).into()),
            400,
            "invalid value",
        ),
        (
            "x too big",
            with(&|v| v["x"] = 1.5.into()),
            400,
            "not in [0, 1)",
        ),
        (
            "x negative",
            with(&|v| v["x"] = (-0.1).into()),
            400,
            "not in [0, 1)",
        ),
        (
            "week not a date",
            with(&|v| v["week"] = "last week".into()),
            400,
            "not a YYYY-MM-DD date",
        ),
        (
            "week in the future",
            with(&|v| v["week"] = week(-1).into()),
            400,
            "future",
        ),
        (
            "week too old",
            with(&|v| v["week"] = week(9).into()),
            400,
            "too old",
        ),
        (
            "bad counter name",
            with(&|v| v["programs"][0]["counters"] = serde_json::json!({"bad name": 1})),
            400,
            "invalid report",
        ),
        ("body too large", big.to_bytes(), 413, "too large"),
    ];
    for (what, body, want, reason) in cases {
        let (status, text) = s.post(&body);
        assert_eq!(status, want, "{what}: {text}");
        assert!(
            text.contains(reason),
            "{what}: reason {text:?} lacks {reason:?}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "{what}: {text:?}");
    }
    assert!(s.stored().is_empty(), "{:?}", s.stored());
}

#[test]
fn undeclared_things_are_dropped_and_the_rest_kept() {
    let s = Server::start(CONFIG_V1, 10);
    let mut r = report(
        0.25,
        &[
            ("tool/command:build", 2),
            ("tool/command:deploy", 1), // undeclared bucket
            ("tool/secret", 9),         // undeclared counter
        ],
    );
    r.programs
        .push(ProgramReport::new("other", "1.0.0", "linux", "x86_64")); // undeclared program
    r.programs[1].counters.insert("other/x".into(), 1);
    let mut wrong_os = ProgramReport::new("tool", "1.2.0", "plan9", "x86_64");
    wrong_os.counters.insert("tool/command:run".into(), 1);
    r.programs.push(wrong_os);
    let (status, body) = s.post(&r.to_bytes());
    assert_eq!(status, 201, "{body}");
    let stored = s.stored();
    assert_eq!(stored.len(), 1);
    let kept = Report::from_slice(&std::fs::read(&stored[0]).unwrap()).unwrap();
    assert_eq!(kept.programs.len(), 1);
    let names: Vec<&str> = kept.programs[0]
        .counters
        .keys()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(names, ["tool/command:build"]);

    // Above the rate: nothing kept, a 200 that says so, nothing stored.
    let (status, body) = s.post(&report(0.75, &[("tool/command:build", 2)]).to_bytes());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nothing stored"), "{body}");
    // Only undeclared things: the same.
    let (status, body) = s.post(&report(0.1, &[("tool/unknown", 2)]).to_bytes());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("nothing stored"), "{body}");
    assert_eq!(s.stored().len(), 1);
}

#[test]
fn duplicate_uploads_are_stored_once() {
    let s = Server::start(CONFIG_V1, 10);
    let r = report(0.125, &[("tool/command:run", 5)]);
    let (a, body_a) = s.post(&r.to_bytes());
    let (b, body_b) = s.post(&r.to_bytes());
    assert_eq!(a, 201, "{body_a}");
    assert_eq!(b, 200, "{body_b}");
    assert!(body_b.contains("already stored"), "{body_b}");
    // The same report with its keys in another order and spacing is the same report.
    let pretty = serde_json::to_vec_pretty(&r).unwrap();
    assert_eq!(s.post(&pretty).0, 200);
    assert_eq!(s.stored().len(), 1);
    s.merge();
    let archive =
        std::fs::read_to_string(s.data.join(format!("archive/{}.ndjson", r.week))).unwrap();
    assert_eq!(archive.lines().count(), 1);
}

fn many_reports(n: usize, seed: u64) -> Vec<Report> {
    let cmds = ["build", "test", "run"];
    (0..n)
        .map(|i| {
            let x = ((i as u64 * 7919 + seed * 104729) % 50_000) as f64 / 100_001.0;
            let mut r = report(
                x,
                &[
                    (&format!("tool/command:{}", cmds[i % 3]), 1 + i as u64 % 5),
                    ("tool/command:build", 1),
                ],
            );
            if i % 4 == 0 {
                r.programs[0].os = "macos".into();
                r.programs[0].arch = "aarch64".into();
            }
            if i % 2 == 0 {
                r.week = week(2);
            }
            r.programs[0]
                .stacks
                .insert(format!("tool/crash\nmain:+{}", i % 3), 1);
            r
        })
        .collect()
}

#[test]
fn pages_show_charts_once_enough_reports_are_in() {
    let s = Server::start(CONFIG_V1, 3);
    for r in many_reports(30, 1) {
        let (status, body) = s.post(&r.to_bytes());
        assert!(status == 201 || status == 200, "{body}");
    }
    let stats = s.merge();
    assert_eq!(stats.weeks, 2);
    assert_eq!(stats.reports as usize, s.stored().len());

    let (status, home) = s.get("/");
    assert_eq!(status, 200);
    assert!(home.contains("href=\"/charts\"") && home.contains("Transparent telemetry"));

    let (status, charts) = s.get("/charts");
    assert_eq!(status, 200);
    assert!(charts.contains("<svg"), "{charts}");
    assert!(charts.contains("<title id="));
    for t in [
        "tool: versions",
        "tool: operating systems",
        "tool: architectures",
        "counter tool/command",
        "counter tool/crash",
    ] {
        assert!(charts.contains(t), "missing chart {t}");
    }
    assert!(charts.contains("<rect"), "no bars");
    assert!(charts.contains("build, week of"), "no bar titles");
    assert!(charts.contains(r#"class="legend""#));
    assert!(!charts.contains("<script"));

    let (status, data) = s.get("/data/");
    assert_eq!(status, 200);
    let file = format!("{}.ndjson", week(1));
    assert!(data.contains(&file), "{data}");
    let (status, nd) = s.get(&format!("/data/{file}"));
    assert_eq!(status, 200);
    assert!(nd.lines().count() >= 10);
    for line in nd.lines() {
        Report::from_slice(line.as_bytes()).unwrap();
    }
    assert_eq!(s.get("/data/..%2Fconfig.toml").0, 404);
    assert_eq!(s.get("/data/nope.ndjson").0, 404);

    let (status, cfg) = s.get("/config");
    assert_eq!(status, 200);
    assert!(
        cfg.contains("sample_rate = 0.5") && cfg.contains("v1.toml"),
        "{cfg}"
    );
    let (status, raw) = s.get("/config/history/v1.toml");
    assert_eq!((status, raw.as_str()), (200, CONFIG_V1));
    assert_eq!(s.get("/config.toml").1, CONFIG_V1);

    let (status, counters) = s.get("/counters");
    assert_eq!(status, 200);
    assert!(counters.contains("Which subcommand was run."), "{counters}");
    assert!(counters.contains("tool/command:{build,test,run}"));

    assert_eq!(s.get("/nope").0, 404);
}

#[test]
fn charts_hide_buckets_seen_in_fewer_than_k_reports() {
    let s = Server::start(CONFIG_V1, 5);
    // 6 reports with "build", 2 with "run".
    for i in 0..6 {
        let mut c = vec![("tool/command:build", 1)];
        if i < 2 {
            c.push(("tool/command:run", 1));
        }
        assert_eq!(s.post(&report(0.01 * (i + 1) as f64, &c).to_bytes()).0, 201);
    }
    s.merge();
    let (_, charts) = s.get("/charts");
    assert!(charts.contains("build, week of"));
    assert!(
        !charts.contains("run, week of"),
        "a bucket under k is shown"
    );
    assert!(charts.contains("more buckets not shown"));
}

#[test]
fn merge_is_idempotent_and_streams_every_report_once() {
    let s = Server::start(CONFIG_V1, 10);
    for r in many_reports(200, 2) {
        s.post(&r.to_bytes());
    }
    let n = s.stored().len();
    let first = s.merge();
    assert_eq!(first.reports as usize, n);
    let read = |w: &str| std::fs::read(s.data.join(format!("archive/{w}.ndjson"))).unwrap();
    let (a1, a2) = (read(&week(1)), read(&week(2)));
    let second = s.merge();
    assert_eq!(first, second);
    assert_eq!(read(&week(1)), a1);
    assert_eq!(read(&week(2)), a2);
    // Two merges at once do not tear the archive.
    let d1 = s.data.display().to_string();
    let d2 = d1.clone();
    let t1 = std::thread::spawn(move || merge_blocking(&d1, 10).unwrap());
    let t2 = std::thread::spawn(move || merge_blocking(&d2, 10).unwrap());
    t1.join().unwrap();
    t2.join().unwrap();
    assert_eq!(read(&week(1)), a1);
    // Nothing left behind in the temporary directory.
    let tmp: Vec<_> = std::fs::read_dir(s.data.join(".tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    // Every stored report is in the archive exactly once.
    let lines: std::collections::BTreeSet<Vec<u8>> = a1
        .split(|&b| b == b'\n')
        .chain(a2.split(|&b| b == b'\n'))
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect();
    assert_eq!(lines.len(), n);
}

#[test]
fn the_server_merges_on_its_own_schedule() {
    let s = Server::start_with(CONFIG_V1, 10, |o| {
        o.merge_interval = Duration::from_millis(200);
    });
    let r = report(0.2, &[("tool/command:test", 1)]);
    assert_eq!(s.post(&r.to_bytes()).0, 201);
    let path = s.data.join(format!("archive/{}.ndjson", r.week));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [r.to_bytes(), b"\n".to_vec()].concat()
    );
}

#[test]
fn config_is_reloaded_when_the_file_changes() {
    let s = Server::start(CONFIG_V1, 10);
    let dir = s.config.parent().unwrap().to_path_buf();
    let r = report(0.2, &[("tool/command:build", 1), ("tool/new", 4)]);
    assert_eq!(s.post(&r.to_bytes()).0, 201);

    // A broken config: the old one stays in force.
    std::fs::write(&s.config, "version = 2\nthis is not toml").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let r2 = report(0.21, &[("tool/command:build", 1)]);
    assert_eq!(s.post(&r2.to_bytes()).0, 201);

    // A valid version 2 that declares tool/new, published (signed, in the
    // log).
    let v2 = CONFIG_V1.replace("version = 1", "version = 2")
        + "\n[[program.counter]]\nname = \"tool/new\"\nrate = 0.5\n";
    common::publish(&dir, &v2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, c) = s.get("/config.toml");
        if c == v2 {
            break;
        }
        assert!(Instant::now() < deadline, "config not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r3 = report(0.22, &[("tool/command:build", 1), ("tool/new", 4)]);
    assert_eq!(s.post(&r3.to_bytes()).0, 201);
    let kept: Vec<Report> = s
        .stored()
        .iter()
        .map(|p| Report::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    let with_new = kept
        .iter()
        .filter(|k| k.programs[0].counters.contains_key("tool/new"))
        .count();
    assert_eq!(with_new, 1);
    assert!(kept.iter().any(|k| k.config == 2));

    // A lower version (signed, but an older entry of the log) is refused;
    // history holds both versions.
    assert!(common::try_publish(&dir, CONFIG_V1).is_err());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(s.get("/config.toml").1, v2);
    let (_, page) = s.get("/config");
    assert!(
        page.contains("v1.toml") && page.contains("v2.toml"),
        "{page}"
    );
}

#[test]
fn a_signed_config_is_verified() {
    // The published config of the workspace (`config/` at its root), its
    // log in `config/log/`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let key = root.join("clearcount.pub");
    let dir = TempDir::new("signed");
    let data = dir.0.join("data").display().to_string();
    let opts = |config: PathBuf| ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        data: data.clone(),
        config: Some(config),
        public_key: Some(key.clone()),
        log: Some(root.join("log")),
        ..ServerOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The published config and its signature: the server starts.
    let ok = rt.block_on(clearcount_server::serve_with_shutdown(
        opts(root.join("config.toml")),
        None,
        async {},
    ));
    assert!(ok.is_ok(), "{ok:?}");
    // A changed config with the old signature: refused at start.
    let cfg = dir.0.join("config.toml");
    let text = std::fs::read_to_string(root.join("config.toml")).unwrap();
    std::fs::write(&cfg, text.replace("sample_rate = 0.1", "sample_rate = 1.0")).unwrap();
    std::fs::copy(
        root.join("config.toml.minisig"),
        dir.0.join("config.toml.minisig"),
    )
    .unwrap();
    let bad = rt.block_on(clearcount_server::serve_with_shutdown(
        opts(cfg),
        None,
        async {},
    ));
    let err = bad.unwrap_err();
    assert!(err.contains("signature"), "{err}");
}

#[test]
fn bounded_load_loses_nothing() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let s = Server::start(CONFIG_V1, 10);
    let reports = many_reports(THREADS * PER_THREAD, 3);
    let base = s.base.clone();
    let handles: Vec<_> = reports
        .chunks(PER_THREAD)
        .map(|chunk| {
            let chunk: Vec<Vec<u8>> = chunk.iter().map(|r| r.to_bytes()).collect();
            let url = format!("{base}/upload");
            std::thread::spawn(move || {
                let a = agent();
                let mut created = 0;
                for body in chunk {
                    let r = a.post(&url).send(&body[..]).expect("transport error");
                    match r.status().as_u16() {
                        201 => created += 1,
                        200 => {}
                        s => panic!("status {s}"),
                    }
                }
                created
            })
        })
        .collect();
    let created: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let distinct: std::collections::BTreeSet<Vec<u8>> =
        reports.iter().map(|r| r.to_bytes()).collect();
    assert_eq!(created, distinct.len());
    assert_eq!(s.stored().len(), distinct.len());
    let stats = s.merge();
    assert_eq!(stats.reports as usize, distinct.len());
    // The server still answers.
    assert_eq!(s.get("/").0, 200);
}

/// Not a test by itself: the child process of
/// [`kill_9_during_ingest_and_merge_leaves_no_partial_file`], run when
/// `CLEARCOUNT_TEST_CHILD` is set (`serve`: a server that prints its
/// address; `merge`: merges in a loop).
#[test]
fn child_process() {
    let Ok(mode) = std::env::var("CLEARCOUNT_TEST_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("CLEARCOUNT_TEST_DIR").unwrap());
    let data = dir.join("data").display().to_string();
    if mode == "merge" {
        loop {
            merge_blocking(&data, 10).unwrap();
        }
    }
    let opts = ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        data,
        config: Some(dir.join("config.toml")),
        public_key: Some(dir.join("config.pub")),
        merge_interval: Duration::from_millis(100),
        limits: clearcount_server::Limits {
            uploads_per_minute: 0,
            ..Default::default()
        },
        ..ServerOptions::default()
    };
    clearcount_server::run_blocking(opts, |addr| {
        use std::io::Write;
        println!("CHILD-ADDR {addr}");
        let _ = std::io::stdout().flush();
    })
    .unwrap();
}

fn spawn_child(mode: &str, dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CLEARCOUNT_TEST_CHILD", mode)
        .env("CLEARCOUNT_TEST_DIR", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The reports in the archive files, each checked whole; the tables
/// beside them (Parquet, CSV) are checked whole too.
fn check_archive(data: &Path) -> usize {
    let mut lines = 0;
    if let Ok(rd) = std::fs::read_dir(data.join("archive")) {
        for e in rd.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let name = e.file_name().into_string().unwrap();
            if name.ends_with(".parquet") {
                assert!(
                    bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
                    "torn {name}"
                );
                continue;
            }
            if name.ends_with(".csv") {
                assert!(
                    bytes.starts_with(b"week,program,") && bytes.ends_with(b"\n"),
                    "torn {name}"
                );
                continue;
            }
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "torn archive file");
            for line in text.lines() {
                Report::from_slice(line.as_bytes()).expect("partial line in the archive");
                lines += 1;
            }
        }
    }
    lines
}

#[test]
fn kill_9_during_ingest_and_merge_leaves_no_partial_file() {
    use std::io::BufRead;
    let dir = TempDir::new("kill");
    common::publish(&dir.0, CONFIG_V1);
    let data = dir.0.join("data");

    // 1. Kill the server while four clients upload as fast as they can.
    let mut child = KillOnDrop(spawn_child("serve", &dir.0));
    let stdout = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            // libtest may print "test child_process ... " first on the line.
            if let Some((_, a)) = line.split_once("CHILD-ADDR ") {
                let _ = tx.send(a.trim().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).ok();
    let url = format!(
        "http://{}/upload",
        addr.expect("child server did not start")
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4u64)
        .map(|t| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut stored = 0;
                for i in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = report((t * 100_000 + i) as f64 / 1e6, &[("tool/command:build", 1)]);
                    match a.post(&url).send(&r.to_bytes()[..]) {
                        Ok(resp) if resp.status().as_u16() == 201 => stored += 1,
                        Ok(resp) => panic!("status {}", resp.status()),
                        Err(_) => break, // the server is gone
                    }
                }
                stored
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acknowledged: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(acknowledged > 0, "no upload went through before the kill");

    let mut files = Vec::new();
    walk(&data.join("reports"), &mut files);
    for f in &files {
        Report::from_slice(&std::fs::read(f).unwrap()).expect("partial report file");
    }
    // Every acknowledged report is there (at most the in-flight ones more).
    assert!(files.len() >= acknowledged && files.len() <= acknowledged + 4);
    check_archive(&data);

    // 2. Kill merges in a loop, at some point in the middle of one.
    let mut child = KillOnDrop(spawn_child("merge", &dir.0));
    std::thread::sleep(Duration::from_millis(400));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let lines = check_archive(&data);
    assert!(lines <= files.len(), "{lines} of {}", files.len());
    // A fresh merge completes the archive.
    merge_blocking(&data.display().to_string(), 10).unwrap();
    assert_eq!(check_archive(&data), files.len());
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A bounded load (6,000 uploads from 4 threads, merging every 100 ms) on a
/// server in its own process: after a warm-up its memory stays flat.
#[test]
fn server_memory_stays_flat_under_load() {
    use std::io::BufRead;
    let dir = TempDir::new("mem");
    common::publish(&dir.0, CONFIG_V1);
    let mut child = KillOnDrop(spawn_child("serve", &dir.0));
    let pid = child.0.id();
    let mut lines = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server prints its address")
            .unwrap();
        // The test harness may have printed "test child_process ... " first.
        if let Some((_, a)) = line.split_once("CHILD-ADDR ") {
            break a.trim().to_string();
        }
    };
    // Keep reading what the server prints, so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let url = format!("http://{addr}/upload");
    let reports: Vec<Vec<u8>> = many_reports(6000, 11)
        .iter()
        .map(|r| r.to_bytes())
        .collect();
    let send = |batch: &[Vec<u8>]| {
        std::thread::scope(|s| {
            for part in batch.chunks(batch.len().div_ceil(4)) {
                let url = url.clone();
                s.spawn(move || {
                    let a = agent();
                    for body in part {
                        let r = a.post(&url).send(&body[..]).expect("transport error");
                        assert!(r.status().is_success(), "status {}", r.status());
                    }
                });
            }
        });
    };
    send(&reports[..1500]);
    let warm = rss_kib(pid);
    send(&reports[1500..]);
    let after = rss_kib(pid);
    eprintln!("server RSS after 1,500 uploads: {warm} KiB; after 6,000: {after} KiB");
    assert!(
        after < warm + 16 * 1024,
        "memory grew from {warm} KiB to {after} KiB"
    );
    let stored = std::fs::read_dir(dir.0.join("data").join("reports"))
        .map(|weeks| {
            weeks
                .flatten()
                .flat_map(|w| std::fs::read_dir(w.path()).unwrap().flatten())
                .map(|shard| std::fs::read_dir(shard.path()).unwrap().count())
                .sum::<usize>()
        })
        .unwrap_or(0);
    let distinct: std::collections::BTreeSet<&Vec<u8>> = reports.iter().collect();
    assert_eq!(stored, distinct.len(), "every upload is stored once");
}
