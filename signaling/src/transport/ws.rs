//! Raw WebSocket transport at `/ws`.
//!
//! Frames are JSON text:
//! - client: `{"event": "call:initiate", "data": {...}, "id": 7}`; `id` is optional and asks
//!   for an ack;
//! - ack: `{"ack": 7, "data": {...}}` or `{"ack": 7, "error": {"code": ..., "message": ...}}`;
//! - server event: `{"event": ..., "data": ...}`.
//!
//! The token comes as `Authorization: Bearer` or `?access_token=`; a missing or bad one is
//! answered with HTTP 401 before the upgrade.
//!
//! Close codes (RFC 6455 §7.4.1): 1009 for a message over `limits.max_frame_bytes`, 1007 for a
//! text frame that is not valid UTF-8, 1002 for any other protocol error (an unmasked frame, a
//! reserved bit or opcode, a bad fragment), 1013 for a client too slow to read its events (see
//! [`super::outbox`]), 1001 when the server goes away. A client that stops reading altogether
//! gets no close frame (it would not read it): its socket is reset after `limits.write_timeout`
//! ([`super::deadline`]). After sending a close frame the server waits `limits.close_timeout`
//! for the client's.

use super::expiry::{Due, TokenClock};
use crate::Signaling;
use crate::cluster::{Refusal, Registration};
use crate::driver::HubHandle;
use crate::resume::Departure;
use crate::session::{Session, SessionLimits, error_event};
use crate::transport::outbox::{self, Ended, OutboxReader, Queued};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use protocol::{ErrorCode, Failure};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Close code for a message over the size limit (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for data that does not match its frame type: invalid UTF-8 in a text frame.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code for a frame that breaks the WebSocket protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code when the server goes away (the end of a drain).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a client that did not keep up with its events.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// Close code when the server cannot go on serving the connection (its hub task ended).
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code when the connection's token ran out without a `session:refresh` (application
/// range, RFC 6455 §7.4.2).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code when the connection's token was revoked through the server API.
pub const CLOSE_TOKEN_REVOKED: u16 = 4003;

/// Read buffer of each raw WebSocket connection.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `GET /ws`: authenticates, applies connection limits, then upgrades.
pub async fn upgrade(
    State(sig): State<Arc<Signaling>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Authentication first, so a missing token is a 401 whatever else is wrong.
    let (identity, terms) = match sig.authenticate_session(&headers, uri.query()) {
        Ok(authenticated) => authenticated,
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
    // Registered before the 101 goes out: once the client is connected, events for it reach
    // it from every node.
    let conn = sig.hub.next_connection_id();
    let (outbox, events) = outbox::channel(&sig.limits);
    let registration = match sig.routing.register(conn, &identity, outbox).await {
        Ok(registration) => registration,
        Err(Refusal(failure)) => {
            let status = match failure.code {
                ErrorCode::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return crate::http::failure(status, failure);
        }
    };
    let limit = sig.limits.max_frame_bytes;
    // tungstenite zeroes its whole read buffer before every read (128 KiB by default): with
    // small frames that memset was the largest single cost of a chat message, and it makes
    // each connection that ever read a frame keep 128 KiB resident. 4 KiB, as Socket.IO's
    // engine uses; larger frames still grow the buffer as they need.
    ws.read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            run(sig, socket, (identity, terms), events, registration).await;
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

async fn run(
    sig: Arc<Signaling>,
    socket: WebSocket,
    (identity, terms): (crate::auth::Identity, crate::auth::TokenTerms),
    events: OutboxReader,
    registration: Registration,
) {
    let conn = registration.conn();
    let mut registration = registration;
    let _gauge = sig.connection_gauge("ws");
    let mut session = Session::new(conn, identity, terms, &sig);
    session.announce().await;
    let (sink, mut stream) = socket.split();
    // Acks and errors from the reader go through the writer so frames never interleave.
    let (replies, reply_rx) = mpsc::channel::<Out>(16);
    let mut writer = tokio::spawn(write(
        sink,
        events,
        reply_rx,
        sig.closing(),
        session.token_clock(),
        sig.limits,
        sig.hub.clone(),
    ));
    // How the writer ended, once it has; then the client has `close_timeout` to answer our
    // close frame.
    let mut written = None;
    let mut answer_by = None;
    // The outbox, back from a writer that ended first.
    let mut returned = None;
    // Whether the session may be resumed: only when the connection broke without a goodbye.
    let mut departure = Departure::Left;
    loop {
        let hand_over = session.hand_over();
        let message = tokio::select! {
            message = stream.next() => message,
            end = &mut writer, if written.is_none() => {
                let (end, events) = match end {
                    Ok((end, events)) => (end, Some(events)),
                    Err(_) => (Written::Stalled, None),
                };
                returned = events;
                written = Some(end);
                match end {
                    Written::Closed => {
                        answer_by = Some(Instant::now() + sig.limits.close_timeout);
                        continue;
                    }
                    // A write failed: the network is gone, not the client's wish.
                    Written::Stalled => {
                        departure = Departure::Dropped;
                        break;
                    }
                }
            }
            () = until(answer_by) => break,
            // A resume on a new connection takes this session over.
            () = hand_over.notified(), if written.is_none() => {
                departure = Departure::Dropped;
                break;
            }
        };
        if written.is_some() {
            // Closing: only the client's close frame (or the deadline) matters now.
            match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            }
        }
        let reply = match message {
            Some(Ok(Message::Text(text))) => handle_text(&mut session, text.as_str()).await,
            Some(Ok(Message::Binary(_))) => vec![frame_error(
                &Failure::new(
                    ErrorCode::MalformedFrame,
                    "binary frames are not supported; send JSON text",
                ),
                None,
                None,
                None,
            )],
            Some(Ok(Message::Close(_))) => break,
            // No close frame: the connection broke.
            None => {
                departure = Departure::Dropped;
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                match close_for(e) {
                    Some(close) => {
                        let _ = replies.send(Out::Send(close)).await;
                    }
                    None => departure = Departure::Dropped,
                }
                break;
            }
        };
        let resumed = session.take_resumed();
        for message in reply {
            if replies.send(Out::Send(message)).await.is_err() {
                break;
            }
        }
        if let Some(resumed) = resumed {
            // After the resume's ack, the writer switches to the resumed outbox (the missed
            // events first) before this connection's own goes: replies are taken first.
            let _ = replies.send(Out::Switch(resumed.events)).await;
            let own = std::mem::replace(&mut registration, resumed.registration);
            own.disconnect().await;
        }
    }
    match departure {
        Departure::Dropped if written.is_none() => {
            // Nothing more can be written: the writer hands the outbox back at once.
            let _ = replies.send(Out::Stop).await;
            drop(replies);
            let events = writer.await.ok().map(|(_, events)| events);
            session.finish(departure, registration, events).await;
        }
        Departure::Dropped => session.finish(departure, registration, returned).await,
        Departure::Left => {
            drop(replies);
            session.finish(departure, registration, None).await;
            if written.is_none() {
                // Bounded: the writer's last write and close have the socket's deadline.
                let _ = writer.await;
            }
        }
    }
}

/// What the reader hands the writer.
enum Out {
    /// An ack, an error or a close frame.
    Send(Message),
    /// `session:resume` took over a dropped session: write from its outbox from now on.
    Switch(OutboxReader),
    /// The connection broke: stop without a close and give the outbox back.
    Stop,
}

/// How the writer task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// It sent a close frame, or finished the close after the reader ended.
    Closed,
    /// A write failed (or missed the socket's deadline): nothing more can be sent.
    Stalled,
}

/// Writes replies and server events until a close frame goes out, the reader ends, or a write
/// fails. Each queued event stays charged to the outbox until it is written.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut events: OutboxReader,
    mut replies: mpsc::Receiver<Out>,
    mut closing: watch::Receiver<bool>,
    mut token: TokenClock,
    limits: SessionLimits,
    hub: HubHandle,
) -> (Written, OutboxReader) {
    // Events fed to the sink and not yet flushed: each stays charged to the outbox until its
    // bytes are written.
    let mut written: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    loop {
        // Biased towards the reader's replies: when the reader ends with a close frame (1009)
        // the hub drops the outbox right after, and that close must win.
        let next = tokio::select! {
            biased;
            reply = replies.recv() => match reply {
                Some(Out::Send(m)) => Next::Reply(m),
                Some(Out::Switch(resumed)) => {
                    // This connection's own outbox goes; the resumed one's backlog is written
                    // next, before any later reply.
                    events = resumed;
                    written.clear();
                    continue;
                }
                Some(Out::Stop) => return (Written::Stalled, events),
                None => break,
            },
            next = events.recv() => Next::Event(next),
            _ = closing.wait_for(|c| *c) => Next::Closing,
            due = token.next() => Next::Token(due),
        };
        let message = match next {
            Next::Reply(m) => {
                // Events queued before this reply was produced go first, so an ack never
                // overtakes them (ADR 0046: an acked ping is a delivery barrier).
                if feed_queued(&mut sink, &mut events, &mut written, usize::MAX)
                    .await
                    .is_err()
                {
                    return (Written::Stalled, events);
                }
                m
            }
            Next::Event(Ok(queued)) => {
                let message = Message::Text(queued.frame().text());
                if sink.feed(message).await.is_err() {
                    return (Written::Stalled, events);
                }
                written.push(queued);
                // Whatever else is queued now goes out in the same write.
                if feed_queued(&mut sink, &mut events, &mut written, MAX_BATCH - 1)
                    .await
                    .is_err()
                {
                    return (Written::Stalled, events);
                }
                if sink.flush().await.is_err() {
                    return (Written::Stalled, events);
                }
                // Written: their bytes leave the outbox's account.
                written.clear();
                continue;
            }
            Next::Event(Err(Ended::Overflowed)) => {
                close(CLOSE_TRY_AGAIN_LATER, "too slow to keep up with events")
            }
            // The hub let go: its task ended (every command would fail), or it is stopping.
            Next::Event(Err(Ended::Released)) if hub.is_ended() => {
                close(CLOSE_INTERNAL, "server error; reconnect")
            }
            Next::Event(Err(Ended::Released)) => close(CLOSE_GOING_AWAY, "server going away"),
            Next::Closing => close(CLOSE_GOING_AWAY, "server shutting down"),
            Next::Token(Due::Warn(until)) => {
                Message::Text(crate::session::expiring(until).to_frame().into())
            }
            Next::Token(Due::Expired) => {
                let expired = Failure::new(
                    ErrorCode::TokenExpired,
                    "the connection's token expired; connect again with a new one",
                );
                if sink
                    .send(frame_error(&expired, None, None, None))
                    .await
                    .is_err()
                {
                    return (Written::Stalled, events);
                }
                close(CLOSE_TOKEN_EXPIRED, "token expired")
            }
            Next::Token(Due::Revoked) => {
                if sink
                    .send(frame_error(&revoked(), None, None, None))
                    .await
                    .is_err()
                {
                    return (Written::Stalled, events);
                }
                close(CLOSE_TOKEN_REVOKED, "token revoked")
            }
        };
        let last = matches!(message, Message::Close(_));
        // `send` flushes: with any events fed before it, one write.
        if sink.send(message).await.is_err() {
            return (Written::Stalled, events);
        }
        written.clear();
        if last {
            return (Written::Closed, events);
        }
    }
    // The reader ended (the client closed, or sent something that closed the connection).
    let written = match tokio::time::timeout(limits.close_timeout, sink.close()).await {
        Ok(Ok(())) => Written::Closed,
        _ => Written::Stalled,
    };
    (written, events)
}

/// Events written with one flush at most: bounds the bytes a burst holds in the sink's buffer
/// beside the outbox's own bound.
const MAX_BATCH: usize = 32;

/// Feeds up to `limit` events queued now to `sink` without flushing, keeping their outbox
/// charge in `written`.
async fn feed_queued(
    sink: &mut SplitSink<WebSocket, Message>,
    events: &mut OutboxReader,
    written: &mut Vec<Queued>,
    limit: usize,
) -> Result<(), axum::Error> {
    for _ in 0..limit {
        let Some(queued) = events.try_recv() else {
            break;
        };
        sink.feed(Message::Text(queued.frame().text())).await?;
        written.push(queued);
    }
    Ok(())
}

/// What the writer does next.
enum Next {
    Reply(Message),
    Event(Result<outbox::Queued, Ended>),
    Closing,
    Token(Due),
}

/// Resolves at `deadline`, or never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The close frame a read error calls for (RFC 6455 §7.4.1), or none when the connection cannot
/// carry one any more.
fn close_for(error: axum::Error) -> Option<Message> {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let error = error.into_inner();
    match error.downcast_ref::<Error>()? {
        Error::Capacity(_) => Some(close(CLOSE_TOO_BIG, "message larger than the limit")),
        Error::Utf8(_) => Some(close(CLOSE_INVALID_DATA, "text that is not valid UTF-8")),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some(close(CLOSE_PROTOCOL_ERROR, "WebSocket protocol error")),
        _ => None,
    }
}

async fn handle_text(session: &mut Session, text: &str) -> Vec<Message> {
    let (event, id, result, temp_id) = match decode(text) {
        Ok(frame) => {
            let answer = session.handle(&frame.event, frame.data).await;
            (Some(frame.event), frame.id, answer.result, answer.temp_id)
        }
        Err((id, failure)) => (None, id, Err(failure), None),
    };
    let mut out = Vec::with_capacity(2);
    if let Some(id) = id {
        let body = match &result {
            Ok(data) => acked(id, data),
            Err(f) => {
                json!({"ack": id, "error": {"code": f.code, "message": f.message}}).to_string()
            }
        };
        out.push(Message::Text(body.into()));
    }
    if let Err(failure) = &result {
        out.push(frame_error(failure, event.as_deref(), id, temp_id));
    }
    out
}

/// `{"ack": id, "data": ...}`, written from the answer without copying it first.
fn acked(id: u64, data: &Value) -> String {
    #[derive(serde::Serialize)]
    struct Ack<'a> {
        ack: u64,
        data: &'a Value,
    }
    serde_json::to_string(&Ack { ack: id, data }).unwrap_or_default()
}

