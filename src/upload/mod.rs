//! The weekly uploader: sampling, the signed config, and the HTTP POST.
//!
//! A toolchain compiles in [`UploadSettings`] (where to POST, where the
//! signed config is, the public key that signs it) and hands them to
//! [`Telemetry::upload`](crate::Telemetry::upload). From then on,
//! [`Telemetry::start`](crate::Telemetry::start) does, at most once a day per
//! installation and never in the host's way:
//!
//! 1. turn finished weeks into local reports (`reports/<week>.full.json`,
//!    each with its X drawn once);
//! 2. only in mode `on`, for each week that began on or after the day `on`
//!    was set (today, when `on` comes only from the environment), is at most
//!    three weeks old, and is not decided yet: if the report's X is above the
//!    client's ceiling ([`UploadSettings::ceiling`], 0.1 unless set: so at
//!    most one installation in ten ever sends a given week, whatever the
//!    config's rates), the week is never sent and no config is fetched;
//!    otherwise fetch `config_url` and `config_url + ".minisig"`, verify with
//!    the compiled-in key, refuse a rollback, keep each counter the config
//!    declares whose rate is at least X, and POST the result if anything
//!    remains;
//! 3. the server's answer decides: 2xx sent (the exact bytes are copied to
//!    `upload/<week>.json`), 4xx dropped, anything else retried on a later
//!    day.
//!
//! The same settings drive `mytool telemetry report --dry-run`, which prints
//! the exact bytes step 2 would send, and `clearcount --namespace mytool
//! report --dry-run` (they are recorded in the telemetry directory for it).
//!
//! **Background.** By default the work runs in a detached child process, as
//! Go does: `start` re-runs the current executable with the single argument
//! `clearcount_upload_child` and the environment variable
//! `CLEARCOUNT_UPLOAD_CHILD` set to the namespace, with null stdio, and
//! starts a small thread that reaps the child should the host outlive it
//! (only on a day an upload is due). In the child, `Telemetry::start` sees
//! the variable, does the work synchronously within
//! [`UploadSettings::child_limit`] (a watchdog ends the process after it)
//! and exits the process: the host's `main` never runs in the child. **So
//! `Telemetry::start` must be the first thing `main` does.** Should the
//! child find telemetry off (the user changed the mode meanwhile), it exits
//! too. Long-running hosts that would rather not spawn a process choose
//! [`UploadSettings::in_thread`].
//!
//! **Once a day.** The parent takes the day's token `upload/day-<date>.token`
//! (created atomically, first writer wins) before it starts the background
//! work; the work marks it done when it ends. A token neither done nor
//! younger than ten minutes belongs to a crashed attempt, and the next start
//! takes a fresh one (`day-<date>.token.1`, …).
//!
//! ```ignore
//! use clearcount::{Telemetry, upload::UploadSettings};
//! // The key the toolchain's config is signed with (`clearcount config keygen`).
//! const MYTOOL_PUBLIC_KEY: &str = include_str!("../mytool.pub");
//! fn main() {
//!     let settings = UploadSettings::new(
//!         "https://telemetry.example.org/upload",
//!         "https://telemetry.example.org/config.toml",
//!         MYTOOL_PUBLIC_KEY,
//!     );
//!     Telemetry::new("mytool", "mytool", env!("CARGO_PKG_VERSION")).upload(settings).start();
//!     // ... the program ...
//! }
//! ```

mod child;
mod fetch;
mod floor;
mod settings;
mod state;
#[cfg(feature = "kit")]
mod status;
mod token;
mod transport;

#[cfg(any(feature = "ureq-rustls", feature = "ureq-native-tls"))]
pub use transport::UreqTransport;
pub use transport::{Answer, CurlTransport, Method, Request, Transport, TransportError};

pub(crate) use child::CHILD_VAR;
pub(crate) use fetch::fetch_config;
#[cfg(feature = "kit")]
pub(crate) use settings::for_commands as settings_for_commands;
pub(crate) use state::{Event, State, WeekDecision, load_state};
#[cfg(feature = "kit")]
pub(crate) use status::status;

use child::{background_work, child_main, spawn_child};
use fetch::{Posted, post};
use state::save_state;
use token::{finish_token, take_token};

