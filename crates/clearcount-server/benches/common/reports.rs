//! What both server benchmarks (`server.rs`, `storage.rs`) upload and
//! merge, and how they run a server: the config, the reports, a server
//! in-process on any data store (`serve_with_shutdown`), and clients that
//! upload over loopback. Included by each with `#[path]`.

#![allow(dead_code)]

/// Publishing the config (signed, in its config log), as the tests do.
#[path = "../../tests/common/publish.rs"]
pub mod publish;

use clearcount_protocol::report::{ProgramReport, Report};
use clearcount_server::ServerOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The collection config: every report and counter is kept.
pub const CONFIG: &str = r#"
version = 1
sample_rate = 1.0
[[program]]
name = "tool"
versions = ["1.*"]
[[program.counter]]
name = "tool/command:{build,test,run,fmt,doc}"
rate = 1.0
[[program.counter]]
name = "tool/flag:{verbose,quiet,json}"
rate = 1.0
"#;

/// The collection config of the tables benchmark: builds of any version
/// 1.x, system and architecture, and a stack counter.
pub const TABLES_CONFIG: &str = r#"
version = 1
sample_rate = 1.0
[[program]]
name = "tool"
versions = ["1.*"]
[[program.counter]]
name = "tool/command:{build,test,run,fmt,doc}"
rate = 1.0
[[program.counter]]
name = "tool/flag:{verbose,quiet,json}"
rate = 1.0
[[program.counter]]
name = "tool/crash"
rate = 1.0
depth = 8
"#;

/// Report number `i` of `week` for the tables benchmark: one of 60 builds
/// (10 versions, 3 systems, 2 architectures), its commands and flags, and
/// in one report of four a crash stack, one of 200 (the first ones far
/// more often). Its X is distinct for every `i`.
pub fn varied_report(i: u64, week: &str) -> Report {
    let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let version = format!("1.{}", h % 10);
    let os = ["linux", "macos", "windows"][(h >> 8) as usize % 3];
    let arch = ["x86_64", "aarch64"][(h >> 16) as usize % 2];
    let mut p = ProgramReport::new("tool", &version, os, arch);
    let cmds = ["build", "test", "run", "fmt", "doc"];
    // Every report ran a command (else nothing of it would be kept).
    p.counters.insert("tool/command:build".into(), 1 + h % 3);
    for (k, c) in cmds.iter().enumerate() {
        if (h >> (20 + k)) & 1 == 1 {
            p.counters
                .insert(format!("tool/command:{c}"), 1 + (h >> (30 + k)) % 20);
        }
    }
    for (k, f) in ["verbose", "quiet", "json"].iter().enumerate() {
        if (h >> (40 + k)).is_multiple_of(3) {
            p.counters.insert(format!("tool/flag:{f}"), 1);
        }
    }
    if (h >> 50).is_multiple_of(4) {
        // Roughly Zipf: stack s with weight 1/(s+1).
        let s = (((h >> 52) % 1000) as f64 / 1000.0 * 5.3).exp() as u64 % 200;
        p.stacks.insert(
            format!(
                "tool/crash\ntool::step{s}:+{}\ntool::run:+4\ntool::main:+2",
                s % 17
            ),
            1,
        );
    }
    Report {
        week: week.to_owned(),
        x: (i as f64 + 0.5) / (1u64 << 40) as f64,
        config: 1,
        programs: vec![p],
    }
}

/// An integer setting from the environment.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The week that started seven days ago (accepted by the server).
pub fn week() -> String {
    (chrono::Utc::now().date_naive() - chrono::Duration::days(7))
        .format("%Y-%m-%d")
        .to_string()
}

