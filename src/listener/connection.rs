//! One accepted HTTP connection: hyper's HTTP/1 server with upgrades, watched until it ends or
//! upgrades.
//!
//! A connection is in one of three phases, tracked by [`Activity`] from what its socket reads
//! and writes and from the requests its service runs:
//! - **awaiting a head**, from the connection's start, or from the first byte read after the
//!   previous request: the head must be complete within `header_read_timeout`;
//! - **busy**, from the head to the response's head: bounded by `request_timeout`, which
//!   answers 408 and closes (reading the body happens here, in the handler);
//! - **idle**, after a response, until a byte of the next request arrives: closed when no byte
//!   moved either way for `idle_timeout` (a kept-alive connection nobody uses, or a client
//!   that stopped reading the response being written to it).
//!
//! Lifecycle: [`Connection::serve`] runs on its own task until hyper finishes the connection,
//! a timeout closes it (dropping the connection closes the socket), or it upgrades. On upgrade
//! hyper hands the socket, still wrapped in [`Tracked`], to the WebSocket task, so the
//! per-source permit and the open-connections gauge follow it; the timeouts stop there, since
//! WebSocket sessions have their own pings and limits.

use super::{Closed, Limits, Metrics};
use admission::SourcePermit;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use protocol::{ErrorCode, Failure};
use signaling::transport::deadline::Stream;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tower::ServiceExt;

/// An accepted connection, admitted under the per-source cap.
pub(super) struct Connection {
    pub stream: TcpStream,
    pub remote: SocketAddr,
    pub permit: SourcePermit,
    pub app: Router,
    pub limits: Limits,
    pub metrics: Metrics,
}

impl Connection {
    /// Serves the connection; see the module docs. `finishing` turns true when the listener
    /// stops: finish the request in progress, then close. `_alive` tells the listener, by
    /// being dropped, that this connection has ended.
    pub(super) async fn serve(
        self,
        mut finishing: watch::Receiver<bool>,
        _alive: mpsc::Sender<Infallible>,
    ) {
        let Connection {
            stream,
            remote,
            permit,
            app,
            limits,
            metrics,
        } = self;
        let activity = Arc::new(Activity::new(Instant::now()));
        metrics.open.inc();
        let io = Tracked {
            stream: Stream::new(stream, limits.write),
            activity: activity.clone(),
            _permit: permit,
            _open: Open(metrics.open.clone()),
        };
        let service = {
            let activity = activity.clone();
            let metrics = metrics.clone();
            hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                let busy = Busy::start(activity.clone());
                let app = app.clone();
                let metrics = metrics.clone();
                async move {
                    let _busy = busy;
                    match tokio::time::timeout(limits.request, app.oneshot(request)).await {
                        Ok(Ok(response)) => Ok::<_, Infallible>(response),
                        Ok(Err(never)) => match never {},
                        Err(_) => {
                            metrics.closed(Closed::RequestTimeout);
                            Ok(too_slow())
                        }
                    }
                }
            })
        };
        let conn = http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let mut finishing_started = false;
        loop {
            let due = activity.due(&limits);
            let wake = due.map(|(at, _)| at);
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(error) = ended {
                        tracing::debug!(%remote, %error, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {}
                () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => {
                    if let Some((at, why)) = activity.due(&limits)
                        && at <= Instant::now()
                    {
                        metrics.closed(why);
                        tracing::debug!(%remote, reason = why.label(), "closing HTTP connection");
                        return;
                    }
                }
                _ = finishing.wait_for(|f| *f), if !finishing_started => {
                    finishing_started = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The 408 answer to a request over `request_timeout`; `Connection: close` makes hyper close
/// the connection after sending it.
fn too_slow() -> Response {
    let mut response = signaling::http::failure(
        StatusCode::REQUEST_TIMEOUT,
        Failure::new(
            ErrorCode::LimitExceeded,
            "the request took longer than server.request_timeout",
        ),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `head_since` when no head is awaited.
const NONE: u64 = u64::MAX;

/// What a connection's socket and service have done lately; see the module docs. Times are
/// milliseconds since `epoch`, in atomics because the socket wrapper outlives the watchdog
/// (it goes on inside an upgraded WebSocket) and must stay `Send`.
struct Activity {
    epoch: Instant,
    /// Last byte read or written, or the end of the last request.
    last_io: AtomicU64,
    /// Since when the connection awaits a request head, or [`NONE`].
    head_since: AtomicU64,
    /// A request is being handled.
    busy: AtomicBool,
    /// Wakes the watchdog when the phase changes, since that can bring its deadline forward.
    changed: Notify,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        Activity {
            epoch,
            last_io: AtomicU64::new(0),
            // The first head is awaited from the start: a client that sends nothing is closed
            // after `header_read_timeout`.
            head_since: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.epoch + Duration::from_millis(millis)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if !self.busy.load(Ordering::Relaxed) && self.head_since.load(Ordering::Relaxed) == NONE {
            self.head_since.store(now, Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection is due to close and why, in its current phase; `None` while a
    /// request is handled (its own timeout bounds it).
    fn due(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        match self.head_since.load(Ordering::Relaxed) {
            NONE => Some((
                self.at(self.last_io.load(Ordering::Relaxed)) + limits.idle,
                Closed::IdleTimeout,
            )),
            since => Some((self.at(since) + limits.header_read, Closed::HeaderTimeout)),
        }
    }
}

/// Marks a request as being handled, from its head until its response's head.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Busy {
        activity.busy.store(true, Ordering::Relaxed);
        activity.head_since.store(NONE, Ordering::Relaxed);
        activity.changed.notify_one();
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.last_io.store(activity.now(), Ordering::Relaxed);
        activity.busy.store(false, Ordering::Relaxed);
        activity.changed.notify_one();
    }
}

/// Counts a connection in `chorus_http_connections` until dropped.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The accepted socket, reporting progress to [`Activity`] and holding the connection's
/// per-source slot and gauge for as long as the socket lives.
struct Tracked {
    stream: Stream<TcpStream>,
    activity: Arc<Activity>,
    _permit: SourcePermit,
    _open: Open,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            request: Duration::from_secs(60),
            per_source: 1,
            write: Duration::from_secs(10),
        }
    }

    #[test]
    fn phases_decide_which_timeout_runs() {
        let t0 = Instant::now() - Duration::from_secs(100);
        let a = Arc::new(Activity::new(t0));
        // From the start the first head is awaited.
        assert_eq!(
            a.due(&limits()),
            Some((t0 + Duration::from_secs(10), Closed::HeaderTimeout))
        );
        // Handling a request: no connection timeout runs.
        let busy = Busy::start(a.clone());
        a.read();
        assert_eq!(a.due(&limits()), None);
        drop(busy);
        // After the response: idle, from the request's end.
        let (at, why) = a.due(&limits()).unwrap();
        assert_eq!(why, Closed::IdleTimeout);
        assert!(at > Instant::now() + Duration::from_secs(29));
        // A byte of the next request: its head is awaited, from now.
        a.read();
        let (at, why) = a.due(&limits()).unwrap();
        assert_eq!(why, Closed::HeaderTimeout);
        assert!(at <= Instant::now() + Duration::from_secs(10));
        // Later bytes of the same head do not extend it.
        let first = at;
        std::thread::sleep(Duration::from_millis(5));
        a.read();
        assert_eq!(a.due(&limits()).unwrap().0, first);
    }
}
