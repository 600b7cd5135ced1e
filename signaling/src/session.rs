//! The per-connection pipeline shared by both transports.
//!
//! A transport adapter authenticates the connection, then hands every incoming event (name and
//! JSON data) to [`Session::handle`], which rate-limits, types, routes and measures it, and
//! returns the ack payload or the failure. The adapter renders that in its own framing and, on
//! failure, also sends an `error` event ([`error_event`]).
//!
//! Routing is a table ([`Route`]): chat events go to the extension, SFU signaling and track
//! subscriptions to the media server through the hub's seat check, everything else to the hub.
//! One hook runs after a successful join (a call started, accepted or joined, a room joined):
//! the extension records the membership, and a room's ack gains its published tracks.
//!
//! Lifecycle: created after the hub accepted the connection (it opens a resumable session,
//! announced by [`Session::announce`] as `session:ready`); `session:resume` may make it take
//! over a dropped session ([`Session::take_resumed`] hands the transport what to switch to);
//! [`Session::finish`] ends it when the connection ends: parked for `limits.resume_grace` when
//! the connection dropped, disconnected otherwise (see [`crate::resume`]).

use crate::auth::{Authenticator, Identity, TokenTerms};
use crate::cluster::Router;
use crate::driver::HubHandle;
use crate::extension::{Caller, Extension, JoinRole};
use crate::limits::TokenBucket;
use crate::media::{
    MediaAnswer, MediaRequest, SignalKind, Subscription, VideoWish, sdp_of, sfu_signal,
};
use crate::metrics::Metrics;
use crate::resume::{Departure, Parked, SessionKey, Sessions};
use crate::transport::expiry::{Expiry, TokenClock};
use crate::transport::outbox::OutboxReader;
use protocol::{
    CHAT_EVENT_NAMES, CLIENT_EVENT_NAMES, CallId, ClientEvent, ConnectionId, ErrorCode, ErrorEvent,
    Failure, SESSION_REFRESH, SESSION_RESUME, ServerEvent, SessionExpiring, SessionReady,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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
    /// Where events for calls and rooms go (their owner node, in a cluster).
    router: Arc<Router>,
    extension: Option<Arc<dyn Extension>>,
    /// Whether a media server is plugged in: without one, SFU signaling has nowhere to go.
    media: MediaRouting,
    bucket: TokenBucket,
    metrics: Metrics,
    /// Until when the connection's token is accepted; `session:refresh` moves it.
    expiry: Expiry,
    /// Revoked tokens: a refresh with one is refused, and the writer closes on one.
    revocations: Arc<crate::revocation::Revocations>,
    auth: Arc<Authenticator>,
    /// Resumable sessions of this node, and this session's key among them.
    sessions: Arc<Sessions>,
    key: SessionKey,
    /// Notified when a resume on another connection takes this session over.
    hand_over: Arc<Notify>,
    /// What a successful `session:resume` took over, until the transport switches to it.
    resumed: Option<Resumed>,
}

/// A dropped session's registration and outbox, taken over by `session:resume`: the transport
/// ends its own registration and writes from `events` from now on.
pub struct Resumed {
    pub registration: crate::cluster::Registration,
    pub events: OutboxReader,
}

/// The outcome of one client event: the ack payload or the failure, and the chat `tempId`
/// the event carried (failures echo it in the `error` event).
pub struct Answer {
    pub result: Result<Value, Failure>,
    pub temp_id: Option<String>,
}

/// Where a typed client event goes; see the module docs.
#[derive(Debug)]
pub enum Route {
    /// To the media server, for the connection's seat in `space` (its only media space when
    /// `None`).
    Media {
        space: Option<CallId>,
        request: MediaRequest,
    },
    /// To the hub: calls, rooms, presence, and P2P relay.
    Hub(ClientEvent),
}

/// Whether SFU signaling can be served here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaRouting {
    Enabled,
    Disabled,
}

