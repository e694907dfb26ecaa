//! The writer side of a counter file: open or create this week's file, find
//! or add a counter's record, and grow the file, all shared with every other
//! process of the installation.
//!
//! The format is defined in `format.rs` and `counters-spec/file-format.md`.
//! The rules that make concurrent use safe:
//!
//! * A new file appears at its final name complete and valid: it is written
//!   to a temporary file and hard-linked into place, so of two processes
//!   creating it at the same moment exactly one wins and both then open the
//!   winner's file.
//! * On open the whole file is read and checked with [`format::parse`]; a
//!   file that fails is renamed into `corrupt/` and a fresh one is created.
//! * Records are allocated by compare-and-swap on the allocation pointer and
//!   linked into their hash chain by compare-and-swap on the link; a record
//!   is linked only once its name is written. Counts are atomic adds.
//! * The file grows, rarely, under an exclusive file lock: the grower writes
//!   real zero bytes (so a full disk shows up as a write error, never as a
//!   SIGBUS later) one chunk at a time. Space below a multiple of
//!   [`format::CHUNK`] of the file's length is fully written; nothing past
//!   it is touched.
//! * Every offset read from the file is checked against the mapping and the
//!   allocation pointer, and every chain walk has a step limit. A file found
//!   broken while in use is no longer used by this process.

use crate::format::{self, CHUNK, DATA_OFF, MAX_FILE, Meta, OFF_ALLOC, RECORD_HEADER, TABLE_OFF};
use crate::sys::SharedMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Most corrupt files kept in `corrupt/`; older ones are deleted.
const MAX_CORRUPT_KEPT: usize = 8;

/// Bytes read at once when a file is opened and checked.
const FIRST_READ: usize = 16 * 1024;

/// How long `grow` waits for another process's growth before giving up.
const LOCK_TRIES: u32 = 20;

/// An open, mapped counter file.
#[derive(Debug)]
pub(crate) struct CountFile {
    pub(crate) path: PathBuf,
    pub(crate) meta: Meta,
    file: File,
    map: &'static SharedMap,
    /// Bytes of the file known to exist and be written (a multiple of CHUNK).
    cap: AtomicUsize,
    /// Set when the file was found damaged while in use.
    broken: AtomicBool,
}

enum OpenError {
    Corrupt(String),
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

fn floor_chunk(len: u64) -> usize {
    (len.min(MAX_FILE as u64) as usize / CHUNK) * CHUNK
}

impl CountFile {
    /// Opens this week's file for `meta` in `dir` (the telemetry directory),
    /// creating it if needed and setting a corrupt one aside.
    pub(crate) fn open(dir: &Path, meta: &Meta) -> io::Result<CountFile> {
        let counts = dir.join(crate::dirs::COUNTS);
        let path = counts.join(meta.file_name());
        let mut last = String::new();
        for _ in 0..4 {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => match Self::check(&file, meta) {
                    Ok(cap) => {
                        let map = SharedMap::map(&file, MAX_FILE)?;
                        return Ok(CountFile {
                            path,
                            meta: meta.clone(),
                            file,
                            map,
                            cap: AtomicUsize::new(cap),
                            broken: AtomicBool::new(false),
                        });
                    }
                    Err(OpenError::Corrupt(why)) => {
                        set_aside(dir, &path, &file);
                        last = why;
                    }
                    Err(OpenError::Io(e)) => return Err(e),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&counts)?;
                    match crate::fsutil::create_atomic(&path, &format::initial_image(meta)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "counter file keeps turning up corrupt: {last}"
        )))
    }

