//! Authenticated REST endpoints of the signaling service.
//!
//! - `GET /api/v1/presence?userIds=a,b` → `{"presences": [...]}` (at most 100 ids), each as
//!   the caller may see it (`presence.visibility`);
//! - `GET /api/v1/ice-servers` → `{"iceServers": [...]}` for the caller.
//!
//! Both take the token as `Authorization: Bearer` or `?access_token=` and answer 401 with
//! `{"code", "message"}` without one.

use crate::Signaling;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, Failure, UserId};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

/// Most users one presence request may ask about.
pub const MAX_PRESENCE_QUERY: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceQuery {
    #[serde(default)]
    user_ids: String,
}

pub async fn presence(
    State(sig): State<Arc<Signaling>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<PresenceQuery>,
) -> Response {
    let viewer = match sig.authenticate(&headers, uri.query()) {
        Ok(identity) => identity,
        Err(r) => return r.into_response(),
    };
    let mut seen = HashSet::new();
    let ids: Vec<UserId> = q
        .user_ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && seen.insert(*s))
        .map(UserId::from)
        .collect();
    if ids.is_empty() {
        return failure(
            StatusCode::BAD_REQUEST,
            Failure::new(
                ErrorCode::InvalidPayload,
                "`userIds` must list at least one user id",
            ),
        );
    }
    if ids.len() > MAX_PRESENCE_QUERY {
        return failure(
            StatusCode::BAD_REQUEST,
            Failure::new(
                ErrorCode::LimitExceeded,
                format!("at most {MAX_PRESENCE_QUERY} user ids per request"),
            ),
        );
    }
    if ids.iter().any(|u| !protocol::valid_id(u.as_str())) {
        return failure(
            StatusCode::BAD_REQUEST,
            Failure::new(
                ErrorCode::InvalidPayload,
                "a user id is empty, too long or has control characters",
            ),
        );
    }
    match sig.routing.presence(&viewer, ids).await {
        Ok(presences) => Json(json!({ "presences": presences })).into_response(),
        Err(_) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            Failure::new(ErrorCode::ShuttingDown, "the server is stopping"),
        ),
    }
}

pub async fn ice_servers(
    State(sig): State<Arc<Signaling>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    match sig.authenticate(&headers, uri.query()) {
        Ok(identity) => Json(json!({
            "iceServers": sig.ice.for_user(&identity.user_id, SystemTime::now())
        }))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// An error response with the failure as `{"code", "message"}`.
pub fn failure(status: StatusCode, f: Failure) -> Response {
    (status, Json(json!({"code": f.code, "message": f.message}))).into_response()
}
