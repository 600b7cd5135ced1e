//! The seam to a media server (the SFU), plugged in by the binary.
//!
//! Signaling decides *who* may send media where; the media server moves the media. A seat is
//! one connection in one media space: an SFU-mode call, or a named room (`room:<name>`).
//!
//! One owner per fact: the hub owns who sits where (its calls and rooms), the media server
//! owns the media state of each seat. Nothing else keeps a list of seats. To keep the two in
//! step, every media command is issued by the hub's driver task, in the order the hub's state
//! changed:
//! - a client's media request ([`MediaRequest`]) is authorized by the hub and handed to
//!   [`MediaServer::submit`] in the same step, so it cannot slip behind the seat's leave;
//! - seats that end (leave, hang-up, disconnect, call ended) and mute toggles come out of the
//!   hub as [`MediaCommand`]s and go to [`MediaServer::apply`] before the driver takes its
//!   next command.
//!
//! The media server queues each call at once and answers later ([`MediaReply`]), so the driver
//! never waits on media. The seat joins the media server on its first offer.
//!
//! Events from the media server (tracks published, server-initiated offers) come back through
//! [`crate::driver::HubHandle::deliver_to_space`] and
//! [`crate::driver::HubHandle::deliver_to`].

use crate::auth::Grants;
use protocol::{
    CallId, ConnectionId, Failure, MediaType, RelayedSignal, ServerEvent, TrackPublished, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// One connection's seat in a media space, as authorized by the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSeat {
    /// The call id, or `room:<name>`.
    pub space: CallId,
    pub user: UserId,
    pub name: String,
    pub conn: ConnectionId,
    pub grants: Grants,
    /// When the connection entered the space: the start of the join-time measurement.
    pub joined_at: Instant,
}

/// A client's request to the media server, authorized for one seat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum MediaRequest {
    /// The client's offer (the seat joins on its first).
    Offer { sdp: String },
    /// A viewer's offer (WHEP; the seat joins on its first): its receive-only m-lines carry
    /// the tracks of whom it views in the seat's space, and the media server never makes it
    /// an offer.
    View { sdp: String, viewed: ViewTarget },
    /// The client's answer to a server-initiated offer.
    Answer { sdp: String },
    /// A trickled ICE candidate (`RTCIceCandidateInit` JSON or the bare string).
    Candidate { candidate: Value },
    /// Start or stop receiving one track.
    Subscribe {
        track_id: String,
        subscription: Subscription,
    },
    /// What the seat wants of a video track it receives (`track:settings`).
    Settings {
        track_id: String,
        wish: VideoWish,
        /// The fewest frames per second that will do (`None`: every frame).
        #[serde(default)]
        frame_rate: Option<u32>,
    },
    /// The most the seat wants to receive (`media:bandwidth`; `None`: no cap).
    Bandwidth { max_bitrate: Option<u64> },
    /// The tracks published in the seat's space (for the `room:join` ack).
    Tracks,
}

/// What a subscriber wants of a video track (`track:settings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum VideoWish {
    /// The best there is.
    Highest,
    /// The smallest layer covering this size (device pixels).
    Size { width: u32, height: u32 },
    /// Nothing until asked again.
    Paused,
}

/// Whose tracks a viewer (WHEP) receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ViewTarget {
    /// One participant's.
    Participant { user: UserId },
    /// The room's active speaker's, following it as it changes.
    ActiveSpeaker,
}

/// Whether a `Subscribe` request starts or stops receiving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Subscription {
    Start,
    Stop,
}

/// What the media server answers to a [`MediaRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum MediaAnswer {
    /// To an offer.
    Negotiated(Negotiated),
    /// To `Tracks`.
    Tracks(Vec<TrackPublished>),
    /// To anything else.
    Done,
}

