//! Cross-check against an independent implementation: Go's
//! `golang.org/x/mod/sumdb/tlog` (RFC 6962 tree hashes, inclusion and
//! consistency proofs) and `golang.org/x/mod/sumdb/note` (signed notes,
//! keys), from Debian's packages:
//!
//! ```sh
//! apt-get install -y --no-install-recommends golang-go golang-golang-x-mod-dev
//! ```
//!
//! The test builds `tests/go/crosscheck.go` (GOPATH mode, GOPATH
//! `/usr/share/gocode`), sends it commands and compares, byte for byte, in
//! both directions: tree hashes and every proof of every tree up to 70
//! leaves (the first 8 are the RFC 6962 test leaves), each side checking the
//! other's proofs; notes signed by one side opened by the other; the same
//! key signing the same checkpoint into the same bytes; keys made by Go
//! read by clearcount; `cosignature/v1` through a Go verifier and signer
//! written from the C2SP spec and driven by x/mod's note.Open/note.Sign.
//!
//! Without `go` or the package, each test fails with the line that
//! installs them (`.ci/run` installs both).
#![cfg(feature = "tlog-sign")]

use clearcount_protocol::tlog::checkpoint::Checkpoint;
use clearcount_protocol::tlog::merkle::{self, Hash};
use clearcount_protocol::tlog::note::{KeyType, Note, SignerKey, VerifierKey};
use clearcount_protocol::tlog::{base64_decode, base64_encode};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GOPATH: &str = "/usr/share/gocode";
const LEAVES: usize = 70;
const T: u64 = 1_767_225_600;

/// The Go program, built once for all tests. Fails with the line that
/// installs them when Go or x/mod is missing.
fn build() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(build_once)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build_once() -> Result<PathBuf, String> {
    let apt = "apt-get install -y --no-install-recommends golang-go golang-golang-x-mod-dev";
    if let Err(e) = Command::new("go").arg("version").output() {
        return Err(format!(
            "this cross-check needs the `go` command ({e}): {apt}"
        ));
    }
    let pkg = Path::new(GOPATH).join("src/golang.org/x/mod/sumdb");
    if !pkg.join("tlog/tlog.go").is_file() || !pkg.join("note/note.go").is_file() {
        return Err(format!(
            "this cross-check needs golang.org/x/mod/sumdb in {GOPATH}: {apt}"
        ));
    }
    // Under the target directory, not the system's temporary one: cleaned
    // with it, and Go's build cache there makes the next run's build
    // instant. Each run builds under its own name, then renames it into
    // place (atomic; a run still using the old file keeps it open).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tlog-go");
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/crosscheck.go");
    let prog = dir.join("crosscheck");
    let built = dir.join(format!("crosscheck.{}", std::process::id()));
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&built)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("cache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building the Go cross-check failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&built, &prog).unwrap();
    Ok(prog)
}

/// Runs the program on `commands`, one answer line per command.
fn run(prog: &Path, commands: &[String]) -> Vec<String> {
    let mut child = Command::new(prog)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = commands.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "the Go cross-check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), commands.len(), "one answer per command");
    lines
}

fn leaf_data(i: usize) -> Vec<u8> {
    const CT: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    match CT.get(i) {
        Some(d) => d.to_vec(),
        None => format!("version = {i}\nsample_rate = 0.{}\n", i % 10)
            .repeat(i % 4 + 1)
            .into_bytes(),
    }
}

fn list(hs: &[Hash]) -> String {
    if hs.is_empty() {
        return "-".into();
    }
    hs.iter()
        .map(|h| base64_encode(h))
        .collect::<Vec<_>>()
        .join(",")
}

fn unlist(s: &str) -> Vec<Hash> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',')
        .map(|h| base64_decode(h).unwrap().try_into().unwrap())
        .collect()
}

#[test]
fn merkle_trees_and_proofs_agree_with_go_x_mod_sumdb_tlog() {
    let prog = build();
    let data: Vec<Vec<u8>> = (0..LEAVES).map(leaf_data).collect();
    let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
    let mut cmds = Vec::new();
    let mut want = Vec::new();
    for (i, d) in data.iter().enumerate() {
        let b = if d.is_empty() {
            "-".to_string()
        } else {
            base64_encode(d)
        };
        cmds.push(format!("leaf {b}"));
        want.push(format!("leaf {i} {}", base64_encode(&leaves[i])));
    }
    for n in 1..=LEAVES {
        cmds.push(format!("root {n}"));
        want.push(format!(
            "root {n} {}",
            base64_encode(&merkle::root(&leaves[..n]))
        ));
    }
    for t in 1..=LEAVES {
        for i in 0..t {
            let p = list(&merkle::inclusion_proof(&leaves[..t], i as u64));
            cmds.push(format!("incl {t} {i} {p}"));
            want.push(format!("incl {t} {i} {p} true"));
        }
        for m in 1..=t {
            let p = list(&merkle::consistency_proof(&leaves[..t], m as u64));
            cmds.push(format!("cons {t} {m} {p}"));
            want.push(format!("cons {t} {m} {p} true"));
        }
    }
    let got = run(&prog, &cmds);
    let mut checked = 0;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "Go and clearcount differ");
        // And clearcount verifies Go's proofs.
        let f: Vec<&str> = g.split(' ').collect();
        if f[0] == "incl" || f[0] == "cons" {
            let (t, x): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
            let proof = unlist(f[3]);
            let root = merkle::root(&leaves[..t]);
            if f[0] == "incl" {
                merkle::verify_inclusion(&leaves[x], x as u64, t as u64, &proof, &root).unwrap();
            } else {
                let old = merkle::root(&leaves[..x]);
                merkle::verify_consistency(x as u64, &old, t as u64, &root, &proof).unwrap();
            }
            checked += 1;
        }
    }
    eprintln!(
        "{} commands agree with Go; {checked} Go proofs verified by clearcount, as many clearcount proofs by Go",
        got.len()
    );
}

