//! Starting telemetry: the one call a program makes in `main`, and how
//! counting follows the weeks afterwards.
//!
//! [`Telemetry::start`] decides the mode, opens this week's counter file,
//! and moves the counts made so far (kept in memory) into it. It never
//! panics and never fails the program: whatever goes wrong (no home
//! directory, a read-only disk, a corrupt file) leaves counting in memory or
//! off, and is described in the returned [`Started`].
//!
//! # Weeks, in a process that outlives one
//!
//! Every count, whatever made it (a `static` [`crate::Counter`], a name, a
//! stack counter, a histogram), goes through one place, the registry
//! entry's `add`, which first loads one flag, `ATTENTION`. The flag is
//! clear in the steady state, so the hot path pays one well-predicted load.
//! It is set while the process is young, while a count waits for a file
//! that was busy, and when the file turned out damaged; then `tend` runs,
//! which in the common case reads the coarse wall clock (a few nanoseconds,
//! no system call on Linux) and returns.
//!
//! * **Young** (the first second after `start`): every count checks the
//!   clock, and a count made after the week's end first moves every counter
//!   to the new week's file. A command that ends within a second therefore
//!   starts no thread and is still exact.
//! * **Older**: at the first count after that second, a small thread starts
//!   (at once with [`Telemetry::long_running`]) that sleeps until the week
//!   ends (an absolute wall-clock sleep on Linux, so a machine that was
//!   suspended wakes it on time) and then moves every counter; counts stop
//!   checking the clock. A count a few milliseconds after the boundary may
//!   still land in the old week; none later does.
//! * **Damaged file**: a lookup that meets damage marks the file; the next
//!   count sets it aside into `corrupt/` and moves every counter to a fresh
//!   file (a few times per process at most).
//! * **Busy file**: a name whose record could not be added (another process
//!   held the growth lock too long, or the disk was full) counts in memory
//!   and is retried every 100 ms.
//!
//! ```no_run
//! use clearcount::{counter, Telemetry};
//! let started = Telemetry::new("mytool", "mytool", "1.2.0").start();
//! counter::inc("mytool/command:build");
//! println!("telemetry is {}", started.mode);
//! ```

use crate::countfile::{CountFile, Miss};
use crate::format::Meta;
use crate::mode::{self, Mode};
use crate::registry::{self, Entry};
use crate::sys::AtomicRef;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const UNSTARTED: u8 = 0;
const OFF: u8 = 1;
const COUNTING: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNSTARTED);
static CURRENT: AtomicRef<CountFile> = AtomicRef::new();
static STARTED: OnceLock<Started> = OnceLock::new();

/// Where the week's files are made; set once counting to a file started.
static CTX: OnceLock<Ctx> = OnceLock::new();

/// Set when the next count must call [`tend`]: the process is young, a
/// count waits for a busy file, or the file is damaged.
pub(crate) static ATTENTION: AtomicBool = AtomicBool::new(false);
/// Coarse wall-clock time (ms since the epoch) from which `tend` has work.
static DUE_MS: AtomicU64 = AtomicU64::new(u64::MAX);
/// The current file's week end, on the coarse wall clock.
static WEEK_END_MS: AtomicU64 = AtomicU64::new(u64::MAX);
/// When a process stops being young and gets the week thread.
static THREAD_AT_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static THREAD_RUNNING: AtomicBool = AtomicBool::new(false);
/// A count waits in memory for a busy file; retried from this time.
static RETRY_AT_MS: AtomicU64 = AtomicU64::new(u64::MAX);
/// The current file was found damaged.
static DAMAGED: AtomicBool = AtomicBool::new(false);
/// Damaged files replaced so far in this process.
static REPLACED: AtomicU32 = AtomicU32::new(0);
/// Serializes week changes, recovery and retries.
static TEND: Mutex<()> = Mutex::new(());

