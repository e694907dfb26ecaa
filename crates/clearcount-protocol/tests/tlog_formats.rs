//! The config log's formats, byte for byte: RFC 6962 hashes and proofs
//! against the Certificate Transparency test vectors, C2SP signed notes
//! (the spec's own example, Go's x/mod/sumdb/note example), checkpoints,
//! `cosignature/v1` cosignatures, verifier and signer keys, the bundle.
//!
//! `cargo test -p clearcount-protocol --all-features --test tlog_formats`
#![cfg(feature = "tlog-sign")]

use clearcount_protocol::tlog::bundle::{Bundle, TlogProof, proof_query};
use clearcount_protocol::tlog::checkpoint::{Checkpoint, SignedCheckpoint};
use clearcount_protocol::tlog::log::Log;
use clearcount_protocol::tlog::merkle::{self, Hash};
use clearcount_protocol::tlog::note::{KeyType, Note, SignerKey, VerifierKey, key_id};
use clearcount_protocol::tlog::{base64_decode, base64_encode};
use sha2::{Digest, Sha256};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h(s: &str) -> Hash {
    hex(s).try_into().unwrap()
}

/// The leaves of the RFC 6962 test tree used by Certificate Transparency
/// (google/certificate-transparency, transparency-dev/merkle testonly).
fn ct_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| hex(s))
    .collect()
}

/// Root hashes of the trees of the first 0..=8 leaves.
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Leaf hashes (level 0 of the 8-leaf tree).
const CT_LEAF_HASHES: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];

/// (leaf index, tree size, audit path) from the CT tests.
fn ct_inclusion() -> Vec<(u64, u64, Vec<&'static str>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            vec![
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ]
}

/// (old size, new size, consistency proof) from the CT tests.
fn ct_consistency() -> Vec<(u64, u64, Vec<&'static str>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ]
}

#[test]
fn rfc6962_hashes_match_the_certificate_transparency_vectors() {
    let data = ct_leaves();
    let leaves: Vec<Hash> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
    for (i, want) in CT_LEAF_HASHES.iter().enumerate() {
        assert_eq!(leaves[i], h(want), "leaf {i}");
    }
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(merkle::root(&leaves[..n]), h(want), "root of {n} leaves");
    }
    assert_eq!(merkle::empty_root(), h(CT_ROOTS[0]));
    assert_eq!(
        merkle::node_hash(&leaves[0], &leaves[1]),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")
    );
}

#[test]
fn rfc6962_inclusion_proofs_match_and_corruptions_fail() {
    let leaves: Vec<Hash> = ct_leaves().iter().map(|d| merkle::leaf_hash(d)).collect();
    for (index, size, path) in ct_inclusion() {
        let want: Vec<Hash> = path.iter().map(|s| h(s)).collect();
        let t = &leaves[..size as usize];
        assert_eq!(
            merkle::inclusion_proof(t, index),
            want,
            "proof of {index} in {size}"
        );
        let root = h(CT_ROOTS[size as usize]);
        let leaf = leaves[index as usize];
        merkle::verify_inclusion(&leaf, index, size, &want, &root).unwrap();
        // The corruptions the CT verifier tests probe.
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut bad: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index + 1, size, leaf, root, want.clone()),
            (index ^ 2, size, leaf, root, want.clone()),
            (index, size * 2, leaf, root, want.clone()),
            (index, size / 2, leaf, root, want.clone()),
            (
                index,
                size,
                merkle::leaf_hash(b"WrongLeaf"),
                root,
                want.clone(),
            ),
            (index, size, leaf, merkle::empty_root(), want.clone()),
            (index, size, leaf, some, want.clone()),
            (index, size, leaf, root, [want.clone(), vec![root]].concat()),
            (index, size, leaf, root, [vec![root], want.clone()].concat()),
        ];
        if index > 0 {
            bad.push((index - 1, size, leaf, root, want.clone()));
        }
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 8;
            bad.push((index, size, leaf, root, p));
        }
        if !want.is_empty() {
            bad.push((index, size, leaf, root, want[..want.len() - 1].to_vec()));
        }
        if want.len() > 1 {
            let mut p = want.clone();
            p.insert(1, some);
            bad.push((index, size, leaf, root, p));
        }
        for (n, (i, s, l, r, p)) in bad.into_iter().enumerate() {
            assert!(
                merkle::verify_inclusion(&l, i, s, &p, &r).is_err(),
                "corruption {n} of the proof of {index} in {size} verified"
            );
        }
    }
}

