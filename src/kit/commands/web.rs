//! `view --web` (feature `web-view`): this installation's data as local
//! pages, served by the collection server's local view
//! (`clearcount_server::local`), which draws them with the public pages'
//! renderer and charts. This file only reads the telemetry directory for
//! it, by the same code as `status`, `view` and `report --dry-run`: the
//! two loops of `report.rs` that print a report's fate and the upload's
//! decisions are repeated here, collecting instead of printing, so that a
//! toolchain without this feature links nothing more (moving them into
//! shared functions cost the kit a kilobyte);
//! `crates/clearcount-cli/tests/view_web.rs` checks the pages against
//! `status --json`, the reports and `report --dry-run`.

use super::status::{mode_line, this_week};
use crate::format::Parsed;
use crate::mode::{self, Mode};
use crate::upload::{self, Action, RunOptions};
use crate::weekly;
use clearcount_server::local::{
    self, LocalData, LocalReport, LocalSource, NextUpload, NextWeek, Stopped, ViewOptions,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One installation, read afresh for every page.
struct Installation {
    ns: String,
    dir: PathBuf,
    command: String,
}

/// What became of a week's local report, as `view` says it.
fn fate(dir: &Path, state: &upload::State, week: &str) -> String {
    let sent = dir.join(crate::dirs::UPLOAD).join(format!("{week}.json"));
    if sent.exists() {
        format!("sent, copy in {}", sent.display())
    } else if let Some(d) = state.weeks.get(week) {
        format!("{}: {}", d.outcome, d.detail)
    } else {
        "not sent (yet)".into()
    }
}

impl LocalSource for Installation {
    fn data(&self) -> LocalData {
        let eff = mode::effective(&self.ns, Some(&self.dir), Mode::Local);
        let week = this_week(&self.dir);
        let parsed: Vec<Parsed> = week
            .files
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().cloned())
            .collect();
        let this_week = week
            .begin
            .map(|b| weekly::build_report(&b.to_string(), &parsed, 0.0))
            .filter(|r| !r.programs.is_empty());
        let state = upload::load_state(&self.dir);
        let reports = weekly::report_weeks(&self.dir)
            .into_iter()
            .map(|w| LocalReport {
                fate: fate(&self.dir, &state, &w),
                report: weekly::read_full(&self.dir, &w),
                week: w,
            })
            .collect();
        LocalData {
            namespace: self.ns.clone(),
            mode: mode_line(&self.ns, &eff),
            command: self.command.clone(),
            dir: self.dir.display().to_string(),
            week_begin: week.begin.map(|b| b.to_string()),
            files: week
                .files
                .iter()
                .map(|(p, r)| (p.display().to_string(), r.as_ref().err().cloned()))
                .collect(),
            counters: week.counters,
            stacks: week.stacks,
            this_week,
            reports,
            upload: upload::status(&self.ns, &self.dir).lines().to_vec(),
        }
    }

    fn next_upload(&self) -> NextUpload {
        let eff = mode::effective(&self.ns, Some(&self.dir), Mode::Local);
        let mut next = NextUpload::default();
        if eff.mode == Mode::Off {
            next.notes
                .push("telemetry is off: no reports are made, nothing is sent".into());
            return next;
        }
        // As `report --dry-run` (report.rs), collected instead of printed.
        if eff.mode != Mode::On {
            next.notes.push(format!(
                "note: mode is {}: nothing is sent; shown is what would be sent in mode on",
                eff.mode
            ));
        }
        let s = match upload::settings_for_commands(&self.ns, &self.dir) {
            Ok(s) => s,
            Err(why) => {
                next.notes.push(why);
                return next;
            }
        };
        let opts = RunOptions {
            dry_run: true,
            deadline: None,
        };
        let r = upload::run(&self.dir, Some(&s), &eff, opts);
        let text = |b: &[u8]| String::from_utf8_lossy(b.trim_ascii_end()).into_owned();
        for (w, a) in &r.weeks {
            let (what, bytes) = match a {
                Action::WouldSend(b) => (upload::describe_action(w, a), Some(text(b))),
                Action::Retry(why) => (
                    format!(
                        "week {w}: not sendable now ({why}); shown is the full local report: before it is sent, every counter the config does not declare, or whose rate is below its X, is left out"
                    ),
                    std::fs::read(weekly::full_path(&self.dir, w))
                        .ok()
                        .map(|b| text(&b)),
                ),
                _ => (upload::describe_action(w, a), None),
            };
            next.weeks.push(NextWeek {
                week: w.clone(),
                what,
                bytes,
            });
        }
        if r.weeks.is_empty() {
            next.notes.push("nothing would be sent now".into());
        }
        next
    }
}

/// `view --web`: serves the pages on `addr` (127.0.0.1 only; a free port
/// when `None`), prints their URL on one line (stdout), opens it in the
/// browser if `open`, and returns on Ctrl-C or after `idle` without a
/// request.
pub(crate) fn serve(
    ns: &str,
    addr: Option<&str>,
    open: bool,
    idle: Duration,
) -> Result<(), String> {
    let dir = crate::dirs::telemetry_dir(ns).ok_or("no home directory: cannot locate telemetry")?;
    let mut opts = ViewOptions {
        idle_timeout: idle,
        ..ViewOptions::default()
    };
    if let Some(a) = addr {
        opts.addr = a
            .parse()
            .map_err(|_| format!("--addr {a:?} is not an address (127.0.0.1:PORT)"))?;
        local::check_addr(opts.addr)?;
    }
    let source = Arc::new(Installation {
        ns: ns.to_string(),
        dir,
        command: super::invoked_as(ns),
    });
    let secs = idle.as_secs();
    let idle_words = if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    };
    let said = idle_words.clone();
    let stopped = local::run_blocking(opts, source, move |url| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
        eprintln!(
            "serving this machine's telemetry on 127.0.0.1 only; Ctrl-C stops it (it stops by itself after {said} without a request)"
        );
        if open && let Err(e) = opener::open_browser(url) {
            eprintln!("could not open a browser ({e}): open the URL above");
        }
    })?;
    match stopped {
        Stopped::Signal => eprintln!("stopped"),
        Stopped::Idle => eprintln!("stopped: no request for {idle_words}"),
    }
    Ok(())
}
