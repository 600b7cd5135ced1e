//! Socket.IO v5 transport at `/socket.io/`, on socketioxide.
//!
//! `io(url, {auth: {token}})` (or `?access_token=`, or `Authorization: Bearer`) authenticates in a
//! connect middleware; a refusal is a `connect_error` whose `message` is the error code (for
//! example `token_expired`), since Socket.IO carries nothing else there.
//!
//! Every event goes through one ordered queue per socket: socketioxide spawns a task per message,
//! which would let an `ice-candidate` overtake its `offer`. The `Enqueued` extractor runs
//! synchronously in arrival order and pushes the message on the queue; one task per socket
//! drains it through the [`Session`]. Acks: success is acked with the payload itself, failure
//! with `{"error": {"code", "message"}}`, and failures also emit `error`.
//!
//! Acks go out through the task that emits the connection's events, after every event already
//! queued for it, so an ack never overtakes an event the hub sent before it answered (ADR
//! 0046). socketioxide keeps that order on the wire: emits and acks share the engine.io
//! socket's one channel.
//!
//! Output: server events wait in the connection's byte-bounded [`super::outbox`]; one
//! task per socket hands them to socketioxide, each as its pre-rendered payload (no second
//! serialization per recipient), and only while socketioxide's own per-socket buffer has room.
//! That buffer counts packets, not bytes: it holds at most [`buffered_packets`] of them (acks,
//! `error` events and server events together), so what one socket can hold beyond its outbox is
//! that many packets of at most about `limits.max_frame_bytes` (relayed signals are the largest
//! events). A socket whose buffer stays full for `limits.write_timeout` is closed, and a peer
//! that stops reading is closed by the socket's write deadline ([`super::deadline`]).
//!
//! Memory of an idle socket (issue 13; figures in docs/benchmarks.md, "Signaling: memory per
//! idle connection"): the largest shares are socketioxide's, fixed by it (the first block of
//! its per-socket packet channel, about 5 kB, its tasks, the 4 KiB WebSocket read buffer, which
//! it shares with the raw transport), then the session's two tasks. Two things keep ours small:
//! [`detach_head`] copies the request head out of hyper's 8 KiB read buffer, which engineioxide
//! would otherwise pin for the life of the session; and the socket's two queues carry boxes,
//! since a tokio channel allocates its first 32 slots when it is made.

use crate::Signaling;
use crate::auth::Identity;
use crate::cluster::{Refusal, Registration};
use crate::limits::ConnectionPermit;
use crate::resume::Departure;
use crate::session::{Session, SessionLimits, error_event};
use crate::transport::expiry::{Due, TokenClock};
use crate::transport::outbox::{self, Frame, OutboxReader, Queued};
use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::http::{HeaderMap, HeaderValue, Uri};
use protocol::{ErrorCode, Failure};
use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts};
use socketioxide::socket::{DisconnectReason, Socket};
use socketioxide::{SendError, SocketError, SocketIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events queued for one socket before further ones are refused as `rate_limited`.
const QUEUE: usize = 256;

/// Registers the default namespace's handlers on `io`.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// Packets socketioxide may buffer per socket: room for a burst of acks, yet few enough that
/// relayed signals of `max_frame_bytes` hold about the outbox's byte budget (at least 64).
pub fn buffered_packets(limits: &SessionLimits) -> usize {
    (limits.outbound_queue_bytes / limits.max_frame_bytes).max(64)
}

/// Builds the Socket.IO layer for the router, sized by the signaling limits.
pub fn layer(sig: Arc<Signaling>) -> (socketioxide::layer::SocketIoLayer, SocketIo) {
    let limit = sig.limits.max_frame_bytes;
    let (layer, io) = SocketIo::builder()
        .max_payload(limit as u64)
        .ws_max_message_size(limit)
        .ws_max_frame_size(limit)
        .max_buffer_size(buffered_packets(&sig.limits))
        .connect_timeout(Duration::from_secs(10))
        .with_state(sig)
        .build_layer();
    register(&io);
    (layer, io)
}

/// The path socketioxide serves (its default).
pub const PATH: &str = "/socket.io";

/// Copies the URI and header values of a request for [`PATH`] out of the buffer hyper read them
/// into; other requests pass unchanged.
///
/// hyper parses a request without copying: its URI and every header value are slices of the
/// connection's read buffer (8 KiB), and axum's `OriginalUri` is one more. engineioxide keeps the
/// request head for as long as the Socket.IO session lives (it is what `req_parts` hands out),
/// so without the copies every idle Socket.IO connection pinned that whole buffer for the few
/// hundred bytes of its head. The raw WebSocket handler lets go of its request at the upgrade.
pub async fn detach_head(mut request: Request) -> Request {
    if !request.uri().path().starts_with(PATH) {
        return request;
    }
    *request.uri_mut() = owned_uri(request.uri());
    if let Some(OriginalUri(original)) = request.extensions_mut().get_mut::<OriginalUri>() {
        *original = owned_uri(original);
    }
    let mut headers = HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        // `from_bytes` copies; the bytes were a valid header value already.
        let mut owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        headers.append(name, owned);
    }
    *request.headers_mut() = headers;
    request
}

