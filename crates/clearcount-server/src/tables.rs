//! The tidy tables of the archive: for every week, `archive/<week>.parquet`
//! and `archive/<week>.csv` beside `archive/<week>.ndjson`, rebuilt from it
//! after every merge of the week. The NDJSON stays the record of truth;
//! the tables are what an analyst reaches for (DuckDB, pandas, Arrow), with
//! the counters already unnested, the buckets split off and the reports
//! counted.
//!
//! # One row per …
//!
//! | `kind` | one row per | `counter` | `bucket` | `stack` | `reports` | `total` |
//! |---|---|---|---|---|---|---|
//! | `reports` | build (week, program, version, os, arch) | null | null | null | reports that carry the build | the same |
//! | `counter` | build and counter bucket | name before `:` (the whole name without one) | after `:`, or null | null | reports with a non-zero count | sum of the counts |
//! | `counter` | build and stack counter | its name | null | null | reports with any of its stacks | sum over its stacks |
//! | `stack` | build and stack of a stack counter | its name | null | the frames, one per line | reports with that stack | sum of its counts |
//!
//! Columns, in this order: `week` (a date), `program`, `version`, `os`,
//! `arch`, `kind`, `counter`, `bucket`, `stack` (strings), `reports`,
//! `total` (unsigned 64-bit; sums saturate). Rows are sorted by program,
//! version, os, arch, then kind (`reports`, `counter`, `stack`), counter,
//! bucket and stack (null first).
//!
//! # The threshold
//!
//! A row that fewer than `k` reports of the week contribute to
//! ([`crate::ServerOptions::min_reports`], `--min-reports`, the charts'
//! threshold) is left out of both tables: every published row describes at
//! least `k` reports. The NDJSON keeps every report as it is.
//!
//! # Formats
//!
//! Parquet is written by the Apache Arrow project's `parquet` crate: typed
//! columns (`DATE`, `STRING`, `UINT_64`), dictionary-encoded, Snappy pages,
//! with statistics per column chunk and page, the sort order recorded, and
//! key-value metadata: `clearcount.week`, `clearcount.source` (the NDJSON),
//! `clearcount.reports` (reports read), `clearcount.min_reports` (`k`),
//! `clearcount.hidden_rows` (rows under `k` left out). CSV is written by the
//! `csv` crate: a header row, RFC 4180 quoting (a stack's newlines are
//! inside quotes), null as an empty field, the date as `YYYY-MM-DD`.
//!
//! # Built after the archive, never older than it
//!
//! A week's tables are built from the archive file as the store holds it
//! after the merge's commit, streaming its reports (memory grows with the
//! number of distinct rows, not of reports), into scratch files that then
//! replace each table if it is still the version read before the archive
//! was (the archive's rule): if two merges race, the tables of the later
//! archive win.

use super::merge::{self, MergeStats};
use super::store::{Expect, Replaced, Store};
use clearcount_protocol::report::Report;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The columns of both tables, in order.
pub const COLUMNS: [&str; 11] = [
    "week", "program", "version", "os", "arch", "kind", "counter", "bucket", "stack", "reports",
    "total",
];

/// The Parquet schema of the tables.
const SCHEMA: &str = "message clearcount_week {
    REQUIRED INT32 week (DATE);
    REQUIRED BYTE_ARRAY program (STRING);
    REQUIRED BYTE_ARRAY version (STRING);
    REQUIRED BYTE_ARRAY os (STRING);
    REQUIRED BYTE_ARRAY arch (STRING);
    REQUIRED BYTE_ARRAY kind (STRING);
    OPTIONAL BYTE_ARRAY counter (STRING);
    OPTIONAL BYTE_ARRAY bucket (STRING);
    OPTIONAL BYTE_ARRAY stack (STRING);
    REQUIRED INT64 reports (INTEGER(64, false));
    REQUIRED INT64 total (INTEGER(64, false));
}";

/// Rows per Parquet row group.
const ROW_GROUP: usize = 128 * 1024;

/// Times a week's tables are built before giving up (each conflict means
/// another merge wrote them meanwhile).
const MAX_ATTEMPTS: u32 = 8;

