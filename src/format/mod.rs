//! The counter file format, version 1: constants, metadata, the initial
//! image of a new file, and a reader that never trusts what it reads.
//!
//! The normative text is `counters-spec/file-format.md`; this module owns the
//! format. The writer that updates a live file in place is `countfile.rs`; it
//! uses the constants and helpers defined here.
//!

use chrono::NaiveDate;
use clearcount_protocol::field::clean_value;
pub(crate) use clearcount_protocol::field::parse_day as parse_date;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The first eight bytes of every counter file.
pub const MAGIC: [u8; 8] = *b"CLRCOUNT";
/// The format version this module reads and writes.
pub const VERSION: u32 = 1;
/// Size of the fixed header; the metadata follows it.
pub const HEADER_LEN: usize = 64;
/// Largest metadata block.
pub const META_MAX: usize = TABLE_OFF - HEADER_LEN;
/// Offset of the hash table.
pub const TABLE_OFF: usize = 1024;
/// Number of hash table slots (a power of two).
pub const SLOTS: usize = 1024;
/// Offset of the first record.
pub const DATA_OFF: usize = TABLE_OFF + 4 * SLOTS;
/// The file grows in steps of this many bytes; its size is a multiple of it.
pub const CHUNK: usize = 64 * 1024;
/// Writers never grow a file past this size.
pub const MAX_FILE: usize = 2 * 1024 * 1024;
/// Size of a record's fixed part: count (8), next (4), name length (4).
pub const RECORD_HEADER: usize = 16;
/// Longest name a record may hold.
pub const MAX_RECORD_NAME: usize = crate::name::MAX_STACK_NAME;

/// Header field offsets (see the spec for the full table).
pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_HEADER_LEN: usize = 12;
pub(crate) const OFF_META_LEN: usize = 16;
pub(crate) const OFF_TABLE: usize = 20;
pub(crate) const OFF_SLOTS: usize = 24;
pub(crate) const OFF_DATA: usize = 28;
pub(crate) const OFF_CHUNK: usize = 32;
pub(crate) const OFF_MAX: usize = 36;
/// Offset of the allocation pointer (u64, updated atomically).
pub(crate) const OFF_ALLOC: usize = 40;
pub(crate) const OFF_CHECKSUM: usize = 48;

/// The bytes a record with a name of `name_len` bytes takes, padding included.
pub const fn record_size(name_len: usize) -> usize {
    (RECORD_HEADER + name_len + 7) & !7
}

/// FNV-1a, 32 bits: the hash that picks a name's table slot.
pub fn name_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The table slot of a name.
pub fn slot_of(name: &[u8]) -> usize {
    name_hash(name) as usize & (SLOTS - 1)
}

/// FNV-1a, 64 bits: the header checksum.
fn checksum(header: &[u8], meta: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in header.iter().chain(meta) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What a counter file is about: one program build, one week.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Program name.
    pub program: String,
    /// Program version.
    pub version: String,
    /// Operating system.
    pub os: String,
    /// Processor architecture.
    pub arch: String,
    /// First day of the week counted.
    pub week_begin: NaiveDate,
    /// The day after the last day counted (`week_begin` + 7 days).
    pub week_end: NaiveDate,
}

impl Meta {
    /// Metadata for a week starting on `week_begin`; values are cleaned with
    /// [`clean_value`].
    pub fn new(program: &str, version: &str, os: &str, arch: &str, week_begin: NaiveDate) -> Meta {
        Meta {
            program: clean_value(program),
            version: clean_value(version),
            os: clean_value(os),
            arch: clean_value(arch),
            week_begin,
            // Only the last days of year 9999 have no next week; callers
            // refuse such dates (see `telemetry.rs`).
            week_end: week_begin
                .checked_add_days(chrono::Days::new(7))
                .unwrap_or(NaiveDate::MAX),
        }
    }

    /// The metadata block as stored in the file.
    pub fn encode(&self) -> String {
        format!(
            "program: {}\nversion: {}\nos: {}\narch: {}\nweek-begin: {}\nweek-end: {}\n",
            self.program, self.version, self.os, self.arch, self.week_begin, self.week_end
        )
    }

