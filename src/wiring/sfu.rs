//! The SFU plugged into signaling: [`SfuMedia`] implements signaling's `MediaServer` over the
//! sfu crate's handle, and [`spawn_event_pump`] turns SFU events into client events.
//!
//! Keys: a media space (SFU call or room) is an SFU room keyed by its call id (`room:<name>`
//! for rooms); a participant is one connection, keyed by its connection id with its user id
//! beside it, so SFU events name both without a table here.

use crate::webhook::Webhooks;
use crate::webhook::event::WebhookEvent;
use protocol::{
    CallId, ConnectionId, ErrorCode, ErrorEvent, Failure, LayerQuality, MediaType, RoomSpeakers,
    ServerEvent, Speaker, TrackEvent, TrackLayer, TrackPublished, TrackQuality, UserId,
};
use serde_json::Value;
use sfu::{AudioLevel, Muted, ParticipantKey, RoomKey, SfuEvent, SfuHandle, TrackId, Wanted};
use signaling::driver::HubHandle;
use signaling::media::{
    AdminMedia, MediaAnswer, MediaCommand, MediaReply, MediaRequest, MediaSeat, MediaServer,
    Negotiated, ServerOffer, Subscription, VideoWish, ViewTarget,
};
use signaling::whip::{MediaState, Whip};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

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
        workers: c.workers,
        tcp_listen: c.tcp_listen.parse().ok().map(local),
        public_ips,
        candidates: match c.candidates {
            config::SfuCandidates::Both => sfu::CandidateTransports::UdpAndTcp,
            config::SfuCandidates::Udp => sfu::CandidateTransports::UdpOnly,
            config::SfuCandidates::Tcp => sfu::CandidateTransports::TcpOnly,
        },
        ice_timeout: c.ice_timeout.get(),
        congestion_control: if c.congestion_control {
            sfu::CongestionControl::Enabled
        } else {
            sfu::CongestionControl::Disabled
        },
        nack_history: c.nack_history.get(),
        limits: sfu::Limits {
            max_mlines_per_offer: c.max_mlines_per_offer,
            max_tracks_per_participant: c.max_tracks_per_participant,
            max_participants_per_room: config
                .calls
                .max_participants
                .max(config.rooms.max_participants),
            max_rooms: config.rooms.max_rooms + 10_000,
        },
        data: sfu::DataLimits {
            max_message_bytes: c.data_max_message_bytes,
            messages_per_second: c.data_messages_per_second,
            bytes_per_second: c.data_bytes_per_second,
            max_buffered_bytes: c.data_max_buffered_bytes,
        },
        ..sfu::Settings::default()
    }
}

/// Signaling's media server, backed by the SFU. It keeps no state of its own: the hub owns who
/// sits where and the SFU owns the media, so this only translates (see `signaling::media`).
pub struct SfuMedia {
    sfu: SfuHandle,
}

impl SfuMedia {
    pub fn new(sfu: SfuHandle) -> Self {
        Self { sfu }
    }
}

