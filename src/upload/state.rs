//! The uploader's memory, `upload/state.json`: the accepted config version,
//! the last run, the last report sent, and the weeks decided for good.

use super::upload_dir;
use crate::weekly;
use clearcount_protocol::json::{self, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The state file, in `upload/`.
pub const STATE_FILE: &str = "state.json";

/// Something that happened, on a day.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The day (`YYYY-MM-DD`).
    pub date: String,
    /// What happened, in plain words.
    pub what: String,
}

/// The final decision about one week.
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Highest config version accepted (no rollback below it).
    pub accepted_config: Option<u64>,
    /// What was kept of the config log with the last accepted config (the
    /// signed checkpoint, the config's version and hash;
    /// `tlog::client::Kept` text): the next one must extend it.
    pub config_log: Option<String>,
    /// The last attempt and how it ended.
    pub last: Option<Event>,
    /// The last report sent.
    pub last_sent: Option<Event>,
    /// Weeks decided for good (never looked at again).
    pub weeks: BTreeMap<String, WeekDecision>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

impl Event {
    pub(crate) fn to_json(&self) -> Value {
        Value::Object(vec![
            ("date".into(), Value::string(&self.date)),
            ("what".into(), Value::string(&self.what)),
        ])
    }
    fn from_json(v: &Value) -> Option<Event> {
        Some(Event {
            date: text(v, "date")?,
            what: text(v, "what")?,
        })
    }
}

impl WeekDecision {
    fn to_json(&self) -> Value {
        Value::Object(vec![
            ("outcome".into(), Value::string(&self.outcome)),
            ("date".into(), Value::string(&self.date)),
            ("detail".into(), Value::string(&self.detail)),
        ])
    }
    fn from_json(v: &Value) -> Option<WeekDecision> {
        Some(WeekDecision {
            outcome: text(v, "outcome")?,
            date: text(v, "date")?,
            detail: text(v, "detail")?,
        })
    }
}

/// The decided weeks, as a JSON object.
pub(crate) fn weeks_json(weeks: &BTreeMap<String, WeekDecision>) -> Value {
    Value::Object(
        weeks
            .iter()
            .map(|(w, d)| (w.clone(), d.to_json()))
            .collect(),
    )
}

/// An optional event, as JSON.
pub(crate) fn event_json(e: &Option<Event>) -> Value {
    e.as_ref().map_or(Value::Null, Event::to_json)
}

impl State {
    fn to_json(&self) -> Value {
        Value::Object(vec![
            (
                "accepted_config".into(),
                self.accepted_config.map_or(Value::Null, Value::from_u64),
            ),
            ("last".into(), event_json(&self.last)),
            ("last_sent".into(), event_json(&self.last_sent)),
            (
                "config_log".into(),
                Value::opt_string(self.config_log.as_deref()),
            ),
            ("weeks".into(), weeks_json(&self.weeks)),
        ])
    }

    /// The state in a JSON value; `None` when a field has a wrong type
    /// (fields left out, or unknown, are fine).
    fn from_json(v: &Value) -> Option<State> {
        let mut s = State::default();
        let Value::Object(members) = v else {
            return None;
        };
        for (k, e) in members {
            let null = *e == Value::Null;
            match k.as_str() {
                "accepted_config" if !null => s.accepted_config = Some(e.as_u64()?),
                "last" if !null => s.last = Some(Event::from_json(e)?),
                "last_sent" if !null => s.last_sent = Some(Event::from_json(e)?),
                "config_log" if !null => s.config_log = Some(e.as_str()?.to_string()),
                "weeks" => {
                    let Value::Object(weeks) = e else { return None };
                    for (w, d) in weeks {
                        s.weeks.insert(w.clone(), WeekDecision::from_json(d)?);
                    }
                }
                _ => {}
            }
        }
        Some(s)
    }
}

/// Reads `upload/state.json` (a missing or damaged file reads as empty).
pub fn load_state(dir: &Path) -> State {
    std::fs::read(upload_dir(dir).join(STATE_FILE))
        .ok()
        .and_then(|b| json::parse(&b).ok())
        .and_then(|v| State::from_json(&v))
        .unwrap_or_default()
}

pub(super) fn save_state(dir: &Path, state: &mut State) -> std::io::Result<()> {
    // Bounded: forget decisions about weeks whose report is gone.
    let weeks: std::collections::BTreeSet<String> = weekly::report_weeks(dir).into_iter().collect();
    state.weeks.retain(|w, _| weeks.contains(w));
    std::fs::create_dir_all(upload_dir(dir))?;
    let bytes = json::to_string_pretty(&state.to_json()).into_bytes();
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
            config_log: Some("config 3 AAAA\nlog\n1\nBBBB\n\n— log CCCC\n".into()),
            ..State::default()
        };
        save_state(dir.path(), &mut s).unwrap();
        assert_eq!(load_state(dir.path()), s);
        s.last = Some(Event {
            date: "2026-11-02".into(),
            what: "sent \"x\"\n".into(),
        });
        s.weeks.insert(
            "2026-10-26".into(),
            WeekDecision {
                outcome: "sent".into(),
                date: "2026-11-02".into(),
                detail: "12 bytes".into(),
            },
        );
        let bytes = json::to_string_pretty(&s.to_json());
        assert_eq!(
            State::from_json(&json::parse(bytes.as_bytes()).unwrap()),
            Some(s)
        );
        std::fs::write(upload_dir(dir.path()).join(STATE_FILE), "garbage").unwrap();
        assert_eq!(load_state(dir.path()), State::default());
    }
}
