//! How the uploader speaks HTTP: the [`Transport`] trait and the built-in
//! transports.

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

/// One HTTP request of the uploader.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: Method,
    /// The URL, as the toolchain configured it (`https://…`; tests use
    /// `http://` on loopback).
    pub url: &'a str,
    /// The body and its content type, for a POST.
    pub body: Option<(&'a str, &'a [u8])>,
    /// The most time connecting may take.
    pub connect_timeout: Duration,
    /// The most time the whole request may take.
    pub total_timeout: Duration,
    /// The most bytes of the answer's body to read; a longer answer is an
    /// error ([`TransportError::BadAnswer`]).
    pub limit: u64,
}

/// The method of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Fetch (the config and its signature).
    Get,
    /// Send (a report).
    Post,
}

impl Method {
    /// `GET` or `POST`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// What the server answered: any status (the uploader decides what it
/// means) and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, at most [`Request::limit`] bytes.
    pub body: Vec<u8>,
}

/// Why a request got no answer. The uploader keeps the report and tries
/// again on a later day, whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No connection could be made (refused, no route, unknown host); the
    /// text says which.
    Unreachable(String),
    /// A timeout of the request passed.
    TimedOut,
    /// The server answered something that is not a usable HTTP answer (or
    /// one longer than the limit).
    BadAnswer(String),
    /// Anything else: TLS, the network, the transport itself.
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unreachable(why) => write!(f, "unreachable ({why})"),
            TransportError::TimedOut => f.write_str("timed out"),
            TransportError::BadAnswer(why) => write!(f, "bad answer: {why}"),
            TransportError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TransportError {}

/// Carries the uploader's HTTP requests.
///
/// The uploader makes three kinds of request, all from the background
/// child (or thread), never on the host's path: a GET of the signed config,
/// a GET of its signature, and the POST of a report. A transport carries
/// one request and hands back the status and the body of the answer; the
/// uploader decides everything else (what to fetch, what a status means,
/// what to keep).
///
/// | transport | what it costs the toolchain's binary | when to choose it |
/// |---|---|---|
/// | [`CurlTransport`] (the default) | nothing: it runs the platform's `curl` program (shipped with macOS, Windows 10 and later, and nearly every Linux system), which brings the platform's TLS and certificate store | most toolchains |
/// | your own `impl Transport` | nothing more, when it wraps an HTTP client the toolchain already links | a toolchain that already speaks HTTPS (or must work where `curl` is missing) |
/// | `UreqTransport` (features `ureq-rustls`, `ureq-native-tls`) | `ureq-rustls`: about 2.2 MB, self-contained (rustls, ring, Mozilla's roots); `ureq-native-tls`: about 0.65 MB, but it links the platform's TLS library (OpenSSL on Linux), which every start of the program then loads | a self-contained binary; or a toolchain that links OpenSSL anyway |
///
/// Every transport must: honour both timeouts of the [`Request`]; not
/// follow redirects; verify TLS certificates; read at most
/// [`Request::limit`] bytes of the answer's body (a longer answer is an
/// error); and never send anything but the request's body. A transport is
/// chosen with [`UploadSettings::with_transport`](super::UploadSettings::with_transport).
///
/// ```
/// use clearcount::upload::{Answer, Request, Transport, TransportError, UploadSettings};
/// /// A toolchain's own HTTP client, plugged in.
/// #[derive(Debug)]
/// struct Mine;
/// impl Transport for Mine {
///     fn send(&self, req: &Request<'_>) -> Result<Answer, TransportError> {
///         // ... use the HTTP client the toolchain already has ...
///         Err(TransportError::Unreachable(format!("{} is not reachable in this example", req.url)))
///     }
/// }
/// let s = UploadSettings::new("https://t.example.org/upload", "https://t.example.org/config.toml", "KEY", "POLICY")
///     .with_transport(Mine);
/// # let _ = s;
/// ```
pub trait Transport: Send + Sync + fmt::Debug {
    /// Sends one request and returns the answer, whatever its status.
    fn send(&self, req: &Request<'_>) -> Result<Answer, TransportError>;
}

/// The default transport: runs the platform's `curl` program, once per
/// request.
///
/// It costs the binary nothing (no HTTP or TLS code is linked) and costs
/// the program's start nothing (no TLS library is loaded): `curl` runs
/// only in the uploader's background child, at most once a day. It brings
/// the platform's TLS, certificate store and proxy settings
/// (`HTTPS_PROXY`). It is started with the user's `.curlrc` ignored (`-q`),
/// only the `http` and `https` protocols allowed, no redirects followed,
/// both timeouts, and the answer's size bounded; a report goes through its
/// standard input, never its command line.
///
/// Where `curl` is missing, every request fails as
/// [`TransportError::Other`] ("cannot run curl"), and reports wait on this
/// machine; a toolchain that must upload from such systems plugs in its
/// own [`Transport`].
#[derive(Debug, Clone)]
pub struct CurlTransport {
    program: std::ffi::OsString,
}

impl Default for CurlTransport {
    fn default() -> Self {
        CurlTransport::new()
    }
}

impl CurlTransport {
    /// Runs `curl`, found on the `PATH`.
    pub fn new() -> CurlTransport {
        CurlTransport::with_program("curl")
    }

