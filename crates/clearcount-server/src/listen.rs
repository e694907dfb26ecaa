//! The connection layer: accepts TCP connections and runs HTTP/1.1 on them
//! with hyper, under the [`Limits`]:
//!
//! - at most [`Limits::max_connections`] connections are served at once;
//!   one more is answered `503 Service Unavailable` with `Retry-After: 1`
//!   and closed, by a small separate pool of [`OVERFLOW`] tasks (past that,
//!   closed at once): the server never stalls on a full table;
//! - a client has [`Limits::header_timeout`] to send a request's headers,
//!   and a kept-alive connection closes after as long idle (slowloris);
//! - a response the client does not read for [`Limits::write_timeout`]
//!   ends the connection ([`Stall`]); the kernel queues at most
//!   [`UNSENT_MAX`] unsent bytes for a connection (Linux), so a client that
//!   does not read costs a few KiB, not a whole file in kernel memory;
//! - each request carries the connection's address as a [`Peer`] extension,
//!   for the rate limiter; it is never logged (nothing here logs a
//!   connection).
//!
//! No thread is held per connection: reading, writing and waiting are
//! async, and files are sent as the client reads them (see
//! [`crate::store::Store::open_async`]).

use super::limits::{Limits, Peer};
use super::metrics::Metrics;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections over the cap being answered `503` at once.
pub(crate) const OVERFLOW: usize = 256;

/// The most bytes a connection's socket holds unsent (`TCP_NOTSENT_LOWAT`,
/// Linux): a write waits once that many are queued. Without it the kernel
/// grows a socket's send buffer to megabytes, and a client that asks for
/// an archive file and never reads has the server read the whole file and
/// queue it in kernel memory (1,600 such clients: gigabytes, and the
/// processor time to read and copy them). It caps only what is not sent
/// yet, so it does not slow a client that reads, however far away.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNSENT_MAX: u32 = 16 * 1024;

/// How long a stopping server waits for the requests in flight.
const DRAIN_ON_STOP: Duration = Duration::from_secs(10);

/// The answer to a connection over the cap.
fn busy_response() -> Vec<u8> {
    let body = "too many connections; try again in a second\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         retry-after: 1\r\n\
         content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n\
         x-content-type-options: nosniff\r\n\
         referrer-policy: no-referrer\r\n\
         connection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The connection cap that fits the open-file limit (each connection is
/// one file descriptor; 64 are kept for the store and the rest).
fn connection_cap(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0
            && lim.rlim_cur != libc::RLIM_INFINITY
        {
            let fit = (lim.rlim_cur as usize)
                .saturating_sub(64 + OVERFLOW)
                .max(16);
            if fit < wanted {
                eprintln!(
                    "clearcount serve: the open-file limit ({}) allows {fit} connections, not {wanted}; raise it with ulimit -n",
                    lim.rlim_cur
                );
                return fit;
            }
        }
    }
    wanted.max(1)
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish (up to 10 s).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let cap = connection_cap(limits.max_connections);
    let conns = Arc::new(Semaphore::new(cap));
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .max_headers(64);
    let write_timeout = limits.write_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: pause a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(UNSENT_MAX);
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            let answered = overflow.clone().try_acquire_owned();
            metrics.connection_refused(answered.is_ok());
            if let Ok(p) = answered {
                tokio::spawn(async move {
                    busy(stream).await;
                    drop(p);
                });
            }
            continue;
        };
        let open = metrics.connection();
        let app = app.clone();
        let http = http.clone();
        let mut stop = stop_rx.clone();
        let ip = peer.ip();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(Peer(ip));
                let mut app = app.clone();
                tower_service::Service::call(&mut app, req)
            });
            let io = TokioIo::new(Stall::new(stream, write_timeout));
            let conn = http.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its permit back when it ends.
    let _ = tokio::time::timeout(DRAIN_ON_STOP, conns.acquire_many(cap as u32)).await;
    Ok(())
}

/// Answers a connection over the cap: reads what the client sent (briefly),
/// answers `503` with `Retry-After`, and closes.
async fn busy(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        let mut seen = Vec::new();
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(4).any(|w| w == b"\r\n\r\n") || seen.len() > 16 * 1024 {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&busy_response()).await?;
        stream.shutdown().await?;
        // Read what is left until the client closes, so that it gets the
        // answer rather than a reset.
        let mut total = 0;
        loop {
            let n = stream.read(&mut buf).await?;
            total += n;
            if n == 0 || total > 256 * 1024 {
                return io::Result::Ok(());
            }
        }
    })
    .await;
}

/// A stream whose writes fail with `TimedOut` once the peer has taken no
/// byte for `timeout`.
pub(crate) struct Stall<T> {
    inner: T,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Stall<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Stall<T> {
        Stall {
            inner,
            timeout,
            sleep: None,
        }
    }

    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data in time",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.sleep = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.sleep = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => {
                this.sleep = None;
                ready
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write the peer never takes fails after the timeout, not before
    /// (on tokio's paused clock: no real time passes); one it takes goes
    /// through.
    #[test]
    fn a_stalled_write_times_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, mut b) = tokio::io::duplex(1024);
            let mut s = Stall::new(a, Duration::from_millis(200));
            s.write_all(&[1u8; 1024]).await.unwrap();
            let started = tokio::time::Instant::now();
            let e = s.write_all(&[2u8; 10]).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut);
            assert_eq!(started.elapsed(), Duration::from_millis(200));
            let mut got = vec![0u8; 1024];
            b.read_exact(&mut got).await.unwrap();
            s.write_all(&[3u8; 10]).await.unwrap();
        });
    }
}
