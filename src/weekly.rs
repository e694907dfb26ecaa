//! Weekly reports: turning a finished week's counter files into one local
//! report.
//!
//! When a week is over (its end, 00:00 UTC of its `week_end` day, is at least
//! [`GRACE`] past), every counter file of that week becomes one report,
//! `reports/<week>.full.json`: everything counted, every program build, with
//! X drawn once (it is stored in the report and never changes) and config
//! version `0`. It stays on this machine for the user to read. The uploader
//! later filters it by the collection config into `reports/<week>.json`.
//!
//! Crash-safe and race-safe: the report is created atomically, first writer
//! wins; only then are the week's counter files removed. Many processes may
//! build at once: the losers find the report exists and only remove the
//! counter files. Files are read as files in use (`format::read_file`): a
//! file is set aside in `corrupt/` only when every read finds it damaged.
//! Local data stays bounded: at most [`KEEP_WEEKS`] weeks of reports (and of
//! copies of sent reports in `upload/`) are kept, the oldest are removed.

use crate::format::{self, Parsed};
use crate::report::{ProgramReport, Report};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many weeks of local reports are kept.
pub const KEEP_WEEKS: usize = 12;

/// How long after a week's end its report is built: every process that
/// counts has moved to the new week's file well within it (see
/// `telemetry.rs`), so no count goes to a file that was already reported.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The moment a week that began on `week` ends (00:00 UTC seven days later).
fn week_end(week: NaiveDate) -> Option<DateTime<Utc>> {
    week.checked_add_days(chrono::Days::new(7))?
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
}

/// Suffix of a full (local, unfiltered) report file.
pub const FULL_SUFFIX: &str = ".full.json";

/// The full report's path for a week: `reports/<week>.full.json`.
pub fn full_path(dir: &Path, week: &str) -> PathBuf {
    dir.join(crate::dirs::REPORTS)
        .join(format!("{week}{FULL_SUFFIX}"))
}

/// The filtered report's path for a week: `reports/<week>.json`.
pub fn filtered_path(dir: &Path, week: &str) -> PathBuf {
    dir.join(crate::dirs::REPORTS).join(format!("{week}.json"))
}

/// Draws X, uniform in `[0, 1)`, once per report.
///
/// With the crate feature `test-hooks` (tests only; never in a release
/// build), the environment variable `CLEARCOUNT_TEST_X` (a number in
/// `[0, 1)`) replaces the draw, so tests can pin X without changing the code
/// under test.
pub fn draw_x() -> f64 {
    #[cfg(feature = "test-hooks")]
    if let Some(x) = std::env::var("CLEARCOUNT_TEST_X")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|x| (0.0..1.0).contains(x))
    {
        return x;
    }
    crate::random::unit()
}

/// Builds one report from a week's parsed counter files, with the given X
/// and config version 0. Entries of the same program build are summed
/// (saturating); names that do not follow the naming grammar are left out;
/// empty program builds are left out; programs are sorted.
pub fn build_report(week: &str, files: &[Parsed], x: f64) -> Report {
    let mut by_build: BTreeMap<(String, String, String, String), ProgramReport> = BTreeMap::new();
    for f in files {
        let m = &f.meta;
        let key = (
            m.program.clone(),
            m.version.clone(),
            m.os.clone(),
            m.arch.clone(),
        );
        let entry = by_build
            .entry(key)
            .or_insert_with(|| ProgramReport::new(&m.program, &m.version, &m.os, &m.arch));
        for (name, &n) in &f.counters {
            if n > 0 && crate::name::check(name).is_ok() {
                let c = entry.counters.entry(name.clone()).or_default();
                *c = c.saturating_add(n);
            }
        }
        for (name, &n) in &f.stacks {
            if n > 0 && crate::name::check_stack(name).is_ok() {
                let c = entry.stacks.entry(name.clone()).or_default();
                *c = c.saturating_add(n);
            }
        }
    }
    let programs = by_build
        .into_values()
        .filter(|p| !p.is_empty() && valid_build(p))
        .collect();
    Report {
        week: week.to_string(),
        x,
        config: 0,
        programs,
    }
}

