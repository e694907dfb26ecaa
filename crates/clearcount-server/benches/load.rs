//! Ingest under hostile load, on loopback, with three processes sharing
//! the machine's processors: the server (this binary run again as a
//! server: a release build, default limits but no rate limit, since every
//! client here is 127.0.0.1), the hostile clients (this binary run again
//! as `tests/common/hostile.rs`), and this process, which uploads and
//! measures. No harness: phases of `CLEARCOUNT_BENCH_SECS` (default 3)
//! each, every figure a ratio against the quiet phases of the same run.
//!
//! 1. **one client**: one keep-alive client uploads as fast as it can:
//!    the time of one upload (median, p99);
//! 2. **quiet**: 4 clients (`CLEARCOUNT_BENCH_THREADS`) upload as fast
//!    as they can;
//! 3. **hostile**: the same while another process holds 1,600 connections
//!    (`CLEARCOUNT_BENCH_HOSTILE=idle,trickling,stalled`, default
//!    `500,500,600`): 500 idle and 500 sending a header a byte every half
//!    second (slowloris; opened again whenever the server cuts one), and 600
//!    stalled readers of a 1.6 MB archive file (read the status line, then
//!    nothing);
//! 4. **charts**: the same, right after a merge (by this process, as a
//!    `clearcount merge` job would), with 50 clients getting `/charts`
//!    every 200 ms while the server rebuilds its pages;
//! 5. **quiet** again, the hostile process gone. The baseline is the mean
//!    of 2 and 5.
//!
//! Printed: a table (uploads/s, the ratio to the baseline, p50, p99 and
//! the longest upload, the server's peak resident memory) and the targets
//! (ingest ≥ 0.8× of quiet under hostile load, no upload or `/charts` GET
//! over 1 s) as met or missed; the process fails only on an error.
//!
//! `CLEARCOUNT_BENCH_STRACE=1` also counts the server's system calls per
//! upload during phase 1 (`strace -f -c` attached to the server; Debian
//! package `strace`).
//!
//! Run with `cargo bench -p clearcount-server --bench load`.

#[path = "common/client.rs"]
mod client;
#[path = "../tests/common/hostile.rs"]
mod hostile;
#[path = "common/reports.rs"]
mod reports;

use client::Client;
use hostile::{Hostile, Mix};
use reports::{CONFIG, env_num, report, temp_dir};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The environment variable that makes this binary the server.
const SERVER_ENV: &str = "CLEARCOUNT_LOAD_SERVER";
/// Concurrent `/charts` clients in phase 4.
const CHART_CLIENTS: usize = 50;
/// The targets (printed as met or missed).
const MIN_RATIO: f64 = 0.8;
const MAX_WAIT: Duration = Duration::from_secs(1);

fn main() {
    hostile::child_main();
    if let Ok(dir) = std::env::var(SERVER_ENV) {
        server_main(Path::new(&dir));
        return;
    }
    let secs = env_num("CLEARCOUNT_BENCH_SECS", 3);
    let threads = env_num("CLEARCOUNT_BENCH_THREADS", 4) as usize;
    let mix = hostile_mix();
    let strace = std::env::var_os("CLEARCOUNT_BENCH_STRACE").is_some();
    run(Duration::from_secs(secs), threads, mix, strace);
}

/// The hostile mix from `CLEARCOUNT_BENCH_HOSTILE` (`idle,trickling,stalled`).
fn hostile_mix() -> Mix {
    let v = std::env::var("CLEARCOUNT_BENCH_HOSTILE").unwrap_or_else(|_| "500,500,600".into());
    let n: Vec<usize> = v
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("CLEARCOUNT_BENCH_HOSTILE: idle,trickling,stalled")
        })
        .collect();
    assert_eq!(
        n.len(),
        3,
        "CLEARCOUNT_BENCH_HOSTILE: idle,trickling,stalled"
    );
    Mix {
        idle: n[0],
        trickle: n[1],
        stalled: n[2],
        file: format!("/data/{}.ndjson", old_week()),
    }
}

