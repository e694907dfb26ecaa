//! moto's S3-compatible server (`python3 -m pip install 'moto[server]'`,
//! installed by `.ci/run`), started on a free loopback port and killed on
//! drop. Without moto it panics with a message saying how to install it.
//!
//! Test support only: the S3 store's unit tests use it, and the storage
//! benchmark includes this file (`#[path]`).

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running moto server, stopped on drop.
pub struct Moto {
    pub endpoint: String,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client that returns error statuses instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// moto with extra environment variables (e.g. to turn on its
    /// authentication checks).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server"])
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "moto's S3 server is not installed (python3 -c 'import moto.server' failed: {}); \
                 install it with: python3 -m pip install 'moto[server]'",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!(
                "python3 is needed to run moto's S3 server ({e}); \
                 install python3, then: python3 -m pip install 'moto[server]'"
            ),
        }
        let dir = tempfile::Builder::new()
            .prefix("clearcount-moto-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("moto.log");
        let err = dir.path().join("moto.err");
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .expect("cannot start python3 -m moto.server");
            let mut child = KillOnDrop(child);
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.0.try_wait() {
                    break; // port taken meanwhile, or moto broken: retry
                }
                if agent().get(&format!("{endpoint}/")).call().is_ok() {
                    return Moto {
                        endpoint,
                        _child: child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!(
            "moto's S3 server did not start: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
    }

    /// Creates a bucket (moto does not check signatures).
    pub fn bucket(&self, name: &str) {
        let r = agent()
            .put(&format!("{}/{name}", self.endpoint))
            .send_empty()
            .expect("cannot reach moto");
        assert_eq!(r.status().as_u16(), 200, "cannot create bucket {name}");
    }

    /// The settings a client needs, as environment variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}
