//! The clock every part of clearcount reads.
//!
//! `CLEARCOUNT_NOW` (RFC 3339, e.g. `2026-11-16T09:00:00Z`) sets the clock
//! when the process first reads it; from then on it runs at real speed. Tests
//! and the demo use it to move through weeks, and a long-running process
//! started just before a week boundary crosses it for real. A value that does
//! not parse is ignored (the wall clock is used).

use chrono::{DateTime, Utc};
use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that replaces the wall clock.
pub const NOW_VAR: &str = "CLEARCOUNT_NOW";

static BASE: OnceLock<Option<(DateTime<Utc>, Instant)>> = OnceLock::new();

/// Parses a `CLEARCOUNT_NOW` value: RFC 3339,
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` (`t` or a space may
/// stand for `T`, `z` for `Z`). By hand, not with chrono's format parser:
/// every program that counts links this.
pub fn parse_now(value: &str) -> Option<DateTime<Utc>> {
    let s = value.trim();
    let b = s.as_bytes();
    let day = clearcount_protocol::field::parse_day(s.get(..10)?)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        let d = b.get(i..i + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| u32::from(d[0] - b'0') * 10 + u32::from(d[1] - b'0'))
    };
    let (h, m, sec) = (two(11)?, two(14)?, two(17)?);
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (two(i + 1)?, two(i + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let local = day.and_hms_nano_opt(h, m, sec.min(59), nanos)?;
    if sec > 60 {
        return None;
    }
    Some((local - chrono::Duration::seconds(offset_secs)).and_utc())
}

/// The current time: `CLEARCOUNT_NOW` plus the time since the process first
/// asked, or the wall clock.
pub fn now() -> DateTime<Utc> {
    let base = BASE.get_or_init(|| {
        std::env::var(NOW_VAR)
            .ok()
            .and_then(|v| parse_now(&v))
            .map(|t| (t, Instant::now()))
    });
    match base {
        Some((t, start)) => {
            let elapsed = chrono::Duration::from_std(start.elapsed()).unwrap_or_default();
            *t + elapsed
        }
        None => Utc::now(),
    }
}

/// Today's date (UTC) on [`now`]'s clock.
pub fn today() -> chrono::NaiveDate {
    now().date_naive()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        for (text, want) in [
            ("2026-11-16T09:00:00Z", "2026-11-16T09:00:00Z"),
            ("2026-11-16t09:00:00z", "2026-11-16T09:00:00Z"),
            ("2026-11-16 09:00:00.5Z", "2026-11-16T09:00:00.500Z"),
            ("2026-11-16T01:30:00+02:00", "2026-11-15T23:30:00Z"),
            ("2026-11-16T23:30:00-01:15", "2026-11-17T00:45:00Z"),
            (
                " 2026-11-16T09:00:00.123456789123Z ",
                "2026-11-16T09:00:00.123456789Z",
            ),
        ] {
            let t = super::parse_now(text).unwrap();
            assert_eq!(
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                want,
                "{text}"
            );
        }
        for bad in [
            "",
            "2026-11-16",
            "2026-11-16T09:00:00",
            "2026-11-16T09:00Z",
            "2026-11-16T24:00:00Z",
            "2026-11-16T09:00:00.Z",
            "2026-11-16T09:00:00+2:00",
            "2026-11-31T09:00:00Z",
            "2026-11-16T09:00:00Zjunk",
        ] {
            assert!(super::parse_now(bad).is_none(), "{bad}");
        }
    }
}