/// `uri` in an allocation of its own (parsing a `String` takes it over).
fn owned_uri(uri: &Uri) -> Uri {
    uri.to_string().parse().unwrap_or_else(|_| uri.clone())
}

#[derive(Clone)]
struct Admitted {
    identity: Identity,
    /// Until when the token is accepted, and what a revocation would name.
    terms: crate::auth::TokenTerms,
    // Held for the life of the socket; dropped with the extension on disconnect.
    _permit: Arc<ConnectionPermit>,
}

/// The socket's queue of client events. Boxed: a tokio channel allocates its first block of 32
/// slots when it is made, so an idle socket holds 32 of whatever it carries.
#[derive(Clone)]
struct Inbox(mpsc::Sender<Box<Incoming>>);

struct Incoming {
    event: String,
    data: Value,
    ack: AckSender,
}

/// The session's answer to one event, on its way to the emitting task.
struct Reply {
    event: String,
    ack: AckSender,
    answer: crate::session::Answer,
}

#[derive(Debug)]
struct Refused(ErrorCode);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

async fn authenticate(
    s: SocketRef,
    State(sig): State<Arc<Signaling>>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refused> {
    let parts = s.req_parts();
    let from_auth = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned));
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (identity, terms, permit) = sig
        .admit_token(from_auth, &parts.headers, parts.uri.query(), peer)
        .map_err(|r| Refused(r.code))?;
    // Registered before CONNECT goes out: once the client is connected, events for it reach it
    // from every node. The registration undoes itself if the socket goes first.
    let conn = sig.hub.next_connection_id();
    let (outbox, events) = outbox::channel(&sig.limits);
    let registration = sig
        .routing
        .register(conn, &identity, outbox)
        .await
        .map_err(|Refusal(f)| Refused(f.code))?;
    s.extensions.insert(Admitted {
        identity,
        terms,
        _permit: Arc::new(permit),
    });
    s.extensions
        .insert(Registered(Arc::new(std::sync::Mutex::new(Some((
            events,
            registration,
        ))))));
    // socketioxide sends CONNECT right after the middlewares, then spawns the connect handler:
    // the queue and the handlers must exist before that, or an event the client sends at once
    // would find no handler.
    let (queue, incoming) = mpsc::channel::<Box<Incoming>>(QUEUE);
    s.extensions.insert(Inbox(queue));
    s.extensions
        .insert(Pending(Arc::new(std::sync::Mutex::new(Some(incoming)))));
    let departed = Departed::default();
    s.extensions.insert(departed.clone());
    s.on_fallback(async |_: Enqueued| {});
    s.on_disconnect(async |s: SocketRef, reason: DisconnectReason| {
        // Read by the session task once its queue closes (removing the inbox closes it).
        if let Some(departed) = s.extensions.get::<Departed>() {
            *departed.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(departure_of(reason));
        }
        s.extensions.remove::<Inbox>();
        s.extensions.remove::<Pending>();
        s.extensions.remove::<Admitted>();
        s.extensions.remove::<Registered>();
    });
    Ok(())
}

/// How the socket went, set by the disconnect handler: a transport that broke (closed, failed,
/// missed its heartbeats) may be resumed; a Socket.IO disconnect by either side may not.
#[derive(Clone, Default)]
struct Departed(Arc<std::sync::Mutex<Option<Departure>>>);

fn departure_of(reason: DisconnectReason) -> Departure {
    match reason {
        DisconnectReason::TransportClose
        | DisconnectReason::TransportError
        | DisconnectReason::HeartbeatTimeout
        | DisconnectReason::MultipleHttpPollingError => Departure::Dropped,
        DisconnectReason::PacketParsingError
        | DisconnectReason::ClientNSDisconnect
        | DisconnectReason::ServerNSDisconnect
        | DisconnectReason::ClosingServer => Departure::Left,
    }
}

