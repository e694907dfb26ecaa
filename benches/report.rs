//! Weekly reports and the uploader's cost to the host.
//!
//! `cargo bench --features cli --bench report`
//!
//! * `weekly/build_report_4x100`: merging a week's four counter files of 100
//!   counters each into one report and making its canonical bytes.
//! * `start/nothing_due` vs `start/upload_due`: wall time of a host process
//!   (this bench binary re-run with `BENCH_HOST=1`) that calls
//!   `Telemetry::start` with upload settings, on a day with nothing to do and
//!   on a day an upload is due (the upload itself runs in a detached child
//!   the host does not wait for).

use clearcount::format::{Meta, Parsed};
use criterion::{BatchSize, Criterion};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn files() -> Vec<Parsed> {
    (0..4)
        .map(|f| {
            let meta = Meta::new(
                "bench",
                &format!("1.{f}"),
                "linux",
                "x86_64",
                "2026-11-02".parse().unwrap(),
            );
            let mut p = Parsed {
                meta,
                counters: Default::default(),
                stacks: Default::default(),
                records: 100,
            };
            for i in 0..100u64 {
                p.counters
                    .insert(format!("bench/counter-{i}:bucket"), i + 1);
            }
            p
        })
        .collect()
}

fn host() {
    use clearcount::upload::UploadSettings;
    let s = UploadSettings::new(
        "http://127.0.0.1:9/upload",
        "http://127.0.0.1:9/config.toml",
        clearcount::sign::PUBLIC_KEY,
    )
    .with_timeouts(Duration::from_secs(1), Duration::from_secs(1))
    .with_child_limit(Duration::from_secs(5));
    clearcount::Telemetry::new("bench", "bench", "1.0")
        .upload(s)
        .start();
}

fn installation(due: bool) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    std::fs::write(dir.join("week-start"), "Mon\n").unwrap();
    std::fs::write(dir.join("mode"), "on 2026-11-01\n").unwrap();
    if due {
        // X under the ceiling, so the child fetches the config (and fails:
        // nothing listens on port 9), which is the most the child can do.
        let r = clearcount::weekly::build_report("2026-11-02", &files(), 0.01);
        std::fs::write(
            clearcount::weekly::full_path(&dir, "2026-11-02"),
            r.to_bytes(),
        )
        .unwrap();
    }
    tmp
}

fn run_host(base: &Path) {
    let st = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_HOST", "1")
        .env("CLEARCOUNT_DIR", base)
        .env("CLEARCOUNT_NOW", "2026-11-10T10:00:00Z")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

fn benches(c: &mut Criterion) {
    let fs = files();
    let mut g = c.benchmark_group("weekly");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("build_report_4x100", |b| {
        b.iter(|| clearcount::weekly::build_report("2026-11-02", &fs, 0.5).to_bytes())
    });
    g.finish();

    let mut g = c.benchmark_group("start");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("nothing_due", |b| {
        b.iter_batched(
            || installation(false),
            |t| run_host(t.path()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("upload_due", |b| {
        b.iter_batched(
            || installation(true),
            |t| run_host(t.path()),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    // Re-run as the host (and as the host's upload child, which exits in
    // `Telemetry::start`).
    if std::env::var_os("BENCH_HOST").is_some()
        || std::env::var_os(clearcount::upload::CHILD_VAR).is_some()
    {
        host();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
