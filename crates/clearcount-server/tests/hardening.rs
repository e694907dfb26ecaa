//! The server under hostile clients, over real HTTP on loopback, each test
//! with a server in a child process (so that its output and memory are its
//! own): the per-source rate limit and what it keeps (no address, anywhere,
//! and no arrival time on a report file),
//! the security headers on every response, the connection cap and the
//! upload budget (503 with `Retry-After` at once, never a stall), the
//! header and body timeouts, and a flood of made-up versions (the charts
//! page and the server's memory stay bounded).
//!
//! Sources are told apart by their address: the clients bind to
//! 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8 is loopback on Linux).

mod common;

use clearcount_protocol::report::{ProgramReport, Report};
use common::http::{self, Client};
use common::{ChildServer, TempDir};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = r#"
version = 1
sample_rate = 1.0

[[program]]
name = "tool"
versions = ["1.*"]
os = ["linux", "macos"]
arch = ["x86_64", "aarch64"]

[[program.counter]]
name = "tool/command:{build,test,run}"
rate = 1.0
"#;

/// Not a test by itself: the server of the other tests, run in a child
/// process (see `common::child_main`).
#[test]
fn child_server() {
    common::child_main();
}

fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

/// Report number `n` (distinct for distinct `n`), of `version`.
fn report(n: u64, version: &str) -> Vec<u8> {
    let mut p = ProgramReport::new("tool", version, "linux", "x86_64");
    p.counters.insert("tool/command:build".into(), 1 + n % 5);
    Report {
        week: week(1),
        x: (n % 1_000_000) as f64 / 1_000_003.0,
        config: 1,
        programs: vec![p],
    }
    .to_bytes()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// How long a test waits for what must happen (a timeout to close a
/// connection, an answer) before it fails: far longer than it takes.
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether a connection is still open with nothing to read: the server
/// has neither answered nor closed it.
fn still_open(s: &tokio::net::TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn setup(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    common::publish(&dir.0, CONFIG);
    dir
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

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// One source far too fast gets 429s with `Retry-After` (also when it
/// makes up `X-Forwarded-For` headers: the server was not told to trust
/// one); four other sources sending at the same time are not affected; and
/// afterwards no file under the data directory, the archive and the static
/// site included, and nothing the server printed, holds any of the
/// addresses, as text or as bytes; and the report files and their
/// directories show the week's start, not when they arrived.
#[test]
fn rate_limit_turns_one_fast_source_away_and_keeps_no_address() {
    let dir = setup("rate");
    let srv = ChildServer::start(&dir.0, "rate=60,burst=20");
    let addr = srv.addr;
    let rt = runtime();
    let started = Instant::now();
    let (fast, slow) = rt.block_on(async move {
        // The fast source: 4 connections, 100 uploads each, no pause.
        let fast = (0..4u64)
            .map(|c| {
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    let mut client = Client::connect(addr, Some(loopback(2))).await.unwrap();
                    for i in 0..100u64 {
                        let n = 1_000 + c * 100 + i;
                        let xff = format!("10.9.{c}.{i}");
                        let headers = [
                            ("content-type", "application/json"),
                            ("x-forwarded-for", xff.as_str()),
                        ];
                        let r = match client
                            .send("POST", "/upload", &headers, &report(n, "1.2.0"))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                // The server may close a connection whose
                                // body it did not read: connect again.
                                client = Client::connect(addr, Some(loopback(2))).await.unwrap();
                                client
                                    .send("POST", "/upload", &headers, &report(n, "1.2.0"))
                                    .await
                                    .unwrap()
                            }
                        };
                        let retry = r.header("retry-after").map(str::to_owned);
                        statuses.push((r.status, retry));
                    }
                    statuses
                })
            })
            .collect::<Vec<_>>();
        // Four polite sources at the same time: 15 uploads each, 10 a
        // second.
        let slow = (3..7u8)
            .map(|src| {
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    let mut client = Client::connect(addr, Some(loopback(src))).await.unwrap();
                    for i in 0..15u64 {
                        let r = client
                            .post("/upload", &report(u64::from(src) * 100 + i, "1.3.0"))
                            .await
                            .unwrap();
                        statuses.push(r.status);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    statuses
                })
            })
            .collect::<Vec<_>>();
        let mut f = Vec::new();
        for t in fast {
            f.extend(t.await.unwrap());
        }
        let mut s = Vec::new();
        for t in slow {
            s.extend(t.await.unwrap());
        }
        (f, s)
    });
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = fast.iter().filter(|(s, _)| *s == 201).count();
    let limited: Vec<_> = fast.iter().filter(|(s, _)| *s == 429).collect();
    eprintln!(
        "fast source: {accepted} accepted, {} refused with 429 in {elapsed:.1} s; polite sources: {:?}",
        limited.len(),
        slow.iter().filter(|s| **s == 201).count()
    );
    assert_eq!(accepted + limited.len(), 400, "{fast:?}");
    // The burst, and one a second after it.
    assert!(
        accepted >= 20 && accepted as f64 <= 20.0 + elapsed + 2.0,
        "{accepted} accepted in {elapsed:.1} s"
    );
    for (_, retry) in &limited {
        let secs: u64 = retry
            .as_deref()
            .expect("429 without Retry-After")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
    }
    assert_eq!(slow, vec![201; 60], "a polite source was limited");
    // It is a rate, not a ban: after the wait, the fast source is served.
    std::thread::sleep(Duration::from_millis(1100));
    let again = rt.block_on(async {
        let mut c = Client::connect(addr, Some(loopback(2))).await.unwrap();
        c.post("/upload", &report(99_999, "1.2.0")).await.unwrap()
    });
    assert_eq!(again.status, 201, "{}", again.text());

    // The archive and the static site too.
    clearcount_server::merge_blocking(&dir.0.join("data").display().to_string(), 1).unwrap();
    let mut files = Vec::new();
    walk(&dir.0.join("data"), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("archive"))
    );
    assert!(files.len() >= 2 + accepted + 60, "{} files", files.len());
    files.push(srv.out.clone());
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for last in 2..7u8 {
        needles.push((
            format!("127.0.0.{last}"),
            format!("127.0.0.{last}").into_bytes(),
        ));
        needles.push((format!("127.0.0.{last} as bytes"), vec![127, 0, 0, last]));
        needles.push((
            format!("7f00000{last:x}"),
            format!("7f00000{last:x}").into_bytes(),
        ));
    }
    needles.push(("10.9.".into(), b"10.9.".to_vec()));
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{} holds {what}",
                f.display()
            );
        }
    }
    eprintln!(
        "no address in {} files nor in the server's output",
        files.len()
    );
}

