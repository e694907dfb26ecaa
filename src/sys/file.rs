//! File operations the engine needs that the standard library spells
//! differently per platform: positioned reads and writes, the lock that
//! serializes growth of a counter file, and whether a path still names a
//! file that is open.
//!
//! * **Positioned I/O**: `FileExt::read_at`/`write_all_at` on unix,
//!   `seek_read`/`seek_write` on Windows (which move the file position, a
//!   position nothing else here relies on), a seek and a read elsewhere.
//! * **The growth lock** is taken only to grow a counter file, never to
//!   read or count. On unix it is the standard library's `File::try_lock`
//!   (`flock`: advisory, so readers never notice it). On Windows locks are
//!   mandatory: a lock on the file's bytes would make other processes'
//!   reads of the file fail while it is held, so the lock covers one byte
//!   at 2^62, far past any data (`LockFileEx` allows locking beyond the end
//!   of a file), and readers never meet it.
//! * **File identity**: device and inode on unix; on Windows the volume
//!   serial number and the file index (`GetFileInformationByHandle`), the
//!   pair Microsoft documents as identifying a file on a computer.

use std::fs::File;
use std::io;
use std::path::Path;

/// Reads from `file` at `offset` into `buf`; returns how many bytes were
/// read (0 at the end of the file).
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    imp::read_at(file, buf, offset)
}

/// Writes all of `buf` to `file` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    imp::write_all_at(file, buf, offset)
}

/// Whether `path` names the same file as the open `file` (false if either
/// cannot be examined).
pub(crate) fn same_file(path: &Path, file: &File) -> bool {
    imp::same_file(path, file).unwrap_or(false)
}

/// Held while a counter file grows; released when dropped.
#[derive(Debug)]
pub(crate) struct GrowthLock<'a> {
    file: &'a File,
}

/// Takes the growth lock of `file` without waiting: `Ok(None)` if another
/// process (or another open handle) holds it.
pub(crate) fn try_lock_growth(file: &File) -> io::Result<Option<GrowthLock<'_>>> {
    Ok(imp::try_lock(file)?.then_some(GrowthLock { file }))
}