/// How long a process is young: it checks the clock at every count and
/// starts no thread.
const YOUNG: Duration = Duration::from_secs(1);
/// Most damaged files one process replaces; after that, counts stay in
/// memory.
const MAX_REPLACED: u32 = 3;
/// How often a count waiting for a busy file is retried.
const RETRY_EVERY_MS: u64 = 100;
/// How soon a failed week change (say, the disk is full) is tried again.
const ROTATE_RETRY_MS: u64 = 60_000;

/// [`YOUNG`]; with the `test-hooks` feature (tests only),
/// `CLEARCOUNT_TEST_LAZY_MS` replaces it.
fn young_for() -> Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CLEARCOUNT_TEST_LAZY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    YOUNG
}

/// True when telemetry was started and is off: counts are dropped.
#[inline(always)]
pub(crate) fn is_off() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

/// Called by a count when [`ATTENTION`] is set. Cheap unless something is
/// due: one coarse clock read and a compare.
#[inline(never)]
pub(crate) fn tend() {
    if crate::sys::coarse_now_ms() < DUE_MS.load(Ordering::Relaxed) {
        return;
    }
    tend_due();
}

#[cold]
fn tend_due() {
    let _g = TEND.lock().unwrap_or_else(|e| e.into_inner());
    if week_is_over() {
        rotate();
    }
    if DAMAGED.swap(false, Ordering::AcqRel) {
        recover();
    }
    let now = crate::sys::coarse_now_ms();
    if now >= RETRY_AT_MS.load(Ordering::Relaxed) {
        RETRY_AT_MS.store(u64::MAX, Ordering::Relaxed);
        retry_waiting();
    }
    if !THREAD_RUNNING.load(Ordering::Acquire) && now >= THREAD_AT_MS.load(Ordering::Relaxed) {
        start_thread();
    }
    update_attention();
}

/// Recomputes [`DUE_MS`] and [`ATTENTION`] from what is pending.
fn update_attention() {
    let young = !THREAD_RUNNING.load(Ordering::Acquire);
    let mut due = RETRY_AT_MS.load(Ordering::Relaxed);
    if young {
        due = due
            .min(WEEK_END_MS.load(Ordering::Relaxed))
            .min(THREAD_AT_MS.load(Ordering::Relaxed));
    }
    if DAMAGED.load(Ordering::Acquire) {
        due = 0;
    }
    DUE_MS.store(due, Ordering::Relaxed);
    ATTENTION.store(
        STATE.load(Ordering::Acquire) == COUNTING && due != u64::MAX,
        Ordering::Release,
    );
}

/// Asks the next count to call [`tend`] by `at_ms` at the latest.
fn due_by(at_ms: u64) {
    DUE_MS.fetch_min(at_ms, Ordering::AcqRel);
    ATTENTION.store(true, Ordering::Release);
}

/// Points a registry entry at its record in `file`, or keeps its counts in
/// memory (scheduling a retry or recovery as the miss requires).
fn attach_to(e: &'static Entry, file: &'static CountFile) {
    match file.cell(e.name) {
        Ok(c) => e.attach(Some(c)),
        Err(miss) => {
            e.attach_pending();
            match miss {
                Miss::Busy => {
                    let at = crate::sys::coarse_now_ms().saturating_add(RETRY_EVERY_MS);
                    RETRY_AT_MS.fetch_min(at, Ordering::AcqRel);
                    due_by(at);
                }
                Miss::Damaged => {
                    DAMAGED.store(true, Ordering::Release);
                    due_by(0);
                }
                Miss::Full => {}
            }
        }
    }
}

/// Attaches a newly registered entry to wherever counts go now. Called with
/// the registry lock held.
pub(crate) fn attach_new(e: &'static Entry) {
    match STATE.load(Ordering::Acquire) {
        OFF => e.attach(None),
        COUNTING => match CURRENT.load() {
            Some(f) => attach_to(e, f),
            None => e.attach_pending(),
        },
        _ => e.attach_pending(),
    }
}

