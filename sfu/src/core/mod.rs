//! The sans-IO SFU core: rooms, participants (one str0m `Rtc` each, ICE-lite, RTP mode),
//! tracks, subscriptions and forwarding.
//!
//! Like str0m it takes time as input and does no I/O: feed it client commands,
//! [`Core::handle_receive`] for every datagram / TCP frame, and [`Core::handle_timeout`]
//! when [`Core::poll_timeout`] is due; then drain [`Core::poll_transmit`] and
//! [`Core::poll_event`]. Every public mutation drains each touched `Rtc` to `Timeout`
//! before returning, so the caller never sees half-processed state.
//!
//! Ownership: the core is owned by exactly one task (the driver behind [`crate::Sfu`]) and borrowed
//! `&mut`; there are no locks on the media path. Forwarding one packet is: publisher `Rtc`
//! emits `RtpPacket` → queued as work → for each open subscription: map PT, rebase
//! sequence number, `StreamTx::write_rtp` with the same `Arc` payload → drain subscriber.

mod adaptive;
pub mod allocator;
pub mod capture;
pub mod data;
pub mod dependency;
pub mod forward;
pub mod frame_size;
pub mod layers;
pub mod negotiation;
pub(crate) mod participant;
pub mod routing;
pub mod sdp_check;
pub mod selector;
pub mod shard;
pub mod speaker;
pub mod temporal;
pub mod throttle;
mod tracks;
pub mod video;
mod viewer;
pub use viewer::Viewed;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Input, Rtc};

use crate::error::Error;
use crate::event::{FailureReason, Muted, SfuEvent, Stats, TrackKind, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};
use crate::metrics::Metrics;
use crate::settings::{AutoSubscribe, CongestionControl, DataLimits, Grants, Limits};
use shard::Shard;

use layers::Layers;
use participant::{Outputs, Participant, Work};
use routing::{FiveTuple, Route, Router};
use speaker::SpeakerDetector;
use throttle::KeyframeThrottle;
use video::VideoCodec;

pub use negotiation::{OfferReply, ServerOffer};

/// Downlink estimate a subscriber starts with (bit/s) until TWCC feedback refines it: enough
/// for a middle layer and audio, not so much that a weak link is flooded at join.
const INITIAL_ESTIMATE: u64 = 1_000_000;

/// What the core needs from [`crate::Settings`], with resolved candidates.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Host candidates put in every SDP (UDP and/or passive TCP, bound ports).
    pub candidates: Vec<Candidate>,
    /// See [`crate::Settings::ice_timeout`].
    pub ice_timeout: Duration,
    /// See [`crate::Settings::keyframe_request_interval`].
    pub keyframe_request_interval: Duration,
    /// See [`crate::Settings::auto_subscribe`].
    pub auto_subscribe: AutoSubscribe,
    /// See [`crate::Settings::limits`].
    pub limits: Limits,
    /// See [`crate::Settings::congestion_control`].
    pub congestion_control: CongestionControl,
    /// See [`crate::Settings::nack_history`].
    pub nack_history: Duration,
    /// See [`crate::Settings::data`].
    pub data: DataLimits,
}

/// A room: who is in it, and who speaks. Lifecycle: created by the first `join`, removed
/// (with [`SfuEvent::RoomClosed`]) when the last participant is gone.
#[derive(Debug)]
struct Room {
    members: HashMap<ParticipantKey, SessionId>,
    speakers: SpeakerDetector,
}

/// A published track. Lifecycle: created when the publisher's offer adds a receiving
/// m-line, removed when the m-line stops or the publisher goes.
#[derive(Debug)]
struct Track {
    room: RoomKey,
    publisher: SessionId,
    publisher_key: ParticipantKey,
    mid: str0m::media::Mid,
    kind: TrackKind,
    source: TrackSource,
    muted: Muted,
    /// Muted by the server API: not forwarded, whatever its publisher toggles, until released.
    held: bool,
    /// Simulcast layers (one for a track without simulcast).
    layers: Layers,
    /// The video codec, once its first packet told it (`Some(None)`: not one the SFU can
    /// find keyframes in; every packet then counts as a switching point).
    codec: Option<Option<VideoCodec>>,
    /// One keyframe-request throttle per layer.
    throttles: Vec<KeyframeThrottle>,
    /// The last packet of a lower spatial layer, waiting to learn whether its picture ends
    /// there (see `Core::forward`).
    held_end: Option<tracks::HeldEnd>,
    pt_meanings: Vec<(str0m::media::Pt, forward::PtMeaning)>,
    /// Sessions holding a subscription (any state).
    subscribers: Vec<SessionId>,
}

