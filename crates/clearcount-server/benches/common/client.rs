//! A minimal blocking HTTP/1.1 keep-alive client for the server
//! benchmarks: one request at a time, the answer's status and body read
//! whole (by `Content-Length`), nothing else. Included with `#[path]`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// An answer: its status, the headers asked for, the body.
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// `POST /upload` with `body`; the status.
    pub fn post(&mut self, body: &[u8]) -> u16 {
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes()).unwrap();
        self.writer.write_all(body).unwrap();
        self.answer().status
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> Answer {
        let head = format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n");
        self.writer.write_all(head.as_bytes()).unwrap();
        self.answer()
    }

    fn answer(&mut self) -> Answer {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        let mut etag = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("etag") {
                    etag = Some(v.trim().to_owned());
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        Answer { status, etag, body }
    }
}
