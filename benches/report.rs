//! Weekly reports and the uploader's cost to the host, on the public path.
//!
//! `cargo bench --features kit --bench report`
//!
//! * `weekly/report_4x100` against `weekly/nothing_to_report`: a process
//!   (this bench binary re-run) that runs `mytool telemetry report`, once on
//!   a finished week with four counter files of 100 counters each (four
//!   builds of the program), once with nothing to report. The difference is
//!   the cost of building the report: reading the files, merging, writing
//!   the report, removing the files.
//! * `start/nothing_due` against `start/upload_due`: wall time of a host
//!   process that calls `Telemetry::start` with upload settings, on a day
//!   with nothing to do and on a day an upload is due (the upload itself
//!   runs in a detached child the host does not wait for).

use criterion::{BatchSize, Criterion};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A week of use and the day after it (installations start weeks on Monday).
const IN_WEEK: &str = "2026-11-04T10:00:00Z";
const NEXT_WEEK: &str = "2026-11-10T10:00:00Z";
/// Any valid key: nothing is verified in these benches.
const PUBLIC_KEY: &str = include_str!("../config/clearcount.pub");

fn host() {
    use clearcount::upload::UploadSettings;
    let s = UploadSettings::new(
        "http://127.0.0.1:9/upload",
        "http://127.0.0.1:9/config.toml",
        PUBLIC_KEY,
        include_str!("../config/log/policy"),
    )
    .with_timeouts(Duration::from_secs(1), Duration::from_secs(1))
    .with_child_limit(Duration::from_secs(5));
    let version = std::env::var("BENCH_VERSION").unwrap_or_else(|_| "1.0".into());
    clearcount::Telemetry::new("bench", "bench", &version)
        .upload(s)
        .start();
    match std::env::var("BENCH_HOST").as_deref() {
        Ok("count") => {
            for i in 0..100u64 {
                clearcount::counter::add(&format!("bench/counter-{i}:bucket"), i + 1);
            }
        }
        Ok("report") => {
            use clearcount::kit::subcommand::{TelemetryCommand, run};
            run("bench", TelemetryCommand::Report { dry_run: false }).unwrap();
        }
        _ => {}
    }
}

fn child(base: &Path, now: &str, what: &str, version: &str) {
    let st = Command::new(std::env::current_exe().unwrap())
        .env("BENCH_HOST", what)
        .env("BENCH_VERSION", version)
        .env("CLEARCOUNT_DIR", base)
        .env("CLEARCOUNT_NOW", now)
        .env_remove("BENCH_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// An installation opted in before the week, with nothing counted yet.
fn installation() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("week-start"), "Mon\n").unwrap();
    std::fs::write(dir.join("mode"), "on 2026-11-01\n").unwrap();
    // Today's upload attempt is taken, so that `start` in the reporting
    // process does not report the week first.
    std::fs::create_dir_all(dir.join("upload")).unwrap();
    std::fs::write(dir.join("upload").join("day-2026-11-10.token"), "done\n").unwrap();
    tmp
}

/// An installation with four counter files of 100 counters in a finished
/// week.
fn counted() -> tempfile::TempDir {
    let t = installation();
    for v in ["1.0", "1.1", "1.2", "1.3"] {
        child(t.path(), IN_WEEK, "count", v);
    }
    t
}

/// An installation with a finished week's report waiting to be sent, X
/// under the ceiling (so the upload child fetches the config, and fails:
/// nothing listens on port 9, which is the most the child can do).
fn due() -> tempfile::TempDir {
    let t = installation();
    let dir = t.path().join("bench");
    std::fs::remove_file(dir.join("upload").join("day-2026-11-10.token")).unwrap();
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    let mut p = clearcount_protocol::report::ProgramReport::new("bench", "1.0", "linux", "x86_64");
    p.counters.insert("bench/counter-1:bucket".into(), 3);
    let r = clearcount_protocol::report::Report {
        week: "2026-11-02".into(),
        x: 0.01,
        config: 0,
        programs: vec![p],
    };
    std::fs::write(
        dir.join("reports").join("2026-11-02.full.json"),
        r.to_bytes(),
    )
    .unwrap();
    t
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("weekly");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("nothing_to_report", |b| {
        b.iter_batched(
            installation,
            |t| child(t.path(), NEXT_WEEK, "report", "1.0"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("report_4x100", |b| {
        b.iter_batched(
            counted,
            |t| {
                child(t.path(), NEXT_WEEK, "report", "1.0");
                let report = t.path().join("bench/reports/2026-11-02.full.json");
                assert!(report.exists(), "the report was built");
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("start");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("nothing_due", |b| {
        b.iter_batched(
            installation,
            |t| child(t.path(), NEXT_WEEK, "start", "1.0"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("upload_due", |b| {
        b.iter_batched(
            due,
            |t| child(t.path(), NEXT_WEEK, "start", "1.0"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    // Re-run as the host (and as the host's upload child, which exits in
    // `Telemetry::start`).
    if std::env::var_os("BENCH_HOST").is_some()
        || std::env::var_os("CLEARCOUNT_UPLOAD_CHILD").is_some()
    {
        host();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
