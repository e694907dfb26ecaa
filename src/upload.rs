//! The weekly uploader (being written).

use std::path::Path;

/// What a toolchain compiles in to upload: where, and the key that signs
/// the config.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    /// Base URL of the collection server.
    pub url: String,
}

/// Called by [`crate::Telemetry::start`] once counting has started.
pub(crate) fn on_start(_t: &crate::Telemetry, _s: &crate::Started) {}

/// Upload state for `clearcount status`.
#[derive(Debug, Clone, Default)]
pub struct UploadStatus {
    lines: Vec<String>,
}

impl UploadStatus {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "lines": self.lines })
    }
    /// As lines of text.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The upload state of a namespace.
pub fn status(_ns: &str, _dir: &Path) -> UploadStatus {
    UploadStatus::default()
}
