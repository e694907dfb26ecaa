//! The crash counter (`kit::crash`) in real processes: the example
//! toolchain dies of each kind of fault, once with telemetry on its default
//! (local) and once with `DO_NOT_TRACK=1` (nothing installed). Both deaths
//! must look the same (same signal, same exit status) and the week file of
//! the first must hold exactly one crash count, in the right bucket. Where
//! crash stacks are kept (Linux on x86-64), the next run has the crash's
//! stack named (by a detached child): exactly once, with the function that
//! crashed first.

#![cfg(feature = "kit")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn toolchain(dir: &Path, kind: &str, off: bool) -> Output {
    run(dir, &["crash", "--kind", kind], off)
}

/// The example toolchain with `args`, on `dir`.
fn run(dir: &Path, args: &[&str], off: bool) -> Output {
    let mut c = Command::new(common::example("toolchain", &["kit"]));
    c.args(args)
        .env("CLEARCOUNT_DIR", dir)
        .env("CI", "1") // no first-run notice
        .env_remove("MYTOOL_TELEMETRY")
        .env_remove("CLEARCOUNT_NOW");
    if off {
        c.env("DO_NOT_TRACK", "1");
    } else {
        c.env_remove("DO_NOT_TRACK");
    }
    // A crash handler that never lets the process die is the worst a
    // crash counter can do: it must fail the test, not stall it.
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    common::output_within(c.spawn().unwrap(), Duration::from_secs(180)).unwrap_or_else(|| {
        panic!(
            "`toolchain {}` still ran after 180 s: it hung instead of dying",
            args.join(" ")
        )
    })
}

/// The `crash/…` counts in every week file under `dir`.
fn crash_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir.join("mytool").join("counts")) else {
        return m;
    };
    for e in rd {
        let p = clearcount::dump(&e.unwrap().path()).unwrap();
        for (k, v) in p.counters.into_iter().chain(p.stacks) {
            if k.starts_with("crash/") && v > 0 {
                *m.entry(k).or_default() += v;
            }
        }
    }
    m
}

/// Each kind, the bucket it must land in.
#[cfg(unix)]
const KINDS: &[(&str, &str)] = &[
    ("segv", "crash/signal:SIGSEGV"),
    ("bus", "crash/signal:SIGBUS"),
    ("ill", "crash/signal:SIGILL"),
    ("fpe", "crash/signal:SIGFPE"),
    ("abort", "crash/signal:SIGABRT"),
    // Rust reports the overflow and aborts: the SIGSEGV is what counts.
    ("overflow", "crash/signal:SIGSEGV"),
];

/// Windows has no SIGBUS of this kind, and Rust's `abort` there is a fast
/// fail that no handler sees. (A stack overflow is counted there too, but
/// Wine, where CI runs these, ends such a process with status 0 instead of
/// Windows' 0xC00000FD, so the comparison would prove nothing.)
#[cfg(windows)]
const KINDS: &[(&str, &str)] = &[
    ("segv", "crash/signal:SIGSEGV"),
    ("ill", "crash/signal:SIGILL"),
    ("fpe", "crash/signal:SIGFPE"),
];

#[test]
fn each_fatal_signal_is_counted_once_and_the_process_dies_as_before() {
    for (kind, bucket) in KINDS {
        let on = tempfile::tempdir().unwrap();
        let off = tempfile::tempdir().unwrap();
        let with = toolchain(on.path(), kind, false);
        let without = toolchain(off.path(), kind, true);
        assert!(!without.status.success(), "{kind}: {without:?}");
        assert_eq!(with.status, without.status, "{kind}: dies the same way");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert!(with.status.signal().is_some(), "{kind}: {with:?}");
        }
        let counts = crash_counts(on.path());
        assert_eq!(
            counts,
            BTreeMap::from([(bucket.to_string(), 1)]),
            "{kind}: {}",
            String::from_utf8_lossy(&with.stderr)
        );
        // Off: nothing was installed and nothing written.
        assert!(crash_counts(off.path()).is_empty());
        assert!(!off.path().join("mytool").exists(), "{kind}: off wrote");
    }
}

