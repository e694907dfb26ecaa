//! The object-storage backend against a real S3-compatible server: moto's
//! server mode (`python3 -m pip install 'moto[server]'`, installed by
//! `.ci/run`), started by each test on a free loopback port and killed at
//! its end. Without moto the tests fail with a message saying how to
//! install it.
//!
//! - the [`Store`] contract on S3 (conditional put, get, list, delete, a
//!   multipart `put_file` of a multi-MB file read back through `open`);
//! - one `clearcount serve --data s3://…` end to end (upload, dedup, merge,
//!   pages, the static site);
//! - two server processes on one bucket: a burst of uploads spread over both
//!   (some sent to both at once), one killed with SIGKILL midway, then two
//!   `clearcount merge` jobs at the same moment: every accepted report is in
//!   the archive exactly once.

#![cfg(all(feature = "s3", feature = "cli"))]

mod common;

use common::moto::{Moto, agent};
use common::{KillOnDrop, TempDir};

use clearcount::report::{ProgramReport, Report};
use clearcount::server::s3::S3Store;
use clearcount::server::store::{PutOutcome, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Write};
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

/// An S3 store on moto.
fn store(moto: &Moto, url: &str) -> Arc<dyn Store> {
    Arc::new(S3Store::from_url_with(url, moto.env()).unwrap())
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

// ---------------------------------------------------------------------------
// The Store contract

#[test]
fn store_contract_on_s3() {
    let moto = Moto::start();
    moto.bucket("contract");
    let rt = runtime();
    let s = store(&moto, "s3://contract/tele/prod");
    let other = store(&moto, "s3://contract/other");
    assert_eq!(s.describe(), "s3://contract/tele/prod");
    rt.block_on(async {
        // Conditional put: once, then Existed; the first bytes stay.
        let k = "reports/2026-11-16/ab/abcdef.json";
        assert_eq!(
            s.put_if_absent(k, b"first".to_vec()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_if_absent(k, b"second".to_vec()).await.unwrap(),
            PutOutcome::Existed
        );
        assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(s.get("reports/none.json").await.unwrap(), None);
        assert!(s.open("reports/none.json").await.unwrap().is_none());

        // Many writers race on one key: exactly one creates it.
        let race = "reports/2026-11-16/cd/race.json";
        let mut tasks = Vec::new();
        for n in 0..8u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.put_if_absent(race, vec![n]).await.unwrap()
            }));
        }
        let mut created = 0;
        for t in tasks {
            if t.await.unwrap() == PutOutcome::Created {
                created += 1;
            }
        }
        assert_eq!(created, 1);

        // put replaces.
        s.put("config/current.toml", b"v1".to_vec()).await.unwrap();
        s.put("config/current.toml", b"v2".to_vec()).await.unwrap();
        assert_eq!(
            s.get("config/current.toml").await.unwrap().as_deref(),
            Some(&b"v2"[..])
        );

        // list: one level, sorted, relative to the store's prefix.
        let top = s.list("").await.unwrap();
        assert_eq!(
            top.dirs,
            vec!["config/".to_string(), "reports/".to_string()]
        );
        assert!(top.objects.is_empty());
        let shards = s.list("reports/2026-11-16/").await.unwrap();
        assert_eq!(
            shards.dirs,
            vec![
                "reports/2026-11-16/ab/".to_string(),
                "reports/2026-11-16/cd/".to_string()
            ]
        );
        let objs = s.list("reports/2026-11-16/ab/").await.unwrap();
        assert_eq!(objs.objects.len(), 1);
        assert_eq!(objs.objects[0].key, k);
        assert_eq!(objs.objects[0].size, 5);
        assert!(s.list("nothing/").await.unwrap().objects.is_empty());
        // Another prefix of the same bucket sees none of it.
        assert_eq!(other.list("").await.unwrap(), Default::default());

        // delete: gone, and deleting again is no error.
        s.delete(k).await.unwrap();
        s.delete(k).await.unwrap();
        assert_eq!(s.get(k).await.unwrap(), None);

        // Bad keys and prefixes are refused before any request.
        assert!(s.put("../escape", vec![]).await.is_err());
        assert!(s.get("a//b").await.is_err());
        assert!(s.list("reports").await.is_err());
    });

    // put_file: a 21 MiB file, sent as a multipart upload, then read back
    // through the streaming reader.
    let dir = s.scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("big-{}", std::process::id()));
    let mut content = Vec::with_capacity(21 << 20);
    let mut v: u64 = 0x9e37_79b9_7f4a_7c15;
    while content.len() < 21 << 20 {
        v ^= v << 13;
        v ^= v >> 7;
        v ^= v << 17;
        content.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&path, &content).unwrap();
    let key = "archive/2026-11-16.ndjson";
    rt.block_on(s.put_file(key, &path)).unwrap();
    assert!(!path.exists(), "put_file leaves the local file behind");
    let listed = rt.block_on(s.list("archive/")).unwrap();
    assert_eq!(listed.objects[0].size, content.len() as u64);
    let reader = rt.block_on(s.open(key)).unwrap().unwrap();
    let (read_back, chunks) = rt
        .block_on(rt.spawn_blocking(move || {
            let mut reader = reader;
            let mut out = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut chunks = 0;
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                chunks += 1;
                out.extend_from_slice(&buf[..n]);
            }
            (out, chunks)
        }))
        .unwrap();
    assert!(read_back == content, "the object read back differs");
    assert!(chunks > 1);
    // A small file is one PutObject, replacing the big one atomically.
    let small = dir.join(format!("small-{}", std::process::id()));
    std::fs::write(&small, b"one line\n").unwrap();
    rt.block_on(s.put_file(key, &small)).unwrap();
    assert_eq!(
        rt.block_on(s.get(key)).unwrap().as_deref(),
        Some(&b"one line\n"[..])
    );
}