/// How a program sets up telemetry: its namespace, program name, version,
/// and choices such as the default mode.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub(crate) namespace: String,
    pub(crate) program: String,
    pub(crate) version: String,
    pub(crate) default_mode: Mode,
    pub(crate) long_running: bool,
    #[cfg(feature = "upload")]
    pub(crate) upload: Option<crate::upload::UploadSettings>,
}

/// What [`Telemetry::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The mode in force.
    pub mode: Mode,
    /// The telemetry directory, if one could be determined.
    pub dir: Option<PathBuf>,
    /// This week's counter file, if counting goes to a file.
    pub file: Option<PathBuf>,
    /// What went wrong, in plain words, if anything did. Counting then stays
    /// in memory (or off), and the program goes on.
    pub problem: Option<String>,
}

impl Telemetry {
    /// Telemetry for `program` at `version`, in `namespace` (the toolchain's
    /// name, which picks the directory and the `<NAMESPACE>_TELEMETRY`
    /// variable).
    pub fn new(namespace: &str, program: &str, version: &str) -> Telemetry {
        Telemetry {
            namespace: namespace.to_string(),
            program: program.to_string(),
            version: version.to_string(),
            default_mode: Mode::Local,
            long_running: false,
            #[cfg(feature = "upload")]
            upload: None,
        }
    }

    /// The mode used when the user has chosen none (no mode file, no
    /// environment variable). `local` unless set.
    pub fn default_mode(mut self, mode: Mode) -> Telemetry {
        self.default_mode = mode;
        self
    }

    /// Says that the program is likely to run for long (a server, a
    /// language server, a daemon): the thread that moves counters to the
    /// next week's file starts now instead of at the first count after the
    /// process's first second. Only a hint: counting follows the weeks
    /// without it (see "How it works" in the [crate docs](crate)).
    pub fn long_running(mut self) -> Telemetry {
        self.long_running = true;
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Starts telemetry for this process. Only the first call does anything;
    /// later calls return what the first one did.
    ///
    /// Call it first thing in `main`, before the program does anything else:
    /// the background uploader re-runs the program's executable as a
    /// detached child, and that child stops inside `start` (it never returns
    /// to `main`).
    ///
    /// With the `kit` feature, a command line that runs the mounted
    /// `telemetry off` (the words `telemetry off` side by side, before any
    /// `--`) starts off, whatever the mode: turning telemetry off writes
    /// nothing but the mode file, even on the first run.
    ///
    /// ```no_run
    /// let s = clearcount::Telemetry::new("mytool", "mytool", "1.0").start();
    /// if let Some(p) = s.problem { eprintln!("telemetry: {p}"); }
    /// ```
    pub fn start(self) -> Started {
        STARTED.get_or_init(|| self.start_once()).clone()
    }

    fn start_once(&self) -> Started {
        let started = self.start_counting();
        // The child that names crash stacks stops here too: with the kit
        // only (a build without it keeps no crash stacks, and `if`, not
        // `#[cfg]`, lets the optimizer drop the naming code from it).
        if cfg!(feature = "kit") {
            crate::kit::crash::on_start();
        }
        // Always reached, whatever the mode: an upload child must stop here
        // (it never runs the host's `main`), even if the user turned
        // telemetry off in the meantime.
        #[cfg(feature = "upload")]
        crate::upload::on_start(self, &started);
        started
    }

    fn start_counting(&self) -> Started {
        let mut started = Started {
            mode: Mode::Off,
            dir: None,
            file: None,
            problem: None,
        };
        if cfg!(target_endian = "big") {
            // Counter files are little-endian and updated in place with
            // native atomics: a big-endian host cannot share them.
            started.problem = Some("telemetry is not supported on big-endian hosts".into());
            turn_off();
            return started;
        }
        if !crate::sys::MAPPING {
            // No shared file mapping on this target: count nothing, write
            // nothing, as if off.
            started.problem =
                Some("telemetry is not supported on this platform: nothing is counted".into());
            turn_off();
            return started;
        }
        if let Err(e) = crate::dirs::check_namespace(&self.namespace) {
            started.problem = Some(e);
            turn_off();
            return started;
        }
        let dir = crate::dirs::telemetry_dir(&self.namespace);
        started.dir = dir.clone();
        // The mounted `telemetry off` starts off: turning telemetry off
        // writes nothing but its mode file, and counts nothing, not even
        // itself.
        #[cfg(feature = "kit")]
        if crate::kit::subcommand::turns_off(std::env::args_os()) {
            turn_off();
            return started;
        }
        let eff = mode::effective_for_start(&self.namespace, dir.as_deref(), self.default_mode);
        started.mode = eff.mode;
        if eff.mode == Mode::Off {
            turn_off();
            return started;
        }
        let Some(dir) = dir else {
            started.problem = Some("no home directory: counts are kept in memory only".into());
            return started;
        };
        match open_week(&dir, self) {
            Ok(file) => {
                started.file = Some(file.path.clone());
                let young = young_for().as_millis() as u64;
                THREAD_AT_MS.store(
                    crate::sys::coarse_now_ms().saturating_add(young),
                    Ordering::Relaxed,
                );
                let _g = TEND.lock().unwrap_or_else(|e| e.into_inner());
                switch_to(file);
                if self.long_running {
                    start_thread();
                }
                update_attention();
            }
            Err(e) => {
                started.problem = Some(format!(
                    "cannot use {}: {e}; counts are kept in memory only",
                    dir.display()
                ));
            }
        }
        started
    }
}

/// Whether this process's week thread was started (and its start did not
/// fail). With the `test-hooks` feature only, for tests that check when a
/// process gets the thread.
#[cfg(feature = "test-hooks")]
pub fn week_thread_running() -> bool {
    THREAD_RUNNING.load(Ordering::Acquire)
}

/// The telemetry directory this process counts under, once its week file
/// was opened there.
pub(crate) fn dir() -> Option<&'static Path> {
    CTX.get().map(|c| c.dir.as_path())
}

