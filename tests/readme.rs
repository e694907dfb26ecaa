//! The README's toolchain, as a new user meets it: a new crate made only of
//! the files the README shows (`Cargo.toml` with its dependency line,
//! `counters/mytool.toml`, `config.toml`, `src/main.rs`), depending on this
//! crate by path, then the README's "try it locally" steps run as written
//! by `bash` (only the port is changed): a local server, a week crossed
//! with the documented clock, the dry run, the upload, the archive. The
//! report in the archive must be byte for byte what the dry run printed,
//! which must equal what `clearcount --namespace mytool report --dry-run`
//! prints for the same installation.
//!
//! The crate is built in `target/readme-toolchain` (kept between runs).
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The README's code blocks that follow a `<!-- toolchain:PATH -->` marker.
fn blocks(readme: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        let Some(path) = l
            .strip_prefix("<!-- toolchain:")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().expect("a code block after the marker");
        assert!(fence.starts_with("```"), "{path}: {fence}");
        let mut text = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        out.insert(path.to_string(), text);
    }
    out
}

/// Kills a process by id when dropped (the server the script started).
struct KillPid(Option<u32>);

impl Drop for KillPid {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The reports among a command's output lines.
fn reports(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| l.starts_with("{\"week\""))
        .map(str::to_string)
        .collect()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment of a new user's shell: none of clearcount's variables.
fn clean(c: &mut Command, dir: &Path, bin: &Path) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    c.current_dir(dir)
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("CARGO_TERM_COLOR", "never")
        .env_remove("CARGO_TARGET_DIR");
    for v in [
        "CLEARCOUNT_DIR",
        "CLEARCOUNT_NOW",
        "CLEARCOUNT_TEST_X",
        "CLEARCOUNT_NAMESPACE",
        "DO_NOT_TRACK",
        "MYTOOL_TELEMETRY",
        "MYTOOL_TELEMETRY_URL",
        "RUSTFLAGS",
    ] {
        c.env_remove(v);
    }
}

#[test]
fn the_readme_toolchain_reports_end_to_end() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let b = blocks(&readme);
    for f in [
        "Cargo.toml",
        "counters/mytool.toml",
        "config.toml",
        "src/main.rs",
        "try.sh",
    ] {
        assert!(b.contains_key(f), "the README shows {f}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let manifest = b["Cargo.toml"].replace(
        "path = \"../clearcount\"",
        &format!("path = {:?}", workspace().display().to_string()),
    );
    assert_ne!(manifest, b["Cargo.toml"], "the dependency line is by path");
    for (name, text) in [
        ("Cargo.toml", manifest.as_str()),
        ("counters/mytool.toml", &b["counters/mytool.toml"]),
        ("config.toml", &b["config.toml"]),
        ("src/main.rs", &b["src/main.rs"]),
    ] {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // Same dependency versions as this workspace; the build directory is
    // kept between runs (`./target` leads there).
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let build = workspace().join("target").join("readme-toolchain");
    std::fs::create_dir_all(&build).unwrap();
    std::os::unix::fs::symlink(&build, dir.join("target")).unwrap();

    let cli = common::cli();
    let bin = cli.parent().unwrap();
    let port = free_port().to_string();
    let script = b["try.sh"].replace("8080", &port);
    // Output to files, not pipes: the server the script starts in the
    // background keeps its output open after the script ends.
    let (out_path, err_path) = (dir.join("script.out"), dir.join("script.err"));
    let mut sh = Command::new("bash");
    sh.arg("-c")
        .arg(format!("{script}\necho SERVER_PID=$!"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    clean(&mut sh, dir, bin);
    sh.status().unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let _server = KillPid(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("SERVER_PID="))
            .and_then(|p| p.trim().parse().ok()),
    );
    let said = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let exe = dir.join("target/debug/mytool");
    assert!(exe.exists(), "the crate built: {said}");
    assert!(
        stdout.contains("mode for mytool set to on"),
        "telemetry on: {said}"
    );
    // The dry run's reports (two if the week `on` was set in began that
    // very day: it counted `telemetry on`), printed before the merge's.
    let before_merge = stdout.split("clearcount merge:").next().unwrap_or("");
    let dry: Vec<String> = reports(before_merge.as_bytes());
    let sent = dry
        .iter()
        .find(|l| l.contains("mytool/command:build"))
        .unwrap_or_else(|| panic!("the dry run printed the build's report: {said}"));
    let r: serde_json::Value = serde_json::from_str(sent).unwrap();
    assert_eq!(r["x"], 0.01);
    let counters = &r["programs"][0]["counters"];
    assert_eq!(counters["mytool/command:build"], 1, "{sent}");
    assert_eq!(counters["mytool/flag:release"], 1, "{sent}");
    assert_eq!(
        r["programs"][0]["counters"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("mytool/build-time:"))
            .count(),
        1,
        "{sent}"
    );

    // The archive holds the same bytes (merge again until the detached
    // upload has landed, if the README's pause was too short here).
    let archive = dir.join("data").join("archive");
    let t0 = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_dir(&archive)
            .map(|rd| {
                rd.flatten()
                    .flat_map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .lines()
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .unwrap_or_default();
        if dry.iter().all(|d| lines.contains(d)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the archive lacks a line equal to the dry run's {dry:?}: {lines:?}\n{said}"
        );
        std::thread::sleep(Duration::from_millis(500));
        let mut m = Command::new(&cli);
        m.args(["merge", "--data", "./data"]);
        clean(&mut m, dir, bin);
        assert!(m.output().unwrap().status.success());
    }

    // A second installation counts the same way, in mode local (nothing
    // leaves it); at the week's end the mounted dry run and clearcount's
    // print the same bytes, and among them the report above. (Which other
    // weeks the first installation's dry run still showed depends on when
    // its earlier detached uploads ended.)
    let run = |exe: &Path, now: &str, args: &[&str]| -> Output {
        let mut c = Command::new(exe);
        c.args(args);
        clean(&mut c, dir, bin);
        c.env("CLEARCOUNT_DIR", dir.join("second"))
            .env("CLEARCOUNT_TEST_X", "0.01")
            .env("CLEARCOUNT_NOW", now);
        c.env("MYTOOL_TELEMETRY", "local");
        let o = c.output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        o
    };
    // The same weekday (drawn at random per installation, spec: `week-start`).
    let second = dir.join("second").join("mytool");
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(dir.join("try/mytool/week-start"), second.join("week-start")).unwrap();
    run(&exe, "2026-12-01T12:00:00Z", &["telemetry", "on"]);
    run(&exe, "2026-12-10T12:00:00Z", &["build", "--release"]);
    let mounted = run(
        &exe,
        "2026-12-18T12:00:00Z",
        &["telemetry", "report", "--dry-run"],
    );
    let theirs = run(
        &cli,
        "2026-12-18T12:00:00Z",
        &["--namespace", "mytool", "report", "--dry-run"],
    );
    assert_eq!(
        reports(&mounted.stdout),
        reports(&theirs.stdout),
        "{mounted:?}\n{theirs:?}"
    );
    assert!(reports(&theirs.stdout).contains(sent), "{theirs:?}");
}
