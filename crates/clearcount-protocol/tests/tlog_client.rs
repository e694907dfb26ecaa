//! The client's rules: what a client accepts, and each refusal with its
//! one-line reason (split view, rewritten history, truncated log, smaller
//! tree, bad inclusion proof, replayed old checkpoint, config not in the
//! log or not the latest, same version with other bytes, too few
//! cosignatures), plus the witness that makes a split view impossible to
//! cosign.
//!
//! `cargo test -p clearcount-protocol --all-features --test tlog_client`
#![cfg(feature = "tlog-sign")]

use clearcount_protocol::tlog::bundle::{Bundle, Consistency, TlogProof};
use clearcount_protocol::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use clearcount_protocol::tlog::client::{ClientPolicy, Kept, Refusal, verify_config};
use clearcount_protocol::tlog::log::{Log, LogError, add_signatures};
use clearcount_protocol::tlog::merkle;
use clearcount_protocol::tlog::note::{KeyType, Note, SignerKey};
use clearcount_protocol::tlog::policy::Policy;
use clearcount_protocol::tlog::witness::{AddCheckpoint, Witness, WitnessError};

const ORIGIN: &str = "config.example.org/log";
const DAY: u64 = 86_400;
const T0: u64 = 1_800_000_000;

fn log_key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [1; 32]).unwrap()
}

fn witness_key(n: u8) -> SignerKey {
    SignerKey::from_seed(
        &format!("w{n}.example/witness"),
        KeyType::CosignatureV1,
        [10 + n; 32],
    )
    .unwrap()
}

fn config(v: u64) -> Vec<u8> {
    format!("version = {v}\nsample_rate = 0.1\n").into_bytes()
}

fn log_of(versions: impl IntoIterator<Item = u64>) -> Log {
    let mut l = Log::new(ORIGIN);
    for v in versions {
        l.append(config(v)).unwrap();
    }
    l
}

/// No witness needed.
fn plain_policy() -> ClientPolicy {
    ClientPolicy::new(Policy::new(log_key().verifier().clone(), vec![], 0).unwrap())
}

/// `k` of witnesses 1 and 2.
fn witnessed_policy(k: usize) -> ClientPolicy {
    ClientPolicy::new(
        Policy::new(
            log_key().verifier().clone(),
            vec![
                witness_key(1).verifier().clone(),
                witness_key(2).verifier().clone(),
            ],
            k,
        )
        .unwrap(),
    )
}

/// What a server serves for the latest entry of `l`: (config, bundle).
fn serve(l: &Log, signed: &SignedCheckpoint, olds: &[u64]) -> (String, String) {
    let config = String::from_utf8(l.entries().last().unwrap().clone()).unwrap();
    (config, l.bundle(signed, olds).unwrap().to_text())
}

/// A malicious log holder's bundle for any entries (no version rule),
/// signed with the log key; the served config is entry `index`.
fn forged(entries: &[Vec<u8>], index: usize, olds: &[u64]) -> (String, String) {
    let leaves: Vec<_> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let c = Checkpoint::new(ORIGIN, leaves.len() as u64, merkle::root(&leaves));
    let mut note = Note::new(&c.to_text()).unwrap();
    note.add_signature(log_key().sign(&note.text).unwrap());
    let b = Bundle {
        consistency: olds
            .iter()
            .map(|&old| Consistency {
                old,
                proof: merkle::consistency_proof(&leaves, old),
            })
            .collect(),
        proof: TlogProof {
            extra: None,
            index: index as u64,
            inclusion: merkle::inclusion_proof(&leaves, index as u64),
            checkpoint: SignedCheckpoint {
                checkpoint: c,
                note,
            },
        },
    };
    (
        String::from_utf8(entries[index].clone()).unwrap(),
        b.to_text(),
    )
}

/// Accepts, or panics with the reason.
fn accept(p: &ClientPolicy, kept: Option<&Kept>, served: &(String, String), now: u64) -> Kept {
    match verify_config(p, kept, &served.0, &served.1, now) {
        Ok(a) => {
            assert_eq!(a.config.version, a.kept.version);
            a.kept
        }
        Err(e) => panic!("refused: {e}"),
    }
}