/// Counters used per packet, resolved once (no label lookup on the hot path).
#[derive(Clone, Debug)]
struct Hot {
    unrouted: IntCounter,
    rejected: IntCounter,
    not_accepted: IntCounter,
    packets_in: IntCounter,
    packets_out: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    /// This worker's participants (`chorus_sfu_worker_participants{worker}`).
    worker_participants: IntGauge,
}

/// See the module docs.
///
/// Lifecycle: created empty by the driver at start; rooms and participants come and go
/// through `join`/`leave`/failures; [`Core::close_all`] at shutdown. Dropping it drops every
/// `Rtc` (no goodbye is sent then; call `close_all` first).
pub struct Core {
    config: CoreConfig,
    shard: Shard,
    /// One DTLS certificate for every `Rtc` of this core: generating a key pair per join
    /// cost tens of milliseconds of this thread's time (see ADR 0081). `None` only if the
    /// crypto provider could not make one; each `Rtc` then makes its own.
    dtls_cert: Option<DtlsCert>,
    metrics: Metrics,
    hot: Hot,
    rooms: HashMap<RoomKey, Room>,
    sessions: HashMap<SessionId, Participant>,
    tracks: HashMap<TrackId, Track>,
    router: Router,
    next_session: u64,
    /// Tracks this core has numbered (see [`Shard::track_number`]).
    next_track: u64,
    out: Outputs,
    events: VecDeque<SfuEvent>,
    /// Sessions whose subscriptions changed and may need a server offer.
    dirty: Vec<SessionId>,
    /// When layer allocation and dynacast next run (see `adaptive`); set by the first join.
    next_tick: Option<Instant>,
    /// This core's share of the subscription gauges, which every worker's core adds to.
    subscription_counts: adaptive::SubscriptionCounts,
}

impl Core {
    /// An empty core, the only one of its SFU.
    pub fn new(config: CoreConfig, metrics: Metrics) -> Self {
        Self::with_shard(config, metrics, Shard::solo())
    }

    /// An empty core holding `shard`'s share of the SFU (one per media worker).
    pub fn with_shard(config: CoreConfig, metrics: Metrics, shard: Shard) -> Self {
        let hot = Hot {
            unrouted: metrics.dropped.with_label_values(&["unrouted"]),
            rejected: metrics.dropped.with_label_values(&["rejected"]),
            not_accepted: metrics.dropped.with_label_values(&["not_accepted"]),
            packets_in: metrics.rtp_packets.with_label_values(&["in"]),
            packets_out: metrics.rtp_packets.with_label_values(&["out"]),
            bytes_in: metrics.rtp_bytes.with_label_values(&["in"]),
            bytes_out: metrics.rtp_bytes.with_label_values(&["out"]),
            worker_participants: metrics
                .worker_participants
                .with_label_values(&[&shard.index().to_string()]),
        };
        let dtls_cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate();
        Self {
            config,
            shard,
            dtls_cert,
            metrics,
            hot,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            tracks: HashMap::new(),
            router: Router::default(),
            next_session: 1,
            next_track: 0,
            out: Outputs::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            next_tick: None,
            subscription_counts: adaptive::SubscriptionCounts::default(),
        }
    }

