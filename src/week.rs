//! Weeks: which seven days a counter file covers.
//!
//! Each installation draws its week's first weekday at random, once, and
//! keeps it in the `week-start` file of its telemetry directory; so reports
//! from many installations do not all end on the same day, and one
//! installation's weeks never overlap. Every program of the installation
//! uses the same boundary, so each program build has exactly one file per
//! week, whatever day it first ran.

use chrono::{Datelike, NaiveDate, Weekday};
use std::io;
use std::path::Path;

/// Name of the file that holds the installation's first weekday.
pub const WEEK_START_FILE: &str = "week-start";

/// The first day of the week containing `day`, for weeks starting on `start`.
pub fn week_begin(day: NaiveDate, start: Weekday) -> NaiveDate {
    let back = (7 + day.weekday().num_days_from_monday() - start.num_days_from_monday()) % 7;
    day - chrono::Days::new(u64::from(back))
}

/// A weekday from its English name, short or long, in any case (what
/// chrono accepts; by hand, so that no format parser is linked).
fn weekday_from_name(s: &str) -> Option<Weekday> {
    const NAMES: [(&str, &str, Weekday); 7] = [
        ("mon", "monday", Weekday::Mon),
        ("tue", "tuesday", Weekday::Tue),
        ("wed", "wednesday", Weekday::Wed),
        ("thu", "thursday", Weekday::Thu),
        ("fri", "friday", Weekday::Fri),
        ("sat", "saturday", Weekday::Sat),
        ("sun", "sunday", Weekday::Sun),
    ];
    let s = s.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(short, long, _)| s == *short || s == *long)
        .map(|n| n.2)
}

fn random_weekday() -> Weekday {
    Weekday::try_from(crate::random::weekday_index()).unwrap_or(Weekday::Mon)
}

/// Reads the installation's first weekday, drawing and saving one if there
/// is none (or it is unreadable). Many processes may do this at once: the
/// file is created atomically and the first one written wins.
pub(crate) fn load_or_create_start(dir: &Path) -> io::Result<Weekday> {
    let path = dir.join(WEEK_START_FILE);
    if let Some(day) = read_start(dir) {
        return Ok(day);
    }
    let text = format!("{}\n", random_weekday());
    match crate::fsutil::create_atomic(&path, text.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    match read_start(dir) {
        Some(day) => Ok(day),
        None => {
            // The file holds garbage: replace it.
            crate::fsutil::replace_atomic(&path, text.as_bytes())?;
            read_start(dir).ok_or_else(|| io::Error::other("week-start file unreadable"))
        }
    }
}

/// The installation's first weekday, if it has been drawn.
pub fn read_start(dir: &Path) -> Option<Weekday> {
    crate::fsutil::read_small(&dir.join(WEEK_START_FILE))
        .ok()
        .and_then(|s| weekday_from_name(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_names_as_chrono_reads_them() {
        for d in 0..7u8 {
            let w = Weekday::try_from(d).unwrap();
            let long = format!("{w:?}");
            for name in [w.to_string(), w.to_string().to_uppercase(), long.clone()] {
                assert_eq!(weekday_from_name(&name), Some(w), "{name}");
                assert_eq!(name.parse::<Weekday>().ok(), Some(w));
            }
        }
        for name in ["wednesday", "Sunday\n", " sat "] {
            assert_eq!(weekday_from_name(name), name.trim().parse::<Weekday>().ok());
        }
        assert_eq!(weekday_from_name("wedn"), None);
    }

    #[test]
    fn begins() {
        let d: NaiveDate = "2026-11-22".parse().unwrap(); // Sunday
        assert_eq!(week_begin(d, Weekday::Sun), d);
        assert_eq!(week_begin(d, Weekday::Mon).to_string(), "2026-11-16");
        assert_eq!(week_begin(d, Weekday::Sat).to_string(), "2026-11-21");
        for start in 0..7u8 {
            let start = Weekday::try_from(start).unwrap();
            for i in 0..30 {
                let day = d + chrono::Days::new(i);
                let b = week_begin(day, start);
                assert_eq!(b.weekday(), start);
                assert!(b <= day && day < b + chrono::Days::new(7));
            }
        }
    }

    #[test]
    fn start_is_drawn_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_start(dir.path()).unwrap();
        for _ in 0..10 {
            assert_eq!(load_or_create_start(dir.path()).unwrap(), a);
        }
        std::fs::write(dir.path().join(WEEK_START_FILE), "garbage").unwrap();
        let b = load_or_create_start(dir.path()).unwrap();
        assert_eq!(read_start(dir.path()), Some(b));
    }
}
