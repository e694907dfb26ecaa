//! The published config and its signature, the declared counters, filtering
//! by rate, and interoperability with the standard `minisign` tool (feature
//! `sign`: `cargo test -p clearcount-protocol --all-features`).
//!
//! The interop tests need the `minisign` binary (Debian package `minisign`);
//! they fail, with a message saying so, when it is missing. The same through
//! the `clearcount config` command is in `crates/clearcount-cli/tests/config.rs`.
#![cfg(feature = "sign")]

use clearcount_protocol::config::{CollectionConfig, DeclaredCounters, check};
use clearcount_protocol::report::{ProgramReport, Report};
use clearcount_protocol::sign::{self, SignError, verify, verify_config};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root, where the published `config/` is.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn published() -> (String, String, String) {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    (
        read("config/clearcount.pub"),
        read("config/config.toml"),
        read("config/config.toml.minisig"),
    )
}

/// A fresh, empty temporary directory for one test.
fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cc-config-sign-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn minisign() -> Command {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    assert!(
        found,
        "the `minisign` command is not installed, so the interoperability tests cannot run; \
         install it (Debian/Ubuntu: apt-get install -y minisign) — these tests must not be skipped"
    );
    Command::new("minisign")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn published_config_checks_against_declared_counters() {
    let (_, text, _) = published();
    let cfg = CollectionConfig::parse(&text, "config/config.toml").unwrap();
    let declared = DeclaredCounters::load_dir(root().join("config/counters")).unwrap();
    check(&cfg, &declared).unwrap_or_else(|errs| {
        panic!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    // the example tool's registry is complete and bucket sets expanded
    let p = declared.program("instrumented").unwrap();
    for name in [
        "instrumented/command:panic",
        "instrumented/inc",
        "instrumented/duration:<10ms",
        "instrumented/duration:>=1s",
        "instrumented/flag:times",
    ] {
        assert!(p.counter(name).is_some(), "{name}");
    }
    assert_eq!(p.counter("instrumented/stack").unwrap().depth, Some(8));
    assert_eq!(p.counter("crash/panic").unwrap().depth, Some(16));
    assert!(
        p.counters
            .iter()
            .all(|c| !c.description.is_empty() && !c.question.is_empty())
    );
}

#[test]
fn published_signature_verifies() {
    let (pk, text, sig) = published();
    let cfg = verify_config(&pk, &text, &sig, None).unwrap();
    assert!(cfg.version >= 1);
    // same version again is fine; a newer one already accepted is a rollback
    verify_config(&pk, &text, &sig, Some(cfg.version)).unwrap();
    let err = verify_config(&pk, &text, &sig, Some(cfg.version + 4)).unwrap_err();
    assert!(matches!(err, SignError::Rollback { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "config version {} is older than version {} already accepted",
            cfg.version,
            cfg.version + 4
        )
    );
}

#[test]
fn tampered_other_key_missing_and_garbage_refused() {
    let (pk, text, sig) = published();
    // tampered: a rate raised after signing
    let tampered = text.replacen("rate = 0.05", "rate = 0.9", 1);
    assert_ne!(tampered, text);
    let err = verify_config(&pk, &tampered, &sig, None).unwrap_err();
    assert!(matches!(err, SignError::Mismatch));
    assert!(
        err.to_string()
            .starts_with("signature does not match the public key")
    );
    // one byte appended
    assert!(matches!(
        verify(&pk, format!("{text} ").as_bytes(), &sig),
        Err(SignError::Mismatch)
    ));

    // signed by another key
    let dir = tmp("other");
    sign::keygen(dir.join("o.pub"), dir.join("o.key")).unwrap();
    std::fs::write(dir.join("config.toml"), &text).unwrap();
    sign::sign(dir.join("o.key"), dir.join("config.toml")).unwrap();
    let other_sig = std::fs::read_to_string(dir.join("config.toml.minisig")).unwrap();
    let err = verify_config(&pk, &text, &other_sig, None).unwrap_err();
    assert!(matches!(err, SignError::OtherKey));
    assert!(err.to_string().contains("another key"), "{err}");

    // missing, garbage, truncated
    let err = verify_config(&pk, &text, "", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signature is missing (the signature text is empty)"
    );
    for bad in [
        "garbage".to_string(),
        "untrusted comment: x\nnot base64!\n".to_string(),
        sig.lines().take(2).collect::<Vec<_>>().join("\n"),
        sig.replace("trusted comment:", "trusted remark:"),
    ] {
        let err = verify_config(&pk, &text, &bad, None).unwrap_err();
        assert!(matches!(err, SignError::Malformed(_)), "{bad:?}: {err}");
        assert!(
            err.to_string()
                .starts_with("signature is not a minisign signature")
        );
    }
    // trusted comment changed: the global signature no longer matches
    let mut lines: Vec<String> = sig.lines().map(String::from).collect();
    lines[2] = "trusted comment: version 999".into();
    let err = verify_config(&pk, &text, &lines.join("\n"), None).unwrap_err();
    assert!(matches!(err, SignError::Mismatch), "{err}");
    // bad public key
    let err = verify(&"x".repeat(56), text.as_bytes(), &sig).unwrap_err();
    assert!(matches!(err, SignError::Key(_)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn good_signature_on_invalid_config_refused() {
    let dir = tmp("invalid");
    let pk = sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
    let sk = std::fs::read_to_string(dir.join("k.key")).unwrap();
    let text = "version = 2\nsample_rate = 3.0\n";
    let sig = sign::sign_bytes(&sk, text.as_bytes()).unwrap();
    let err = verify_config(&pk, text, &sig, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signed config is invalid: config.toml:2: sample_rate 3 is not in [0, 1]"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn keygen_sign_and_rollback_with_own_keys() {
    let dir = tmp("rollback");
    let pk = sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
    let signed = |version: u64| {
        let text = format!("version = {version}\nsample_rate = 0.1\n");
        let path = dir.join(format!("v{version}.toml"));
        std::fs::write(&path, &text).unwrap();
        let sig_path = sign::sign(dir.join("k.key"), &path).unwrap();
        (text, std::fs::read_to_string(sig_path).unwrap())
    };
    let (t5, s5) = signed(5);
    let (t3, s3) = signed(3);
    let accepted = verify_config(&pk, &t5, &s5, None).unwrap().version;
    let err = verify_config(&pk, &t3, &s3, Some(accepted)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config version 3 is older than version 5 already accepted"
    );
    // keygen never overwrites a key
    assert!(sign::keygen(dir.join("k.pub"), dir.join("x.key")).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn filter_with_published_config() {
    let (_, text, _) = published();
    let cfg = CollectionConfig::parse(&text, "config.toml").unwrap();
    let mut p = ProgramReport::new("instrumented", "0.1.0", "linux", "x86_64");
    p.counters.insert("instrumented/inc".into(), 5); // rate 0.1
    p.counters.insert("instrumented/flag:verbose".into(), 2); // rate 0.05
    p.counters.insert("instrumented/undeclared".into(), 1);
    let deep = format!("instrumented/stack{}", "\nf:+1".repeat(9));
    let ok = format!("instrumented/stack{}", "\nf:+1".repeat(8));
    p.stacks.insert(deep.clone(), 1);
    p.stacks.insert(ok.clone(), 1);
    let mut old = p.clone();
    old.version = "0.0.9".into();
    let report = |x: f64, programs: Vec<ProgramReport>| Report {
        week: "2026-11-16".into(),
        x,
        config: 0,
        programs,
    };

    let f = cfg.filter(&report(0.01, vec![p.clone(), old.clone()]));
    assert_eq!(f.config, cfg.version);
    assert_eq!(f.programs.len(), 1, "version 0.0.9 is not accepted");
    let q = &f.programs[0];
    assert_eq!(
        q.counters.keys().collect::<Vec<_>>(),
        ["instrumented/flag:verbose", "instrumented/inc"]
    );
    assert_eq!(q.stacks.keys().collect::<Vec<_>>(), [&ok]);

    let f = cfg.filter(&report(0.07, vec![p.clone()]));
    assert_eq!(
        f.programs[0].counters.keys().collect::<Vec<_>>(),
        ["instrumented/inc"]
    );
    assert!(f.programs[0].stacks.is_empty());

    assert!(cfg.filter(&report(0.5, vec![p])).programs.is_empty());
}

#[test]
fn minisign_tool_signature_verifies_with_ours() {
    let dir = tmp("mtool");
    let (pub_path, sec_path) = (dir.join("m.pub"), dir.join("m.key"));
    run_ok(
        minisign()
            .args(["-G", "-W", "-p"])
            .arg(&pub_path)
            .arg("-s")
            .arg(&sec_path),
    );
    let data = dir.join("config.toml");
    std::fs::write(&data, "version = 9\nsample_rate = 0.1\n").unwrap();
    run_ok(
        minisign()
            .args(["-S", "-s"])
            .arg(&sec_path)
            .arg("-m")
            .arg(&data)
            .args(["-t", "signed by the minisign tool"]),
    );
    let pk = std::fs::read_to_string(&pub_path).unwrap();
    let text = std::fs::read_to_string(&data).unwrap();
    let sig = std::fs::read_to_string(dir.join("config.toml.minisig")).unwrap();
    assert_eq!(verify_config(&pk, &text, &sig, Some(9)).unwrap().version, 9);
    // the bare base64 line of the key works too
    verify(pk.lines().nth(1).unwrap(), text.as_bytes(), &sig).unwrap();
    // our sign accepts a key made by the tool (unencrypted, -W)
    let ours = sign::sign_bytes(&std::fs::read_to_string(&sec_path).unwrap(), b"x").unwrap();
    verify(&pk, b"x", &ours).unwrap();
    // tampering is caught on tool signatures too
    assert!(matches!(
        verify(&pk, b"version = 10\n", &sig),
        Err(SignError::Mismatch)
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn our_signature_verifies_with_minisign_tool() {
    let dir = tmp("ours");
    sign::keygen(dir.join("k.pub"), dir.join("k.key")).unwrap();
    let data = dir.join("config.toml");
    std::fs::write(&data, "version = 1\nsample_rate = 0.1\n").unwrap();
    sign::sign(dir.join("k.key"), &data).unwrap();
    let out = run_ok(
        minisign()
            .args(["-V", "-p"])
            .arg(dir.join("k.pub"))
            .arg("-m")
            .arg(&data),
    );
    assert!(out.contains("verified"), "{out}");
    // and the tool rejects a tampered file
    std::fs::write(&data, "version = 1\nsample_rate = 0.9\n").unwrap();
    let status = minisign()
        .args(["-V", "-q", "-p"])
        .arg(dir.join("k.pub"))
        .arg("-m")
        .arg(&data)
        .status()
        .unwrap();
    assert!(!status.success());
    // the tool can sign with a key made by our keygen
    run_ok(
        minisign()
            .args(["-S", "-s"])
            .arg(dir.join("k.key"))
            .arg("-m")
            .arg(&data),
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn published_signature_verifies_with_minisign_tool() {
    let root = root();
    let out = run_ok(
        minisign()
            .args(["-V", "-p"])
            .arg(root.join("config/clearcount.pub"))
            .arg("-m")
            .arg(Path::new(&root).join("config/config.toml")),
    );
    assert!(out.contains("verified"), "{out}");
}