/// The refusal, checked to display as one non-empty line.
fn refuse(p: &ClientPolicy, kept: Option<&Kept>, served: &(String, String), now: u64) -> Refusal {
    match verify_config(p, kept, &served.0, &served.1, now) {
        Ok(a) => panic!("accepted version {}", a.config.version),
        Err(e) => {
            let line = e.to_string();
            assert!(
                !line.is_empty() && !line.contains('\n'),
                "not one line: {line:?}"
            );
            eprintln!("refused: {line}");
            e
        }
    }
}

#[test]
fn a_client_accepts_the_latest_config_and_follows_the_log() {
    let p = plain_policy();
    let mut l = log_of(1..=5);
    let s5 = l.sign_checkpoint(&log_key()).unwrap();
    let kept = accept(&p, None, &serve(&l, &s5, &[]), T0);
    assert_eq!((kept.version, kept.checkpoint.size), (5, 5));
    // The kept state survives its text form.
    let kept = Kept::parse(&kept.to_text()).unwrap();
    // The same config again.
    assert_eq!(p.proof_query(Some(&kept)), "?old=5");
    let again = accept(&p, Some(&kept), &serve(&l, &s5, &[5]), T0);
    assert_eq!(again, kept);
    // A new version: consistent with what was kept.
    l.append(config(6)).unwrap();
    let s6 = l.sign_checkpoint(&log_key()).unwrap();
    let k6 = accept(&p, Some(&kept), &serve(&l, &s6, &[5]), T0);
    assert_eq!((k6.version, k6.checkpoint.size), (6, 6));
    // The URL names the log by its key ID (for a server serving two logs
    // during a key rotation), then the sizes.
    assert_eq!(
        p.proof_url("https://t.example.org/config.toml", Some(&k6)),
        format!(
            "https://t.example.org/config.toml.proof?log={:08x}&old=6",
            log_key().verifier().id()
        )
    );
    assert_eq!(
        p.proof_url("https://t.example.org/config.toml", None),
        format!(
            "https://t.example.org/config.toml.proof?log={:08x}",
            log_key().verifier().id()
        )
    );
}

#[test]
fn split_view_is_refused_by_a_client_that_saw_the_other_branch() {
    let p = plain_policy();
    let base = log_of(1..=5);
    let mut a = base.clone();
    a.append(config(6)).unwrap();
    let mut b = base.clone();
    b.append(b"version = 6\nsample_rate = 1.0\n".to_vec())
        .unwrap();
    let (sa, sb) = (
        a.sign_checkpoint(&log_key()).unwrap(),
        b.sign_checkpoint(&log_key()).unwrap(),
    );
    // Each branch alone looks fine to a fresh client: both are signed.
    let kept_a = accept(&p, None, &serve(&a, &sa, &[]), T0);
    accept(&p, None, &serve(&b, &sb, &[]), T0);
    // Client A is then shown branch B at the same size...
    assert!(matches!(
        refuse(&p, Some(&kept_a), &serve(&b, &sb, &[6]), T0),
        Refusal::Forked { size: 6, .. }
    ));
    // ...and at a larger size: B's history does not extend A's.
    b.append(config(7)).unwrap();
    let sb7 = b.sign_checkpoint(&log_key()).unwrap();
    assert!(matches!(
        refuse(&p, Some(&kept_a), &serve(&b, &sb7, &[6]), T0),
        Refusal::Inconsistent {
            old: 6,
            size: 7,
            ..
        }
    ));
    // A server that leaves the proof out is refused too.
    assert!(matches!(
        refuse(&p, Some(&kept_a), &serve(&b, &sb7, &[]), T0),
        Refusal::MissingConsistency { old: 6, .. }
    ));
}

