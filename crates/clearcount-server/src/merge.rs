//! The public archive: every week's kept reports merged into one
//! newline-delimited JSON file, `archive/<week>.ndjson`.
//!
//! The merge streams: it lists one shard of keys at a time
//! (`reports/<week>/<h2>/`, 1/256 of the week; a few shards are listed
//! ahead, so a remote store's round trips overlap), reads one report at a time,
//! and appends it to a temporary file that then replaces the old archive
//! atomically. Reports are written in key order and as stored (canonical
//! bytes), so merging twice gives the same bytes. The `week` of an archive
//! is the reports' `week` field.
//!
//! # No lost update
//!
//! A merge is three steps: **read** the archive's version
//! ([`Store::version`]: the S3 `ETag`), **list** the week's reports into
//! the scratch file, **commit** it with [`Store::replace_file`] only if the
//! archive is still the version read (`If-Match`; `If-None-Match: *` when
//! there was none). Reports are only ever added. If another merge commits
//! between this merge's read and its commit, that merge may have listed
//! later than this one: the commit fails (a conflict) and this merge starts
//! over, at most [`MAX_ATTEMPTS`] times. An archive that a commit does
//! replace was written before this merge's read, from a listing taken
//! before it: it holds no report the new archive lacks. So however merges
//! interleave, no merge replaces a newer archive.
//!
//! # On a store that ignores conditional writes
//!
//! Some S3 stores answer 200 to a write whatever its condition
//! ([`Store::conditional_writes`], probed when the store is opened). There
//! the store checks the archive's version just before writing, which
//! narrows the race to the moment between that check and the write; what
//! is left is caught after the fact: a merge that wrote an archive lists
//! the week again, and if the listing holds more reports than it wrote (a
//! report accepted meanwhile, or one a racing merge had put in the archive
//! this write replaced), it merges again, at most [`EXTRA_ROUNDS`] more
//! times; a week whose listing still moved is reported
//! ([`MergeStats::unsettled`], [`merge_weeks_unsettled`]) and the server
//! merges it again at its next merge. A report a racing merge lost is thus
//! back in the archive within one merge interval: the merge that lost it
//! sees it in its own listing after its write.
//!
//! Merges run on a thread of their own at a lower priority than the
//! server's (see [`crate::background`]).

use super::publish::PublishOptions;
use super::store::{self, Store};
use clearcount_protocol::report::Report;
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use store::{Expect, Replaced};

/// Times a merge of one week reads, lists and commits before it gives up
/// (each conflict means another merge committed meanwhile).
pub const MAX_ATTEMPTS: u32 = 8;

/// On a store that ignores conditional writes: merges of one week made
/// again at once when the listing moved after a write.
pub const EXTRA_ROUNDS: u32 = 2;

/// Archive files committed by this process, by any merge: the live pages
/// of every server in the process rebuild when it moves (see
/// [`crate::pages`]).
pub(crate) static ARCHIVE_COMMITS: AtomicU64 = AtomicU64::new(0);
/// Woken with [`ARCHIVE_COMMITS`].
pub(crate) static ARCHIVE_CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The steps of one attempt at merging a week, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the archive's version.
    Read,
    /// List the week's reports into the scratch file.
    List,
    /// Replace the archive if it is still the version read.
    Commit,
}

/// Watches (and may hold up) a merge's steps: the race tests force
/// interleavings of two merges with it. The server's merges use
/// [`NoWatch`].
pub(crate) trait Watch: Send + Sync {
    /// Called before `step` of attempt `attempt` (0 first) of `week`.
    fn before(&self, _week: &str, _attempt: u32, _step: Step) {}
    /// Called after it.
    fn after(&self, _week: &str, _attempt: u32, _step: Step) {}
    /// What a commit may replace: the version read ([`Expect::Version`] or
    /// [`Expect::Absent`]). A test may answer the version there is at
    /// commit time instead, to show what an unconditional write would lose.
    fn expect(&self, read: Option<String>) -> Expect {
        read.map_or(Expect::Absent, Expect::Version)
    }
}

