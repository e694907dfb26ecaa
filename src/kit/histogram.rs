//! Histogram-style counters: a measured duration or size becomes one count
//! in one bucket, so a toolchain counts timings without sending raw values.
//!
//! A [`Histogram`] has a name and bucket edges, declared once (as a
//! `static`). With edges `[10, 100, 1000]` in milliseconds the buckets are
//!
//! ```text
//! mytool/build-time:<10ms  mytool/build-time:<100ms  mytool/build-time:<1s  mytool/build-time:>=1s
//! ```
//!
//! and [`Histogram::declaration`] gives the bucket set for the declared
//! counters file: `mytool/build-time:{<10ms,<100ms,<1s,>=1s}`.
//!
//! ```
//! use clearcount::kit::histogram::Histogram;
//! use std::time::Instant;
//! static BUILD_TIME: Histogram = Histogram::durations_ms("mytool/build-time", &[10, 100, 1000]);
//! let t = Instant::now();
//! // ... build ...
//! BUILD_TIME.record_duration(t.elapsed());
//! assert!(BUILD_TIME.check().is_ok());
//! ```

use crate::counter::Counter;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Most edges a histogram may have (it then has one bucket more).
pub const MAX_EDGES: usize = 32;

/// What a histogram's values are, which picks how bucket edges are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds: edges written `10ms`, `1s` (whole seconds).
    Millis,
    /// Microseconds: edges written `50us`, `10ms`, `2s`.
    Micros,
    /// Bytes: edges written `512B`, `4KiB`, `1MiB` (powers of 1024) or
    /// `10kB`, `5MB` (powers of 1000).
    Bytes,
    /// Plain numbers: edges written as they are (`10`, `100`).
    Plain,
}

impl Unit {
    /// How an edge is written in a bucket name.
    ///
    /// ```
    /// use clearcount::kit::histogram::Unit;
    /// assert_eq!(Unit::Millis.label(1000), "1s");
    /// assert_eq!(Unit::Millis.label(250), "250ms");
    /// assert_eq!(Unit::Micros.label(5000), "5ms");
    /// assert_eq!(Unit::Bytes.label(4096), "4KiB");
    /// assert_eq!(Unit::Bytes.label(10_000), "10kB");
    /// assert_eq!(Unit::Plain.label(7), "7");
    /// ```
    pub fn label(self, v: u64) -> String {
        fn scaled(v: u64, steps: &[(u64, &str)], base: &str) -> String {
            for &(div, unit) in steps {
                if v >= div && v.is_multiple_of(div) {
                    return format!("{}{unit}", v / div);
                }
            }
            format!("{v}{base}")
        }
        match self {
            Unit::Millis => scaled(v, &[(1000, "s")], "ms"),
            Unit::Micros => scaled(v, &[(1_000_000, "s"), (1000, "ms")], "us"),
            Unit::Bytes => scaled(
                v,
                &[
                    (1 << 40, "TiB"),
                    (1 << 30, "GiB"),
                    (1 << 20, "MiB"),
                    (1 << 10, "KiB"),
                    (1_000_000_000_000, "TB"),
                    (1_000_000_000, "GB"),
                    (1_000_000, "MB"),
                    (1000, "kB"),
                ],
                "B",
            ),
            Unit::Plain => v.to_string(),
        }
    }
}

/// A histogram counter: a name, bucket edges and a unit; meant to be a
/// `static`. A histogram whose edges or name are not valid (see
/// [`Histogram::check`]) counts nothing; it never panics.
///
/// ```
/// use clearcount::kit::histogram::{Histogram, Unit};
/// static OUTPUT_SIZE: Histogram = Histogram::new("mytool/output-size", &[1024, 1 << 20], Unit::Bytes);
/// OUTPUT_SIZE.record(300_000);
/// assert_eq!(OUTPUT_SIZE.bucket(300_000).unwrap(), "mytool/output-size:<1MiB");
/// ```
pub struct Histogram {
    name: &'static str,
    edges: &'static [u64],
    unit: Unit,
    /// One counter per bucket, made on first use; `None` if invalid.
    counters: OnceLock<Option<Box<[Counter]>>>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("name", &self.name)
            .field("edges", &self.edges)
            .field("unit", &self.unit)
            .finish()
    }
}

impl Histogram {
    /// A histogram named `name` (a counter name without bucket) with
    /// bucket `edges` (strictly increasing, 1 to [`MAX_EDGES`]) in `unit`.
    /// A value `v` goes to the first bucket `<edge` with `v < edge`, or to
    /// `>=last edge`.
    ///
    /// ```
    /// use clearcount::kit::histogram::{Histogram, Unit};
    /// static FILES: Histogram = Histogram::new("mytool/files", &[10, 100], Unit::Plain);
    /// assert_eq!(FILES.bucket_names(), ["mytool/files:<10", "mytool/files:<100", "mytool/files:>=100"]);
    /// ```
    pub const fn new(name: &'static str, edges: &'static [u64], unit: Unit) -> Histogram {
        Histogram {
            name,
            edges,
            unit,
            counters: OnceLock::new(),
        }
    }

    /// A histogram of durations in milliseconds.
    pub const fn durations_ms(name: &'static str, edges: &'static [u64]) -> Histogram {
        Histogram::new(name, edges, Unit::Millis)
    }

