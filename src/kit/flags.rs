//! Flag counting: which command-line flags and subcommands a run used,
//! never their values.
//!
//! * [`count_matches`] (programs built on clap) counts
//!   `<program>/flag:<long name>` once for each flag or option the user
//!   gave on the command line (not defaults, not environment variables),
//!   and `<program>/command:<path>` for the subcommand path, its parts
//!   joined with `.` (`mytool/command:telemetry.status`: `/` is not allowed
//!   in a bucket).
//! * [`count_args`] (plain `std::env::args_os`) counts
//!   `<program>/flag:<name>` for the flags of an allow-list; any other flag
//!   counts as `<program>/flag:other`.
//!
//! Only names taken from the program's own definitions (the clap command or
//! the allow-list) are ever recorded, never text the user typed: values,
//! positional arguments and unknown flags cannot reach a counter name. A
//! name that breaks the naming grammar is counted as `other`. Each name is
//! counted once per call, however often the flag was repeated.
//!
//! Declare the counters as bucket sets, e.g.
//! `mytool/flag:{verbose,jobs,release,other}` and
//! `mytool/command:{build,telemetry.status,...}`.
//!
//! ```
//! let counted = clearcount::kit::flags::count_args(
//!     "mytool",
//!     ["--verbose", "--name=secret", "input.txt"],
//!     &["verbose", "jobs"],
//! );
//! assert_eq!(counted, ["mytool/flag:other", "mytool/flag:verbose"]);
//! ```

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use std::collections::BTreeSet;
use std::ffi::OsStr;

/// The bucket used for flags and commands that cannot be named.
pub const OTHER: &str = "other";

/// `<program>/<kind>:<name>`, or `<program>/<kind>:other` if that breaks
/// the grammar.
fn counter_name(program: &str, kind: &str, name: &str) -> String {
    let full = format!("{program}/{kind}:{name}");
    if crate::name::check(&full).is_ok() {
        full
    } else {
        format!("{program}/{kind}:{OTHER}")
    }
}

/// Counts the flags and the subcommand path of a clap command line. `cmd`
/// is the command the matches came from (`Cli::command()` with
/// `clap::CommandFactory` for derive): names are taken from it (a flag's
/// long name, else its short letter, else its id), never from the command
/// line. The mounted `telemetry` subcommand ([`crate::kit::subcommand`])
/// counts as a command, but its own flags (`--json`, `--dry-run`) are not
/// counted: the toolchain declares none of them; and `telemetry off`
/// counts nothing at all, not even the toolchain's flags. Returns the counter names
/// it counted, sorted (none when telemetry was started off).
///
/// ```
/// use clap::{Arg, ArgAction, Command};
/// let cmd = Command::new("mytool")
///     .arg(Arg::new("verbose").long("verbose").action(ArgAction::SetTrue))
///     .subcommand(Command::new("build").arg(Arg::new("jobs").long("jobs").default_value("4"))
///         .arg(Arg::new("name").long("name")));
/// let m = cmd.clone().get_matches_from(["mytool", "--verbose", "build", "--name", "s3cret"]);
/// let counted = clearcount::kit::flags::count_matches("mytool", &cmd, &m);
/// assert_eq!(counted, ["mytool/command:build", "mytool/flag:name", "mytool/flag:verbose"]);
/// ```
pub fn count_matches(program: &str, cmd: &Command, matches: &ArgMatches) -> Vec<String> {
    if crate::telemetry::is_off() {
        return Vec::new(); // nothing is counted: do no work at all
    }
    let mut names = BTreeSet::new();
    let mut path: Vec<&str> = Vec::new();
    // Commands from the root down to the current level: a global argument
    // is defined on an ancestor but shows up in the subcommand's matches.
    let mut levels: Vec<&Command> = vec![cmd];
    let mut m = matches;
    let mut in_telemetry = false;
    loop {
        for id in m.ids().filter(|_| !in_telemetry) {
            let id = id.as_str();
            if m.value_source(id) != Some(ValueSource::CommandLine) {
                continue;
            }
            let Some(arg) = levels
                .iter()
                .rev()
                .find_map(|c| c.get_arguments().find(|a| a.get_id() == id))
            else {
                continue; // a group, or not ours
            };
            if arg.is_positional() {
                continue;
            }
            let flag = match (arg.get_long(), arg.get_short()) {
                (Some(l), _) => l.to_string(),
                (None, Some(s)) => s.to_string(),
                (None, None) => id.to_string(),
            };
            names.insert(counter_name(program, "flag", &flag));
        }
        let Some((sub, sub_m)) = m.subcommand() else {
            break;
        };
        let here = levels.last().copied().unwrap_or(cmd);
        match here.find_subcommand(sub) {
            Some(sc) => {
                path.push(sc.get_name());
                in_telemetry |= is_telemetry_subcommand(sc);
                levels.push(sc);
                m = sub_m;
            }
            None => {
                // An external subcommand: its name is the user's text.
                path.push(OTHER);
                break;
            }
        }
    }
    if in_telemetry && path.last() == Some(&"off") {
        // Turning telemetry off counts nothing, not even itself (started
        // off already when the subcommand is mounted as `telemetry`).
        return Vec::new();
    }
    if !path.is_empty() {
        names.insert(counter_name(program, "command", &path.join(".")));
    }
    for n in &names {
        crate::counter::inc(n);
    }
    names.into_iter().collect()
}