/// Rust's stack-overflow report still shows, through the crash handler.
#[test]
fn the_stack_overflow_report_still_shows() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolchain(dir.path(), "overflow", false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has overflowed its stack"), "{err}");
}

/// A panic that unwinds is the panic counter's, not a signal.
#[test]
fn a_panic_is_not_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let out = toolchain(dir.path(), "panic", false);
    assert_eq!(out.status.code(), Some(101));
    let counts = crash_counts(dir.path());
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(counts.keys().all(|k| k.starts_with("crash/panic\n")));
}

/// Whether this build keeps crash stacks: Linux on x86-64, unless the
/// portable fallbacks are forced (then, as on every other platform, a
/// crash counts its signal only).
#[cfg(unix)]
const KEEPS_STACKS: bool = cfg!(all(
    target_os = "linux",
    target_arch = "x86_64",
    any(target_env = "gnu", target_env = "musl"),
    not(clearcount_fallbacks)
));

/// The records of crash stacks waiting under `dir`.
#[cfg(unix)]
fn records(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join("mytool").join("crashes")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// `crash_records` of `clearcount --namespace mytool status --json`.
#[cfg(unix)]
fn crash_records_in_status(dir: &Path) -> u64 {
    let out = Command::new(common::cli())
        .args(["--namespace", "mytool", "status", "--json"])
        .env("CLEARCOUNT_DIR", dir)
        .env_remove("MYTOOL_TELEMETRY")
        .env_remove("DO_NOT_TRACK")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["crash_records"].as_u64().unwrap()
}

/// The crash stacks counted under `dir`: each stack's frames, and its count.
#[cfg(unix)]
fn crash_stacks(dir: &Path) -> Vec<(Vec<String>, u64)> {
    crash_counts(dir)
        .into_iter()
        .filter_map(|(k, v)| {
            let mut lines = k.lines();
            (lines.next() == Some("crash/signal-stack"))
                .then(|| (lines.map(str::to_owned).collect(), v))
        })
        .collect()
}

/// Each kind and the frame of the function that crashed. Only frames of
/// `core` may come before it: in a debug build `write_volatile` and
/// `black_box` are functions of their own, and a stack overflow may fault
/// in either `recurse` or the `black_box` it calls.
#[cfg(unix)]
const STACK_FRAMES: &[(&str, &str)] = &[
    ("segv", "toolchain::die_of:"),
    ("bus", "toolchain::bus_error:"),
    ("ill", "toolchain::illegal_instruction:"),
    ("fpe", "toolchain::divide_by_zero:"),
    ("abort", "toolchain::die_of:"),
    ("overflow", "toolchain::recurse:"),
];

/// The crash's stack is kept by the handler and named by the next run, in
/// its week file, exactly once: function names and line offsets, the
/// crashing function first (the C library's and Rust's abort machinery
/// left out; only `core`'s helpers may come before it), then its callers
/// down to `main`. Where stacks are not kept, nothing is written for them
/// and nothing is counted.
#[cfg(unix)]
#[test]
fn the_next_run_names_the_crash_stack_once() {
    for (kind, frame) in STACK_FRAMES {
        let dir = tempfile::tempdir().unwrap();
        let out = toolchain(dir.path(), kind, false);
        assert!(!out.status.success(), "{kind}: {out:?}");
        let left = records(dir.path());
        if !KEEPS_STACKS {
            assert!(left.is_empty(), "{kind}: {left:?}");
            assert!(run(dir.path(), &["build"], false).status.success());
            assert!(crash_stacks(dir.path()).is_empty(), "{kind}");
            continue;
        }
        assert_eq!(left.len(), 1, "{kind}: {left:?}");
        let name = left[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".stack"), "{kind}: {name}");
        // Nothing is named before the next run; `status` says it waits.
        assert!(crash_stacks(dir.path()).is_empty(), "{kind}");
        assert_eq!(crash_records_in_status(dir.path()), 1, "{kind}");
        assert!(run(dir.path(), &["build"], false).status.success());
        // Named by a detached child of that run: wait for it.
        wait_for(kind, || records(dir.path()).is_empty());
        let stacks = crash_stacks(dir.path());
        assert_eq!(stacks.len(), 1, "{kind}: {stacks:?}");
        let (frames, n) = &stacks[0];
        assert_eq!(*n, 1, "{kind}");
        let Some(at) = frames.iter().position(|f| f.starts_with(frame)) else {
            panic!("{kind}: {frame} not in {frames:#?}");
        };
        assert!(
            frames[..at].iter().all(|f| f.starts_with("core::")),
            "{kind}: only frames of core may come before {frame}: {frames:#?}"
        );
        if *kind != "overflow" {
            assert!(
                frames.iter().any(|f| f.starts_with("toolchain::main:")),
                "{kind}: {frames:#?}"
            );
        }
        // Function names and line offsets only: no path, no value.
        for f in frames {
            assert!(!f.contains('/') && !f.contains(' '), "{kind}: {f}");
        }
        assert!(records(dir.path()).is_empty(), "{kind}: the record stays");
        assert_eq!(crash_records_in_status(dir.path()), 0, "{kind}");
        assert!(!dir.path().join("mytool").join("crashes").exists());
        // A third run counts nothing more.
        assert!(run(dir.path(), &["build"], false).status.success());
        assert_eq!(crash_stacks(dir.path()), stacks, "{kind}: counted twice");
    }
}

