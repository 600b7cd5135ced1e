//! Events the server sends.

use crate::{CallId, CallType, ConversationId, ErrorEvent, MediaType, PresenceStatus, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A typed server event. `event` is the wire name, `data` its payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum ServerEvent {
    #[serde(rename = "call:initiated")]
    CallInitiated(CallInitiated),
    #[serde(rename = "call:incoming")]
    CallIncoming(CallIncoming),
    #[serde(rename = "call:accepted")]
    CallAccepted(CallAccepted),
    #[serde(rename = "call:rejected")]
    CallRejected(CallUser),
    #[serde(rename = "call:ended")]
    CallEnded(CallEnded),
    #[serde(rename = "call:missed")]
    CallMissed(CallMissed),
    #[serde(rename = "call:ringing")]
    CallRinging(CallUser),
    #[serde(rename = "call:answered-elsewhere")]
    CallAnsweredElsewhere(CallOnly),
    #[serde(rename = "call:resumable")]
    CallResumable(CallResumable),
    #[serde(rename = "call:participant:joined")]
    ParticipantJoined(ParticipantJoined),
    #[serde(rename = "call:participant:left")]
    ParticipantLeft(CallUser),
    #[serde(rename = "offer")]
    Offer(RelayedSignal),
    #[serde(rename = "answer")]
    Answer(RelayedSignal),
    #[serde(rename = "ice-candidate")]
    IceCandidate(RelayedSignal),
    #[serde(rename = "call:media-toggled")]
    MediaToggled(MediaToggled),
    #[serde(rename = "screen:share-started")]
    ScreenShareStarted(CallUser),
    #[serde(rename = "screen:share-stopped")]
    ScreenShareStopped(CallUser),
    #[serde(rename = "user:online")]
    UserOnline(UserOnline),
    #[serde(rename = "user:offline")]
    UserOffline(UserOffline),
    #[serde(rename = "presence:changed")]
    PresenceChanged(Presence),
    #[serde(rename = "call:mode")]
    CallModeChanged(CallModeChanged),
    #[serde(rename = "track:published")]
    TrackPublished(TrackPublished),
    #[serde(rename = "track:unpublished")]
    TrackUnpublished(TrackEvent),
    #[serde(rename = "track:muted")]
    TrackMuted(TrackEvent),
    #[serde(rename = "track:unmuted")]
    TrackUnmuted(TrackEvent),
    #[serde(rename = "track:layer")]
    TrackLayer(TrackLayer),
    #[serde(rename = "track:quality")]
    TrackQuality(TrackQuality),
    #[serde(rename = "server:shutdown")]
    ServerShutdown(ServerShutdown),
    #[serde(rename = "media:moved")]
    MediaMoved(MediaMoved),
    #[serde(rename = "session:expiring")]
    SessionExpiring(SessionExpiring),
    #[serde(rename = "session:ready")]
    SessionReady(SessionReady),
    #[serde(rename = "room:metadata")]
    RoomMetadata(RoomMetadata),
    #[serde(rename = "participant:metadata")]
    ParticipantMetadata(ParticipantMetadata),
    #[serde(rename = "room:data")]
    RoomData(RoomData),
    #[serde(rename = "room:speakers")]
    RoomSpeakers(RoomSpeakers),
    #[serde(rename = "error")]
    Error(ErrorEvent),
    /// A chat event (`message:new`, `typing`, ...): its name and payload come from the chat
    /// service. Rendered by [`ServerEvent::to_frame`] and [`ServerEvent::data`], not by serde.
    #[serde(skip)]
    Chat(ChatEvent),
}

/// A chat event as the chat service built it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatEvent {
    pub name: &'static str,
    pub data: Value,
}