use crate::config::CollectionConfig;
use crate::mode::{Effective, Mode};
use crate::report::Report;
use crate::weekly;
use chrono::NaiveDate;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reports whose week ended more than this many days ago are not sent.
pub(crate) const SEND_WITHIN_DAYS: u64 = 21;

/// How the background work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// A detached child process (the default).
    Child,
    /// A thread of the host process (for long-running hosts).
    Thread,
}

/// What a toolchain compiles in to upload: where to POST, where the signed
/// config is, the key that signs it, the sampling ceiling, and how HTTP is
/// spoken ([`Transport`]; the platform's `curl` unless set).
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Where reports are POSTed.
    pub upload_url: String,
    /// The signed collection config; its signature is at
    /// `config_url + ".minisig"`.
    pub config_url: String,
    /// The minisign public key text (a `.pub` file or its base64 line).
    pub public_key: String,
    /// The config log's trust policy (C2SP tlog-policy text: the log key,
    /// the witnesses, the quorum; `config/log/policy`), so that a config is
    /// used only if it is the latest entry of the log everyone sees.
    pub config_log: String,
    /// A signed checkpoint of the config log compiled in (`log/minimum`,
    /// which `clearcount config publish` writes, at build time), or empty:
    /// no accepted checkpoint may be older, even after the local state is
    /// lost, damaged or cleaned. Without one (weaker), an installation
    /// that lost its state accepts any config that was ever the latest
    /// entry of a published checkpoint.
    pub config_log_minimum: String,
    /// When set, a config is used only under a checkpoint whose witness
    /// quorum cosigned it at most this long ago (the policy needs a quorum
    /// of witnesses that re-cosign, and a server that gathers their fresh
    /// cosignatures: `clearcount serve --recosign-every`), so a replayed
    /// old checkpoint is refused even by an installation with no state.
    pub max_cosignature_age: Option<Duration>,
    /// X above this: the week is never sent and no config is fetched.
    /// Default 0.1.
    pub ceiling: f64,
    /// Connect timeout of each request. Default 5 s.
    pub connect_timeout: Duration,
    /// Total timeout of each request. Default 20 s.
    pub total_timeout: Duration,
    /// The longest the background work may take; the child process exits
    /// after it. Default 60 s.
    pub child_limit: Duration,
    /// Child process or thread. Default [`Background::Child`].
    pub background: Background,
    /// The transport; `None` is [`CurlTransport`].
    transport: Option<Arc<dyn Transport>>,
}

/// Equal when every field is, and the transport is the same one (both the
/// default, or the same shared value).
impl PartialEq for UploadSettings {
    fn eq(&self, o: &UploadSettings) -> bool {
        let same_transport = match (&self.transport, &o.transport) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.upload_url == o.upload_url
            && self.config_url == o.config_url
            && self.public_key == o.public_key
            && self.config_log == o.config_log
            && self.config_log_minimum == o.config_log_minimum
            && self.max_cosignature_age == o.max_cosignature_age
            && self.ceiling == o.ceiling
            && self.connect_timeout == o.connect_timeout
            && self.total_timeout == o.total_timeout
            && self.child_limit == o.child_limit
            && self.background == o.background
            && same_transport
    }
}

impl UploadSettings {
    /// Where reports go (`upload_url`), where the signed config is
    /// (`config_url`, its signature at `config_url + ".minisig"` and its
    /// proof from the config log at `config_url + ".proof"`), the minisign
    /// key it is signed with, and the config log's trust policy
    /// (`config/log/policy`); with the defaults: ceiling 0.1, timeouts 5 s /
    /// 20 s, at most 60 s in a child process.
    pub fn new(
        upload_url: &str,
        config_url: &str,
        public_key: &str,
        config_log: &str,
    ) -> UploadSettings {
        UploadSettings {
            upload_url: upload_url.to_string(),
            config_url: config_url.to_string(),
            public_key: public_key.to_string(),
            config_log: config_log.to_string(),
            config_log_minimum: String::new(),
            max_cosignature_age: None,
            ceiling: 0.1,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            child_limit: Duration::from_secs(60),
            background: Background::Child,
            transport: None,
        }
    }

