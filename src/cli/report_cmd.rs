//! `clearcount view`, `report [--dry-run]`, `upload` and `clean`.
//!
//! Where reports go and the key that signs the config come from
//! `--upload-url`, `--config-url` and `--public-key FILE`, or the variables
//! `CLEARCOUNT_UPLOAD_URL`, `CLEARCOUNT_CONFIG_URL` and
//! `CLEARCOUNT_PUBLIC_KEY` (a file, or the key text itself). Without a
//! public key, clearcount's own published key is used.
//!
//! ```no_run
//! clearcount::cli::report_cmd::view("mytool").unwrap();
//! ```

use crate::upload::{self, Action, RunOptions, UploadSettings};
use crate::weekly;
use std::path::PathBuf;

/// Where to upload, for the commands that fetch the config or send.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UploadArgs {
    /// Where reports are POSTed.
    #[arg(long, env = "CLEARCOUNT_UPLOAD_URL")]
    pub upload_url: Option<String>,
    /// The signed collection config (`URL.minisig` is its signature).
    #[arg(long, env = "CLEARCOUNT_CONFIG_URL")]
    pub config_url: Option<String>,
    /// The minisign public key that signs the config (a file).
    #[arg(long, value_name = "FILE", env = "CLEARCOUNT_PUBLIC_KEY")]
    pub public_key: Option<PathBuf>,
    /// Reports whose X is above this are never sent.
    #[arg(long, default_value_t = 0.1)]
    pub ceiling: f64,
    /// Total time allowed for each request, in seconds (connect: 5 s at most).
    #[arg(long, default_value_t = 20.0)]
    pub timeout: f64,
}

impl UploadArgs {
    /// The settings these arguments give.
    ///
    /// ```
    /// let a = clearcount::cli::report_cmd::UploadArgs::default();
    /// assert!(a.settings().is_err());
    /// ```
    pub fn settings(&self) -> Result<UploadSettings, String> {
        let upload_url = self
            .upload_url
            .clone()
            .ok_or("no upload URL: pass --upload-url or set CLEARCOUNT_UPLOAD_URL")?;
        let config_url = self
            .config_url
            .clone()
            .ok_or("no config URL: pass --config-url or set CLEARCOUNT_CONFIG_URL")?;
        let key = match &self.public_key {
            None => crate::sign::PUBLIC_KEY.to_string(),
            Some(p) if p.is_file() => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read public key {}: {e}", p.display()))?,
            Some(p) => {
                let text = p.to_string_lossy().to_string();
                if text.starts_with("untrusted comment:") || !text.contains('/') {
                    text
                } else {
                    return Err(format!("public key file {} does not exist", p.display()));
                }
            }
        };
        if !(self.timeout > 0.0 && self.timeout <= 3600.0) {
            return Err(format!(
                "--timeout {} must be between 0 and 3600 seconds",
                self.timeout
            ));
        }
        let total = std::time::Duration::from_secs_f64(self.timeout);
        let connect = total.min(std::time::Duration::from_secs(5));
        Ok(UploadSettings::new(&upload_url, &config_url, &key)
            .with_ceiling(self.ceiling)
            .with_timeouts(connect, total))
    }
}

fn telemetry_dir(ns: &str) -> Result<PathBuf, String> {
    crate::dirs::telemetry_dir(ns)
        .ok_or_else(|| "no home directory: cannot locate telemetry".into())
}

fn table(rows: &[(String, u64)]) {
    let w = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).min(70);
    for (name, n) in rows {
        let shown = name.replace('\n', " | ");
        println!("  {shown:<w$}  {n:>10}");
    }
}

/// `clearcount view`: this week's counters and every local report, as
/// tables. Reads only.
///
/// ```no_run
/// clearcount::cli::report_cmd::view("mytool").unwrap();
/// ```
pub fn view(ns: &str) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let week = crate::cli::status_cmd::this_week(&dir);
    match week.begin {
        Some(b) => println!("this week (from {b}), not finished:"),
        None => println!("this week: nothing counted yet"),
    }
    let rows: Vec<(String, u64)> = week
        .counters
        .iter()
        .chain(week.stacks.iter())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if rows.is_empty() {
        println!("  (no counts)");
    }
    table(&rows);
    let state = upload::load_state(&dir);
    for w in weekly::report_weeks(&dir).iter().rev() {
        let sent = dir.join(crate::dirs::UPLOAD).join(format!("{w}.json"));
        let fate = if sent.exists() {
            format!("sent, copy in {}", sent.display())
        } else if let Some(d) = state.weeks.get(w) {
            format!("{}: {}", d.outcome, d.detail)
        } else {
            "not sent (yet)".into()
        };
        match weekly::read_full(&dir, w) {
            Ok(r) => {
                println!("\nweek {w} (X = {}; {fate}):", r.x);
                for p in &r.programs {
                    println!(" {} {} {} {}", p.program, p.version, p.os, p.arch);
                    let rows: Vec<(String, u64)> = p
                        .counters
                        .iter()
                        .chain(p.stacks.iter())
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    table(&rows);
                }
                if r.programs.is_empty() {
                    println!("  (no counts)");
                }
            }
            Err(e) => println!("\nweek {w}: {e}"),
        }
    }
    Ok(())
}

