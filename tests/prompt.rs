//! The opt-in prompt (`kit::prompt::ask_once`) through the example toolchain
//! (`mytool build --ask`), on a real pseudo-terminal: Python's `pty` module
//! runs the tool with a terminal as its stdin, stdout and stderr, waits for
//! the question and types the answer (`tests/python/pty_run.py`).
//!
//! Each test gives the tool its own `CLEARCOUNT_DIR` and pins the clock
//! (`CLEARCOUNT_NOW`), so the day `on` is set and the months before asking
//! again are known.

#![cfg(all(feature = "kit", unix))]

mod common;

use clearcount::kit::{notice, prompt};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const QUESTION: &str = "Turn uploading on?";
const NOW: &str = "2026-11-18T10:00:00Z";

fn example() -> PathBuf {
    // Built as this test is (when a single test target is run).
    let features: &[&str] = if cfg!(feature = "web-view") {
        &["kit", "web-view"]
    } else {
        &["kit"]
    };
    common::example("toolchain", features)
}

/// Python 3, which drives the pseudo-terminal; a missing one fails the test
/// with the line that installs it.
fn python() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import pty, select"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 with its pty module is needed: `apt-get install python3` (.ci/run installs it)"
    );
    "python3"
}

/// Clears what the test's environment could leak into the tool.
fn clean_env(c: &mut Command, dir: &Path, now: &str) {
    c.env("CLEARCOUNT_DIR", dir)
        .env("CLEARCOUNT_NOW", now)
        .env_remove("DO_NOT_TRACK")
        .env_remove("MYTOOL_TELEMETRY")
        .env_remove("RUST_BACKTRACE");
    for v in notice::CI_VARS {
        c.env_remove(v);
    }
}

/// Runs `mytool ARGS` on a pseudo-terminal; `talk` is the script's
/// `--expect/--send/--eof` arguments; `env` is added.
fn on_terminal(
    dir: &Path,
    now: &str,
    env: &[(&str, &str)],
    talk: &[&str],
    args: &[&str],
) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pty_run.py");
    let mut c = Command::new(python());
    c.arg(script).args(["--timeout", "90"]).args(talk).arg("--");
    c.arg(example()).args(args);
    clean_env(&mut c, dir, now);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

/// Runs `mytool ARGS` without a terminal.
fn plain(dir: &Path, now: &str, args: &[&str]) -> Output {
    let mut c = Command::new(example());
    c.args(args).stdin(Stdio::null());
    clean_env(&mut c, dir, now);
    c.output().unwrap()
}

