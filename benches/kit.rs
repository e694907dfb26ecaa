//! The cost of the integration kit, measured in one run.
//!
//! Group `panic_hook`: the same function call (slice indexing and an
//! `expect`, code that can panic but does not), before and after
//! `kit::panic::install`, and after the hook is taken out again: the hook
//! is only reached when a panic happens, so all three must be the same. Then, for scale, a caught panic with a silent
//! hook, before and after the panic counter is chained in front of it.
//!
//! Group `histogram`: `Histogram::record` and `record_duration`, against a
//! `static Counter` increment (the atomic add they end in).
//!
//! Run with `cargo bench --bench kit`; `CLEARCOUNT_BENCH_QUICK=1`
//! shortens every measurement.

use clearcount::Telemetry;
use clearcount::counter::Counter;
use clearcount::kit::histogram::Histogram;
use criterion::Criterion;
use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

static H: Histogram = Histogram::durations_ms("kitbench/time", &[10, 100, 1000]);
static C: Counter = Counter::new("kitbench/plain");

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

/// Code that may panic (a bounds check, an `expect`) and does not.
#[inline(never)]
fn work(v: &[u64], i: usize) -> u64 {
    v[i % v.len()].checked_mul(3).expect("no overflow") + 1
}

#[inline(never)]
fn panics(i: usize) -> usize {
    if black_box(i) < usize::MAX {
        panic!("bench panic {i}");
    }
    i
}

fn main() {
    // Count into a temporary directory: re-run this binary with one set.
    if std::env::var_os("CLEARCOUNT_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("clearcount-kitbench-{}", std::process::id()));
        let status = Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env("CLEARCOUNT_DIR", &dir)
            .status()
            .expect("run the bench");
        let _ = std::fs::remove_dir_all(&dir);
        std::process::exit(status.code().unwrap_or(1));
    }
    let _ = Telemetry::new("kitbench", "kitbench", "1.0").start();
    let mut c = criterion();
    let data: Vec<u64> = (0..64).collect();

    // A silent hook, so the panics measured below print nothing.
    std::panic::set_hook(Box::new(|_| {}));
    let mut g = c.benchmark_group("panic_hook");
    let mut i = 0usize;
    g.bench_function("call_without_hook", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            work(black_box(&data), black_box(i))
        })
    });
    g.bench_function("caught_panic_without_hook", |b| {
        b.iter(|| std::panic::catch_unwind(|| panics(black_box(1))).is_err())
    });
    clearcount::kit::panic::install(16);
    g.bench_function("call_with_hook", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            work(black_box(&data), black_box(i))
        })
    });
    g.bench_function("caught_panic_with_hook", |b| {
        b.iter(|| std::panic::catch_unwind(|| panics(black_box(1))).is_err())
    });
    // The hook taken out again: the spread between the three call figures
    // is the noise of the machine.
    let hook = std::panic::take_hook();
    g.bench_function("call_without_hook_again", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            work(black_box(&data), black_box(i))
        })
    });
    std::panic::set_hook(hook);
    g.finish();

    let mut g = c.benchmark_group("histogram");
    g.bench_function("static_counter_inc", |b| b.iter(|| C.inc()));
    let mut v = 0u64;
    g.bench_function("record", |b| {
        b.iter(|| {
            v = (v + 7) % 2000;
            H.record(black_box(v))
        })
    });
    g.bench_function("record_duration", |b| {
        b.iter(|| H.record_duration(black_box(Duration::from_micros(42_000))))
    });
    g.finish();
    c.final_summary();
}