/// `clearcount report`: builds the reports of finished weeks; with
/// `--dry-run`, also prints the exact bytes that would be sent now (one
/// report per line), by the same code as the upload, sending nothing and
/// recording nothing. A dry run fetches the signed config when a report's X
/// is under the ceiling.
///
/// ```no_run
/// clearcount::cli::report_cmd::report("mytool", true, &Default::default()).unwrap();
/// ```
pub fn report(ns: &str, dry_run: bool, args: &UploadArgs) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let eff = crate::mode::effective(ns, Some(&dir), crate::mode::Mode::Local);
    if eff.mode == crate::mode::Mode::Off {
        return Err("telemetry is off: no reports are made".into());
    }
    if !dry_run {
        let b = weekly::build_pending(&dir, crate::clock::now());
        for w in &b.created {
            println!("made {}", weekly::full_path(&dir, w).display());
        }
        for p in &b.corrupt {
            println!("set aside corrupt counter file {}", p.display());
        }
        for p in &b.problems {
            eprintln!("clearcount: {p}");
        }
        if b.created.is_empty() {
            println!("no finished week to report");
        }
        return Ok(());
    }
    let s = args.settings()?;
    if eff.mode != crate::mode::Mode::On {
        eprintln!(
            "note: mode is {}: nothing is sent; shown is what would be sent in mode on",
            eff.mode
        );
    }
    let r = upload::run(
        &dir,
        Some(&s),
        &eff,
        RunOptions {
            dry_run: true,
            deadline: None,
        },
    );
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for (w, a) in &r.weeks {
        eprintln!("{}", upload::describe_action(w, a));
        if let Action::WouldSend(bytes) = a {
            let _ = out.write_all(bytes);
            let _ = out.write_all(b"\n");
        }
    }
    if r.weeks.is_empty() {
        eprintln!("nothing would be sent now");
    }
    Ok(())
}

/// `clearcount upload`: runs the upload now, in the foreground, whatever
/// the daily token says; prints what happened. Only in mode `on`.
///
/// ```no_run
/// clearcount::cli::report_cmd::upload("mytool", &Default::default()).unwrap();
/// ```
pub fn upload(ns: &str, args: &UploadArgs) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let eff = crate::mode::effective(ns, Some(&dir), crate::mode::Mode::Local);
    if eff.mode != crate::mode::Mode::On {
        return Err(format!(
            "mode is {}: nothing is uploaded (`{} on` turns uploading on)",
            eff.mode,
            crate::cli::invoked_as(ns)
        ));
    }
    let s = args.settings()?;
    let r = upload::run(
        &dir,
        Some(&s),
        &eff,
        RunOptions {
            dry_run: false,
            deadline: None,
        },
    );
    if r.weeks.is_empty() {
        println!("nothing to upload");
    }
    let mut retry = None;
    for (w, a) in &r.weeks {
        println!("{}", upload::describe_action(w, a));
        if let Action::Retry(why) = a {
            retry.get_or_insert(why.clone());
        }
    }
    match retry {
        Some(why) => Err(format!("upload did not complete: {why}")),
        None => Ok(()),
    }
}

/// `clearcount clean`: removes the local data (counter files, reports,
/// copies of sent reports, uploader state, corrupt files); keeps the mode
/// and the week start. Programs running now keep counting into their open
/// file until their next start.
///
/// ```no_run
/// clearcount::cli::report_cmd::clean("mytool").unwrap();
/// ```
pub fn clean(ns: &str) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let mut removed = 0;
    for sub in [
        crate::dirs::COUNTS,
        crate::dirs::REPORTS,
        crate::dirs::UPLOAD,
        crate::dirs::CORRUPT,
    ] {
        let p = dir.join(sub);
        match std::fs::remove_dir_all(&p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", p.display())),
        }
    }
    println!(
        "removed local telemetry data in {} ({removed} folders); the mode is kept",
        dir.display()
    );
    Ok(())
}
