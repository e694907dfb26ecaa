//! `status` and `on|off|local`.
//!
//! `status` only reads: it never creates a directory or a file, whatever
//! the mode.

use crate::format::{self, Parsed};
use crate::mode::{self, Mode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// This week's counter files of an installation, and their merged counts.
#[derive(Debug, Default)]
pub struct Week {
    /// First day of the week, if the installation has a week start.
    pub begin: Option<chrono::NaiveDate>,
    /// The files, each parsed (or the reason it could not be).
    pub files: Vec<(PathBuf, Result<Parsed, String>)>,
    /// Plain counters, summed over the files.
    pub counters: BTreeMap<String, u64>,
    /// Stack counters, summed over the files.
    pub stacks: BTreeMap<String, u64>,
}

/// Reads this week's counter files in `dir` (nothing is written).
pub fn this_week(dir: &Path) -> Week {
    let mut week = Week::default();
    let Some(start) = crate::week::read_start(dir) else {
        return week;
    };
    let begin = crate::week::week_begin(crate::clock::today(), start);
    week.begin = Some(begin);
    let Ok(entries) = std::fs::read_dir(dir.join(crate::dirs::COUNTS)) else {
        return week;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(format::week_of_file_name)
                == Some(begin)
        })
        .collect();
    paths.sort();
    for p in paths {
        let parsed = read_file(&p);
        if let Ok(parsed) = &parsed {
            for (k, v) in &parsed.counters {
                *week.counters.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &parsed.stacks {
                *week.stacks.entry(k.clone()).or_default() += v;
            }
        }
        week.files.push((p, parsed));
    }
    week
}

/// Reads one counter file, in use or not, with a one-line error.
pub fn read_file(path: &Path) -> Result<Parsed, String> {
    format::read_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn telemetry_dir(ns: &str) -> Result<PathBuf, String> {
    crate::dirs::telemetry_dir(ns)
        .ok_or_else(|| "no home directory: cannot locate telemetry".into())
}

/// Prints the status of a namespace.
pub fn status(ns: &str, json: bool) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    let eff = mode::effective(ns, Some(&dir), Mode::Local);
    let week = this_week(&dir);
    #[cfg(feature = "upload")]
    let upload = crate::upload::status(ns, &dir);
    if json {
        let files: Vec<Value> = week
            .files
            .iter()
            .map(|(p, r)| match r {
                Ok(_) => json!({"path": p, "ok": true}),
                Err(e) => json!({"path": p, "ok": false, "error": e}),
            })
            .collect();
        #[allow(unused_mut)]
        let mut v = json!({
            "namespace": ns,
            "mode": eff.mode.to_string(),
            "mode_source": eff.source.to_string(),
            "on_since": eff.on_since.map(|d| d.to_string()),
            "env_var": mode::env_var(ns),
            "dir": dir,
            "week_begin": week.begin.map(|d| d.to_string()),
            "files": files,
            "counters": week.counters,
            "stacks": week.stacks,
        });
        #[cfg(feature = "upload")]
        {
            v["upload"] = upload.to_json();
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!("namespace:  {ns}");
    println!("mode:       {}", mode_line(ns, &eff));
    println!(
        "turn off:   {} off, or {}=off, or DO_NOT_TRACK=1",
        super::invoked_as(ns),
        mode::env_var(ns)
    );
    println!("directory:  {}", dir.display());
    match week.begin {
        Some(b) => println!("this week:  {b} to {}", b + chrono::Days::new(7)),
        None => println!("this week:  nothing counted yet"),
    }
    for (p, r) in &week.files {
        match r {
            Ok(_) => println!("file:       {}", p.display()),
            Err(e) => println!("file:       {} (unreadable: {e})", p.display()),
        }
    }
    if !week.counters.is_empty() {
        println!("\ncounters this week:");
        for (k, v) in &week.counters {
            println!("  {v:>10}  {k}");
        }
    }
    if !week.stacks.is_empty() {
        println!("\nstack counters this week:");
        for (k, v) in &week.stacks {
            let mut lines = k.lines();
            println!("  {v:>10}  {}", lines.next().unwrap_or(""));
            for l in lines {
                println!("              {l}");
            }
        }
    }
    #[cfg(feature = "upload")]
    {
        println!();
        for line in upload.lines() {
            println!("{line}");
        }
    }
    Ok(())
}

/// The mode, why it is in force, and for `on` which weeks are uploaded.
fn mode_line(ns: &str, eff: &mode::Effective) -> String {
    let why = match eff.source {
        mode::Source::DoNotTrack => "set by DO_NOT_TRACK".to_string(),
        mode::Source::Env => format!("set by {}", mode::env_var(ns)),
        mode::Source::File => "set in the mode file".to_string(),
        mode::Source::Default => "the default".to_string(),
    };
    match (eff.mode, eff.on_since) {
        (Mode::On, Some(d)) => {
            format!("on ({why}; {})", ON_MEANS.replace("today", &format!("{d}")))
        }
        (Mode::On, None) => format!("on ({why}; {ON_MEANS})"),
        (m, _) => format!("{m} ({why})"),
    }
}

/// What `on` means, said the same way everywhere.
pub(crate) const ON_MEANS: &str =
    "reports of the weeks that begin on or after today may be uploaded";

/// Sets the mode of a namespace (writes the mode file only).
pub fn set_mode(ns: &str, m: Mode) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    mode::write_file(&dir, m, crate::clock::today())
        .map_err(|e| format!("cannot write {}: {e}", dir.join(mode::MODE_FILE).display()))?;
    let eff = mode::effective(ns, Some(&dir), Mode::Local);
    println!("telemetry mode for {ns} set to {m}");
    if eff.mode != m {
        println!("note: in force for now: {}", mode_line(ns, &eff));
    }
    if m == Mode::On {
        let since = eff.on_since.unwrap_or_else(crate::clock::today);
        let first = match crate::week::read_start(&dir) {
            Some(start) => {
                let b = crate::week::week_begin(since, start);
                if b == since {
                    b
                } else {
                    b + chrono::Days::new(7)
                }
            }
            None => since,
        };
        println!(
            "{} (the first begins on {first}); see `{} report --dry-run` for what would be sent",
            ON_MEANS.replace("today", &since.to_string()),
            super::invoked_as(ns)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_installation_reads_as_nothing_counted() {
        let w = this_week(Path::new("/nonexistent/clearcount"));
        assert!(w.begin.is_none() && w.files.is_empty() && w.counters.is_empty());
        let e = read_file(Path::new("/no/such.v1.count")).unwrap_err();
        assert!(e.starts_with("/no/such.v1.count: "), "{e}");
    }
}