    fn decode(text: &[u8]) -> Result<Meta, FormatError> {
        let text =
            std::str::from_utf8(text).map_err(|_| FormatError::new("metadata is not UTF-8"))?;
        let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
        for line in text.lines() {
            let (k, v) = line.split_once(": ").ok_or_else(|| {
                FormatError::new(format!("metadata line {line:?} is not 'key: value'"))
            })?;
            if fields.insert(k, v).is_some() {
                return Err(FormatError::new(format!(
                    "metadata key {k:?} appears twice"
                )));
            }
        }
        let get = |k: &str| -> Result<String, FormatError> {
            let v = fields
                .get(k)
                .ok_or_else(|| FormatError::new(format!("metadata has no {k:?}")))?;
            if !clearcount_protocol::field::is_value(v) {
                return Err(FormatError::new(format!("metadata {k:?} has a bad value")));
            }
            Ok(v.to_string())
        };
        let date = |k: &str| -> Result<NaiveDate, FormatError> {
            parse_date(&get(k)?)
                .ok_or_else(|| FormatError::new(format!("metadata {k:?} is not a YYYY-MM-DD date")))
        };
        let meta = Meta {
            program: get("program")?,
            version: get("version")?,
            os: get("os")?,
            arch: get("arch")?,
            week_begin: date("week-begin")?,
            week_end: date("week-end")?,
        };
        if meta.week_begin.checked_add_days(chrono::Days::new(7)) != Some(meta.week_end) {
            return Err(FormatError::new("metadata week is not seven days long"));
        }
        if meta.encode().as_bytes() != text.as_bytes() {
            return Err(FormatError::new("metadata is not in canonical form"));
        }
        Ok(meta)
    }

    /// A short, case-free identifier of the build (program, version, OS,
    /// arch): eight lower-case hex digits of FNV-1a 32 over the four
    /// metadata values, each followed by `\n`. It keeps builds apart whose
    /// readable file names coincide (characters a file name cannot hold, or
    /// a case-insensitive file system).
    pub fn build_id(&self) -> String {
        let mut text = Vec::new();
        for v in [&self.program, &self.version, &self.os, &self.arch] {
            text.extend_from_slice(v.as_bytes());
            text.push(b'\n');
        }
        format!("{:08x}", name_hash(&text))
    }

    /// The file name for this metadata:
    /// `<program>@<version>-<os>-<arch>-<week begin>-<build id>.v1.count`,
    /// with any character that is unsafe in a file name replaced by `_` in
    /// the readable parts; the [build id](Meta::build_id) keeps builds
    /// whose readable parts coincide apart.
    pub fn file_name(&self) -> String {
        let safe = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!(
            "{}@{}-{}-{}-{}-{}.v{VERSION}.count",
            safe(&self.program),
            safe(&self.version),
            safe(&self.os),
            safe(&self.arch),
            self.week_begin,
            self.build_id()
        )
    }
}

/// The week-begin date in a counter file's name
/// (`…-<YYYY-MM-DD>-<build id>.v1.count`), read without opening the file.
pub fn week_of_file_name(name: &str) -> Option<NaiveDate> {
    let stem = name.strip_suffix(&format!(".v{}.count", VERSION))?;
    let (rest, id) = stem.rsplit_once('-')?;
    if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    parse_date(rest.get(rest.len().checked_sub(10)?..)?)
}

/// Why bytes are not a valid counter file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    reason: String,
}

impl FormatError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        FormatError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt counter file: {}", self.reason)
    }
}

impl std::error::Error for FormatError {}

