//! Chorus signaling: authenticated sessions, presence, ringing calls and P2P relay.
//!
//! - [`auth`]: JWT verification with the algorithm fixed by configuration.
//! - [`hub`]: the sans-IO core owning sessions, presence and calls.
//! - [`driver`]: the tokio task that owns the hub and routes its output to connections.
//! - [`session`]: the transport-agnostic per-connection pipeline (rate limit, parse, dispatch).
//! - [`transport`]: the raw WebSocket (`/ws`) and Socket.IO (`/socket.io/`) adapters.
//! - [`http`]: the REST endpoints (presence, ICE servers).
//! - [`whip`]: WHIP ingest (RFC 9725): an encoder publishes into a room over HTTP.
//!
//! [`Signaling`] ties them together and builds the router the binary serves.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod driver;
pub mod extension;
pub mod http;
pub mod hub;
pub mod ice;
pub mod lifecycle;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod resume;
pub mod revocation;
pub mod session;
pub mod transport;
pub mod whip;

use auth::{Authenticator, Identity, TokenTerms};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use driver::HubHandle;
use ice::IceServers;
use limits::{ConnectionLimiter, ConnectionPermit, Refusal};
use metrics::Metrics;
use protocol::{ErrorCode, Failure};
use session::SessionLimits;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The signaling service of one process.
///
/// Lifecycle: [`Signaling::new`] spawns the hub; [`Signaling::router`] serves it; on shutdown
/// [`Signaling::drain`] refuses new connections and calls, tells clients, waits for them to go
/// (up to a deadline) and then closes whoever is left.
pub struct Signaling {
    pub hub: HubHandle,
    pub auth: Arc<Authenticator>,
    pub ice: IceServers,
    pub limits: SessionLimits,
    pub metrics: Metrics,
    /// Events served outside the hub (chat), when the binary plugs them in.
    pub extension: Option<Arc<dyn extension::Extension>>,
    /// The SFU, when the binary plugs one in.
    pub media: Option<Arc<dyn media::MediaServer>>,
    /// Where events for calls and rooms go: the local hub, or the node owning them.
    pub routing: Arc<cluster::Router>,
    /// Revoked tokens, refused at connect and at refresh; live sessions close on them.
    pub revocations: Arc<revocation::Revocations>,
    /// The server API's settings (`[admin]`).
    pub admin: admin::AdminSettings,
    /// Webhook endpoints for the server API, when the binary plugs them in.
    pub webhooks: Option<Arc<dyn admin::webhooks::WebhookAdmin>>,
    /// WHIP ingest, when served: with an SFU and `whip.enabled`.
    pub whip: Option<Arc<whip::Whip>>,
    /// Sessions that may be resumed after their connection drops (`session:resume`).
    pub sessions: Arc<resume::Sessions>,
    limiter: ConnectionLimiter,
    draining: AtomicBool,
    closing: watch::Sender<bool>,
}

/// A connection refused before its session started.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl Refused {
    pub fn into_response(self) -> Response {
        http::failure(self.status, Failure::new(self.code, self.message))
    }
}

/// The parts the binary plugs into [`Signaling::new`].
pub struct Parts {
    /// Client events handled outside the hub (chat).
    pub extension: Option<Arc<dyn extension::Extension>>,
    /// The SFU, when media goes through this node.
    pub media: Option<Arc<dyn media::MediaServer>>,
    /// [`cluster::Solo`] on a single node.
    pub cluster: Arc<dyn cluster::Cluster>,
    /// Stores the hub's lifecycle events (webhooks) before clients hear of them.
    pub lifecycle: Option<Arc<dyn lifecycle::LifecycleSink>>,
    /// Revoked tokens and users.
    pub revocations: Arc<revocation::Revocations>,
    /// Webhook endpoints the server API manages (`/api/v1/admin/webhooks`).
    pub webhooks: Option<Arc<dyn admin::webhooks::WebhookAdmin>>,
}

