//! Charts from the archive: counts of reports per bucket per week, and their
//! rendering as inline SVG.
//!
//! A chart counts *reports that have a bucket* (a counter with a non-zero
//! count), not summed counts: one busy installation weighs as much as a
//! quiet one. A bucket seen in fewer than `k` reports in a week is not shown
//! for that week (see [`ChartData::to_charts`]).
//!
//! # Bounded, whatever senders make up
//!
//! Version patterns such as `1.*` accept any version string, and an empty
//! `os` or `arch` list any system, so the number of distinct values is
//! the senders' choice. Each [`Tally`] keeps at most [`MAX_KEYS`] values
//! (each cut to [`MAX_KEY_LEN`] bytes); when a new value would be one too
//! many, the less reported half is folded into the tally's `other` series.
//! A program keeps at most [`MAX_KEYS`] counters, and the data at most
//! [`MAX_PROGRAMS`] programs (more are counted in
//! [`ChartData::dropped`]). A chart draws the [`MAX_SERIES`] most reported
//! values and one `other` series for the rest. So the chart data and the
//! page stay bounded: a flood of 10,000 made-up versions costs one
//! `other` bar. A value rarer than the most reported [`MAX_KEYS`] may be
//! counted partly under `other`.

use super::store::Store;
use clearcount_protocol::report::Report;
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// week → number of reports.
pub type Series = BTreeMap<String, u64>;

/// Values kept per tally (versions, systems, buckets of one counter, ...).
pub const MAX_KEYS: usize = 200;
/// Programs kept in the chart data.
pub const MAX_PROGRAMS: usize = 50;
/// Longest value kept, in bytes (longer ones are cut, with `…`).
pub const MAX_KEY_LEN: usize = 64;
/// The name of the series that holds the values not shown on their own.
pub const OTHER: &str = "other";

/// Reports per value per week, for at most [`MAX_KEYS`] values; the rest
/// are summed in `other`.
///
/// Once full, a tally folds the less reported half of its values into
/// `other` to make room. Which half is ranked by how often each value was
/// seen in all, kept or not, as a small count-min sketch tells (made at
/// the first fold, [`SKETCH_ROWS`] × [`SKETCH_COLS`] counters): a value
/// folded once and seen often again (a real version among a flood of
/// made-up ones) outranks values seen once, and stays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Value → reports per week.
    pub keys: BTreeMap<String, Series>,
    /// Reports per week of the values folded out of `keys`.
    pub other: Series,
    /// Values folded into `other` (a value folded twice counts twice).
    pub folded: u64,
    /// How often each value was seen, roughly (from the first fold on).
    sketch: Option<Box<Sketch>>,
}

/// Rows of a tally's count-min sketch.
pub const SKETCH_ROWS: usize = 4;
/// Counters per row (the sketch takes 4 × 512 × 4 bytes = 8 KiB).
pub const SKETCH_COLS: usize = 512;

/// A count-min sketch: an estimate, never under the truth, of how often a
/// value was seen.
#[derive(Debug, Clone, PartialEq)]
struct Sketch([[u32; SKETCH_COLS]; SKETCH_ROWS]);

impl Sketch {
    fn cells(key: &str) -> [usize; SKETCH_ROWS] {
        use std::hash::{Hash, Hasher};
        std::array::from_fn(|row| {
            let mut h = std::hash::DefaultHasher::new();
            row.hash(&mut h);
            key.hash(&mut h);
            h.finish() as usize % SKETCH_COLS
        })
    }

    fn add(&mut self, key: &str, n: u64) {
        for (row, col) in Self::cells(key).into_iter().enumerate() {
            self.0[row][col] = self.0[row][col].saturating_add(n.min(u64::from(u32::MAX)) as u32);
        }
    }

    fn estimate(&self, key: &str) -> u64 {
        Self::cells(key)
            .into_iter()
            .enumerate()
            .map(|(row, col)| u64::from(self.0[row][col]))
            .min()
            .unwrap_or(0)
    }
}

