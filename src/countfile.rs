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
//! * Opening reads and checks only the header (1 KiB) and the file's length,
//!   so it costs the same for a file with ten names as for a full one.
//!   Records are checked when a lookup touches them, in the order the spec's
//!   §6 gives for a file in use (a link first, then the allocation pointer,
//!   then the record), so what a concurrent writer may show is never taken
//!   for damage.
//! * Records are allocated by compare-and-swap on the allocation pointer and
//!   linked into their hash chain by compare-and-swap on the link; a record
//!   is linked only once its name is written. Counts are atomic adds.
//! * The file grows, rarely, under an exclusive growth lock: the grower
//!   writes real zero bytes (so a full disk shows up as a write error, never
//!   as a SIGBUS later) one chunk at a time, doubling the file's size (to at
//!   most [`format::MAX_FILE`]). Space below a multiple of [`format::CHUNK`]
//!   of the file's length is fully written; nothing past it is touched.
//! * No mapping is longer than the file. A process maps the file's usable
//!   length when it opens it, and maps it again, longer, when it finds the
//!   file has grown (its own growth or another process's); cells handed out
//!   before stay in the older mappings, which are never unmapped and show
//!   the same bytes. Doubling keeps this to six mappings of a full file.
//! * Every offset read from the file is checked against the mapping and the
//!   allocation pointer, and every chain walk has a step limit. Damage found
//!   on open is read a second time before the file is set aside; damage found
//!   by a lookup is certain (no writer can produce it), so the file is set
//!   aside at once and the caller moves to a fresh one.
//! * When a file is created for a new week, counter files of weeks more than
//!   [`KEEP_PAST_WEEKS`] weeks before it are deleted, so `counts/` stays
//!   bounded in every build, reports or not.

use crate::format::{self, CHUNK, DATA_OFF, MAX_FILE, Meta, OFF_ALLOC, RECORD_HEADER, TABLE_OFF};
use crate::sys::{AtomicRef, SharedMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most corrupt files kept in `corrupt/`; older ones are deleted.
const MAX_CORRUPT_KEPT: usize = 8;

/// Weeks of counter files kept before the current one: when a week's file is
/// created, files of weeks that began more than this many weeks earlier are
/// deleted (whether or not they were made into reports).
pub const KEEP_PAST_WEEKS: u64 = 4;

/// Longest a lookup waits for another process's growth of the file (the
/// lock is held for one 64 KiB write).
const GROW_WAIT: Duration = Duration::from_millis(200);

/// An open, mapped counter file.
#[derive(Debug)]
pub(crate) struct CountFile {
    pub(crate) path: PathBuf,
    pub(crate) meta: Meta,
    file: File,
    /// The newest mapping: its length is the part of the file known to be
    /// written (a multiple of CHUNK). Older, shorter mappings stay valid.
    map: AtomicRef<SharedMap>,
    /// Held while mapping the file again.
    remap: Mutex<()>,
    /// Set when the file was found damaged while in use.
    broken: AtomicBool,
}

/// Why a lookup found no count in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Another process held the growth lock too long, or growth failed
    /// (a full disk): worth trying again later.
    Busy,
    /// The file reached its size limit, or the name cannot be stored.
    Full,
    /// The file is damaged (certain: no writer produces this); it is no
    /// longer used.
    Damaged,
}