fn valid_build(p: &ProgramReport) -> bool {
    let one = Report {
        week: "2000-01-03".into(),
        x: 0.0,
        config: 0,
        programs: vec![ProgramReport {
            counters: BTreeMap::new(),
            stacks: BTreeMap::new(),
            ..p.clone()
        }],
    };
    one.check().is_ok()
}

/// What [`build_pending`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Built {
    /// Weeks whose full report this call created.
    pub created: Vec<String>,
    /// Weeks whose report already existed (made by another process).
    pub existing: Vec<String>,
    /// Counter files removed because their report exists.
    pub removed: usize,
    /// Unparsable counter files set aside in `corrupt/`.
    pub corrupt: Vec<PathBuf>,
    /// Reports removed to keep at most [`KEEP_WEEKS`] weeks.
    pub pruned: Vec<String>,
    /// Problems met (I/O errors), in plain words. Nothing here is fatal.
    pub problems: Vec<String>,
}

pub use crate::format::week_of_file_name;

fn count_files(dir: &Path) -> Vec<(PathBuf, NaiveDate)> {
    let Ok(entries) = std::fs::read_dir(dir.join(crate::dirs::COUNTS)) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, NaiveDate)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let week = week_of_file_name(name.to_str()?)?;
            Some((e.path(), week))
        })
        .collect();
    v.sort_unstable();
    v
}

/// True when some counter file in `counts/` belongs to a week that is over
/// at `now` (cheap: file names only).
pub fn any_finished(dir: &Path, now: DateTime<Utc>) -> bool {
    count_files(dir)
        .iter()
        .any(|(_, w)| week_end(*w).is_some_and(|end| end <= now))
}

/// Builds the full report of every finished week in `dir/counts/`, removes
/// the counter files once their report exists, sets damaged files aside,
/// and keeps at most [`KEEP_WEEKS`] weeks of reports. A week that ended
/// less than [`GRACE`] before `now` is waited for (this runs in the
/// uploader's child or thread, or in a command, never on a host's path).
/// Safe to run from many processes at once; never panics; I/O problems are
/// listed in the result.
pub fn build_pending(dir: &Path, now: DateTime<Utc>) -> Built {
    let mut built = Built::default();
    let mut weeks: BTreeMap<NaiveDate, Vec<PathBuf>> = BTreeMap::new();
    let mut wait = chrono::Duration::zero();
    let grace = chrono::Duration::from_std(GRACE).unwrap_or_default();
    for (path, week) in count_files(dir) {
        let Some(end) = week_end(week) else { continue };
        if end <= now {
            wait = wait.max(end + grace - now);
            weeks.entry(week).or_default().push(path);
        }
    }
    if let Ok(wait) = wait.to_std() {
        std::thread::sleep(wait);
    }
    if !weeks.is_empty()
        && let Err(e) = std::fs::create_dir_all(dir.join(crate::dirs::REPORTS))
    {
        built
            .problems
            .push(format!("cannot create {}: {e}", crate::dirs::REPORTS));
        return built;
    }
    for (week, paths) in weeks {
        let week_s = week.to_string();
        let report_path = full_path(dir, &week_s);
        let mut files = Vec::new();
        if !report_path.exists() {
            for p in &paths {
                match format::read_file(p) {
                    Ok(parsed) if parsed.meta.week_begin == week => files.push(parsed),
                    Ok(_) | Err(format::ReadError::Corrupt(_)) => set_aside(dir, p, &mut built),
                    // Removed meanwhile by another process: it made the report.
                    Err(format::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => built
                        .problems
                        .push(format!("cannot read {}: {e}", p.display())),
                }
            }
            let report = build_report(&week_s, &files, draw_x());
            match crate::fsutil::create_atomic(&report_path, &report.to_bytes()) {
                Ok(()) => built.created.push(week_s.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    built.existing.push(week_s.clone())
                }
                Err(e) => {
                    built.problems.push(format!(
                        "cannot write {}: {e}; counter files kept",
                        report_path.display()
                    ));
                    continue;
                }
            }
        } else {
            built.existing.push(week_s.clone());
        }
        // The report exists: the counter files can go.
        for p in &paths {
            match std::fs::remove_file(p) {
                Ok(()) => built.removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => built
                    .problems
                    .push(format!("cannot remove {}: {e}", p.display())),
            }
        }
    }
    built.pruned = prune(dir);
    built
}

fn set_aside(dir: &Path, p: &Path, built: &mut Built) {
    if let Some(to) = crate::countfile::move_to_corrupt(dir, p) {
        built.corrupt.push(to);
    }
}

/// The weeks that have a full report, oldest first.
pub fn report_weeks(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(crate::dirs::REPORTS)) else {
        return Vec::new();
    };
    let mut weeks: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name();
            let w = n.to_str()?.strip_suffix(FULL_SUFFIX)?.to_string();
            format::parse_date(&w)?;
            Some(w)
        })
        .collect();
    weeks.sort_unstable();
    weeks
}

