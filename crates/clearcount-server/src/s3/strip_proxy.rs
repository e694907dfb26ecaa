//! An S3-compatible store that ignores conditional writes, for tests: a
//! small HTTP proxy on a free loopback port in front of a real one (moto),
//! which drops the `If-Match` and `If-None-Match` headers of every request,
//! so a conditional `PutObject` is answered 200 whatever is there — what
//! Garage 2.5 does. One request per connection (the proxy asks for
//! `Connection: close`); request bodies are sent with a `Content-Length`.
//!
//! Test support only: the race tests use it, and `clearcount`'s tests
//! include this file (`#[path]`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The proxy; it stops accepting connections when dropped.
pub struct StripProxy {
    /// `http://127.0.0.1:PORT`, to use as the store's endpoint.
    pub endpoint: String,
    /// Conditional headers dropped so far.
    pub dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for StripProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

impl StripProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> StripProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), dropped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (up, d) = (upstream.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, &up, &d);
                });
            }
        });
        StripProxy {
            endpoint,
            dropped,
            stop,
        }
    }
}

/// One request: its head without the conditional headers, its body, then
/// the upstream's whole answer.
fn relay(client: TcpStream, upstream: &str, dropped: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    let mut length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if first {
            head.push_str(&line);
            first = false;
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "if-match" | "if-none-match" => {
                dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            "connection" => continue,
            "content-length" => {
                length = line
                    .split_once(':')
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
        head.push_str(&line);
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut client = client;
    std::io::copy(&mut up, &mut client)?;
    client.shutdown(std::net::Shutdown::Both)
}
