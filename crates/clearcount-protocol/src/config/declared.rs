//! The declared counters: the public registry `config/counters/<program>.toml`
//! of every counter a program may count, and [`check`], which holds a
//! collection config against it.

use super::{
    CollectionConfig, ConfigError, Lines, check_depth, check_word, expand_name, toml_error,
};
use serde::Deserialize;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// Whether a declared counter is a plain counter or a stack counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    /// A plain counter: one name, one count.
    Plain,
    /// A stack counter: counted per call stack (name, newline, frames).
    Stack,
}

impl fmt::Display for CounterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CounterKind::Plain => "plain",
            CounterKind::Stack => "stack",
        })
    }
}

/// One entry of a declared-counters file.
///
/// ```
/// let p = clearcount_protocol::config::DeclaredProgram::parse(
///     "program = \"t\"\n[[counter]]\nname = \"t/a:{x,y}\"\nkind = \"plain\"\n\
///      description = \"Counts a.\"\nquestion = \"How often is a used?\"\n", "t.toml").unwrap();
/// assert_eq!(p.counters[0].names, ["t/a:x", "t/a:y"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredCounter {
    /// The name as written (may be a bucket set `base:{a,b}`).
    pub pattern: String,
    /// The names it stands for, bucket sets expanded.
    pub names: Vec<String>,
    /// Plain or stack counter.
    pub kind: CounterKind,
    /// For a stack counter, the most frames kept.
    pub depth: Option<u32>,
    /// What is counted, in words a user can read.
    pub description: String,
    /// The question the counter answers for the maintainers.
    pub question: String,
    /// Line of the entry in its file.
    pub line: usize,
}

