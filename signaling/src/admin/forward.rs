//! Forwarding: a server API request about a call or room that another node owns is sent on to
//! that node and its answer returned, so a backend can send every request to any node (behind a
//! load balancer, say) and never handle `wrong_node` itself.
//!
//! The request runs here first. When it answers 421 `wrong_node` (the hub here does not hold
//! the space and the cluster named its owner and the owner's URL), the same method, path and
//! query, `Authorization`, `Content-Type` and body go to that URL with a `chorus-forwarded`
//! header naming this node, and the owner's status, `Content-Type` and body are returned. A
//! forwarded request is never forwarded again: if the space moved meanwhile, the owner's 421
//! comes back as it is, with the newer owner's URL, and no request goes round in circles. When
//! the owner cannot be reached within [`FORWARD_TIMEOUT`] (or its URL is not `http://`), the
//! 421 is returned unchanged, so the caller still learns where to go.
//!
//! Only a clustered node forwards; alone, requests pass through untouched (and unbuffered).

use super::model::ApiError;
use crate::Signaling;
use crate::cluster::Topology;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// Marks a request one node forwarded to another; its value is the forwarding node's id.
pub const FORWARDED: &str = "chorus-forwarded";
/// The longest a forwarded request may take, connecting included.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer taken back from the owner (a long participant list fits many times).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// A 421's own body is small: an error code, a message, a node id and a URL.
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// The middleware; see the module docs.
pub async fn to_owner(State(sig): State<Arc<Signaling>>, request: Request, next: Next) -> Response {
    if sig.routing.cluster().topology() == Topology::Solo
        || request.headers().contains_key(FORWARDED)
    {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limit = sig.admin.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return super::too_large(limit).into_response();
    };
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let answer = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if answer.status() != StatusCode::MISDIRECTED_REQUEST {
        return answer;
    }
    let (answer_parts, answer_body) = answer.into_parts();
    let error = axum::body::to_bytes(answer_body, MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let misdirected = || Response::from_parts(answer_parts.clone(), Body::from(error.clone()));
    let Some(owner) = serde_json::from_slice::<ApiError>(&error)
        .ok()
        .and_then(|e| e.url)
        .filter(|url| url.starts_with("http://"))
    else {
        return misdirected();
    };
    let node = sig.routing.cluster().node().to_string();
    let request = Forward {
        owner: &owner,
        method,
        uri: &uri,
        headers: &headers,
        body: bytes,
        node: &node,
    };
    match tokio::time::timeout(FORWARD_TIMEOUT, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(%owner, %uri, %error, "server API request not forwarded to the owner");
            misdirected()
        }
        Err(_) => {
            tracing::warn!(%owner, %uri, timeout = ?FORWARD_TIMEOUT,
                "server API request not forwarded: the owner did not answer in time");
            misdirected()
        }
    }
}

/// One request to pass on to the owner.
struct Forward<'a> {
    owner: &'a str,
    method: Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: Bytes,
    node: &'a str,
}

impl Forward<'_> {
    async fn send(self) -> Result<Response, String> {
        let authority = self
            .owner
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| format!("not a node URL: {}", self.owner))?;
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = axum::http::Request::builder()
            .method(self.method)
            .uri(path)
            .header(header::HOST, authority)
            .header(header::CONNECTION, "close")
            .header(
                FORWARDED,
                HeaderValue::from_str(self.node).map_err(|e| e.to_string())?,
            );
        for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
            if let Some(value) = self.headers.get(&name) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(self.body))
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let answer = sender.send_request(request).await;
        let answer = match answer {
            Ok(answer) => {
                let status = answer.status();
                let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
                Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map(|body| (status, content_type, body.to_bytes()))
                    .map_err(|e| format!("answer: {e}"))
            }
            Err(e) => Err(format!("HTTP: {e}")),
        };
        driver.abort();
        let (status, content_type, body) = answer?;
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        if let Some(value) = content_type {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        Ok(response)
    }
}
