//! The first-run notice: once per installation, a short note on stderr of
//! what is collected and how to turn it off.
//!
//! [`show_once`] prints the notice only when all of these hold:
//!
//! * telemetry is not off (off writes nothing, so it cannot remember
//!   having shown anything either);
//! * no continuous-integration variable is set ([`CI_VARS`]: `CI`,
//!   `GITHUB_ACTIONS`, `GITLAB_CI`, ...);
//! * both stdout and stderr are terminals: a person is there to read it,
//!   and no script's output is changed;
//! * the file [`NOTICE_FILE`] does not exist yet in the telemetry
//!   directory. It is created atomically before printing, so of many
//!   processes starting at once exactly one prints.
//!
//! ```no_run
//! let started = clearcount::Telemetry::new("mytool", "mytool", "1.0").start();
//! clearcount::kit::notice::show_once("mytool", None);
//! # let _ = started;
//! ```

use crate::mode::{self, Mode};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// The file that records that the notice was shown.
pub const NOTICE_FILE: &str = "notice-shown";

/// Environment variables that mean "running on a CI system" when set to
/// anything non-empty (but `CI=false` or `CI=0`).
pub const CI_VARS: &[&str] = &[
    "CI",
    "CONTINUOUS_INTEGRATION",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "TEAMCITY_VERSION",
    "TF_BUILD",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ID",
    "DRONE",
    "SEMAPHORE",
];

/// Why the notice is not shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Telemetry is off.
    Off,
    /// A CI variable is set (its name).
    Ci(&'static str),
    /// stdout or stderr is not a terminal.
    NotTerminal,
    /// No telemetry directory could be found (no home directory), or the
    /// namespace is invalid.
    NoDir,
    /// It was shown before (or recording it failed).
    AlreadyShown,
}

/// The CI variable set in this environment, if any.
pub(crate) fn ci_var() -> Option<&'static str> {
    ci_var_in(|v| std::env::var_os(v).map(|s| s.to_string_lossy().into_owned()))
}

/// [`ci_var`] over any environment (`get` returns a variable's value).
pub(crate) fn ci_var_in(get: impl Fn(&str) -> Option<String>) -> Option<&'static str> {
    CI_VARS.iter().copied().find(|v| {
        get(v).is_some_and(|val| {
            let val = val.trim().to_ascii_lowercase();
            !(val.is_empty() || val == "0" || val == "false")
        })
    })
}

/// The decision, from its inputs: the mode in force, the CI variable set
/// (if any) and whether a terminal is there. The file check comes after.
pub(crate) fn decide(mode: Mode, ci: Option<&'static str>, terminal: bool) -> Result<(), Skip> {
    if mode == Mode::Off {
        return Err(Skip::Off);
    }
    if let Some(v) = ci {
        return Err(Skip::Ci(v));
    }
    if !terminal {
        return Err(Skip::NotTerminal);
    }
    Ok(())
}

/// True when both stdout and stderr are terminals.
pub(crate) fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// The mode in force for `namespace` in this process: off if the started
/// telemetry is off or the user's choice (environment, mode file) is off.
fn mode_now(namespace: &str, dir: Option<&std::path::Path>) -> Mode {
    let started = crate::telemetry::started().map(|s| s.mode);
    if started == Some(Mode::Off) {
        return Mode::Off;
    }
    mode::effective_for_start(namespace, dir, started.unwrap_or(Mode::Local)).mode
}

/// The default notice text for `namespace`, whose program is run as
/// `command` (e.g. `mytool`). It points at `<command> telemetry view` and
/// `<command> telemetry off`: the toolchain mounts the `telemetry`
/// subcommand (`kit::subcommand`), or passes its own text.
pub fn default_text(namespace: &str, command: &str) -> String {
    format!(
        "{command} counts how its commands and features are used: named counters only \
         (never arguments, file names, paths or other values), kept in a weekly file \
         on this machine; in mode `on` a weekly summary may be uploaded, and every \
         upload is published.\n\
         See what is kept: `{command} telemetry view`. Turn it off: `{command} telemetry off`, \
         or set {}=off or DO_NOT_TRACK=1. (This notice is shown once.)",
        mode::env_var(namespace)
    )
}

/// Prints the notice to stderr once per installation, if a person is there
/// to read it (see the module docs); `text` replaces
/// [`default_text`]`(namespace, namespace)`. Returns true if it printed.
pub fn show_once(namespace: &str, text: Option<&str>) -> bool {
    // Cheapest first: a program that started telemetry off, or whose
    // output is not a terminal (scripts, builds), does nothing more.
    if crate::telemetry::started().is_some_and(|s| s.mode == Mode::Off) {
        return false;
    }
    let terminal = on_terminal();
    if !terminal {
        return false;
    }
    show_once_to(namespace, text, terminal, &mut std::io::stderr().lock())
}

/// [`show_once`] with the terminal test given and any output.
pub(crate) fn show_once_to(
    namespace: &str,
    text: Option<&str>,
    terminal: bool,
    out: &mut dyn Write,
) -> bool {
    match claim(namespace, terminal) {
        Ok(_) => {
            let text = text
                .map(str::to_string)
                .unwrap_or_else(|| default_text(namespace, namespace));
            let _ = writeln!(out, "{}", text.trim_end());
            let _ = out.flush();
            true
        }
        Err(_) => false,
    }
}

/// Decides, and if the notice is to be shown, records that it was: creates
/// the notice file atomically (only one process can). Returns its path.
pub(crate) fn claim(namespace: &str, terminal: bool) -> Result<PathBuf, Skip> {
    if crate::dirs::check_namespace(namespace).is_err() {
        return Err(Skip::NoDir);
    }
    let dir = crate::dirs::telemetry_dir(namespace);
    decide(mode_now(namespace, dir.as_deref()), ci_var(), terminal)?;
    let dir = dir.ok_or(Skip::NoDir)?;
    let path = dir.join(NOTICE_FILE);
    if path.exists() {
        return Err(Skip::AlreadyShown);
    }
    if std::fs::create_dir_all(&dir).is_err() {
        return Err(Skip::NoDir);
    }
    let stamp = format!("{}\n", crate::clock::today());
    match crate::fsutil::create_atomic(&path, stamp.as_bytes()) {
        Ok(()) => Ok(path),
        Err(_) => Err(Skip::AlreadyShown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::Mode;

    #[test]
    fn notice_decision() {
        assert_eq!(decide(Mode::Local, None, true), Ok(()));
        assert_eq!(decide(Mode::On, None, true), Ok(()));
        assert_eq!(decide(Mode::Local, None, false), Err(Skip::NotTerminal));
        assert_eq!(decide(Mode::Off, None, true), Err(Skip::Off));
        assert_eq!(decide(Mode::Off, Some("CI"), false), Err(Skip::Off));
        assert_eq!(
            decide(Mode::Local, Some("TF_BUILD"), true),
            Err(Skip::Ci("TF_BUILD"))
        );
        for v in CI_VARS {
            assert_eq!(ci_var_in(|k| (k == *v).then(|| "yes".into())), Some(*v));
        }
        assert_eq!(ci_var_in(|k| (k == "CI").then(|| "0".into())), None);
        assert_eq!(ci_var_in(|k| (k == "CI").then(String::new)), None);
        assert_eq!(ci_var_in(|_| None), None);
        // Without a terminal nothing is written anywhere.
        let mut out = Vec::new();
        assert!(!show_once_to("mytool", None, false, &mut out));
        assert!(out.is_empty());
        assert_eq!(claim("Bad Namespace", true), Err(Skip::NoDir));
    }
}
