//! The SFU plugged into signaling: [`SfuMedia`] implements signaling's `MediaServer` over the
//! sfu crate's handle, and [`spawn_event_pump`] turns SFU events into client events.
//!
//! Keys: a media space (SFU call or room) is an SFU room keyed by its call id (`room:<name>`
//! for rooms); a participant is one connection, keyed `<userId>#<connectionId>` so the user
//! behind an SFU event can be told without another table.

use protocol::{
    CallId, ConnectionId, ErrorCode, Failure, MediaType, ServerEvent, TrackEvent, TrackPublished,
    UserId,
};
use serde_json::Value;
use sfu::{Muted, ParticipantKey, RoomKey, SfuEvent, SfuHandle, TrackId};
use signaling::driver::HubHandle;
use signaling::media::{MediaParticipant, MediaServer, Negotiated, ServerOffer};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Maps the `[sfu]` configuration onto the sfu crate's settings. Dev mode binds to loopback
/// and advertises 127.0.0.1 unless addresses are configured.
pub fn settings(config: &config::Config) -> sfu::Settings {
    let c = &config.sfu;
    let dev = config.server.dev;
    let local = |addr: SocketAddr| {
        if dev && !addr.ip().is_loopback() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        } else {
            addr
        }
    };
    let mut public_ips: Vec<IpAddr> = c
        .public_ips
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if public_ips.is_empty() && dev {
        public_ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    sfu::Settings {
        udp_listen: local(c.udp_listen),
        tcp_listen: c.tcp_listen.parse().ok().map(local),
        public_ips,
        candidates: match c.candidates {
            config::SfuCandidates::Both => sfu::CandidateTransports::UdpAndTcp,
            config::SfuCandidates::Udp => sfu::CandidateTransports::UdpOnly,
            config::SfuCandidates::Tcp => sfu::CandidateTransports::TcpOnly,
        },
        ice_timeout: c.ice_timeout.get(),
        limits: sfu::Limits {
            max_mlines_per_offer: c.max_mlines_per_offer,
            max_tracks_per_participant: c.max_tracks_per_participant,
            max_participants_per_room: config
                .calls
                .max_participants
                .max(config.rooms.max_participants),
            max_rooms: config.rooms.max_rooms + 10_000,
        },
        ..sfu::Settings::default()
    }
}

/// Signaling's media server, backed by the SFU.
pub struct SfuMedia {
    sfu: SfuHandle,
    /// Participants that joined the SFU (on their first offer), by space and connection.
    joined: Mutex<HashMap<(CallId, ConnectionId), ParticipantKey>>,
}

impl SfuMedia {
    pub fn new(sfu: SfuHandle) -> Self {
        Self {
            sfu,
            joined: Mutex::new(HashMap::new()),
        }
    }

