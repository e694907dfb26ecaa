//! Where an installation's telemetry lives.
//!
//! `$CLEARCOUNT_DIR/<namespace>/` when `CLEARCOUNT_DIR` is set, else
//! `<user config dir>/<namespace>/telemetry/`, where the user config dir is
//! `$XDG_CONFIG_HOME` or `~/.config` on Linux and other Unix systems,
//! `~/Library/Application Support` on macOS and `%APPDATA%` on Windows.
//!
//! Inside it:
//!
//! | path | what |
//! |---|---|
//! | `mode` | the mode and the date it was set |
//! | `week-start` | the installation's first weekday |
//! | `counts/` | this and past weeks' counter files |
//! | `reports/` | local reports, full and filtered |
//! | `upload/` | a copy of every report sent |
//! | `corrupt/` | counter files set aside as corrupt |
//! | `crashes/` | stacks of crashes, kept by the crash counter until the next run names them |

use std::path::PathBuf;

/// The environment variable that moves every namespace's directory.
pub const DIR_VAR: &str = "CLEARCOUNT_DIR";
/// Counter files.
pub const COUNTS: &str = "counts";
/// Local reports.
#[cfg(feature = "upload")]
pub const REPORTS: &str = "reports";
/// Copies of sent reports.
#[cfg(feature = "upload")]
pub const UPLOAD: &str = "upload";
/// Corrupt files set aside.
pub const CORRUPT: &str = "corrupt";
/// Crash stacks waiting to be named.
#[cfg(feature = "kit")]
pub const CRASHES: &str = crate::crashstack::DIR;

/// Checks a namespace: 1 to 64 bytes of lower-case ASCII letters, digits,
/// `-` and `_`, starting with a letter.
pub fn check_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns.as_bytes()[0].is_ascii_lowercase()
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace {ns:?} must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter"
        ))
    }
}

/// The user's configuration directory, if one can be found:
/// `%APPDATA%` on Windows, `~/Library/Application Support` on macOS,
/// `$XDG_CONFIG_HOME` (if absolute) or `~/.config` elsewhere.
pub fn user_config_dir() -> Option<PathBuf> {
    crate::sys::dirs::user_config_dir()
}

/// The telemetry directory of a namespace (not created).
pub fn telemetry_dir(namespace: &str) -> Option<PathBuf> {
    if let Some(base) = std::env::var_os(DIR_VAR).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(base).join(namespace));
    }
    user_config_dir().map(|d| d.join(namespace).join("telemetry"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace becomes a directory name: nothing else gets through.
    #[test]
    fn a_namespace_is_a_plain_name() {
        for ok in ["mytool", "my-tool", "t_2"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "../etc", "a/b", "MyTool", "2tool", long.as_str()] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }
}