#[test]
fn with_a_witness_required_the_second_branch_cannot_be_cosigned() {
    let p = witnessed_policy(1);
    let w = Witness::new(witness_key(1), vec![log_key().verifier().clone()]).unwrap();
    let base = log_of(1..=5);
    let mut a = base.clone();
    a.append(config(6)).unwrap();
    let mut b = base.clone();
    b.append(b"version = 6\nsample_rate = 1.0\n".to_vec())
        .unwrap();

    // The witness has seen the base log (size 5), then branch A.
    let s5 = base.sign_checkpoint(&log_key()).unwrap();
    let req = AddCheckpoint {
        old: 0,
        proof: vec![],
        checkpoint: s5.to_text(),
    };
    let stored = w.add_checkpoint(None, &req, T0).unwrap().latest;
    let mut sa = a.sign_checkpoint(&log_key()).unwrap();
    let req = AddCheckpoint {
        old: 5,
        proof: a.consistency_proof(5, 6).unwrap(),
        checkpoint: sa.to_text(),
    };
    let done = w.add_checkpoint(Some(&stored), &req, T0 + 10).unwrap();
    let stored = done.latest;
    add_signatures(&mut sa, &done.response).unwrap();

    // Branch B: whatever old size the log claims, the witness refuses.
    let sb = b.sign_checkpoint(&log_key()).unwrap();
    for (old, proof, status) in [
        (6, vec![], 422),                             // same size, other root
        (5, b.consistency_proof(5, 6).unwrap(), 409), // not the size it has
        (0, vec![], 409),
    ] {
        let req = AddCheckpoint {
            old,
            proof,
            checkpoint: sb.to_text(),
        };
        let e = w.add_checkpoint(Some(&stored), &req, T0 + 20).unwrap_err();
        assert_eq!(e.status(), status, "{e}");
    }
    b.append(config(7)).unwrap();
    let sb7 = b.sign_checkpoint(&log_key()).unwrap();
    let req = AddCheckpoint {
        old: 6,
        proof: b.consistency_proof(6, 7).unwrap(),
        checkpoint: sb7.to_text(),
    };
    let e = w.add_checkpoint(Some(&stored), &req, T0 + 30).unwrap_err();
    assert!(matches!(e, WitnessError::Unprocessable(_)), "{e}");

    // So every client refuses branch B, even one with no state at all,
    // and accepts branch A.
    let r = refuse(&p, None, &serve(&b, &sb, &[]), T0 + 40);
    assert!(matches!(r, Refusal::TooFewCosignatures { .. }));
    assert!(r.to_string().contains("none"));
    refuse(&p, None, &serve(&b, &sb7, &[]), T0 + 40);
    let k = accept(&p, None, &serve(&a, &sa, &[]), T0 + 40);
    assert_eq!(k.version, 6);
}

#[test]
fn rewritten_history_is_refused() {
    let p = plain_policy();
    let l = log_of(1..=5);
    let kept = accept(
        &p,
        None,
        &serve(&l, &l.sign_checkpoint(&log_key()).unwrap(), &[]),
        T0,
    );
    // The log holder changes entry 2 (same version, a higher rate) and
    // appends version 6; the new tree is signed with the log key.
    let mut entries: Vec<Vec<u8>> = (1..=6).map(config).collect();
    entries[2] = b"version = 3\nsample_rate = 1.0\n".to_vec();
    let served = forged(&entries, 5, &[5]);
    assert!(matches!(
        refuse(&p, Some(&kept), &served, T0),
        Refusal::Inconsistent {
            old: 5,
            size: 6,
            ..
        }
    ));
    // The same rewrite is refused by a client with no state but the
    // toolchain's minimum checkpoint.
    let min = l.sign_checkpoint(&log_key()).unwrap().to_text();
    let with_min = plain_policy().with_minimum(&min).unwrap();
    assert!(matches!(
        refuse(&with_min, None, &served, T0),
        Refusal::Inconsistent { old: 5, .. }
    ));
}

