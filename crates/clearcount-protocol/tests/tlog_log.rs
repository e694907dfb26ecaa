//! The maintainer's side: a log in a directory (publish, history, bundles),
//! a witness's state directory, and the audit of a whole log.
//!
//! `cargo test -p clearcount-protocol --all-features --test tlog_log`
#![cfg(feature = "tlog-sign")]

use clearcount_protocol::tlog::audit::audit;
use clearcount_protocol::tlog::checkpoint::Checkpoint;
use clearcount_protocol::tlog::client::{ClientPolicy, verify_config};
use clearcount_protocol::tlog::log::{Log, LogDir, LogError};
use clearcount_protocol::tlog::merkle;
use clearcount_protocol::tlog::note::{KeyType, Note, SignerKey};
use clearcount_protocol::tlog::policy::Policy;
use clearcount_protocol::tlog::witness::{AddCheckpoint, Witness, WitnessDir};
use std::path::PathBuf;

const ORIGIN: &str = "config.example.org/log";

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cc-tlog-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(v: u64) -> Vec<u8> {
    format!("version = {v}\nsample_rate = 0.1\n").into_bytes()
}

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [1; 32]).unwrap()
}

#[test]
fn publish_into_a_directory_and_serve_bundles() {
    let dir = tmp("dir");
    let key = log_key();
    let ld = LogDir::init(&dir, key.verifier()).unwrap();
    assert!(LogDir::init(&dir, key.verifier()).is_err(), "a second init");
    assert!(ld.checkpoint().unwrap().is_none());
    for v in [1, 2, 5] {
        let p = ld.publish(&config(v), &key).unwrap();
        assert_eq!(p.version, v);
        assert_eq!(p.checkpoint.checkpoint.size, p.index + 1);
    }
    // Refusals: a version not higher, an invalid config, another key.
    let e = ld.publish(&config(5), &key).unwrap_err();
    assert!(
        matches!(
            e,
            LogError::VersionNotHigher {
                version: 5,
                last: 5
            }
        ),
        "{e}"
    );
    assert!(ld.publish(b"version = 9\nrate = 1\n", &key).is_err());
    let other = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [2; 32]).unwrap();
    assert!(matches!(
        ld.publish(&config(9), &other),
        Err(LogError::WrongKey { .. })
    ));
    // The layout.
    let names = |d: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("entries"), ["0", "1", "2"]);
    assert_eq!(names("checkpoints"), ["1", "2", "3"]);
    assert_eq!(std::fs::read(dir.join("entries/2")).unwrap(), config(5));
    assert_eq!(
        std::fs::read_to_string(dir.join("log.vkey")).unwrap(),
        format!("{}\n", key.verifier())
    );
    assert_eq!(ld.checkpoint_sizes().unwrap(), [1, 2, 3]);
    let latest = ld.checkpoint().unwrap().unwrap();
    assert_eq!(latest, ld.checkpoint_of_size(3).unwrap());

    // A witness cosigns; its line is added to the stored checkpoint.
    let wk = SignerKey::from_seed("w.example/w", KeyType::CosignatureV1, [3; 32]).unwrap();
    let w = Witness::new(wk.clone(), vec![key.verifier().clone()]).unwrap();
    let req = AddCheckpoint {
        old: 0,
        proof: vec![],
        checkpoint: latest.to_text(),
    };
    let done = w
        .add_checkpoint(None, &AddCheckpoint::parse(&req.to_text()).unwrap(), 1000)
        .unwrap();
    let cosigned = ld.add_cosignatures(3, &done.response).unwrap();
    assert_eq!(cosigned.note.signatures.len(), 2);
    assert_eq!(ld.checkpoint().unwrap().unwrap(), cosigned);

    // The server's bundle verifies on a client requiring the witness.
    let policy = ClientPolicy::new(
        Policy::new(key.verifier().clone(), vec![wk.verifier().clone()], 1).unwrap(),
    );
    let bundle = ld.bundle(&[1]).unwrap();
    let cfg = String::from_utf8(config(5)).unwrap();
    let a = verify_config(&policy, None, &cfg, &bundle, 1000).unwrap();
    assert_eq!(a.config.version, 5);
    assert_eq!(a.cosigners, [("w.example/w".to_string(), 1000)]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_witness_keeps_one_checkpoint_per_log_in_a_directory() {
    let dir = tmp("witness");
    let wd = WitnessDir::open(&dir).unwrap();
    let key = log_key();
    let mut l = Log::new(ORIGIN);
    l.append(config(1)).unwrap();
    let c = l.checkpoint();
    assert!(wd.latest(ORIGIN).unwrap().is_none());
    wd.store(&c).unwrap();
    assert_eq!(wd.latest(ORIGIN).unwrap().unwrap(), c);
    assert!(dir.join("config.example.org%2Flog").is_file());
    // Unknown log: 404. Not signed by the log: 403. Old size too big: 400.
    let w = Witness::new(
        SignerKey::from_seed("w.example/w", KeyType::CosignatureV1, [3; 32]).unwrap(),
        vec![key.verifier().clone()],
    )
    .unwrap();
    let other = SignerKey::from_seed("other.example/log", KeyType::Ed25519, [4; 32]).unwrap();
    let mut ol = Log::new("other.example/log");
    ol.append(config(1)).unwrap();
    let req = |old, checkpoint: String| AddCheckpoint {
        old,
        proof: vec![],
        checkpoint,
    };
    let e = w.add_checkpoint(
        None,
        &req(0, ol.sign_checkpoint(&other).unwrap().to_text()),
        1,
    );
    assert_eq!(e.unwrap_err().status(), 404);
    let impostor = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [5; 32]).unwrap();
    let e = w.add_checkpoint(
        None,
        &req(0, l.sign_checkpoint(&impostor).unwrap().to_text()),
        1,
    );
    assert_eq!(e.unwrap_err().status(), 403);
    let e = w.add_checkpoint(None, &req(2, l.sign_checkpoint(&key).unwrap().to_text()), 1);
    assert_eq!(e.unwrap_err().status(), 400);
    let e = w
        .add_checkpoint(
            Some(&c),
            &req(0, l.sign_checkpoint(&key).unwrap().to_text()),
            1,
        )
        .unwrap_err();
    assert_eq!((e.status(), e.body()), (409, "1\n".to_string()));
    // A witness key must be a cosignature key.
    assert!(Witness::new(key.clone(), vec![]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A checkpoint over any entries (no version rule), signed with `key`: what
/// a misbehaving log holder can make.
fn sign_any(key: &SignerKey, entries: &[Vec<u8>]) -> String {
    let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let c = Checkpoint::new(ORIGIN, leaves.len() as u64, merkle::root(&leaves));
    let mut note = Note::new(&c.to_text()).unwrap();
    note.add_signature(key.sign(&note.text).unwrap());
    note.to_text()
}

#[test]
fn audit_recomputes_the_history_and_catches_tampering() {
    let key = log_key();
    let wk = SignerKey::from_seed("w.example/w", KeyType::CosignatureV1, [3; 32]).unwrap();
    let policy = Policy::new(key.verifier().clone(), vec![wk.verifier().clone()], 1).unwrap();
    let mut l = Log::new(ORIGIN);
    let mut history = Vec::new();
    for (i, v) in [1u64, 2, 4, 7].into_iter().enumerate() {
        l.append(config(v)).unwrap();
        let mut s = l.sign_checkpoint(&key).unwrap();
        if i % 2 == 1 {
            s.note
                .add_signature(wk.cosign(&s.note.text, 100 + i as u64).unwrap());
        }
        history.push(s.to_text());
    }
    let refs: Vec<&str> = history.iter().map(|s| s.as_str()).collect();
    let report = audit(&policy, l.entries(), &refs).unwrap();
    let versions: Vec<u64> = report.history.iter().map(|h| h.version).collect();
    assert_eq!(versions, [1, 2, 4, 7]);
    assert_eq!(report.history[3].leaf_hash, merkle::leaf_hash(&config(7)));
    assert_eq!(report.history[3].sha256, merkle::sha256(&config(7)));
    assert_eq!(report.history[1].witnessed, Some(101));
    assert_eq!(report.history[0].witnessed, None);
    assert_eq!(report.checkpoints.len(), 4);

    let fails = |entries: &[Vec<u8>], cps: &[&str], want: &str| {
        let e = audit(&policy, entries, cps).unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} does not say {want:?}");
        assert!(!e.contains('\n'));
    };
    // An entry changed after the fact.
    let mut tampered = l.entries().to_vec();
    tampered[1] = b"version = 2\nsample_rate = 1.0\n".to_vec();
    fails(&tampered, &refs, "history was rewritten");
    // Entries missing (a truncated log).
    fails(&l.entries()[..3], &refs, "beyond the 3 entries");
    // Entries beyond every checkpoint.
    fails(l.entries(), &refs[..3], "in no signed checkpoint");
    // A checkpoint from another branch (a split view someone kept).
    let mut b = Log::new(ORIGIN);
    for v in [1u64, 2, 5] {
        b.append(config(v)).unwrap();
    }
    let branch = b.sign_checkpoint(&key).unwrap().to_text();
    let mut with_branch = refs.clone();
    with_branch.push(&branch);
    fails(
        l.entries(),
        &with_branch,
        "history was rewritten or the log shows two histories",
    );
    // Versions not increasing, in a history the log key signed (entries
    // are read as configs only once a signed root covers them: unsigned
    // swapped entries fail the root check above first).
    let mut down = l.entries().to_vec();
    down.swap(2, 3);
    fails(&down, &refs, "history was rewritten");
    let signed_down = sign_any(&key, &down);
    fails(&down, &[&signed_down], "versions must increase");
    // Hostile entries the log key signed: too deep, too large, too many.
    let deep = format!("{} = 1\n", vec!["a"; 150_000].join("."));
    let deep_header = format!("[{}]\n", vec!["a"; 150_000].join("."));
    for hostile in [deep, deep_header] {
        let e = vec![hostile.into_bytes()];
        fails(&e, &[&sign_any(&key, &e)], "nested too deep");
    }
    let huge = vec![vec![b'#'; (1 << 20) + 1]];
    fails(&huge, &[&sign_any(&key, &huge)], "more than the 1 MiB");
    let many = vec![config(1); 100_001];
    fails(&many, &[], "more than 100000 entries");
    // A checkpoint signed by another key.
    let impostor = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [5; 32]).unwrap();
    let forged = l.sign_checkpoint(&impostor).unwrap().to_text();
    fails(l.entries(), &[&forged], "not signed by the log key");
}
