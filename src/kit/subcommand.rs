//! The embedded subcommand: `mytool telemetry on|off|local|status|view|report|upload|clean`,
//! the same behaviour as the `clearcount` binary (it calls the same code),
//! so users meet one interface in every toolchain.
//!
//! Needs the `kit` feature (it reuses the `clearcount` binary's status and
//! report commands from [`crate::cli`], without the server).
//!
//! Mount it in the toolchain's clap command, then hand it to [`run`]:
//!
//! ```
//! use clap::{Parser, Subcommand};
//! use clearcount::kit::subcommand::TelemetryCommand;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Build things.
//!     Build,
//!     /// See and control what this tool counts and sends.
//!     #[command(subcommand)]
//!     Telemetry(TelemetryCommand),
//! }
//!
//! let cli = Cli::parse_from(["mytool", "telemetry", "status", "--json"]);
//! match cli.command {
//!     Command::Telemetry(t) => {
//!         # if false {
//!         clearcount::kit::subcommand::run("mytool", t).unwrap();
//!         # }
//!     }
//!     Command::Build => {}
//! }
//! ```

use crate::cli::report_cmd::{self, UploadArgs};
use crate::cli::status_cmd;
use crate::mode::Mode;

/// The `telemetry` subcommand's own subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TelemetryCommand {
    /// Count and upload weekly reports (from the next week on).
    On,
    /// Count nothing, write nothing, send nothing.
    Off,
    /// Count on this machine only; never upload.
    Local,
    /// Show the mode, this week's counter files and their counts.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show this week's counters and past reports.
    View,
    /// Make reports of finished weeks; --dry-run prints the bytes that would be sent.
    Report {
        /// Print the exact bytes that would be sent now; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where to upload.
        #[command(flatten)]
        up: UploadArgs,
    },
    /// Upload now, in the foreground (mode on only).
    Upload(UploadArgs),
    /// Remove local telemetry data; keep the mode.
    Clean,
}

/// The `telemetry` subcommand as clap arguments, for mounting with
/// `Telemetry(TelemetryArgs)` instead of `#[command(subcommand)]`.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// enum Cli {
///     /// See and control telemetry.
///     Telemetry(clearcount::kit::subcommand::TelemetryArgs),
/// }
/// let Cli::Telemetry(t) = Cli::parse_from(["mytool", "telemetry", "off"]);
/// assert!(matches!(t.command, clearcount::kit::subcommand::TelemetryCommand::Off));
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TelemetryCommand,
}

impl TelemetryCommand {
    /// Fills in where reports go and where the signed config is, for the
    /// commands that need them, when the user gave neither a flag nor an
    /// environment variable: a toolchain passes its own URLs here.
    ///
    /// ```
    /// use clearcount::kit::subcommand::TelemetryCommand;
    /// let c = TelemetryCommand::Upload(Default::default())
    ///     .with_urls("https://telemetry.example.org/upload", "https://telemetry.example.org/config/config.toml");
    /// let TelemetryCommand::Upload(up) = c else { unreachable!() };
    /// assert_eq!(up.upload_url.as_deref(), Some("https://telemetry.example.org/upload"));
    /// ```
    pub fn with_urls(mut self, upload_url: &str, config_url: &str) -> TelemetryCommand {
        if let TelemetryCommand::Report { up, .. } | TelemetryCommand::Upload(up) = &mut self {
            up.upload_url.get_or_insert_with(|| upload_url.to_string());
            up.config_url.get_or_insert_with(|| config_url.to_string());
        }
        self
    }
}

/// Runs a `telemetry` subcommand for `namespace`, by the same code as the
/// `clearcount` binary. Output goes to stdout; an error is one line,
/// returned for the caller to print.
///
/// ```no_run
/// use clearcount::kit::subcommand::{run, TelemetryCommand};
/// run("mytool", TelemetryCommand::Status { json: true }).unwrap();
/// ```
pub fn run(namespace: &str, cmd: TelemetryCommand) -> Result<(), String> {
    crate::cli::set_invoked_as(&format!("{namespace} telemetry"));
    crate::dirs::check_namespace(namespace)?;
    match cmd {
        TelemetryCommand::On => status_cmd::set_mode(namespace, Mode::On),
        TelemetryCommand::Off => status_cmd::set_mode(namespace, Mode::Off),
        TelemetryCommand::Local => status_cmd::set_mode(namespace, Mode::Local),
        TelemetryCommand::Status { json } => status_cmd::status(namespace, json),
        TelemetryCommand::View => report_cmd::view(namespace),
        TelemetryCommand::Report { dry_run, up } => report_cmd::report(namespace, dry_run, &up),
        TelemetryCommand::Upload(up) => report_cmd::upload(namespace, &up),
        TelemetryCommand::Clean => report_cmd::clean(namespace),
    }
}