enum OpenError {
    Corrupt(String),
    /// A valid file of another build under the same name (only on a hash
    /// collision of build ids): never set aside, never used.
    Collision,
    Io(io::Error),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

impl CountFile {
    /// Opens this week's file for `meta` in `dir` (the telemetry directory),
    /// creating it if needed and setting a damaged one aside.
    pub(crate) fn open(dir: &Path, meta: &Meta) -> io::Result<CountFile> {
        let counts = dir.join(crate::dirs::COUNTS);
        let path = counts.join(meta.file_name());
        let mut last = String::new();
        for _ in 0..4 {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => {
                    let checked = match Self::check(&file, meta) {
                        // Read again before calling it damaged: a header
                        // read while a writer moved the allocation pointer
                        // may show a torn value.
                        Err(OpenError::Corrupt(_)) => {
                            std::thread::sleep(Duration::from_millis(1));
                            Self::check(&file, meta)
                        }
                        other => other,
                    };
                    match checked {
                        Ok(usable) => {
                            let map = AtomicRef::new();
                            map.store(Some(SharedMap::map(&file, usable)?));
                            return Ok(CountFile {
                                path,
                                meta: meta.clone(),
                                file,
                                map,
                                remap: Mutex::new(()),
                                broken: AtomicBool::new(false),
                            });
                        }
                        Err(OpenError::Corrupt(why)) => {
                            set_aside(dir, &path, &file);
                            last = why;
                        }
                        Err(OpenError::Collision) => {
                            return Err(io::Error::other(format!(
                                "{} belongs to another build",
                                path.display()
                            )));
                        }
                        Err(OpenError::Io(e)) => return Err(e),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(&counts)?;
                    match crate::fsutil::create_atomic(&path, &format::initial_image(meta)) {
                        Ok(()) => prune_old_weeks(&counts, meta.week_begin),
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

    /// Checks the header, the metadata and the length (nothing else: records
    /// are checked when touched); returns the usable size.
    fn check(file: &File, meta: &Meta) -> Result<usize, OpenError> {
        let mut head = [0u8; TABLE_OFF];
        let n = crate::fsutil::read_at_most(file, &mut head, 0)?;
        let corrupt = |e: format::FormatError| OpenError::Corrupt(e.to_string());
        let header = format::parse_header(&head[..n]).map_err(corrupt)?;
        if header.meta != *meta {
            return Err(OpenError::Collision);
        }
        // The length is read after the allocation pointer, as the spec says.
        let len = file.metadata()?.len();
        format::check_length(len, header.alloc).map_err(corrupt)?;
        Ok(format::usable_len(len))
    }

    /// True once the file was found damaged; it is then no longer used.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Marks the file damaged (callers say what they saw; no writer
    /// produces any of it).
    fn fail<T>(&self) -> Result<T, Miss> {
        self.broken.store(true, Ordering::Release);
        Err(Miss::Damaged)
    }

    /// A reference into the mapping, or damage if the offset was outside.
    fn inside<T>(&self, at: Option<T>) -> Result<T, Miss> {
        match at {
            Some(t) => Ok(t),
            None => self.fail(), // an offset lies outside the mapping
        }
    }

    /// The newest mapping.
    fn current(&self) -> Result<&'static SharedMap, Miss> {
        match self.map.load() {
            Some(m) => Ok(m),
            None => self.fail(), // never: set when opened
        }
    }

    /// The newest mapping, made again first if the file's written part has
    /// grown past it. `Busy` if the file cannot be examined or mapped now
    /// (say, no address space is left): nothing is wrong with the file.
    fn refresh(&self) -> Result<&'static SharedMap, Miss> {
        let cur = self.current()?;
        let len = self.file.metadata().map_err(|_| Miss::Busy)?.len();
        let usable = format::usable_len(len);
        if usable <= cur.len() {
            return Ok(cur);
        }
        let _g = self.remap.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.current()?;
        if usable <= cur.len() {
            return Ok(cur); // another thread mapped it meanwhile
        }
        let map = SharedMap::map(&self.file, usable).map_err(|_| Miss::Busy)?;
        self.map.store(Some(map));
        Ok(map)
    }

    /// The largest offset records may reach now, and a mapping that covers
    /// it: the allocation pointer, read after the link that led here,
    /// checked against the file's written size (read after the pointer).
    fn limit(&self) -> Result<(usize, &'static SharedMap), Miss> {
        let map = self.current()?;
        let Some(cell) = map.u64_at(OFF_ALLOC) else {
            return self.fail(); // mapping too small
        };
        let alloc = cell.load(Ordering::Acquire);
        let alloc = match usize::try_from(alloc) {
            Ok(a) if a >= DATA_OFF && a.is_multiple_of(8) && a <= MAX_FILE => a,
            _ => return self.fail(), // allocation pointer is out of bounds
        };
        if alloc <= map.len() {
            return Ok((alloc, map));
        }
        let map = self.refresh()?;
        if alloc > map.len() {
            return self.fail(); // allocation pointer is past the file's end
        }
        Ok((alloc, map))
    }

    /// The count of `name`, adding a record for it if the file has none.
    pub(crate) fn cell(&self, name: &str) -> Result<&'static AtomicU64, Miss> {
        if self.is_broken() {
            return Err(Miss::Damaged);
        }
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > format::MAX_RECORD_NAME {
            return Err(Miss::Full);
        }
        let head = self.current()?;
        let mut link = self.inside(head.u32_at(TABLE_OFF + 4 * format::slot_of(bytes)))?;
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
                    Ok(_) => return self.inside(self.current()?.u64_at(rec)),
                    Err(_) => continue, // someone linked first: look at theirs
                }
            }
            steps += 1;
            if steps > max_steps {
                return self.fail(); // the chain loops
            }
            let (limit, map) = self.limit()?;
            if !off.is_multiple_of(8) || off < DATA_OFF || off + RECORD_HEADER > limit {
                return self.fail(); // a link points outside the used area
            }
            let len = self.inside(map.u32_at(off + 12))?.load(Ordering::Acquire) as usize;
            if len == 0 || len > format::MAX_RECORD_NAME || off + format::record_size(len) > limit {
                return self.fail(); // the record has a bad name length
            }
            if len == bytes.len() {
                let stored = self.inside(map.bytes_at(off + RECORD_HEADER, len))?;
                if stored
                    .iter()
                    .zip(bytes)
                    .all(|(s, b)| s.load(Ordering::Relaxed) == *b)
                {
                    // Found. A record we allocated but lost the race to link
                    // stays unlinked: readers never see it.
                    return self.inside(map.u64_at(off));
                }
            }
            link = self.inside(map.u32_at(off + 8))?;
        }
    }

