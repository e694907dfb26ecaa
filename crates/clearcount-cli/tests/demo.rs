//! `clearcount demo` ends by saying what became of its files: removed (the
//! default, a directory under the temporary directory), whether it stops
//! by itself (`--exit`) or on Ctrl-C; kept with `--data DIR`.

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
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let serving = line.starts_with("demo: serving");
        said.push(line);
        if serving {
            break;
        }
    }
    assert!(
        said.last().is_some_and(|l| l.starts_with("demo: serving")),
        "{said:?}"
    );
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