/// What writing tables did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Weeks whose tables were written.
    pub weeks: usize,
    /// Reports read from the archive files.
    pub reports: u64,
    /// Lines of the archive files that were not reports of their week.
    pub skipped: u64,
    /// Rows written (in each of the two tables).
    pub rows: u64,
    /// Rows left out: fewer than `k` reports.
    pub hidden: u64,
    /// Bytes of Parquet written.
    pub parquet_bytes: u64,
    /// Bytes of CSV written.
    pub csv_bytes: u64,
}

impl std::ops::AddAssign for TableStats {
    fn add_assign(&mut self, o: TableStats) {
        self.weeks += o.weeks;
        self.reports += o.reports;
        self.skipped += o.skipped;
        self.rows += o.rows;
        self.hidden += o.hidden;
        self.parquet_bytes += o.parquet_bytes;
        self.csv_bytes += o.csv_bytes;
    }
}

/// The key of a week's Parquet table: `archive/<week>.parquet`.
pub fn parquet_key(week: &str) -> String {
    format!("archive/{week}.parquet")
}

/// The key of a week's CSV table: `archive/<week>.csv`.
pub fn csv_key(week: &str) -> String {
    format!("archive/{week}.csv")
}

/// No string (a null column).
const NONE: u32 = u32::MAX;

/// Each distinct string once, numbered in order of arrival.
#[derive(Default)]
struct Strings {
    ids: HashMap<Arc<str>, u32>,
    all: Vec<Arc<str>>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = u32::try_from(self.all.len()).unwrap_or(NONE - 1);
        let s: Arc<str> = Arc::from(s);
        self.all.push(s.clone());
        self.ids.insert(s, i);
        i
    }

    fn get(&self, id: u32) -> Option<&str> {
        self.all.get(id as usize).map(|s| &**s)
    }

    /// The rank of every string in byte order, by id; [`NONE`] ranks
    /// first.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.all.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.all[a as usize].cmp(&self.all[b as usize]));
        let mut rank = vec![0; self.all.len()];
        for (r, id) in order.into_iter().enumerate() {
            rank[id as usize] = r as u32 + 1;
        }
        rank
    }
}

/// What a row counts (its sort order is the tables' order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Reports,
    Counter,
    Stack,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Reports => "reports",
            Kind::Counter => "counter",
            Kind::Stack => "stack",
        }
    }
}

/// A row's identity, as string ids ([`NONE`]: null).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    program: u32,
    version: u32,
    os: u32,
    arch: u32,
    kind: Kind,
    counter: u32,
    bucket: u32,
    stack: u32,
}

/// A row's counts.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    reports: u64,
    total: u64,
}

/// The rows of one week, being summed.
#[derive(Default)]
struct Tally {
    strings: Strings,
    cells: HashMap<Key, Cell>,
    /// The rows of the report being added, before they count.
    scratch: Vec<(Key, u64)>,
    reports: u64,
}

impl Tally {
    /// Adds one report: each of its rows counts it once.
    fn add(&mut self, r: &Report) {
        self.reports += 1;
        for p in &r.programs {
            let s = &mut self.strings;
            let build = Key {
                program: s.id(&p.program),
                version: s.id(&p.version),
                os: s.id(&p.os),
                arch: s.id(&p.arch),
                kind: Kind::Reports,
                counter: NONE,
                bucket: NONE,
                stack: NONE,
            };
            self.scratch.clear();
            self.scratch.push((build, 1));
            for (name, &count) in &p.counters {
                if count == 0 {
                    continue;
                }
                let (counter, bucket) = match name.split_once(':') {
                    Some((c, b)) => (s.id(c), s.id(b)),
                    None => (s.id(name), NONE),
                };
                let key = Key {
                    kind: Kind::Counter,
                    counter,
                    bucket,
                    ..build
                };
                self.scratch.push((key, count));
            }
            for (name, &count) in &p.stacks {
                if count == 0 {
                    continue;
                }
                let (counter, frames) = name.split_once('\n').unwrap_or((name, ""));
                let counter = s.id(counter);
                let stack = Key {
                    kind: Kind::Stack,
                    counter,
                    stack: s.id(frames),
                    ..build
                };
                let whole = Key {
                    kind: Kind::Counter,
                    counter,
                    ..build
                };
                self.scratch.push((stack, count));
                self.scratch.push((whole, count));
            }
            // A key met twice in one report (a stack counter's stacks, or
            // a plain counter of the same name) counts the report once.
            self.scratch.sort_unstable_by_key(|&(k, _)| k);
            let mut i = 0;
            while i < self.scratch.len() {
                let key = self.scratch[i].0;
                let mut total = 0u64;
                while i < self.scratch.len() && self.scratch[i].0 == key {
                    total = total.saturating_add(self.scratch[i].1);
                    i += 1;
                }
                let cell = self.cells.entry(key).or_default();
                cell.reports += 1;
                cell.total = cell.total.saturating_add(total);
            }
        }
    }

