//! The collection config and the declared counters.
//!
//! Two kinds of TOML file live under `config/` (normative text:
//! `counters-spec/config.md`):
//!
//! - `config/counters/<program>.toml`, the public registry of every counter a
//!   program may count, each with a description and the question it answers
//!   ([`DeclaredCounters`]);
//! - `config/config.toml`, the signed collection config: which programs,
//!   versions, systems and counters are collected, and at which rate
//!   ([`CollectionConfig`]).
//!
//! Both the uploader (before sending) and the server (when validating) reduce
//! a report with the same function, [`CollectionConfig::filter`].
//!
//! ```
//! use clearcount_protocol::config::CollectionConfig;
//! let cfg = CollectionConfig::parse(r#"
//! version = 3
//! sample_rate = 0.1
//!
//! [[program]]
//! name = "mytool"
//! versions = [">=1.0.0"]
//!
//! [[program.counter]]
//! name = "mytool/command:{build,test}"
//! rate = 0.05
//! "#, "config.toml").unwrap();
//! assert!(cfg.accepts("mytool", "1.4.2", "linux", "x86_64"));
//! assert_eq!(cfg.counter_rate("mytool", "mytool/command:test"), Some(0.05));
//! assert_eq!(cfg.counter_rate("mytool", "mytool/command:run"), None);
//! ```

mod declared;
mod text;
#[cfg(test)]
mod text_props;
mod version;

pub use declared::{CounterKind, DeclaredCounter, DeclaredCounters, DeclaredProgram, check};
pub use version::VersionPattern;

use crate::report::{ProgramReport, Report};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use text::{Item, Table, Val};

/// Largest stack depth a counter may declare.
pub const MAX_DEPTH: u32 = 256;

/// A problem found in a config or declared-counters file, with its place.
///
/// Displays as `file:line: message` (or `file: message` when the problem has
/// no line, such as a file that cannot be read).
///
/// ```
/// let err = clearcount_protocol::config::CollectionConfig::parse("version = 1\nsample_rate = 2.0\n", "c.toml")
///     .unwrap_err();
/// assert_eq!(err.line, 2);
/// assert_eq!(err.to_string(), "c.toml:2: sample_rate 2 is not in [0, 1]");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other source name) the problem is in.
    pub file: String,
    /// Line number, from 1; 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ConfigError {
    fn new(file: &str, line: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Line number (from 1) of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line numbers of byte offsets in one text, each found by a binary
/// search: a config of many programs and counters is read in linear time.
pub(crate) struct Lines(Vec<u32>);

impl Lines {
    /// Indexes the newlines of `text`.
    pub(crate) fn new(text: &str) -> Lines {
        Lines(
            text.bytes()
                .enumerate()
                .filter(|&(_, c)| c == b'\n')
                .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
                .collect(),
        )
    }

    /// The line (from 1) of `offset`, as [`line_of`] counts it.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| (nl as usize) < offset) + 1
    }
}

/// Turns a toml error into a [`ConfigError`] with the line of its span.
fn toml_error(text: &str, source: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map_or(0, |s| line_of(text, s.start));
    let message = e.message().trim().replace('\n', " ");
    ConfigError::new(source, line, message)
}

/// Checks a short identifier field (program, OS, arch, version): 1 to 64
/// printable ASCII bytes, no space.
fn check_word(what: &str, value: &str) -> Result<(), String> {
    if !crate::field::is_value(value) {
        return Err(format!(
            "{what} {value:?} must be 1 to 64 printable ASCII bytes without spaces"
        ));
    }
    Ok(())
}

/// The collection config: what is collected, from which builds, at which
/// rate. Built by [`CollectionConfig::parse`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectionConfig {
    /// Config version, at least 1; a new config always has a higher version.
    pub version: u64,
    /// Global cap on every counter's rate, in `[0, 1]`.
    pub sample_rate: f64,
    /// The programs collected, names unique.
    pub programs: Vec<ProgramConfig>,
    /// Where the config was read from (for messages).
    pub source: String,
}

