//! Processes and weeks: a process already running when its week ends moves
//! to the new week's file whatever API counts (static counter, by name,
//! stack counter, histogram), young or old, even after another process has
//! reported and deleted the old week's file; old weeks' files are pruned in
//! every build; builds whose file names would coincide never collide.
//!
//! Children are this test binary re-run (`child_*`, active only when
//! `WEEKS_CHILD` is set). CI also runs this file without features
//! (`cargo test --test weeks`): an engine-only build, as most toolchains
//! embed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// 2026-11-23 is a Monday; installations here start their weeks on Monday.
const WEEK_END: &str = "2026-11-23T00:00:00Z";
const OLD_WEEK: &str = "2026-11-16";
const NEW_WEEK: &str = "2026-11-23";
/// Counts this close to the boundary may land on either side; children do
/// not count there. (The week thread wakes at the boundary; on a loaded
/// machine, or under Wine, where a sleep ends on a 15.6 ms timer tick, it
/// may be scheduled a few hundred milliseconds late.)
const GUARD: Duration = Duration::from_millis(400);

fn end() -> chrono::DateTime<chrono::Utc> {
    WEEK_END.parse().unwrap()
}

fn child_var() -> Option<String> {
    std::env::var("WEEKS_CHILD").ok()
}

static STATIC: clearcount::Counter = clearcount::Counter::new("weeks/static");
static STACK: clearcount::StackCounter = clearcount::StackCounter::new("weeks/stack", 4);
/// Loads the debug information stack counters symbolize with, before the
/// counting starts (the first stack takes a while to name).
static WARM: clearcount::StackCounter = clearcount::StackCounter::new("warm/stack", 4);
#[cfg(feature = "kit")]
static HIST: clearcount::kit::histogram::Histogram = clearcount::kit::histogram::Histogram::new(
    "weeks/hist",
    &[10, 100],
    clearcount::kit::histogram::Unit::Plain,
);

#[inline(never)]
fn count_once(api: &str) {
    match api {
        "static" => STATIC.inc(),
        "by-name" => clearcount::counter::inc("weeks/by-name"),
        "stack" => STACK.inc(),
        #[cfg(feature = "kit")]
        "histogram" => HIST.record(5),
        other => panic!("unknown api {other}"),
    }
}

/// Child: counts through one API from its start until `WEEKS_UNTIL_MS`
/// past the week's end, every `WEEKS_EVERY_MS` (0: as fast as it can),
/// except within [`GUARD`] of the boundary; prints how many counts it made
/// on each side (by the clock read before and after each count; a count
/// whose two readings reach into the guard band, at most one per edge, is
/// reported as `MID`), and whether the week thread was running at the end.
#[cfg(feature = "test-hooks")]
#[test]
fn child_crosser() {
    let Some(api) = child_var() else { return };
    let every: u64 = std::env::var("WEEKS_EVERY_MS").unwrap().parse().unwrap();
    let until: i64 = std::env::var("WEEKS_UNTIL_MS").unwrap().parse().unwrap();
    if api == "stack" {
        // Before the clock starts (it starts at `start`): the first stack
        // loads debug information, which takes seconds in a debug build.
        WARM.inc();
    }
    let mut t = clearcount::Telemetry::new("example", "weeks", "1.0");
    if std::env::var_os("WEEKS_HINT").is_some() {
        t = t.long_running();
    }
    // The engine's clock is CLEARCOUNT_NOW from its first reading (in
    // `start`) on, plus the real time since: follow it the same way.
    let base = Instant::now();
    let s = t.start();
    assert!(s.file.is_some(), "{s:?}");
    let now0: chrono::DateTime<chrono::Utc> =
        std::env::var("CLEARCOUNT_NOW").unwrap().parse().unwrap();
    let clock = || now0 + chrono::Duration::from_std(base.elapsed()).unwrap();
    let guard = chrono::Duration::from_std(GUARD).unwrap();
    let stop = end() + chrono::Duration::milliseconds(until);
    let (mut before, mut after, mut mid) = (0u64, 0u64, 0u64);
    loop {
        let t0 = clock();
        if t0 >= stop {
            break;
        }
        if t0 < end() - guard || t0 > end() + guard {
            count_once(&api);
            let t1 = clock();
            if t1 < end() - guard {
                before += 1;
            } else if t0 > end() + guard {
                after += 1;
            } else {
                mid += 1;
            }
        }
        if every > 0 {
            std::thread::sleep(Duration::from_millis(every));
        }
    }
    let thread = clearcount::week_thread_running();
    eprintln!(
        "BEFORE={before}\nAFTER={after}\nMID={mid}\nTHREAD={}",
        u8::from(thread)
    );
}