impl ServerEvent {
    /// The wire name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CallInitiated(_) => "call:initiated",
            Self::CallIncoming(_) => "call:incoming",
            Self::CallAccepted(_) => "call:accepted",
            Self::CallRejected(_) => "call:rejected",
            Self::CallEnded(_) => "call:ended",
            Self::CallMissed(_) => "call:missed",
            Self::CallRinging(_) => "call:ringing",
            Self::CallAnsweredElsewhere(_) => "call:answered-elsewhere",
            Self::CallResumable(_) => "call:resumable",
            Self::ParticipantJoined(_) => "call:participant:joined",
            Self::ParticipantLeft(_) => "call:participant:left",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::IceCandidate(_) => "ice-candidate",
            Self::MediaToggled(_) => "call:media-toggled",
            Self::ScreenShareStarted(_) => "screen:share-started",
            Self::ScreenShareStopped(_) => "screen:share-stopped",
            Self::UserOnline(_) => "user:online",
            Self::UserOffline(_) => "user:offline",
            Self::PresenceChanged(_) => "presence:changed",
            Self::CallModeChanged(_) => "call:mode",
            Self::TrackPublished(_) => "track:published",
            Self::TrackUnpublished(_) => "track:unpublished",
            Self::TrackMuted(_) => "track:muted",
            Self::TrackUnmuted(_) => "track:unmuted",
            Self::TrackLayer(_) => "track:layer",
            Self::TrackQuality(_) => "track:quality",
            Self::ServerShutdown(_) => "server:shutdown",
            Self::MediaMoved(_) => "media:moved",
            Self::SessionExpiring(_) => "session:expiring",
            Self::SessionReady(_) => "session:ready",
            Self::RoomMetadata(_) => "room:metadata",
            Self::ParticipantMetadata(_) => "participant:metadata",
            Self::RoomData(_) => "room:data",
            Self::RoomSpeakers(_) => "room:speakers",
            Self::Error(_) => "error",
            Self::Chat(c) => c.name,
        }
    }

    /// The payload alone, as Socket.IO emits it next to the name.
    pub fn data(&self) -> Value {
        if let Self::Chat(c) = self {
            return c.data.clone();
        }
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("data").unwrap_or(Value::Null),
            // Every variant is a struct of plain fields: serialisation cannot fail.
            _ => Value::Null,
        }
    }

    /// The event of a raw-WebSocket frame, as [`ServerEvent::to_frame`] renders it. Chat events
    /// come back as [`ServerEvent::Chat`] when their name is in [`crate::chat::CHAT_SERVER_EVENT_NAMES`].
    pub fn from_frame(frame: &str) -> Result<ServerEvent, serde_json::Error> {
        #[derive(Deserialize)]
        struct Frame {
            event: String,
            #[serde(default)]
            data: Value,
        }
        let parsed: Frame = serde_json::from_str(frame)?;
        if let Some(name) = crate::chat::CHAT_SERVER_EVENT_NAMES
            .iter()
            .find(|n| **n == parsed.event)
        {
            return Ok(Self::Chat(ChatEvent {
                name,
                data: parsed.data,
            }));
        }
        serde_json::from_str(frame)
    }

    /// The raw-WebSocket frame `{"event": ..., "data": ...}`.
    pub fn to_frame(&self) -> String {
        if let Self::Chat(c) = self {
            // Borrowed: the payload is written straight from the event, not copied into a
            // second tree first.
            #[derive(Serialize)]
            struct Envelope<'a> {
                event: &'a str,
                data: &'a Value,
            }
            let envelope = Envelope {
                event: c.name,
                data: &c.data,
            };
            return serde_json::to_string(&envelope).unwrap_or_default();
        }
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `media:moved`: the space's media server changed (its node failed or was drained). The
/// client closes its peer connection to the SFU and sends a fresh offer; membership stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaMoved {
    pub call_id: CallId,
    /// `node_failed` or `node_drained`.
    pub reason: String,
}

/// `session:expiring`: the connection's token stops being accepted at `expiresAt` (RFC 3339),
/// about a minute from now; send `session:refresh {token}` with a new token for the same user,
/// or the connection is closed then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionExpiring {
    pub expires_at: String,
}

/// `session:ready`, the first thing a new connection hears: the id under which it may take
/// this session back after its connection drops (`session:resume`), and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReady {
    /// 128 random bits in hex; bound to the user: only a token for the same user resumes it.
    pub session_id: String,
    /// How long after a drop the session waits for `session:resume`, in milliseconds.
    pub resume_within_ms: u64,
}

