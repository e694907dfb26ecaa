//! Everything that differs between platforms, and the only `unsafe` code.
//!
//! Code above this module is the same on every platform: it asks these
//! small primitives for what it needs, and each primitive has a portable
//! path (the standard library's) beside any platform's fast path. Built
//! with `RUSTFLAGS="--cfg clearcount_fallbacks"` (tests only), every fast
//! path takes its portable fallback, so CI runs on Linux the code that
//! macOS, Windows and the BSDs run.
//!
//! | module | what | per platform |
//! |---|---|---|
//! | [`map`] | [`SharedMap`]: a shared, writable mapping of a counter file, never longer than the file, never unmapped; atomics at checked offsets | `memmap2` on unix and Windows; [`MAPPING`] is false elsewhere (WASI and the like), where the engine counts nothing |
//! | `fault` | the guard that turns a fault in a truncated counter file into a write to private memory, and the signal handler the crash counter shares | every unix (`sigaction`, `mmap`); Windows refuses to truncate a mapped file |
//! | [`crash`] | fatal signals and unhandled exceptions, named as unix signals, for the crash counter | unix: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT; Windows: the unhandled-exception filter |
//! | [`atomic_ref`] | [`AtomicRef`]: an atomic, nullable `&'static T` | everywhere |
//! | [`clock`] | [`coarse_now_ms`], [`sleep_until_ms`] | Linux: `CLOCK_REALTIME_COARSE`, `clock_nanosleep`; elsewhere `SystemTime`, `thread::sleep` |
//! | [`file`] | positioned reads and writes, the growth lock, file identity | unix: `FileExt`, `flock`, dev+inode; Windows: `seek_read`/`seek_write`, `LockFileEx` on a byte past the data, volume serial + file index |
//! | [`process`] | starting a background child (the uploader, the crash stack namer) detached from the terminal | unix: its own process group; Windows: `CREATE_NEW_PROCESS_GROUP \| DETACHED_PROCESS` |
//! | [`dirs`] | the user's configuration directory | `%APPDATA%`, `~/Library/Application Support`, XDG |
//! | [`frames`] | where a system-unwinder frame's function starts (how a stack counter finds its own frame) | Windows: `RtlLookupFunctionEntry`; elsewhere the `backtrace` crate's symbol address |
//! | `snapshot` | what the crash counter's handler needs to keep a crashing thread's stack: its registers, a copy of its stack that cannot fault, a file written with system calls only | Linux on x86-64 (glibc, musl) only, like the fast walker; elsewhere a crash has no stack |
//! | `unwind` | what the fast stack walker (`crate::unwind`) cannot do safely: ask the dynamic loader about loaded objects, read the registers and the current thread's stack | Linux on x86-64 (glibc, musl) only; elsewhere stack counters use the `backtrace` crate |
//!
//! Every offset into a mapping is bounds-checked here, every mapping lives
//! until the process exits, and every access to mapped memory is atomic
//! (sound even when other processes write the same bytes at the same
//! time).

pub(crate) mod atomic_ref;
pub(crate) mod clock;
pub(crate) mod crash;
pub(crate) mod dirs;
#[cfg(unix)]
mod fault;
pub(crate) mod file;
pub(crate) mod frames;
pub(crate) mod map;
pub(crate) mod process;

pub(crate) use atomic_ref::AtomicRef;
pub(crate) use clock::{coarse_now_ms, sleep_until_ms};
pub(crate) use map::{MAPPING, SharedMap};

/// Keeps the items given only where the fast stack walker runs: Linux on
/// x86-64 with glibc or musl, unless the `clearcount_fallbacks` cfg asks for
/// the portable path.
macro_rules! with_fast_unwind {
    ($($item:item)*) => {
        $(
            #[cfg(all(
                target_os = "linux",
                target_arch = "x86_64",
                any(target_env = "gnu", target_env = "musl"),
                not(clearcount_fallbacks)
            ))]
            $item
        )*
    };
}

/// Keeps the items given only where [`with_fast_unwind`] drops its own.
macro_rules! without_fast_unwind {
    ($($item:item)*) => {
        $(
            #[cfg(not(all(
                target_os = "linux",
                target_arch = "x86_64",
                any(target_env = "gnu", target_env = "musl"),
                not(clearcount_fallbacks)
            )))]
            $item
        )*
    };
}

pub(crate) use {with_fast_unwind, without_fast_unwind};

with_fast_unwind! {
    pub(crate) mod snapshot;
    pub(crate) mod unwind;
}
