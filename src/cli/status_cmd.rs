//! `clearcount status`, `clearcount dump` and `clearcount on|off|local`.
//!
//! `status` and `dump` only read: they never create a directory or a file,
//! whatever the mode.
//!
//! ```no_run
//! clearcount::cli::status_cmd::status("mytool", true).unwrap();
//! ```

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
///
/// ```
/// let w = clearcount::cli::status_cmd::this_week(std::path::Path::new("/nonexistent"));
/// assert!(w.files.is_empty());
/// ```
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
///
/// ```
/// assert!(clearcount::cli::status_cmd::read_file(std::path::Path::new("/no/such")).is_err());
/// ```
pub fn read_file(path: &Path) -> Result<Parsed, String> {
    format::read_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn telemetry_dir(ns: &str) -> Result<PathBuf, String> {
    crate::dirs::telemetry_dir(ns)
        .ok_or_else(|| "no home directory: cannot locate telemetry".into())
}

/// Prints the status of a namespace.
///
/// ```no_run
/// clearcount::cli::status_cmd::status("mytool", false).unwrap();
/// ```
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
    println!(
        "mode:       {} (from the {}){}",
        eff.mode,
        eff.source,
        eff.on_since
            .map(|d| format!(", uploads weeks from {d} on"))
            .unwrap_or_default()
    );
    println!(
        "turn off:   {} off, or {}=off, or DO_NOT_TRACK=1",
        crate::cli::invoked_as(ns),
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

/// Prints counter files: metadata and every counter.
///
/// ```no_run
/// clearcount::cli::status_cmd::dump(&["week.v1.count".into()], true).unwrap();
/// ```
pub fn dump(files: &[PathBuf], json: bool) -> Result<(), String> {
    let mut out = Vec::new();
    for f in files {
        let p = read_file(f)?;
        if json {
            // The shape is specified in counters-spec/file-format.md §8.
            out.push(json!({
                "file": f,
                "meta": {
                    "program": p.meta.program,
                    "version": p.meta.version,
                    "os": p.meta.os,
                    "arch": p.meta.arch,
                    "week_begin": p.meta.week_begin.to_string(),
                    "week_end": p.meta.week_end.to_string(),
                },
                "records": p.records,
                "counters": p.counters,
                "stacks": p.stacks,
            }));
        } else {
            println!("{}", f.display());
            print!("{}", p.meta.encode());
            for (k, v) in &p.counters {
                println!("{v:>10}  {k}");
            }
            for (k, v) in &p.stacks {
                println!("{v:>10}  {}", k.replace('\n', "\n            "));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(out)).unwrap_or_default()
        );
    }
    Ok(())
}

/// Sets the mode of a namespace (writes the mode file only).
///
/// ```no_run
/// clearcount::cli::status_cmd::set_mode("mytool", clearcount::mode::Mode::Local).unwrap();
/// ```
pub fn set_mode(ns: &str, m: Mode) -> Result<(), String> {
    let dir = telemetry_dir(ns)?;
    mode::write_file(&dir, m, crate::clock::today())
        .map_err(|e| format!("cannot write {}: {e}", dir.join(mode::MODE_FILE).display()))?;
    let eff = mode::effective(ns, Some(&dir), Mode::Local);
    println!("telemetry mode for {ns} set to {m}");
    if eff.mode != m {
        println!(
            "note: {} is in force for now (from the {})",
            eff.mode, eff.source
        );
    }
    if m == Mode::On {
        println!(
            "weeks that begin from today on may be uploaded; see `{} report --dry-run`",
            crate::cli::invoked_as(ns)
        );
    }
    Ok(())
}
