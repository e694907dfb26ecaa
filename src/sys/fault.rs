//! The fault guard (every unix): another program truncating a counter file
//! under a live mapping must not kill the host.
//!
//! Touching a mapped page that lies past the end of its file raises SIGBUS
//! (POSIX `mmap`: "references … to whole pages following the end of an
//! object shall result in delivery of a SIGBUS signal"; some systems
//! deliver SIGSEGV instead, FreeBSD depending on
//! `machdep.prot_fault_translation`). A handler for both signals looks up
//! the faulting address among the mappings of counter files; if it is in
//! one, it replaces that whole mapping with anonymous zero pages
//! (`mmap(MAP_FIXED)`, async-signal-safe), so the faulting access and all
//! later ones land in private memory. The file is no longer updated through
//! it: its allocation pointer now reads zero there, which the counter file
//! code treats as damage, and it moves to a fresh file.
//!
//! The same handler serves the crash counter (`crash.rs`): with a hook
//! installed it also takes SIGILL, SIGFPE and SIGABRT, and calls the hook
//! for a fatal signal before passing it on.
//!
//! Any other fault, or a signal sent by `kill`, goes to the handler that
//! was installed before (Rust's stack-overflow handler, say), called
//! directly with the same arguments; if there was none, the default action
//! is put back and the process dies of the same signal, as it would have.
//! The handler only loads atomics, calls `mmap`, `sigaction` and `raise`
//! and the crash hook, all async-signal-safe.

use super::crash::{self, Crash};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A guarded mapping; leaked, never changed once published.
struct Region {
    start: usize,
    len: usize,
    next: *const Region,
}

/// The guarded mappings, newest first (a list that only grows: one entry
/// per mapping, and mappings are never unmapped).
static REGIONS: AtomicPtr<Region> = AtomicPtr::new(ptr::null_mut());

/// The signals handled: the guard's two, then the crash counter's three.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGBUS,
    libc::SIGSEGV,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
];
/// SIGABRT's place in [`SIGNALS`].
const ABRT: usize = 4;
const _: () = assert!(SIGNALS[ABRT] == libc::SIGABRT);
/// What each of [`SIGNALS`] means to the crash counter.
const KINDS: [Crash; 5] = [
    Crash::Bus,
    Crash::Segv,
    Crash::Ill,
    Crash::Fpe,
    Crash::Abort,
];
static INSTALL: [Once; 5] = [const { Once::new() }; 5];

struct Prev(UnsafeCell<[Option<libc::sigaction>; 5]>);
// SAFETY: entry i is written once inside `INSTALL[i].call_once`, before
// the handler that reads it is installed for that signal; read-only
// afterwards.
unsafe impl Sync for Prev {}
static PREV: Prev = Prev(UnsafeCell::new([None; 5]));