    /// Runs this program instead (a path to a `curl`).
    pub fn with_program(program: impl Into<std::ffi::OsString>) -> CurlTransport {
        CurlTransport {
            program: program.into(),
        }
    }
}

/// Seconds for curl's timeout options (at least a millisecond: 0 means no
/// timeout to curl).
fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64().max(0.001))
}

impl Transport for CurlTransport {
    fn send(&self, req: &Request<'_>) -> Result<Answer, TransportError> {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(&self.program);
        // `-q` must come first: it makes curl ignore the user's .curlrc.
        cmd.args(["-q", "--silent", "--show-error", "--proto", "=http,https"])
            .args(["--user-agent", "clearcount", "--max-redirs", "0"])
            .arg("--connect-timeout")
            .arg(secs(req.connect_timeout))
            .arg("--max-time")
            .arg(secs(req.total_timeout))
            .arg("--max-filesize")
            .arg(req.limit.max(1).to_string())
            // The status, as exactly three digits after the body
            // (`000` when there was no answer).
            .args(["--output", "-", "--write-out", "%{http_code}"]);
        if let Some((content_type, _)) = req.body {
            cmd.args(["--request", "POST", "--data-binary", "@-"])
                .arg("--header")
                .arg(format!("Content-Type: {content_type}"))
                // No `Expect: 100-continue` round trip.
                .args(["--header", "Expect:"]);
        }
        cmd.arg("--url")
            .arg(req.url)
            .stdin(if req.body.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            TransportError::Other(format!(
                "cannot run {} ({e}): install curl, or build the program with a transport of its own",
                self.program.to_string_lossy()
            ))
        })?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportError::Other("cannot read curl's output".into()));
        };
        let stdin = child.stdin.take();
        let body = req.body.map(|(_, b)| b).unwrap_or_default();
        let keep = req.limit.saturating_add(3);
        let (mut out, too_long, err) = std::thread::scope(|s| {
            if let Some(mut stdin) = stdin {
                s.spawn(move || {
                    let _ = stdin.write_all(body);
                });
            }
            let err = s.spawn(move || {
                let mut e = Vec::new();
                let _ = (&mut stderr).take(4096).read_to_end(&mut e);
                e
            });
            let mut out = Vec::new();
            let _ = (&mut stdout).take(keep + 1).read_to_end(&mut out);
            let too_long = out.len() as u64 > keep;
            if too_long {
                let _ = child.kill();
            }
            (out, too_long, err.join().unwrap_or_default())
        });
        let status = child
            .wait()
            .map_err(|e| TransportError::Other(format!("curl: {e}")))?;
        if too_long {
            return Err(answer_too_long(req.limit));
        }
        let code = status.code();
        let said = String::from_utf8_lossy(&err);
        let said = said.trim().trim_start_matches("curl: ");
        match code {
            Some(0) => {}
            // Could not resolve the proxy or the host; could not connect.
            Some(5..=7) => return Err(TransportError::Unreachable(said.to_string())),
            Some(28) => return Err(TransportError::TimedOut),
            Some(63) => return Err(answer_too_long(req.limit)),
            // Weird or empty answers, or a broken connection while reading.
            Some(1 | 8 | 52 | 56) => return Err(TransportError::BadAnswer(said.to_string())),
            _ => {
                return Err(TransportError::Other(if said.is_empty() {
                    format!("curl failed ({status})")
                } else {
                    format!("curl: {said}")
                }));
            }
        }
        let n = out.len().saturating_sub(3);
        let status = std::str::from_utf8(&out[n..])
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..600).contains(s))
            .ok_or_else(|| TransportError::BadAnswer("no HTTP status".into()))?;
        out.truncate(n);
        Ok(Answer { status, body: out })
    }
}

fn answer_too_long(limit: u64) -> TransportError {
    TransportError::BadAnswer(format!("the answer is longer than {limit} bytes"))
}

/// A built-in transport on the `ureq` HTTP client, linked into the
/// program: features `ureq-rustls` (rustls with Mozilla's root
/// certificates, a self-contained binary, about 2.2 MB) and
/// `ureq-native-tls` (the platform's TLS and certificate store: OpenSSL on
/// Linux, linked dynamically and loaded at every start of the program;
/// Security.framework on macOS, SChannel on Windows).
#[cfg(any(feature = "ureq-rustls", feature = "ureq-native-tls"))]
#[derive(Debug, Clone)]
pub struct UreqTransport {
    provider: ureq::tls::TlsProvider,
}

