//! Raw WebSocket transport at `/ws`.
//!
//! Frames are JSON text:
//! - client: `{"event": "call:initiate", "data": {...}, "id": 7}`; `id` is optional and asks
//!   for an ack;
//! - ack: `{"ack": 7, "data": {...}}` or `{"ack": 7, "error": {"code": ..., "message": ...}}`;
//! - server event: `{"event": ..., "data": ...}`.
//!
//! The token comes as `Authorization: Bearer` or `?access_token=`; a missing or bad one is
//! answered with HTTP 401 before the upgrade. A message over `limits.max_frame_bytes` closes the
//! connection with code 1009.

use crate::Signaling;
use crate::driver::Outbound;
use crate::session::{Session, error_event};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use protocol::{ErrorCode, Failure};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Close code for a message over the size limit (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code when the server goes away (shutdown) or drops a client that cannot keep up.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a client that did not keep up with its events.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// Close code when the server cannot go on serving the connection (its hub task ended).
pub const CLOSE_INTERNAL: u16 = 1011;

/// `GET /ws`: authenticates, applies connection limits, then upgrades.
pub async fn upgrade(
    State(sig): State<Arc<Signaling>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Authentication first, so a missing token is a 401 whatever else is wrong.
    let identity = match sig.authenticate(&headers, uri.query()) {
        Ok(identity) => identity,
        Err(refusal) => return refusal.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let permit = match sig.admit(peer) {
        Ok(permit) => permit,
        Err(refusal) => return refusal.into_response(),
    };
    let limit = sig.limits.max_frame_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            run(sig, socket, identity).await;
        })
}

#[derive(Deserialize)]
struct ClientFrame {
    event: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    id: Option<u64>,
}

async fn run(sig: Arc<Signaling>, socket: WebSocket, identity: crate::auth::Identity) {
    let conn = sig.hub.next_connection_id();
    let (outbox, mut inbox) = mpsc::channel(sig.limits.outbound_queue);
    if sig
        .hub
        .connect(conn, identity.clone(), outbox)
        .await
        .is_err()
    {
        return;
    }
    let _gauge = sig.connection_gauge("ws");
    let mut session = Session::new(conn, identity, &sig);
    let (mut sink, mut stream) = socket.split();
    // Acks and errors from the reader go through the writer so frames never interleave.
    let (replies, mut reply_rx) = mpsc::channel::<Message>(16);
    let mut closing = sig.closing();
    let hub = sig.hub.clone();
    let writer = tokio::spawn(async move {
        'write: loop {
            // Biased towards the reader's replies: when the reader ends with a close frame
            // (1009) the hub drops the outbox right after, and that close must win.
            let (message, reply) = tokio::select! {
                biased;
                reply = reply_rx.recv() => match reply {
                    Some(m) => (m, true),
                    None => break,
                },
                event = inbox.recv() => match event {
                    Some(Outbound::Event(e)) => (Message::Text(e.to_frame().into()), false),
                    // The hub dropped us: we did not keep up, or the hub itself is gone.
                    None if hub.is_ended() => (close(CLOSE_INTERNAL, "server error; reconnect"), false),
                    None => (close(CLOSE_TRY_AGAIN_LATER, "too slow to keep up with events"), false),
                },
                _ = closing.wait_for(|c| *c) => (close(CLOSE_GOING_AWAY, "server shutting down"), false),
            };
            if reply {
                // Events queued before this reply was produced go first, so an ack never
                // overtakes them (ADR 0046: an acked ping is a delivery barrier).
                while let Ok(Outbound::Event(e)) = inbox.try_recv() {
                    if sink.send(Message::Text(e.to_frame().into())).await.is_err() {
                        break 'write;
                    }
                }
            }
            let last = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(message) = stream.next().await {
        let reply = match message {
            Ok(Message::Text(text)) => handle_text(&mut session, text.as_str()).await,
            Ok(Message::Binary(_)) => vec![frame_error(
                &Failure::new(
                    ErrorCode::MalformedFrame,
                    "binary frames are not supported; send JSON text",
                ),
                None,
                None,
                None,
            )],
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                let text = e.to_string();
                if text.contains("Space limit exceeded")
                    || text.contains("too long")
                    || text.contains("too big")
                {
                    let _ = replies
                        .send(close(CLOSE_TOO_BIG, "message larger than the limit"))
                        .await;
                }
                break;
            }
        };
        for message in reply {
            if replies.send(message).await.is_err() {
                break;
            }
        }
        if writer.is_finished() {
            break;
        }
    }
    drop(replies);
    sig.hub.disconnect(conn).await;
    let _ = writer.await;
}

async fn handle_text(session: &mut Session, text: &str) -> Vec<Message> {
    let (event, id, result, temp_id) = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => {
            let answer = session.handle(&frame.event, frame.data).await;
            (Some(frame.event), frame.id, answer.result, answer.temp_id)
        }
        Err(e) => {
            // Still answer the ack id when the frame is an object that carries one.
            let id = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_u64));
            let failure = Failure::new(
                ErrorCode::MalformedFrame,
                format!("expected {{\"event\": string, \"data\": ..., \"id\"?: number}}: {e}"),
            );
            (None, id, Err(failure), None)
        }
    };
    let mut out = Vec::with_capacity(2);
    if let Some(id) = id {
        let body = match &result {
            Ok(data) => json!({"ack": id, "data": data}),
            Err(f) => json!({"ack": id, "error": {"code": f.code, "message": f.message}}),
        };
        out.push(Message::Text(body.to_string().into()));
    }
    if let Err(failure) = &result {
        out.push(frame_error(failure, event.as_deref(), id, temp_id));
    }
    out
}

fn frame_error(
    failure: &Failure,
    event: Option<&str>,
    id: Option<u64>,
    temp_id: Option<String>,
) -> Message {
    Message::Text(error_event(failure, event, id, temp_id).to_frame().into())
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
