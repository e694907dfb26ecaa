//! The integration kit through the example toolchain (`examples/toolchain.rs`,
//! `mytool`) as a real process: the panic counter, flag counting, the
//! mounted `telemetry` subcommand, the first-run notice and histograms.
//!
//! Each test gives the tool its own `CLEARCOUNT_DIR` (a temporary
//! directory). Runs that need a terminal go through `script(1)` (a
//! pseudo-terminal, Debian's `bsdutils`); without it those tests fail with
//! the line that installs it.

#![cfg(feature = "kit")]

mod common;

use clearcount::kit::histogram::{Histogram, Unit};
use clearcount::kit::notice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SECRET: &str = "s3cr3t-value-xyz";

fn example() -> PathBuf {
    // Built as this test is (when a single test target is run).
    let features: &[&str] = if cfg!(feature = "web-view") {
        &["kit", "web-view"]
    } else {
        &["kit"]
    };
    common::example("toolchain", features)
}

/// The tool with its own directory and no inherited telemetry or CI
/// settings.
fn tool(dir: &Path) -> Command {
    let mut c = Command::new(example());
    c.env("CLEARCOUNT_DIR", dir)
        .env_remove("DO_NOT_TRACK")
        .env_remove("MYTOOL_TELEMETRY")
        .env_remove("CLEARCOUNT_UPLOAD_URL")
        .env_remove("CLEARCOUNT_CONFIG_URL")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    for v in notice::CI_VARS {
        c.env_remove(v);
    }
    c
}

fn run(dir: &Path, args: &[&str]) -> Output {
    tool(dir).args(args).output().unwrap()
}

fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "mytool {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Plain and stack counters of every counter file, merged.
fn counts(dir: &Path) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut plain = BTreeMap::new();
    let mut stacks = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir.join("mytool").join("counts")) else {
        return (plain, stacks);
    };
    for e in rd {
        let p = e.unwrap().path();
        let parsed = clearcount::dump(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        for (k, v) in parsed.counters {
            *plain.entry(k).or_default() += v;
        }
        for (k, v) in parsed.stacks {
            *stacks.entry(k).or_default() += v;
        }
    }
    (plain, stacks)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Fails if `needle` occurs in any file under `dir` (or in a file name).
fn assert_nowhere(dir: &Path, needle: &str) {
    let all = files(dir);
    assert!(!all.is_empty(), "no files under {}", dir.display());
    for f in all {
        assert!(
            !f.to_string_lossy().contains(needle),
            "{needle:?} in the file name {}",
            f.display()
        );
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} found in {}",
            f.display()
        );
    }
}

#[test]
fn panic_leaves_only_the_stack_counter() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let secret = "panic-secret-q7z9";
    let out = run(dir, &["crash", "--name", secret]);
    assert_eq!(out.status.code(), Some(101), "a panic exits with 101");
    // The previous hook (the default one) still ran and printed the message.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(secret), "message not printed: {stderr}");

    let (plain, stacks) = counts(dir);
    assert_eq!(stacks.len(), 1, "exactly one stack counter: {stacks:?}");
    let (name, n) = stacks.iter().next().unwrap();
    assert_eq!(*n, 1);
    let mut lines = name.lines();
    assert_eq!(lines.next(), Some("crash/panic"));
    let first = lines.next().unwrap();
    assert!(
        first.starts_with("toolchain::crash_here"),
        "first frame is the panicking function: {name:?}"
    );
    assert!(
        name.lines()
            .any(|l| l.starts_with("toolchain::crash_outer")),
        "{name:?}"
    );
    for l in name.lines().skip(1) {
        assert!(!l.contains('/') && !l.contains(".rs"), "a path in {l:?}");
        assert!(!l.starts_with("std::panicking") && !l.starts_with("core::panicking"));
    }
    // The run's own plain counters are there, and nothing else of the panic.
    assert_eq!(plain.get("mytool/command:crash"), Some(&1));
    assert_eq!(plain.get("mytool/flag:name"), Some(&1));
    assert_nowhere(dir, secret);
    assert_nowhere(dir, "mytool crashed while handling");
    assert_nowhere(dir, "toolchain.rs");

    // The same panic again: the same stack, counted twice.
    run(dir, &["crash", "--name", "other-secret-8k2"]);
    let (_, stacks) = counts(dir);
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(stacks.values().next(), Some(&2));
    assert_nowhere(dir, "other-secret-8k2");
}