#[test]
fn rfc6962_consistency_proofs_match_and_corruptions_fail() {
    let leaves: Vec<Hash> = ct_leaves().iter().map(|d| merkle::leaf_hash(d)).collect();
    for (old, size, path) in ct_consistency() {
        let want: Vec<Hash> = path.iter().map(|s| h(s)).collect();
        assert_eq!(
            merkle::consistency_proof(&leaves[..size as usize], old),
            want,
            "proof from {old} to {size}"
        );
        let (r1, r2) = (h(CT_ROOTS[old as usize]), h(CT_ROOTS[size as usize]));
        merkle::verify_consistency(old, &r1, size, &r2, &want).unwrap();
        if want.is_empty() {
            continue;
        }
        let mut bad: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (old - 1, size, r1, r2, want.clone()),
            (old + 1, size, r1, r2, want.clone()),
            (old ^ 2, size, r1, r2, want.clone()),
            (old, size * 2, r1, r2, want.clone()),
            (old, size / 2, r1, r2, want.clone()),
            (old, size, merkle::sha256(b"WrongRoot"), r2, want.clone()),
            (old, size, r1, merkle::sha256(b"WrongRoot"), want.clone()),
            (old, size, r2, r1, want.clone()),
            (old, size, r1, r2, vec![]),
            (old, size, r1, r2, [want.clone(), vec![r1]].concat()),
            (old, size, r1, r2, [want.clone(), vec![r2]].concat()),
            (old, size, r1, r2, [vec![r1], want.clone()].concat()),
            (old, size, r1, r2, [vec![r2], want.clone()].concat()),
            (old, size, r1, r2, [vec![want[0]], want.clone()].concat()),
            (old, size, r1, r2, want[..want.len() - 1].to_vec()),
        ];
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 16;
            bad.push((old, size, r1, r2, p));
        }
        for (n, (o, s, a, b, p)) in bad.into_iter().enumerate() {
            assert!(
                merkle::verify_consistency(o, &a, s, &b, &p).is_err(),
                "corruption {n} of the proof from {old} to {size} verified"
            );
        }
    }
    // Trivial cases (RFC 9162 §2.1.4.2 preconditions).
    let e = merkle::empty_root();
    let x = merkle::sha256(b"x");
    merkle::verify_consistency(0, &e, 5, &x, &[]).unwrap();
    assert!(merkle::verify_consistency(0, &x, 5, &x, &[]).is_err());
    assert!(merkle::verify_consistency(0, &e, 5, &x, &[x]).is_err());
    assert!(merkle::verify_consistency(1, &x, 1, &x, &[x]).is_err());
    assert!(merkle::verify_consistency(2, &x, 1, &x, &[]).is_err());
}

