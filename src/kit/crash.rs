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
//! raises. A fault is counted when it happens, before the handler that was
//! there before runs: a program that recovers from faults it causes on
//! purpose (a JIT, a garbage collector) should install this before its own
//! handler, or not at all. A `panic` that unwinds is not a signal (see
//! [`panic`](super::panic)); with `panic = "abort"` both count, `crash/panic`
//! with its stack and `crash/signal:SIGABRT`.
//!
//! No stack is recorded: naming a stack's frames needs the debug
//! information read, which allocates, and a signal handler must not.
//!
//! Declare the counter in the program's counters file:
//!
//! ```toml
//! [[counter]]
//! name = "crash/signal:{SIGSEGV,SIGBUS,SIGILL,SIGFPE,SIGABRT}"
//! description = "Which fatal signal ended the tool, if one did."
//! ```

use crate::registry::{self, Entry};
use crate::sys::AtomicRef;
use crate::sys::crash::Crash;
use std::sync::atomic::{AtomicBool, Ordering};

/// The crash counter's name, before its bucket.
pub const COUNTER_NAME: &str = "crash/signal";

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
    crate::sys::crash::install(on_crash)
}

/// True once [`install`] put the handlers in place.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// In the signal handler: one atomic add, once per process.
fn on_crash(kind: Crash) {
    if COUNTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let i = Crash::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    if let Some(e) = SLOTS[i].load() {
        e.add_from_signal_handler(1);
    }
}
