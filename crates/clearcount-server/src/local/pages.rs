//! The local view's pages, in the public pages' layout and style
//! ([`crate::render`]); the charts are the public charts
//! ([`crate::render::charts_body`] over [`ChartData`]), drawn from the
//! local reports.
//!
//! Links are relative (`reports`, `./`), so the token in the path is never
//! written into a page.

use super::{LocalData, LocalSource, NextUpload, ViewState};
use crate::charts::{ChartData, esc};
use crate::pages::{plain, raw};
use crate::render;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use clearcount_protocol::report::Report;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// The header's links: (link, label).
const NAV: [(&str, &str); 4] = [
    ("./", "This week"),
    ("reports", "Reports"),
    ("charts", "Charts"),
    ("upload", "Next upload"),
];

/// A page of the local view.
fn page(title: &str, active: &str, body: &str) -> Response {
    raw(
        "text/html; charset=utf-8",
        render::layout(title, "./", &NAV, active, "", body),
    )
}

/// Reads from the source on a blocking thread.
async fn read<T: Send + 'static>(
    state: &Arc<ViewState>,
    f: impl FnOnce(&dyn LocalSource) -> T + Send + 'static,
) -> Result<T, Response> {
    let source = state.source.clone();
    tokio::task::spawn_blocking(move || f(&*source))
        .await
        .map_err(|_| {
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the local data failed",
            )
        })
}

