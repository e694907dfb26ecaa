//! The two storage backends side by side, in one run (criterion, short
//! measurement times):
//!
//! - `storage/upload/{dir,s3}`: uploads per second over loopback to a
//!   `clearcount serve` process with `--data DIR` and with
//!   `--data s3://bucket/prefix`, from a few client threads with keep-alive
//!   connections (every upload a new report, so every one is a write).
//! - `storage/merge/{dir,s3}`: time to merge N stored reports into the
//!   week's archive (`merge_all`, streaming; for S3: one listing per shard,
//!   one GET per report, one upload of the archive).
//! - `storage/merge/s3-latency`: the same merge through [`S3Store`] over an
//!   in-memory object store that waits `CLEARCOUNT_BENCH_LATENCY_MS`
//!   (default 5) per request, as a remote store does; moto answers from the
//!   same machine in well under a millisecond but handles one request at a
//!   time, so it shows neither the latency nor the gain of the S3 store's
//!   read-ahead (reports fetched 16 at a time).
//!
//! The object store is moto's S3 server (`python3 -m pip install
//! 'moto[server]'`), started on a free loopback port and stopped at the end.
//! Scale with `CLEARCOUNT_BENCH_STORAGE_N` (reports merged, default 500),
//! `CLEARCOUNT_BENCH_THREADS` (client threads, default 4) and
//! `CLEARCOUNT_BENCH_SECS` (measurement time per benchmark, default 3).
//!
//! Run with `cargo bench --features full --bench storage`.

#[path = "../tests/common/mod.rs"]
mod common;

use clearcount::report::{ProgramReport, Report};
use clearcount::server::merge;
use clearcount::server::s3::S3Store;
use clearcount::server::store::{DirStore, Store, report_key, sha256_hex};
use common::KillOnDrop;
use common::moto::{Moto, agent};
use criterion::{Criterion, SamplingMode, Throughput};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
version = 1
sample_rate = 1.0
[[program]]
name = "tool"
versions = ["1.*"]
[[program.counter]]
name = "tool/command:{build,test,run,fmt,doc}"
rate = 1.0
"#;

/// Uploads per criterion iteration.
const BATCH: u64 = 64;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn week() -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7))
        .format("%Y-%m-%d")
        .to_string()
}

fn report(i: u64, week: &str) -> Report {
    let mut p = ProgramReport::new("tool", "1.4.0", "linux", "x86_64");
    let cmds = ["build", "test", "run", "fmt", "doc"];
    p.counters.insert(
        format!("tool/command:{}", cmds[(i % 5) as usize]),
        1 + i % 7,
    );
    Report {
        week: week.to_owned(),
        x: (i as f64 + 0.5) / (1u64 << 40) as f64,
        config: 1,
        programs: vec![p],
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "clearcount-bench-storage-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A `clearcount serve` process on `data`; returns it and its base URL.
fn serve(moto: &Moto, data: &str, config: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_clearcount"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data", data])
            .arg("--config")
            .arg(config)
            .args(["--merge-interval", "3600"])
            .envs(moto.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start clearcount serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    std::thread::spawn(move || for _ in lines {});
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("clearcount serve printed no address: {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// `n` new reports to `base` from the clients, one thread each; the time.
fn upload(agents: &[ureq::Agent], base: &str, n: u64, week: &str) -> Duration {
    let per = n.div_ceil(agents.len() as u64);
    let t = Instant::now();
    std::thread::scope(|s| {
        for a in agents {
            s.spawn(move || {
                for _ in 0..per {
                    let i = NEXT.fetch_add(1, Ordering::Relaxed);
                    let r = a
                        .post(&format!("{base}/upload"))
                        .content_type("application/json")
                        .send(&report(i, week).to_bytes())
                        .expect("upload failed");
                    assert_eq!(r.status().as_u16(), 201, "upload not stored");
                }
            });
        }
    });
    t.elapsed()
}

/// Stores `n` reports directly (the merge's input).
fn fill(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>, n: u64, week: &str) {
    rt.block_on(async {
        let mut i = 0;
        while i < n {
            let mut tasks = Vec::new();
            for j in i..(i + 16).min(n) {
                let store = store.clone();
                let week = week.to_owned();
                tasks.push(tokio::spawn(async move {
                    let bytes = report(1 << 32 | j, &week).to_bytes();
                    let key = report_key(&week, &sha256_hex(&bytes));
                    store.put_if_absent(&key, bytes).await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            i += 16;
        }
    });
}

fn main() {
    let secs = env_num("CLEARCOUNT_BENCH_SECS", 3);
    let threads = env_num("CLEARCOUNT_BENCH_THREADS", 4).max(1);
    let n = env_num("CLEARCOUNT_BENCH_STORAGE_N", 500).max(1);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs))
        .sample_size(10);

    let moto = Moto::start();
    moto.bucket("bench");
    let dir = temp_dir("run");
    let config = dir.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let week = week();
    let dir_data = dir.join("data").display().to_string();
    let s3_data = "s3://bench/upload".to_string();

    // Uploads per second, both backends.
    {
        let agents: Vec<ureq::Agent> = (0..threads).map(|_| agent()).collect();
        let (_dir_srv, dir_base) = serve(&moto, &dir_data, &config);
        let (_s3_srv, s3_base) = serve(&moto, &s3_data, &config);
        let mut g = c.benchmark_group("storage/upload");
        g.throughput(Throughput::Elements(BATCH));
        g.sampling_mode(SamplingMode::Flat);
        for (name, base) in [("dir", &dir_base), ("s3", &s3_base)] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| upload(&agents, base, iters * BATCH, &week))
            });
        }
        g.finish();
    }

    // Merge time, both backends, the same N reports.
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir_store: Arc<dyn Store> = Arc::new(DirStore::open(dir.join("merge")).unwrap());
        let s3_store: Arc<dyn Store> =
            Arc::new(S3Store::from_url_with("s3://bench/merge", moto.env()).unwrap());
        let latency = Duration::from_millis(env_num("CLEARCOUNT_BENCH_LATENCY_MS", 5));
        let slow = object_store::throttle::ThrottledStore::new(
            object_store::memory::InMemory::new(),
            object_store::throttle::ThrottleConfig {
                wait_get_per_call: latency,
                wait_list_per_call: latency,
                wait_put_per_call: latency,
                ..Default::default()
            },
        );
        let slow_store: Arc<dyn Store> = Arc::new(S3Store::with_object_store(
            Arc::new(slow),
            clearcount::server::s3::S3Location::parse("s3://bench/merge").unwrap(),
        ));
        let t = Instant::now();
        fill(&rt, &dir_store, n, &week);
        fill(&rt, &s3_store, n, &week);
        fill(&rt, &slow_store, n, &week);
        eprintln!(
            "storage/merge: {n} reports stored in each backend in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut g = c.benchmark_group("storage/merge");
        g.throughput(Throughput::Elements(n));
        g.sampling_mode(SamplingMode::Flat);
        for (name, store) in [
            ("dir", &dir_store),
            ("s3", &s3_store),
            ("s3-latency", &slow_store),
        ] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let s = rt.block_on(merge::merge_all(store.clone())).unwrap();
                        assert_eq!(s.reports, n);
                    }
                    t.elapsed()
                })
            });
        }
        g.finish();
    }
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
