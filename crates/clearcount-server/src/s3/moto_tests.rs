//! The S3 store against a real S3-compatible server: moto's server mode,
//! started by each test on a free loopback port and killed at its end
//! (see [`super::moto`]). Without moto the tests fail with a message saying
//! how to install it.
//!
//! - the [`Store`] contract on S3 (conditional put, get, list, delete, the
//!   conditional `replace_file` of a multi-MB file read back through `open`
//!   and `open_async`: created once, replaced only with the right version);
//! - one-line errors for a missing bucket, a bad URL, an unknown setting
//!   and refused credentials.
//!
//! The end-to-end tests (`clearcount serve` and `clearcount merge` on a
//! bucket, two instances, one killed) are the `clearcount` command's
//! (`crates/clearcount-cli/tests/s3.rs`).

use super::S3Store;
use super::moto::Moto;
use crate::store::{Expect, PutOutcome, Replaced, Store};
use std::io::Read;
use std::sync::Arc;

/// An S3 store on moto.
fn store(moto: &Moto, url: &str) -> Arc<dyn Store> {
    Arc::new(S3Store::from_url_with(url, moto.env()).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn store_contract_on_s3() {
    let moto = Moto::start();
    moto.bucket("contract");
    let rt = runtime();
    let s = store(&moto, "s3://contract/tele/prod");
    let other = store(&moto, "s3://contract/other");
    assert_eq!(s.describe(), "s3://contract/tele/prod");
    rt.block_on(async {
        // Conditional put: once, then Existed; the first bytes stay.
        let k = "reports/2026-11-16/ab/abcdef.json";
        assert_eq!(
            s.put_if_absent(k, b"first".to_vec()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_if_absent(k, b"second".to_vec()).await.unwrap(),
            PutOutcome::Existed
        );
        assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(s.get("reports/none.json").await.unwrap(), None);
        assert!(s.open("reports/none.json").await.unwrap().is_none());

        // Many writers race on one key: exactly one creates it.
        let race = "reports/2026-11-16/cd/race.json";
        let mut tasks = Vec::new();
        for n in 0..8u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.put_if_absent(race, vec![n]).await.unwrap()
            }));
        }
        let mut created = 0;
        for t in tasks {
            if t.await.unwrap() == PutOutcome::Created {
                created += 1;
            }
        }
        assert_eq!(created, 1);

        // put replaces.
        s.put("config/current.toml", b"v1".to_vec()).await.unwrap();
        s.put("config/current.toml", b"v2".to_vec()).await.unwrap();
        assert_eq!(
            s.get("config/current.toml").await.unwrap().as_deref(),
            Some(&b"v2"[..])
        );

        // list: one level, sorted, relative to the store's prefix.
        let top = s.list("").await.unwrap();
        assert_eq!(
            top.dirs,
            vec!["config/".to_string(), "reports/".to_string()]
        );
        assert!(top.objects.is_empty());
        let shards = s.list("reports/2026-11-16/").await.unwrap();
        assert_eq!(
            shards.dirs,
            vec![
                "reports/2026-11-16/ab/".to_string(),
                "reports/2026-11-16/cd/".to_string()
            ]
        );
        let objs = s.list("reports/2026-11-16/ab/").await.unwrap();
        assert_eq!(objs.objects.len(), 1);
        assert_eq!(objs.objects[0].key, k);
        assert_eq!(objs.objects[0].size, 5);
        assert!(s.list("nothing/").await.unwrap().objects.is_empty());
        // Another prefix of the same bucket sees none of it.
        assert_eq!(other.list("").await.unwrap(), Default::default());

        // delete: gone, and deleting again is no error.
        s.delete(k).await.unwrap();
        s.delete(k).await.unwrap();
        assert_eq!(s.get(k).await.unwrap(), None);

        // Bad keys and prefixes are refused before any request.
        assert!(s.put("../escape", vec![]).await.is_err());
        assert!(s.get("a//b").await.is_err());
        assert!(s.list("reports").await.is_err());
    });

    // replace_file: a 21 MiB file, sent in one conditional PUT (mapped,
    // not copied), then read back through the streaming readers.
    let dir = s.scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("big-{}", std::process::id()));
    let mut content = Vec::with_capacity(21 << 20);
    let mut v: u64 = 0x9e37_79b9_7f4a_7c15;
    while content.len() < 21 << 20 {
        v ^= v << 13;
        v ^= v >> 7;
        v ^= v << 17;
        content.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&path, &content).unwrap();
    let key = "archive/2026-11-16.ndjson";
    assert_eq!(rt.block_on(s.version(key)).unwrap(), None);
    assert_eq!(
        rt.block_on(s.replace_file(key, &path, Expect::Absent))
            .unwrap(),
        Replaced::Done
    );
    assert!(!path.exists(), "replace_file leaves the local file behind");
    let listed = rt.block_on(s.list("archive/")).unwrap();
    assert_eq!(listed.objects[0].size, content.len() as u64);
    let reader = rt.block_on(s.open(key)).unwrap().unwrap();
    let (read_back, chunks) = rt
        .block_on(rt.spawn_blocking(move || {
            let mut reader = reader;
            let mut out = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut chunks = 0;
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                chunks += 1;
                out.extend_from_slice(&buf[..n]);
            }
            (out, chunks)
        }))
        .unwrap();
    assert!(read_back == content, "the object read back differs");
    assert!(chunks > 1);
    let async_back = rt.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut r = s.open_async(key).await.unwrap().unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    });
    assert!(
        async_back == content,
        "the object read back (async) differs"
    );

    // Conditional replace: only over the version read.
    let v1 = rt.block_on(s.version(key)).unwrap().expect("an ETag");
    let small = dir.join(format!("small-{}", std::process::id()));
    std::fs::write(&small, b"one line\n").unwrap();
    assert_eq!(
        rt.block_on(s.replace_file(key, &small, Expect::Absent))
            .unwrap(),
        Replaced::Conflict,
        "created over an existing object"
    );
    assert_eq!(
        rt.block_on(s.replace_file(key, &small, Expect::Version("\"nope\"".into())))
            .unwrap(),
        Replaced::Conflict,
        "replaced another version"
    );
    assert!(small.exists(), "a refused file stays for the caller");
    assert_eq!(
        rt.block_on(s.list("archive/")).unwrap().objects[0].size,
        content.len() as u64
    );
    assert_eq!(
        rt.block_on(s.replace_file(key, &small, Expect::Version(v1.clone())))
            .unwrap(),
        Replaced::Done
    );
    assert_eq!(
        rt.block_on(s.get(key)).unwrap().as_deref(),
        Some(&b"one line\n"[..])
    );
    let v2 = rt.block_on(s.version(key)).unwrap().unwrap();
    assert_ne!(v1, v2);
    // The old version no longer matches.
    std::fs::write(&small, b"stale\n").unwrap();
    assert_eq!(
        rt.block_on(s.replace_file(key, &small, Expect::Version(v1)))
            .unwrap(),
        Replaced::Conflict
    );
    let _ = std::fs::remove_file(&small);
}

