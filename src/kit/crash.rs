//! The crash counter: counts the fatal signals that end a process, in the
//! process itself, with no monitor process.
//!
//! [`install`] resolves, in advance, one counter per signal,
//! `crash/signal:{SIGSEGV,SIGBUS,SIGILL,SIGFPE,SIGABRT}`, to its record in
//! the week file, and installs a handler for those signals (on Windows, an
//! unhandled-exception filter). When one of them is about to end the
//! process, the handler adds one to its counter, an atomic add on the
//! mapped file (async-signal-safe: no allocation, no lock), and passes the
//! signal on to whatever handled it before, else to the default action:
//! the process dies exactly as it would have (same signal, same exit
//! status, core dumps as configured). It coexists with Rust's own
//! stack-overflow report and with the engine's guard for the counter file.
//!
//! Counted once per process, the first fatal signal only: a stack overflow
//! counts as SIGSEGV, not also as the SIGABRT that Rust's report then
//! raises (once a crash is counted, SIGABRT gets back the action it had
//! before, so that abort runs no handler of ours on a nearly full signal
//! stack). A fault is counted when it happens, before the handler that was
//! there before runs: a program that recovers from faults it causes on
//! purpose (a JIT, a garbage collector) should install this before its own
//! handler, or not at all. A `panic` that unwinds is not a signal (see
//! [`panic`](super::panic)); with `panic = "abort"` both count, `crash/panic`
//! with its stack and `crash/signal:SIGABRT`.
//!
//! Where the crashed thread's stack can be walked later (Linux on x86-64),
//! the handler also keeps a copy of it, with system calls only (naming
//! frames reads debug information, which allocates: a signal handler must
//! not). The next run of the same program build that calls [`install`]
//! sees the copy and starts its own executable again as a detached child
//! (as the uploader does: it stops inside `Telemetry::start`), which walks
//! the copy, names its frames as the panic counter does (function names
//! and line offsets, innermost first, never a value), adds one to the stack
//! counter [`STACK_COUNTER_NAME`] (`crash/signal-stack`) in this week's
//! file, and deletes the copy (see `crashstack.rs` for the how and the
//! limits). The run itself only lists a folder and starts the child:
//! reading debug information costs tens of milliseconds and megabytes,
//! which the program must not pay. Elsewhere, and in builds without the
//! `kit` feature, only the signal is counted.
//!
//! Declare the counters in the program's counters file:
//!
//! ```toml
//! [[counter]]
//! name = "crash/signal:{SIGSEGV,SIGBUS,SIGILL,SIGFPE,SIGABRT}"
//! description = "Which fatal signal ended the tool, if one did."
//!
//! [[counter]]
//! name = "crash/signal-stack"
//! kind = "stack"
//! depth = 16
//! description = "Where the fatal signal hit: function names and line offsets, at most 16 frames. Counted by the next run."
//! ```

use crate::registry::{self, Entry};
use crate::stack::StackCounter;
use crate::sys::AtomicRef;
use crate::sys::crash::{Crash, Registers};
use std::sync::atomic::{AtomicBool, Ordering};

/// The crash counter's name, before its bucket.
pub const COUNTER_NAME: &str = "crash/signal";

/// The stack counter of where fatal signals hit.
pub const STACK_COUNTER_NAME: &str = "crash/signal-stack";

/// Frames a crash stack keeps (the depth the example config declares).
pub const STACK_DEPTH: usize = 16;

/// The crash stack counter.
static STACK: StackCounter = StackCounter::new(STACK_COUNTER_NAME, STACK_DEPTH);

/// Leading frames left out of a crash stack: the C library's and Rust's
/// ways to `abort`, and the panic machinery of a panic that aborts.
const SKIP: &[&str] = &[
    "__GI_", // glibc's internal names, where its symbols are installed
    "__pthread_kill",
    "pthread_kill",
    "raise",
    "gsignal",
    "abort",
    "std::sys::",
    "std::process::abort",
    "std::panicking",
    "core::panicking",
    "std::panic",
    "core::panic",
    "std::rt::",
    "rust_panic",
    "rust_begin_unwind",
    "__rustc",
    "__rust_",
    "_rust_",
];

/// Its declaration, buckets expanded as the config writes them.
pub const DECLARATION: &str = "crash/signal:{SIGSEGV,SIGBUS,SIGILL,SIGFPE,SIGABRT}";

/// One slot per kind, in `Crash::ALL`'s order, resolved by [`install`].
static SLOTS: [AtomicRef<Entry>; 5] = [const { AtomicRef::new() }; 5];
/// Set by the first crash counted.
static COUNTED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the crash counter (once; later calls do nothing). Call it in
/// `main` after [`Telemetry::start`](crate::Telemetry::start). When
/// telemetry is off it installs nothing. Returns whether the handlers are
/// in place (false when off, and on platforms with neither signals nor
/// exception filters).
pub fn install() -> bool {
    if crate::telemetry::is_off() {
        return false;
    }
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return true;
    }
    for (slot, kind) in SLOTS.iter().zip(Crash::ALL) {
        let name = format!("{COUNTER_NAME}:{}", kind.signal_name());
        if let Some(e) = registry::find_or_insert(&name, crate::telemetry::attach_new) {
            slot.store(Some(e));
        }
    }
    // Have the stacks earlier crashes left named (by a child: naming reads
    // debug information, which takes time and memory this process must not
    // spend), then get ready to keep ours. Only with the kit, whose
    // `Telemetry::start` stops the namer child; without it nothing is kept
    // (and the code is left out of the build).
    if cfg!(feature = "kit")
        && let Some(dir) = crate::telemetry::dir()
    {
        if crate::crashstack::waiting(dir) {
            spawn_namer();
        }
        crate::crashstack::prepare(dir);
    }
    crate::sys::crash::install(on_crash)
}

/// The environment variable that marks the child that names crash stacks.
pub const NAMER_VAR: &str = "CLEARCOUNT_CRASH_NAMER";
/// The only argument that child is started with.
pub const NAMER_ARG: &str = "clearcount_crash_namer";
/// Longest a namer child runs.
const NAMER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts the program's own executable, detached, as the namer child: it
/// stops inside [`Telemetry::start`](crate::Telemetry::start), names the
/// waiting crash stacks into this week's file, and exits.
fn spawn_namer() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(NAMER_ARG).env(NAMER_VAR, "1");
    crate::sys::process::spawn_background(cmd);
}

/// Called by `Telemetry::start` in every process: in the namer child
/// (its variable set and its one argument given), names the crash stacks
/// waiting and exits, never returning to the program's `main`.
pub(crate) fn on_start() {
    let mut args = std::env::args_os().skip(1);
    let namer = std::env::var_os(NAMER_VAR).is_some_and(|v| v == "1")
        && args.next().is_some_and(|a| a == NAMER_ARG)
        && args.next().is_none();
    if !namer {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("clearcount-watchdog".into())
        .spawn(|| {
            std::thread::sleep(NAMER_LIMIT);
            std::process::exit(3);
        });
    if !crate::telemetry::is_off()
        && let Some(dir) = crate::telemetry::dir()
    {
        crate::crashstack::collect(dir, &STACK, SKIP);
    }
    std::process::exit(0)
}

/// True once [`install`] put the handlers in place.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// In the signal handler: one atomic add, and the stack kept where it can
/// be; once per process.
fn on_crash(kind: Crash, regs: Option<Registers>) {
    if COUNTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let i = Crash::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    if let Some(e) = SLOTS[i].load() {
        e.add_from_signal_handler(1);
    }
    if let Some(regs) = regs {
        crate::crashstack::capture(kind, regs);
    }
}