impl Route {
    /// The route of `event`. SFU signaling is an `offer`/`answer`/`ice-candidate` without
    /// `targetUserId`; a server without a media server sends it to the hub, which refuses it.
    pub fn of(event: ClientEvent, media: MediaRouting) -> Result<Route, Failure> {
        if media == MediaRouting::Disabled {
            return Ok(Route::Hub(event));
        }
        let media = |space: CallId, request| Route::Media {
            space: Some(space),
            request,
        };
        Ok(match event {
            ClientEvent::Offer(s) if s.target_user_id.is_none() => {
                let sdp = sdp_of(&s.payload)?;
                media(s.call_id, MediaRequest::Offer { sdp })
            }
            ClientEvent::Answer(s) if s.target_user_id.is_none() => {
                let sdp = sdp_of(&s.payload)?;
                media(s.call_id, MediaRequest::Answer { sdp })
            }
            ClientEvent::IceCandidate(s) if s.target_user_id.is_none() => media(
                s.call_id,
                MediaRequest::Candidate {
                    candidate: s.payload,
                },
            ),
            ClientEvent::TrackSubscribe(t) => Route::Media {
                space: t.call_id,
                request: MediaRequest::Subscribe {
                    track_id: t.track_id,
                    subscription: Subscription::Start,
                },
            },
            ClientEvent::TrackUnsubscribe(t) => Route::Media {
                space: t.call_id,
                request: MediaRequest::Subscribe {
                    track_id: t.track_id,
                    subscription: Subscription::Stop,
                },
            },
            ClientEvent::TrackSettings(t) => Route::Media {
                space: t.call_id,
                request: MediaRequest::Settings {
                    track_id: t.track_id,
                    wish: if t.paused {
                        VideoWish::Paused
                    } else {
                        match (t.width, t.height) {
                            (None, None) => VideoWish::Highest,
                            (w, h) => VideoWish::Size {
                                width: w.unwrap_or(0),
                                height: h.unwrap_or(0),
                            },
                        }
                    },
                    frame_rate: t.frame_rate,
                },
            },
            ClientEvent::MediaBandwidth(b) => Route::Media {
                space: b.call_id,
                request: MediaRequest::Bandwidth {
                    max_bitrate: b.max_bitrate,
                },
            },
            other => Route::Hub(other),
        })
    }
}

/// A join the post-join hook must follow up.
enum Joining {
    /// `call:accept` / `call:join` of this call.
    Call(CallId),
    /// `call:initiate`: the call id is in the ack.
    Initiate,
    /// `room:join`: the room id is in the ack.
    Room,
}

impl Joining {
    fn of(event: &ClientEvent) -> Option<Joining> {
        match event {
            ClientEvent::CallAccept(r) | ClientEvent::CallJoin(r) => {
                Some(Joining::Call(r.call_id.clone()))
            }
            ClientEvent::CallInitiate(_) => Some(Joining::Initiate),
            ClientEvent::RoomJoin(_) => Some(Joining::Room),
            _ => None,
        }
    }
}

impl Session {
    /// The pipeline for a connection the hub has accepted, whose token is accepted until Unix
    /// second `until`.
    pub fn new(
        conn: ConnectionId,
        identity: Identity,
        terms: TokenTerms,
        sig: &crate::Signaling,
    ) -> Self {
        let limits = sig.limits;
        let (key, hand_over) = sig.sessions.open(&identity.user_id);
        Self {
            sessions: sig.sessions.clone(),
            key,
            hand_over,
            resumed: None,
            expiry: Expiry::new(terms),
            auth: sig.auth.clone(),
            revocations: sig.revocations.clone(),
            conn,
            identity,
            hub: sig.hub.clone(),
            router: sig.routing.clone(),
            extension: sig.extension.clone(),
            media: if sig.media.is_some() {
                MediaRouting::Enabled
            } else {
                MediaRouting::Disabled
            },
            bucket: TokenBucket::new(limits.events_per_second, limits.event_burst, Instant::now()),
            metrics: sig.metrics.clone(),
        }
    }

