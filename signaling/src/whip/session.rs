//! One WHIP session: opened by a POST, then a task that owns the session's hub registration,
//! entity tag and offer until the session ends (see the module docs of [`super`] for when).
//!
//! The routes reach the task through [`Command`]s; every answer about the session (a PATCH's
//! entity-tag check, a DELETE) is decided by the task, so a PATCH racing the session's end
//! cannot act on a session that is gone.

use super::sdp::{self, Fragment, IceCredentials};
use super::{Kind, MediaState, Whip, WhipId};
use crate::Signaling;
use crate::auth::{Identity, TokenTerms};
use crate::cluster::Registration;
use crate::media::{MediaAnswer, MediaRequest};
use crate::transport::expiry::{Due, Expiry};
use crate::transport::outbox::{self, Frame, OutboxReader};
use axum::http::StatusCode;
use protocol::{CallId, ClientEvent, ConnectionId, ErrorCode, Failure};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Commands a session's queue holds at most; the routes wait for room, the SFU's news is
/// dropped when full (the session is then busy with plenty).
const QUEUE: usize = 16;

/// What the routes and the SFU ask of a session's task.
pub enum Command {
    /// A PATCH: the `If-Match` value (if any) and the fragment.
    Patch {
        if_match: Option<String>,
        fragment: Fragment,
        reply: oneshot::Sender<Result<Patched, Refusal>>,
    },
    /// A DELETE: answered once the participant has left the room.
    Delete { reply: oneshot::Sender<()> },
    /// The SFU's news about the session's media.
    Media(MediaState),
}

/// What a successful PATCH did.
pub enum Patched {
    /// Candidates were added (204).
    Trickled,
    /// ICE restarted (200): the server's fragment and the new entity tag.
    Restarted { fragment: String, etag: String },
}

/// A refused request: its status and the error body.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub failure: Failure,
}

impl Refusal {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            failure: Failure::new(code, message),
        }
    }
}

impl From<Failure> for Refusal {
    /// A failure of the room join or of the SFU, with the status WHIP clients expect.
    fn from(failure: Failure) -> Self {
        let status = match failure.code {
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidPayload | ErrorCode::MalformedFrame => StatusCode::BAD_REQUEST,
            ErrorCode::LimitExceeded | ErrorCode::InvalidState => StatusCode::CONFLICT,
            ErrorCode::TooManyConnections | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ShuttingDown | ErrorCode::ClusterUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            code if code.is_token_refusal() => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self { status, failure }
    }
}

/// What a session does in its room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// WHIP: publishes its tracks; receives nothing.
    Publish,
    /// WHEP: receives the tracks of whom it views on its offer's m-lines; publishes nothing.
    View { viewed: crate::media::ViewTarget },
}

impl Role {
    /// The kind of session, whose limits it counts toward.
    fn kind(&self) -> Kind {
        match self {
            Role::Publish => Kind::Publish,
            Role::View { .. } => Kind::View,
        }
    }

    /// The media request negotiating `sdp` for this role.
    fn negotiation(&self, sdp: String) -> MediaRequest {
        match self {
            Role::Publish => MediaRequest::Offer { sdp },
            Role::View { viewed } => MediaRequest::View {
                sdp,
                viewed: viewed.clone(),
            },
        }
    }
}

/// A session the POST opened.
pub struct Opened {
    pub id: WhipId,
    pub etag: String,
    pub answer: String,
    pub identity: Identity,
}

/// Opens a session of `identity` in `room` with the client's `offer`: registers a connection
/// with the hub, joins the room, hands the offer to the SFU through the hub's seat check, and
/// starts the session's task. Anything that fails undoes what came before it.
pub async fn open(
    sig: &Arc<Signaling>,
    whip: &Arc<Whip>,
    identity: Identity,
    terms: TokenTerms,
    room: String,
    (role, offer): (Role, String),
) -> Result<Opened, Refusal> {
    if sig.is_draining() {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "the server is shutting down",
        ));
    }
    let Some(client) = sdp::credentials(&offer) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidPayload,
            "the offer has no a=ice-ufrag and a=ice-pwd",
        ));
    };
    // A WHIP or WHEP client cannot take the server's offers, so the hub's seat never
    // subscribes (a viewer's tracks are bound by its own request); it chats nowhere, and a
    // viewer publishes nothing.
    let identity = Identity {
        grants: crate::auth::Grants {
            can_publish: identity.grants.can_publish && role == Role::Publish,
            can_subscribe: false,
            can_chat: false,
            ..identity.grants
        },
        ..identity
    };
    let conn = sig.hub.next_connection_id();
    let (commands, queue) = mpsc::channel(QUEUE);
    let id = whip
        .reserve(&identity, (&room, role.kind()), conn, commands)
        .map_err(|over| {
            Refusal::new(
                StatusCode::CONFLICT,
                ErrorCode::LimitExceeded,
                over.message(&room),
            )
        })?;
    let opened = seat(sig, &identity, conn, (&room, &role), offer.clone()).await;
    let (registration, events, space, answer) = match opened {
        Ok(seated) => seated,
        Err(refusal) => {
            whip.release(&id);
            return Err(refusal);
        }
    };
    let etag = new_etag();
    let task = Task {
        sig: sig.clone(),
        whip: whip.clone(),
        id: id.clone(),
        identity: identity.clone(),
        conn,
        space,
        role,
        offer,
        client,
        etag: etag.clone(),
        connected: false,
    };
    tokio::spawn(task.run(registration, events, queue, terms));
    Ok(Opened {
        id,
        etag,
        answer,
        identity,
    })
}

