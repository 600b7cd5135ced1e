//! The `chorus` binary's wiring: configuration in, listeners up, parts connected.
//!
//! [`run`] is the injectable entry point (the mini-redis shape): it takes an already-bound
//! listener, a validated [`Config`] and a shutdown future, so tests start a whole server on
//! `127.0.0.1:0` inside their own process.

mod background;
pub mod cli;
mod dev;
mod ops;
mod web;
pub mod wiring;

use axum::serve::ListenerExt;
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
    let chat = ::chat::ChatService::open(chat::settings(config))
        .await
        .map_err(|e| {
            RunError::Config(format!(
                "cannot open chat storage (`chat.database_url`): {e:?}"
            ))
        })?;
    let extension: Arc<dyn signaling::extension::Extension> =
        Arc::new(chat::ChatExtension::new(chat.clone()));
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
    let signaling = Signaling::new(
        config,
        auth,
        Some(extension),
        media
            .clone()
            .map(|m| m as Arc<dyn signaling::media::MediaServer>),
        &registry,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    chat::spawn_typing_expiry(chat.clone(), signaling.hub.clone());
    if let (Some(handle), Some(media)) = (&sfu, media) {
        sfu::spawn_event_pump(handle, signaling.hub.clone(), media);
    }
    Ok(Server {
        signaling,
        registry,
        chat,
        sfu,
        turn,
    })
}

/// Serves until `shutdown` resolves, then drains gracefully and returns.
///
/// Draining keeps the listener open so `/ready` can report 503 to load balancers, while new
/// WebSocket and Socket.IO sessions are refused with `shutting_down`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    auth: Authenticator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let server = build(&config, auth).await?;
    serve(listener, &config, server, shutdown).await
}

/// Serves an already built [`Server`]; see [`run`].
///
/// If the TURN relay or the SFU fails while serving, its error is logged at once, the server
/// drains as if `shutdown` had resolved, and [`RunError::Part`] is returned (exit code 1), so a
/// supervisor restarts the process instead of it handing out calls that cannot connect.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let sig = server.signaling.clone();
    let mut app = server
        .signaling
        .router()
        .merge(ops::router(sig.clone(), server.registry.clone()))
        .merge(chat::router(sig.clone(), server.chat.clone()))
        .merge(web::router());
    if config.server.dev {
        app = app.merge(dev::router(sig.clone()));
    }
    let app = sig.with_socketio(app);
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
    let running: Vec<&Background> = [turn.as_ref(), sfu.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let part_ended = background::first_ended(&running);
    let reconnect = config.server.reconnect_hint.get();
    let drain = config.server.drain_timeout.get();
    let drained = sig.clone();
    let (sweeper_stop, sweeper_stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = server.chat.spawn_retention_sweeper(async {
        let _ = sweeper_stopped.await;
    });
    let chat = server.chat.clone();
    // Signaling sends small frames back to back (an ack, then an event): without TCP_NODELAY
    // Nagle's algorithm holds the second one for a delayed ACK, about 40 ms.
    // Every write gets a deadline, so a client that stops reading cannot pin its buffers, and
    // what a dropped client held goes back to the system.
    signaling::transport::memory::shrink_heaps_on_free();
    let listener =
        signaling::transport::deadline::Listener::new(listener, config.limits.write_timeout.get())
            .tap_io(|tcp| {
                let _ = tcp.get_ref().set_nodelay(true);
            });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        // A dead relay or SFU must not leave signaling handing out calls that cannot connect:
        // drain as on SIGTERM.
        tokio::select! {
            () = shutdown => {}
            () = part_ended => {}
        }
        tracing::info!("shutting down: draining connections");
        drained.drain(reconnect, drain).await;
        tracing::info!("drained");
    })
    .await?;
    let mut outcome = Ok(());
    for part in [turn, sfu].into_iter().flatten() {
        let stopped = part.stop().await;
        if outcome.is_ok() {
            outcome = stopped;
        }
    }
    let _ = sweeper_stop.send(());
    let _ = sweeper.await;
    chat.close().await;
    outcome
}

/// What `chorus serve` does: bind, log where it listens (and a sample token in dev mode),
/// serve until SIGTERM or SIGINT, drain, return.
pub async fn start(config: Config) -> Result<(), RunError> {
    let auth = cli::authenticator(&config).map_err(RunError::Config)?;
    let listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
        RunError::Config(format!(
            "cannot listen on `server.listen` ({}): {e}",
            config.server.listen
        ))
    })?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "chorus listening: http://{local}/ (ws /ws, socket.io /socket.io/)");
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
    run(listener, config, auth, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// What `chorus turn` does: the TURN relay alone, with `/health` and `/metrics` on
/// `server.listen`, until SIGTERM or SIGINT.
pub async fn start_turn(config: Config) -> Result<(), RunError> {
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
    let listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
        RunError::Config(format!(
            "cannot listen on `server.listen` ({}): {e}",
            config.server.listen
        ))
    })?;
    let metrics = ops::metrics_router(registry);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let http = tokio::spawn(async move {
        let mut stopped = stopped;
        axum::serve(listener, metrics)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let result = server.run(shutdown_signal()).await;
    let _ = stop.send(true);
    let _ = http.await;
    result.map_err(|e| RunError::Part {
        part: "TURN relay",
        error: e.to_string(),
    })
}
