//! The weekly uploader: sampling, the signed config, and the HTTP POST.
//!
//! A toolchain compiles in [`UploadSettings`] (where to POST, where the
//! signed config is, the public key) and hands them to
//! [`Telemetry::upload`](crate::Telemetry::upload). From then on,
//! [`Telemetry::start`](crate::Telemetry::start) does, at most once a day per
//! installation and never in the host's way:
//!
//! 1. turn finished weeks into local reports ([`crate::weekly`]);
//! 2. only in mode `on`, for each week that began on or after the day `on`
//!    was set (today, when `on` comes only from the environment), is at most
//!    three weeks old, and is not decided yet: if the report's X is above the
//!    client's ceiling, the week is never sent and no config is fetched;
//!    otherwise fetch `config_url` and `config_url + ".minisig"`, verify with
//!    the compiled-in key, refuse a rollback, filter, and POST the filtered
//!    report if anything remains;
//! 3. the server's answer decides: 2xx sent (the exact bytes are copied to
//!    `upload/<week>.json`), 4xx dropped, anything else retried on a later
//!    day.
//!
//! **Background.** By default the work runs in a detached child process, as
//! Go does: `start` re-runs the current executable with the single argument
//! [`CHILD_ARG`] and the environment variable [`CHILD_VAR`] set to the
//! namespace, with null stdio. In the child, `Telemetry::start` sees the
//! variable, does the work synchronously within
//! [`UploadSettings::child_limit`] (a watchdog ends the process after it) and
//! exits the process: the host's `main` never runs in the child. **So
//! `Telemetry::start` must be the first thing `main` does.** Should the child
//! find telemetry off (the user changed the mode meanwhile), `start` returns
//! normally and `main` runs with the lone argument [`CHILD_ARG`], which a
//! command-line tool rejects as a usage error. Long-running hosts that would
//! rather not spawn a process choose [`UploadSettings::in_thread`].
//!
//! **Once a day.** The parent takes the day's token `upload/day-<date>.token`
//! (created atomically, first writer wins) before it starts the background
//! work; the work marks it done when it ends. A token neither done nor
//! younger than [`LEASE`] belongs to a crashed attempt, and the next start
//! takes a fresh one (`day-<date>.token.1`, …).
//!
//! ```no_run
//! use clearcount::{Telemetry, upload::UploadSettings};
//! fn main() {
//!     let settings = UploadSettings::new(
//!         "https://telemetry.example.org/upload",
//!         "https://telemetry.example.org/config/config.toml",
//!         clearcount::sign::PUBLIC_KEY,
//!     );
//!     Telemetry::new("mytool", "mytool", "1.0").upload(settings).start();
//!     // ... the program ...
//! }
//! ```

use crate::config::CollectionConfig;
use crate::mode::{Effective, Mode};
use crate::report::Report;
use crate::weekly;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable that marks the background upload child; its
/// value is the namespace.
pub const CHILD_VAR: &str = "CLEARCOUNT_UPLOAD_CHILD";
/// The environment variable that tells the child which token to mark done.
pub const TOKEN_VAR: &str = "CLEARCOUNT_UPLOAD_TOKEN";
/// The only argument the upload child is started with.
pub const CHILD_ARG: &str = "clearcount_upload_child";
/// How long a day's token protects an attempt that has not finished.
pub const LEASE: Duration = Duration::from_secs(600);
/// Reports whose week ended more than this many days ago are not sent.
pub const MAX_AGE_DAYS: u64 = 21;
/// The state file, in `upload/`.
pub const STATE_FILE: &str = "state.json";

const CONFIG_LIMIT: u64 = 1 << 20;
const SIG_LIMIT: u64 = 16 << 10;
const ANSWER_LIMIT: u64 = 16 << 10;

/// How the background work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    /// A detached child process (the default).
    Child,
    /// A thread of the host process (for long-running hosts).
    Thread,
}

/// What a toolchain compiles in to upload: where to POST, where the signed
/// config is, the key that signs it, and the sampling ceiling.
///
/// ```
/// use clearcount::upload::UploadSettings;
/// let s = UploadSettings::new("http://127.0.0.1:1/upload", "http://127.0.0.1:1/config.toml",
///     clearcount::sign::PUBLIC_KEY).with_ceiling(0.05);
/// assert_eq!(s.ceiling, 0.05);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    /// Where reports are POSTed.
    pub upload_url: String,
    /// The signed collection config; its signature is at
    /// `config_url + ".minisig"`.
    pub config_url: String,
    /// The minisign public key text (a `.pub` file or its base64 line).
    pub public_key: String,
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
}