/// (The check that `clearcount merge` refuses such a store with the reason
/// is `merge_refuses_a_missing_bucket_with_the_reason` in the command's
/// tests.)
#[test]
fn clear_errors_for_a_missing_bucket_and_a_bad_url() {
    let moto = Moto::start();
    let e = S3Store::from_url_with("s3://no-such-bucket/x", moto.env())
        .expect_err("a missing bucket is an error");
    let msg = e.to_string();
    assert!(
        msg.contains("bucket no-such-bucket does not exist"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    let e = S3Store::from_url_with("s3://B_A_D", moto.env())
        .err()
        .unwrap();
    assert!(e.to_string().contains("bucket name"), "{e}");
    let e = S3Store::from_url_with("s3://ok-bucket", [("AWS_NO_SUCH_SETTING", "1")])
        .err()
        .unwrap();
    assert!(e.to_string().contains("AWS_NO_SUCH_SETTING"), "{e}");
}

#[test]
fn clear_error_when_the_credentials_are_refused() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0 moto checks every request's
    // access key; ours is unknown to it.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let e = S3Store::from_url_with("s3://locked-bucket", moto.env())
        .expect_err("an unknown access key is refused");
    let msg = e.to_string();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{msg}");
    assert!(
        msg.contains("credentials refused by s3://locked-bucket"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

/// A store that ignores conditional writes (moto behind a proxy that drops
/// `If-Match` and `If-None-Match`: every conditional `PutObject` answered
/// 200, as Garage 2.5 does) is found out when it is opened, and its
/// conditional writes are then checked just before they are made: a second
/// create and a replace of a stale version are still refused. The same
/// store without the proxy honours the conditions.
#[test]
fn a_store_that_ignores_conditional_writes_is_found_and_checked() {
    use super::strip_proxy::StripProxy;
    use crate::store::ConditionalWrites;
    let moto = Moto::start();
    moto.bucket("cond");
    let proxy = StripProxy::start(&moto.endpoint);
    let mut env = moto.env();
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint.clone()));
    let honest = S3Store::from_url_with("s3://cond/p", moto.env()).unwrap();
    assert_eq!(honest.conditional_writes(), ConditionalWrites::HONOURED);
    let s = S3Store::from_url_with("s3://cond/p", env).unwrap();
    assert_eq!(
        s.conditional_writes(),
        ConditionalWrites {
            if_none_match: false,
            if_match: false
        }
    );
    let said = s.conditional_writes().describe();
    assert!(
        said.starts_with("conditional writes NOT honoured (ignores If-None-Match: * and If-Match)"),
        "{said}"
    );
    assert!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    // The probe left nothing behind.
    let rt = runtime();
    assert!(rt.block_on(s.list("probe/")).unwrap().objects.is_empty());
    let s: Arc<dyn Store> = Arc::new(s);
    rt.block_on(async {
        let k = "reports/2026-11-16/ab/abcd.json";
        assert_eq!(
            s.put_if_absent(k, b"first".to_vec()).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            s.put_if_absent(k, b"second".to_vec()).await.unwrap(),
            PutOutcome::Existed
        );
        assert_eq!(s.get(k).await.unwrap().as_deref(), Some(&b"first"[..]));
    });
    let dir = s.scratch_dir();
    let file = |text: &str| {
        let p = dir.join(format!("cond-{}-{}", std::process::id(), text.len()));
        std::fs::write(&p, text).unwrap();
        p
    };
    let key = "archive/2026-11-16.ndjson";
    let a = file("a\n");
    assert_eq!(
        rt.block_on(s.replace_file(key, &a, Expect::Absent))
            .unwrap(),
        Replaced::Done
    );
    let v1 = rt.block_on(s.version(key)).unwrap().unwrap();
    let b = file("bb\n");
    assert_eq!(
        rt.block_on(s.replace_file(key, &b, Expect::Absent))
            .unwrap(),
        Replaced::Conflict
    );
    assert_eq!(
        rt.block_on(s.replace_file(key, &b, Expect::Version("\"stale\"".into())))
            .unwrap(),
        Replaced::Conflict
    );
    assert_eq!(
        rt.block_on(s.replace_file(key, &b, Expect::Version(v1)))
            .unwrap(),
        Replaced::Done
    );
    assert_eq!(
        rt.block_on(s.get(key)).unwrap().as_deref(),
        Some(&b"bb\n"[..])
    );
}
