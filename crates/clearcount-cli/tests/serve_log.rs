//! `clearcount serve` and the config log, through the binary and real HTTP
//! on 127.0.0.1 (`counters-spec/config-log.md` §5):
//!
//! - the server refuses to start, with one line and exit status 1, without
//!   `--public-key`, with a config whose signature fails, with a config not
//!   in its log, and with a tampered checkpoint;
//! - a maintainer publishes with `clearcount config publish`, the server
//!   serves the config and its proof bundle, which the protocol's client
//!   (`verify_config`) accepts; `clearcount config audit
//!   http://127.0.0.1:PORT/log` passes against it;
//! - a second `config publish` is picked up by the running server, and its
//!   bundle verifies from the checkpoint the client kept; the audit then
//!   shows both versions; a bad `old` query is refused in one line.
//!
//! `cargo test -p clearcount-cli --test serve_log`

mod common;

use clearcount_protocol::tlog::client::{ClientPolicy, verify_config};
use clearcount_protocol::tlog::note::VerifierKey;
use clearcount_protocol::tlog::policy::Policy;
use common::{KillOnDrop, TempDir, clearcount, publish_config, root};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The published config with another version.
fn config_text(version: u64) -> String {
    let published = std::fs::read_to_string(root().join("config/config.toml")).unwrap();
    assert!(published.contains("\nversion = 2\n"));
    published.replacen("\nversion = 2\n", &format!("\nversion = {version}\n"), 1)
}

fn publish(dir: &Path, version: u64) {
    publish_config(dir, &config_text(version), &root().join("config/counters"));
}

/// `clearcount serve` for the config in `dir` (its key beside it), with
/// `more` flags.
fn serve_cmd(dir: &Path, more: &[&str]) -> Command {
    let mut c = clearcount();
    c.args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--merge-interval", "3600"])
        .args(more);
    c
}

/// Runs a `clearcount serve` that must not start: its exit status must be
/// 1 and its standard error one line (killed after 60 s if it serves).
fn refused(mut cmd: Command) -> String {
    let mut child = KillOnDrop(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = common::status_within(&mut child.0, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the server started: {cmd:?}"));
    let mut err = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.starts_with("clearcount: "), "{err}");
    err.trim_end().to_owned()
}

/// A running `clearcount serve`, killed on drop.
struct Served {
    base: String,
    _child: KillOnDrop,
}

fn serve(dir: &Path) -> Served {
    let mut child = KillOnDrop(
        serve_cmd(dir, &["--public-key"])
            .arg(dir.join("config.pub"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(out).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("clearcount serve did not start");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served {
        base: format!("http://{addr}"),
        _child: child,
    }
}

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut r = agent.get(url).call().expect("transport error");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn ok(url: &str) -> String {
    let (status, body) = get(url);
    assert_eq!(status, 200, "{url}: {body}");
    body
}

#[test]
fn serve_refuses_a_config_it_cannot_verify() {
    let dir = TempDir::new("serve-refuse");
    let d = &dir.0;
    publish(d, 10);
    let key = d.join("config.pub").display().to_string();

    let err = refused(serve_cmd(d, &[]));
    assert!(err.contains("needs --public-key"), "{err}");

    // Signed by another key.
    let other = TempDir::new("serve-refuse-other");
    publish(&other.0, 10);
    let other_key = other.0.join("config.pub").display().to_string();
    let err = refused(serve_cmd(d, &["--public-key", &other_key]));
    assert!(err.contains("signature"), "{err}");

    // Signed, but not in the log.
    std::fs::write(d.join("config.toml"), config_text(11)).unwrap();
    common::run_ok(
        clearcount()
            .args(["config", "sign", "--secret-key"])
            .arg(d.join("config.key"))
            .arg(d.join("config.toml")),
    );
    let err = refused(serve_cmd(d, &["--public-key", &key]));
    assert!(err.contains("not in the config log"), "{err}");
    let err = refused(serve_cmd(d, &["--public-key", &key, "--log", &key]));
    assert!(
        err.contains("is not a config log: it has no log.vkey"),
        "{err}"
    );

    // Published, then its checkpoint tampered with.
    publish(d, 11);
    let checkpoint = d.join("log/checkpoint");
    let good = std::fs::read_to_string(&checkpoint).unwrap();
    std::fs::write(&checkpoint, good.replacen("\n2\n", "\n1\n", 1)).unwrap();
    let err = refused(serve_cmd(d, &["--public-key", &key]));
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn publish_serve_verify_audit_and_reload() {
    let dir = TempDir::new("serve-log");
    let d = &dir.0;
    publish(d, 10);
    let srv = serve(d);
    let base = &srv.base;
    let vkey = VerifierKey::parse(&std::fs::read_to_string(d.join("log.vkey")).unwrap()).unwrap();
    let policy = ClientPolicy::new(Policy::new(vkey, Vec::new(), 0).unwrap());

    // A fresh client accepts the config with its bundle.
    let v10 = ok(&format!("{base}/config.toml"));
    assert_eq!(v10, config_text(10));
    let bundle = ok(&format!("{base}/config.toml.proof"));
    let kept = verify_config(&policy, None, &v10, &bundle, 0).unwrap().kept;

    // Anyone audits the log the server serves.
    let audit = |want: &[&str]| {
        let out = common::run_ok(
            clearcount()
                .args(["config", "audit"])
                .arg(format!("{base}/log"))
                .arg("--log-key")
                .arg(d.join("log.vkey")),
        );
        assert!(out.contains("audit ok"), "{out}");
        for w in want {
            assert!(out.contains(w), "{w}: {out}");
        }
        out
    };
    audit(&["audit ok: 1 entry, 1 checkpoint", "(version 10)"]);

    // The maintainer publishes version 11; the running server picks it up.
    publish(d, 11);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&format!("{base}/config.toml")).1 != config_text(11) {
        assert!(
            Instant::now() < deadline,
            "the new version was not picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v11 = ok(&format!("{base}/config.toml"));
    let b = ok(&format!(
        "{base}/config.toml.proof{}",
        policy.proof_query(Some(&kept))
    ));
    let a = verify_config(&policy, Some(&kept), &v11, &b, 0).unwrap();
    assert_eq!((a.config.version, a.kept.checkpoint.size), (11, 2));
    let out = audit(&["audit ok: 2 entries, 2 checkpoints", "(version 11)"]);
    eprintln!("{out}");

    // A bad query: one line, 400.
    let (status, body) = get(&format!("{base}/config.toml.proof?old=two"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body.trim_end().lines().count(), 1, "{body}");
    // The config page shows both versions of the log.
    let page = ok(&format!("{base}/config"));
    assert!(
        page.contains("href=\"/log/entries/1\"") && page.contains("clearcount config audit"),
        "{page}"
    );
}