/// The declared counters of one program (one `config/counters/<program>.toml`).
///
/// ```
/// let p = clearcount_protocol::config::DeclaredProgram::parse(
///     "program = \"t\"\n[[counter]]\nname = \"t/s\"\nkind = \"stack\"\ndepth = 8\n\
///      description = \"Where s is called from.\"\nquestion = \"Who calls s?\"\n", "t.toml").unwrap();
/// assert_eq!(p.counter("t/s").unwrap().depth, Some(8));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredProgram {
    /// The program name.
    pub program: String,
    /// The file it was read from.
    pub source: String,
    /// Its counters, in file order.
    pub counters: Vec<DeclaredCounter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeclared {
    program: Spanned<String>,
    #[serde(default, rename = "counter")]
    counters: Vec<Spanned<RawDeclaredCounter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeclaredCounter {
    name: Spanned<String>,
    kind: Spanned<String>,
    depth: Option<Spanned<i64>>,
    description: Spanned<String>,
    question: Spanned<String>,
}

impl DeclaredProgram {
    /// Parses one declared-counters file. `source` names it in messages.
    ///
    /// ```
    /// let err = clearcount_protocol::config::DeclaredProgram::parse(
    ///     "program = \"t\"\n[[counter]]\nname = \"t/a\"\nkind = \"plain\"\ndescription = \"\"\nquestion = \"?\"\n",
    ///     "t.toml").unwrap_err();
    /// assert_eq!(err.to_string(), "t.toml:5: counter \"t/a\": description is empty");
    /// ```
    pub fn parse(text: &str, source: &str) -> Result<DeclaredProgram, ConfigError> {
        let raw: RawDeclared = toml::from_str(text).map_err(|e| toml_error(text, source, &e))?;
        let lines = Lines::new(text);
        let at = |span: std::ops::Range<usize>, msg: String| {
            ConfigError::new(source, lines.line(span.start), msg)
        };
        let program = raw.program.get_ref().clone();
        check_word("program name", &program).map_err(|m| at(raw.program.span(), m))?;
        let mut counters: Vec<DeclaredCounter> = Vec::new();
        for rc in raw.counters {
            let line = lines.line(rc.span().start);
            let rc = rc.into_inner();
            let pattern = rc.name.get_ref().clone();
            let names = expand_name(&pattern).map_err(|m| at(rc.name.span(), m))?;
            let kind = match rc.kind.get_ref().as_str() {
                "plain" => CounterKind::Plain,
                "stack" => CounterKind::Stack,
                other => {
                    return Err(at(
                        rc.kind.span(),
                        format!(
                            "counter {pattern:?}: kind {other:?} is not \"plain\" or \"stack\""
                        ),
                    ));
                }
            };
            let depth = match (&rc.depth, kind) {
                (None, CounterKind::Plain) => None,
                (None, CounterKind::Stack) => {
                    return Err(at(
                        rc.kind.span(),
                        format!("counter {pattern:?}: a stack counter needs a depth"),
                    ));
                }
                (Some(d), CounterKind::Plain) => {
                    return Err(at(
                        d.span(),
                        format!("counter {pattern:?}: only a stack counter has a depth"),
                    ));
                }
                (Some(d), CounterKind::Stack) => Some(
                    check_depth(*d.get_ref())
                        .map_err(|m| at(d.span(), format!("counter {pattern:?}: {m}")))?,
                ),
            };
            for (what, field) in [("description", &rc.description), ("question", &rc.question)] {
                if field.get_ref().trim().is_empty() {
                    return Err(at(
                        field.span(),
                        format!("counter {pattern:?}: {what} is empty"),
                    ));
                }
            }
            for n in &names {
                if let Some(prev) = counters.iter().find(|c| c.names.contains(n)) {
                    return Err(at(
                        rc.name.span(),
                        format!("counter {n:?} is already declared at line {}", prev.line),
                    ));
                }
            }
            counters.push(DeclaredCounter {
                pattern,
                names,
                kind,
                depth,
                description: rc.description.get_ref().trim().to_string(),
                question: rc.question.get_ref().trim().to_string(),
                line,
            });
        }
        Ok(DeclaredProgram {
            program,
            source: source.to_string(),
            counters,
        })
    }

    /// The declared counter a (bucket-expanded) name belongs to.
    ///
    /// ```
    /// let p = clearcount_protocol::config::DeclaredProgram::parse(
    ///     "program = \"t\"\n[[counter]]\nname = \"t/a:{x,y}\"\nkind = \"plain\"\n\
    ///      description = \"d\"\nquestion = \"q\"\n", "t.toml").unwrap();
    /// assert_eq!(p.counter("t/a:y").unwrap().pattern, "t/a:{x,y}");
    /// assert!(p.counter("t/a:z").is_none());
    /// ```
    pub fn counter(&self, name: &str) -> Option<&DeclaredCounter> {
        self.counters
            .iter()
            .find(|c| c.names.iter().any(|n| n == name))
    }
}

/// The public registry: every declared-counters file of a directory.
///
/// ```no_run
/// let declared = clearcount_protocol::config::DeclaredCounters::load_dir("config/counters").unwrap();
/// for p in &declared.programs {
///     println!("{}: {} counters", p.program, p.counters.len());
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeclaredCounters {
    /// One entry per program, sorted by file name.
    pub programs: Vec<DeclaredProgram>,
}

impl DeclaredCounters {
    /// Loads every `*.toml` file of `dir`. Each file must be named after the
    /// program it declares (`<program>.toml`). Every problem found is
    /// returned.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<DeclaredCounters, Vec<ConfigError>> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![ConfigError::new(
                &shown,
                0,
                format!("cannot read directory: {e}"),
            )]
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        paths.sort();
        let mut programs = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let source = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(ConfigError::new(
                        &source,
                        0,
                        format!("cannot read file: {e}"),
                    ));
                    continue;
                }
            };
            match DeclaredProgram::parse(&text, &source) {
                Ok(p) => {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                    if stem != p.program {
                        let line = text
                            .lines()
                            .position(|l| l.trim_start().starts_with("program"))
                            .map_or(1, |i| i + 1);
                        errors.push(ConfigError::new(
                            &source,
                            line,
                            format!(
                                "file declares program {:?}, so it must be named {}.toml",
                                p.program, p.program
                            ),
                        ));
                    } else {
                        programs.push(p);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(DeclaredCounters { programs })
        } else {
            Err(errors)
        }
    }

    /// The declared counters of one program.
    pub fn program(&self, program: &str) -> Option<&DeclaredProgram> {
        self.programs.iter().find(|p| p.program == program)
    }
}

