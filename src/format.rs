//! The counter file format, version 1: constants, metadata, the initial
//! image of a new file, and a reader that never trusts what it reads.
//!
//! The normative text is `counters-spec/file-format.md`; this module owns the
//! format. The writer that updates a live file in place is `countfile.rs`; it
//! uses the constants and helpers defined here.
//!
//! ```
//! use clearcount::format::{Meta, initial_image, parse};
//! let meta = Meta::new("mytool", "1.0", "linux", "x86_64",
//!     "2026-11-16".parse().unwrap());
//! let image = initial_image(&meta);
//! let parsed = parse(&image).unwrap();
//! assert_eq!(parsed.meta, meta);
//! assert!(parsed.counters.is_empty());
//! ```

use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::fmt;

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
///
/// ```
/// assert_eq!(clearcount::format::record_size(1), 24);
/// assert_eq!(clearcount::format::record_size(8), 24);
/// assert_eq!(clearcount::format::record_size(9), 32);
/// ```
pub const fn record_size(name_len: usize) -> usize {
    (RECORD_HEADER + name_len + 7) & !7
}

/// FNV-1a, 32 bits: the hash that picks a name's table slot.
///
/// ```
/// assert_eq!(clearcount::format::name_hash(b""), 0x811c9dc5);
/// assert_eq!(clearcount::format::name_hash(b"a"), 0xe40c292c);
/// ```
pub fn name_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in name {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The table slot of a name.
///
/// ```
/// assert!(clearcount::format::slot_of(b"any/name") < clearcount::format::SLOTS);
/// ```
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

/// Turns free text into a metadata value: printable ASCII without spaces,
/// other bytes replaced by `_`, at most 64 bytes, never empty.
///
/// ```
/// assert_eq!(clearcount::format::clean_value("1.0 (beta)"), "1.0_(beta)");
/// assert_eq!(clearcount::format::clean_value(""), "_");
/// ```
pub fn clean_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

impl Meta {
    /// Metadata for a week starting on `week_begin`; values are cleaned with
    /// [`clean_value`].
    ///
    /// ```
    /// let m = clearcount::format::Meta::new("t", "1", "linux", "x86_64",
    ///     "2026-11-16".parse().unwrap());
    /// assert_eq!(m.week_end.to_string(), "2026-11-23");
    /// ```
    pub fn new(program: &str, version: &str, os: &str, arch: &str, week_begin: NaiveDate) -> Meta {
        Meta {
            program: clean_value(program),
            version: clean_value(version),
            os: clean_value(os),
            arch: clean_value(arch),
            week_begin,
            week_end: week_begin + chrono::Days::new(7),
        }
    }

    /// The metadata block as stored in the file.
    ///
    /// ```
    /// let m = clearcount::format::Meta::new("t", "1", "linux", "x86_64",
    ///     "2026-11-16".parse().unwrap());
    /// assert!(m.encode().starts_with("program: t\n"));
    /// ```
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
            if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(FormatError::new(format!("metadata {k:?} has a bad value")));
            }
            Ok(v.to_string())
        };
        let date = |k: &str| -> Result<NaiveDate, FormatError> {
            get(k)?
                .parse::<NaiveDate>()
                .map_err(|_| FormatError::new(format!("metadata {k:?} is not a date")))
        };
        let meta = Meta {
            program: get("program")?,
            version: get("version")?,
            os: get("os")?,
            arch: get("arch")?,
            week_begin: date("week-begin")?,
            week_end: date("week-end")?,
        };
        if meta.week_end != meta.week_begin + chrono::Days::new(7) {
            return Err(FormatError::new("metadata week is not seven days long"));
        }
        if meta.encode().as_bytes() != text.as_bytes() {
            return Err(FormatError::new("metadata is not in canonical form"));
        }
        Ok(meta)
    }

    /// The file name for this metadata:
    /// `<program>@<version>-<os>-<arch>-<week begin>.v1.count`, with any
    /// character that is unsafe in a file name replaced by `_`.
    ///
    /// ```
    /// let m = clearcount::format::Meta::new("t", "1.0/x", "linux", "x86_64",
    ///     "2026-11-16".parse().unwrap());
    /// assert_eq!(m.file_name(), "t@1.0_x-linux-x86_64-2026-11-16.v1.count");
    /// ```
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
            "{}@{}-{}-{}-{}.v{VERSION}.count",
            safe(&self.program),
            safe(&self.version),
            safe(&self.os),
            safe(&self.arch),
            self.week_begin
        )
    }
}

