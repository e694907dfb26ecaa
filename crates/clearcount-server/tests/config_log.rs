//! The server and the config log (`counters-spec/config-log.md` §5–§7),
//! over real HTTP on 127.0.0.1:
//!
//! - the server refuses to start, in one line, with a config it cannot
//!   verify: no public key, a failing minisign signature, no log, a config
//!   not in the log or not its last entry, a tampered checkpoint, one
//!   signed by another key, one that does not cover every entry, one
//!   without the witness quorum its policy requires;
//! - the bundles it serves are the log directory's (byte for byte), and
//!   the protocol's client (`verify_config`) accepts them, fresh and from
//!   an older kept checkpoint; bad `old` queries are refused in one line;
//! - the auditor's endpoints serve the directory's files, the store keeps
//!   a copy for the static site, whose config page shows the log;
//! - a reload is verified: an unpublished config is refused (the old one
//!   stays, one line says why), a published one is picked up and its
//!   bundle verifies from the checkpoint kept before; new cosignatures are
//!   picked up and shown; a log with another history is refused.

mod common;

use clearcount_protocol::tlog::client::{ClientPolicy, Kept, verify_config};
use clearcount_protocol::tlog::log::{Log, LogDir};
use clearcount_protocol::tlog::note::{KeyType, SignerKey};
use clearcount_protocol::tlog::{Policy, SignedCheckpoint, base64_encode, merkle};
use clearcount_server::ServerOptions;
use common::{ChildServer, PublishedConfig, TempDir, publish};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(version: u64) -> String {
    format!(
        r#"
version = {version}
sample_rate = 1.0

[[program]]
name = "tool"
versions = ["1.*"]
os = ["linux"]
arch = ["x86_64"]

[[program.counter]]
name = "tool/command:{{build,test,run}}"
rate = 1.0
"#
    )
}

/// Not a test by itself: the server of the reload tests, in a child
/// process (see `common::child_main`).
#[test]
fn child_server() {
    common::child_main();
}

fn options(dir: &Path) -> ServerOptions {
    ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        data: dir.join("data").display().to_string(),
        config: Some(dir.join("config.toml")),
        public_key: Some(dir.join("config.pub")),
        merge_interval: Duration::from_secs(3600),
        ..ServerOptions::default()
    }
}

/// Starts the server with `opts` and stops it at once: `Ok` if it started.
fn start_and_stop(opts: ServerOptions) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(clearcount_server::serve_with_shutdown(opts, None, async {}))
}

/// The one-line reason the server gives for not starting.
fn refused(opts: ServerOptions) -> String {
    let err = start_and_stop(opts).expect_err("the server started");
    assert!(!err.contains('\n') && !err.is_empty(), "{err:?}");
    err
}