/// Report number `i` of `week`. Its X is distinct for every `i` below
/// 2^40, so every report is a new one (a write, never a duplicate).
pub fn report(i: u64, week: &str) -> Report {
    let mut p = ProgramReport::new("tool", "1.4.0", "linux", "x86_64");
    let cmds = ["build", "test", "run", "fmt", "doc"];
    p.counters.insert(
        format!("tool/command:{}", cmds[(i % 5) as usize]),
        1 + i % 7,
    );
    p.counters.insert("tool/command:build".into(), 3);
    p.counters.insert("tool/flag:verbose".into(), i % 3);
    Report {
        week: week.to_owned(),
        x: (i as f64 + 0.5) / (1u64 << 40) as f64,
        config: 1,
        programs: vec![p],
    }
}

/// A fresh, empty directory for one benchmark run.
pub fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("clearcount-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// A server running in-process on its own runtime, on `data` (a directory
/// or `s3://bucket/prefix`), merging only at start and when stopped.
pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Server {
    pub fn start(data: &str, config: &Path) -> Server {
        let opts = ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            data: data.to_owned(),
            config: Some(config.to_path_buf()),
            // Published with `publish::publish`: the key beside the config.
            public_key: Some(config.with_file_name("config.pub")),
            merge_interval: Duration::from_secs(3600),
            // Every client of a bench is 127.0.0.1.
            limits: clearcount_server::Limits {
                uploads_per_minute: 0,
                ..Default::default()
            },
            ..ServerOptions::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(clearcount_server::serve_with_shutdown(
            opts,
            Some(ready_tx),
            async {
                let _ = stop_rx.await;
            },
        ));
        let addr = match rt.block_on(ready_rx) {
            Ok(a) => a,
            Err(_) => panic!(
                "the server on {data} did not start: {:?}",
                rt.block_on(task).map(|r| r.err())
            ),
        };
        Server {
            addr,
            base: format!("http://{addr}"),
            stop: Some(stop_tx),
            task: Some(task),
            rt: Some(rt),
        }
    }

    /// Stops the server and waits until it is done (it merges the weeks it
    /// received reports for before it returns); the time that took.
    pub fn stop(mut self) -> Duration {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let (Some(rt), Some(task)) = (self.rt.take(), self.task.take()) {
            rt.block_on(task)
                .expect("server task panicked")
                .expect("server failed");
        }
        t.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.rt.is_some() {
            self.shutdown();
        }
    }
}

/// An HTTP client that keeps its connections alive and returns error
/// statuses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Uploads the reports numbered `next`, `next + 1`, … below `end` to
/// `base`, from one thread per agent; every one must be stored (201).
pub fn upload(agents: &[ureq::Agent], base: &str, next: &AtomicU64, end: u64, week: &str) {
    upload_with(agents, base, next, end, week, report)
}

/// [`upload`], the reports made by `make`.
pub fn upload_with(
    agents: &[ureq::Agent],
    base: &str,
    next: &AtomicU64,
    end: u64,
    week: &str,
    make: fn(u64, &str) -> Report,
) {
    std::thread::scope(|s| {
        for a in agents {
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break;
                    }
                    let r = a
                        .post(&format!("{base}/upload"))
                        .content_type("application/json")
                        .send(&make(i, week).to_bytes())
                        .expect("upload failed");
                    assert_eq!(r.status().as_u16(), 201, "upload {i} not stored");
                }
            });
        }
    });
}

/// Stores `n` reports (numbered from `first`) in `data` through a server
/// started for that, and stops it: the input of a merge.
pub fn fill(data: &str, config: &Path, first: u64, n: u64, week: &str) {
    fill_with(data, config, first, n, week, report)
}

/// [`fill`], the reports made by `make`.
pub fn fill_with(
    data: &str,
    config: &Path,
    first: u64,
    n: u64,
    week: &str,
    make: fn(u64, &str) -> Report,
) {
    let server = Server::start(data, config);
    let agents: Vec<ureq::Agent> = (0..4).map(|_| agent()).collect();
    upload_with(
        &agents,
        &server.base,
        &AtomicU64::new(first),
        first + n,
        week,
        make,
    );
    server.stop();
}
