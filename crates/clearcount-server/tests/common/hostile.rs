//! Hostile clients in a process of their own, as an attacker's machine
//! would hold them: the load test (`tests/load.rs`) and the load benchmark
//! (`benches/load.rs`) run this same code in a child process (their own
//! binary run again with [`ENV`] set), so that the server shares the
//! processors with them as it would with any other program, and nothing of
//! theirs runs on the server's runtime.
//!
//! Three kinds of connection ([`Mix`]):
//!
//! - **idle**: connects and sends nothing (slowloris);
//! - **trickling**: sends a request header one byte every 500 ms, never
//!   ending it (slowloris);
//! - **stalled**: asks for an archive file with a 4 KiB receive buffer,
//!   reads the status line, then never reads again (the server's answer
//!   stops when the buffers are full).
//!
//! Until the parent writes `calm`, a connection the server closes is
//! opened again at once, so the server sees the same number all along.
//! Once calm, nothing is opened again and nothing is closed by this
//! process: each connection stays until the server cuts it. On `drain`,
//! the stalled readers read what is left of their answer, to its end, and
//! count whether it was whole or cut short. Every 100 ms the child prints
//! one line of counts (see [`Counts`]); it exits when its standard input
//! closes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The environment variable that makes a test or bench binary the hostile
/// process: `<server addr> <idle> <trickling> <stalled> <file path>`.
pub const ENV: &str = "CLEARCOUNT_HOSTILE";

/// How many connections of each kind, and what the stalled ones ask for.
#[derive(Debug, Clone)]
pub struct Mix {
    pub idle: usize,
    pub trickle: usize,
    pub stalled: usize,
    /// The path the stalled readers GET (`/data/<week>.ndjson`).
    pub file: String,
}

impl Mix {
    pub fn total(&self) -> usize {
        self.idle + self.trickle + self.stalled
    }
}

/// What the hostile process saw, as of its last line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections open now, per kind (idle, trickling, stalled).
    pub open: [usize; 3],
    /// Connections the server closed (found closed by a read or a write),
    /// idle and trickling.
    pub cut: [usize; 2],
    /// Stalled readers whose request was answered `200` (before they
    /// stopped reading).
    pub answered: usize,
    /// Answers other than `200` to a stalled reader (`503` when over the
    /// cap).
    pub refused: usize,
    /// Connections that could not be made (retried after 100 ms).
    pub connect_errors: usize,
    /// Stalled readers that read their answer to its end after `drain`:
    /// whole (the full `Content-Length`), or cut short by the server.
    pub whole: usize,
    pub cut_short: usize,
    /// The most bytes of an answer one stalled reader got in all, its first
    /// read and its drain together: what the server had handed the kernel
    /// for a client that did not read.
    pub most_received: usize,
}

impl Counts {
    pub fn held(&self) -> usize {
        self.open.iter().sum()
    }

    fn line(&self) -> String {
        format!(
            "counts {} {} {} {} {} {} {} {} {} {} {}",
            self.open[0],
            self.open[1],
            self.open[2],
            self.cut[0],
            self.cut[1],
            self.answered,
            self.refused,
            self.connect_errors,
            self.whole,
            self.cut_short,
            self.most_received
        )
    }

    fn parse(line: &str) -> Option<Counts> {
        let v: Vec<usize> = line
            .strip_prefix("counts ")?
            .split_whitespace()
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 11).then(|| Counts {
            open: [v[0], v[1], v[2]],
            cut: [v[3], v[4]],
            answered: v[5],
            refused: v[6],
            connect_errors: v[7],
            whole: v[8],
            cut_short: v[9],
            most_received: v[10],
        })
    }
}

/// The hostile process, seen from its parent; killed on drop.
pub struct Hostile {
    child: Child,
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<Counts>>,
    pub mix: Mix,
}

