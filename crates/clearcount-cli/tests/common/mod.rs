//! Helpers for the `clearcount` command's integration tests: temporary
//! directories, child processes killed on drop, running the command, and
//! moto's S3 server.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod chromium;
pub mod moto;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "clearcount-cli-test-{tag}-{}-{}",
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

/// The exit status of `child` once it ends, or `None` if it is still
/// running after `limit` (left running: the caller kills it).
pub fn status_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The workspace root, where the published `config/` is.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `clearcount` binary, with nothing from the caller's environment
/// picking a namespace.
pub fn clearcount() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clearcount"));
    c.env_remove("CLEARCOUNT_NAMESPACE");
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `cmd`, which must fail with exit status 1 and one line on stderr
/// (`clearcount: …`); that line.
pub fn run_err(cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    let line = err.trim_end().to_owned();
    assert!(line.starts_with("clearcount: "), "{line}");
    line
}

/// A config published with the command, as a maintainer does it: a
/// minisign key pair (`<dir>/config.pub`, `<dir>/config.key`) and a log key
/// pair (`<dir>/log.vkey`, `<dir>/log.skey`) made on first use with
/// `config log-init` of `<dir>/log`; then `config publish` of `config` as
/// `<dir>/config.toml`, checked against the declared counters in
/// `counters` (signed, appended to the log). Returns the config's path;
/// the server finds the log beside it.
pub fn publish_config(dir: &std::path::Path, config: &str, counters: &std::path::Path) -> PathBuf {
    let p = |rel: &str| dir.join(rel);
    if !p("config.pub").exists() {
        run_ok(
            clearcount()
                .args(["config", "keygen", "--public-key"])
                .arg(p("config.pub"))
                .arg("--secret-key")
                .arg(p("config.key")),
        );
        run_ok(
            clearcount()
                .args([
                    "config",
                    "log-keygen",
                    "--name",
                    "test.clearcount.example/config-log",
                    "--vkey",
                ])
                .arg(p("log.vkey"))
                .arg("--skey")
                .arg(p("log.skey")),
        );
        run_ok(
            clearcount()
                .args(["config", "log-init", "--log"])
                .arg(p("log"))
                .arg("--vkey")
                .arg(p("log.vkey")),
        );
    }
    std::fs::write(p("config.toml"), config).unwrap();
    run_ok(
        clearcount()
            .args(["config", "publish", "--config"])
            .arg(p("config.toml"))
            .arg("--counters")
            .arg(counters)
            .arg("--secret-key")
            .arg(p("config.key"))
            .arg("--public-key")
            .arg(p("config.pub"))
            .arg("--log-key")
            .arg(p("log.skey"))
            .arg("--log")
            .arg(p("log")),
    );
    p("config.toml")
}