fn u32_le(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_le(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// The header of a file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The metadata.
    pub meta: Meta,
    /// The allocation pointer when read: records lie in `[DATA_OFF, alloc)`.
    pub alloc: usize,
}

/// Reads and checks the header and metadata: `bytes` holds at least the
/// file's first [`TABLE_OFF`] bytes. The allocation pointer must be 8-byte
/// aligned and lie in `[DATA_OFF, MAX_FILE]`; whether the file is long
/// enough for it is [`check_length`]'s question.
pub fn parse_header(bytes: &[u8]) -> Result<Header, FormatError> {
    if bytes.len() < TABLE_OFF {
        return Err(FormatError::new(format!(
            "file is too short ({} bytes, at least {CHUNK} expected)",
            bytes.len()
        )));
    }
    if bytes[..8] != MAGIC {
        return Err(FormatError::new(
            "bad magic (not a clearcount counter file)",
        ));
    }
    let version = u32_le(bytes, OFF_VERSION);
    if version != VERSION {
        return Err(FormatError::new(format!(
            "format version {version}, this reader knows version {VERSION}"
        )));
    }
    let expect = [
        (OFF_HEADER_LEN, HEADER_LEN, "header length"),
        (OFF_TABLE, TABLE_OFF, "table offset"),
        (OFF_SLOTS, SLOTS, "table slots"),
        (OFF_DATA, DATA_OFF, "data offset"),
        (OFF_CHUNK, CHUNK, "chunk size"),
        (OFF_MAX, MAX_FILE, "maximum size"),
    ];
    for (off, want, what) in expect {
        let got = u32_le(bytes, off) as usize;
        if got != want {
            return Err(FormatError::new(format!(
                "{what} is {got}, expected {want}"
            )));
        }
    }
    let meta_len = u32_le(bytes, OFF_META_LEN) as usize;
    if meta_len > META_MAX {
        return Err(FormatError::new(format!(
            "metadata length {meta_len} is too large"
        )));
    }
    let meta_bytes = &bytes[HEADER_LEN..HEADER_LEN + meta_len];
    if checksum(&bytes[..OFF_ALLOC], meta_bytes) != u64_le(bytes, OFF_CHECKSUM) {
        return Err(FormatError::new("header checksum does not match"));
    }
    let meta = Meta::decode(meta_bytes)?;
    let alloc = u64_le(bytes, OFF_ALLOC);
    if alloc < DATA_OFF as u64 || alloc > MAX_FILE as u64 || !alloc.is_multiple_of(8) {
        return Err(FormatError::new(format!(
            "allocation pointer {alloc} is outside the data area"
        )));
    }
    Ok(Header {
        meta,
        alloc: alloc as usize,
    })
}

/// The part of a file of `len` bytes that writers use: its length rounded
/// down to a whole number of chunks (a grower that died may have left a
/// partial chunk past it).
pub const fn usable_len(len: u64) -> usize {
    let len = if len > MAX_FILE as u64 {
        MAX_FILE
    } else {
        len as usize
    };
    len / CHUNK * CHUNK
}

/// Checks a file's length against an allocation pointer read *before* the
/// length: the file must be at least [`CHUNK`] and at most [`MAX_FILE`]
/// bytes long, and its whole chunks must cover the allocation pointer
/// (writers grow the file before they move the pointer, and a file never
/// shrinks, so this holds for a file in use too).
pub fn check_length(len: u64, alloc: usize) -> Result<(), FormatError> {
    if len < CHUNK as u64 {
        return Err(FormatError::new(format!(
            "file is too short ({len} bytes, at least {CHUNK} expected)"
        )));
    }
    if len > MAX_FILE as u64 {
        return Err(FormatError::new(format!(
            "file is {len} bytes, longer than the limit of {MAX_FILE}"
        )));
    }
    if alloc > usable_len(len) {
        return Err(FormatError::new(format!(
            "allocation pointer {alloc} is past the file's written chunks ({len} bytes)"
        )));
    }
    Ok(())
}

/// The first [`CHUNK`] bytes of a new, empty counter file.
pub fn initial_image(meta: &Meta) -> Vec<u8> {
    let mut b = vec![0u8; CHUNK];
    let meta_text = meta.encode();
    // Values are at most 64 bytes each, so the block always fits.
    let meta_bytes = &meta_text.as_bytes()[..meta_text.len().min(META_MAX)];
    b[..8].copy_from_slice(&MAGIC);
    let put32 = |b: &mut [u8], off: usize, v: usize| {
        b[off..off + 4].copy_from_slice(&(v as u32).to_le_bytes())
    };
    put32(&mut b, OFF_VERSION, VERSION as usize);
    put32(&mut b, OFF_HEADER_LEN, HEADER_LEN);
    put32(&mut b, OFF_META_LEN, meta_bytes.len());
    put32(&mut b, OFF_TABLE, TABLE_OFF);
    put32(&mut b, OFF_SLOTS, SLOTS);
    put32(&mut b, OFF_DATA, DATA_OFF);
    put32(&mut b, OFF_CHUNK, CHUNK);
    put32(&mut b, OFF_MAX, MAX_FILE);
    b[OFF_ALLOC..OFF_ALLOC + 8].copy_from_slice(&(DATA_OFF as u64).to_le_bytes());
    b[HEADER_LEN..HEADER_LEN + meta_bytes.len()].copy_from_slice(meta_bytes);
    let sum = checksum(&b[..OFF_ALLOC], meta_bytes);
    b[OFF_CHECKSUM..OFF_CHECKSUM + 8].copy_from_slice(&sum.to_le_bytes());
    b
}

/// Everything a counter file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The file's metadata.
    pub meta: Meta,
    /// Plain counters with a non-zero count: name → count.
    pub counters: BTreeMap<String, u64>,
    /// Stack counters with a non-zero count: name → count.
    pub stacks: BTreeMap<String, u64>,
    /// Number of records, zero counts included.
    pub records: usize,
}

