//! The `clearcount` command on object storage, against a real
//! S3-compatible server: moto's server mode (`python3 -m pip install
//! 'moto[server]'`, installed by `.ci/run`), started by each test on a free
//! loopback port and killed at its end. Without moto the tests fail with a
//! message saying how to install it.
//!
//! - `clearcount merge` refuses a missing bucket with the reason;
//! - one `clearcount serve --data s3://…` end to end (upload, dedup, merge,
//!   pages, the static site);
//! - `clearcount serve` says, in its log and on `/config`, whether its store
//!   honours conditional writes (moto does; moto behind a proxy that drops
//!   `If-Match` and `If-None-Match` does not);
//! - two server processes on one bucket: a burst of uploads spread over both
//!   (some sent to both at once), one killed with SIGKILL midway, then two
//!   `clearcount merge` jobs at the same moment: every accepted report is in
//!   the archive exactly once.
//!
//! What the command left in the bucket is read with `object_store` straight
//! on moto, as any S3 client sees it. The S3 store itself (its contract,
//! its errors) is tested by the server crate's unit tests
//! (`crates/clearcount-server/src/s3/moto_tests.rs`).

mod common;
#[path = "../../clearcount-server/src/s3/strip_proxy.rs"]
mod strip_proxy;

use common::moto::{Moto, agent};
use common::{KillOnDrop, TempDir};

use clearcount_protocol::report::{ProgramReport, Report};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as OsPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
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
"#;

/// The declared counters the config is checked against when published.
const COUNTERS: &str = r#"
program = "tool"

[[counter]]
name = "tool/command:{build,test,run}"
kind = "plain"
description = "Which subcommand was run."
question = "Which commands matter most?"
"#;

/// The objects under `s3://bucket/prefix`, read with a plain S3 client.
struct Bucket {
    s3: AmazonS3,
    prefix: String,
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    /// `url` is `s3://bucket/prefix`.
    fn open(moto: &Moto, url: &str) -> Bucket {
        let rest = url.strip_prefix("s3://").unwrap();
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = AmazonS3Builder::new()
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_bucket_name(bucket)
            .build()
            .unwrap();
        Bucket {
            s3,
            prefix: prefix.trim_matches('/').to_owned(),
            rt: runtime(),
        }
    }

    fn path(&self, key: &str) -> OsPath {
        OsPath::from(format!("{}/{key}", self.prefix))
    }

    /// The object under `key` (relative to the prefix), if there is one.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.rt.block_on(async {
            match self.s3.get(&self.path(key)).await {
                Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => panic!("get {key}: {e}"),
            }
        })
    }

    /// The `Content-Type` the object under `key` is stored with.
    fn content_type(&self, key: &str) -> String {
        self.rt.block_on(async {
            let r = self.s3.get(&self.path(key)).await.unwrap();
            r.attributes
                .get(&object_store::Attribute::ContentType)
                .map(|v| v.as_ref().to_owned())
                .unwrap_or_default()
        })
    }

    /// One level under `dir` (relative to the prefix, ending in `/`): the
    /// names of the sub-directories and of the objects.
    fn list(&self, dir: &str) -> (Vec<String>, Vec<String>) {
        let full = self.path(dir.trim_end_matches('/'));
        let r = self
            .rt
            .block_on(self.s3.list_with_delimiter(Some(&full)))
            .unwrap();
        let name = |p: &OsPath| p.filename().unwrap_or_default().to_owned();
        let mut dirs: Vec<String> = r.common_prefixes.iter().map(name).collect();
        let mut objects: Vec<String> = r.objects.iter().map(|o| name(&o.location)).collect();
        dirs.sort();
        objects.sort();
        (dirs, objects)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

/// Report number `i`: its X is unique, so it can be found in the archive.
fn report(i: usize) -> Report {
    let mut p = ProgramReport::new("tool", "1.2.0", "linux", "x86_64");
    p.counters
        .insert("tool/command:build".into(), 1 + (i % 7) as u64);
    if i.is_multiple_of(3) {
        p.counters.insert("tool/command:test".into(), 2);
    }
    Report {
        week: week(1),
        x: x_of(i),
        config: 1,
        programs: vec![p],
    }
}

fn x_of(i: usize) -> f64 {
    0.001 + i as f64 * 0.0001
}

fn index_of(x: f64) -> usize {
    ((x - 0.001) / 0.0001).round() as usize
}

/// The part of the old `clear_errors_for_a_missing_bucket_and_a_bad_url`
/// that runs the command (the store's errors are unit tests of the server
/// crate).
#[test]
fn merge_refuses_a_missing_bucket_with_the_reason() {
    let moto = Moto::start();
    let out = Command::new(env!("CARGO_BIN_EXE_clearcount"))
        .args(["merge", "--data", "s3://no-such-bucket"])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}

// ---------------------------------------------------------------------------
// Servers on S3

/// A `clearcount serve` process.
struct ServeProc {
    base: String,
    child: KillOnDrop,
}

fn serve(moto: &Moto, data: &str, config: &std::path::Path) -> ServeProc {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_clearcount"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data", data])
            .arg("--config")
            .arg(config)
            // Published with `common::publish_config`: the key beside it
            // (and the config log, found there too).
            .arg("--public-key")
            .arg(config.with_file_name("config.pub"))
            .args(["--min-reports", "1", "--merge-interval", "3600"])
            // A burst of uploads from one address.
            .args(["--rate-limit", "0"])
            .envs(moto.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start clearcount serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {} // keep the pipe drained
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("clearcount serve did not print its address");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    ServeProc {
        base: format!("http://{addr}"),
        child,
    }
}