/// What is collected from one program.
///
/// ```
/// let cfg = clearcount_protocol::config::CollectionConfig::parse(
///     "version = 1\nsample_rate = 1.0\n[[program]]\nname = \"t\"\nversions = [\"*\"]\nos = [\"linux\"]\n",
///     "c.toml").unwrap();
/// assert_eq!(cfg.programs[0].os, vec!["linux"]);
/// assert!(cfg.programs[0].arch.is_empty()); // any architecture
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProgramConfig {
    /// Program name.
    pub name: String,
    /// Accepted versions: a version is accepted when any pattern matches.
    pub versions: Vec<VersionPattern>,
    /// Accepted operating systems (`std::env::consts::OS`); empty = any.
    pub os: Vec<String>,
    /// Accepted architectures (`std::env::consts::ARCH`); empty = any.
    pub arch: Vec<String>,
    /// Counters collected, bucket sets already expanded, names unique.
    pub counters: Vec<CounterConfig>,
    /// Line of the `[[program]]` entry in the config file.
    pub line: usize,
}

/// One collected counter (one name, after bucket expansion).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CounterConfig {
    /// Counter name (for a stack counter, the part before the frames).
    pub name: String,
    /// Rate in `[0, 1]`: kept when the report's X ≤ min(rate, sample_rate).
    pub rate: f64,
    /// `Some(depth)` for a stack counter: at most this many frames.
    pub depth: Option<u32>,
    /// Line of the `[[program.counter]]` entry in the config file.
    pub line: usize,
}

/// A value of the config and the bytes it spans.
struct Spanned<T> {
    v: T,
    span: Range<usize>,
}

impl<T> Spanned<T> {
    fn get_ref(&self) -> &T {
        &self.v
    }
    fn span(&self) -> Range<usize> {
        self.span.clone()
    }
    fn into_inner(self) -> T {
        self.v
    }
}

struct RawConfig {
    version: Spanned<i64>,
    sample_rate: Spanned<f64>,
    programs: Vec<Spanned<RawProgram>>,
}

struct RawProgram {
    name: Spanned<String>,
    versions: Spanned<Vec<Spanned<String>>>,
    os: Option<Spanned<Vec<Spanned<String>>>>,
    arch: Option<Spanned<Vec<Spanned<String>>>>,
    counters: Vec<Spanned<RawCounter>>,
}

struct RawCounter {
    name: Spanned<String>,
    rate: Spanned<f64>,
    depth: Option<Spanned<i64>>,
}

/// A problem in the TOML tree: where, and what (`serde`'s words).
type RawError = (usize, String);

