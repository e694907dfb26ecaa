//! The opt-in prompt: once per installation, a question on the terminal
//! whether to turn uploading on.
//!
//! [`ask_once`] asks only when all of these hold:
//!
//! * nobody has chosen a mode yet: no `DO_NOT_TRACK`, no
//!   `<NAMESPACE>_TELEMETRY`, no mode file (a mode set by `on`, `off`,
//!   `local` or an earlier answer). The toolchain's default mode, even
//!   `off`, is not a choice: an opt-in toolchain (default `off`) asks too;
//! * no continuous-integration variable is set (the same detection as the
//!   first-run notice, [`notice::CI_VARS`]);
//! * stdin, stdout and stderr are terminals: a person is there to answer,
//!   and no script's input or output is touched;
//! * it was never asked in this installation, or it was asked more than
//!   [`ASK_AGAIN_AFTER_MONTHS`] months ago and not answered (`not now`).
//!   Each asking is recorded before the question is printed, by creating
//!   the file `prompt-asked-<n>` (the `n`-th asking) atomically in the
//!   telemetry directory, so of many processes starting at once exactly
//!   one asks.
//!
//! The question goes to stderr and the answer is one line read from stdin
//! (the call waits for it, so call it where a question is welcome: an
//! interactive command, not a build script's step):
//!
//! * `y` or `yes`: the mode becomes `on`, from today, as `mytool telemetry
//!   on` sets it (only weeks that begin on or after today are ever
//!   uploaded);
//! * `n` or `no`: the mode becomes `off`;
//! * anything else, an empty line or end of input (Ctrl-D): nothing
//!   changes; it may be asked again after [`ASK_AGAIN_AFTER_MONTHS`]
//!   months. A process interrupted while asking (Ctrl-C) counts as not
//!   answered.
//!
//! The outcome is counted like any counter of the program
//! ([`COUNTER_SET`]: `telemetry/prompt:shown` when asked, then one of
//! `yes`, `no`, `unanswered`): into this week's file in mode `local`, so it
//! stays on the machine until the user opts in (and, as weeks that began
//! before `on` are never uploaded, the week of a `yes` is sent only when it
//! begins that very day); not at all while telemetry is off. Declare the set in the program's
//! counters file to collect it later:
//!
//! ```toml
//! [[counter]]
//! name = "telemetry/prompt:{shown,yes,no,unanswered}"
//! kind = "plain"
//! description = "One count when the opt-in prompt was shown, and one for how it was answered."
//! question = "Do users who are asked opt in?"
//! ```
//!
//! What is written: the `prompt-asked-<n>` file (also when telemetry is
//! off by the toolchain's default: it is how the installation remembers
//! that it asked), and the mode file on a yes or a no. Nothing at all when
//! it does not ask.
//!
//! ```no_run
//! clearcount::Telemetry::new("mytool", "mytool", "1.0").start();
//! match clearcount::kit::prompt::ask_once("mytool", None) {
//!     Some(answer) => eprintln!("asked: {answer:?}"),
//!     None => {} // not asked: see the module docs for when
//! }
//! ```

use super::notice;
use crate::counter::Counter;
use crate::mode::{self, Mode, Source};
use chrono::NaiveDate;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// A question not answered (`not now`) is asked again after this many
/// months, and not before.
pub const ASK_AGAIN_AFTER_MONTHS: u32 = 6;

/// The prefix of the files that record each asking (`prompt-asked-1`,
/// `prompt-asked-2`, ...), in the telemetry directory.
pub const ASKED_FILE_PREFIX: &str = "prompt-asked-";

/// The counters of the prompt's outcome, as a bucket set for a counters
/// file.
pub const COUNTER_SET: &str = "telemetry/prompt:{shown,yes,no,unanswered}";

static SHOWN: Counter = Counter::new("telemetry/prompt:shown");
static YES: Counter = Counter::new("telemetry/prompt:yes");
static NO: Counter = Counter::new("telemetry/prompt:no");
static UNANSWERED: Counter = Counter::new("telemetry/prompt:unanswered");

/// How the question was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Yes: the mode is now `on`.
    Yes,
    /// No: the mode is now `off`.
    No,
    /// Not now (an empty line, anything else, end of input): nothing
    /// changed.
    NotNow,
}

impl Answer {
    /// Reads one line of answer: `y`/`yes` and `n`/`no` (any case, blanks
    /// around ignored); anything else, and no line at all, is not now.
    pub fn parse(line: Option<&str>) -> Answer {
        match line.map(|l| l.trim().to_ascii_lowercase()).as_deref() {
            Some("y" | "yes") => Answer::Yes,
            Some("n" | "no") => Answer::No,
            _ => Answer::NotNow,
        }
    }

