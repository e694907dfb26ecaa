//! What carrying clearcount costs a toolchain's start: the whole process of
//! a trivial command (`mytool build`), timed from spawn to exit.
//!
//! | bench | the program |
//! |---|---|
//! | `without` | `examples/startup_plain.rs`: a small clap toolchain without clearcount (the baseline) |
//! | `off` | `examples/startup_kit.rs`: the same toolchain set up as the README says (upload settings, panic counter, flag counting, the mounted `telemetry` subcommand, the first-run notice), with `MYTOOL_TELEMETRY=off` |
//! | `local` | the same, counting locally (the default mode) into an existing week file |
//!
//! Group `startup` (criterion, one after the other), then the figures that
//! count: the three programs run in turns, one run of each per round, so
//! that the machine's drift hits all three alike; the medians and their
//! ratios to `without` are printed (`startup ratio: ...`). Every run gets
//! the same environment (`MYTOOL_TELEMETRY` is set for the baseline too).
//!
//! Run with `cargo bench --features kit --bench startup`;
//! `CLEARCOUNT_BENCH_QUICK=1` shortens it.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::Criterion;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::var_os("CLEARCOUNT_BENCH_QUICK").is_some()
}

/// One run of `exe build` with telemetry in `mode`; panics if it fails.
fn run(exe: &Path, dir: &Path, mode: &str) -> Duration {
    let t = Instant::now();
    let ok = Command::new(exe)
        .arg("build")
        .env("CLEARCOUNT_DIR", dir)
        .env("MYTOOL_TELEMETRY", mode)
        .env_remove("DO_NOT_TRACK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let took = t.elapsed();
    assert!(ok.success(), "{} build ({mode})", exe.display());
    took
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let plain = common::example("startup_plain", &["kit"]);
    let kit = common::example("startup_kit", &["kit"]);
    let dir = std::env::temp_dir().join(format!("clearcount-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The week file and today's upload token exist, as on any run but the
    // first of a day.
    run(&kit, &dir, "local");
    let variants: [(&str, &PathBuf, &str); 3] = [
        ("without", &plain, "off"),
        ("off", &kit, "off"),
        ("local", &kit, "local"),
    ];

    let c = Criterion::default();
    let mut c = if quick() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30)
    }
    .configure_from_args();
    let mut g = c.benchmark_group("startup");
    for (name, exe, mode) in variants {
        g.bench_function(name, |b| b.iter(|| run(exe, &dir, mode)));
    }
    g.finish();
    c.final_summary();

    // The ratios: the three in turns.
    let rounds = if quick() { 30 } else { 600 };
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..rounds {
        for (i, (_, exe, mode)) in variants.iter().enumerate() {
            times[i].push(run(exe, &dir, mode));
        }
    }
    let [without, off, local] = times.map(|mut t| median(&mut t));
    let ratio = |d: Duration| d.as_secs_f64() / without.as_secs_f64();
    println!(
        "startup ratio: without clearcount {:.0} us; off {:.0} us ({:.3}x); local {:.0} us ({:.3}x); medians of {rounds} runs each, in turns",
        without.as_secs_f64() * 1e6,
        off.as_secs_f64() * 1e6,
        ratio(off),
        local.as_secs_f64() * 1e6,
        ratio(local),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
