//! `clearcount demo`: the whole flow on this machine, in a minute.
//!
//! 1. Makes a throwaway key pair and signs a demo collection config (the
//!    published `config/config.toml` with every rate set to 1, so every
//!    simulated installation reports).
//! 2. Starts the collection server on loopback.
//! 3. Runs the example tool (`examples/instrumented.rs`) as many simulated
//!    installations, each in its own telemetry directory, over four past
//!    weeks (`CLEARCOUNT_NOW` moves the clock), with varied usage.
//! 4. Builds each installation's weekly reports and uploads them through the
//!    real uploader (signed config fetch, sampling, HTTP POST).
//! 5. Merges the archive and prints the URL of the charts and where every
//!    file is. The server stays up until Ctrl-C (or stops at once with
//!    `--exit`).
//!
//! ```no_run
//! use clap::Parser;
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] demo: clearcount::cli::demo_cmd::DemoArgs }
//! clearcount::cli::demo_cmd::run(Cli::parse_from(["demo", "--exit"]).demo).unwrap();
//! ```

use crate::mode::{Effective, Mode, Source};
use crate::upload::{self, RunOptions, UploadSettings};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The declared counters of the example tool, as published.
const DECLARED: &str = include_str!("../../config/counters/instrumented.toml");
/// The published collection config, made into the demo config.
const PUBLISHED_CONFIG: &str = include_str!("../../config/config.toml");

/// Weeks simulated (all finished, the last one ending today at the latest).
const WEEKS: u64 = 4;

