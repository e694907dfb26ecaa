//! Helpers shared by the integration tests (and, through `#[path]`, the
//! benchmarks): temporary directories, child processes killed on drop, the
//! example programs, and the `clearcount` command.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "clearcount-test-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example program `name`, next to this test (or bench) binary, built
/// with `features` and the same profile if it is not there yet. (`cargo
/// test` builds every example first, so this only builds when a single
/// test target is run.)
pub fn example(name: &str, features: &[&str]) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let exe = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !exe.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", name]);
        if !features.is_empty() {
            cmd.args(["--features", &features.join(",")]);
        }
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "building example {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    exe
}

/// The `clearcount` command (package `clearcount-cli`), built with the same
/// profile if it is not there yet (`cargo test --workspace` builds it
/// first).
pub fn cli() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let exe = dir.join(format!("clearcount{}", std::env::consts::EXE_SUFFIX));
    if !exe.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "clearcount-cli"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "building clearcount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    exe
}

/// The counter files in `dir` (a namespace's `counts/`), sorted. A file
/// being created is written under a temporary name (`.NAME.RANDOM.tmp`)
/// and renamed into place, so a listing taken while another process
/// creates one can show that name, gone a moment later: it is not a
/// counter file yet, and readers (as the engine's own) skip it.
pub fn counter_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".v1.count"))
        })
        .collect();
    v.sort();
    v
}

/// The output of `child` once it exited, or `None` (and it is killed) if
/// it is still running after `limit`.
pub fn output_within(mut child: Child, limit: std::time::Duration) -> Option<std::process::Output> {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

/// Waits (up to two minutes) until no other process works in `dir`: none
/// has its working directory there, and none has `CLEARCOUNT_DIR` set to a
/// path there. A run of a program leaves detached children (the uploader's,
/// the crash stack's namer) and a killed server finishes its last writes;
/// removed before they end, `dir` would be made again by them and left
/// behind in the temporary folder. Reads `/proc`; where there is none, it
/// returns at once. Not a check: after two minutes it returns anyway.
pub fn wait_for_processes_in(dir: &Path) {
    let me = std::process::id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let key = b"CLEARCOUNT_DIR=";
    let inside = |p: &[u8]| {
        Path::new(std::ffi::OsStr::new(std::str::from_utf8(p).unwrap_or(""))).starts_with(dir)
    };
    loop {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        let busy = rd.filter_map(Result::ok).any(|e| {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                return false;
            };
            if pid == me {
                return false;
            }
            let cwd = std::fs::read_link(e.path().join("cwd"));
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            cwd.is_ok_and(|c| c.starts_with(dir))
                || env
                    .split(|&b| b == 0)
                    .any(|kv| kv.strip_prefix(&key[..]).is_some_and(inside))
        });
        if !busy || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Calls [`wait_for_processes_in`] when dropped: declare it after the
/// temporary directory it names (so it is dropped before it) and before
/// any process guard (so it is dropped after those are killed).
pub struct WaitForProcessesIn(pub PathBuf);

impl Drop for WaitForProcessesIn {
    fn drop(&mut self) {
        wait_for_processes_in(&self.0);
    }
}
