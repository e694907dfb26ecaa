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