impl Tally {
    /// Counts one report with `key` in `week`.
    pub fn bump(&mut self, key: &str, week: &str) {
        let key = clip(key);
        if let Some(sk) = &mut self.sketch {
            sk.add(key, 1);
        }
        if let Some(s) = self.keys.get_mut(key) {
            bump(s, week);
            return;
        }
        if self.keys.len() >= MAX_KEYS {
            self.fold_half();
        }
        bump(self.keys.entry(key.to_owned()).or_default(), week);
    }

    /// Folds the less seen half of the values into `other` (ties: the
    /// later names), so that adding is amortised O(log n).
    fn fold_half(&mut self) {
        if self.sketch.is_none() {
            let mut sk = Box::new(Sketch([[0; SKETCH_COLS]; SKETCH_ROWS]));
            for (k, s) in &self.keys {
                sk.add(k, s.values().sum());
            }
            self.sketch = Some(sk);
        }
        let sk = self.sketch.as_deref();
        let mut by_total: Vec<(u64, &String)> = self
            .keys
            .iter()
            .map(|(k, s)| {
                let seen = s.values().sum::<u64>();
                (sk.map_or(seen, |sk| sk.estimate(k).max(seen)), k)
            })
            .collect();
        by_total.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)));
        let out: Vec<String> = by_total[..by_total.len() / 2]
            .iter()
            .map(|(_, k)| (*k).clone())
            .collect();
        for k in out {
            if let Some(s) = self.keys.remove(&k) {
                for (w, n) in s {
                    *self.other.entry(w).or_default() += n;
                }
                self.folded += 1;
            }
        }
    }

    /// Number of distinct values seen (kept and folded).
    pub fn seen(&self) -> u64 {
        self.keys.len() as u64 + self.folded
    }
}

/// `s` cut to at most [`MAX_KEY_LEN`] bytes, on a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_KEY_LEN {
        return s;
    }
    let mut cut = MAX_KEY_LEN;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// The tallies of one program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramTally {
    /// Reports that carry the program, per week.
    pub reports: Series,
    /// Reports per version, per week.
    pub versions: Tally,
    /// Reports per OS, per week.
    pub os: Tally,
    /// Reports per architecture, per week.
    pub arch: Tally,
    /// Counter base name (before `:`) → bucket (after `:`, or the whole name
    /// for a counter without buckets) → reports per week. At most
    /// [`MAX_KEYS`] counters.
    pub counters: BTreeMap<String, Tally>,
    /// Stack counter name → reports per week.
    pub stacks: Tally,
}

/// Everything the charts are drawn from. Its size depends on the number of
/// distinct programs, versions and counters, never on the number of reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChartData {
    /// All weeks seen, sorted.
    pub weeks: BTreeSet<String>,
    /// Reports read.
    pub total: u64,
    /// Lines that were not valid reports.
    pub skipped: u64,
    /// Per program (at most [`MAX_PROGRAMS`]).
    pub programs: BTreeMap<String, ProgramTally>,
    /// Program entries and counters left out: past [`MAX_PROGRAMS`]
    /// programs, or [`MAX_KEYS`] counters of a program.
    pub dropped: u64,
}

fn bump(series: &mut Series, week: &str) {
    *series.entry(week.to_owned()).or_default() += 1;
}

impl ChartData {
    /// Adds one report.
    pub fn add(&mut self, r: &Report) {
        let week = r.week.as_str();
        self.weeks.insert(r.week.clone());
        self.total += 1;
        // A report may carry one program in several builds; each bucket is
        // counted once per report and program.
        let mut seen: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
        for p in &r.programs {
            if !self.programs.contains_key(&p.program) && self.programs.len() >= MAX_PROGRAMS {
                self.dropped += 1;
                continue;
            }
            let t = self.programs.entry(p.program.clone()).or_default();
            for (kind, value) in [("p", ""), ("v", &p.version), ("o", &p.os), ("a", &p.arch)] {
                if !seen.insert((&p.program, kind, value)) {
                    continue;
                }
                match kind {
                    "p" => bump(&mut t.reports, week),
                    "v" => t.versions.bump(value, week),
                    "o" => t.os.bump(value, week),
                    _ => t.arch.bump(value, week),
                }
            }
            for (name, &count) in &p.counters {
                if count == 0 || !seen.insert((&p.program, "c", name)) {
                    continue;
                }
                let (base, bucket) = name.split_once(':').unwrap_or((name, name));
                if !t.counters.contains_key(base) && t.counters.len() >= MAX_KEYS {
                    self.dropped += 1;
                    continue;
                }
                t.counters
                    .entry(base.to_owned())
                    .or_default()
                    .bump(bucket, week);
            }
            for (name, &count) in &p.stacks {
                let base = name.split('\n').next().unwrap_or(name);
                if count == 0 || !seen.insert((&p.program, "s", base)) {
                    continue;
                }
                t.stacks.bump(base, week);
            }
        }
    }