/// What the process started with, if telemetry was started.
pub fn started() -> Option<&'static Started> {
    STARTED.get()
}

fn turn_off() {
    let _g = registry::lock();
    STATE.store(OFF, Ordering::Release);
    for e in registry::entries() {
        e.attach(None);
    }
}

fn open_week(dir: &Path, t: &Telemetry) -> std::io::Result<&'static CountFile> {
    let weekday = match crate::week::read_start(dir) {
        Some(day) => day,
        None => {
            std::fs::create_dir_all(dir)?;
            crate::week::load_or_create_start(dir)?
        }
    };
    let ctx = Ctx {
        dir: dir.to_path_buf(),
        program: t.program.clone(),
        version: t.version.clone(),
        weekday,
    };
    let file = ctx.open_current_week()?;
    let _ = CTX.set(ctx);
    Ok(file)
}

/// Makes `file` the place counts go, for every counter.
fn switch_to(file: &'static CountFile) {
    WEEK_END_MS.store(week_end_ms(file), Ordering::Relaxed);
    let _g = registry::lock();
    CURRENT.store(Some(file));
    STATE.store(COUNTING, Ordering::Release);
    for e in registry::entries() {
        attach_to(e, file);
    }
}

/// The end of `file`'s week on the clock.
fn week_end(file: &CountFile) -> chrono::DateTime<chrono::Utc> {
    file.meta
        .week_end
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// The end of `file`'s week on the coarse wall clock, which
/// `CLEARCOUNT_NOW` does not move: now on that clock plus what is left of
/// the week on ours.
fn week_end_ms(file: &CountFile) -> u64 {
    let left = (week_end(file) - crate::clock::now()).num_milliseconds();
    let now = crate::sys::coarse_now_ms();
    if left <= 0 {
        now
    } else {
        now.saturating_add(left as u64)
    }
}

fn week_is_over() -> bool {
    CURRENT
        .load()
        .is_some_and(|f| crate::clock::now() >= week_end(f))
}

/// Moves every counter to the file of the week that contains now. Called
/// with [`TEND`] held.
fn rotate() {
    let Some(ctx) = CTX.get() else { return };
    match ctx.open_current_week() {
        Ok(f) => switch_to(f),
        Err(_) => {
            // Counts go on into the old file; try again later.
            let later = crate::sys::coarse_now_ms().saturating_add(ROTATE_RETRY_MS);
            WEEK_END_MS.store(later, Ordering::Relaxed);
        }
    }
}

/// Sets the damaged current file aside and moves every counter to a fresh
/// one. Called with [`TEND`] held.
fn recover() {
    let (Some(ctx), Some(cur)) = (CTX.get(), CURRENT.load()) else {
        return;
    };
    if !cur.is_broken() || REPLACED.fetch_add(1, Ordering::AcqRel) >= MAX_REPLACED {
        return;
    }
    cur.set_aside(&ctx.dir);
    if let Ok(f) = ctx.open_current_week() {
        switch_to(f);
    }
}

/// Tries again to give a file record to the counters kept in memory because
/// the file was busy. Called with [`TEND`] held.
fn retry_waiting() {
    let Some(file) = CURRENT.load() else { return };
    let _g = registry::lock();
    for e in registry::entries() {
        if e.is_waiting() {
            attach_to(e, file);
        }
    }
}

/// Starts the thread that moves counters to the next week's file when the
/// week ends; once it runs, counts no longer check the clock.
fn start_thread() {
    if CTX.get().is_none() || THREAD_RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("clearcount-week".into())
        .stack_size(64 * 1024)
        .spawn(follow_weeks);
    if spawned.is_err() {
        // No thread: stay young, checking the clock at every count.
        THREAD_RUNNING.store(false, Ordering::Release);
        THREAD_AT_MS.store(u64::MAX, Ordering::Relaxed);
    }
}

/// The week thread: sleeps until the current week ends, then moves every
/// counter to the next week's file; forever. It holds no lock while
/// sleeping and never delays exit.
fn follow_weeks() {
    loop {
        let end = WEEK_END_MS.load(Ordering::Relaxed);
        crate::sys::sleep_until_ms(end);
        if crate::sys::coarse_now_ms() < end {
            continue; // woken early
        }
        let _g = TEND.lock().unwrap_or_else(|e| e.into_inner());
        if week_is_over() {
            rotate();
        } else {
            // The two clocks disagree by a little: recompute the end.
            if let Some(f) = CURRENT.load() {
                WEEK_END_MS.store(
                    week_end_ms(f).max(crate::sys::coarse_now_ms() + 1),
                    Ordering::Relaxed,
                );
            }
        }
    }
}

/// What the engine needs to open a week's file.
struct Ctx {
    dir: PathBuf,
    program: String,
    version: String,
    weekday: chrono::Weekday,
}

impl Ctx {
    /// Opens (or creates) the file of the week that contains today, for
    /// this program build; the file lives for the rest of the process.
    fn open_current_week(&self) -> std::io::Result<&'static CountFile> {
        let today = crate::clock::today();
        // Year 9999 has no next week to name; such a clock is a mistake.
        if chrono::Datelike::year(&today) > 9998 || chrono::Datelike::year(&today) < 1970 {
            return Err(std::io::Error::other(format!(
                "the clock says {today}: no counting outside the years 1970-9998"
            )));
        }
        let begin = crate::week::week_begin(today, self.weekday);
        let meta = Meta::new(
            &self.program,
            &self.version,
            std::env::consts::OS,
            std::env::consts::ARCH,
            begin,
        );
        Ok(Box::leak(Box::new(CountFile::open(&self.dir, &meta)?)))
    }
}
