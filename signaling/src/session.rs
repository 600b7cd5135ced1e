//! The per-connection pipeline shared by both transports.
//!
//! A transport adapter authenticates the connection, then hands every incoming event (name and
//! JSON data) to [`Session::handle`], which rate-limits, types, dispatches and measures it, and
//! returns the ack payload or the failure. The adapter renders that in its own framing and, on
//! failure, also sends an `error` event ([`error_event`]).
//!
//! Lifecycle: created after the hub accepted the connection; dropped when the connection ends
//! (the adapter then calls `HubHandle::disconnect`).

use crate::auth::Identity;
use crate::driver::HubHandle;
use crate::extension::{Caller, Extension, JoinRole};
use crate::limits::TokenBucket;
use crate::media::{MediaParticipant, MediaServer};
use crate::metrics::Metrics;
use protocol::{
    CHAT_EVENT_NAMES, CLIENT_EVENT_NAMES, CallId, ClientEvent, ConnectionId, ErrorCode, ErrorEvent,
    Failure, RelayedSignal, ServerEvent, Signal, TrackRef, UserId,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Per-connection limits, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub events_per_second: u32,
    pub event_burst: u32,
    pub max_frame_bytes: usize,
    /// Server events queued for one connection (the outbox; see `transport::outbox`).
    pub outbound_queue: usize,
    /// Bytes of server events queued for one connection.
    pub outbound_queue_bytes: usize,
    /// Longest a socket write may go without progress (see `transport::deadline`).
    pub write_timeout: Duration,
    /// Longest a server-closed WebSocket waits for the client's close frame.
    pub close_timeout: Duration,
}

impl SessionLimits {
    pub fn from_config(c: &config::Config) -> Self {
        Self {
            events_per_second: c.limits.events_per_second,
            event_burst: c.limits.event_burst,
            max_frame_bytes: c.limits.max_frame_bytes,
            outbound_queue: c.limits.outbound_queue,
            outbound_queue_bytes: c.limits.outbound_queue_bytes,
            write_timeout: c.limits.write_timeout.get(),
            close_timeout: c.limits.close_timeout.get(),
        }
    }
}

/// One authenticated connection's event pipeline; see the module docs.
pub struct Session {
    pub conn: ConnectionId,
    pub identity: Identity,
    hub: HubHandle,
    extension: Option<Arc<dyn Extension>>,
    media: Option<Arc<dyn MediaServer>>,
    /// Media spaces (SFU calls, rooms) this connection entered, and when: the start of the
    /// join-time measurement, and the default space for `track:subscribe`.
    media_spaces: HashMap<CallId, Instant>,
    bucket: TokenBucket,
    metrics: Metrics,
}

/// The outcome of one client event: the ack payload or the failure, and the chat `tempId`
/// the event carried (failures echo it in the `error` event).
pub struct Answer {
    pub result: Result<Value, Failure>,
    pub temp_id: Option<String>,
}

impl Session {
    /// The pipeline for a connection the hub has accepted.
    pub fn new(conn: ConnectionId, identity: Identity, sig: &crate::Signaling) -> Self {
        let limits = sig.limits;
        Self {
            conn,
            identity,
            hub: sig.hub.clone(),
            extension: sig.extension.clone(),
            media: sig.media.clone(),
            media_spaces: HashMap::new(),
            bucket: TokenBucket::new(limits.events_per_second, limits.event_burst, Instant::now()),
            metrics: sig.metrics.clone(),
        }
    }

