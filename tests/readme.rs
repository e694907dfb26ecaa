//! The README's toolchain, as a new user meets it: the README's marked
//! steps (a code block after `<!-- toolchain:PATH -->`), followed in the
//! README's order in a new crate. A file block is written there
//! (`Cargo.toml`'s dependency line pointing at this workspace); a `.sh`
//! block is run there by `bash` as written (only the port of `try.sh` is
//! changed), with the `clearcount` command on the `PATH`. So the program is
//! built (`build.sh`, right after `src/main.rs`) with only what the README
//! made before it: the keys and the log it compiles in.
//!
//! * The end-to-end test follows every step, then the README's "try it
//!   locally" script: a local server, a week crossed with the documented
//!   clock, the dry run, the upload, the archive. The report in the archive
//!   must be byte for byte what the dry run printed, which must equal what
//!   `clearcount --namespace mytool report --dry-run` prints for the same
//!   installation.
//! * The fresh-home walk takes the program as built by the steps up to
//!   `build.sh` and runs every command of its mounted `telemetry`
//!   subcommand and of `clearcount`, each on a fresh home (a new `HOME`,
//!   working directory and `TMPDIR`), with no variable, `MYTOOL_TELEMETRY=off`
//!   and `DO_NOT_TRACK=1`, and lists every file each wrote (shown with
//!   `--nocapture`). `off` writes its mode file and nothing else; with the
//!   variables, only `on`, `off` and `local` write, and only the mode file.
//!
//! The crate is built in `target/readme-toolchain` (kept between runs; one
//! test at a time uses it).
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The README's code blocks that follow a `<!-- toolchain:PATH -->` marker,
/// in the README's order.
fn blocks(readme: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
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
        out.push((path.to_string(), text));
    }
    out
}

/// The README's steps, checked for the order a new user needs: every file
/// the end-to-end test uses is shown, the build comes right after the
/// program, and the trial comes last.
fn steps() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let b = blocks(&readme);
    let names: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
    for f in [
        "Cargo.toml",
        "counters/mytool.toml",
        "keys.sh",
        "src/main.rs",
        "build.sh",
        "config.toml",
        "publish.sh",
        "try.sh",
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == f).count(),
            1,
            "the README shows {f} once: {names:?}"
        );
    }
    let main = names.iter().position(|n| *n == "src/main.rs").unwrap();
    assert_eq!(names[main + 1], "build.sh", "built right after: {names:?}");
    assert_eq!(names.last(), Some(&"try.sh"), "{names:?}");
    b
}

/// One test at a time builds in `target/readme-toolchain`.
static BUILD_DIR: Mutex<()> = Mutex::new(());

/// A new crate directory `dir` set up as `cargo new` would leave it, with
/// this workspace's `Cargo.lock` (the same dependency versions) and
/// `./target` leading to the kept build directory.
fn new_crate(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let build = workspace().join("target").join("readme-toolchain");
    std::fs::create_dir_all(&build).unwrap();
    std::os::unix::fs::symlink(&build, dir.join("target")).unwrap();
}