    /// Queues `session:ready {sessionId, resumeWithinMs}` for this connection.
    pub async fn announce(&self) {
        let ready = ServerEvent::SessionReady(SessionReady {
            session_id: self.key.as_str().to_owned(),
            resume_within_ms: self.sessions.grace().as_millis() as u64,
        });
        self.hub.deliver_to(self.conn, Arc::new(ready)).await;
    }

    /// Resolves when a `session:resume` on another connection takes this session over: the
    /// transport must then end as [`Departure::Dropped`] at once.
    pub fn hand_over(&self) -> Arc<Notify> {
        self.hand_over.clone()
    }

    /// What the last `session:resume` took over, once: the transport ends its own
    /// registration, keeps this one, and writes from its outbox (the missed events first).
    pub fn take_resumed(&mut self) -> Option<Resumed> {
        self.resumed.take()
    }

    /// Ends the session with its connection: parks it for `session:resume` when the connection
    /// dropped (and the transport still holds its outbox), ends it for good otherwise.
    pub async fn finish(
        self,
        departure: Departure,
        registration: crate::cluster::Registration,
        events: Option<OutboxReader>,
    ) {
        match (departure, events) {
            (Departure::Dropped, Some(events)) => {
                let parked = Parked {
                    user: self.identity.user_id.clone(),
                    conn: self.conn,
                    registration,
                    events,
                };
                self.sessions.park(self.key, parked).await;
            }
            _ => {
                self.sessions.close(&self.key);
                registration.disconnect().await;
            }
        }
    }

