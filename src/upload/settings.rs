//! The toolchain's own upload settings, as it gave them to
//! [`Telemetry::upload`](crate::Telemetry::upload), so that every dry run
//! takes the path the background upload takes:
//!
//! * in the toolchain's process they are kept as given, for the mounted
//!   `mytool telemetry report --dry-run`;
//! * they are also recorded, at most once a day (when the day's upload
//!   token is taken), in `<telemetry dir>/upload-settings.json`, for
//!   `clearcount --namespace mytool report --dry-run`, which runs outside
//!   the toolchain. The file holds only URLs, the public key, the config
//!   log's policy, minimum checkpoint and cosignature age limit, the
//!   ceiling and the timeouts.

use super::UploadSettings;
use clearcount_protocol::json::{self, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file the settings are recorded in.
pub(crate) const SETTINGS_FILE: &str = "upload-settings.json";

static IN_USE: OnceLock<UploadSettings> = OnceLock::new();

/// Keeps the settings this process started telemetry with.
pub(crate) fn set_in_use(s: &UploadSettings) {
    let _ = IN_USE.set(s.clone());
}

/// The recorded settings, as JSON.
fn to_json(s: &UploadSettings) -> Value {
    Value::Object(vec![
        ("upload_url".into(), Value::string(&s.upload_url)),
        ("config_url".into(), Value::string(&s.config_url)),
        ("public_key".into(), Value::string(&s.public_key)),
        ("config_log".into(), Value::string(&s.config_log)),
        (
            "config_log_minimum".into(),
            Value::string(&s.config_log_minimum),
        ),
        (
            "max_cosignature_age_s".into(),
            s.max_cosignature_age
                .map_or(Value::Null, |a| Value::from_u64(a.as_secs())),
        ),
        ("ceiling".into(), Value::from_f64(s.ceiling)),
        (
            "connect_timeout_ms".into(),
            Value::from_u64(s.connect_timeout.as_millis() as u64),
        ),
        (
            "total_timeout_ms".into(),
            Value::from_u64(s.total_timeout.as_millis() as u64),
        ),
    ])
}

fn path(dir: &Path) -> PathBuf {
    dir.join(SETTINGS_FILE)
}

/// Records `s` in `dir`, unless the same settings are there already.
pub(crate) fn record(dir: &Path, s: &UploadSettings) {
    let bytes = json::to_string_pretty(&to_json(s)).into_bytes();
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
    from_json(&bytes).map_err(|e| format!("{} is not valid: {e}", p.display()))
}

/// Reads recorded settings: exactly the recorded fields, each once.
#[cfg(feature = "kit")]
fn from_json(bytes: &[u8]) -> Result<UploadSettings, String> {
    let v = json::parse(bytes)?;
    let known = [
        "upload_url",
        "config_url",
        "public_key",
        "config_log",
        "config_log_minimum",
        "max_cosignature_age_s",
        "ceiling",
        "connect_timeout_ms",
        "total_timeout_ms",
    ];
    let fields = json::fields(&v, "recorded settings", &known)?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("missing field `{k}`"))
    };
    let text = |k: &str| {
        get(k)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("invalid type: {k} must be a string"))
    };
    let ms = |k: &str| {
        get(k)?
            .as_u64()
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| format!("invalid type: {k} must be an unsigned integer"))
    };
    let ceiling = get("ceiling")?
        .as_f64()
        .ok_or("invalid type: ceiling must be a number")?;
    // Settings recorded by an earlier version have no age limit.
    let max_age = match get("max_cosignature_age_s") {
        Err(_) | Ok(&Value::Null) => None,
        Ok(v) => Some(std::time::Duration::from_secs(v.as_u64().ok_or(
            "invalid type: max_cosignature_age_s must be an unsigned integer or null",
        )?)),
    };
    Ok(UploadSettings {
        ceiling: ceiling.clamp(0.0, 1.0),
        max_cosignature_age: max_age,
        connect_timeout: ms("connect_timeout_ms")?,
        total_timeout: ms("total_timeout_ms")?,
        ..UploadSettings::new(
            &text("upload_url")?,
            &text("config_url")?,
            &text("public_key")?,
            &text("config_log")?,
        )
        .with_minimum_checkpoint(&text("config_log_minimum")?)
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
        let s = UploadSettings::new("http://a/upload", "http://a/config.toml", "KEY", "POLICY")
            .with_minimum_checkpoint("CHECKPOINT")
            .with_max_cosignature_age(Duration::from_secs(7 * 86_400))
            .with_ceiling(0.25)
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(9));
        record(dir.path(), &s);
        let back = for_commands("mytool", dir.path()).unwrap();
        assert_eq!(back, s);
        std::fs::write(dir.path().join(SETTINGS_FILE), "{").unwrap();
        assert!(for_commands("mytool", dir.path()).is_err());
    }
}