/// Of runs that start at once after a crash, exactly one names its stack.
#[cfg(unix)]
#[test]
fn runs_that_start_at_once_name_a_crash_stack_once() {
    if !KEEPS_STACKS {
        return check_no_records_where_stacks_are_not_kept();
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(!toolchain(dir.path(), "segv", false).status.success());
    assert_eq!(records(dir.path()).len(), 1);
    let bin = common::example("toolchain", &["kit"]);
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(&bin)
                .arg("build")
                .env("CLEARCOUNT_DIR", dir.path())
                .env("CI", "1")
                .env_remove("MYTOOL_TELEMETRY")
                .env_remove("DO_NOT_TRACK")
                .env_remove("CLEARCOUNT_NOW")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // Once no record is left (neither waiting nor claimed), no child can
    // count it again.
    wait_for("segv", || records(dir.path()).is_empty());
    let stacks = crash_stacks(dir.path());
    let total: u64 = stacks.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1, "{stacks:#?}");
    assert!(records(dir.path()).is_empty());
}

/// Waits until `done` holds: what a detached namer child does, it does
/// after the run that started it has ended. (Not a timing check: a
/// minute is far more than the work needs.)
#[cfg(unix)]
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "{what}: not done after a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where stacks are not kept, a crash writes no record.
#[cfg(unix)]
fn check_no_records_where_stacks_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!toolchain(dir.path(), "segv", false).status.success());
    assert!(records(dir.path()).is_empty());
}

/// A broken record is deleted and counts nothing; another build's record
/// is left for that build; the program runs as usual either way.
#[cfg(unix)]
#[test]
fn broken_and_foreign_records_are_handled() {
    if !KEEPS_STACKS {
        return check_no_records_where_stacks_are_not_kept();
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(!toolchain(dir.path(), "segv", false).status.success());
    let rec = records(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&rec).unwrap();
    let name = rec.file_name().unwrap().to_string_lossy().into_owned();
    let crashes = rec.parent().unwrap().to_path_buf();
    // Ours, cut short; ours, with a bad magic; another build's, whole.
    std::fs::write(&rec, &bytes[..bytes.len() / 2]).unwrap();
    let mut bad = bytes.clone();
    bad[0] ^= 0xff;
    let bad_path = crashes.join(name.replace(".stack", "1.stack"));
    std::fs::write(&bad_path, &bad).unwrap();
    let foreign = crashes.join(format!(
        "0123456789abcdef-{}",
        name.split('-').nth(1).unwrap()
    ));
    std::fs::write(&foreign, &bytes).unwrap();
    let out = run(dir.path(), &["build"], false);
    assert!(out.status.success(), "{out:?}");
    wait_for("broken records", || {
        records(dir.path()) == vec![foreign.clone()]
    });
    assert!(crash_stacks(dir.path()).is_empty());
    // `telemetry clean` removes what is left.
    let out = run(dir.path(), &["telemetry", "clean"], false);
    assert!(out.status.success(), "{out:?}");
    assert!(!crashes.exists());
}
