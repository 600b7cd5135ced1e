//! The server API (`/api/v1/admin/...`) over HTTP against a whole server: every operation, every
//! refusal, token revocation (live sessions, restarts, other nodes) and the CLI.

mod api;
mod cli;
mod cluster;
mod revocation;

use crate::server::{TestServer, http_request, mint};
use serde_json::Value;
use signaling::auth::Grants;
use std::net::SocketAddr;
use std::time::Duration;

/// An API key the test servers accept.
pub const API_KEY: &str = "admin-api-key-admin-api-key-0123456789";

/// A server with [`API_KEY`] configured.
pub async fn server() -> TestServer {
    TestServer::with(|c| c.admin.api_keys = vec![API_KEY.into()]).await
}

/// A JWT with the `admin` grant.
pub fn admin_token() -> String {
    let grants = Grants {
        admin: true,
        ..Grants::default()
    };
    mint("backend", grants, Duration::from_secs(600))
}

/// A token for `user` granting `room`.
pub fn room_token(user: &str, room: &str) -> String {
    let grants = Grants {
        room: Some(room.into()),
        ..Grants::default()
    };
    mint(user, grants, Duration::from_secs(600))
}

/// One API request with the admin JWT: (status, JSON body).
pub async fn api(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call(addr, method, path, Some(&admin_token()), body).await
}

/// One API request with the given bearer: (status, JSON body or `null`).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (status, body) = http_request(addr, method, path, bearer, text.as_deref()).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}