/// A server in-process, stopped on drop.
struct Running {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Running {
    fn start(opts: ServerOptions) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(clearcount_server::serve_with_shutdown(
            opts,
            Some(ready_tx),
            async {
                let _ = stop_rx.await;
            },
        ));
        let addr = match rt.block_on(ready_rx) {
            Ok(a) => a,
            Err(_) => panic!("the server did not start: {:?}", rt.block_on(task)),
        };
        Running {
            base: format!("http://{addr}"),
            stop: Some(stop_tx),
            rt: Some(rt),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

struct Got {
    status: u16,
    content_type: String,
    csp: bool,
    body: String,
}

fn get(url: &str) -> Got {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut r = agent.get(url).call().expect("transport error");
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, csp) = (h("content-type"), h("content-security-policy"));
    Got {
        status: r.status().as_u16(),
        content_type,
        csp: csp.starts_with("default-src 'none'"),
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

/// A text of the log, as a client or auditor fetches it: 200, plain text,
/// with the security headers.
fn text(url: &str) -> String {
    let g = get(url);
    assert_eq!(g.status, 200, "{url}: {}", g.body);
    assert_eq!(g.content_type, "text/plain; charset=utf-8", "{url}");
    assert!(g.csp, "{url}: no security headers");
    g.body
}

/// The policy of a log without witnesses: its key alone.
fn key_only(p: &PublishedConfig) -> ClientPolicy {
    let vkey = LogDir::open(&p.log).unwrap().verifier().unwrap();
    ClientPolicy::new(Policy::new(vkey, Vec::new(), 0).unwrap())
}

/// What a client keeps after accepting entry `size - 1` of the log at
/// `log` under the checkpoint published at `size`.
fn kept_at(p: &PublishedConfig, size: u64) -> Kept {
    let dir = LogDir::open(&p.log).unwrap();
    let log = dir.load().unwrap();
    let prefix = Log::from_entries(log.origin(), log.entries()[..size as usize].to_vec()).unwrap();
    let signed = dir.checkpoint_of_size(size).unwrap();
    let bundle = prefix.bundle(&signed, &[]).unwrap().to_text();
    let config = String::from_utf8(log.entries()[size as usize - 1].clone()).unwrap();
    verify_config(&key_only(p), None, &config, &bundle, 0)
        .unwrap()
        .kept
}

fn replace_line(path: &Path, line: usize, with: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines[line] = with;
    std::fs::write(path, lines.join("\n")).unwrap();
}

#[test]
fn refuses_to_start_with_a_config_it_cannot_verify() {
    let dir = TempDir::new("refuse");
    let d = &dir.0;
    let p = publish(d, &config(1));
    // The published config starts, its log found beside it.
    start_and_stop(options(d)).unwrap();

    // No public key.
    let err = refused(ServerOptions {
        public_key: None,
        ..options(d)
    });
    assert!(err.contains("needs --public-key"), "{err}");

    // A minisign signature that fails (another key signed it).
    let other = TempDir::new("refuse-other");
    publish(&other.0, &config(1));
    let err = refused(ServerOptions {
        public_key: Some(other.0.join("config.pub")),
        ..options(d)
    });
    assert!(err.contains("signature"), "{err}");

    // No log: none given and none beside the config, or not a log.
    let bare = TempDir::new("refuse-bare");
    std::fs::copy(&p.config, bare.0.join("config.toml")).unwrap();
    std::fs::copy(
        d.join("config.toml.minisig"),
        bare.0.join("config.toml.minisig"),
    )
    .unwrap();
    std::fs::copy(&p.public_key, bare.0.join("config.pub")).unwrap();
    let err = refused(options(&bare.0));
    assert!(err.contains("needs its config log"), "{err}");
    let err = refused(ServerOptions {
        log: Some(bare.0.clone()),
        ..options(&bare.0)
    });
    assert!(
        err.contains("is not a config log: it has no log.vkey"),
        "{err}"
    );
    // The log given explicitly: it starts.
    start_and_stop(ServerOptions {
        log: Some(p.log.clone()),
        ..options(&bare.0)
    })
    .unwrap();

    // A signed config that is not in the log.
    let v2 = config(2);
    std::fs::write(&p.config, &v2).unwrap();
    clearcount_protocol::sign::sign(d.join("config.key"), &p.config).unwrap();
    let err = refused(options(d));
    assert!(
        err.contains("the config is not in the config log") && err.contains("config publish"),
        "{err}"
    );
    // Published: it starts. Then the older entry, signed: not the latest.
    publish(d, &v2);
    start_and_stop(options(d)).unwrap();
    std::fs::write(&p.config, config(1)).unwrap();
    clearcount_protocol::sign::sign(d.join("config.key"), &p.config).unwrap();
    let err = refused(options(d));
    assert!(
        err.contains("entry 0") && err.contains("not its last"),
        "{err}"
    );
    publish(d, &config(3));

    // A tampered checkpoint: another root, the signature fails.
    let checkpoint = p.log.join("checkpoint");
    let good = std::fs::read(&checkpoint).unwrap();
    let other_root = base64_encode(&merkle::sha256(b"another history"));
    replace_line(&checkpoint, 2, &other_root);
    let err = refused(options(d));
    assert!(err.contains("does not verify"), "{err}");
    // Another size, the same.
    std::fs::write(&checkpoint, &good).unwrap();
    replace_line(&checkpoint, 1, "2");
    let err = refused(options(d));
    assert!(err.contains("does not verify"), "{err}");
    // Signed by another key of the same name: not the log's signature.
    let forger = SignerKey::generate(common::publish::ORIGIN, KeyType::Ed25519).unwrap();
    let log = LogDir::open(&p.log).unwrap().load().unwrap();
    std::fs::write(&checkpoint, log.sign_checkpoint(&forger).unwrap().to_text()).unwrap();
    let err = refused(options(d));
    assert!(err.contains("not signed by the log key"), "{err}");
    // A checkpoint of the log, but an older one: it does not cover the
    // config.
    std::fs::copy(p.log.join("checkpoints/2"), &checkpoint).unwrap();
    let err = refused(options(d));
    assert!(err.contains("covers 2 entries, but the log has 3"), "{err}");
    std::fs::write(&checkpoint, &good).unwrap();
    start_and_stop(options(d)).unwrap();

    // A policy that requires a witness's cosignature, which the
    // checkpoint lacks; once cosigned, it starts.
    let witness = SignerKey::generate("witness.example/w1", KeyType::CosignatureV1).unwrap();
    let vkey = LogDir::open(&p.log).unwrap().verifier().unwrap();
    let policy = Policy::new(vkey, vec![witness.verifier().clone()], 1).unwrap();
    std::fs::write(p.log.join("policy"), policy.to_text()).unwrap();
    let err = refused(options(d));
    assert!(
        err.contains("too few witness cosignatures") && err.contains("config cosign"),
        "{err}"
    );
    let signed = SignedCheckpoint::parse(&String::from_utf8(good).unwrap()).unwrap();
    let line = witness.cosign(&signed.note.text, 1_800_000_000).unwrap();
    LogDir::open(&p.log)
        .unwrap()
        .add_cosignatures(3, &line.line())
        .unwrap();
    start_and_stop(options(d)).unwrap();
}

#[test]
fn serves_the_log_and_bundles_clients_accept() {
    let dir = TempDir::new("serve");
    let d = &dir.0;
    publish(d, &config(1));
    publish(d, &config(2));
    let p = publish(d, &config(3));
    let srv = Running::start(options(d));
    let base = &srv.base;
    let logdir = LogDir::open(&p.log).unwrap();
    let policy = key_only(&p);

    // A fresh client: the config and its proof.
    let served = text(&format!("{base}/config.toml"));
    assert_eq!(served, config(3));
    let bundle = text(&format!("{base}/config.toml.proof"));
    assert_eq!(bundle, logdir.bundle(&[]).unwrap());
    assert_eq!(text(&format!("{base}/config.toml.tlog-proof")), bundle);
    let accepted = verify_config(&policy, None, &served, &bundle, 0).unwrap();
    assert_eq!(accepted.config.version, 3);
    eprintln!(
        "bundle for a fresh client: {} bytes; from a kept checkpoint: {} bytes",
        bundle.len(),
        logdir.bundle(&[1]).unwrap().len()
    );

    // Clients that kept an older checkpoint (and a toolchain minimum).
    for (olds, query) in [
        (vec![1], "?old=1"),
        (vec![2], "?old=2"),
        (vec![1, 2], "?old=2&old=1&old=2"),
        (vec![3], "?old=3"),
        (vec![], "?old=0"),
        (vec![], "?other=1"),
    ] {
        let b = text(&format!("{base}/config.toml.proof{query}"));
        assert_eq!(b, logdir.bundle(&olds).unwrap(), "{query}");
        for &old in &olds {
            let kept = kept_at(&p, old);
            let a = verify_config(&policy, Some(&kept), &served, &b, 0).unwrap();
            assert_eq!(a.kept.checkpoint.size, 3);
        }
    }
    // A size above the log's: an empty section (the client then refuses).
    let b = text(&format!("{base}/config.toml.proof?old=1&old=9"));
    assert_eq!(b, logdir.bundle(&[1, 9]).unwrap());
    assert!(b.contains("old 9\n\n"), "{b}");

    // Bad queries: a status and one line.
    let nine: Vec<String> = (1..=9).map(|i| format!("old={i}")).collect();
    let long = format!("?old=1&{}", "x".repeat(600));
    for (query, status, reason) in [
        ("?old=x", 400, "not a decimal number"),
        ("?old=-1", 400, "not a decimal number"),
        ("?old=01", 400, "not a decimal number"),
        ("?old=", 400, "not a decimal number"),
        (&format!("?{}", nine.join("&")), 400, "at most 8"),
        (long.as_str(), 400, "longer than"),
    ] {
        let g = get(&format!("{base}/config.toml.proof{query}"));
        assert_eq!(g.status, status, "{query}: {}", g.body);
        assert!(g.body.contains(reason), "{query}: {}", g.body);
        assert_eq!(g.body.trim_end().lines().count(), 1, "{query}");
        assert!(g.csp, "{query}");
    }

    // The auditor's endpoints: the directory's files as they are.
    let file = |rel: &str| std::fs::read_to_string(p.log.join(rel)).unwrap();
    for rel in [
        "log.vkey",
        "checkpoint",
        "checkpoints/1",
        "checkpoints/3",
        "entries/0",
        "entries/2",
    ] {
        assert_eq!(text(&format!("{base}/log/{rel}")), file(rel), "{rel}");
    }
    assert_eq!(text(&format!("{base}/log/checkpoints")), "1\n2\n3\n");
    for missing in [
        "/log/policy",
        "/log/entries/3",
        "/log/entries/01",
        "/log/entries/-1",
        "/log/checkpoints/0",
        "/log/checkpoints/4",
        "/log/nothing",
    ] {
        let g = get(&format!("{base}{missing}"));
        assert_eq!(g.status, 404, "{missing}: {}", g.body);
        assert!(g.csp, "{missing}");
    }
    // `/log/` itself (where `serve --help` says the log is served) is a
    // page: the log's entries, its checkpoint, links to every file.
    let g = get(&format!("{base}/log/"));
    assert_eq!(g.status, 200, "{}", g.body);
    assert!(
        g.content_type.starts_with("text/html"),
        "{}",
        g.content_type
    );
    assert!(g.csp);
    for needle in [
        "<h1>Config log</h1>",
        "href=\"/log/log.vkey\"",
        "href=\"/log/checkpoint\"",
        "href=\"/log/checkpoints\"",
        "href=\"/log/entries/2\"",
        "href=\"/log/checkpoints/3\"",
        "clearcount config audit URL/log",
    ] {
        assert!(g.body.contains(needle), "{needle}: {}", g.body);
    }
    assert!(!g.body.contains("href=\"/log/policy\""), "no policy here");
    assert!(g.body.contains(file("checkpoint").lines().nth(2).unwrap()));

    // The config page shows the log.
    let page = get(&format!("{base}/config")).body;
    for h in LogDir::open(&p.log).unwrap().load().unwrap().leaves() {
        assert!(page.contains(&base64_encode(h)), "leaf hash missing");
    }
    for e in LogDir::open(&p.log).unwrap().load().unwrap().entries() {
        let sha: String = merkle::sha256(e)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(page.contains(&sha), "SHA-256 missing");
    }
    for needle in [
        "<h2 id=\"log\">Config log</h2>",
        "href=\"/log/entries/0\"",
        "href=\"/log/checkpoints/2\"",
        "the log key",
        "No witness has cosigned this checkpoint.",
        "clearcount config audit URL/log",
        "href=\"/config.toml.proof\"",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    let checkpoint_text = file("checkpoint");
    assert!(page.contains(checkpoint_text.lines().nth(2).unwrap()));
    assert!(!page.contains("<script"));

    // The store keeps a copy of the log, served as the static site's
    // auditor endpoints, and the tlog-proof beside the config; the static
    // config page (rebuilt by a merge from the store alone) shows the log.
    let data = d.join("data");
    for rel in [
        "log.vkey",
        "checkpoint",
        "checkpoints/1",
        "checkpoints/2",
        "checkpoints/3",
        "entries/0",
        "entries/1",
        "entries/2",
    ] {
        assert_eq!(
            std::fs::read_to_string(data.join("config/log").join(rel)).unwrap(),
            file(rel),
            "{rel}"
        );
    }
    assert!(!data.join("config/log/entries/3").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("config/current.toml.tlog-proof")).unwrap(),
        bundle
    );
    drop(srv);
    clearcount_server::merge_blocking(&data.display().to_string(), 1).unwrap();
    let site = std::fs::read_to_string(data.join("site/config.html")).unwrap();
    for needle in [
        "<h2 id=\"log\">Config log</h2>",
        "href=\"../config/log/entries/2\"",
        "clearcount config audit URL/config/log",
        "href=\"config.toml.proof\"",
    ] {
        assert!(site.contains(needle), "{needle}: {site}");
    }
    for rel in ["config.toml.proof", "config.toml.tlog-proof"] {
        assert_eq!(
            std::fs::read_to_string(data.join("site").join(rel)).unwrap(),
            bundle
        );
    }
}

/// A size the log never published a checkpoint of is refused: clients
/// ask from sizes they were served, and nothing is computed per request.
#[test]
fn an_unpublished_size_is_refused() {
    let dir = TempDir::new("unpublished");
    let d = &dir.0;
    publish(d, &config(1));
    publish(d, &config(2));
    let p = publish(d, &config(3));
    std::fs::remove_file(p.log.join("checkpoints/2")).unwrap();
    let srv = Running::start(options(d));
    let g = get(&format!("{}/config.toml.proof?old=1&old=2", srv.base));
    assert_eq!(g.status, 404, "{}", g.body);
    assert!(
        g.body.contains("no checkpoint of size 2") && g.body.trim_end().lines().count() == 1,
        "{}",
        g.body
    );
    assert_eq!(
        text(&format!("{}/config.toml.proof?old=1", srv.base)),
        LogDir::open(&p.log).unwrap().bundle(&[1]).unwrap()
    );
    assert_eq!(text(&format!("{}/log/checkpoints", srv.base)), "1\n3\n");
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_reload_is_verified_and_extends_what_was_served() {
    let dir = TempDir::new("reload");
    let d = &dir.0;
    let p = publish(d, &config(1));
    let srv = ChildServer::start(d, "rate=0");
    let base = format!("http://{}", srv.addr);
    let policy = key_only(&p);

    // A client accepts version 1 and keeps its checkpoint.
    let v1 = text(&format!("{base}/config.toml"));
    let b1 = text(&format!("{base}/config.toml.proof"));
    let kept = verify_config(&policy, None, &v1, &b1, 0).unwrap().kept;

    // Version 2, signed but not published: refused, version 1 stays.
    std::fs::write(&p.config, config(2)).unwrap();
    clearcount_protocol::sign::sign(d.join("config.key"), &p.config).unwrap();
    wait_for("the refusal", || {
        srv.output().contains("keeping config version 1: ")
    });
    let out = srv.output();
    let line = out
        .lines()
        .find(|l| l.contains("keeping config version 1"))
        .unwrap();
    assert!(line.contains("is not in the config log"), "{line}");
    assert_eq!(text(&format!("{base}/config.toml")), config(1));

    // Published: picked up, and its bundle verifies from the kept
    // checkpoint.
    publish(d, &config(2));
    wait_for("version 2", || {
        get(&format!("{base}/config.toml")).body == config(2)
    });
    let v2 = text(&format!("{base}/config.toml"));
    let b2 = text(&format!(
        "{base}/config.toml.proof?old={}",
        kept.checkpoint.size
    ));
    let a = verify_config(&policy, Some(&kept), &v2, &b2, 0).unwrap();
    assert_eq!((a.config.version, a.kept.checkpoint.size), (2, 2));
    // Without the consistency proof, the kept checkpoint is not extended.
    let fresh = text(&format!("{base}/config.toml.proof"));
    assert!(verify_config(&policy, Some(&kept), &v2, &fresh, 0).is_err());
    assert!(
        srv.output()
            .contains("config version 2 now in force (entry 1 of the config log")
    );

    // A witness's cosignature added to the checkpoint: the same config,
    // its new checkpoint served and shown.
    let witness = SignerKey::generate("witness.example/w1", KeyType::CosignatureV1).unwrap();
    let logdir = LogDir::open(&p.log).unwrap();
    let vkey = logdir.verifier().unwrap();
    let with_w1 = Policy::new(vkey.clone(), vec![witness.verifier().clone()], 0).unwrap();
    std::fs::write(p.log.join("policy"), with_w1.to_text()).unwrap();
    let signed = logdir.checkpoint().unwrap().unwrap();
    let line = witness.cosign(&signed.note.text, 1_800_000_000).unwrap();
    logdir.add_cosignatures(2, &line.line()).unwrap();
    wait_for("the cosignature", || {
        get(&format!("{base}/log/checkpoint"))
            .body
            .contains(&line.line())
    });
    wait_for("the message", || {
        srv.output().contains(
            "config version 2: the config log changed (entry 1 of the config log, cosigned by witness.example/w1)",
        )
    });
    wait_for("the cosignature on the config page", || {
        get(&format!("{base}/config"))
            .body
            .contains("witness <strong>witness.example/w1</strong>, cosigned 2027-01-15 08:00 UTC")
    });
    let needs_w1 =
        ClientPolicy::new(Policy::new(vkey, vec![witness.verifier().clone()], 1).unwrap());
    let b = text(&format!("{base}/config.toml.proof?old=1"));
    verify_config(&needs_w1, Some(&kept), &v2, &b, 0).unwrap();
    assert_eq!(text(&format!("{base}/log/policy")), with_w1.to_text());

    // Another history signed by the same keys (a fork: entry 1 is
    // version 3, not 2): it verifies on its own, but does not extend the
    // log served; refused, version 2 stays.
    let fork = TempDir::new("reload-fork");
    let key = SignerKey::parse(&std::fs::read_to_string(&p.log_key).unwrap()).unwrap();
    let forked = LogDir::init(fork.0.join("log"), key.verifier()).unwrap();
    forked.publish(config(1).as_bytes(), &key).unwrap();
    forked.publish(config(3).as_bytes(), &key).unwrap();
    std::fs::rename(&p.log, d.join("log.served")).unwrap();
    std::fs::rename(fork.0.join("log"), &p.log).unwrap();
    std::fs::write(&p.config, config(3)).unwrap();
    clearcount_protocol::sign::sign(d.join("config.key"), &p.config).unwrap();
    wait_for("the refusal of another history", || {
        srv.output().contains("history was rewritten")
    });
    let out = srv.output();
    let line = out
        .lines()
        .find(|l| l.contains("history was rewritten"))
        .unwrap();
    assert!(
        line.starts_with("clearcount serve: keeping config version 2: ")
            && line.contains("does not extend the one served (2 entries)"),
        "{line}"
    );
    assert_eq!(text(&format!("{base}/config.toml")), config(2));
    let b = text(&format!("{base}/config.toml.proof?old=1"));
    verify_config(&needs_w1, Some(&kept), &v2, &b, 0).unwrap();
    eprintln!("the server said:\n{}", srv.output());
}
