//! The one module with `unsafe` code.
//!
//! Four small primitives live here, and nothing else:
//!
//! * [`SharedMap`]: a shared, writable memory mapping of a counter file that
//!   is never unmapped. It hands out atomics at checked, aligned offsets, so
//!   the rest of the crate touches the shared file only through
//!   `AtomicU64`/`AtomicU32`/`AtomicU8` (sound even when other processes write
//!   the same bytes at the same time).
//! * [`AtomicRef`]: an atomic, nullable `&'static T`, the building block of
//!   the lock-free counter registry and of the switch from one week's file to
//!   the next.
//! * [`coarse_now_ms`] and [`sleep_until_ms`]: the cheapest wall clock
//!   (Linux's `CLOCK_REALTIME_COARSE`, read from the vDSO without a system
//!   call, a few nanoseconds) and an absolute wall-clock sleep, which the
//!   engine uses to follow the weeks.
//! * `unwind` (Linux, x86-64, glibc or musl): what the fast stack walker
//!   (`crate::unwind`) cannot do safely: ask the dynamic loader about the
//!   loaded objects (unwind tables, read only while the loader cannot
//!   unload the object; how many objects were unloaded; exported symbol
//!   names), read the current registers, and read the current thread's
//!   stack within bounds.
//!
//! Why mappings are never unmapped: a counter caches a reference to its slot
//! in the file, and the increment path is a single atomic add through it.
//! Remapping while another thread holds such a reference is the crash Go's
//! implementation hit on Windows. Here a file is mapped once, with its full
//! reserved size ([`crate::format::MAX_FILE`]), and the mapping lives until the
//! process exits; growing the file never moves it. A process maps at most one
//! file per week, so the address space used stays small.
//!
//! The mapping may be larger than the file. Touching a page past the end of
//! the file raises SIGBUS, so the counter file code only hands out offsets
//! below the size the file is known to have (see `countfile.rs`).
//!
//! Another program may still truncate the file while it is mapped; the next
//! increment would then raise SIGBUS and kill the host. On Linux a SIGBUS
//! handler guards against that: a fault inside one of our mappings replaces
//! the whole mapping with anonymous zero pages, so the faulting increment and
//! all later ones land in private memory (the file is no longer updated: its
//! allocation pointer now reads zero, which the counter file code treats as
//! broken). A fault anywhere else is handed to the handler that was there
//! before.

#[cfg(all(
    target_os = "linux",
    target_arch = "x86_64",
    any(target_env = "gnu", target_env = "musl")
))]
pub(crate) mod unwind;

use std::fs::File;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// A shared, writable mapping of a file, `len` bytes long, that lives for the
/// rest of the process.
#[derive(Debug)]
pub(crate) struct SharedMap {
    base: *mut u8,
    len: usize,
    // Keeps the mapping alive; never dropped (the map is leaked).
    _raw: memmap2::MmapRaw,
}

// SAFETY: `base` points to a mapping that is never unmapped (the value is
// leaked) and is only accessed through atomics, so sharing it between threads
// is sound.
unsafe impl Send for SharedMap {}
// SAFETY: as above; every access through `&SharedMap` is atomic.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file`, shared and writable, for the rest of the
    /// process. `len` may exceed the file's current size.
    pub(crate) fn map(file: &File, len: usize) -> std::io::Result<&'static SharedMap> {
        let raw = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        let base = raw.as_mut_ptr();
        if !(base as usize).is_multiple_of(8) {
            return Err(std::io::Error::other("mapping is not 8-byte aligned"));
        }
        // A process maps one file a week; past the guard's capacity (only
        // reached by test suites) a mapping simply goes unguarded.
        #[cfg(target_os = "linux")]
        guard::register(base as usize, len);
        Ok(Box::leak(Box::new(SharedMap {
            base,
            len,
            _raw: raw,
        })))
    }

    fn in_bounds(&self, off: usize, size: usize, align: usize) -> bool {
        off.is_multiple_of(align) && off.checked_add(size).is_some_and(|end| end <= self.len)
    }

    /// The `u64` at `off`, as an atomic; `None` if out of bounds or unaligned.
    pub(crate) fn u64_at(&'static self, off: usize) -> Option<&'static AtomicU64> {
        if !self.in_bounds(off, 8, 8) {
            return None;
        }
        // SAFETY: `off + 8 <= len`, so the pointer is inside the mapping, which
        // is never unmapped; `base` is page aligned and `off` is a multiple of
        // 8, so the pointer is aligned for AtomicU64. All accesses to the
        // mapping go through atomics, so there is no non-atomic data race.
        Some(unsafe { AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) })
    }

    /// The `u32` at `off`, as an atomic; `None` if out of bounds or unaligned.
    pub(crate) fn u32_at(&'static self, off: usize) -> Option<&'static AtomicU32> {
        if !self.in_bounds(off, 4, 4) {
            return None;
        }
        // SAFETY: as in `u64_at`, with 4-byte size and alignment.
        Some(unsafe { AtomicU32::from_ptr(self.base.add(off).cast::<u32>()) })
    }

    /// `n` bytes at `off`, as atomics; `None` if out of bounds.
    pub(crate) fn bytes_at(&'static self, off: usize, n: usize) -> Option<&'static [AtomicU8]> {
        if !self.in_bounds(off, n, 1) {
            return None;
        }
        // SAFETY: `off + n <= len`, inside a mapping that is never unmapped.
        // AtomicU8 has the size and alignment of u8, so a run of bytes is a
        // valid `[AtomicU8]`; every access to the mapping is atomic.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.add(off).cast::<AtomicU8>().cast_const(), n)
        })
    }
}