/// Arguments of `clearcount demo`.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] demo: clearcount::cli::demo_cmd::DemoArgs }
/// let a = Cli::parse_from(["demo", "--exit", "--installations", "12"]).demo;
/// assert!(a.exit);
/// assert_eq!(a.installations, 12);
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address for the server (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Keep the demo's files here (default: a new directory under the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Stop when done instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Number of simulated installations.
    #[arg(long, default_value_t = 40)]
    pub installations: usize,
    /// Charts hide a bucket seen in fewer than this many reports in a week.
    #[arg(long, default_value_t = 10)]
    pub min_reports: u64,
    /// The example tool's executable (default: found next to this one, or
    /// built with cargo when run through `cargo run`).
    #[arg(long, value_name = "FILE")]
    pub tool: Option<PathBuf>,
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

/// Finds (or builds) the example tool.
fn find_tool(given: Option<&PathBuf>) -> Result<PathBuf, String> {
    if let Some(t) = given {
        return Ok(t.clone());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = exe.parent().ok_or("cannot find this program's directory")?;
    let name = format!("instrumented{}", std::env::consts::EXE_SUFFIX);
    let candidate = dir.join("examples").join(&name);
    if candidate.exists() {
        return Ok(candidate);
    }
    // Under `cargo run`, build the example with the same profile.
    let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Err(format!(
            "the example tool is not at {}; build it with `cargo build --release --example instrumented` or pass --tool",
            candidate.display()
        ));
    };
    let release = dir.ends_with("release");
    eprintln!("demo: building the example tool ...");
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--example")
        .arg("instrumented")
        .arg("--manifest-path")
        .arg(PathBuf::from(manifest).join("Cargo.toml"));
    if release {
        cmd.arg("--release");
    }
    let ok = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !ok.success() || !candidate.exists() {
        return Err("building the example tool failed".into());
    }
    Ok(candidate)
}

/// One run of the example tool in an installation, on a given day.
fn run_tool(
    tool: &Path,
    dir: &Path,
    day: chrono::NaiveDate,
    hour: u64,
    args: &[&str],
) -> Result<(), String> {
    let now = format!("{day}T{:02}:{:02}:00Z", 8 + hour % 12, (hour * 7) % 60);
    let out = Command::new(tool)
        .args(args)
        .env("CLEARCOUNT_DIR", dir)
        .env("CLEARCOUNT_NOW", &now)
        // Simulated installations are not the user's: their settings apply.
        .env_remove("DO_NOT_TRACK")
        .env_remove("EXAMPLE_TELEMETRY")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            tool.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The example tool's namespace.
const NAMESPACE: &str = "example";

/// Simulates one installation's four weeks of use. `dir` is the
/// installation's `CLEARCOUNT_DIR`.
fn simulate(tool: &Path, dir: &Path, seed: u64, today: chrono::NaiveDate) -> Result<(), String> {
    use chrono::Datelike;
    let ns_dir = dir.join(NAMESPACE);
    std::fs::create_dir_all(&ns_dir).map_err(|e| io("create", &ns_dir, e))?;
    // Opted in long before the weeks simulated; weeks start on today's
    // weekday so the last simulated week ends today.
    let since = today - chrono::Days::new(7 * WEEKS + 7);
    crate::mode::write_file(&ns_dir, Mode::On, since)
        .map_err(|e| io("write the mode in", &ns_dir, e))?;
    std::fs::write(
        ns_dir.join(crate::week::WEEK_START_FILE),
        format!("{}\n", today.weekday()),
    )
    .map_err(|e| io("write", &ns_dir, e))?;
    let mut rng = Rng(seed);
    // Each installation has a character: how busy, which durations, flags.
    let busy = 1 + rng.below(4);
    let slow = rng.below(4);
    let verbose = rng.chance(35);
    for w in 0..WEEKS {
        let begin = today - chrono::Days::new(7 * (WEEKS - w));
        if rng.chance(10) {
            continue; // not used that week
        }
        for run in 0..busy + rng.below(3) {
            let day = begin + chrono::Days::new(rng.below(7));
            let hour = rng.below(24) + run;
            match rng.below(6) {
                0 | 1 => run_tool(tool, dir, day, hour, &["hello"])?,
                2 => {
                    let n = (1 + rng.below(50)).to_string();
                    run_tool(tool, dir, day, hour, &["inc", "instrumented/inc", &n])?
                }
                3 => run_tool(tool, dir, day, hour, &["stack", "instrumented/stack"])?,
                4 => {
                    let buckets = ["<10ms", "<100ms", "<1s", ">=1s"];
                    let b = buckets[((rng.below(3) + slow) as usize).min(3)];
                    let name = format!("instrumented/duration:{b}");
                    run_tool(tool, dir, day, hour, &["inc", &name])?
                }
                _ => run_tool(tool, dir, day, hour, &["stack", "instrumented/stack-other"])?,
            }
            if verbose {
                run_tool(tool, dir, day, hour, &["inc", "instrumented/flag:verbose"])?;
            }
            if rng.chance(15) {
                // Not declared: counted locally, never collected.
                run_tool(
                    tool,
                    dir,
                    day,
                    hour,
                    &["inc", "instrumented/undeclared-thing"],
                )?;
            }
        }
    }
    Ok(())
}

/// Runs the demo.
///
/// ```no_run
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] demo: clearcount::cli::demo_cmd::DemoArgs }
/// clearcount::cli::demo_cmd::run(Cli::parse_from(["demo", "--exit"]).demo).unwrap();
/// ```
pub fn run(args: DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let data = match &args.data {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "clearcount-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    let keys = data.join("keys");
    let config_dir = data.join("config");
    let counters_dir = config_dir.join("counters");
    let installs = data.join("installations");
    let store = data.join("server");
    for d in [&keys, &counters_dir, &installs, &store] {
        std::fs::create_dir_all(d).map_err(|e| io("create", d, e))?;
    }
    let tool = find_tool(args.tool.as_ref())?;

    // 1. A throwaway key pair and a signed demo config.
    let public = keys.join("demo.pub");
    let secret = keys.join("demo.secret");
    if !public.exists() || !secret.exists() {
        let _ = std::fs::remove_file(&public);
        let _ = std::fs::remove_file(&secret);
        crate::sign::keygen(&public, &secret).map_err(|e| e.to_string())?;
    }
    let config = config_dir.join("config.toml");
    std::fs::write(&config, demo_config()).map_err(|e| io("write", &config, e))?;
    std::fs::write(counters_dir.join("instrumented.toml"), DECLARED)
        .map_err(|e| io("write", &counters_dir, e))?;
    crate::sign::sign(&secret, &config).map_err(|e| e.to_string())?;
    let public_key = std::fs::read_to_string(&public).map_err(|e| io("read", &public, e))?;

    // 2. The server, on its own runtime thread.
    let opts = crate::server::ServerOptions {
        addr: args.addr,
        data: store.to_string_lossy().into_owned(),
        config: Some(config.clone()),
        public_key: Some(public.clone()),
        counters: Some(counters_dir.clone()),
        min_reports: args.min_reports,
        merge_interval: Duration::from_secs(5),
    };
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let exit = args.exit;
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
                    if exit {
                        let _ = stop_rx.await;
                    } else {
                        tokio::select! {
                            _ = stop_rx => {}
                            _ = crate::server::shutdown_signal() => {}
                        }
                    }
                };
                let task = tokio::spawn(crate::server::serve_with_shutdown(
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

    // 3. Simulated installations, two at a time (one per core).
    let today = crate::clock::today();
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
                    let dir = installs.join(format!("{i:03}"));
                    if let Err(e) = simulate(&tool, &dir, 0xc1ea_7c00 + i as u64, today) {
                        errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner().unwrap_or_default().into_iter().next() {
        let _ = stop_tx.send(());
        return Err(e);
    }

    // 4. Weekly reports and uploads, through the real uploader.
    let settings = UploadSettings::new(
        &format!("{base}/upload"),
        &format!("{base}/config.toml"),
        &public_key,
    )
    .with_ceiling(1.0);
    let eff = Effective {
        mode: Mode::On,
        source: Source::File,
        on_since: Some(today - chrono::Days::new(7 * WEEKS + 7)),
    };
    let mut sent = 0usize;
    let mut problems = Vec::new();
    for i in 0..n {
        let dir = installs.join(format!("{i:03}")).join(NAMESPACE);
        let r = upload::run(
            &dir,
            Some(&settings),
            &eff,
            RunOptions {
                dry_run: false,
                deadline: None,
            },
        );
        let ok = r
            .weeks
            .iter()
            .filter(|(_, a)| matches!(a, upload::Action::Sent(_)))
            .count();
        sent += ok;
        if ok == 0 && !r.weeks.is_empty() {
            problems.push(format!("installation {i:03}: {}", r.summary));
        }
    }
    println!("demo: {sent} weekly reports uploaded");
    for p in problems.iter().take(3) {
        println!("demo: note: {p}");
    }

    // 5. The archive, rebuilt now (the server also does it on a schedule).
    let stats = crate::server::merge::merge_blocking(&store.to_string_lossy())?;
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
    println!("  counters:      {base}/counters");
    println!();
    println!("  files:");
    println!("    demo data     {}", data.display());
    println!("    server store  {}", store.display());
    println!(
        "    config        {} (+ .minisig), counters in {}",
        config.display(),
        counters_dir.display()
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
        println!("demo: done");
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
