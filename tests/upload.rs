//! Weekly reports and the uploader, end to end over loopback HTTP.
//!
//! Run with `cargo test --features kit,test-hooks --test upload`: the
//! `test-hooks` feature lets `CLEARCOUNT_TEST_X` pin X in the binaries under
//! test (nothing else changes). Without it this file compiles to nothing.
//!
//! The test binary doubles as an instrumented host with upload settings: the
//! tests `host_process` and `clearcount_upload_child` do nothing unless an
//! environment variable asks; the uploader's detached child re-runs this
//! executable with the argument `clearcount_upload_child`, which libtest
//! takes as a filter selecting exactly that test, whose first call is
//! `Telemetry::start` — as in a real `main`.
#![cfg(all(feature = "kit", feature = "test-hooks"))]

mod common;

use clearcount_protocol::report::Report;
use clearcount_protocol::tlog::bundle::parse_proof_query;
use clearcount_protocol::tlog::checkpoint::SignedCheckpoint;
use clearcount_protocol::tlog::client::{ClientPolicy, verify_config};
use clearcount_protocol::tlog::log::Log;
use clearcount_protocol::tlog::note::{KeyType, SignerKey};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WEEK: &str = "2026-11-02"; // a Monday; week-start is Monday in every test
const IN_WEEK: &str = "2026-11-04T10:00:00Z";
const NEXT_WEEK: &str = "2026-11-10T10:00:00Z";

// ------------------------------------------------------------ HTTP server

#[derive(Clone, Copy, PartialEq, Debug)]
enum Answer {
    Ok,
    Status(u16),
    Garbage,
    Hang,
}

#[derive(Default)]
struct Seen {
    gets: Vec<String>,
    posts: Vec<Vec<u8>>,
    /// While set, a POST is received but not answered.
    held: bool,
}

/// How long a test waits for what must happen (a child to finish, a
/// line) before it fails: far longer than it takes.
const PATIENCE: Duration = Duration::from_secs(60);

struct Server {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

/// The config log's key of this test process: the fake servers sign their
/// checkpoints with it, the hosts get its policy (`HOST_CONFIG_LOG`).
fn log_key() -> &'static SignerKey {
    static KEY: std::sync::OnceLock<SignerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SignerKey::generate("test.example/config-log", KeyType::Ed25519).unwrap())
}

/// The config log's policy a host compiles in: the log key alone.
fn log_policy() -> String {
    format!("log {}\nquorum none\n", log_key().verifier())
}

/// A log whose only entry is `config`, and its signed checkpoint (none if
/// the config is not valid: then its proof is not found).
fn one_entry_log(config: &[u8]) -> Option<(Log, SignedCheckpoint)> {
    let mut log = Log::new("test.example/config-log");
    log.append(config.to_vec()).ok()?;
    let signed = log.sign_checkpoint(log_key()).ok()?;
    Some((log, signed))
}

impl Server {
    /// Serves `config.toml` (and `config.toml.minisig` if given, and the
    /// proof from a config log that holds the config), and answers POST
    /// /upload as told. Each connection is handled in its own thread.
    fn start(config: Vec<u8>, sig: Option<Vec<u8>>, answer: Answer) -> Server {
        let log = one_entry_log(&config);
        Server::start_with_log(config, sig, log, answer)
    }

    /// [`Server::start`], with the config log it proves from (`None`: the
    /// proof is not found).
    fn start_with_log(
        config: Vec<u8>,
        sig: Option<Vec<u8>>,
        log: Option<(Log, SignedCheckpoint)>,
        answer: Answer,
    ) -> Server {
        let log = Arc::new(log);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { continue };
                let (seen, config, sig) = (s2.clone(), config.clone(), sig.clone());
                let log = log.clone();
                std::thread::spawn(move || {
                    serve(conn, &seen, &config, sig.as_deref(), &log, answer)
                });
            }
        });
        Server { base, seen }
    }
    fn config_url(&self) -> String {
        format!("{}/config/config.toml", self.base)
    }
    fn upload_url(&self) -> String {
        format!("{}/upload", self.base)
    }
    fn posts(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().posts.clone()
    }
    fn gets(&self) -> usize {
        self.seen.lock().unwrap().gets.len()
    }
    /// From now on, uploads are received but not answered until
    /// [`Server::release`].
    fn hold(&self) {
        self.seen.lock().unwrap().held = true;
    }
    fn release(&self) {
        self.seen.lock().unwrap().held = false;
    }
}

