//! The archive as data: the tidy tables (`archive/<week>.parquet` and
//! `.csv`) of an archive made by a real `clearcount serve` from reports
//! uploaded over HTTP, merged by `clearcount merge`, read back by other
//! programs: pyarrow, DuckDB and Python's csv module (`tests/python/
//! tables.py`, which computes the expected rows and totals from the NDJSON
//! on its own), and the README's DuckDB recipes, run on the files and over
//! HTTP against the server's `/data/`.
//!
//! The Python packages are installed by `.ci/run` (`duckdb` and its
//! `httpfs` extension from PyPI, `pyarrow`); without them the test fails
//! with the line that installs them. The S3 case needs moto, as the other
//! object-storage tests.

mod common;

use clearcount_protocol::report::{ProgramReport, Report};
use common::moto::{Moto, agent};
use common::{KillOnDrop, TempDir, root};
use object_store::ObjectStoreExt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The README's `<!-- toolchain:PATH -->` block.
fn readme_block(path: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = format!("<!-- toolchain:{path} -->");
    let rest = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let body = rest.split_once("```").unwrap().1;
    let body = body.split_once('\n').unwrap().1;
    body.split_once("```").unwrap().0.to_owned()
}

/// The README's config and declared counters (the `mytool` example), the
/// config published (signed, in its config log) in `dir`.
fn publish_readme_config(dir: &Path) -> PathBuf {
    let counters = dir.join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    std::fs::write(
        counters.join("mytool.toml"),
        readme_block("counters/mytool.toml"),
    )
    .unwrap();
    common::publish_config(dir, &readme_block("config.toml"), &counters)
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn week(weeks_ago: i64) -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7 * weeks_ago))
        .format("%Y-%m-%d")
        .to_string()
}

/// The rare values: each in at most two reports a week, under the
/// threshold of 5.
const RARE_VERSION: &str = "0.3.0-dev";
const RARE_STACK: &str = "crash/panic\nmytool::cache::evict:+40\nmytool::main:+3";

/// Report `i` of a week of mytool users, as the README's config keeps it
/// (X at most 0.05, under every rate): two versions and two systems, a
/// rare version and a rare stack, commands, flags, build times and panics.
fn report(week: &str, i: u64, rng: &mut Rng) -> Report {
    let version = match i {
        0 | 1 => RARE_VERSION,
        _ if rng.chance(60) => "0.1.0",
        _ => "0.2.0",
    };
    let os = if rng.chance(25) { "macos" } else { "linux" };
    let mut p = ProgramReport::new("mytool", version, os, "x86_64");
    if rng.chance(85) {
        p.counters
            .insert("mytool/command:build".into(), 1 + rng.below(9));
    }
    if rng.chance(20) {
        p.counters
            .insert("mytool/command:telemetry.status".into(), 1);
    }
    if rng.chance(35) {
        p.counters
            .insert("mytool/flag:verbose".into(), 1 + rng.below(3));
    }
    let time = ["<10ms", "<100ms", "<1s", ">=1s"][rng.below(4) as usize];
    p.counters
        .insert(format!("mytool/build-time:{time}"), 1 + rng.below(4));
    if rng.chance(45) {
        p.stacks.insert(
            "crash/panic\nmytool::build::run:+12\nmytool::main:+3".into(),
            1 + rng.below(2),
        );
    }
    if rng.chance(15) {
        p.stacks
            .insert("crash/panic\nmytool::config::load:+7".into(), 1);
    }
    if i == 2 {
        p.stacks.insert(RARE_STACK.into(), 1);
    }
    Report {
        week: week.to_owned(),
        x: 0.0001 * (i + 1) as f64,
        config: 1,
        programs: vec![p],
    }
}

/// Three weeks of reports: 60, 70 and 80.
fn reports() -> Vec<Report> {
    let mut rng = Rng(21);
    let mut out = Vec::new();
    for (ago, n) in [(3, 60), (2, 70), (1, 80)] {
        let w = week(ago);
        out.extend((0..n).map(|i| report(&w, i, &mut rng)));
    }
    out
}

/// A `clearcount serve` process on `data`, its base URL.
struct ServeProc {
    base: String,
    _child: KillOnDrop,
}