impl Hostile {
    /// Starts `exe args` (this binary, with the arguments that make it run
    /// [`child_main`]) as the hostile process against `server`.
    pub fn start(exe_args: &[&str], server: SocketAddr, mix: &Mix) -> Hostile {
        let spec = format!(
            "{server} {} {} {} {}",
            mix.idle, mix.trickle, mix.stalled, mix.file
        );
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(exe_args)
            .env(ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the hostile process");
        let stdout = child.stdout.take().unwrap();
        let latest = Arc::new(Mutex::new(Counts::default()));
        let l = latest.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(c) = Counts::parse(&line) {
                    *l.lock().unwrap() = c;
                }
            }
        });
        Hostile {
            stdin: child.stdin.take(),
            child,
            latest,
            mix: mix.clone(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The counts of the last line the process printed.
    pub fn counts(&self) -> Counts {
        *self.latest.lock().unwrap()
    }

    /// Waits (polling, up to `limit`) until `done` holds for the counts;
    /// the last counts seen, and whether `done` held.
    pub fn wait_for(&self, limit: Duration, done: impl Fn(&Counts) -> bool) -> (Counts, bool) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let c = self.counts();
            if done(&c) {
                return (c, true);
            }
            if std::time::Instant::now() > deadline {
                return (c, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// From now on, no connection is opened again; each stays open until
    /// the server closes it.
    pub fn calm(&mut self) {
        self.tell("calm");
    }

    /// The stalled readers read their answers to the end (see
    /// [`Counts::whole`]).
    pub fn drain(&mut self) {
        self.tell("drain");
    }

    fn tell(&mut self, what: &str) {
        if let Some(s) = &mut self.stdin {
            writeln!(s, "{what}").unwrap();
            s.flush().unwrap();
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hostile process's body: when [`ENV`] is set, opens the
/// connections and keeps them until its standard input closes, then exits
/// the process; otherwise returns at once.
pub fn child_main() {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    // 1,600 connections: more than a soft limit of 1,024 allows.
    clearcount_server::raise_open_file_limit();
    let f: Vec<&str> = spec.split_whitespace().collect();
    let addr: SocketAddr = f[0].parse().unwrap();
    let mix = Mix {
        idle: f[1].parse().unwrap(),
        trickle: f[2].parse().unwrap(),
        stalled: f[3].parse().unwrap(),
        file: f[4].to_owned(),
    };
    let state = Arc::new(State::default());
    let s = state.clone();
    // `calm` on standard input; its end ends the process.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line.as_deref() {
                Ok("calm") => s.calm.store(true, Ordering::SeqCst),
                Ok("drain") => {
                    s.drain.send_replace(true);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
    let s = state.clone();
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        loop {
            if writeln!(out, "{}", s.counts().line())
                .and_then(|()| out.flush())
                .is_err()
            {
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // One thread: an attacker's process spends little to hold many
    // connections.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for kind in [Kind::Idle, Kind::Trickle, Kind::Stalled] {
            let n = match kind {
                Kind::Idle => mix.idle,
                Kind::Trickle => mix.trickle,
                Kind::Stalled => mix.stalled,
            };
            for _ in 0..n {
                tasks.push(tokio::spawn(hold(
                    addr,
                    kind,
                    mix.file.clone(),
                    state.clone(),
                )));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        // Calm, and every connection cut: wait for the end of input.
        std::future::pending::<()>().await;
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle = 0,
    Trickle = 1,
    Stalled = 2,
}

#[derive(Default)]
struct State {
    open: [AtomicUsize; 3],
    cut: [AtomicUsize; 2],
    answered: AtomicUsize,
    refused: AtomicUsize,
    connect_errors: AtomicUsize,
    whole: AtomicUsize,
    cut_short: AtomicUsize,
    most_received: AtomicUsize,
    calm: AtomicBool,
    drain: tokio::sync::watch::Sender<bool>,
}

impl State {
    fn counts(&self) -> Counts {
        let l = |a: &AtomicUsize| a.load(Ordering::SeqCst);
        Counts {
            open: [l(&self.open[0]), l(&self.open[1]), l(&self.open[2])],
            cut: [l(&self.cut[0]), l(&self.cut[1])],
            answered: l(&self.answered),
            refused: l(&self.refused),
            connect_errors: l(&self.connect_errors),
            whole: l(&self.whole),
            cut_short: l(&self.cut_short),
            most_received: l(&self.most_received),
        }
    }
}

/// One hostile connection, opened again whenever the server closes it
/// (until calm). A stalled reader, once answered, does not read again
/// until told to drain, so it does not learn of a cut before: it stays
/// counted as open.
async fn hold(addr: SocketAddr, kind: Kind, file: String, state: Arc<State>) {
    loop {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if kind == Kind::Stalled {
            sock.set_recv_buffer_size(4096).unwrap();
        }
        let mut s = match sock.connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                state.connect_errors.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        state.open[kind as usize].fetch_add(1, Ordering::SeqCst);
        match kind {
            Kind::Idle => {
                let mut b = [0u8; 64];
                while matches!(s.read(&mut b).await, Ok(n) if n > 0) {}
            }
            Kind::Trickle => {
                let head = b"POST /upload HTTP/1.1\r\nx-slow: ";
                let mut sent = 0usize;
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let byte = head.get(sent).copied().unwrap_or(b'a');
                    if s.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
            }
            Kind::Stalled => {
                let req = format!("GET {file} HTTP/1.1\r\nhost: t\r\n\r\n");
                let mut head = [0u8; 12];
                let ok = s.write_all(req.as_bytes()).await.is_ok()
                    && s.read_exact(&mut head).await.is_ok();
                if ok && &head == b"HTTP/1.1 200" {
                    state.answered.fetch_add(1, Ordering::SeqCst);
                    // Read nothing more until told to drain; never close.
                    let _ = state.drain.subscribe().wait_for(|d| *d).await;
                    let (whole, read) = read_to_end(&mut s).await;
                    let n = if whole {
                        &state.whole
                    } else {
                        &state.cut_short
                    };
                    n.fetch_add(1, Ordering::SeqCst);
                    state
                        .most_received
                        .fetch_max(head.len() + read, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                state.refused.fetch_add(1, Ordering::SeqCst);
            }
        }
        state.open[kind as usize].fetch_sub(1, Ordering::SeqCst);
        if kind != Kind::Stalled {
            state.cut[kind as usize].fetch_add(1, Ordering::SeqCst);
        }
        if state.calm.load(Ordering::SeqCst) {
            // Keep the socket's end to ourselves: it is closed already.
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the rest of an answer whose first 12 bytes were read, to the
/// end of the connection: whether its body was whole (as long as its
/// `Content-Length` says), and the bytes read.
async fn read_to_end(s: &mut tokio::net::TcpStream) -> (bool, usize) {
    let mut head = Vec::new();
    let mut body = None::<(usize, usize)>; // (declared, read)
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n;
        match &mut body {
            Some((_, read)) => *read += n,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
                    let declared = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(usize::MAX);
                    body = Some((declared, head.len() - end - 4));
                }
            }
        }
    }
    (body.is_some_and(|(declared, read)| read == declared), total)
}