/// Why a text frame is not a client frame, with the ack id to answer when the frame is an
/// object that carries one.
type Refused = (Option<u64>, Failure);

/// Reads a client text frame, or says why it is not one.
fn decode(text: &str) -> Result<ClientFrame, Refused> {
    serde_json::from_str::<ClientFrame>(text).map_err(|e| {
        let id = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_u64));
        let failure = Failure::new(
            ErrorCode::MalformedFrame,
            format!("expected {{\"event\": string, \"data\": ..., \"id\"?: number}}: {e}"),
        );
        (id, failure)
    })
}

/// [`decode`] for the fuzz targets (`fuzz/`): the event name, data and ack id of a frame.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn decode_frame(text: &str) -> Result<(String, Value, Option<u64>), Refused> {
    decode(text).map(|f| (f.event, f.data, f.id))
}

fn frame_error(
    failure: &Failure,
    event: Option<&str>,
    id: Option<u64>,
    temp_id: Option<String>,
) -> Message {
    Message::Text(error_event(failure, event, id, temp_id).to_frame().into())
}

/// What a session whose token was revoked is told before it is closed.
pub(crate) fn revoked() -> Failure {
    Failure::new(
        ErrorCode::TokenRevoked,
        "the connection's token was revoked; connect again with a new one",
    )
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