struct Crosser {
    what: String,
    api: &'static str,
    /// Whether the week thread must be running at the end.
    thread: bool,
    child: std::process::Child,
}

/// How a crossing process lives through the boundary.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Young throughout (a test hook stretches youth to a minute): no
    /// thread, every count checks the clock.
    Young,
    /// Older than a second at the boundary: the week thread runs.
    Older,
    /// `long_running()`: the thread from the start.
    Hinted,
}

fn crosser(dir: &Path, api: &'static str, phase: Phase, every_ms: u64, until_ms: i64) -> Crosser {
    let lead_ms = 2500;
    let start = end() - chrono::Duration::milliseconds(lead_ms);
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "child_crosser",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("WEEKS_CHILD", api)
    .env("WEEKS_EVERY_MS", every_ms.to_string())
    .env("WEEKS_UNTIL_MS", until_ms.to_string())
    .env("CLEARCOUNT_DIR", dir)
    .env(
        "CLEARCOUNT_NOW",
        start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
    .env_remove("DO_NOT_TRACK")
    .env_remove("EXAMPLE_TELEMETRY")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    match phase {
        Phase::Young => {
            c.env("CLEARCOUNT_TEST_LAZY_MS", "60000");
        }
        // Youth at its default (one second), said explicitly.
        Phase::Older => {
            c.env("CLEARCOUNT_TEST_LAZY_MS", "1000");
        }
        Phase::Hinted => {
            c.env("WEEKS_HINT", "1");
        }
    }
    Crosser {
        what: format!("{api}, {phase:?}, every {every_ms} ms"),
        api,
        thread: phase != Phase::Young,
        child: c.spawn().unwrap(),
    }
}

fn side(out: &std::process::Output, key: &str) -> u64 {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("child said no {key}: {err}"))
        .trim()
        .parse()
        .unwrap()
}

/// A fresh installation directory whose weeks start on Monday.
fn installation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("example");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("week-start"), "Mon\n").unwrap();
    dir
}

/// Counts by name.
type Counts = BTreeMap<String, u64>;

/// Every counter file of the namespace, read: (week begin, counters, stacks).
fn files(dir: &Path) -> Vec<(String, Counts, Counts)> {
    let Ok(rd) = std::fs::read_dir(dir.join("example").join("counts")) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .map(|e| {
            let p = e.unwrap().path();
            let parsed = clearcount::dump(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (parsed.week_begin, parsed.counters, parsed.stacks)
        })
        .collect();
    v.sort();
    v
}

/// What the API's counts add up to in one week's file.
fn api_total(api: &str, counters: &BTreeMap<String, u64>, stacks: &BTreeMap<String, u64>) -> u64 {
    let prefix = format!("weeks/{api}");
    let sum = |m: &BTreeMap<String, u64>| -> u64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    };
    if api == "stack" {
        sum(stacks)
    } else {
        sum(counters)
    }
}

