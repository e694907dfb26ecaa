//! The upload state for `clearcount status`: when the next upload can
//! happen and what happened last time. Reads only.

use super::floor::Floor;
use super::state::{event_json, load_state, weeks_json};
use super::token::{TokenState, token_path, token_state};
use super::upload_dir;
use crate::mode::Mode;
use crate::weekly;
use clearcount_protocol::json::Value;
use std::path::Path;

/// Upload state for `clearcount status`.
#[derive(Debug, Clone, Default)]
pub struct UploadStatus {
    lines: Vec<String>,
    json: Vec<(String, Value)>,
}

impl UploadStatus {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        let mut v = self.json.clone();
        let lines = self.lines.iter().map(Value::string).collect();
        v.push(("lines".into(), Value::Array(lines)));
        Value::Object(v)
    }
    /// As lines of text.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The upload state of a namespace whose directory is `dir`: when the next
/// upload can happen and what happened last time, in plain words. Reads
/// only.
pub fn status(ns: &str, dir: &Path) -> UploadStatus {
    let now = crate::clock::now();
    let today = now.date_naive();
    let eff = crate::mode::effective(ns, Some(dir), Mode::Local);
    let state = load_state(dir);
    let mut held = None;
    let mut done = None;
    for k in 0..4 {
        let p = token_path(dir, today, k);
        match token_state(&p, now.timestamp()) {
            TokenState::Done => {
                done = std::fs::read_to_string(&p)
                    .ok()
                    .map(|t| t.trim_start_matches("done").trim().to_string())
            }
            TokenState::Held => held = Some(p),
            TokenState::Free => {}
        }
    }
    let next = if eff.mode != Mode::On {
        format!("next upload: never while the mode is {}", eff.mode)
    } else if held.is_some() {
        "next upload: one is running now".to_string()
    } else if done.is_some() {
        format!(
            "next upload: {} or later (at most once a day; today's run is done)",
            today + chrono::Days::new(1)
        )
    } else {
        "next upload: today, the next time a program of the toolchain starts".to_string()
    };
    let pending: Vec<String> = weekly::report_weeks(dir)
        .into_iter()
        .filter(|w| {
            !state.weeks.contains_key(w) && !upload_dir(dir).join(format!("{w}.json")).exists()
        })
        .collect();
    let finished = weekly::any_finished(dir, crate::clock::now());
    let mut lines = vec![next.clone()];
    // Today's finished run is the latest one, even when it had nothing to
    // do (it then leaves no other trace).
    match (&done, &state.last) {
        (Some(what), _) => lines.push(format!("last upload run: {today}: {what}")),
        (None, Some(e)) => lines.push(format!("last upload run: {}: {}", e.date, e.what)),
        (None, None) => lines.push("last upload run: never".into()),
    }
    if let Some(e) = &state.last_sent {
        lines.push(format!("last sent: {}: {}", e.date, e.what));
    }
    if !pending.is_empty() && eff.mode == Mode::On {
        lines.push(format!(
            "reports waiting to be sent: {}",
            pending.join(", ")
        ));
    }
    if finished {
        lines.push("finished weeks not yet made into reports: yes".into());
    }
    if let Some(v) = state.accepted_config {
        lines.push(format!("collection config accepted: version {v}"));
    }
    // Which config log floor is in force, with the toolchain's own
    // settings (as the uploader reads them).
    let floor = super::settings::for_commands(ns, dir)
        .ok()
        .and_then(|s| Floor::of(&s, &state).ok());
    let floor_lines = floor.as_ref().map(Floor::lines).unwrap_or_default();
    lines.extend(floor_lines.iter().cloned());
    let json = vec![
        ("next".into(), Value::string(next)),
        ("last".into(), event_json(&state.last)),
        ("last_sent".into(), event_json(&state.last_sent)),
        (
            "pending".into(),
            Value::Array(pending.iter().map(Value::string).collect()),
        ),
        ("finished_weeks_unreported".into(), Value::Bool(finished)),
        (
            "accepted_config".into(),
            state.accepted_config.map_or(Value::Null, Value::from_u64),
        ),
        ("weeks".into(), weeks_json(&state.weeks)),
        (
            "config_log".into(),
            Value::Array(floor_lines.iter().map(Value::string).collect()),
        ),
    ];
    UploadStatus { lines, json }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fresh_installation_never_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        // Mode local (or off under DO_NOT_TRACK): never.
        let s = super::status("cc-unit-status", dir.path());
        let lines = s.lines();
        assert!(
            lines[0].starts_with("next upload: never while the mode is "),
            "{lines:?}"
        );
        assert_eq!(lines[1], "last upload run: never");
        let v = s.to_json();
        assert_eq!(
            v.get("next").and_then(|n| n.as_str()),
            Some(lines[0].as_str())
        );
        let json_lines = v.get("lines").and_then(|l| l.as_array()).unwrap();
        assert_eq!(json_lines[1].as_str(), Some("last upload run: never"));
    }
}