    /// `session:resume {sessionId}`: takes over a dropped session of the same user. From here
    /// on this connection acts as the old one (its connection id holds the seats).
    async fn resume(&mut self, data: Value) -> Result<Value, Failure> {
        let request: SessionResume = serde_json::from_value(data).map_err(|e| {
            Failure::new(
                ErrorCode::InvalidPayload,
                format!("session:resume takes {{sessionId}}: {e}"),
            )
        })?;
        if request.session_id == self.key.as_str() {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                "that is this connection's own session",
            ));
        }
        if request.session_id.len() > 64 {
            return Err(Failure::new(
                ErrorCode::InvalidPayload,
                "`sessionId` is at most 64 characters",
            ));
        }
        let user = self.identity.user_id.clone();
        let taken = self
            .sessions
            .resume(&request.session_id, &user, request.received)
            .await?;
        let own = std::mem::replace(&mut self.key, taken.key);
        self.sessions.close(&own);
        self.hand_over = self.sessions.adopt(&self.key, &user);
        self.conn = taken.conn;
        self.resumed = Some(Resumed {
            registration: taken.registration,
            events: taken.events,
        });
        Ok(json!({"sessionId": self.key.as_str(), "resumed": true}))
    }

    /// The writer's view of the token's expiry and revocation.
    pub fn token_clock(&self) -> TokenClock {
        self.expiry.clock(self.revocations.clone())
    }

    /// `session:refresh {token}`: a newer token for the same user moves the session's end. The
    /// connection keeps the name and grants it connected with; reconnect to change those.
    fn refresh(&self, data: Value) -> Result<Value, Failure> {
        let request: SessionRefresh = serde_json::from_value(data).map_err(|e| {
            Failure::new(
                ErrorCode::InvalidPayload,
                format!("session:refresh takes {{token}}: {e}"),
            )
        })?;
        let (identity, terms) = self
            .auth
            .verify_token(&request.token)
            .map_err(|e| Failure::new(e.code, e.message))?;
        self.revocations.check(&terms.credential)?;
        if identity.user_id != self.identity.user_id {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "the token names another user; a session keeps its user",
            ));
        }
        let until = terms.until;
        self.expiry.renew(terms);
        Ok(json!({"expiresAt": expires_at(until)}))
    }

    /// Handles one client event and returns its ack payload.
    pub async fn handle(&mut self, name: &str, data: Value) -> Answer {
        let started = Instant::now();
        let label = CLIENT_EVENT_NAMES
            .iter()
            .chain(CHAT_EVENT_NAMES)
            .chain(&[SESSION_REFRESH, SESSION_RESUME])
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
        if name == SESSION_REFRESH {
            return self.refresh(data);
        }
        if name == SESSION_RESUME {
            return self.resume(data).await;
        }
        if let Some(ext) = self.extension.as_ref().filter(|e| e.serves(name)) {
            let caller = Caller {
                identity: &self.identity,
                conn: self.conn,
                hub: &self.hub,
            };
            return ext.handle(&caller, name, data).await;
        }
        match Route::of(ClientEvent::parse(name, data)?, self.media)? {
            Route::Media { space, request } => self.media(space, request).await,
            Route::Hub(event) => {
                let joining = Joining::of(&event);
                let ack = self.router.event(self.conn, &self.identity, event).await?;
                match joining {
                    Some(joining) => Ok(self.joined(joining, ack).await),
                    None => Ok(ack),
                }
            }
        }
    }

    /// A media request. An offer's answer also goes out as an `answer` event from `sfu` (and
    /// a server offer right after it, when the server has tracks to add).
    async fn media(&self, space: Option<CallId>, request: MediaRequest) -> Result<Value, Failure> {
        let (space, answer) = self
            .router
            .media(self.conn, &self.identity, space, request)
            .await?;
        match answer {
            MediaAnswer::Negotiated(negotiated) => {
                let answer = json!({"type": "answer", "sdp": negotiated.answer});
                let event = sfu_signal(&space, SignalKind::Answer, answer.clone());
                self.hub.deliver_to(self.conn, Arc::new(event)).await;
                if let Some(offer) = negotiated.follow_up_offer {
                    let event = offer.event(&space);
                    self.hub.deliver_to(self.conn, Arc::new(event)).await;
                }
                Ok(json!({"callId": space, "answer": answer}))
            }
            MediaAnswer::Tracks(tracks) => Ok(serde_json::to_value(tracks).unwrap_or_default()),
            MediaAnswer::Done => Ok(json!({"ok": true})),
        }
    }

    /// The post-join hook: the extension records the membership before the ack leaves (so the
    /// caller's next event, a chat message in the call, finds it), and the ack of a room, or of
    /// a call in SFU mode, lists the tracks already published there: their `track:published`
    /// went out before this connection joined (a late joiner, a device taking a call back).
    async fn joined(&self, joining: Joining, mut ack: Value) -> Value {
        let room = matches!(joining, Joining::Room);
        let sfu_call = matches!(joining, Joining::Call(_)) && ack["mode"] == "sfu";
        let (space, role) = match joining {
            Joining::Call(id) => (Some(id), JoinRole::Member),
            Joining::Initiate => (ack_id(&ack, "callId"), JoinRole::Owner),
            Joining::Room => (ack_id(&ack, "roomId"), JoinRole::Member),
        };
        let Some(space) = space else {
            return ack;
        };
        if (room || sfu_call) && self.media == MediaRouting::Enabled {
            let tracks = self.media(Some(space.clone()), MediaRequest::Tracks).await;
            ack["tracks"] = tracks.unwrap_or_else(|_| json!([]));
        }
        if let Some(ext) = &self.extension {
            ext.joined(&self.identity, space.as_str(), role).await;
        }
        ack
    }
}

fn ack_id(ack: &Value, field: &str) -> Option<CallId> {
    ack[field].as_str().map(|id| CallId(id.to_owned()))
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

/// `session:refresh`'s payload.
#[derive(serde::Deserialize)]
struct SessionRefresh {
    token: String,
}

/// `session:resume`'s payload.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionResume {
    session_id: String,
    /// Events the client received on the old connection (every event but `error` and
    /// `session:expiring`, from its `session:ready` on).
    #[serde(default)]
    received: Option<u64>,
}

/// Unix second `until` as the RFC 3339 time clients get.
pub fn expires_at(until: u64) -> String {
    crate::hub::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(until))
}

/// `session:expiring` for a token accepted until Unix second `until`.
pub fn expiring(until: u64) -> ServerEvent {
    ServerEvent::SessionExpiring(SessionExpiring {
        expires_at: expires_at(until),
    })
}