/// The wall clock in milliseconds since the Unix epoch, from the cheapest
/// source that has it: `CLOCK_REALTIME_COARSE` on Linux and Android (a few
/// nanoseconds, no system call; it lags the precise clock by at most one
/// timer tick, a few milliseconds), the standard clock elsewhere.
#[inline]
pub(crate) fn coarse_now_ms() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec through a valid,
        // exclusive pointer to a local; it has no other effect.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
            return (ts.tv_sec as u64)
                .saturating_mul(1000)
                .saturating_add(ts.tv_nsec as u64 / 1_000_000);
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sleeps until the wall clock reads `until_ms` (ms since the epoch), or a
/// little earlier; the caller checks the clock again. On Linux the sleep is
/// absolute on `CLOCK_REALTIME`, so it ends on time after the machine was
/// suspended or the clock was set; elsewhere it wakes at least every minute
/// to look again.
pub(crate) fn sleep_until_ms(until_ms: u64) {
    let now = coarse_now_ms();
    if until_ms <= now {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: (until_ms / 1000).min(i64::MAX as u64) as libc::time_t,
            tv_nsec: ((until_ms % 1000) * 1_000_000) as libc::c_long,
        };
        // SAFETY: clock_nanosleep reads one timespec through a valid
        // pointer and writes nothing (the remaining-time pointer is null,
        // as TIMER_ABSTIME allows); it only blocks this thread.
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_REALTIME,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r == 0 || r == libc::EINTR {
            return;
        }
    }
    let left = std::time::Duration::from_millis(until_ms - now);
    std::thread::sleep(left.min(std::time::Duration::from_secs(60)));
}

/// An atomic, nullable reference to a `'static` value.
///
/// It can only ever hold references that live for the whole program, so a
/// reference loaded from it is valid forever.
pub(crate) struct AtomicRef<T: 'static> {
    ptr: AtomicPtr<T>,
    _marker: PhantomData<&'static T>,
}

impl<T: Sync + 'static> AtomicRef<T> {
    /// An empty reference.
    pub(crate) const fn new() -> Self {
        AtomicRef {
            ptr: AtomicPtr::new(ptr::null_mut()),
            _marker: PhantomData,
        }
    }

    /// The current reference, if any (acquire).
    #[inline(always)]
    pub(crate) fn load(&self) -> Option<&'static T> {
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: the only values ever stored are null or pointers made from
        // `&'static T` (see `store` and `set_if_empty`), so a non-null pointer
        // is valid, aligned and shared-borrowable for 'static.
        unsafe { p.as_ref() }
    }

    /// Replaces the reference (release).
    pub(crate) fn store(&self, value: Option<&'static T>) {
        let p = value.map_or(ptr::null_mut(), |r| ptr::from_ref(r).cast_mut());
        self.ptr.store(p, Ordering::Release);
    }

    /// Sets the reference if it is empty; returns the reference now held.
    pub(crate) fn set_if_empty(&self, value: &'static T) -> &'static T {
        let new = ptr::from_ref(value).cast_mut();
        match self
            .ptr
            .compare_exchange(ptr::null_mut(), new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => value,
            // SAFETY: a non-null value was stored by `store` or `set_if_empty`
            // from a `&'static T`.
            Err(current) => unsafe { &*current },
        }
    }
}

/// The SIGBUS guard (Linux): turns a fault in a truncated counter file into
/// a write to private memory.
#[cfg(target_os = "linux")]
mod guard {
    use std::cell::UnsafeCell;
    use std::sync::Once;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Most mappings guarded (one per week a process lives through).
    const MAX_REGIONS: usize = 1024;
    static STARTS: [AtomicUsize; MAX_REGIONS] = [const { AtomicUsize::new(0) }; MAX_REGIONS];
    static LENS: [AtomicUsize; MAX_REGIONS] = [const { AtomicUsize::new(0) }; MAX_REGIONS];
    static INSTALL: Once = Once::new();

    struct Prev(UnsafeCell<Option<libc::sigaction>>);
    // SAFETY: written once inside `INSTALL.call_once`, before the handler
    // that reads it is installed; read-only afterwards.
    unsafe impl Sync for Prev {}
    static PREV: Prev = Prev(UnsafeCell::new(None));

    /// Guards `[start, start + len)`; false if no slot is free.
    pub(super) fn register(start: usize, len: usize) -> bool {
        INSTALL.call_once(install);
        for i in 0..MAX_REGIONS {
            if LENS[i]
                .compare_exchange(0, len, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                STARTS[i].store(start, Ordering::Release);
                return true;
            }
        }
        false
    }

