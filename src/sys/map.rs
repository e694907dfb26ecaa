//! [`SharedMap`]: a shared, writable mapping of a counter file that is
//! never unmapped.
//!
//! A counter caches a reference to its slot in the file, and the increment
//! path is a single atomic add through it. Unmapping or moving a mapping
//! while another thread holds such a reference is the crash Go's
//! implementation hit on Windows, so a mapping here lives until the
//! process exits (the value is leaked).
//!
//! A mapping is never longer than the file (checked here): Windows cannot
//! map a view longer than the file's section, and elsewhere a page past
//! the end faults when touched. When the file grows, the counter file
//! code maps it again with its new length and uses the new mapping for
//! new slots; slots handed out before stay valid in the older mappings,
//! which show the same bytes (a shared mapping of a file is coherent with
//! every other mapping of it, in this process and in others). Counter files
//! grow by doubling, so a process maps one file a handful of times at most.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};

/// Whether this platform can map counter files. Elsewhere (targets with
/// neither unix nor Windows APIs, such as WASI) the engine counts nothing,
/// as if telemetry were off.
pub(crate) const MAPPING: bool = cfg!(any(unix, windows));

/// A shared, writable mapping of the first `len` bytes of a file, that
/// lives for the rest of the process.
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
    /// Maps the first `len` bytes of `file`, shared and writable, for the
    /// rest of the process. Refuses a `len` of 0 or past the file's end.
    pub(crate) fn map(file: &File, len: usize) -> io::Result<&'static SharedMap> {
        if !MAPPING {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this platform cannot map files",
            ));
        }
        let file_len = file.metadata()?.len();
        if len == 0 || len as u64 > file_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot map {len} bytes of a file of {file_len}"),
            ));
        }
        let raw = memmap2::MmapOptions::new().len(len).map_raw(file)?;
        let base = raw.as_mut_ptr();
        if !(base as usize).is_multiple_of(8) {
            return Err(io::Error::other("mapping is not 8-byte aligned"));
        }
        #[cfg(unix)]
        super::fault::guard(base as usize, len);
        Ok(Box::leak(Box::new(SharedMap {
            base,
            len,
            _raw: raw,
        })))
    }

    /// How many bytes are mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::Ordering;

    pub(crate) fn mapped(size: usize) -> (tempfile::NamedTempFile, &'static SharedMap) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![0u8; size]).unwrap();
        let m = SharedMap::map(f.as_file(), size).unwrap();
        (f, m)
    }

    #[test]
    fn accessors_refuse_out_of_bounds_and_unaligned() {
        let (_f, m) = mapped(4096);
        assert_eq!(m.len(), 4096);
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
    fn never_longer_than_the_file() {
        let (f, _) = mapped(4096);
        let e = SharedMap::map(f.as_file(), 4097).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(SharedMap::map(f.as_file(), 0).is_err());
        assert!(SharedMap::map(f.as_file(), 100).is_ok(), "a prefix is fine");
    }

    #[test]
    fn writes_reach_the_file_and_other_mappings() {
        let (f, m) = mapped(4096);
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

    /// The file grows while mapped: the old, shorter mapping and the new,
    /// longer one show the same bytes, both ways, and the file has them.
    #[test]
    fn a_grown_file_mapped_again_is_one_file() {
        let (f, short) = mapped(4096);
        let cell = short.u64_at(64).unwrap();
        cell.fetch_add(1, Ordering::Relaxed);
        let mut w = f.as_file();
        w.write_all(&[0u8; 8192]).unwrap();
        let long = SharedMap::map(f.as_file(), 4096 + 8192).unwrap();
        long.u64_at(64).unwrap().fetch_add(10, Ordering::Relaxed);
        cell.fetch_add(100, Ordering::Relaxed);
        long.u64_at(8192).unwrap().fetch_add(7, Ordering::Relaxed);
        assert_eq!(cell.load(Ordering::Relaxed), 111);
        assert!(short.u64_at(8192).is_none(), "past the short mapping");
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(&bytes[64..72], &111u64.to_le_bytes());
        assert_eq!(&bytes[8192..8200], &7u64.to_le_bytes());
    }

    #[test]
    fn hammered_from_threads() {
        let (_f, m) = mapped(4096);
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

    /// Windows refuses to shrink a file that has a mapped view
    /// (ERROR_USER_MAPPED_FILE), so another program cannot pull the pages
    /// out from under a counter there; unix needs the fault guard instead.
    #[cfg(windows)]
    #[test]
    fn truncating_a_mapped_file_is_refused() {
        let (f, m) = mapped(3 * 4096);
        let c = m.u64_at(2 * 4096).unwrap();
        c.fetch_add(5, Ordering::Relaxed);
        assert!(f.as_file().set_len(0).is_err(), "truncation refused");
        c.fetch_add(1, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 6);
    }
}