/// Posts a report: Some(true) stored now, Some(false) already stored,
/// None not accepted (error status or no answer).
fn post(base: &str, body: &[u8]) -> Option<bool> {
    let mut r = agent()
        .post(&format!("{base}/upload"))
        .content_type("application/json")
        .send(body)
        .ok()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    match status {
        201 => Some(true),
        200 if text.starts_with("already stored") => Some(false),
        _ => None,
    }
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().expect("transport error");
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(100 << 20)
        .read_to_string()
        .unwrap_or_default();
    (status, body)
}

fn merge(moto: &Moto, data: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clearcount"))
        .args(["merge", "--data", data])
        .envs(moto.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start clearcount merge")
}

fn wait_ok(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "clearcount merge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The archive lines of the week: report index → times seen.
fn archive_counts(bucket: &Bucket) -> BTreeMap<usize, usize> {
    let key = format!("archive/{}.ndjson", week(1));
    let bytes = bucket.get(&key).expect("no archive file");
    let mut seen = BTreeMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let r = Report::from_slice(line).expect("an archive line is not a report");
        *seen.entry(index_of(r.x)).or_insert(0) += 1;
    }
    seen
}

/// The config, published (signed, in its config log `<dir>/log`).
fn write_config(dir: &TempDir) -> PathBuf {
    let counters = dir.0.join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    std::fs::write(counters.join("tool.toml"), COUNTERS).unwrap();
    common::publish_config(&dir.0, CONFIG, &counters)
}

#[test]
fn server_on_s3_end_to_end() {
    let moto = Moto::start();
    moto.bucket("e2e");
    let dir = TempDir::new("e2e");
    let cfg = write_config(&dir);
    let data = "s3://e2e/clearcount";
    let srv = serve(&moto, data, &cfg);

    for i in 0..20 {
        assert_eq!(
            post(&srv.base, &report(i).to_bytes()),
            Some(true),
            "report {i}"
        );
    }
    // Duplicates: stored once, answered 200.
    for i in 0..5 {
        assert_eq!(post(&srv.base, &report(i).to_bytes()), Some(false));
    }
    // A malformed report is refused and nothing is stored for it.
    assert_eq!(post(&srv.base, b"{\"week\":"), None);

    let out = wait_ok(merge(&moto, data));
    assert!(out.contains("20 reports"), "{out}");
    let bucket = Bucket::open(&moto, data);
    let counts = archive_counts(&bucket);
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&n| n == 1));

    // The server's pages read the same store: it sees a merge made by
    // another process within its poll interval (2 s) and builds its pages
    // again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let charts = loop {
        let (status, charts) = get(&format!("{}/charts", srv.base));
        assert_eq!(status, 200);
        if charts.contains(">20 reports over") || Instant::now() > deadline {
            break charts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        charts.contains("<svg") && charts.contains("20 reports"),
        "{charts}"
    );
    let (status, body) = get(&format!("{}/data/{}.ndjson", srv.base, week(1)));
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 20);
    let (status, cfg_page) = get(&format!("{}/config", srv.base));
    assert_eq!(status, 200);
    assert!(cfg_page.contains("v1.toml"), "config history missing");

    // The static site is in the bucket, with the same charts.
    let (_, site) = bucket.list("site/");
    let names: BTreeSet<&str> = site.iter().map(String::as_str).collect();
    for n in [
        "index.html",
        "charts.html",
        "data.html",
        "config.html",
        "config.toml",
        "config.toml.proof",
    ] {
        assert!(names.contains(n), "site/{n} missing: {names:?}");
    }
    // The config log is in the bucket for auditors, as text.
    let log_dir = dir.0.join("log");
    for rel in ["log.vkey", "checkpoint", "checkpoints/1", "entries/0"] {
        let key = format!("config/log/{rel}");
        assert_eq!(
            bucket.get(&key),
            Some(std::fs::read(log_dir.join(rel)).unwrap()),
            "{key}"
        );
        assert!(bucket.content_type(&key).starts_with("text/plain"), "{key}");
    }
    let config_page = String::from_utf8(bucket.get("site/config.html").unwrap()).unwrap();
    assert!(
        config_page.contains("../config/log/entries/0"),
        "{config_page}"
    );
    let page = String::from_utf8(bucket.get("site/charts.html").unwrap()).unwrap();
    assert!(page.contains("<svg") && page.contains("20 reports"));
    let data_page = String::from_utf8(bucket.get("site/data.html").unwrap()).unwrap();
    assert!(data_page.contains(&format!("../archive/{}.ndjson", week(1))));
    // Stored with the Content-Type a web server or CDN passes on.
    let ct = bucket.content_type("site/index.html");
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(bucket.get("site/index.html").unwrap()).unwrap();
    assert!(html.contains("charts.html"));
    drop(srv);
}