#[test]
fn signed_note_examples_of_the_c2sp_spec_and_go() {
    // c2sp.org/signed-note's example.
    let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    let v = VerifierKey::parse(vkey).unwrap();
    assert_eq!(v.to_string(), vkey);
    assert_eq!(
        key_id("example.com/foo", KeyType::Ed25519, v.public_key()),
        0x530d903a
    );
    let msg = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    let note = Note::parse(msg).unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(note.verify(&[&v]).unwrap().len(), 1);
    assert_eq!(note.to_text(), msg);
    let tampered = msg.replace("example message", "example massage");
    assert!(Note::parse(&tampered).unwrap().verify(&[&v]).is_err());

    // golang.org/x/mod/sumdb/note's documented example: the skey signs the
    // text into exactly this note (Ed25519 is deterministic).
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let want = format!(
        "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    );
    let s = SignerKey::parse(skey).unwrap();
    assert_eq!(s.to_skey(), skey);
    assert_eq!(s.verifier().to_string(), vkey);
    let mut n = Note::new(text).unwrap();
    n.add_signature(s.sign(text).unwrap());
    assert_eq!(n.to_text(), want);
    let v = VerifierKey::parse(vkey).unwrap();
    assert_eq!(Note::parse(&want).unwrap().verify(&[&v]).unwrap().len(), 1);
}

/// The key ID computed by hand from the spec's formula.
fn spec_key_id(name: &str, ty: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ty]);
    h.update(public);
    h.finalize()[..4].try_into().unwrap()
}

#[test]
fn checkpoint_and_cosignature_bytes_follow_the_c2sp_specs() {
    let log = SignerKey::from_seed("config.example.org/log", KeyType::Ed25519, [7; 32]).unwrap();
    let wit = SignerKey::from_seed("witness.example/w1", KeyType::CosignatureV1, [9; 32]).unwrap();
    let kp_log = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
    let kp_wit = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([9; 32]));

    // vkeys: name + 8 lowercase hex digits of the key ID + base64(type || key).
    let id_log = spec_key_id("config.example.org/log", 0x01, &kp_log.pk);
    let id_wit = spec_key_id("witness.example/w1", 0x04, &kp_wit.pk);
    let vkey_log = format!(
        "config.example.org/log+{:08x}+{}",
        u32::from_be_bytes(id_log),
        base64_encode(&[&[1u8][..], &kp_log.pk[..]].concat())
    );
    assert_eq!(log.verifier().to_string(), vkey_log);
    assert_eq!(
        wit.verifier().to_string(),
        format!(
            "witness.example/w1+{:08x}+{}",
            u32::from_be_bytes(id_wit),
            base64_encode(&[&[4u8][..], &kp_wit.pk[..]].concat())
        )
    );
    // skeys: PRIVATE+KEY+name+id+base64(type || seed).
    assert_eq!(
        log.to_skey(),
        format!(
            "PRIVATE+KEY+config.example.org/log+{:08x}+{}",
            u32::from_be_bytes(id_log),
            base64_encode(&[&[1u8][..], &[7u8; 32][..]].concat())
        )
    );

    // A checkpoint: origin, size, base64 root, each line ending in \n.
    let mut l = Log::new("config.example.org/log");
    for v in 1..=3 {
        l.append(format!("version = {v}\nsample_rate = 0.1\n").into_bytes())
            .unwrap();
    }
    let root = l.checkpoint().root;
    let body = format!("config.example.org/log\n3\n{}\n", base64_encode(&root));
    assert_eq!(l.checkpoint().to_text(), body);
    let mut signed = l.sign_checkpoint(&log).unwrap();

    // The log's signature line: em dash, space, key name, space,
    // base64(key ID || Ed25519 signature over the note text), newline;
    // separated from the text by one blank line.
    let sig = kp_log.sk.sign(body.as_bytes(), None);
    let line_log = format!(
        "\u{2014} config.example.org/log {}\n",
        base64_encode(&[&id_log[..], &sig[..]].concat())
    );
    assert_eq!(signed.to_text(), format!("{body}\n{line_log}"));

    // A cosignature/v1: base64(key ID || u64 BE timestamp || Ed25519
    // signature over "cosignature/v1\ntime <t>\n" || note text).
    let t = 1_700_000_000u64;
    let msg = format!("cosignature/v1\ntime {t}\n{body}");
    let csig = kp_wit.sk.sign(msg.as_bytes(), None);
    let line_wit = format!(
        "\u{2014} witness.example/w1 {}\n",
        base64_encode(&[&id_wit[..], &t.to_be_bytes()[..], &csig[..]].concat())
    );
    let c = wit.cosign(&body, t).unwrap();
    assert_eq!(c.line(), line_wit);
    assert_eq!(c.timestamp(), Some(t));
    signed.note.add_signature(c);
    let text = signed.to_text();
    assert_eq!(text, format!("{body}\n{line_log}{line_wit}"));
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
    assert_eq!(text.matches("\n\n").count(), 1, "exactly one blank line");

    // Both verify; the verifier reports the cosignature's time.
    let parsed = SignedCheckpoint::parse(&text).unwrap();
    let got = parsed
        .note
        .verify(&[log.verifier(), wit.verifier()])
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[1].key, got[1].timestamp), (1, t));
    // A cosignature key is not an Ed25519 key: same name, other ID.
    let as_plain = VerifierKey::new("witness.example/w1", KeyType::Ed25519, *kp_wit.pk).unwrap();
    assert_ne!(as_plain.id(), wit.verifier().id());
    assert!(
        parsed.note.verify(&[&as_plain]).unwrap().is_empty(),
        "ignored, not failed"
    );
    // Wrong key types are refused for signing.
    assert!(wit.sign(&body).is_err() && log.cosign(&body, t).is_err());
    // A known key whose signature fails: the whole note is refused.
    let forged = text.replace(&line_wit, &line_wit.replace('A', "B"));
    if forged != text
        && let Ok(n) = Note::parse(&forged)
    {
        assert!(n.verify(&[log.verifier(), wit.verifier()]).is_err());
    }
}