/// What the session task hands the emitting task besides acks. The large variants are boxed, as
/// in [`Inbox`]: the channel's first block holds 32 of these from the start.
enum Control {
    Reply(Box<Reply>),
    /// `session:resume` took over a dropped session: emit from its outbox, as its connection.
    Switch(Box<(OutboxReader, protocol::ConnectionId)>),
    /// The socket broke: stop and give the outbox back.
    Stop,
}

/// The connection's outbox reader and registration, from the middleware to the connect handler.
#[derive(Clone)]
struct Registered(Arc<std::sync::Mutex<Option<(OutboxReader, Registration)>>>);

/// The receiving end of the socket's queue, from the middleware to the connect handler.
#[derive(Clone)]
struct Pending(Arc<std::sync::Mutex<Option<mpsc::Receiver<Box<Incoming>>>>>);

async fn on_connect(s: SocketRef, State(sig): State<Arc<Signaling>>) {
    let incoming = s
        .extensions
        .get::<Pending>()
        .and_then(|p| p.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    let registered = s
        .extensions
        .get::<Registered>()
        .and_then(|r| r.0.lock().unwrap_or_else(|e| e.into_inner()).take());
    let (Some(admitted), Some(mut incoming), Some((events, registration))) =
        (s.extensions.get::<Admitted>(), incoming, registered)
    else {
        let _ = s.disconnect();
        return;
    };
    let conn = registration.conn();
    let gauge = sig.connection_gauge("socketio");
    let departed = s.extensions.get::<Departed>().unwrap_or_default();
    let mut session = Session::new(
        conn,
        admitted.identity.clone(),
        admitted.terms.clone(),
        &sig,
    );
    let token = session.token_clock();
    let socket = s.clone();
    let sig = sig.clone();
    // Client events in, in order.
    tokio::spawn(async move {
        let mut registration = registration;
        let identity = admitted.identity.clone();
        let (replies, replies_rx) = mpsc::channel::<Control>(QUEUE);
        let emitter = tokio::spawn(emit_events(
            socket.clone(),
            events,
            replies_rx,
            sig.clone(),
            conn,
            identity.clone(),
            token,
        ));
        session.announce().await;
        let mut handed_over = false;
        loop {
            let hand_over = session.hand_over();
            let next = tokio::select! {
                next = incoming.recv() => next,
                () = hand_over.notified() => {
                    handed_over = true;
                    None
                }
            };
            let Some(incoming) = next else {
                break;
            };
            let Incoming { event, data, ack } = *incoming;
            let answer = session.handle(&event, data).await;
            // Fails only once the emitting task ended, when the socket is going away.
            let _ = replies
                .send(Control::Reply(Box::new(Reply { event, ack, answer })))
                .await;
            if let Some(resumed) = session.take_resumed() {
                // After the resume's ack, emit from the resumed outbox (the missed events
                // first), switched to before this connection's own goes.
                let _ = replies
                    .send(Control::Switch(Box::new((resumed.events, session.conn))))
                    .await;
                let own = std::mem::replace(&mut registration, resumed.registration);
                own.disconnect().await;
            }
        }
        // The queue closes when the socket disconnects.
        let departure = if handed_over {
            let _ = socket.clone().disconnect();
            Departure::Dropped
        } else {
            departed
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(Departure::Left)
        };
        match departure {
            Departure::Dropped => {
                let _ = replies.send(Control::Stop).await;
                drop(replies);
                let events = emitter.await.ok().flatten();
                session.finish(departure, registration, events).await;
            }
            Departure::Left => {
                drop(replies);
                session.finish(departure, registration, None).await;
            }
        }
        drop(gauge);
    });
}

/// Server events and the session's acks out, until the hub drops the connection or the server
/// closes; then the socket is closed.
async fn emit_events(
    socket: SocketRef,
    mut events: OutboxReader,
    mut replies: mpsc::Receiver<Control>,
    sig: Arc<Signaling>,
    mut conn: protocol::ConnectionId,
    identity: Identity,
    mut token: TokenClock,
) -> Option<OutboxReader> {
    let mut closing = sig.closing();
    let emit = |queued: Queued, conn: protocol::ConnectionId| {
        let socket = socket.clone();
        let sig = sig.clone();
        let identity = identity.clone();
        async move {
            let frame = queued.frame();
            when_buffered(&sig.limits, || match frame.incoming_call() {
                Some(call) => {
                    ring_with_ack(&socket, frame, call.clone(), &sig.routing, conn, &identity)
                }
                None => socket.emit(frame.name(), frame.data()),
            })
            .await
        }
    };
    'emit: loop {
        // Biased towards the session's messages: a resume's switch must be taken before this
        // connection's own outbox, released right after it, could end the loop.
        let next = tokio::select! {
            biased;
            Some(control) = replies.recv() => match control {
                Control::Reply(reply) => Next::Reply(*reply),
                Control::Switch(switch) => {
                    let (resumed, as_conn) = *switch;
                    events = resumed;
                    conn = as_conn;
                    continue;
                }
                Control::Stop => return Some(events),
            },
            next = events.recv() => Next::Event(next),
            _ = closing.wait_for(|c| *c) => Next::Closing,
            due = token.next() => Next::Token(due),
        };
        match next {
            Next::Reply(Reply { event, ack, answer }) => {
                // Events queued before this answer was produced go first (see the module docs).
                while let Some(queued) = events.try_recv() {
                    if emit(queued, conn).await.is_err() {
                        break 'emit;
                    }
                }
                match answer.result {
                    Ok(data) => {
                        let _ = ack.send(&data);
                    }
                    Err(failure) => refuse(&socket, ack, &failure, &event, answer.temp_id),
                }
            }
            Next::Event(Ok(queued)) => {
                if emit(queued, conn).await.is_err() {
                    break;
                }
            }
            Next::Token(Due::Warn(until)) => {
                let event = crate::session::expiring(until);
                if when_buffered(&sig.limits, || socket.emit(event.name(), &event.data()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Next::Token(Due::Expired) => {
                let expired = Failure::new(
                    ErrorCode::TokenExpired,
                    "the connection's token expired; connect again with a new one",
                );
                let event = error_event(&expired, None, None, None);
                let _ =
                    when_buffered(&sig.limits, || socket.emit(event.name(), &event.data())).await;
                break;
            }
            Next::Token(Due::Revoked) => {
                let event = error_event(&super::ws::revoked(), None, None, None);
                let _ =
                    when_buffered(&sig.limits, || socket.emit(event.name(), &event.data())).await;
                break;
            }
            // Dropped for not keeping up, or released after the socket went.
            Next::Event(Err(_)) | Next::Closing => break,
        }
    }
    close(&socket, &sig.limits).await;
    Some(events)
}

/// What the emitting task does next.
enum Next {
    Reply(Reply),
    Event(Result<Queued, outbox::Ended>),
    Closing,
    Token(Due),
}

/// Runs `emit` until socketioxide's buffer takes the packet, waiting while it is full; fails when
/// the socket is gone or its buffer stays full for `limits.write_timeout`.
async fn when_buffered(
    limits: &SessionLimits,
    mut emit: impl FnMut() -> Result<(), SendError>,
) -> Result<(), SendError> {
    let deadline = tokio::time::Instant::now() + limits.write_timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match emit() {
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                // socketioxide offers no wait for room: back off, briefly.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Disconnects the socket. Its DISCONNECT packet needs room in the buffer too; while there is
/// none, the socket is still draining (or, if its peer stopped reading, about to be closed by
/// the write deadline or the engine.io heartbeat), so keep trying until it is closed either way.
async fn close(socket: &SocketRef, limits: &SessionLimits) {
    while socket.connected() {
        let full = when_buffered(limits, || {
            socket.clone().disconnect().map_err(SendError::Socket)
        })
        .await;
        if !matches!(
            full,
            Err(SendError::Socket(SocketError::InternalChannelFull))
        ) {
            break;
        }
    }
}

/// Emits `call:incoming` asking for an ack; the client's ack confirms the device rings, which
/// the caller hears as `call:ringing` (the raw WebSocket equivalent is a `call:ringing` event).
fn ring_with_ack(
    socket: &SocketRef,
    frame: &Frame,
    call_id: protocol::CallId,
    router: &Arc<crate::cluster::Router>,
    conn: protocol::ConnectionId,
    identity: &Identity,
) -> Result<(), SendError> {
    let acks = socket.emit_with_ack::<_, AnyAck>(frame.name(), frame.data())?;
    let router = router.clone();
    let identity = identity.clone();
    tokio::spawn(async move {
        // Any ack counts; a client that does not ack simply never confirms.
        if acks.await.is_ok() {
            let ringing = protocol::ClientEvent::CallRinging(protocol::CallRef { call_id });
            let _ = router.event(conn, &identity, ringing).await;
        }
    });
    Ok(())
}

/// A client's ack with whatever arguments it carries, none included: `ack()` arrives as `31[]`,
/// which a typed single value (`serde_json::Value`) fails to decode. Any ack confirms.
struct AnyAck;

impl<'de> Deserialize<'de> for AnyAck {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Arguments;
        impl<'de> Visitor<'de> for Arguments {
            type Value = AnyAck;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the arguments of an ack")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut args: A) -> Result<AnyAck, A::Error> {
                while args.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyAck)
            }
        }
        // As a tuple, socketioxide hands over the whole argument list, however long, instead
        // of requiring a first argument.
        deserializer.deserialize_tuple(usize::MAX, Arguments)
    }
}

fn refuse(
    socket: &SocketRef,
    ack: AckSender,
    failure: &Failure,
    event: &str,
    temp_id: Option<String>,
) {
    let _ = ack.send(&json!({"error": {"code": failure.code, "message": failure.message}}));
    let e = error_event(failure, Some(event), None, temp_id);
    let _ = socket.emit(e.name(), &e.data());
}

/// Extractor that queues the message in arrival order; see the module docs.
struct Enqueued;

impl FromMessageParts<LocalAdapter> for Enqueued {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let event = Event::from_message_parts(s, v, ack_id)
            .map(|e| e.0)
            .unwrap_or_default();
        // An event emitted without data decodes as an error; it means "no data".
        let data = TryData::<Value>::from_message_parts(s, v, ack_id)
            .ok()
            .and_then(|d| d.0.ok())
            .unwrap_or(Value::Null);
        let Ok(ack) = AckSender::from_message_parts(s, v, ack_id);
        let Some(Inbox(queue)) = s.extensions.get::<Inbox>() else {
            return Ok(Enqueued);
        };
        if let Err(mpsc::error::TrySendError::Full(incoming)) =
            queue.try_send(Box::new(Incoming { event, data, ack }))
        {
            let Incoming { ack, event, .. } = *incoming;
            let failure = Failure::new(ErrorCode::RateLimited, "too many events queued; slow down");
            refuse(&SocketRef::from(s.clone()), ack, &failure, &event, None);
        }
        Ok(Enqueued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use std::ops::Range;

    /// A request as hyper hands it over: URI and header values sliced out of one read buffer.
    fn parsed(path: &str) -> (Request, Range<usize>) {
        let token = "Bearer a.b.c";
        let buffer = Bytes::from(format!("{path}{token}").into_bytes());
        let within = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        let uri = Uri::from_maybe_shared(buffer.slice(..path.len())).unwrap();
        let mut authorization = HeaderValue::from_maybe_shared(buffer.slice(path.len()..)).unwrap();
        authorization.set_sensitive(true);
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(axum::http::header::AUTHORIZATION, authorization);
        request.extensions_mut().insert(OriginalUri(uri));
        (request, within)
    }

    fn in_buffer(bytes: &[u8], buffer: &Range<usize>) -> bool {
        buffer.contains(&(bytes.as_ptr() as usize))
    }

    #[tokio::test]
    async fn a_socketio_request_keeps_nothing_of_the_read_buffer() {
        let path = "/socket.io/?EIO=4&transport=websocket";
        let (request, buffer) = parsed(path);
        let request = detach_head(request).await;

        assert_eq!(request.uri(), path);
        assert!(!in_buffer(request.uri().path().as_bytes(), &buffer));
        let OriginalUri(original) = request.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original, path);
        assert!(!in_buffer(original.path().as_bytes(), &buffer));
        let authorization = &request.headers()[axum::http::header::AUTHORIZATION];
        assert_eq!(authorization, "Bearer a.b.c");
        assert!(authorization.is_sensitive());
        assert!(!in_buffer(authorization.as_bytes(), &buffer));
    }

    #[tokio::test]
    async fn other_requests_pass_unchanged() {
        let (request, buffer) = parsed("/api/v1/presence");
        let request = detach_head(request).await;

        assert!(in_buffer(request.uri().path().as_bytes(), &buffer));
        let authorization = &request.headers()[axum::http::header::AUTHORIZATION];
        assert!(in_buffer(authorization.as_bytes(), &buffer));
    }
}
