//! The client's cost of checking a config against the log.
//!
//! A log of 1,000 versions of the published `config/config.toml` (1.3 KB),
//! its latest checkpoint signed by the log and cosigned by 3 witnesses; the
//! client kept the checkpoint of 999 entries.
//!
//! | bench | what |
//! |---|---|
//! | `tlog/verify_config_no_witness` | [`verify_config`] with a policy that needs no cosignature: parse the bundle, 1 Ed25519 verification, the inclusion and consistency proofs, parse the config, the version rules |
//! | `tlog/verify_config_2_of_3_witnesses` | the same with a quorum of 2 of 3 witnesses: 3 more Ed25519 verifications |
//! | `tlog/config_parse_only` | `CollectionConfig::parse` of the same config: what the client already pays without the log |
//! | `tlog/proofs_only` | the two Merkle proofs alone |
//! | `linear/config_6000_counters`, `linear/config_60000_counters` | `CollectionConfig::parse` of a config of 6,000 and of 60,000 counters: ten times the text should take ten times as long (a quadratic reader takes a hundred) |
//! | `linear/audit_500`, `linear/audit_5000` | `tlog::audit` of a log of 500 and of 5,000 versions with a checkpoint at every size: ten times the log, ten times the time |
//!
//! Run with `cargo bench -p clearcount-protocol --all-features --bench
//! tlog`; `CLEARCOUNT_BENCH_QUICK=1` shortens every measurement. The bundle
//! size is printed first.

use clearcount_protocol::config::CollectionConfig;
use clearcount_protocol::tlog::audit::audit;
use clearcount_protocol::tlog::bundle::Bundle;
use clearcount_protocol::tlog::client::{ClientPolicy, Kept, verify_config};
use clearcount_protocol::tlog::log::Log;
use clearcount_protocol::tlog::merkle;
use clearcount_protocol::tlog::note::{KeyType, SignerKey};
use clearcount_protocol::tlog::policy::Policy;
use criterion::Criterion;
use std::hint::black_box;
use std::time::Duration;

const VERSIONS: u64 = 1000;
const NOW: u64 = 1_800_000_000;

fn criterion() -> Criterion {
    let c = Criterion::default();
    let c = if std::env::var_os("CLEARCOUNT_BENCH_QUICK").is_some() {
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300))
            .sample_size(10)
    } else {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    };
    c.configure_from_args()
}