fn serve(
    mut conn: TcpStream,
    seen: &Mutex<Seen>,
    config: &[u8],
    sig: Option<&[u8]>,
    log: &Option<(Log, SignedCheckpoint)>,
    answer: Answer,
) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (status, out): (u16, Vec<u8>) = if method == "GET" {
            seen.lock().unwrap().gets.push(path.clone());
            if let Some((_, query)) = path.split_once(".proof") {
                let olds = parse_proof_query(query.trim_start_matches('?'));
                match (log, olds) {
                    (Some((log, signed)), Some(olds)) => match log.bundle(signed, &olds) {
                        Ok(b) => (200, b.to_text().into_bytes()),
                        Err(e) => (400, e.to_string().into_bytes()),
                    },
                    _ => (404, b"not found".to_vec()),
                }
            } else {
                match (path.ends_with(".minisig"), sig) {
                    (false, _) => (200, config.to_vec()),
                    (true, Some(s)) => (200, s.to_vec()),
                    (true, None) => (404, b"not found".to_vec()),
                }
            }
        } else {
            seen.lock().unwrap().posts.push(body);
            while seen.lock().unwrap().held {
                std::thread::sleep(Duration::from_millis(10));
            }
            match answer {
                Answer::Ok => (200, b"{\"ok\":true}".to_vec()),
                Answer::Status(s) => (s, b"report rejected: unknown counter".to_vec()),
                Answer::Garbage => {
                    let _ = conn.write_all(b"\x00\x01garbage not http\r\n\r\n");
                    return;
                }
                Answer::Hang => {
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
            }
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
            out.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(&out).is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------ keys, configs

struct Key {
    public: String,
    secret: String,
    _dir: tempfile::TempDir,
}

fn key() -> Key {
    let d = tempfile::tempdir().unwrap();
    let public =
        clearcount_protocol::sign::keygen(d.path().join("k.pub"), d.path().join("k.key")).unwrap();
    let secret = std::fs::read_to_string(d.path().join("k.key")).unwrap();
    Key {
        public,
        secret,
        _dir: d,
    }
}

fn config_text(version: u64) -> String {
    format!(
        "version = {version}\nsample_rate = 0.1\n[[program]]\nname = \"instrumented\"\nversions = [\"*\"]\n\
         [[program.counter]]\nname = \"instrumented/a\"\nrate = 0.1\n\
         [[program.counter]]\nname = \"instrumented/command:inc\"\nrate = 0.1\n\
         [[program.counter]]\nname = \"instrumented/rare\"\nrate = 0.005\n"
    )
}

fn signed(k: &Key, text: &str) -> (Vec<u8>, Vec<u8>) {
    let sig = clearcount_protocol::sign::sign_bytes(&k.secret, text.as_bytes()).unwrap();
    (text.as_bytes().to_vec(), sig.into_bytes())
}

/// The `clearcount` command.
fn cli() -> String {
    common::cli().display().to_string()
}

/// The example tool, built with the test hook that pins X.
fn example() -> String {
    common::example("instrumented", &["kit", "test-hooks"])
        .display()
        .to_string()
}

// ------------------------------------------------------------ installations

struct Inst {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    /// More environment for the host (the toolchain's compiled-in
    /// settings: `HOST_CONFIG_LOG_MINIMUM`, `HOST_MAX_AGE_S`, ...).
    host_env: Vec<(String, String)>,
}

impl Inst {
    /// A fresh installation: namespace `example`, weeks start on Monday,
    /// mode `on` since 2026-11-01.
    fn new() -> Inst {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let dir = base.join("example");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("week-start"), "Mon\n").unwrap();
        std::fs::write(dir.join("mode"), "on 2026-11-01\n").unwrap();
        Inst {
            _tmp: tmp,
            base,
            host_env: Vec::new(),
        }
    }
    /// This installation's toolchain compiled in more settings.
    fn with_host_env(mut self, env: &[(&str, &str)]) -> Inst {
        self.host_env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
    fn dir(&self) -> PathBuf {
        self.base.join("example")
    }
    fn cmd(&self, exe: &str, now: &str) -> Command {
        let mut c = Command::new(exe);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CLEARCOUNT_DIR", &self.base)
            .env("CLEARCOUNT_NOW", now)
            .env("CLEARCOUNT_TEST_X", "0.01");
        c
    }
    /// Counts in the week of 2026-11-02 with the example tool, then has the
    /// example tool (built with the test hook, so X is pinned to 0.01) make
    /// that week's report the next Monday, as any start of a day does.
    fn count(&self) {
        self.count_only();
        self.build_report("0.01");
    }
    /// Counts in the week of 2026-11-02 with the example tool.
    fn count_only(&self) {
        for (name, n) in [
            ("instrumented/a", "5"),
            ("instrumented/undeclared", "2"),
            ("instrumented/rare", "1"),
        ] {
            let o = self
                .cmd(&example(), IN_WEEK)
                .args(["inc", name, n])
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
        }
    }
    /// The example tool starts on 2026-11-09: its start takes the day's
    /// token and its background child makes the finished week's report
    /// (with X = `x`); it has no upload settings, so nothing is sent.
    fn build_report(&self, x: &str) {
        let o = self
            .cmd(&example(), "2026-11-09T10:00:00Z")
            .env("CLEARCOUNT_TEST_X", x)
            .arg("hello")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        assert!(self.wait_done("2026-11-09", PATIENCE));
        assert!(
            self.dir()
                .join(format!("reports/{WEEK}.full.json"))
                .exists()
        );
    }
    fn cli(&self, now: &str, args: &[&str]) -> Output {
        self.cmd(&cli(), now)
            .arg("--namespace")
            .arg("example")
            .args(args)
            .output()
            .unwrap()
    }
    /// Runs the host once on an earlier day, as the toolchain runs every
    /// day: it records its upload settings, which the user's `clearcount`
    /// commands then use. (In mode `local` for that run: the report of the
    /// week, made "later" by the test, must not be sent by it.)
    fn settle(&self, s: &Server, k: &Key) {
        let out = self
            .host_with(
                s,
                k,
                "2026-11-03T09:00:00Z",
                false,
                &[("EXAMPLE_TELEMETRY", "local")],
            )
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(self.dir().join("upload-settings.json").exists());
    }
    /// `clearcount upload`, in the foreground, after the toolchain ran.
    fn upload(&self, s: &Server, k: &Key) -> Output {
        self.settle(s, k);
        self.cli(NEXT_WEEK, &["upload"])
    }
    /// Starts this test binary as an instrumented host with upload settings.
    fn host(&self, s: &Server, k: &Key, now: &str, thread: bool) -> std::process::Child {
        self.host_with(s, k, now, thread, &[])
    }
    fn host_with(
        &self,
        s: &Server,
        k: &Key,
        now: &str,
        thread: bool,
        env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut c = self.cmd(&std::env::current_exe().unwrap().display().to_string(), now);
        c.args(["--exact", "host_process", "--nocapture", "--test-threads=1"])
            .env("HOST_PROCESS", "1")
            .env("HOST_UPLOAD_URL", s.upload_url())
            .env("HOST_CONFIG_URL", s.config_url())
            .env("HOST_PUBLIC_KEY", &k.public)
            .env("HOST_CONFIG_LOG", log_policy())
            .envs(self.host_env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if thread {
            c.env("HOST_THREAD", "1");
        }
        c.envs(env.iter().copied());
        c.spawn().unwrap()
    }
    fn sent_copy(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir().join("upload").join(format!("{WEEK}.json"))).ok()
    }
    fn state(&self) -> serde_json::Value {
        std::fs::read(self.dir().join("upload/state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    }
    fn status_text(&self) -> String {
        String::from_utf8_lossy(&self.cli(NEXT_WEEK, &["status"]).stdout).to_string()
    }
    /// Waits until today's token says done.
    fn wait_done(&self, day: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.day_done(day) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
    /// Whether the day's token says done.
    fn day_done(&self, day: &str) -> bool {
        ["", ".1", ".2"].iter().any(|k| {
            let p = self
                .dir()
                .join("upload")
                .join(format!("day-{day}.token{k}"));
            std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("done"))
        })
    }
}

fn host_telemetry() -> clearcount::Telemetry {
    use clearcount::upload::UploadSettings;
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let s = UploadSettings::new(
        &env("HOST_UPLOAD_URL"),
        &env("HOST_CONFIG_URL"),
        &env("HOST_PUBLIC_KEY"),
        &env("HOST_CONFIG_LOG"),
    );
    // Tests that hold an upload on purpose give it longer (HOST_TIMEOUT_S),
    // and the child the same 13 s more for the rest of its work.
    let total = env("HOST_TIMEOUT_S").parse().unwrap_or(2);
    let mut s = s
        .with_timeouts(Duration::from_secs(1), Duration::from_secs(total))
        .with_child_limit(Duration::from_secs(13 + total));
    if std::env::var_os("HOST_THREAD").is_some() {
        s = s.in_thread();
    }
    if let Ok(min) = std::env::var("HOST_CONFIG_LOG_MINIMUM") {
        s = s.with_minimum_checkpoint(&min);
    }
    if let Some(age) = std::env::var("HOST_MAX_AGE_S")
        .ok()
        .and_then(|a| a.parse().ok())
    {
        s = s.with_max_cosignature_age(Duration::from_secs(age));
    }
    clearcount::Telemetry::new("example", "host", "1.0").upload(s)
}

/// The instrumented host (does nothing unless `HOST_PROCESS` is set).
#[test]
fn host_process() {
    if std::env::var_os("HOST_PROCESS").is_none() {
        return;
    }
    let t0 = Instant::now();
    let started = host_telemetry().start();
    if std::env::var("HOST_COMMAND").as_deref() == Ok("dry-run") {
        // The toolchain's mounted `telemetry report --dry-run`.
        use clearcount::kit::subcommand::{TelemetryCommand, run};
        run("example", TelemetryCommand::Report { dry_run: true }).unwrap();
        return;
    }
    println!(
        "start took {} us mode {}",
        t0.elapsed().as_micros(),
        started.mode
    );
    // A long-running host: stay up (at most HOST_WAIT_MS) until `upload/`
    // holds a sent copy, so a thread-mode upload can finish.
    if let Some(ms) = std::env::var("HOST_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let t = Instant::now();
        let up = started.dir.unwrap().join("upload");
        while t.elapsed() < Duration::from_millis(ms) && !up.join(format!("{WEEK}.json")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The upload child's `main` (only when the uploader runs this binary).
#[test]
fn clearcount_upload_child() {
    if std::env::var_os("CLEARCOUNT_UPLOAD_CHILD").is_none() {
        return;
    }
    host_telemetry().start();
    unreachable!("the upload child exits in Telemetry::start");
}

/// The output of `child` once it exited, or `None` (and it is killed) if
/// it is still running after [`PATIENCE`].
fn exited(child: std::process::Child) -> Option<Output> {
    common::output_within(child, PATIENCE)
}

// ------------------------------------------------------------ tests

#[test]
fn end_to_end_background_upload() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    let inst = Inst::new();
    inst.count();
    // The exact bytes a dry run promises, with the settings the toolchain
    // recorded...
    inst.settle(&srv, &k);
    let dry = inst.cli(NEXT_WEEK, &["report", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    // ...the same bytes the toolchain's own mounted subcommand prints (run
    // on another day, in mode local for that run, so that its start sends
    // nothing)...
    let mounted = inst
        .host_with(
            &srv,
            &k,
            "2026-11-11T09:00:00Z",
            false,
            &[("HOST_COMMAND", "dry-run"), ("EXAMPLE_TELEMETRY", "local")],
        )
        .wait_with_output()
        .unwrap();
    assert!(mounted.status.success(), "{mounted:?}");
    // (The test harness adds its own lines around the host's output.)
    let reports = |out: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(out)
            .split_inclusive('\n')
            .filter_map(|l| l.find("{\"week\"").map(|i| l[i..].to_string()))
            .collect()
    };
    assert_eq!(
        reports(&mounted.stdout),
        reports(&dry.stdout),
        "the mounted dry run prints what clearcount's does"
    );
    assert_eq!(reports(&dry.stdout).concat().len(), dry.stdout.len());
    assert!(!dry.stdout.is_empty());
    assert!(srv.posts().is_empty(), "a dry run sends nothing");
    // ...are the bytes the background upload sends. The server holds the
    // upload until the host has exited: the host's start does not wait
    // for it (a host that did would not exit while it is held).
    srv.hold();
    let t0 = Instant::now();
    let host = inst.host_with(&srv, &k, NEXT_WEEK, false, &[("HOST_TIMEOUT_S", "120")]);
    let out = exited(host).expect("the host waited for its upload");
    let host_wall = t0.elapsed();
    assert!(out.status.success());
    assert!(
        inst.sent_copy().is_none() && !inst.day_done("2026-11-10"),
        "the upload finished before the host exited: {out:?}"
    );
    srv.release();
    assert!(inst.wait_done("2026-11-10", PATIENCE), "child finished");
    let posts = srv.posts();
    assert_eq!(posts.len(), 1);
    let copy = inst.sent_copy().expect("copy in upload/");
    assert_eq!(
        posts[0], copy,
        "received body equals the copy kept in upload/"
    );
    assert_eq!(
        dry.stdout,
        [copy.clone(), b"\n".to_vec()].concat(),
        "dry run prints the sent bytes"
    );
    let r = Report::from_slice(&copy).unwrap();
    assert_eq!((r.week.as_str(), r.x, r.config), (WEEK, 0.01, 4));
    assert_eq!(r.programs.len(), 1);
    let p = &r.programs[0];
    assert_eq!(p.counters.get("instrumented/a"), Some(&5));
    assert!(
        !p.counters.contains_key("instrumented/undeclared"),
        "undeclared never sent"
    );
    assert!(
        !p.counters.contains_key("instrumented/rare"),
        "rate 0.005 < X"
    );
    // The full report keeps everything; the counter files are gone.
    let full = std::fs::read(inst.dir().join(format!("reports/{WEEK}.full.json"))).unwrap();
    let full = Report::from_slice(&full).unwrap();
    assert_eq!(full.config, 0);
    assert_eq!(full.programs[0].counters["instrumented/undeclared"], 2);
    assert_eq!(
        std::fs::read(inst.dir().join(format!("reports/{WEEK}.json"))).unwrap(),
        copy
    );
    let counts: Vec<_> = std::fs::read_dir(inst.dir().join("counts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        counts.iter().all(|n| !n.to_string_lossy().contains(WEEK)),
        "{counts:?}"
    );
    // Status says what happened, and that today's upload is done.
    let st = inst.status_text();
    assert!(st.contains("sent week 2026-11-02"), "{st}");
    assert!(st.contains("next upload: 2026-11-11 or later"), "{st}");
    // Once a day: a second start today does nothing.
    inst.host(&srv, &k, NEXT_WEEK, false)
        .wait_with_output()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(srv.posts().len(), 1);
    eprintln!("host wall time with a due upload: {host_wall:?}");
}

#[test]
fn thread_mode_uploads() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    let inst = Inst::new();
    inst.count();
    // A long-running host: the upload runs in its thread. Its start
    // returns (it prints so) while the server holds the upload; once let
    // go, the upload finishes while the host runs.
    srv.hold();
    let mut host = inst.host_with(
        &srv,
        &k,
        NEXT_WEEK,
        true,
        &[("HOST_WAIT_MS", "120000"), ("HOST_TIMEOUT_S", "120")],
    );
    let mut lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let started = lines.find(|l| l.as_ref().is_ok_and(|l| l.contains("start took")));
    assert!(started.is_some(), "the host did not start");
    assert!(
        inst.sent_copy().is_none(),
        "the upload finished before start returned"
    );
    srv.release();
    lines.for_each(drop);
    assert!(exited(host).expect("the host did not end").status.success());
    assert_eq!(srv.posts().len(), 1);
    assert_eq!(srv.posts()[0], inst.sent_copy().unwrap());
}

/// A finished week with a report, then a foreground `upload` against `srv`.
fn refused_case(srv: &Server, k: &Key, inst: &Inst, expect_in_status: &str) {
    inst.count();
    let o = inst.upload(srv, k);
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(srv.posts().is_empty(), "nothing sent");
    assert!(inst.sent_copy().is_none());
    assert!(
        inst.dir()
            .join(format!("reports/{WEEK}.full.json"))
            .exists(),
        "kept for a retry"
    );
    assert!(
        inst.state()["weeks"].get(WEEK).is_none(),
        "not decided: retried later"
    );
    let st = inst.status_text();
    assert!(
        st.contains(expect_in_status),
        "want {expect_in_status:?} in\n{st}"
    );
}

#[test]
fn tampered_config_is_refused() {
    let k = key();
    let (mut c, s) = signed(&k, &config_text(4));
    c.extend_from_slice(b"\n[[program.counter]]\nname = \"instrumented/undeclared\"\nrate = 1.0\n");
    let srv = Server::start(c, Some(s), Answer::Ok);
    refused_case(&srv, &k, &Inst::new(), "signature does not match");
}

#[test]
fn config_signed_by_another_key_is_refused() {
    let (k, other) = (key(), key());
    let (c, s) = signed(&other, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    refused_case(&srv, &k, &Inst::new(), "another key");
}

#[test]
fn missing_signature_is_refused() {
    let k = key();
    let (c, _) = signed(&k, &config_text(4));
    let srv = Server::start(c, None, Answer::Ok);
    refused_case(&srv, &k, &Inst::new(), "signature is missing");
}

#[test]
fn rolled_back_config_is_refused() {
    let k = key();
    let inst = Inst::new();
    // Version 7 accepted earlier.
    std::fs::create_dir_all(inst.dir().join("upload")).unwrap();
    std::fs::write(
        inst.dir().join("upload/state.json"),
        r#"{"accepted_config":7}"#,
    )
    .unwrap();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    refused_case(&srv, &k, &inst, "older than version 7");
}

/// The config log refuses: no proof at all, a config that is not the log's
/// latest entry, and a split view (a history other than the one this
/// installation kept). Each time the report is kept, nothing is sent, and
/// `status` says why in one line.
#[test]
fn config_log_refusals_keep_the_report() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    // No proof served.
    let srv = Server::start_with_log(c.clone(), Some(s.clone()), None, Answer::Ok);
    refused_case(&srv, &k, &Inst::new(), "no proof from the config log");
    // The log's latest entry is another config (version 5).
    let mut other = Log::new("test.example/config-log");
    other.append(c.clone()).unwrap();
    other.append(config_text(5).into_bytes()).unwrap();
    let signed5 = other.sign_checkpoint(log_key()).unwrap();
    let srv = Server::start_with_log(
        c.clone(),
        Some(s.clone()),
        Some((other, signed5)),
        Answer::Ok,
    );
    refused_case(&srv, &k, &Inst::new(), "refused by the config log");
    // Split view: the installation kept a checkpoint of another history
    // (version 3 first), signed by the same log key; the server shows a
    // history that starts with version 4.
    let mut fork = Log::new("test.example/config-log");
    fork.append(config_text(3).into_bytes()).unwrap();
    let fork_signed = fork.sign_checkpoint(log_key()).unwrap();
    let policy = ClientPolicy::parse(&log_policy(), "").unwrap();
    let accepted = verify_config(
        &policy,
        None,
        &config_text(3),
        &fork.bundle(&fork_signed, &[]).unwrap().to_text(),
        0,
    )
    .unwrap();
    let inst = Inst::new();
    std::fs::create_dir_all(inst.dir().join("upload")).unwrap();
    let state = serde_json::json!({"accepted_config": 3, "config_log": accepted.kept.to_text()});
    std::fs::write(inst.dir().join("upload/state.json"), state.to_string()).unwrap();
    let srv = Server::start(c, Some(s), Answer::Ok);
    refused_case(&srv, &k, &inst, "refused by the config log");
    let st = inst.status_text();
    assert!(
        st.contains("histor"),
        "the reason names the split view: {st}"
    );
}

#[test]
fn unreachable_server_keeps_the_report() {
    let k = key();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed now
    let srv = Server {
        base: format!("http://127.0.0.1:{port}"),
        seen: Default::default(),
    };
    refused_case(&srv, &k, &Inst::new(), "server unreachable");
}

#[test]
fn hanging_server_times_out_and_host_is_not_delayed() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Hang);
    let inst = Inst::new();
    inst.count();
    // The host ends (the server never answers); its child gives up on
    // the request's timeout (the status says so), not on its time limit.
    let t0 = Instant::now();
    let out = exited(inst.host(&srv, &k, NEXT_WEEK, false)).expect("the host hung");
    assert!(out.status.success(), "{out:?}");
    let host_wall = t0.elapsed();
    assert!(inst.wait_done("2026-11-10", PATIENCE), "child ended");
    let child_time = t0.elapsed();
    assert_eq!(srv.posts().len(), 1, "one attempt");
    assert!(inst.sent_copy().is_none());
    assert!(
        inst.state()["weeks"].get(WEEK).is_none(),
        "kept for a retry"
    );
    assert!(inst.status_text().contains("did not answer in time"));
    // The foreground command also gives up on its timeout.
    let o = inst.upload(&srv, &k);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("did not answer in time"), "{err}");
    eprintln!("host wall {host_wall:?}, child done after {child_time:?}");
}

#[test]
fn server_error_garbage_and_too_many_are_retried_other_4xx_dropped() {
    for (answer, dropped, words) in [
        (Answer::Status(500), false, "answered HTTP 500"),
        (
            Answer::Status(429),
            false,
            "answered HTTP 429: try again later",
        ),
        (
            Answer::Status(408),
            false,
            "answered HTTP 408: try again later",
        ),
        (Answer::Garbage, false, "bad answer"),
        (Answer::Status(400), true, "refused it with HTTP 400"),
    ] {
        let k = key();
        let (c, s) = signed(&k, &config_text(4));
        let srv = Server::start(c, Some(s), answer);
        let inst = Inst::new();
        inst.count();
        let o = inst.upload(&srv, &k);
        assert_eq!(srv.posts().len(), 1, "{answer:?}");
        assert!(inst.sent_copy().is_none(), "{answer:?}");
        let st = inst.status_text();
        assert!(st.contains(words), "{answer:?}: {st}");
        let decided = inst.state()["weeks"][WEEK]["outcome"].clone();
        if dropped {
            // Refused by the server: the upload failed (exit 1), and says
            // so in one line.
            assert_eq!(o.status.code(), Some(1), "{o:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains("refused it with HTTP 400"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert_eq!(decided, "dropped");
            // Never retried.
            inst.upload(&srv, &k);
            assert_eq!(srv.posts().len(), 1);
        } else {
            assert!(!o.status.success());
            assert!(decided.is_null(), "{answer:?} kept for a retry");
            assert!(
                inst.dir()
                    .join(format!("reports/{WEEK}.full.json"))
                    .exists()
            );
        }
    }
}

#[test]
fn above_ceiling_local_mode_and_before_on_send_nothing() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    // X above the ceiling: no config fetched, never sent.
    let inst = Inst::new();
    inst.count_only();
    inst.build_report("0.5");
    inst.settle(&srv, &k);
    let args = ["upload"];
    let o = inst
        .cmd(&cli(), NEXT_WEEK)
        .arg("--namespace")
        .arg("example")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!((srv.gets(), srv.posts().len()), (0, 0));
    assert_eq!(inst.state()["weeks"][WEEK]["outcome"], "not-sampled");
    // Local mode: reports are made, nothing fetched or sent.
    let inst = Inst::new();
    std::fs::write(inst.dir().join("mode"), "local 2026-11-01\n").unwrap();
    inst.count();
    inst.host(&srv, &k, NEXT_WEEK, false).wait().unwrap();
    assert!(inst.wait_done("2026-11-10", PATIENCE));
    assert!(
        inst.dir()
            .join(format!("reports/{WEEK}.full.json"))
            .exists()
    );
    assert!(
        !inst.upload(&srv, &k).status.success(),
        "upload refuses in local mode"
    );
    assert_eq!((srv.gets(), srv.posts().len()), (0, 0));
    // A week that began before `on` was set is never sent.
    let inst = Inst::new();
    std::fs::write(inst.dir().join("mode"), "on 2026-11-05\n").unwrap();
    inst.count();
    assert!(inst.upload(&srv, &k).status.success());
    assert_eq!(inst.state()["weeks"][WEEK]["outcome"], "before-on");
    assert_eq!((srv.gets(), srv.posts().len()), (0, 0));
    // A report whose week ended more than 21 days ago is dropped unsent.
    let inst = Inst::new();
    inst.count();
    inst.settle(&srv, &k);
    let o = inst
        .cmd(&cli(), "2026-12-10T10:00:00Z")
        .arg("--namespace")
        .arg("example")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(inst.state()["weeks"][WEEK]["outcome"], "too-old");
    assert_eq!((srv.gets(), srv.posts().len()), (0, 0));
    // `on` from the environment only: counts from today.
    let inst = Inst::new();
    std::fs::remove_file(inst.dir().join("mode")).unwrap();
    inst.count();
    inst.settle(&srv, &k);
    let o = inst
        .cmd(&cli(), NEXT_WEEK)
        .env("EXAMPLE_TELEMETRY", "on")
        .arg("--namespace")
        .arg("example")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(inst.state()["weeks"][WEEK]["outcome"], "before-on");
    assert_eq!(srv.posts().len(), 0);
}

#[test]
fn many_processes_at_a_week_boundary() {
    let k = key();
    let (c, s) = signed(&k, &config_text(4));
    let srv = Server::start(c, Some(s), Answer::Ok);
    let inst = Inst::new();
    inst.count_only();
    // 10 hosts start at once, just after the boundary.
    let hosts: Vec<_> = (0..10)
        .map(|_| inst.host(&srv, &k, "2026-11-09T00:00:01Z", false))
        .collect();
    for h in hosts {
        assert!(h.wait_with_output().unwrap().status.success());
    }
    assert!(inst.wait_done("2026-11-09", PATIENCE));
    std::thread::sleep(Duration::from_millis(300));
    let reports: Vec<_> = std::fs::read_dir(inst.dir().join("reports"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        reports
            .iter()
            .filter(|n| n.to_string_lossy().ends_with(".full.json"))
            .count(),
        1,
        "{reports:?}"
    );
    assert_eq!(srv.posts().len(), 1, "one upload attempt");
    assert_eq!(srv.gets(), 3, "config, signature and proof fetched once");
    // And 8 report builders at once: still one report per week.
    let inst = Inst::new();
    inst.count_only();
    let procs: Vec<_> = (0..8)
        .map(|_| {
            inst.cmd(&cli(), NEXT_WEEK)
                .args(["--namespace", "example", "report"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut p in procs {
        assert!(p.wait().unwrap().success());
    }
    let full = Report::from_slice(
        &std::fs::read(inst.dir().join(format!("reports/{WEEK}.full.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        full.programs[0].counters["instrumented/a"], 5,
        "counted once"
    );
    assert_eq!(
        std::fs::read_dir(inst.dir().join("reports"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn clean_keeps_the_mode() {
    let inst = Inst::new();
    inst.count();
    assert!(inst.cli(NEXT_WEEK, &["report"]).status.success());
    let o = inst.cli(NEXT_WEEK, &["view"]);
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.contains("week 2026-11-02") && v.contains("instrumented/a"),
        "{v}"
    );
    assert!(inst.cli(NEXT_WEEK, &["clean"]).status.success());
    assert!(!inst.dir().join("reports").exists() && !inst.dir().join("counts").exists());
    assert_eq!(
        std::fs::read_to_string(inst.dir().join("mode")).unwrap(),
        "on 2026-11-01\n"
    );
    let bad = inst.cli(NEXT_WEEK, &["upload"]);
    assert!(!bad.status.success());
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
}

// ------------------------------------------------------------ the floor

/// A config's bytes and its minisign signature.
type SignedConfig = (Vec<u8>, Vec<u8>);

/// A log of configs 3, 4 and 5 (each signed by `k`), with the signed
/// checkpoint of each size.
fn three_versions(k: &Key) -> (Log, Vec<SignedCheckpoint>, Vec<SignedConfig>) {
    let mut log = Log::new("test.example/config-log");
    let mut checkpoints = Vec::new();
    let mut signed_configs = Vec::new();
    for v in 3..=5 {
        let (c, s) = signed(k, &config_text(v));
        log.append(c.clone()).unwrap();
        checkpoints.push(log.sign_checkpoint(log_key()).unwrap());
        signed_configs.push((c, s));
    }
    (log, checkpoints, signed_configs)
}

/// A foreground upload after the toolchain ran is refused in one line
/// saying `want`; nothing is sent, the report stays for a later day, and
/// `status` names the floor in force.
fn assert_refused(inst: &Inst, srv: &Server, k: &Key, want: &str, floor: &str) {
    let o = inst.upload(srv, k);
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(err.contains(want), "want {want:?} in {err}");
    eprintln!("refused: {err}");
    assert!(srv.posts().is_empty(), "nothing sent");
    assert!(inst.sent_copy().is_none());
    assert!(
        inst.dir()
            .join(format!("reports/{WEEK}.full.json"))
            .exists(),
        "kept for a retry"
    );
    assert!(inst.state()["weeks"].get(WEEK).is_none(), "not decided");
    let st = inst.status_text();
    assert!(st.contains(want), "status says why: {st}");
    assert!(st.contains(floor), "status names the floor {floor:?}: {st}");
}

/// The toolchain compiled in the log's checkpoint of size 3 (`log/minimum`
/// when it was built). The installation's state is deleted, damaged or
/// cleaned, and a mirror serves config 4 under the log's own published
/// checkpoint of size 2: refused each time, in one line, nothing sent, the
/// report kept, `status` naming the floor. A toolchain built without the
/// minimum accepts and sends it (what the floor is for).
#[test]
fn lost_damaged_or_cleaned_state_never_goes_below_the_floor() {
    let k = key();
    let (log, cps, configs) = three_versions(&k);
    let min = cps[2].to_text();
    let floor_line = "config log floor: the toolchain's minimum checkpoint (size 3 of log test.example/config-log)";
    let want = "smaller log (2 entries) than the one the toolchain's minimum trusts (3)";
    let replay = || {
        let (c, s) = configs[1].clone();
        Server::start_with_log(c, Some(s), Some((log.clone(), cps[1].clone())), Answer::Ok)
    };
    let with_floor = || Inst::new().with_host_env(&[("HOST_CONFIG_LOG_MINIMUM", &min)]);

    // State deleted: this installation had accepted version 5 under the
    // checkpoint of size 3, then lost its state file.
    let inst = with_floor();
    inst.count();
    let (c, s) = configs[2].clone();
    let honest =
        Server::start_with_log(c, Some(s), Some((log.clone(), cps[2].clone())), Answer::Ok);
    let o = inst.upload(&honest, &k);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(honest.posts().len(), 1);
    assert!(
        inst.state()["config_log"]
            .as_str()
            .unwrap()
            .starts_with("config 5 ")
    );
    // (upload/ holds the state, the copy of what was sent and the day's
    // tokens: all lost.)
    std::fs::remove_dir_all(inst.dir().join("upload")).unwrap();
    assert_refused(&inst, &replay(), &k, want, floor_line);

    // State damaged: not JSON at all, or a kept checkpoint that does not
    // parse (set aside, and `status` says so).
    for (damage, also) in [
        ("\u{0}garbage{", floor_line),
        (
            r#"{"accepted_config":null,"config_log":"config 5 AAAA\nnot a checkpoint"}"#,
            "config log state set aside: the kept checkpoint is damaged",
        ),
    ] {
        let inst = with_floor();
        inst.count();
        std::fs::create_dir_all(inst.dir().join("upload")).unwrap();
        std::fs::write(inst.dir().join("upload/state.json"), damage).unwrap();
        assert_refused(&inst, &replay(), &k, want, also);
    }

    // Cleaned: `clean` removes upload/ with the state, then a new report.
    let inst = with_floor();
    inst.count();
    let o = inst.upload(&honest, &k);
    assert!(o.status.success(), "{o:?}");
    assert!(inst.cli(NEXT_WEEK, &["clean"]).status.success());
    assert!(!inst.dir().join("upload").exists());
    inst.count();
    assert_refused(&inst, &replay(), &k, want, floor_line);

    // Built without the minimum (weaker): the same replay is accepted.
    let inst = Inst::new();
    inst.count();
    let srv = replay();
    let o = inst.upload(&srv, &k);
    assert!(o.status.success(), "{o:?}");
    let sent = Report::from_slice(&srv.posts()[0]).unwrap();
    assert_eq!(sent.config, 4, "without a floor, the older config is used");
    assert!(
        inst.status_text()
            .contains("this toolchain compiles in no minimum checkpoint"),
        "status says the floor is weaker"
    );
}

// ------------------------------------------------------------ freshness

/// The witness of the freshness test.
fn witness_key() -> &'static SignerKey {
    static KEY: std::sync::OnceLock<SignerKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        SignerKey::generate("witness.test.example/w1", KeyType::CosignatureV1).unwrap()
    })
}

/// The POSIX time of an RFC 3339 instant.
fn posix(t: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp() as u64
}

/// A replayed old checkpoint, refused through the uploader's own path: the
/// toolchain's policy needs witness w1, with cosignatures at most 7 days
/// old (`UploadSettings::with_max_cosignature_age`), and the installation
/// has no state (so no kept checkpoint protects it). A mirror serves config
/// 4 under the log's checkpoint of size 1, which w1 cosigned 30 days
/// before: refused in one line, nothing sent, the report kept. The same
/// toolchain accepts config 5 under the checkpoint w1 cosigned yesterday,
/// and one built without the age limit accepts the replay.
#[test]
fn a_replayed_old_checkpoint_is_refused() {
    let k = key();
    let mut log = Log::new("test.example/config-log");
    let (c4, s4) = signed(&k, &config_text(4));
    let (c5, s5) = signed(&k, &config_text(5));
    let now = posix(NEXT_WEEK);
    log.append(c4.clone()).unwrap();
    let mut old = log.sign_checkpoint(log_key()).unwrap();
    old.note.add_signature(
        witness_key()
            .cosign(&old.note.text, now - 30 * 86_400)
            .unwrap(),
    );
    log.append(c5.clone()).unwrap();
    let mut fresh = log.sign_checkpoint(log_key()).unwrap();
    fresh.note.add_signature(
        witness_key()
            .cosign(&fresh.note.text, now - 86_400)
            .unwrap(),
    );
    let policy = format!(
        "log {}\nwitness w1 {}\nquorum w1\n",
        log_key().verifier(),
        witness_key().verifier()
    );
    let week = (7 * 86_400).to_string();
    let toolchain = || {
        Inst::new().with_host_env(&[
            ("HOST_CONFIG_LOG", policy.as_str()),
            ("HOST_MAX_AGE_S", week.as_str()),
        ])
    };
    let replay = || {
        Server::start_with_log(
            c4.clone(),
            Some(s4.clone()),
            Some((log.clone(), old.clone())),
            Answer::Ok,
        )
    };
    let inst = toolchain();
    inst.count();
    assert_refused(
        &inst,
        &replay(),
        &k,
        "the checkpoint of size 1 has no quorum of cosignatures younger than 604800 s: a replayed old checkpoint?",
        "config log freshness: the witnesses' cosignatures must be at most 7 days old",
    );
    // The current checkpoint, cosigned yesterday: accepted and sent (by
    // another installation of the same toolchain).
    let srv = Server::start_with_log(c5, Some(s5), Some((log.clone(), fresh)), Answer::Ok);
    let inst = toolchain();
    inst.count();
    let o = inst.upload(&srv, &k);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(Report::from_slice(&srv.posts()[0]).unwrap().config, 5);
    // Without the age limit, the replay gets through.
    let inst = Inst::new().with_host_env(&[("HOST_CONFIG_LOG", policy.as_str())]);
    inst.count();
    let srv = replay();
    assert!(inst.upload(&srv, &k).status.success());
    assert_eq!(Report::from_slice(&srv.posts()[0]).unwrap().config, 4);
}

// ------------------------------------------------------------ key rotation

/// A maintainer's files, made with the `clearcount` command as the README
/// says: a minisign key pair, the declared counters, and config logs.
struct Maintainer {
    dir: tempfile::TempDir,
}

impl Maintainer {
    fn new() -> Maintainer {
        let m = Maintainer {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(m.path("counters")).unwrap();
        std::fs::write(
            m.path("counters/instrumented.toml"),
            "program = \"instrumented\"\n\
             [[counter]]\nname = \"instrumented/a\"\nkind = \"plain\"\ndescription = \"a\"\nquestion = \"a?\"\n\
             [[counter]]\nname = \"instrumented/command:inc\"\nkind = \"plain\"\ndescription = \"inc\"\nquestion = \"inc?\"\n\
             [[counter]]\nname = \"instrumented/rare\"\nkind = \"plain\"\ndescription = \"rare\"\nquestion = \"rare?\"\n",
        )
        .unwrap();
        m.run(&[
            "config",
            "keygen",
            "--public-key",
            "config.pub",
            "--secret-key",
            "config.key",
        ]);
        m
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn run(&self, args: &[&str]) -> String {
        let o = Command::new(cli())
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// A new log `dir` with its own key, named `origin`.
    fn new_log(&self, dir: &str, origin: &str) {
        let (vkey, skey) = (format!("{dir}.vkey"), format!("{dir}.skey"));
        self.run(&[
            "config",
            "log-keygen",
            "--name",
            origin,
            "--vkey",
            &vkey,
            "--skey",
            &skey,
        ]);
        self.run(&["config", "log-init", "--log", dir, "--vkey", &vkey]);
    }
    /// Publishes config `version` into `log`: signed with minisign when
    /// `sign`, else its existing signature checked (the same config into a
    /// second log).
    fn publish(&self, version: u64, log: &str, sign: bool) {
        std::fs::write(self.path("config.toml"), config_text(version)).unwrap();
        let skey = format!("{log}.skey");
        let mut args = vec![
            "config",
            "publish",
            "--config",
            "config.toml",
            "--counters",
            "counters",
            "--public-key",
            "config.pub",
            "--log-key",
            &skey,
            "--log",
            log,
        ];
        if sign {
            args.extend(["--secret-key", "config.key"]);
        }
        self.run(&args);
    }
    /// What a release built now compiles in for `log`: its policy and its
    /// minimum checkpoint.
    fn release(&self, log: &str) -> Vec<(String, String)> {
        let read = |f: &str| std::fs::read_to_string(self.path(&format!("{log}/{f}"))).unwrap();
        vec![
            ("HOST_CONFIG_LOG".into(), read("policy")),
            ("HOST_CONFIG_LOG_MINIMUM".into(), read("minimum")),
            (
                "HOST_PUBLIC_KEY".into(),
                std::fs::read_to_string(self.path("config.pub")).unwrap(),
            ),
        ]
    }
}

/// `clearcount serve` of the maintainer's config, with its clock on
/// 2026-11-20; killed on drop.
struct RealServer {
    base: String,
    child: std::process::Child,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealServer {
    fn start(m: &Maintainer, logs: &[&str]) -> RealServer {
        let mut c = Command::new(cli());
        c.current_dir(m.dir.path())
            .env("CLEARCOUNT_NOW", "2026-11-20T00:00:00Z")
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--data",
                "data",
                "--config",
                "config.toml",
            ])
            .args([
                "--public-key",
                "config.pub",
                "--rate-limit",
                "0",
                "--recosign-every",
                "0",
            ])
            .args(["--log", logs[0]]);
        for l in &logs[1..] {
            c.args(["--also-log", l]);
        }
        let mut child = c
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| panic!("clearcount serve did not start: {line:?}"))
            .to_string();
        RealServer {
            base: format!("http://{addr}"),
            child,
        }
    }
    /// The `Server` the installation helpers take, and the settings a
    /// toolchain compiles in to talk to this one.
    fn endpoints(&self) -> (Server, Vec<(String, String)>) {
        let env = vec![
            ("HOST_UPLOAD_URL".into(), format!("{}/upload", self.base)),
            (
                "HOST_CONFIG_URL".into(),
                format!("{}/config.toml", self.base),
            ),
        ];
        let srv = Server {
            base: self.base.clone(),
            seen: Default::default(),
        };
        (srv, env)
    }
    /// Waits until the server serves config `version`.
    fn wait_for_version(&self, version: u64) {
        let t0 = Instant::now();
        let want = format!("\nversion = {version}\n");
        loop {
            let o = Command::new("curl")
                .args(["-s", &format!("{}/config.toml", self.base)])
                .output()
                .unwrap();
            if format!("\n{}", String::from_utf8_lossy(&o.stdout)).contains(&want) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "version {version} not served"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const WEEK2: &str = "2026-11-09";

impl Inst {
    /// This installation runs release `env` (what it compiles in), from
    /// now on.
    fn runs(&mut self, env: &[(String, String)]) {
        self.host_env
            .retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        self.host_env.extend(env.iter().cloned());
    }
    /// Counts in the week of 2026-11-09, has the toolchain run on
    /// 2026-11-12 (recording its settings, mode local for that run), and
    /// the report made on 2026-11-16.
    fn second_week(&self, srv: &Server, k: &Key) {
        let o = self
            .cmd(&example(), "2026-11-11T10:00:00Z")
            .args(["inc", "instrumented/a", "3"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        let out = self
            .host_with(
                srv,
                k,
                "2026-11-12T09:00:00Z",
                false,
                &[("EXAMPLE_TELEMETRY", "local")],
            )
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let o = self
            .cmd(&example(), "2026-11-16T10:00:00Z")
            .arg("hello")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        assert!(self.wait_done("2026-11-16", Duration::from_secs(20)));
    }
    /// `clearcount upload` on 2026-11-17: the week of 2026-11-09 is sent.
    fn upload_second_week(&self) -> Report {
        let o = self.cli("2026-11-17T10:00:00Z", &["upload"]);
        assert!(o.status.success(), "{o:?}");
        let copy = std::fs::read(self.dir().join(format!("upload/{WEEK2}.json")))
            .unwrap_or_else(|_| panic!("week {WEEK2} sent: {o:?}"));
        Report::from_slice(&copy).unwrap()
    }
}

/// A toolchain moves its config log to a new key (a new log) without
/// stopping its installed base, as `counters-spec/config-log.md` §13 says,
/// against the real server:
///
/// 1. release 1 compiles in log A; installations 1 and 2 send week 1;
/// 2. the maintainer starts log B (new key, new name), publishes the
///    current config into it too, and serves both (`--also-log`); every
///    later config goes into both;
/// 3. installation 1 upgrades to release 2, which compiles in log B and
///    its minimum: it sets aside the checkpoint it kept under A (`status`
///    says so) and sends week 2 under log B;
/// 4. installation 2, still on release 1, sends week 2 under log A.
#[test]
fn a_key_rotation_across_two_releases_never_stops_uploads() {
    let m = Maintainer::new();
    m.new_log("log-a", "a.test.example/config-log");
    m.publish(10, "log-a", true);
    let release1 = m.release("log-a");
    let key = Key {
        public: std::fs::read_to_string(m.path("config.pub")).unwrap(),
        secret: String::new(),
        _dir: tempfile::tempdir().unwrap(),
    };

    // 1. Release 1, log A only.
    let server = RealServer::start(&m, &["log-a"]);
    let (srv, urls) = server.endpoints();
    let mut inst1 = Inst::new();
    let mut inst2 = Inst::new();
    for inst in [&mut inst1, &mut inst2] {
        inst.runs(&urls);
        inst.runs(&release1);
        inst.count();
        let o = inst.upload(&srv, &key);
        assert!(o.status.success(), "{o:?}");
        let sent = Report::from_slice(&inst.sent_copy().unwrap()).unwrap();
        assert_eq!(sent.config, 10);
    }
    drop(server);

    // 2. Log B: the current config first, then both logs served.
    m.new_log("log-b", "b.test.example/config-log");
    m.publish(10, "log-b", false);
    let server = RealServer::start(&m, &["log-a", "log-b"]);
    let (srv, urls) = server.endpoints();
    m.publish(11, "log-a", true);
    m.publish(11, "log-b", false);
    server.wait_for_version(11);
    let release2 = m.release("log-b");

    // 3. Installation 1 upgrades.
    inst1.runs(&urls);
    inst1.runs(&release2);
    inst1.second_week(&srv, &key);
    let st = inst1.status_text();
    assert!(
        st.contains("config log state set aside: the checkpoint kept (size 1 of log a.test.example/config-log) is not signed by the log key this release trusts"),
        "{st}"
    );
    let r = inst1.upload_second_week();
    assert_eq!((r.week.as_str(), r.config), (WEEK2, 11));
    let kept = inst1.state()["config_log"].as_str().unwrap().to_string();
    assert!(kept.contains("\nb.test.example/config-log\n2\n"), "{kept}");
    assert!(inst1.status_text().contains(
        "config log floor: the checkpoint kept by this installation (size 2 of log b.test.example/config-log, version 11)"
    ));

    // 4. Installation 2 keeps release 1: still served, under log A.
    inst2.runs(&urls);
    inst2.second_week(&srv, &key);
    let r = inst2.upload_second_week();
    assert_eq!((r.week.as_str(), r.config), (WEEK2, 11));
    let kept = inst2.state()["config_log"].as_str().unwrap().to_string();
    assert!(kept.contains("\na.test.example/config-log\n2\n"), "{kept}");
}