    /// Adds every report of a newline-delimited JSON stream (one archive
    /// file). Lines that are not reports are counted in `skipped`.
    pub fn add_ndjson(&mut self, reader: impl io::Read) -> io::Result<()> {
        self.skipped += super::merge::for_each_report(reader, |r| self.add(&r))?;
        Ok(())
    }

    /// Reads the archive files of the last [`MAX_WEEKS`] weeks of a store
    /// (streaming, one line at a time).
    pub async fn from_archive(store: std::sync::Arc<dyn Store>) -> io::Result<ChartData> {
        let listing = store.list("archive/").await?;
        let mut data = ChartData::default();
        // Only the weeks the charts show are read.
        let files: Vec<_> = listing
            .objects
            .into_iter()
            .filter(|o| o.key.ends_with(".ndjson"))
            .collect();
        let skip = files.len().saturating_sub(MAX_WEEKS);
        for obj in files.into_iter().skip(skip) {
            let Some(reader) = store.open(&obj.key).await? else {
                continue;
            };
            let mut d = std::mem::take(&mut data);
            d = super::background("clearcount-charts", move || {
                d.add_ndjson(reader).map(|()| d)
            })
            .await?;
            data = d;
        }
        Ok(data)
    }

    /// The charts of one program: versions, OS, architecture, then one per
    /// counter (the declared ones first, in `declared` order, then any other
    /// seen in the data). Cells under `k` reports are left out.
    pub fn to_charts(&self, program: &str, declared: &[String], k: u64) -> Vec<Chart> {
        let Some(t) = self.programs.get(program) else {
            return Vec::new();
        };
        let weeks: Vec<String> = self
            .weeks
            .iter()
            .rev()
            .take(MAX_WEEKS)
            .rev()
            .cloned()
            .collect();
        let mut charts = vec![
            Chart::new(format!("{program}: versions"), &weeks, &t.versions, k),
            Chart::new(format!("{program}: operating systems"), &weeks, &t.os, k),
            Chart::new(format!("{program}: architectures"), &weeks, &t.arch, k),
        ];
        let mut names: Vec<&str> = Vec::new();
        for d in declared {
            let base = d.split_once(':').map_or(d.as_str(), |(b, _)| b);
            if !names.contains(&base) {
                names.push(base);
            }
        }
        for base in t.counters.keys() {
            if !names.contains(&base.as_str()) {
                names.push(base);
            }
        }
        let empty = Tally::default();
        for base in names {
            let buckets = t.counters.get(base).unwrap_or(&empty);
            charts.push(Chart::new(format!("counter {base}"), &weeks, buckets, k));
        }
        if t.stacks.seen() > 0 {
            charts.push(Chart::new(
                format!("{program}: stack counters"),
                &weeks,
                &t.stacks,
                k,
            ));
        }
        charts
    }
}

/// Charts show at most this many (most recent) weeks.
pub const MAX_WEEKS: usize = 12;
/// Charts show at most this many buckets (the most reported).
pub const MAX_SERIES: usize = 10;

/// One chart, ready to draw: weeks along x, one series per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title, shown above and as the SVG `<title>`.
    pub title: String,
    /// Weeks along the x axis.
    pub weeks: Vec<String>,
    /// Bucket name and reports per week (same order as `weeks`; cells under
    /// the threshold are 0).
    pub series: Vec<(String, Vec<u64>)>,
    /// Buckets not shown on their own (under the threshold every week,
    /// beyond [`MAX_SERIES`], or folded by the [`Tally`]); what they count,
    /// where it reaches the threshold, is the last series, [`OTHER`].
    pub hidden: usize,
}