    /// The rows at or over `k` reports, in the tables' order, and how many
    /// were left out.
    fn rows(&self, k: u64) -> (Vec<(Key, Cell)>, u64) {
        let k = k.max(1);
        let mut rows: Vec<(Key, Cell)> = self
            .cells
            .iter()
            .filter(|(_, c)| c.reports >= k)
            .map(|(k, c)| (*k, *c))
            .collect();
        let hidden = (self.cells.len() - rows.len()) as u64;
        let rank = self.strings.ranks();
        let r = |id: u32| if id == NONE { 0 } else { rank[id as usize] };
        rows.sort_unstable_by_key(|(k, _)| {
            (
                r(k.program),
                r(k.version),
                r(k.os),
                r(k.arch),
                k.kind,
                r(k.counter),
                r(k.bucket),
                r(k.stack),
            )
        });
        (rows, hidden)
    }
}

fn parquet_error(e: parquet::errors::ParquetError) -> io::Error {
    io::Error::other(format!("writing Parquet: {e}"))
}

fn csv_error(e: csv::Error) -> io::Error {
    io::Error::other(format!("writing CSV: {e}"))
}

/// Days from 1970-01-01 to the week's first day.
fn epoch_days(week: &str) -> io::Result<i32> {
    let d = chrono::NaiveDate::parse_from_str(week, "%Y-%m-%d").map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{week:?} is not a week"),
        )
    })?;
    let days = (d - chrono::NaiveDate::default()).num_days();
    i32::try_from(days).map_err(|_| io::Error::other(format!("{week} is out of range")))
}

/// What the tables were built from, for the Parquet metadata.
struct Source<'a> {
    week: &'a str,
    reports: u64,
    k: u64,
    hidden: u64,
}

fn write_parquet(
    out: impl Write + Send,
    src: &Source<'_>,
    strings: &Strings,
    rows: &[(Key, Cell)],
) -> io::Result<()> {
    let schema = parquet::schema::parser::parse_message_type(SCHEMA).map_err(parquet_error)?;
    let sorted = (1..=4)
        .map(|column_idx| SortingColumn {
            column_idx,
            descending: false,
            nulls_first: true,
        })
        .collect();
    let meta = [
        ("clearcount.week", src.week.to_owned()),
        ("clearcount.source", super::store::archive_key(src.week)),
        ("clearcount.reports", src.reports.to_string()),
        ("clearcount.min_reports", src.k.to_string()),
        ("clearcount.hidden_rows", src.hidden.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue::new(k.to_owned(), v))
    .collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorted))
        .set_key_value_metadata(Some(meta))
        .build();
    let mut w =
        SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props)).map_err(parquet_error)?;
    let week = epoch_days(src.week)?;
    let text = |id: u32| ByteArray::from(strings.get(id).unwrap_or(""));
    for group in rows.chunks(ROW_GROUP) {
        let mut rg = w.next_row_group().map_err(parquet_error)?;
        let mut column = 0;
        while let Some(mut col) = rg.next_column().map_err(parquet_error)? {
            let required = |f: &dyn Fn(&Key) -> u32| -> Vec<ByteArray> {
                group.iter().map(|(k, _)| text(f(k))).collect()
            };
            let optional = |f: &dyn Fn(&Key) -> u32| -> (Vec<ByteArray>, Vec<i16>) {
                let values = group
                    .iter()
                    .filter(|(k, _)| f(k) != NONE)
                    .map(|(k, _)| text(f(k)))
                    .collect();
                let levels = group.iter().map(|(k, _)| i16::from(f(k) != NONE)).collect();
                (values, levels)
            };
            let written = match COLUMNS[column] {
                "week" => {
                    col.typed::<Int32Type>()
                        .write_batch(&vec![week; group.len()], None, None)
                }
                "program" => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&required(&|k| k.program), None, None)
                }
                "version" => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&required(&|k| k.version), None, None)
                }
                "os" => col
                    .typed::<ByteArrayType>()
                    .write_batch(&required(&|k| k.os), None, None),
                "arch" => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&required(&|k| k.arch), None, None)
                }
                "kind" => {
                    let kinds: Vec<ByteArray> = group
                        .iter()
                        .map(|(k, _)| ByteArray::from(k.kind.name()))
                        .collect();
                    col.typed::<ByteArrayType>().write_batch(&kinds, None, None)
                }
                name @ ("counter" | "bucket" | "stack") => {
                    let (values, levels) = optional(&|k| match name {
                        "counter" => k.counter,
                        "bucket" => k.bucket,
                        _ => k.stack,
                    });
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&levels), None)
                }
                name => {
                    // UINT_64 is stored in INT64 as the same 64 bits.
                    let values: Vec<i64> = group
                        .iter()
                        .map(|(_, c)| {
                            let v = if name == "reports" {
                                c.reports
                            } else {
                                c.total
                            };
                            v as i64
                        })
                        .collect();
                    col.typed::<Int64Type>().write_batch(&values, None, None)
                }
            };
            written.map_err(parquet_error)?;
            col.close().map_err(parquet_error)?;
            column += 1;
        }
        rg.close().map_err(parquet_error)?;
    }
    w.close().map_err(parquet_error)?;
    Ok(())
}

