//! Starting telemetry: the one call a program makes in `main`.
//!
//! [`Telemetry::start`] decides the mode, opens this week's counter file,
//! and moves the counts made so far (kept in memory) into it. A process
//! that lives long enough to cross a week boundary gets a small thread that
//! sleeps until the week ends and then moves every counter to the next
//! week's file (see [`Telemetry::long_running`] for when it starts). It never panics and never fails the program: whatever
//! goes wrong (no home directory, a read-only disk, a corrupt file) leaves
//! counting in memory or off, and is described in the returned [`Started`].
//!
//! ```no_run
//! use clearcount::{counter, Telemetry};
//! let started = Telemetry::new("mytool", "mytool", "1.2.0").start();
//! counter::inc("mytool/command:build");
//! println!("telemetry is {}", started.mode);
//! ```

use crate::countfile::CountFile;
use crate::format::Meta;
use crate::mode::{self, Mode};
use crate::registry::{self, Entry};
use crate::sys::AtomicRef;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const UNSTARTED: u8 = 0;
const OFF: u8 = 1;
const COUNTING: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNSTARTED);
static CURRENT: AtomicRef<CountFile> = AtomicRef::new();
static STARTED: OnceLock<Started> = OnceLock::new();

/// What the week-rotation thread needs; set once counting has started.
static ROTATION: OnceLock<RotateCtx> = OnceLock::new();
static ROTATION_STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STARTED_AT: OnceLock<std::time::Instant> = OnceLock::new();

/// A process that has lived this long gets the week-rotation thread at its
/// next slow-path event (see [`maybe_start_rotation`]).
const LAZY_AFTER: Duration = Duration::from_secs(30);

/// Starts the week-rotation thread if the process has lived long enough to
/// need one. Called on slow paths (a new counter name, a new stack) and now
/// and then from the by-name path. Short-lived processes, the common case
/// for a command-line tool, never start it: a thread costs a command about a
/// millisecond of wall time at exit on small virtual machines.
pub(crate) fn maybe_start_rotation() {
    if ROTATION_STARTED.load(Ordering::Relaxed) {
        return;
    }
    if STARTED_AT
        .get()
        .is_some_and(|t| t.elapsed() >= lazy_after())
    {
        start_rotation();
    }
}

/// [`LAZY_AFTER`]; with the `test-hooks` feature (tests only),
/// `CLEARCOUNT_TEST_LAZY_MS` replaces it so a test need not wait 30 s.
fn lazy_after() -> Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CLEARCOUNT_TEST_LAZY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    LAZY_AFTER
}

fn start_rotation() {
    let Some(ctx) = ROTATION.get() else { return };
    if ROTATION_STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("clearcount-week".into())
        .stack_size(64 * 1024)
        .spawn(move || rotate_forever(ctx));
}

fn week_end_time(file: &CountFile) -> chrono::DateTime<chrono::Utc> {
    file.meta
        .week_end
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(crate::clock::now)
}

/// True when telemetry was started and is off: counts are dropped.
#[inline(always)]
pub(crate) fn is_off() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