impl Signaling {
    /// The signaling service of one node.
    pub fn new(
        config: &config::Config,
        auth: Authenticator,
        parts: Parts,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Arc<Self>> {
        let Parts {
            extension,
            media,
            cluster,
            lifecycle,
            revocations,
            webhooks,
        } = parts;
        let metrics = Metrics::new(registry)?;
        let ice = IceServers::new(&config.ice);
        let mut settings = hub::HubSettings::from_config(config);
        settings.topology = cluster.topology();
        settings.node = cluster.node().clone();
        let hub = hub::Hub::new(settings, ice.clone(), metrics.clone(), Instant::now());
        // Connection ids are unique across a cluster: each process counts below its own random
        // 24-bit prefix (ADR 0060).
        let first_conn = match cluster.topology() {
            cluster::Topology::Solo => 1,
            cluster::Topology::Clustered => {
                (u64::from(rand::random::<u32>() & 0xFF_FFFF) << 40) | 1
            }
        };
        let hub = driver::spawn(hub, media.clone(), cluster.clone(), lifecycle, first_conn);
        let routing = cluster::Router::new(
            hub.clone(),
            cluster,
            cluster::RouterSettings {
                request_timeout: config.cluster.request_timeout.get(),
                max_connections_per_user: config.limits.max_connections_per_user as usize,
                max_calls_per_user: config.limits.max_calls_per_user,
            },
            cluster::RouterMetrics::register(registry)?,
            revocations.clone(),
        );
        routing.spawn_inbox();
        if routing.cluster().topology() == cluster::Topology::Clustered {
            spawn_observer(Arc::downgrade(&routing));
        }
        let (closing, _) = watch::channel(false);
        let whip = (media.is_some() && config.whip.enabled)
            .then(|| whip::Whip::new(whip::WhipSettings::from_config(config)));
        let sessions = resume::Sessions::new(config.limits.resume_grace.get(), metrics.clone());
        Ok(Arc::new(Self {
            sessions,
            whip,
            hub,
            routing,
            revocations,
            admin: admin::AdminSettings::from_config(config),
            webhooks,
            auth: Arc::new(auth),
            ice,
            limits: SessionLimits::from_config(config),
            metrics,
            extension,
            media,
            limiter: ConnectionLimiter::new(
                config.server.max_connections_per_ip,
                config.server.max_connections,
            ),
            draining: AtomicBool::new(false),
            closing,
        }))
    }

    /// `/ws`, `/api/v1/presence`, `/api/v1/ice-servers`, the server API
    /// (`/api/v1/admin/...`, `/api/v1/openapi.json`) and, when served, WHIP (`/whip/v1/...`).
    /// Socket.IO is a layer: see [`Signaling::with_socketio`].
    pub fn router(self: &Arc<Self>) -> Router {
        let mut router = Router::new()
            .route("/ws", get(transport::ws::upgrade))
            .route("/api/v1/presence", get(http::presence))
            .route("/api/v1/ice-servers", get(http::ice_servers))
            .merge(
                admin::router().route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    admin::forward::to_owner,
                )),
            );
        if self.whip.is_some() {
            router = router.merge(whip::router());
        }
        router.with_state(self.clone())
    }

    /// Wraps the finished application router with Socket.IO at `/socket.io/`. It must be the
    /// last step: axum applies a layer only to routes and the fallback present at that point,
    /// and Socket.IO paths match no route.
    pub fn with_socketio(self: &Arc<Self>, app: Router) -> Router {
        let (layer, _io) = transport::socketio::layer(self.clone());
        app.fallback(|| async {
            http::failure(
                StatusCode::NOT_FOUND,
                Failure::new(ErrorCode::NotFound, "no such endpoint"),
            )
        })
        .layer(layer)
        // Outside the Socket.IO layer, so that it sees the request first.
        .layer(axum::middleware::map_request(
            transport::socketio::detach_head,
        ))
    }

    /// Verifies the token of an HTTP request (header or query).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, Refused> {
        self.verify(auth::token_from_request(headers, query))
            .map(|(identity, _)| identity)
    }

    /// [`Signaling::authenticate`] for a session: also until when its token is accepted and
    /// what a revocation would name.
    pub fn authenticate_session(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(Identity, TokenTerms), Refused> {
        self.verify(auth::token_from_request(headers, query))
    }

    /// Authenticates and admits a new connection: the explicit token (Socket.IO's
    /// `auth.token`) or the request's, then drain state and connection limits.
    pub fn admit_token(
        &self,
        token: Option<String>,
        headers: &HeaderMap,
        query: Option<&str>,
        peer: SocketAddr,
    ) -> Result<(Identity, TokenTerms, ConnectionPermit), Refused> {
        let (identity, terms) =
            self.verify(token.or_else(|| auth::token_from_request(headers, query)))?;
        let permit = self.admit(peer)?;
        Ok((identity, terms, permit))
    }

    /// Admits an authenticated connection from `peer`: refused while draining or over the
    /// connection limits.
    pub fn admit(&self, peer: SocketAddr) -> Result<ConnectionPermit, Refused> {
        if self.is_draining() {
            return Err(self.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect shortly",
            ));
        }
        self.limiter.admit(peer.ip()).map_err(|r| {
            let message = match r {
                Refusal::PerIp => "too many connections from your address",
                Refusal::Total => "the server holds its maximum number of connections",
            };
            self.refuse(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyConnections,
                message,
            )
        })
    }

    /// Counts an open connection until the returned guard drops; its drop also tells
    /// [`transport::memory`] that a connection's memory was let go.
    pub fn connection_gauge(&self, transport: &'static str) -> ConnectionGauge {
        let gauge = self.metrics.connections.with_label_values(&[transport]);
        gauge.inc();
        ConnectionGauge(gauge)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Becomes true when connections must close now.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Connections currently open (both transports).
    pub fn open_connections(&self) -> u32 {
        self.limiter.open()
    }

    /// Graceful shutdown: refuse new work, send `server:shutdown`, wait up to `timeout` for
    /// clients to leave, then close the rest.
    ///
    /// In a cluster the node is marked draining first (nobody places a call or room here any
    /// more); calls and rooms it owns carry on until the deadline, for participants connected
    /// through other nodes, and are then handed to live nodes.
    pub async fn drain(&self, reconnect_in: Duration, timeout: Duration) {
        self.draining.store(true, Ordering::Relaxed);
        let cluster = self.routing.cluster().clone();
        cluster.drain().await;
        self.hub.shutdown(reconnect_in).await;
        // Nobody will resume a session here any more: dropped ones end now.
        self.sessions.release_all().await;
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let owned = match cluster.topology() {
                cluster::Topology::Solo => 0,
                cluster::Topology::Clustered => self.hub.owned().await.map_or(0, |o| o.len()),
            };
            if self.open_connections() == 0 && owned == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.routing.hand_over_all().await;
        let _ = self.closing.send(true);
        // Give the close frames a moment to leave.
        let grace = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.open_connections() > 0 && tokio::time::Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Verifies a token and checks it against the revocation list.
    pub fn verify(&self, token: Option<String>) -> Result<(Identity, TokenTerms), Refused> {
        let result = match token {
            None => Err(auth::AuthError {
                code: ErrorCode::TokenMissing,
                message: "no token: use Authorization: Bearer, ?access_token= or auth.token".into(),
            }),
            Some(t) => self.auth.verify_token(&t).and_then(|(identity, terms)| {
                self.revocations
                    .check(&terms.credential)
                    .map_err(|f| auth::AuthError {
                        code: f.code,
                        message: f.message,
                    })?;
                Ok((identity, terms))
            }),
        };
        result.map_err(|e| {
            self.metrics
                .auth_failures
                .with_label_values(&[e.code.as_str()])
                .inc();
            Refused {
                status: StatusCode::UNAUTHORIZED,
                code: e.code,
                message: e.message,
            }
        })
    }

    fn refuse(&self, status: StatusCode, code: ErrorCode, message: &str) -> Refused {
        self.metrics
            .connections_refused
            .with_label_values(&[code.as_str()])
            .inc();
        Refused {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Reports this node's load to the cluster and updates the cluster gauges, every second, for as
/// long as the router lives.
fn spawn_observer(routing: std::sync::Weak<cluster::Router>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            let Some(routing) = routing.upgrade() else {
                return;
            };
            routing.observe().await;
        }
    });
}

/// An open signaling connection, counted in `chorus_signaling_connections` until dropped.
pub struct ConnectionGauge(prometheus::IntGauge);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.dec();
        transport::memory::connection_closed();
    }
}