impl Chart {
    /// Builds a chart from a tally, hiding cells under `k`: the
    /// [`MAX_SERIES`] most reported values, then [`OTHER`] for the rest
    /// (the cells under `k`, the values past [`MAX_SERIES`] and those the
    /// tally folded), itself shown only where it reaches `k`.
    pub fn new(title: String, weeks: &[String], tally: &Tally, k: u64) -> Chart {
        let k = k.max(1);
        let raw = |s: &Series| -> Vec<u64> {
            weeks
                .iter()
                .map(|w| s.get(w).copied().unwrap_or(0))
                .collect()
        };
        let mut other = raw(&tally.other);
        let mut series: Vec<(String, Vec<u64>)> = Vec::new();
        for (name, s) in &tally.keys {
            let mut shown = raw(s);
            for (o, n) in other.iter_mut().zip(shown.iter_mut()) {
                if *n < k {
                    *o += *n;
                    *n = 0;
                }
            }
            series.push((name.clone(), shown));
        }
        series.sort_by(|a, b| {
            b.1.iter()
                .sum::<u64>()
                .cmp(&a.1.iter().sum::<u64>())
                .then(a.0.cmp(&b.0))
        });
        let shown = series
            .iter()
            .take(MAX_SERIES)
            .take_while(|(_, v)| v.iter().any(|&n| n > 0))
            .count();
        for (_, v) in series.drain(shown..) {
            for (o, n) in other.iter_mut().zip(v) {
                *o += n;
            }
        }
        let hidden = (tally.seen() as usize).saturating_sub(series.len());
        for o in &mut other {
            if *o < k {
                *o = 0;
            }
        }
        if other.iter().any(|&n| n > 0) {
            series.push((OTHER.to_owned(), other));
        }
        Chart {
            title,
            weeks: weeks.to_vec(),
            hidden,
            series,
        }
    }

    /// Draws the chart as an inline SVG: grouped bars per week, y axis with
    /// ticks (reports), x axis with the weeks, a legend, `<title>` and
    /// `<desc>` for screen readers, and a `<title>` on every bar.
    pub fn to_svg(&self) -> String {
        use std::fmt::Write;
        const W: f64 = 760.0;
        const H: f64 = 316.0;
        const LEFT: f64 = 56.0;
        const RIGHT: f64 = 190.0;
        const TOP: f64 = 16.0;
        const BOTTOM: f64 = 72.0;
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let max = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .max()
            .unwrap_or(0);
        let (top, step) = nice_axis(max);
        let id = svg_id(&self.title);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" role="img" aria-labelledby="{id}-t {id}-d" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{}</title><desc id="{id}-d">Reports per week having each bucket; {} series over {} weeks.</desc>"#,
            esc(&self.title),
            self.series.len(),
            self.weeks.len()
        );
        // Y axis: grid lines and tick labels.
        let mut v = 0;
        while v <= top {
            let y = TOP + plot_h - (v as f64 / top as f64) * plot_h;
            let _ = write!(
                s,
                r##"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e6ea"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{v}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0
            );
            v += step;
        }
        let _ = write!(
            s,
            r##"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line class="axis" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><text x="14" y="{:.1}" font-size="11" fill="#555" transform="rotate(-90 14 {:.1})" text-anchor="middle">reports</text>"##,
            TOP + plot_h,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0
        );
        // Bars, grouped by week.
        let nweeks = self.weeks.len().max(1) as f64;
        let group_w = plot_w / nweeks;
        let nser = self.series.len().max(1) as f64;
        let bar_w = (group_w * 0.8 / nser).max(1.0);
        for (wi, week) in self.weeks.iter().enumerate() {
            let gx = LEFT + group_w * wi as f64 + group_w * 0.1;
            for (si, (name, vals)) in self.series.iter().enumerate() {
                let n = vals.get(wi).copied().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                let h = n as f64 / top as f64 * plot_h;
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}, week of {}: {} reports</title></rect>"#,
                    gx + bar_w * si as f64,
                    TOP + plot_h - h,
                    bar_w,
                    h,
                    color(si),
                    esc(name),
                    esc(week),
                    n
                );
            }
            let lx = LEFT + group_w * (wi as f64 + 0.5);
            let ly = TOP + plot_h + 16.0;
            let _ = write!(
                s,
                r##"<text x="{lx:.1}" y="{ly:.1}" font-size="10" fill="#555" text-anchor="end" transform="rotate(-30 {lx:.1} {ly:.1})">{}</text>"##,
                esc(week)
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555" text-anchor="middle">week</text>"##,
            LEFT + plot_w / 2.0,
            H - 4.0
        );
        // Legend.
        let lx = LEFT + plot_w + 16.0;
        let _ = write!(s, r#"<g class="legend">"#);
        for (si, (name, vals)) in self.series.iter().enumerate() {
            let y = TOP + 4.0 + 18.0 * si as f64;
            let label = if name.len() > 24 {
                let mut cut = 23;
                while !name.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}…", &name[..cut])
            } else {
                name.clone()
            };
            let _ = write!(
                s,
                r##"<rect x="{lx:.1}" y="{y:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#222">{}<title>{}: {} reports in all</title></text>"##,
                color(si),
                lx + 18.0,
                y + 10.5,
                esc(&label),
                esc(name),
                vals.iter().sum::<u64>()
            );
        }
        if self.series.is_empty() {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="13" fill="#777" text-anchor="middle">not enough reports yet</text>"##,
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0
            );
        }
        s.push_str("</g></svg>");
        s
    }
}