fn check_split(dir: &Path, c: Crosser) {
    let out = c.child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}: {out:?}", c.what);
    let (before, after) = (side(&out, "BEFORE"), side(&out, "AFTER"));
    assert!(before > 0 && after > 0, "{}: {before} {after}", c.what);
    let mid = side(&out, "MID");
    assert!(mid <= 2, "{}: {mid} counts near the boundary", c.what);
    assert_eq!(
        side(&out, "THREAD") == 1,
        c.thread,
        "{}: the week thread runs only once the process is older",
        c.what
    );
    let api = if c.api == "histogram" { "hist" } else { c.api };
    let mut got = BTreeMap::new();
    for (week, counters, stacks) in files(dir) {
        got.insert(week, api_total(api, &counters, &stacks));
    }
    let (old, new) = (
        got.get(OLD_WEEK).copied().unwrap_or(0),
        got.get(NEW_WEEK).copied().unwrap_or(0),
    );
    assert!(
        old + new == before + after + mid
            && (before..=before + mid).contains(&old)
            && (after..=after + mid).contains(&new),
        "{}: counts before the end in the old week ({before}, +{mid} near the end), \
         after it in the new ({after}); files hold {old} and {new}",
        c.what
    );
}

/// Every counting API, in a process that is young at the boundary (no
/// thread: every count checks the clock) and in one that is older (the
/// week thread runs): slow counting (every 100 ms), and tight loops.
#[cfg(feature = "test-hooks")]
#[test]
fn every_api_moves_to_the_new_week() {
    let mut apis = vec!["static", "by-name", "stack"];
    if cfg!(feature = "kit") {
        apis.push("histogram");
    }
    let mut runs = Vec::new();
    for api in apis {
        for phase in [Phase::Young, Phase::Older] {
            let d = installation();
            runs.push((crosser(d.path(), api, phase, 100, 1500), d));
        }
    }
    for (api, phase) in [
        ("by-name", Phase::Young),
        ("static", Phase::Older),
        ("static", Phase::Hinted),
    ] {
        let d = installation();
        runs.push((crosser(d.path(), api, phase, 0, 1000), d));
    }
    for (c, d) in runs {
        check_split(d.path(), c);
    }
}

