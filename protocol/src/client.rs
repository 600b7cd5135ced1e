//! Events a client sends.

use crate::{CallId, ConversationId, ErrorCode, Failure, PresenceStatus, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A typed client event. Build one with [`ClientEvent::parse`].
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    CallInitiate(CallInitiate),
    CallAccept(CallRef),
    CallReject(CallRef),
    CallEnd(CallRef),
    CallJoin(CallRef),
    /// A device confirms it is ringing (Socket.IO does this by acking `call:incoming`).
    CallRinging(CallRef),
    Offer(Signal),
    Answer(Signal),
    IceCandidate(Signal),
    MediaToggle(MediaToggle),
    ScreenShareStart(CallRef),
    ScreenShareStop(CallRef),
    StatusUpdate(StatusUpdate),
    ActivityPing,
    PresenceSubscribe(UserIds),
    PresenceUnsubscribe(UserIds),
    RoomJoin(RoomRef),
    RoomLeave(RoomRef),
    TrackSubscribe(TrackRef),
    TrackUnsubscribe(TrackRef),
    TrackSettings(TrackSettings),
    MediaBandwidth(MediaBandwidth),
}

/// Every client event name the server accepts, in the order of [`ClientEvent`]'s variants.
/// Metrics label events by these names (anything else counts as `unknown`).
/// `session:refresh {token}`: replaces the connection's token with a newer one for the same
/// user (ack `{expiresAt}`). Served by the session itself, so it is not a [`ClientEvent`].
pub const SESSION_REFRESH: &str = "session:refresh";

/// `session:resume {sessionId, received?}`: takes over a session whose connection dropped (its
/// calls, rooms, media seat and the events it missed, which follow the ack); ack `{sessionId,
/// resumed: true}`. Served by the session itself, so it is not a [`ClientEvent`].
pub const SESSION_RESUME: &str = "session:resume";

pub const CLIENT_EVENT_NAMES: &[&str] = &[
    "call:initiate",
    "call:accept",
    "call:reject",
    "call:end",
    "call:join",
    "call:ringing",
    "offer",
    "answer",
    "ice-candidate",
    "call:media-toggle",
    "screen:share-start",
    "screen:share-stop",
    "user:status:update",
    "activity:ping",
    "presence:subscribe",
    "presence:unsubscribe",
    "room:join",
    "room:leave",
    "track:subscribe",
    "track:unsubscribe",
    "track:settings",
    "media:bandwidth",
];

impl ClientEvent {
    /// Types an event from its name and JSON data.
    ///
    /// Fails with `unknown_event` for a name not in [`CLIENT_EVENT_NAMES`] and `invalid_payload`
    /// when the data does not fit the event (the message names the offending field).
    pub fn parse(name: &str, data: Value) -> Result<Self, Failure> {
        let event = match name {
            "call:initiate" => Self::CallInitiate(typed(name, data)?),
            "call:accept" => Self::CallAccept(typed(name, data)?),
            "call:reject" => Self::CallReject(typed(name, data)?),
            "call:end" => Self::CallEnd(typed(name, data)?),
            "call:join" => Self::CallJoin(typed(name, data)?),
            "call:ringing" => Self::CallRinging(typed(name, data)?),
            "offer" => Self::Offer(signal(name, data, "offer")?),
            "answer" => Self::Answer(signal(name, data, "answer")?),
            "ice-candidate" => Self::IceCandidate(signal(name, data, "candidate")?),
            "call:media-toggle" => Self::MediaToggle(typed(name, data)?),
            "screen:share-start" => Self::ScreenShareStart(typed(name, data)?),
            "screen:share-stop" => Self::ScreenShareStop(typed(name, data)?),
            "user:status:update" => Self::StatusUpdate(typed(name, data)?),
            "activity:ping" => Self::ActivityPing,
            "presence:subscribe" => Self::PresenceSubscribe(typed(name, data)?),
            "presence:unsubscribe" => Self::PresenceUnsubscribe(typed(name, data)?),
            "room:join" => Self::RoomJoin(typed(name, data)?),
            "room:leave" => Self::RoomLeave(typed(name, data)?),
            "track:subscribe" => Self::TrackSubscribe(typed(name, data)?),
            "track:unsubscribe" => Self::TrackUnsubscribe(typed(name, data)?),
            "track:settings" => Self::TrackSettings(typed(name, data)?),
            "media:bandwidth" => Self::MediaBandwidth(typed(name, data)?),
            _ => {
                return Err(Failure::new(
                    ErrorCode::UnknownEvent,
                    format!("unknown event `{}`", truncate(name, 64)),
                ));
            }
        };
        event.validate()?;
        Ok(event)
    }

