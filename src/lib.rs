//! The `chorus` binary's wiring: configuration in, listeners up, parts connected.
//!
//! [`run`] is the injectable entry point (the mini-redis shape): it takes already-bound
//! [`Listeners`], a validated [`Config`] and a shutdown future, so tests start a whole server
//! on `127.0.0.1:0` inside their own process.

pub mod admin_cli;
mod background;
pub mod cli;
pub mod descriptors;
mod dev;
pub mod listener;
mod ops;
pub mod shutdown;
mod web;
pub mod webhook;
pub mod wiring;

use background::Background;
use config::Config;
use signaling::Signaling;
use signaling::auth::Authenticator;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use wiring::{chat, sfu, turn};

/// What a running server exposes to whoever started it (tests, the CLI).
pub struct Server {
    pub signaling: Arc<Signaling>,
    pub registry: prometheus::Registry,
    pub chat: ::chat::ChatService,
    /// The SFU, unless `sfu.enabled` is off.
    pub sfu: Option<::sfu::SfuHandle>,
    /// The TURN relay, when it is enabled and has credentials to check.
    pub turn: Option<::turn::Server>,
    /// Webhook endpoints and delivery (ADR 0073).
    pub webhooks: webhook::Webhooks,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
    /// A part running beside the HTTP server (the TURN relay, the SFU) failed while serving.
    #[error("{part} failed: {error}")]
    Part { part: &'static str, error: String },
}

/// Builds every part from `config` without starting to serve: opens (and migrates) chat
/// storage and spawns the signaling hub.
pub async fn build(config: &Config, auth: Authenticator) -> Result<Server, RunError> {
    let registry = prometheus::Registry::new();
    let cluster: Arc<dyn signaling::cluster::Cluster> = if config.cluster.enabled() {
        let url = if config.cluster.advertise_url.is_empty() {
            format!("http://{}", config.server.listen)
        } else {
            config.cluster.advertise_url.clone()
        };
        signaling::cluster::RedisCluster::connect(&config.cluster, url, &registry)
            .await
            .map_err(RunError::Config)?
    } else {
        Arc::new(signaling::cluster::Solo::new())
    };
    let chat_settings = chat::settings(config);
    let rate = chat_settings.message_rate;
    let mut chat = ::chat::ChatService::open(chat_settings)
        .await
        .map_err(|e| {
            RunError::Config(format!(
                "cannot open chat storage (`chat.database_url`): {e:?}"
            ))
        })?;
    if let (Some(limit), signaling::cluster::Topology::Clustered) = (rate, cluster.topology()) {
        chat = chat.with_send_rate(Arc::new(chat::ClusterRate::new(cluster.clone(), limit)));
    }
    chat::CommitMetrics::register(chat.clone(), &registry)
        .map_err(|e| RunError::Config(format!("chat metrics: {e}")))?;
    let webhooks =
        webhook::Webhooks::new(config, chat.outbox(), chat.webhook_endpoints(), &registry)
            .map_err(|e| RunError::Config(format!("webhooks (`[[webhooks]]`): {e}")))?;
    webhooks.load().await.map_err(RunError::Config)?;
    let extension: Arc<dyn signaling::extension::Extension> =
        Arc::new(chat::ChatExtension::new(chat.clone()).with_webhooks(webhooks.clone()));
    let sfu = if config.sfu.enabled {
        let handle = ::sfu::Sfu::start(sfu::settings(config), &registry)
            .map_err(|e| RunError::Config(format!("cannot start the SFU (`sfu.*`): {e}")))?;
        Some(handle)
    } else {
        None
    };
    let media = sfu
        .as_ref()
        .map(|h| Arc::new(sfu::SfuMedia::new(h.clone())));
    let turn = turn::bind(config, &registry)
        .await
        .map_err(RunError::Config)?;
    let store = wiring::revocations::FileStore::open(
        &config.server.data_dir,
        signaling::revocation::unix_now(),
    )
    .map_err(|e| {
        RunError::Config(format!(
            "cannot keep revocations in `server.data_dir` ({}): {e}",
            config.server.data_dir.display()
        ))
    })?;
    let revocations =
        signaling::revocation::Revocations::load(Arc::new(store), config.admin.max_revocations)
            .await
            .map_err(RunError::Config)?;
    let signaling = Signaling::new(
        config,
        auth,
        signaling::Parts {
            extension: Some(extension),
            media: media
                .clone()
                .map(|m| m as Arc<dyn signaling::media::MediaServer>),
            cluster,
            lifecycle: Some(
                Arc::new(webhooks.clone()) as Arc<dyn signaling::lifecycle::LifecycleSink>
            ),
            revocations,
            webhooks: Some(
                Arc::new(webhooks.clone()) as Arc<dyn signaling::admin::webhooks::WebhookAdmin>
            ),
        },
        &registry,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    // Revocations taken on other nodes while this one was down.
    signaling.routing.sync_revocations().await;
    chat::spawn_typing_expiry(chat.clone(), signaling.hub.clone());
    if let Some(handle) = &sfu {
        sfu::spawn_event_pump(
            handle,
            signaling.hub.clone(),
            webhooks.clone(),
            signaling.whip.clone(),
        );
    }
    Ok(Server {
        signaling,
        registry,
        chat,
        sfu,
        turn,
        webhooks,
    })
}

/// The sockets a server listens on, bound before it starts (tests bind `127.0.0.1:0`).
pub struct Listeners {
    /// `server.listen`: signaling, REST, health, the demo page, and `/metrics` unless it has a
    /// listener of its own.
    pub http: TcpListener,
    /// `server.metrics_listen`. `None` while the key is set makes [`serve`] bind it.
    pub metrics: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(http: TcpListener) -> Listeners {
        Listeners {
            http,
            metrics: None,
        }
    }
}

impl Listeners {
    /// Binds `server.listen` and, when set, `server.metrics_listen`.
    pub fn bind(config: &Config) -> Result<Listeners, RunError> {
        let http = bind("server.listen", config.server.listen)?;
        let metrics = match metrics_address(config)? {
            Some(addr) => Some(bind("server.metrics_listen", addr)?),
            None => None,
        };
        Ok(Listeners { http, metrics })
    }
}

/// Connections the kernel queues for `accept`. The default of `TcpListener::bind` (128) drops
/// SYNs whenever more arrive between two accepts, as they do when thousands of clients
/// reconnect after a restart, or while accepting pauses on EMFILE; clients then wait 1 s, 3 s...
/// to retry. The kernel caps it at `net.core.somaxconn` (4096 on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|e| RunError::Config(format!("cannot listen on `{key}` ({addr}): {e}")))
}

/// `server.metrics_listen`, on loopback in dev mode like every other listener.
fn metrics_address(config: &Config) -> Result<Option<SocketAddr>, RunError> {
    if config.server.metrics_listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = config.server.metrics_listen.parse().map_err(|_| {
        RunError::Config("invalid value for `server.metrics_listen`: not an address".into())
    })?;
    Ok(Some(if config.server.dev {
        cli::loopback(addr)
    } else {
        addr
    }))
}

/// Serves until `shutdown` resolves, then drains gracefully and returns.
///
/// Draining keeps the listener open so `/ready` can report 503 to load balancers, while new
/// WebSocket and Socket.IO sessions are refused with `shutting_down`.
pub async fn run(
    listeners: impl Into<Listeners>,
    config: Config,
    auth: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let server = build(&config, auth).await?;
    serve(listeners, &config, server, shutdown).await
}

/// Serves an already built [`Server`]; see [`run`].
///
/// If a supervised part fails while serving (the TURN relay, the SFU, the signaling hub's task,
/// the chat retention sweeper), its error is logged at once, the server drains as if `shutdown`
/// had resolved, and [`RunError::Part`] is returned (exit code 1), so a supervisor restarts the
/// process instead of it answering `/health` while it cannot serve.
///
/// HTTP is served by [`listener::serve`]: timeouts and the per-source cap hold before any
/// request is read. With `server.metrics_listen` set, `/metrics` is served there and not on
/// `server.listen`.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: &Config,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listeners = listeners.into();
    let metrics_listener = match listeners.metrics {
        Some(l) => Some(l),
        None => match metrics_address(config)? {
            Some(addr) => Some(bind("server.metrics_listen", addr)?),
            None => None,
        },
    };
    let http_metrics =
        listener::Metrics::register(&server.registry).map_err(std::io::Error::other)?;
    let limits = listener::Limits::from_config(config);
    // What a dropped slow client held goes back to the system (ADR 0043).
    signaling::transport::memory::shrink_heaps_on_free();
    let sig = server.signaling.clone();
    let mut app = server
        .signaling
        .router()
        .merge(ops::router(sig.clone()))
        .merge(chat::router(sig.clone(), server.chat.clone()));
    if metrics_listener.is_none() {
        app = app.merge(ops::metrics(server.registry.clone()));
    }
    if config.server.demo_page {
        app = app.merge(web::router());
    }
    if config.server.dev {
        app = app.merge(dev::router(sig.clone()));
    }
    let turn = server
        .turn
        .map(|t| Background::spawn("TURN relay", |stop| t.run(stop)));
    let sfu = server.sfu.clone().map(|sfu| {
        Background::spawn("SFU", |stop| async move {
            tokio::select! {
                () = stop => {
                    sfu.shutdown().await;
                    Ok(())
                }
                () = sfu.ended() => Err("its media worker ended"),
            }
        })
    });
    let hub = Background::spawn("signaling hub", |stop| {
        let hub = sig.hub.clone();
        async move {
            tokio::select! {
                () = stop => Ok(()),
                () = hub.ended() => Err("its task ended (a bug: every command now fails)"),
            }
        }
    });
    let sweeper = server.chat.settings().retention.map(|_| {
        let chat = server.chat.clone();
        Background::spawn("chat retention sweeper", |stop| async move {
            chat.spawn_retention_sweeper(stop).await.map_err(|e| {
                if e.is_panic() {
                    "panicked".to_owned()
                } else {
                    e.to_string()
                }
            })
        })
    });
    let webhooks = {
        let webhooks = server.webhooks.clone();
        Background::spawn("webhook delivery", |stop| async move {
            webhooks.run_delivery(stop).await;
            Ok::<(), String>(())
        })
    };
    let webhook_sync = {
        let webhooks = server.webhooks.clone();
        let changed = server.signaling.routing.webhook_changes();
        Background::spawn("webhook endpoint sync", |stop| async move {
            webhooks.run_sync(stop, changed).await;
            Ok::<(), String>(())
        })
    };
    let running: Vec<&Background> = [
        turn.as_ref(),
        sfu.as_ref(),
        Some(&hub),
        sweeper.as_ref(),
        Some(&webhooks),
        Some(&webhook_sync),
    ]
    .into_iter()
    .flatten()
    .collect();
    let part_ended = background::first_ended(&running);
    let reconnect = config.server.reconnect_hint.get();
    let drain = config.server.drain_timeout.get();
    let drained = sig.clone();
    let chat = server.chat.clone();
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_http = metrics_listener.map(|l| {
        tokio::spawn(listener::serve(
            l,
            "metrics",
            ops::metrics(server.registry.clone()),
            limits,
            http_metrics.clone(),
            async {
                let _ = metrics_stopped.await;
            },
        ))
    });
    let app = sig.with_socketio(app);
    listener::serve(
        listeners.http,
        "HTTP",
        app,
        limits,
        http_metrics,
        async move {
            // A dead relay or SFU must not leave signaling handing out calls that cannot connect:
            // drain as on SIGTERM.
            tokio::select! {
                () = shutdown => {}
                () = part_ended => {}
            }
            tracing::info!("shutting down: draining connections");
            drained.drain(reconnect, drain).await;
            tracing::info!("drained");
        },
    )
    .await;
    let _ = metrics_stop.send(());
    if let Some(task) = metrics_http {
        let _ = task.await;
    }
    let mut outcome = Ok(());
    for part in [
        turn,
        sfu,
        sweeper,
        Some(webhook_sync),
        Some(webhooks),
        Some(hub),
    ]
    .into_iter()
    .flatten()
    {
        let stopped = part.stop().await;
        if outcome.is_ok() {
            outcome = stopped;
        }
    }
    chat.close().await;
    outcome
}

