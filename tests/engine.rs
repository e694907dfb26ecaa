//! The counter engine under real processes: many writers on one file,
//! SIGKILL in the middle of counting, hostile files, week rotation, and the
//! off switches.
//!
//! Processes are the example tool (`examples/instrumented.rs`) and this test
//! binary itself re-run as a child (`child_*` functions, active only when
//! `ENGINE_CHILD` is set).

mod common;

use clearcount::CounterFile;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The counter file layout (`counters-spec/file-format.md` §2), for making
/// damaged files by hand.
mod layout {
    pub const CHUNK: usize = 65536;
    pub const TABLE_OFF: usize = 1024;
    pub const SLOTS: usize = 1024;
    pub const DATA_OFF: usize = TABLE_OFF + 4 * SLOTS;
}

fn tool(dir: &Path) -> Command {
    let mut c = Command::new(common::example("instrumented", &[]));
    c.env("CLEARCOUNT_DIR", dir)
        .env_remove("DO_NOT_TRACK")
        .env_remove("EXAMPLE_TELEMETRY")
        .env_remove("CLEARCOUNT_NOW");
    c
}

/// All counter files under `dir`, parsed (panics on a corrupt one); not
/// a file another process is still creating under a temporary name.
fn counts(dir: &Path) -> Vec<(PathBuf, CounterFile)> {
    let mut out = Vec::new();
    for p in common::counter_files(&dir.join("example").join("counts")) {
        let parsed = clearcount::dump(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push((p, parsed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Waits (up to a minute, for a slow machine) until `counter` is above
/// zero in the files under `dir`, as a running process counts.
fn wait_for_count(dir: &Path, counter: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while merged(dir).get(counter).copied().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "{counter} was never counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn merged(dir: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for (_, p) in counts(dir) {
        for (k, v) in p.counters {
            *m.entry(k).or_default() += v;
        }
    }
    m
}

#[test]
fn many_processes_same_file_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    // All start at once on an empty directory, so they race to create the
    // directory, the week-start file and the counter file.
    let mut children = Vec::new();
    for i in 0..12 {
        let name = if i % 2 == 0 {
            "shared/hot".to_string()
        } else {
            format!("own/p{i}")
        };
        children.push(
            tool(dir.path())
                .args(["inc", &name, "20000"])
                .spawn()
                .unwrap(),
        );
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let files = counts(dir.path());
    assert_eq!(files.len(), 1, "one file for one program build and week");
    let m = merged(dir.path());
    assert_eq!(m["shared/hot"], 6 * 20000);
    for i in (1..12).step_by(2) {
        assert_eq!(m[&format!("own/p{i}")], 20000);
    }
    assert_eq!(m["instrumented/command:inc"], 12);
}

#[test]
fn sigkill_mid_counting_leaves_a_parsable_file() {
    let dir = tempfile::tempdir().unwrap();
    // Warm: create the file first so the kill lands in the counting loop.
    assert!(
        tool(dir.path())
            .args(["inc", "warm"])
            .status()
            .unwrap()
            .success()
    );
    let asked: u64 = 2_000_000_000;
    for round in 0..3 {
        let name = format!("killed/r{round}");
        let mut child = tool(dir.path())
            .args(["inc", &name, &asked.to_string()])
            .spawn()
            .unwrap();
        // Killed while counting (however slowly the machine started it).
        wait_for_count(dir.path(), &name);
        std::thread::sleep(Duration::from_millis(50 + 50 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let m = merged(dir.path());
        let got = m.get(&format!("killed/r{round}")).copied().unwrap_or(0);
        assert!(got <= asked, "count {got} larger than what was done");
        assert!(got > 0, "nothing was counted before the kill");
    }
    // The file is still usable by a new process.
    assert!(
        tool(dir.path())
            .args(["inc", "after", "3"])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(merged(dir.path())["after"], 3);
}

/// The `TICKS=n` a child printed on stderr.
fn ticks(out: &std::process::Output) -> u64 {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("TICKS="))
        .expect("child reports its ticks")
        .trim()
        .parse()
        .unwrap()
}

fn child_env() -> Option<String> {
    std::env::var("ENGINE_CHILD").ok()
}

/// Child: creates many distinct counters (so the file grows) until killed.
#[test]
fn child_grower() {
    if child_env().as_deref() != Some("grower") {
        return;
    }
    clearcount::Telemetry::new("example", "instrumented", "9.9.9").start();
    for i in 0.. {
        clearcount::counter::inc(&format!("grow/n{i}"));
        clearcount::counter::inc("grow/total");
    }
}

fn run_child(name: &str, dir: &Path, extra: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        &format!("child_{name}"),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ENGINE_CHILD", name)
    .env("CLEARCOUNT_DIR", dir)
    .env_remove("CLEARCOUNT_NOW")
    .env_remove("DO_NOT_TRACK")
    .env_remove("EXAMPLE_TELEMETRY")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

#[test]
fn sigkill_while_the_file_grows() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4 {
        let mut child = run_child("grower", dir.path(), &[]);
        wait_for_count(dir.path(), "grow/total");
        std::thread::sleep(Duration::from_millis(100 + 70 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let files = counts(dir.path());
        assert_eq!(files.len(), 1);
        let c = &files[0].1.counters;
        assert!(c.get("grow/total").copied().unwrap_or(0) > 0);
        // Each process counts each name once: no count can exceed the
        // number of processes that ran.
        for (k, v) in c.iter().filter(|(k, _)| k.starts_with("grow/n")) {
            assert!(*v <= round + 1, "{k} = {v} after {} processes", round + 1);
        }
    }
    let len = std::fs::metadata(&counts(dir.path())[0].0).unwrap().len();
    assert!(len > layout::CHUNK as u64, "the file grew ({len} bytes)");
}

/// Child: counts across a week boundary with a clock that starts 1.5 s
/// before it.
#[test]
fn child_long() {
    if child_env().as_deref() != Some("long") {
        return;
    }
    static TICK: clearcount::Counter = clearcount::Counter::new("long/tick");
    clearcount::Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_millis(3000) {
        TICK.inc();
        n += 1;
        if n.is_multiple_of(1000) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    println!("{n}");
    eprintln!("TICKS={n}");
}

#[test]
fn long_running_process_moves_to_next_week() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("example");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("week-start"), "Mon\n").unwrap();
    // 2026-11-23 is a Monday.
    let out = run_child(
        "long",
        dir.path(),
        &[("CLEARCOUNT_NOW", "2026-11-22T23:59:58.500Z")],
    )
    .wait_with_output()
    .unwrap();
    assert!(out.status.success());
    let ticks = ticks(&out);
    let files = counts(dir.path());
    let weeks: Vec<String> = files.iter().map(|(_, p)| p.week_begin.clone()).collect();
    assert_eq!(weeks, ["2026-11-16", "2026-11-23"], "{files:?}");
    let before = files[0].1.counters["long/tick"];
    let after = files[1].1.counters["long/tick"];
    assert!(before > 0 && after > 0, "{before} {after}");
    assert_eq!(
        before + after,
        ticks,
        "no count lost or doubled at the switch"
    );
}

#[test]
fn new_process_in_a_new_week_uses_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("example");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("week-start"), "Thu\n").unwrap();
    for (now, times) in [
        ("2026-11-18T12:00:00Z", "1"), // Wed: week of Thu 11-12
        ("2026-11-19T00:00:01Z", "2"), // Thu: new week
        ("2026-11-25T23:59:59Z", "4"), // Wed: same week as 11-19
    ] {
        let ok = tool(dir.path())
            .env("CLEARCOUNT_NOW", now)
            .args(["inc", "w/x", times])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    // A week that is over may already have become a local report (when
    // the tool is built with reports), its counter file removed, by a
    // detached child: wait for it to end, then look in both places.
    common::wait_for_processes_in(dir.path());
    let mut got: Vec<(String, u64)> = counts(dir.path())
        .iter()
        .map(|(_, p)| (p.week_begin.clone(), p.counters["w/x"]))
        .collect();
    if let Ok(rd) = std::fs::read_dir(ns.join("reports")) {
        for e in rd {
            let p = e.unwrap().path();
            if !p.to_string_lossy().ends_with(".full.json") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let week = v["week"].as_str().unwrap().to_string();
            let n = v["programs"][0]["counters"]["w/x"].as_u64().unwrap();
            got.push((week, n));
        }
    }
    got.sort();
    assert_eq!(
        got,
        [("2026-11-12".to_string(), 1), ("2026-11-19".to_string(), 6)]
    );
}

#[test]
fn off_writes_nothing() {
    for (var, val) in [
        ("EXAMPLE_TELEMETRY", "off"),
        ("DO_NOT_TRACK", "1"),
        ("DO_NOT_TRACK", "true"),
    ] {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("tele");
        let ok = tool(&dir)
            .env(var, val)
            .args(["inc", "x", "10"])
            .status()
            .unwrap();
        assert!(ok.success());
        let ok = tool(&dir)
            .env(var, val)
            .args(["stack", "x"])
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(!dir.exists(), "{var}={val} created {}", dir.display());
    }
}

#[test]
fn env_var_beats_mode_file_and_do_not_track_beats_both() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("example");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("mode"), "off 2026-11-01\n").unwrap();
    tool(dir.path()).args(["inc", "m/a"]).status().unwrap();
    assert!(counts(dir.path()).is_empty(), "mode file off is obeyed");
    tool(dir.path())
        .env("EXAMPLE_TELEMETRY", "local")
        .args(["inc", "m/a"])
        .status()
        .unwrap();
    assert_eq!(merged(dir.path())["m/a"], 1, "env var overrides the file");
    tool(dir.path())
        .env("EXAMPLE_TELEMETRY", "on")
        .env("DO_NOT_TRACK", "1")
        .args(["inc", "m/a"])
        .status()
        .unwrap();
    assert_eq!(merged(dir.path())["m/a"], 1, "DO_NOT_TRACK wins");
}

#[test]
fn unusable_directory_does_not_hurt_the_host() {
    let base = tempfile::tempdir().unwrap();
    let file = base.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    // The telemetry directory would be inside a regular file.
    let out = tool(&file.join("sub"))
        .args(["inc", "x", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"");
}

fn week_file(dir: &Path) -> PathBuf {
    let files = counts(dir);
    assert_eq!(files.len(), 1);
    files[0].0.clone()
}

#[test]
fn hostile_files_are_set_aside_and_counting_goes_on() {
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        ("truncated", Box::new(|b: &mut Vec<u8>| b.truncate(100))),
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "garbage",
            Box::new(|b: &mut Vec<u8>| {
                for (i, x) in b.iter_mut().enumerate() {
                    *x = (i * 7 + 3) as u8;
                }
            }),
        ),
        ("future-version", Box::new(|b: &mut Vec<u8>| b[8] = 9)),
        (
            "huge-alloc",
            Box::new(|b: &mut Vec<u8>| b[40..48].copy_from_slice(&u64::MAX.to_le_bytes())),
        ),
        (
            "chain-loop",
            Box::new(|b: &mut Vec<u8>| {
                // Point every table slot at the first record, whose next points to itself.
                let first = layout::DATA_OFF as u32;
                for s in 0..layout::SLOTS {
                    let o = layout::TABLE_OFF + 4 * s;
                    b[o..o + 4].copy_from_slice(&first.to_le_bytes());
                }
                let n = layout::DATA_OFF + 8;
                b[n..n + 4].copy_from_slice(&first.to_le_bytes());
            }),
        ),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            tool(dir.path())
                .args(["inc", "h/a", "2"])
                .status()
                .unwrap()
                .success()
        );
        let path = week_file(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let out = tool(dir.path()).args(["inc", "h/b", "3"]).output().unwrap();
        assert!(out.status.success(), "{what}: {out:?}");
        let m = merged(dir.path());
        assert_eq!(
            m.get("h/b"),
            Some(&3),
            "{what}: counting goes on in a fresh file"
        );
        assert_eq!(
            m.get("h/a"),
            None,
            "{what}: the damaged file's counts are not trusted"
        );
        let aside = std::fs::read_dir(dir.path().join("example").join("corrupt"))
            .map(|r| r.count())
            .unwrap_or(0);
        assert_eq!(aside, 1, "{what}: the damaged file is set aside");
    }
}

#[test]
fn garbage_past_the_allocation_pointer_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        tool(dir.path())
            .args(["inc", "h/a", "2"])
            .status()
            .unwrap()
            .success()
    );
    let path = week_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let alloc = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
    for b in &mut bytes[alloc..] {
        *b = 0xff;
    }
    bytes.extend(std::iter::repeat_n(0xff, 70_000));
    std::fs::write(&path, &bytes).unwrap();
    assert!(
        tool(dir.path())
            .args(["inc", "h/b", "3"])
            .status()
            .unwrap()
            .success()
    );
    let m = merged(dir.path());
    assert_eq!((m["h/a"], m["h/b"]), (2, 3));
}

#[test]
fn invalid_names_are_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["has space", "", "a//b", "x:y:z", &"n".repeat(200)] {
        let out = tool(dir.path()).args(["inc", bad, "2"]).output().unwrap();
        assert!(out.status.success(), "{bad:?}");
    }
    let m = merged(dir.path());
    assert_eq!(m.len(), 1, "only the tool's own command counter: {m:?}");
}

