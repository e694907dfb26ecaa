//! The `clearcount` command line: one front end over the library, for
//! people and scripts.
//!
//! Each subcommand lives in its own file; this module only parses the
//! command line and dispatches. Errors are one line on stderr and a non-zero
//! exit status, never a panic.
//!
//! ```no_run
//! std::process::exit(clearcount::cli::main_with_args(["clearcount", "--namespace", "mytool", "status"]));
//! ```

#[cfg(feature = "cli")]
use clap::{Parser, Subcommand};

#[cfg(feature = "sign")]
pub mod config_cmd;
#[cfg(feature = "cli")]
pub mod demo_cmd;
pub mod report_cmd;
#[cfg(feature = "cli")]
pub mod serve_cmd;
pub mod status_cmd;

static INVOKED_AS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets how users reach these commands, for the hints they print (e.g.
/// `mytool telemetry` when mounted in a toolchain). The first call wins.
///
/// ```
/// clearcount::cli::set_invoked_as("mytool telemetry");
/// assert_eq!(clearcount::cli::invoked_as("mytool"), "mytool telemetry");
/// ```
pub fn set_invoked_as(prefix: &str) {
    let _ = INVOKED_AS.set(prefix.to_string());
}

/// The command prefix users type for a namespace: set by
/// [`set_invoked_as`], else `clearcount --namespace NS`.
///
/// ```
/// let p = clearcount::cli::invoked_as("ns");
/// assert!(p == "clearcount --namespace ns" || !p.is_empty());
/// ```
pub fn invoked_as(ns: &str) -> String {
    INVOKED_AS
        .get()
        .cloned()
        .unwrap_or_else(|| format!("clearcount --namespace {ns}"))
}

/// The `clearcount` command line.
#[cfg(feature = "cli")]
#[derive(Debug, Parser)]
#[command(
    name = "clearcount",
    version,
    about = "Transparent, counter-based telemetry: see what is counted, what is sent, and switch it off"
)]
pub struct Cli {
    /// The toolchain's telemetry namespace (e.g. `mytool`).
    #[arg(long, global = true, env = "CLEARCOUNT_NAMESPACE")]
    pub namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[cfg(feature = "cli")]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the mode, this week's counter files and their counts.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a counter file's metadata and every counter.
    Dump {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Counter files (`*.count`).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Count and upload weekly reports (from the next week on).
    On,
    /// Count nothing, write nothing, send nothing.
    Off,
    /// Count on this machine only; never upload.
    Local,
    /// Check, sign and verify the collection config.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run the collection server and public archive.
    Serve(serve_cmd::ServeArgs),
    /// Rebuild the weekly archive files of a server's data.
    Merge(serve_cmd::MergeArgs),
    /// The whole flow on this machine: server, simulated installations,
    /// uploads, archive, charts.
    Demo(demo_cmd::DemoArgs),
    /// Show this week's counters and past reports.
    View,
    /// Make reports of finished weeks; --dry-run prints the bytes that would be sent.
    Report {
        /// Print the exact bytes that would be sent now; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where to upload.
        #[command(flatten)]
        up: report_cmd::UploadArgs,
    },
    /// Upload now, in the foreground (mode on only).
    Upload(report_cmd::UploadArgs),
    /// Remove local telemetry data; keep the mode.
    Clean,
}

/// The namespace, or an error saying it is needed.
#[cfg(feature = "cli")]
pub(crate) fn need_namespace(ns: &Option<String>) -> Result<String, String> {
    let ns = ns
        .clone()
        .ok_or("this command needs --namespace NS (or CLEARCOUNT_NAMESPACE)")?;
    crate::dirs::check_namespace(&ns)?;
    Ok(ns)
}

/// Runs a parsed command line.
///
/// ```no_run
/// use clap::Parser;
/// let cli = clearcount::cli::Cli::parse_from(["clearcount", "--namespace", "t", "status"]);
/// clearcount::cli::run(cli).unwrap();
/// ```
#[cfg(feature = "cli")]
pub fn run(cli: Cli) -> Result<(), String> {
    let ns = cli.namespace;
    match cli.command {
        Command::Status { json } => status_cmd::status(&need_namespace(&ns)?, json),
        Command::Dump { json, files } => status_cmd::dump(&files, json),
        Command::On => status_cmd::set_mode(&need_namespace(&ns)?, crate::mode::Mode::On),
        Command::Off => status_cmd::set_mode(&need_namespace(&ns)?, crate::mode::Mode::Off),
        Command::Local => status_cmd::set_mode(&need_namespace(&ns)?, crate::mode::Mode::Local),
        Command::Config(c) => config_cmd::run(c),
        Command::Serve(a) => serve_cmd::run_serve(a),
        Command::Merge(a) => serve_cmd::run_merge(a),
        Command::Demo(a) => demo_cmd::run(a),
        Command::View => report_cmd::view(&need_namespace(&ns)?),
        Command::Report { dry_run, up } => report_cmd::report(&need_namespace(&ns)?, dry_run, &up),
        Command::Upload(up) => report_cmd::upload(&need_namespace(&ns)?, &up),
        Command::Clean => report_cmd::clean(&need_namespace(&ns)?),
    }
}

/// Parses `args`, runs, prints any error as one line, and returns the exit
/// status (0 on success).
///
/// ```no_run
/// let code = clearcount::cli::main_with_args(["clearcount", "dump", "/no/such.count"]);
/// assert_ne!(code, 0);
/// ```
#[cfg(feature = "cli")]
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("clearcount: {e}");
            1
        }
    }
}
