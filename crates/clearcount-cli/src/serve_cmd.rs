//! `clearcount serve` and `clearcount merge`: the collection server and the
//! archive rebuild, as command-line subcommands.

use clearcount_server::{Limits, ServerOptions};
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
    /// when it, its signature or its config log changes. Served only if it
    /// verifies with --public-key and is the latest entry of the config log.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Minisign public key that must have signed the config (required with
    /// --config).
    #[arg(long, value_name = "FILE")]
    pub(crate) public_key: Option<PathBuf>,
    /// The config log (the directory `clearcount config publish` writes):
    /// the config must be its latest entry, under a checkpoint signed by
    /// its key (and cosigned as its policy requires). Served at /log/ with
    /// the proofs at /config.toml.proof. Default: log/ beside the config.
    #[arg(long, value_name = "DIR")]
    pub(crate) log: Option<PathBuf>,
    /// Another config log the config is also the latest entry of, during a
    /// move to a new log key or a new log (counters-spec/config-log.md
    /// §13): releases that compile in its key are answered from it, every
    /// other client from --log. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub(crate) also_log: Vec<PathBuf>,
    /// Directory of declared-counter files (`<program>.toml`, e.g. counters/).
    #[arg(long, value_name = "DIR")]
    pub(crate) counters: Option<PathBuf>,
    /// Charts hide a bucket seen in fewer than this many reports in a week,
    /// and the archive's tables (Parquet, CSV) leave out a row fewer
    /// reports of its week have.
    #[arg(long, default_value_t = 10)]
    pub(crate) min_reports: u64,
    /// Serve /metrics (OpenMetrics text, for operators) on this address, a
    /// different one from --addr (keep it private: it has no access
    /// control). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Seconds between archive rebuilds.
    #[arg(long, default_value_t = 60)]
    pub(crate) merge_interval: u64,
    /// Connections served at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub(crate) max_connections: usize,
    /// MiB of upload bodies being received at once; past it, 503 with
    /// Retry-After.
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().max_upload_bytes >> 20)]
    pub(crate) max_upload_mib: usize,
    /// Uploads one source may send per minute (429 with Retry-After past
    /// it; 0: no limit). Sources are kept in memory only, by a salted hash
    /// that changes daily.
    #[arg(long, value_name = "N", default_value_t = Limits::default().uploads_per_minute)]
    pub(crate) rate_limit: u32,
    /// Uploads one source may send in a burst.
    #[arg(long, value_name = "N", default_value_t = Limits::default().upload_burst)]
    pub(crate) rate_burst: u32,
    /// Behind a reverse proxy: the header it puts the client's address in
    /// (X-Forwarded-For: its last entry; X-Real-IP, ...). Only when every
    /// request comes through that proxy, or clients pick their own source.
    #[arg(long, value_name = "HEADER")]
    pub(crate) client_ip_header: Option<String>,
    /// Seconds between asking the witnesses of the config log's policy
    /// (those with a URL) to cosign its latest checkpoint again; their
    /// fresh cosignatures are added to the log directory, and served. So a
    /// log whose config does not change stays fresh for clients that
    /// refuse old cosignatures. 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 6 * 3600)]
    pub(crate) recosign_every: u64,
}

impl ServeArgs {
    /// The server options these arguments stand for.
    pub(crate) fn options(&self) -> ServerOptions {
        ServerOptions {
            addr: self.addr,
            data: self.data.clone(),
            config: self.config.clone(),
            public_key: self.public_key.clone(),
            log: self.log.clone(),
            also_logs: self.also_log.clone(),
            counters: self.counters.clone(),
            min_reports: self.min_reports,
            merge_interval: Duration::from_secs(self.merge_interval.max(1)),
            limits: Limits {
                max_connections: self.max_connections,
                max_upload_bytes: self.max_upload_mib.max(1) << 20,
                uploads_per_minute: self.rate_limit,
                upload_burst: self.rate_burst,
                client_ip_header: self.client_ip_header.clone(),
                ..Limits::default()
            },
            metrics_addr: self.metrics_addr,
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
    /// reports in a week, and the tables leave out a row fewer reports of
    /// its week have (as `clearcount serve --min-reports`).
    #[arg(long, default_value_t = 10)]
    pub(crate) min_reports: u64,
    /// Rebuild only the tables (archive/WEEK.parquet and .csv) from the
    /// archive files already there: after a change of --min-reports, or in
    /// a copy of a published archive (DIR/archive/WEEK.ndjson).
    #[arg(long)]
    pub(crate) tables_only: bool,
}

/// Runs the server until Ctrl-C or SIGTERM; prints its URL once listening.
/// With a config log and `--recosign-every`, a thread asks the log's
/// witnesses for fresh cosignatures on that schedule (the server picks up
/// the changed checkpoint within a second).
pub(crate) fn run_serve(args: ServeArgs) -> Result<(), String> {
    let opts = args.options();
    if let (Some(log), true) = (opts.log_dir(), args.recosign_every > 0) {
        let every = Duration::from_secs(args.recosign_every);
        std::thread::Builder::new()
            .name("clearcount-recosign".into())
            .spawn(move || recosign_loop(&log, every))
            .map_err(|e| format!("cannot start the re-cosigning thread: {e}"))?;
    }
    let data = opts.data.clone();
    clearcount_server::run_blocking(opts, move |addr| {
        println!("clearcount serve: listening on http://{addr}/ (data in {data})");
    })
}

/// Every `every`, asks the config log's witnesses to cosign its latest
/// checkpoint again (one line for each answer or failure).
fn recosign_loop(log: &std::path::Path, every: Duration) {
    let mut said_none = false;
    loop {
        std::thread::sleep(every);
        match crate::log_cmd::recosign(log) {
            Ok(true) => said_none = false,
            Ok(false) if !said_none => {
                said_none = true;
                eprintln!(
                    "clearcount serve: the config log's policy lists no witness with a URL: no cosignature to refresh"
                );
            }
            Ok(false) => {}
            Err(e) => eprintln!("clearcount serve: refreshing the config log's cosignatures: {e}"),
        }
    }
}

/// Rebuilds every week's archive file, then the static site; prints what it
/// did.
pub(crate) fn run_merge(args: MergeArgs) -> Result<(), String> {
    if !args.data.contains("://") && !std::path::Path::new(&args.data).is_dir() {
        return Err(format!(
            "{} is not a directory: give the data store `clearcount serve --data` writes",
            args.data
        ));
    }
    if args.tables_only {
        let t = clearcount_server::tables_blocking(&args.data, args.min_reports)?;
        println!(
            "clearcount merge: tables of {} weeks: {} rows from {} reports ({} rows of fewer than {} reports left out)",
            t.weeks,
            t.rows,
            t.reports,
            t.hidden,
            args.min_reports.max(1)
        );
        return Ok(());
    }
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