#[test]
fn a_truncated_log_and_a_smaller_tree_are_refused() {
    let p = plain_policy();
    let l = log_of(1..=5);
    let kept = accept(
        &p,
        None,
        &serve(&l, &l.sign_checkpoint(&log_key()).unwrap(), &[]),
        T0,
    );
    // The log is cut back to 3 entries and re-signed.
    let t = log_of(1..=3);
    let st = t.sign_checkpoint(&log_key()).unwrap();
    let r = refuse(&p, Some(&kept), &serve(&t, &st, &[5]), T0);
    assert!(
        matches!(
            r,
            Refusal::SmallerTree {
                size: 3,
                trusted: 5,
                ..
            }
        ),
        "{r}"
    );
    // Against the toolchain's minimum (state cleaned): same.
    let min = ClientPolicy::new(p.policy.clone())
        .with_minimum(&l.sign_checkpoint(&log_key()).unwrap().to_text())
        .unwrap();
    assert!(matches!(
        refuse(&min, None, &serve(&t, &st, &[5]), T0),
        Refusal::SmallerTree {
            size: 3,
            trusted: 5,
            ..
        }
    ));
    // A checkpoint for a smaller tree that is not even the log's: a forged
    // size-4 tree.
    let forged4 = forged(&(1..=4).map(config).collect::<Vec<_>>(), 3, &[]);
    assert!(matches!(
        refuse(&p, Some(&kept), &forged4, T0),
        Refusal::SmallerTree { size: 4, .. }
    ));
}

#[test]
fn a_replayed_old_checkpoint_is_refused() {
    let p = witnessed_policy(1);
    let w1 = witness_key(1);
    let old = log_of(1..=4);
    let mut s4 = old.sign_checkpoint(&log_key()).unwrap();
    s4.note.add_signature(w1.cosign(&s4.note.text, T0).unwrap());
    let new = log_of(1..=5);
    let mut s5 = new.sign_checkpoint(&log_key()).unwrap();
    s5.note
        .add_signature(w1.cosign(&s5.note.text, T0 + 3 * DAY).unwrap());
    let kept = accept(&p, None, &serve(&new, &s5, &[]), T0 + 3 * DAY);
    // Replayed to a client that saw size 5: smaller tree.
    let replay = serve(&old, &s4, &[5]);
    assert!(matches!(
        refuse(&p, Some(&kept), &replay, T0 + 4 * DAY),
        Refusal::SmallerTree {
            size: 4,
            trusted: 5,
            ..
        }
    ));
    // Replayed to a client whose state was cleaned: with a maximum
    // cosignature age (witnesses re-cosign the current checkpoint every
    // day), the old checkpoint's cosignatures are too old.
    let fresh = witnessed_policy(1).with_max_age(7 * DAY);
    let r = refuse(&fresh, None, &replay, T0 + 10 * DAY);
    assert!(matches!(r, Refusal::Stale { size: 4, .. }), "{r}");
    let w = Witness::new(w1, vec![log_key().verifier().clone()]).unwrap();
    let req = AddCheckpoint {
        old: 0,
        proof: vec![],
        checkpoint: s5.to_text(),
    };
    let stored = w.add_checkpoint(None, &req, T0 + 9 * DAY).unwrap().latest;
    let again = AddCheckpoint {
        old: 5,
        proof: vec![],
        checkpoint: s5.to_text(),
    };
    let recosigned = w
        .add_checkpoint(Some(&stored), &again, T0 + 10 * DAY)
        .unwrap();
    add_signatures(&mut s5, &recosigned.response).unwrap();
    accept(&fresh, None, &serve(&new, &s5, &[]), T0 + 10 * DAY);
}

#[test]
fn a_bad_inclusion_proof_and_a_config_not_in_the_log_are_refused() {
    let p = plain_policy();
    let l = log_of(1..=5);
    let s = l.sign_checkpoint(&log_key()).unwrap();
    let (cfg, bundle) = serve(&l, &s, &[]);
    let mut b = Bundle::parse(&bundle).unwrap();
    b.proof.inclusion[0][3] ^= 0x20;
    let r = refuse(&p, None, &(cfg.clone(), b.to_text()), T0);
    assert!(
        matches!(r, Refusal::NotIncluded { index: 4, size: 5 }),
        "{r}"
    );
    // A proof with a hash missing.
    let mut b = Bundle::parse(&bundle).unwrap();
    b.proof.inclusion.pop();
    refuse(&p, None, &(cfg.clone(), b.to_text()), T0);
    // A config that is in no log: same version, other bytes, served with
    // the genuine proof of the latest entry.
    let other = "version = 5\nsample_rate = 1.0\n".to_string();
    assert!(matches!(
        refuse(&p, None, &(other, bundle.clone()), T0),
        Refusal::NotIncluded { .. }
    ));
}

