//! The cost of counting, against a raw atomic add measured in the same run.
//!
//! Group `counter`:
//!
//! | bench | what |
//! |---|---|
//! | `raw_atomic_add` | `AtomicU64::fetch_add` on ordinary memory: the baseline |
//! | `inc` | a `static Counter`, file open |
//! | `inc_young` | a `static Counter` in a process under a second old, which checks the coarse clock at every count (timed inside fresh processes) |
//! | `inc_by_name` | `counter::inc("name")` |
//! | `inc_disabled` | a `static Counter` with telemetry off (measured in a child process, since a process starts telemetry once) |
//! | `inc_parallel` | two threads on one counter; time per increment per thread |
//! | `stack_inc` | a stack counter on a known stack, depth 8 |
//! | `open` | `Telemetry::start` on an existing week file with a few names, timed inside fresh processes |
//! | `open_full` | the same on a full week file (2 MiB, about 14,000 names): opening checks only the header, so it costs the same |
//!
//! Group `process`: the example tool's wall time with telemetry on and off.
//!
//! Run with `cargo bench --bench counter`; `CLEARCOUNT_BENCH_QUICK=1`
//! shortens every measurement (used by CI to check the benches still run).

#[path = "../tests/common/mod.rs"]
mod common;

use clearcount::counter::{self, Counter};
use clearcount::{StackCounter, Telemetry};
use criterion::Criterion;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static RAW: AtomicU64 = AtomicU64::new(0);
static C: Counter = Counter::new("bench/static");
static OFF: Counter = Counter::new("bench/off");
static STACK: StackCounter = StackCounter::new("bench/stack", 8);
/// Set when `stack_inc` ran (a filter may leave it out).
static STACK_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn criterion() -> Criterion {
    let c = Criterion::default();
    let c = if std::env::var_os("CLEARCOUNT_BENCH_QUICK").is_some() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    };
    c.configure_from_args()
}

fn bench_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clearcount-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Eight nested frames, then the stack counter.
#[inline(never)]
fn depth(n: u32) {
    if n == 0 {
        STACK.inc();
    } else {
        depth(black_box(n - 1));
    }
}

fn counting_benches(c: &mut Criterion) {
    let started = Telemetry::new("bench", "bench", "1.0").start();
    assert!(
        started.file.is_some(),
        "telemetry did not open a file: {started:?}"
    );
    let mut g = c.benchmark_group("counter");
    g.bench_function("raw_atomic_add", |b| {
        b.iter(|| black_box(&RAW).fetch_add(1, Ordering::Relaxed))
    });
    g.bench_function("inc", |b| b.iter(|| black_box(&C).inc()));
    g.bench_function("inc_young", |b| {
        let exe = std::env::current_exe().unwrap();
        let dir = std::env::var("CLEARCOUNT_DIR").unwrap();
        b.iter_custom(|iters| {
            let out = Command::new(&exe)
                .env("CLEARCOUNT_BENCH_CHILD", "young")
                .env("CLEARCOUNT_BENCH_ITERS", iters.to_string())
                .env("CLEARCOUNT_DIR", &dir)
                .output()
                .unwrap();
            let nanos: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            Duration::from_nanos(nanos)
        })
    });
    g.bench_function("inc_by_name", |b| {
        b.iter(|| counter::inc(black_box("bench/by-name")))
    });
    g.bench_function("inc_parallel", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            black_box(&C).inc();
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("stack_inc", |b| {
        STACK_RAN.store(true, Ordering::Relaxed);
        b.iter(|| depth(black_box(5)))
    });
    let small = PathBuf::from(std::env::var_os("CLEARCOUNT_DIR").unwrap());
    let full = small.join("full");
    fill_week_file(&full);
    for (name, dir) in [("open", &small), ("open_full", &full)] {
        g.bench_function(name, |b| {
            // Each sample: fresh processes that start telemetry on the
            // existing week file and report how long `start` took.
            let exe = std::env::current_exe().unwrap();
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let out = Command::new(&exe)
                        .env("CLEARCOUNT_BENCH_CHILD", "open")
                        .env("CLEARCOUNT_DIR", dir)
                        .output()
                        .unwrap();
                    let nanos: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                    total += Duration::from_nanos(nanos);
                }
                total
            })
        });
    }
    g.finish();
}

