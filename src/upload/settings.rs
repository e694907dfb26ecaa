//! The toolchain's own upload settings, as it gave them to
//! [`Telemetry::upload`](crate::Telemetry::upload), so that every dry run
//! takes the path the background upload takes:
//!
//! * in the toolchain's process they are kept as given, for the mounted
//!   `mytool telemetry report --dry-run`;
//! * they are also recorded, at most once a day (when the day's upload
//!   token is taken), in `<telemetry dir>/upload-settings.json`, for
//!   `clearcount --namespace mytool report --dry-run`, which runs outside
//!   the toolchain. The file holds only URLs, the public key, the ceiling
//!   and the timeouts.

use super::UploadSettings;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file the settings are recorded in.
pub(crate) const SETTINGS_FILE: &str = "upload-settings.json";

static IN_USE: OnceLock<UploadSettings> = OnceLock::new();

/// Keeps the settings this process started telemetry with.
pub(crate) fn set_in_use(s: &UploadSettings) {
    let _ = IN_USE.set(s.clone());
}

#[derive(Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Recorded {
    upload_url: String,
    config_url: String,
    public_key: String,
    ceiling: f64,
    connect_timeout_ms: u64,
    total_timeout_ms: u64,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(SETTINGS_FILE)
}

/// Records `s` in `dir`, unless the same settings are there already.
pub(crate) fn record(dir: &Path, s: &UploadSettings) {
    let r = Recorded {
        upload_url: s.upload_url.clone(),
        config_url: s.config_url.clone(),
        public_key: s.public_key.clone(),
        ceiling: s.ceiling,
        connect_timeout_ms: s.connect_timeout.as_millis() as u64,
        total_timeout_ms: s.total_timeout.as_millis() as u64,
    };
    let Ok(bytes) = serde_json::to_vec_pretty(&r) else {
        return;
    };
    if std::fs::read(path(dir)).is_ok_and(|old| old == bytes) {
        return;
    }
    let _ = crate::fsutil::replace_atomic(&path(dir), &bytes);
}

/// The settings the user's commands use: this process's own (when the
/// subcommand is mounted in the toolchain), else those the toolchain
/// recorded in `dir`; or why there are none, in one line.
#[cfg(feature = "kit")]
pub(crate) fn for_commands(ns: &str, dir: &Path) -> Result<UploadSettings, String> {
    if let Some(s) = IN_USE.get() {
        return Ok(s.clone());
    }
    let p = path(dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{ns} has not recorded where it uploads (a toolchain built with uploads records it the first time it runs each day), so nothing would be sent"
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let r: Recorded =
        serde_json::from_slice(&bytes).map_err(|e| format!("{} is not valid: {e}", p.display()))?;
    Ok(UploadSettings {
        upload_url: r.upload_url,
        config_url: r.config_url,
        public_key: r.public_key,
        ceiling: r.ceiling.clamp(0.0, 1.0),
        connect_timeout: std::time::Duration::from_millis(r.connect_timeout_ms),
        total_timeout: std::time::Duration::from_millis(r.total_timeout_ms),
        child_limit: std::time::Duration::from_secs(60),
        background: super::Background::Child,
    })
}

#[cfg(all(test, feature = "kit"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn recorded_settings_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let e = for_commands("mytool", dir.path()).unwrap_err();
        assert!(e.contains("has not recorded"), "{e}");
        let s = UploadSettings::new("http://a/upload", "http://a/config.toml", "KEY")
            .with_ceiling(0.25)
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(9));
        record(dir.path(), &s);
        let back = for_commands("mytool", dir.path()).unwrap();
        assert_eq!(back, s);
        std::fs::write(dir.path().join(SETTINGS_FILE), "{").unwrap();
        assert!(for_commands("mytool", dir.path()).is_err());
    }
}
