//! The HTTP listener: our own accept loop over hyper, in place of `axum::serve`, so limits and
//! timeouts hold before any request is read or any token checked.
//!
//! What it adds to serving a router (why: `docs/adr/0040-http-listener-limits.md`):
//! - a cap on open TCP connections per source (`server.max_raw_connections_per_ip`), counted at
//!   accept; a connection over the cap is closed at once, unread, and counted in
//!   `chorus_http_connections_refused_total{reason="per_ip"}`. The slot is held by the socket
//!   itself, so an upgraded WebSocket or Socket.IO connection keeps counting while it lives;
//! - per connection, until it upgrades: `server.header_read_timeout`, `server.idle_timeout`
//!   and `server.request_timeout` (see the `connection` module), each close counted in
//!   `chorus_http_connections_closed_total{reason}`;
//! - back-off when `accept` fails for lack of descriptors or memory, logged at most once a
//!   second ([`admission::Backoff`]).
//!
//! Every request carries `ConnectInfo<SocketAddr>` like `into_make_service_with_connect_info`
//! gives, and `TCP_NODELAY` is set on every socket.
//!
//! Lifecycle of [`serve`]: accepts until `shutdown` resolves (the caller's drain runs inside
//! that future, so the listener keeps answering `/ready` with 503 while it drains), then stops
//! accepting, asks every connection still serving HTTP to finish its request and close, and
//! returns once they have. Upgraded connections are no longer its concern by then: signaling's
//! drain has closed them.

mod connection;

use admission::{Backoff, SourceLimiter};
use axum::Router;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Timeouts and caps of one listener, from `[server]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub request: Duration,
    pub per_source: u32,
    /// A write that makes no progress for this long fails and the socket is reset
    /// (`limits.write_timeout`): a peer that stops reading cannot pin what is queued for it.
    pub write: Duration,
}

impl Limits {
    pub fn from_config(config: &config::Config) -> Limits {
        let server = &config.server;
        Limits {
            header_read: server.header_read_timeout.get(),
            idle: server.idle_timeout.get(),
            request: server.request_timeout.get(),
            per_source: server.max_raw_connections_per_ip,
            write: config.limits.write_timeout.get(),
        }
    }
}

/// Why the listener closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    IdleTimeout,
    RequestTimeout,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::RequestTimeout => "request_timeout",
        }
    }
}

/// The listener's metrics; shared by the main and the metrics listener.
#[derive(Clone)]
pub struct Metrics {
    /// `chorus_http_connections`: TCP connections open, upgraded ones included.
    open: IntGauge,
    /// `chorus_http_connections_refused_total{reason}`.
    refused: IntCounterVec,
    /// `chorus_http_connections_closed_total{reason}`.
    closed: IntCounterVec,
    /// `chorus_http_accept_errors_total`.
    accept_errors: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            open: IntGauge::new(
                "chorus_http_connections",
                "TCP connections open on the HTTP listeners, WebSockets included",
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "chorus_http_connections_refused_total",
                    "TCP connections closed at accept, unread, by reason",
                ),
                &["reason"],
            )?,
            closed: IntCounterVec::new(
                Opts::new(
                    "chorus_http_connections_closed_total",
                    "HTTP connections closed by a timeout, by reason",
                ),
                &["reason"],
            )?,
            accept_errors: IntCounter::new(
                "chorus_http_accept_errors_total",
                "accept() calls on the HTTP listeners that failed",
            )?,
        };
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.closed.clone()))?;
        registry.register(Box::new(metrics.accept_errors.clone()))?;
        Ok(metrics)
    }

    fn closed(&self, why: Closed) {
        self.closed.with_label_values(&[why.label()]).inc();
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; see the module docs. `name` appears
/// in logs (`"HTTP"`, `"metrics"`).
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    app: Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let sources = SourceLimiter::new(limits.per_source);
    let mut backoff = Backoff::new(name);
    let (finish, finishing) = watch::channel(false);
    // Each connection task holds a sender; `recv` returns `None` once all have ended.
    let (alive, mut all_ended) = mpsc::channel::<Infallible>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(error) => {
                metrics.accept_errors.inc();
                if let Some(pause) = backoff.failed(&error, Instant::now()) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                continue;
            }
        };
        let permit = match sources.admit(remote.ip()) {
            Ok(permit) => permit,
            Err(over) => {
                metrics.refused.with_label_values(&["per_ip"]).inc();
                tracing::debug!(listener = name, source = %over.0, "over the per-source connection cap; closed");
                // Dropping the socket closes it before anything is read from it.
                drop(stream);
                continue;
            }
        };
        // Signaling sends small frames back to back (an ack, then an event): without
        // TCP_NODELAY Nagle's algorithm holds the second one for a delayed ACK, about 40 ms.
        let _ = stream.set_nodelay(true);
        let conn = connection::Connection {
            stream,
            remote,
            permit,
            app: app.clone(),
            limits,
            metrics: metrics.clone(),
        };
        tokio::spawn(conn.serve(finishing.clone(), alive.clone()));
    }
    drop(listener);
    let _ = finish.send(true);
    drop(alive);
    let _ = all_ended.recv().await;
}
