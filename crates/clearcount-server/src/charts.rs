//! Charts from the archive: counts of reports per bucket per week, and their
//! rendering as inline SVG.
//!
//! A chart counts *reports that have a bucket* (a counter with a non-zero
//! count), not summed counts: one busy installation weighs as much as a
//! quiet one. A bucket seen in fewer than `k` reports in a week is not shown
//! for that week (see [`ChartData::to_charts`]).

use super::store::Store;
use clearcount_protocol::report::Report;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead};

/// week → number of reports.
pub type Series = BTreeMap<String, u64>;

/// The tallies of one program.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramTally {
    /// Reports that carry the program, per week.
    pub reports: Series,
    /// Reports per version, per week.
    pub versions: BTreeMap<String, Series>,
    /// Reports per OS, per week.
    pub os: BTreeMap<String, Series>,
    /// Reports per architecture, per week.
    pub arch: BTreeMap<String, Series>,
    /// Counter base name (before `:`) → bucket (after `:`, or the whole name
    /// for a counter without buckets) → reports per week.
    pub counters: BTreeMap<String, BTreeMap<String, Series>>,
    /// Stack counter name → reports per week.
    pub stacks: BTreeMap<String, Series>,
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
    /// Per program.
    pub programs: BTreeMap<String, ProgramTally>,
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
            let t = self.programs.entry(p.program.clone()).or_default();
            for (kind, value) in [("p", ""), ("v", &p.version), ("o", &p.os), ("a", &p.arch)] {
                if !seen.insert((&p.program, kind, value)) {
                    continue;
                }
                match kind {
                    "p" => bump(&mut t.reports, week),
                    "v" => bump(t.versions.entry(value.to_owned()).or_default(), week),
                    "o" => bump(t.os.entry(value.to_owned()).or_default(), week),
                    _ => bump(t.arch.entry(value.to_owned()).or_default(), week),
                }
            }
            for (name, &count) in &p.counters {
                if count == 0 || !seen.insert((&p.program, "c", name)) {
                    continue;
                }
                let (base, bucket) = name.split_once(':').unwrap_or((name, name));
                let b = t.counters.entry(base.to_owned()).or_default();
                bump(b.entry(bucket.to_owned()).or_default(), week);
            }
            for (name, &count) in &p.stacks {
                let base = name.split('\n').next().unwrap_or(name);
                if count == 0 || !seen.insert((&p.program, "s", base)) {
                    continue;
                }
                bump(t.stacks.entry(base.to_owned()).or_default(), week);
            }
        }
    }

    /// Adds every report of a newline-delimited JSON stream (one archive
    /// file). Lines that are not reports are counted in `skipped`.
    pub fn add_ndjson(&mut self, reader: impl io::Read) -> io::Result<()> {
        let mut reader = io::BufReader::with_capacity(128 * 1024, reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Lines longer than an upload can be are not reports: read them
            // in bounded pieces and skip.
            let n = io::Read::take(&mut reader, super::MAX_BODY as u64 * 2)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            if line.last() != Some(&b'\n') && n as u64 == super::MAX_BODY as u64 * 2 {
                self.skipped += 1;
                // Skip to the end of this long line.
                loop {
                    line.clear();
                    let m = io::Read::take(&mut reader, super::MAX_BODY as u64)
                        .read_until(b'\n', &mut line)?;
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
                Ok(r) => self.add(&r),
                Err(_) => self.skipped += 1,
            }
        }
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
            d = tokio::task::spawn_blocking(move || d.add_ndjson(reader).map(|()| d))
                .await
                .map_err(|e| io::Error::other(format!("chart task failed: {e}")))??;
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
        let empty = BTreeMap::new();
        for base in names {
            let buckets = t.counters.get(base).unwrap_or(&empty);
            charts.push(Chart::new(format!("counter {base}"), &weeks, buckets, k));
        }
        if !t.stacks.is_empty() {
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
    /// Buckets not shown (under the threshold every week, or beyond
    /// [`MAX_SERIES`]).
    pub hidden: usize,
}

impl Chart {
    /// Builds a chart from bucket → week → reports, hiding cells under `k`.
    pub fn new(
        title: String,
        weeks: &[String],
        buckets: &BTreeMap<String, Series>,
        k: u64,
    ) -> Chart {
        let mut series: Vec<(String, Vec<u64>)> = buckets
            .iter()
            .map(|(name, s)| {
                let v = weeks
                    .iter()
                    .map(|w| s.get(w).copied().filter(|&n| n >= k.max(1)).unwrap_or(0))
                    .collect();
                (name.clone(), v)
            })
            .collect();
        let before = series.len();
        series.retain(|(_, v)| v.iter().any(|&n| n > 0));
        series.sort_by(|a, b| {
            b.1.iter()
                .sum::<u64>()
                .cmp(&a.1.iter().sum::<u64>())
                .then(a.0.cmp(&b.0))
        });
        series.truncate(MAX_SERIES);
        Chart {
            title,
            weeks: weeks.to_vec(),
            hidden: before - series.len(),
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
        assert_eq!(d.programs["t"].counters["t/cmd"]["build"]["2026-11-16"], 1);
        assert_eq!(d.programs["t"].versions["1.0"]["2026-11-16"], 1);
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
}
