//! Weekly reports: the JSON document built from a finished week's counter
//! files, kept locally, and (filtered by the collection config) uploaded.
//!
//! The normative text is `counters-spec/report.md`. This module owns the
//! report format: its types, its canonical bytes, and its checks.
//!
//! ```
//! use clearcount_protocol::report::{Report, ProgramReport};
//! let mut p = ProgramReport::new("mytool", "1.2.0", "linux", "x86_64");
//! p.counters.insert("mytool/command:build".into(), 3);
//! let r = Report { week: "2026-11-16".into(), x: 0.25, config: 0, programs: vec![p] };
//! let bytes = r.to_bytes();
//! assert_eq!(Report::from_slice(&bytes).unwrap(), r);
//! ```

use crate::json::{self, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One week of counting on one installation.
///
/// It carries no identifier of any kind: no installation id, host name,
/// user name, path, address or time finer than the week.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Report {
    /// First day of the week counted, `YYYY-MM-DD` (UTC). The week is the
    /// seven days from this date.
    pub week: String,
    /// The sampling number drawn once for this report, in `[0, 1)`.
    pub x: f64,
    /// Version of the collection config the report was filtered by; `0` for a
    /// local, unfiltered report.
    pub config: u64,
    /// One entry per program, version, OS and architecture that counted.
    pub programs: Vec<ProgramReport>,
}

/// The counts of one program build (program, version, OS, arch) in a week.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct ProgramReport {
    /// Program name, as given to the telemetry builder.
    pub program: String,
    /// Program version.
    pub version: String,
    /// Operating system (`std::env::consts::OS`).
    pub os: String,
    /// Processor architecture (`std::env::consts::ARCH`).
    pub arch: String,
    /// Plain counters: name → count (may be left out of the JSON when
    /// empty).
    #[cfg_attr(feature = "serde", serde(default))]
    pub counters: BTreeMap<String, u64>,
    /// Stack counters: name (counter name, newline, frames) → count (may
    /// be left out of the JSON when empty).
    #[cfg_attr(feature = "serde", serde(default))]
    pub stacks: BTreeMap<String, u64>,
}

fn text(v: &Value, what: &str) -> Result<String, String> {
    v.to_str()
        .map(str::to_string)
        .map_err(|e| format!("{what}: {e}"))
}

fn counts(v: &Value, what: &str) -> Result<BTreeMap<String, u64>, String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "{what}: invalid type: {}, expected a map",
            v.describe()
        ));
    };
    let mut out = BTreeMap::new();
    for (k, n) in m {
        let n = n.to_u64().map_err(|e| format!("{what} {k:?}: {e}"))?;
        out.insert(k.clone(), n);
    }
    Ok(out)
}

impl ProgramReport {
    fn from_value(v: &Value) -> Result<ProgramReport, String> {
        let known = ["program", "version", "os", "arch", "counters", "stacks"];
        let mut p = ProgramReport::new("", "", "", "");
        let mut seen = [false; 4];
        for (k, e) in json::fields(v, "struct ProgramReport", &known)? {
            match k {
                "counters" => p.counters = counts(e, k)?,
                "stacks" => p.stacks = counts(e, k)?,
                _ => {
                    let i = known.iter().position(|f| *f == k).unwrap_or(0);
                    seen[i] = true;
                    let t = text(e, k)?;
                    match i {
                        0 => p.program = t,
                        1 => p.version = t,
                        2 => p.os = t,
                        _ => p.arch = t,
                    }
                }
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(format!("missing field `{}`", known[i]));
        }
        Ok(p)
    }

    /// An empty entry for one program build.
    pub fn new(program: &str, version: &str, os: &str, arch: &str) -> Self {
        ProgramReport {
            program: program.into(),
            version: version.into(),
            os: os.into(),
            arch: arch.into(),
            counters: BTreeMap::new(),
            stacks: BTreeMap::new(),
        }
    }

    /// True when the entry has no counts at all.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.stacks.is_empty()
    }
}

/// Why bytes are not a valid report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportError(pub String);

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid report: {}", self.0)
    }
}

impl std::error::Error for ReportError {}