/// The week of the archive file the stalled readers ask for: three weeks
/// ago, with no reports left to merge.
fn old_week() -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(21))
        .format("%Y-%m-%d")
        .to_string()
}

/// The server process's body: serves `<dir>/data` with the config
/// published in `dir`, merging only at start and when stopped.
fn server_main(dir: &Path) {
    let opts = clearcount_server::ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        data: dir.join("data").display().to_string(),
        config: Some(dir.join("config.toml")),
        public_key: Some(dir.join("config.pub")),
        merge_interval: Duration::from_secs(3600),
        limits: clearcount_server::Limits {
            uploads_per_minute: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    clearcount_server::run_blocking(opts, |addr| {
        use std::io::Write;
        println!("ADDR {addr}");
        let _ = std::io::stdout().flush();
    })
    .unwrap();
}

/// Processor time a process has used so far (user and system), from
/// `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): state, then 10 fields
    // before utime and stime, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The server process, killed on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(dir: &Path) -> ServerProcess {
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVER_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(a) = l.strip_prefix("ADDR ") {
                        break a.parse().unwrap();
                    }
                }
                _ => panic!(
                    "the server did not start: {}",
                    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
                ),
            }
        };
        ServerProcess { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |k| k / 1024.0)
    }

    /// The sockets the server holds open now (its listener included).
    fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one phase measured.
struct Measured {
    uploads: usize,
    secs: f64,
    /// Sorted.
    lat: Vec<Duration>,
    /// Processor time the server and the hostile process used during the
    /// phase.
    server_cpu: f64,
    hostile_cpu: f64,
}

impl Measured {
    fn per_sec(&self) -> f64 {
        self.uploads as f64 / self.secs
    }