/// A round axis top and tick step for values up to `max`.
fn nice_axis(max: u64) -> (u64, u64) {
    if max == 0 {
        return (1, 1);
    }
    let rough = (max as f64 / 5.0).max(1.0);
    let mag = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * mag)
        .max(1.0) as u64;
    (max.div_ceil(step) * step, step)
}

/// A colour-blind friendly palette (Okabe–Ito, then a few more).
fn color(i: usize) -> &'static str {
    const P: [&str; 10] = [
        "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
        "#999999", "#8C564B",
    ];
    P[i % P.len()]
}

fn svg_id(title: &str) -> String {
    let mut id = String::from("c");
    for c in title.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    id
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearcount_protocol::report::ProgramReport;

    /// A chart counts reports that have a bucket, not the counts in them:
    /// a busy installation weighs as much as a quiet one.
    #[test]
    fn tallies_count_reports_not_sums() {
        let mut p = ProgramReport::new("t", "1.0", "linux", "x86_64");
        p.counters.insert("t/cmd:build".into(), 4);
        let mut d = ChartData::default();
        d.add(&Report {
            week: "2026-11-16".into(),
            x: 0.1,
            config: 1,
            programs: vec![p],
        });
        assert_eq!(
            d.programs["t"].counters["t/cmd"].keys["build"]["2026-11-16"],
            1
        );
        assert_eq!(d.programs["t"].versions.keys["1.0"]["2026-11-16"], 1);
        // An archive line that is not a report is skipped and counted.
        let mut d = ChartData::default();
        let nd = b"{\"week\":\"2026-11-16\",\"x\":0.1,\"config\":1,\"programs\":[]}\nnot json\n";
        d.add_ndjson(&nd[..]).unwrap();
        assert_eq!((d.total, d.skipped), (1, 1));
    }

    #[test]
    fn an_empty_chart_still_draws_and_text_is_escaped() {
        let c = Chart {
            title: "t".into(),
            weeks: vec![],
            series: vec![],
            hidden: 0,
        };
        assert!(c.to_svg().contains("<svg"));
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    fn report(week: &str, version: &str, x: f64) -> Report {
        let mut p = ProgramReport::new("tool", version, "linux", "x86_64");
        p.counters.insert("tool/command:build".into(), 1);
        Report {
            week: week.into(),
            x,
            config: 1,
            programs: vec![p],
        }
    }

    /// A rough upper estimate of the heap the chart data holds.
    fn approx_bytes(d: &ChartData) -> usize {
        let series = |s: &Series| s.len() * (24 + 10 + 8 + 16);
        let tally = |t: &Tally| {
            t.keys
                .iter()
                .map(|(k, s)| 24 + k.len() + 16 + series(s))
                .sum::<usize>()
                + series(&t.other)
                + t.sketch
                    .as_ref()
                    .map_or(0, |_| SKETCH_ROWS * SKETCH_COLS * 4)
        };
        d.programs
            .values()
            .map(|p| {
                series(&p.reports)
                    + tally(&p.versions)
                    + tally(&p.os)
                    + tally(&p.arch)
                    + tally(&p.stacks)
                    + p.counters.values().map(tally).sum::<usize>()
            })
            .sum()
    }

    /// Chart data from `n` made-up versions (one report each, in 4 weeks)
    /// and three real ones (100 reports each, spread among them).
    fn flood(n: usize) -> ChartData {
        let mut d = ChartData::default();
        let weeks = ["2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"];
        let mut real = 0;
        for i in 0..n {
            let w = weeks[i % 4];
            d.add(&report(
                w,
                &format!("1.{i}.0-made-up-{}", "x".repeat(i % 100)),
                0.1,
            ));
            if i % (n / 300).max(1) == 0 {
                d.add(&report(w, &format!("1.{}.0", real % 3), 0.1));
                real += 1;
            }
        }
        d
    }

    #[test]
    fn ten_thousand_made_up_versions_stay_bounded() {
        let small = flood(1_000);
        let big = flood(10_000);
        let huge = flood(50_000);
        for d in [&small, &big, &huge] {
            let t = &d.programs["tool"].versions;
            assert!(t.keys.len() <= MAX_KEYS, "{}", t.keys.len());
            assert!(t.keys.keys().all(|k| k.len() <= MAX_KEY_LEN));
            // Nothing is lost: every report is in a kept value or in other.
            let kept: u64 = t.keys.values().flat_map(|s| s.values()).sum::<u64>()
                + t.other.values().sum::<u64>();
            assert_eq!(kept, d.total);
            // The real versions, reported far more often, are kept.
            for v in ["1.0.0", "1.1.0", "1.2.0"] {
                assert!(t.keys.contains_key(v), "{v} was folded");
            }
        }
        let (b, h) = (approx_bytes(&big), approx_bytes(&huge));
        eprintln!(
            "chart data: {} B (1,000 versions), {b} B (10,000), {h} B (50,000)",
            approx_bytes(&small)
        );
        assert!(b < 200 * 1024, "{b} bytes");
        assert!(h < 200 * 1024, "{h} bytes");
        // The versions chart: the 10 most reported, then one other.
        let charts = big.to_charts("tool", &[], 1);
        let versions = &charts[0];
        assert_eq!(versions.series.len(), MAX_SERIES + 1);
        assert_eq!(versions.series.last().unwrap().0, OTHER);
        assert_eq!(
            versions.hidden as u64,
            big.programs["tool"].versions.seen() - 10
        );
        let total: u64 = versions.series.iter().flat_map(|s| s.1.iter()).sum();
        assert_eq!(total, big.total);
        let page = crate::render::charts_body(&big, None, 1).len();
        let page_huge = crate::render::charts_body(&huge, None, 1).len();
        eprintln!("charts page: {page} B (10,000 versions), {page_huge} B (50,000)");
        assert!(
            page < 64 * 1024 && page_huge < 64 * 1024,
            "{page} {page_huge}"
        );
    }

    #[test]
    fn other_gathers_cells_under_k_and_is_itself_held_to_k() {
        let mut t = Tally::default();
        for _ in 0..6 {
            t.bump("a", "w1");
        }
        for _ in 0..2 {
            t.bump("b", "w1");
        }
        let weeks = vec!["w1".to_string()];
        let c = Chart::new("t".into(), &weeks, &t, 5);
        assert_eq!(c.series, vec![("a".to_string(), vec![6])]);
        assert_eq!(c.hidden, 1);
        for i in 0..5 {
            t.bump(&format!("c{i}"), "w1");
        }
        let c = Chart::new("t".into(), &weeks, &t, 5);
        assert_eq!(
            c.series,
            vec![("a".to_string(), vec![6]), (OTHER.to_string(), vec![7])]
        );
    }
}