#[test]
fn clear_errors_for_a_missing_bucket_and_a_bad_url() {
    let moto = Moto::start();
    let e = S3Store::from_url_with("s3://no-such-bucket/x", moto.env())
        .expect_err("a missing bucket is an error");
    let msg = e.to_string();
    assert!(
        msg.contains("bucket no-such-bucket does not exist"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let e = S3Store::from_url_with("s3://B_A_D", moto.env())
        .err()
        .unwrap();
    assert!(e.to_string().contains("bucket name"), "{e}");
    let e = S3Store::from_url_with("s3://ok-bucket", [("AWS_NO_SUCH_SETTING", "1")])
        .err()
        .unwrap();
    assert!(e.to_string().contains("AWS_NO_SUCH_SETTING"), "{e}");
    // The server refuses to start on it, with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_clearcount"))
        .args(["merge", "--data", "s3://no-such-bucket"])
        .envs(moto.env())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn clear_error_when_the_credentials_are_refused() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0 moto checks every request's
    // access key; ours is unknown to it.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let e = S3Store::from_url_with("s3://locked-bucket", moto.env())
        .expect_err("an unknown access key is refused");
    let msg = e.to_string();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("credentials refused by s3://locked-bucket"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn clearcount_merge_publishes_the_static_site_on_a_directory_too() {
    let dir = TempDir::new("dirsite");
    let data = dir.0.join("data");
    let store: Arc<dyn Store> = Arc::new(clearcount::server::store::DirStore::open(&data).unwrap());
    let rt = runtime();
    rt.block_on(async {
        for i in 0..12 {
            let bytes = report(i).to_bytes();
            let key = clearcount::server::store::report_key(
                &week(1),
                &clearcount::server::store::sha256_hex(&bytes),
            );
            store.put_if_absent(&key, bytes).await.unwrap();
        }
        store
            .put("config/current.toml", CONFIG.as_bytes().to_vec())
            .await
            .unwrap();
        store
            .put("config/history/v1.toml", CONFIG.as_bytes().to_vec())
            .await
            .unwrap();
    });
    let stats = clearcount::server::merge::merge_blocking(&data.display().to_string()).unwrap();
    assert_eq!(stats.reports, 12);
    let site = data.join("site");
    let charts = std::fs::read_to_string(site.join("charts.html")).unwrap();
    assert!(
        charts.contains("<svg") && charts.contains("12 reports"),
        "{charts}"
    );
    let data_page = std::fs::read_to_string(site.join("data.html")).unwrap();
    let link = format!("../archive/{}.ndjson", week(1));
    assert!(data_page.contains(&link));
    // The relative link resolves to the archive file next to site/.
    assert!(site.join(&link).exists());
    let config_page = std::fs::read_to_string(site.join("config.html")).unwrap();
    assert!(config_page.contains("../config/history/v1.toml"));
    assert!(site.join("../config/history/v1.toml").exists());
    assert_eq!(
        std::fs::read_to_string(site.join("config.toml")).unwrap(),
        CONFIG
    );
    assert!(site.join("index.html").exists());
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
            .args(["--min-reports", "1", "--merge-interval", "3600"])
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
fn archive_counts(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>) -> BTreeMap<usize, usize> {
    let key = format!("archive/{}.ndjson", week(1));
    let bytes = rt
        .block_on(store.get(&key))
        .unwrap()
        .expect("no archive file");
    let mut seen = BTreeMap::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let r = Report::from_slice(line).expect("an archive line is not a report");
        *seen.entry(index_of(r.x)).or_insert(0) += 1;
    }
    seen
}

fn write_config(dir: &TempDir) -> PathBuf {
    let cfg = dir.0.join("config.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    cfg
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
    let rt = runtime();
    let store = store(&moto, data);
    let counts = archive_counts(&rt, &store);
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&n| n == 1));

    // The server's pages read the same store.
    let (status, charts) = get(&format!("{}/charts", srv.base));
    assert_eq!(status, 200);
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
    let site = rt.block_on(store.list("site/")).unwrap();
    let names: BTreeSet<&str> = site.objects.iter().map(|o| o.name()).collect();
    for n in [
        "index.html",
        "charts.html",
        "data.html",
        "config.html",
        "config.toml",
    ] {
        assert!(names.contains(n), "site/{n} missing: {names:?}");
    }
    let page =
        String::from_utf8(rt.block_on(store.get("site/charts.html")).unwrap().unwrap()).unwrap();
    assert!(page.contains("<svg") && page.contains("20 reports"));
    let data_page =
        String::from_utf8(rt.block_on(store.get("site/data.html")).unwrap().unwrap()).unwrap();
    assert!(data_page.contains(&format!("../archive/{}.ndjson", week(1))));
    // Stored with the Content-Type a web server or CDN passes on.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_bucket_name("e2e")
        .build()
        .unwrap();
    let got = rt
        .block_on(object_store::ObjectStoreExt::get(
            &raw,
            &object_store::path::Path::from("clearcount/site/index.html"),
        ))
        .unwrap();
    let ct = got
        .attributes
        .get(&object_store::Attribute::ContentType)
        .map(|v| v.as_ref().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("text/html"), "{ct}");
    let html = String::from_utf8(rt.block_on(got.bytes()).unwrap().to_vec()).unwrap();
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

    let rt = runtime();
    let store = store(&moto, data);
    let counts = archive_counts(&rt, &store);
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
    let shards = rt
        .block_on(store.list(&format!("reports/{}/", week(1))))
        .unwrap();
    for d in &shards.dirs {
        stored += rt.block_on(store.list(d)).unwrap().objects.len();
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
        assert!(rt.block_on(store.get(k)).unwrap().is_some(), "{k} missing");
    }
    // The merge is idempotent: a third run gives the same bytes.
    let key = format!("archive/{}.ndjson", week(1));
    let before = rt.block_on(store.get(&key)).unwrap();
    wait_ok(merge(&moto, data));
    assert_eq!(rt.block_on(store.get(&key)).unwrap(), before);
    let _ = std::io::stderr().flush();
}