impl UploadSettings {
    /// Settings with the defaults: ceiling 0.1, timeouts 5 s / 20 s, at most
    /// 60 s in a child process.
    ///
    /// ```
    /// let s = clearcount::upload::UploadSettings::new("https://a/upload", "https://a/config.toml", "KEY");
    /// assert_eq!(s.ceiling, 0.1);
    /// ```
    pub fn new(upload_url: &str, config_url: &str, public_key: &str) -> UploadSettings {
        UploadSettings {
            upload_url: upload_url.to_string(),
            config_url: config_url.to_string(),
            public_key: public_key.to_string(),
            ceiling: 0.1,
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            child_limit: Duration::from_secs(60),
            background: Background::Child,
        }
    }

    /// Sets the sampling ceiling (clamped to `[0, 1]`).
    ///
    /// ```
    /// let s = clearcount::upload::UploadSettings::new("u", "c", "k").with_ceiling(2.0);
    /// assert_eq!(s.ceiling, 1.0);
    /// ```
    pub fn with_ceiling(mut self, ceiling: f64) -> UploadSettings {
        self.ceiling = if ceiling.is_nan() {
            0.0
        } else {
            ceiling.clamp(0.0, 1.0)
        };
        self
    }

    /// Sets the connect and total timeouts of each request.
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = clearcount::upload::UploadSettings::new("u", "c", "k")
    ///     .with_timeouts(Duration::from_secs(1), Duration::from_secs(3));
    /// assert_eq!(s.total_timeout, Duration::from_secs(3));
    /// ```
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> UploadSettings {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    /// Sets the longest time the background work may take.
    ///
    /// ```
    /// let s = clearcount::upload::UploadSettings::new("u", "c", "k")
    ///     .with_child_limit(std::time::Duration::from_secs(30));
    /// assert_eq!(s.child_limit.as_secs(), 30);
    /// ```
    pub fn with_child_limit(mut self, limit: Duration) -> UploadSettings {
        self.child_limit = limit;
        self
    }

    /// Runs the background work in a thread of the host instead of a child
    /// process (for long-running hosts; the thread never delays exit).
    ///
    /// ```
    /// use clearcount::upload::{Background, UploadSettings};
    /// assert_eq!(UploadSettings::new("u", "c", "k").in_thread().background, Background::Thread);
    /// ```
    pub fn in_thread(mut self) -> UploadSettings {
        self.background = Background::Thread;
        self
    }
}

impl crate::Telemetry {
    /// Uploads weekly reports with these settings (in mode `on` only).
    ///
    /// ```no_run
    /// use clearcount::{Telemetry, upload::UploadSettings};
    /// let s = UploadSettings::new("https://a/upload", "https://a/config.toml", clearcount::sign::PUBLIC_KEY);
    /// Telemetry::new("mytool", "mytool", "1.0").upload(s).start();
    /// ```
    pub fn upload(mut self, s: UploadSettings) -> Self {
        self.upload = Some(s);
        self
    }
}

// ---------------------------------------------------------------- state

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

fn upload_dir(dir: &Path) -> PathBuf {
    dir.join(crate::dirs::UPLOAD)
}

/// Reads `upload/state.json` (a missing or damaged file reads as empty).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// assert_eq!(clearcount::upload::load_state(dir.path()), Default::default());
/// ```
pub fn load_state(dir: &Path) -> State {
    std::fs::read(upload_dir(dir).join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(dir: &Path, state: &mut State) -> std::io::Result<()> {
    // Bounded: forget decisions about weeks whose report is gone.
    let weeks: std::collections::BTreeSet<String> = weekly::report_weeks(dir).into_iter().collect();
    state.weeks.retain(|w, _| weeks.contains(w));
    std::fs::create_dir_all(upload_dir(dir))?;
    let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::fsutil::replace_atomic(&upload_dir(dir).join(STATE_FILE), &bytes)
}

// ---------------------------------------------------------------- token

fn token_path(dir: &Path, day: NaiveDate, k: u32) -> PathBuf {
    let name = if k == 0 {
        format!("day-{day}.token")
    } else {
        format!("day-{day}.token.{k}")
    };
    upload_dir(dir).join(name)
}

enum TokenState {
    Free,
    Done,
    Held,
}

fn token_state(p: &Path, now: i64) -> TokenState {
    match std::fs::read_to_string(p) {
        Err(_) => TokenState::Free,
        Ok(t) if t.starts_with("done") => TokenState::Done,
        Ok(t) => {
            let taken = t
                .strip_prefix("taken ")
                .and_then(|s| s.trim().parse::<i64>().ok());
            match taken {
                Some(at) if now - at < LEASE.as_secs() as i64 && now >= at => TokenState::Held,
                // Stale (a crashed attempt), or unreadable: free to retry.
                _ => TokenState::Free,
            }
        }
    }
}

/// Tries to take today's token. `None` when today's attempt is done or
/// running elsewhere.
fn take_token(dir: &Path) -> Option<PathBuf> {
    let now = crate::clock::now();
    let day = now.date_naive();
    // Fast path: one read, no write.
    if !matches!(
        token_state(&token_path(dir, day, 0), now.timestamp()),
        TokenState::Free
    ) {
        return None;
    }
    std::fs::create_dir_all(upload_dir(dir)).ok()?;
    for k in 0..4 {
        let p = token_path(dir, day, k);
        let text = format!("taken {}\n", now.timestamp());
        match crate::fsutil::create_atomic(&p, text.as_bytes()) {
            Ok(()) => {
                remove_old_tokens(dir, day);
                return Some(p);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match token_state(&p, now.timestamp()) {
                    TokenState::Free => continue,
                    TokenState::Done | TokenState::Held => return None,
                }
            }
            Err(_) => return None,
        }
    }
    None
}

fn finish_token(p: &Path, what: &str) {
    let line: String = what.chars().filter(|c| *c != '\n').take(300).collect();
    let _ = crate::fsutil::replace_atomic(p, format!("done {line}\n").as_bytes());
}

fn remove_old_tokens(dir: &Path, today: NaiveDate) {
    let prefix = format!("day-{today}.");
    if let Ok(entries) = std::fs::read_dir(upload_dir(dir)) {
        for e in entries.filter_map(Result::ok) {
            let n = e.file_name();
            let Some(n) = n.to_str() else { continue };
            if n.starts_with("day-") && n.contains(".token") && !n.starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP

fn agent(s: &UploadSettings) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .timeout_connect(Some(s.connect_timeout))
        .timeout_global(Some(s.total_timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("clearcount")
        .build();
    ureq::Agent::new_with_config(cfg)
}

fn net_error(url: &str, e: &ureq::Error, s: &UploadSettings) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "server did not answer in time ({} s) at {url}",
            s.total_timeout.as_secs_f64()
        ),
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            format!("server unreachable at {url} ({e})")
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("server unreachable at {url} (connection refused)")
        }
        ureq::Error::Io(io) => format!("network error talking to {url}: {io}"),
        other => format!("bad answer from {url}: {other}"),
    }
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    limit: u64,
    s: &UploadSettings,
) -> Result<(u16, Vec<u8>), String> {
    let mut resp = agent.get(url).call().map_err(|e| net_error(url, &e, s))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| net_error(url, &e, s))?;
    Ok((status, body))
}

/// Fetches and verifies the signed config: `config_url`, then
/// `config_url + ".minisig"`, checked with the settings' public key; a
/// version below `accepted` is refused.
///
/// ```no_run
/// use clearcount::upload::{fetch_config, UploadSettings};
/// let s = UploadSettings::new("https://a/upload", "https://a/config.toml", clearcount::sign::PUBLIC_KEY);
/// match fetch_config(&s, None) { Ok(c) => println!("config {}", c.version), Err(e) => eprintln!("{e}") }
/// ```
pub fn fetch_config(s: &UploadSettings, accepted: Option<u64>) -> Result<CollectionConfig, String> {
    let agent = agent(s);
    let (st, text) = get(&agent, &s.config_url, CONFIG_LIMIT, s)?;
    if !(200..300).contains(&st) {
        return Err(format!(
            "cannot fetch the config: {} answered HTTP {st}",
            s.config_url
        ));
    }
    let text = String::from_utf8(text)
        .map_err(|_| format!("config at {} is not UTF-8 text", s.config_url))?;
    let sig_url = format!("{}.minisig", s.config_url);
    let (st, sig) = get(&agent, &sig_url, SIG_LIMIT, s)?;
    if st == 404 {
        return Err(format!(
            "config refused: signature is missing ({sig_url} not found)"
        ));
    }
    if !(200..300).contains(&st) {
        return Err(format!(
            "cannot fetch the config signature: {sig_url} answered HTTP {st}"
        ));
    }
    let sig = String::from_utf8_lossy(&sig);
    crate::sign::verify_config(&s.public_key, &text, &sig, accepted)
        .map_err(|e| format!("config refused: bad signature or version: {e}"))
}

enum Posted {
    Ok,
    Rejected(u16, String),
    Retry(String),
}

fn post(s: &UploadSettings, body: &[u8]) -> Posted {
    let url = &s.upload_url;
    let resp = agent(s)
        .post(url)
        .header("Content-Type", "application/json")
        .send(body);
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return Posted::Retry(net_error(url, &e, s)),
    };
    let st = resp.status().as_u16();
    let answer = resp
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    let answer: String = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    match st {
        200..=299 => Posted::Ok,
        400..=499 => Posted::Rejected(st, answer),
        _ => Posted::Retry(format!(
            "server error: {url} answered HTTP {st}{}",
            if answer.is_empty() {
                String::new()
            } else {
                format!(" ({answer})")
            }
        )),
    }
}

// ---------------------------------------------------------------- the work

/// What happened to one week in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
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
    /// The week ended more than [`MAX_AGE_DAYS`] days ago.
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
pub struct RunResult {
    /// Reports built from finished weeks.
    pub built: Option<weekly::Built>,
    /// Each week looked at, and what happened to it.
    pub weeks: Vec<(String, Action)>,
    /// The config version used, if one was fetched and accepted.
    pub config: Option<u64>,
    /// A one-line summary, in plain words.
    pub summary: String,
}

/// Options of [`run`].
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
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
///
/// ```
/// use clearcount::report::Report;
/// use clearcount::upload::{decide, Action};
/// let r = Report { week: "2026-11-16".into(), x: 0.5, config: 0, programs: vec![] };
/// assert_eq!(decide(&r, 0.1, None), Ok(Action::NotSampled(0.5)));
/// ```
#[allow(clippy::result_unit_err)]
pub fn decide(
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
///
/// ```no_run
/// use clearcount::upload::{run, RunOptions, UploadSettings};
/// let dir = clearcount::dirs::telemetry_dir("mytool").unwrap();
/// let eff = clearcount::mode::effective("mytool", Some(&dir), clearcount::mode::Mode::Local);
/// let s = UploadSettings::new("https://a/upload", "https://a/config.toml", clearcount::sign::PUBLIC_KEY);
/// let r = run(&dir, Some(&s), &eff, RunOptions { dry_run: true, deadline: None });
/// println!("{}", r.summary);
/// ```
pub fn run(dir: &Path, s: Option<&UploadSettings>, eff: &Effective, opts: RunOptions) -> RunResult {
    let today = crate::clock::today();
    let mut result = RunResult {
        built: Some(weekly::build_pending(dir, today)),
        ..RunResult::default()
    };
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
    let mut config: Option<Result<CollectionConfig, String>> = None;
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
    if let Some(Ok(cfg)) = &config {
        result.config = Some(cfg.version);
        if !opts.dry_run {
            state.accepted_config = Some(state.accepted_config.unwrap_or(0).max(cfg.version));
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
    config: &mut Option<Result<CollectionConfig, String>>,
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
    if begin + chrono::Days::new(7 + MAX_AGE_DAYS) < today {
        return Action::TooOld;
    }
    let cfg = match decide(&full, s.ceiling, None) {
        Ok(a) => return a,
        Err(()) => {
            if opts.deadline.is_some_and(|d| Instant::now() > d) {
                return Action::Retry("out of time for today".into());
            }
            match config.get_or_insert_with(|| fetch_config(s, state.accepted_config)) {
                Ok(c) => c,
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
        Action::TooOld => ("too-old", format!("older than {MAX_AGE_DAYS} days")),
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
///
/// ```
/// use clearcount::upload::{describe_action, Action};
/// assert_eq!(describe_action("2026-11-16", &Action::BeforeOn),
///     "week 2026-11-16: not sent: the week began before telemetry was turned on");
/// ```
pub fn describe_action(week: &str, a: &Action) -> String {
    describe(week, a)
}

// ---------------------------------------------------------------- start-up

/// Called by [`crate::Telemetry::start`] once counting has started.
pub(crate) fn on_start(t: &crate::Telemetry, s: &crate::Started) {
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
    let today = crate::clock::today();
    let upload = s.mode == Mode::On && t.upload.is_some() && has_pending(&dir, today);
    if !upload && !weekly::any_finished(&dir, today) {
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

fn spawn_child(ns: &str, token: &Path) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(CHILD_ARG)
        .env(CHILD_VAR, ns)
        .env(TOKEN_VAR, token)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: a Ctrl-C meant for the host's job does not
        // cut an upload in half.
        cmd.process_group(0);
    }
    if let Ok(mut child) = cmd.spawn() {
        // Reap it if the host lives longer; never waited for at exit.
        let _ = std::thread::Builder::new()
            .name("clearcount-reap".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// In the child: do the work, bounded in time, then exit the process.
fn child_main(t: &crate::Telemetry, s: &crate::Started) -> ! {
    let limit = t
        .upload
        .as_ref()
        .map(|u| u.child_limit)
        .unwrap_or(Duration::from_secs(60));
    let _ = std::thread::Builder::new()
        .name("clearcount-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            std::process::exit(3);
        });
    let token = std::env::var_os(TOKEN_VAR).map(PathBuf::from);
    if s.mode != Mode::Off
        && let Some(dir) = &s.dir
    {
        let token = token.unwrap_or_else(|| token_path(dir, crate::clock::today(), 0));
        background_work(&t.namespace, dir, t.upload.as_ref(), &token);
    }
    std::process::exit(0)
}

fn background_work(ns: &str, dir: &Path, s: Option<&UploadSettings>, token: &Path) {
    let limit = s.map(|s| s.child_limit).unwrap_or(Duration::from_secs(60));
    // Leave time for the last request to finish within the limit.
    let total = s.map(|s| s.total_timeout).unwrap_or_default();
    let deadline = Instant::now() + limit.saturating_sub(total + Duration::from_secs(1));
    let eff = crate::mode::effective(ns, Some(dir), Mode::Local);
    let r = run(
        dir,
        s,
        &eff,
        RunOptions {
            dry_run: false,
            deadline: Some(deadline),
        },
    );
    finish_token(token, &r.summary);
}

// ---------------------------------------------------------------- status

/// Upload state for `clearcount status`.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let s = clearcount::upload::status("mytool", dir.path());
/// assert!(!s.lines().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct UploadStatus {
    lines: Vec<String>,
    json: serde_json::Value,
}

impl UploadStatus {
    /// As JSON.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let v = clearcount::upload::status("mytool", dir.path()).to_json();
    /// assert!(v["next"].is_string());
    /// ```
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = self.json.clone();
        v["lines"] = serde_json::json!(self.lines);
        v
    }
    /// As lines of text.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// for l in clearcount::upload::status("mytool", dir.path()).lines() { println!("{l}"); }
    /// ```
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// The upload state of a namespace whose directory is `dir`: when the next
/// upload can happen and what happened last time, in plain words. Reads
/// only.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let s = clearcount::upload::status("mytool", dir.path());
/// assert!(s.lines()[0].starts_with("next upload"));
/// ```
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
    let finished = weekly::any_finished(dir, today);
    let mut lines = vec![next.clone()];
    match &state.last {
        Some(e) => lines.push(format!("last upload run: {}: {}", e.date, e.what)),
        None => lines.push("last upload run: never".into()),
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
    let json = serde_json::json!({
        "next": next,
        "last": state.last,
        "last_sent": state.last_sent,
        "pending": pending,
        "finished_weeks_unreported": finished,
        "accepted_config": state.accepted_config,
        "weeks": state.weeks,
    });
    UploadStatus { lines, json }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_once_a_day_and_lease() {
        let dir = tempfile::tempdir().unwrap();
        let t = take_token(dir.path()).unwrap();
        assert!(take_token(dir.path()).is_none(), "held");
        // A stale lease is taken over by a new token.
        std::fs::write(&t, "taken 0\n").unwrap();
        let t2 = take_token(dir.path()).unwrap();
        assert_ne!(t, t2);
        finish_token(&t2, "done");
        assert!(take_token(dir.path()).is_none(), "done today");
    }

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