/// Reads a complete counter file at rest (no process writing it). Every
/// offset is bounds-checked, every chain is walked with a step limit (so a
/// cycle cannot hang the reader), every name must follow the grammar and sit
/// in its own hash slot, and no name may appear twice. Any violation is an
/// error; nothing is guessed. A file that other processes may be writing is
/// read with [`read_file`] instead.
#[cfg(test)]
pub fn parse(bytes: &[u8]) -> Result<Parsed, FormatError> {
    let header = parse_header(bytes)?;
    check_length(bytes.len() as u64, header.alloc)?;
    let (parsed, _) = walk(&bytes[..header.alloc], header.meta, false)?;
    Ok(parsed)
}

/// Why a counter file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is damaged: the same damage was seen on every attempt.
    Corrupt(FormatError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot read counter file: {e}"),
            ReadError::Corrupt(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// Everything a counter file holds, as [`dump`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterFile {
    /// The program.
    pub program: String,
    /// Its version.
    pub version: String,
    /// The operating system it ran on (`linux`, `macos`, `windows`, …).
    pub os: String,
    /// The processor architecture (`x86_64`, `aarch64`, …).
    pub arch: String,
    /// The first day of the week counted, `YYYY-MM-DD`.
    pub week_begin: String,
    /// The day after the last day counted, `YYYY-MM-DD`.
    pub week_end: String,
    /// Records in the file, zero counts included.
    pub records: usize,
    /// Plain counters with a non-zero count: name → count.
    pub counters: BTreeMap<String, u64>,
    /// Stack counters with a non-zero count: name (with its frames, one per
    /// line) → count.
    pub stacks: BTreeMap<String, u64>,
}

/// Why [`dump`] could not read a counter file.
#[derive(Debug)]
pub enum DumpError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is damaged: the same damage was seen on every attempt. The
    /// text says what, in one line.
    Corrupt(String),
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "cannot read counter file: {e}"),
            DumpError::Corrupt(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DumpError {}

/// Reads any counter file, including one that other processes are writing
/// at this moment, and checks it as `counters-spec/file-format.md` §6 says:
/// what a concurrent writer may show is tolerated, and only damage seen on
/// every one of three reads is reported. This is the reader for other tools
/// (`clearcount dump` prints what it returns).
///
/// ```no_run
/// let f = clearcount::dump("counts/mytool@1.0-linux-x86_64-2026-11-16-0a1b2c3d.v1.count".as_ref())?;
/// for (name, n) in &f.counters {
///     println!("{n:>8} {name}");
/// }
/// # Ok::<(), clearcount::DumpError>(())
/// ```
pub fn dump(path: &Path) -> Result<CounterFile, DumpError> {
    match read_file(path) {
        Ok(p) => Ok(CounterFile {
            program: p.meta.program,
            version: p.meta.version,
            os: p.meta.os,
            arch: p.meta.arch,
            week_begin: p.meta.week_begin.to_string(),
            week_end: p.meta.week_end.to_string(),
            records: p.records,
            counters: p.counters,
            stacks: p.stacks,
        }),
        Err(ReadError::Io(e)) => Err(DumpError::Io(e)),
        Err(ReadError::Corrupt(e)) => Err(DumpError::Corrupt(e.to_string())),
    }
}

/// How many times [`read_file`] reads a file before it calls it damaged.
pub const READ_ATTEMPTS: u32 = 3;

/// Reads a counter file that other processes may be writing at this very
/// moment, in the order `counters-spec/file-format.md` §6 gives: the header
/// and its allocation pointer first, then the file's length, then the used
/// part. A link to a record past the allocation pointer read first is a
/// record added meanwhile: it is left out (as if the file had been read a
/// moment earlier), once the pointer, read again, covers it. Anything else
/// wrong is read again, up to [`READ_ATTEMPTS`] times, a few milliseconds
/// apart; only damage seen on every attempt is reported as
/// [`ReadError::Corrupt`].
pub fn read_file(path: &Path) -> Result<Parsed, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    read_live(&file)
}