fn write_csv(
    out: impl Write,
    week: &str,
    strings: &Strings,
    rows: &[(Key, Cell)],
) -> io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(COLUMNS).map_err(csv_error)?;
    let text = |id: u32| strings.get(id).unwrap_or("");
    for (k, c) in rows {
        let (reports, total) = (c.reports.to_string(), c.total.to_string());
        w.write_record([
            week,
            text(k.program),
            text(k.version),
            text(k.os),
            text(k.arch),
            k.kind.name(),
            text(k.counter),
            text(k.bucket),
            text(k.stack),
            &reports,
            &total,
        ])
        .map_err(csv_error)?;
    }
    w.into_inner()
        .map_err(|e| io::Error::other(format!("writing CSV: {}", e.error())))?
        .flush()
}

/// Builds a week's two tables from its archive file (`archive`, streamed)
/// into the files `parquet` and `csv`, leaving out rows under `k` reports.
pub(crate) fn build_tables(
    archive: impl Read,
    week: &str,
    k: u64,
    parquet: &Path,
    csv: &Path,
) -> io::Result<TableStats> {
    let mut tally = Tally::default();
    let mut other_weeks = 0;
    let skipped = merge::for_each_report(archive, |r| {
        if r.week == week {
            tally.add(&r);
        } else {
            other_weeks += 1;
        }
    })?;
    let (rows, hidden) = tally.rows(k);
    let src = Source {
        week,
        reports: tally.reports,
        k: k.max(1),
        hidden,
    };
    let file = |p: &Path| -> io::Result<io::BufWriter<std::fs::File>> {
        Ok(io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(p)?,
        ))
    };
    let mut out = file(parquet)?;
    write_parquet(&mut out, &src, &tally.strings, &rows)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let mut out = file(csv)?;
    write_csv(&mut out, week, &tally.strings, &rows)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(TableStats {
        weeks: 1,
        reports: tally.reports,
        skipped: skipped + other_weeks,
        rows: rows.len() as u64,
        hidden,
        parquet_bytes: std::fs::metadata(parquet)?.len(),
        csv_bytes: std::fs::metadata(csv)?.len(),
    })
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

/// Rebuilds `archive/<week>.parquet` and `archive/<week>.csv` from
/// `archive/<week>.ndjson` (see the [module documentation](self)), on a
/// thread of its own at a lower priority. No archive file: nothing to do.
pub(crate) async fn write_week(
    store: Arc<dyn Store>,
    week: String,
    k: u64,
) -> io::Result<TableStats> {
    let handle = tokio::runtime::Handle::current();
    super::background("clearcount-tables", move || {
        write_week_blocking(&handle, &store, &week, k)
    })
    .await
}