impl MediaServer for SfuMedia {
    fn submit(&self, seat: &MediaSeat, request: MediaRequest) -> MediaReply {
        let (room, participant) = keys(&seat.space, seat.conn, &seat.user);
        match request {
            MediaRequest::Offer { sdp } => {
                let grants = sfu::Grants {
                    can_publish: seat.grants.can_publish,
                    can_subscribe: seat.grants.can_subscribe,
                    can_publish_data: seat.grants.can_publish_data,
                };
                let reply = self
                    .sfu
                    .offer_joining(room, participant, grants, seat.joined_at, sdp);
                Box::pin(async move {
                    let reply = reply.await.map_err(failure)?;
                    Ok(MediaAnswer::Negotiated(Negotiated {
                        answer: reply.answer,
                        follow_up_offer: reply.server_offer.map(|o| ServerOffer {
                            sdp: o.sdp,
                            tracks: track_mids(&o.tracks),
                        }),
                    }))
                })
            }
            MediaRequest::View { sdp, viewed } => {
                let viewed = match viewed {
                    ViewTarget::Participant { user } => sfu::Viewed::User(user.to_string()),
                    ViewTarget::ActiveSpeaker => sfu::Viewed::ActiveSpeaker,
                };
                let reply = self
                    .sfu
                    .offer_viewing(room, participant, viewed, seat.joined_at, sdp);
                Box::pin(async move {
                    let reply = reply.await.map_err(failure)?;
                    Ok(MediaAnswer::Negotiated(Negotiated {
                        answer: reply.answer,
                        follow_up_offer: None,
                    }))
                })
            }
            MediaRequest::Answer { sdp } => done(self.sfu.answer(room, participant, sdp)),
            MediaRequest::Candidate { candidate } => match candidate_line(&candidate) {
                // End of candidates: nothing to do for an ICE-lite server.
                Ok(None) => Box::pin(async { Ok(MediaAnswer::Done) }),
                Ok(Some(line)) => done(self.sfu.add_remote_candidate(room, participant, line)),
                Err(e) => Box::pin(async move { Err(e) }),
            },
            MediaRequest::Subscribe {
                track_id,
                subscription,
            } => {
                let track = TrackId::new(track_id);
                done(match subscription {
                    Subscription::Start => self.sfu.subscribe(room, participant, track),
                    Subscription::Stop => self.sfu.unsubscribe(room, participant, track),
                })
            }
            MediaRequest::Settings {
                track_id,
                wish,
                frame_rate,
            } => {
                let wanted = match wish {
                    VideoWish::Highest => Wanted::Highest,
                    VideoWish::Size { width, height } => Wanted::Size { width, height },
                    VideoWish::Paused => Wanted::Paused,
                };
                done(self.sfu.set_track_settings(
                    room,
                    participant,
                    TrackId::new(track_id),
                    wanted,
                    frame_rate,
                ))
            }
            MediaRequest::Bandwidth { max_bitrate } => {
                done(self.sfu.set_receive_cap(room, participant, max_bitrate))
            }
            MediaRequest::Tracks => {
                let reply = self.sfu.room_tracks(room);
                let space = seat.space.clone();
                Box::pin(async move {
                    let tracks = reply.await.map_err(failure)?;
                    Ok(MediaAnswer::Tracks(
                        tracks.into_iter().map(|t| published(&space, t)).collect(),
                    ))
                })
            }
        }
    }

    fn apply(&self, command: MediaCommand) {
        // Fire and forget: the command is queued now, in order; a seat that never reached the
        // SFU (a P2P call, no offer yet) answers `UnknownParticipant`, which is fine.
        match command {
            MediaCommand::Leave { space, conn, user } => {
                let (room, participant) = keys(&space, conn, &user);
                drop(self.sfu.leave(room, participant));
            }
            MediaCommand::Mute { seat, kind, muted } => {
                let (room, participant) = keys(&seat.space, seat.conn, &seat.user);
                let source = match kind {
                    MediaType::Audio => sfu::TrackSource::Microphone,
                    MediaType::Video => sfu::TrackSource::Camera,
                };
                let state = if muted { Muted::Yes } else { Muted::No };
                drop(self.sfu.set_source_muted(room, participant, source, state));
            }
        }
    }

    fn admin(&self, request: AdminMedia) -> MediaReply {
        match request {
            AdminMedia::Tracks { space } => {
                let reply = self.sfu.room_tracks(RoomKey::new(space.as_str()));
                Box::pin(async move {
                    // A room nobody has sent an offer in is not in the SFU yet: no tracks.
                    let tracks = match reply.await {
                        Ok(tracks) => tracks,
                        Err(sfu::Error::UnknownRoom(_)) => Vec::new(),
                        Err(e) => return Err(failure(e)),
                    };
                    Ok(MediaAnswer::Tracks(
                        tracks.into_iter().map(|t| published(&space, t)).collect(),
                    ))
                })
            }
            AdminMedia::Hold {
                space,
                user,
                track,
                held,
            } => done(self.sfu.set_track_held(
                RoomKey::new(space.as_str()),
                user.to_string(),
                TrackId::new(track),
                held,
            )),
        }
    }
}

/// A reply with nothing to say but success or failure.
fn done(reply: sfu::Reply<()>) -> MediaReply {
    Box::pin(async move {
        reply.await.map_err(failure)?;
        Ok(MediaAnswer::Done)
    })
}

