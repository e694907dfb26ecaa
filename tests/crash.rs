//! The crash counter (`kit::crash`) in real processes: the example
//! toolchain dies of each kind of fault, once with telemetry on its default
//! (local) and once with `DO_NOT_TRACK=1` (nothing installed). Both deaths
//! must look the same (same signal, same exit status) and the week file of
//! the first must hold exactly one crash count, in the right bucket.

#![cfg(feature = "kit")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

fn toolchain(dir: &Path, kind: &str, off: bool) -> Output {
    let mut c = Command::new(common::example("toolchain", &["kit"]));
    c.args(["crash", "--kind", kind])
        .env("CLEARCOUNT_DIR", dir)
        .env("CI", "1") // no first-run notice
        .env_remove("MYTOOL_TELEMETRY")
        .env_remove("CLEARCOUNT_NOW");
    if off {
        c.env("DO_NOT_TRACK", "1");
    } else {
        c.env_remove("DO_NOT_TRACK");
    }
    c.output().unwrap()
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
