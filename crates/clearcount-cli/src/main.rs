//! The `clearcount` command: one front end over the libraries, for people
//! and scripts.
//!
//! | command | what | code |
//! |---|---|---|
//! | `status`, `view`, `report`, `upload`, `on`, `off`, `local`, `clean` | see and control one toolchain's telemetry (`--namespace`) | the same commands a toolchain mounts as `mytool telemetry …` (`clearcount::kit::subcommand`; `view --web` with its feature `web-view`, served by `clearcount_server::local`) |
//! | `dump` | any counter file, every counter | `dump.rs`, over `clearcount::dump` |
//! | `config` | check, key pairs, sign, verify the collection config | `config_cmd.rs`, over `clearcount-protocol` |
//! | `config log-keygen`, `log-init`, `publish`, `cosign` | the config log, maintainer side | `log_cmd.rs`, over `clearcount_protocol::tlog` |
//! | `config audit` | anyone's audit of a config log, by URL or directory | `audit_cmd.rs` (HTTP: `http.rs`, ureq) |
//! | `witness` | witness keys and a witness server (C2SP tlog-witness) | `witness_cmd.rs` (axum) |
//! | `serve`, `merge` | the collection server, the archive rebuild | `serve_cmd.rs`, over `clearcount-server` |
//! | `demo` | the whole flow on this machine | `demo.rs` |
//!
//! `clearcount --help` lists the commands by who uses them ([`GROUPS`]).
//!
//! Errors are one line on stderr, never a panic. The exit status is the
//! same rule everywhere ([`EXIT_STATUS`]): 0 done, 1 refused or failed, 2
//! a usage error (clap's).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use clearcount::kit::subcommand::TelemetryCommand;

mod audit_cmd;
mod config_cmd;
mod demo;
mod dump;
mod http;
mod log_cmd;
mod serve_cmd;
mod witness_cmd;

/// The commands, by who uses them, in the order `--help` lists them.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Your telemetry (of the toolchain named by --namespace NS)",
        &[
            "status", "view", "report", "upload", "on", "off", "local", "clean", "dump",
        ],
    ),
    ("Config maintainers", &["config"]),
    ("Server operators", &["serve", "merge", "witness"]),
    ("Try the whole flow", &["demo"]),
];

/// The exit status rule, said in `--help` and followed by every command.
const EXIT_STATUS: &str =
    "Exit status: 0 done, 1 refused or failed (one line on stderr says why), 2 usage error.";

/// The help template: clap's, with the commands listed in [`GROUPS`].
fn help_template(cmd: &clap::Command) -> String {
    let width = GROUPS
        .iter()
        .flat_map(|(_, names)| names.iter())
        .map(|n| n.len())
        .max()
        .unwrap_or(0);
    let mut groups = String::new();
    for (heading, names) in GROUPS {
        groups.push_str(heading);
        groups.push_str(":\n");
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            groups.push_str(&format!("  {name:<width$}  {about}\n"));
        }
        groups.push('\n');
    }
    format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{groups}Options:\n{{options}}\n\nRun `clearcount COMMAND --help` for a command's options. {EXIT_STATUS}{{after-help}}"
    )
}

/// The command line, with the grouped help.
fn command() -> clap::Command {
    let cmd = Cli::command();
    let template = help_template(&cmd);
    cmd.help_template(template)
}

/// The `clearcount` command line.
#[derive(Debug, Parser)]
#[command(
    name = "clearcount",
    version,
    about = "Transparent, counter-based telemetry: see what is counted, what is sent, and switch it off"
)]
struct Cli {
    /// The toolchain whose telemetry to see or control (its namespace,
    /// e.g. `mytool`); for status, view, report, upload, on, off, local
    /// and clean.
    #[arg(long, value_name = "NS", env = "CLEARCOUNT_NAMESPACE")]
    namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Telemetry(TelemetryCommand),
    /// Print a counter file's metadata and every counter (files in use
    /// too).
    Dump {
        /// Print JSON (`counters-spec/file-format.md` §8) instead of text.
        #[arg(long)]
        json: bool,
        /// Counter files (`*.count`).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Check, sign and verify the collection config; publish it through
    /// the config log; audit a config log.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Witness config logs: key pairs, and a witness that cosigns only
    /// checkpoints consistent with what it saw.
    #[command(subcommand)]
    Witness(witness_cmd::WitnessCommand),
    /// Run the collection server and public archive.
    Serve(serve_cmd::ServeArgs),
    /// Rebuild the weekly archive files of a server's data, their tables
    /// (Parquet, CSV) and the static site.
    Merge(serve_cmd::MergeArgs),
    /// The whole flow on this machine: server, simulated installations,
    /// uploads, archive, charts.
    Demo(demo::DemoArgs),
    /// One run of a simulated installation's tool (the demo runs it).
    #[command(hide = true)]
    DemoTool(demo::ToolArgs),
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Telemetry(t) => {
            let Some(ns) = cli.namespace else {
                // A usage error (exit 2), with clap's usage line.
                command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "this command needs the toolchain's namespace: --namespace NS (or CLEARCOUNT_NAMESPACE=NS), e.g. --namespace mytool",
                    )
                    .exit()
            };
            clearcount::kit::subcommand::run_as(&format!("clearcount --namespace {ns}"), &ns, t)
        }
        Command::Dump { json, files } => dump::run(&files, json),
        Command::Config(c) => config_cmd::run(c),
        Command::Witness(c) => witness_cmd::run(c),
        Command::Serve(a) => serve_cmd::run_serve(a),
        Command::Merge(a) => serve_cmd::run_merge(a),
        Command::Demo(a) => demo::run(a),
        Command::DemoTool(a) => demo::tool(a),
    }
}

fn main() {
    // A simulated installation's tool starts telemetry before anything
    // else, as every instrumented program must (its upload child re-runs
    // this executable).
    demo::start_if_tool();
    let cli = match command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("clearcount: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command is listed once in the grouped help, under a group.
    #[test]
    fn every_command_is_in_one_group() {
        let cmd = Cli::command();
        let listed: Vec<&str> = GROUPS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        let mut visible: Vec<&str> = cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name())
            .collect();
        visible.sort_unstable();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, visible, "GROUPS lists each visible command once");
        let help = command().render_help().to_string();
        for (heading, names) in GROUPS {
            let at = help.find(&format!("{heading}:\n")).expect(heading);
            for name in *names {
                assert!(
                    help[at..].contains(&format!("\n  {name} ")),
                    "{name}:\n{help}"
                );
            }
        }
        assert!(help.contains(EXIT_STATUS), "{help}");
    }
}