/// Checks a collection config against the declared counters: every program
/// configured has a declared-counters file, and every counter configured is
/// declared for that program with the same kind and depth. (Names, rates,
/// depths and versions are already checked by [`CollectionConfig::parse`];
/// that the version only goes up is checked when a config is accepted, see
/// `sign::verify_config`.) Every problem found is returned.
///
/// ```
/// use clearcount_protocol::config::{check, CollectionConfig, DeclaredCounters, DeclaredProgram};
/// let cfg = CollectionConfig::parse("version = 1\nsample_rate = 1.0\n[[program]]\nname = \"t\"\n\
///     versions = [\"*\"]\n[[program.counter]]\nname = \"t/a:{x,y}\"\nrate = 0.1\n", "config.toml").unwrap();
/// let t = DeclaredProgram::parse("program = \"t\"\n[[counter]]\nname = \"t/a:{x}\"\nkind = \"plain\"\n\
///     description = \"d\"\nquestion = \"q\"\n", "t.toml").unwrap();
/// let errs = check(&cfg, &DeclaredCounters { programs: vec![t] }).unwrap_err();
/// assert_eq!(errs[0].to_string(), "config.toml:6: counter \"t/a:y\" of program \"t\" is not declared in t.toml");
/// ```
pub fn check(
    config: &CollectionConfig,
    declared: &DeclaredCounters,
) -> Result<(), Vec<ConfigError>> {
    let file = if config.source.is_empty() {
        "config"
    } else {
        &config.source
    };
    let mut errors = Vec::new();
    for p in &config.programs {
        let Some(d) = declared.program(&p.name) else {
            errors.push(ConfigError::new(
                file,
                p.line,
                format!(
                    "program {:?} has no declared counters (expected a file counters/{}.toml)",
                    p.name, p.name
                ),
            ));
            continue;
        };
        for c in &p.counters {
            let Some(dc) = d.counter(&c.name) else {
                errors.push(ConfigError::new(
                    file,
                    c.line,
                    format!(
                        "counter {:?} of program {:?} is not declared in {}",
                        c.name, p.name, d.source
                    ),
                ));
                continue;
            };
            let problem = match (dc.kind, dc.depth, c.depth) {
                (CounterKind::Plain, _, None) => None,
                (CounterKind::Plain, _, Some(_)) => Some(format!(
                    "counter {:?} is declared as a plain counter ({}:{}) but configured with a depth",
                    c.name, d.source, dc.line
                )),
                (CounterKind::Stack, Some(dd), None) => Some(format!(
                    "counter {:?} is declared as a stack counter of depth {dd} ({}:{}) but configured without a depth",
                    c.name, d.source, dc.line
                )),
                (CounterKind::Stack, dd, Some(cd)) if dd != Some(cd) => Some(format!(
                    "counter {:?} is configured with depth {cd} but declared with depth {} ({}:{})",
                    c.name,
                    dd.unwrap_or(0),
                    d.source,
                    dc.line
                )),
                _ => None,
            };
            if let Some(m) = problem {
                errors.push(ConfigError::new(file, c.line, m));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::CFG;

    #[test]
    fn declared_errors() {
        let head = "program = \"t\"\n[[counter]]\nname = \"t/a\"\n";
        let cases = [
            (
                "kind = \"histo\"\ndescription = \"d\"\nquestion = \"q\"\n",
                4,
                "kind",
            ),
            (
                "kind = \"stack\"\ndescription = \"d\"\nquestion = \"q\"\n",
                4,
                "needs a depth",
            ),
            (
                "kind = \"plain\"\ndepth = 3\ndescription = \"d\"\nquestion = \"q\"\n",
                5,
                "only a stack",
            ),
            ("kind = \"plain\"\ndescription = \"d\"\n", 2, "question"),
            (
                "kind = \"plain\"\ndescription = \"d\"\nquestion = \"q\"\n[[counter]]\nname = \"t/a\"\nkind = \"plain\"\ndescription = \"d\"\nquestion = \"q\"\n",
                8,
                "already declared at line 2",
            ),
        ];
        for (tail, line, needle) in cases {
            let e = DeclaredProgram::parse(&format!("{head}{tail}"), "t.toml").unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(needle), "{e}");
        }
    }

    #[test]
    fn check_kind_and_depth() {
        let c = CollectionConfig::parse(CFG, "config.toml").unwrap();
        let d = DeclaredProgram::parse(
            "program = \"t\"\n[[counter]]\nname = \"t/cmd:{a,b}\"\nkind = \"plain\"\ndescription = \"d\"\nquestion = \"q\"\n\
             [[counter]]\nname = \"t/s\"\nkind = \"stack\"\ndepth = 8\ndescription = \"d\"\nquestion = \"q\"\n",
            "t.toml",
        )
        .unwrap();
        let errs = check(&c, &DeclaredCounters { programs: vec![d] }).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "config.toml:13: counter \"t/s\" is configured with depth 3 but declared with depth 8 (t.toml:7)"
        );
        let errs = check(&c, &DeclaredCounters::default()).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .starts_with("config.toml:4: program \"t\" has no declared counters")
        );
    }
}