#[test]
fn the_bundle_is_old_sections_then_a_c2sp_tlog_proof() {
    let log = SignerKey::from_seed("config.example.org/log", KeyType::Ed25519, [7; 32]).unwrap();
    let mut l = Log::new("config.example.org/log");
    for v in 1..=7 {
        l.append(format!("version = {v}\nsample_rate = 0.1\n").into_bytes())
            .unwrap();
    }
    let signed = l.sign_checkpoint(&log).unwrap();
    let bundle = l.bundle(&signed, &[5, 2]).unwrap();
    let text = bundle.to_text();
    let b = |h: &Hash| base64_encode(h);
    let mut want = String::new();
    for old in [2u64, 5] {
        want.push_str(&format!("old {old}\n"));
        for x in l.consistency_proof(old, 7).unwrap() {
            want.push_str(&format!("{}\n", b(&x)));
        }
        want.push('\n');
    }
    let tlog_proof = {
        let mut t = "c2sp.org/tlog-proof@v1\nindex 6\n".to_string();
        for x in l.inclusion_proof(6, 7).unwrap() {
            t.push_str(&format!("{}\n", b(&x)));
        }
        t.push('\n');
        t.push_str(&signed.to_text());
        t
    };
    want.push_str(&tlog_proof);
    assert_eq!(text, want);
    assert_eq!(Bundle::parse(&text).unwrap(), bundle);
    // The tail is a standalone tlog-proof.
    assert_eq!(TlogProof::parse(&tlog_proof).unwrap(), bundle.proof);
    let with_extra = tlog_proof.replace("index 6", "extra aGVsbG8=\nindex 6");
    assert_eq!(
        TlogProof::parse(&with_extra).unwrap().extra.unwrap(),
        b"hello"
    );
    assert_eq!(proof_query(&[5, 0, 2, 5]), "?old=2&old=5");
    assert_eq!(proof_query(&[0]), "");
    // Malformed bundles.
    for bad in [
        text.replacen("old 2", "old 02", 1),
        text.replacen("old 2\n", "old 5\n", 1),
        text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        text.replacen("index 6", "index -6", 1),
        text.replacen(&b(&l.inclusion_proof(6, 7).unwrap()[0]), "AAAA", 1),
        text[..text.len() - 1].to_string(),
    ] {
        assert!(Bundle::parse(&bad).is_err(), "{bad:?} parsed");
    }
    // Base64 round trip of the checkpoint's root.
    let c = Checkpoint::parse(&signed.note.text).unwrap();
    assert_eq!(base64_decode(&base64_encode(&c.root)).unwrap(), c.root);
}