    /// Reads the file's used part and checks it; returns the usable size.
    fn check(file: &File, meta: &Meta) -> Result<usize, OpenError> {
        let len = file.metadata()?.len();
        if len > MAX_FILE as u64 {
            return Err(OpenError::Corrupt(format!(
                "file is {len} bytes, larger than the limit"
            )));
        }
        let len = len as usize;
        // The header says how much of the file is in use: read just that.
        // One read covers the header, table and a few hundred records.
        let short = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => OpenError::Corrupt("file ends early".into()),
            _ => OpenError::Io(e),
        };
        let mut bytes = vec![0u8; len.min(FIRST_READ)];
        (&*file).read_exact(&mut bytes).map_err(short)?;
        let header =
            format::parse_header(&bytes, len).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        let cap = floor_chunk(len as u64);
        if header.alloc > cap {
            return Err(OpenError::Corrupt(
                "allocation pointer past the written size".into(),
            ));
        }
        if header.alloc > bytes.len() {
            let have = bytes.len();
            bytes.resize(header.alloc, 0);
            (&*file).read_exact(&mut bytes[have..]).map_err(short)?;
        }
        let parsed =
            format::parse_used(&bytes, len).map_err(|e| OpenError::Corrupt(e.to_string()))?;
        if parsed.meta != *meta {
            return Err(OpenError::Corrupt(
                "metadata does not match the file name".into(),
            ));
        }
        Ok(cap)
    }

    /// True once the file was found damaged; it is then no longer used.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn fail(&self) -> Option<&'static AtomicU64> {
        self.broken.store(true, Ordering::Relaxed);
        None
    }

    fn refresh_cap(&self) -> usize {
        let len = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        let cap = floor_chunk(len);
        self.cap.fetch_max(cap, Ordering::AcqRel).max(cap)
    }

    /// The largest offset records may reach now: the allocation pointer,
    /// if it is sane.
    fn limit(&self) -> Option<usize> {
        let alloc = self.map.u64_at(OFF_ALLOC)?.load(Ordering::Acquire);
        let alloc = usize::try_from(alloc).ok()?;
        if alloc < DATA_OFF || alloc % 8 != 0 || alloc > MAX_FILE {
            return None;
        }
        if alloc > self.cap.load(Ordering::Acquire) && alloc > self.refresh_cap() {
            return None;
        }
        Some(alloc)
    }

    /// The count of `name`, adding a record for it if the file has none.
    /// `None` if the file is full, damaged, or cannot grow.
    pub(crate) fn cell(&self, name: &str) -> Option<&'static AtomicU64> {
        if self.is_broken() {
            return None;
        }
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > format::MAX_RECORD_NAME {
            return None;
        }
        let map = self.map;
        let mut link = map.u32_at(TABLE_OFF + 4 * format::slot_of(bytes))?;
        let mut mine: Option<usize> = None;
        let max_steps = (MAX_FILE - DATA_OFF) / format::record_size(1);
        let mut steps = 0;
        loop {
            let off = link.load(Ordering::Acquire) as usize;
            if off == 0 {
                let rec = match mine {
                    Some(r) => r,
                    None => self.allocate(bytes)?,
                };
                mine = Some(rec);
                match link.compare_exchange(0, rec as u32, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => return map.u64_at(rec),
                    Err(_) => continue, // someone linked first: look at theirs
                }
            }
            steps += 1;
            if steps > max_steps {
                return self.fail();
            }
            let Some(limit) = self.limit() else {
                return self.fail();
            };
            if !off.is_multiple_of(8) || off < DATA_OFF || off + RECORD_HEADER > limit {
                return self.fail();
            }
            let len = map.u32_at(off + 12)?.load(Ordering::Acquire) as usize;
            if len == 0 || len > format::MAX_RECORD_NAME || off + format::record_size(len) > limit {
                return self.fail();
            }
            if len == bytes.len() {
                let stored = map.bytes_at(off + RECORD_HEADER, len)?;
                if stored
                    .iter()
                    .zip(bytes)
                    .all(|(s, b)| s.load(Ordering::Relaxed) == *b)
                {
                    // Found. A record we allocated but lost the race to link
                    // stays unlinked: readers never see it.
                    return map.u64_at(off);
                }
            }
            link = map.u32_at(off + 8)?;
        }
    }

    /// Reserves and fills a record for `name`; returns its offset.
    fn allocate(&self, name: &[u8]) -> Option<usize> {
        let size = format::record_size(name.len());
        let alloc = self.map.u64_at(OFF_ALLOC)?;
        loop {
            let a = alloc.load(Ordering::Acquire);
            let a = match usize::try_from(a) {
                Ok(a) if a >= DATA_OFF && a % 8 == 0 && a <= MAX_FILE => a,
                _ => {
                    self.fail();
                    return None;
                }
            };
            let end = a + size;
            if end > self.cap.load(Ordering::Acquire) && end > self.refresh_cap() {
                if !self.grow(end) {
                    return None;
                }
                continue;
            }
            if alloc
                .compare_exchange(a as u64, end as u64, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Space past the allocation pointer should be zero, but a
                // hostile writer may have filled it: set every field.
                self.map.u64_at(a)?.store(0, Ordering::Relaxed);
                self.map.u32_at(a + 8)?.store(0, Ordering::Relaxed);
                self.map
                    .u32_at(a + 12)?
                    .store(name.len() as u32, Ordering::Relaxed);
                let dst = self.map.bytes_at(a + RECORD_HEADER, name.len())?;
                for (d, s) in dst.iter().zip(name) {
                    d.store(*s, Ordering::Relaxed);
                }
                // The link that publishes the record is a release store, so
                // the name is visible to whoever follows it.
                return Some(a);
            }
        }
    }

    /// Grows the file so that `end` bytes are written; false if it cannot.
    fn grow(&self, end: usize) -> bool {
        if end > MAX_FILE {
            return false;
        }
        let mut locked = false;
        for _ in 0..LOCK_TRIES {
            match self.file.try_lock() {
                Ok(()) => {
                    locked = true;
                    break;
                }
                Err(fs::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_micros(250));
                    if self.refresh_cap() >= end {
                        return true;
                    }
                }
                Err(fs::TryLockError::Error(_)) => return false,
            }
        }
        if !locked {
            return false;
        }
        let ok = self.extend_locked(end).is_ok();
        let _ = self.file.unlock();
        self.refresh_cap() >= end && ok
    }

    /// With the file lock held: writes zero chunks until `end` is covered.
    fn extend_locked(&self, end: usize) -> io::Result<()> {
        static ZEROS: [u8; CHUNK] = [0; CHUNK];
        let mut len = self.file.metadata()?.len() as usize;
        while floor_chunk(len as u64) < end {
            // Finish a chunk left partly written by a grower that died.
            let upto = (len / CHUNK + 1) * CHUNK;
            write_at(&self.file, &ZEROS[..upto - len], len as u64)?;
            len = upto;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, off)
}

