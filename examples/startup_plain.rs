//! The start-up benchmark's baseline (`benches/startup.rs`): the same small
//! clap tool as `startup_kit`, without clearcount.

use clap::{Parser, Subcommand};

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
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Build { release, jobs } => println!("built ({release}, {jobs} jobs)"),
        Command::Run { args } => println!("ran {args:?}"),
    }
}