    fn install() {
        // SAFETY: a zeroed `sigaction` with handler, flags and an empty mask
        // is a valid argument. PREV is written before the new handler is
        // installed, so the handler never reads it half-written, and it is
        // written only here, once (`Once`).
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                return;
            }
            *PREV.0.get() = Some(old);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO
        // handlers; `si_addr` is valid for SIGBUS.
        let addr = unsafe { (*info).si_addr() } as usize;
        for i in 0..MAX_REGIONS {
            let start = STARTS[i].load(Ordering::Acquire);
            let len = LENS[i].load(Ordering::Acquire);
            if start != 0 && addr >= start && addr < start + len {
                // SAFETY: `[start, start+len)` is our own mapping, never
                // handed to anyone as anything but atomics; replacing it with
                // anonymous memory of the same size and protection keeps
                // every reference into it valid. mmap is async-signal-safe.
                let r = unsafe {
                    libc::mmap(
                        start as *mut libc::c_void,
                        len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if r != libc::MAP_FAILED {
                    return; // the faulting access is retried, on the new pages
                }
            }
        }
        // Not ours: put back the previous action and let the fault repeat
        // (or re-raise a signal that was sent, not caused by a fault).
        // SAFETY: PREV was set before this handler was installed; sigaction
        // and raise are async-signal-safe.
        unsafe {
            match &*PREV.0.get() {
                Some(prev) => libc::sigaction(sig, prev, std::ptr::null_mut()),
                None => libc::signal(sig, libc::SIG_DFL) as libc::c_int,
            };
            if (*info).si_code <= 0 {
                libc::raise(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mapped(size: usize, reserve: usize) -> (tempfile::NamedTempFile, &'static SharedMap) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![0u8; size]).unwrap();
        let m = SharedMap::map(f.as_file(), reserve).unwrap();
        (f, m)
    }

    #[test]
    fn accessors_refuse_out_of_bounds_and_unaligned() {
        let (_f, m) = mapped(4096, 4096);
        assert!(m.u64_at(4088).is_some());
        assert!(m.u64_at(4089).is_none());
        assert!(m.u64_at(4096).is_none());
        assert!(m.u64_at(usize::MAX - 3).is_none());
        assert!(m.u64_at(4).is_none());
        assert!(m.u32_at(4).is_some());
        assert!(m.u32_at(4094).is_none());
        assert!(m.bytes_at(4000, 96).is_some());
        assert!(m.bytes_at(4000, 97).is_none());
        assert!(m.bytes_at(usize::MAX, 2).is_none());
    }

    #[test]
    fn writes_reach_the_file_and_other_mappings() {
        let (f, m) = mapped(4096, 4096);
        let other = SharedMap::map(f.as_file(), 4096).unwrap();
        m.u64_at(8).unwrap().fetch_add(41, Ordering::Relaxed);
        other.u64_at(8).unwrap().fetch_add(1, Ordering::Relaxed);
        assert_eq!(m.u64_at(8).unwrap().load(Ordering::Relaxed), 42);
        for (i, b) in m.bytes_at(100, 3).unwrap().iter().enumerate() {
            b.store(b'a' + i as u8, Ordering::Relaxed);
        }
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(&bytes[8..16], &42u64.to_le_bytes());
        assert_eq!(&bytes[100..103], b"abc");
    }

    #[test]
    fn hammered_from_threads() {
        let (_f, m) = mapped(4096, 4096);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        m.u64_at(0).unwrap().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(m.u64_at(0).unwrap().load(Ordering::Relaxed), 40_000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn truncation_under_a_live_mapping_does_not_crash() {
        let (f, m) = mapped(3 * 4096, 3 * 4096);
        let c = m.u64_at(2 * 4096).unwrap();
        c.fetch_add(5, Ordering::Relaxed);
        f.as_file().set_len(0).unwrap(); // another program truncates the file
        // Without the guard this access raises SIGBUS and kills the process.
        c.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 1, "now private, zeroed memory");
        assert_eq!(m.u64_at(0).unwrap().load(Ordering::Relaxed), 0);
    }

    #[test]
    fn coarse_clock_follows_the_wall_clock() {
        let wall = |()| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = wall(());
        let coarse = coarse_now_ms();
        let after = wall(());
        // The coarse clock lags by at most a timer tick (a few ms).
        assert!(
            coarse + 50 >= before && coarse <= after,
            "{before} {coarse} {after}"
        );
        let until = coarse_now_ms() + 30;
        sleep_until_ms(until);
        assert!(
            coarse_now_ms() + 20 >= until,
            "woke long before the time asked"
        );
        sleep_until_ms(0); // in the past: returns at once
    }

    #[test]
    fn atomic_ref() {
        static A: u32 = 1;
        static B: u32 = 2;
        let r = AtomicRef::<u32>::new();
        assert!(r.load().is_none());
        assert_eq!(*r.set_if_empty(&A), 1);
        assert_eq!(*r.set_if_empty(&B), 1);
        r.store(Some(&B));
        assert_eq!(*r.load().unwrap(), 2);
        r.store(None);
        assert!(r.load().is_none());
    }
}
