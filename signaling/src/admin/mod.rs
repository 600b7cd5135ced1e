//! The server API: `/api/v1/admin/...`, for an application's backend.
//!
//! Rooms (list, create, delete, metadata, data messages), participants (list with tracks and
//! connection node, remove, mute a track, metadata), calls (list, end), token revocations and
//! webhook endpoints. Every room, call and participant operation is a command to the hub's task
//! ([`crate::hub::admin`]), which owns the state; webhook endpoints go to the binary's
//! [`webhooks::WebhookAdmin`]; nothing here keeps any.
//!
//! - **Authentication**: `Authorization: Bearer` with a JWT that has the `admin` grant, or one
//!   of `admin.api_keys` (compared in constant time). No token or a bad one: 401 with the
//!   token's code; a valid token without the grant: 403 `forbidden`.
//! - **Errors** are JSON [`model::ApiError`] `{code, message}` with protocol error codes: 404
//!   `not_found`, 409 `invalid_state`/`limit_exceeded`/`managed_by_config`, 400 `invalid_payload` (not JSON), 422
//!   `invalid_payload` (JSON of the wrong shape or out of range), 413 `limit_exceeded` (body
//!   over `admin.max_body_bytes`), 503 `shutting_down`/`cluster_unavailable`/
//!   `storage_unavailable`.
//! - **Cluster**: each call and room is owned by one node. An operation on a space owned by
//!   another node is forwarded to it and its answer returned ([`forward`]); only when the owner
//!   cannot be reached does it answer 421 `wrong_node` with that node's id and URL. Lists show
//!   the spaces of the node asked. Revocations apply on every node.
//! - **OpenAPI**: [`openapi::document`] is served at `/api/v1/openapi.json`.

pub mod forward;
pub mod model;
pub mod openapi;
mod routes;
pub mod webhooks;

use crate::Signaling;
use crate::cluster::Topology;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use model::ApiError;
use protocol::{CallId, ErrorCode, Failure};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

pub use routes::{ROUTES, router};

/// What the server API enforces, from `[admin]`.
#[derive(Clone)]
pub struct AdminSettings {
    api_keys: Vec<Vec<u8>>,
    pub max_body_bytes: usize,
    pub revocation_ttl: Duration,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("api_keys", &self.api_keys.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("revocation_ttl", &self.revocation_ttl)
            .finish()
    }
}

impl AdminSettings {
    pub fn from_config(c: &config::Config) -> Self {
        Self {
            api_keys: c
                .admin
                .api_keys
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect(),
            max_body_bytes: c.admin.max_body_bytes,
            revocation_ttl: c.admin.revocation_ttl.get(),
        }
    }

    /// Whether `presented` is one of the keys. Every key is compared, in constant time for
    /// keys of its length, so neither the match nor its position shows in the timing.
    fn is_key(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let mut found = subtle::Choice::from(0);
        for key in &self.api_keys {
            found |= key.as_slice().ct_eq(presented);
        }
        found.into()
    }
}

/// A caller the server API let in: an API key, or a JWT with the `admin` grant.
#[derive(Clone, Debug)]
pub struct Admin;

impl FromRequestParts<Arc<Signaling>> for Admin {
    type Rejection = ApiFailure;

    async fn from_request_parts(
        parts: &mut Parts,
        sig: &Arc<Signaling>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| {
                t.strip_prefix("Bearer ")
                    .or_else(|| t.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(ApiFailure::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::TokenMissing,
                "the server API needs `Authorization: Bearer <admin JWT or API key>`",
            ));
        };
        if sig.admin.is_key(token.as_bytes()) {
            return Ok(Admin);
        }
        let (identity, _) = sig.verify(Some(token)).map_err(|r| ApiFailure {
            status: StatusCode::UNAUTHORIZED,
            failure: Failure::new(r.code, r.message),
            owner: None,
        })?;
        if !identity.grants.admin {
            return Err(ApiFailure::new(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "the server API needs a token with the `admin` grant, or an API key",
            ));
        }
        Ok(Admin)
    }
}

/// A JSON request body of at most `admin.max_body_bytes`: 413 when larger, 400 when it is not
/// JSON, 422 when it is JSON of the wrong shape.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Signaling>> for Body<T> {
    type Rejection = ApiFailure;

    async fn from_request(req: Request, sig: &Arc<Signaling>) -> Result<Self, Self::Rejection> {
        let limit = sig.admin.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            let status = match e.classify() {
                serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            ApiFailure::new(status, ErrorCode::InvalidPayload, e.to_string())
        })
    }
}

/// 413 `limit_exceeded` for a body over `admin.max_body_bytes`.
fn too_large(limit: usize) -> ApiFailure {
    ApiFailure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::LimitExceeded,
        format!("the body is larger than {limit} bytes (`admin.max_body_bytes`), or was cut off"),
    )
}

/// An error answer of the server API.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub failure: Failure,
    /// For `wrong_node`: the owner's id and URL.
    pub owner: Option<(String, String)>,
}

impl ApiFailure {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            failure: Failure::new(code, message),
            owner: None,
        }
    }

    /// `invalid_payload` with 422: well-formed JSON whose values are not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidPayload,
            message,
        )
    }
}

impl From<Failure> for ApiFailure {
    fn from(failure: Failure) -> Self {
        let status = match failure.code {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidPayload | ErrorCode::ContentTooLong => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::InvalidState | ErrorCode::LimitExceeded | ErrorCode::ManagedByConfig => {
                StatusCode::CONFLICT
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::WrongNode => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::ShuttingDown
            | ErrorCode::ClusterUnavailable
            | ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            code if code.is_token_refusal() => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            failure,
            owner: None,
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (node, url) = match self.owner {
            Some((node, url)) => (Some(node), Some(url)),
            None => (None, None),
        };
        let body = ApiError {
            code: self.failure.code.as_str().to_owned(),
            message: self.failure.message,
            node,
            url,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The answer for a space the local hub does not hold: 421 `wrong_node` when another node owns
/// it, else the hub's own `not_found`.
async fn elsewhere(sig: &Signaling, space: &CallId, not_here: Failure) -> ApiFailure {
    let cluster = sig.routing.cluster();
    if cluster.topology() == Topology::Solo || not_here.code != ErrorCode::NotFound {
        return not_here.into();
    }
    match cluster.owner(space).await {
        Ok(Some(owner)) if &owner != cluster.node() => wrong_node(sig, &owner, space),
        Ok(_) => not_here.into(),
        Err(e) => e.failure().into(),
    }
}

fn wrong_node(sig: &Signaling, owner: &crate::cluster::NodeId, space: &CallId) -> ApiFailure {
    let url = sig
        .routing
        .cluster()
        .nodes()
        .into_iter()
        .find(|n| &n.id == owner)
        .map(|n| n.url)
        .unwrap_or_default();
    ApiFailure {
        status: StatusCode::MISDIRECTED_REQUEST,
        failure: Failure::new(
            ErrorCode::WrongNode,
            format!("`{space}` is owned by node {owner} ({url}); send the request there"),
        ),
        owner: Some((owner.to_string(), url)),
    }
}