fn write_week_blocking(
    rt: &tokio::runtime::Handle,
    store: &Arc<dyn Store>,
    week: &str,
    k: u64,
) -> io::Result<TableStats> {
    let (pq_key, csv_key) = (parquet_key(week), csv_key(week));
    let scratch = store.scratch_dir();
    std::fs::create_dir_all(&scratch)?;
    let tmp = |ext: &str| -> PathBuf {
        scratch.join(format!(
            "tables-{}-{}-{week}.{ext}",
            std::process::id(),
            SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    };
    let expect = |v: Option<String>| v.map_or(Expect::Absent, Expect::Version);
    for _ in 0..MAX_ATTEMPTS {
        // The tables' versions before the archive is read: a table
        // replaced since was built from an archive at least as new.
        let pq_was = expect(rt.block_on(store.version(&pq_key))?);
        let csv_was = expect(rt.block_on(store.version(&csv_key))?);
        let Some(reader) = rt.block_on(store.open(&super::store::archive_key(week)))? else {
            return Ok(TableStats::default());
        };
        let (pq_tmp, csv_tmp) = (tmp("parquet"), tmp("csv"));
        let result = (|| {
            let stats = build_tables(reader, week, k, &pq_tmp, &csv_tmp)?;
            if rt.block_on(store.replace_file(&pq_key, &pq_tmp, pq_was))? == Replaced::Conflict {
                return Ok(None);
            }
            if rt.block_on(store.replace_file(&csv_key, &csv_tmp, csv_was))? == Replaced::Conflict {
                return Ok(None);
            }
            Ok(Some(stats))
        })();
        // Whatever was not moved into the store.
        let _ = std::fs::remove_file(&pq_tmp);
        let _ = std::fs::remove_file(&csv_tmp);
        match result {
            Ok(Some(stats)) => return Ok(stats),
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(
                10 + u64::from(std::process::id() % 7) * 3,
            )),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "tables of {week}: other merges wrote them first {MAX_ATTEMPTS} times in a row"
    )))
}

/// Merges with their tables under way in this process (see [`tabulated`]).
static TABULATING: AtomicU64 = AtomicU64::new(0);
/// Woken when [`TABULATING`] falls to 0.
static TABULATED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Counts a merge with its tables under way until dropped.
struct Tabulating;

impl Tabulating {
    fn start() -> Tabulating {
        TABULATING.fetch_add(1, Ordering::SeqCst);
        Tabulating
    }
}

impl Drop for Tabulating {
    fn drop(&mut self) {
        if TABULATING.fetch_sub(1, Ordering::SeqCst) == 1 {
            TABULATED.notify_waiters();
        }
    }
}

/// Waits (up to a minute) until no merge of this process is between its
/// archive and its tables: the pages build once per merge, showing the new
/// archive files and their tables together.
pub(crate) async fn tabulated() {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let done = TABULATED.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if TABULATING.load(Ordering::SeqCst) == 0 {
                return;
            }
            done.await;
        }
    })
    .await;
}

/// One week merged and tabulated.
#[derive(Debug, Clone, Default)]
pub(crate) struct WeekDone {
    pub(crate) week: String,
    pub(crate) merged: MergeStats,
}

/// Merges each week's archive, then rebuilds its tables with threshold
/// `k`; stops at the first error.
pub(crate) async fn merge_and_tabulate(
    store: Arc<dyn Store>,
    weeks: Vec<String>,
    k: u64,
) -> io::Result<Vec<WeekDone>> {
    let _busy = Tabulating::start();
    let mut done = Vec::with_capacity(weeks.len());
    for week in weeks {
        let merged = merge::merge_week(store.clone(), week.clone()).await?;
        write_week(store.clone(), week.clone(), k).await?;
        done.push(WeekDone { week, merged });
    }
    Ok(done)
}