    /// Speaks HTTP through `transport` instead of the platform's `curl`
    /// ([`CurlTransport`]): an HTTP client the toolchain already links, or
    /// a built-in `UreqTransport` (features `ureq-rustls`,
    /// `ureq-native-tls`). See [`Transport`] for what it must do.
    pub fn with_transport(mut self, transport: impl Transport + 'static) -> UploadSettings {
        self.transport = Some(Arc::new(transport));
        self
    }

    /// The transport in use.
    pub(crate) fn transport(&self) -> &dyn Transport {
        static CURL: std::sync::OnceLock<CurlTransport> = std::sync::OnceLock::new();
        match &self.transport {
            Some(t) => t.as_ref(),
            None => CURL.get_or_init(CurlTransport::new),
        }
    }

    /// Sets the config log checkpoint no accepted one may be older than
    /// (`log/minimum`, written by `clearcount config publish`, compiled in
    /// when the toolchain is built: `include_str!("../log/minimum")`).
    /// Lost, damaged or cleaned state then never lets a config older than
    /// it back in.
    pub fn with_minimum_checkpoint(mut self, signed_checkpoint: &str) -> UploadSettings {
        self.config_log_minimum = signed_checkpoint.to_string();
        self
    }

    /// Uses a config only under a checkpoint whose witness quorum cosigned
    /// it at most `age` ago (`counters-spec/config-log.md` §4.3): a
    /// replayed old checkpoint is refused even with no state. The policy
    /// must require witnesses (a quorum other than `none`), and they must
    /// re-cosign more often than `age` (`clearcount serve
    /// --recosign-every`, `clearcount witness serve`).
    pub fn with_max_cosignature_age(mut self, age: Duration) -> UploadSettings {
        self.max_cosignature_age = Some(age);
        self
    }

    /// Sets the sampling ceiling (clamped to `[0, 1]`).
    pub fn with_ceiling(mut self, ceiling: f64) -> UploadSettings {
        self.ceiling = if ceiling.is_nan() {
            0.0
        } else {
            ceiling.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets the connect and total timeouts of each request.
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> UploadSettings {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    /// Sets the longest time the background work may take.
    pub fn with_child_limit(mut self, limit: Duration) -> UploadSettings {
        self.child_limit = limit;
        self
    }

    /// Runs the background work in a thread of the host instead of a child
    /// process (for long-running hosts; the thread never delays exit).
    pub fn in_thread(mut self) -> UploadSettings {
        self.background = Background::Thread;
        self
    }
}

impl crate::Telemetry {
    /// Uploads weekly reports with these settings (in mode `on` only).
    pub fn upload(mut self, s: UploadSettings) -> Self {
        self.upload = Some(s);
        self
    }
}

fn upload_dir(dir: &Path) -> PathBuf {
    dir.join(crate::dirs::UPLOAD)
}

// ---------------------------------------------------------------- the work

/// What happened to one week in a run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Sent; the bytes are in `upload/<week>.json`.
    Sent(Vec<u8>),
    /// Would be sent (dry run): exactly these bytes.
    WouldSend(Vec<u8>),
    /// X above the ceiling: never sent, no config fetched.
    NotSampled(f64),
    /// Nothing left after filtering by the config.
    Empty,
    /// The week began before the day `on` was set.
    BeforeOn,
    /// The week ended more than [`SEND_WITHIN_DAYS`] days ago.
    TooOld,
    /// The server refused it (4xx): dropped.
    Dropped(String),
    /// Kept for a later day.
    Retry(String),
    /// The report cannot be read: dropped.
    Unreadable(String),
}

/// What one run of the uploader did.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunResult {
    /// Each week looked at, and what happened to it.
    pub weeks: Vec<(String, Action)>,
    /// The config version used, if one was fetched and accepted.
    pub config: Option<u64>,
    /// A one-line summary, in plain words.
    pub summary: String,
}

/// Options of [`run`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOptions {
    /// Send nothing, record nothing: report what would be sent.
    pub dry_run: bool,
    /// Stop starting requests after this instant.
    pub deadline: Option<Instant>,
}