    /// Reserves and fills a record for `name`; returns its offset.
    fn allocate(&self, name: &[u8]) -> Result<usize, Miss> {
        let size = format::record_size(name.len());
        let alloc = self.inside(self.current()?.u64_at(OFF_ALLOC))?;
        loop {
            let a = alloc.load(Ordering::Acquire);
            let a = match usize::try_from(a) {
                Ok(a) if a >= DATA_OFF && a.is_multiple_of(8) && a <= MAX_FILE => a,
                _ => return self.fail(), // allocation pointer is out of bounds
            };
            let end = a + size;
            let mut map = self.current()?;
            if end > map.len() {
                map = self.refresh()?;
                if end > map.len() {
                    self.grow(end)?;
                    continue;
                }
            }
            if alloc
                .compare_exchange(a as u64, end as u64, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Space past the allocation pointer should be zero, but a
                // hostile writer may have filled it: set every field.
                self.inside(map.u64_at(a))?.store(0, Ordering::Relaxed);
                self.inside(map.u32_at(a + 8))?.store(0, Ordering::Relaxed);
                self.inside(map.u32_at(a + 12))?
                    .store(name.len() as u32, Ordering::Relaxed);
                let dst = self.inside(map.bytes_at(a + RECORD_HEADER, name.len()))?;
                for (d, s) in dst.iter().zip(name) {
                    d.store(*s, Ordering::Relaxed);
                }
                // The link that publishes the record is a release store, so
                // the name is visible to whoever follows it.
                return Ok(a);
            }
        }
    }

    /// Grows the file so that at least `end` bytes are written, and maps
    /// it again.
    fn grow(&self, end: usize) -> Result<(), Miss> {
        if end > MAX_FILE {
            return Err(Miss::Full);
        }
        let waited = Instant::now();
        let lock = loop {
            match crate::sys::file::try_lock_growth(&self.file) {
                Ok(Some(lock)) => break lock,
                Ok(None) => {
                    if waited.elapsed() >= GROW_WAIT {
                        return Err(Miss::Busy);
                    }
                    std::thread::sleep(Duration::from_micros(250));
                    if self.refresh()?.len() >= end {
                        return Ok(()); // another process grew it
                    }
                }
                Err(_) => return Err(Miss::Busy),
            }
        };
        let written = self.extend_locked(end);
        drop(lock);
        if written.is_ok() && self.refresh()?.len() >= end {
            Ok(())
        } else {
            Err(Miss::Busy)
        }
    }

