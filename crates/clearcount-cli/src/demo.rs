//! `clearcount demo`: the whole flow on this machine, in well under a
//! minute, from the binary `cargo run` already built.
//!
//! 1. Makes a throwaway key pair and signs a demo collection config (the
//!    published `config/config.toml` with every rate set to 1, so every
//!    simulated installation reports), and publishes it through a
//!    throwaway config log (`config/log/` in the demo's data, its key pair
//!    in `keys/`).
//! 2. Starts the collection server on loopback, with that log: it serves
//!    the config's proofs (`/config.toml.proof`), the log (`/log/`) for
//!    auditors, and shows it on `/config`.
//! 3. Simulates installations of the example tool `instrumented`: each is a
//!    telemetry directory of its own (`CLEARCOUNT_DIR`), opted in with
//!    `clearcount on`, whose tool runs on days of the last four weeks
//!    (`CLEARCOUNT_NOW` moves its clock). The tool is this executable run as
//!    `clearcount demo-tool …` (hidden): like any instrumented program it
//!    starts telemetry first thing, with upload settings pointing at the
//!    demo server, and counts. On the first run of a day after a week ends,
//!    `Telemetry::start` builds that week's report and the real uploader
//!    sends it from a detached child process (this executable again): the
//!    signed config fetch, sampling, the HTTP POST.
//! 4. Merges the archive and prints the URL of the charts and where every
//!    file is. The server stays up until Ctrl-C (or stops at once with
//!    `--exit`); the demo's files are removed then, unless `--data` was
//!    given.

use clearcount::upload::UploadSettings;
use clearcount::{Counter, StackCounter, Telemetry, counter};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The declared counters of the example tool, as published.
const DECLARED: &str = include_str!("../../../config/counters/instrumented.toml");
/// The published collection config, made into the demo config.
const PUBLISHED_CONFIG: &str = include_str!("../../../config/config.toml");

/// Weeks simulated (all finished, the last one ending today).
const WEEKS: u64 = 4;
/// The example tool's namespace and program name.
const NAMESPACE: &str = "example";
const PROGRAM: &str = "instrumented";

/// What a simulated installation's tool is told (it inherits them, and so
/// does its upload child).
const UPLOAD_VAR: &str = "CLEARCOUNT_DEMO_UPLOAD_URL";
const CONFIG_VAR: &str = "CLEARCOUNT_DEMO_CONFIG_URL";
const KEY_VAR: &str = "CLEARCOUNT_DEMO_PUBLIC_KEY";
const LOG_VAR: &str = "CLEARCOUNT_DEMO_CONFIG_LOG";

/// Arguments of `clearcount demo`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DemoArgs {
    /// Address for the server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Keep the demo's files here (default: a temporary directory, removed
    /// when the demo ends).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Stop when done instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Number of simulated installations.
    #[arg(long, default_value_t = 40)]
    installations: usize,
    /// Charts hide a bucket seen in fewer than this many reports in a week.
    #[arg(long, default_value_t = 10)]
    min_reports: u64,
}

/// Arguments of `clearcount demo-tool` (hidden): one run of the example
/// tool, `hello`, `inc NAME [TIMES]` or `stack NAME`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ToolArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// In a simulated installation's tool (or its upload child), starts
/// telemetry before anything else, with the demo server's settings. In the
/// upload child this does the upload and never returns.
pub(crate) fn start_if_tool() {
    let (Ok(upload), Ok(config), Ok(key), Ok(log)) = (
        std::env::var(UPLOAD_VAR),
        std::env::var(CONFIG_VAR),
        std::env::var(KEY_VAR),
        std::env::var(LOG_VAR),
    ) else {
        return;
    };
    // Every installation is in the sample: the demo config's rates are 1.
    let settings = UploadSettings::new(&upload, &config, &key, &log).with_ceiling(1.0);
    Telemetry::new(NAMESPACE, PROGRAM, env!("CARGO_PKG_VERSION"))
        .upload(settings)
        .start();
}

static HELLO: Counter = Counter::new("instrumented/command:hello");
static INC: Counter = Counter::new("instrumented/command:inc");
static STACK: Counter = Counter::new("instrumented/command:stack");
static DEFAULT_STACK: StackCounter = StackCounter::new("instrumented/stack", 8);
static OTHER_STACK: StackCounter = StackCounter::new("instrumented/stack-other", 8);