/// What `chorus serve` does: check the open-file limit, bind, log where it listens (and a
/// sample token in dev mode), serve until SIGTERM or SIGINT, drain, return. A second signal
/// during the drain exits at once (see [`shutdown`]).
pub async fn start(config: Config) -> Result<(), RunError> {
    descriptors::check(&config, config::Role::Full);
    let auth = cli::authenticator(&config).map_err(RunError::Config)?;
    let listeners = Listeners::bind(&config)?;
    let local = listeners.http.local_addr()?;
    tracing::info!(%local, "chorus listening: http://{local}/ (ws /ws, socket.io /socket.io/)");
    if let Some(metrics) = &listeners.metrics {
        tracing::info!(local = %metrics.local_addr()?, "metrics listening: /metrics");
    }
    if config.server.request_timeout.get() < std::time::Duration::from_secs(30) {
        tracing::warn!(
            request_timeout = %config.server.request_timeout,
            "server.request_timeout is under 30s: Socket.IO long-polling holds a request up to \
             25s, so polling clients will be cut off"
        );
    }
    if config.server.dev {
        let token = auth
            .mint(
                "dev-user",
                "Dev User",
                signaling::auth::Grants::default(),
                std::time::Duration::from_secs(3600),
                std::time::SystemTime::now(),
            )
            .map_err(RunError::Config)?;
        tracing::warn!("dev mode: loopback only, generated secret; never use in production");
        tracing::info!("sample token (user dev-user, 1h): {token}");
        tracing::info!("try: websocat 'ws://{local}/ws?access_token={token}'");
    }
    run(listeners, config, auth, shutdown::requested()).await
}

