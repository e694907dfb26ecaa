//! The two storage backends side by side, in one run (criterion, short
//! measurement times), through the crate's public API only: servers run
//! in-process (`serve_with_shutdown`) with `data` a directory or an
//! `s3://bucket/prefix`, and merges are `merge_blocking` (what `clearcount
//! merge` runs: the archive, then the static site).
//!
//! - `storage/upload/{dir,s3}`: uploads per second over loopback to a
//!   server on a directory and on `s3://bench/upload`, from a few client
//!   threads with keep-alive connections (every upload a new report, so
//!   every one is a write).
//! - `storage/merge/{dir,s3}`: time to merge N stored reports into the
//!   week's archive and publish the site (for S3: one listing per shard,
//!   one GET per report, one upload of the archive, the site's pages).
//! - `storage/merge/s3-latency`: the same S3 merge with every request made
//!   to wait `CLEARCOUNT_BENCH_LATENCY_MS` (default 5), as a remote store
//!   does: moto answers from the same machine in well under a millisecond,
//!   so it shows neither the latency nor the gain of the S3 store's
//!   read-ahead (reports fetched 16 at a time).
//!
//! The object store is moto's S3 server (`python3 -m pip install
//! 'moto[server]'`), started on a free loopback port and stopped at the
//! end; every S3 request goes through a loopback proxy (`common/latency.rs`)
//! that adds the latency when asked and nothing otherwise. The S3 settings
//! are the usual `AWS_*` environment variables, set by this program for
//! itself. Scale with `CLEARCOUNT_BENCH_STORAGE_N` (reports merged, default
//! 500), `CLEARCOUNT_BENCH_THREADS` (client threads, default 4) and
//! `CLEARCOUNT_BENCH_SECS` (measurement time per benchmark, default 3).
//!
//! Run with `cargo bench -p clearcount-server --features s3 --bench storage`.

#[path = "common/latency.rs"]
mod latency;
#[path = "../src/s3/moto.rs"]
mod moto;
#[path = "common/reports.rs"]
mod reports;

use criterion::{Criterion, SamplingMode, Throughput};
use latency::LatencyProxy;
use moto::Moto;
use reports::{CONFIG, Server, agent, env_num, fill, temp_dir, upload, week};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Uploads per criterion iteration.
const BATCH: u64 = 64;

fn main() {
    // The S3 settings, read by the store when a server or a merge opens
    // `s3://…`: the proxy in front of moto. Set first thing, while this is
    // the only thread.
    let mut proxy = LatencyProxy::bind();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        // SAFETY: no other thread runs yet, so none reads the environment.
        unsafe { std::env::set_var(k, v) };
    }

    let secs = env_num("CLEARCOUNT_BENCH_SECS", 3);
    let threads = env_num("CLEARCOUNT_BENCH_THREADS", 4).max(1);
    let n = env_num("CLEARCOUNT_BENCH_STORAGE_N", 500).max(1);
    let latency = Duration::from_millis(env_num("CLEARCOUNT_BENCH_LATENCY_MS", 5));
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs))
        .sample_size(10);

    let moto = Moto::start();
    moto.bucket("bench");
    proxy.start(
        moto.endpoint
            .trim_start_matches("http://")
            .parse()
            .expect("moto's address"),
    );
    let dir = temp_dir("storage");
    let config = reports::publish::publish(&dir, CONFIG).config;
    let week = week();

    // Uploads per second, both backends.
    {
        let agents: Vec<ureq::Agent> = (0..threads).map(|_| agent()).collect();
        let dir_srv = Server::start(&dir.join("upload").display().to_string(), &config);
        let s3_srv = Server::start("s3://bench/upload", &config);
        let next = AtomicU64::new(0);
        let mut g = c.benchmark_group("storage/upload");
        g.throughput(Throughput::Elements(BATCH));
        g.sampling_mode(SamplingMode::Flat);
        for (name, base) in [("dir", &dir_srv.base), ("s3", &s3_srv.base)] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    let end = next.load(std::sync::atomic::Ordering::Relaxed) + iters * BATCH;
                    upload(&agents, base, &next, end, &week);
                    t.elapsed()
                })
            });
        }
        g.finish();
    }

    // Merge time, both backends, the same N reports.
    {
        let dir_data = dir.join("merge").display().to_string();
        let s3_data = "s3://bench/merge";
        let t = Instant::now();
        fill(&dir_data, &config, 1 << 32, n, &week);
        fill(s3_data, &config, 1 << 32, n, &week);
        eprintln!(
            "storage/merge: {n} reports stored in each backend in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut g = c.benchmark_group("storage/merge");
        g.throughput(Throughput::Elements(n));
        g.sampling_mode(SamplingMode::Flat);
        for (name, data, wait) in [
            ("dir", dir_data.as_str(), Duration::ZERO),
            ("s3", s3_data, Duration::ZERO),
            ("s3-latency", s3_data, latency),
        ] {
            proxy.set_latency(wait);
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let s = clearcount_server::merge_blocking(data, 10).unwrap();
                        assert_eq!(s.reports, n);
                    }
                    t.elapsed()
                })
            });
        }
        proxy.set_latency(Duration::ZERO);
        g.finish();
    }
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
