//! `clearcount --namespace NS view --web`: one installation's own data as
//! local pages, checked in headless Chromium like the public pages (see
//! `browser.rs`).
//!
//! The installation is made by real processes over three weeks (the clock
//! moved with `CLEARCOUNT_NOW`): the example tool (`clearcount demo-tool`)
//! counts, opted in with `on`; its first week's report is sent by the real
//! uploader to a `clearcount serve` on loopback holding a signed config
//! and its log; its second week's report is kept for a later day (the
//! upload address refuses connections); the third week is being counted.
//! Then, with the view serving:
//!
//! - each page is loaded in Chromium, a screenshot of each is saved
//!   (`target/view-web-<page>.png`) and Chromium blocks nothing under the
//!   pages' Content-Security-Policy (a control page that forbids the style
//!   sheet is reported, so the check can fail);
//! - the counts on the pages, as Chromium built them, equal `status
//!   --json` (this week) and the local report files (past weeks); the next
//!   upload's bytes equal `report --dry-run`'s; the charts are there;
//! - every response carries the public server's security headers, and a
//!   request without the token is refused;
//! - the browser is opened only with `--open` (`$BROWSER`, a script that
//!   records the URL it is given); the view stops on Ctrl-C and after its
//!   idle timeout; it listens on 127.0.0.1 only.

#![cfg(unix)]

mod common;

use common::chromium::{browse, csp_violations, serve_once_with_policy};
use common::{KillOnDrop, TempDir};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The example tool's namespace (`clearcount demo-tool`).
const NS: &str = "example";

/// What `clearcount demo-tool` is told about the server (as the demo
/// tells it; `crates/clearcount-cli/src/demo.rs`).
const UPLOAD_VAR: &str = "CLEARCOUNT_DEMO_UPLOAD_URL";
const CONFIG_VAR: &str = "CLEARCOUNT_DEMO_CONFIG_URL";
const KEY_VAR: &str = "CLEARCOUNT_DEMO_PUBLIC_KEY";
const LOG_VAR: &str = "CLEARCOUNT_DEMO_CONFIG_LOG";

/// Every counter of the example tool, collected from every report.
const CONFIG: &str = r#"
version = 1
sample_rate = 1.0

[[program]]
name = "instrumented"
versions = [">=0.1.0"]

[[program.counter]]
name = "instrumented/command:{inc,stack,hello,panic}"
rate = 1.0

[[program.counter]]
name = "instrumented/duration:{<10ms,<100ms,<1s,>=1s}"
rate = 1.0

[[program.counter]]
name = "instrumented/stack"
rate = 1.0
depth = 8
"#;

/// The days: opted in on `ON`; counts in week 1 on `W1`, in week 2 on
/// `W2` (the first start that day sends week 1), in week 3 on `W3` (week
/// 2's upload fails and waits); the view runs on `W3` too. Eight days
/// apart, so each is in a later week than the one before, whatever
/// weekday this installation's weeks start on.
const ON: &str = "2026-10-01T08:00:00Z";
const W1: &str = "2026-10-09T09:00:00Z";
const W2: &str = "2026-10-17T09:00:00Z";
const W3: &str = "2026-10-25T09:00:00Z";

fn run_ok(c: &mut Command) -> String {
    common::run_ok(c)
}

/// A `clearcount serve` with the config, on loopback; its base URL.
fn serve(data: &Path, config: &Path) -> (KillOnDrop, String) {
    let mut child = KillOnDrop(
        common::clearcount()
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--config")
            .arg(config)
            .arg("--public-key")
            .arg(config.with_file_name("config.pub"))
            // The server's clock: the last day of the installation's weeks.
            .env("CLEARCOUNT_NOW", "2026-10-26T00:00:00Z")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start clearcount serve"),
    );
    let lines = lines_of(child.0.stdout.take().unwrap());
    let base = wait_for(&lines, "the server's address", |l| {
        let rest = l.split("listening on http://").nth(1)?;
        Some(format!(
            "http://{}",
            rest.split_whitespace().next()?.trim_end_matches('/')
        ))
    });
    (child, base)
}

