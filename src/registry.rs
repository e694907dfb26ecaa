//! The in-process registry: one entry per counter name this process has
//! used, each pointing at the place its counts go.
//!
//! An entry's slot is, depending on the engine's state:
//!
//! * before telemetry starts: the entry's own in-memory `pending` count;
//! * while counting: the count of its record in this week's mapped file;
//! * when off (or the name is invalid): nothing, and counts are dropped.
//!
//! Lookups are lock-free (an open-addressing table of atomic references);
//! inserting a new name and switching slots (start, week rotation) happen
//! under one mutex, off the increment path. Entries live for the whole
//! process; their number is capped so a program that makes up names at run
//! time cannot grow memory without bound.

use crate::sys::AtomicRef;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Table size (a power of two); at most half of it is used.
const TABLE_SLOTS: usize = 8192;
/// Most distinct names one process registers.
pub(crate) const MAX_ENTRIES: usize = TABLE_SLOTS / 2;

/// A counter name known to this process.
pub(crate) struct Entry {
    pub(crate) name: &'static str,
    hash: u64,
    pending: AtomicU64,
    slot: AtomicRef<AtomicU64>,
    /// The entry registered before this one (the list of all entries).
    older: AtomicRef<Entry>,
}

impl Entry {
    /// Where this counter's counts go now, if anywhere.
    #[inline(always)]
    pub(crate) fn slot(&self) -> Option<&'static AtomicU64> {
        self.slot.load()
    }

    /// Adds `n` to the counter. Every count of every API comes here; the
    /// engine's attention flag is checked first, so that a count made after
    /// the week's end goes to the new week's file (see `telemetry.rs`).
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        if crate::telemetry::ATTENTION.load(Ordering::Relaxed) {
            crate::telemetry::tend();
        }
        if let Some(c) = self.slot() {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds `n` from a signal handler: one atomic add on the slot, and
    /// nothing else (no week change, no lock). Counts waiting in memory for
    /// a file are lost if the process dies.
    pub(crate) fn add_from_signal_handler(&self, n: u64) {
        if let Some(c) = self.slot() {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// True while the counter's counts wait in memory for a file.
    pub(crate) fn is_waiting(&self) -> bool {
        self.slot().is_some_and(|c| std::ptr::eq(c, &self.pending))
    }

    /// Points the counter at `cell`, moving counts kept in memory there.
    pub(crate) fn attach(&'static self, cell: Option<&'static AtomicU64>) {
        match cell {
            Some(c) => {
                self.slot.store(Some(c));
                let n = self.pending.swap(0, Ordering::AcqRel);
                if n > 0 {
                    c.fetch_add(n, Ordering::Relaxed);
                }
            }
            None => self.slot.store(None),
        }
    }

    /// Keeps counts in memory until a file can take them.
    pub(crate) fn attach_pending(&'static self) {
        self.slot.store(Some(&self.pending));
    }
}

/// An entry that drops every count: used for invalid names and when off.
pub(crate) static DROP: Entry = Entry {
    name: "",
    hash: 0,
    pending: AtomicU64::new(0),
    slot: AtomicRef::new(),
    older: AtomicRef::new(),
};

static TABLE: [AtomicRef<Entry>; TABLE_SLOTS] = [const { AtomicRef::new() }; TABLE_SLOTS];
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The newest entry; each points to the one registered before it. Walking
/// this list touches only the entries, not the whole table.
static NEWEST: AtomicRef<Entry> = AtomicRef::new();
static LOCK: Mutex<()> = Mutex::new(());

/// The registry lock: held to insert names and to switch slots.
pub(crate) fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fast hash for short names (multiply-rotate over 8-byte words).
#[inline]
fn hash(name: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let bytes = name.as_bytes();
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Finds the entry of `name` without locking.
#[inline]
pub(crate) fn find(name: &str) -> Option<&'static Entry> {
    let h = hash(name);
    let mut i = h as usize & (TABLE_SLOTS - 1);
    for _ in 0..TABLE_SLOTS {
        match TABLE[i].load() {
            Some(e) if e.hash == h && e.name == name => return Some(e),
            Some(_) => i = (i + 1) & (TABLE_SLOTS - 1),
            None => return None,
        }
    }
    None
}

/// Finds or inserts the entry of `name` (which the caller has checked).
/// A new entry is attached with `attach_new` while the lock is held.
/// `None` when the registry is full.
pub(crate) fn find_or_insert(
    name: &str,
    attach_new: impl FnOnce(&'static Entry),
) -> Option<&'static Entry> {
    if let Some(e) = find(name) {
        return Some(e);
    }
    let _guard = lock();
    if let Some(e) = find(name) {
        return Some(e);
    }
    if COUNT.load(Ordering::Relaxed) >= MAX_ENTRIES {
        return None;
    }
    let h = hash(name);
    let entry: &'static Entry = Box::leak(Box::new(Entry {
        name: Box::leak(name.to_owned().into_boxed_str()),
        hash: h,
        pending: AtomicU64::new(0),
        slot: AtomicRef::new(),
        older: AtomicRef::new(),
    }));
    attach_new(entry);
    let mut i = h as usize & (TABLE_SLOTS - 1);
    // Under the lock nobody else inserts, and the table is at most half
    // full, so an empty slot is always found.
    while TABLE[i].load().is_some() {
        i = (i + 1) & (TABLE_SLOTS - 1);
    }
    TABLE[i].store(Some(entry));
    entry.older.store(NEWEST.load());
    NEWEST.store(Some(entry));
    COUNT.fetch_add(1, Ordering::Relaxed);
    Some(entry)
}

/// Every entry (call with the lock held for a consistent view).
pub(crate) fn entries() -> impl Iterator<Item = &'static Entry> {
    std::iter::successors(NEWEST.load(), |e| e.older.load())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_and_insert() {
        let e = find_or_insert("registry-test/a", |e| e.attach_pending()).unwrap();
        assert!(std::ptr::eq(find("registry-test/a").unwrap(), e));
        assert!(find("registry-test/b").is_none());
        e.add(3);
        assert_eq!(e.slot().unwrap().load(Ordering::Relaxed), 3);
        let same = find_or_insert("registry-test/a", |_| panic!("not new")).unwrap();
        assert!(std::ptr::eq(same, e));
    }

    #[test]
    fn hash_spreads_similar_names() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            seen.insert(hash(&format!("cmd/flag:{i}")) as usize & (TABLE_SLOTS - 1));
        }
        assert!(seen.len() > 5000, "{}", seen.len());
    }
}
