//! The start-up benchmark's toolchain with clearcount (`benches/startup.rs`):
//! `startup_plain` set up as the README tells toolchain authors to (upload
//! settings, the panic counter, flag counting, the mounted `telemetry`
//! subcommand, the first-run notice).

use clap::{Parser, Subcommand};
use clearcount::Telemetry;
use clearcount::upload::UploadSettings;

/// mytool: a small toolchain.
#[derive(Parser)]
#[command(name = "mytool", version)]
struct Cli {
    /// Say more.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build.
    Build {
        /// Optimize.
        #[arg(long)]
        release: bool,
        /// Parallel jobs.
        #[arg(long, short, default_value_t = 4)]
        jobs: u32,
    },
    /// Run.
    Run {
        /// Arguments.
        args: Vec<String>,
    },
    /// See and control what mytool counts and sends.
    #[command(subcommand)]
    Telemetry(clearcount::kit::subcommand::TelemetryCommand),
}

fn main() {
    let settings = UploadSettings::new(
        "https://telemetry.example.org/upload",
        "https://telemetry.example.org/config.toml",
        include_str!("../config/clearcount.pub"),
        include_str!("../config/log/policy"),
    )
    .with_minimum_checkpoint(include_str!("../config/log/minimum"));
    Telemetry::new("mytool", "mytool", env!("CARGO_PKG_VERSION"))
        .upload(settings)
        .start();
    clearcount::kit::panic::install(16);
    // In place of `Cli::parse()`: also counts flags and the subcommand.
    let cli: Cli = clearcount::kit::flags::parse("mytool");
    if !matches!(cli.command, Command::Telemetry(_)) {
        clearcount::kit::notice::show_once("mytool", None);
    }
    match cli.command {
        Command::Build { release, jobs } => println!("built ({release}, {jobs} jobs)"),
        Command::Run { args } => println!("ran {args:?}"),
        Command::Telemetry(t) => {
            if let Err(e) = clearcount::kit::subcommand::run("mytool", t) {
                eprintln!("mytool telemetry: {e}");
                std::process::exit(1);
            }
        }
    }
}