/// Reads a week's full report, if it is there and valid.
pub fn read_full(dir: &Path, week: &str) -> Result<Report, String> {
    let p = full_path(dir, week);
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Report::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// Removes the oldest weeks beyond [`KEEP_WEEKS`]: their full and filtered
/// reports and the copy in `upload/`. Returns the weeks removed.
fn prune(dir: &Path) -> Vec<String> {
    let weeks = report_weeks(dir);
    let mut gone = Vec::new();
    if weeks.len() > KEEP_WEEKS {
        for w in &weeks[..weeks.len() - KEEP_WEEKS] {
            let _ = std::fs::remove_file(full_path(dir, w));
            let _ = std::fs::remove_file(filtered_path(dir, w));
            let _ = std::fs::remove_file(dir.join(crate::dirs::UPLOAD).join(format!("{w}.json")));
            gone.push(w.clone());
        }
    }
    // Stray filtered reports and sent copies whose full report is gone.
    let keep: std::collections::BTreeSet<&String> = weeks.iter().rev().take(KEEP_WEEKS).collect();
    for sub in [crate::dirs::REPORTS, crate::dirs::UPLOAD] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let n = e.file_name();
            let Some(w) = n.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if w.ends_with(".full") || format::parse_date(w).is_none() {
                continue;
            }
            if !keep.contains(&w.to_string()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_week() {
        assert!(week_of_file_name("x.v1.count").is_none());
        assert!(week_of_file_name("t@1-linux-x86_64-2026-13-16.v1.count").is_none());
        assert!(week_of_file_name("").is_none());
    }

    #[test]
    fn corrupt_is_set_aside_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let counts = dir.path().join(crate::dirs::COUNTS);
        std::fs::create_dir_all(&counts).unwrap();
        std::fs::write(
            counts.join("t@1-linux-x86_64-2026-11-02-0a1b2c3d.v1.count"),
            b"junk",
        )
        .unwrap();
        let b = build_pending(dir.path(), "2026-11-23T00:00:00Z".parse().unwrap());
        assert_eq!(b.corrupt.len(), 1);
        assert_eq!(b.created, ["2026-11-02"]);
        let r = read_full(dir.path(), "2026-11-02").unwrap();
        assert!(r.programs.is_empty());
        for i in 0..20u64 {
            let w = NaiveDate::from_ymd_opt(2025, 1, 6).unwrap() + chrono::Days::new(7 * i);
            let r = build_report(&w.to_string(), &[], 0.5);
            std::fs::write(full_path(dir.path(), &w.to_string()), r.to_bytes()).unwrap();
        }
        prune(dir.path());
        assert_eq!(report_weeks(dir.path()).len(), KEEP_WEEKS);
    }

    #[test]
    fn a_fresh_directory_has_nothing_to_report() {
        let dir = tempfile::tempdir().unwrap();
        let now = "2026-11-23T00:00:00Z".parse().unwrap();
        assert!(!any_finished(dir.path(), now));
        let b = build_pending(dir.path(), now);
        assert!(b.created.is_empty() && b.corrupt.is_empty() && b.problems.is_empty());
        assert!(report_weeks(dir.path()).is_empty());
        assert!(read_full(dir.path(), "2026-11-16").is_err());
    }

    #[test]
    fn x_is_drawn_in_the_unit_interval() {
        for _ in 0..1000 {
            let x = draw_x();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