/// A media command the hub issues on its own, with no answer expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// The connection left the space (left, ended, disconnected): free its media state.
    Leave {
        space: CallId,
        conn: ConnectionId,
        user: UserId,
    },
    /// A `call:media-toggle` in a space whose media goes through the server, so it can
    /// announce `track:muted`/`track:unmuted`.
    Mute {
        seat: MediaSeat,
        kind: MediaType,
        muted: bool,
    },
}

/// A server API request about a space's media (see [`crate::admin`]). Issued by the hub's
/// task after the hub checked the space and participant, so it is queued in order with the
/// hub's own commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminMedia {
    /// The tracks published in `space`; answered with [`MediaAnswer::Tracks`].
    Tracks { space: CallId },
    /// Mute (`held`) or unmute `track`, published by `user` in `space`: a held track is not
    /// forwarded until released. Answered with [`MediaAnswer::Done`], or `not_found`.
    Hold {
        space: CallId,
        user: UserId,
        track: String,
        held: bool,
    },
}

/// The answer to a queued request.
pub type MediaReply = Pin<Box<dyn Future<Output = Result<MediaAnswer, Failure>> + Send>>;

/// The answer to a client offer, and possibly a server offer to send right after it (when the
/// server has tracks to add that the client's offer did not make room for).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Negotiated {
    pub answer: String,
    pub follow_up_offer: Option<ServerOffer>,
}

/// An offer the media server makes: the SDP, and the `(trackId, mid)` of each forwarded track
/// it carries so the client can map transceivers to publishers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerOffer {
    pub sdp: String,
    pub tracks: Vec<(String, String)>,
}

impl ServerOffer {
    /// The `offer` event from `sfu` for this offer in `space`.
    pub fn event(&self, space: &CallId) -> ServerEvent {
        let mut event = sfu_signal(
            space,
            SignalKind::Offer,
            serde_json::json!({"type": "offer", "sdp": self.sdp}),
        );
        if let ServerEvent::Offer(signal) = &mut event {
            let tracks = self
                .tracks
                .iter()
                .map(|(track, mid)| serde_json::json!({"trackId": track, "mid": mid}))
                .collect();
            signal.payload.insert("tracks".into(), Value::Array(tracks));
        }
        event
    }
}

/// A media server; see the module docs.
pub trait MediaServer: Send + Sync + 'static {
    /// Queues `request` for `seat` before returning; the reply resolves with the answer.
    /// Requests and commands reach the media server in the order of the calls.
    fn submit(&self, seat: &MediaSeat, request: MediaRequest) -> MediaReply;

    /// Queues a command the hub issued (see [`MediaCommand`]), in call order.
    fn apply(&self, command: MediaCommand);

    /// Queues a server API request (see [`AdminMedia`]); the reply resolves with the answer.
    fn admin(&self, request: AdminMedia) -> MediaReply;
}

/// The `from` of signals the SFU sends.
pub const SFU: &str = "sfu";

/// Which session description an SFU signal carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
}

/// An `offer` or `answer` event from the SFU.
pub fn sfu_signal(space: &CallId, kind: SignalKind, description: Value) -> ServerEvent {
    let mut payload = serde_json::Map::new();
    let field = match kind {
        SignalKind::Offer => "offer",
        SignalKind::Answer => "answer",
    };
    payload.insert(field.into(), description);
    let signal = RelayedSignal {
        call_id: space.clone(),
        from: UserId::from(SFU),
        payload,
    };
    match kind {
        SignalKind::Offer => ServerEvent::Offer(signal),
        SignalKind::Answer => ServerEvent::Answer(signal),
    }
}

/// The SDP text of an `offer`/`answer` payload: `{type, sdp}` as browsers produce it, or a bare
/// string.
pub fn sdp_of(payload: &Value) -> Result<String, Failure> {
    let sdp = match payload {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("sdp").and_then(Value::as_str),
        _ => None,
    };
    match sdp {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(Failure::new(
            protocol::ErrorCode::InvalidPayload,
            "expected an SDP string or {type, sdp}",
        )),
    }
}