    /// The word recorded in the asked file and counted
    /// (`telemetry/prompt:<word>`).
    fn word(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::NotNow => "unanswered",
        }
    }
}

/// Why the question is not asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// The user chose a mode already (where it came from).
    ModeChosen(Source),
    /// A CI variable is set (its name).
    Ci(&'static str),
    /// stdin, stdout or stderr is not a terminal.
    NotTerminal,
    /// No telemetry directory (no home directory), or a bad namespace.
    NoDir,
    /// Asked before: answered, or not answered and not yet due again; or
    /// another process is asking right now.
    AlreadyAsked,
}

/// The decision before the files are looked at: the mode's source, the CI
/// variable set (if any) and whether a terminal is there.
pub(crate) fn decide(source: Source, ci: Option<&'static str>, terminal: bool) -> Result<(), Skip> {
    if source != Source::Default {
        return Err(Skip::ModeChosen(source));
    }
    if let Some(v) = ci {
        return Err(Skip::Ci(v));
    }
    if !terminal {
        return Err(Skip::NotTerminal);
    }
    Ok(())
}

/// The last asking recorded in `dir`: its number, the day it was asked and
/// whether it was answered yes or no.
fn last_asked(dir: &Path) -> Option<(u32, Option<NaiveDate>, bool)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let n = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix(ASKED_FILE_PREFIX)?
                .parse::<u32>()
                .ok()
        })
        .max()?;
    let text =
        crate::fsutil::read_small(&dir.join(format!("{ASKED_FILE_PREFIX}{n}"))).unwrap_or_default();
    let mut words = text.split_whitespace();
    let day = words.next().and_then(crate::format::parse_date);
    let answered = matches!(words.next(), Some("yes" | "no"));
    Some((n, day, answered))
}

/// Which asking (its number) is due on `today`, given the last one.
pub(crate) fn due(last: Option<(u32, Option<NaiveDate>, bool)>, today: NaiveDate) -> Option<u32> {
    match last {
        None => Some(1),
        Some((_, _, true)) => None,
        // A record without a readable day: never ask again (asking less is
        // the safe side).
        Some((_, None, false)) => None,
        Some((n, Some(day), false)) => {
            let again = day.checked_add_months(chrono::Months::new(ASK_AGAIN_AFTER_MONTHS))?;
            (today >= again).then_some(n + 1)
        }
    }
}

/// Decides, and if the question is to be asked, records the asking (only
/// one process can). Returns the telemetry directory and the asked file.
pub(crate) fn claim(namespace: &str, terminal: bool) -> Result<(PathBuf, PathBuf), Skip> {
    if crate::dirs::check_namespace(namespace).is_err() {
        return Err(Skip::NoDir);
    }
    let dir = crate::dirs::telemetry_dir(namespace);
    let eff = mode::effective(namespace, dir.as_deref(), Mode::Local);
    decide(eff.source, notice::ci_var(), terminal)?;
    let dir = dir.ok_or(Skip::NoDir)?;
    let today = crate::clock::today();
    let n = due(last_asked(&dir), today).ok_or(Skip::AlreadyAsked)?;
    if std::fs::create_dir_all(&dir).is_err() {
        return Err(Skip::NoDir);
    }
    let path = dir.join(format!("{ASKED_FILE_PREFIX}{n}"));
    match crate::fsutil::create_atomic(&path, format!("{today}\n").as_bytes()) {
        Ok(()) => Ok((dir, path)),
        Err(_) => Err(Skip::AlreadyAsked),
    }
}

/// The default question for `namespace`, whose program is run as `command`
/// (e.g. `mytool`); the choices line follows it.
pub fn default_text(namespace: &str, command: &str) -> String {
    format!(
        "Help improve {command}? With your yes, {command} uploads a weekly summary of how its \
         commands and features were used: named counters only (never arguments, file names, \
         paths or other values), no identifier of any kind, from a random sample of \
         installations; every upload is published. See what is kept: \
         `{command} telemetry view`. Change your mind at any time: `{command} telemetry off` \
         (or set {}=off).",
        mode::env_var(namespace)
    )
}

/// The line of choices printed after the question.
const CHOICES: &str = "Turn uploading on? [y] yes  [n] no, turn telemetry off  [Enter] not now: ";