/// The candidate line of a trickled candidate: a string or `RTCIceCandidateInit`; `None` for
/// the end-of-candidates marker.
fn candidate_line(candidate: &Value) -> Result<Option<String>, Failure> {
    let text = match candidate {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("candidate")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        Value::Null => "",
        _ => {
            return Err(Failure::new(
                ErrorCode::InvalidPayload,
                "`candidate` must be a string or RTCIceCandidateInit",
            ));
        }
    };
    Ok((!text.trim().is_empty()).then(|| text.to_owned()))
}

fn published(space: &CallId, t: sfu::TrackInfo) -> TrackPublished {
    TrackPublished {
        call_id: space.clone(),
        track_id: t.track_id.as_str().to_owned(),
        user_id: UserId::from(t.participant.user()),
        kind: kind(t.kind),
        source: source(t.source),
        mid: t.mid,
        muted: t.muted == Muted::Yes,
    }
}

/// Forwards SFU events to the clients they concern, and a participant's connection and
/// failure to WHIP (`whip`), whose sessions end when their media does.
pub fn spawn_event_pump(
    sfu: &SfuHandle,
    hub: HubHandle,
    webhooks: Webhooks,
    whip: Option<Arc<Whip>>,
) {
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
                    if webhooks.wants("track.published") {
                        // Stored before the room hears of the track.
                        let data = serde_json::json!({
                            "callId": space,
                            "userId": participant.user(),
                            "trackId": track_id.as_str(),
                            "kind": kind(k),
                            "source": source(s),
                        });
                        let event = WebhookEvent::new(
                            "track.published",
                            space.to_string(),
                            SystemTime::now(),
                            data,
                        );
                        webhooks.append(vec![event]).await;
                    }
                    let event = ServerEvent::TrackPublished(TrackPublished {
                        call_id: space.clone(),
                        track_id: track_id.as_str().to_owned(),
                        user_id: UserId::from(participant.user()),
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
                    if webhooks.wants("track.unpublished") {
                        let data = serde_json::json!({
                            "callId": space,
                            "userId": participant.user(),
                            "trackId": track_id.as_str(),
                        });
                        let event = WebhookEvent::new(
                            "track.unpublished",
                            space.to_string(),
                            SystemTime::now(),
                            data,
                        );
                        webhooks.append(vec![event]).await;
                    }
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
                    let offer = ServerOffer {
                        sdp,
                        tracks: track_mids(&tracks),
                    };
                    let conn = ConnectionId(participant.conn());
                    hub.deliver_to(conn, Arc::new(offer.event(&space_of(&room))))
                        .await;
                }
                SfuEvent::ParticipantFailed {
                    room,
                    participant,
                    reason,
                } => {
                    // The seat stays in the hub: the client's next offer seats it again. A WHIP
                    // session has no next offer, so it ends.
                    tracing::info!(
                        room = room.as_str(),
                        %participant,
                        ?reason,
                        "SFU participant removed"
                    );
                    if let Some(whip) = &whip {
                        whip.media_state(ConnectionId(participant.conn()), MediaState::Failed);
                    }
                }
                SfuEvent::Connected { participant, .. } => {
                    if let Some(whip) = &whip {
                        whip.media_state(ConnectionId(participant.conn()), MediaState::Connected);
                    }
                }
                SfuEvent::Speakers { room, speakers } => {
                    let space = space_of(&room);
                    let event = ServerEvent::RoomSpeakers(room_speakers(&space, &speakers));
                    hub.deliver_to_space(space, None, Arc::new(event)).await;
                }
                SfuEvent::LayerChanged {
                    room,
                    participant,
                    track_id,
                    layer,
                } => {
                    let (rid, width, height, frame_rate, paused) = match layer {
                        Some(l) => (l.rid, l.width, l.height, l.frame_rate, false),
                        None => (None, 0, 0, None, true),
                    };
                    let event = ServerEvent::TrackLayer(TrackLayer {
                        call_id: space_of(&room),
                        track_id: track_id.as_str().to_owned(),
                        rid,
                        width,
                        height,
                        frame_rate,
                        paused,
                    });
                    hub.deliver_to(ConnectionId(participant.conn()), Arc::new(event))
                        .await;
                }
                SfuEvent::TrackQuality {
                    room,
                    participant,
                    track_id,
                    layers,
                } => {
                    let event = ServerEvent::TrackQuality(TrackQuality {
                        call_id: space_of(&room),
                        track_id: track_id.as_str().to_owned(),
                        layers: layers
                            .into_iter()
                            .map(|l| LayerQuality {
                                rid: l.rid,
                                active: l.active,
                            })
                            .collect(),
                    });
                    hub.deliver_to(ConnectionId(participant.conn()), Arc::new(event))
                        .await;
                }
                SfuEvent::DataRefused {
                    participant,
                    kind,
                    refusal,
                    ..
                } => {
                    let conn = ConnectionId(participant.conn());
                    let event = ServerEvent::Error(data_refused(kind, &refusal));
                    hub.deliver_to(conn, Arc::new(event)).await;
                }
                SfuEvent::FirstMediaForwarded { .. } | SfuEvent::RoomClosed { .. } => {}
            }
        }
    });
}