#[test]
fn stack_counter_records_function_names_and_line_offsets() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        assert!(
            tool(dir.path())
                .args(["stack", "x"])
                .status()
                .unwrap()
                .success()
        );
    }
    let files = counts(dir.path());
    let stacks = &files[0].1.stacks;
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    let (name, n) = stacks.iter().next().unwrap();
    assert_eq!(*n, 3);
    let lines: Vec<&str> = name.lines().collect();
    assert_eq!(lines[0], "instrumented/stack");
    assert!(
        lines[1].starts_with("instrumented::nested_inner:+"),
        "{name}"
    );
    assert!(
        lines[2].starts_with("instrumented::nested_outer:+"),
        "{name}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("instrumented::main:")),
        "{name}"
    );
    assert!(
        !name.contains('/') || !name[lines[0].len()..].contains('/'),
        "no paths: {name}"
    );
    assert!(lines.len() <= 9, "depth 8: {name}");
}

#[test]
fn file_truncated_under_a_running_process() {
    let dir = tempfile::tempdir().unwrap();
    let child = run_child("long", dir.path(), &[]);
    let counts_dir = dir.path().join("example").join("counts");
    // Patience for a slow start on a busy machine: the loop ends as soon
    // as the file is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let file = loop {
        let found = std::fs::read_dir(&counts_dir).ok().and_then(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "count"))
        });
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "no counter file appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(300));
    // Another program cuts the file while the child is incrementing into it.
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(0);
    // Windows refuses to truncate a file while a process has it mapped;
    // unix lets it happen, and the child's fault guard takes the hit.
    assert_eq!(cut.is_err(), cfg!(windows), "{cut:?}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the host survives: {out:?}");
    // The next process sets the empty file aside and counts again.
    assert!(
        tool(dir.path())
            .args(["inc", "t/after", "2"])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(merged(dir.path())["t/after"], 2);
}