    /// The wire name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CallInitiate(_) => "call:initiate",
            Self::CallAccept(_) => "call:accept",
            Self::CallReject(_) => "call:reject",
            Self::CallEnd(_) => "call:end",
            Self::CallJoin(_) => "call:join",
            Self::CallRinging(_) => "call:ringing",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::IceCandidate(_) => "ice-candidate",
            Self::MediaToggle(_) => "call:media-toggle",
            Self::ScreenShareStart(_) => "screen:share-start",
            Self::ScreenShareStop(_) => "screen:share-stop",
            Self::StatusUpdate(_) => "user:status:update",
            Self::ActivityPing => "activity:ping",
            Self::PresenceSubscribe(_) => "presence:subscribe",
            Self::PresenceUnsubscribe(_) => "presence:unsubscribe",
            Self::RoomJoin(_) => "room:join",
            Self::RoomLeave(_) => "room:leave",
            Self::TrackSubscribe(_) => "track:subscribe",
            Self::TrackUnsubscribe(_) => "track:unsubscribe",
            Self::TrackSettings(_) => "track:settings",
            Self::MediaBandwidth(_) => "media:bandwidth",
        }
    }

    /// The payload as JSON, so the event can be parsed again elsewhere (a node relaying it to
    /// the call's owner): `ClientEvent::parse(e.name(), e.data())` gives `e` back.
    pub fn data(&self) -> Value {
        let value = match self {
            Self::CallInitiate(x) => serde_json::to_value(x),
            Self::CallAccept(x)
            | Self::CallReject(x)
            | Self::CallEnd(x)
            | Self::CallJoin(x)
            | Self::CallRinging(x)
            | Self::ScreenShareStart(x)
            | Self::ScreenShareStop(x) => serde_json::to_value(x),
            Self::Offer(x) | Self::Answer(x) | Self::IceCandidate(x) => {
                let mut map = serde_json::Map::new();
                map.insert("callId".into(), Value::String(x.call_id.0.clone()));
                if let Some(target) = &x.target_user_id {
                    map.insert("targetUserId".into(), Value::String(target.0.clone()));
                }
                let field = match self {
                    Self::Offer(_) => "offer",
                    Self::Answer(_) => "answer",
                    _ => "candidate",
                };
                map.insert(field.into(), x.payload.clone());
                return Value::Object(map);
            }
            Self::MediaToggle(x) => serde_json::to_value(x),
            Self::StatusUpdate(x) => serde_json::to_value(x),
            Self::ActivityPing => return Value::Null,
            Self::PresenceSubscribe(x) | Self::PresenceUnsubscribe(x) => serde_json::to_value(x),
            Self::RoomJoin(x) | Self::RoomLeave(x) => serde_json::to_value(x),
            Self::TrackSubscribe(x) | Self::TrackUnsubscribe(x) => serde_json::to_value(x),
            Self::TrackSettings(x) => serde_json::to_value(x),
            Self::MediaBandwidth(x) => serde_json::to_value(x),
        };
        // Every payload is a struct of plain fields: serialisation cannot fail.
        value.unwrap_or(Value::Null)
    }

    /// Checks what serde's types cannot: id shapes, list lengths, text lengths.
    fn validate(&self) -> Result<(), Failure> {
        match self {
            Self::CallInitiate(c) => {
                check_id("conversationId", c.conversation_id.as_str())?;
                if c.participants.is_empty() {
                    return Err(invalid("`participants` must name at least one user"));
                }
                for p in &c.participants {
                    check_id("participants[]", p.as_str())?;
                }
                Ok(())
            }
            Self::CallAccept(r)
            | Self::CallReject(r)
            | Self::CallEnd(r)
            | Self::CallJoin(r)
            | Self::CallRinging(r)
            | Self::ScreenShareStart(r)
            | Self::ScreenShareStop(r) => check_id("callId", r.call_id.as_str()),
            Self::Offer(s) | Self::Answer(s) | Self::IceCandidate(s) => {
                check_id("callId", s.call_id.as_str())?;
                if let Some(t) = &s.target_user_id {
                    check_id("targetUserId", t.as_str())?;
                }
                Ok(())
            }
            Self::MediaToggle(m) => check_id("callId", m.call_id.as_str()),
            Self::StatusUpdate(s) => match &s.text {
                Some(t) if t.chars().count() > crate::MAX_STATUS_TEXT_CHARS => {
                    Err(invalid(format!(
                        "`text` is longer than {} characters",
                        crate::MAX_STATUS_TEXT_CHARS
                    )))
                }
                _ => Ok(()),
            },
            Self::PresenceSubscribe(u) | Self::PresenceUnsubscribe(u) => {
                for id in &u.user_ids {
                    check_id("userIds[]", id.as_str())?;
                }
                Ok(())
            }
            Self::RoomJoin(r) | Self::RoomLeave(r) => check_id("room", &r.room),
            Self::TrackSubscribe(t) | Self::TrackUnsubscribe(t) => {
                check_id("trackId", &t.track_id)?;
                match &t.call_id {
                    Some(c) => check_id("callId", c.as_str()),
                    None => Ok(()),
                }
            }
            Self::TrackSettings(t) => {
                check_id("trackId", &t.track_id)?;
                if let Some(c) = &t.call_id {
                    check_id("callId", c.as_str())?;
                }
                for (field, v) in [("width", t.width), ("height", t.height)] {
                    if v.is_some_and(|v| v > MAX_VIDEO_DIMENSION) {
                        return Err(invalid(format!(
                            "`{field}` is over {MAX_VIDEO_DIMENSION} pixels"
                        )));
                    }
                }
                if t.frame_rate.is_some_and(|f| f == 0 || f > MAX_FRAME_RATE) {
                    return Err(invalid(format!(
                        "`frameRate` must be 1 to {MAX_FRAME_RATE} (`paused: true` stops the video)"
                    )));
                }
                Ok(())
            }
            Self::MediaBandwidth(b) => match &b.call_id {
                Some(c) => check_id("callId", c.as_str()),
                None => Ok(()),
            },
            Self::ActivityPing => Ok(()),
        }
    }
}

