//! The uploader's memory, `upload/state.json`: the accepted config version,
//! the last run, the last report sent, and the weeks decided for good.

use super::upload_dir;
use crate::weekly;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The state file, in `upload/`.
pub const STATE_FILE: &str = "state.json";

/// Something that happened, on a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The day (`YYYY-MM-DD`).
    pub date: String,
    /// What happened, in plain words.
    pub what: String,
}

/// The final decision about one week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeekDecision {
    /// `sent`, `not-sampled`, `empty`, `dropped`, `before-on`, `too-old` or
    /// `unreadable`.
    pub outcome: String,
    /// The day it was decided.
    pub date: String,
    /// Why, in plain words.
    pub detail: String,
}

/// The uploader's memory, `upload/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Highest config version accepted (no rollback below it).
    #[serde(default)]
    pub accepted_config: Option<u64>,
    /// The last attempt and how it ended.
    #[serde(default)]
    pub last: Option<Event>,
    /// The last report sent.
    #[serde(default)]
    pub last_sent: Option<Event>,
    /// Weeks decided for good (never looked at again).
    #[serde(default)]
    pub weeks: BTreeMap<String, WeekDecision>,
}

/// Reads `upload/state.json` (a missing or damaged file reads as empty).
pub fn load_state(dir: &Path) -> State {
    std::fs::read(upload_dir(dir).join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(super) fn save_state(dir: &Path, state: &mut State) -> std::io::Result<()> {
    // Bounded: forget decisions about weeks whose report is gone.
    let weeks: std::collections::BTreeSet<String> = weekly::report_weeks(dir).into_iter().collect();
    state.weeks.retain(|w, _| weeks.contains(w));
    std::fs::create_dir_all(upload_dir(dir))?;
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::fsutil::replace_atomic(&upload_dir(dir).join(STATE_FILE), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State {
            accepted_config: Some(3),
            ..State::default()
        };
        save_state(dir.path(), &mut s).unwrap();
        assert_eq!(load_state(dir.path()), s);
        std::fs::write(upload_dir(dir.path()).join(STATE_FILE), "garbage").unwrap();
        assert_eq!(load_state(dir.path()), State::default());
    }
}