/// A STUN or TURN server as `RTCPeerConnection` takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A user as other users see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub user_id: UserId,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallInitiated {
    pub call_id: CallId,
    pub ice_servers: Vec<IceServer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallIncoming {
    pub call_id: CallId,
    pub from: UserRef,
    pub conversation_id: ConversationId,
    pub call_type: CallType,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAccepted {
    pub call_id: CallId,
    pub user_id: UserId,
    pub ice_servers: Vec<IceServer>,
}

/// Events about one user in one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallUser {
    pub call_id: CallId,
    pub user_id: UserId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallOnly {
    pub call_id: CallId,
}

/// Why a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// A participant hung up (1:1), or the last participant left.
    Ended,
    /// Nobody answered before the ring timeout.
    Missed,
    /// Every invitee rejected.
    Rejected,
    /// The call reached its maximum duration.
    Timeout,
    /// A participant's connection was lost for longer than the reconnect grace period.
    Failed,
    /// The application ended it through the server API (a call ended, a room deleted).
    Terminated,
    /// Sent only to the participant the server API removed; the others carry on.
    Removed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ended => "ended",
            Self::Missed => "missed",
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
            Self::Terminated => "terminated",
            Self::Removed => "removed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEnded {
    pub call_id: CallId,
    pub reason: EndReason,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallMissed {
    pub call_id: CallId,
    pub from: UserRef,
}

/// Sent to a newly connected device of a user who is still a participant of an active call
/// (within the reconnect grace period): `call:join` takes it back in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallResumable {
    pub call_id: CallId,
    pub conversation_id: ConversationId,
    pub call_type: CallType,
    pub participants: Vec<UserRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantJoined {
    pub call_id: CallId,
    pub participant: UserRef,
}

/// An `offer`, `answer` or `ice-candidate` as delivered: who sent it, and the untouched payload
/// under the same field name the sender used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayedSignal {
    pub call_id: CallId,
    pub from: UserId,
    #[serde(flatten)]
    pub payload: serde_json::Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaToggled {
    pub call_id: CallId,
    pub user_id: UserId,
    pub media_type: MediaType,
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOnline {
    pub user_id: UserId,
    pub username: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOffline {
    pub user_id: UserId,
    pub last_seen_at: String,
}

/// A user's presence as others see it (`presence:changed`, `presence:subscribe`'s ack, and
/// `GET /api/v1/presence`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: UserId,
    pub status: PresenceStatus,
    pub text: Option<String>,
    /// RFC 3339 UTC; when the user was last connected (now, while online).
    pub last_seen_at: Option<String>,
}

/// `call:mode`: the call's media now flows this way; renegotiate accordingly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallModeChanged {
    pub call_id: CallId,
    pub mode: crate::CallMode,
}

/// What kind of media a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Audio,
    Video,
}

/// Where a track's media comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
    /// Audio captured with a screen share.
    #[serde(rename = "screen_audio")]
    ScreenAudio,
}

/// `track:published`: a participant publishes a track through the SFU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackPublished {
    /// The call, or `room:<name>`.
    pub call_id: CallId,
    pub track_id: String,
    pub user_id: UserId,
    pub kind: TrackKind,
    pub source: TrackSource,
    /// The publisher's m-line of the track.
    pub mid: String,
    pub muted: bool,
}

/// `track:unpublished`, `track:muted`, `track:unmuted`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackEvent {
    pub call_id: CallId,
    pub track_id: String,
    pub user_id: UserId,
}

/// `track:layer`: what the subscriber now receives of a video track, sent when it changes
/// (another simulcast layer, the first one, or none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackLayer {
    pub call_id: CallId,
    pub track_id: String,
    /// The publisher's rid of the layer; `null` for a track without simulcast, or when
    /// nothing is forwarded.
    pub rid: Option<String>,
    /// Frame size of the layer (0 when nothing is forwarded).
    pub width: u16,
    pub height: u16,
    /// Frames per second forwarded of the layer, as measured from the publisher, rounded:
    /// fewer than it sends when only some of its temporal layers are forwarded. `null` until
    /// measured, and when nothing is forwarded.
    pub frame_rate: Option<u16>,
    /// Nothing is forwarded: the subscriber paused the track, or its bandwidth is short.
    pub paused: bool,
}

/// `track:quality`: which simulcast layers of a track its publisher should send (dynacast).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackQuality {
    pub call_id: CallId,
    pub track_id: String,
    /// Every layer of the track, lowest quality first.
    pub layers: Vec<LayerQuality>,
}

/// One layer in `track:quality`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerQuality {
    pub rid: String,
    pub active: bool,
}

/// `room:metadata`: the application set the room's metadata through the server API. Sent to
/// every connection in the room; `metadata` is the application's own string (empty: cleared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMetadata {
    pub call_id: CallId,
    pub metadata: String,
}

