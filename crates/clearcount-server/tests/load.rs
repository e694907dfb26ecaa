//! The server under load on loopback, checked for what must hold however
//! busy the machine is: no error, no lost report, every hostile connection
//! handled, memory bounded. How fast it goes is measured by the load
//! benchmark (`cargo bench -p clearcount-server --bench load`), never
//! asserted here.
//!
//! Three processes: the server (this binary as `child_server`: default
//! limits, but no rate limit, since every client here is 127.0.0.1, and 2 s
//! header and write timeouts, so that hostile connections are cut during
//! the test), the hostile clients (this binary as `hostile_load`, see
//! `common/hostile.rs`: 500 idle connections, 500 sending a header a byte
//! every half second, 600 stalled readers of a 1.6 MB archive file, each
//! opened again when the server cuts it), and this test, which uploads:
//!
//! 1. **quiet**: 4 clients upload [`PER_PHASE`] reports, after a warm-up;
//! 2. **hostile**: the same while the hostile process holds its 1,600
//!    connections;
//! 3. **charts**: the same, right after a merge (by this process, as a
//!    `clearcount merge` job would), with 50 concurrent `GET /charts`
//!    every 200 ms while the server rebuilds its pages;
//! 4. **calm**: the hostile process stops opening connections and closes
//!    none: the server must close every one by itself (the header timeout
//!    for idle and trickling ones, the write timeout for stalled readers,
//!    whose answers it must cut short rather than hand whole to the
//!    kernel);
//! 5. **quiet** again.
//!
//! Asserted: every upload is answered 201 and every chart GET 200; the
//! week's archive, merged at the end, holds exactly the reports answered
//! 201; all 1,600 hostile connections were held at once and every stalled
//! reader was answered; step 4; the pages are built once for the merge
//! (their `ETag` moves by one); the server's peak resident memory stays
//! under [`RSS_BOUND_MIB`].

mod common;

use clearcount_protocol::report::{ProgramReport, Report};
use common::hostile::{Hostile, Mix};
use common::http::Client;
use common::{ChildServer, TempDir};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Uploads per ingest phase (by [`CLIENTS`] clients).
const PER_PHASE: u64 = 1200;
/// Uploading clients (keep-alive connections).
const CLIENTS: u64 = 4;
const MIX: [usize; 3] = [500, 500, 600];
const CHART_GETS: usize = 50;
const CHART_WAVES: usize = 5;
/// The bound on the server's peak resident memory (a debug build; a
/// release build needs less).
const RSS_BOUND_MIB: u64 = 128;
/// The most of its answer one stalled reader may get in all: its own
/// receive buffer (4 KiB asked, the kernel doubles it), what was in flight,
/// and the unsent bytes the server's kernel holds for it (16 KiB, see
/// `listen.rs`), with room to spare; far less than the 1.6 MB file.
const QUEUED_BOUND: usize = 256 * 1024;
/// How long the test waits for what must happen (connections held, then
/// cut) before it fails: far longer than it takes.
const PATIENCE: Duration = Duration::from_secs(120);

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

/// Not a test by itself: the server, run in a child process.
#[test]
fn child_server() {
    common::child_main();
}

/// Not a test by itself: the hostile clients, run in a child process.
#[test]
fn hostile_load() {
    common::hostile::child_main();
}

fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

fn report(n: u64, week: &str) -> Vec<u8> {
    let cmds = ["build", "test", "run"];
    let mut p = ProgramReport::new("tool", &format!("1.{}.0", n % 4), "linux", "x86_64");
    p.counters
        .insert(format!("tool/command:{}", cmds[n as usize % 3]), 1 + n % 7);
    Report {
        week: week.to_owned(),
        x: (n % 10_000_000) as f64 / 10_000_019.0,
        config: 1,
        programs: vec![p],
    }
    .to_bytes()
}

/// [`CLIENTS`] clients upload the next [`PER_PHASE`] distinct reports of
/// the week; every answer must be 201. How many were stored.
async fn ingest(addr: SocketAddr, next: Arc<AtomicU64>) -> u64 {
    let end = next.load(Ordering::SeqCst) + PER_PHASE;
    let w = week(1);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (next, w) = (next.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr, None).await.unwrap();
            let mut stored = 0;
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= end {
                    return stored;
                }
                let r = c
                    .post("/upload", &report(n, &w))
                    .await
                    .expect("upload failed");
                assert_eq!(r.status, 201, "upload {n}: {}", r.text());
                stored += 1;
            }
        }));
    }
    let mut stored = 0;
    for t in tasks {
        stored += t.await.unwrap();
    }
    next.store(end, Ordering::SeqCst);
    stored
}