#[cfg(windows)]
fn write_at(file: &File, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_write(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

/// Moves a corrupt file into `corrupt/`, if `path` still names the file we
/// opened, and keeps that directory small.
fn set_aside(dir: &Path, path: &Path, opened: &File) {
    if !same_file(path, opened) {
        return; // someone already replaced it
    }
    move_to_corrupt(dir, path);
}

/// Moves a corrupt counter file into `corrupt/` (keeping the newest few),
/// or removes it if it cannot be moved, so that it is never read again.
/// Returns where it went (its own path if removed); `None` if it was gone.
pub(crate) fn move_to_corrupt(dir: &Path, path: &Path) -> Option<PathBuf> {
    let corrupt = dir.join(crate::dirs::CORRUPT);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let target = corrupt.join(format!("{name}.{stamp}.corrupt"));
    let moved = fs::create_dir_all(&corrupt).and_then(|()| fs::rename(path, &target));
    let went = match moved {
        Ok(()) => Some(target),
        Err(_) if !path.exists() => None,
        Err(_) => {
            let _ = fs::remove_file(path);
            Some(path.to_path_buf())
        }
    };
    prune(&corrupt);
    went
}

#[cfg(unix)]
fn same_file(path: &Path, opened: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), opened.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(path: &Path, _opened: &File) -> bool {
    path.exists()
}

fn prune(corrupt: &Path) {
    let Ok(entries) = fs::read_dir(corrupt) else {
        return;
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    if files.len() <= MAX_CORRUPT_KEPT {
        return;
    }
    files.sort();
    let excess = files.len() - MAX_CORRUPT_KEPT;
    for f in files.into_iter().take(excess) {
        let _ = fs::remove_file(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap())
    }

    #[test]
    fn counts_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        f.cell("a/b").unwrap().fetch_add(2, Ordering::Relaxed);
        f.cell("a/b").unwrap().fetch_add(3, Ordering::Relaxed);
        f.cell("c\nmain:+1")
            .unwrap()
            .fetch_add(1, Ordering::Relaxed);
        let p = format::parse(&fs::read(&f.path).unwrap()).unwrap();
        assert_eq!(p.counters["a/b"], 5);
        assert_eq!(p.stacks["c\nmain:+1"], 1);
        // A second opener sees the same records.
        let g = CountFile::open(dir.path(), &meta()).unwrap();
        assert_eq!(g.cell("a/b").unwrap().load(Ordering::Relaxed), 5);
    }

    #[test]
    fn grows_past_the_first_chunk_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        let mut made = 0;
        for i in 0..100_000 {
            let name = format!("n/{i:05}/{}", "x".repeat(100));
            match f.cell(&name) {
                Some(c) => {
                    c.fetch_add(1, Ordering::Relaxed);
                    made += 1
                }
                None => break,
            }
        }
        assert!(made > 1000, "only {made} records");
        assert!(!f.is_broken());
        let bytes = fs::read(&f.path).unwrap();
        assert_eq!(bytes.len(), MAX_FILE);
        let p = format::parse(&bytes).unwrap();
        assert_eq!(p.counters.len(), made);
    }

    #[test]
    fn corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let f = CountFile::open(dir.path(), &meta()).unwrap();
            f.cell("a").unwrap().fetch_add(1, Ordering::Relaxed);
            f.path.clone()
        };
        let mut bytes = fs::read(&path).unwrap();
        bytes[0] = b'X';
        fs::write(&path, &bytes).unwrap();
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        assert_eq!(f.cell("a").unwrap().load(Ordering::Relaxed), 0);
        let aside: Vec<_> = fs::read_dir(dir.path().join("corrupt")).unwrap().collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn damage_while_open_stops_use_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        f.cell("a").unwrap();
        // Point the chain of "a" into the header.
        let slot = TABLE_OFF + 4 * format::slot_of(b"a");
        f.map.u32_at(slot).unwrap().store(8, Ordering::Relaxed);
        assert!(f.cell("a").is_none());
        assert!(f.is_broken());
        assert!(f.cell("b").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

        /// Another process scribbles over the live file (header, table,
        /// records): lookups and inserts never panic, never hang, and only
        /// ever hand out cells inside the mapping.
        #[test]
        fn scribbled_live_file_never_panics(
            edits in proptest::collection::vec((0usize..12_000, proptest::prelude::any::<u8>()), 1..200),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let f = CountFile::open(dir.path(), &meta()).unwrap();
            for i in 0..50 {
                f.cell(&format!("n/{i}")).unwrap().fetch_add(1, Ordering::Relaxed);
            }
            for (pos, val) in edits {
                f.map.bytes_at(pos, 1).unwrap()[0].store(val, Ordering::Relaxed);
            }
            for i in 0..80 {
                if let Some(c) = f.cell(&format!("n/{i}")) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