impl Report {
    /// The canonical bytes of the report: compact JSON, keys of counter maps
    /// sorted. These are exactly the bytes uploaded and kept in `upload/`.
    ///
    /// ```
    /// let r = clearcount_protocol::report::Report { week: "2026-01-05".into(), x: 0.5, config: 1, programs: vec![] };
    /// assert_eq!(r.to_bytes(), br#"{"week":"2026-01-05","x":0.5,"config":1,"programs":[]}"#);
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str("{\"week\":");
        json::write_str(&mut out, &self.week);
        out.push_str(",\"x\":");
        json::write_f64(&mut out, self.x);
        out.push_str(",\"config\":");
        let _ = write!(out, "{}", self.config);
        out.push_str(",\"programs\":[");
        for (i, p) in self.programs.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            for (j, (k, v)) in [
                ("program", &p.program),
                ("version", &p.version),
                ("os", &p.os),
                ("arch", &p.arch),
            ]
            .into_iter()
            .enumerate()
            {
                out.push(if j == 0 { '{' } else { ',' });
                json::write_str(&mut out, k);
                out.push(':');
                json::write_str(&mut out, v);
            }
            for (k, map) in [("counters", &p.counters), ("stacks", &p.stacks)] {
                out.push(',');
                json::write_str(&mut out, k);
                out.push_str(":{");
                for (n, (name, count)) in map.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    json::write_str(&mut out, name);
                    out.push(':');
                    let _ = write!(out, "{count}");
                }
                out.push('}');
            }
            out.push('}');
        }
        out.push_str("]}");
        out.into_bytes()
    }

    /// Parses and checks a report (see [`Report::check`]).
    pub fn from_slice(bytes: &[u8]) -> Result<Report, ReportError> {
        let v = json::parse(bytes).map_err(ReportError)?;
        let r = Report::from_value(&v).map_err(ReportError)?;
        r.check()?;
        Ok(r)
    }

    /// The report in a parsed JSON value: exactly its fields, each once,
    /// of the right types (`counters` and `stacks` may be left out).
    fn from_value(v: &Value) -> Result<Report, String> {
        let (mut week, mut x, mut config, mut programs) = (None, None, None, None);
        for (k, e) in json::fields(v, "struct Report", &["week", "x", "config", "programs"])? {
            match k {
                "week" => week = Some(text(e, "week")?),
                "x" => x = Some(e.to_f64()?),
                "config" => {
                    config = Some(
                        e.as_u64()
                            .ok_or("invalid type: config must be an unsigned integer")?,
                    )
                }
                _ => {
                    let list = e
                        .as_array()
                        .ok_or("invalid type: programs must be an array")?;
                    programs = Some(
                        list.iter()
                            .map(ProgramReport::from_value)
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                }
            }
        }
        Ok(Report {
            week: week.ok_or("missing field `week`")?,
            x: x.ok_or("missing field `x`")?,
            config: config.ok_or("missing field `config`")?,
            programs: programs.ok_or("missing field `programs`")?,
        })
    }

    /// The week's first day as a date.
    pub fn week_date(&self) -> Result<chrono::NaiveDate, ReportError> {
        crate::field::parse_day(&self.week)
            .ok_or_else(|| ReportError(format!("week {:?} is not a YYYY-MM-DD date", self.week)))
    }

    /// Checks everything that can be checked without a config: the week is a
    /// date, X is in `[0, 1)`, every name follows the naming grammar, the
    /// program fields are short printable text, and no program build appears
    /// twice.
    pub fn check(&self) -> Result<(), ReportError> {
        self.week_date()?;
        if !(self.x >= 0.0 && self.x < 1.0) {
            return Err(ReportError(format!("x {} is not in [0, 1)", self.x)));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.programs {
            for (field, value) in [
                ("program", &p.program),
                ("version", &p.version),
                ("os", &p.os),
                ("arch", &p.arch),
            ] {
                if !crate::field::is_value(value) {
                    return Err(ReportError(format!(
                        "{field} {value:?} must be 1 to 64 printable ASCII bytes"
                    )));
                }
            }
            if !seen.insert((&p.program, &p.version, &p.os, &p.arch)) {
                return Err(ReportError(format!(
                    "program {} {} {} {} appears twice",
                    p.program, p.version, p.os, p.arch
                )));
            }
            for name in p.counters.keys() {
                crate::name::check(name).map_err(|e| ReportError(e.to_string()))?;
            }
            for name in p.stacks.keys() {
                crate::name::check_stack(name).map_err(|e| ReportError(e.to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut p = ProgramReport::new("t", "1.0", "linux", "x86_64");
        p.counters.insert("a/b".into(), 2);
        p.stacks.insert("crash/panic\nmain:+1".into(), 1);
        Report {
            week: "2026-11-16".into(),
            x: 0.01,
            config: 3,
            programs: vec![p],
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(Report::from_slice(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(
            Report::from_slice(
                br#"{"week":"2026-11-16","x":0.1,"config":1,"programs":[],"id":"abc"}"#
            )
            .is_err()
        );
        let mut r = sample();
        r.week = "2026-11-1".into();
        assert!(r.check().is_err());
        let mut r = sample();
        r.programs[0].counters.insert("bad name".into(), 1);
        assert!(r.check().is_err());
        let mut r = sample();
        r.programs.push(r.programs[0].clone());
        assert!(r.check().is_err());
        let mut r = sample();
        r.x = f64::NAN;
        assert!(r.check().is_err());
    }
}
