//! `clearcount demo` ends by saying what became of its files: removed (the
//! default, a directory under the temporary directory), whether it stops
//! by itself (`--exit`) or on Ctrl-C, while serving or while it simulates;
//! kept with `--data DIR`.

mod common;

use common::{TempDir, clearcount, text};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn demo(tmp: &Path) -> Command {
    let mut c = clearcount();
    c.args(["demo", "--installations", "2", "--min-reports", "1"])
        .env("TMPDIR", tmp)
        .env_remove("DO_NOT_TRACK");
    c
}

/// The directory named by the last line, `demo: stopped; removed DIR (…)`.
fn removed(out: &Output) -> PathBuf {
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let dir = last
        .strip_prefix("demo: stopped; removed ")
        .and_then(|r| r.split(" (").next())
        .unwrap_or_else(|| panic!("the demo says what it removed: {stdout}"));
    PathBuf::from(dir)
}

/// The demo's lines up to the first that starts with `prefix`, which
/// must come.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    prefix: &str,
) -> Vec<String> {
    let mut said = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let found = line.starts_with(prefix);
        said.push(line);
        if found {
            return said;
        }
    }
    panic!("the demo never said {prefix:?}: {said:?}");
}

#[test]
fn the_demo_says_what_it_removed_when_it_stops() {
    // Stopping by itself.
    let tmp = TempDir::new("demo-exit");
    let out = demo(&tmp.0).arg("--exit").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let dir = removed(&out);
    assert!(dir.starts_with(&tmp.0), "{}", dir.display());
    assert!(!dir.exists(), "{} is gone", dir.display());
    assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 0);

    // Stopped with Ctrl-C while serving.
    let tmp = TempDir::new("demo-int");
    let mut child = demo(&tmp.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = read_until(&mut lines, "demo: serving");
    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    said.extend(lines.map(Result::unwrap));
    let status = child.wait().unwrap();
    let out = Output {
        status,
        stdout: said.join("\n").into_bytes(),
        stderr: Vec::new(),
    };
    let dir = removed(&out);
    assert!(!dir.exists(), "{} is gone", dir.display());
    assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 0);

    // Kept with --data.
    let tmp = TempDir::new("demo-keep");
    let data = tmp.0.join("kept");
    let out = demo(&tmp.0)
        .arg("--exit")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().last(),
        Some(format!("demo: stopped; its files are kept in {}", data.display()).as_str()),
        "{stdout}"
    );
    assert!(data.join("server").is_dir());
}

/// A Ctrl-C in the terminal while the installations are simulated reaches
/// the demo and the tool it is running (the terminal's process group): the
/// demo stops at once, says so and removes its files, with `--exit` or
/// without, and leaves nothing behind (the upload a killed run had started
/// included).
#[cfg(unix)]
#[test]
fn a_ctrl_c_during_the_simulation_stops_the_demo_and_removes_its_files() {
    use std::os::unix::process::CommandExt;
    use std::time::Duration;
    for exit in [false, true] {
        let tmp = TempDir::new("demo-sim-int");
        let mut c = clearcount();
        c.args(["demo", "--installations", "60", "--min-reports", "1"])
            .env("TMPDIR", &tmp.0)
            .env_remove("DO_NOT_TRACK");
        if exit {
            c.arg("--exit");
        }
        let mut child = c
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pgid = child.id();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut said = read_until(&mut lines, "demo: simulating");
        // Let some runs of the tool be under way.
        std::thread::sleep(Duration::from_millis(1500));
        let kill = Command::new("kill")
            .args(["-INT", "--", &format!("-{pgid}")])
            .status()
            .expect("kill runs (apt-get install procps)");
        assert!(kill.success());
        said.extend(lines.map(Result::unwrap));
        let Some(status) = common::status_within(&mut child, Duration::from_secs(120)) else {
            let _ = child.kill();
            panic!("exit {exit}: the demo still runs 120 s after Ctrl-C: {said:?}");
        };
        let stderr = stderr.join().unwrap();
        assert_eq!(status.code(), Some(1), "exit {exit}: {said:?} {stderr}");
        // (The server's own lines come first.)
        assert_eq!(
            stderr.lines().last(),
            Some("clearcount: demo interrupted before its archive was built"),
            "exit {exit}: {stderr}"
        );
        assert!(
            !said.iter().any(|l| l.starts_with("demo: archive holds")),
            "exit {exit}: {said:?}"
        );
        let out = Output {
            status,
            stdout: said.join("\n").into_bytes(),
            stderr: Vec::new(),
        };
        let dir = removed(&out);
        assert!(dir.starts_with(&tmp.0), "{}", dir.display());
        assert!(!dir.exists(), "exit {exit}: {} is gone", dir.display());
        let left: Vec<_> = std::fs::read_dir(&tmp.0).unwrap().collect();
        assert!(left.is_empty(), "exit {exit}: {left:?}");
    }
}