/// Registers `conn`, seats it in `room` for `role` (a member's `room:join` to publish, a
/// hidden viewer's seat to view) and negotiates `offer`: the registration, the connection's
/// events, the room's space id and the SDP answer.
async fn seat(
    sig: &Arc<Signaling>,
    identity: &Identity,
    conn: ConnectionId,
    (room, role): (&str, &Role),
    offer: String,
) -> Result<(Registration, OutboxReader, CallId, String), Refusal> {
    let (outbox, events) = outbox::channel(&sig.limits);
    let registration = sig
        .routing
        .register(conn, identity, outbox)
        .await
        .map_err(|r| Refusal::from(r.0))?;
    let seated = match take_seat(sig, identity, conn, room, role).await {
        Ok(space) => space,
        Err(failure) => {
            registration.disconnect().await;
            return Err(failure.into());
        }
    };
    let space = seated.unwrap_or_else(|| crate::hub::room::room_id(room));
    let request = role.negotiation(offer);
    let negotiated = sig
        .routing
        .media(conn, identity, Some(space.clone()), request)
        .await;
    match negotiated {
        Ok((_, MediaAnswer::Negotiated(n))) => Ok((registration, events, space, n.answer)),
        Ok(_) => {
            registration.disconnect().await;
            Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the media server did not answer the offer",
            ))
        }
        Err(failure) => {
            registration.disconnect().await;
            Err(failure.into())
        }
    }
}

/// Seats `conn` in `room` for `role`: the room's space id, when the hub named it.
async fn take_seat(
    sig: &Arc<Signaling>,
    identity: &Identity,
    conn: ConnectionId,
    room: &str,
    role: &Role,
) -> Result<Option<CallId>, Failure> {
    // Parsed as a client's `room:join` would be, so the room name gets the same checks.
    let join = ClientEvent::parse("room:join", serde_json::json!({ "room": room }))?;
    match (role, join) {
        (Role::View { .. }, ClientEvent::RoomJoin(r)) => {
            sig.routing.view(conn, &r.room).await.map(Some)
        }
        (_, join) => {
            let ack = sig.routing.event(conn, identity, join).await?;
            Ok(ack["roomId"].as_str().map(|s| CallId(s.to_owned())))
        }
    }
}

/// A session's task: see the module docs.
struct Task {
    sig: Arc<Signaling>,
    whip: Arc<Whip>,
    id: WhipId,
    identity: Identity,
    conn: ConnectionId,
    space: CallId,
    role: Role,
    /// The client's offer as last negotiated: an ICE restart renegotiates it with new
    /// credentials.
    offer: String,
    /// The client's ICE credentials in `offer`.
    client: IceCredentials,
    /// The entity tag of the session: changes with each ICE restart.
    etag: String,
    /// Whether the SFU reported ICE and DTLS up since the answer.
    connected: bool,
}

/// Why a session ended (logged).
#[derive(Debug)]
enum End {
    Deleted(oneshot::Sender<()>),
    NeverConnected,
    MediaFailed,
    LeftRoom,
    Released,
    TokenExpired,
    TokenRevoked,
    Draining,
}

impl Task {
    async fn run(
        mut self,
        registration: Registration,
        mut events: OutboxReader,
        mut queue: mpsc::Receiver<Command>,
        terms: TokenTerms,
    ) {
        // Counted with the WebSocket and Socket.IO connections, under its own transport.
        let gauge = self.sig.connection_gauge("whip");
        let expiry = Expiry::new(terms);
        let mut clock = expiry.clock(self.sig.revocations.clone());
        let mut closing = self.sig.closing();
        let connect_by = tokio::time::Instant::now() + self.whip.settings.connect_timeout;
        let end = loop {
            tokio::select! {
                command = queue.recv() => match command {
                    Some(Command::Patch { if_match, fragment, reply }) => {
                        let _ = reply.send(self.patch(if_match, fragment).await);
                    }
                    Some(Command::Delete { reply }) => break End::Deleted(reply),
                    Some(Command::Media(MediaState::Connected)) => self.connected = true,
                    Some(Command::Media(MediaState::Failed)) => break End::MediaFailed,
                    // The registry holds a sender as long as the session is listed.
                    None => break End::Released,
                },
                event = events.recv() => match event {
                    // Removed from the room (server API), or the room was deleted.
                    Ok(queued) if ends(queued.frame(), &self.space) => break End::LeftRoom,
                    Ok(_) => {}
                    Err(_) => break End::Released,
                },
                () = tokio::time::sleep_until(connect_by), if !self.connected => {
                    break End::NeverConnected;
                }
                due = clock.next() => match due {
                    Due::Warn(_) => {}
                    Due::Expired => break End::TokenExpired,
                    Due::Revoked => break End::TokenRevoked,
                },
                changed = closing.changed() => {
                    if changed.is_err() || *closing.borrow() {
                        break End::Draining;
                    }
                }
            }
        };
        // Unlisted first, so a DELETE that comes now is a 404 rather than a wait.
        self.whip.release(&self.id);
        registration.disconnect().await;
        drop(gauge);
        tracing::info!(
            session = %self.id,
            user = %self.identity.user_id,
            space = %self.space,
            reason = ?end,
            "WHIP session ended"
        );
        if let End::Deleted(reply) = end {
            let _ = reply.send(());
        }
        // Commands queued behind the end find the queue closed: their senders see 404.
        drop(queue);
    }