#[test]
fn panic_counts_nothing_when_off() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tool(tmp.path())
        .env("MYTOOL_TELEMETRY", "off")
        .args(["crash"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    assert!(files(tmp.path()).is_empty(), "off writes nothing");
}

#[test]
fn flags_are_counted_never_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_ok(
        dir,
        &[
            "--verbose",
            "build",
            "--release",
            "--name",
            SECRET,
            "-j",
            "3",
            "--work-ms",
            "1",
        ],
    );
    // Defaults are not counted: --jobs and --work-ms are not given here.
    run_ok(dir, &["build", &format!("--name={SECRET}")]);
    // Plain arguments against an allow-list.
    run_ok(
        dir,
        &[
            "legacy",
            "--release",
            &format!("--color={SECRET}"),
            SECRET,
            "-j",
            "5",
        ],
    );
    let (plain, stacks) = counts(dir);
    assert!(stacks.is_empty());
    let want: BTreeMap<String, u64> = [
        ("mytool/command:build", 2),
        ("mytool/command:legacy", 1),
        ("mytool/flag:verbose", 1),
        ("mytool/flag:release", 2),
        ("mytool/flag:name", 2),
        ("mytool/flag:jobs", 1),
        ("mytool/flag:work-ms", 1),
        ("mytool/flag:j", 1),
        ("mytool/flag:other", 1),
        ("mytool/build-time:<10ms", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(plain, want);
    assert_nowhere(dir, SECRET);
}

#[test]
fn mounted_subcommand_turns_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_ok(dir, &["build"]);
    let out = run_ok(dir, &["telemetry", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "local");
    assert_eq!(v["namespace"], "mytool");
    assert_eq!(v["counters"]["mytool/command:build"], 1);

    let out = run_ok(dir, &["telemetry", "off"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("set to off"));
    let out = run_ok(dir, &["telemetry", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "off");
    assert_eq!(v["mode_source"], "mode file");

    // Off: a run counts nothing more.
    let before = counts(dir);
    run_ok(dir, &["build", "--release"]);
    assert_eq!(counts(dir), before);

    // The other commands behave as the clearcount binary's.
    run_ok(dir, &["telemetry", "local"]);
    run_ok(dir, &["telemetry", "view"]);
    // This toolchain was built without upload settings: a dry run says
    // nothing would be sent, and why, in one line.
    let out = run_ok(dir, &["telemetry", "report", "--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing would be sent"), "{err}");
    assert!(out.stdout.is_empty());
    let out = run_ok(dir, &["telemetry", "clean"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("the mode is kept"));
    assert!(!dir.join("mytool").join("counts").exists());
    let out = run_ok(dir, &["telemetry", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "local");
    let out = run(dir, &["telemetry", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn off_from_the_start_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for env in [("MYTOOL_TELEMETRY", "off"), ("DO_NOT_TRACK", "1")] {
        let out = tool(tmp.path())
            .env(env.0, env.1)
            .args(["build", "--name", SECRET])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(files(tmp.path()).is_empty(), "{env:?} wrote something");
    }
}

/// Runs the tool on a pseudo-terminal through `script(1)`; fails with the
/// line that installs `script` if it is not there.
fn on_terminal(dir: &Path, env: &[(&str, &str)], args: &str) -> Output {
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_script,
        "these tests need script(1) for a pseudo-terminal: apt-get install bsdutils"
    );
    let cmdline = format!("'{}' {args}", example().display());
    let mut s = Command::new("script");
    s.args(["-qec", &cmdline, "/dev/null"])
        .env("CLEARCOUNT_DIR", dir)
        .stdin(Stdio::null());
    for v in notice::CI_VARS {
        s.env_remove(v);
    }
    for v in ["DO_NOT_TRACK", "MYTOOL_TELEMETRY", "RUST_BACKTRACE"] {
        s.env_remove(v);
    }
    for (k, v) in env {
        s.env(k, v);
    }
    s.output().unwrap()
}

const NOTICE_MARK: &str = "This notice is shown once";

#[test]
fn notice_is_shown_once_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Not a terminal: never shown, never recorded.
    let out = run_ok(dir, &["build"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(NOTICE_MARK));
    assert!(!dir.join("mytool").join(notice::NOTICE_FILE).exists());

    let first = on_terminal(dir, &[], "build");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{text}");
    assert!(
        text.contains(NOTICE_MARK),
        "first run on a terminal: {text}"
    );
    assert!(text.contains("mytool telemetry off"));
    assert!(text.contains("MYTOOL_TELEMETRY=off"));
    assert!(dir.join("mytool").join(notice::NOTICE_FILE).exists());
    let second = on_terminal(dir, &[], "build");
    assert!(second.status.success());
    let text = String::from_utf8_lossy(&second.stdout);
    assert!(!text.contains(NOTICE_MARK), "second run: {text}");
    assert!(text.contains("built"));
}

#[test]
fn notice_many_processes_at_once_print_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || on_terminal(&dir, &[], "build"))
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let shown = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains(NOTICE_MARK))
        .count();
    assert_eq!(shown, 1, "exactly one of the processes prints the notice");
}

#[test]
fn notice_never_on_ci_or_when_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for env in [
        ("CI", "1"),
        ("GITHUB_ACTIONS", "true"),
        ("JENKINS_URL", "http://ci"),
    ] {
        let out = on_terminal(dir, &[env], "build");
        assert!(out.status.success());
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(NOTICE_MARK),
            "{env:?}"
        );
        assert!(!dir.join("mytool").join(notice::NOTICE_FILE).exists());
    }
    let off = tempfile::tempdir().unwrap();
    let out = on_terminal(off.path(), &[("MYTOOL_TELEMETRY", "off")], "build");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(NOTICE_MARK));
    assert!(files(off.path()).is_empty(), "off writes nothing");
    // CI=false is not CI.
    let out = on_terminal(dir, &[("CI", "false")], "build");
    assert!(String::from_utf8_lossy(&out.stdout).contains(NOTICE_MARK));
}

#[test]
fn histogram_buckets_through_the_tool() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_ok(dir, &["build"]);
    run_ok(dir, &["build", "--work-ms", "30"]);
    run_ok(dir, &["build", "--work-ms", "150"]);
    run_ok(dir, &["build", "--work-ms", "1100"]);
    let (plain, _) = counts(dir);
    let h: BTreeMap<&str, u64> = plain
        .iter()
        .filter(|(k, _)| k.starts_with("mytool/build-time:"))
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(h.values().sum::<u64>(), 4, "one count per run: {h:?}");
    assert_eq!(h.get("mytool/build-time:<10ms"), Some(&1), "{h:?}");
    assert_eq!(h.get("mytool/build-time:>=1s"), Some(&1), "{h:?}");
    // Sleeps can overrun; the middle two land at or above their floor.
    assert!(h.keys().all(|k| {
        [
            "mytool/build-time:<10ms",
            "mytool/build-time:<100ms",
            "mytool/build-time:<1s",
            "mytool/build-time:>=1s",
        ]
        .contains(k)
    }));
}

