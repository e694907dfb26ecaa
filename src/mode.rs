//! Modes: whether an installation counts, and whether it uploads.
//!
//! * `off`: nothing is counted and nothing is written, not even a directory.
//! * `local`: counters are kept on this machine; nothing is ever sent.
//! * `on`: counters are kept, and weekly reports may be uploaded. Only weeks
//!   that began on or after the day `on` was set are ever uploaded.
//!
//! The mode comes from, in order:
//!
//! 1. `DO_NOT_TRACK` set to anything but empty, `0` or `false`: off.
//! 2. `<NAMESPACE>_TELEMETRY=off|local|on` (namespace upper-cased, `-` as
//!    `_`); any other value is ignored, with a one-line warning on stderr
//!    (once per process).
//! 3. The `mode` file in the telemetry directory: `on 2026-11-16`.
//! 4. The toolchain's default (`local` unless it chose otherwise).

use chrono::NaiveDate;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Name of the mode file in the telemetry directory.
pub const MODE_FILE: &str = "mode";

/// What telemetry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Count nothing, write nothing.
    Off,
    /// Count locally, never upload.
    Local,
    /// Count and upload.
    On,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Off => "off",
            Mode::Local => "local",
            Mode::On => "on",
        })
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "off" => Ok(Mode::Off),
            "local" => Ok(Mode::Local),
            "on" => Ok(Mode::On),
            other => Err(format!(
                "unknown mode {other:?} (expected off, local or on)"
            )),
        }
    }
}

/// Where the mode in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `DO_NOT_TRACK` is set.
    DoNotTrack,
    /// The namespace's environment variable.
    Env,
    /// The mode file.
    File,
    /// The toolchain's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::DoNotTrack => "DO_NOT_TRACK",
            Source::Env => "environment variable",
            Source::File => "mode file",
            Source::Default => "default",
        })
    }
}

/// The mode in force and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The mode.
    pub mode: Mode,
    /// Where it came from.
    pub source: Source,
    /// The day `on` was set in the mode file, if it was.
    pub on_since: Option<NaiveDate>,
}

/// The environment variable that overrides a namespace's mode.
pub fn env_var(namespace: &str) -> String {
    format!(
        "{}_TELEMETRY",
        namespace.to_ascii_uppercase().replace('-', "_")
    )
}

/// True when `DO_NOT_TRACK` asks for no telemetry.
pub fn do_not_track() -> bool {
    match std::env::var("DO_NOT_TRACK") {
        Ok(v) => {
            let v = v.trim().to_ascii_lowercase();
            !(v.is_empty() || v == "0" || v == "false")
        }
        Err(_) => false,
    }
}

/// Reads the mode file: the mode and the date it was set.
pub fn read_file(dir: &Path) -> Option<(Mode, Option<NaiveDate>)> {
    let text = crate::fsutil::read_small(&dir.join(MODE_FILE)).ok()?;
    let mut words = text.split_whitespace();
    let mode = words.next()?.parse().ok()?;
    let date = words.next().and_then(crate::format::parse_date);
    Some((mode, date))
}

/// Writes the mode file (atomically), recording `today` as the date it was
/// set. Setting `on` again keeps the earlier date.
#[cfg(feature = "kit")]
pub fn write_file(dir: &Path, mode: Mode, today: NaiveDate) -> std::io::Result<()> {
    let date = match read_file(dir) {
        Some((old, Some(d))) if old == mode && mode == Mode::On => d,
        _ => today,
    };
    std::fs::create_dir_all(dir)?;
    crate::fsutil::replace_atomic(&dir.join(MODE_FILE), format!("{mode} {date}\n").as_bytes())
}

/// Prints `warning` on stderr, the first time only.
fn warn_once(warning: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("warning: {warning}"));
}

/// The mode in force for a namespace whose directory is `dir` (which need
/// not exist; nothing is created).
#[cfg_attr(not(feature = "upload"), allow(dead_code))]
pub fn effective(namespace: &str, dir: Option<&Path>, default: Mode) -> Effective {
    effective_with(namespace, dir, default, true)
}

/// The mode in force, for starting telemetry: like [`effective`], but the
/// mode file is not read when the environment decides a mode other than
/// `on` (then the day `on` was set does not matter, and a start that is
/// off touches no file at all).
pub(crate) fn effective_for_start(namespace: &str, dir: Option<&Path>, default: Mode) -> Effective {
    effective_with(namespace, dir, default, false)
}

fn effective_with(
    namespace: &str,
    dir: Option<&Path>,
    default: Mode,
    always_read: bool,
) -> Effective {
    let env_mode = std::env::var(env_var(namespace))
        .ok()
        .and_then(|v| v.parse::<Mode>().ok());
    let decided = do_not_track() || env_mode.is_some_and(|m| m != Mode::On);
    let from_file = if always_read || !decided {
        dir.and_then(read_file)
    } else {
        None
    };
    let on_since = match from_file {
        Some((Mode::On, d)) => d,
        _ => None,
    };
    if do_not_track() {
        return Effective {
            mode: Mode::Off,
            source: Source::DoNotTrack,
            on_since,
        };
    }
    if let Ok(v) = std::env::var(env_var(namespace)) {
        match v.parse::<Mode>() {
            Ok(mode) => {
                return Effective {
                    mode,
                    source: Source::Env,
                    on_since,
                };
            }
            Err(_) => warn_once(&format!(
                "{namespace}: {}={v:?} is not off, local or on; ignored",
                env_var(namespace)
            )),
        }
    }
    match from_file {
        Some((mode, _)) => Effective {
            mode,
            source: Source::File,
            on_since,
        },
        None => Effective {
            mode: default,
            source: Source::Default,
            on_since: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_the_variable_and_the_modes() {
        assert_eq!(env_var("my-tool"), "MY_TOOL_TELEMETRY");
        assert_eq!(env_var("gopls"), "GOPLS_TELEMETRY");
        assert_eq!("local".parse::<Mode>(), Ok(Mode::Local));
        assert_eq!(" on\n".parse::<Mode>(), Ok(Mode::On));
        let e = "yes".parse::<Mode>().unwrap_err();
        assert!(e.contains("expected off, local or on"), "{e}");
    }

    #[cfg(feature = "kit")]
    #[test]
    fn mode_file_keeps_the_day_on_was_first_set() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_file(dir.path()), None);
        let day: NaiveDate = "2026-11-16".parse().unwrap();
        let later = day + chrono::Days::new(3);
        write_file(dir.path(), Mode::On, day).unwrap();
        assert_eq!(read_file(dir.path()), Some((Mode::On, Some(day))));
        write_file(dir.path(), Mode::On, later).unwrap();
        assert_eq!(read_file(dir.path()), Some((Mode::On, Some(day))));
        write_file(dir.path(), Mode::Local, later).unwrap();
        assert_eq!(read_file(dir.path()), Some((Mode::Local, Some(later))));
    }
}