/// The members of a table: each one of `known`, else `unknown field`.
fn members<'t>(t: &'t Table, known: &[&str]) -> Result<Vec<(&'t str, &'t Item)>, RawError> {
    let mut out = Vec::new();
    for (k, span, item) in &t.entries {
        if !known.contains(&k.as_str()) {
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            return Err((
                span.start,
                format!(
                    "unknown field `{k}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        out.push((k.as_str(), item));
    }
    Ok(out)
}

fn invalid(item: &Item, expected: &str) -> RawError {
    (
        item.span.start,
        format!("invalid type: {}, expected {expected}", item.val.kind()),
    )
}

fn missing<T>(v: Option<T>, field: &str, at: usize) -> Result<T, RawError> {
    v.ok_or_else(|| (at, format!("missing field `{field}`")))
}

fn int(item: &Item) -> Result<Spanned<i64>, RawError> {
    match item.val {
        Val::Int(i) => Ok(Spanned {
            v: i,
            span: item.span.clone(),
        }),
        _ => Err(invalid(item, "i64")),
    }
}

fn float(item: &Item) -> Result<Spanned<f64>, RawError> {
    let v = match item.val {
        Val::Float(f) => f,
        Val::Int(i) => i as f64,
        _ => return Err(invalid(item, "f64")),
    };
    Ok(Spanned {
        v,
        span: item.span.clone(),
    })
}

fn string(item: &Item) -> Result<Spanned<String>, RawError> {
    match &item.val {
        Val::Str(s) => Ok(Spanned {
            v: s.clone(),
            span: item.span.clone(),
        }),
        _ => Err(invalid(item, "a string")),
    }
}

fn strings(item: &Item) -> Result<Spanned<Vec<Spanned<String>>>, RawError> {
    match &item.val {
        Val::Array { items, .. } => Ok(Spanned {
            v: items.iter().map(string).collect::<Result<_, _>>()?,
            span: item.span.clone(),
        }),
        _ => Err(invalid(item, "a sequence")),
    }
}

/// An array of tables, each with its span.
fn tables(item: &Item) -> Result<Vec<(&Table, Range<usize>)>, RawError> {
    let Val::Array { items, .. } = &item.val else {
        return Err(invalid(item, "a sequence"));
    };
    items
        .iter()
        .map(|i| match &i.val {
            Val::Table(t) => Ok((t, i.span.clone())),
            _ => Err(invalid(i, "a table")),
        })
        .collect()
}

impl RawConfig {
    fn from_text(text: &str) -> Result<RawConfig, RawError> {
        let root = text::parse(text)?;
        let (mut version, mut sample_rate, mut programs) = (None, None, Vec::new());
        for (k, item) in members(&root, &["version", "sample_rate", "program"])? {
            match k {
                "version" => version = Some(int(item)?),
                "sample_rate" => sample_rate = Some(float(item)?),
                _ => {
                    for (t, span) in tables(item)? {
                        programs.push(Spanned {
                            v: RawProgram::from_table(t, span.start)?,
                            span,
                        });
                    }
                }
            }
        }
        Ok(RawConfig {
            version: missing(version, "version", 0)?,
            sample_rate: missing(sample_rate, "sample_rate", 0)?,
            programs,
        })
    }
}

impl RawProgram {
    fn from_table(t: &Table, at: usize) -> Result<RawProgram, RawError> {
        let known = ["name", "versions", "os", "arch", "counter"];
        let (mut name, mut versions, mut os, mut arch) = (None, None, None, None);
        let mut counters = Vec::new();
        for (k, item) in members(t, &known)? {
            match k {
                "name" => name = Some(string(item)?),
                "versions" => versions = Some(strings(item)?),
                "os" => os = Some(strings(item)?),
                "arch" => arch = Some(strings(item)?),
                _ => {
                    for (t, span) in tables(item)? {
                        counters.push(Spanned {
                            v: RawCounter::from_table(t, span.start)?,
                            span,
                        });
                    }
                }
            }
        }
        Ok(RawProgram {
            name: missing(name, "name", at)?,
            versions: missing(versions, "versions", at)?,
            os,
            arch,
            counters,
        })
    }
}

impl RawCounter {
    fn from_table(t: &Table, at: usize) -> Result<RawCounter, RawError> {
        let (mut name, mut rate, mut depth) = (None, None, None);
        for (k, item) in members(t, &["name", "rate", "depth"])? {
            match k {
                "name" => name = Some(string(item)?),
                "rate" => rate = Some(float(item)?),
                _ => depth = Some(int(item)?),
            }
        }
        Ok(RawCounter {
            name: missing(name, "name", at)?,
            rate: missing(rate, "rate", at)?,
            depth,
        })
    }
}

/// Checks a rate or sample rate.
fn check_rate(what: &str, r: f64) -> Result<f64, String> {
    if r.is_finite() && (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{what} {r} is not in [0, 1]"))
    }
}

/// Checks a stack depth.
fn check_depth(d: i64) -> Result<u32, String> {
    if (1..=i64::from(MAX_DEPTH)).contains(&d) {
        Ok(d as u32)
    } else {
        Err(format!("depth {d} is not between 1 and {MAX_DEPTH}"))
    }
}

/// Expands a counter name or bucket set from a config file; a newline is
/// refused (frames never appear in config files).
fn expand_name(pattern: &str) -> Result<Vec<String>, String> {
    if pattern.contains('\n') {
        return Err(format!(
            "counter name {pattern:?} holds a newline; give only the counter part of a stack counter"
        ));
    }
    crate::name::expand(pattern).map_err(|e| format!("counter name {pattern:?}: {e}"))
}

impl CollectionConfig {
    /// Parses and checks a collection config. `source` names the file in
    /// error messages. The first problem found is returned, with its line.
    ///
    /// ```
    /// use clearcount_protocol::config::CollectionConfig;
    /// let text = "version = 1\nsample_rate = 0.5\n[[program]]\nname = \"t\"\nversions = [\"1.*\"]\n\
    ///             [[program.counter]]\nname = \"t/a:{x,y}\"\nrate = 1.0\n";
    /// let cfg = CollectionConfig::parse(text, "config.toml").unwrap();
    /// let names: Vec<_> = cfg.programs[0].counters.iter().map(|c| c.name.as_str()).collect();
    /// assert_eq!(names, ["t/a:x", "t/a:y"]);
    ///
    /// let err = CollectionConfig::parse("version = 1\nsample_rate = 0.5\nextra = 1\n", "config.toml")
    ///     .unwrap_err();
    /// assert_eq!(err.line, 3);
    /// ```
    pub fn parse(text: &str, source: &str) -> Result<CollectionConfig, ConfigError> {
        let raw = RawConfig::from_text(text).map_err(|(at, message)| {
            // A problem with the whole file (a missing top-level field) has
            // no line.
            let line = if at == 0 && !message.contains("missing field") {
                1
            } else if at == 0 {
                0
            } else {
                line_of(text, at)
            };
            ConfigError::new(source, line, message)
        })?;
        let lines = Lines::new(text);
        let at = |span: std::ops::Range<usize>, msg: String| {
            ConfigError::new(source, lines.line(span.start), msg)
        };
        let version = *raw.version.get_ref();
        if version < 1 {
            return Err(at(
                raw.version.span(),
                format!("version {version} must be at least 1 (0 marks unfiltered local reports)"),
            ));
        }
        let sample_rate = check_rate("sample_rate", *raw.sample_rate.get_ref())
            .map_err(|m| at(raw.sample_rate.span(), m))?;
        let mut programs: Vec<ProgramConfig> = Vec::new();
        // Names seen, with their line (no quadratic search in a long config).
        let mut program_lines: HashMap<String, usize> = HashMap::new();
        for rp in raw.programs {
            let pline = lines.line(rp.span().start);
            let rp = rp.into_inner();
            let name = rp.name.get_ref().clone();
            check_word("program name", &name).map_err(|m| at(rp.name.span(), m))?;
            if let Some(prev) = program_lines.insert(name.clone(), pline) {
                return Err(at(
                    rp.name.span(),
                    format!("program {name:?} is already configured at line {prev}"),
                ));
            }
            if rp.versions.get_ref().is_empty() {
                return Err(at(
                    rp.versions.span(),
                    format!(
                        "program {name:?}: versions is empty, so no build would be accepted; use [\"*\"] for any version"
                    ),
                ));
            }
            let mut versions = Vec::new();
            for v in rp.versions.get_ref() {
                versions.push(VersionPattern::parse(v.get_ref()).map_err(|m| at(v.span(), m))?);
            }
            let mut lists = Vec::new();
            for (what, list) in [("os", &rp.os), ("arch", &rp.arch)] {
                let mut out = Vec::new();
                if let Some(list) = list {
                    if list.get_ref().is_empty() {
                        return Err(at(
                            list.span(),
                            format!(
                                "program {name:?}: {what} is empty, so no build would be accepted; leave it out to accept any"
                            ),
                        ));
                    }
                    for item in list.get_ref() {
                        check_word(what, item.get_ref()).map_err(|m| at(item.span(), m))?;
                        out.push(item.get_ref().clone());
                    }
                }
                lists.push(out);
            }
            let arch = lists.pop().unwrap_or_default();
            let os = lists.pop().unwrap_or_default();
            let mut counters: Vec<CounterConfig> = Vec::new();
            let mut counter_lines: HashMap<String, usize> = HashMap::new();
            for rc in rp.counters {
                let cline = lines.line(rc.span().start);
                let rc = rc.into_inner();
                let names = expand_name(rc.name.get_ref()).map_err(|m| at(rc.name.span(), m))?;
                let rate = check_rate(
                    &format!("counter {:?}: rate", rc.name.get_ref()),
                    *rc.rate.get_ref(),
                )
                .map_err(|m| at(rc.rate.span(), m))?;
                let depth = match &rc.depth {
                    None => None,
                    Some(d) => Some(check_depth(*d.get_ref()).map_err(|m| {
                        at(d.span(), format!("counter {:?}: {m}", rc.name.get_ref()))
                    })?),
                };
                for n in names {
                    if let Some(prev) = counter_lines.insert(n.clone(), cline) {
                        return Err(at(
                            rc.name.span(),
                            format!("counter {n:?} is already configured at line {prev}"),
                        ));
                    }
                    counters.push(CounterConfig {
                        name: n,
                        rate,
                        depth,
                        line: cline,
                    });
                }
            }
            programs.push(ProgramConfig {
                name,
                versions,
                os,
                arch,
                counters,
                line: pline,
            });
        }
        Ok(CollectionConfig {
            version: version as u64,
            sample_rate,
            programs,
            source: source.to_string(),
        })
    }

    /// The entry for a program, if it is configured.
    pub fn program(&self, program: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name == program)
    }

    /// True when the config collects from this program build: the program is
    /// configured, one of its version patterns matches, and the OS and
    /// architecture are listed (or the lists are left out).
    ///
    /// ```
    /// let cfg = clearcount_protocol::config::CollectionConfig::parse(
    ///     "version = 1\nsample_rate = 1.0\n[[program]]\nname = \"t\"\n\
    ///      versions = [\"0.9.1\", \">=1.0\"]\nos = [\"linux\", \"macos\"]\n", "c").unwrap();
    /// assert!(cfg.accepts("t", "0.9.1", "linux", "x86_64"));
    /// assert!(cfg.accepts("t", "1.3.0", "macos", "aarch64"));
    /// assert!(!cfg.accepts("t", "0.9.2", "linux", "x86_64"));
    /// assert!(!cfg.accepts("t", "1.3.0", "windows", "x86_64"));
    /// assert!(!cfg.accepts("u", "1.3.0", "linux", "x86_64"));
    /// ```
    pub fn accepts(&self, program: &str, version: &str, os: &str, arch: &str) -> bool {
        let Some(p) = self.program(program) else {
            return false;
        };
        p.versions.iter().any(|v| v.matches(version))
            && (p.os.is_empty() || p.os.iter().any(|o| o == os))
            && (p.arch.is_empty() || p.arch.iter().any(|a| a == arch))
    }

    /// The effective rate of a counter of `program`: min(`sample_rate`,
    /// counter rate), or `None` when the counter is not collected.
    ///
    /// `name` is a plain counter name (matched against plain counters), or a
    /// stack counter name (counter part, newline, frames) matched by its
    /// counter part against stack counters; a stack with more frames than
    /// the configured depth is not collected. A name that breaks the naming
    /// grammar is not collected.
    ///
    /// ```
    /// let cfg = clearcount_protocol::config::CollectionConfig::parse(
    ///     "version = 1\nsample_rate = 0.2\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n\
    ///      [[program.counter]]\nname = \"t/a\"\nrate = 0.5\n\
    ///      [[program.counter]]\nname = \"crash/panic\"\nrate = 0.1\ndepth = 2\n", "c").unwrap();
    /// assert_eq!(cfg.counter_rate("t", "t/a"), Some(0.2));
    /// assert_eq!(cfg.counter_rate("t", "crash/panic\nmain:+1\nrun:+2"), Some(0.1));
    /// assert_eq!(cfg.counter_rate("t", "crash/panic\na:+1\nb:+2\nc:+3"), None); // too deep
    /// assert_eq!(cfg.counter_rate("t", "crash/panic"), None); // a stack counter, not plain
    /// ```
    pub fn counter_rate(&self, program: &str, name: &str) -> Option<f64> {
        let p = self.program(program)?;
        let (counter, frames) = if name.contains('\n') {
            crate::name::check_stack(name).ok()?;
            (
                crate::name::stack_counter(name),
                Some(name.split('\n').count() - 1),
            )
        } else {
            crate::name::check(name).ok()?;
            (name, None)
        };
        let c = p.counters.iter().find(|c| c.name == counter)?;
        match (c.depth, frames) {
            (None, None) => {}
            (Some(depth), Some(frames)) if frames <= depth as usize => {}
            _ => return None,
        }
        Some(c.rate.min(self.sample_rate))
    }

    /// Reduces a report to what this config collects: program builds the
    /// config [`accepts`](Self::accepts), and in them only the counters and
    /// stacks with an effective rate `r` (see
    /// [`counter_rate`](Self::counter_rate)) such that `r > 0` and
    /// `report.x <= r`. Programs left with no counts are dropped, and the
    /// result's `config` is this config's version.
    ///
    /// ```
    /// use clearcount_protocol::config::CollectionConfig;
    /// use clearcount_protocol::report::{ProgramReport, Report};
    /// let cfg = CollectionConfig::parse(
    ///     "version = 7\nsample_rate = 0.5\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n\
    ///      [[program.counter]]\nname = \"t/a\"\nrate = 0.3\n\
    ///      [[program.counter]]\nname = \"t/b\"\nrate = 0.01\n", "c").unwrap();
    /// let mut p = ProgramReport::new("t", "1.0", "linux", "x86_64");
    /// for n in ["t/a", "t/b", "t/undeclared"] { p.counters.insert(n.into(), 1); }
    /// let r = Report { week: "2026-11-16".into(), x: 0.2, config: 0, programs: vec![p] };
    /// let f = cfg.filter(&r);
    /// assert_eq!(f.config, 7);
    /// assert_eq!(f.programs[0].counters.keys().collect::<Vec<_>>(), ["t/a"]);
    /// ```
    pub fn filter(&self, report: &Report) -> Report {
        let keep = |program: &str, name: &str| {
            self.counter_rate(program, name)
                .is_some_and(|r| r > 0.0 && report.x <= r)
        };
        let mut programs = Vec::new();
        for p in &report.programs {
            if !self.accepts(&p.program, &p.version, &p.os, &p.arch) {
                continue;
            }
            let mut q = ProgramReport::new(&p.program, &p.version, &p.os, &p.arch);
            for (name, &count) in &p.counters {
                if !name.contains('\n') && keep(&p.program, name) {
                    q.counters.insert(name.clone(), count);
                }
            }
            for (name, &count) in &p.stacks {
                if name.contains('\n') && keep(&p.program, name) {
                    q.stacks.insert(name.clone(), count);
                }
            }
            if !q.is_empty() {
                programs.push(q);
            }
        }
        Report {
            week: report.week.clone(),
            x: report.x,
            config: self.version,
            programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const CFG: &str = r#"version = 4
sample_rate = 0.5

[[program]]
name = "t"
versions = ["0.1.0", "1.*", ">=2.0"]
os = ["linux"]

[[program.counter]]
name = "t/cmd:{a,b}"
rate = 0.25

[[program.counter]]
name = "t/s"
rate = 1.0
depth = 3
"#;

    fn report(x: f64, version: &str) -> Report {
        let mut p = ProgramReport::new("t", version, "linux", "x86_64");
        p.counters.insert("t/cmd:a".into(), 2);
        p.counters.insert("t/cmd:c".into(), 2);
        p.counters.insert("t/s".into(), 1);
        p.stacks.insert("t/s\nf:+1\ng:+2\nh:+3".into(), 1);
        p.stacks.insert("t/s\nf:+1\ng:+2\nh:+3\ni:+4".into(), 1);
        p.stacks.insert("t/cmd:a\nf:+1".into(), 1);
        Report {
            week: "2026-11-16".into(),
            x,
            config: 0,
            programs: vec![p],
        }
    }

    #[test]
    fn parse_errors_have_lines() {
        let cases = [
            ("version = 0\nsample_rate = 0.1\n", 1, "at least 1"),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\n",
                3,
                "versions",
            ),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\nversions = [\"1*\"]\n",
                5,
                "'*'",
            ),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n\n[[program.counter]]\nname = \"t/a\"\nrate = -0.1\n",
                9,
                "not in [0, 1]",
            ),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n[[program.counter]]\nname = \"t/a:{x,\"\nrate = 0.1\n",
                7,
                "t/a:{x,",
            ),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n[[program.counter]]\nname = \"t/a\"\nrate = 0.1\ndepth = 0\n",
                9,
                "depth 0",
            ),
            ("version = 1\nsample_rate = \n", 2, ""),
            ("version = \"1\"\nsample_rate = 0.1\n", 1, ""),
            (
                "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n",
                7,
                "already configured at line 3",
            ),
        ];
        for (text, line, needle) in cases {
            let e = CollectionConfig::parse(text, "c.toml").unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{e}");
            assert!(
                e.to_string().starts_with(&format!("c.toml:{line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn integer_rate_accepted() {
        let c = CollectionConfig::parse("version = 1\nsample_rate = 1\n", "c").unwrap();
        assert_eq!(c.sample_rate, 1.0);
    }

    #[test]
    fn versions() {
        let c = CollectionConfig::parse(CFG, "c").unwrap();
        for (v, ok) in [
            ("0.1.0", true),
            ("0.1.1", false),
            ("1.0", true),
            ("1.2.3-rc1", true),
            ("1", false),
            ("10.0", true),
            ("2.0", true),
            ("2.0.0-rc1", false),
            ("2.0.1-rc1", true),
            ("v3.1", true),
            ("3.1+build7", true),
            ("devel", false),
            ("1.9.9", true),
        ] {
            assert_eq!(c.accepts("t", v, "linux", "x86_64"), ok, "{v}");
        }
        assert!(!c.accepts("t", "2.0", "windows", "x86_64"));
        assert!(!c.accepts("u", "2.0", "linux", "x86_64"));
    }

    #[test]
    fn filter_by_rate() {
        let c = CollectionConfig::parse(CFG, "c").unwrap();
        // x below both rates: cmd:a kept (declared), cmd:c and plain t/s
        // dropped, the depth-3 stack kept, the depth-4 stack dropped.
        let f = c.filter(&report(0.1, "1.0"));
        assert_eq!(f.config, 4);
        let p = &f.programs[0];
        assert_eq!(p.counters.keys().collect::<Vec<_>>(), ["t/cmd:a"]);
        assert_eq!(
            p.stacks.keys().collect::<Vec<_>>(),
            ["t/s\nf:+1\ng:+2\nh:+3"]
        );
        // x above cmd rate (0.25) but below the stack's effective rate (0.5).
        let f = c.filter(&report(0.3, "1.0"));
        assert!(f.programs[0].counters.is_empty());
        assert_eq!(f.programs[0].stacks.len(), 1);
        // x = rate is kept.
        assert_eq!(c.filter(&report(0.25, "1.0")).programs[0].counters.len(), 1);
        // x above the global cap: nothing, program dropped.
        assert!(c.filter(&report(0.6, "1.0")).programs.is_empty());
        // unaccepted version dropped.
        assert!(c.filter(&report(0.1, "0.2.0")).programs.is_empty());
    }

    #[test]
    fn zero_rate_never_kept() {
        let c = CollectionConfig::parse(
            "version = 1\nsample_rate = 0.0\n[[program]]\nname = \"t\"\nversions = [\"*\"]\n[[program.counter]]\nname = \"t/cmd:a\"\nrate = 1.0\n",
            "c",
        )
        .unwrap();
        assert!(c.filter(&report(0.0, "1")).programs.is_empty());
    }
}