fn serve(data: &str, config: &Path, env: &[(&'static str, String)]) -> ServeProc {
    let mut child = KillOnDrop(
        common::clearcount()
            .args(["serve", "--addr", "127.0.0.1:0", "--data", data])
            .arg("--config")
            .arg(config)
            .arg("--public-key")
            .arg(config.with_file_name("config.pub"))
            .args(["--merge-interval", "3600", "--rate-limit", "0"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start clearcount serve"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
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
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    ServeProc {
        base: format!("http://{addr}"),
        _child: child,
    }
}

fn upload_all(base: &str, reports: &[Report]) {
    let agent = agent();
    for r in reports {
        let mut resp = agent
            .post(&format!("{base}/upload"))
            .content_type("application/json")
            .send(&r.to_bytes())
            .expect("upload failed");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "upload of a {} report: {text}", r.week);
    }
}

fn merge(data: &str, k: u64, env: &[(&'static str, String)]) -> String {
    common::run_ok(
        common::clearcount()
            .args(["merge", "--data", data, "--min-reports", &k.to_string()])
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

/// Runs `tests/python/tables.py` with `args`; panics with its output if a
/// check fails.
fn check_tables(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/tables.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 is needed to check the tables (and pyarrow, duckdb: see .ci/run)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tables.py {args:?} failed:\n{text}");
    println!("{text}");
    text
}

/// A GET: status, headers, body.
fn get(url: &str, head: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent = agent();
    let mut r = if head {
        agent.head(url).call().expect("transport error")
    } else {
        agent.get(url).call().expect("transport error")
    };
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = if head {
        Vec::new()
    } else {
        r.body_mut()
            .with_config()
            .limit(100 << 20)
            .read_to_vec()
            .unwrap()
    };
    (r.status().as_u16(), headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `/data/` lists each week's tables with their sizes, and serves them with
/// their type and length (the `Content-Length` DuckDB's HTTP reader needs),
/// byte for byte as `bytes` says.
fn check_served_tables(base: &str, week: &str, bytes: impl Fn(&str) -> Vec<u8>) {
    let files: Vec<(String, Vec<u8>)> = ["parquet", "csv"]
        .iter()
        .map(|ext| {
            let name = format!("{week}.{ext}");
            let file = bytes(&format!("archive/{name}"));
            (name, file)
        })
        .collect();
    let listed = |page: &str| {
        files.iter().all(|(name, file)| {
            let size = match file.len() {
                n if n < 1024 => format!("{n} B"),
                n => format!("{:.1} KiB", n as f64 / 1024.0),
            };
            page.contains(&format!(
                r#"href="/data/{name}" download>{name}</a> <span class="muted">{size}</span>"#
            ))
        })
    };
    // The server sees files another process wrote within its poll (2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, page) = get(&format!("{base}/data/"), false);
        let page = String::from_utf8(page).unwrap();
        assert_eq!(status, 200);
        if listed(&page) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/data/ does not list {week}'s tables with their sizes: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for ((name, file), ctype) in files
        .iter()
        .zip(["application/vnd.apache.parquet", "text/csv; charset=utf-8"])
    {
        let url = format!("{base}/data/{name}");
        for head in [true, false] {
            let (status, headers, body) = get(&url, head);
            assert_eq!(status, 200, "{url}");
            assert_eq!(header(&headers, "content-type"), Some(ctype), "{url}");
            assert_eq!(
                header(&headers, "content-length"),
                Some(file.len().to_string().as_str()),
                "{url} (HEAD: {head})"
            );
            if !head {
                assert!(body == *file, "{url} is not the stored file");
            }
        }
    }
}

/// On a directory store: with `k` = 1 the tables hold every row and sum to
/// the NDJSON's raw totals; with `k` = 5 they leave out the rows of fewer
/// than 5 reports (a rare version, a rare stack) and match rows computed
/// independently from the NDJSON; pyarrow, DuckDB and the csv module read
/// both formats with the expected schema; the README's recipes print the
/// numbers computed from the NDJSON, from the files and over HTTP.
#[test]
fn tables_of_a_real_archive_match_the_ndjson_and_the_readme_recipes_run() {
    let dir = TempDir::new("tables");
    let config = publish_readme_config(&dir.0);
    let data = dir.0.join("data");
    let data_s = data.display().to_string();
    let server = serve(&data_s, &config, &[]);
    let reports = reports();
    upload_all(&server.base, &reports);

    let out = merge(&data_s, 1, &[]);
    assert!(
        out.contains("210 reports in 3 weekly archive files"),
        "{out}"
    );
    check_tables(&[&data_s, "1", "--exact"]);
    let all_rows = std::fs::read_to_string(data.join(format!("archive/{}.csv", week(1)))).unwrap();
    assert!(all_rows.contains(RARE_VERSION), "{all_rows}");

    check_served_tables(&server.base, &week(1), |key| {
        std::fs::read(data.join(key)).unwrap()
    });
    let etag = |page: &str| {
        let (_, headers, _) = get(&format!("{}{page}", server.base), false);
        header(&headers, "etag").unwrap().to_owned()
    };
    let (charts_etag, data_etag) = (etag("/charts"), etag("/data/"));

    // The server's threshold (5): the rare values leave the tables, not
    // the NDJSON. The archive is the same: the data page alone is built
    // again, under a new ETag.
    merge(&data_s, 5, &[]);
    for ago in 1..=3 {
        let w = week(ago);
        let ndjson = std::fs::read_to_string(data.join(format!("archive/{w}.ndjson"))).unwrap();
        let csv = std::fs::read_to_string(data.join(format!("archive/{w}.csv"))).unwrap();
        assert!(ndjson.contains(RARE_VERSION) && !csv.contains(RARE_VERSION));
        assert!(!csv.contains("mytool::cache::evict"), "{csv}");
        assert!(csv.contains("mytool::build::run:+12"), "{csv}");
    }
    assert!(
        std::fs::read_to_string(data.join(format!("archive/{}.ndjson", week(1))))
            .unwrap()
            .contains("mytool::cache::evict")
    );
    let readme = root().join("README.md").display().to_string();
    let text = check_tables(&[
        &data_s,
        "5",
        "--readme",
        &readme,
        "--base-url",
        &server.base,
    ]);
    for name in [
        "weekly-totals",
        "crash-share",
        "top-stacks",
        "bucket-trend",
        "remote (the README's, over HTTP)",
        "bucket-trend over HTTP",
    ] {
        assert!(text.contains(&format!("ok  recipe {name}:")), "{text}");
    }

    check_served_tables(&server.base, &week(1), |key| {
        std::fs::read(data.join(key)).unwrap()
    });
    assert_ne!(etag("/data/"), data_etag);
    assert_eq!(etag("/charts"), charts_etag);
    // The static site links them too.
    let site = std::fs::read_to_string(data.join("site/data.html")).unwrap();
    assert!(site.contains(&format!(r#"href="../archive/{}.parquet""#, week(2))));

    // `--tables-only` rebuilds them from the NDJSON alone: in a copy of
    // the published archive, without the stored reports.
    let copy = dir.0.join("copy");
    std::fs::create_dir_all(copy.join("archive")).unwrap();
    for ago in 1..=3 {
        let name = format!("archive/{}.ndjson", week(ago));
        std::fs::copy(data.join(&name), copy.join(&name)).unwrap();
    }
    let copy_s = copy.display().to_string();
    let out = common::run_ok(common::clearcount().args([
        "merge",
        "--data",
        &copy_s,
        "--min-reports",
        "5",
        "--tables-only",
    ]));
    assert!(out.contains("tables of 3 weeks"), "{out}");
    for ago in 1..=3 {
        let name = format!("archive/{}.csv", week(ago));
        assert_eq!(
            std::fs::read(copy.join(&name)).unwrap(),
            std::fs::read(data.join(&name)).unwrap(),
            "{name} rebuilt from the NDJSON alone"
        );
    }
}

/// On S3 (moto): `clearcount merge --data s3://…` writes the tables beside
/// the archive, as the directory store does; read back from the bucket,
/// they sum to the NDJSON's totals; the server on the bucket lists them and
/// serves them with their length.
#[test]
fn tables_on_s3_match_the_ndjson() {
    let moto = Moto::start();
    moto.bucket("tables");
    let dir = TempDir::new("tables-s3");
    let config = publish_readme_config(&dir.0);
    let url = "s3://tables/telemetry";
    let env = moto.env();
    let server = serve(url, &config, &env);
    let reports: Vec<Report> = reports()
        .into_iter()
        .filter(|r| r.week == week(1))
        .collect();
    upload_all(&server.base, &reports);
    let out = merge(url, 1, &env);
    assert!(
        out.contains("80 reports in 1 weekly archive files"),
        "{out}"
    );

    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_bucket_name("tables")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetch = |key: &str| -> Vec<u8> {
        rt.block_on(async {
            let path = object_store::path::Path::from(format!("telemetry/{key}"));
            let r = s3.get(&path).await.unwrap_or_else(|e| panic!("{key}: {e}"));
            r.bytes().await.unwrap().to_vec()
        })
    };
    let copy = dir.0.join("from-s3");
    std::fs::create_dir_all(copy.join("archive")).unwrap();
    for ext in ["ndjson", "parquet", "csv"] {
        let key = format!("archive/{}.{ext}", week(1));
        std::fs::write(copy.join(&key), fetch(&key)).unwrap();
    }
    check_tables(&[&copy.display().to_string(), "1", "--exact"]);
    check_served_tables(&server.base, &week(1), fetch);
}
