//! Headless Chromium (Debian's `chromium`, installed by `.ci/run`) for the
//! tests of pages: the DOM it builds, screenshots, and what the pages'
//! Content-Security-Policy made it block.

use std::path::PathBuf;
use std::process::Command;

/// The Chromium executable; a missing one fails the test with the line
/// that installs it.
pub fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(c).exists() {
            return c.into();
        }
    }
    panic!("Chromium is not installed: `apt-get install chromium` (.ci/run does it)");
}

/// Runs headless Chromium with the flags this machine needs.
pub fn browse(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // The console (where CSP violations are reported) on stderr.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

/// The lines of Chromium's console that report something the page's
/// Content-Security-Policy blocked.
pub fn csp_violations(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Content-Security-Policy"))
        .map(str::to_owned)
        .collect()
}

/// Serves `html` with the header `Content-Security-Policy: policy` to
/// every request on a loopback port (on a thread, until the test ends);
/// returns its URL.
pub fn serve_once_with_policy(html: String, policy: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/charts", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-security-policy: {policy}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                html.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(html.as_bytes());
        }
    });
    url
}
