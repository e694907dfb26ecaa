//! A TCP proxy that makes every request wait, as a remote object store's
//! round trip does: put in front of moto (which answers from this machine
//! in well under a millisecond), it lets the storage benchmark measure the
//! S3 store over a slow link through the public API alone. Each request
//! (the first bytes a client sends after the previous answer began) waits
//! the set latency before it is passed on; answers pass at once; every
//! connection has its own threads, so requests in flight at once wait at
//! once, as they would over a network.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub struct LatencyProxy {
    listener: Option<TcpListener>,
    /// `http://127.0.0.1:<port>`: where clients connect.
    pub endpoint: String,
    latency_us: Arc<AtomicU64>,
}

impl LatencyProxy {
    /// Binds a free loopback port (no latency yet, nothing forwarded until
    /// [`LatencyProxy::start`]).
    pub fn bind() -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        LatencyProxy {
            listener: Some(listener),
            endpoint: format!("http://127.0.0.1:{port}"),
            latency_us: Arc::default(),
        }
    }

    /// Forwards every connection to `upstream` from now on.
    pub fn start(&mut self, upstream: SocketAddr) {
        let listener = self.listener.take().expect("started twice");
        let latency = self.latency_us.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let latency = latency.clone();
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(upstream) {
                        relay(client, server, latency);
                    }
                });
            }
        });
    }

    /// The wait of every request from now on.
    pub fn set_latency(&self, d: Duration) {
        self.latency_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, server: TcpStream, latency: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    // True from a request's first bytes until its answer begins.
    let in_request = Arc::new(AtomicBool::new(false));
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let flag = in_request.clone();
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !flag.swap(true, Ordering::AcqRel) {
                let us = latency.load(Ordering::Relaxed);
                if us > 0 {
                    std::thread::sleep(Duration::from_micros(us));
                }
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        in_request.store(false, Ordering::Release);
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
}