/// A table of counters and their counts: one row per counter (a stack
/// counter's frames under its name), the count right-aligned.
fn counts_table(rows: &BTreeMap<String, u64>, stacks: &BTreeMap<String, u64>) -> String {
    if rows.is_empty() && stacks.is_empty() {
        return r#"<p class="muted">No counts.</p>"#.to_string();
    }
    let mut t = String::from(r#"<table><tr><th>counter</th><th>count</th></tr>"#);
    for (name, n) in rows {
        let _ = write!(
            t,
            r#"<tr><td><code>{}</code></td><td class="n">{n}</td></tr>"#,
            esc(name)
        );
    }
    for (name, n) in stacks {
        let mut lines = name.lines();
        let head = lines.next().unwrap_or("");
        let frames: Vec<&str> = lines.collect();
        let _ = write!(
            t,
            r#"<tr><td><code>{}</code><pre>{}</pre></td><td class="n">{n}</td></tr>"#,
            esc(head),
            esc(&frames.join("\n"))
        );
    }
    t.push_str("</table>");
    t
}

/// `/`: this week's counts, live.
pub(crate) async fn home(State(state): State<Arc<ViewState>>) -> Response {
    match read(&state, |s| s.data()).await {
        Ok(d) => page("This week", "./", &home_body(&d)),
        Err(r) => r,
    }
}

fn home_body(d: &LocalData) -> String {
    let mut b = format!(
        r#"<h1>{}: this week</h1><p class="lead">What {0} counted on this machine this week, read from its counter files at each load of this page: nothing here has left the machine.</p>"#,
        esc(&d.namespace)
    );
    let _ = write!(
        b,
        r#"<table><tr><th>mode</th><td>{}</td></tr><tr><th>turn off</th><td><code>{} off</code></td></tr><tr><th>directory</th><td><code>{}</code></td></tr><tr><th>this week</th><td>{}</td></tr></table>"#,
        esc(&d.mode),
        esc(&d.command),
        esc(&d.dir),
        match &d.week_begin {
            Some(w) => format!("from {}", esc(w)),
            None => "nothing counted yet".into(),
        }
    );
    b.push_str("<h2>Counts this week</h2>");
    b.push_str(&counts_table(&d.counters, &d.stacks));
    if !d.files.is_empty() {
        b.push_str("<h2>Counter files</h2><ul>");
        for (path, problem) in &d.files {
            let _ = write!(b, "<li><code>{}</code>", esc(path));
            if let Some(p) = problem {
                let _ = write!(b, r#" <span class="muted">(unreadable: {})</span>"#, esc(p));
            }
            b.push_str("</li>");
        }
        b.push_str("</ul>");
    }
    b
}

/// `/reports`: every local report, newest first.
pub(crate) async fn reports(State(state): State<Arc<ViewState>>) -> Response {
    match read(&state, |s| s.data()).await {
        Ok(d) => page("Reports", "reports", &reports_body(&d)),
        Err(r) => r,
    }
}

fn reports_body(d: &LocalData) -> String {
    let mut b = String::from(
        r#"<h1>Reports</h1><p class="lead">Each finished week becomes one local report, kept on this machine, with its random number X. Only in mode <code>on</code>, and only if X is small enough, is it filtered by the signed config and sent; below is what became of each.</p>"#,
    );
    if d.reports.is_empty() {
        b.push_str(r#"<p class="muted">No reports yet: a week's report is made once the week is over.</p>"#);
    }
    for r in d.reports.iter().rev() {
        let _ = write!(
            b,
            r#"<h2 id="w-{0}">Week {0}</h2><p>{1}</p>"#,
            esc(&r.week),
            esc(&r.fate)
        );
        match &r.report {
            Ok(rep) => {
                let _ = write!(b, r#"<p class="muted">X = {}</p>"#, rep.x);
                if rep.programs.is_empty() {
                    b.push_str(r#"<p class="muted">No counts.</p>"#);
                }
                for p in &rep.programs {
                    let _ = write!(
                        b,
                        "<h3>{} {} ({}, {})</h3>",
                        esc(&p.program),
                        esc(&p.version),
                        esc(&p.os),
                        esc(&p.arch)
                    );
                    b.push_str(&counts_table(&p.counters, &p.stacks));
                }
            }
            Err(e) => {
                let _ = write!(b, r#"<p class="muted">Unreadable: {}</p>"#, esc(e));
            }
        }
    }
    b
}

/// `/charts`: the public charts, drawn from the local reports and this
/// week's counts.
pub(crate) async fn charts(State(state): State<Arc<ViewState>>) -> Response {
    match read(&state, |s| s.data()).await {
        Ok(d) => page("Charts", "charts", &charts_body(&d)),
        Err(r) => r,
    }
}

/// The chart data of the local reports, and of this week so far.
pub(crate) fn chart_data(d: &LocalData) -> ChartData {
    let mut data = ChartData::default();
    let reports: Vec<&Report> = d
        .reports
        .iter()
        .filter_map(|r| r.report.as_ref().ok())
        .chain(d.this_week.as_ref())
        .collect();
    for r in reports {
        data.add(r);
    }
    data
}

fn charts_body(d: &LocalData) -> String {
    const NOTE: &str = r#"<p class="muted">These are the charts of the public pages, drawn from this machine's own reports (and from this week's counts so far, as if this week were over): the way your reports would count there. A report counts once in each bucket it has, whatever its count, so each bar here is one week having the bucket. The counts are on the <a href="./">this week</a> and <a href="reports">reports</a> pages.</p>"#;
    let mut b = render::charts_body(&chart_data(d), None, 1);
    // After the title and its lead paragraph.
    let at = b.find("</p>").map_or(0, |i| i + "</p>".len());
    b.insert_str(at, NOTE);
    b
}

/// `/upload`: the uploader's state and what the next upload would send.
pub(crate) async fn upload(State(state): State<Arc<ViewState>>) -> Response {
    match read(&state, |s| (s.data(), s.next_upload())).await {
        Ok((d, next)) => page("Next upload", "upload", &upload_body(&d, &next)),
        Err(r) => r,
    }
}

fn upload_body(d: &LocalData, next: &NextUpload) -> String {
    let mut b = String::from(
        r#"<h1>Next upload</h1><p class="lead">What the next upload would send, byte for byte, computed now by the upload's own code, sending and recording nothing.</p>"#,
    );
    if !d.upload.is_empty() {
        b.push_str("<ul>");
        for l in &d.upload {
            let _ = write!(b, "<li>{}</li>", esc(l));
        }
        b.push_str("</ul>");
    }
    for n in &next.notes {
        let _ = write!(b, r#"<p class="muted">{}</p>"#, esc(n));
    }
    if next.weeks.is_empty() {
        b.push_str("<p>Nothing would be sent now.</p>");
    }
    for w in &next.weeks {
        let _ = write!(
            b,
            r#"<h2>Week {}</h2><p>{}</p>"#,
            esc(&w.week),
            esc(&w.what)
        );
        if let Some(bytes) = &w.bytes {
            let _ = write!(b, "<pre><code>{}</code></pre>", esc(bytes));
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LocalReport;
    use clearcount_protocol::report::ProgramReport;

    fn report(week: &str, counters: &[(&str, u64)]) -> Report {
        let mut p = ProgramReport::new("mytool", "1.0", "linux", "x86_64");
        for (k, v) in counters {
            p.counters.insert((*k).into(), *v);
        }
        Report {
            week: week.into(),
            x: 0.5,
            config: 0,
            programs: vec![p],
        }
    }

    #[test]
    fn pages_show_the_counts_escaped_and_the_charts_every_week() {
        let mut d = LocalData {
            namespace: "mytool".into(),
            mode: "local (the default)".into(),
            command: "clearcount --namespace mytool".into(),
            week_begin: Some("2026-11-16".into()),
            ..LocalData::default()
        };
        d.counters.insert("mytool/build-time:<10ms".into(), 7);
        d.stacks.insert("crash/panic\nmain:+3\nstart".into(), 2);
        d.this_week = Some(report("2026-11-16", &[("mytool/build-time:<10ms", 7)]));
        d.reports.push(LocalReport {
            week: "2026-11-09".into(),
            fate: "not sent (yet)".into(),
            report: Ok(report("2026-11-09", &[("mytool/command:build", 3)])),
        });
        d.reports.push(LocalReport {
            week: "2026-11-02".into(),
            fate: "x".into(),
            report: Err("bad <json>".into()),
        });
        let home = home_body(&d);
        assert!(
            home.contains(r#"<code>mytool/build-time:&lt;10ms</code></td><td class="n">7</td>"#),
            "{home}"
        );
        assert!(home.contains("<pre>main:+3\nstart</pre></td><td class=\"n\">2</td>"));
        let reps = reports_body(&d);
        assert!(reps.contains("Week 2026-11-09") && reps.contains("not sent (yet)"));
        assert!(reps.contains("Unreadable: bad &lt;json&gt;"));
        let data = chart_data(&d);
        assert_eq!(data.total, 2, "one report, and this week");
        assert_eq!(data.weeks.len(), 2);
        let charts = charts_body(&d);
        assert!(charts.contains("counter mytool/build-time"), "{charts}");
        assert!(charts.contains("counter mytool/command"));
        assert!(!charts.contains("fewer than"), "no threshold locally");
    }
}
