//! The panic counter: an opt-in panic hook that counts where a program
//! panicked.
//!
//! [`install`] sets a panic hook that adds one to the stack counter
//! [`COUNTER_NAME`] (`crash/panic`) with the stack of the panicking code:
//! function names and line offsets within each function, innermost first,
//! starting at the function that panicked (the panic machinery of `std` and
//! `core` is left out). It never records the panic message, the payload, a
//! file path or any other value. Then it calls the hook that was in place
//! before (by default, the one that prints the message), so the program
//! behaves as it did.
//!
//! Declare the counter in the program's counters file with the depth you
//! pass to [`install`]:
//!
//! ```toml
//! [[counter]]
//! name = "crash/panic"
//! kind = "stack"
//! depth = 16
//! description = "Where the tool panicked: function names and line offsets, at most 16 frames. Never the message."
//! ```
//!
//! The hook costs nothing until a panic happens: it is not on any path the
//! program takes otherwise (see `benches/kit.rs`). When the process is
//! about to die of the panic, the count is already in the shared counter
//! file (if telemetry was started), so it survives the process.
//!
//! Only panics are counted here; fatal signals (a segmentation fault in
//! foreign code, an abort) are the [`crash`](super::crash) counter's.
//!
//! ```
//! clearcount::kit::panic::install(16);
//! assert!(clearcount::kit::panic::installed());
//! ```

use crate::stack::StackCounter;
use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::OnceLock;

/// The name of the panic stack counter.
pub const COUNTER_NAME: &str = "crash/panic";

/// Depth used by [`install`] when given 0: the depth the example config
/// declares.
pub const DEFAULT_DEPTH: usize = 16;

/// Leading frames left out of a panic stack: the hook itself and the panic
/// machinery between the panicking function and the hook.
const SKIP: &[&str] = &[
    "clearcount::kit::panic::",
    "std::panicking",
    "core::panicking",
    "std::panic",
    "core::panic",
    "std::sys::backtrace",
    "std::sys_common::backtrace",
    "std::rt::begin_panic",
    "<alloc::boxed::Box",
    "alloc::boxed::",
    "rust_begin_unwind",
    "__rustc",
    "__rust_",
    "_rust_",
    // The panicking helpers of `unwrap`, `expect` and friends: the caller
    // is the function that panicked.
    "core::option::unwrap_failed",
    "core::option::expect_failed",
    "core::option::Option<T>::unwrap",
    "core::option::Option<T>::expect",
    "core::result::unwrap_failed",
    "core::result::Result<T,E>::unwrap",
    "core::result::Result<T,E>::expect",
    "core::cell::panic_already",
    "core::slice::index::",
    "core::str::slice_error_fail",
];

/// The stack counter, made on [`install`] with the depth asked for.
static COUNTER: OnceLock<StackCounter> = OnceLock::new();

thread_local! {
    /// True while this thread runs the counting part of the hook.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Installs the panic hook (once; later calls do nothing). `depth` is the
/// number of frames kept, at most 32; 0 means
/// [`DEFAULT_DEPTH`]. Call it in `main`, after
/// [`Telemetry::start`](crate::Telemetry::start) and before anything that
/// may panic; a hook set later by the program replaces this one unless it
/// chains it. From then on a panic adds one to `crash/panic` with its
/// stack, then runs the previous hook (which prints the message as usual).
pub fn install(depth: usize) {
    let depth = if depth == 0 { DEFAULT_DEPTH } else { depth };
    let mut first = false;
    COUNTER.get_or_init(|| {
        first = true;
        StackCounter::new(COUNTER_NAME, depth)
    });
    if !first {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        on_panic(info);
        previous(info);
    }));
}

/// True once [`install`] has run in this process.
pub fn installed() -> bool {
    COUNTER.get().is_some()
}

/// Counts the panic. `info` is not read at all: neither the message nor the
/// location's file goes anywhere. Never inlined: its address marks where
/// the recorded stack begins.
#[inline(never)]
fn on_panic(info: &PanicHookInfo<'_>) {
    let _ = info;
    let Some(counter) = COUNTER.get() else {
        return;
    };
    // A panic while counting a panic must not count (or lock) again.
    // (A thread being torn down has no thread-locals left: skip it.)
    if IN_HOOK.try_with(|h| h.replace(true)).unwrap_or(true) {
        return;
    }
    let marker = on_panic as fn(&PanicHookInfo<'_>) as usize;
    counter.inc_below(marker, SKIP);
    let _ = IN_HOOK.try_with(|h| h.set(false));
}
