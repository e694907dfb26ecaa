//! The one spelling of a day, and of a metadata value, that every format
//! of clearcount uses.
//!
//! A day is written `YYYY-MM-DD`: ten characters, a four-digit year, a day
//! that exists in the proleptic Gregorian calendar (counter files, reports,
//! file names, archive names). A metadata value (a program name, version,
//! operating system or architecture) is 1 to 64 bytes of printable ASCII
//! without spaces.

use chrono::NaiveDate;

/// Parses a day written exactly `YYYY-MM-DD`; anything else is `None`.
///
/// ```
/// use clearcount_protocol::field::parse_day;
/// assert!(parse_day("2026-11-16").is_some());
/// assert!(parse_day("2026-11-6").is_none());
/// assert!(parse_day("+2026-11-16").is_none());
/// assert!(parse_day("2026-02-29").is_none());
/// assert!(parse_day("2028-02-29").is_some());
/// ```
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    // By hand, not with chrono's format parser: a client links less.
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0'));
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
}

/// Longest metadata value, in bytes.
pub const MAX_VALUE: usize = 64;

/// True for a valid metadata value: 1 to [`MAX_VALUE`] bytes of printable
/// ASCII without spaces (`0x21`–`0x7e`).
pub fn is_value(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Turns free text into a metadata value: characters that are not printable
/// ASCII become `_`, the text is cut at [`MAX_VALUE`] bytes, and an empty
/// text becomes `_`.
///
/// ```
/// assert_eq!(clearcount_protocol::field::clean_value("1.0 (beta)"), "1.0_(beta)");
/// ```
pub fn clean_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(MAX_VALUE)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_have_one_spelling() {
        assert_eq!(parse_day("2026-02-28").unwrap().to_string(), "2026-02-28");
        for bad in [
            "2026-2-28",
            "+2026-02-28",
            "2026-02-30",
            "20260228",
            "2026-02-28 ",
            "",
        ] {
            assert!(parse_day(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        assert!(is_value("x86_64"));
        assert!(!is_value(""));
        assert!(!is_value("a b"));
        assert!(!is_value(&"v".repeat(65)));
        assert_eq!(clean_value(""), "_");
        assert_eq!(clean_value(&"é".repeat(100)).len(), 64);
    }
}