#[test]
fn histogram_names_and_edges() {
    static T: Histogram = Histogram::durations_ms("mytool/build-time", &[10, 100, 1000]);
    assert_eq!(T.declaration(), "mytool/build-time:{<10ms,<100ms,<1s,>=1s}");
    assert!(T.check().is_ok());
    for (v, b) in [
        (0, "<10ms"),
        (9, "<10ms"),
        (10, "<100ms"),
        (99, "<100ms"),
        (100, "<1s"),
        (999, "<1s"),
        (1000, ">=1s"),
        (u64::MAX, ">=1s"),
    ] {
        assert_eq!(
            T.bucket(v).unwrap(),
            format!("mytool/build-time:{b}"),
            "{v}"
        );
    }
    for n in T.bucket_names() {
        clearcount_protocol::name::check(&n).unwrap();
    }
    // The declaration expands to exactly the bucket names.
    assert_eq!(
        clearcount_protocol::name::expand(&T.declaration()).unwrap(),
        T.bucket_names()
    );
    let sizes = Histogram::new(
        "mytool/size",
        &[512, 4096, 1 << 20, 10_000_000],
        Unit::Bytes,
    );
    assert_eq!(
        sizes.declaration(),
        "mytool/size:{<512B,<4KiB,<1MiB,<10MB,>=10MB}"
    );
    let us = Histogram::durations_us("mytool/lookup", &[50, 1000, 2_000_000]);
    assert_eq!(us.declaration(), "mytool/lookup:{<50us,<1ms,<2s,>=2s}");
    // Bad histograms count nothing and never panic.
    for bad in [
        Histogram::durations_ms("mytool/t", &[]),
        Histogram::durations_ms("mytool/t", &[5, 5]),
        Histogram::durations_ms("mytool/t", &[9, 3]),
        Histogram::durations_ms("mytool/t:x", &[1]),
        Histogram::durations_ms("my tool", &[1]),
        Histogram::durations_ms("mytool/t", &[1; 40]),
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
        bad.record(3);
        bad.record_duration(std::time::Duration::MAX);
        assert_eq!(bad.bucket(3), None);
    }
}