/// One run of the example tool (telemetry was started in `main`).
pub(crate) fn tool(args: ToolArgs) -> Result<(), String> {
    let args: Vec<&str> = args.args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["hello"] => HELLO.inc(),
        ["inc", name] => {
            INC.inc();
            counter::inc(name);
        }
        ["inc", name, times] => {
            INC.inc();
            let times: u64 = times.parse().map_err(|_| "TIMES must be a number")?;
            counter::add(name, times);
        }
        ["stack", name] => {
            STACK.inc();
            nested(if *name == "instrumented/stack-other" {
                &OTHER_STACK
            } else {
                &DEFAULT_STACK
            });
        }
        _ => return Err("usage: demo-tool hello | inc NAME [TIMES] | stack NAME".into()),
    }
    Ok(())
}

#[inline(never)]
fn nested(c: &'static StackCounter) {
    c.inc();
    std::hint::black_box(());
}

/// A small deterministic generator, so a demo run is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The demo config: the published one with every rate set to 1.
fn demo_config() -> String {
    PUBLISHED_CONFIG
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("rate =") {
                "rate = 1.0".to_string()
            } else if t.starts_with("sample_rate =") {
                "sample_rate = 1.0".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn io(what: &str, p: &Path, e: impl std::fmt::Display) -> String {
    format!("cannot {what} {}: {e}", p.display())
}

/// Where the demo server is, for the tools.
struct Server {
    upload: String,
    config: String,
    public_key: String,
    /// The config log's policy (what a toolchain compiles in).
    config_log: String,
}

/// One installation: its directory and its clock.
struct Installation<'a> {
    exe: &'a Path,
    dir: PathBuf,
    server: &'a Server,
    /// Set when the demo is stopped (Ctrl-C, SIGTERM): run nothing more.
    interrupted: &'a AtomicBool,
}

/// What the demo says when it is stopped before its archive is built.
const INTERRUPTED: &str = "demo interrupted before its archive was built";

impl Installation<'_> {
    /// Runs this executable in the installation at `now`.
    fn command(&self, now: &str) -> Command {
        let mut c = Command::new(self.exe);
        c.env("CLEARCOUNT_DIR", &self.dir)
            .env("CLEARCOUNT_NOW", now)
            // Simulated installations are not the user's: their settings apply.
            .env_remove("DO_NOT_TRACK")
            .env_remove("EXAMPLE_TELEMETRY")
            .env_remove("CLEARCOUNT_NAMESPACE");
        c
    }

    fn check(out: std::io::Result<std::process::Output>, what: &str) -> Result<(), String> {
        let out = out.map_err(|e| format!("cannot run {what}: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = match stderr.trim() {
                // Killed by a signal, say, with nothing to say.
                "" => out.status.to_string(),
                said => said.to_string(),
            };
            return Err(format!("{what} failed: {why}"));
        }
        Ok(())
    }

    /// `clearcount --namespace example on`, on `day`.
    fn opt_in(&self, day: chrono::NaiveDate) -> Result<(), String> {
        let out = self
            .command(&format!("{day}T08:00:00Z"))
            .args(["--namespace", NAMESPACE, "on"])
            .output();
        Self::check(out, "clearcount on")
    }

    /// One run of the tool on `day`; then waits until the upload it may
    /// have started that day is over (the day's token is marked done).
    /// When the demo is stopped meanwhile (a Ctrl-C also reaches the tool,
    /// in the terminal's process group), it waits a little for the upload
    /// child that run may have started (in a process group of its own, so
    /// it is still running), so that the installation's files can be
    /// removed after it, and says the demo was interrupted.
    fn run(&self, day: chrono::NaiveDate, minute: u64, args: &[&str]) -> Result<(), String> {
        if self.interrupted.load(Ordering::Relaxed) {
            return Err(INTERRUPTED.into());
        }
        let now = format!("{day}T{:02}:{:02}:00Z", 8 + minute / 60 % 12, minute % 60);
        let out = self
            .command(&now)
            .arg("demo-tool")
            .args(args)
            .env(UPLOAD_VAR, &self.server.upload)
            .env(CONFIG_VAR, &self.server.config)
            .env(KEY_VAR, &self.server.public_key)
            .env(LOG_VAR, &self.server.config_log)
            .output();
        let ran = Self::check(out, &format!("demo-tool {}", args.join(" ")));
        if self.interrupted.load(Ordering::Relaxed) {
            let _ = self.wait_for_upload(day, Duration::from_secs(5));
            return Err(INTERRUPTED.into());
        }
        ran?;
        self.wait_for_upload(day, Duration::from_secs(30))
    }

    /// Waits (up to `limit`) until no upload attempt of `day` is in
    /// progress: the uploader's day token (`upload/day-<date>.token`) says
    /// `done`.
    fn wait_for_upload(&self, day: chrono::NaiveDate, limit: Duration) -> Result<(), String> {
        let token = self
            .dir
            .join(NAMESPACE)
            .join("upload")
            .join(format!("day-{day}.token"));
        let start = Instant::now();
        loop {
            match std::fs::read_to_string(&token) {
                Err(_) => return Ok(()), // no attempt that day
                Ok(t) if t.starts_with("done") => return Ok(()),
                Ok(_) if start.elapsed() > limit => {
                    return Err(format!("the upload of {day} did not finish"));
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Four weeks of use: `seed` gives the installation its character.
    fn simulate(&self, seed: u64, today: chrono::NaiveDate) -> Result<(), String> {
        use chrono::Datelike;
        let ns_dir = self.dir.join(NAMESPACE);
        std::fs::create_dir_all(&ns_dir).map_err(|e| io("create", &ns_dir, e))?;
        // Weeks start on today's weekday, so the last simulated week ends
        // today (spec: `week-start` holds the weekday's English name).
        std::fs::write(ns_dir.join("week-start"), format!("{}\n", today.weekday()))
            .map_err(|e| io("write", &ns_dir, e))?;
        self.opt_in(today - chrono::Days::new(7 * WEEKS + 1))?;
        let mut rng = Rng(seed);
        // Each installation has a character: how busy, how slow, flags.
        let busy = 1 + rng.below(4);
        let slow = rng.below(4);
        let verbose = rng.chance(35);
        for w in 0..WEEKS {
            let begin = today - chrono::Days::new(7 * (WEEKS - w));
            if rng.chance(10) {
                continue; // not used that week
            }
            let runs = busy + rng.below(3);
            let mut days: Vec<u64> = (0..runs).map(|_| rng.below(7)).collect();
            days.sort();
            for (i, d) in days.into_iter().enumerate() {
                let day = begin + chrono::Days::new(d);
                let minute = i as u64 * 37 + rng.below(30);
                match rng.below(6) {
                    0 | 1 => self.run(day, minute, &["hello"])?,
                    2 => {
                        let n = (1 + rng.below(50)).to_string();
                        self.run(day, minute, &["inc", "instrumented/inc", &n])?
                    }
                    3 => self.run(day, minute, &["stack", "instrumented/stack"])?,
                    4 => {
                        let buckets = ["<10ms", "<100ms", "<1s", ">=1s"];
                        let b = buckets[((rng.below(3) + slow) as usize).min(3)];
                        self.run(day, minute, &["inc", &format!("instrumented/duration:{b}")])?
                    }
                    _ => self.run(day, minute, &["stack", "instrumented/stack-other"])?,
                }
                if verbose {
                    self.run(day, minute + 1, &["inc", "instrumented/flag:verbose"])?;
                }
                if rng.chance(15) {
                    // Not declared: counted locally, never collected.
                    self.run(day, minute + 2, &["inc", "instrumented/undeclared-thing"])?;
                }
            }
        }
        // Today: the last week is over; its report goes out.
        self.run(today, 0, &["hello"])
    }
}

/// The origin of the demo's throwaway config log.
const DEMO_LOG_ORIGIN: &str = "demo.clearcount.localhost/config-log";

/// Publishes the demo config through a throwaway config log in `dir`
/// (`counters-spec/config-log.md` §7), its key pair in `keys`
/// (`demo-log.vkey`, `demo-log.skey`), with a policy of that key alone.
/// A log from an earlier run (`--data`) is kept when it already ends with
/// this config, extended when the config's version is higher, and made
/// anew otherwise. Returns the config's entry.
fn publish_to_demo_log(
    keys: &Path,
    dir: &Path,
    config: &[u8],
) -> Result<clearcount_protocol::tlog::log::Published, String> {
    use clearcount_protocol::tlog::log::{LogDir, Published};
    use clearcount_protocol::tlog::note::KeyType;
    let (vkey, skey) = (keys.join("demo-log.vkey"), keys.join("demo-log.skey"));
    let key = match crate::log_cmd::read_skey(&skey) {
        Ok(k) if vkey.is_file() && k.verifier().name() == DEMO_LOG_ORIGIN => k,
        _ => {
            let _ = std::fs::remove_file(&vkey);
            let _ = std::fs::remove_file(&skey);
            crate::log_cmd::write_key_pair(DEMO_LOG_ORIGIN, KeyType::Ed25519, &vkey, &skey)?
        }
    };
    if let Ok(log) = LogDir::open(dir)
        && log.verifier().is_ok_and(|v| &v == key.verifier())
        && let Ok(entries) = log.load()
        && let Ok(Some(checkpoint)) = log.checkpoint()
        && checkpoint.checkpoint.size == entries.size()
    {
        if entries.entries().last().is_some_and(|e| e == config) {
            return Ok(Published {
                index: entries.size() - 1,
                version: entries.versions()[entries.size() as usize - 1],
                checkpoint,
            });
        }
        if let Ok(p) = log.publish(config, &key) {
            return Ok(p);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io("remove", dir, e))?;
    }
    let log = LogDir::init(dir, key.verifier()).map_err(|e| e.to_string())?;
    let policy = log.path().join(LogDir::POLICY);
    std::fs::write(&policy, format!("log {}\nquorum none\n", key.verifier()))
        .map_err(|e| io("write", &policy, e))?;
    log.publish(config, &key).map_err(|e| e.to_string())
}

/// The demo's files: removed when the demo ends, however it ends, unless
/// they are kept (`--data`); either way it says so.
struct DemoFiles {
    dir: PathBuf,
    remove: bool,
}

impl Drop for DemoFiles {
    fn drop(&mut self) {
        let d = self.dir.display();
        if !self.remove {
            println!("demo: stopped; its files are kept in {d}");
        } else {
            match std::fs::remove_dir_all(&self.dir) {
                Ok(()) => println!(
                    "demo: stopped; removed {d} (the server's store, the config and its log, the throwaway keys, the installations)"
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    println!("demo: stopped")
                }
                Err(e) => eprintln!("demo: stopped, but could not remove {d}: {e}"),
            }
        }
    }
}

/// Runs the demo.
pub(crate) fn run(args: DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let files = match &args.data {
        Some(d) => DemoFiles {
            dir: d.clone(),
            remove: false,
        },
        None => DemoFiles {
            dir: std::env::temp_dir().join(format!(
                "clearcount-demo-{}-{}",
                chrono::Utc::now().format("%Y%m%d-%H%M%S"),
                std::process::id()
            )),
            remove: true,
        },
    };
    let data = files.dir.clone();
    let keys = data.join("keys");
    let config_dir = data.join("config");
    let counters_dir = config_dir.join("counters");
    let installs = data.join("installations");
    let store = data.join("server");
    for d in [&keys, &counters_dir, &installs, &store] {
        std::fs::create_dir_all(d).map_err(|e| io("create", d, e))?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;

    // 1. A throwaway key pair and a signed demo config.
    let public = keys.join("demo.pub");
    let secret = keys.join("demo.secret");
    if !public.exists() || !secret.exists() {
        let _ = std::fs::remove_file(&public);
        let _ = std::fs::remove_file(&secret);
        clearcount_protocol::sign::keygen(&public, &secret).map_err(|e| e.to_string())?;
    }
    let config = config_dir.join("config.toml");
    let config_text = demo_config();
    std::fs::write(&config, &config_text).map_err(|e| io("write", &config, e))?;
    std::fs::write(counters_dir.join("instrumented.toml"), DECLARED)
        .map_err(|e| io("write", &counters_dir, e))?;
    clearcount_protocol::sign::sign(&secret, &config).map_err(|e| e.to_string())?;
    let public_key = std::fs::read_to_string(&public).map_err(|e| io("read", &public, e))?;
    let log_dir = config_dir.join("log");
    let logged = publish_to_demo_log(&keys, &log_dir, config_text.as_bytes())?;

    // 2. The server, on its own runtime thread.
    let opts = clearcount_server::ServerOptions {
        addr: args.addr,
        data: store.to_string_lossy().into_owned(),
        config: Some(config.clone()),
        public_key: Some(public.clone()),
        log: Some(log_dir.clone()),
        also_logs: Vec::new(),
        counters: Some(counters_dir.clone()),
        min_reports: args.min_reports,
        merge_interval: Duration::from_secs(5),
        // Every simulated installation sends from this machine's address.
        limits: clearcount_server::Limits {
            uploads_per_minute: 0,
            ..clearcount_server::Limits::default()
        },
        metrics_addr: None,
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Ctrl-C or SIGTERM stops the server, and the simulation with it, at
    // any time: the demo then removes its files as it does at the end.
    let interrupted = Arc::new(AtomicBool::new(false));
    let signalled = Arc::clone(&interrupted);
    let server = std::thread::Builder::new()
        .name("clearcount-demo-server".into())
        .spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            rt.block_on(async move {
                let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
                let shutdown = async move {
                    tokio::select! {
                        _ = stop_rx => {}
                        _ = clearcount_server::shutdown_signal() => {
                            signalled.store(true, Ordering::Relaxed);
                        }
                    }
                };
                let task = tokio::spawn(clearcount_server::serve_with_shutdown(
                    opts,
                    Some(ready_tx),
                    shutdown,
                ));
                match ready_rx.await {
                    Ok(addr) => {
                        let _ = addr_tx.send(Ok(addr));
                    }
                    Err(_) => {
                        let r = task.await.map_err(|e| e.to_string()).and_then(|r| r);
                        let _ = addr_tx.send(Err(r
                            .err()
                            .unwrap_or_else(|| "server did not start".into())));
                        return Ok(());
                    }
                }
                task.await.map_err(|e| format!("server task failed: {e}"))?
            })
        })
        .map_err(|e| format!("cannot start the server thread: {e}"))?;
    let addr: SocketAddr = addr_rx
        .recv()
        .map_err(|_| "the server stopped before listening".to_string())??;
    let base = format!("http://{addr}");
    println!("demo: server listening on {base}/");
    let config_log = std::fs::read_to_string(log_dir.join("policy"))
        .map_err(|e| io("read", &log_dir.join("policy"), e))?;
    let srv = Server {
        upload: format!("{base}/upload"),
        config: format!("{base}/config.toml"),
        public_key,
        config_log,
    };

    // 3. Simulated installations, two at a time (one per core).
    let today = chrono::Utc::now().date_naive();
    let n = args.installations.max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(Vec::new());
    println!("demo: simulating {n} installations over {WEEKS} weeks ...");
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let inst = Installation {
                        exe: &exe,
                        dir: installs.join(format!("{i:03}")),
                        server: &srv,
                        interrupted: &interrupted,
                    };
                    if let Err(e) = inst.simulate(0xc1ea_7c00 + i as u64, today) {
                        errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        break;
                    }
                }
            });
        }
    });
    // Once stopped, whatever a run said as it was killed is not the news.
    let first_error = errors.into_inner().unwrap_or_default().into_iter().next();
    let error = if interrupted.load(Ordering::Relaxed) {
        Some(INTERRUPTED.to_string())
    } else {
        first_error
    };
    if let Some(e) = error {
        let _ = stop_tx.send(());
        let _ = server.join();
        return Err(e);
    }

    // 4. The archive, rebuilt now (the server also does it on a schedule).
    let stats = clearcount_server::merge_blocking(&store.to_string_lossy(), args.min_reports)?;
    println!(
        "demo: archive holds {} reports in {} weekly files (done in {:.1} s)",
        stats.reports,
        stats.weeks,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("  charts:        {base}/charts");
    println!("  archive:       {base}/data/");
    println!("  config:        {base}/config");
    println!("  config log:    {base}/log/ (audit it with `clearcount config audit {base}/log`)");
    println!("  counters:      {base}/counters");
    println!();
    println!(
        "  files{}:",
        if args.data.is_none() {
            " (removed when the demo ends; keep them with --data DIR)"
        } else {
            ""
        }
    );
    println!("    demo data     {}", data.display());
    println!("    server store  {}", store.display());
    println!(
        "    config        {} (+ .minisig), counters in {}",
        config.display(),
        counters_dir.display()
    );
    println!(
        "    config log    {} (the config is entry {}, checkpoint of size {}; audit it with `clearcount config audit {}`)",
        log_dir.display(),
        logged.index,
        logged.index + 1,
        log_dir.display()
    );
    println!("    demo keys     {} (throwaway)", keys.display());
    println!(
        "    installations {} (each a CLEARCOUNT_DIR; try `CLEARCOUNT_DIR={}/000 clearcount --namespace example status`)",
        installs.display(),
        installs.display()
    );
    if args.exit {
        let _ = stop_tx.send(());
        server
            .join()
            .map_err(|_| "the server thread panicked".to_string())??;
        return Ok(());
    }
    println!();
    println!("demo: serving {base}/ until Ctrl-C");
    // Keep the sender alive so the server runs until the signal.
    let result = server
        .join()
        .map_err(|_| "the server thread panicked".to_string())?;
    drop(stop_tx);
    result
}
