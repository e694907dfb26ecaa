//! Fatal signals (unix) and unhandled exceptions (Windows), in portable
//! terms, for the crash counter (`kit::crash`).
//!
//! [`install`] registers one hook, a plain function that the kit resolves
//! in advance to a few atomic adds. It is called from a signal handler (or
//! an exception filter), so it must be async-signal-safe: no allocation, no
//! lock, only atomics. After it, the signal goes on exactly as it would
//! have: to the handler installed before (Rust's stack-overflow report, a
//! program's own handler), else to the default action, so the process dies
//! of the same signal with the same status, and dumps core as configured.
//!
//! * unix (`fault.rs`): SIGSEGV, SIGBUS, SIGILL and SIGFPE when raised by a
//!   fault (`si_code > 0`), or sent while their action is the default
//!   (the process dies of them); SIGABRT always (`abort()` ends the process
//!   even if a handler returns). A fault inside a counter file's mapping
//!   is the truncation guard's, not a crash.
//! * Windows: the top-level unhandled-exception filter
//!   (`SetUnhandledExceptionFilter`, chained to the filter set before):
//!   access violations and stack overflows (as SIGSEGV), in-page errors
//!   (SIGBUS), illegal and privileged instructions (SIGILL), divisions by
//!   zero and integer overflows (SIGFPE). Only exceptions nothing else
//!   handled reach it, so an exception a program catches is not a crash.
//!   (Rust's `abort` on Windows is a fast fail, which no handler sees.)

use std::sync::OnceLock;

/// What killed the process, named after the unix signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crash {
    /// SIGSEGV: an invalid memory access (a stack overflow too).
    Segv,
    /// SIGBUS: a bus error (a mapped file cut short, a misaligned access).
    Bus,
    /// SIGILL: an illegal instruction.
    Ill,
    /// SIGFPE: an arithmetic fault (integer division by zero).
    Fpe,
    /// SIGABRT: `abort()` (a C library's `assert`, a double panic).
    Abort,
}

impl Crash {
    /// Every kind, in a fixed order (the kit's slots follow it).
    pub(crate) const ALL: [Crash; 5] = [
        Crash::Segv,
        Crash::Bus,
        Crash::Ill,
        Crash::Fpe,
        Crash::Abort,
    ];

    /// The unix signal's name: the counter's bucket.
    pub(crate) fn signal_name(self) -> &'static str {
        match self {
            Crash::Segv => "SIGSEGV",
            Crash::Bus => "SIGBUS",
            Crash::Ill => "SIGILL",
            Crash::Fpe => "SIGFPE",
            Crash::Abort => "SIGABRT",
        }
    }
}

/// The registers of the thread that crashed, where the handler can read
/// them (Linux on x86-64, where the fast stack walker runs); a stack walk
/// starts from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registers {
    /// The instruction that faulted (or the one after a system call).
    pub(crate) pc: u64,
    /// The stack pointer.
    pub(crate) sp: u64,
    /// The frame pointer (RBP), which the unwind rules may use.
    pub(crate) bp: u64,
}

/// The hook: what crashed, and the registers at the crash if known.
pub(crate) type Hook = fn(Crash, Option<Registers>);

/// The hook; set once.
static HOOK: OnceLock<Hook> = OnceLock::new();

/// Installs the handlers and `hook` (once; a later call changes nothing).
/// False where the platform has neither signals nor exception filters.
pub(crate) fn install(hook: Hook) -> bool {
    let _ = HOOK.set(hook);
    imp::install()
}

/// Calls the hook, if one is installed. Async-signal-safe: `OnceLock::get`
/// is an atomic load.
#[cfg(any(unix, windows))]
pub(crate) fn fire(kind: Crash, regs: Option<Registers>) {
    if let Some(hook) = HOOK.get() {
        hook(kind, regs);
    }
}

/// Whether a hook is installed (the handlers then count crashes).
#[cfg(unix)]
pub(crate) fn hooked() -> bool {
    HOOK.get().is_some()
}

#[cfg(unix)]
mod imp {
    pub(super) fn install() -> bool {
        super::super::fault::install_crash_signals();
        true
    }
}

#[cfg(windows)]
mod imp {
    use super::{Crash, fire};
    use std::sync::Once;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use windows_sys::Win32::Foundation::{
        EXCEPTION_ACCESS_VIOLATION, EXCEPTION_ILLEGAL_INSTRUCTION, EXCEPTION_IN_PAGE_ERROR,
        EXCEPTION_INT_DIVIDE_BY_ZERO, EXCEPTION_INT_OVERFLOW, EXCEPTION_PRIV_INSTRUCTION,
        EXCEPTION_STACK_OVERFLOW,
    };
    use windows_sys::Win32::System::Diagnostics::Debug::{
        EXCEPTION_POINTERS, SetUnhandledExceptionFilter,
    };

    /// `EXCEPTION_CONTINUE_SEARCH`: go on to the system's handling.
    const CONTINUE_SEARCH: i32 = 0;

    static INSTALL: Once = Once::new();
    /// The filter set before ours (0 for none).
    static PREV: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn install() -> bool {
        INSTALL.call_once(|| {
            // SAFETY: installs a filter that only reads the exception
            // record and chains to the previous filter, which it keeps.
            let prev = unsafe { SetUnhandledExceptionFilter(Some(filter)) };
            PREV.store(prev.map_or(0, |f| f as usize), Ordering::Release);
        });
        true
    }

    unsafe extern "system" fn filter(info: *const EXCEPTION_POINTERS) -> i32 {
        // SAFETY: the system passes valid exception pointers to the filter.
        let code = unsafe { info.as_ref().and_then(|i| i.ExceptionRecord.as_ref()) }
            .map(|r| r.ExceptionCode);
        let kind = match code {
            Some(EXCEPTION_ACCESS_VIOLATION | EXCEPTION_STACK_OVERFLOW) => Some(Crash::Segv),
            Some(EXCEPTION_IN_PAGE_ERROR) => Some(Crash::Bus),
            Some(EXCEPTION_ILLEGAL_INSTRUCTION | EXCEPTION_PRIV_INSTRUCTION) => Some(Crash::Ill),
            Some(EXCEPTION_INT_DIVIDE_BY_ZERO | EXCEPTION_INT_OVERFLOW) => Some(Crash::Fpe),
            _ => None,
        };
        if let Some(kind) = kind {
            fire(kind, None);
        }
        match PREV.load(Ordering::Acquire) {
            0 => CONTINUE_SEARCH,
            p => {
                // SAFETY: `p` is the filter SetUnhandledExceptionFilter
                // returned, a function of this very type.
                let prev: unsafe extern "system" fn(*const EXCEPTION_POINTERS) -> i32 =
                    unsafe { std::mem::transmute(p) };
                // SAFETY: it gets the arguments the system gave us.
                unsafe { prev(info) }
            }
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    pub(super) fn install() -> bool {
        false
    }
}
