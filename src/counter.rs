//! The counting API: [`inc`] and [`add`] by name, and [`Counter`] for a
//! `static` counter on a hot path.
//!
//! A `static Counter` costs one atomic add once it has found its slot (on
//! first use): two loads and a `fetch_add` on the shared, mapped file. By
//! name, a lock-free hash lookup comes first. When telemetry is off, both
//! return after a load or two. Counting before [`crate::Telemetry::start`]
//! works: counts are kept in memory and moved to the file when it opens.
//!
//! Names must follow the grammar in [`crate::name`]; a counter with a bad
//! name counts nothing (use [`crate::name::check`] in a test to catch it).
//!
//! ```
//! use clearcount::counter::{self, Counter};
//! static BUILDS: Counter = Counter::new("mytool/command:build");
//! BUILDS.inc();
//! counter::inc("mytool/flag:verbose");
//! counter::add("mytool/files-seen", 12);
//! ```

use crate::registry::{self, DROP, Entry};
use crate::sys::AtomicRef;

fn lookup(name: &str) -> &'static Entry {
    if crate::telemetry::is_off() || crate::name::check(name).is_err() {
        return &DROP;
    }
    registry::find_or_insert(name, crate::telemetry::attach_new).unwrap_or(&DROP)
}

/// Adds one to the counter `name`.
#[inline]
pub fn inc(name: &str) {
    add(name, 1)
}

/// Adds `n` to the counter `name`.
#[inline]
pub fn add(name: &str, n: u64) {
    if crate::telemetry::is_off() {
        return;
    }
    match registry::find(name) {
        Some(e) => e.add(n),
        None => lookup(name).add(n),
    }
}

/// A counter with a fixed name, meant to be a `static`.
pub struct Counter {
    name: &'static str,
    entry: AtomicRef<Entry>,
}

impl Counter {
    /// A counter named `name`. Nothing happens until it is first used.
    pub const fn new(name: &'static str) -> Counter {
        Counter {
            name,
            entry: AtomicRef::new(),
        }
    }

    /// The counter's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Adds one.
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1)
    }

    /// Adds `n`.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        match self.entry.load() {
            Some(e) => e.add(n),
            None => self.add_slow(n),
        }
    }

    #[cold]
    #[inline(never)]
    fn add_slow(&self, n: u64) {
        let e = lookup(self.name);
        self.entry.set_if_empty(e).add(n);
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").field("name", &self.name).finish()
    }
}