    /// A PATCH: checks `If-Match` (RFC 9725 §4.3), then trickles the fragment's candidates or
    /// restarts ICE.
    async fn patch(
        &mut self,
        if_match: Option<String>,
        fragment: Fragment,
    ) -> Result<Patched, Refusal> {
        let Some(if_match) = if_match else {
            return Err(Refusal::new(
                StatusCode::PRECONDITION_REQUIRED,
                ErrorCode::InvalidState,
                "a PATCH needs If-Match with the session's ETag (or `*` for an ICE restart)",
            ));
        };
        let restart = fragment.restart(&self.client).map_err(bad_fragment)?;
        let matches =
            if_match.trim() == "*" || if_match.split(',').any(|tag| tag.trim() == self.etag);
        if !matches {
            return Err(Refusal::new(
                StatusCode::PRECONDITION_FAILED,
                ErrorCode::InvalidState,
                "If-Match does not match the session's ETag",
            ));
        }
        if let Some(fresh) = restart {
            return self.restart(fresh, &fragment).await;
        }
        self.trickle(&fragment.candidates).await?;
        Ok(Patched::Trickled)
    }

    /// Renegotiates the client's offer with `fresh` credentials; the SFU answers with new ones
    /// of its own.
    async fn restart(
        &mut self,
        fresh: IceCredentials,
        fragment: &Fragment,
    ) -> Result<Patched, Refusal> {
        let offer = sdp::restarted_offer(&self.offer, &fresh);
        let request = self.role.negotiation(offer.clone());
        let answer = match self.media(request).await? {
            MediaAnswer::Negotiated(n) => n.answer,
            _ => {
                return Err(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "the media server did not answer the restart",
                ));
            }
        };
        let Some(server_fragment) = sdp::answer_fragment(&answer) else {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "the media server's answer has no ICE credentials",
            ));
        };
        self.offer = offer;
        self.client = fresh;
        self.etag = new_etag();
        self.trickle(&fragment.candidates).await?;
        Ok(Patched::Restarted {
            fragment: server_fragment,
            etag: self.etag.clone(),
        })
    }

    async fn trickle(&self, candidates: &[String]) -> Result<(), Refusal> {
        for candidate in candidates {
            let request = MediaRequest::Candidate {
                candidate: Value::String(candidate.clone()),
            };
            self.media(request).await?;
        }
        Ok(())
    }

    async fn media(&self, request: MediaRequest) -> Result<MediaAnswer, Refusal> {
        let space = Some(self.space.clone());
        let (_, answer) = self
            .sig
            .routing
            .media(self.conn, &self.identity, space, request)
            .await?;
        Ok(answer)
    }
}

fn bad_fragment(e: sdp::BadFragment) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidPayload,
        e.to_string(),
    )
}

/// A strong entity tag, quoted as HTTP wants it.
fn new_etag() -> String {
    format!("\"{}\"", super::random_hex())
}

/// Whether `frame` ends the session's seat in `space`: a `call:ended` for that room. The
/// session's connection is one of its user's devices, so it also hears about the user's calls
/// (rung on the user's phone, say); their end is not the session's.
fn ends(frame: &Frame, space: &CallId) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ended {
        call_id: CallId,
    }
    frame.name() == "call:ended"
        && serde_json::from_str::<Ended>(frame.data().get()).is_ok_and(|e| &e.call_id == space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{CallEnded, EndReason, ServerEvent};

    fn ended(call: &str) -> Frame {
        Frame::render(&ServerEvent::CallEnded(CallEnded {
            call_id: CallId(call.into()),
            reason: EndReason::Removed,
        }))
    }

    #[test]
    fn only_the_end_of_the_sessions_room_ends_it() {
        let space = CallId("room:stage".into());
        assert!(ends(&ended("room:stage"), &space));
        assert!(
            !ends(&ended("c0ffee"), &space),
            "another call of the user ending"
        );
        let joined = Frame::render(&ServerEvent::ParticipantLeft(protocol::CallUser {
            call_id: space.clone(),
            user_id: "bob".into(),
        }));
        assert!(!ends(&joined, &space));
    }
}