/// Watches nothing.
pub(crate) struct NoWatch;
impl Watch for NoWatch {}

/// What a merge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Archive files written.
    pub weeks: usize,
    /// Reports written into them.
    pub reports: u64,
    /// Stored objects skipped because they were not valid reports.
    pub skipped: u64,
    /// Attempts started over because another merge committed first.
    pub retries: u64,
    /// On a store that ignores conditional writes: weeks whose listing
    /// still held more reports than the archive written, after the extra
    /// rounds (to merge again at the next merge).
    pub unsettled: u64,
}

impl std::ops::AddAssign for MergeStats {
    fn add_assign(&mut self, o: MergeStats) {
        self.weeks += o.weeks;
        self.reports += o.reports;
        self.skipped += o.skipped;
        self.retries += o.retries;
        self.unsettled += o.unsettled;
    }
}

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);

fn is_week(s: &str) -> bool {
    s.len() == 10
        && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .is_ok_and(|d| d.format("%Y-%m-%d").to_string() == s)
}

/// The weeks that have stored reports, sorted.
pub async fn report_weeks(store: &dyn Store) -> io::Result<Vec<String>> {
    let listing = store.list("reports/").await?;
    Ok(listing
        .dirs
        .iter()
        .filter_map(|d| {
            d.strip_prefix("reports/")
                .and_then(|d| d.strip_suffix('/'))
                .filter(|w| is_week(w))
                .map(str::to_owned)
        })
        .collect())
}

/// Rebuilds `archive/<week>.ndjson` from `reports/<week>/`. Streams: memory
/// does not depend on the number of reports.
pub async fn merge_week(store: Arc<dyn Store>, week: String) -> io::Result<MergeStats> {
    merge_week_watched(store, week, Arc::new(NoWatch)).await
}

/// [`merge_week`], its steps watched by `watch`.
pub(crate) async fn merge_week_watched(
    store: Arc<dyn Store>,
    week: String,
    watch: Arc<dyn Watch>,
) -> io::Result<MergeStats> {
    if !is_week(&week) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{week:?} is not a week (YYYY-MM-DD)"),
        ));
    }
    let handle = tokio::runtime::Handle::current();
    super::background("clearcount-merge", move || {
        merge_week_blocking(&handle, &store, &week, &*watch)
    })
    .await
}

