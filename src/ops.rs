//! Operations endpoints: `/health` (liveness, as JSON: status, open connections and uptime, the
//! shape the replaced realtime-service answered), `/ready` (readiness: 503 while draining, 200
//! `degraded` while a cluster node cannot reach Redis) and `/metrics` (Prometheus text format).
//!
//! `/metrics` is a router of its own so it can be served on `server.metrics_listen` instead of
//! the public listener. Besides the registry it reports `chorus_runtime_tasks`, the tasks alive
//! in the tokio runtime that serves the scrape (the server's one runtime), read at scrape time:
//! with the hub's and the SFU's gauges it is how a soak run sees that everything a client
//! caused is gone once the clients are (`bench/soak.sh`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::core::Collector;
use prometheus::{Encoder, IntGauge, TextEncoder};
use serde_json::json;
use signaling::Signaling;
use std::sync::Arc;
use std::time::Instant;

/// `/health` and `/ready`.
pub fn router(signaling: Arc<Signaling>) -> Router {
    let started = Instant::now();
    Router::new()
        .route(
            "/health",
            get(move |State(signaling): State<Arc<Signaling>>| async move {
                Json(json!({
                    "status": "ok",
                    "connections": signaling.open_connections(),
                    "uptime": started.elapsed().as_secs(),
                }))
            }),
        )
        .route("/ready", get(ready))
        .with_state(signaling)
}

/// `/health` alone, for a process without signaling (TURN only): 200 while it runs.
pub fn health<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let started = Instant::now();
    Router::new().route(
        "/health",
        get(move || async move {
            Json(json!({"status": "ok", "uptime": started.elapsed().as_secs()}))
        }),
    )
}

/// `/metrics`, encoding `registry`.
pub fn metrics(registry: prometheus::Registry) -> Router {
    let tasks = IntGauge::new(
        "chorus_runtime_tasks",
        "Tasks alive in the tokio runtime (read at scrape time)",
    )
    .expect("a valid metric name and help");
    Router::new().route(
        "/metrics",
        get(move || {
            let (registry, tasks) = (registry.clone(), tasks.clone());
            async move {
                let alive = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
                let mut families = registry.gather();
                families.extend(tasks.collect());
                encode(&families)
            }
        }),
    )
}

/// 503 while draining. While Redis is away a cluster node answers 200 `degraded`: every node
/// shares that Redis, and taking all of them out of the load balancer at once would turn a
/// Redis blip into a full outage (ADR 0060); `/health` never depends on Redis.
async fn ready(State(signaling): State<Arc<Signaling>>) -> impl IntoResponse {
    if signaling.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if signaling.routing.cluster().health() == signaling::cluster::Health::Degraded {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    }
}

fn encode(families: &[prometheus::proto::MetricFamily]) -> impl IntoResponse + use<> {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(families, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            e.to_string().into_bytes(),
        ),
    }
}