/// Guards the mapping `[start, start + len)`.
pub(crate) fn guard(start: usize, len: usize) {
    install(0..2);
    let node = Box::leak(Box::new(Region {
        start,
        len,
        next: ptr::null(),
    }));
    let mut head = REGIONS.load(Ordering::Acquire);
    loop {
        node.next = head;
        match REGIONS.compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Installs the handler for every signal (the crash counter's call).
pub(crate) fn install_crash_signals() {
    install(0..SIGNALS.len());
}

/// Installs the handler for `SIGNALS[range]`, each once.
fn install(range: std::ops::Range<usize>) {
    for i in range {
        INSTALL[i].call_once(|| install_one(i));
    }
}

fn install_one(i: usize) {
    // SAFETY: a zeroed `sigaction` with handler, flags and an empty mask is
    // a valid argument. PREV[i] is written before the new handler is
    // installed, so the handler never reads it half-written, and it is
    // written only here, once (`INSTALL[i]`).
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(SIGNALS[i], ptr::null(), &mut old) != 0 {
            return;
        }
        (*PREV.0.get())[i] = Some(old);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_fault as *const () as usize;
        // No SA_NODEFER: while the handler runs, its own signal is blocked,
        // so a fault inside it (or inside the handler it chains to) ends
        // the process, by the kernel's rule for a blocked fault signal,
        // instead of entering the handler again.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(SIGNALS[i], &action, ptr::null_mut());
    }
}

/// If `addr` is in a guarded mapping, replaces that mapping with private
/// zero pages; true if it did.
fn rescue(addr: usize) -> bool {
    let mut node = REGIONS.load(Ordering::Acquire).cast_const();
    // SAFETY: every node in the list was leaked (lives forever) and fully
    // written before it was published with a release CAS, seen here
    // through an acquire load.
    while let Some(r) = unsafe { node.as_ref() } {
        if addr >= r.start && addr - r.start < r.len {
            // SAFETY: `[start, start+len)` is our own mapping, never handed
            // to anyone as anything but atomics; replacing it with anonymous
            // memory of the same size and protection keeps every reference
            // into it valid. mmap is async-signal-safe.
            let p = unsafe {
                libc::mmap(
                    r.start as *mut libc::c_void,
                    r.len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANON | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            return p != libc::MAP_FAILED;
        }
        node = r.next;
    }
    false
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // si_code > 0: raised by a fault, so si_addr is the faulting address.
    let guarded = sig == libc::SIGBUS || sig == libc::SIGSEGV;
    if guarded && code > 0 && rescue(addr) {
        return; // the faulting access is retried, on the new pages
    }
    if let Some(i) = SIGNALS.iter().position(|&s| s == sig)
        && crash::hooked()
        && (code > 0 || sig == libc::SIGABRT || default_action(i))
    {
        // SAFETY: `ctx` is the kernel's, for this running handler.
        crash::fire(KINDS[i], unsafe { registers(ctx) });
        if sig != libc::SIGABRT {
            hand_back_abort();
        }
    }
    // SAFETY: the arguments are the kernel's, passed on unchanged.
    unsafe { chain(sig, info, ctx) }
}

super::with_fast_unwind! {
    /// The interrupted thread's registers, where a crash's stack is kept.
    ///
    /// # Safety
    ///
    /// `ctx` is the third argument of the running `SA_SIGINFO` handler.
    unsafe fn registers(ctx: *mut libc::c_void) -> Option<crash::Registers> {
        // SAFETY: as this function's own contract.
        unsafe { super::snapshot::registers_of(ctx) }
    }
}

super::without_fast_unwind! {
    /// Elsewhere a crash keeps no stack.
    unsafe fn registers(_ctx: *mut libc::c_void) -> Option<crash::Registers> {
        None
    }
}

/// Gives SIGABRT back the action it had before ours, once a crash from
/// another signal is counted and before that signal is chained on.
///
/// The handler chained to may report and abort: Rust's stack-overflow
/// report does, from the signal stack. That SIGABRT must not run this
/// handler again, nested on a signal stack the first run has nearly
/// filled: it overflowed there, and since the overflowing frame lay
/// outside the signal stack, the kernel delivered each new fault at the
/// top of it again, a loop that never ended. The process dies of SIGABRT
/// as it would have without clearcount, and one crash is counted, not two.
fn hand_back_abort() {
    if !INSTALL[ABRT].is_completed() {
        return;
    }
    // SAFETY: written before the handler was installed, never again.
    if let Some(prev) = unsafe { (*PREV.0.get())[ABRT] } {
        // SAFETY: `prev` is the action sigaction returned for SIGABRT;
        // sigaction is async-signal-safe.
        unsafe { libc::sigaction(libc::SIGABRT, &prev, ptr::null_mut()) };
    }
}

/// Whether signal `SIGNALS[i]` had its default action before ours: a sent
/// one then ends the process.
fn default_action(i: usize) -> bool {
    // SAFETY: written before the handler was installed, never again.
    let prev = unsafe { (*PREV.0.get())[i] };
    prev.is_none_or(|p| p.sa_sigaction == libc::SIG_DFL)
}

/// Hands a signal that is not ours to the handler installed before, or to
/// the default action.
///
/// # Safety
///
/// Only from `on_fault`, with the arguments the kernel gave it.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(i) = SIGNALS.iter().position(|&s| s == sig) else {
        return;
    };
    // SAFETY: written before this handler was installed, never again.
    let prev = unsafe { (*PREV.0.get())[i] };
    // SAFETY: the kernel passes a valid siginfo_t.
    let sent = unsafe { (*info).si_code } <= 0;
    match prev {
        Some(p) if p.sa_sigaction == libc::SIG_IGN && sent => {}
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous action was installed with SA_SIGINFO,
                // so its handler has this signature; it gets what we got.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: without SA_SIGINFO the handler takes the signal
                // number only.
                let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            // The default action (or "ignore" for a fault, which would
            // fault again forever): put the default back; the faulting
            // instruction runs again and the process dies of this signal,
            // as it would have. A sent signal is sent again.
            // SAFETY: sigaction and raise are async-signal-safe; a zeroed
            // sigaction with SIG_DFL (0) is a valid argument.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
                if sent {
                    libc::raise(sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::SharedMap;
    use std::io::Write;
    use std::process::Command;
    use std::sync::atomic::Ordering;

    /// A mapping of a file with no name (the children below die holding
    /// it, and a named one would be left behind in the temporary folder).
    fn mapped(size: usize) -> (std::fs::File, &'static SharedMap) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![0u8; size]).unwrap();
        let m = SharedMap::map(&f, size).unwrap();
        (f, m)
    }

    /// The case of every unix: another program truncates the file; the
    /// next count raises SIGBUS, which the guard turns into a write to
    /// private memory.
    #[test]
    fn truncation_under_a_live_mapping_does_not_crash() {
        let (f, m) = mapped(3 * 4096);
        let c = m.u64_at(2 * 4096).unwrap();
        c.fetch_add(5, Ordering::Relaxed);
        f.set_len(0).unwrap(); // another program truncates the file
        // Without the guard this access raises SIGBUS and kills the process.
        c.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 1, "now private, zeroed memory");
        assert_eq!(m.u64_at(0).unwrap().load(Ordering::Relaxed), 0);
    }

    /// Systems that report the same fault as SIGSEGV (FreeBSD may): a
    /// SIGSEGV inside a counter mapping is rescued the same way. Forced
    /// here by taking the pages' access away.
    #[test]
    fn a_segv_inside_a_counter_mapping_is_rescued_too() {
        let (_f, m) = mapped(2 * 4096);
        let c = m.u64_at(4096).unwrap();
        c.fetch_add(3, Ordering::Relaxed);
        let page = std::ptr::from_ref(c) as usize & !4095;
        // SAFETY: `page` is the start of a page of our own mapping, which
        // is only ever accessed through atomics; PROT_NONE makes the next
        // access fault with SIGSEGV (not SIGBUS).
        let r = unsafe { libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_NONE) };
        assert_eq!(r, 0);
        c.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 1, "now private, zeroed memory");
    }

    /// Runs one child of the tests below: this same test binary, with
    /// `CLEARCOUNT_FAULT_CHILD` saying what to do, with a guarded counter
    /// mapping or without one.
    fn child(what: &str, guarded: bool) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::fault::tests::fault_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CLEARCOUNT_FAULT_CHILD", what)
            .env("CLEARCOUNT_FAULT_GUARDED", if guarded { "1" } else { "0" })
            .output()
            .unwrap()
    }

    #[test]
    #[ignore = "the child process of the fault tests; run by them"]
    fn fault_child() {
        if std::env::var("CLEARCOUNT_FAULT_GUARDED").as_deref() == Ok("1") {
            let (f, m) = mapped(4096);
            m.u64_at(0).unwrap().fetch_add(1, Ordering::Relaxed);
            std::mem::forget(f);
        }
        match std::env::var("CLEARCOUNT_FAULT_CHILD").as_deref() {
            Ok("segv") => {
                // SAFETY: none: this child exists to fault outside every
                // counter mapping and die of it.
                unsafe { std::ptr::write_volatile(std::ptr::dangling_mut::<u64>(), 1) };
            }
            Ok("overflow") => {
                #[allow(unconditional_recursion)]
                fn deep(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    deep(n + 1) + pad[3]
                }
                std::hint::black_box(deep(0));
            }
            Ok("kill") => {
                // SAFETY: raise only sends a signal to this process.
                unsafe { libc::raise(libc::SIGBUS) };
            }
            _ => panic!("set CLEARCOUNT_FAULT_CHILD"),
        }
        println!("survived");
    }

    fn signal_of(out: &std::process::Output) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(&out.status)
    }

    /// A fault or a signal that is not ours ends the process exactly as
    /// it would without the guard: same signal, same exit status.
    #[test]
    fn a_fault_elsewhere_ends_the_process_as_without_the_guard() {
        for what in ["segv", "kill", "overflow"] {
            let (with, without) = (child(what, true), child(what, false));
            assert_eq!(with.status, without.status, "{what}: {with:?} {without:?}");
            assert_eq!(
                String::from_utf8_lossy(&with.stdout).contains("survived"),
                String::from_utf8_lossy(&without.stdout).contains("survived"),
                "{what}"
            );
        }
        assert_eq!(signal_of(&child("segv", true)), Some(libc::SIGSEGV));
    }

    /// Rust's own stack-overflow handler, installed before the guard, still
    /// reports an overflow (the guard hands it the SIGSEGV).
    #[test]
    fn rusts_stack_overflow_report_still_works() {
        let out = child("overflow", true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("has overflowed its stack"), "{err}");
        assert_eq!(signal_of(&out), Some(libc::SIGABRT), "{out:?}");
    }
}
