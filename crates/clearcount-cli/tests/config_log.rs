//! The config log through the binary (`counters-spec/config-log.md`):
//! `config log-keygen`, `log-init`, `publish`, `cosign`, `audit`, and
//! `witness keygen`, `witness serve`.
//!
//! - keys in the spec's formats, never overwritten, secrets 0600;
//! - publish: check, minisign, append, checkpoint; refusals in one line,
//!   leaving everything as it was;
//! - audit (directory and HTTP): the history, and a rewritten entry, a
//!   truncated log, a forged checkpoint, a swapped key each refused;
//! - a witness on 127.0.0.1 cosigning consistent checkpoints and refusing a
//!   split view (a second log directory forked from the same key), so a
//!   client that requires it refuses the second branch;
//! - the project's own published log, `config/log/`.
//!
//! `cargo test -p clearcount-cli --test config_log`

mod common;

use clearcount_protocol::tlog::client::{ClientPolicy, verify_config};
use clearcount_protocol::tlog::log::LogDir;
use clearcount_protocol::tlog::merkle;
use clearcount_protocol::tlog::note::{KeyType, SignerKey, VerifierKey};
use clearcount_protocol::tlog::policy::Policy;
use clearcount_protocol::tlog::{Refusal, SignedCheckpoint};
use common::{KillOnDrop, TempDir, clearcount, root, run_err, run_ok};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Helpers