/// Attaches a newly registered entry to wherever counts go now. Called with
/// the registry lock held.
pub(crate) fn attach_new(e: &'static Entry) {
    match STATE.load(Ordering::Acquire) {
        OFF => e.attach(None),
        COUNTING => match CURRENT.load().and_then(|f| f.cell(e.name)) {
            Some(c) => e.attach(Some(c)),
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
    ///
    /// ```
    /// let t = clearcount::Telemetry::new("mytool", "mytool-fmt", "0.3.1");
    /// # let _ = t;
    /// ```
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
    ///
    /// ```
    /// use clearcount::{Telemetry, mode::Mode};
    /// let t = Telemetry::new("mytool", "mytool", "1.0").default_mode(Mode::Off);
    /// # let _ = t;
    /// ```
    pub fn default_mode(mut self, mode: Mode) -> Telemetry {
        self.default_mode = mode;
        self
    }

    /// Declares that the program may run across a week boundary (a server,
    /// a language server, a daemon): the thread that moves counters to the
    /// next week's file starts now. Without it, the thread starts once the
    /// process has lived 30 seconds and then registers a new counter name,
    /// records a new stack, or counts by name (checked every 65,536 counts
    /// per thread); a command that exits before never pays for it.
    ///
    /// ```
    /// let t = clearcount::Telemetry::new("mytool", "mytool-lsp", "1.0").long_running();
    /// # let _ = t;
    /// ```
    pub fn long_running(mut self) -> Telemetry {
        self.long_running = true;
        self
    }

    /// The namespace.
    ///
    /// ```
    /// assert_eq!(clearcount::Telemetry::new("ns", "p", "1").namespace(), "ns");
    /// ```
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
    /// ```no_run
    /// let s = clearcount::Telemetry::new("mytool", "mytool", "1.0").start();
    /// if let Some(p) = s.problem { eprintln!("telemetry: {p}"); }
    /// ```
    pub fn start(self) -> Started {
        STARTED.get_or_init(|| self.start_once()).clone()
    }

    fn start_once(&self) -> Started {
        let started = self.start_counting();
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
        if let Err(e) = crate::dirs::check_namespace(&self.namespace) {
            started.problem = Some(e);
            turn_off();
            return started;
        }
        let dir = crate::dirs::telemetry_dir(&self.namespace);
        started.dir = dir.clone();
        let eff = mode::effective(&self.namespace, dir.as_deref(), self.default_mode);
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
            Ok((file, weekday)) => {
                started.file = Some(file.path.clone());
                switch_to(file);
                let ctx = RotateCtx {
                    dir: dir.clone(),
                    program: self.program.clone(),
                    version: self.version.clone(),
                    weekday,
                };
                let week_end = week_end_time(file);
                let _ = ROTATION.set(ctx);
                let _ = STARTED_AT.set(std::time::Instant::now());
                let soon = week_end - crate::clock::now()
                    < chrono::Duration::from_std(lazy_after()).unwrap_or_default();
                if self.long_running || soon {
                    start_rotation();
                }
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

/// What the process started with, if telemetry was started.
///
/// ```
/// let _ = clearcount::telemetry::started();
/// ```
pub fn started() -> Option<&'static Started> {
    STARTED.get()
}

/// The counter file counts go to now, if any.
///
/// ```
/// let _ = clearcount::telemetry::current_file();
/// ```
pub fn current_file() -> Option<PathBuf> {
    CURRENT.load().map(|f| f.path.clone())
}

fn turn_off() {
    let _g = registry::lock();
    STATE.store(OFF, Ordering::Release);
    for e in registry::entries() {
        e.attach(None);
    }
}

fn open_week(dir: &Path, t: &Telemetry) -> std::io::Result<(&'static CountFile, chrono::Weekday)> {
    let weekday = match crate::week::read_start(dir) {
        Some(day) => day,
        None => {
            std::fs::create_dir_all(dir)?;
            crate::week::load_or_create_start(dir)?
        }
    };
    let file = open_current_week(dir, &t.program, &t.version, weekday)?;
    Ok((file, weekday))
}

/// Opens (or creates) the file of the week that contains today, for this
/// program build; the file lives for the rest of the process.
fn open_current_week(
    dir: &Path,
    program: &str,
    version: &str,
    weekday: chrono::Weekday,
) -> std::io::Result<&'static CountFile> {
    let begin = crate::week::week_begin(crate::clock::today(), weekday);
    let meta = Meta::new(
        program,
        version,
        std::env::consts::OS,
        std::env::consts::ARCH,
        begin,
    );
    Ok(Box::leak(Box::new(CountFile::open(dir, &meta)?)))
}

/// Makes `file` the place counts go, for every counter.
fn switch_to(file: &'static CountFile) {
    let _g = registry::lock();
    CURRENT.store(Some(file));
    STATE.store(COUNTING, Ordering::Release);
    for e in registry::entries() {
        match file.cell(e.name) {
            Some(c) => e.attach(Some(c)),
            None => e.attach_pending(),
        }
    }
}

struct RotateCtx {
    dir: PathBuf,
    program: String,
    version: String,
    weekday: chrono::Weekday,
}

/// Sleeps until the current week ends, then moves to the next week's file;
/// forever. The thread holds no lock while sleeping and never delays exit.
fn rotate_forever(ctx: &RotateCtx) {
    loop {
        let Some(cur) = CURRENT.load() else { return };
        let end = week_end_time(cur);
        let now = crate::clock::now();
        if now < end {
            let wait = (end - now).to_std().unwrap_or(Duration::ZERO);
            // Wake at least hourly, in case the machine slept.
            std::thread::sleep(wait.min(Duration::from_secs(3600)) + Duration::from_millis(5));
            continue;
        }
        match open_current_week(&ctx.dir, &ctx.program, &ctx.version, ctx.weekday) {
            Ok(f) => switch_to(f),
            Err(_) => std::thread::sleep(Duration::from_secs(60)),
        }
    }
}