/// The week-begin date in a counter file's name
/// (`…-<YYYY-MM-DD>.v1.count`), read without opening the file.
///
/// ```
/// let d = clearcount::format::week_of_file_name("t@1-linux-x86_64-2026-11-16.v1.count");
/// assert_eq!(d.unwrap().to_string(), "2026-11-16");
/// ```
pub fn week_of_file_name(name: &str) -> Option<NaiveDate> {
    let stem = name.strip_suffix(&format!(".v{}.count", VERSION))?;
    let date = stem.get(stem.len().checked_sub(10)?..)?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// Why bytes are not a valid counter file.
///
/// ```
/// let err = clearcount::format::parse(b"short").unwrap_err();
/// assert!(err.to_string().contains("too short"));
/// ```
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

/// Reads and checks the header and metadata. `bytes` is the start of the file
/// (at least [`DATA_OFF`] bytes) and `file_len` the file's full length.
///
/// ```
/// use clearcount::format::*;
/// let m = Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap());
/// let image = initial_image(&m);
/// assert_eq!(parse_header(&image, image.len()).unwrap().alloc, DATA_OFF);
/// ```
pub fn parse_header(bytes: &[u8], file_len: usize) -> Result<Header, FormatError> {
    if bytes.len() < DATA_OFF || file_len < CHUNK {
        return Err(FormatError::new(format!(
            "file is too short ({file_len} bytes, at least {CHUNK} expected)"
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
    if alloc < DATA_OFF as u64 || alloc > file_len as u64 || !alloc.is_multiple_of(8) {
        return Err(FormatError::new(format!(
            "allocation pointer {alloc} is outside the data area"
        )));
    }
    Ok(Header {
        meta,
        alloc: alloc as usize,
    })
}

/// The first [`CHUNK`] bytes of a new, empty counter file.
///
/// ```
/// use clearcount::format::*;
/// let m = Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap());
/// let image = initial_image(&m);
/// assert_eq!(image.len(), CHUNK);
/// assert_eq!(&image[..8], b"CLRCOUNT");
/// ```
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

/// Reads a whole counter file. Every offset is bounds-checked, every chain is
/// walked with a step limit (so a cycle cannot hang the reader), every name
/// must follow the grammar and sit in its own hash slot, and no name may
/// appear twice. Any violation is an error; nothing is guessed.
///
/// ```
/// use clearcount::format::*;
/// let m = Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap());
/// let mut image = initial_image(&m);
/// image[20] ^= 1; // damage the header
/// assert!(parse(&image).is_err());
/// ```
pub fn parse(bytes: &[u8]) -> Result<Parsed, FormatError> {
    parse_used(bytes, bytes.len())
}

/// Like [`parse`], for the used part of a file: `bytes` holds at least the
/// file's first `alloc` bytes (the allocation pointer), `file_len` is the
/// file's full length. Lets a writer check a file without reading its
/// unused tail.
///
/// ```
/// use clearcount::format::*;
/// let m = Meta::new("t", "1", "linux", "x86_64", "2026-11-16".parse().unwrap());
/// let image = initial_image(&m);
/// assert!(parse_used(&image[..DATA_OFF], image.len()).is_ok());
/// assert!(parse_used(&image[..DATA_OFF - 1], image.len()).is_err());
/// ```
pub fn parse_used(bytes: &[u8], file_len: usize) -> Result<Parsed, FormatError> {
    let header = parse_header(bytes, file_len)?;
    let alloc = header.alloc;
    if bytes.len() < alloc {
        return Err(FormatError::new(format!(
            "file ends at {} bytes, before its allocation pointer {alloc}",
            bytes.len()
        )));
    }
    let mut parsed = Parsed {
        meta: header.meta,
        counters: BTreeMap::new(),
        stacks: BTreeMap::new(),
        records: 0,
    };
    let max_records = (alloc - DATA_OFF) / record_size(1);
    let mut seen = std::collections::BTreeSet::new();
    for slot in 0..SLOTS {
        let mut off = u32_le(bytes, TABLE_OFF + 4 * slot) as usize;
        let mut steps = 0usize;
        while off != 0 {
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
    Ok(parsed)
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
}