impl Drop for GrowthLock<'_> {
    fn drop(&mut self) {
        imp::unlock(self.file);
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::{self, File, TryLockError};
    use std::io;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::Path;

    pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    pub(super) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)
    }

    pub(super) fn same_file(path: &Path, file: &File) -> io::Result<bool> {
        let (a, b) = (fs::metadata(path)?, file.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    pub(super) fn try_lock(file: &File) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    pub(super) fn unlock(file: &File) {
        let _ = file.unlock();
    }
}

#[cfg(windows)]
mod imp {
    use std::fs::File;
    use std::io;
    use std::os::windows::fs::FileExt;
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;
    use windows_sys::Win32::Foundation::{ERROR_IO_PENDING, ERROR_LOCK_VIOLATION, HANDLE};
    use windows_sys::Win32::Storage::FileSystem::{
        BY_HANDLE_FILE_INFORMATION, GetFileInformationByHandle, LOCKFILE_EXCLUSIVE_LOCK,
        LOCKFILE_FAIL_IMMEDIATELY, LockFileEx, UnlockFileEx,
    };
    use windows_sys::Win32::System::IO::OVERLAPPED;

    /// Where the growth lock lies: one byte at 2^62, far beyond the largest
    /// counter file, so the mandatory lock never covers data.
    const WINDOWS_LOCK_OFFSET: u64 = 1 << 62;

    pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.seek_read(buf, offset)
    }

    pub(super) fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match file.seek_write(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Volume serial number and 64-bit file index of an open file.
    fn identity(file: &File) -> io::Result<(u32, u64)> {
        // SAFETY: BY_HANDLE_FILE_INFORMATION is plain data; all zeroes is a
        // valid value.
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: the handle belongs to `file`, open for the whole call;
        // the function writes one BY_HANDLE_FILE_INFORMATION through a valid,
        // exclusive pointer to a local.
        if unsafe { GetFileInformationByHandle(file.as_raw_handle() as HANDLE, &mut info) } == 0 {
            return Err(io::Error::last_os_error());
        }
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        Ok((info.dwVolumeSerialNumber, index))
    }

    pub(super) fn same_file(path: &Path, file: &File) -> io::Result<bool> {
        // std opens with every sharing mode, so this works while other
        // processes have the file open.
        let named = File::open(path)?;
        Ok(identity(&named)? == identity(file)?)
    }

    fn overlapped_at(offset: u64) -> OVERLAPPED {
        // SAFETY: OVERLAPPED is plain data; all zeroes is a valid value.
        let mut o: OVERLAPPED = unsafe { std::mem::zeroed() };
        o.Anonymous.Anonymous.Offset = offset as u32;
        o.Anonymous.Anonymous.OffsetHigh = (offset >> 32) as u32;
        o
    }

    pub(super) fn try_lock(file: &File) -> io::Result<bool> {
        let mut o = overlapped_at(WINDOWS_LOCK_OFFSET);
        // SAFETY: the handle belongs to `file`, open for the whole call,
        // and was opened for synchronous I/O, so the call completes before
        // returning and `o` (a valid, exclusive local) is not used after.
        let ok = unsafe {
            LockFileEx(
                file.as_raw_handle() as HANDLE,
                LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
                0,
                1,
                0,
                &mut o,
            )
        };
        if ok != 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error().map(|c| c as u32) {
            Some(ERROR_LOCK_VIOLATION) | Some(ERROR_IO_PENDING) => Ok(false),
            _ => Err(e),
        }
    }

    pub(super) fn unlock(file: &File) {
        let mut o = overlapped_at(WINDOWS_LOCK_OFFSET);
        // SAFETY: as in `try_lock`: a synchronous call on `file`'s own
        // handle, with a valid, exclusive OVERLAPPED.
        unsafe { UnlockFileEx(file.as_raw_handle() as HANDLE, 0, 1, 0, &mut o) };
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    use std::fs::{File, TryLockError};
    use std::io::{self, Read, Seek, SeekFrom, Write};
    use std::path::Path;

    // No positioned I/O in the standard library here: seek, then read or
    // write. Counter files are never mapped on these targets, so no two
    // threads share a handle for this.
    pub(super) fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.seek(SeekFrom::Start(offset))?;
        file.read(buf)
    }

    pub(super) fn write_all_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(buf)
    }

    pub(super) fn same_file(_path: &Path, _file: &File) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn try_lock(file: &File) -> io::Result<bool> {
        match file.try_lock() {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    pub(super) fn unlock(file: &File) {
        let _ = file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positioned_reads_and_writes() {
        let f = tempfile::tempfile().unwrap();
        write_all_at(&f, b"hello", 10).unwrap();
        write_all_at(&f, b"HE", 10).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read_at(&f, &mut buf, 10).unwrap(), 5);
        assert_eq!(&buf[..5], b"HEllo");
        assert_eq!(read_at(&f, &mut buf, 15).unwrap(), 0);
        assert_eq!(f.metadata().unwrap().len(), 15);
    }

    #[test]
    fn same_file_compares_the_file_not_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"one").unwrap();
        let opened = File::open(&p).unwrap();
        assert!(same_file(&p, &opened));
        // Another file now has the name: not the one we opened.
        let q = dir.path().join("b");
        std::fs::write(&q, b"two").unwrap();
        drop(opened);
        let opened = File::open(&p).unwrap();
        std::fs::rename(&q, dir.path().join("c")).unwrap();
        assert!(!same_file(&dir.path().join("c"), &opened));
        // (On Windows a file removed while open keeps its name until the
        // last handle is closed.)
        #[cfg(unix)]
        {
            std::fs::remove_file(&p).unwrap();
            assert!(!same_file(&p, &opened), "the name is gone");
        }
    }

    #[test]
    fn the_growth_lock_excludes_other_handles_but_not_readers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 4096]).unwrap();
        let a = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let b = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let held = try_lock_growth(&a).unwrap().expect("free at first");
        assert!(try_lock_growth(&b).unwrap().is_none(), "held by `a`");
        // Readers and writers of the data are not blocked (on Windows the
        // lock is mandatory, but lies past the data).
        let mut buf = [0u8; 16];
        assert_eq!(read_at(&b, &mut buf, 4000).unwrap(), 16);
        assert_eq!(buf, [7u8; 16]);
        assert_eq!(std::fs::read(&p).unwrap().len(), 4096);
        write_all_at(&b, &[1; 8], 4096).unwrap();
        drop(held);
        let again = try_lock_growth(&b).unwrap();
        assert!(again.is_some(), "released on drop");
    }
}