/// What the tool wrote to the terminal (`on_terminal`).
fn term(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn status(dir: &Path, now: &str) -> serde_json::Value {
    let out = plain(dir, now, &["telemetry", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The prompt's counters in this week's files, by bucket.
fn prompt_counts(dir: &Path, now: &str) -> BTreeMap<String, u64> {
    status(dir, now)["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("telemetry/prompt:")?.to_string(),
                v.as_u64().unwrap(),
            ))
        })
        .collect()
}

fn asked_files(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir.join("mytool"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    n.starts_with(prompt::ASKED_FILE_PREFIX)
                        .then(|| (n, std::fs::read_to_string(e.path()).unwrap()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn answer(dir: &Path, now: &str, typed: &str) -> Output {
    let out = on_terminal(
        dir,
        now,
        &[],
        &["--expect", QUESTION, "--send", typed],
        &["build", "--ask"],
    );
    let t = term(&out);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        t.contains(QUESTION) && t.contains("built"),
        "{}",
        text(&out)
    );
    out
}

fn not_asked(dir: &Path, now: &str, env: &[(&str, &str)]) -> String {
    let out = on_terminal(dir, now, env, &[], &["build", "--ask"]);
    let t = term(&out);
    assert!(out.status.success(), "{env:?}: {}", text(&out));
    assert!(!t.contains(QUESTION), "{env:?}: asked: {t}");
    assert!(t.contains("built"), "{t}");
    t
}

#[test]
fn yes_turns_uploading_on_from_today() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = answer(dir, NOW, "y\\n");
    let t = term(&out);
    assert!(t.contains("never arguments, file names"), "{t}");
    assert!(
        t.contains("is on: reports of the weeks that begin on or after 2026-11-18"),
        "{t}"
    );

    let s = status(dir, NOW);
    assert_eq!(s["mode"], "on", "{s}");
    assert_eq!(s["mode_source"], "mode file");
    assert_eq!(s["on_since"], "2026-11-18");
    let human = plain(dir, NOW, &["telemetry", "status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("mode:       on (set in the mode file"),
        "{}",
        text(&human)
    );
    assert_eq!(
        prompt_counts(dir, NOW),
        BTreeMap::from([("shown".into(), 1), ("yes".into(), 1)])
    );
    assert_eq!(
        asked_files(dir),
        [("prompt-asked-1".to_string(), "2026-11-18 yes\n".to_string())]
    );
    // The user chose: never asked again, even months later.
    not_asked(dir, NOW, &[]);
    assert_eq!(prompt_counts(dir, NOW)["shown"], 1);
    not_asked(dir, "2027-08-01T10:00:00Z", &[]);
    assert_eq!(asked_files(dir).len(), 1);
}

#[test]
fn no_turns_telemetry_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t = term(&answer(dir, NOW, "n\\n"));
    assert!(t.contains("Telemetry for mytool is off"), "{t}");
    let s = status(dir, NOW);
    assert_eq!(s["mode"], "off", "{s}");
    assert_eq!(s["mode_source"], "mode file");
    // Counted before the mode changed, in the local file only.
    assert_eq!(
        prompt_counts(dir, NOW),
        BTreeMap::from([("no".into(), 1), ("shown".into(), 1)])
    );
    let files_before = common_files(dir);
    not_asked(dir, NOW, &[]);
    assert_eq!(common_files(dir), files_before, "off: nothing more written");
}

#[test]
fn not_now_changes_nothing_and_asks_again_after_the_months() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t = term(&answer(dir, NOW, "\\n"));
    assert!(t.contains("Nothing changed"), "{t}");
    let s = status(dir, NOW);
    assert_eq!(s["mode"], "local", "{s}");
    assert_eq!(s["mode_source"], "default");
    assert!(!dir.join("mytool/mode").exists(), "no mode file");
    assert_eq!(
        prompt_counts(dir, NOW),
        BTreeMap::from([("shown".into(), 1), ("unanswered".into(), 1)])
    );
    // Not again the same day, nor a day before the months are up.
    not_asked(dir, NOW, &[]);
    not_asked(dir, "2027-05-17T10:00:00Z", &[]);
    assert_eq!(asked_files(dir).len(), 1);
    // Then once more; end of input (Ctrl-D) is no answer either.
    let later = "2027-05-18T10:00:00Z";
    let out = on_terminal(
        dir,
        later,
        &[],
        &["--expect", QUESTION, "--eof"],
        &["build", "--ask"],
    );
    let t = term(&out);
    assert!(
        out.status.success() && t.contains(QUESTION),
        "{}",
        text(&out)
    );
    assert_eq!(status(dir, later)["mode"], "local");
    assert_eq!(
        asked_files(dir),
        [
            (
                "prompt-asked-1".to_string(),
                "2026-11-18 unanswered\n".to_string()
            ),
            (
                "prompt-asked-2".to_string(),
                "2027-05-18 unanswered\n".to_string()
            ),
        ]
    );
    assert_eq!(
        prompt_counts(dir, later),
        BTreeMap::from([("shown".into(), 1), ("unanswered".into(), 1)]),
        "the new week's file"
    );
}

#[test]
fn never_on_ci_when_chosen_or_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // CI (the same detection as the notice), a mode from the environment.
    for env in [
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
        ("BUILDKITE", "1"),
        ("MYTOOL_TELEMETRY", "local"),
        ("MYTOOL_TELEMETRY", "on"),
    ] {
        not_asked(dir, NOW, &[env]);
        assert!(asked_files(dir).is_empty(), "{env:?}");
    }
    // DO_NOT_TRACK and MYTOOL_TELEMETRY=off: nothing asked, nothing written.
    let off = tempfile::tempdir().unwrap();
    for env in [("DO_NOT_TRACK", "1"), ("MYTOOL_TELEMETRY", "off")] {
        not_asked(off.path(), NOW, &[env]);
        assert!(
            common_files(off.path()).is_empty(),
            "{env:?} wrote something"
        );
    }
    // No terminal.
    let out = plain(dir, NOW, &["build", "--ask"]);
    assert!(
        out.status.success() && !text(&out).contains(QUESTION),
        "{}",
        text(&out)
    );
    assert!(asked_files(dir).is_empty());
    // A mode the user set with the command.
    let out = plain(dir, NOW, &["telemetry", "local"]);
    assert!(out.status.success());
    not_asked(dir, NOW, &[]);
    assert!(asked_files(dir).is_empty());
    // CI=false is not CI: asked.
    let fresh = tempfile::tempdir().unwrap();
    let out = on_terminal(
        fresh.path(),
        NOW,
        &[("CI", "false")],
        &["--expect", QUESTION, "--send", "\\n"],
        &["build", "--ask"],
    );
    assert!(term(&out).contains(QUESTION), "{}", text(&out));
}

#[test]
fn many_processes_at_once_ask_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                on_terminal(
                    &dir,
                    NOW,
                    &[],
                    &["--expect", QUESTION, "--send", "\\n"],
                    &["build", "--ask"],
                )
            })
        })
        .collect();
    let asked = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|o| term(o).contains(QUESTION))
        .count();
    assert_eq!(asked, 1, "exactly one of the processes asks");
    assert_eq!(asked_files(&dir).len(), 1);
}

/// Every file under `dir`, recursively, with its bytes.
fn common_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}