/// `call:initiate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallInitiate {
    pub conversation_id: ConversationId,
    pub call_type: CallType,
    /// The users to ring. The initiator may be listed; it is ignored there.
    pub participants: Vec<UserId>,
    /// `sfu` forces media through the server from the start; by default a call is P2P while it
    /// is small enough and switches to SFU when it grows.
    #[serde(default)]
    pub mode: Option<CallMode>,
}

/// How a call's media flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    /// Peer to peer: offers go from user to user.
    P2p,
    /// Through the SFU: every participant negotiates with the server.
    Sfu,
}

/// `room:join` and `room:leave`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomRef {
    pub room: String,
}

/// `track:subscribe` and `track:unsubscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackRef {
    pub track_id: String,
    /// The call or room (`room:<name>`) the track is in; needed only when the connection is in
    /// several.
    #[serde(default)]
    pub call_id: Option<CallId>,
}

/// Largest `width`/`height` a `track:settings` may give.
pub const MAX_VIDEO_DIMENSION: u32 = 16_384;

/// Largest `frameRate` a `track:settings` may give (frames per second).
pub const MAX_FRAME_RATE: u32 = 240;

/// `track:settings`: what a subscriber wants of a video track it receives. `width` and
/// `height` are the size of its tile in device pixels: the SFU sends the smallest simulcast
/// layer that covers them (the best layer when both are absent). `frameRate` is the fewest
/// frames per second that will do: the SFU leaves out the temporal layers it does not need
/// (every frame when absent). `paused: true` stops the track's video to this subscriber until
/// it sends `paused: false`. Each `track:settings` replaces the last one whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackSettings {
    pub track_id: String,
    /// The call or room the track is in; needed only when the connection is in several.
    #[serde(default)]
    pub call_id: Option<CallId>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub frame_rate: Option<u32>,
    #[serde(default)]
    pub paused: bool,
}

