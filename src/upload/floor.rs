//! What the config log trusts on this installation: the compiled-in policy
//! (log key, witnesses, quorum, the largest cosignature age) and the
//! floor below which no config is accepted — the checkpoint kept with the
//! last accepted config, and the minimum checkpoint the toolchain compiled
//! in, which no lost, damaged or cleaned state file can take away
//! (`counters-spec/config-log.md` §4, §9, §13).
//!
//! The uploader ([`super::fetch_config`]) and `status` read it here, so
//! that what `status` says is what the uploader does.

use super::{State, UploadSettings};
use clearcount_protocol::tlog::Checkpoint;
use clearcount_protocol::tlog::client::{ClientPolicy, Kept};

/// The policy, and the checkpoints every accepted one must extend.
pub(crate) struct Floor {
    /// The compiled-in policy, minimum checkpoint and age limit.
    pub policy: ClientPolicy,
    /// The checkpoint kept with the last accepted config, when it is of
    /// the compiled-in log.
    pub kept: Option<Kept>,
    /// Why the kept state was set aside, in plain words: kept under
    /// another log or log key (an earlier release), or damaged (`status`
    /// says it).
    #[cfg_attr(not(feature = "kit"), allow(dead_code))]
    pub set_aside: Option<String>,
}

/// Origin and size of a checkpoint, for messages.
fn describe(c: &Checkpoint) -> String {
    format!("size {} of log {}", c.size, c.origin)
}

impl Floor {
    /// The floor of an installation with upload settings `s` and state
    /// `state`; an error (one line) if the compiled-in policy or minimum
    /// is not valid.
    pub(crate) fn of(s: &UploadSettings, state: &State) -> Result<Floor, String> {
        let mut policy =
            ClientPolicy::parse(&s.config_log, &s.config_log_minimum).map_err(|e| {
                format!("config refused: the config log policy built in is not valid: {e}")
            })?;
        if let Some(age) = s.max_cosignature_age {
            policy = policy.with_max_age(age.as_secs());
        }
        let (kept, set_aside) = match state.config_log.as_deref().map(Kept::parse) {
            None => (None, None),
            // A damaged kept state reads as none: the minimum still holds.
            Some(Err(e)) => (None, Some(format!("the kept checkpoint is damaged ({e})"))),
            Some(Ok(k)) if policy.trusts_kept(&k) => (Some(k), None),
            Some(Ok(k)) => (
                None,
                Some(format!(
                    "the checkpoint kept ({}) is not signed by the log key this release trusts ({}): kept under an earlier release's policy",
                    describe(&k.checkpoint),
                    policy.policy.log()
                )),
            ),
        };
        Ok(Floor {
            policy,
            kept,
            set_aside,
        })
    }

    /// Which floor is in force, in plain words (for `status`).
    #[cfg(feature = "kit")]
    pub(crate) fn lines(&self) -> Vec<String> {
        let min = self.policy.minimum.as_ref();
        let mut lines = vec![match (&self.kept, min) {
            (Some(k), Some(m)) => format!(
                "config log floor: the checkpoint kept by this installation ({}, version {}); the toolchain's minimum ({}) holds if it is lost",
                describe(&k.checkpoint),
                k.version,
                describe(m)
            ),
            (Some(k), None) => format!(
                "config log floor: the checkpoint kept by this installation ({}, version {}); this toolchain compiles in no minimum checkpoint, so if this state is lost any config once current in the log is accepted again",
                describe(&k.checkpoint),
                k.version
            ),
            (None, Some(m)) => format!(
                "config log floor: the toolchain's minimum checkpoint ({}); nothing kept yet",
                describe(m)
            ),
            (None, None) => format!(
                "config log floor: none: this toolchain compiles in no minimum checkpoint and nothing is kept, so any config once current in log {} is accepted",
                self.policy.policy.log().name()
            ),
        }];
        if let Some(why) = &self.set_aside {
            lines.push(format!(
                "config log state set aside: {why}; the next accepted config replaces it"
            ));
        }
        if let Some(age) = self.policy.max_age {
            lines.push(format!(
                "config log freshness: the witnesses' cosignatures must be at most {} old ({})",
                human_age(age),
                self.policy.policy.describe_quorum()
            ));
        }
        lines
    }
}

/// An age in days, hours or seconds, whichever is whole.
#[cfg(feature = "kit")]
fn human_age(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s >= 3_600 && s % 3_600 == 0 => plural(s / 3_600, "hour"),
        s => plural(s, "second"),
    }
}

#[cfg(feature = "kit")]
fn plural(n: u64, unit: &str) -> String {
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}
