//! `clearcount config …` through the binary: `check` against the declared
//! counters, and `keygen`, `sign`, `verify` with their flags
//! (`--public-key FILE`, `--secret-key FILE`), interoperating with the
//! standard `minisign` tool both ways.
//!
//! The interop tests need the `minisign` binary (Debian package `minisign`);
//! they fail, with a message saying so, when it is missing. The library
//! side (signatures, rollback, filtering) is tested in
//! `crates/clearcount-protocol/tests/config_sign.rs`.

mod common;

use common::{TempDir, clearcount, root, run_err, run_ok, text};
use std::path::Path;
use std::process::Command;

fn minisign() -> Command {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    assert!(
        found,
        "the `minisign` command is not installed, so the interoperability tests cannot run; \
         install it (Debian/Ubuntu: apt-get install -y minisign) — these tests must not be skipped"
    );
    Command::new("minisign")
}

#[test]
fn config_check_command() {
    let out = run_ok(
        clearcount()
            .args(["config", "check", "--config"])
            .arg(root().join("config/config.toml"))
            .arg("--counters")
            .arg(root().join("config/counters")),
    );
    assert!(out.contains(": ok (checked against "), "{out}");
    // the defaults are the README's layout (config.toml and counters/ side
    // by side), which the published config/ has too
    let out = run_ok(
        clearcount()
            .current_dir(root().join("config"))
            .args(["config", "check"]),
    );
    assert_eq!(out.trim_end(), "config.toml: ok (checked against counters)");
    // an undeclared counter and a wrong depth are both reported
    let dir = TempDir::new("check");
    let published = std::fs::read_to_string(root().join("config/config.toml")).unwrap();
    let bad = published.replacen("depth = 8", "depth = 9", 1)
        + "\n[[program.counter]]\nname = \"instrumented/secret\"\nrate = 0.1\n";
    assert_ne!(bad, published);
    let config = dir.0.join("config.toml");
    std::fs::write(&config, bad).unwrap();
    let mut cmd = clearcount();
    cmd.args(["config", "check", "--config"])
        .arg(&config)
        .arg("--counters")
        .arg(root().join("config/counters"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.trim_end().ends_with("2 problems"), "{err}");
    // each problem on a line of its own, naming the file
    let problems = text(&out.stdout);
    assert_eq!(problems.lines().count(), 2, "{problems}");
    assert!(problems.contains("instrumented/secret"), "{problems}");
    assert!(
        problems
            .lines()
            .all(|l| l.starts_with(&config.display().to_string())),
        "{problems}"
    );
}

/// `keygen`, `sign` and `verify` with the command's flags, checked by the
/// minisign tool.
#[test]
fn keygen_sign_verify_commands_interoperate_with_minisign_tool() {
    let dir = TempDir::new("cmds");
    let (public, secret) = (dir.0.join("k.pub"), dir.0.join("k.key"));
    let out = run_ok(
        clearcount()
            .args(["config", "keygen", "--public-key"])
            .arg(&public)
            .arg("--secret-key")
            .arg(&secret),
    );
    assert!(out.contains("NOT encrypted"), "{out}");
    assert!(public.is_file() && secret.is_file());
    // keygen never overwrites a key
    let before = std::fs::read(&secret).unwrap();
    run_err(
        clearcount()
            .args(["config", "keygen", "--public-key"])
            .arg(dir.0.join("other.pub"))
            .arg("--secret-key")
            .arg(&secret),
    );
    assert_eq!(std::fs::read(&secret).unwrap(), before);

    let config = dir.0.join("config.toml");
    std::fs::write(&config, "version = 7\nsample_rate = 0.1\n").unwrap();
    let out = run_ok(
        clearcount()
            .args(["config", "sign", "--secret-key"])
            .arg(&secret)
            .arg(&config),
    );
    assert!(out.contains("(version 7)"), "{out}");
    let sig = dir.0.join("config.toml.minisig");
    assert!(sig.is_file());
    // the tool verifies our signature with our public key
    let out = run_ok(
        minisign()
            .args(["-V", "-p"])
            .arg(&public)
            .arg("-m")
            .arg(&config),
    );
    assert!(out.contains("verified"), "{out}");
    // and so does `config verify`
    let out = run_ok(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg(&config),
    );
    assert!(out.contains("good signature, config version 7"), "{out}");
    // --signature names another signature file
    let moved = dir.0.join("elsewhere.minisig");
    std::fs::rename(&sig, &moved).unwrap();
    let err = run_err(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg(&config),
    );
    assert!(err.contains("signature is missing"), "{err}");
    run_ok(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg("--signature")
            .arg(&moved)
            .arg(&config),
    );
    std::fs::rename(&moved, &sig).unwrap();

    // a tampered config: refused by both
    std::fs::write(&config, "version = 7\nsample_rate = 0.9\n").unwrap();
    let err = run_err(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg(&config),
    );
    assert!(err.contains("signature does not match"), "{err}");
    let status = minisign()
        .args(["-V", "-q", "-p"])
        .arg(&public)
        .arg("-m")
        .arg(&config)
        .status()
        .unwrap();
    assert!(!status.success());

    // an invalid config is not signed
    let invalid = dir.0.join("invalid.toml");
    std::fs::write(&invalid, "version = 2\nsample_rate = 3.0\n").unwrap();
    let err = run_err(
        clearcount()
            .args(["config", "sign", "--secret-key"])
            .arg(&secret)
            .arg(&invalid),
    );
    assert!(err.contains("not signing an invalid config"), "{err}");
    assert!(!dir.0.join("invalid.toml.minisig").exists());
}

/// A key pair and a signature made by the minisign tool pass `config
/// verify`; a key made by `config keygen` signs with the tool.
#[test]
fn minisign_tool_keys_and_signatures_work_with_the_commands() {
    let dir = TempDir::new("tool");
    let (public, secret) = (dir.0.join("m.pub"), dir.0.join("m.key"));
    run_ok(
        minisign()
            .args(["-G", "-W", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret),
    );
    let config = dir.0.join("config.toml");
    std::fs::write(&config, "version = 9\nsample_rate = 0.1\n").unwrap();
    run_ok(
        minisign()
            .args(["-S", "-s"])
            .arg(&secret)
            .arg("-m")
            .arg(&config)
            .args(["-t", "signed by the minisign tool"]),
    );
    let out = run_ok(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg(&config),
    );
    assert!(out.contains("good signature, config version 9"), "{out}");
    // the bare base64 line of the key works as --public-key too
    let line = std::fs::read_to_string(&public).unwrap();
    let b64 = line.lines().nth(1).unwrap().trim().to_owned();
    run_ok(
        clearcount()
            .args(["config", "verify", "--public-key", &b64])
            .arg(&config),
    );
    // `config sign` accepts a secret key made by the tool (unencrypted, -W)
    std::fs::remove_file(dir.0.join("config.toml.minisig")).unwrap();
    run_ok(
        clearcount()
            .args(["config", "sign", "--secret-key"])
            .arg(&secret)
            .arg(&config),
    );
    run_ok(
        minisign()
            .args(["-V", "-p"])
            .arg(&public)
            .arg("-m")
            .arg(&config),
    );
    // the tool signs with a key made by `config keygen`
    let (ours_pub, ours_key) = (dir.0.join("k.pub"), dir.0.join("k.key"));
    run_ok(
        clearcount()
            .args(["config", "keygen", "--public-key"])
            .arg(&ours_pub)
            .arg("--secret-key")
            .arg(&ours_key),
    );
    let other = dir.0.join("other.toml");
    std::fs::write(&other, "version = 3\nsample_rate = 0.1\n").unwrap();
    run_ok(
        minisign()
            .args(["-S", "-s"])
            .arg(&ours_key)
            .arg("-m")
            .arg(&other),
    );
    run_ok(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&ours_pub)
            .arg(&other),
    );
    // signed by another key: refused
    let err = run_err(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(&public)
            .arg(&other),
    );
    assert!(err.contains("another key"), "{err}");
}

#[test]
fn published_config_verifies_with_the_command() {
    let out = run_ok(
        clearcount()
            .args(["config", "verify", "--public-key"])
            .arg(root().join("config/clearcount.pub"))
            .arg(root().join("config/config.toml")),
    );
    assert!(out.contains("good signature"), "{out}");
    // its base64 line (which holds a '/' and a '+') as --public-key
    let key = std::fs::read_to_string(root().join("config/clearcount.pub")).unwrap();
    let b64 = key.lines().nth(1).unwrap().trim();
    assert!(b64.contains('/'), "{b64}");
    run_ok(
        clearcount()
            .args(["config", "verify", "--public-key", b64])
            .arg(root().join("config/config.toml")),
    );
    // no default key: a layout has none that fits every toolchain, so the
    // key must be named (a usage error, exit 2, otherwise)
    let out = clearcount()
        .current_dir(root().join("config"))
        .args(["config", "verify", "config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--public-key"), "{out:?}");
    let err = run_err(
        clearcount()
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .args(["config", "verify", "--public-key", "clearcount.pub"])
            .arg(root().join("config/config.toml")),
    );
    assert!(err.contains("public key file not found"), "{err}");
}