#[test]
fn signed_notes_and_cosignatures_agree_with_go_x_mod_sumdb_note() {
    let prog = build();
    let log = SignerKey::from_seed("config.example.org/log", KeyType::Ed25519, [21; 32]).unwrap();
    let wit = SignerKey::from_seed("witness.example/w1", KeyType::CosignatureV1, [22; 32]).unwrap();
    let leaves: Vec<Hash> = (0..LEAVES)
        .map(|i| merkle::leaf_hash(&leaf_data(i)))
        .collect();
    let cp = Checkpoint::new(
        "config.example.org/log",
        LEAVES as u64,
        merkle::root(&leaves),
    );
    let text = cp.to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(log.sign(&text).unwrap());
    note.add_signature(wit.cosign(&text, T).unwrap());
    let ours = note.to_text();
    let mut tampered = ours.replacen(&format!("\n{LEAVES}\n"), &format!("\n{}\n", LEAVES + 1), 1);
    assert_ne!(tampered, ours);
    let b = |s: &str| base64_encode(s.as_bytes());
    let (lv, wv) = (log.verifier().to_string(), wit.verifier().to_string());
    let mut cmds = vec![
        format!("open {} {lv} {wv}", b(&ours)),
        format!("sign {} {} {} {T}", b(&text), log.to_skey(), wit.to_skey()),
        format!("open {} {lv} {wv}", b(&tampered)),
        "keygen go.example/key".to_string(),
    ];
    let got = run(&prog, &cmds);
    // Go opens clearcount's note: both signatures verified.
    assert_eq!(
        got[0],
        format!(
            "open ok {} config.example.org/log/{:08x},witness.example/w1/{:08x}",
            b(&text),
            log.verifier().id(),
            wit.verifier().id()
        )
    );
    // Go signs with clearcount's keys: the same bytes.
    assert_eq!(got[1], format!("sign {}", b(&ours)));
    // Go refuses the tampered note; so does clearcount.
    assert!(got[2].starts_with("open error"), "{}", got[2]);
    let n = Note::parse(&tampered).unwrap();
    assert!(n.verify(&[log.verifier(), wit.verifier()]).is_err());
    // A key made by Go: clearcount reads skey and vkey, they agree.
    let f: Vec<&str> = got[3].split(' ').collect();
    let (go_skey, go_vkey) = (f[1], f[2]);
    let gs = SignerKey::parse(go_skey).unwrap();
    let gv = VerifierKey::parse(go_vkey).unwrap();
    assert_eq!(gs.verifier(), &gv);
    assert_eq!(gs.to_skey(), go_skey);
    assert_eq!(gv.to_string(), go_vkey);
    // Go signs with its key; clearcount verifies and signs identically.
    cmds = vec![format!("sign {} {go_skey}", b(&text))];
    let got = run(&prog, &cmds);
    let go_note =
        String::from_utf8(base64_decode(got[0].strip_prefix("sign ").unwrap()).unwrap()).unwrap();
    let parsed = Note::parse(&go_note).unwrap();
    assert_eq!(parsed.verify(&[&gv]).unwrap().len(), 1);
    let mut mine = Note::new(&text).unwrap();
    mine.add_signature(gs.sign(&text).unwrap());
    assert_eq!(mine.to_text(), go_note);
    // An unknown key only: Go says unverified; clearcount finds no known
    // signature (the policy then refuses it).
    tampered = mine.to_text();
    let got = run(&prog, &[format!("open {} {lv}", b(&tampered))]);
    assert!(got[0].starts_with("open error"), "{}", got[0]);
    assert!(
        Note::parse(&tampered)
            .unwrap()
            .verify(&[log.verifier()])
            .unwrap()
            .is_empty()
    );
    eprintln!("signed notes, keys and cosignatures agree with Go's x/mod/sumdb/note");
}
