//! Operations endpoints: `/health` (liveness), `/ready` (readiness, 503 while draining) and
//! `/metrics` (Prometheus text format).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, TextEncoder};
use signaling::Signaling;
use std::sync::Arc;

#[derive(Clone)]
struct Ops {
    signaling: Arc<Signaling>,
    registry: prometheus::Registry,
}

pub fn router(signaling: Arc<Signaling>, registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Ops {
            signaling,
            registry,
        })
}

/// `/health` and `/metrics` alone, for `chorus turn`.
pub fn metrics_router(registry: prometheus::Registry) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { encode(&registry) }
            }),
        )
}

async fn ready(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.signaling.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    encode(&ops.registry)
}

fn encode(registry: &prometheus::Registry) -> impl IntoResponse + use<> {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&registry.gather(), &mut body) {
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
