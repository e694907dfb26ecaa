//! The public pages in a real browser: `clearcount demo` fills a server on
//! loopback, then headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) loads `/charts`, and the test checks the rendered page: the
//! charts are there as SVG elements with titles, axes, legends and bars, and
//! a screenshot is saved to `target/browser-charts.png`.

mod common;

use common::KillOnDrop;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(c).exists() {
            return c.into();
        }
    }
    panic!("Chromium is not installed: `apt-get install chromium` (.ci/run does it)");
}

/// Runs headless Chromium with the flags this machine needs.
fn browse(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// Starts the demo and returns its base URL once its data is in.
fn start_demo(data: &std::path::Path) -> (KillOnDrop, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_clearcount"))
        .args([
            "demo",
            "--installations",
            "14",
            "--min-reports",
            "3",
            "--data",
        ])
        .arg(data)
        .env_remove("DO_NOT_TRACK")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the demo");
    let mut demo = KillOnDrop(child);
    let out = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut base = None;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("demo did not finish in time; it printed: {seen:#?}"));
        if let Some(url) = line.trim().strip_prefix("charts:") {
            base = Some(url.trim().trim_end_matches("/charts").to_string());
        }
        let serving = line.starts_with("demo: serving");
        seen.push(line);
        if serving {
            break;
        }
    }
    (demo, base.expect("the demo printed its charts URL"))
}

#[test]
fn charts_render_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let (_demo, base) = start_demo(&tmp.path().join("demo"));
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let url = format!("{base}/charts");
    let profile = tmp.path().join("chromium");

    // The DOM as the browser built it.
    let out = browse(&["--dump-dom", &url], &profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let svgs = dom.matches("<svg").count();
    assert!(
        svgs >= 5,
        "expected several charts, found {svgs} <svg> elements"
    );
    assert!(dom.contains("<title>"), "charts have titles");
    assert!(
        dom.contains("instrumented: versions"),
        "the versions chart is there"
    );
    assert!(
        dom.contains("instrumented/command"),
        "a declared counter's chart is there"
    );
    assert!(dom.contains("<rect"), "charts have bars");
    assert!(
        dom.contains("hello") && dom.contains("stack"),
        "legends name the buckets"
    );
    assert!(
        !dom.contains("undeclared-thing"),
        "an undeclared counter never reaches the public pages"
    );

    // A screenshot, for people (and for the closing note).
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser-charts.png");
    let out = browse(
        &[
            "--window-size=1280,2400",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
        &profile,
    );
    assert!(out.status.success(), "screenshot failed");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture"
    );

    // The other public pages load too.
    for page in ["/", "/data/", "/config", "/counters"] {
        let out = browse(&["--dump-dom", &format!("{base}{page}")], &profile);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && dom.contains("clearcount"), "{page}");
    }
}