#[test]
fn an_older_entry_of_the_log_is_not_the_current_config() {
    let p = plain_policy();
    let l = log_of(1..=5);
    let s = l.sign_checkpoint(&log_key()).unwrap();
    // Entry 3 (version 4) with a valid inclusion proof in the tree of 5.
    let mut b = l.bundle(&s, &[]).unwrap();
    b.proof.index = 3;
    b.proof.inclusion = l.inclusion_proof(3, 5).unwrap();
    let served = (String::from_utf8(config(4)).unwrap(), b.to_text());
    let r = refuse(&p, None, &served, T0);
    assert!(matches!(r, Refusal::NotLatest { index: 3, size: 5 }), "{r}");
}

#[test]
fn the_same_version_with_other_bytes_and_a_lower_version_are_refused() {
    let p = plain_policy();
    let l = log_of(1..=5);
    let kept = accept(
        &p,
        None,
        &serve(&l, &l.sign_checkpoint(&log_key()).unwrap(), &[]),
        T0,
    );
    // The maintainer's tools refuse to log it...
    let mut l2 = l.clone();
    let e = l2
        .append(b"version = 5\nsample_rate = 1.0\n".to_vec())
        .unwrap_err();
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
    assert!(l2.append(config(4)).is_err());
    // ...but a log key holder could: append-only, yet version 5 again.
    let mut entries: Vec<Vec<u8>> = (1..=5).map(config).collect();
    entries.push(b"version = 5\nsample_rate = 1.0\n".to_vec());
    let r = refuse(&p, Some(&kept), &forged(&entries, 5, &[5]), T0);
    assert!(
        matches!(r, Refusal::SameVersionOtherBytes { version: 5 }),
        "{r}"
    );
    entries[5] = config(3);
    let r = refuse(&p, Some(&kept), &forged(&entries, 5, &[5]), T0);
    assert!(
        matches!(
            r,
            Refusal::Rollback {
                version: 3,
                accepted: 5
            }
        ),
        "{r}"
    );
}

#[test]
fn too_few_cosignatures_and_bad_signatures_are_refused() {
    let p = witnessed_policy(2);
    let l = log_of(1..=3);
    let mut s = l.sign_checkpoint(&log_key()).unwrap();
    s.note
        .add_signature(witness_key(1).cosign(&s.note.text, T0).unwrap());
    // A cosignature of a witness the policy does not know does not count.
    s.note
        .add_signature(witness_key(3).cosign(&s.note.text, T0).unwrap());
    let r = refuse(&p, None, &serve(&l, &s, &[]), T0);
    assert!(matches!(r, Refusal::TooFewCosignatures { .. }), "{r}");
    assert!(
        r.to_string()
            .contains("2 of w1.example/witness, w2.example/witness"),
        "{r}"
    );
    s.note
        .add_signature(witness_key(2).cosign(&s.note.text, T0).unwrap());
    let k = verify_config(&p, None, &serve(&l, &s, &[]).0, &serve(&l, &s, &[]).1, T0).unwrap();
    assert_eq!(k.cosigners.len(), 2);
    // A failing cosignature of a known witness: the checkpoint is refused.
    let mut bad = s.clone();
    let last = bad.note.signatures.len() - 1;
    bad.note.signatures[last].signature[20] ^= 1;
    assert!(matches!(
        refuse(&p, None, &serve(&l, &bad, &[]), T0),
        Refusal::BadSignature { .. }
    ));
    // Signed by another key with the log's name: not the log's signature.
    let impostor = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [99; 32]).unwrap();
    let mut other = SignedCheckpoint::parse(&s.to_text()).unwrap();
    other
        .note
        .signatures
        .retain(|x| x.key_id != log_key().verifier().id());
    other
        .note
        .add_signature(impostor.sign(&other.note.text).unwrap());
    assert!(matches!(
        refuse(&plain_policy(), None, &serve(&l, &other, &[]), T0),
        Refusal::NotSignedByLog { .. }
    ));
    // Another log's checkpoint.
    let foreign_key = SignerKey::from_seed("other.example/log", KeyType::Ed25519, [5; 32]).unwrap();
    let mut foreign = Log::new("other.example/log");
    foreign.append(config(1)).unwrap();
    let fs = foreign.sign_checkpoint(&foreign_key).unwrap();
    assert!(matches!(
        refuse(&plain_policy(), None, &serve(&foreign, &fs, &[]), T0),
        Refusal::WrongOrigin { .. }
    ));
    // A garbled bundle.
    assert!(matches!(
        refuse(
            &plain_policy(),
            None,
            &(String::new(), "garbage".into()),
            T0
        ),
        Refusal::Malformed(_)
    ));
}