/// Fills this week's file of the bench build under `dir` to its size limit
/// (several processes: one process registers at most 4,096 names).
fn fill_week_file(dir: &std::path::Path) {
    let exe = std::env::current_exe().unwrap();
    for round in 0..8 {
        let ok = Command::new(&exe)
            .env("CLEARCOUNT_BENCH_CHILD", "fill")
            .env("CLEARCOUNT_BENCH_ROUND", round.to_string())
            .env("CLEARCOUNT_DIR", dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let file = std::fs::read_dir(dir.join("bench").join("counts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let parsed = clearcount::dump(&file).unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    // The format's size limit, 2 MiB (counters-spec/file-format.md §2).
    assert_eq!(len, 2 * 1024 * 1024, "the file is full");
    println!("full week file: {len} bytes, {} records", parsed.records);
}

fn disabled_benches(c: &mut Criterion) {
    let started = Telemetry::new("bench", "bench", "1.0").start();
    assert_eq!(started.mode, clearcount::Mode::Off);
    let mut g = c.benchmark_group("counter");
    g.bench_function("inc_disabled", |b| b.iter(|| black_box(&OFF).inc()));
    g.finish();
}

fn process_benches(c: &mut Criterion) {
    let exe = common::example("instrumented", &[]);
    let dir = PathBuf::from(std::env::var_os("CLEARCOUNT_DIR").unwrap()).join("process");
    let mut g = c.benchmark_group("process");
    g.sample_size(20);
    for (name, mode) in [("hello_off", "off"), ("hello_local", "local")] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let ok = Command::new(&exe)
                    .arg("hello")
                    .env("CLEARCOUNT_DIR", &dir)
                    .env("EXAMPLE_TELEMETRY", mode)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(ok.success());
            })
        });
    }
    g.finish();
}

fn main() {
    match std::env::var("CLEARCOUNT_BENCH_CHILD").as_deref() {
        Ok("open") => {
            let t = Instant::now();
            let s = Telemetry::new("bench", "bench", "1.0").start();
            let took = t.elapsed();
            assert!(s.file.is_some());
            println!("{}", took.as_nanos());
            return;
        }
        Ok("young") => {
            let iters: u64 = std::env::var("CLEARCOUNT_BENCH_ITERS")
                .unwrap()
                .parse()
                .unwrap();
            Telemetry::new("bench", "bench", "1.0").start();
            black_box(&C).inc(); // the slot is found
            let t = Instant::now();
            for _ in 0..iters {
                black_box(&C).inc();
            }
            let took = t.elapsed();
            // The whole loop ran before the week thread could start.
            assert!(took < Duration::from_millis(900), "{took:?}");
            println!("{}", took.as_nanos());
            return;
        }
        Ok("fill") => {
            let round: u32 = std::env::var("CLEARCOUNT_BENCH_ROUND")
                .unwrap()
                .parse()
                .unwrap();
            Telemetry::new("bench", "bench", "1.0").start();
            for i in 0..4000 {
                counter::inc(&format!("bench/fill/r{round}/n{i:04}/{}", "x".repeat(100)));
            }
            return;
        }
        Ok("off") => {
            let mut c = criterion();
            disabled_benches(&mut c);
            c.final_summary();
            return;
        }
        _ => {}
    }
    if std::env::var_os("CLEARCOUNT_DIR").is_none() {
        // Re-run with a private telemetry directory.
        let dir = bench_dir();
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env("CLEARCOUNT_DIR", &dir)
            .status()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut c = criterion();
    counting_benches(&mut c);
    // The disabled path in a process where telemetry is off.
    let status = Command::new(std::env::current_exe().unwrap())
        .args(std::env::args_os().skip(1))
        .env("CLEARCOUNT_BENCH_CHILD", "off")
        .env("BENCH_TELEMETRY", "off")
        .status()
        .unwrap();
    assert!(status.success());
    process_benches(&mut c);
    // The week file with the counters above, for the size figure; and a
    // check that what was measured really counted (an optimized build must
    // record stacks, not just walk them).
    if let Some(f) = clearcount::Telemetry::new("bench", "bench", "1.0")
        .start()
        .file
    {
        let len = std::fs::metadata(&f).unwrap().len();
        let parsed = clearcount::dump(&f).unwrap();
        let stacks: u64 = parsed
            .stacks
            .iter()
            .filter(|(k, _)| k.starts_with("bench/stack\n"))
            .map(|(_, v)| v)
            .sum();
        assert!(
            stacks > 0 || !STACK_RAN.load(Ordering::Relaxed),
            "stack_inc recorded no stack: {:?}",
            parsed.stacks.keys()
        );
        println!(
            "week file: {} bytes, {} records ({})",
            len,
            parsed.records,
            f.display()
        );
    }
    c.final_summary();
}