#[test]
fn flag_matching_in_process() {
    use clap::{Arg, ArgAction, Command as Cmd};
    let cmd = Cmd::new("mytool")
        .arg(
            Arg::new("verbose")
                .long("verbose")
                .short('v')
                .global(true)
                .action(ArgAction::SetTrue),
        )
        .arg(Arg::new("q").short('q').action(ArgAction::SetTrue))
        .arg(Arg::new("weird").long("wéird").action(ArgAction::SetTrue))
        .subcommand(
            Cmd::new("build")
                .arg(
                    Arg::new("target")
                        .long("target")
                        .env("MYTOOL_TARGET_TEST_UNSET"),
                )
                .arg(Arg::new("file"))
                .subcommand(Cmd::new("all")),
        )
        .allow_external_subcommands(true);
    let m = cmd
        .clone()
        .try_get_matches_from([
            "mytool", "-q", "--wéird", "build", "-v", "--target", SECRET, "x", "all", "-v",
        ])
        .unwrap();
    let got = clearcount::kit::flags::count_matches("mytool", &cmd, &m);
    assert_eq!(
        got,
        [
            "mytool/command:build.all",
            "mytool/flag:other",
            "mytool/flag:q",
            "mytool/flag:target",
            "mytool/flag:verbose"
        ]
    );
    // An external subcommand's name is the user's text: `other`.
    let m = cmd
        .clone()
        .try_get_matches_from(["mytool", &format!("{SECRET}-cmd"), SECRET])
        .unwrap();
    let got = clearcount::kit::flags::count_matches("mytool", &cmd, &m);
    assert_eq!(got, ["mytool/command:other"]);

    let got = clearcount::kit::flags::count_args(
        "mytool",
        [
            "-vq",
            "-ofile",
            "-5",
            "-",
            "--jobs=8",
            "--jobs",
            "--",
            "--release",
        ],
        &["v", "q", "--jobs", "release"],
    );
    assert_eq!(
        got,
        [
            "mytool/flag:jobs",
            "mytool/flag:other",
            "mytool/flag:q",
            "mytool/flag:v"
        ]
    );
    let got = clearcount::kit::flags::count_args("mytool", [SECRET, "plain"], &["x"]);
    assert!(got.is_empty());
}

/// Every counter the tool counts is declared in the counters file its docs
/// give (`config/counters/mytool.toml`), so none is lost to the config.
#[test]
fn every_counted_name_is_declared() {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/toolchain.rs"),
    )
    .unwrap();
    let mut declared = std::collections::BTreeSet::new();
    for line in src.lines() {
        if let Some(pat) = line
            .strip_prefix("//! name = \"")
            .and_then(|l| l.strip_suffix('"'))
        {
            declared.extend(clearcount_protocol::name::expand(pat).unwrap());
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_ok(
        dir,
        &[
            "-v",
            "build",
            "--release",
            "-j",
            "2",
            "--name",
            "n",
            "--work-ms",
            "1",
        ],
    );
    run_ok(dir, &["legacy", "--verbose", "-j", "--what"]);
    run(dir, &["crash"]);
    run_ok(dir, &["telemetry", "status", "--json"]);
    run_ok(dir, &["telemetry", "view"]);
    run(dir, &["telemetry", "report", "--dry-run", "--timeout", "1"]);
    let (plain, stacks) = counts(dir);
    for name in plain.keys() {
        assert!(declared.contains(name), "{name:?} is not declared");
    }
    for name in stacks.keys() {
        assert!(
            declared.contains(clearcount_protocol::name::stack_counter(name)),
            "{name:?}"
        );
    }
}

/// The mounted `mytool telemetry view --web`: with the feature `web-view`
/// the toolchain serves the local pages itself (their URL on one line, a
/// page behind it); without it, it says which command serves them.
#[test]
fn mounted_view_web() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_ok(dir, &["build", "--release"]);
    #[cfg(feature = "web-view")]
    {
        use std::io::{BufRead, Read, Write};
        let child = tool(dir)
            .args(["telemetry", "view", "--web", "--idle-timeout", "120"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = common::KillOnDrop(child);
        let mut url = String::new();
        std::io::BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        let (host, path) = url
            .trim()
            .strip_prefix("http://")
            .and_then(|u| u.split_once('/'))
            .unwrap_or_else(|| panic!("not a URL: {url:?}"));
        assert!(host.starts_with("127.0.0.1:"), "{url}");
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("mytool: this week")
                && answer.contains(r#"<code>mytool/flag:release</code></td><td class="n">1</td>"#),
            "{answer}"
        );
    }
    #[cfg(not(feature = "web-view"))]
    {
        // An example left from a build with `web-view` would serve the
        // pages for 30 minutes: stop it and say so.
        let child = tool(dir)
            .args(["telemetry", "view", "--web"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = common::output_within(child, std::time::Duration::from_secs(60))
            .unwrap_or_else(|| {
                panic!(
                    "`mytool telemetry view --web` is serving: the example was built with the feature web-view; rebuild it with `cargo build --example toolchain --features kit`"
                )
            });
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("run `clearcount --namespace mytool view --web`"),
            "{err}"
        );
    }
}