/// [`CHART_WAVES`] waves of [`CHART_GETS`] concurrent `GET /charts`, 200 ms
/// apart: every answer 200 with a chart; the ETags seen.
async fn chart_gets(addr: SocketAddr) -> Vec<String> {
    let mut clients = Vec::new();
    for _ in 0..CHART_GETS {
        clients.push(Client::connect(addr, None).await.unwrap());
    }
    let mut etags = Vec::new();
    for _ in 0..CHART_WAVES {
        let wave: Vec<_> = clients
            .drain(..)
            .map(|mut c| {
                tokio::spawn(async move {
                    let r = c.get("/charts").await.expect("chart GET failed");
                    assert_eq!(r.status, 200);
                    assert!(r.text().contains("<svg"));
                    (c, r.header("etag").unwrap().to_owned())
                })
            })
            .collect();
        for t in wave {
            let (c, e) = t.await.unwrap();
            clients.push(c);
            if !etags.contains(&e) {
                etags.push(e);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    etags
}

async fn etag(addr: SocketAddr) -> String {
    let mut c = Client::connect(addr, None).await.unwrap();
    c.get("/charts")
        .await
        .unwrap()
        .header("etag")
        .unwrap()
        .to_owned()
}

/// Waits (polling, up to [`PATIENCE`]) until `done` holds; whether it did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn ingest_loses_nothing_and_every_hostile_connection_is_handled() {
    let dir = TempDir::new("load");
    common::publish(&dir.0, CONFIG);
    // A 1.6 MB archive file for the stalled readers (a week with no
    // reports left to merge), which the charts read too.
    let old = week(3);
    let archive = dir.0.join("data/archive");
    std::fs::create_dir_all(&archive).unwrap();
    let mut big = Vec::new();
    let mut n = 50_000_000u64;
    while big.len() < 1_600_000 {
        big.extend(report(n, &old));
        big.push(b'\n');
        n += 1;
    }
    std::fs::write(archive.join(format!("{old}.ndjson")), &big).unwrap();
    let data = dir.0.join("data").display().to_string();

    let srv = ChildServer::start(&dir.0, "rate=0,header_ms=2000,write_ms=2000");
    let addr = srv.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut stored = 0;

    // Warm-up (and the first page build finished), then quiet.
    rt.block_on(async {
        let mut c = Client::connect(addr, None).await.unwrap();
        while c.get("/charts").await.unwrap().status != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    stored += rt.block_on(ingest(addr, next.clone()));
    stored += rt.block_on(ingest(addr, next.clone()));
    // Every client of this test has closed: the server holds no
    // connection.
    assert!(
        eventually(|| srv.connections() == 0),
        "{} connections",
        srv.connections()
    );

    // Hostile, from another process.
    let mix = Mix {
        idle: MIX[0],
        trickle: MIX[1],
        stalled: MIX[2],
        file: format!("/data/{old}.ndjson"),
    };
    let mut h = Hostile::start(
        &["--exact", "hostile_load", "--nocapture", "--test-threads=1"],
        addr,
        &mix,
    );
    let (c, held) = h.wait_for(PATIENCE, |c| {
        c.held() >= mix.total() && c.answered >= mix.stalled
    });
    assert!(
        held,
        "the 1,600 hostile connections were not all held (each process raises its open-file limit to the hard one, which must allow about 2,000: ulimit -Hn): {c:?}"
    );
    assert_eq!((c.refused, c.connect_errors), (0, 0), "{c:?}");
    stored += rt.block_on(ingest(addr, next.clone()));

    // A merge (here, as a cron job would), then chart GETs and ingest at
    // once while the server notices it and builds its pages again.
    let before = rt.block_on(etag(addr));
    clearcount_server::merge_blocking(&data, 10).unwrap();
    let (n, etags) = rt.block_on(async {
        let gets = tokio::spawn(chart_gets(addr));
        let n = ingest(addr, next.clone()).await;
        (n, gets.await.unwrap())
    });
    stored += n;
    // The build for the merge is done once a GET shows it.
    let after = rt.block_on(async {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let e = etag(addr).await;
            if e != before || Instant::now() > deadline {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let generation =
        |e: &str| -> u64 { e.trim_matches('"').trim_start_matches('g').parse().unwrap() };
    assert_eq!(
        generation(&after),
        generation(&before) + 1,
        "{before} -> {etags:?} -> {after}"
    );
    assert!(
        etags.iter().all(|e| *e == before || *e == after),
        "{etags:?}"
    );

    // Calm: the server closes every hostile connection by itself, while
    // the hostile process keeps its ends open.
    h.calm();
    let closed = eventually(|| srv.connections() == 0);
    let c = h.counts();
    assert!(
        closed,
        "the server still holds {} connections; hostile: {c:?}",
        srv.connections()
    );
    assert!(
        c.cut[0] >= mix.idle && c.cut[1] >= mix.trickle,
        "idle or trickling connections not cut: {c:?}"
    );
    assert_eq!(c.open[2], mix.stalled, "the stalled readers closed: {c:?}");
    // The stalled readers' answers were cut short by the write timeout,
    // not handed whole to the kernel's buffers.
    h.drain();
    let (c, drained) = h.wait_for(PATIENCE, |c| c.whole + c.cut_short >= c.answered);
    assert!(drained, "{c:?}");
    assert_eq!(
        (c.cut_short, c.whole),
        (c.answered, 0),
        "stalled readers got their whole answer: {c:?}"
    );
    // And the server handed the kernel little of each: the file is
    // 1.6 MB, a stalled reader got at most QUEUED_BOUND of it in all.
    assert!(
        c.most_received <= QUEUED_BOUND,
        "a stalled reader got {} bytes: the server queued them for a client that did not read",
        c.most_received
    );
    drop(h);

    // Quiet again.
    stored += rt.block_on(ingest(addr, next.clone()));
    let (_, peak_kib) = srv.rss_kib();

    // No report lost: the week's archive holds every report stored.
    clearcount_server::merge_blocking(&data, 10).unwrap();
    let text = std::fs::read_to_string(archive.join(format!("{}.ndjson", week(1)))).unwrap();
    let archived = text.lines().count() as u64;
    eprintln!(
        "{stored} uploads stored, {archived} in the archive; chart ETags {before} -> {etags:?} -> {after}; \
         hostile process: {c:?}; server peak RSS {} MiB (bound {RSS_BOUND_MIB} MiB)",
        peak_kib / 1024
    );
    assert_eq!(stored, 5 * PER_PHASE);
    assert_eq!(archived, stored, "reports lost");
    assert!(
        peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {peak_kib} KiB over {RSS_BOUND_MIB} MiB"
    );
}
