//! moto's S3-compatible server (`python3 -m pip install 'moto[server]'`,
//! installed by `.ci/run`), started on a free loopback port and killed on
//! drop. Without moto it panics with a message saying how to install it.

use super::{KillOnDrop, TempDir};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    pub endpoint: String,
    _child: KillOnDrop,
    _dir: TempDir,
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
        let dir = TempDir::new("moto");
        let log = dir.0.join("moto.log");
        for _attempt in 0..3 {
            let port = free_port();
            let child = Command::new("python3")
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.0.join("moto.err")).unwrap())
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
            std::fs::read_to_string(dir.0.join("moto.err")).unwrap_or_default()
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
