//! clearcount: transparent, counter-based telemetry for command-line
//! toolchains.
//!
//! A toolchain counts what its users do; the counts stay on the user's
//! machine in a small weekly file; once a week is over they become a local
//! report; an opted-in installation that wins a random draw sends that
//! report, filtered by a signed public config, to a collection server that
//! publishes everything it keeps. Nothing identifies anyone: no ids, no
//! host names, no paths, no values, no time finer than the week.
//!
//! # Counting
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
//!     BUILDS.inc();
//!     counter::inc("mytool/flag:release");
//!     ODD_PATH.inc();
//! }
//! ```
//!
//! # How it works
//!
//! **The counter file** ([`format`](mod@format), `countfile.rs`, `counters-spec/file-format.md`).
//! Each program build (program, version, OS, arch) has one file per week
//! in `<telemetry dir>/counts/`. Every process of that build maps the file
//! shared and writable, once, at its largest size, and never remaps it. A
//! counter is a record in a hash table inside the file; records are added by
//! compare-and-swap, counts by atomic add. No lock is ever taken to count;
//! the file grows (rarely) under a file lock, by writing real zeros so that
//! a full disk is an error, not a crash. A file is created complete (written
//! aside, then hard-linked into place). Opening checks only its header, so
//! it costs the same for any size; records are checked as they are touched,
//! in an order that never takes another process's write in progress for
//! damage; a file whose damage is certain is set aside into `corrupt/` and
//! counting moves to a fresh one. Every offset read from it is
//! bounds-checked and every chain walk is bounded. On Linux a SIGBUS guard
//! survives a file truncated under a live mapping.
//!
//! **Counters** ([`counter`], [`stack`], `registry.rs`). A `static`
//! [`Counter`] finds its slot on first use and caches it: after that an
//! increment is two loads and one atomic add. [`counter::inc`] by name goes
//! through a lock-free open-addressing table first. Counts made before
//! [`Telemetry::start`] are kept in memory and moved into the file when it
//! opens. When telemetry is off, an increment is one or two loads. A
//! [`StackCounter`] walks return addresses only and symbolizes a stack the
//! first time it is seen: `function:+line-offset`, never a path or a value.
//!
//! **Weeks** ([`week`], [`clock`], [`telemetry`]). An installation's week
//! starts on a weekday drawn once at random. A process keeps following the
//! weeks, whatever API it counts with: during its first second every count
//! checks a coarse clock (a few nanoseconds), and after that a small thread
//! sleeps until the week ends and then moves every counter to the next
//! week's file, so a process that runs for weeks needs no restart and a
//! short command starts no thread. Old weeks' files are pruned in every
//! build. `CLEARCOUNT_NOW` sets the clock for tests and the demo.
//!
//! **Modes** ([`mode`], [`dirs`]). `off` (nothing counted, nothing written,
//! not even a directory), `local` (the default: counted, never sent), `on`
//! (also uploaded, only weeks that began after `on` was set).
//! `<NAMESPACE>_TELEMETRY` overrides the mode file, and `DO_NOT_TRACK=1`
//! overrides both.
//!
//! **Reports and upload** (`report`, `weekly`, `config`, `sign`, `upload`;
//! features `report`, `config`, `upload`). A finished week becomes
//! `reports/<week>.full.json` with one random X in `[0, 1)`. If X is above
//! the client's ceiling, nothing is fetched or sent. Otherwise the
//! minisign-signed config is fetched and verified against the key the
//! toolchain compiled in (no rollback), each counter is kept only if it is
//! declared and X is at most its rate, and the result is posted, at most
//! once a day, from a detached child process so the host never waits.
//!
//! **Server** (`server`, feature `server`). Validates each report against the
//! config, drops what is not declared, stores it without the sender's
//! address (content-addressed, so duplicates are stored once), merges each
//! week into a public newline-delimited JSON archive, and serves charts, the
//! data, the config and its history.
//!
//! # Features
//!
//! With no feature, the crate is the counter engine only (memmap2,
//! backtrace, chrono, libc). `report`, `config`, `upload`, `sign`, `server`,
//! `s3`, `kit` and `cli` add the rest; `cli` is what the `clearcount` binary
//! needs.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod clock;
pub mod counter;
mod countfile;
pub mod dirs;
pub mod format;
mod fsutil;
pub mod kit;
pub mod mode;
pub mod name;
mod registry;
pub mod stack;
mod sys;
pub mod telemetry;
mod unwind;
pub mod week;

pub use counter::Counter;
pub use stack::StackCounter;
pub use telemetry::{Started, Telemetry};

#[cfg(feature = "report")]
pub mod report;

#[cfg(feature = "report")]
pub mod weekly;

#[cfg(feature = "config")]
pub mod config;

#[cfg(any(feature = "sign", feature = "upload", feature = "server"))]
pub mod sign;

#[cfg(feature = "upload")]
pub mod upload;

#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "kit")]
pub mod cli;