    /// A histogram of durations in microseconds.
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// static T: Histogram = Histogram::durations_us("mytool/lookup-time", &[100, 1000, 10_000]);
    /// assert_eq!(T.declaration(), "mytool/lookup-time:{<100us,<1ms,<10ms,>=10ms}");
    /// ```
    pub const fn durations_us(name: &'static str, edges: &'static [u64]) -> Histogram {
        Histogram::new(name, edges, Unit::Micros)
    }

    /// A histogram of sizes in bytes.
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// static S: Histogram = Histogram::sizes_bytes("mytool/input-size", &[1 << 10, 1 << 20]);
    /// assert_eq!(S.declaration(), "mytool/input-size:{<1KiB,<1MiB,>=1MiB}");
    /// ```
    pub const fn sizes_bytes(name: &'static str, edges: &'static [u64]) -> Histogram {
        Histogram::new(name, edges, Unit::Bytes)
    }

    /// The histogram's name (without bucket).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The bucket edges.
    pub fn edges(&self) -> &'static [u64] {
        self.edges
    }

    /// Checks the edges (1 to [`MAX_EDGES`], strictly increasing) and every
    /// bucket name against the naming grammar. Use it in a test: an invalid
    /// histogram counts nothing.
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// assert!(Histogram::durations_ms("mytool/t", &[10, 100]).check().is_ok());
    /// assert!(Histogram::durations_ms("mytool/t", &[100, 10]).check().is_err());
    /// assert!(Histogram::durations_ms("bad name", &[10]).check().is_err());
    /// ```
    pub fn check(&self) -> Result<(), String> {
        let e = self.edges;
        if e.is_empty() || e.len() > MAX_EDGES {
            return Err(format!(
                "histogram {:?} has {} edges; 1 to {MAX_EDGES} are allowed",
                self.name,
                e.len()
            ));
        }
        if e.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "histogram {:?}: edges {e:?} are not strictly increasing",
                self.name
            ));
        }
        if self.name.contains(':') {
            return Err(format!(
                "histogram name {:?} must not have a bucket (':')",
                self.name
            ));
        }
        let names = self.bucket_names();
        let mut seen = BTreeSet::new();
        for n in &names {
            crate::name::check(n).map_err(|err| format!("histogram bucket {n:?}: {err}"))?;
            if !seen.insert(n.as_str()) {
                return Err(format!("histogram bucket {n:?} appears twice"));
            }
        }
        Ok(())
    }

    /// The bucket parts (after `:`), in order.
    fn buckets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .edges
            .iter()
            .map(|&e| format!("<{}", self.unit.label(e)))
            .collect();
        if let Some(&last) = self.edges.last() {
            out.push(format!(">={}", self.unit.label(last)));
        }
        out
    }

    /// Every bucket counter's full name, in order.
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// let h = Histogram::durations_ms("mytool/t", &[10, 1000]);
    /// assert_eq!(h.bucket_names(), ["mytool/t:<10ms", "mytool/t:<1s", "mytool/t:>=1s"]);
    /// ```
    pub fn bucket_names(&self) -> Vec<String> {
        self.buckets()
            .into_iter()
            .map(|b| format!("{}:{b}", self.name))
            .collect()
    }

    /// The bucket set as written in the declared counters file
    /// (`config/counters/<program>.toml`).
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// let h = Histogram::durations_ms("mytool/build-time", &[10, 100, 1000]);
    /// assert_eq!(h.declaration(), "mytool/build-time:{<10ms,<100ms,<1s,>=1s}");
    /// ```
    pub fn declaration(&self) -> String {
        format!("{}:{{{}}}", self.name, self.buckets().join(","))
    }

    /// The index of the bucket `value` falls in.
    fn index(&self, value: u64) -> usize {
        self.edges.partition_point(|&e| e <= value)
    }

    /// The full name of the bucket `value` falls in; `None` if the
    /// histogram is not valid.
    ///
    /// ```
    /// use clearcount::kit::histogram::Histogram;
    /// let h = Histogram::durations_ms("mytool/t", &[10, 1000]);
    /// assert_eq!(h.bucket(9).unwrap(), "mytool/t:<10ms");
    /// assert_eq!(h.bucket(10).unwrap(), "mytool/t:<1s");
    /// assert_eq!(h.bucket(5000).unwrap(), "mytool/t:>=1s");
    /// ```
    pub fn bucket(&self, value: u64) -> Option<&'static str> {
        self.counters()
            .and_then(|c| c.get(self.index(value)))
            .map(Counter::name)
    }

    fn counters(&self) -> Option<&[Counter]> {
        self.counters
            .get_or_init(|| {
                self.check().ok()?;
                Some(
                    self.bucket_names()
                        .into_iter()
                        .map(|n| Counter::new(intern(n)))
                        .collect(),
                )
            })
            .as_deref()
    }

    /// Adds one to the bucket of `value` (in the histogram's unit).
    #[inline]
    pub fn record(&self, value: u64) {
        if let Some(c) = self.counters().and_then(|c| c.get(self.index(value))) {
            c.inc();
        }
    }

    /// Adds one to the bucket of a duration: in microseconds for a
    /// [`Unit::Micros`] histogram, else in milliseconds (whole, rounded
    /// down).
    pub fn record_duration(&self, d: Duration) {
        let v = match self.unit {
            Unit::Micros => d.as_micros(),
            _ => d.as_millis(),
        };
        self.record(u64::try_from(v).unwrap_or(u64::MAX));
    }
}

/// Interns a bucket name: each distinct name is leaked once, so histograms
/// made again and again (not as statics) do not leak without bound.
fn intern(name: String) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name.as_str()) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.insert(leaked);
    leaked
}