/// The day uploads count from: the day `on` was set, or today when `on`
/// comes only from the environment.
fn on_since(eff: &Effective, today: NaiveDate) -> NaiveDate {
    eff.on_since.unwrap_or(today)
}

/// Decides what to do with one week's full report, given the config when
/// one is needed: the same decision the real upload and the dry run take.
/// Returns `Err(())` when the config is needed and not yet given.
#[allow(clippy::result_unit_err)]
pub(crate) fn decide(
    full: &Report,
    ceiling: f64,
    config: Option<&CollectionConfig>,
) -> Result<Action, ()> {
    if full.x > ceiling {
        return Ok(Action::NotSampled(full.x));
    }
    let Some(cfg) = config else { return Err(()) };
    let filtered = cfg.filter(full);
    if filtered.programs.is_empty() {
        return Ok(Action::Empty);
    }
    Ok(Action::WouldSend(filtered.to_bytes()))
}

/// Runs the uploader once, now, in the calling thread: builds finished
/// weeks' reports, and in mode `on` (or for a dry run) decides, filters and
/// sends each pending week. The caller holds the day's token, if it cares.
pub(crate) fn run(
    dir: &Path,
    s: Option<&UploadSettings>,
    eff: &Effective,
    opts: RunOptions,
) -> RunResult {
    weekly::build_pending(dir, crate::clock::now());
    let mut result = RunResult::default();
    let today = crate::clock::today();
    if eff.mode != Mode::On && !opts.dry_run {
        result.summary = format!("mode is {}: nothing is uploaded", eff.mode);
        return result;
    }
    let Some(s) = s else {
        result.summary = "no upload settings: nothing is uploaded".into();
        return result;
    };
    let mut state = load_state(dir);
    let since = if eff.mode == Mode::On {
        Some(on_since(eff, today))
    } else {
        None
    };
    let mut config: Option<Result<fetch::Verified, String>> = None;
    let mut stop: Option<String> = None;
    for week in weekly::report_weeks(dir) {
        if state.weeks.contains_key(&week) || upload_dir(dir).join(format!("{week}.json")).exists()
        {
            continue;
        }
        let action = if let Some(why) = &stop {
            Action::Retry(why.clone())
        } else {
            week_action(dir, &week, s, since, today, &mut state, &mut config, opts)
        };
        if let Action::Retry(why) = &action
            && stop.is_none()
        {
            stop = Some(why.clone());
        }
        if !opts.dry_run
            && let Some((outcome, detail)) = final_outcome(&action)
        {
            state.weeks.insert(
                week.clone(),
                WeekDecision {
                    outcome: outcome.into(),
                    date: today.to_string(),
                    detail,
                },
            );
        }
        if let Action::Sent(b) = &action {
            state.last_sent = Some(Event {
                date: today.to_string(),
                what: format!(
                    "sent week {week} ({} bytes), copy in upload/{week}.json",
                    b.len()
                ),
            });
        }
        result.weeks.push((week, action));
    }
    if let Some(Ok(v)) = &config {
        result.config = Some(v.config.version);
        if !opts.dry_run {
            state.accepted_config = Some(state.accepted_config.unwrap_or(0).max(v.config.version));
            state.config_log = Some(v.kept.clone());
        }
    }
    result.summary = summarize(&result.weeks);
    if !opts.dry_run {
        state.last = Some(Event {
            date: today.to_string(),
            what: result.summary.clone(),
        });
        let _ = save_state(dir, &mut state);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn week_action(
    dir: &Path,
    week: &str,
    s: &UploadSettings,
    since: Option<NaiveDate>,
    today: NaiveDate,
    state: &mut State,
    config: &mut Option<Result<fetch::Verified, String>>,
    opts: RunOptions,
) -> Action {
    let full = match weekly::read_full(dir, week) {
        Ok(r) => r,
        Err(e) => return Action::Unreadable(e),
    };
    let Ok(begin) = full.week_date() else {
        return Action::Unreadable(format!("week {week} is not a date"));
    };
    if since.is_some_and(|d| begin < d) {
        return Action::BeforeOn;
    }
    if begin + chrono::Days::new(7 + SEND_WITHIN_DAYS) < today {
        return Action::TooOld;
    }
    let cfg = match decide(&full, s.ceiling, None) {
        Ok(a) => return a,
        Err(()) => {
            if opts.deadline.is_some_and(|d| Instant::now() > d) {
                return Action::Retry("out of time for today".into());
            }
            match config.get_or_insert_with(|| fetch_config(s, state)) {
                Ok(v) => &v.config,
                Err(e) => return Action::Retry(e.clone()),
            }
        }
    };
    let action = decide(&full, s.ceiling, Some(cfg)).unwrap_or(Action::Empty);
    let Action::WouldSend(bytes) = action else {
        return action;
    };
    if opts.dry_run {
        return Action::WouldSend(bytes);
    }
    let _ = crate::fsutil::replace_atomic(&weekly::filtered_path(dir, week), &bytes);
    if opts.deadline.is_some_and(|d| Instant::now() > d) {
        return Action::Retry("out of time for today".into());
    }
    match post(s, &bytes) {
        Posted::Ok => {
            let copy = upload_dir(dir).join(format!("{week}.json"));
            let _ = std::fs::create_dir_all(upload_dir(dir));
            let _ = crate::fsutil::replace_atomic(&copy, &bytes);
            Action::Sent(bytes)
        }
        Posted::Rejected(st, why) => Action::Dropped(format!(
            "server refused it with HTTP {st}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )),
        Posted::Retry(why) => Action::Retry(why),
    }
}

fn final_outcome(a: &Action) -> Option<(&'static str, String)> {
    Some(match a {
        Action::Sent(b) => ("sent", format!("{} bytes", b.len())),
        Action::NotSampled(x) => (
            "not-sampled",
            format!("X = {x} is above the ceiling: never sent, no config fetched"),
        ),
        Action::Empty => ("empty", "nothing left after filtering by the config".into()),
        Action::BeforeOn => (
            "before-on",
            "the week began before telemetry was turned on".into(),
        ),
        Action::TooOld => ("too-old", format!("older than {SEND_WITHIN_DAYS} days")),
        Action::Dropped(why) => ("dropped", why.clone()),
        Action::Unreadable(why) => ("unreadable", why.clone()),
        Action::WouldSend(_) | Action::Retry(_) => return None,
    })
}

fn describe(week: &str, a: &Action) -> String {
    match a {
        Action::Sent(b) => format!("week {week}: sent ({} bytes)", b.len()),
        Action::WouldSend(b) => format!("week {week}: would send {} bytes", b.len()),
        Action::Retry(why) => format!("week {week}: kept for a later day: {why}"),
        other => format!(
            "week {week}: not sent: {}",
            final_outcome(other).map(|o| o.1).unwrap_or_default()
        ),
    }
}

fn summarize(weeks: &[(String, Action)]) -> String {
    if weeks.is_empty() {
        return "nothing to upload".into();
    }
    weeks
        .iter()
        .map(|(w, a)| describe(w, a))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Describes one week's action in plain words (for the CLI).
#[cfg(feature = "kit")]
pub(crate) fn describe_action(week: &str, a: &Action) -> String {
    describe(week, a)
}
// ---------------------------------------------------------------- start-up

/// Called by [`crate::Telemetry::start`] once counting has started.
pub(crate) fn on_start(t: &crate::Telemetry, s: &crate::Started) {
    if let Some(u) = &t.upload {
        settings::set_in_use(u);
    }
    if std::env::var(CHILD_VAR).is_ok_and(|v| v == t.namespace) {
        child_main(t, s);
    }
    if s.mode == Mode::Off {
        return;
    }
    let Some(dir) = s.dir.clone() else { return };
    let Some(token) = take_token(&dir) else {
        return;
    };
    if let Some(u) = &t.upload {
        settings::record(&dir, u);
    }
    let today = crate::clock::today();
    let upload = s.mode == Mode::On && t.upload.is_some() && has_pending(&dir, today);
    if !upload && !weekly::any_finished(&dir, crate::clock::now()) {
        finish_token(&token, "nothing due");
        return;
    }
    let settings = t.upload.clone();
    match settings.as_ref().map(|s| s.background) {
        Some(Background::Thread) => {
            let ns = t.namespace.clone();
            let settings = settings.clone();
            let spawned = std::thread::Builder::new()
                .name("clearcount-upload".into())
                .spawn(move || background_work(&ns, &dir, settings.as_ref(), &token));
            if spawned.is_err() {
                // Leave the token to expire: a later start retries.
            }
        }
        _ => spawn_child(&t.namespace, &token),
    }
}

/// True when some report may need sending.
fn has_pending(dir: &Path, _today: NaiveDate) -> bool {
    let weeks = weekly::report_weeks(dir);
    if weeks.is_empty() {
        return false;
    }
    let state = load_state(dir);
    weeks.iter().any(|w| {
        !state.weeks.contains_key(w) && !upload_dir(dir).join(format!("{w}.json")).exists()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_matches_the_rate() {
        // 20,000 simulated installations: X drawn by the real code, the report
        // decided by the same function the uploader and the dry run use.
        use crate::format::{Meta, Parsed};

        assert!(std::env::var_os("CLEARCOUNT_TEST_X").is_none());
        let text = "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"instrumented\"\nversions = [\"*\"]\n\
             [[program.counter]]\nname = \"instrumented/a\"\nrate = 0.1\n\
             [[program.counter]]\nname = \"instrumented/rare\"\nrate = 0.005\n";
        let cfg = CollectionConfig::parse(text, "c").unwrap();
        let meta = Meta::new(
            "instrumented",
            "0.1.0",
            "linux",
            "x86_64",
            "2026-11-02".parse().unwrap(),
        );
        let mut p = Parsed {
            meta,
            counters: Default::default(),
            stacks: Default::default(),
            records: 2,
        };
        p.counters.insert("instrumented/a".into(), 1);
        p.counters.insert("instrumented/rare".into(), 1);
        let n = 20_000u32;
        let (mut sent, mut kept_a, mut kept_rare, mut fetched) = (0u32, 0u32, 0u32, 0u32);
        for _ in 0..n {
            let r = weekly::build_report("2026-11-02", std::slice::from_ref(&p), weekly::draw_x());
            let a = match decide(&r, 0.1, None) {
                Ok(a) => a,
                Err(()) => {
                    fetched += 1;
                    decide(&r, 0.1, Some(&cfg)).unwrap()
                }
            };
            if let Action::WouldSend(b) = a {
                sent += 1;
                let r = Report::from_slice(&b).unwrap();
                kept_a += r.programs[0].counters.contains_key("instrumented/a") as u32;
                kept_rare += r.programs[0].counters.contains_key("instrumented/rare") as u32;
            }
        }
        let check = |what: &str, got: u32, p: f64| {
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            let share = got as f64 / n as f64;
            eprintln!("{what}: {share:.4} (rate {p}, sd {sd:.4})");
            assert!(
                (share - p).abs() <= 4.0 * sd,
                "{what}: {share} vs {p} ± 4 sd ({sd})"
            );
        };
        check("config fetched (X <= ceiling 0.1)", fetched, 0.1);
        check("reports sent", sent, 0.1);
        check("counter at rate 0.1 kept", kept_a, 0.1);
        check("counter at rate 0.005 kept", kept_rare, 0.005);
    }

    #[test]
    fn settings_defaults_and_clamped_ceiling() {
        let s = UploadSettings::new("https://a/upload", "https://a/config.toml", "KEY", "POLICY");
        assert_eq!(s.ceiling, 0.1);
        assert_eq!(
            (s.connect_timeout, s.total_timeout, s.child_limit),
            (
                Duration::from_secs(5),
                Duration::from_secs(20),
                Duration::from_secs(60)
            )
        );
        assert_eq!(s.background, Background::Child);
        assert_eq!(s.clone().with_ceiling(2.0).ceiling, 1.0);
        assert_eq!(s.clone().with_ceiling(-1.0).ceiling, 0.0);
        assert_eq!(s.clone().with_ceiling(f64::NAN).ceiling, 0.0);
        assert_eq!(s.in_thread().background, Background::Thread);
    }

    #[test]
    fn outcomes_in_plain_words() {
        assert_eq!(
            describe("2026-11-16", &Action::BeforeOn),
            "week 2026-11-16: not sent: the week began before telemetry was turned on"
        );
        assert_eq!(summarize(&[]), "nothing to upload");
    }
}