fn merge_week_blocking(
    rt: &tokio::runtime::Handle,
    store: &Arc<dyn Store>,
    week: &str,
    watch: &dyn Watch,
) -> io::Result<MergeStats> {
    let key = store::archive_key(week);
    let mut retries = 0;
    let verify = !store.conditional_writes().honoured();
    let mut rounds = 0;
    for attempt in 0..MAX_ATTEMPTS {
        watch.before(week, attempt, Step::Read);
        let read = rt.block_on(store.version(&key))?;
        watch.after(week, attempt, Step::Read);
        watch.before(week, attempt, Step::List);
        let (tmp, mut stats) = list_into_scratch(rt, store, week)?;
        watch.after(week, attempt, Step::List);
        watch.before(week, attempt, Step::Commit);
        let committed = rt.block_on(store.replace_file(&key, &tmp, watch.expect(read)));
        watch.after(week, attempt, Step::Commit);
        match committed {
            Ok(Replaced::Done) => {
                ARCHIVE_COMMITS.fetch_add(1, Ordering::SeqCst);
                ARCHIVE_CHANGED.notify_waiters();
                stats.retries = retries;
                // A store that ignores conditions may have let this write
                // replace a newer archive: list again.
                if verify && count_reports(rt, store, week)? > stats.reports + stats.skipped {
                    if rounds < EXTRA_ROUNDS {
                        rounds += 1;
                        continue;
                    }
                    stats.unsettled = 1;
                }
                return Ok(stats);
            }
            Ok(Replaced::Conflict) => {
                // Another merge committed since the read: start over, after
                // a short pause that grows (and differs between processes).
                let _ = std::fs::remove_file(&tmp);
                retries += 1;
                let jitter =
                    u64::from(std::process::id() % 7) + SCRATCH_SEQ.load(Ordering::Relaxed) % 5;
                std::thread::sleep(std::time::Duration::from_millis(
                    (10 << attempt.min(6)) + jitter * 3,
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    Err(io::Error::other(format!(
        "merge of {week}: other merges committed first {MAX_ATTEMPTS} times in a row"
    )))
}

/// The report objects of a week, counted from a listing (after a merge's
/// write, on a store that ignores conditional writes).
fn count_reports(
    rt: &tokio::runtime::Handle,
    store: &Arc<dyn Store>,
    week: &str,
) -> io::Result<u64> {
    let shards = rt.block_on(store.list(&format!("reports/{week}/")))?;
    let mut n = 0;
    for shard in &shards.dirs {
        let listing = rt.block_on(store.list(shard))?;
        n += listing
            .objects
            .iter()
            .filter(|o| o.key.ends_with(".json"))
            .count() as u64;
    }
    Ok(n)
}

/// Shard listings a merge keeps under way ahead of the shard it reads: a
/// remote store's round trip per shard overlaps with reading the shards
/// before it (and, on S3, listing a shard starts fetching its reports).
const LIST_AHEAD: usize = 4;

/// Lists the week's reports (key order) into a new scratch file: its path
/// and what it holds.
fn list_into_scratch(
    rt: &tokio::runtime::Handle,
    store: &Arc<dyn Store>,
    week: &str,
) -> io::Result<(std::path::PathBuf, MergeStats)> {
    let scratch = store.scratch_dir();
    std::fs::create_dir_all(&scratch)?;
    let tmp = scratch.join(format!(
        "merge-{}-{}-{week}",
        std::process::id(),
        SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut out = io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&tmp)?);
        let mut stats = MergeStats {
            weeks: 1,
            ..MergeStats::default()
        };
        let week_prefix = format!("reports/{week}/");
        let shards = rt.block_on(store.list(&week_prefix))?;
        let list = |shard: &String| {
            let (store, shard) = (store.clone(), shard.clone());
            rt.spawn(async move { store.list(&shard).await })
        };
        let mut shards = shards.dirs.iter();
        let mut ahead: std::collections::VecDeque<_> =
            shards.by_ref().take(LIST_AHEAD).map(list).collect();
        while let Some(listing) = ahead.pop_front() {
            let listing = rt.block_on(listing).map_err(io::Error::other)??;
            ahead.extend(shards.next().map(list));
            for obj in &listing.objects {
                if !obj.key.ends_with(".json") {
                    continue;
                }
                let Some(bytes) = rt.block_on(store.get(&obj.key))? else {
                    continue; // deleted meanwhile
                };
                match Report::from_slice(&bytes) {
                    Ok(r) if r.week == week => {
                        // Canonical bytes: one line, whatever the file held.
                        out.write_all(&r.to_bytes())?;
                        out.write_all(b"\n")?;
                        stats.reports += 1;
                    }
                    _ => stats.skipped += 1,
                }
            }
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(stats)
    })();
    match result {
        Ok(stats) => Ok((tmp, stats)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Rebuilds the archive of the given weeks.
pub async fn merge_weeks(store: Arc<dyn Store>, weeks: Vec<String>) -> io::Result<MergeStats> {
    Ok(merge_weeks_unsettled(store, weeks).await?.0)
}

/// [`merge_weeks`], and the weeks left unsettled (on a store that ignores
/// conditional writes: the listing moved after the last write; merge them
/// again at the next merge).
pub async fn merge_weeks_unsettled(
    store: Arc<dyn Store>,
    weeks: Vec<String>,
) -> io::Result<(MergeStats, Vec<String>)> {
    let mut total = MergeStats::default();
    let mut unsettled = Vec::new();
    for w in weeks {
        let stats = merge_week(store.clone(), w.clone()).await?;
        if stats.unsettled > 0 {
            unsettled.push(w);
        }
        total += stats;
    }
    Ok((total, unsettled))
}

/// Rebuilds the archive of every week that has reports.
pub async fn merge_all(store: Arc<dyn Store>) -> io::Result<MergeStats> {
    let weeks = report_weeks(&*store).await?;
    let (mut stats, unsettled) = merge_weeks_unsettled(store.clone(), weeks).await?;
    // A one-shot merge (`clearcount merge`) has no next interval: the
    // weeks that moved are merged once more now.
    if !unsettled.is_empty() {
        stats.unsettled = 0;
        let again = merge_weeks(store, unsettled).await?;
        stats.retries += again.retries;
        stats.unsettled = again.unsettled;
    }
    Ok(stats)
}

/// The weeks the server merges when it starts: those that can still
/// receive reports at `now` (not older than [`super::ACCEPTED_AGE_DAYS`]
/// and a week), and any week without an archive file or without its tables
/// (see [`crate::tables`]).
pub(crate) async fn open_weeks(
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
) -> io::Result<Vec<String>> {
    let today = now.date_naive();
    let archived: std::collections::BTreeSet<String> = store
        .list("archive/")
        .await?
        .objects
        .into_iter()
        .map(|o| o.name().to_owned())
        .collect();
    Ok(report_weeks(store)
        .await?
        .into_iter()
        .filter(|w| {
            let open = chrono::NaiveDate::parse_from_str(w, "%Y-%m-%d")
                .is_ok_and(|d| (today - d).num_days() <= super::ACCEPTED_AGE_DAYS + 7);
            open || ["ndjson", "parquet", "csv"]
                .iter()
                .any(|ext| !archived.contains(&format!("{w}.{ext}")))
        })
        .collect())
}

/// `clearcount merge --data DIR --min-reports K`: rebuilds every week's
/// archive and its tables (whose rows under `min_reports` reports are left
/// out, see [`crate::tables`]), then the static site (whose charts hide a
/// bucket seen in fewer than `min_reports` reports in a week), in its own
/// runtime. Returns the totals.
///
/// ```no_run
/// let s = clearcount_server::merge_blocking("./clearcount-data", 10).unwrap();
/// println!("{} reports in {} weeks", s.reports, s.weeks);
/// ```
pub fn merge_blocking(data: &str, min_reports: u64) -> Result<MergeStats, String> {
    let opts = PublishOptions { min_reports };
    let store =
        store::open_store(data).map_err(|e| format!("cannot open data store {data}: {e}"))?;
    let rt = super::runtime()?;
    let stats = rt
        .block_on(async {
            let weeks = report_weeks(&*store).await?;
            let mut done =
                super::tables::merge_and_tabulate(store.clone(), weeks, min_reports).await?;
            // On a store that ignores conditional writes, a week whose
            // listing moved after its write is merged once more now (a
            // one-shot merge has no next interval).
            let moved: Vec<String> = done
                .iter()
                .filter(|w| w.merged.unsettled > 0)
                .map(|w| w.week.clone())
                .collect();
            if !moved.is_empty() {
                done.retain(|w| w.merged.unsettled == 0);
                done.extend(
                    super::tables::merge_and_tabulate(store.clone(), moved, min_reports).await?,
                );
            }
            Ok::<_, io::Error>(done)
        })
        .map_err(|e| format!("merge failed: {e}"))?
        .into_iter()
        .fold(MergeStats::default(), |mut total, w| {
            total += w.merged;
            total
        });
    // The static site (`site/`) from the new archive.
    rt.block_on(super::publish::publish_site(store, &opts))
        .map_err(|e| format!("merge done, but publishing the static site failed: {e}"))?;
    Ok(stats)
}

/// Calls `f` with every report of an archive file (one report per line),
/// streaming; returns the lines that were not reports. A line longer than
/// two upload bodies cannot be a report: it is skipped without being held.
pub(crate) fn for_each_report(reader: impl Read, mut f: impl FnMut(Report)) -> io::Result<u64> {
    let limit = super::MAX_BODY as u64 * 2;
    let mut reader = io::BufReader::with_capacity(128 * 1024, reader);
    let mut line = Vec::new();
    let mut skipped = 0;
    loop {
        line.clear();
        let n = io::Read::take(&mut reader, limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(skipped);
        }
        if line.last() != Some(&b'\n') && n as u64 == limit {
            skipped += 1;
            // Skip to the end of this long line.
            loop {
                line.clear();
                let m = io::Read::take(&mut reader, limit).read_until(b'\n', &mut line)?;
                if m == 0 || line.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match Report::from_slice(text) {
            Ok(r) => f(r),
            Err(_) => skipped += 1,
        }
    }
}

/// The archive files alone, as [`merge_blocking`] rebuilds them, without
/// their tables or the site: what the benchmarks compare the tables with.
pub fn merge_archive_blocking(data: &str) -> Result<MergeStats, String> {
    let store =
        store::open_store(data).map_err(|e| format!("cannot open data store {data}: {e}"))?;
    super::runtime()?
        .block_on(merge_all(store))
        .map_err(|e| format!("merge failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DirStore, report_key, sha256_hex};
    use clearcount_protocol::report::ProgramReport;

    const CONFIG: &str = r#"
version = 1
sample_rate = 0.5

[[program]]
name = "tool"
versions = ["1.*"]
os = ["linux", "macos"]
arch = ["x86_64", "aarch64"]

[[program.counter]]
name = "tool/command:{build,test,run}"
rate = 0.5
"#;

    fn week(weeks_ago: i64) -> String {
        (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
            .format("%Y-%m-%d")
            .to_string()
    }

    /// Report number `i`: its X is unique.
    fn report(i: usize) -> Report {
        let mut p = ProgramReport::new("tool", "1.2.0", "linux", "x86_64");
        p.counters
            .insert("tool/command:build".into(), 1 + (i % 7) as u64);
        if i.is_multiple_of(3) {
            p.counters.insert("tool/command:test".into(), 2);
        }
        Report {
            week: week(1),
            x: 0.001 + i as f64 * 0.0001,
            config: 1,
            programs: vec![p],
        }
    }

    /// `merge_blocking` (`clearcount merge`) on a directory store: the
    /// archive, then the static site with relative links that resolve.
    #[test]
    fn clearcount_merge_publishes_the_static_site_on_a_directory_too() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store: Arc<dyn Store> = Arc::new(DirStore::open(&data).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for i in 0..12 {
                let bytes = report(i).to_bytes();
                let key = report_key(&week(1), &sha256_hex(&bytes));
                store.put_if_absent(&key, bytes).await.unwrap();
            }
            store
                .put("config/current.toml", CONFIG.as_bytes().to_vec())
                .await
                .unwrap();
            store
                .put("config/history/v1.toml", CONFIG.as_bytes().to_vec())
                .await
                .unwrap();
        });
        let stats = merge_blocking(&data.display().to_string(), 10).unwrap();
        assert_eq!(stats.reports, 12);
        let site = data.join("site");
        let charts = std::fs::read_to_string(site.join("charts.html")).unwrap();
        assert!(
            charts.contains("<svg") && charts.contains("12 reports"),
            "{charts}"
        );
        let data_page = std::fs::read_to_string(site.join("data.html")).unwrap();
        let link = format!("../archive/{}.ndjson", week(1));
        assert!(data_page.contains(&link));
        // The relative link resolves to the archive file next to site/.
        assert!(site.join(&link).exists());
        let config_page = std::fs::read_to_string(site.join("config.html")).unwrap();
        assert!(config_page.contains("../config/history/v1.toml"));
        assert!(site.join("../config/history/v1.toml").exists());
        assert_eq!(
            std::fs::read_to_string(site.join("config.toml")).unwrap(),
            CONFIG
        );
        assert!(site.join("index.html").exists());
    }
}