/// `participant:metadata`: the application set a participant's metadata in a room through the
/// server API. Sent to every connection in the room, the participant's own too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantMetadata {
    pub call_id: CallId,
    pub user_id: UserId,
    pub metadata: String,
}

/// `room:data`: a data message the application sent to a room through the server API. `topic`
/// is the application's label for it; `data` any JSON value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomData {
    pub call_id: CallId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub data: Value,
}

/// `room:speakers`: who is speaking in an SFU room or call, most active first (empty: nobody).
/// Sent to every connection in the space when the order changes, at most every 300 ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomSpeakers {
    pub call_id: CallId,
    pub speakers: Vec<Speaker>,
}

/// One entry of [`RoomSpeakers`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Speaker {
    pub user_id: UserId,
    /// Smoothed audio level over the last half second: linear amplitude relative to full
    /// scale, 0.0–1.0 (-20 dBov is 0.1, -40 dBov 0.01).
    pub level: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerShutdown {
    pub reconnect_in_ms: u64,
}

/// Ack of `call:initiate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateAck {
    pub call_id: CallId,
    pub ice_servers: Vec<IceServer>,
    pub mode: crate::CallMode,
}

/// Ack of `call:accept` and `call:join`: what the joiner needs to start negotiating.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinAck {
    pub call_id: CallId,
    pub ice_servers: Vec<IceServer>,
    pub participants: Vec<UserRef>,
    /// `p2p`: negotiate with each participant; `sfu`: send an offer without `targetUserId`.
    pub mode: crate::CallMode,
    /// In `sfu` mode, the tracks already published in the call (their `track:published` went
    /// out before this connection joined); absent in `p2p` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<TrackPublished>>,
}

/// Ack of `room:join`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomJoinAck {
    /// `room:<name>`: used as `callId` in every event about the room.
    pub room_id: CallId,
    pub participants: Vec<UserRef>,
    pub tracks: Vec<TrackPublished>,
    pub ice_servers: Vec<IceServer>,
    /// The room's metadata, when the application set some (server API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Ack of `presence:subscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceList {
    pub presences: Vec<Presence>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_match_the_contract() {
        let e = ServerEvent::CallEnded(CallEnded {
            call_id: "c1".into(),
            reason: EndReason::Missed,
        });
        assert_eq!(e.name(), "call:ended");
        assert_eq!(e.data(), json!({"callId": "c1", "reason": "missed"}));
        let frame: Value = serde_json::from_str(&e.to_frame()).unwrap();
        assert_eq!(
            frame,
            json!({"event": "call:ended", "data": {"callId": "c1", "reason": "missed"}})
        );
    }

    #[test]
    fn relayed_signals_keep_the_payload_field_name() {
        let mut payload = serde_json::Map::new();
        payload.insert(
            "candidate".into(),
            json!({"candidate": "a=1", "sdpMid": "0"}),
        );
        let e = ServerEvent::IceCandidate(RelayedSignal {
            call_id: "c".into(),
            from: "alice".into(),
            payload,
        });
        assert_eq!(
            e.data(),
            json!({"callId": "c", "from": "alice", "candidate": {"candidate": "a=1", "sdpMid": "0"}})
        );
    }

    #[test]
    fn chat_events_render_like_the_others() {
        let e = ServerEvent::Chat(ChatEvent {
            name: "typing",
            data: json!({"userId": "a", "conversationId": "c", "isTyping": true}),
        });
        assert_eq!(e.name(), "typing");
        assert_eq!(e.data()["isTyping"], true);
        let frame: Value = serde_json::from_str(&e.to_frame()).unwrap();
        assert_eq!(frame["event"], "typing");
        assert_eq!(frame["data"]["userId"], "a");
    }

    #[test]
    fn every_variant_name_matches_its_serde_tag() {
        let samples = [
            ServerEvent::CallRejected(CallUser {
                call_id: "c".into(),
                user_id: "u".into(),
            }),
            ServerEvent::CallAnsweredElsewhere(CallOnly {
                call_id: "c".into(),
            }),
            ServerEvent::ServerShutdown(ServerShutdown { reconnect_in_ms: 5 }),
            ServerEvent::UserOffline(UserOffline {
                user_id: "u".into(),
                last_seen_at: "t".into(),
            }),
        ];
        for e in samples {
            let frame: Value = serde_json::from_str(&e.to_frame()).unwrap();
            assert_eq!(frame["event"], e.name());
        }
    }
}