/// The lines a child writes on `pipe`, as they come.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (up to 60 s) for a line that `pick` accepts.
fn wait_for<T>(rx: &Receiver<String>, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {what}; got {seen:#?}"));
        if let Some(t) = pick(&line) {
            return t;
        }
        seen.push(line);
    }
}

/// The installation: its directory, and the server's settings.
struct Installation {
    dir: PathBuf,
    config_url: String,
    public_key: String,
    policy: String,
}

impl Installation {
    fn command(&self, now: &str) -> Command {
        let mut c = common::clearcount();
        c.env("CLEARCOUNT_DIR", &self.dir)
            .env("CLEARCOUNT_NOW", now)
            .env_remove("DO_NOT_TRACK")
            .env_remove("EXAMPLE_TELEMETRY")
            .env_remove("BROWSER");
        c
    }

    /// One run of the example tool at `now`, uploading to `upload`; then
    /// waits (up to 60 s) until the upload it may have started that day is
    /// over.
    fn tool(&self, now: &str, upload: &str, args: &[&str]) {
        run_ok(
            self.command(now)
                .arg("demo-tool")
                .args(args)
                .env(UPLOAD_VAR, upload)
                .env(CONFIG_VAR, &self.config_url)
                .env(KEY_VAR, &self.public_key)
                .env(LOG_VAR, &self.policy),
        );
        let day = &now[..10];
        let token = self
            .dir
            .join(NS)
            .join("upload")
            .join(format!("day-{day}.token"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(&token).is_ok_and(|t| !t.starts_with("done")) {
            assert!(Instant::now() < deadline, "the upload of {day} did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn json(&self, now: &str, args: &[&str]) -> serde_json::Value {
        let out = run_ok(self.command(now).args(["--namespace", NS]).args(args));
        serde_json::from_str(&out).unwrap()
    }
}

/// Makes the installation (see the module docs); returns it, and the
/// server, which must keep running for the view's next-upload page.
fn installation(tmp: &Path) -> (Installation, KillOnDrop) {
    let counters = tmp.join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    std::fs::copy(
        common::root().join("config/counters/instrumented.toml"),
        counters.join("instrumented.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.join("keys")).unwrap();
    let config = common::publish_config(&tmp.join("keys"), CONFIG, &counters);
    let (server, base) = serve(&tmp.join("server"), &config);
    let inst = Installation {
        dir: tmp.join("home"),
        config_url: format!("{base}/config.toml"),
        public_key: std::fs::read_to_string(config.with_file_name("config.pub")).unwrap(),
        policy: std::fs::read_to_string(config.with_file_name("log").join("policy")).unwrap(),
    };
    let upload = format!("{base}/upload");
    // An address that refuses connections: week 2's upload waits.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/upload", l.local_addr().unwrap())
    };
    run_ok(inst.command(ON).args(["--namespace", NS, "on"]));
    inst.tool(W1, &upload, &["hello"]);
    inst.tool(W1, &upload, &["inc", "instrumented/duration:<10ms", "4"]);
    inst.tool(W1, &upload, &["stack", "instrumented/stack"]);
    inst.tool(W2, &upload, &["hello"]);
    inst.tool(W2, &upload, &["inc", "instrumented/duration:>=1s", "2"]);
    inst.tool(W3, &refused, &["hello"]);
    inst.tool(W3, &refused, &["inc", "instrumented/duration:<100ms", "3"]);
    inst.tool(W3, &refused, &["stack", "instrumented/stack"]);
    inst.tool(W3, &refused, &["stack", "instrumented/stack"]);
    (inst, server)
}

/// A running `view --web`: the child, its URL, its stderr's lines.
struct View {
    child: KillOnDrop,
    url: String,
    stderr: Receiver<String>,
}

fn start_view(inst: &Installation, now: &str, args: &[&str], env: &[(&str, &str)]) -> View {
    let mut c = inst.command(now);
    c.args(["--namespace", NS, "view", "--web"]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = KillOnDrop(
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = lines_of(child.0.stdout.take().unwrap());
    let stderr = lines_of(child.0.stderr.take().unwrap());
    let url = wait_for(&stdout, "the view's URL", |l| Some(l.to_string()));
    View { child, url, stderr }
}

/// Waits (up to 60 s) for the child to end; its exit status.
fn wait_end(child: &mut Child) -> std::process::ExitStatus {
    common::status_within(child, Duration::from_secs(60)).expect("the view did not stop")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The part of `dom` from `start` to the next `<h2` (or the end of
/// `<main>`).
fn section<'a>(dom: &'a str, start: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {dom}"));
    let rest = &dom[from + start.len()..];
    let end = rest
        .find("<h2")
        .or_else(|| rest.find("</main>"))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The rows of the count tables in `html`: counter (a stack counter's name
/// and frames, one per line) → count.
fn rows(html: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for piece in html.split("<tr><td><code>").skip(1) {
        let (name, rest) = piece.split_once("</code>").unwrap();
        let mut key = unescape(name);
        let rest = match rest.strip_prefix("<pre>") {
            Some(r) => {
                let (frames, r) = r.split_once("</pre>").unwrap();
                key = format!("{key}\n{}", unescape(frames));
                r
            }
            None => rest,
        };
        let n = rest
            .split_once(r#"<td class="n">"#)
            .and_then(|(_, r)| r.split_once("</td>"))
            .unwrap()
            .0;
        assert!(out.insert(key, n.parse().unwrap()).is_none());
    }
    out
}

/// The number after `"x":` in a report's JSON text, read exactly.
fn raw_x(json: &str) -> f64 {
    let rest = json
        .split_once(r#""x":"#)
        .unwrap_or_else(|| panic!("no x in {json}"))
        .1;
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().parse().unwrap()
}

/// Plain and stack counters of a JSON object pair, in one map.
fn counts(counters: &serde_json::Value, stacks: &serde_json::Value) -> BTreeMap<String, u64> {
    counters
        .as_object()
        .unwrap()
        .iter()
        .chain(stacks.as_object().unwrap())
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect()
}

fn screenshot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("view-web-{name}.png"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn own_data_as_pages_in_chromium() {
    let tmp = TempDir::new("view-web");
    let (inst, _server) = installation(&tmp.0);
    let now = "2026-10-25T12:00:00Z";
    let status = inst.json(now, &["status", "--json"]);
    let this_week = counts(&status["counters"], &status["stacks"]);
    assert_eq!(this_week["instrumented/duration:<100ms"], 3, "{status}");
    assert_eq!(status["mode"], "on");
    let reports_dir = inst.dir.join(NS).join("reports");
    let mut weeks: Vec<String> = std::fs::read_dir(&reports_dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".full.json").map(str::to_owned)
        })
        .collect();
    weeks.sort();
    assert_eq!(weeks.len(), 2, "two finished weeks: {weeks:?}");
    let sent = inst
        .dir
        .join(NS)
        .join("upload")
        .join(format!("{}.json", weeks[0]));
    assert!(sent.exists(), "week 1 was sent");
    let dry = inst
        .command(now)
        .args(["--namespace", NS, "report", "--dry-run"])
        .output()
        .unwrap();
    let would_send = common::text(&dry.stdout).trim_end().to_string();
    assert!(
        would_send.starts_with('{') && would_send.contains(&weeks[1]),
        "week 2 would be sent: {would_send:?} {}",
        common::text(&dry.stderr)
    );

    let recorder = tmp.0.join("browser.sh");
    let opened = tmp.0.join("opened");
    std::fs::write(
        &recorder,
        format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let browser = recorder.to_str().unwrap();
    let view = start_view(&inst, now, &[], &[("BROWSER", browser)]);
    let url = view.url.clone();
    let token = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split_once('/'))
        .map(|(_, t)| t.trim_end_matches('/').to_string())
        .unwrap_or_else(|| panic!("not a loopback URL with a token: {url}"));
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{url}"
    );
    let profile = tmp.0.join("chromium");

    // Every page: loaded by Chromium, nothing blocked, a screenshot; the
    // security headers.
    let mut doms = BTreeMap::new();
    for (name, page) in [
        ("home", ""),
        ("reports", "reports"),
        ("charts", "charts"),
        ("upload", "upload"),
    ] {
        let page_url = format!("{url}{page}");
        let out = browse(&["--dump-dom", &page_url], &profile);
        assert!(out.status.success(), "{page_url}");
        let dom = common::text(&out.stdout);
        assert!(
            dom.contains("clearcount") && dom.contains("<main>"),
            "{dom}"
        );
        let blocked = csp_violations(&out);
        assert!(blocked.is_empty(), "{page}: Chromium blocked {blocked:#?}");
        let shot = screenshot(name);
        let out = browse(
            &[
                "--window-size=1280,2000",
                &format!("--screenshot={}", shot.display()),
                &page_url,
            ],
            &profile,
        );
        assert!(out.status.success(), "screenshot of {page}");
        let png = std::fs::read(&shot).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{page}");
        let r = agent().get(&page_url).call().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{page}");
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
        assert_eq!(h("x-frame-options"), "DENY", "{page}");
        assert_eq!(h("cache-control"), "no-store", "{page}");
        doms.insert(name, dom);
    }

    // This week's numbers, as the browser shows them, are `status --json`'s.
    let home = &doms["home"];
    assert_eq!(
        rows(section(home, "<h2>Counts this week</h2>")),
        this_week,
        "{home}"
    );
    assert!(home.contains("on (set in the mode file"), "{home}");
    // Each past week's numbers are its local report's; its fate is said.
    let reports = &doms["reports"];
    for w in &weeks {
        let text = std::fs::read_to_string(reports_dir.join(format!("{w}.full.json"))).unwrap();
        let full: serde_json::Value = serde_json::from_str(&text).unwrap();
        let p = &full["programs"][0];
        let part = section(reports, &format!(r#"<h2 id="w-{w}">"#));
        assert_eq!(rows(part), counts(&p["counters"], &p["stacks"]), "{part}");
        // X as the file has it: serde_json's default float parsing may be
        // one unit in the last place off, so both are read by `str::parse`.
        let shown: f64 = part
            .split_once("X = ")
            .and_then(|(_, r)| r.split_once('<'))
            .map(|(x, _)| x.parse().unwrap())
            .unwrap_or_else(|| panic!("no X: {part}"));
        assert_eq!(shown, raw_x(&text), "{part}");
    }
    assert!(section(reports, &format!(r#"<h2 id="w-{}">"#, weeks[0])).contains("sent, copy in"));
    assert!(section(reports, &format!(r#"<h2 id="w-{}">"#, weeks[1])).contains("not sent (yet)"));
    // The public charts, over the two reports and this week.
    let charts = &doms["charts"];
    assert!(charts.matches("<svg").count() >= 5, "{charts}");
    assert!(charts.contains("3 reports over 3 weeks"), "{charts}");
    for title in [
        "instrumented: versions",
        "counter instrumented/command",
        "counter instrumented/duration",
        "instrumented: stack counters",
    ] {
        assert!(charts.contains(title), "no chart {title:?}");
    }
    assert!(charts.contains("<rect"));
    // The next upload: exactly what `report --dry-run` prints.
    let upload = &doms["upload"];
    let shown = section(upload, &format!("<h2>Week {}</h2>", weeks[1]));
    let bytes = shown
        .split_once("<pre><code>")
        .and_then(|(_, r)| r.split_once("</code></pre>"))
        .map(|(b, _)| unescape(b))
        .unwrap_or_else(|| panic!("no bytes for week 2: {upload}"));
    assert_eq!(bytes, would_send);
    assert!(shown.contains("would send"), "{shown}");

    // Without the token: refused, by the browser too.
    let base = url
        .trim_end_matches('/')
        .trim_end_matches(&token)
        .to_string();
    let wrong = format!(
        "{}{}",
        &token[..31],
        if token.ends_with('0') { '1' } else { '0' }
    );
    for path in [
        String::new(),
        "charts".into(),
        format!("{wrong}/"),
        format!("{wrong}/charts"),
        format!("{}/", &token[..31]),
        format!("x{token}/"),
    ] {
        let r = agent().get(&format!("{base}{path}")).call().unwrap();
        assert_eq!(r.status().as_u16(), 403, "/{path}");
        assert_eq!(
            r.headers().get("x-content-type-options").unwrap(),
            "nosniff"
        );
    }
    let out = browse(&["--dump-dom", &format!("{base}{wrong}/")], &profile);
    let dom = common::text(&out.stdout);
    assert!(
        dom.contains("forbidden") && !dom.contains("instrumented"),
        "{dom}"
    );

    // The control: a page under a policy that forbids its style sheet is
    // reported.
    let html = agent()
        .get(&format!("{url}charts"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let control = serve_once_with_policy(html, "default-src 'none'; style-src 'none'");
    let out = browse(&["--dump-dom", &control], &profile);
    assert!(
        csp_violations(&out).iter().any(|l| l.contains("style-src")),
        "a forbidden style sheet was not reported: {}",
        common::text(&out.stderr)
    );

    // No browser was opened without --open.
    assert!(!opened.exists(), "the browser was opened without --open");
    drop(view);
}

#[test]
fn opens_the_browser_only_when_asked() {
    let tmp = TempDir::new("view-open");
    let inst = Installation {
        dir: tmp.0.join("home"),
        config_url: String::new(),
        public_key: String::new(),
        policy: String::new(),
    };
    let recorder = tmp.0.join("browser.sh");
    let opened = tmp.0.join("opened");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\necho \"$1\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            opened.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let view = start_view(
        &inst,
        W3,
        &["--open"],
        &[("BROWSER", recorder.to_str().unwrap())],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !opened.exists() {
        assert!(Instant::now() < deadline, "the browser was not opened");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read_to_string(&opened).unwrap().trim(), view.url);
    // A fresh installation: nothing counted, and the view wrote nothing.
    let r = agent().get(&view.url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        !inst.dir.exists(),
        "the view wrote into the telemetry directory"
    );
}

#[test]
fn stops_on_ctrl_c_and_when_idle_and_listens_on_loopback_only() {
    let tmp = TempDir::new("view-stop");
    let inst = Installation {
        dir: tmp.0.join("home"),
        config_url: String::new(),
        public_key: String::new(),
        policy: String::new(),
    };
    // Only 127.0.0.1.
    for addr in ["0.0.0.0:0", "192.0.2.1:8080", "[::1]:0", "localhost:80"] {
        let err = common::run_err(inst.command(W3).args([
            "--namespace",
            NS,
            "view",
            "--web",
            "--addr",
            addr,
        ]));
        assert!(
            err.contains("127.0.0.1") && err.contains(addr),
            "{addr}: {err}"
        );
    }
    // --addr, --open and --idle-timeout belong to --web.
    let out = inst
        .command(W3)
        .args(["--namespace", NS, "view", "--open"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));

    // A given port; Ctrl-C stops it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut view = start_view(&inst, W3, &["--addr", &format!("127.0.0.1:{port}")], &[]);
    assert!(
        view.url.starts_with(&format!("http://127.0.0.1:{port}/")),
        "{}",
        view.url
    );
    assert_eq!(
        agent().get(&view.url).call().unwrap().status().as_u16(),
        200
    );
    let pid = view.child.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap_or_else(|e| {
            panic!("kill(1) ({e}): `apt-get install procps` (.ci/run installs it)")
        });
    assert!(sent.success());
    let st = wait_end(&mut view.child.0);
    assert!(st.success(), "{st}");
    wait_for(&view.stderr, "stopped", |l| (l == "stopped").then_some(()));

    // Idle: it stops by itself.
    let mut view = start_view(&inst, W3, &["--idle-timeout", "3"], &[]);
    assert_eq!(
        agent().get(&view.url).call().unwrap().status().as_u16(),
        200
    );
    let st = wait_end(&mut view.child.0);
    assert!(st.success(), "{st}");
    wait_for(&view.stderr, "the idle stop", |l| {
        (l == "stopped: no request for 3 s").then_some(())
    });
}
