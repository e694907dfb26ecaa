//! `status` and `on|off|local`.
//!
//! `status` only reads: it never creates a directory or a file, whatever
//! the mode.

use crate::format::{self, Parsed};
use crate::mode::{self, Mode};
use clearcount_protocol::json::{self, Value};
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
    paths.sort_unstable();
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
    let crashes = crash_records(&dir);
    #[cfg(feature = "upload")]
    let upload = crate::upload::status(ns, &dir);
    if json {
        let path = |p: &Path| Value::string(p.to_string_lossy());
        let files: Vec<Value> = week
            .files
            .iter()
            .map(|(p, r)| {
                let mut f = vec![
                    ("path".into(), path(p)),
                    ("ok".into(), Value::Bool(r.is_ok())),
                ];
                if let Err(e) = r {
                    f.push(("error".into(), Value::string(e)));
                }
                Value::Object(f)
            })
            .collect();
        let counts = |m: &BTreeMap<String, u64>| {
            Value::Object(
                m.iter()
                    .map(|(k, n)| (k.clone(), Value::from_u64(*n)))
                    .collect(),
            )
        };
        #[allow(unused_mut)]
        let mut v: Vec<(String, Value)> = vec![
            ("counters".into(), counts(&week.counters)),
            ("crash_records".into(), Value::from_u64(crashes as u64)),
            ("dir".into(), path(&dir)),
            ("env_var".into(), Value::string(mode::env_var(ns))),
            ("files".into(), Value::Array(files)),
            ("mode".into(), Value::string(eff.mode.to_string())),
            ("mode_source".into(), Value::string(eff.source.to_string())),
            ("namespace".into(), Value::string(ns)),
            (
                "on_since".into(),
                Value::opt_string(eff.on_since.map(|d| d.to_string())),
            ),
            ("stacks".into(), counts(&week.stacks)),
        ];
        #[cfg(feature = "upload")]
        v.push(("upload".into(), upload.to_json()));
        v.push((
            "week_begin".into(),
            Value::opt_string(week.begin.map(|d| d.to_string())),
        ));
        println!("{}", json::to_string_pretty(&sorted(Value::Object(v))));
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
    if crashes > 0 {
        println!(
            "\ncrash stacks: {crashes} kept in {} (raw, on this machine only); the next run \
             of the program names each as crash/signal-stack and deletes it",
            dir.join(crate::dirs::CRASHES).display()
        );
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

/// How many crash stacks wait in `dir` to be named by the next run.
fn crash_records(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(crate::dirs::CRASHES)).map_or(0, |rd| {
        rd.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".stack"))
            .count()
    })
}

/// `v` with the keys of every object sorted (the order `status --json`
/// has always printed).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(mut m) => {
            m.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Value::Object(m.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        v => v,
    }
}

/// The mode, why it is in force, and for `on` which weeks are uploaded.
pub(crate) fn mode_line(ns: &str, eff: &mode::Effective) -> String {
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
                let b = if b == since {
                    b
                } else {
                    b + chrono::Days::new(7)
                };
                format!("the first begins on {b}")
            }
            // No week start drawn yet: it is drawn at the first count.
            None => "the first begins within 7 days".to_string(),
        };
        println!(
            "{} ({first}); see `{} report --dry-run` for what would be sent",
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