/// Asks once per installation whether to turn uploading on, if a person
/// is at a terminal and nobody chose a mode yet (see the module docs);
/// `text` replaces [`default_text`]`(namespace, namespace)`. Returns the
/// answer, or `None` when it did not ask.
pub fn ask_once(namespace: &str, text: Option<&str>) -> Option<Answer> {
    let terminal = std::io::stdin().is_terminal() && notice::on_terminal();
    if !terminal {
        return None;
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    ask_once_with(
        namespace,
        text,
        terminal,
        &mut input,
        &mut std::io::stderr().lock(),
    )
}

/// [`ask_once`] with the terminal test given, and any input and output.
pub(crate) fn ask_once_with(
    namespace: &str,
    text: Option<&str>,
    terminal: bool,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Option<Answer> {
    let (dir, asked) = claim(namespace, terminal).ok()?;
    SHOWN.inc();
    let text = text
        .map(str::to_string)
        .unwrap_or_else(|| default_text(namespace, namespace));
    let _ = write!(out, "{}\n{CHOICES}", text.trim_end());
    let _ = out.flush();
    let mut line = String::new();
    let read = match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.as_str()),
    };
    let answer = Answer::parse(read);
    if read.is_none() {
        // End of input: the cursor is still after the choices.
        let _ = writeln!(out);
    }
    let today = crate::clock::today();
    match answer {
        Answer::Yes => YES.inc(),
        Answer::No => NO.inc(),
        Answer::NotNow => UNANSWERED.inc(),
    }
    let _ =
        crate::fsutil::replace_atomic(&asked, format!("{today} {}\n", answer.word()).as_bytes());
    let hint = super::commands::invoked_as(namespace);
    let said = match answer {
        Answer::Yes => set_mode(&dir, Mode::On, today).map(|()| {
            format!(
                "Telemetry for {namespace} is on: {}. `{hint} off` turns it off.",
                super::commands::status::ON_MEANS.replace("today", &today.to_string())
            )
        }),
        Answer::No => set_mode(&dir, Mode::Off, today)
            .map(|()| format!("Telemetry for {namespace} is off. `{hint} on` turns uploading on.")),
        Answer::NotNow => Ok(format!(
            "Nothing changed. `{hint} on` turns uploading on, `{hint} off` turns telemetry off."
        )),
    };
    match said {
        Ok(s) => {
            let _ = writeln!(out, "{s}");
        }
        Err(e) => {
            let _ = writeln!(out, "{namespace}: {e}");
        }
    }
    let _ = out.flush();
    Some(answer)
}

/// Writes the mode file as `mytool telemetry on|off` does.
fn set_mode(dir: &Path, m: Mode, today: NaiveDate) -> Result<(), String> {
    mode::write_file(dir, m, today)
        .map_err(|e| format!("cannot write {}: {e}", dir.join(mode::MODE_FILE).display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn asks_only_when_nobody_chose() {
        assert_eq!(decide(Source::Default, None, true), Ok(()));
        for s in [Source::File, Source::Env, Source::DoNotTrack] {
            assert_eq!(decide(s, None, true), Err(Skip::ModeChosen(s)));
        }
        assert_eq!(
            decide(Source::Default, Some("CI"), true),
            Err(Skip::Ci("CI"))
        );
        assert_eq!(decide(Source::Default, None, false), Err(Skip::NotTerminal));
    }

    #[test]
    fn answers() {
        assert_eq!(Answer::parse(Some("y\n")), Answer::Yes);
        assert_eq!(Answer::parse(Some("  YES ")), Answer::Yes);
        assert_eq!(Answer::parse(Some("n")), Answer::No);
        assert_eq!(Answer::parse(Some("No\r\n")), Answer::No);
        for other in ["\n", "", "yep", "maybe", "nope", "1"] {
            assert_eq!(Answer::parse(Some(other)), Answer::NotNow, "{other:?}");
        }
        assert_eq!(Answer::parse(None), Answer::NotNow);
    }

    #[test]
    fn asked_again_only_months_after_not_now() {
        let today = day("2026-11-16");
        assert_eq!(due(None, today), Some(1));
        let asked = Some(day("2026-05-17"));
        assert_eq!(due(Some((1, asked, false)), today), None, "a day short");
        assert_eq!(due(Some((1, asked, false)), day("2026-11-17")), Some(2));
        assert_eq!(due(Some((3, Some(day("2020-01-01")), true)), today), None);
        assert_eq!(due(Some((1, None, false)), today), None);
    }

    #[test]
    fn without_a_terminal_nothing_is_read_or_written() {
        let mut input: &[u8] = b"y\n";
        let mut out = Vec::new();
        assert_eq!(
            ask_once_with("mytool", None, false, &mut input, &mut out),
            None
        );
        assert!(out.is_empty());
        assert_eq!(input, b"y\n");
        assert_eq!(claim("Bad Namespace", true), Err(Skip::NoDir));
    }
}