    /// With the growth lock held: writes zero chunks until the file's
    /// usable length covers `end` and is at least double what it was (at
    /// most [`MAX_FILE`]).
    fn extend_locked(&self, end: usize) -> io::Result<()> {
        let mut len = self.file.metadata()?.len() as usize;
        let target = growth_target(format::usable_len(len as u64), end);
        while format::usable_len(len as u64) < target {
            // Finish a chunk left partly written by a grower that died.
            // Zeros from the allocator, not a 64 KiB static: that would be
            // 64 KiB more in every program's binary, for a rare growth.
            let upto = (len / CHUNK + 1) * CHUNK;
            crate::sys::file::write_all_at(&self.file, &vec![0; upto - len], len as u64)?;
            len = upto;
        }
        Ok(())
    }

    /// Moves this (damaged) file into `corrupt/`, if its path still names
    /// it; `dir` is the telemetry directory.
    pub(crate) fn set_aside(&self, dir: &Path) {
        set_aside(dir, &self.path, &self.file);
    }
}

/// The usable length a grower makes, from `usable` now, so that `end`
/// bytes fit: double the length (so a process maps a file a handful of
/// times at most), or what `end` needs if more, never past [`MAX_FILE`].
fn growth_target(usable: usize, end: usize) -> usize {
    let needed = end.div_ceil(CHUNK) * CHUNK;
    needed.max(usable.saturating_mul(2)).min(MAX_FILE)
}

