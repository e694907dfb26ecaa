//! Where a user's configuration lives, by the platform's convention.

use std::path::PathBuf;

/// The platform's directory for a user's configuration files, from the
/// environment: `%APPDATA%` on Windows, `~/Library/Application Support` on
/// macOS, `$XDG_CONFIG_HOME` (if absolute) or `~/.config` elsewhere.
pub(crate) fn user_config_dir() -> Option<std::path::PathBuf> {
    let env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if cfg!(windows) {
        return env("APPDATA");
    }
    let home = env("HOME");
    if cfg!(any(target_os = "macos", target_os = "ios")) {
        return home.map(|h| h.join("Library").join("Application Support"));
    }
    env("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".config")))
}