    fn at(&self, q: f64) -> Duration {
        self.lat
            .get(((self.lat.len() as f64 * q) as usize).min(self.lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.lat.last().copied().unwrap_or_default()
    }
}

/// `threads` clients upload distinct reports for `phase`; each must be
/// stored (201). The processor time of `pids` (the server, the hostile
/// process; 0: none) is measured over the phase.
fn ingest(
    addr: SocketAddr,
    threads: usize,
    phase: Duration,
    next: &AtomicU64,
    pids: [u32; 2],
) -> Measured {
    let cpu = |i: usize| if pids[i] == 0 { 0.0 } else { cpu_secs(pids[i]) };
    let cpu0 = [cpu(0), cpu(1)];
    let week = reports::week();
    let start = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let week = &week;
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut lat = Vec::new();
                    while start.elapsed() < phase {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let body = report(i, week).to_bytes();
                        let t = Instant::now();
                        let status = c.post(&body);
                        lat.push(t.elapsed());
                        assert_eq!(status, 201, "upload {i}");
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    Measured {
        uploads: lat.len(),
        secs,
        lat,
        server_cpu: cpu(0) - cpu0[0],
        hostile_cpu: cpu(1) - cpu0[1],
    }
}

/// [`CHART_CLIENTS`] clients get `/charts` every 200 ms for `phase`:
/// their latencies, sorted, and the ETags seen.
fn chart_gets(addr: SocketAddr, phase: Duration) -> (Vec<Duration>, Vec<String>) {
    let start = Instant::now();
    let (mut lat, mut etags) = (Vec::new(), Vec::new());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..CHART_CLIENTS)
            .map(|_| {
                s.spawn(move || {
                    let mut c = Client::connect(addr);
                    let mut seen = Vec::new();
                    while start.elapsed() < phase {
                        let t = Instant::now();
                        let a = c.get("/charts");
                        let l = t.elapsed();
                        assert_eq!(a.status, 200);
                        seen.push((l, a.etag.unwrap_or_default()));
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    seen
                })
            })
            .collect();
        for h in handles {
            for (l, e) in h.join().unwrap() {
                lat.push(l);
                if !etags.contains(&e) {
                    etags.push(e);
                }
            }
        }
    });
    lat.sort();
    (lat, etags)
}

/// `strace -f -c` attached to the server while `f` runs: the summary's
/// rows (calls, syscall), most calls first.
fn strace_counts(pid: u32, out: &Path, f: impl FnOnce()) -> Vec<(u64, String)> {
    let mut st = match Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("CLEARCOUNT_BENCH_STRACE needs strace ({e}): apt-get install strace");
            std::process::exit(1);
        }
    };
    // strace attaches to every thread before it counts.
    std::thread::sleep(Duration::from_millis(500));
    f();
    let _ = Command::new("kill")
        .args(["-INT", &st.id().to_string()])
        .status();
    let _ = st.wait();
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut rows: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            if f.len() < 5 || f[0].parse::<f64>().is_err() {
                return None;
            }
            let name = f.last()?.to_string();
            (name != "total").then_some((f[3].parse().ok()?, name))
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    rows
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(phase: Duration, threads: usize, mix: Mix, strace: bool) {
    let dir = temp_dir("load");
    reports::publish::publish(&dir, CONFIG);
    // The archive file the stalled readers ask for: 1.6 MB of reports of
    // a week with none left to merge.
    let old = old_week();
    let archive = dir.join("data/archive");
    std::fs::create_dir_all(&archive).unwrap();
    let mut big = Vec::new();
    let mut n = 1u64 << 39;
    while big.len() < 1_600_000 {
        big.extend(report(n, &old).to_bytes());
        big.push(b'\n');
        n += 1;
    }
    std::fs::write(archive.join(format!("{old}.ndjson")), &big).unwrap();

    let srv = ServerProcess::start(&dir);
    let addr = srv.addr;
    let next = AtomicU64::new(0);
    // Warm up (the first page build done, connections and files made).
    while Client::connect(addr).get("/charts").status != 200 {
        std::thread::sleep(Duration::from_millis(50));
    }
    ingest(addr, threads, Duration::from_secs(1), &next, [0, 0]);

    // 1. One client, the time of one upload (and the server's system
    // calls per upload, if asked).
    let mut syscalls = Vec::new();
    let mut one = None;
    if strace {
        let out = dir.join("strace.txt");
        syscalls = strace_counts(srv.pid(), &out, || {
            one = Some(ingest(addr, 1, phase, &next, [srv.pid(), 0]));
        });
    } else {
        one = Some(ingest(addr, 1, phase, &next, [srv.pid(), 0]));
    }
    let one = one.unwrap();

    // 2. Quiet.
    let quiet1 = ingest(addr, threads, phase, &next, [srv.pid(), 0]);
    let rss_quiet1 = srv.peak_rss_mib();

    // 3. Hostile, from another process.
    let sockets_before = srv.sockets();
    let h = Hostile::start(&[], addr, &mix);
    let (c, all) = h.wait_for(Duration::from_secs(60), |c| {
        c.held() >= mix.total() && c.answered >= mix.stalled
    });
    assert!(
        all,
        "the hostile process could not open its connections: {c:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let held_by_server = srv.sockets().saturating_sub(sockets_before);
    let hostile = ingest(addr, threads, phase, &next, [srv.pid(), h.pid()]);
    let rss_hostile = srv.peak_rss_mib();

    // 4. A merge, then chart GETs and ingest at once while the server
    // rebuilds its pages.
    let data = dir.join("data").display().to_string();
    let t = Instant::now();
    let merged = clearcount_server::merge_blocking(&data, 10).unwrap();
    let merge_secs = t.elapsed().as_secs_f64();
    let (charts, (chart_lat, etags)) = std::thread::scope(|s| {
        let gets = s.spawn(|| chart_gets(addr, phase));
        let m = ingest(addr, threads, phase, &next, [srv.pid(), h.pid()]);
        (m, gets.join().unwrap())
    });
    let rss_charts = srv.peak_rss_mib();
    let counts = h.counts();
    drop(h);

    // 5. Quiet again, once the server has dropped the hostile connections.
    let t = Instant::now();
    while srv.sockets() > sockets_before + 4 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let quiet2 = ingest(addr, threads, phase, &next, [srv.pid(), 0]);
    let rss_quiet2 = srv.peak_rss_mib();

    let base = (quiet1.per_sec() + quiet2.per_sec()) / 2.0;
    let row = |name: &str, m: &Measured, rss: f64| {
        // One client is not compared with four.
        let ratio = if std::ptr::eq(m, &one) {
            String::new()
        } else {
            format!("{:.2}", m.per_sec() / base)
        };
        println!(
            "| {name} | {:.0} | {ratio} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {rss:.1} |",
            m.per_sec(),
            ms(m.at(0.5)),
            ms(m.at(0.99)),
            ms(m.max()),
            m.server_cpu / m.uploads.max(1) as f64 * 1e6,
            m.hostile_cpu / m.secs * 100.0,
        );
    };
    println!(
        "load: {} s a phase, {threads} uploading clients, server {} (release), hostile process: {} idle + {} trickling + {} stalled readers of {} ({} bytes)",
        phase.as_secs(),
        addr,
        mix.idle,
        mix.trickle,
        mix.stalled,
        mix.file,
        big.len()
    );
    println!();
    println!(
        "| phase | uploads/s | vs quiet | p50 ms | p99 ms | max ms | server CPU µs per upload | hostile process CPU % | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    row("one client", &one, rss_quiet1);
    row(
        &format!("quiet, {threads} clients (before)"),
        &quiet1,
        rss_quiet1,
    );
    row(
        &format!(
            "{} hostile connections held by another process ({held_by_server} open in the server)",
            mix.total()
        ),
        &hostile,
        rss_hostile,
    );
    row(
        &format!(
            "the same, right after a merge, with {CHART_CLIENTS} clients getting /charts every 200 ms ({} GETs, p99 {:.0} ms, max {:.0} ms)",
            chart_lat.len(),
            ms(chart_lat
                .get(chart_lat.len() * 99 / 100)
                .copied()
                .unwrap_or_default()),
            ms(chart_lat.last().copied().unwrap_or_default())
        ),
        &charts,
        rss_charts,
    );
    row("quiet (after)", &quiet2, rss_quiet2);
    println!();
    println!(
        "load: baseline {base:.0} uploads/s (mean of the quiet phases); one client: {:.3} ms median per upload; merge of {} reports by another job: {merge_secs:.2} s; chart ETags seen {etags:?}; hostile process at the end: {counts:?}",
        ms(one.at(0.5)),
        merged.reports
    );
    let mut missed = Vec::new();
    for (name, m) in [("hostile", &hostile), ("charts", &charts)] {
        if m.per_sec() < MIN_RATIO * base {
            missed.push(format!(
                "{name}: {:.2}x of quiet (target >= {MIN_RATIO}x)",
                m.per_sec() / base
            ));
        }
    }
    for (name, m) in [
        ("one client", &one),
        ("quiet", &quiet1),
        ("hostile", &hostile),
        ("charts", &charts),
        ("quiet after", &quiet2),
    ] {
        if m.max() >= MAX_WAIT {
            missed.push(format!("{name}: an upload took {:.0} ms", ms(m.max())));
        }
    }
    if chart_lat.last().is_some_and(|l| *l >= MAX_WAIT) {
        missed.push(format!(
            "a /charts GET took {:.0} ms",
            ms(*chart_lat.last().unwrap())
        ));
    }
    if missed.is_empty() {
        println!(
            "load: targets met (ingest >= {MIN_RATIO}x of quiet under hostile load, no upload or /charts GET over {} ms)",
            MAX_WAIT.as_millis()
        );
    } else {
        println!("load: targets MISSED: {}", missed.join("; "));
    }
    if !syscalls.is_empty() {
        let n = one.uploads as f64;
        println!();
        println!(
            "load: the server's system calls per upload, one client, {} uploads (strace -f -c; strace slows the server, so the one-client row above is not comparable with a run without it):",
            one.uploads
        );
        let total: u64 = syscalls.iter().map(|(c, _)| c).sum();
        println!("| syscall | calls per upload |");
        println!("|---|---|");
        for (calls, name) in &syscalls {
            if *calls as f64 / n >= 0.05 {
                println!("| {name} | {:.2} |", *calls as f64 / n);
            }
        }
        println!("| all | {:.2} |", total as f64 / n);
    }
    drop(srv);
    let _ = std::fs::remove_dir_all(&dir);
}