/// `media:bandwidth`: the most a connection wants to receive from the SFU in one space, in
/// bit/s (a metered link, a data-saver mode). The SFU fits its layers under the lower of this
/// and its own estimate; `maxBitrate` absent or `null` lifts the cap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaBandwidth {
    /// The call or room; needed only when the connection is in several.
    #[serde(default)]
    pub call_id: Option<CallId>,
    #[serde(default)]
    pub max_bitrate: Option<u64>,
}

/// Audio-only or video call, as the initiator chose. Informational for the callee's UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    Audio,
    Video,
}

/// Events that only name a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRef {
    pub call_id: CallId,
}

/// `offer`, `answer` and `ice-candidate`: an opaque payload relayed to one user's devices in the
/// call. The payload (`offer`, `answer` or `candidate` on the wire) is passed through untouched.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub call_id: CallId,
    pub target_user_id: Option<UserId>,
    pub payload: Value,
}

/// `call:media-toggle`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaToggle {
    pub call_id: CallId,
    pub media_type: MediaType,
    pub enabled: bool,
}

/// Which of a participant's media a toggle is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Audio,
    Video,
}

/// `user:status:update`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    pub status: PresenceStatus,
    #[serde(default)]
    pub text: Option<String>,
}

/// `presence:subscribe` and `presence:unsubscribe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIds {
    pub user_ids: Vec<UserId>,
}

fn typed<T: DeserializeOwned>(event: &str, data: Value) -> Result<T, Failure> {
    // Socket.IO clients that emit no data and raw clients that omit `data` both land here as
    // null; events whose fields are all optional still parse from `{}`.
    let data = if data.is_null() {
        Value::Object(Default::default())
    } else {
        data
    };
    serde_json::from_value(data).map_err(|e| {
        invalid(format!(
            "bad `{event}` payload: {}",
            truncate(&e.to_string(), 200)
        ))
    })
}

fn signal(event: &str, data: Value, payload_field: &str) -> Result<Signal, Failure> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        call_id: CallId,
        #[serde(default)]
        target_user_id: Option<UserId>,
    }
    let head: Head = typed(event, data.clone())?;
    let payload = match data {
        Value::Object(mut map) => map.remove(payload_field).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if payload.is_null() {
        return Err(invalid(format!(
            "`{event}` needs a `{payload_field}` field"
        )));
    }
    Ok(Signal {
        call_id: head.call_id,
        target_user_id: head.target_user_id,
        payload,
    })
}