/// `room:speakers` for an SFU speaker change. A user with two connections that both speak is
/// listed once, at its higher place.
fn room_speakers(space: &CallId, speakers: &[(ParticipantKey, AudioLevel)]) -> RoomSpeakers {
    let mut listed: Vec<Speaker> = Vec::with_capacity(speakers.len());
    for (participant, level) in speakers {
        if listed
            .iter()
            .all(|s| s.user_id.as_str() != participant.user())
        {
            listed.push(Speaker {
                user_id: UserId::from(participant.user()),
                // Four decimals: the SFU's own resolution; avoids 0.10000000149 on the wire.
                level: (f64::from(level.linear()) * 10_000.0).round() / 10_000.0,
            });
        }
    }
    RoomSpeakers {
        call_id: space.clone(),
        speakers: listed,
    }
}

fn track_mids(tracks: &[(TrackId, String)]) -> Vec<(String, String)> {
    tracks
        .iter()
        .map(|(t, mid)| (t.as_str().to_owned(), mid.clone()))
        .collect()
}

fn keys(space: &CallId, conn: ConnectionId, user: &UserId) -> (RoomKey, ParticipantKey) {
    (
        RoomKey::new(space.as_str()),
        ParticipantKey::new(conn.0, user.as_str()),
    )
}

fn space_of(room: &RoomKey) -> CallId {
    CallId(room.as_str().to_owned())
}

fn track_event(space: &CallId, participant: &ParticipantKey, track: &TrackId) -> TrackEvent {
    TrackEvent {
        call_id: space.clone(),
        track_id: track.as_str().to_owned(),
        user_id: UserId::from(participant.user()),
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

/// A refused data channel message as the sender sees it: an `error` event whose `event` names
/// the channel (`chorus-reliable`, `chorus-lossy`, or `datachannel` when the channel itself
/// was refused).
fn data_refused(kind: Option<sfu::DataKind>, refusal: &sfu::DataRefusal) -> ErrorEvent {
    let (code, message) = match refusal {
        sfu::DataRefusal::NoGrant => (
            ErrorCode::Forbidden,
            "data channel message refused: the token lacks canPublishData".to_owned(),
        ),
        sfu::DataRefusal::TooLarge { limit } => (
            ErrorCode::LimitExceeded,
            format!("data channel message refused: larger than {limit} bytes"),
        ),
        sfu::DataRefusal::RateLimited => (
            ErrorCode::RateLimited,
            "data channel messages refused: over the per-participant rate".to_owned(),
        ),
        sfu::DataRefusal::Malformed => (
            ErrorCode::InvalidPayload,
            "data channel message refused: text that is not UTF-8".to_owned(),
        ),
        sfu::DataRefusal::UnknownChannel { label } => (
            ErrorCode::InvalidPayload,
            format!(
                "data channel `{label}` closed: only `{}` and `{}` (one each) are relayed",
                sfu::RELIABLE_LABEL,
                sfu::LOSSY_LABEL
            ),
        ),
    };
    ErrorEvent {
        code,
        message,
        event: Some(kind.map_or("datachannel", |k| k.label()).to_owned()),
        id: None,
        temp_id: None,
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
