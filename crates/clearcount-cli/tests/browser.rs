//! The public pages in a real browser: `clearcount demo` fills a server on
//! loopback, then headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) loads `/charts`, and the test checks the rendered page: the
//! charts are there as SVG elements with titles, axes, legends and bars, and
//! a screenshot is saved to `target/browser-charts.png`.
//!
//! Every page is served with its security headers (a strict
//! `Content-Security-Policy`, `nosniff`, `no-referrer`), and Chromium, which
//! enforces the policy and reports each thing it blocks on its console
//! (logged to its standard error here), blocks nothing on any page. The
//! same `/charts` page served by the test with a policy that forbids its
//! style sheet is reported: the check sees a violation when there is one.
//!
//! The `/config` page, as Chromium renders it, shows the demo's config log
//! (every version, the latest checkpoint, how to audit it); a screenshot is
//! saved to `target/browser-config.png`.

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
            // The console (where CSP violations are reported) on stderr.
            "--enable-logging=stderr",
            "--v=0",
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

    // Every public page: the security headers, and nothing blocked.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for page in ["/", "/charts", "/data/", "/config", "/counters"] {
        let url = format!("{base}{page}");
        let r = agent.get(&url).call().expect("the page loads");
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-")
                && csp.contains("frame-ancestors 'none'"),
            "{page}: {csp:?}"
        );
        assert_eq!(h("x-content-type-options"), "nosniff", "{page}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{page}");
        let out = browse(&["--dump-dom", &url], &profile);
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && dom.contains("clearcount"), "{page}");
        let blocked = csp_violations(&out);
        assert!(blocked.is_empty(), "{page}: Chromium blocked {blocked:#?}");
    }

    // The demo's archive (`--data DIR`) has every week's tables beside its
    // NDJSON, and `/data/` lists them.
    let archive = tmp.path().join("demo/server/archive");
    let weeks: Vec<String> = std::fs::read_dir(&archive)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".ndjson").map(str::to_owned)
        })
        .collect();
    assert!(!weeks.is_empty(), "no archive in {}", archive.display());
    let out = browse(&["--dump-dom", &format!("{base}/data/")], &profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    for w in &weeks {
        let parquet = std::fs::read(archive.join(format!("{w}.parquet"))).unwrap();
        assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
        assert!(archive.join(format!("{w}.csv")).is_file());
        assert!(
            dom.contains(&format!("{w}.parquet")) && dom.contains(&format!("{w}.csv")),
            "/data/ lists {w}'s tables"
        );
    }

    // The config page shows the demo's config log, as the browser builds
    // it under the policy: every version with its hashes, the latest
    // checkpoint and who signed it, how to audit it; and the auditor's
    // endpoints it links to answer.
    let config_url = format!("{base}/config");
    let out = browse(&["--dump-dom", &config_url], &profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Config log",
        "demo.clearcount.localhost/config-log",
        "Every version",
        "Latest checkpoint",
        "the log key",
        "clearcount config audit URL/log",
        r#"href="/log/entries/0""#,
        r#"href="/log/checkpoint""#,
        r#"href="/config.toml.proof""#,
    ] {
        assert!(dom.contains(needle), "/config lacks {needle:?}: {dom}");
    }
    assert!(
        csp_violations(&out).is_empty(),
        "{:#?}",
        csp_violations(&out)
    );
    let shot = shot.with_file_name("browser-config.png");
    let out = browse(
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
            &config_url,
        ],
        &profile,
    );
    assert!(out.status.success(), "screenshot failed");
    for path in ["/log/checkpoint", "/log/entries/0", "/config.toml.proof"] {
        let mut r = agent.get(&format!("{base}{path}")).call().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let body = r.body_mut().read_to_string().unwrap();
        assert!(!body.is_empty(), "{path}");
    }

    // The control: /charts with a policy that forbids its style sheet.
    let html = agent
        .get(&url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let control = serve_once_with_policy(html, "default-src 'none'; style-src 'none'");
    let out = browse(&["--dump-dom", &control], &profile);
    let blocked = csp_violations(&out);
    assert!(
        blocked.iter().any(|l| l.contains("style-src")),
        "a forbidden style sheet was not reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lines of Chromium's console that report something the page's
/// Content-Security-Policy blocked.
fn csp_violations(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Content-Security-Policy"))
        .map(str::to_owned)
        .collect()
}

/// Serves `html` with the header `Content-Security-Policy: policy` to
/// every request on a loopback port (on a thread, until the test ends);
/// returns its URL.
fn serve_once_with_policy(html: String, policy: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/charts", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-security-policy: {policy}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                html.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(html.as_bytes());
        }
    });
    url
}