/// Standard base64, for the style hash.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Every response, pages, files, redirects and errors alike, carries the
/// CSP (whose style hash is that of the page's own style sheet), nosniff
/// and no-referrer.
#[test]
fn security_headers_on_every_response() {
    let dir = setup("headers");
    let srv = ChildServer::start(&dir.0, "rate=0");
    let addr = srv.addr;
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect(addr, None).await.unwrap();
        assert_eq!(
            c.post("/upload", &report(1, "1.2.0")).await.unwrap().status,
            201
        );
    });
    clearcount_server::merge_blocking(&dir.0.join("data").display().to_string(), 1).unwrap();
    let archive = format!("/data/{}.ndjson", week(1));
    let responses = rt.block_on(async {
        let mut c = Client::connect(addr, None).await.unwrap();
        let mut out = Vec::new();
        for path in [
            "/",
            "/charts",
            "/data/",
            "/data",
            archive.as_str(),
            "/config",
            "/counters",
            "/config.toml",
            "/config.toml.proof",
            "/config.toml.proof?old=x",
            "/config.toml.tlog-proof",
            "/log/checkpoint",
            "/log/checkpoints",
            "/log/checkpoints/1",
            "/log/entries/0",
            "/log/entries/1",
            "/style.css",
            "/no-such-page",
            "/data/nothing.ndjson",
        ] {
            out.push((path.to_owned(), c.get(path).await.unwrap()));
        }
        let bad = c.post("/upload", b"not a report").await.unwrap();
        out.push(("POST /upload".to_owned(), bad));
        out
    });
    let mut statuses = std::collections::BTreeSet::new();
    for (path, r) in &responses {
        statuses.insert(r.status);
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        let html = r.text();
        if let Some((_, rest)) = html.split_once("<style>") {
            use sha2::Digest;
            let css = rest.split_once("</style>").unwrap().0;
            let hash = base64(&sha2::Sha256::digest(css.as_bytes()));
            assert!(
                csp.contains(&format!("'sha256-{hash}'")),
                "{path}: the CSP does not allow its style"
            );
            assert!(
                !html.contains("<script") && !html.contains(" style=\""),
                "{path}"
            );
        }
    }
    assert!(
        [200, 308, 400, 404].iter().all(|s| statuses.contains(s)),
        "{statuses:?}"
    );
    // The pages carry a build number, and a client that has it gets a 304.
    let (etag, again) = rt.block_on(async {
        let mut c = Client::connect(addr, None).await.unwrap();
        let r = c.get("/charts").await.unwrap();
        let etag = r.header("etag").unwrap().to_owned();
        let again = c
            .send("GET", "/charts", &[("if-none-match", &etag)], b"")
            .await
            .unwrap();
        (etag, again)
    });
    assert!(etag.starts_with("\"g"), "{etag}");
    assert_eq!(again.status, 304);
}

