//! What users run to see and control telemetry: the commands behind the
//! mounted `telemetry` subcommand ([`crate::kit::subcommand`]) and the
//! `clearcount` command's user commands, one implementation for both.
//!
//! | file | commands |
//! |---|---|
//! | `status.rs` | `status`, `on`, `off`, `local` |
//! | `report.rs` | `view`, `report [--dry-run]`, `upload`, `clean` |
//! | `web.rs` | `view --web` (feature `web-view`) |

pub(crate) mod report;
pub(crate) mod status;
#[cfg(feature = "web-view")]
pub(crate) mod web;

static INVOKED_AS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets how users type these commands, for the hints they print (for
/// example `mytool telemetry`). The first call wins: a process runs one
/// command.
pub(crate) fn set_invoked_as(prefix: &str) {
    let _ = INVOKED_AS.set(prefix.to_string());
}

/// The command prefix users type for a namespace: as set, else
/// `<namespace> telemetry`.
pub(crate) fn invoked_as(namespace: &str) -> String {
    INVOKED_AS
        .get()
        .cloned()
        .unwrap_or_else(|| format!("{namespace} telemetry"))
}

#[cfg(test)]
mod tests {
    /// The hints name what the user typed. (The only unit test that sets
    /// the prefix: the first call wins for the whole test process.)
    #[test]
    fn hints_name_the_command_users_type() {
        assert_eq!(super::invoked_as("mytool"), "mytool telemetry");
        super::set_invoked_as("clearcount --namespace mytool");
        super::set_invoked_as("other telemetry");
        assert_eq!(super::invoked_as("mytool"), "clearcount --namespace mytool");
    }
}
