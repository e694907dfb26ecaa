//! The embedded subcommand: `mytool telemetry on|off|local|status|view|report|upload|clean`,
//! the same behaviour as the `clearcount` binary (it calls the same code),
//! so users meet one interface in every toolchain.
//!
//! The `clearcount` command runs the same code for its user commands.
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

use super::commands::report as report_cmd;
use super::commands::status as status_cmd;
use crate::mode::Mode;

/// The names of [`TelemetryCommand`]'s subcommands (how flag counting
/// recognizes the mounted subcommand without building it again).
pub(crate) const NAMES: &[&str] = &[
    "on", "off", "local", "status", "view", "report", "upload", "clean",
];

/// Whether a command line (the program's name first, as
/// `std::env::args_os()` gives it) runs the mounted `telemetry off`: the
/// words `telemetry` and `off` side by side, before any `--`. Read by
/// [`crate::Telemetry::start`], before the toolchain parses its command
/// line, so that this run starts off and writes nothing but the mode file.
/// Two such words given as another command's values only leave that run
/// uncounted.
pub(crate) fn turns_off<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    let mut previous_was_telemetry = false;
    for a in args.into_iter().skip(1) {
        if a == "--" {
            return false;
        }
        if previous_was_telemetry && a == "off" {
            return true;
        }
        previous_was_telemetry = a == "telemetry";
    }
    false
}

/// The `telemetry` subcommand's own subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TelemetryCommand {
    /// Count and upload weekly reports: those of the weeks that begin on or
    /// after today.
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
    /// Show this week's counters and past reports; with --web, as local web pages with charts.
    ///
    /// Its options other than `--web` exist with the feature `web-view`
    /// only (the kit stays small without it): match it with `..`.
    #[non_exhaustive]
    View {
        /// Serve the pages on 127.0.0.1, behind a random token in the URL
        /// (printed on one line), until Ctrl-C or --idle-timeout.
        #[arg(long)]
        web: bool,
        /// With --web: where to listen (127.0.0.1 only; default: a free port).
        #[cfg(feature = "web-view")]
        #[arg(long, value_name = "127.0.0.1:PORT", requires = "web")]
        addr: Option<String>,
        /// With --web: open the pages in the browser.
        #[cfg(feature = "web-view")]
        #[arg(long, requires = "web")]
        open: bool,
        /// With --web: stop after this many seconds without a request [default: 1800].
        #[cfg(feature = "web-view")]
        #[arg(long, value_name = "SECONDS", requires = "web")]
        idle_timeout: Option<u64>,
    },
    /// Make reports of finished weeks; --dry-run prints the bytes that would be sent.
    Report {
        /// Print the exact bytes the background upload would send now
        /// (the toolchain's own settings; send and record nothing).
        #[arg(long)]
        dry_run: bool,
    },
    /// Upload now, in the foreground (mode on only).
    Upload,
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

/// Runs a `telemetry` subcommand for `namespace`, by the same code as the
/// `clearcount` binary. Output goes to stdout; an error is one line,
/// returned for the caller to print.
pub fn run(namespace: &str, cmd: TelemetryCommand) -> Result<(), String> {
    run_as(&format!("{namespace} telemetry"), namespace, cmd)
}

/// [`run`], for a front end whose users type `command` to reach these
/// commands (it appears in the hints they print), such as `clearcount
/// --namespace mytool`.
pub fn run_as(command: &str, namespace: &str, cmd: TelemetryCommand) -> Result<(), String> {
    super::commands::set_invoked_as(command);
    crate::dirs::check_namespace(namespace)?;
    match cmd {
        TelemetryCommand::On => status_cmd::set_mode(namespace, Mode::On),
        TelemetryCommand::Off => status_cmd::set_mode(namespace, Mode::Off),
        TelemetryCommand::Local => status_cmd::set_mode(namespace, Mode::Local),
        TelemetryCommand::Status { json } => status_cmd::status(namespace, json),
        TelemetryCommand::View { web: false, .. } => report_cmd::view(namespace),
        #[cfg(feature = "web-view")]
        TelemetryCommand::View {
            web: true,
            addr,
            open,
            idle_timeout,
        } => view_web(namespace, addr.as_deref(), open, idle_timeout),
        #[cfg(not(feature = "web-view"))]
        TelemetryCommand::View { web: true, .. } => Err(no_web_view(namespace)),
        TelemetryCommand::Report { dry_run } => report_cmd::report(namespace, dry_run),
        TelemetryCommand::Upload => report_cmd::upload(namespace),
        TelemetryCommand::Clean => report_cmd::clean(namespace),
    }
}

/// How long `view --web` waits for a request before it stops, unless told
/// (`--idle-timeout`).
#[cfg(feature = "web-view")]
pub const WEB_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `view --web`: the local pages (feature `web-view`).
#[cfg(feature = "web-view")]
fn view_web(ns: &str, addr: Option<&str>, open: bool, idle: Option<u64>) -> Result<(), String> {
    let idle = idle.map_or(WEB_IDLE_TIMEOUT, std::time::Duration::from_secs);
    super::commands::web::serve(ns, addr, open, idle)
}

/// `view --web` in a toolchain built without the feature `web-view`: which
/// command serves the pages.
#[cfg(not(feature = "web-view"))]
fn no_web_view(ns: &str) -> String {
    format!(
        "this build of {ns} has no web view: run `clearcount --namespace {ns} view --web` (the clearcount command, package clearcount-cli), or `{} view` for tables",
        super::commands::invoked_as(ns)
    )
}

#[cfg(test)]
mod tests {
    use super::turns_off;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn the_command_line_of_telemetry_off_is_recognized() {
        for yes in [
            &["mytool", "telemetry", "off"][..],
            &["mytool", "--verbose", "telemetry", "off"],
            &["mytool", "telemetry", "off", "--verbose"],
        ] {
            assert!(turns_off(args(yes)), "{yes:?}");
        }
        for no in [
            &["mytool", "telemetry", "on"][..],
            &["mytool", "telemetry", "status"],
            &["mytool", "off"],
            &["telemetry", "off"],
            &["mytool", "telemetry"],
            &["mytool", "run", "--", "telemetry", "off"],
            &["mytool", "telemetry", "local", "off"],
        ] {
            assert!(!turns_off(args(no)), "{no:?}");
        }
    }

    #[cfg(not(feature = "web-view"))]
    #[test]
    fn without_the_feature_the_command_to_run_is_named() {
        let m = super::no_web_view("mytool");
        assert!(
            m.contains("run `clearcount --namespace mytool view --web`"),
            "{m}"
        );
    }
}