#[test]
fn two_instances_one_killed_two_merges_every_accepted_report_once() {
    let moto = Moto::start();
    moto.bucket("shared");
    let dir = TempDir::new("two");
    let cfg = write_config(&dir);
    let data = "s3://shared/tele";
    let a = serve(&moto, data, &cfg);
    let mut b = serve(&moto, data, &cfg);
    let bases = [a.base.clone(), b.base.clone()];

    const N: usize = 300;
    const THREADS: usize = 4;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let created = Arc::new(AtomicUsize::new(0));
    let refused_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..THREADS {
        let (next, done, accepted, created, refused_b) = (
            next.clone(),
            done.clone(),
            accepted.clone(),
            created.clone(),
            refused_b.clone(),
        );
        let bases = bases.clone();
        clients.push(std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= N {
                    break;
                }
                let body = report(i).to_bytes();
                let answers: Vec<Option<bool>> = if i.is_multiple_of(10) {
                    // Sent to both instances at the same moment.
                    let b0 = bases[0].clone();
                    let body0 = body.clone();
                    let t = std::thread::spawn(move || post(&b0, &body0));
                    let other = post(&bases[1], &body);
                    vec![t.join().unwrap(), other]
                } else if i.is_multiple_of(5) {
                    // Sent to one, then again to the other.
                    vec![post(&bases[i % 2], &body), post(&bases[(i + 1) % 2], &body)]
                } else {
                    vec![post(&bases[i % 2], &body)]
                };
                if answers[answers.len() - 1].is_none() {
                    refused_b.fetch_add(1, Ordering::Relaxed);
                }
                let n_created = answers.iter().filter(|a| **a == Some(true)).count();
                assert!(n_created <= 1, "report {i} created twice");
                created.fetch_add(n_created, Ordering::Relaxed);
                if answers.iter().any(Option::is_some) {
                    accepted.lock().unwrap().insert(i);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill instance B (SIGKILL) midway through the burst.
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::Relaxed) < N / 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    b.child.0.kill().unwrap();
    b.child.0.wait().unwrap();
    let killed_at = done.load(Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(killed_at < N, "the kill came after the burst");
    assert!(
        accepted.len() < N,
        "every upload was accepted although B was killed midway"
    );
    assert!(accepted.len() > N / 2, "only {} accepted", accepted.len());

    // Two merges at the same moment, in two processes.
    let m1 = merge(&moto, data);
    let m2 = merge(&moto, data);
    wait_ok(m1);
    wait_ok(m2);

    let bucket = Bucket::open(&moto, data);
    let counts = archive_counts(&bucket);
    for i in &accepted {
        assert_eq!(
            counts.get(i),
            Some(&1),
            "accepted report {i} not in the archive once"
        );
    }
    for (i, n) in &counts {
        assert!(*i < N, "unknown report {i} in the archive");
        assert_eq!(*n, 1, "report {i} is {n} times in the archive");
    }
    // Nothing more than what was stored: one line per stored object, and a
    // report answered "stored" (201) by one instance only.
    let mut stored = 0;
    let (shards, _) = bucket.list(&format!("reports/{}/", week(1)));
    for d in &shards {
        stored += bucket.list(&format!("reports/{}/{d}/", week(1))).1.len();
    }
    assert_eq!(counts.len(), stored);
    assert!(created.load(Ordering::Relaxed) <= stored);
    // A report in flight at B when it was killed may be stored without an
    // answer: at most one per client thread.
    assert!(
        stored <= accepted.len() + THREADS,
        "{stored} stored, {} accepted",
        accepted.len()
    );

    // The surviving instance still serves, and the static site is there.
    let (status, body) = get(&format!("{}/data/{}.ndjson", a.base, week(1)));
    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), counts.len());
    for k in ["site/index.html", "site/charts.html", "site/data.html"] {
        assert!(bucket.get(k).is_some(), "{k} missing");
    }
    // The merge is idempotent: a third run gives the same bytes.
    let key = format!("archive/{}.ndjson", week(1));
    let before = bucket.get(&key);
    assert!(before.is_some());
    wait_ok(merge(&moto, data));
    assert_eq!(bucket.get(&key), before);
    let _ = std::io::stderr().flush();
}

/// `clearcount serve` probes its store when it starts and says, in its log
/// and on `/config`, whether it honours conditional writes: moto does; moto
/// behind a proxy that drops `If-Match` and `If-None-Match` (what Garage
/// 2.5 does to them) does not.
#[test]
fn serve_says_whether_its_store_honours_conditional_writes() {
    let moto = Moto::start();
    moto.bucket("cond");
    let proxy = strip_proxy::StripProxy::start(&moto.endpoint);
    let dir = TempDir::new("cond");
    let cfg = write_config(&dir);
    for (endpoint, want) in [
        (
            moto.endpoint.clone(),
            "conditional writes honoured (If-None-Match: *, If-Match)",
        ),
        (
            proxy.endpoint.clone(),
            "conditional writes NOT honoured (ignores If-None-Match: * and If-Match)",
        ),
    ] {
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_clearcount"))
                .args(["serve", "--addr", "127.0.0.1:0", "--data", "s3://cond/p"])
                .arg("--config")
                .arg(&cfg)
                .arg("--public-key")
                .arg(cfg.with_file_name("config.pub"))
                .envs(moto.env())
                .env("AWS_ENDPOINT_URL", &endpoint)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cannot start clearcount serve"),
        );
        let stderr = child.0.stderr.take().unwrap();
        let mut log = std::io::BufReader::new(stderr).lines();
        let line = log
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.starts_with("clearcount serve: store s3://cond/p: "))
            .expect("the server says what its store honours");
        assert!(line.contains(want), "{line}");
        std::thread::spawn(move || for _ in log {});
        let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap()).lines();
        let first = out.next().unwrap().unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        let (status, page) = get(&format!("http://{addr}/config"));
        assert_eq!(status, 200);
        assert!(page.contains(want), "{page}");
    }
}