    /// Handles one client event and returns its ack payload.
    pub async fn handle(&mut self, name: &str, data: Value) -> Answer {
        let started = Instant::now();
        let label = CLIENT_EVENT_NAMES
            .iter()
            .chain(CHAT_EVENT_NAMES)
            .find(|n| **n == name)
            .copied()
            .unwrap_or("unknown");
        self.metrics.events_in.with_label_values(&[label]).inc();
        let temp_id = data
            .get("tempId")
            .and_then(Value::as_str)
            .map(|t| protocol::truncate(t, 100).to_owned());
        let result = self.dispatch(name, data, started).await;
        self.metrics
            .event_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            self.metrics
                .event_errors
                .with_label_values(&[f.code.as_str()])
                .inc();
        }
        Answer { result, temp_id }
    }

    async fn dispatch(&mut self, name: &str, data: Value, now: Instant) -> Result<Value, Failure> {
        if !self.bucket.try_take(now) {
            return Err(Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "too many events; retry in {} ms",
                    self.bucket.wait_time().as_millis().max(1)
                ),
            ));
        }
        if let Some(ext) = self.extension.as_ref().filter(|e| e.serves(name)) {
            let caller = Caller {
                identity: &self.identity,
                conn: self.conn,
                hub: &self.hub,
            };
            return ext.handle(&caller, name, data).await;
        }
        let event = ClientEvent::parse(name, data)?;
        if let Some(media) = self.media.clone() {
            match event {
                ClientEvent::Offer(s) if s.target_user_id.is_none() => {
                    return self.media_offer(&media, s, now).await;
                }
                ClientEvent::Answer(s) if s.target_user_id.is_none() => {
                    let who = self.authorize(&s.call_id).await?;
                    media.answer(&who, sdp_of(&s.payload)?).await?;
                    return Ok(json!({"ok": true}));
                }
                ClientEvent::IceCandidate(s) if s.target_user_id.is_none() => {
                    let who = self.authorize(&s.call_id).await?;
                    media.candidate(&who, s.payload).await?;
                    return Ok(json!({"ok": true}));
                }
                ClientEvent::TrackSubscribe(t) => {
                    return self.media_subscribe(&media, t, true).await;
                }
                ClientEvent::TrackUnsubscribe(t) => {
                    return self.media_subscribe(&media, t, false).await;
                }
                _ => {}
            }
        }
        let joined = match &event {
            ClientEvent::CallAccept(r) | ClientEvent::CallJoin(r) => {
                Some((r.call_id.to_string(), JoinRole::Member))
            }
            ClientEvent::RoomJoin(r) => Some((format!("room:{}", r.room), JoinRole::Member)),
            _ => None,
        };
        let initiating = matches!(event, ClientEvent::CallInitiate(_));
        let toggled = match &event {
            ClientEvent::MediaToggle(m) => Some((m.call_id.clone(), m.media_type, !m.enabled)),
            _ => None,
        };
        let room_join = matches!(event, ClientEvent::RoomJoin(_));
        let mut ack = self.hub.event(self.conn, event).await?;
        let joined = joined.or_else(|| {
            initiating
                .then(|| {
                    ack["callId"]
                        .as_str()
                        .map(|id| (id.to_owned(), JoinRole::Owner))
                })
                .flatten()
        });
        if let Some((space, _)) = &joined {
            self.media_spaces
                .entry(CallId(space.clone()))
                .or_insert(now);
        }
        if let (true, Some(media), Some(id)) = (room_join, &self.media, ack["roomId"].as_str()) {
            let tracks = media.tracks(&CallId(id.to_owned())).await;
            ack["tracks"] = serde_json::to_value(tracks).unwrap_or_default();
        }
        if let (Some((space, kind, muted)), Some(media)) = (toggled, &self.media) {
            // In an SFU call the server announces the mute as track:muted too.
            if let Ok(who) = self.hub.authorize_media(self.conn, space).await {
                media.set_muted(&who, kind, muted).await;
            }
        }
        if let (Some(ext), Some((conversation, role))) = (&self.extension, joined) {
            // Membership is recorded before the ack, so the caller's next event (a chat
            // message in the call) already finds it.
            ext.joined(&self.identity, &conversation, role).await;
        }
        Ok(ack)
    }

    async fn authorize(&self, space: &CallId) -> Result<MediaParticipant, Failure> {
        self.hub.authorize_media(self.conn, space.clone()).await
    }

    /// A client offer to the SFU: the answer comes back as an `answer` event from `sfu` (and in
    /// the ack).
    async fn media_offer(
        &mut self,
        media: &Arc<dyn MediaServer>,
        signal: Signal,
        now: Instant,
    ) -> Result<Value, Failure> {
        let who = self.authorize(&signal.call_id).await?;
        let started = *self
            .media_spaces
            .entry(signal.call_id.clone())
            .or_insert(now);
        let negotiated = media.offer(&who, sdp_of(&signal.payload)?, started).await?;
        let answer = json!({"type": "answer", "sdp": negotiated.answer});
        let event = sfu_signal(&signal.call_id, "answer", answer.clone());
        self.hub.deliver_to(self.conn, Arc::new(event)).await;
        if let Some(offer) = negotiated.follow_up_offer {
            let event = offer.event(&signal.call_id);
            self.hub.deliver_to(self.conn, Arc::new(event)).await;
        }
        Ok(json!({"callId": signal.call_id, "answer": answer}))
    }

    async fn media_subscribe(
        &mut self,
        media: &Arc<dyn MediaServer>,
        track: TrackRef,
        subscribe: bool,
    ) -> Result<Value, Failure> {
        let space = match track.call_id {
            Some(space) => space,
            None if self.media_spaces.len() == 1 => {
                self.media_spaces.keys().next().expect("one entry").clone()
            }
            None => {
                return Err(Failure::new(
                    ErrorCode::InvalidPayload,
                    "`callId` is required when the connection is in several calls or rooms",
                ));
            }
        };
        let who = self.authorize(&space).await?;
        media.subscribe(&who, &track.track_id, subscribe).await?;
        Ok(json!({"ok": true}))
    }
}

/// The `from` of signals the SFU sends.
pub const SFU: &str = "sfu";

/// An `offer` or `answer` event from the SFU (`kind` is the event and payload field name).
pub fn sfu_signal(space: &CallId, kind: &str, description: Value) -> ServerEvent {
    let mut payload = serde_json::Map::new();
    payload.insert(kind.into(), description);
    let signal = RelayedSignal {
        call_id: space.clone(),
        from: UserId::from(SFU),
        payload,
    };
    if kind == "offer" {
        ServerEvent::Offer(signal)
    } else {
        ServerEvent::Answer(signal)
    }
}

/// The SDP text of an `offer`/`answer` payload: `{type, sdp}` as browsers produce it, or a bare
/// string.
fn sdp_of(payload: &Value) -> Result<String, Failure> {
    let sdp = match payload {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("sdp").and_then(Value::as_str),
        _ => None,
    };
    match sdp {
        Some(s) if !s.trim().is_empty() => Ok(s.to_owned()),
        _ => Err(Failure::new(
            ErrorCode::InvalidPayload,
            "expected an SDP string or {type, sdp}",
        )),
    }
}

/// The `error` event answering a failed client event.
pub fn error_event(
    failure: &Failure,
    event: Option<&str>,
    id: Option<u64>,
    temp_id: Option<String>,
) -> ServerEvent {
    ServerEvent::Error(ErrorEvent {
        code: failure.code,
        message: failure.message.clone(),
        event: event.map(|e| protocol::truncate(e, 64).to_owned()),
        id,
        temp_id,
    })
}