/// Rebuilds the tables of every week in the archive from its NDJSON, with
/// threshold `min_reports`, without merging: what a change of
/// `--min-reports` needs (`clearcount merge` rebuilds them too).
///
/// ```no_run
/// let t = clearcount_server::tables_blocking("./clearcount-data", 10).unwrap();
/// println!("{} rows from {} reports, {} rows under 10 reports left out", t.rows, t.reports, t.hidden);
/// ```
pub fn tables_blocking(data: &str, min_reports: u64) -> Result<TableStats, String> {
    let store = super::store::open_store(data)
        .map_err(|e| format!("cannot open data store {data}: {e}"))?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let mut total = TableStats::default();
        for f in super::store::archive_files(&*store).await? {
            let week = f.name().trim_end_matches(".ndjson").to_owned();
            total += write_week(store.clone(), week, min_reports).await?;
        }
        Ok::<_, io::Error>(total)
    })
    .map_err(|e| format!("writing the tables failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearcount_protocol::report::ProgramReport;

    fn report(version: &str, counters: &[(&str, u64)], stacks: &[(&str, u64)]) -> Report {
        let mut p = ProgramReport::new("tool", version, "linux", "x86_64");
        for (n, c) in counters {
            p.counters.insert((*n).into(), *c);
        }
        for (n, c) in stacks {
            p.stacks.insert((*n).into(), *c);
        }
        Report {
            week: "2026-11-16".into(),
            x: 0.01,
            config: 1,
            programs: vec![p],
        }
    }

    fn rows(t: &Tally, k: u64) -> Vec<String> {
        let s = |id: u32| t.strings.get(id).unwrap_or("-").replace('\n', "|");
        t.rows(k)
            .0
            .iter()
            .map(|(k, c)| {
                format!(
                    "{} {} {} {} {} {} {}",
                    s(k.version),
                    k.kind.name(),
                    s(k.counter),
                    s(k.bucket),
                    s(k.stack),
                    c.reports,
                    c.total
                )
            })
            .collect()
    }

    /// Buckets split off the name, a stack counter counted as a whole and
    /// per stack, a report counted once per row, and rows under `k` left
    /// out.
    #[test]
    fn rows_count_reports_and_sum_counts_and_hide_under_k() {
        let mut t = Tally::default();
        let crash = [
            ("crash/panic\nmain:+3", 2),
            ("crash/panic\nrun:+1\nmain:+9", 1),
        ];
        t.add(&report(
            "1.0",
            &[("tool/cmd:build", 3), ("tool/cache", 5)],
            &crash,
        ));
        t.add(&report(
            "1.0",
            &[("tool/cmd:build", 1), ("tool/cmd:test", 0)],
            &crash[..1],
        ));
        t.add(&report("2.0", &[("tool/cmd:build", 7)], &[]));
        assert_eq!(
            rows(&t, 1),
            [
                "1.0 reports - - - 2 2",
                "1.0 counter crash/panic - - 2 5",
                "1.0 counter tool/cache - - 1 5",
                "1.0 counter tool/cmd build - 2 4",
                "1.0 stack crash/panic - main:+3 2 4",
                "1.0 stack crash/panic - run:+1|main:+9 1 1",
                "2.0 reports - - - 1 1",
                "2.0 counter tool/cmd build - 1 7",
            ]
        );
        let (kept, hidden) = t.rows(2);
        assert_eq!((kept.len(), hidden), (4, 4));
        assert_eq!(
            rows(&t, 2),
            [
                "1.0 reports - - - 2 2",
                "1.0 counter crash/panic - - 2 5",
                "1.0 counter tool/cmd build - 2 4",
                "1.0 stack crash/panic - main:+3 2 4",
            ]
        );
    }

    /// An archive line that is not a report, or a report of another week,
    /// is skipped and counted; the rest is read.
    #[test]
    fn bad_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let good = report("1.0", &[("tool/cmd:build", 1)], &[]).to_bytes();
        let mut other = report("1.0", &[("tool/cmd:build", 1)], &[]);
        other.week = "2026-11-23".into();
        let mut archive = Vec::new();
        for line in [&good[..], b"{not json", &other.to_bytes(), &good] {
            archive.extend_from_slice(line);
            archive.push(b'\n');
        }
        archive.extend(std::iter::repeat_n(b'x', 200_000));
        archive.push(b'\n');
        let (pq, csv) = (dir.path().join("t.parquet"), dir.path().join("t.csv"));
        let s = build_tables(&archive[..], "2026-11-16", 1, &pq, &csv).unwrap();
        assert_eq!((s.reports, s.skipped, s.rows), (2, 3, 2));
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text,
            "week,program,version,os,arch,kind,counter,bucket,stack,reports,total\n\
             2026-11-16,tool,1.0,linux,x86_64,reports,,,,2,2\n\
             2026-11-16,tool,1.0,linux,x86_64,counter,tool/cmd,build,,2,2\n"
        );
        assert_eq!(&std::fs::read(&pq).unwrap()[..4], b"PAR1");
    }
}
