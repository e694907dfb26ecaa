//! `clearcount serve` and `clearcount merge`: the collection server and the
//! archive rebuild, as command-line subcommands.

use clearcount_server::ServerOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `clearcount serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) addr: SocketAddr,
    /// Data store, a directory or s3://bucket/prefix: reports, archive,
    /// config history, static site.
    #[arg(long, default_value = "./clearcount-data")]
    pub(crate) data: String,
    /// The collection config (signature read from FILE.minisig); reloaded
    /// when the file changes.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Minisign public key that must have signed the config.
    #[arg(long, value_name = "FILE")]
    pub(crate) public_key: Option<PathBuf>,
    /// Directory of declared-counter files (config/counters/*.toml).
    #[arg(long, value_name = "DIR")]
    pub(crate) counters: Option<PathBuf>,
    /// Charts hide a bucket seen in fewer than this many reports in a week.
    #[arg(long, default_value_t = 10)]
    pub(crate) min_reports: u64,
    /// Seconds between archive rebuilds.
    #[arg(long, default_value_t = 60)]
    pub(crate) merge_interval: u64,
}

impl ServeArgs {
    /// The server options these arguments stand for.
    pub(crate) fn options(&self) -> ServerOptions {
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
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MergeArgs {
    /// Data store, a directory or s3://bucket/prefix (as given to
    /// `clearcount serve`).
    #[arg(long, default_value = "./clearcount-data")]
    pub(crate) data: String,
    /// The static site's charts hide a bucket seen in fewer than this many
    /// reports in a week (as `clearcount serve --min-reports`).
    #[arg(long, default_value_t = 10)]
    pub(crate) min_reports: u64,
}

/// Runs the server until Ctrl-C or SIGTERM; prints its URL once listening.
pub(crate) fn run_serve(args: ServeArgs) -> Result<(), String> {
    let opts = args.options();
    let data = opts.data.clone();
    clearcount_server::run_blocking(opts, move |addr| {
        println!("clearcount serve: listening on http://{addr}/ (data in {data})");
    })
}

/// Rebuilds every week's archive file, then the static site; prints what it
/// did.
pub(crate) fn run_merge(args: MergeArgs) -> Result<(), String> {
    let stats = clearcount_server::merge_blocking(&args.data, args.min_reports)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// With no flags the server listens on loopback only, with the
    /// library's defaults; an interval of 0 is taken as one second.
    #[test]
    fn defaults_listen_on_loopback_only() {
        let o = Cli::parse_from(["serve"]).serve.options();
        assert_eq!(o.addr.to_string(), "127.0.0.1:8080");
        let d = ServerOptions::default();
        assert_eq!(
            (o.addr, o.data.as_str(), o.min_reports, o.merge_interval),
            (d.addr, d.data.as_str(), d.min_reports, d.merge_interval)
        );
        let o = Cli::parse_from(["serve", "--merge-interval", "0"])
            .serve
            .options();
        assert_eq!(o.merge_interval, Duration::from_secs(1));
    }
}