    /// Adds a participant to a room (creating the room). `started` is when the user
    /// started joining (for the join-time histogram). Media starts with its first offer.
    pub fn join(
        &mut self,
        now: Instant,
        room: RoomKey,
        participant: ParticipantKey,
        grants: Grants,
        started: Instant,
    ) -> Result<(), Error> {
        let limits = &self.config.limits;
        match self.rooms.get(&room) {
            Some(r) if r.members.contains_key(&participant) => {
                return Err(Error::AlreadyJoined(participant));
            }
            Some(r) if r.members.len() >= limits.max_participants_per_room => {
                return Err(Error::RoomFull {
                    limit: limits.max_participants_per_room,
                });
            }
            Some(_) => {}
            // Taken last, so that nothing after it can fail and leave the budget short.
            None if !self.shard.take_room(limits.max_rooms) => {
                return Err(Error::TooManyRooms {
                    limit: limits.max_rooms,
                });
            }
            None => {}
        }

        let estimate = match self.config.congestion_control {
            CongestionControl::Enabled => Some(str0m::bwe::Bitrate::bps(INITIAL_ESTIMATE)),
            CongestionControl::Disabled => None,
        };
        let mut builder = Rtc::builder();
        if let Some(cert) = &self.dtls_cert {
            builder = builder.set_dtls_cert(cert.clone());
        }
        let mut rtc = builder
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_vp9(true)
            .enable_h264(true)
            .enable_av1(true)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .enable_bwe(estimate)
            .set_sctp_max_buffered_amount(self.config.data.max_buffered_bytes)
            .set_extension(dependency::ID, dependency::extension())
            .build(now);
        for c in &self.config.candidates {
            rtc.add_local_candidate(c.clone());
        }
        let id = SessionId(self.next_session);
        self.next_session += 1;
        self.next_tick.get_or_insert(now + adaptive::TICK);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        self.router.add_ufrag(ufrag, id);

        let mut p = Participant {
            id,
            key: participant.clone(),
            room: room.clone(),
            grants,
            rtc,
            published: HashMap::new(),
            source_hints: HashMap::new(),
            msids: HashMap::new(),
            subs: Vec::new(),
            pending: None,
            negotiated: false,
            next_timeout: now,
            last_rx: now,
            join_started: started,
            media_forwarded: false,
            ssrc_mid: HashMap::new(),
            egress_nacks: HashMap::new(),
            viewing: None,
            estimate: None,
            link_use: Default::default(),
            allocator: Default::default(),
            bandwidth_wish: (0, 0),
            capture: Default::default(),
            receive_cap: None,
            data: data::DataState::new(&self.config.data, now),
        };
        p.drain(now, &mut self.out);

        let (room_key, participant_key) = (room.clone(), participant.clone());
        let r = self.rooms.entry(room).or_insert_with(|| Room {
            members: HashMap::new(),
            speakers: SpeakerDetector::new(now),
        });
        if r.members.is_empty() {
            self.metrics.rooms.inc();
        }
        r.members.insert(participant, id);
        self.sessions.insert(id, p);
        self.metrics.participants.inc();
        self.hot.worker_participants.inc();
        tracing::debug!(%room_key, %participant_key, "sfu participant joined");

        if grants.can_subscribe && self.config.auto_subscribe == AutoSubscribe::All {
            let existing: Vec<TrackId> = self
                .tracks
                .iter()
                .filter(|(_, t)| t.room == self.sessions[&id].room)
                .map(|(k, _)| k.clone())
                .collect();
            for t in existing {
                self.add_subscription(id, &t);
            }
        }
        self.settle(now);
        Ok(())
    }

    /// Removes a participant (DTLS close is sent to it). Its tracks are unpublished.
    pub fn leave(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        self.remove_session(now, id, None);
        self.settle(now);
        Ok(())
    }

    /// Removes every participant of a room (the call or room ended).
    pub fn close_room(&mut self, now: Instant, room: &RoomKey) -> Result<(), Error> {
        let r = self
            .rooms
            .get(room)
            .ok_or_else(|| Error::UnknownRoom(room.clone()))?;
        let ids: Vec<SessionId> = r.members.values().copied().collect();
        for id in ids {
            self.remove_session(now, id, None);
        }
        self.settle(now);
        Ok(())
    }

