//! Version patterns: the entries of a program's `versions` list in the
//! collection config, and how a version is matched against them.

use super::check_word;
use std::fmt;

/// One entry of a program's `versions` list.
///
/// - `"*"` matches every version;
/// - `"P.*"` matches every version that begins with `P.` (`"1.*"` matches
///   `1.0` and `1.2.3-rc1`, not `10.0`);
/// - `">=N.N.N"` matches every release version whose numbers are at least
///   these (see [`VersionPattern::matches`]);
/// - anything else matches that exact version text.
///
/// ```
/// use clearcount_protocol::config::VersionPattern;
/// let p = VersionPattern::parse(">=0.2").unwrap();
/// assert!(p.matches("0.2.0") && p.matches("v1.0.0") && !p.matches("0.2.0-rc1"));
/// assert!(VersionPattern::parse("1.*").unwrap().matches("1.9"));
/// assert!(VersionPattern::parse(">=1.x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPattern {
    /// `*`: any version.
    Any,
    /// `P.*`: versions beginning with the prefix (stored with its final dot).
    Prefix(String),
    /// `>=N.N...`: release versions at least these numbers.
    AtLeast(Vec<u64>),
    /// A version text matched exactly.
    Exact(String),
}

/// The numbers and pre-release flag of a version `[v]N(.N)*[-pre][+build]`,
/// or `None` when it does not have that form.
fn numeric_version(v: &str) -> Option<(Vec<u64>, bool)> {
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(core, _)| core);
    let (core, pre) = match v.split_once('-') {
        Some((core, pre)) => (core, !pre.is_empty()),
        None => (v, false),
    };
    let mut nums = Vec::new();
    for part in core.split('.') {
        if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        nums.push(part.parse().ok()?);
    }
    Some((nums, pre))
}

/// Compares two number lists, missing numbers counting as 0.
fn cmp_numbers(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = a.get(i).copied().unwrap_or(0);
            let y = b.get(i).copied().unwrap_or(0);
            x.cmp(&y)
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

impl VersionPattern {
    /// Parses one `versions` entry.
    pub fn parse(text: &str) -> Result<VersionPattern, String> {
        check_word("version pattern", text)?;
        if text == "*" {
            return Ok(VersionPattern::Any);
        }
        if let Some(min) = text.strip_prefix(">=") {
            return match numeric_version(min) {
                Some((nums, false)) if !min.contains('+') => Ok(VersionPattern::AtLeast(nums)),
                _ => Err(format!(
                    "version pattern {text:?}: after \">=\" put a release version made of numbers and dots, like \">=1.2.0\""
                )),
            };
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            if prefix.is_empty() || prefix.contains('*') {
                return Err(format!(
                    "version pattern {text:?}: '*' may only end a pattern, after a '.', as in \"1.*\""
                ));
            }
            return Ok(VersionPattern::Prefix(format!("{prefix}.")));
        }
        if text.contains('*') {
            return Err(format!(
                "version pattern {text:?}: '*' may only stand alone or end a pattern after a '.', as in \"1.*\""
            ));
        }
        if text.starts_with(['<', '>', '=']) {
            return Err(format!(
                "version pattern {text:?}: the only comparison allowed is \">=\""
            ));
        }
        Ok(VersionPattern::Exact(text.to_string()))
    }

    /// True when `version` matches the pattern.
    ///
    /// For `>=`, the version must have the form `[v]N(.N)*[-pre][+build]`:
    /// its numbers are compared one by one (missing numbers count as 0), the
    /// build part is ignored, and a pre-release (`-pre`) of exactly the
    /// minimum does not match (`1.0.0-rc1` comes before `1.0.0`). A version
    /// of any other form (`devel`) never matches `>=`.
    ///
    /// ```
    /// use clearcount_protocol::config::VersionPattern;
    /// let p = VersionPattern::AtLeast(vec![1, 0]);
    /// assert!(p.matches("1.0.0") && p.matches("1.1.0-rc1") && p.matches("2"));
    /// assert!(!p.matches("0.9.9") && !p.matches("1.0.0-rc1") && !p.matches("devel"));
    /// ```
    pub fn matches(&self, version: &str) -> bool {
        match self {
            VersionPattern::Any => true,
            VersionPattern::Prefix(p) => version.len() > p.len() && version.starts_with(p.as_str()),
            VersionPattern::Exact(v) => v == version,
            VersionPattern::AtLeast(min) => match numeric_version(version) {
                None => false,
                Some((nums, pre)) => match cmp_numbers(&nums, min) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Equal => !pre,
                    std::cmp::Ordering::Less => false,
                },
            },
        }
    }
}

impl fmt::Display for VersionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPattern::Any => f.write_str("*"),
            VersionPattern::Prefix(p) => write!(f, "{p}*"),
            VersionPattern::Exact(v) => f.write_str(v),
            VersionPattern::AtLeast(nums) => {
                f.write_str(">=")?;
                for (i, n) in nums.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_patterns_and_display() {
        for bad in [
            "",
            "1.*.*",
            "1*",
            "*.1",
            ">=",
            ">=a",
            ">=1.0-rc1",
            "<=1",
            "=1",
            "a b",
        ] {
            assert!(VersionPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            VersionPattern::parse(">=1.2.0").unwrap().to_string(),
            ">=1.2.0"
        );
        assert_eq!(VersionPattern::parse("1.*").unwrap().to_string(), "1.*");
    }
}