#[test]
fn a_policy_file_in_c2sp_tlog_policy_format() {
    let (l, w1, w2) = (log_key(), witness_key(1), witness_key(2));
    let w3 = witness_key(3);
    let text = format!(
        "# the config log\nlog {} https://t.example.org/log\n\nwitness a {}\nwitness b {}\n\
         witness c {}\ngroup ab any a b\ngroup q all ab c\nquorum q\n",
        l.verifier(),
        w1.verifier(),
        w2.verifier(),
        w3.verifier()
    );
    let p = Policy::parse(&text).unwrap();
    assert_eq!(Policy::parse(&p.to_text()).unwrap(), p);
    assert_eq!(p.log_url(), Some("https://t.example.org/log"));
    assert!(p.quorum_met(&[true, false, true]));
    assert!(!p.quorum_met(&[true, true, false]));
    assert_eq!(p.describe_quorum(), "2 of (1 of a, b), c");
    for bad in [
        text.replace("quorum q\n", ""),
        text.replace("group ab any a b", "group ab 3 a b"),
        text.replace("group ab any a b", "group ab any a a"),
        text.replace("group q all ab c", "group q all ab d"),
        format!("{text}log {}\n", l.verifier()),
        text.replace(
            &format!("witness a {}", w1.verifier()),
            &format!("witness a {}", l.verifier()),
        ),
        text.replace("witness b", "witness a"),
        format!("{text}frobnicate\n"),
    ] {
        assert!(Policy::parse(&bad).is_err(), "{bad:?} parsed");
    }
    // ClientPolicy::parse with a minimum checkpoint signed by the log.
    let lg = log_of(1..=2);
    let min = lg.sign_checkpoint(&l).unwrap().to_text();
    let cp = ClientPolicy::parse(&text, &min).unwrap();
    assert_eq!(cp.minimum.as_ref().unwrap().size, 2);
    assert_eq!(cp.proof_query(None), "?old=2");
    // A minimum not signed by the log is refused at load.
    let impostor = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, [98; 32]).unwrap();
    let bad_min = lg.sign_checkpoint(&impostor).unwrap().to_text();
    assert!(ClientPolicy::parse(&text, &bad_min).is_err());
}

#[test]
fn figures_the_bundle_for_a_log_of_1000_versions() {
    // The size a client downloads besides the config; the time is in the
    // criterion bench (benches/tlog.rs).
    let mut l = log_of(1..=999);
    let s999 = l.sign_checkpoint(&log_key()).unwrap();
    l.append(config(1000)).unwrap();
    let mut s = l.sign_checkpoint(&log_key()).unwrap();
    let bare = l.bundle(&s, &[999]).unwrap().to_text();
    for w in 1..=3 {
        s.note
            .add_signature(witness_key(w).cosign(&s.note.text, T0).unwrap());
    }
    let bundle = l.bundle(&s, &[999]).unwrap().to_text();
    let fresh = l.bundle(&s, &[]).unwrap().to_text();
    eprintln!(
        "bundle for 1,000 versions: {} bytes with 3 cosignatures ({} without, {} with no consistency proof)",
        bundle.len(),
        bare.len(),
        fresh.len()
    );
    assert!(bundle.len() < 2048, "{} bytes", bundle.len());
    let kept = Kept {
        checkpoint: s999.checkpoint.clone(),
        signed: s999.to_text(),
        version: 999,
        config_hash: merkle::leaf_hash(&config(999)),
    };
    let cfg = String::from_utf8(config(1000)).unwrap();
    let a = verify_config(&witnessed_policy(2), Some(&kept), &cfg, &bundle, T0).unwrap();
    assert_eq!(a.kept.checkpoint.size, 1000);
}