fn main() {
    let published = include_str!("../../../config/config.toml");
    let config = |v: u64| published.replace("\nversion = 2\n", &format!("\nversion = {v}\n"));
    assert_ne!(
        config(7),
        published,
        "the published config's version line moved"
    );
    let key = SignerKey::from_seed("config.example.org/log", KeyType::Ed25519, [1; 32]).unwrap();
    let witnesses: Vec<SignerKey> = (0..3)
        .map(|i| {
            SignerKey::from_seed(
                &format!("w{i}.example/w"),
                KeyType::CosignatureV1,
                [2 + i; 32],
            )
            .unwrap()
        })
        .collect();
    let mut log = Log::new("config.example.org/log");
    for v in 1..VERSIONS {
        log.append(config(v).into_bytes()).unwrap();
    }
    let s999 = log.sign_checkpoint(&key).unwrap();
    log.append(config(VERSIONS).into_bytes()).unwrap();
    let mut signed = log.sign_checkpoint(&key).unwrap();
    for w in &witnesses {
        signed
            .note
            .add_signature(w.cosign(&signed.note.text, NOW).unwrap());
    }
    let bundle = log.bundle(&signed, &[VERSIONS - 1]).unwrap().to_text();
    let served = config(VERSIONS);
    let kept = Kept {
        checkpoint: s999.checkpoint.clone(),
        signed: s999.to_text(),
        version: VERSIONS - 1,
        config_hash: merkle::leaf_hash(config(VERSIONS - 1).as_bytes()),
    };
    let plain = ClientPolicy::new(Policy::new(key.verifier().clone(), vec![], 0).unwrap());
    let quorum = ClientPolicy::new(
        Policy::new(
            key.verifier().clone(),
            witnesses.iter().map(|w| w.verifier().clone()).collect(),
            2,
        )
        .unwrap(),
    );
    let b = Bundle::parse(&bundle).unwrap();
    println!(
        "bundle for a log of {VERSIONS} versions, kept size {}: {} bytes ({} inclusion hashes, {} consistency hashes, 1 log signature, 3 cosignatures); without cosignatures: {} bytes",
        VERSIONS - 1,
        bundle.len(),
        b.proof.inclusion.len(),
        b.consistency[0].proof.len(),
        log.bundle(&log.sign_checkpoint(&key).unwrap(), &[VERSIONS - 1])
            .unwrap()
            .to_text()
            .len()
    );
    verify_config(&quorum, Some(&kept), &served, &bundle, NOW).unwrap();

    let mut c = criterion();
    let mut g = c.benchmark_group("tlog");
    g.bench_function("verify_config_no_witness", |bch| {
        bch.iter(|| {
            verify_config(
                &plain,
                Some(&kept),
                black_box(&served),
                black_box(&bundle),
                NOW,
            )
            .unwrap()
        })
    });
    g.bench_function("verify_config_2_of_3_witnesses", |bch| {
        bch.iter(|| {
            verify_config(
                &quorum,
                Some(&kept),
                black_box(&served),
                black_box(&bundle),
                NOW,
            )
            .unwrap()
        })
    });
    g.bench_function("config_parse_only", |bch| {
        bch.iter(|| CollectionConfig::parse(black_box(&served), "config.toml").unwrap())
    });
    let c1000 = &b.proof.checkpoint.checkpoint;
    g.bench_function("proofs_only", |bch| {
        bch.iter(|| {
            let leaf = merkle::leaf_hash(black_box(served.as_bytes()));
            merkle::verify_inclusion(
                &leaf,
                VERSIONS - 1,
                VERSIONS,
                &b.proof.inclusion,
                &c1000.root,
            )
            .unwrap();
            merkle::verify_consistency(
                VERSIONS - 1,
                &kept.checkpoint.root,
                VERSIONS,
                &c1000.root,
                &b.consistency[0].proof,
            )
            .unwrap();
        })
    });
    g.finish();

    // Linear time: the same work ten times over.
    let counters = |n: usize| {
        let mut t = String::from(
            "version = 1\nsample_rate = 0.1\n[[program]]\nname = \"p\"\nversions = [\"*\"]\n",
        );
        for i in 0..n {
            t.push_str(&format!(
                "[[program.counter]]\nname = \"p/c{i}\"\nrate = 0.1\n"
            ));
        }
        t
    };
    let logged = |n: u64| {
        let mut log = Log::new("config.example.org/log");
        let mut cps = Vec::new();
        for v in 1..=n {
            log.append(config(v).into_bytes()).unwrap();
            cps.push(log.sign_checkpoint(&key).unwrap().to_text());
        }
        (log, cps)
    };
    let log_policy = Policy::new(key.verifier().clone(), vec![], 0).unwrap();
    let mut g = c.benchmark_group("linear");
    g.sample_size(10);
    for n in [6_000, 60_000] {
        let text = counters(n);
        g.bench_function(format!("config_{n}_counters"), |bch| {
            bch.iter(|| CollectionConfig::parse(black_box(&text), "c").unwrap())
        });
    }
    for n in [500, 5_000] {
        let (log, cps) = logged(n);
        let refs: Vec<&str> = cps.iter().map(String::as_str).collect();
        g.bench_function(format!("audit_{n}"), |bch| {
            bch.iter(|| audit(&log_policy, black_box(log.entries()), &refs).unwrap())
        });
    }
    g.finish();
    c.final_summary();
}