/// The published config with another version, and `extra` appended.
fn config_text(version: u64, extra: &str) -> String {
    let published = std::fs::read_to_string(root().join("config/config.toml")).unwrap();
    assert!(published.contains("\nversion = 2\n"));
    published.replacen("\nversion = 2\n", &format!("\nversion = {version}\n"), 1) + extra
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A maintainer's files: minisign and log key pairs, a config to publish,
/// and the log directory.
struct Maintainer {
    dir: TempDir,
    origin: String,
}

impl Maintainer {
    fn new(tag: &str) -> Maintainer {
        let dir = TempDir::new(tag);
        let m = Maintainer {
            origin: format!("{tag}.example.org/config-log"),
            dir,
        };
        run_ok(
            clearcount()
                .args(["config", "keygen", "--public-key"])
                .arg(m.path("minisign.pub"))
                .arg("--secret-key")
                .arg(m.path("minisign.key")),
        );
        run_ok(
            clearcount()
                .args(["config", "log-keygen", "--name", &m.origin, "--vkey"])
                .arg(m.path("log.vkey"))
                .arg("--skey")
                .arg(m.path("log.skey")),
        );
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.0.join(rel)
    }

    fn log(&self) -> PathBuf {
        self.path("log")
    }

    fn vkey(&self) -> VerifierKey {
        VerifierKey::parse(&std::fs::read_to_string(self.path("log.vkey")).unwrap()).unwrap()
    }

    fn init(&self, policy: Option<&Path>) {
        let mut c = clearcount();
        c.args(["config", "log-init", "--log"])
            .arg(self.log())
            .arg("--vkey")
            .arg(self.path("log.vkey"));
        if let Some(p) = policy {
            c.arg("--policy").arg(p);
        }
        run_ok(&mut c);
    }

    /// `config publish` of this config text into `log`, with more flags.
    fn publish_cmd(&self, log: &Path, text: &str, more: &[&str]) -> Command {
        self.publish_with_key(log, text, &self.path("log.skey"), more)
    }

    /// `config publish` with this log key.
    fn publish_with_key(&self, log: &Path, text: &str, skey: &Path, more: &[&str]) -> Command {
        let config = self.path("config.toml");
        std::fs::write(&config, text).unwrap();
        let mut c = clearcount();
        c.args(["config", "publish", "--config"])
            .arg(&config)
            .arg("--counters")
            .arg(root().join("config/counters"))
            .arg("--secret-key")
            .arg(self.path("minisign.key"))
            .arg("--public-key")
            .arg(self.path("minisign.pub"))
            .arg("--log-key")
            .arg(skey)
            .arg("--log")
            .arg(log)
            .args(more);
        c
    }

    fn publish(&self, text: &str) -> String {
        run_ok(&mut self.publish_cmd(&self.log(), text, &[]))
    }
}

fn audit(source: &str, more: &[&str]) -> Command {
    let mut c = clearcount();
    c.args(["config", "audit", source]).args(more);
    c
}

/// Every file of a directory tree, with its bytes (to see nothing changed).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// What a client would conclude from the log's current bundle.
fn client_check(log: &Path, policy: &Policy) -> Result<u64, Refusal> {
    let dir = LogDir::open(log).unwrap();
    let loaded = dir.load().unwrap();
    let config = String::from_utf8(loaded.entries().last().unwrap().clone()).unwrap();
    let bundle = dir.bundle(&[]).unwrap();
    verify_config(
        &ClientPolicy::new(policy.clone()),
        None,
        &config,
        &bundle,
        0,
    )
    .map(|a| a.config.version)
}

// ---------------------------------------------------------------------------
// A witness process and a static file server

/// `clearcount witness serve` on 127.0.0.1, killed on drop.
struct WitnessProc {
    url: String,
    /// The lines it printed after its first.
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _child: KillOnDrop,
}

fn witness_cmd(skey: &Path, log_vkeys: &[&Path], state: &Path) -> Command {
    let mut c = clearcount();
    c.args(["witness", "serve", "--addr", "127.0.0.1:0", "--key"])
        .arg(skey)
        .arg("--state")
        .arg(state);
    for v in log_vkeys {
        c.arg("--log").arg(v);
    }
    c
}

fn start_witness(skey: &Path, log_vkeys: &[&Path], state: &Path) -> WitnessProc {
    start_witness_with(skey, log_vkeys, state, &[])
}

fn start_witness_with(
    skey: &Path,
    log_vkeys: &[&Path],
    state: &Path,
    more: &[&str],
) -> WitnessProc {
    let mut child = KillOnDrop(
        witness_cmd(skey, log_vkeys, state)
            .args(more)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start clearcount witness serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = said.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for l in lines.map_while(Result::ok) {
            keep.lock().unwrap().push(l);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("clearcount witness serve did not print its address");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    WitnessProc {
        url: format!("http://{addr}"),
        said,
        _child: child,
    }
}

/// `clearcount serve` of the maintainer's config and log on 127.0.0.1,
/// with `more` flags; its URL. Killed on drop.
fn start_server(m: &Maintainer, log: &Path, more: &[&str]) -> (String, KillOnDrop) {
    let mut child = KillOnDrop(
        clearcount()
            .args(["serve", "--addr", "127.0.0.1:0", "--merge-interval", "3600"])
            .arg("--data")
            .arg(m.path("data"))
            .arg("--config")
            .arg(m.path("config.toml"))
            .arg("--public-key")
            .arg(m.path("minisign.pub"))
            .arg("--log")
            .arg(log)
            .args(more)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start clearcount serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("clearcount serve did not print its address");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (format!("http://{addr}"), child)
}

/// GET over loopback: status and body.
fn get(url: &str) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    );
    let mut r = agent.get(url).call().expect("transport error");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// A minimal static file server for a directory, on 127.0.0.1: GET of a
/// file answers its bytes, anything else 404 (a directory too, as most
/// static servers without listings). With `list_sizes`, `GET
/// /checkpoints` answers the sizes of `checkpoints/`, as the collection
/// server does.
fn serve_dir(dir: PathBuf, list_sizes: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req);
            let path = req.split(' ').nth(1).unwrap_or("/").to_string();
            let rel = path.trim_start_matches('/');
            let file = dir.join(rel);
            let body = if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                None
            } else if list_sizes && rel == "checkpoints" {
                let sizes = LogDir::open(&dir).unwrap().checkpoint_sizes().unwrap();
                Some(
                    sizes
                        .iter()
                        .map(|s| format!("{s}\n"))
                        .collect::<String>()
                        .into_bytes(),
                )
            } else if file.is_file() {
                std::fs::read(&file).ok()
            } else {
                None
            };
            let (status, body) = match body {
                Some(b) => ("200 OK", b),
                None => ("404 Not Found", b"not found\n".to_vec()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------
// Keys, publish, audit

#[test]
fn keygen_publish_audit_round_trip() {
    let m = Maintainer::new("roundtrip");
    // The keys, in the C2SP signed-note formats; the secret one 0600.
    let vkey = m.vkey();
    assert_eq!(
        (vkey.name(), vkey.key_type()),
        (m.origin.as_str(), KeyType::Ed25519)
    );
    let skey_text = std::fs::read_to_string(m.path("log.skey")).unwrap();
    assert!(skey_text.starts_with(&format!("PRIVATE+KEY+{}+", m.origin)));
    assert_eq!(SignerKey::parse(&skey_text).unwrap().verifier(), &vkey);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(m.path("log.skey"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // Never overwritten: neither file changes, whichever exists.
    let before = snapshot(&m.dir.0);
    for (v, s) in [("log.vkey", "new.skey"), ("new.vkey", "log.skey")] {
        let err = run_err(
            clearcount()
                .args(["config", "log-keygen", "--name", "x.example/log", "--vkey"])
                .arg(m.path(v))
                .arg("--skey")
                .arg(m.path(s)),
        );
        assert!(err.contains("already exists; not overwriting"), "{err}");
    }
    assert_eq!(snapshot(&m.dir.0), before);
    // A witness key: type 0x04.
    run_ok(
        clearcount()
            .args(["witness", "keygen", "--name", "w.example/w1", "--vkey"])
            .arg(m.path("w.vkey"))
            .arg("--skey")
            .arg(m.path("w.skey")),
    );
    let wkey = VerifierKey::parse(&std::fs::read_to_string(m.path("w.vkey")).unwrap()).unwrap();
    assert_eq!(wkey.key_type(), KeyType::CosignatureV1);

    // Publish three versions.
    m.init(None);
    let mut published = Vec::new();
    for v in [3, 4, 7] {
        let text = config_text(v, &format!("# release {v}\n"));
        let out = m.publish(&text);
        let index = published.len();
        assert!(
            out.contains(&format!(
                "(version {v}, sha256 {})",
                hex(&merkle::sha256(text.as_bytes()))
            )),
            "{out}"
        );
        assert!(out.contains(&format!("as entry {index} of")), "{out}");
        assert!(
            out.contains(&format!("signed checkpoint of size {}", index + 1)),
            "{out}"
        );
        // The minisign signature is the config's, as `config verify` says.
        let v_out = run_ok(
            clearcount()
                .args(["config", "verify", "--public-key"])
                .arg(m.path("minisign.pub"))
                .arg(m.path("config.toml")),
        );
        assert!(v_out.contains(&format!("config version {v}")), "{v_out}");
        published.push(text);
    }
    // The directory: the spec's layout, exact bytes.
    let log = m.log();
    for (i, text) in published.iter().enumerate() {
        assert_eq!(
            std::fs::read(log.join(format!("entries/{i}"))).unwrap(),
            text.as_bytes()
        );
    }
    let latest = std::fs::read_to_string(log.join("checkpoint")).unwrap();
    assert_eq!(
        latest,
        std::fs::read_to_string(log.join("checkpoints/3")).unwrap()
    );
    let signed = SignedCheckpoint::parse(&latest).unwrap();
    Policy::new(vkey.clone(), Vec::new(), 0)
        .unwrap()
        .verify(&signed, 0, None)
        .unwrap();
    // A client accepts the latest config with the log's proof.
    let policy = Policy::new(vkey.clone(), Vec::new(), 0).unwrap();
    assert_eq!(client_check(&log, &policy), Ok(7));

    // The audit prints the history: index, version, SHA-256.
    let out = run_ok(&mut audit(log.to_str().unwrap(), &[]));
    for (i, (v, text)) in [3, 4, 7].iter().zip(&published).enumerate() {
        let sha = hex(&merkle::sha256(text.as_bytes()));
        assert!(
            out.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.len() >= 4 && w[0] == i.to_string() && w[1] == v.to_string() && w[3] == sha
            }),
            "entry {i} missing from:\n{out}"
        );
    }
    assert!(
        out.contains("audit ok: 3 entries, 3 checkpoints in one consistent history; the current config is entry 2 (version 7)"),
        "{out}"
    );
    // With the expected log key, given as the key itself.
    run_ok(&mut audit(
        log.to_str().unwrap(),
        &["--log-key", &vkey.to_string()],
    ));
}

#[test]
fn publish_refusals_are_one_line_and_change_nothing() {
    let m = Maintainer::new("refusals");
    // No log yet: says how to make one.
    let err = run_err(&mut m.publish_cmd(&m.log(), &config_text(3, ""), &[]));
    assert!(err.contains("config log-init"), "{err}");
    m.init(None);
    m.publish(&config_text(5, ""));
    let log = m.log();
    let sig = m.path("config.toml.minisig");
    let before = (snapshot(&log), std::fs::read(&sig).unwrap());
    let unchanged = |what: &str| {
        assert_eq!(
            (snapshot(&log), std::fs::read(&sig).unwrap()),
            before,
            "{what} changed the log or the signature"
        );
    };

    // A lower version, and the same version with other bytes.
    for (v, extra) in [(4, ""), (5, "# same version, other bytes\n")] {
        let err = run_err(&mut m.publish_cmd(&log, &config_text(v, extra), &[]));
        assert!(
            err.contains(&format!(
                "config version {v} is not higher than version 5, the last in the log"
            )),
            "{err}"
        );
        unchanged("a version not higher");
    }
    // A config that fails the check against the declared counters.
    let bad = config_text(
        6,
        "\n[[program.counter]]\nname = \"instrumented/secret\"\nrate = 0.1\n",
    );
    let err = run_err(&mut m.publish_cmd(&log, &bad, &[]));
    assert!(
        err.contains("not publishing") && err.contains("instrumented/secret"),
        "{err}"
    );
    unchanged("a config failing its check");
    // Another log key with the same name.
    run_ok(
        clearcount()
            .args(["config", "log-keygen", "--name", &m.origin, "--vkey"])
            .arg(m.path("other.vkey"))
            .arg("--skey")
            .arg(m.path("other.skey")),
    );
    let err =
        run_err(&mut m.publish_with_key(&log, &config_text(6, ""), &m.path("other.skey"), &[]));
    assert!(err.contains("but the log in"), "{err}");
    unchanged("another log key");
    // Without --secret-key, the existing signature must verify.
    let text = config_text(6, "");
    std::fs::write(m.path("config.toml"), &text).unwrap();
    let err = run_err(
        clearcount()
            .args(["config", "publish", "--config"])
            .arg(m.path("config.toml"))
            .arg("--counters")
            .arg(root().join("config/counters"))
            .arg("--public-key")
            .arg(m.path("minisign.pub"))
            .arg("--log-key")
            .arg(m.path("log.skey"))
            .arg("--log")
            .arg(&log),
    );
    assert!(err.contains("signature does not match"), "{err}");
    unchanged("a config whose signature is another's");
    // A witness key that is not one: refused before anything is written.
    let err = run_err(&mut m.publish_cmd(
        &log,
        &config_text(6, ""),
        &[
            "--witness",
            "http://127.0.0.1:9",
            "--witness-key",
            "w.example/w+00000000+BAAA",
        ],
    ));
    assert!(err.contains("verifier key"), "{err}");
    unchanged("a bad witness key");
    // A witness that cannot be reached: the entry is published (publishing
    // works offline), the command says the witness did not cosign.
    run_ok(
        clearcount()
            .args(["witness", "keygen", "--name", "w.example/w", "--vkey"])
            .arg(m.path("w.vkey"))
            .arg("--skey")
            .arg(m.path("w.skey")),
    );
    let err = run_err(&mut m.publish_cmd(
        &log,
        &config_text(6, ""),
        &[
            "--witness",
            "http://127.0.0.1:9",
            "--witness-key",
            m.path("w.vkey").to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains("entry 1 is published, but witness http://127.0.0.1:9 could not be asked: cannot reach http://127.0.0.1:9/add-checkpoint"),
        "{err}"
    );
    assert_eq!(
        LogDir::open(&log).unwrap().checkpoint_sizes().unwrap(),
        [1, 2]
    );
}

/// A log of three versions in `m`'s directory.
fn three_versions(m: &Maintainer) -> PathBuf {
    m.init(None);
    for v in [1, 2, 3] {
        m.publish(&config_text(v, ""));
    }
    m.log()
}

#[test]
fn audit_refuses_tampered_logs() {
    let m = Maintainer::new("tamper");
    let log = three_versions(&m);
    let vkey = m.vkey().to_string();
    run_ok(&mut audit(log.to_str().unwrap(), &[]));
    let tampered = |tag: &str, change: &dyn Fn(&Path)| -> String {
        let dir = m.path(tag);
        copy_dir(&log, &dir);
        change(&dir);
        run_err(&mut audit(dir.to_str().unwrap(), &["--log-key", &vkey]))
    };

    // A rewritten entry (valid config, same version, other bytes).
    let err = tampered("rewritten", &|d| {
        std::fs::write(d.join("entries/1"), config_text(2, "# rewritten\n")).unwrap()
    });
    assert!(
        err.contains("does not match entries 0..2: history was rewritten"),
        "{err}"
    );
    // A truncated log: the last entry removed.
    let err = tampered("truncated", &|d| {
        std::fs::remove_file(d.join("entries/2")).unwrap()
    });
    assert!(
        err.contains("checkpoint of size 3 is beyond the 2 entries: the log is truncated"),
        "{err}"
    );
    // An entry removed in the middle.
    let err = tampered("hole", &|d| {
        std::fs::remove_file(d.join("entries/1")).unwrap()
    });
    assert!(err.contains("entries/1 is missing but"), "{err}");
    // A forged checkpoint: the root changed under the log's signature.
    let err = tampered("forged-root", &|d| {
        let p = d.join("checkpoints/2");
        let t = std::fs::read_to_string(&p).unwrap();
        let root = t.lines().nth(2).unwrap().to_string();
        let other = clearcount_protocol::tlog::base64_encode(&[7u8; 32]);
        std::fs::write(&p, t.replacen(&root, &other, 1)).unwrap();
    });
    assert!(
        err.contains("checkpoints/2: the checkpoint carries a signature of key")
            && err.contains("that does not verify"),
        "{err}"
    );
    // A forged checkpoint signed by another key of the same name.
    let err = tampered("forged-key", &|d| {
        let other = SignerKey::from_seed(&m.origin, KeyType::Ed25519, [9; 32]).unwrap();
        let dir = LogDir::open(d).unwrap();
        let signed = dir.load().unwrap().sign_checkpoint(&other).unwrap();
        std::fs::write(d.join("checkpoint"), signed.to_text()).unwrap();
    });
    assert!(
        err.contains("checkpoint: the checkpoint is not signed by the log key"),
        "{err}"
    );
    // Everything rewritten with another key: the expected key catches it.
    let err = tampered("other-key", &|d| {
        let other = SignerKey::from_seed(&m.origin, KeyType::Ed25519, [9; 32]).unwrap();
        std::fs::write(d.join("log.vkey"), format!("{}\n", other.verifier())).unwrap();
    });
    assert!(
        err.contains("the log's key is") && err.contains("not the expected"),
        "{err}"
    );

    // Truncated with its checkpoints rolled back: consistent by itself, but
    // a checkpoint a client kept from before proves the truncation.
    let kept = m.path("kept-checkpoint");
    std::fs::copy(log.join("checkpoint"), &kept).unwrap();
    let dir = m.path("rolled-back");
    copy_dir(&log, &dir);
    std::fs::remove_file(dir.join("entries/2")).unwrap();
    std::fs::remove_file(dir.join("checkpoints/3")).unwrap();
    std::fs::copy(dir.join("checkpoints/2"), dir.join("checkpoint")).unwrap();
    run_ok(&mut audit(dir.to_str().unwrap(), &[]));
    let err = run_err(&mut audit(
        dir.to_str().unwrap(),
        &["--checkpoint", kept.to_str().unwrap()],
    ));
    assert!(err.contains("the log is truncated"), "{err}");
    // ... and a kept checkpoint of another history (a split view) too.
    let fork = m.path("fork");
    copy_dir(&log, &fork);
    std::fs::remove_file(fork.join("entries/2")).unwrap();
    let key = SignerKey::parse(&std::fs::read_to_string(m.path("log.skey")).unwrap()).unwrap();
    LogDir::open(&fork)
        .unwrap()
        .publish(config_text(4, "").as_bytes(), &key)
        .unwrap();
    let fork_cp = m.path("fork-checkpoint");
    std::fs::copy(fork.join("checkpoint"), &fork_cp).unwrap();
    let err = run_err(&mut audit(
        log.to_str().unwrap(),
        &["--checkpoint", fork_cp.to_str().unwrap()],
    ));
    assert!(
        err.contains("checkpoint of size 3 does not match entries 0..3"),
        "{err}"
    );
}

/// A log whose key signs whatever it is given: `entries`, and a checkpoint
/// of `size` entries (the entries' root when `size` is their number, else
/// any root) at `checkpoint` and `checkpoints/<size>`.
fn hostile_log(m: &Maintainer, tag: &str, entries: &[Vec<u8>], size: u64) -> PathBuf {
    use clearcount_protocol::tlog::checkpoint::Checkpoint;
    use clearcount_protocol::tlog::note::Note;
    let key = SignerKey::parse(&std::fs::read_to_string(m.path("log.skey")).unwrap()).unwrap();
    let dir = m.path(tag);
    std::fs::create_dir_all(dir.join("entries")).unwrap();
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::write(dir.join("log.vkey"), format!("{}\n", key.verifier())).unwrap();
    for (i, e) in entries.iter().enumerate() {
        std::fs::write(dir.join(format!("entries/{i}")), e).unwrap();
    }
    let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let root = if size == leaves.len() as u64 {
        merkle::root(&leaves)
    } else {
        [7; 32]
    };
    let mut note = Note::new(&Checkpoint::new(&m.origin, size, root).to_text()).unwrap();
    note.add_signature(key.sign(&note.text).unwrap());
    std::fs::write(dir.join("checkpoint"), note.to_text()).unwrap();
    std::fs::write(dir.join(format!("checkpoints/{size}")), note.to_text()).unwrap();
    dir
}

/// A hostile log (signed by its own key, so it passes every signature
/// check): an entry 150,000 levels deep (as a dotted key, as a table
/// header, as nested arrays), one of 60,000 keys, one of 5 MiB, and a
/// checkpoint that claims five million entries. `config audit` refuses
/// each with one line and exit status 1 — no crash (a stack overflow
/// would end it with a signal), within 1 GiB of address space, over HTTP
/// and from the directory.
#[test]
fn audit_refuses_a_hostile_log_in_bounded_memory() {
    let m = Maintainer::new("hostile");
    let deep = |open: &str, close: &str| -> Vec<u8> {
        format!("a = {}{}\n", open.repeat(150_000), close.repeat(150_000)).into_bytes()
    };
    let mut keys = String::new();
    for i in 0..60_000 {
        keys.push_str(&format!("k{i} = {i}\n"));
    }
    let cases: Vec<(&str, Vec<Vec<u8>>, u64, &str)> = vec![
        (
            "dotted",
            vec![format!("{} = 1\n", vec!["a"; 150_000].join(".")).into_bytes()],
            1,
            "entry 0 is not a valid config: entry 0:1: nested too deep",
        ),
        (
            "header",
            vec![format!("[{}]\n", vec!["a"; 150_000].join(".")).into_bytes()],
            1,
            "nested too deep",
        ),
        ("arrays", vec![deep("[", "]")], 1, "nested too deep"),
        ("inline", vec![deep("{a=", "}")], 1, "nested too deep"),
        (
            "keys",
            vec![keys.into_bytes()],
            1,
            "entry 0 is not a valid config: entry 0:1: unknown field `k0`",
        ),
        (
            "huge",
            vec![vec![b'#'; 5 << 20]],
            1,
            "entries/0 is larger than 1 MiB: refused",
        ),
        (
            "count",
            vec![config_text(2, "").into_bytes()],
            5_000_000,
            "covers 5000000 entries, more than the 100000 an audit reads: not a config log",
        ),
    ];
    for (tag, entries, size, want) in cases {
        let dir = hostile_log(&m, tag, &entries, size);
        let url = serve_dir(dir.clone(), true);
        for source in [url, dir.display().to_string()] {
            // At most 1 GiB of address space: an auditor that held what a
            // hostile log offers would fail here.
            let mut c = Command::new("bash");
            c.args(["-c", "ulimit -v 1048576 && exec \"$@\"", "bash"])
                .arg(env!("CARGO_BIN_EXE_clearcount"))
                .args(["config", "audit", &source]);
            let err = run_err(&mut c);
            assert!(err.contains(want), "{tag} from {source}: {err}");
        }
    }
}

#[test]
fn audit_over_http() {
    let m = Maintainer::new("http");
    let log = three_versions(&m);
    let local = run_ok(&mut audit(log.to_str().unwrap(), &[]));
    let history = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| !l.starts_with("from") && !l.starts_with("policy"))
            .map(str::to_owned)
            .collect()
    };
    // A static file server (no list of sizes: the auditor probes), and one
    // that lists the checkpoint sizes as the collection server will.
    for list in [false, true] {
        let url = serve_dir(log.clone(), list);
        let out = run_ok(&mut audit(&format!("{url}/"), &[]));
        assert_eq!(history(&out), history(&local), "list sizes: {list}");
    }
    // A tampered log served over HTTP is refused the same way.
    let dir = m.path("served-truncated");
    copy_dir(&log, &dir);
    std::fs::remove_file(dir.join("entries/2")).unwrap();
    let url = serve_dir(dir, true);
    let err = run_err(&mut audit(&url, &[]));
    assert!(err.contains("the log is truncated"), "{err}");
    // Not a log at all.
    let url = serve_dir(m.path("nothing-here"), false);
    let err = run_err(&mut audit(&url, &[]));
    assert!(err.contains("log.vkey does not exist"), "{err}");
    let err = run_err(&mut audit("http://127.0.0.1:9", &[]));
    assert!(
        err.contains("cannot reach http://127.0.0.1:9/log.vkey"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// The witness

fn post(url: &str, body: &str) -> (u16, String, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut r = agent.post(url).send(body).unwrap();
    let kind = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        r.status().as_u16(),
        kind,
        r.body_mut().read_to_string().unwrap(),
    )
}

#[test]
fn witness_cosigns_consistent_checkpoints_and_refuses_a_split_view() {
    let m = Maintainer::new("witness");
    run_ok(
        clearcount()
            .args([
                "witness",
                "keygen",
                "--name",
                "witness.example/w1",
                "--vkey",
            ])
            .arg(m.path("w1.vkey"))
            .arg("--skey")
            .arg(m.path("w1.skey")),
    );
    let wkey = VerifierKey::parse(&std::fs::read_to_string(m.path("w1.vkey")).unwrap()).unwrap();
    let state = m.path("witness-state");
    let w = start_witness(&m.path("w1.skey"), &[&m.path("log.vkey")], &state);
    // One witness per state directory.
    let out = witness_cmd(&m.path("w1.skey"), &[&m.path("log.vkey")], &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::text(&out.stderr).contains("another witness is running on"),
        "{}",
        common::text(&out.stderr)
    );

    // The log's policy requires the witness (and names its URL).
    let policy_text = format!("log {}\nwitness w1 {wkey} {}\nquorum w1\n", m.vkey(), w.url);
    std::fs::write(m.path("policy"), &policy_text).unwrap();
    let policy = Policy::parse(&policy_text).unwrap();
    m.init(Some(&m.path("policy")));
    let log = m.log();

    // Publish v1 and v2 through the witness: each checkpoint cosigned.
    let out = run_ok(&mut m.publish_cmd(&log, &config_text(1, ""), &["--witness", &w.url]));
    assert!(
        out.contains("witness witness.example/w1")
            && out.contains("cosigned the checkpoint of size 1"),
        "{out}"
    );
    let fork_base = m.path("fork-base");
    copy_dir(&log, &fork_base); // the log at size 1, cosigned
    let out = run_ok(&mut m.publish_cmd(&log, &config_text(2, ""), &["--witness", &w.url]));
    assert!(out.contains("cosigned the checkpoint of size 2"), "{out}");
    assert_eq!(client_check(&log, &policy), Ok(2));
    // `config cosign` without --witness asks the policy's witnesses again.
    let out = run_ok(clearcount().args(["config", "cosign", "--log"]).arg(&log));
    assert!(out.contains("cosigned the checkpoint of size 2"), "{out}");
    // The audit with the policy: every checkpoint cosigned, dates shown.
    let out = run_ok(&mut audit(
        log.to_str().unwrap(),
        &["--policy", m.path("policy").to_str().unwrap()],
    ));
    assert!(out.contains("needs a cosignature from witness w1"), "{out}");
    assert_eq!(out.matches(" w1 at ").count(), 2, "{out}");
    let stored =
        std::fs::read_to_string(state.join("logs").join(m.origin.replace('/', "%2F"))).unwrap();
    assert!(
        stored.starts_with(&format!("{}\n2\n", m.origin)),
        "{stored}"
    );

    // The split view: a second directory forked from the same key at size
    // 1, extended with another version 2. Validly signed by the log key,
    // refused by the witness, at the same size and at a larger one.
    let fork = m.path("fork");
    copy_dir(&fork_base, &fork);
    let err = run_err(&mut m.publish_cmd(
        &fork,
        &config_text(2, "# the other history\n"),
        &["--witness", &w.url],
    ));
    assert!(
        err.contains(&format!(
            "entry 1 is published, but witness {} refused to cosign the checkpoint of size 2",
            w.url
        )) && err.contains("split view")
            && err.contains("(422:"),
        "{err}"
    );
    let err = run_err(&mut m.publish_cmd(&fork, &config_text(3, ""), &["--witness", &w.url]));
    assert!(err.contains("(422:") && err.contains("split view"), "{err}");
    // The fork's checkpoints carry no cosignature: a client that requires
    // the witness refuses the second branch; one that does not would take
    // it (which is why the witness is required).
    let fork_cp = std::fs::read_to_string(fork.join("checkpoint")).unwrap();
    assert_eq!(fork_cp.matches('\u{2014}').count(), 1, "{fork_cp}");
    assert!(matches!(
        client_check(&fork, &policy),
        Err(Refusal::TooFewCosignatures { .. })
    ));
    let log_only = Policy::new(m.vkey(), Vec::new(), 0).unwrap();
    assert_eq!(client_check(&fork, &log_only), Ok(3));
    // The witness still holds the first history, also after a restart.
    drop(w);
    let w = start_witness(&m.path("w1.skey"), &[&m.path("log.vkey")], &state);
    let err = run_err(
        clearcount()
            .args(["config", "cosign", "--log"])
            .arg(&fork)
            .args(["--witness", &w.url]),
    );
    assert!(err.contains("(422:"), "{err}");
    // The two signed checkpoints of size 2 are the proof of the split view.
    let err = run_err(&mut audit(
        log.to_str().unwrap(),
        &["--checkpoint", fork.join("checkpoints/2").to_str().unwrap()],
    ));
    assert!(
        err.contains("checkpoint of size 2 does not match entries 0..2"),
        "{err}"
    );

    // A log that does not know what the witness has (cosignatures lost):
    // a 409 gives the witness's size, the retry from it is cosigned.
    let lost = m.path("lost");
    copy_dir(&log, &lost);
    let strip = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        let kept: String = t
            .split_inclusive('\n')
            .filter(|l| !l.contains("witness.example/w1"))
            .collect();
        std::fs::write(p, kept).unwrap();
    };
    for p in ["checkpoint", "checkpoints/1", "checkpoints/2"] {
        strip(&lost.join(p));
    }
    std::fs::remove_file(lost.join("policy")).unwrap();
    let out = run_ok(
        clearcount()
            .args(["config", "cosign", "--log"])
            .arg(&lost)
            .args(["--witness", &w.url, "--witness-key"])
            .arg(m.path("w1.vkey")),
    );
    assert!(out.contains("cosigned the checkpoint of size 2"), "{out}");
    assert_eq!(client_check(&lost, &policy), Ok(2));

    // The protocol answers, directly.
    let add = format!("{}/add-checkpoint", w.url);
    let (s, _, body) = post(&add, "garbage");
    assert_eq!(s, 400, "{body}");
    let cp = std::fs::read_to_string(log.join("checkpoint")).unwrap();
    let (s, kind, body) = post(&add, &format!("old 0\n\n{cp}"));
    assert_eq!(
        (s, kind.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "2\n")
    );
    let stranger = SignerKey::from_seed("stranger.example/log", KeyType::Ed25519, [5; 32]).unwrap();
    let mut other = clearcount_protocol::tlog::log::Log::new("stranger.example/log");
    other.append(config_text(1, "").into_bytes()).unwrap();
    let other_cp = other.sign_checkpoint(&stranger).unwrap().to_text();
    let (s, _, body) = post(&add, &format!("old 0\n\n{other_cp}"));
    assert_eq!(s, 404, "{body}");
    let (s, _, body) = post(
        &add,
        &format!("old 2\n\n{}", cp.replacen("\n2\n", "\n3\n", 1)),
    );
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = post(&add, &format!("old 2\n\n{cp}"));
    assert_eq!(s, 200, "{body}");
    assert!(body.starts_with("\u{2014} witness.example/w1 "), "{body}");
}

// ---------------------------------------------------------------------------
// The project's own log

#[test]
fn published_log_holds_the_published_config() {
    let log = root().join("config/log");
    let out = run_ok(&mut audit(
        log.to_str().unwrap(),
        &["--policy", log.join("policy").to_str().unwrap()],
    ));
    assert!(out.contains("audit ok:"), "{out}");
    // The current config is the last entry, byte for byte, and a client
    // compiled with the published policy accepts it.
    let dir = LogDir::open(&log).unwrap();
    let loaded = dir.load().unwrap();
    assert_eq!(
        loaded.entries().last().unwrap(),
        &std::fs::read(root().join("config/config.toml")).unwrap()
    );
    let policy = Policy::parse(&std::fs::read_to_string(log.join("policy")).unwrap()).unwrap();
    assert_eq!(
        policy.log().to_string(),
        std::fs::read_to_string(log.join("log.vkey"))
            .unwrap()
            .trim()
    );
    assert_eq!(
        client_check(&log, &policy),
        Ok(loaded.versions()[loaded.versions().len() - 1])
    );
    // The log has a witness, whose cosignature the policy requires (a
    // checkpoint without it is refused).
    assert!(!policy.witnesses().is_empty());
    assert_eq!(policy.describe_quorum(), "a cosignature from witness w1");
    let mut bare = dir.checkpoint().unwrap().unwrap();
    bare.note.signatures.retain(|s| policy.log().matches(s));
    assert!(matches!(
        policy.verify(&bare, 0, None),
        Err(Refusal::TooFewCosignatures { .. })
    ));
    // `minimum` is the latest checkpoint as the log signed it: what a
    // release compiles in.
    let minimum = std::fs::read_to_string(log.join(LogDir::MINIMUM)).unwrap();
    assert_eq!(minimum, bare.to_text());
    ClientPolicy::parse(
        &std::fs::read_to_string(log.join("policy")).unwrap(),
        &minimum,
    )
    .unwrap();
    // No secret key anywhere in config/.
    for (p, bytes) in snapshot(&root().join("config")) {
        let t = String::from_utf8_lossy(&bytes);
        let minisign_secret = t
            .lines()
            .any(|l| l.starts_with("untrusted comment:") && l.contains("secret key"));
        assert!(
            !t.contains("PRIVATE+KEY") && !minisign_secret,
            "{} holds a secret key",
            p.display()
        );
    }
}

/// The cosignature times of `key` on a signed checkpoint's text.
fn cosigned_at(text: &str, key: &VerifierKey) -> Vec<u64> {
    SignedCheckpoint::parse(text)
        .unwrap()
        .note
        .signatures
        .iter()
        .filter(|s| key.matches(s))
        .filter_map(|s| s.timestamp())
        .collect()
}

/// A witness key pair and a log whose policy requires it (at `url`).
fn witnessed_log(m: &Maintainer, url: &str) -> (VerifierKey, Policy) {
    let wkey = VerifierKey::parse(&std::fs::read_to_string(m.path("w1.vkey")).unwrap()).unwrap();
    let text = format!("log {}\nwitness w1 {wkey} {url}\nquorum w1\n", m.vkey());
    std::fs::write(m.path("policy"), &text).unwrap();
    m.init(Some(&m.path("policy")));
    (wkey, Policy::parse(&text).unwrap())
}

fn witness_keygen(m: &Maintainer) {
    run_ok(
        clearcount()
            .args([
                "witness",
                "keygen",
                "--name",
                "witness.example/w1",
                "--vkey",
            ])
            .arg(m.path("w1.vkey"))
            .arg("--skey")
            .arg(m.path("w1.skey")),
    );
}

/// `witness serve --recosign-every`: on its schedule the witness cosigns
/// again the checkpoint it stored (it says so), and an unchanged checkpoint
/// asked for again within the period gets that cosignature, not a new one
/// per request.
#[test]
fn a_witness_recosigns_on_its_schedule() {
    let m = Maintainer::new("schedule");
    witness_keygen(&m);
    let state = m.path("witness-state");
    let w = start_witness_with(
        &m.path("w1.skey"),
        &[&m.path("log.vkey")],
        &state,
        &["--recosign-every", "1"],
    );
    let (wkey, _) = witnessed_log(&m, &w.url);
    run_ok(&mut m.publish_cmd(&m.log(), &config_text(1, ""), &["--witness", &w.url]));
    let first = cosigned_at(
        &std::fs::read_to_string(m.log().join("checkpoint")).unwrap(),
        &wkey,
    );
    // The schedule runs without any request.
    let origin = m.origin.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !w
        .said
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(&format!("re-cosigned {origin} size 1 (on schedule)")))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", w.said);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Asked again: the schedule's cosignature, later than the first.
    run_ok(
        clearcount()
            .args(["config", "cosign", "--log"])
            .arg(m.log()),
    );
    let again = cosigned_at(
        &std::fs::read_to_string(m.log().join("checkpoint")).unwrap(),
        &wkey,
    );
    assert_eq!(again.len(), 1, "one line per witness");
    assert!(again[0] > first[0], "{again:?} after {first:?}");
    // With a long period, two requests in a row get the same line.
    drop(w);
    let w = start_witness_with(
        &m.path("w1.skey"),
        &[&m.path("log.vkey")],
        &state,
        &["--recosign-every", "3600"],
    );
    let mut lines = Vec::new();
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1100));
        run_ok(
            clearcount()
                .args(["config", "cosign", "--log"])
                .arg(m.log())
                .args(["--witness", &w.url]),
        );
        lines.push(std::fs::read_to_string(m.log().join("checkpoint")).unwrap());
    }
    assert_eq!(lines[0], lines[1], "the scheduled cosignature, reused");
}

/// A quiet log stays fresh: `clearcount serve --recosign-every` asks the
/// policy's witness for new cosignatures of the unchanged checkpoint and
/// serves them. A client that refuses cosignatures older than the time
/// between two of them accepts the served bundle, and refuses the bundle
/// of the checkpoint as it was published.
#[test]
fn the_server_keeps_a_quiet_log_fresh() {
    let m = Maintainer::new("fresh");
    witness_keygen(&m);
    let w = start_witness_with(
        &m.path("w1.skey"),
        &[&m.path("log.vkey")],
        &m.path("witness-state"),
        &["--recosign-every", "1"],
    );
    let (wkey, policy) = witnessed_log(&m, &w.url);
    run_ok(&mut m.publish_cmd(&m.log(), &config_text(1, ""), &["--witness", &w.url]));
    let published = m.path("as-published");
    copy_dir(&m.log(), &published);
    let t0 = cosigned_at(
        &std::fs::read_to_string(m.log().join("checkpoint")).unwrap(),
        &wkey,
    )[0];
    let (base, _server) = start_server(&m, &m.log(), &["--recosign-every", "1"]);
    // The served checkpoint's cosignature moves on, with no new config.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (served, t1) = loop {
        let (status, text) = get(&format!("{base}/log/checkpoint"));
        assert_eq!(status, 200, "{text}");
        let t = cosigned_at(&text, &wkey);
        assert_eq!(t.len(), 1, "{text}");
        if t[0] > t0 {
            break (text, t[0]);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refreshed: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(SignedCheckpoint::parse(&served).unwrap().checkpoint.size, 1);
    // A client that allows cosignatures up to (t1 - t0 - 1) s old, at t1.
    let fresh_only = ClientPolicy::new(policy).with_max_age(t1 - t0 - 1);
    let config = get(&format!("{base}/config.toml")).1;
    let bundle = get(&format!("{base}/config.toml.proof")).1;
    let ok = verify_config(&fresh_only, None, &config, &bundle, t1);
    assert!(ok.is_ok(), "{ok:?}");
    let old_bundle = LogDir::open(&published).unwrap().bundle(&[]).unwrap();
    let r = verify_config(&fresh_only, None, &config, &old_bundle, t1).unwrap_err();
    assert!(matches!(r, Refusal::Stale { size: 1, .. }), "{r}");
}
