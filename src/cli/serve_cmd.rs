//! `clearcount serve` and `clearcount merge`: the collection server and the
//! archive rebuild, as command-line subcommands.

use crate::server::{self, ServerOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `clearcount serve`.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] serve: clearcount::cli::serve_cmd::ServeArgs }
/// let cli = Cli::parse_from(["serve", "--addr", "127.0.0.1:0", "--min-reports", "3"]);
/// assert_eq!(cli.serve.min_reports, 3);
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Data store, a directory or s3://bucket/prefix: reports, archive,
    /// config history, static site.
    #[arg(long, default_value = "./clearcount-data")]
    pub data: String,
    /// The collection config (signature read from FILE.minisig); reloaded
    /// when the file changes.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Minisign public key that must have signed the config.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Directory of declared-counter files (config/counters/*.toml).
    #[arg(long, value_name = "DIR")]
    pub counters: Option<PathBuf>,
    /// Charts hide a bucket seen in fewer than this many reports in a week.
    #[arg(long, default_value_t = 10)]
    pub min_reports: u64,
    /// Seconds between archive rebuilds.
    #[arg(long, default_value_t = 60)]
    pub merge_interval: u64,
}

impl ServeArgs {
    /// The server options these arguments stand for.
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct Cli { #[command(flatten)] serve: clearcount::cli::serve_cmd::ServeArgs }
    /// let o = Cli::parse_from(["serve"]).serve.options();
    /// assert_eq!(o.addr.to_string(), "127.0.0.1:8080");
    /// ```
    pub fn options(&self) -> ServerOptions {
        ServerOptions {
            addr: self.addr,
            data: self.data.clone(),
            config: self.config.clone(),
            public_key: self.public_key.clone(),
            counters: self.counters.clone(),
            min_reports: self.min_reports,
            merge_interval: Duration::from_secs(self.merge_interval.max(1)),
        }
    }
}

/// Arguments of `clearcount merge`.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] merge: clearcount::cli::serve_cmd::MergeArgs }
/// let m = Cli::parse_from(["merge", "--data", "d", "--min-reports", "3"]).merge;
/// assert_eq!((m.data.as_str(), m.min_reports), ("d", 3));
/// ```
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// Data store, a directory or s3://bucket/prefix (as given to
    /// `clearcount serve`).
    #[arg(long, default_value = "./clearcount-data")]
    pub data: String,
    /// The static site's charts hide a bucket seen in fewer than this many
    /// reports in a week (as `clearcount serve --min-reports`).
    #[arg(long, default_value_t = 10)]
    pub min_reports: u64,
}

/// Runs the server until Ctrl-C or SIGTERM; prints its URL once listening.
///
/// ```no_run
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli { #[command(flatten)] serve: clearcount::cli::serve_cmd::ServeArgs }
/// clearcount::cli::serve_cmd::run_serve(Cli::parse_from(["serve"]).serve).unwrap();
/// ```
pub fn run_serve(args: ServeArgs) -> Result<(), String> {
    let opts = args.options();
    let data = opts.data.clone();
    server::run_blocking(opts, move |addr| {
        println!("clearcount serve: listening on http://{addr}/ (data in {data})");
    })
}

/// Rebuilds every week's archive file, then the static site; prints what it
/// did.
///
/// ```no_run
/// let args = clearcount::cli::serve_cmd::MergeArgs { data: "./clearcount-data".into(), min_reports: 10 };
/// clearcount::cli::serve_cmd::run_merge(args).unwrap();
/// ```
pub fn run_merge(args: MergeArgs) -> Result<(), String> {
    let opts = server::publish::PublishOptions {
        min_reports: args.min_reports,
    };
    let stats = server::merge::merge_blocking_with(&args.data, &opts)?;
    println!(
        "clearcount merge: {} reports in {} weekly archive files{}",
        stats.reports,
        stats.weeks,
        if stats.skipped > 0 {
            format!(" ({} invalid objects skipped)", stats.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}