    fn joined(&self) -> std::sync::MutexGuard<'_, HashMap<(CallId, ConnectionId), ParticipantKey>> {
        self.joined.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl MediaServer for SfuMedia {
    async fn offer(
        &self,
        who: &MediaParticipant,
        sdp: String,
        started: Instant,
    ) -> Result<Negotiated, Failure> {
        let (room, participant) = keys(who);
        let seat = (who.space.clone(), who.conn);
        if !self.joined().contains_key(&seat) {
            let grants = sfu::Grants {
                can_publish: who.grants.can_publish,
                can_subscribe: who.grants.can_subscribe,
            };
            match self
                .sfu
                .join(room.clone(), participant.clone(), grants, started)
                .await
            {
                Ok(()) | Err(sfu::Error::AlreadyJoined(_)) => {}
                Err(e) => return Err(failure(e)),
            }
            self.joined().insert(seat, participant.clone());
        }
        let reply = self
            .sfu
            .offer(room, participant, sdp)
            .await
            .map_err(failure)?;
        Ok(Negotiated {
            answer: reply.answer,
            follow_up_offer: reply.server_offer.map(|o| ServerOffer {
                sdp: o.sdp,
                tracks: track_mids(&o.tracks),
            }),
        })
    }

    async fn answer(&self, who: &MediaParticipant, sdp: String) -> Result<(), Failure> {
        let (room, participant) = keys(who);
        self.sfu
            .answer(room, participant, sdp)
            .await
            .map_err(failure)
    }

    async fn candidate(&self, who: &MediaParticipant, candidate: Value) -> Result<(), Failure> {
        let text = match &candidate {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("candidate")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Value::Null => String::new(),
            _ => {
                return Err(Failure::new(
                    ErrorCode::InvalidPayload,
                    "`candidate` must be a string or RTCIceCandidateInit",
                ));
            }
        };
        if text.trim().is_empty() {
            // End of candidates: nothing to do for an ICE-lite server.
            return Ok(());
        }
        let (room, participant) = keys(who);
        self.sfu
            .add_remote_candidate(room, participant, text)
            .await
            .map_err(failure)
    }

    async fn subscribe(
        &self,
        who: &MediaParticipant,
        track_id: &str,
        subscribe: bool,
    ) -> Result<(), Failure> {
        let (room, participant) = keys(who);
        let track = TrackId::new(track_id);
        let result = if subscribe {
            self.sfu.subscribe(room, participant, track).await
        } else {
            self.sfu.unsubscribe(room, participant, track).await
        };
        result.map_err(failure)
    }

    async fn set_muted(&self, who: &MediaParticipant, kind: MediaType, muted: bool) {
        let (room, participant) = keys(who);
        let Ok(tracks) = self.sfu.room_tracks(room.clone()).await else {
            return;
        };
        let wanted = match kind {
            MediaType::Audio => sfu::TrackSource::Microphone,
            MediaType::Video => sfu::TrackSource::Camera,
        };
        let state = if muted { Muted::Yes } else { Muted::No };
        for t in tracks
            .into_iter()
            .filter(|t| t.participant == participant && t.source == wanted)
        {
            let _ = self
                .sfu
                .set_track_muted(room.clone(), participant.clone(), t.track_id, state)
                .await;
        }
    }

    async fn tracks(&self, space: &CallId) -> Vec<TrackPublished> {
        let room = RoomKey::new(space.as_str());
        match self.sfu.room_tracks(room).await {
            Ok(tracks) => tracks
                .into_iter()
                .map(|t| TrackPublished {
                    call_id: space.clone(),
                    track_id: t.track_id.as_str().to_owned(),
                    user_id: user_of(&t.participant),
                    kind: kind(t.kind),
                    source: source(t.source),
                    mid: t.mid,
                    muted: t.muted == Muted::Yes,
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn leave(&self, space: &CallId, conn: ConnectionId) {
        let participant = self.joined().remove(&(space.clone(), conn));
        if let Some(participant) = participant {
            let _ = self
                .sfu
                .leave(RoomKey::new(space.as_str()), participant)
                .await;
        }
    }
}

/// Forwards SFU events to the clients they concern.
pub fn spawn_event_pump(sfu: &SfuHandle, hub: HubHandle, media: Arc<SfuMedia>) {
    let Ok(mut events) = sfu.events() else {
        tracing::error!("the SFU event stream was already taken");
        return;
    };
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                SfuEvent::TrackPublished {
                    room,
                    participant,
                    track_id,
                    kind: k,
                    source: s,
                    mid,
                    muted,
                } => {
                    let space = space_of(&room);
                    let event = ServerEvent::TrackPublished(TrackPublished {
                        call_id: space.clone(),
                        track_id: track_id.as_str().to_owned(),
                        user_id: user_of(&participant),
                        kind: kind(k),
                        source: source(s),
                        mid,
                        muted: muted == Muted::Yes,
                    });
                    hub.deliver_to_space(space, None, Arc::new(event)).await;
                }
                SfuEvent::TrackUnpublished {
                    room,
                    participant,
                    track_id,
                } => {
                    let space = space_of(&room);
                    let event =
                        ServerEvent::TrackUnpublished(track_event(&space, &participant, &track_id));
                    hub.deliver_to_space(space, None, Arc::new(event)).await;
                }
                SfuEvent::TrackMuted {
                    room,
                    participant,
                    track_id,
                    muted,
                } => {
                    let space = space_of(&room);
                    let body = track_event(&space, &participant, &track_id);
                    let event = match muted {
                        Muted::Yes => ServerEvent::TrackMuted(body),
                        Muted::No => ServerEvent::TrackUnmuted(body),
                    };
                    hub.deliver_to_space(space, None, Arc::new(event)).await;
                }
                SfuEvent::Offer {
                    room,
                    participant,
                    sdp,
                    tracks,
                } => {
                    let Some(conn) = conn_of(&participant) else {
                        continue;
                    };
                    let offer = ServerOffer {
                        sdp,
                        tracks: track_mids(&tracks),
                    };
                    hub.deliver_to(conn, Arc::new(offer.event(&space_of(&room))))
                        .await;
                }
                SfuEvent::ParticipantFailed {
                    room,
                    participant,
                    reason,
                } => {
                    tracing::info!(
                        room = room.as_str(),
                        participant = participant.as_str(),
                        ?reason,
                        "SFU participant removed"
                    );
                    if let Some(conn) = conn_of(&participant) {
                        media.joined().remove(&(space_of(&room), conn));
                    }
                }
                SfuEvent::Connected { .. }
                | SfuEvent::FirstMediaForwarded { .. }
                | SfuEvent::RoomClosed { .. } => {}
            }
        }
    });
}

fn track_mids(tracks: &[(TrackId, String)]) -> Vec<(String, String)> {
    tracks
        .iter()
        .map(|(t, mid)| (t.as_str().to_owned(), mid.clone()))
        .collect()
}

fn keys(who: &MediaParticipant) -> (RoomKey, ParticipantKey) {
    (
        RoomKey::new(who.space.as_str()),
        ParticipantKey::new(format!("{}#{}", who.user, who.conn.0)),
    )
}

fn space_of(room: &RoomKey) -> CallId {
    CallId(room.as_str().to_owned())
}

fn user_of(participant: &ParticipantKey) -> UserId {
    let key = participant.as_str();
    UserId(
        key.rsplit_once('#')
            .map_or(key, |(user, _)| user)
            .to_owned(),
    )
}

fn conn_of(participant: &ParticipantKey) -> Option<ConnectionId> {
    let (_, conn) = participant.as_str().rsplit_once('#')?;
    conn.parse().ok().map(ConnectionId)
}

fn track_event(space: &CallId, participant: &ParticipantKey, track: &TrackId) -> TrackEvent {
    TrackEvent {
        call_id: space.clone(),
        track_id: track.as_str().to_owned(),
        user_id: user_of(participant),
    }
}

fn kind(k: sfu::TrackKind) -> protocol::TrackKind {
    match k {
        sfu::TrackKind::Audio => protocol::TrackKind::Audio,
        sfu::TrackKind::Video => protocol::TrackKind::Video,
    }
}

fn source(s: sfu::TrackSource) -> protocol::TrackSource {
    match s {
        sfu::TrackSource::Camera => protocol::TrackSource::Camera,
        sfu::TrackSource::Microphone => protocol::TrackSource::Microphone,
        sfu::TrackSource::Screen => protocol::TrackSource::Screen,
        sfu::TrackSource::ScreenAudio => protocol::TrackSource::ScreenAudio,
    }
}

/// An SFU refusal as the client sees it.
fn failure(e: sfu::Error) -> Failure {
    let code = match &e {
        sfu::Error::UnknownRoom(_) | sfu::Error::UnknownTrack(_) => ErrorCode::NotFound,
        sfu::Error::UnknownParticipant { .. }
        | sfu::Error::AlreadyJoined(_)
        | sfu::Error::NoPendingOffer => ErrorCode::InvalidState,
        sfu::Error::RoomFull { .. }
        | sfu::Error::TooManyRooms { .. }
        | sfu::Error::TooManyMLines { .. }
        | sfu::Error::TooManyTracks { .. } => ErrorCode::LimitExceeded,
        sfu::Error::NoUsableCodec { .. } | sfu::Error::BadSdp(_) | sfu::Error::BadCandidate(_) => {
            ErrorCode::InvalidPayload
        }
        sfu::Error::NotAllowed(_) => ErrorCode::Forbidden,
        _ => ErrorCode::Internal,
    };
    Failure::new(code, e.to_string())
}