/// True for the mounted `telemetry` subcommand: it has exactly the
/// subcommands of [`TelemetryCommand`](crate::kit::subcommand::TelemetryCommand)
/// (their names are kept in a list, not built with clap at every run),
/// besides the `help` that clap adds to a built command.
fn is_telemetry_subcommand(c: &Command) -> bool {
    let ours = crate::kit::subcommand::NAMES;
    let subs = || c.get_subcommands().filter(|s| s.get_name() != "help");
    subs().count() == ours.len() && subs().all(|s| ours.contains(&s.get_name()))
}

/// Parses the command line into the program's clap type `C` and counts its
/// flags and subcommand path ([`count_matches`]); on a bad command line,
/// prints clap's error and exits, as `C::parse()` does. Use it in place of
/// `C::parse()`: it builds the clap command once (the cost of a start).
///
/// ```no_run
/// #[derive(clap::Parser)]
/// struct Cli {
///     #[arg(long)]
///     verbose: bool,
/// }
/// let cli: Cli = clearcount::kit::flags::parse("mytool");
/// # let _ = cli.verbose;
/// ```
pub fn parse<C: clap::Parser>(program: &str) -> C {
    parse_from(program, std::env::args_os())
}

/// [`parse`] over the given arguments (the first is the program's name).
///
/// ```
/// #[derive(clap::Parser)]
/// struct Cli {
///     #[arg(long)]
///     verbose: bool,
/// }
/// let cli: Cli = clearcount::kit::flags::parse_from("mytool", ["mytool", "--verbose"]);
/// assert!(cli.verbose);
/// ```
pub fn parse_from<C, I, T>(program: &str, args: I) -> C
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = C::command();
    let matches = cmd
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    count_matches(program, &cmd, &matches);
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// Counts the flags among `args` (the arguments after the program name,
/// e.g. `std::env::args_os().skip(1)`): `--name`, `--name=value` and
/// `-n` count as `<program>/flag:<name>` when `name` is in `known_flags`
/// (given with or without leading dashes), and as `<program>/flag:other`
/// otherwise. Values, positional arguments and everything after `--` are
/// never looked at. Returns the counter names it counted, sorted (none when telemetry was started off).
///
/// ```
/// let counted = clearcount::kit::flags::count_args(
///     "mytool",
///     ["-v", "--jobs", "8", "--", "--not-a-flag"],
///     &["--jobs", "-v"],
/// );
/// assert_eq!(counted, ["mytool/flag:jobs", "mytool/flag:v"]);
/// ```
pub fn count_args<I, S>(program: &str, args: I, known_flags: &[&str]) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    if crate::telemetry::is_off() {
        return Vec::new();
    }
    let known: BTreeSet<&str> = known_flags
        .iter()
        .map(|f| f.trim_start_matches('-'))
        .filter(|f| !f.is_empty())
        .collect();
    let mut names = BTreeSet::new();
    let mut found = |flag: &str| {
        let name = match known.get(flag) {
            Some(k) => counter_name(program, "flag", k),
            None => counter_name(program, "flag", OTHER),
        };
        names.insert(name);
    };
    for arg in args {
        let arg = arg.as_ref().to_string_lossy();
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            found(long.split_once('=').map_or(long, |(n, _)| n));
        } else if let Some(short) = arg.strip_prefix('-') {
            let mut chars = short.chars();
            match chars.next() {
                // `-` alone (stdin) or a negative number: not a flag.
                None => {}
                Some(c) if c.is_ascii_digit() || c == '.' => {}
                Some(c) => {
                    let mut buf = [0u8; 4];
                    let first: &str = c.encode_utf8(&mut buf);
                    let rest = chars.as_str();
                    let all_known = rest.chars().all(|r| {
                        let mut b = [0u8; 4];
                        known.contains(&*r.encode_utf8(&mut b))
                    });
                    if !rest.is_empty() && known.contains(first) && all_known {
                        // `-vq`: several known short flags.
                        for r in short.chars() {
                            let mut b = [0u8; 4];
                            found(r.encode_utf8(&mut b));
                        }
                    } else {
                        // `-v` or `-ofile` (the rest may be a value).
                        found(first);
                    }
                }
            }
        }
    }
    for n in &names {
        crate::counter::inc(n);
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[arg(long)]
        verbose: bool,
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Build,
        #[command(subcommand)]
        Telemetry(crate::kit::subcommand::TelemetryCommand),
    }

    #[test]
    fn the_subcommand_names_are_those_of_the_enum() {
        use clap::Subcommand;
        let c = crate::kit::subcommand::TelemetryCommand::augment_subcommands(Command::new("t"));
        let names: BTreeSet<&str> = c.get_subcommands().map(Command::get_name).collect();
        let listed: BTreeSet<&str> = crate::kit::subcommand::NAMES.iter().copied().collect();
        assert_eq!(names, listed);
        assert!(is_telemetry_subcommand(&c));
    }

    #[test]
    fn the_mounted_telemetry_subcommand_counts_as_a_command_only() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let m =
            cmd.clone()
                .get_matches_from(["mytool", "--verbose", "telemetry", "status", "--json"]);
        assert_eq!(
            count_matches("flagtest", &cmd, &m),
            ["flagtest/command:telemetry.status", "flagtest/flag:verbose"]
        );
        let m = cmd.clone().get_matches_from(["mytool", "build"]);
        assert_eq!(
            count_matches("flagtest", &cmd, &m),
            ["flagtest/command:build"]
        );
        // The same through a built command, as `parse` counts (clap adds
        // `help` subcommands when it builds).
        let built = |args: &[&str]| {
            let mut cmd = Cli::command();
            let m = cmd.try_get_matches_from_mut(args).unwrap();
            count_matches("flagtest", &cmd, &m)
        };
        assert_eq!(
            built(&["mytool", "--verbose", "telemetry", "report", "--dry-run"]),
            ["flagtest/command:telemetry.report", "flagtest/flag:verbose"]
        );
        // Turning telemetry off counts nothing at all.
        assert!(built(&["mytool", "--verbose", "telemetry", "off"]).is_empty());
        assert_eq!(
            built(&["mytool", "telemetry", "local"]),
            ["flagtest/command:telemetry.local"]
        );
    }
}