/// Deletes counter files of weeks that began more than [`KEEP_PAST_WEEKS`]
/// weeks before `week`.
fn prune_old_weeks(counts: &Path, week: chrono::NaiveDate) {
    let Some(oldest) = week.checked_sub_days(chrono::Days::new(7 * KEEP_PAST_WEEKS)) else {
        return;
    };
    let Ok(entries) = fs::read_dir(counts) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if format::week_of_file_name(name).is_some_and(|w| w < oldest) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Moves a corrupt file into `corrupt/`, if `path` still names the file we
/// opened, and keeps that directory small.
fn set_aside(dir: &Path, path: &Path, opened: &File) {
    if !crate::sys::file::same_file(path, opened) {
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

fn prune(corrupt: &Path) {
    let Ok(entries) = fs::read_dir(corrupt) else {
        return;
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    if files.len() <= MAX_CORRUPT_KEPT {
        return;
    }
    files.sort_unstable();
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
                Ok(c) => {
                    c.fetch_add(1, Ordering::Relaxed);
                    made += 1
                }
                Err(miss) => {
                    assert_eq!(miss, Miss::Full);
                    break;
                }
            }
        }
        assert!(made > 1000, "only {made} records");
        assert!(!f.is_broken());
        let bytes = fs::read(&f.path).unwrap();
        assert_eq!(bytes.len(), MAX_FILE);
        let p = format::parse(&bytes).unwrap();
        assert_eq!(p.counters.len(), made);
    }

    /// Another process grows the file past this one's mapping: this one
    /// maps it again, longer, when it finds records past its end; no
    /// mapping is ever longer than the file, and the file doubles.
    #[test]
    fn mappings_follow_the_file_and_never_pass_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mine = CountFile::open(dir.path(), &meta()).unwrap();
        let other = CountFile::open(dir.path(), &meta()).unwrap();
        assert_eq!(mine.current().unwrap().len(), CHUNK);
        let name = |i: usize| format!("grow/{i:05}/{}", "y".repeat(100));
        let mut sizes = vec![];
        let mut n = 0;
        while fs::metadata(&other.path).unwrap().len() < 600 * 1024 {
            other
                .cell(&name(n))
                .unwrap()
                .fetch_add(1, Ordering::Relaxed);
            let len = fs::metadata(&other.path).unwrap().len() as usize;
            assert!(other.current().unwrap().len() <= len);
            if sizes.last() != Some(&len) {
                sizes.push(len);
            }
            n += 1;
        }
        assert_eq!(sizes, [CHUNK, 2 * CHUNK, 4 * CHUNK, 8 * CHUNK, 16 * CHUNK]);
        // This process still has its first mapping; every record the other
        // added is found, and counts land in the same cells.
        assert_eq!(mine.current().unwrap().len(), CHUNK);
        for i in 0..n {
            mine.cell(&name(i)).unwrap().fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(mine.current().unwrap().len(), 16 * CHUNK);
        for i in 0..n {
            assert_eq!(other.cell(&name(i)).unwrap().load(Ordering::Relaxed), 2);
        }
        assert!(!mine.is_broken() && !other.is_broken());
        let p = format::parse(&fs::read(&mine.path).unwrap()).unwrap();
        assert_eq!(p.counters.len(), n);
        assert!(p.counters.values().all(|&c| c == 2));
    }

    #[test]
    fn growth_doubles_up_to_the_limit() {
        assert_eq!(growth_target(CHUNK, CHUNK + 1), 2 * CHUNK);
        assert_eq!(growth_target(2 * CHUNK, 2 * CHUNK + 8), 4 * CHUNK);
        assert_eq!(growth_target(CHUNK, 5 * CHUNK), 5 * CHUNK);
        assert_eq!(growth_target(MAX_FILE / 2 + CHUNK, MAX_FILE), MAX_FILE);
    }

    #[test]
    fn corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let f = CountFile::open(dir.path(), &meta()).unwrap();
            f.cell("a").unwrap().fetch_add(1, Ordering::Relaxed);
            f.path.clone()
        };
        // Damage the magic in place (the file is still mapped: Windows
        // refuses to truncate it, as `fs::write` would).
        let w = OpenOptions::new().write(true).open(&path).unwrap();
        crate::sys::file::write_all_at(&w, b"X", 0).unwrap();
        drop(w);
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        assert_eq!(f.cell("a").unwrap().load(Ordering::Relaxed), 0);
        let aside: Vec<_> = fs::read_dir(dir.path().join("corrupt")).unwrap().collect();
        assert_eq!(aside.len(), 1);
    }

    #[test]
    fn a_new_week_prunes_files_older_than_four_weeks() {
        let dir = tempfile::tempdir().unwrap();
        let first: chrono::NaiveDate = "2026-09-07".parse().unwrap();
        let counts = dir.path().join("counts");
        fs::create_dir_all(&counts).unwrap();
        for k in 0..8u64 {
            let week = first + chrono::Days::new(7 * k);
            // This build's file and another build's, of the same week. The
            // older weeks' files are left by processes that are gone (a
            // file mapped by a live process cannot be deleted on Windows;
            // a later week's creation deletes it).
            for prog in ["t", "u"] {
                let m = Meta::new(prog, "1", "linux", "x86_64", week);
                if k < 7 {
                    fs::write(counts.join(m.file_name()), format::initial_image(&m)).unwrap();
                } else {
                    CountFile::open(dir.path(), &m).unwrap();
                }
            }
        }
        let mut weeks: Vec<String> = fs::read_dir(dir.path().join("counts"))
            .unwrap()
            .map(|e| {
                let n = e.unwrap().file_name();
                format::week_of_file_name(n.to_str().unwrap())
                    .unwrap()
                    .to_string()
            })
            .collect();
        weeks.sort_unstable();
        weeks.dedup();
        assert_eq!(
            weeks,
            [
                "2026-09-28",
                "2026-10-05",
                "2026-10-12",
                "2026-10-19",
                "2026-10-26"
            ]
        );
    }

    #[test]
    fn a_file_of_another_build_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mine = meta();
        let other = Meta::new("other", "2", "linux", "x86_64", mine.week_begin);
        let path = dir.path().join("counts").join(mine.file_name());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format::initial_image(&other)).unwrap();
        let e = CountFile::open(dir.path(), &mine).unwrap_err();
        assert!(e.to_string().contains("another build"), "{e}");
        assert!(path.exists() && !dir.path().join("corrupt").exists());
    }

    #[test]
    fn damage_while_open_stops_use_without_panic() {
        let dir = tempfile::tempdir().unwrap();
        let f = CountFile::open(dir.path(), &meta()).unwrap();
        f.cell("a").unwrap();
        // Point the chain of "a" into the header.
        let slot = TABLE_OFF + 4 * format::slot_of(b"a");
        f.current()
            .unwrap()
            .u32_at(slot)
            .unwrap()
            .store(8, Ordering::Relaxed);
        assert_eq!(f.cell("a").err(), Some(Miss::Damaged));
        assert!(f.is_broken());
        assert_eq!(f.cell("b").err(), Some(Miss::Damaged));
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
                f.current().unwrap().bytes_at(pos, 1).unwrap()[0].store(val, Ordering::Relaxed);
            }
            for i in 0..80 {
                if let Ok(c) = f.cell(&format!("n/{i}")) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}