/// Child: counts before telemetry starts, then starts it.
#[test]
fn child_early() {
    if child_env().as_deref() != Some("early") {
        return;
    }
    static EARLY: clearcount::Counter = clearcount::Counter::new("early/static");
    EARLY.add(7);
    clearcount::counter::add("early/by-name", 5);
    clearcount::Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    EARLY.inc();
}

#[test]
fn counts_made_before_start_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("early", dir.path(), &[])
        .wait_with_output()
        .unwrap();
    assert!(out.status.success());
    let m = merged(dir.path());
    assert_eq!(m["early/static"], 8);
    assert_eq!(m["early/by-name"], 5);
}

/// Child: counts 3000 distinct names once each.
#[test]
fn child_many() {
    if child_env().as_deref() != Some("many") {
        return;
    }
    clearcount::Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    for i in 0..3000 {
        clearcount::counter::inc(&format!("many/name-{i:04}"));
    }
}

/// A small tmpfs, unmounted on drop.
#[cfg(target_os = "linux")]
struct SmallDisk(PathBuf);

#[cfg(target_os = "linux")]
impl SmallDisk {
    fn new(at: PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the full-disk test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at)
    }
}

#[cfg(target_os = "linux")]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

// A small tmpfs stands for the full disk: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn full_disk_loses_counts_not_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = SmallDisk::new(tmp.path().join("disk"), "192k");
    let dir = disk.0.clone();
    // A full disk before anything exists: nothing can be created.
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let out = tool(&dir).args(["inc", "full/a", "3"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(counts(&dir).is_empty());
    // Room for the first 64 KiB chunk only: the file is created, then
    // cannot grow; names past the first chunk are dropped, nothing breaks.
    std::fs::remove_file(&filler).unwrap();
    assert!(
        tool(&dir)
            .args(["inc", "full/a", "3"])
            .status()
            .unwrap()
            .success()
    );
    let mut f = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let out = run_child("many", &dir, &[]).wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let files = counts(&dir);
    assert_eq!(files.len(), 1);
    let made = files[0]
        .1
        .counters
        .keys()
        .filter(|k| k.starts_with("many/"))
        .count();
    assert!(
        made > 100 && made < 3000,
        "{made} names fit in the first chunk: {:?} {out:?}",
        files[0]
    );
    assert_eq!(files[0].1.counters["full/a"], 3);
    // Space again: the file grows and takes every name.
    std::fs::remove_file(&filler).unwrap();
    let out = run_child("many", &dir, &[]).wait_with_output().unwrap();
    assert!(out.status.success());
    let files = counts(&dir);
    let c = &files[0].1.counters;
    assert_eq!(c.keys().filter(|k| k.starts_with("many/")).count(), 3000);
    assert_eq!(c["many/name-2999"], 1);
    assert_eq!(c["many/name-0000"], 2);
}

/// Child: counts by name in a tight loop for 3.5 s, starting 2.5 s before a
/// week boundary, with the lazy-rotation delay cut to 1 s (test hook).
#[test]
fn child_lazy() {
    if child_env().as_deref() != Some("lazy") {
        return;
    }
    clearcount::Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        for _ in 0..1000 {
            clearcount::counter::inc("lazy/tick");
        }
        n += 1000;
    }
    eprintln!("TICKS={n}");
}

/// A process that did not say it is long-running still moves to the next
/// week's file: the rotation thread starts once it has lived a while.
#[cfg(feature = "test-hooks")]
#[test]
fn short_lived_by_default_long_lived_still_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("example");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::write(ns.join("week-start"), "Mon\n").unwrap();
    let out = run_child(
        "lazy",
        dir.path(),
        &[
            ("CLEARCOUNT_NOW", "2026-11-22T23:59:57.500Z"),
            ("CLEARCOUNT_TEST_LAZY_MS", "1000"),
        ],
    )
    .wait_with_output()
    .unwrap();
    assert!(out.status.success());
    let ticks = ticks(&out);
    let files = counts(dir.path());
    let weeks: Vec<String> = files.iter().map(|(_, p)| p.week_begin.clone()).collect();
    assert_eq!(weeks, ["2026-11-16", "2026-11-23"]);
    let before = files[0].1.counters["lazy/tick"];
    let after = files[1].1.counters["lazy/tick"];
    assert!(before > 0 && after > 0);
    assert_eq!(before + after, ticks);
}