/// [`read_file`] on an open file.
pub(crate) fn read_live(file: &std::fs::File) -> Result<Parsed, ReadError> {
    let mut last = FormatError::new("not read");
    for attempt in 0..READ_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
        }
        match read_once(file).map_err(ReadError::Io)? {
            Ok(parsed) => return Ok(parsed),
            Err(e) => last = e,
        }
    }
    Err(ReadError::Corrupt(last))
}

fn read_once(file: &std::fs::File) -> std::io::Result<Result<Parsed, FormatError>> {
    // 1. The header, with the allocation pointer A.
    let mut head = [0u8; TABLE_OFF];
    let n = crate::fsutil::read_at_most(file, &mut head, 0)?;
    let header = match parse_header(&head[..n]) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    // 2. The length, read after A: it covers A in a healthy file.
    let len = file.metadata()?.len();
    if let Err(e) = check_length(len, header.alloc) {
        return Ok(Err(e));
    }
    // 3. The used part, [0, A).
    let mut bytes = vec![0u8; header.alloc];
    if crate::fsutil::read_at_most(file, &mut bytes, 0)? < header.alloc {
        return Ok(Err(FormatError::new(
            "file ends before its allocation pointer",
        )));
    }
    let (parsed, past) = match walk(&bytes, header.meta, true) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    // 4. Links past A must point to records allocated since: A, read again
    //    now, must cover their fixed part.
    if let Some(&far) = past.iter().max() {
        let mut a = [0u8; 8];
        if crate::fsutil::read_at_most(file, &mut a, OFF_ALLOC as u64)? < 8 {
            return Ok(Err(FormatError::new("file ends in its header")));
        }
        let now = u64::from_le_bytes(a);
        if far as u64 + RECORD_HEADER as u64 > now {
            return Ok(Err(FormatError::new(format!(
                "a link points to {far}, past the allocation pointer {now}"
            ))));
        }
    }
    Ok(Ok(parsed))
}

/// Walks every chain of `bytes`, the file's first `A` bytes (`A` being the
/// allocation pointer, `bytes.len()`). With `live`, a link to an aligned
/// offset at or past `A` ends its chain and is returned, for the caller to
/// check against a fresh allocation pointer; without, it is damage.
fn walk(bytes: &[u8], meta: Meta, live: bool) -> Result<(Parsed, Vec<usize>), FormatError> {
    let alloc = bytes.len();
    let mut parsed = Parsed {
        meta,
        counters: BTreeMap::new(),
        stacks: BTreeMap::new(),
        records: 0,
    };
    let mut past = Vec::new();
    let max_records = (alloc - DATA_OFF) / record_size(1);
    let mut seen = std::collections::BTreeSet::new();
    for slot in 0..SLOTS {
        let mut off = u32_le(bytes, TABLE_OFF + 4 * slot) as usize;
        let mut steps = 0usize;
        while off != 0 {
            if live && off >= alloc && off.is_multiple_of(8) && off < MAX_FILE {
                past.push(off);
                break;
            }
            steps += 1;
            if steps > max_records {
                return Err(FormatError::new(format!("chain of slot {slot} loops")));
            }
            let rec = check_record(bytes, off, alloc)?;
            let name = rec.name;
            if slot_of(name.as_bytes()) != slot {
                return Err(FormatError::new(format!(
                    "record at {off} is in slot {slot}, its name hashes elsewhere"
                )));
            }
            if !seen.insert(name.clone()) {
                return Err(FormatError::new(format!("name {name:?} appears twice")));
            }
            parsed.records += 1;
            if rec.count > 0 {
                if name.contains('\n') {
                    parsed.stacks.insert(name, rec.count);
                } else {
                    parsed.counters.insert(name, rec.count);
                }
            }
            off = rec.next;
        }
    }
    Ok((parsed, past))
}

struct Record {
    count: u64,
    next: usize,
    name: String,
}

