//! Helpers for the server's integration tests: temporary directories and
//! child processes killed on drop.

#![allow(dead_code)]

pub mod hostile;
pub mod publish;

#[allow(unused_imports)]
pub use publish::{PublishedConfig, publish, try_publish};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "clearcount-server-test-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bare HTTP/1.1 client over tokio, for what ureq does not do: choosing
/// the source address (any of 127.0.0.0/8), keeping many connections open,
/// reading slowly, and timing each request.
pub mod http {
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpSocket, TcpStream};

    /// A response, read whole.
    #[derive(Debug, Clone)]
    pub struct Response {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first header named `name` (any case).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
    }

    /// A TCP connection to `server` from `from` (a loopback address), or
    /// the default source.
    pub async fn connect(server: SocketAddr, from: Option<IpAddr>) -> io::Result<TcpStream> {
        let sock = TcpSocket::new_v4()?;
        if let Some(ip) = from {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let s = sock.connect(server).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// A kept-alive connection.
    pub struct Client {
        r: BufReader<TcpStream>,
    }

    impl Client {
        pub async fn connect(server: SocketAddr, from: Option<IpAddr>) -> io::Result<Client> {
            Ok(Client {
                r: BufReader::new(connect(server, from).await?),
            })
        }

        /// Sends one request and reads its response.
        pub async fn send(
            &mut self,
            method: &str,
            path: &str,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> io::Result<Response> {
            let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n");
            for (n, v) in headers {
                req.push_str(&format!("{n}: {v}\r\n"));
            }
            if method == "POST" || !body.is_empty() {
                req.push_str(&format!("content-length: {}\r\n", body.len()));
            }
            req.push_str("\r\n");
            let mut msg = req.into_bytes();
            msg.extend_from_slice(body);
            self.r.get_mut().write_all(&msg).await?;
            read_response(&mut self.r).await
        }

        pub async fn get(&mut self, path: &str) -> io::Result<Response> {
            self.send("GET", path, &[], b"").await
        }

        pub async fn post(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
            self.send("POST", path, &[("content-type", "application/json")], body)
                .await
        }
    }

    /// Reads one response (body by content-length, chunked, or to the
    /// end).
    pub async fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<Response> {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(len, 0);
            r.read_exact(&mut body).await?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
                let start = body.len();
                body.resize(start + n, 0);
                r.read_exact(&mut body[start..]).await?;
                line.clear();
                r.read_line(&mut line).await?;
                if n == 0 {
                    break;
                }
            }
        } else if status != 304 && status != 204 {
            r.read_to_end(&mut body).await?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A server in a child process (this test binary run again as
/// `child_server`), its output kept in `<dir>/server.out`, killed on drop.
pub struct ChildServer {
    pub addr: std::net::SocketAddr,
    pub pid: u32,
    pub out: PathBuf,
    _child: KillOnDrop,
}

impl ChildServer {
    /// Starts `child_server` with the data in `<dir>/data`, the config
    /// `<dir>/config.toml` (published with [`publish`]: its key
    /// `<dir>/config.pub`, its log `<dir>/log`), and `settings`
    /// (`name=value,...`, see [`child_main`]).
    pub fn start(dir: &std::path::Path, settings: &str) -> ChildServer {
        let out = dir.join("server.out");
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
            .env("CLEARCOUNT_TEST_CHILD_DIR", dir)
            .env("CLEARCOUNT_TEST_CHILD_SETTINGS", settings)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&out).unwrap(),
            ))
            .spawn()
            .unwrap();
        let pid = child.id();
        let child = KillOnDrop(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some((_, rest)) = text.split_once("CHILD-ADDR ") {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return ChildServer {
                    addr,
                    pid,
                    out,
                    _child: child,
                };
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child server did not start: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Resident memory now and at its peak, in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The TCP connections the server holds open now (its listener and
    /// any other socket aside), from `/proc`.
    pub fn connections(&self) -> usize {
        // The inodes of TCP sockets that are not listening.
        let mut tcp = std::collections::HashSet::new();
        for table in ["tcp", "tcp6"] {
            let text = std::fs::read_to_string(format!("/proc/{}/net/{table}", self.pid))
                .unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 && f[3] != "0A" {
                    tcp.insert(format!("socket:[{}]", f[9]));
                }
            }
        }
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| tcp.contains(l.to_string_lossy().as_ref()))
            })
            .count()
    }
}

/// The body of the `child_server` test: when `CLEARCOUNT_TEST_CHILD_DIR`
/// is set, runs a server until killed. Settings: `rate` (uploads per
/// minute), `burst`, `conns`, `upload_kib`, `header_ms`, `body_ms`,
/// `write_ms`, `merge_ms`, `min_reports`, `ip_header`.
pub fn child_main() {
    let Ok(dir) = std::env::var("CLEARCOUNT_TEST_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let settings = std::env::var("CLEARCOUNT_TEST_CHILD_SETTINGS").unwrap_or_default();
    let mut opts = clearcount_server::ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        data: dir.join("data").display().to_string(),
        config: Some(dir.join("config.toml")),
        public_key: Some(dir.join("config.pub")),
        merge_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let ms = |v: &str| std::time::Duration::from_millis(v.parse().unwrap());
    for kv in settings.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        let l = &mut opts.limits;
        match k {
            "rate" => l.uploads_per_minute = v.parse().unwrap(),
            "burst" => l.upload_burst = v.parse().unwrap(),
            "conns" => l.max_connections = v.parse().unwrap(),
            "upload_kib" => l.max_upload_bytes = v.parse::<usize>().unwrap() << 10,
            "header_ms" => l.header_timeout = ms(v),
            "body_ms" => l.body_timeout = ms(v),
            "write_ms" => l.write_timeout = ms(v),
            "ip_header" => l.client_ip_header = Some(v.to_owned()),
            "merge_ms" => opts.merge_interval = ms(v),
            "min_reports" => opts.min_reports = v.parse().unwrap(),
            _ => panic!("unknown child setting {k}"),
        }
    }
    clearcount_server::run_blocking(opts, |addr| {
        use std::io::Write;
        println!("CHILD-ADDR {addr}");
        let _ = std::io::stdout().flush();
    })
    .unwrap();
}
