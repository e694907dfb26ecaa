//! Benchmarks of the collection server (no harness: plain timed runs, each
//! measured for about 3 s or a fixed amount of work), through the crate's
//! public API only.
//!
//! - `ingest`: uploads per second over loopback, directory store, a few
//!   client threads with keep-alive connections
//!   (`CLEARCOUNT_BENCH_THREADS`, default 4; `CLEARCOUNT_BENCH_SECS`,
//!   default 3).
//! - `merge`: time and peak memory of `merge_blocking` (what `clearcount
//!   merge` runs: the archive of N stored reports, then the static site)
//!   (`CLEARCOUNT_BENCH_MERGE_N`, default 10,000). The reports are stored
//!   first by uploading them to a server (not timed).
//! - `tables`: the archive's tables of N reports (`CLEARCOUNT_BENCH_TABLES_N`,
//!   default 100,000; 60 builds, commands, flags, 200 crash stacks): the
//!   NDJSON merge alone (`merge_archive_blocking`), then writing the Parquet
//!   and CSV tables from it (`tables_blocking`), each timed with its peak
//!   memory; the ratio of the two times is the figure.
//!
//! Run with `cargo bench -p clearcount-server --bench server`.

#[path = "common/client.rs"]
mod client;
#[path = "common/reports.rs"]
mod reports;

use client::Client;
use reports::{CONFIG, Server, TABLES_CONFIG, env_num, report, temp_dir, varied_report, week};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn bench_ingest() {
    let threads = env_num("CLEARCOUNT_BENCH_THREADS", 4);
    let secs = env_num("CLEARCOUNT_BENCH_SECS", 3);
    let dir = temp_dir("ingest");
    reports::publish::publish(&dir, CONFIG);
    let server = Server::start(
        &dir.join("data").display().to_string(),
        &dir.join("config.toml"),
    );
    let addr = server.addr;
    let week = week();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, stop, week) = (next.clone(), stop.clone(), week.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let status = c.post(&report(i, &week).to_bytes());
                    assert_eq!(status, 201, "upload {i}");
                    done += 1;
                }
                done
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let elapsed = start.elapsed();
    // Let the server finish (it merges what it accepted before it stops).
    let final_merge = server.stop();
    println!(
        "server/ingest: {total} uploads in {:.2} s with {threads} client threads: {:.0} uploads/s (directory store)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "server/ingest: final merge at shutdown: {:.2} s",
        final_merge.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn current_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn bench_merge() {
    let n = env_num("CLEARCOUNT_BENCH_MERGE_N", 10_000);
    let dir = temp_dir("merge");
    reports::publish::publish(&dir, CONFIG);
    let data = dir.join("data");
    let data_str = data.display().to_string();
    let week = week();
    let t = Instant::now();
    reports::fill(&data_str, &dir.join("config.toml"), 0, n, &week);
    let setup = t.elapsed();
    // Reset the peak-RSS mark (Linux), so the peak below is the merge's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = current_rss_kib();
    let t = Instant::now();
    let stats = clearcount_server::merge_blocking(&data_str, 10).unwrap();
    let elapsed = t.elapsed();
    let peak = peak_rss_kib();
    assert_eq!(stats.reports, n);
    let size = std::fs::metadata(data.join(format!("archive/{week}.ndjson")))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "server/merge: {n} reports ({:.1} MiB archive) merged, and the site published, in {:.2} s ({:.0} reports/s); RSS before {} KiB, peak during merge {} KiB (setup: {:.1} s)",
        size as f64 / (1 << 20) as f64,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        before.map_or("?".into(), |v| v.to_string()),
        peak.map_or("?".into(), |v| v.to_string()),
        setup.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` with the peak-RSS mark reset (Linux): its time, its result,
/// the RSS before and the peak during it (KiB).
fn measured<T>(f: impl FnOnce() -> T) -> (Duration, T, Option<u64>, Option<u64>) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = current_rss_kib();
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out, before, peak_rss_kib())
}

fn bench_tables() {
    let n = env_num("CLEARCOUNT_BENCH_TABLES_N", 100_000);
    let dir = temp_dir("tables");
    reports::publish::publish(&dir, TABLES_CONFIG);
    let data = dir.join("data");
    let data_str = data.display().to_string();
    let week = week();
    let t = Instant::now();
    reports::fill_with(
        &data_str,
        &dir.join("config.toml"),
        0,
        n,
        &week,
        varied_report,
    );
    let setup = t.elapsed();
    let kib = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    let (merge_t, stats, before, peak) =
        measured(|| clearcount_server::merge_archive_blocking(&data_str).unwrap());
    assert_eq!(stats.reports, n);
    let size = |ext: &str| {
        std::fs::metadata(data.join(format!("archive/{week}.{ext}")))
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / (1 << 20) as f64
    };
    println!(
        "server/tables: the NDJSON merge alone of {n} reports ({:.1} MiB): {:.2} s; RSS before {} KiB, peak {} KiB",
        size("ndjson"),
        merge_t.as_secs_f64(),
        kib(before),
        kib(peak)
    );
    let (tables_t, tables, before, peak) =
        measured(|| clearcount_server::tables_blocking(&data_str, 10).unwrap());
    assert_eq!(tables.reports, n);
    println!(
        "server/tables: the tables of the same {n} reports ({} rows; {} rows under 10 reports left out; Parquet {:.2} MiB, CSV {:.2} MiB): {:.2} s; RSS before {} KiB, peak {} KiB",
        tables.rows,
        tables.hidden,
        size("parquet"),
        size("csv"),
        tables_t.as_secs_f64(),
        kib(before),
        kib(peak)
    );
    println!(
        "server/tables: tables / merge time: {:.2} (setup: {:.1} s)",
        tables_t.as_secs_f64() / merge_t.as_secs_f64(),
        setup.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter selects one benchmark.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("ingest") {
        bench_ingest();
    }
    if wanted("merge") {
        bench_merge();
    }
    if wanted("tables") {
        bench_tables();
    }
}
