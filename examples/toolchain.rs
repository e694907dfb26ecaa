//! `mytool`: a fuller example toolchain using every helper of
//! [`clearcount::kit`]: the panic counter, flag counting with clap (and for
//! plain arguments), the mounted `telemetry` subcommand, the first-run
//! notice, the opt-in prompt (`build --ask`) and a histogram.
//!
//! ```text
//! mytool [--verbose] build [--release] [--jobs N] [--name NAME] [--work-ms MS] [--ask]
//! mytool crash [--kind KIND] [--name NAME]
//!                                     crash: panic (the message holds NAME),
//!                                     segv, bus, ill, fpe, abort or overflow
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
//! name = "mytool/flag:{verbose,release,jobs,j,name,work-ms,ask,json,dry-run,upload-url,config-url,public-key,ceiling,timeout,other}"
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
//! name = "telemetry/prompt:{shown,yes,no,unanswered}"
//! kind = "plain"
//! description = "One count when the opt-in prompt (`build --ask`) was shown, and one for how it was answered."
//! question = "Do users who are asked opt in?"
//!
//! [[counter]]
//! name = "crash/panic"
//! kind = "stack"
//! depth = 16
//! description = "Where the tool panicked: function names and line offsets, at most 16 frames. Never the panic message."
//! question = "Where does the tool crash, and does a fix work?"
//!
//! [[counter]]
//! name = "crash/signal:{SIGSEGV,SIGBUS,SIGILL,SIGFPE,SIGABRT}"
//! kind = "plain"
//! description = "Which fatal signal ended the tool, if one did (a crash in unsafe or C code, an abort)."
//! question = "How often does the tool die of something other than a panic?"
//!
//! [[counter]]
//! name = "crash/signal-stack"
//! kind = "stack"
//! depth = 16
//! description = "Where a fatal signal hit: function names and line offsets, at most 16 frames; counted by the next run (Linux x86-64)."
//! question = "Where does the tool die of a signal?"
//! ```

use clap::{Parser, Subcommand};
use clearcount::Telemetry;
use clearcount::kit::histogram::Histogram;
use clearcount::kit::subcommand::TelemetryCommand;
use clearcount::kit::{crash, flags, notice, panic, prompt};
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
        /// Ask once whether to turn uploading on (the opt-in prompt), in
        /// place of the first-run notice.
        #[arg(long)]
        ask: bool,
    },
    /// Crash, to show the panic and crash counters.
    Crash {
        /// How: panic (the message holds --name), or die of a signal:
        /// segv, bus, ill, fpe, abort, overflow (of the stack).
        #[arg(long, default_value = "panic")]
        kind: String,
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
    // 2. Count panics and fatal signals from here on (the previous hook
    //    still prints a panic; a signal still ends the process as before).
    panic::install(16);
    crash::install();

    // 3. Parse, and count which flags and subcommand were used (in place
    //    of `Cli::parse()`; the clap command is built once).
    let cli: Cli = flags::parse(PROGRAM);
    if cli.verbose {
        eprintln!("telemetry: {started:?}");
    }

    // 4. Tell a person at a terminal, once, what is counted (not while
    //    they are managing telemetry itself); or, with `build --ask`, ask
    //    them once whether to turn uploading on (an opt-in toolchain would
    //    always ask, and start with `.default_mode(Mode::Off)`).
    match cli.command {
        Command::Build { ask: true, .. } => {
            prompt::ask_once(NAMESPACE, None);
        }
        Command::Telemetry(_) => {}
        _ => {
            notice::show_once(NAMESPACE, None);
        }
    }

    match cli.command {
        Command::Build {
            release,
            jobs,
            name,
            work_ms,
            ask: _,
        } => {
            let t = Instant::now();
            build(release, jobs, name.as_deref(), work_ms);
            // 5. A histogram: the bucket is counted, never the time.
            BUILD_TIME.record_duration(t.elapsed());
        }
        Command::Crash { kind, name } => {
            if kind == "panic" {
                crash_outer(&name)
            } else if !die_of(&kind) {
                eprintln!("mytool crash: no way to die of {kind:?} here");
                return ExitCode::from(2);
            }
        }
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

/// Dies of the fault `kind` names, the way a bug in unsafe or C code
/// would; false if this platform has no such fault.
fn die_of(kind: &str) -> bool {
    match kind {
        "abort" => std::process::abort(),
        // SAFETY: none, on purpose: a write through a null pointer.
        "segv" => unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) },
        "ill" => illegal_instruction(),
        "fpe" => divide_by_zero(),
        "bus" => return bus_error(),
        "overflow" => {
            std::hint::black_box(recurse(0));
        }
        _ => return false,
    }
    false
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn illegal_instruction() {
    // SAFETY: none, on purpose: `ud2` is the defined illegal instruction.
    unsafe { std::arch::asm!("ud2") };
}

#[cfg(target_arch = "aarch64")]
fn illegal_instruction() {
    // SAFETY: none, on purpose: a permanently undefined instruction.
    unsafe { std::arch::asm!("udf #0") };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
fn illegal_instruction() {
    std::process::abort();
}

#[cfg(target_arch = "x86_64")]
fn divide_by_zero() {
    // SAFETY: none, on purpose: an integer division by zero traps (SIGFPE
    // on unix, EXCEPTION_INT_DIVIDE_BY_ZERO on Windows).
    unsafe {
        std::arch::asm!("div {0:e}", in(reg) 0u32, inout("eax") 1u32 => _, inout("edx") 0u32 => _)
    };
}

#[cfg(not(target_arch = "x86_64"))]
fn divide_by_zero() {
    // Most other processors do not trap on a division by zero.
    std::process::abort();
}

/// A page of a mapped file that was cut short: SIGBUS when touched.
#[cfg(unix)]
fn bus_error() -> bool {
    let path = std::env::temp_dir().join(format!("mytool-bus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path);
    let Ok(file) = file else { return false };
    let _ = std::fs::remove_file(&path);
    if file.set_len(4096).is_err() {
        return false;
    }
    // SAFETY: none, on purpose: the file is cut to nothing under the
    // mapping, so the write below touches a page past its end.
    let Ok(mut map) = (unsafe { memmap2::MmapMut::map_mut(&file) }) else {
        return false;
    };
    if file.set_len(0).is_err() {
        return false;
    }
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile(map.as_mut_ptr(), 1) };
    false
}

#[cfg(not(unix))]
fn bus_error() -> bool {
    false
}

/// Recurses until the stack overflows.
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 32]);
    recurse(n + 1) + pad[1]
}