#[cfg(any(feature = "ureq-rustls", feature = "ureq-native-tls"))]
impl UreqTransport {
    /// rustls, with Mozilla's root certificates built in (feature
    /// `ureq-rustls`).
    #[cfg(feature = "ureq-rustls")]
    pub fn rustls() -> UreqTransport {
        UreqTransport {
            provider: ureq::tls::TlsProvider::Rustls,
        }
    }

    /// The platform's TLS and its certificate store (feature
    /// `ureq-native-tls`).
    #[cfg(feature = "ureq-native-tls")]
    pub fn native_tls() -> UreqTransport {
        UreqTransport {
            provider: ureq::tls::TlsProvider::NativeTls,
        }
    }

    fn agent(&self, req: &Request<'_>) -> ureq::Agent {
        let roots = match self.provider {
            ureq::tls::TlsProvider::NativeTls => ureq::tls::RootCerts::PlatformVerifier,
            _ => ureq::tls::RootCerts::WebPki,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(self.provider)
            .root_certs(roots)
            .build();
        let cfg = ureq::Agent::config_builder()
            .timeout_connect(Some(req.connect_timeout))
            .timeout_global(Some(req.total_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("clearcount")
            .tls_config(tls)
            .build();
        ureq::Agent::new_with_config(cfg)
    }
}

#[cfg(any(feature = "ureq-rustls", feature = "ureq-native-tls"))]
impl Transport for UreqTransport {
    fn send(&self, req: &Request<'_>) -> Result<Answer, TransportError> {
        let agent = self.agent(req);
        let resp = match req.body {
            None => agent.get(req.url).call(),
            Some((content_type, body)) => agent
                .post(req.url)
                .header("Content-Type", content_type)
                .send(body),
        };
        let mut resp = resp.map_err(|e| ureq_error(&e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(req.limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => answer_too_long(req.limit),
                e => ureq_error(&e),
            })?;
        Ok(Answer { status, body })
    }
}

#[cfg(any(feature = "ureq-rustls", feature = "ureq-native-tls"))]
fn ureq_error(e: &ureq::Error) -> TransportError {
    match e {
        ureq::Error::Timeout(_) => TransportError::TimedOut,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            TransportError::Unreachable(e.to_string())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportError::Unreachable("connection refused".into())
        }
        ureq::Error::Io(io) => TransportError::Other(format!("network error: {io}")),
        other => TransportError::BadAnswer(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    /// Answers one request on loopback with `status` and `body`; returns
    /// the base URL and a handle giving the request's body.
    fn serve_once(status: u16, body: Vec<u8>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (conn, _) = l.accept().unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut got = vec![0; len];
            r.read_exact(&mut got).unwrap();
            let mut conn = conn;
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
            got
        });
        (base, h)
    }

    fn req<'a>(url: &'a str, body: Option<&'static [u8]>, limit: u64) -> Request<'a> {
        Request {
            method: if body.is_some() {
                Method::Post
            } else {
                Method::Get
            },
            url,
            body: body.map(|b| ("application/json", b)),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            limit,
        }
    }

    fn transports() -> Vec<Box<dyn Transport>> {
        #[allow(unused_mut)]
        let mut v: Vec<Box<dyn Transport>> = vec![Box::new(CurlTransport::new())];
        #[cfg(feature = "ureq-rustls")]
        v.push(Box::new(UreqTransport::rustls()));
        #[cfg(feature = "ureq-native-tls")]
        v.push(Box::new(UreqTransport::native_tls()));
        v
    }

    #[test]
    fn get_post_status_and_limits() {
        for t in transports() {
            let (base, h) = serve_once(200, b"config text".to_vec());
            let a = t.send(&req(&format!("{base}/c"), None, 100)).unwrap();
            assert_eq!(
                (a.status, a.body.as_slice()),
                (200, &b"config text"[..]),
                "{t:?}"
            );
            h.join().unwrap();

            let (base, h) = serve_once(422, b"refused".to_vec());
            let a = t.send(&req(&base, Some(b"{\"a\":1}"), 100)).unwrap();
            assert_eq!(
                (a.status, a.body.as_slice()),
                (422, &b"refused"[..]),
                "{t:?}"
            );
            assert_eq!(h.join().unwrap(), b"{\"a\":1}", "{t:?}");

            let (base, h) = serve_once(200, vec![b'x'; 5000]);
            let e = t.send(&req(&base, None, 100)).unwrap_err();
            assert!(matches!(e, TransportError::BadAnswer(_)), "{t:?}: {e:?}");
            let _ = h.join();

            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let e = t
                .send(&req(&format!("http://127.0.0.1:{port}/"), None, 100))
                .unwrap_err();
            assert!(matches!(e, TransportError::Unreachable(_)), "{t:?}: {e:?}");
        }
    }

    #[test]
    fn missing_curl_is_an_error_not_a_panic() {
        let t = CurlTransport::with_program("/nonexistent/curl");
        let e = t.send(&req("http://127.0.0.1:1/", None, 10)).unwrap_err();
        assert!(
            matches!(&e, TransportError::Other(m) if m.contains("cannot run")),
            "{e:?}"
        );
    }
}