fn check_record(bytes: &[u8], off: usize, alloc: usize) -> Result<Record, FormatError> {
    if !off.is_multiple_of(8) || off < DATA_OFF || off + RECORD_HEADER > alloc {
        return Err(FormatError::new(format!(
            "record offset {off} is out of bounds"
        )));
    }
    let count = u64_le(bytes, off);
    let next = u32_le(bytes, off + 8) as usize;
    let len = u32_le(bytes, off + 12) as usize;
    if len == 0 || len > MAX_RECORD_NAME || off + record_size(len) > alloc {
        return Err(FormatError::new(format!(
            "record at {off} has a bad name length {len}"
        )));
    }
    let name = std::str::from_utf8(&bytes[off + RECORD_HEADER..off + RECORD_HEADER + len])
        .map_err(|_| FormatError::new(format!("record at {off} has a name that is not UTF-8")))?;
    crate::name::check_any(name).map_err(|e| FormatError::new(format!("record at {off}: {e}")))?;
    Ok(Record {
        count,
        next,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap())
    }

    /// Appends a record by hand, the way a writer would.
    pub(crate) fn push(image: &mut [u8], name: &str, count: u64) -> usize {
        let alloc = u64_le(image, OFF_ALLOC) as usize;
        let off = alloc;
        image[off..off + 8].copy_from_slice(&count.to_le_bytes());
        image[off + 12..off + 16].copy_from_slice(&(name.len() as u32).to_le_bytes());
        image[off + 16..off + 16 + name.len()].copy_from_slice(name.as_bytes());
        let new_alloc = off + record_size(name.len());
        image[OFF_ALLOC..OFF_ALLOC + 8].copy_from_slice(&(new_alloc as u64).to_le_bytes());
        // link at the tail of the slot's chain
        let mut link = TABLE_OFF + 4 * slot_of(name.as_bytes());
        loop {
            let cur = u32_le(image, link) as usize;
            if cur == 0 {
                image[link..link + 4].copy_from_slice(&(off as u32).to_le_bytes());
                break;
            }
            link = cur + 8;
        }
        off
    }

    #[test]
    fn reads_what_was_written() {
        let mut img = initial_image(&meta());
        push(&mut img, "a/b", 3);
        push(&mut img, "zero", 0);
        push(&mut img, "crash/panic\nmain:+1", 1);
        let p = parse(&img).unwrap();
        assert_eq!(p.counters.get("a/b"), Some(&3));
        assert!(!p.counters.contains_key("zero"));
        assert_eq!(p.stacks.get("crash/panic\nmain:+1"), Some(&1));
        assert_eq!(p.records, 3);
    }

    #[test]
    fn dates_have_one_spelling() {
        assert_eq!(parse_date("2026-02-28").unwrap().to_string(), "2026-02-28");
        for bad in [
            "2026-2-28",
            "+2026-02-28",
            "2026-02-30",
            "20260228",
            "2026-02-28 ",
            "",
        ] {
            assert!(parse_date(bad).is_none(), "{bad:?}");
        }
        // The last week of year 9999 has no end: refused, never a panic.
        let mut m = meta();
        m.week_begin = "9999-12-30".parse().unwrap();
        m.week_end = NaiveDate::MAX;
        assert!(Meta::decode(m.encode().as_bytes()).is_err());
    }

    #[test]
    fn file_names_carry_the_build_id() {
        let m = meta();
        let name = m.file_name();
        assert_eq!(week_of_file_name(&name), Some(m.week_begin));
        assert!(name.ends_with(&format!("-{}.v1.count", m.build_id())));
        // The name before build ids, and a name with a bad id.
        assert_eq!(
            week_of_file_name("t@1-linux-x86_64-2026-11-16.v1.count"),
            None
        );
        assert_eq!(
            week_of_file_name("t@1-linux-x86_64-2026-11-16-0A1B2C3D.v1.count"),
            None
        );
        let other = Meta::new("t", "1/x", "linux", "x86_64", m.week_begin);
        let same_text = Meta::new("t", "1_x", "linux", "x86_64", m.week_begin);
        assert_ne!(other.file_name(), same_text.file_name());
    }

    #[test]
    fn a_link_past_the_pointer_is_live_only_if_the_pointer_moves_on() {
        let mut img = initial_image(&meta());
        push(&mut img, "a/b", 3);
        let alloc = u64_le(&img, OFF_ALLOC) as usize;
        // A writer allocated "c/d" at `alloc` and linked it, but the header
        // still shows the old pointer (read before the allocation).
        let off = push(&mut img, "c/d", 1);
        assert_eq!(off, alloc);
        img[OFF_ALLOC..OFF_ALLOC + 8].copy_from_slice(&(alloc as u64).to_le_bytes());
        // Walked as a file in use, the new record is left out, not damage.
        let (p, past) = walk(&img[..alloc], meta(), true).unwrap();
        assert_eq!(p.counters.len(), 1);
        assert_eq!(past, [off]);
        // At rest, or if the pointer read again does not cover it: damage.
        assert!(parse(&img).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.v1.count");
        std::fs::write(&path, &img).unwrap();
        let e = read_file(&path).unwrap_err();
        assert!(e.to_string().contains("past the allocation pointer"), "{e}");
        // With the pointer moved on, the same file reads, new record included.
        img[OFF_ALLOC..OFF_ALLOC + 8]
            .copy_from_slice(&((off + record_size(3)) as u64).to_le_bytes());
        std::fs::write(&path, &img).unwrap();
        assert_eq!(read_file(&path).unwrap().counters.len(), 2);
    }

    #[test]
    fn length_rules() {
        let img = initial_image(&meta());
        // A partial chunk past the whole ones is allowed; a longer file is not.
        let mut longer = img.clone();
        longer.extend_from_slice(&[0u8; 100]);
        assert!(parse(&longer).is_ok());
        let mut huge = img.clone();
        huge.resize(MAX_FILE + 8, 0);
        assert!(
            parse(&huge)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        // The reserved field is ignored.
        let mut reserved = img.clone();
        reserved[56] = 7;
        assert!(parse(&reserved).is_ok());
    }

    #[test]
    fn detects_damage() {
        let mut img = initial_image(&meta());
        let off = push(&mut img, "a/b", 3);
        // a loop: the record points to itself
        let mut looped = img.clone();
        looped[off + 8..off + 12].copy_from_slice(&(off as u32).to_le_bytes());
        assert!(parse(&looped).unwrap_err().to_string().contains("loops"));
        // a name length past the allocation pointer
        let mut long = img.clone();
        long[off + 12..off + 16].copy_from_slice(&4000u32.to_le_bytes());
        assert!(parse(&long).is_err());
        // an offset outside the data area
        let mut wild = img.clone();
        let slot = TABLE_OFF + 4 * slot_of(b"a/b");
        wild[slot..slot + 4].copy_from_slice(&8u32.to_le_bytes());
        assert!(parse(&wild).is_err());
        // a future version
        let mut future = img.clone();
        future[OFF_VERSION] = 2;
        assert!(
            parse(&future)
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
        // truncated
        assert!(parse(&img[..CHUNK - 1]).is_err());
        // a bad name
        let mut bad = img.clone();
        bad[off + 17] = b' ';
        assert!(parse(&bad).is_err());
    }

    /// The values the spec fixes, and a new file as the spec lays it out:
    /// another writer must agree on every one of them.
    #[test]
    fn spec_values_and_a_new_file() {
        // A record is 16 bytes and the name, padded to a multiple of 8.
        assert_eq!(record_size(1), 24);
        assert_eq!(record_size(8), 24);
        assert_eq!(record_size(9), 32);
        // FNV-1a, 32 bits, picks the slot.
        assert_eq!(name_hash(b""), 0x811c9dc5);
        assert_eq!(name_hash(b"a"), 0xe40c292c);
        let m = Meta::new(
            "t",
            "1.0/x",
            "linux",
            "x86_64",
            "2026-11-16".parse().unwrap(),
        );
        assert_eq!(m.week_end.to_string(), "2026-11-23");
        assert!(m.encode().starts_with("program: t\nversion: 1.0/x\n"));
        let name = m.file_name();
        assert!(
            name.starts_with("t@1.0_x-linux-x86_64-2026-11-16-"),
            "{name}"
        );
        let image = initial_image(&m);
        assert_eq!(image.len(), CHUNK);
        assert_eq!(&image[..8], b"CLRCOUNT");
        assert_eq!(parse_header(&image).unwrap().alloc, DATA_OFF);
        let p = parse(&image).unwrap();
        assert_eq!(p.meta, m);
        assert!(p.counters.is_empty() && p.stacks.is_empty());
        // Damage is named in the error.
        let mut bad_sum = image.clone();
        bad_sum[OFF_CHECKSUM] ^= 1;
        let e = parse(&bad_sum).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let e = parse(b"short").unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
    }
}