/// Over the connection cap, a client gets 503 with `Retry-After` at once;
/// idle connections are closed after the header timeout, and then clients
/// are served again. Over the upload budget, an upload gets 503 with
/// `Retry-After` at once; uploads whose body does not come get 408 after
/// the body timeout.
#[test]
fn connection_cap_and_upload_budget_answer_at_once_and_timeouts_close() {
    let dir = setup("caps");
    let srv = ChildServer::start(
        &dir.0,
        "rate=0,conns=40,upload_kib=128,header_ms=1500,body_ms=1500",
    );
    let addr = srv.addr;
    let rt = runtime();
    rt.block_on(async move {
        // 40 idle connections fill the table.
        let mut idle = Vec::new();
        for _ in 0..40 {
            idle.push(http::connect(addr, None).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c = Client::connect(addr, None).await.unwrap();
        let r = c.get("/").await.unwrap();
        // Answered at once: while every idle connection still holds its
        // slot (a server that waited for a slot would have served the page).
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(idle.iter().all(still_open), "the table did not stay full");
        // The header timeout closes the idle ones...
        for s in &mut idle {
            let mut b = [0u8; 16];
            let n = tokio::time::timeout(PATIENCE, s.read(&mut b))
                .await
                .expect("an idle connection stayed open")
                .unwrap_or(0);
            assert_eq!(n, 0);
        }
        // ...and the server serves again.
        let mut c = Client::connect(addr, None).await.unwrap();
        assert_eq!(c.get("/").await.unwrap().status, 200);

        // Two uploads without a length reserve 64 KiB each: the budget
        // (128 KiB) is spent while their bodies trickle.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = http::connect(addr, None).await.unwrap();
            s.write_all(
                b"POST /upload HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n",
            )
            .await
            .unwrap();
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = c.post("/upload", &report(7, "1.2.0")).await.unwrap();
        // Answered at once: while the trickling uploads still hold the
        // budget (a server that waited for it would have stored the report).
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(slow.iter().all(still_open), "the budget was given back");
        // The trickling ones get a 408 after the body timeout, and then the
        // budget is back.
        for s in slow {
            let mut r = tokio::io::BufReader::new(s);
            let resp = tokio::time::timeout(PATIENCE, http::read_response(&mut r))
                .await
                .expect("no answer to a stalled body")
                .unwrap();
            assert_eq!(resp.status, 408);
        }
        let mut c = Client::connect(addr, None).await.unwrap();
        assert_eq!(
            c.post("/upload", &report(7, "1.2.0")).await.unwrap().status,
            201
        );
    });
    // The output names no client (the server's own address aside).
    let out = srv.output();
    let client = out
        .lines()
        .filter(|l| !l.contains("CHILD-ADDR"))
        .find(|l| l.contains("127.0.0.1"));
    assert!(client.is_none(), "{out}");
}

/// 10,000 reports with made-up versions (all accepted: the config takes
/// `1.*`): the charts page and the server's memory stay about where they
/// were with three versions, and the flood shows as one `other` series.
#[test]
fn ten_thousand_made_up_versions_keep_the_charts_bounded() {
    let dir = setup("flood");
    let srv = ChildServer::start(&dir.0, "rate=0,min_reports=1");
    let addr = srv.addr;
    let data = dir.0.join("data").display().to_string();
    let rt = runtime();
    let send = |reports: Vec<Vec<u8>>| {
        rt.block_on(async move {
            let per = reports.len().div_ceil(4);
            let mut tasks = Vec::new();
            for part in reports.chunks(per).map(<[Vec<u8>]>::to_vec) {
                tasks.push(tokio::spawn(async move {
                    let mut c = Client::connect(addr, None).await.unwrap();
                    for body in part {
                        let r = c.post("/upload", &body).await.unwrap();
                        assert_eq!(r.status, 201, "{}", r.text());
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    // The charts page once it counts `n` reports (the server sees the
    // merge, made by this process, within its poll interval).
    let charts = |n: usize| {
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut c = Client::connect(addr, None).await.unwrap();
                let r = c.get("/charts").await.unwrap();
                let page = r.text();
                if r.status == 200 && page.contains(&format!(">{n} reports over")) {
                    return page;
                }
                assert!(
                    Instant::now() < deadline,
                    "the charts never counted {n} reports"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Three real versions, 100 reports each.
    send(
        (0..300)
            .map(|i| report(i, &format!("1.{}.0", i % 3)))
            .collect(),
    );
    clearcount_server::merge_blocking(&data, 1).unwrap();
    let before = charts(300);
    let (_, mem_before) = srv.rss_kib();
    // The flood.
    let t = Instant::now();
    send(
        (0..10_000u64)
            .map(|i| {
                report(
                    10_000 + i,
                    &format!("1.{i}.0-made-up.{}", "x".repeat((i % 40) as usize)),
                )
            })
            .collect(),
    );
    let sent = t.elapsed();
    clearcount_server::merge_blocking(&data, 1).unwrap();
    let after = charts(10_300);
    let (_, mem_after) = srv.rss_kib();
    eprintln!(
        "charts page: {} B with 3 versions, {} B after 10,000 made-up ones (sent in {sent:.1?}); \
         server peak RSS {mem_before} KiB before, {mem_after} KiB after",
        before.len(),
        after.len()
    );
    assert!(after.contains("other"), "the flood shows as other");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        assert!(
            after.contains(&format!(">{v}<")),
            "{v} is not in the legend"
        );
    }
    assert!(
        after.len() < before.len() + 16 * 1024,
        "{} -> {}",
        before.len(),
        after.len()
    );
    assert!(after.len() < 64 * 1024);
    assert!(
        mem_after < mem_before + 24 * 1024,
        "peak memory grew from {mem_before} KiB to {mem_after} KiB"
    );
}