fn check_id(field: &str, id: &str) -> Result<(), Failure> {
    if crate::valid_id(id) {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{field}` must be 1-{} characters without control characters",
            crate::MAX_ID_LEN
        )))
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::InvalidPayload, message)
}

/// Cuts `s` to at most `max` bytes on a character boundary, so echoing client input stays small.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_ID_LEN;
    use serde_json::json;

    /// Relaying to another node re-parses `name()` and `data()`: every event must come back equal.
    #[test]
    fn every_event_survives_name_and_data() {
        let samples = [
            (
                "call:initiate",
                json!({"conversationId": "c", "callType": "video", "participants": ["b"]}),
            ),
            ("call:accept", json!({"callId": "k"})),
            ("call:reject", json!({"callId": "k"})),
            ("call:end", json!({"callId": "k"})),
            ("call:join", json!({"callId": "k"})),
            ("call:ringing", json!({"callId": "k"})),
            (
                "offer",
                json!({"callId": "k", "targetUserId": "b", "offer": {"type": "offer", "sdp": "v=0"}}),
            ),
            ("answer", json!({"callId": "k", "answer": "v=0"})),
            (
                "ice-candidate",
                json!({"callId": "k", "targetUserId": "b", "candidate": {"candidate": "c"}}),
            ),
            (
                "call:media-toggle",
                json!({"callId": "k", "mediaType": "audio", "enabled": false}),
            ),
            ("screen:share-start", json!({"callId": "k"})),
            ("screen:share-stop", json!({"callId": "k"})),
            (
                "user:status:update",
                json!({"status": "busy", "text": "in a meeting"}),
            ),
            ("activity:ping", Value::Null),
            ("presence:subscribe", json!({"userIds": ["a", "b"]})),
            ("presence:unsubscribe", json!({"userIds": ["a"]})),
            ("room:join", json!({"room": "r"})),
            ("room:leave", json!({"room": "r"})),
            (
                "track:subscribe",
                json!({"trackId": "TR_1", "callId": "room:r"}),
            ),
            ("track:unsubscribe", json!({"trackId": "TR_1"})),
            (
                "track:settings",
                json!({"trackId": "TR_1", "callId": "room:r", "width": 320, "height": 180, "paused": false}),
            ),
            (
                "media:bandwidth",
                json!({"callId": "room:r", "maxBitrate": 300000}),
            ),
        ];
        let mut names: Vec<&str> = samples.iter().map(|(n, _)| *n).collect();
        names.sort();
        let mut all = CLIENT_EVENT_NAMES.to_vec();
        all.sort();
        assert_eq!(names, all, "one sample per event");
        for (name, data) in samples {
            let event = ClientEvent::parse(name, data).unwrap_or_else(|f| panic!("{name}: {f}"));
            assert_eq!(event.name(), name);
            let again = ClientEvent::parse(event.name(), event.data()).unwrap();
            assert_eq!(again, event, "{name}");
        }
    }

    #[test]
    fn parses_the_seed_contract() {
        let e = ClientEvent::parse(
            "call:initiate",
            json!({"conversationId": "conv1", "callType": "video", "participants": ["bob"]}),
        )
        .unwrap();
        assert_eq!(
            e,
            ClientEvent::CallInitiate(CallInitiate {
                conversation_id: "conv1".into(),
                call_type: CallType::Video,
                participants: vec!["bob".into()],
                mode: None,
            })
        );
        let e = ClientEvent::parse(
            "offer",
            json!({"callId": "c", "targetUserId": "bob", "offer": {"type": "offer", "sdp": "v=0"}}),
        )
        .unwrap();
        let ClientEvent::Offer(s) = e else {
            panic!("not an offer")
        };
        assert_eq!(s.payload, json!({"type": "offer", "sdp": "v=0"}));
        assert_eq!(s.target_user_id, Some("bob".into()));
    }

    #[test]
    fn tells_unknown_events_from_bad_payloads() {
        let e = ClientEvent::parse("call:dance", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownEvent);
        let e = ClientEvent::parse("call:accept", json!({"callId": 5})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPayload);
        let e = ClientEvent::parse("call:accept", json!("nope")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPayload);
        let e =
            ClientEvent::parse("offer", json!({"callId": "c", "targetUserId": "b"})).unwrap_err();
        assert!(e.message.contains("offer"), "{}", e.message);
    }

    #[test]
    fn refuses_out_of_range_values() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for data in [
            json!({"conversationId": "c", "callType": "video", "participants": []}),
            json!({"conversationId": "c", "callType": "hologram", "participants": ["b"]}),
            json!({"conversationId": long, "callType": "audio", "participants": ["b"]}),
            json!({"conversationId": "c", "callType": "audio", "participants": ["a\u{0}b"]}),
        ] {
            let e = ClientEvent::parse("call:initiate", data).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidPayload);
        }
        let text = "é".repeat(201);
        let e = ClientEvent::parse(
            "user:status:update",
            json!({"status": "busy", "text": text}),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPayload);
        assert!(
            ClientEvent::parse(
                "user:status:update",
                json!({"status": "busy", "text": "é".repeat(200)})
            )
            .is_ok()
        );
    }

    #[test]
    fn null_data_is_an_empty_object() {
        assert_eq!(
            ClientEvent::parse("activity:ping", Value::Null).unwrap(),
            ClientEvent::ActivityPing
        );
        assert_eq!(
            ClientEvent::parse("call:end", Value::Null)
                .unwrap_err()
                .code,
            ErrorCode::InvalidPayload
        );
    }

    /// A listed name, a valid payload for it, and a check for the variant it must parse to.
    type Expected = (&'static str, Value, fn(&ClientEvent) -> bool);

    /// Every listed name with its variant, written out here independently of `parse` and
    /// `name`, so that a name mapped to the wrong variant in both (a swap) is caught too.
    fn expected_events() -> Vec<Expected> {
        let call = json!({"callId": "c1"});
        let signal = |key: &str| json!({"callId": "c1", "targetUserId": "bob", key: {"sdp": "x"}});
        vec![
            (
                "call:initiate",
                json!({"conversationId": "k", "callType": "audio", "participants": ["bob"]}),
                |e| matches!(e, ClientEvent::CallInitiate(_)),
            ),
            ("call:accept", call.clone(), |e| {
                matches!(e, ClientEvent::CallAccept(_))
            }),
            ("call:reject", call.clone(), |e| {
                matches!(e, ClientEvent::CallReject(_))
            }),
            ("call:end", call.clone(), |e| {
                matches!(e, ClientEvent::CallEnd(_))
            }),
            ("call:join", call.clone(), |e| {
                matches!(e, ClientEvent::CallJoin(_))
            }),
            ("call:ringing", call.clone(), |e| {
                matches!(e, ClientEvent::CallRinging(_))
            }),
            ("offer", signal("offer"), |e| {
                matches!(e, ClientEvent::Offer(_))
            }),
            ("answer", signal("answer"), |e| {
                matches!(e, ClientEvent::Answer(_))
            }),
            ("ice-candidate", signal("candidate"), |e| {
                matches!(e, ClientEvent::IceCandidate(_))
            }),
            (
                "call:media-toggle",
                json!({"callId": "c1", "mediaType": "audio", "enabled": false}),
                |e| matches!(e, ClientEvent::MediaToggle(_)),
            ),
            ("screen:share-start", call.clone(), |e| {
                matches!(e, ClientEvent::ScreenShareStart(_))
            }),
            ("screen:share-stop", call.clone(), |e| {
                matches!(e, ClientEvent::ScreenShareStop(_))
            }),
            ("user:status:update", json!({"status": "busy"}), |e| {
                matches!(e, ClientEvent::StatusUpdate(_))
            }),
            ("activity:ping", json!({}), |e| {
                matches!(e, ClientEvent::ActivityPing)
            }),
            ("presence:subscribe", json!({"userIds": ["bob"]}), |e| {
                matches!(e, ClientEvent::PresenceSubscribe(_))
            }),
            ("presence:unsubscribe", json!({"userIds": ["bob"]}), |e| {
                matches!(e, ClientEvent::PresenceUnsubscribe(_))
            }),
            ("room:join", json!({"room": "r"}), |e| {
                matches!(e, ClientEvent::RoomJoin(_))
            }),
            ("room:leave", json!({"room": "r"}), |e| {
                matches!(e, ClientEvent::RoomLeave(_))
            }),
            ("track:subscribe", json!({"trackId": "t"}), |e| {
                matches!(e, ClientEvent::TrackSubscribe(_))
            }),
            ("track:unsubscribe", json!({"trackId": "t"}), |e| {
                matches!(e, ClientEvent::TrackUnsubscribe(_))
            }),
            (
                "track:settings",
                json!({"trackId": "t", "paused": true}),
                |e| matches!(e, ClientEvent::TrackSettings(_)),
            ),
            ("media:bandwidth", json!({"maxBitrate": null}), |e| {
                matches!(e, ClientEvent::MediaBandwidth(_))
            }),
        ]
    }

    #[test]
    fn track_settings_refuses_absurd_sizes() {
        let f = ClientEvent::parse("track:settings", json!({"trackId": "t", "width": 100_000}))
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::InvalidPayload);
        assert!(f.message.contains("width"), "{}", f.message);
        let f = ClientEvent::parse("track:settings", json!({"trackId": "t", "height": -1}))
            .unwrap_err();
        assert_eq!(f.code, ErrorCode::InvalidPayload);
    }

    #[test]
    fn every_listed_name_parses_to_its_own_name() {
        let expected = expected_events();
        let names: Vec<&str> = expected.iter().map(|(name, _, _)| *name).collect();
        assert_eq!(
            names, CLIENT_EVENT_NAMES,
            "the table covers every listed name, in the list's order"
        );
        for (name, data, is_expected_variant) in expected {
            let event = ClientEvent::parse(name, data)
                .unwrap_or_else(|e| panic!("{name} with a valid payload: {e:?}"));
            assert!(
                is_expected_variant(&event),
                "{name} parsed to the wrong event: {event:?}"
            );
            assert_eq!(event.name(), name, "{event:?} names itself");
            // A wrong payload is still recognised as this event, not as an unknown one.
            let e = ClientEvent::parse(name, json!(42));
            if let Err(e) = e {
                assert_eq!(e.code, ErrorCode::InvalidPayload, "{name}");
            }
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
