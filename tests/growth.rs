//! Many processes adding new counters to one week file at once, the way a
//! parallel build does: the file grows several times while other processes
//! open it and readers (`clearcount::dump`, `clearcount status`) read it in
//! a loop. Every count must be exact, every read must succeed, and nothing
//! may be set aside as corrupt.
//!
//! Children are this test binary re-run (`child_*`, active only when
//! `GROWTH_CHILD` is set) and the example tool.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Writer processes.
const WRITERS: usize = 8;
/// Distinct names each writer adds of its own.
const OWN: usize = 400;
/// Names every writer adds (so writers race to link the same name).
const COMMON: usize = 100;

fn own_name(writer: usize, j: usize) -> String {
    // Long names make the file grow past several chunks.
    format!("growth/p{writer}/name-{j:04}-padding-padding-padding")
}

fn common_name(j: usize) -> String {
    format!("growth/common/name-{j:04}")
}

/// How many times a writer counts its own name `j`.
fn times(j: usize) -> u64 {
    (j % 7 + 1) as u64
}

/// Child: adds its own and the common names, interleaved.
#[test]
fn child_writer() {
    let Ok(id) = std::env::var("GROWTH_CHILD") else {
        return;
    };
    let id: usize = id.parse().unwrap();
    clearcount::Telemetry::new("example", "instrumented", env!("CARGO_PKG_VERSION")).start();
    static SHARED: clearcount::Counter = clearcount::Counter::new("growth/shared");
    for j in 0..OWN {
        clearcount::counter::add(&own_name(id, j), times(j));
        if j < COMMON {
            // Start from a different place in each writer.
            clearcount::counter::inc(&common_name((j + id * 13) % COMMON));
        }
        SHARED.inc();
        // Spread the growth over a second or two, so that openers and
        // readers overlap every stage of it.
        std::thread::sleep(Duration::from_millis(3));
    }
}

fn writer(dir: &Path, id: usize) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env("GROWTH_CHILD", id.to_string())
        .env("CLEARCOUNT_DIR", dir)
        .env_remove("CLEARCOUNT_NOW")
        .env_remove("DO_NOT_TRACK")
        .env_remove("EXAMPLE_TELEMETRY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn tool(dir: &Path) -> Command {
    let mut c = Command::new(common::example("instrumented", &[]));
    c.env("CLEARCOUNT_DIR", dir)
        .env_remove("DO_NOT_TRACK")
        .env_remove("EXAMPLE_TELEMETRY")
        .env_remove("CLEARCOUNT_NOW")
        .stdout(Stdio::null());
    c
}

fn count_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join("example").join("counts")) else {
        return Vec::new();
    };
    rd.map(|e| e.unwrap().path()).collect()
}

#[test]
fn parallel_growth_with_openers_and_readers_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // The file exists first, small, so that every writer grows it.
    assert!(tool(&d).arg("hello").status().unwrap().success());
    let files = count_files(&d);
    assert_eq!(files.len(), 1);
    let file = files[0].clone();
    let initial = std::fs::metadata(&file).unwrap().len();

    let cli = common::cli();
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let hellos = AtomicU64::new(1);
    let status_runs = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Readers: the library's reader in a tight loop; counts never go
        // backwards between two reads.
        s.spawn(|| {
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let p = clearcount::dump(&file)
                    .unwrap_or_else(|e| panic!("a live file was read as damaged: {e}"));
                for (k, v) in &p.counters {
                    let before = last.get(k).copied().unwrap_or(0);
                    assert!(*v >= before, "{k} went from {before} to {v}");
                }
                last = p.counters;
                reads.fetch_add(1, Ordering::Relaxed);
            }
        });
        // `clearcount status --json`, as a user would run it meanwhile.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let out = Command::new(&cli)
                    .args(["--namespace", "example", "status", "--json"])
                    .env("CLEARCOUNT_DIR", &d)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                for f in v["files"].as_array().unwrap() {
                    assert_eq!(f["ok"], true, "status refused a live file: {f}");
                }
                status_runs.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // Openers: short commands starting on the growing file.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                assert!(tool(&d).arg("hello").status().unwrap().success());
                hellos.fetch_add(1, Ordering::Relaxed);
            }
        });
        let children: Vec<_> = (0..WRITERS).map(|i| writer(&d, i)).collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stop.store(true, Ordering::Relaxed);
    });

    assert!(
        !d.join("example").join("corrupt").exists(),
        "a healthy file was set aside: {:?}",
        std::fs::read_dir(d.join("example").join("corrupt"))
            .map(|r| r.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
    );
    assert_eq!(
        count_files(&d),
        std::slice::from_ref(&file),
        "still one file"
    );
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(
        len >= initial + 3 * 65536, // three chunks (file-format.md §2)
        "the file grew several times: {initial} -> {len}"
    );
    // At rest now: the strict reader must agree.
    let p = clearcount::dump(&file).unwrap();
    for w in 0..WRITERS {
        for j in 0..OWN {
            assert_eq!(p.counters.get(&own_name(w, j)), Some(&times(j)), "{w}/{j}");
        }
    }
    for j in 0..COMMON {
        assert_eq!(
            p.counters.get(&common_name(j)),
            Some(&(WRITERS as u64)),
            "{j}"
        );
    }
    assert_eq!(p.counters["growth/shared"], (WRITERS * OWN) as u64);
    assert_eq!(
        p.counters["instrumented/command:hello"],
        hellos.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 10, "the reader kept up");
    eprintln!(
        "{} reads, {} status runs, {} hellos, file {initial} -> {len} bytes",
        reads.load(Ordering::Relaxed),
        status_runs.load(Ordering::Relaxed),
        hellos.load(Ordering::Relaxed)
    );
}