/// Follows `steps` in order in the crate `dir`, up to and including
/// `last` (every step before `try.sh` if `None`): files are written,
/// scripts run (each must succeed). `try.sh` is not run here.
fn follow(steps: &[(String, String)], dir: &Path, bin: &Path, last: Option<&str>) {
    for (name, text) in steps {
        if name == "try.sh" {
            assert!(last.is_none(), "no step {last:?} before try.sh");
            return;
        }
        if name.ends_with(".sh") {
            let mut sh = Command::new("bash");
            sh.arg("-ec").arg(text).stdin(Stdio::null());
            clean(&mut sh, dir, bin);
            let out = sh.output().unwrap();
            assert!(
                out.status.success(),
                "the README's {name} failed:\n{text}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let text = if name == "Cargo.toml" {
                let manifest = text.replace(
                    "path = \"../clearcount\"",
                    &format!("path = {:?}", workspace().display().to_string()),
                );
                assert_ne!(&manifest, text, "the dependency line is by path");
                manifest
            } else {
                text.clone()
            };
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        if Some(name.as_str()) == last {
            return;
        }
    }
    panic!("no step {last:?}");
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
    let steps = steps();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The server (killed at the end) and the detached children of the
    // runs end before the directory is removed.
    let _wait = common::WaitForProcessesIn(dir.to_path_buf());
    let _build = BUILD_DIR.lock().unwrap_or_else(|e| e.into_inner());
    new_crate(dir);
    let cli = common::cli();
    let bin = cli.parent().unwrap();
    follow(&steps, dir, bin, None);
    let try_sh = &steps.last().unwrap().1;

    let port = free_port().to_string();
    let script = try_sh.replace("8080", &port);
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

/// Every entry under `root` (directories with a trailing `/`), relative to
/// it, sorted.
fn entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                stack.push(p);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// What one run on a fresh home did: its exit status, and every entry it
/// left under the fresh `home/`, working directory `cwd/` and `tmp/`.
struct Run {
    code: Option<i32>,
    wrote: Vec<String>,
    out: String,
}

/// Runs `prog args` on a fresh home under `root` (which must not exist):
/// new, empty `HOME`, working directory and `TMPDIR`; none of clearcount's
/// variables but those in `env`.
fn on_fresh_home(root: &Path, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let (home, cwd, tmp) = (root.join("home"), root.join("cwd"), root.join("tmp"));
    for d in [&home, &cwd, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut c = Command::new(prog);
    c.args(args).stdin(Stdio::null());
    clean(&mut c, &cwd, Path::new("/nonexistent"));
    c.env("HOME", &home).env("TMPDIR", &tmp);
    for v in [
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let wrote = entries(root)
        .into_iter()
        .filter(|e| !["home/", "cwd/", "tmp/"].contains(&e.as_str()))
        .collect();
    Run {
        code: o.status.code(),
        wrote,
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

#[test]
fn a_fresh_home_through_every_command() {
    let steps = steps();
    let tmp = tempfile::tempdir().unwrap();
    let cli = common::cli();
    // The program as a new user has it once built (`build.sh`).
    let exe = {
        let _build = BUILD_DIR.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tmp.path().join("mytool");
        new_crate(&dir);
        follow(&steps, &dir, cli.parent().unwrap(), Some("build.sh"));
        let exe = tmp.path().join("mytool-as-built");
        std::fs::copy(dir.join("target/debug/mytool"), &exe).unwrap();
        exe
    };
    let telemetry = [
        &["on"][..],
        &["off"],
        &["local"],
        &["status"],
        &["status", "--json"],
        &["view"],
        &["report"],
        &["report", "--dry-run"],
        &["upload"],
        &["clean"],
    ];
    let mut commands: Vec<(&str, &Path, Vec<&str>)> = vec![
        ("mytool", &exe, vec!["--help"]),
        ("mytool", &exe, vec!["build"]),
        ("mytool", &exe, vec!["--verbose", "build", "--release"]),
        ("mytool", &exe, vec!["telemetry", "bogus"]),
    ];
    for t in telemetry {
        commands.push(("mytool", &exe, [&["telemetry"][..], t].concat()));
    }
    commands.push(("clearcount", &cli, vec!["--help"]));
    commands.push(("clearcount", &cli, vec!["status"]));
    for t in telemetry {
        commands.push((
            "clearcount",
            &cli,
            [&["--namespace", "mytool"][..], t].concat(),
        ));
    }
    commands.push(("clearcount", &cli, vec!["dump", "none.v1.count"]));
    commands.push(("clearcount", &cli, vec!["config", "check"]));

    let dir = ".config/mytool/telemetry";
    let ancestors = [
        "home/.config/",
        "home/.config/mytool/",
        "home/.config/mytool/telemetry/",
    ];
    let mode_file = format!("home/{dir}/mode");
    // Exactly the mode file (and the directories it needs).
    let mode_only = |r: &Run| {
        r.wrote
            .iter()
            .map(String::as_str)
            .eq(ancestors.iter().copied().chain([mode_file.as_str()]))
    };
    let mut n = 0;
    let mut listing = String::new();
    for env in [
        &[][..],
        &[("MYTOOL_TELEMETRY", "off")],
        &[("DO_NOT_TRACK", "1")],
    ] {
        let off_by_env = !env.is_empty();
        listing.push_str(&format!("\nfresh home, {env:?}:\n"));
        for (name, prog, args) in &commands {
            n += 1;
            let r = on_fresh_home(&tmp.path().join(format!("run{n}")), prog, args, env);
            let said = format!(
                "{name} {} with {env:?}: exit {:?}, wrote {:?}\n{}",
                args.join(" "),
                r.code,
                r.wrote,
                r.out
            );
            listing.push_str(&format!(
                "  {:<48} exit {}  {}\n",
                format!("{name} {}", args.join(" ")),
                r.code.map_or("-".into(), |c| c.to_string()),
                if r.wrote.is_empty() {
                    "wrote nothing".to_string()
                } else {
                    r.wrote
                        .iter()
                        .filter(|e| !e.ends_with('/'))
                        .map(|e| e.replacen(&format!("home/{dir}/"), "", 1))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            // Nothing is ever written outside the telemetry directory.
            assert!(
                r.wrote
                    .iter()
                    .all(|e| e.starts_with(ancestors[2]) || ancestors.contains(&e.as_str())),
                "{said}"
            );
            let last = *args.last().unwrap();
            let sets_mode = ["on", "off", "local"].contains(&last);
            if last == "off" {
                // Off writes its mode file and nothing else, counts
                // included.
                assert!(mode_only(&r), "{said}");
                let mode =
                    std::fs::read_to_string(tmp.path().join(format!("run{n}/home/{dir}/mode")))
                        .unwrap();
                assert!(mode.starts_with("off "), "{mode}");
            } else if sets_mode && (off_by_env || *name == "clearcount") {
                assert!(mode_only(&r), "{said}");
            } else if off_by_env || *name == "clearcount" {
                // Off by the environment, and `clearcount` (which counts
                // nothing of its own): nothing at all.
                assert!(r.wrote.is_empty(), "{said}");
            }
            // One exit status rule: 0 done, 1 refused or failed, 2 usage.
            let report_off = args.ends_with(&["report"]) && off_by_env;
            let want = match args.as_slice() {
                [.., "bogus"] | ["status"] => 2,
                [.., "upload"] | ["dump", _] | ["config", "check"] => 1,
                _ if report_off => 1,
                _ => 0,
            };
            assert_eq!(r.code, Some(want), "{said}");
        }
    }
    println!("what each command wrote on a fresh home (under ~/{dir}/):{listing}");
}
