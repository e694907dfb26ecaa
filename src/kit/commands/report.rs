//! `view`, `report [--dry-run]`, `upload` and `clean`.
//!
//! `report --dry-run` and `upload` use the toolchain's own upload settings
//! (`upload/settings.rs`): the dry run takes the path the background upload
//! takes, sending and recording nothing.
//!
//! Exit status (every command: 0 done, 1 refused or failed): `report` when
//! off is refused (no report is made); `report --dry-run` when off is done:
//! it answers that nothing would be sent; `upload` fails when a report was
//! kept for a later day, refused by the server, or unreadable.

use crate::upload::{self, Action, RunOptions};
use crate::weekly;
use std::path::PathBuf;

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
pub fn view(ns: &str) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let week = super::status::this_week(&dir);
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
pub fn report(ns: &str, dry_run: bool) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let eff = crate::mode::effective(ns, Some(&dir), crate::mode::Mode::Local);
    if eff.mode == crate::mode::Mode::Off {
        if dry_run {
            eprintln!("telemetry is off: nothing would be sent");
            return Ok(());
        }
        return Err(format!(
            "telemetry is off: no reports are made (`{} local` turns counting back on)",
            super::invoked_as(ns)
        ));
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
    if eff.mode != crate::mode::Mode::On {
        eprintln!(
            "note: mode is {}: nothing is sent; shown is what would be sent in mode on",
            eff.mode
        );
    }
    let s = match upload::settings_for_commands(ns, &dir) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("{why}");
            return Ok(());
        }
    };
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
        match a {
            Action::WouldSend(bytes) => {
                eprintln!("{}", upload::describe_action(w, a));
                let _ = out.write_all(bytes);
                let _ = out.write_all(b"\n");
            }
            Action::Retry(why) => {
                // No config (no network, or a bad one): show what is kept
                // here, and what filtering would do to it.
                eprintln!(
                    "week {w}: not sendable now ({why}); shown is the full local report: before it is sent, every counter the config does not declare, or whose rate is below its X, is left out"
                );
                if let Ok(bytes) = std::fs::read(weekly::full_path(&dir, w)) {
                    let _ = out.write_all(bytes.trim_ascii_end());
                    let _ = out.write_all(b"\n");
                }
            }
            _ => eprintln!("{}", upload::describe_action(w, a)),
        }
    }
    if r.weeks.is_empty() {
        eprintln!("nothing would be sent now");
    }
    Ok(())
}

/// `clearcount upload`: runs the upload now, in the foreground, whatever
/// the daily token says; prints what happened. Only in mode `on`.
pub fn upload(ns: &str) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let eff = crate::mode::effective(ns, Some(&dir), crate::mode::Mode::Local);
    if eff.mode != crate::mode::Mode::On {
        return Err(format!(
            "mode is {}: nothing is uploaded (`{} on` turns uploading on)",
            eff.mode,
            super::invoked_as(ns)
        ));
    }
    let s = upload::settings_for_commands(ns, &dir)?;
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
    let mut failed = Vec::new();
    for (w, a) in &r.weeks {
        println!("{}", upload::describe_action(w, a));
        match a {
            Action::Retry(why) => failed.push(format!("week {w} kept for a later day ({why})")),
            Action::Dropped(why) => failed.push(format!("week {w} dropped: the {why}")),
            Action::Unreadable(why) => failed.push(format!("week {w} unreadable ({why})")),
            _ => {}
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("upload did not complete: {}", failed.join("; ")))
    }
}

/// `clearcount clean`: removes the local data (counter files, reports,
/// copies of sent reports, uploader state, corrupt files, crash stacks not
/// yet named); keeps the mode
/// and the week start. Programs running now keep counting into their open
/// file until their next start.
pub fn clean(ns: &str) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let mut removed = 0;
    for sub in [
        crate::dirs::COUNTS,
        crate::dirs::REPORTS,
        crate::dirs::UPLOAD,
        crate::dirs::CORRUPT,
        crate::dirs::CRASHES,
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