/// What `chorus turn` does: the TURN relay alone, with `/health` and `/metrics` on
/// `server.listen`, until SIGTERM or SIGINT.
pub async fn start_turn(config: Config) -> Result<(), RunError> {
    descriptors::check(&config, config::Role::TurnOnly);
    let registry = prometheus::Registry::new();
    let Some(server) = turn::bind(&config, &registry)
        .await
        .map_err(RunError::Config)?
    else {
        return Err(RunError::Config(
            "TURN needs `ice.turn_secret` or `turn.static_users`, and `turn.enabled`".into(),
        ));
    };
    let addrs = server.local_addrs();
    tracing::info!(udp = ?addrs.udp, tcp = ?addrs.tcp, tls = ?addrs.tls, "chorus turn running");
    let listeners = Listeners::bind(&config)?;
    let http_metrics = listener::Metrics::register(&registry).map_err(std::io::Error::other)?;
    let limits = listener::Limits::from_config(&config);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serve_http = |l: TcpListener, name: &'static str, app: axum::Router| {
        let mut stopped = stopped.clone();
        tokio::spawn(listener::serve(
            l,
            name,
            app,
            limits,
            http_metrics.clone(),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    };
    let mut http = Vec::new();
    match listeners.metrics {
        Some(metrics) => {
            http.push(serve_http(listeners.http, "HTTP", ops::health()));
            http.push(serve_http(metrics, "metrics", ops::metrics(registry)));
        }
        None => http.push(serve_http(
            listeners.http,
            "HTTP",
            ops::health().merge(ops::metrics(registry)),
        )),
    }
    let result = server.run(shutdown::requested()).await;
    let _ = stop.send(true);
    for task in http {
        let _ = task.await;
    }
    result.map_err(|e| RunError::Part {
        part: "TURN relay",
        error: e.to_string(),
    })
}
