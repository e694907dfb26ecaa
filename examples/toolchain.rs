//! `mytool`: a fuller example toolchain using every helper of
//! [`clearcount::kit`]: the panic counter, flag counting with clap (and for
//! plain arguments), the mounted `telemetry` subcommand, the first-run
//! notice and a histogram.
//!
//! ```text
//! mytool [--verbose] build [--release] [--jobs N] [--name NAME] [--work-ms MS]
//! mytool crash [--name NAME]          panic (the message holds NAME)
//! mytool legacy [ARGS...]             count plain arguments against an allow-list
//! mytool telemetry on|off|local|status [--json]|view|report [--dry-run]|upload|clean
//! ```
//!
//! Run it with `cargo run --example toolchain --features kit -- build`.
//! Telemetry lives in namespace `mytool`: `MYTOOL_TELEMETRY=off` or
//! `DO_NOT_TRACK=1` turns it off, `mytool telemetry status` shows what is
//! counted.
//!
//! Its declared counters (`config/counters/mytool.toml`):
//!
//! ```toml
//! program = "mytool"
//!
//! [[counter]]
//! name = "mytool/command:{build,crash,legacy,telemetry.on,telemetry.local,telemetry.status,telemetry.view,telemetry.report,telemetry.upload,telemetry.clean}"
//! kind = "plain"
//! description = "One count per run, in the bucket of the subcommand run."
//! question = "Which subcommands are used?"
//!
//! [[counter]]
//! name = "mytool/flag:{verbose,release,jobs,j,name,work-ms,json,dry-run,upload-url,config-url,public-key,ceiling,timeout,other}"
//! kind = "plain"
//! description = "One count per run for each flag given on the command line. Never its value."
//! question = "Which flags are used, and which could go?"
//!
//! [[counter]]
//! name = "mytool/build-time:{<10ms,<100ms,<1s,>=1s}"
//! kind = "plain"
//! description = "How long a build took, as one count in one of four buckets. Never the time itself."
//! question = "Are builds fast enough, and do releases make them slower?"
//!
//! [[counter]]
//! name = "crash/panic"
//! kind = "stack"
//! depth = 16
//! description = "Where the tool panicked: function names and line offsets, at most 16 frames. Never the panic message."
//! question = "Where does the tool crash, and does a fix work?"
//! ```

use clap::{Parser, Subcommand};
use clearcount::Telemetry;
use clearcount::kit::histogram::Histogram;
use clearcount::kit::subcommand::TelemetryCommand;
use clearcount::kit::{flags, notice, panic};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The telemetry namespace: picks the directory and `MYTOOL_TELEMETRY`.
const NAMESPACE: &str = "mytool";
/// The program name, the prefix of its counters.
const PROGRAM: &str = "mytool";

/// Build times, in four buckets declared once.
static BUILD_TIME: Histogram = Histogram::durations_ms("mytool/build-time", &[10, 100, 1000]);

/// mytool: an example toolchain instrumented with clearcount.
#[derive(Debug, Parser)]
#[command(name = "mytool", version)]
struct Cli {
    /// Say more.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build (pretends to, for --work-ms milliseconds).
    Build {
        /// Optimize.
        #[arg(long)]
        release: bool,
        /// Parallel jobs.
        #[arg(long, short, default_value_t = 4)]
        jobs: u32,
        /// A name for the build (never counted: only that --name was given).
        #[arg(long)]
        name: Option<String>,
        /// How long the pretend build takes.
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
    },
    /// Panic, to show the panic counter (the message holds --name).
    Crash {
        /// Put into the panic message.
        #[arg(long, default_value = "nothing")]
        name: String,
    },
    /// Count plain arguments against an allow-list (for tools without clap).
    Legacy {
        /// Anything.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// See and control what mytool counts and sends.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
}

fn main() -> ExitCode {
    // 1. Start telemetry before anything else (an upload child stops here).
    let started = Telemetry::new(NAMESPACE, PROGRAM, env!("CARGO_PKG_VERSION")).start();
    // 2. Count panics from here on (the previous hook still prints them).
    panic::install(16);

    // 3. Parse, and count which flags and subcommand were used (in place
    //    of `Cli::parse()`; the clap command is built once).
    let cli: Cli = flags::parse(PROGRAM);
    if cli.verbose {
        eprintln!("telemetry: {started:?}");
    }

    // 4. Tell a person at a terminal, once, what is counted (not while
    //    they are managing telemetry itself).
    if !matches!(cli.command, Command::Telemetry(_)) {
        notice::show_once(NAMESPACE, None);
    }

    match cli.command {
        Command::Build {
            release,
            jobs,
            name,
            work_ms,
        } => {
            let t = Instant::now();
            build(release, jobs, name.as_deref(), work_ms);
            // 5. A histogram: the bucket is counted, never the time.
            BUILD_TIME.record_duration(t.elapsed());
        }
        Command::Crash { name } => crash_outer(&name),
        Command::Legacy { args } => {
            let counted = flags::count_args(PROGRAM, &args, &["verbose", "release", "jobs", "j"]);
            if cli.verbose {
                eprintln!("counted: {counted:?}");
            }
        }
        // 6. The mounted subcommand: the same as `clearcount --namespace mytool ...`.
        Command::Telemetry(t) => {
            if let Err(e) = clearcount::kit::subcommand::run(NAMESPACE, t) {
                eprintln!("mytool telemetry: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn build(release: bool, jobs: u32, name: Option<&str>, work_ms: u64) {
    std::thread::sleep(Duration::from_millis(work_ms.min(60_000)));
    let mode = if release { "release" } else { "debug" };
    println!(
        "built {} ({mode}, {jobs} jobs)",
        name.unwrap_or("mytool-project")
    );
}

#[inline(never)]
fn crash_outer(name: &str) {
    crash_here(name);
}

#[inline(never)]
fn crash_here(name: &str) {
    panic!("mytool crashed while handling {name}");
}
