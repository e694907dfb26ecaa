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

/// Parses a `CLEARCOUNT_NOW` value.
pub fn parse_now(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
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
    use super::*;

    #[test]
    fn clearcount_now_is_rfc3339_or_ignored() {
        let t = parse_now(" 2026-11-16T10:00:00+01:00\n").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-16T09:00:00+00:00");
        for bad in ["yesterday", "2026-11-16", ""] {
            assert!(parse_now(bad).is_none(), "{bad:?}");
        }
    }
}
