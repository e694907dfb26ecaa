//! What a signal handler needs to keep a crashing thread's stack for later
//! (Linux on x86-64, where the fast stack walker runs): the registers at
//! the fault, a copy of the stack above them, and a file written with
//! system calls only.
//!
//! Everything here is async-signal-safe (POSIX.1-2024 §2.4.3 lists
//! `getpid`, `mkdir`, `open`, `write` and `close`; `process_vm_readv` is a
//! plain system call): no allocation, no lock. Memory is read through
//! `process_vm_readv` on this very process, which answers `EFAULT` for an
//! unmapped page instead of faulting, so a copy of a stack of unknown
//! extent cannot fault inside the handler.

use super::crash::Registers;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of stack kept above the stack pointer at the fault.
pub(crate) const STACK_BYTES: usize = 64 * 1024;

/// The registers of the interrupted thread, from a handler's context.
///
/// # Safety
///
/// `ctx` must be the third argument the kernel passed to an `SA_SIGINFO`
/// handler that is running now.
pub(crate) unsafe fn registers_of(ctx: *mut libc::c_void) -> Option<Registers> {
    // SAFETY: for an SA_SIGINFO handler the third argument points to the
    // interrupted thread's `ucontext_t` (sigaction(2)), valid while the
    // handler runs; only three general registers are read.
    let uc = unsafe { ctx.cast::<libc::ucontext_t>().as_ref() }?;
    let g = &uc.uc_mcontext.gregs;
    Some(Registers {
        pc: g[libc::REG_RIP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
        bp: g[libc::REG_RBP as usize] as u64,
    })
}

/// Room the handler writes into: one per process, handed out once.
pub(crate) struct Scratch {
    /// The copy of the stack.
    pub(crate) stack: [u8; STACK_BYTES],
    /// The record's fixed part written at the crash.
    pub(crate) head: [u8; 64],
    /// The file's path while it is written, NUL-terminated.
    pub(crate) tmp_path: [u8; 1024],
    /// Its path once whole, NUL-terminated.
    pub(crate) path: [u8; 1024],
}

struct Cell(std::cell::UnsafeCell<Scratch>);
// SAFETY: the scratch is reachable only through `take_scratch`, which hands
// out its one `&mut` at most once per process (an atomic swap).
unsafe impl Sync for Cell {}

static SCRATCH: Cell = Cell(std::cell::UnsafeCell::new(Scratch {
    stack: [0; STACK_BYTES],
    head: [0; 64],
    tmp_path: [0; 1024],
    path: [0; 1024],
}));
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The scratch, the first time only (it lives in zero-filled memory that
/// costs nothing until it is written).
pub(crate) fn take_scratch() -> Option<&'static mut Scratch> {
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: the swap above let exactly one caller through, once: this
    // `&mut` is the only reference to the scratch ever made.
    Some(unsafe { &mut *SCRATCH.0.get() })
}

/// Copies this process's memory from `addr` into `out`, page by page,
/// stopping at the first page that cannot be read; how many bytes it
/// copied.
pub(crate) fn copy_own_memory(addr: u64, out: &mut [u8]) -> usize {
    const PAGE: usize = 4096;
    const PIECES: usize = STACK_BYTES / PAGE;
    let mut local = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; PIECES];
    let mut remote = local;
    let mut n = 0;
    let mut at = addr as usize;
    let mut done = 0;
    while done < out.len() && n < PIECES {
        // Pieces end on page boundaries: a partial read stops at a whole
        // piece, so everything before the first unreadable page is copied.
        let len = (PAGE - at % PAGE).min(out.len() - done);
        local[n] = libc::iovec {
            iov_base: out[done..].as_mut_ptr().cast(),
            iov_len: len,
        };
        remote[n] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: len,
        };
        n += 1;
        done += len;
        at += len;
    }
    // SAFETY: every local iovec lies inside `out`, which is exclusively
    // borrowed; the remote ones are addresses in this process that the
    // kernel reads (or answers EFAULT for); nothing is read here directly.
    let got = unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            local.as_ptr(),
            n as libc::c_ulong,
            remote.as_ptr(),
            n as libc::c_ulong,
            0,
        )
    };
    usize::try_from(got).unwrap_or(0)
}

/// This process's id, async-signal-safely.
pub(crate) fn pid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// Creates the directory `dir` (if missing) and the new file `tmp` (mode
/// 0600; never one that exists), writes `parts` to it in order, and
/// renames it to `path` once whole. False if any step failed (the partial
/// file then remains under its temporary name, for a reader to delete).
pub(crate) fn write_new_file(dir: &CStr, tmp: &CStr, path: &CStr, parts: &[&[u8]]) -> bool {
    // SAFETY: mkdir, open, write, close and rename are async-signal-safe;
    // the paths are NUL-terminated C strings, every buffer is a live slice
    // read within its length, and the descriptor is closed before return.
    unsafe {
        libc::mkdir(dir.as_ptr(), 0o700);
        let fd = libc::open(
            tmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o600,
        );
        if fd < 0 {
            return false;
        }
        let mut ok = true;
        'parts: for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let w = libc::write(fd, rest.as_ptr().cast(), rest.len());
                if w <= 0 {
                    if w < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    ok = false;
                    break 'parts;
                }
                rest = &rest[w as usize..];
            }
        }
        libc::close(fd);
        ok && libc::rename(tmp.as_ptr(), path.as_ptr()) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy stops at the first page that cannot be read, without
    /// faulting, and keeps everything before it.
    #[test]
    fn a_copy_stops_at_an_unmapped_page() {
        // Two readable pages, then one with no access at all.
        let len = 3 * 4096;
        // SAFETY: a fresh private anonymous mapping, made and used here.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the first two pages are ours and writable; then the third
        // loses all access.
        unsafe {
            std::ptr::write_bytes(p.cast::<u8>(), 7, 2 * 4096);
            assert_eq!(
                libc::mprotect(p.cast::<u8>().add(2 * 4096).cast(), 4096, libc::PROT_NONE),
                0
            );
        }
        let mut out = vec![0u8; 4 * 4096];
        // From the middle of the first page: 1.5 pages can be read.
        let got = copy_own_memory(p as u64 + 2048, &mut out);
        assert_eq!(got, 2 * 4096 - 2048);
        assert!(out[..got].iter().all(|&b| b == 7));
        // From an address with nothing mapped: nothing, and no fault.
        assert_eq!(copy_own_memory(8, &mut out), 0);
    }

    /// The scratch is handed out once.
    #[test]
    fn the_scratch_is_handed_out_once() {
        let first = take_scratch().map(|s| s.head.len());
        assert_eq!(first, Some(64));
        assert!(take_scratch().is_none());
    }
}
