//! Dev-mode only: `POST /api/v1/dev/token` mints a token so the demo page can join without an
//! application backend. Mounted only with `--dev`, which also binds to loopback.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use protocol::{ErrorCode, Failure};
use serde::Deserialize;
use serde_json::json;
use signaling::Signaling;
use signaling::auth::Grants;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    name: String,
    #[serde(default)]
    room: Option<String>,
    /// Reuse an id (a reloaded page keeps its identity); a fresh one otherwise.
    #[serde(default)]
    user_id: Option<String>,
}

pub fn router(signaling: Arc<Signaling>) -> Router {
    Router::new()
        .route("/api/v1/dev/token", post(token))
        .with_state(signaling)
}

async fn token(State(sig): State<Arc<Signaling>>, body: Option<Json<TokenRequest>>) -> Response {
    let bad = |m: &str| {
        signaling::http::failure(
            StatusCode::BAD_REQUEST,
            Failure::new(ErrorCode::InvalidPayload, m),
        )
    };
    let Some(Json(req)) = body else {
        return bad("expected JSON {\"name\": string, \"room\"?: string, \"userId\"?: string}");
    };
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return bad("`name` must be 1-64 characters");
    }
    let user_id = match req.user_id {
        Some(id) if protocol::valid_id(&id) => id,
        Some(_) => return bad("`userId` must be 1-128 characters without control characters"),
        None => {
            let suffix: u32 = rand::random();
            let slug: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(16)
                .collect::<String>()
                .to_ascii_lowercase();
            format!(
                "{}-{suffix:08x}",
                if slug.is_empty() { "guest" } else { &slug }
            )
        }
    };
    if req.room.as_deref().is_some_and(|r| !protocol::valid_id(r)) {
        return bad("`room` must be 1-128 characters without control characters");
    }
    let grants = Grants {
        room: req.room.clone(),
        ..Grants::default()
    };
    match sig.auth.mint(
        &user_id,
        name,
        grants,
        Duration::from_secs(12 * 3600),
        SystemTime::now(),
    ) {
        Ok(token) => Json(json!({"token": token, "userId": user_id, "name": name})).into_response(),
        Err(e) => signaling::http::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            Failure::new(ErrorCode::Internal, e),
        ),
    }
}