/// A process that counts only through a static counter, already running
/// when its week ends; after the end another process reports the old week
/// (and deletes its file). Nothing is counted into the deleted file: the
/// report holds exactly the counts made before the end, the new week's
/// file exactly those made after.
#[cfg(feature = "kit")]
#[test]
fn old_week_reported_and_deleted_under_a_running_process() {
    let d = installation();
    let started = Instant::now();
    let grace = GRACE_MS;
    let c = crosser(d.path(), "static", Phase::Older, 100, grace + 3000);
    // Wait (real time) until the grace after the end has passed, then
    // report as a user would.
    let report_at = Duration::from_millis(2500 + grace as u64 + 500);
    std::thread::sleep(report_at.saturating_sub(started.elapsed()));
    let now = end() + chrono::Duration::milliseconds(grace + 500);
    let report = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_reporter",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEEKS_CHILD", "reporter")
            .env("CLEARCOUNT_DIR", d.path())
            .env(
                "CLEARCOUNT_NOW",
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        files(d.path())
            .into_iter()
            .map(|f| f.0)
            .collect::<Vec<String>>()
    };
    let weeks = report();
    if cfg!(windows) {
        // Windows deletes no file that a running process has mapped: the
        // old week's file stays, already reported, until that process
        // ends; the next report run removes it.
        assert_eq!(weeks, [OLD_WEEK, NEW_WEEK]);
    } else {
        assert_eq!(
            weeks,
            [NEW_WEEK],
            "the old week's file was reported and removed"
        );
    }
    let out = c.child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    if cfg!(windows) {
        assert_eq!(report(), [NEW_WEEK], "removed once no process maps it");
    }
    let (before, after) = (side(&out, "BEFORE"), side(&out, "AFTER"));
    let path = d
        .path()
        .join("example")
        .join("reports")
        .join(format!("{OLD_WEEK}.full.json"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let reported = report["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["counters"]["weeks/static"].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(
        reported, before,
        "the report holds the counts before the end"
    );
    let files = files(d.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        files[0].1["weeks/static"], after,
        "and the new file the rest"
    );
}

/// How long after a week's end its report is built (`weekly::GRACE`, the
/// spec's 5 seconds).
#[cfg(feature = "kit")]
const GRACE_MS: i64 = 5000;

/// Child: `telemetry report` as a user runs it, through the mounted
/// subcommand's code.
#[cfg(feature = "kit")]
#[test]
fn child_reporter() {
    if child_var().as_deref() != Some("reporter") {
        return;
    }
    let cmd = clearcount::kit::subcommand::TelemetryCommand::Report { dry_run: false };
    clearcount::kit::subcommand::run("example", cmd).unwrap();
}

/// Child: counts once and exits; program and version from the environment.
#[test]
fn child_once() {
    if child_var().as_deref() != Some("once") {
        return;
    }
    let program = std::env::var("WEEKS_PROGRAM").unwrap();
    let version = std::env::var("WEEKS_VERSION").unwrap();
    let s = clearcount::Telemetry::new("example", &program, &version).start();
    assert!(s.file.is_some(), "{s:?}");
    clearcount::counter::inc("weeks/once");
}

fn once(dir: &Path, program: &str, version: &str, now: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_once", "--exact", "--nocapture", "--test-threads=1"])
        .env("WEEKS_CHILD", "once")
        .env("WEEKS_PROGRAM", program)
        .env("WEEKS_VERSION", version)
        .env("CLEARCOUNT_DIR", dir)
        .env("CLEARCOUNT_NOW", now)
        .env_remove("DO_NOT_TRACK")
        .env_remove("EXAMPLE_TELEMETRY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn count_paths(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join("example").join("counts")) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// Ten weeks of use: `counts/` never holds more than the current week and
/// the four before it (`countfile::KEEP_PAST_WEEKS`). In an
/// engine-only build (no reports at all) exactly that many stay.
#[test]
fn old_weeks_are_pruned_in_every_build() {
    let d = installation();
    let first: chrono::NaiveDate = "2026-09-07".parse().unwrap(); // a Monday
    let keep = 4 + 1;
    for k in 0..10u64 {
        let day = first + chrono::Days::new(7 * k + 2);
        once(d.path(), "weeks", "1.0", &format!("{day}T12:00:00Z"));
        let n = count_paths(d.path()).len();
        assert!(n <= keep, "week {k}: {n} files");
        if cfg!(not(feature = "upload")) {
            assert_eq!(n, (k as usize + 1).min(keep), "week {k}");
        }
    }
    if cfg!(not(feature = "upload")) {
        assert!(!d.path().join("example").join("reports").exists());
        let weeks: Vec<String> = files(d.path()).into_iter().map(|f| f.0).collect();
        assert_eq!(
            weeks,
            [
                "2026-10-12",
                "2026-10-19",
                "2026-10-26",
                "2026-11-02",
                "2026-11-09"
            ]
        );
    }
}

/// Builds whose readable file names coincide (a character a file name
/// cannot hold, or only the case of a letter) get files of their own and
/// never set each other's aside.
#[test]
fn builds_with_similar_names_never_collide() {
    let d = installation();
    let builds = [
        ("collide", "1.0/x"),
        ("collide", "1.0_x"),
        ("MyTool", "1"),
        ("mytool", "1"),
    ];
    for _ in 0..3 {
        for (p, v) in builds {
            once(d.path(), p, v, "2026-11-18T12:00:00Z");
        }
    }
    assert!(
        !d.path().join("example").join("corrupt").exists(),
        "a file was set aside"
    );
    let paths = count_paths(d.path());
    assert_eq!(paths.len(), builds.len(), "{paths:?}");
    let lower: std::collections::BTreeSet<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_lowercase())
        .collect();
    assert_eq!(
        lower.len(),
        builds.len(),
        "distinct on a case-insensitive file system too"
    );
    for p in &paths {
        let parsed = clearcount::dump(p).unwrap();
        assert_eq!(parsed.counters["weeks/once"], 3, "{}", p.display());
    }
}
