//! Where a client's token comes from: minted here with the server's HS256 secret
//! (`--token-secret`), or asked from a `--dev` server's `POST /api/v1/dev/token`.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Tokens minted here last this long: longer than any run.
const TTL: Duration = Duration::from_secs(6 * 3600);

/// How tokens are obtained.
#[derive(Clone, Debug)]
pub enum TokenSource {
    /// HS256 with this secret: claims `sub`, `name`, `exp`, `iat` and the `room` grant.
    Secret(String),
    /// `POST /api/v1/dev/token` of the server at this `host:port`.
    DevEndpoint(String),
}

impl TokenSource {
    /// A token for `user` that grants `room`.
    pub async fn token(&self, user: &str, room: &str) -> Result<String, String> {
        match self {
            TokenSource::Secret(secret) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?;
                let claims = json!({
                    "sub": user,
                    "name": user,
                    "iat": now.as_secs(),
                    "exp": (now + TTL).as_secs(),
                    "room": room,
                });
                jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .map_err(|e| format!("minting a token: {e}"))
            }
            TokenSource::DevEndpoint(authority) => {
                let body = json!({"name": user, "userId": user, "room": room}).to_string();
                let reply = post_json(authority, "/api/v1/dev/token", &body).await?;
                reply["token"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("the dev token endpoint answered {reply}"))
            }
        }
    }
}

/// One HTTP/1.1 POST of a JSON body on a fresh connection; the JSON reply of a 2xx.
async fn post_json(authority: &str, path: &str, body: &str) -> Result<Value, String> {
    let mut tcp = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connecting to {authority}: {e}"))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply);
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or("a malformed HTTP reply")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(format!("POST {path}: {head} {body}"));
    }
    // The server answers with Content-Length; a chunked body would start with its size line.
    serde_json::from_str(body.trim()).map_err(|e| format!("POST {path}: {e}: {body}"))
}
