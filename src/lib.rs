//! clearcount: transparent, counter-based telemetry for command-line
//! toolchains. This crate is what an instrumented program links.
//!
//! A toolchain counts what its users do; the counts stay on the user's
//! machine in a small weekly file; once a week is over they become a local
//! report; an opted-in installation that wins a random draw sends that
//! report, filtered by a signed public config, to a collection server that
//! publishes everything it keeps. Nothing identifies anyone: no ids, no
//! host names, no paths, no values, no time finer than the week.
//!
//! # The whole API
//!
//! | item | what |
//! |---|---|
//! | [`Telemetry`]`::new(namespace, program, version)`…[`.start()`](Telemetry::start) → [`Started`] | first thing in `main`: picks the [`Mode`], opens this week's file |
//! | [`Counter`] (a `static`), [`counter::inc`], [`counter::add`] | count |
//! | [`StackCounter`] (a `static`) | count the caller's stack (function names and line offsets only) |
//! | [`Mode`] | `off`, `local`, `on` |
//! | [`dump`] → [`CounterFile`] | read any counter file, even one in use (for other tools) |
//! | [`upload::UploadSettings`] (feature `upload`) | where reports go, the config's key, the sampling ceiling, the HTTP transport (the platform's `curl` unless set) |
//! | [`kit`] (feature `kit`) | panic counter, histograms, flag counting, first-run notice, opt-in prompt, the mounted `telemetry` subcommand (its `view --web` with feature `web-view`) |
//!
//! ```no_run
//! use clearcount::{counter, Counter, StackCounter, Telemetry};
//!
//! static BUILDS: Counter = Counter::new("mytool/command:build");
//! static ODD_PATH: StackCounter = StackCounter::new("mytool/odd-path", 8);
//!
//! fn main() {
//!     // First thing in main: decides the mode and opens this week's file.
//!     Telemetry::new("mytool", "mytool", env!("CARGO_PKG_VERSION")).start();
//!     BUILDS.inc();                          // one atomic add
//!     counter::inc("mytool/flag:release");   // a lock-free lookup first
//!     ODD_PATH.inc();
//! }
//! ```
//!
//! # How it works
//!
//! **The counter file** (`format.rs`, `countfile.rs`, the spec in
//! `counters-spec/file-format.md`). Each program build (program, version,
//! OS, arch) has one file per week in `<telemetry dir>/counts/`. Every
//! process of that build maps the file shared and writable; no mapping is
//! longer than the file, and none is ever unmapped: when the file grows, a
//! process maps it again, longer, and counts already handed out keep going
//! through the older mapping. A counter is a record in a hash table inside
//! the file; records are added by compare-and-swap, counts by atomic add.
//! No lock is ever taken to count; the file grows (rarely, doubling) under
//! a growth lock that never covers data, by writing real zeros so that a
//! full disk is an error, not a crash.
//! A file is created complete (written aside, then hard-linked into place).
//! Opening checks only its header, so it costs the same for any size;
//! records are checked as they are touched, in an order that never takes
//! another process's write in progress for damage; a file whose damage is
//! certain is set aside into `corrupt/` and counting moves to a fresh one.
//! Every offset read from it is bounds-checked and every chain walk is
//! bounded. On every unix a fault guard survives a file truncated under a
//! live mapping (Windows refuses to truncate a mapped file).
//!
//! **Platforms** (`sys/`, the only `unsafe` and the only code that differs
//! between platforms). Linux, macOS, Windows and the BSDs count into the
//! shared file; each Linux fast path (coarse clock, absolute sleep, the
//! fast stack walker) has a portable fallback that CI also runs on Linux.
//! On a target that cannot map files (WASI, say) the crate builds and
//! counts nothing, as if telemetry were off.
//!
//! **Counters** (`counter.rs`, `stack.rs`, `registry.rs`). A `static`
//! [`Counter`] finds its slot on first use and caches it: after that an
//! increment is two loads and one atomic add. [`counter::inc`] by name goes
//! through a lock-free open-addressing table first. Counts made before
//! [`Telemetry::start`] are kept in memory and moved into the file when it
//! opens. When telemetry is off, an increment is one or two loads. A
//! [`StackCounter`] walks return addresses only and names a stack the first
//! time it is seen: `function:+line-offset`, never a path or a value.
//!
//! **Weeks** (`week.rs`, `clock.rs`, `telemetry.rs`). An installation's
//! week starts on a weekday drawn once at random. A process keeps following
//! the weeks, whatever API it counts with: during its first second every
//! count checks a coarse clock (a few nanoseconds), and after that a small
//! thread sleeps until the week ends and then moves every counter to the
//! next week's file, so a process that runs for weeks needs no restart and
//! a command that ends within a second starts no thread for it. Old weeks'
//! files are pruned in every build. `CLEARCOUNT_NOW` (RFC 3339) sets the
//! clock for tests and the demo.
//!
//! **Modes** (`mode.rs`, `dirs.rs`). `off` (nothing counted, nothing
//! written, not even a directory), `local` (the default: counted, never
//! sent), `on` (also uploaded, only weeks that began after `on` was set).
//! `<NAMESPACE>_TELEMETRY` overrides the mode file, and `DO_NOT_TRACK=1`
//! overrides both. Data lives in `<user config dir>/<namespace>/telemetry/`,
//! or `$CLEARCOUNT_DIR/<namespace>/`.
//!
//! **Reports and upload** (`weekly.rs`, `upload/`; feature `upload`). A finished week becomes `reports/<week>.full.json` with one
//! random X in `[0, 1)`. If X is above the client's ceiling, nothing is
//! fetched or sent. Otherwise the minisign-signed config is fetched and
//! verified against the key the toolchain compiled in (no rollback), each
//! counter is kept only if it is declared and X is at most its rate, and the
//! result is posted, at most once a day, from a detached child process so
//! the host never waits. The formats are in the `clearcount-protocol`
//! crate; the collection server is `clearcount-server`; the `clearcount`
//! command is `clearcount-cli`.
//!
//! # Features
//!
//! With no feature, the crate is the counting engine only (memmap2,
//! backtrace and gimli, chrono, rand, libc). `upload` adds weekly
//! reports and the uploader (no HTTP or TLS code: the platform's `curl`
//! by default, see [`upload::Transport`]; `ureq-rustls` and
//! `ureq-native-tls` build one in), `kit` the toolchain helpers
//! (clap), `web-view` the mounted `telemetry view --web` (the collection
//! server crate's local view and its HTTP stack: a feature of its own, so
//! the kit does not grow).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod clock;
pub mod counter;
mod countfile;
mod crashstack;
mod dirs;
mod format;
mod fsutil;
pub mod kit;
mod mode;
mod random;
mod registry;
mod stack;
mod sys;
mod telemetry;
mod unwind;
mod week;

#[cfg(feature = "upload")]
mod weekly;

#[cfg(feature = "upload")]
pub mod upload;

pub use counter::Counter;
pub use format::{CounterFile, DumpError, dump};
pub use mode::Mode;
pub use stack::StackCounter;
#[cfg(feature = "test-hooks")]
pub use telemetry::week_thread_running;
pub use telemetry::{Started, Telemetry};

/// The naming grammar lives with the other shared formats.
use clearcount_protocol::name;

#[cfg(feature = "upload")]
use clearcount_protocol::{config, report, sign};