    /// Removes every participant of every room (shutdown): each peer gets a DTLS close.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.remove_session(now, id, None);
        }
        self.settle(now);
    }

    /// Adds a trickled remote ICE candidate (`candidate:...` line, with or without the
    /// `a=` prefix). Optional: the server is ICE-lite and learns peer addresses from
    /// their connectivity checks, so candidates in the SDP or none at all both work.
    pub fn add_remote_candidate(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        candidate: &str,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if line.is_empty() || line == "end-of-candidates" {
            // End-of-candidates marker (browsers send an empty candidate string).
            return Ok(());
        }
        let c = Candidate::from_sdp_string(line).map_err(|e| Error::BadCandidate(e.to_string()))?;
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        p.rtc.add_remote_candidate(c);
        p.drain(now, &mut self.out);
        self.settle(now);
        Ok(())
    }

    /// An offer from a participant that may not be in the room yet: it joins first, as
    /// [`Core::join`] would. Signaling seats a connection on its first offer this way, so there
    /// is no separate join step whose order against a leave could be lost. A participant that
    /// this call joined is removed again when its offer is refused.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_joining(
        &mut self,
        now: Instant,
        room: RoomKey,
        participant: ParticipantKey,
        grants: Grants,
        started: Instant,
        sdp: &str,
    ) -> Result<OfferReply, Error> {
        let present = self
            .rooms
            .get(&room)
            .is_some_and(|r| r.members.contains_key(&participant));
        if !present {
            self.join(now, room.clone(), participant.clone(), grants, started)?;
        }
        let reply = self.offer(now, &room, &participant, sdp, &[]);
        if reply.is_err() && !present {
            let _ = self.leave(now, &room, &participant);
        }
        reply
    }

    /// Records a mute change and announces it with [`SfuEvent::TrackMuted`].
    pub fn set_track_muted(
        &mut self,
        room: &RoomKey,
        participant: &ParticipantKey,
        track: &TrackId,
        muted: Muted,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        if self.tracks.get(track).is_none_or(|t| t.publisher != id) {
            return Err(Error::UnknownTrack(track.clone()));
        }
        self.mute_tracks(room, participant, muted, |t, tid| {
            tid == track && t.publisher == id
        });
        Ok(())
    }

    /// The server API mutes (`held`) or unmutes a track of `user` in `room`: a held track is
    /// not forwarded, and is announced muted ([`SfuEvent::TrackMuted`]); its publisher's own
    /// toggles do not release it. On release a video track's subscribers get a keyframe.
    pub fn set_track_held(
        &mut self,
        now: Instant,
        room: &RoomKey,
        user: &str,
        track: &TrackId,
        held: bool,
    ) -> Result<(), Error> {
        let Some(t) = self
            .tracks
            .get_mut(track)
            .filter(|t| &t.room == room && t.publisher_key.user() == user)
        else {
            return Err(Error::UnknownTrack(track.clone()));
        };
        t.held = held;
        let publisher = t.publisher_key.clone();
        let subscribers = t.subscribers.clone();
        let muted = if held { Muted::Yes } else { Muted::No };
        self.mute_tracks(room, &publisher, muted, |_, tid| tid == track);
        // A held video track is paused for every subscriber; released, each gets it back
        // from a keyframe (the allocation asks for one).
        for session in subscribers {
            self.out.work.push_back(Work::Reallocate { session });
        }
        self.settle(now);
        Ok(())
    }

    /// Records a mute change of every track `participant` publishes from `source` (a
    /// `call:media-toggle` names a kind of media, not a track).
    pub fn set_source_muted(
        &mut self,
        room: &RoomKey,
        participant: &ParticipantKey,
        source: TrackSource,
        muted: Muted,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        // A track the server API muted stays muted whatever its publisher toggles.
        self.mute_tracks(room, participant, muted, |t, _| {
            t.publisher == id && t.source == source && !t.held
        });
        Ok(())
    }

    /// Sets `muted` on the tracks `which` picks and announces each that changed, in track order.
    fn mute_tracks(
        &mut self,
        room: &RoomKey,
        participant: &ParticipantKey,
        muted: Muted,
        which: impl Fn(&Track, &TrackId) -> bool,
    ) {
        let mut changed: Vec<TrackId> = self
            .tracks
            .iter_mut()
            .filter(|(tid, t)| t.muted != muted && which(t, tid))
            .map(|(tid, t)| {
                t.muted = muted;
                tid.clone()
            })
            .collect();
        changed.sort();
        let microphone = changed.iter().any(|tid| {
            self.tracks
                .get(tid)
                .is_some_and(|t| t.source == TrackSource::Microphone)
        });
        if muted == Muted::Yes && microphone {
            self.silence(room, participant);
        }
        for track_id in changed {
            self.events.push_back(SfuEvent::TrackMuted {
                room: room.clone(),
                participant: participant.clone(),
                track_id,
                muted,
            });
        }
    }

    /// Starts receiving `track` (a no-op if already subscribed).
    pub fn subscribe(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        track: &TrackId,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        if !self.sessions[&id].grants.can_subscribe {
            return Err(Error::NotAllowed("can_subscribe"));
        }
        match self.tracks.get(track) {
            Some(t) if &t.room == room && t.publisher != id => {}
            _ => return Err(Error::UnknownTrack(track.clone())),
        }
        self.add_subscription(id, track);
        self.settle(now);
        Ok(())
    }

    /// Stops receiving `track` (a no-op if not subscribed).
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        track: &TrackId,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        if self.tracks.get(track).is_none_or(|t| &t.room != room) {
            return Err(Error::UnknownTrack(track.clone()));
        }
        self.drop_subscription(id, track);
        self.settle(now);
        Ok(())
    }

    /// Feeds one datagram (UDP) or one RFC 4571 frame (TCP). `local` is our address as
    /// advertised in the candidates.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        let tuple = FiveTuple {
            proto,
            remote,
            local,
        };
        let (id, learn) = match self.router.route(&tuple, data) {
            Route::Ufrag(id) => (id, true),
            Route::Tuple(id) => (id, false),
            Route::Unknown => {
                self.hot.unrouted.inc();
                return;
            }
        };
        let Some(p) = self.sessions.get_mut(&id) else {
            return;
        };
        let Ok(receive) = Receive::new(proto, remote, local, data) else {
            self.metrics.dropped.with_label_values(&["malformed"]).inc();
            return;
        };
        let input = Input::Receive(now, receive);
        if !p.rtc.accepts(&input) {
            self.hot.not_accepted.inc();
            return;
        }
        if learn {
            self.router.learn(tuple, id);
        }
        p.last_rx = now;
        if !learn && routing::is_media(data) {
            self.router.media_on(&tuple, id);
        }
        let result = p.rtc.handle_input(input);
        match result {
            Ok(()) => p.drain(now, &mut self.out),
            // A bad packet is the sender's problem, not a reason to drop the session: anyone
            // who can spoof the peer's address could otherwise kick it out.
            Err(_) if p.rtc.is_alive() => {
                self.hot.rejected.inc();
                p.drain(now, &mut self.out);
            }
            Err(e) => self.out.work.push_back(Work::Fail {
                session: id,
                reason: FailureReason::Rtc(e.to_string()),
            }),
        }
        self.settle(now);
    }

    /// Advances time: `Rtc` timers, deferred keyframe requests and ICE timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ice_timeout = self.config.ice_timeout;
        let mut failed = Vec::new();
        for p in self.sessions.values_mut() {
            if now >= p.last_rx + ice_timeout {
                failed.push(p.id);
                continue;
            }
            if now >= p.next_timeout {
                match p.rtc.handle_input(Input::Timeout(now)) {
                    Ok(()) => p.drain(now, &mut self.out),
                    Err(e) => self.out.work.push_back(Work::Fail {
                        session: p.id,
                        reason: FailureReason::Rtc(e.to_string()),
                    }),
                }
            }
        }
        for id in failed {
            self.metrics.ice_failures.inc();
            self.remove_session(now, id, Some(FailureReason::IceTimeout));
        }
        let mut due: Vec<(
            TrackId,
            layers::LayerIndex,
            str0m::media::KeyframeRequestKind,
        )> = Vec::new();
        for (id, t) in self.tracks.iter_mut() {
            for (layer, throttle) in t.throttles.iter_mut().enumerate() {
                if let Some(k) = throttle.poll(now) {
                    due.push((id.clone(), layer as layers::LayerIndex, k));
                }
            }
        }
        for (track, layer, kind) in due {
            self.send_keyframe_request(now, &track, layer, kind);
        }
        self.release_held_ends(now);
        if self.next_tick.is_some_and(|t| now >= t) {
            self.tick(now);
        }
        let rooms: Vec<RoomKey> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.speakers.poll_timeout().is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for room in rooms {
            let change = self
                .rooms
                .get_mut(&room)
                .and_then(|r| r.speakers.handle_timeout(now));
            self.announce_speakers(room, change);
        }
        self.settle(now);
    }

    /// A TCP connection closed: forget the routes through it.
    pub fn connection_closed(&mut self, proto: Protocol, remote: SocketAddr) {
        self.router.forget_remote(proto, remote);
    }

    /// Next packet to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// Next event for the signaling layer.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ice_timeout = self.config.ice_timeout;
        let sessions = self
            .sessions
            .values()
            .map(|p| p.next_timeout.min(p.last_rx + ice_timeout));
        let throttles = self
            .tracks
            .values()
            .flat_map(|t| t.throttles.iter().filter_map(|k| k.deadline()));
        let held = self
            .tracks
            .values()
            .filter_map(|t| t.held_end.as_ref().map(|h| h.until));
        let tick = self.next_tick.filter(|_| !self.sessions.is_empty());
        let speakers = self
            .rooms
            .values()
            .filter_map(|r| r.speakers.poll_timeout());
        sessions
            .chain(throttles)
            .chain(held)
            .chain(tick)
            .chain(speakers)
            .min()
    }

    /// Whether a participant of this core has `ufrag` as its server ICE ufrag: how a new
    /// ICE-TCP connection, which all workers share, finds the worker that owns it.
    pub fn owns_ufrag(&self, ufrag: &str) -> bool {
        self.router.has_ufrag(ufrag)
    }

    /// What the core holds right now.
    pub fn stats(&self) -> Stats {
        Stats {
            rooms: self.rooms.len(),
            participants: self.sessions.len(),
            tracks: self.tracks.len(),
            subscriptions: self.sessions.values().map(|p| p.subs.len()).sum(),
            routes: self.router.len(),
        }
    }

    /// The tracks of a room: (track, publisher, kind, source, mid, muted). For the
    /// `room:join` ack.
    pub fn room_tracks(&self, room: &RoomKey) -> Vec<TrackInfo> {
        let mut v: Vec<TrackInfo> = self
            .tracks
            .iter()
            .filter(|(_, t)| &t.room == room)
            .map(|(id, t)| TrackInfo {
                track_id: id.clone(),
                participant: t.publisher_key.clone(),
                kind: t.kind,
                source: t.source,
                mid: t.mid.to_string(),
                muted: t.muted,
            })
            .collect();
        v.sort_by(|a, b| a.track_id.cmp(&b.track_id));
        v
    }

    fn session_id(&self, room: &RoomKey, participant: &ParticipantKey) -> Result<SessionId, Error> {
        let r = self
            .rooms
            .get(room)
            .ok_or_else(|| Error::UnknownRoom(room.clone()))?;
        r.members
            .get(participant)
            .copied()
            .ok_or_else(|| Error::UnknownParticipant {
                room: room.clone(),
                participant: participant.clone(),
            })
    }

    /// Processes queued work until none is left, then sends server offers where
    /// subscriptions changed. Called at the end of every public mutation.
    fn settle(&mut self, now: Instant) {
        loop {
            while let Some(w) = self.out.work.pop_front() {
                self.process(now, w);
            }
            for bps in self.out.estimates.drain(..) {
                self.metrics.bandwidth_estimate.observe(bps as f64);
            }
            if self.out.nacks > 0 {
                self.metrics
                    .nacks
                    .inc_by(std::mem::take(&mut self.out.nacks));
            }
            self.out
                .received
                .flush(&self.hot.packets_in, &self.hot.bytes_in);
            self.out
                .forwarded
                .flush(&self.hot.packets_out, &self.hot.bytes_out);
            if self.dirty.is_empty() {
                break;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for id in dirty {
                if let Some(offer) = self.negotiate(now, id) {
                    self.events.push_back(SfuEvent::Offer {
                        room: offer.room,
                        participant: offer.participant,
                        sdp: offer.sdp,
                        tracks: offer.tracks,
                    });
                }
            }
            if self.out.work.is_empty() {
                break;
            }
        }
    }

    fn process(&mut self, now: Instant, w: Work) {
        match w {
            Work::Forward { track, packet } => {
                if let Some(level) = packet.ext.audio_level {
                    self.hear(now, &track, level);
                }
                self.forward(now, &track, packet)
            }
            Work::Keyframe { track, layer, kind } => {
                self.keyframe_request(now, &track, layer.unwrap_or(0), kind)
            }
            Work::Publish { session, mid, kind } => self.publish(session, mid, kind),
            Work::Unpublish { track } => self.unpublish(&track),
            Work::Connected { session } => {
                if let Some(p) = self.sessions.get(&session) {
                    self.events.push_back(SfuEvent::Connected {
                        room: p.room.clone(),
                        participant: p.key.clone(),
                    });
                }
            }
            Work::Reallocate { session } => {
                self.reallocate(now, session);
                self.dynacast(now);
            }
            Work::Data(work) => self.data_work(now, work),
            Work::Fail { session, reason } => {
                if self.sessions.contains_key(&session) {
                    if let FailureReason::Rtc(_) = reason {
                        self.metrics.rtc_failures.inc();
                    }
                    self.remove_session(now, session, Some(reason));
                }
            }
        }
    }

    /// Removes a session and everything that hangs off it.
    fn remove_session(&mut self, now: Instant, id: SessionId, failure: Option<FailureReason>) {
        let Some(mut p) = self.sessions.remove(&id) else {
            return;
        };
        if self.sessions.is_empty() {
            self.count_subscriptions();
        }
        match &failure {
            Some(reason) => {
                tracing::info!(room = %p.room, participant = %p.key, ?reason, "sfu participant failed")
            }
            None => tracing::debug!(room = %p.room, participant = %p.key, "sfu participant left"),
        }
        self.metrics.participants.dec();
        self.hot.worker_participants.dec();
        // Tell the peer we are gone (DTLS close_notify), best effort.
        let _ = p.rtc.close();
        let mut scratch = Outputs::default();
        p.drain(now, &mut scratch);
        self.out.transmits.extend(scratch.transmits);

        let published: Vec<TrackId> = p.published.values().cloned().collect();
        for t in published {
            self.unpublish(&t);
        }
        for s in &p.subs {
            if let Some(t) = self.tracks.get_mut(&s.track) {
                t.subscribers.retain(|x| *x != id);
            }
        }
        self.router.remove(id);
        self.dirty.retain(|x| *x != id);
        if let Some(reason) = failure {
            self.events.push_back(SfuEvent::ParticipantFailed {
                room: p.room.clone(),
                participant: p.key.clone(),
                reason,
            });
        }
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.members.remove(&p.key);
            r.speakers.forget(&p.key);
            if r.members.is_empty() {
                self.rooms.remove(&p.room);
                self.shard.release_room();
                self.metrics.rooms.dec();
                self.events.push_back(SfuEvent::RoomClosed {
                    room: p.room.clone(),
                });
            }
        }
    }
}

/// A published track as listed by [`Core::room_tracks`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id.
    pub track_id: TrackId,
    /// Publisher.
    pub participant: ParticipantKey,
    /// Audio or video.
    pub kind: TrackKind,
    /// Camera, microphone, screen…
    pub source: TrackSource,
    /// Publisher's mid.
    pub mid: String,
    /// Mute state.
    pub muted: Muted,
}

#[cfg(test)]
mod tests;
