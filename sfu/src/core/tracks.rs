//! Publishing, subscribing, forwarding and keyframe requests (the parts of the core that
//! touch more than one participant).

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::CodecConfig;
use str0m::media::{KeyframeRequestKind, Mid, Pt, Rid, Rids};
use str0m::rtp::StreamTx;

use crate::event::{LayerInfo, Muted, SfuEvent, TrackKind, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};
use crate::settings::AutoSubscribe;

use super::dependency::DependencyDescriptor;
use super::forward::{Payload, PtMapping, PtMeaning, red_primary};
use super::frame_size::vp9_spatial_sizes;
use super::layers::{LayerIndex, Layers, Scheme};
use super::participant::{Forwarded, NackHistory, SubState, Subscription, Work};
use super::selector::Verdict;
use super::temporal::{FrameRate, LayerSync};
use super::throttle::{Decision, KeyframeThrottle};
use super::video::{
    NumberedPicture, SpatialPlace, VideoCodec, Vp8Descriptor, Vp9Descriptor, keyframe_size,
    starts_keyframe,
};
use super::{Core, Track};

/// Longest wait for the packet after a held one (see [`Core::forward`]): a few frame times.
pub(super) const PICTURE_END_WAIT: Duration = Duration::from_millis(100);

/// A lower spatial layer's last packet, held until the stream tells whether its picture
/// ends there (see [`Core::forward`]).
#[derive(Debug)]
pub(super) struct HeldEnd {
    pkt: Forwarded,
    /// When it goes out anyway.
    pub(super) until: Instant,
}

/// Whether a packet ends its picture whatever its marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PictureEnd {
    /// Not known yet: a lower spatial layer's unmarked last packet waits to learn it.
    Unknown,
    /// Its marker (or the subscriber's layer) says.
    AsMarked,
    /// The picture ended with it: the next packet is another picture's.
    Here,
}

impl Core {
    /// The publisher's offer added a receiving m-line: create the track and subscribe
    /// the others.
    pub(super) fn publish(&mut self, session: SessionId, mid: Mid, kind: TrackKind) {
        let max_tracks = self.config.limits.max_tracks_per_participant;
        let Some(p) = self.sessions.get_mut(&session) else {
            return;
        };
        if !p.grants.can_publish || p.published.contains_key(&mid) {
            return;
        }
        if p.published.len() >= max_tracks {
            // `offer` rejects such offers up front; this only guards re-offers that add
            // m-lines str0m reports later.
            return;
        }
        let source = p
            .source_hints
            .get(&*mid)
            .copied()
            .unwrap_or_else(|| infer_source(kind, p.msids.get(&*mid).map(String::as_str)));
        let id = TrackId::new(format!("TR_{}", self.shard.track_number(self.next_track)));
        self.next_track += 1;
        p.published.insert(mid, id.clone());
        let rids: Vec<Rid> = match p.rtc.media(mid).map(|m| m.rids_rx()) {
            Some(Rids::Specific(r)) if kind == TrackKind::Video => r.clone(),
            _ => Vec::new(),
        };
        let layers = Layers::new(&rids);
        let throttles = (0..layers.len())
            .map(|_| KeyframeThrottle::new(self.config.keyframe_request_interval))
            .collect();
        let (room, publisher_key) = (p.room.clone(), p.key.clone());

        self.metrics.track_gauge(kind, source).inc();
        self.events.push_back(SfuEvent::TrackPublished {
            room: room.clone(),
            participant: publisher_key.clone(),
            track_id: id.clone(),
            kind,
            source,
            mid: mid.to_string(),
            muted: Muted::No,
        });
        self.tracks.insert(
            id.clone(),
            Track {
                room: room.clone(),
                publisher: session,
                publisher_key,
                mid,
                kind,
                source,
                muted: Muted::No,
                held: false,
                layers,
                codec: None,
                throttles,
                held_end: None,
                pt_meanings: Vec::new(),
                subscribers: Vec::new(),
            },
        );
        if self.config.auto_subscribe == AutoSubscribe::All {
            let others: Vec<SessionId> = self.rooms[&room]
                .members
                .values()
                .copied()
                .filter(|s| *s != session && self.sessions[s].grants.can_subscribe)
                .collect();
            for s in others {
                self.add_subscription(s, &id);
            }
        }
        let viewers: Vec<SessionId> = self.rooms[&room]
            .members
            .values()
            .copied()
            .filter(|s| self.sessions[s].viewing.is_some())
            .collect();
        for v in viewers {
            self.bind_viewer(v);
        }
    }

    /// The track is gone: stop it at every subscriber.
    pub(super) fn unpublish(&mut self, track: &TrackId) {
        let Some(t) = self.tracks.remove(track) else {
            return;
        };
        self.metrics.track_gauge(t.kind, t.source).dec();
        if let Some(p) = self.sessions.get_mut(&t.publisher) {
            p.published.remove(&t.mid);
        }
        for s in &t.subscribers {
            self.stop_subscription(*s, track);
        }
        self.events.push_back(SfuEvent::TrackUnpublished {
            room: t.room,
            participant: t.publisher_key,
            track_id: track.clone(),
        });
    }

    pub(super) fn add_subscription(&mut self, session: SessionId, track: &TrackId) {
        let (Some(p), Some(t)) = (self.sessions.get_mut(&session), self.tracks.get_mut(track))
        else {
            return;
        };
        if let Some(s) = p.sub_mut(track) {
            // Re-subscribing while a stop is queued but not yet offered: keep the m-line.
            if let SubState::ToStop(m) = s.state {
                s.state = SubState::Open(m);
                if !t.subscribers.contains(&session) {
                    t.subscribers.push(session);
                }
            }
            return;
        }
        p.subs.push(Subscription::new(
            track.clone(),
            t.kind,
            t.publisher_key.clone(),
            SubState::ToOpen,
        ));
        t.subscribers.push(session);
        self.dirty.push(session);
    }

    pub(super) fn drop_subscription(&mut self, session: SessionId, track: &TrackId) {
        if let Some(t) = self.tracks.get_mut(track) {
            t.subscribers.retain(|s| *s != session);
        }
        self.stop_subscription(session, track);
    }

    /// Moves a subscription towards stopped (the m-line is stopped in the next offer).
    fn stop_subscription(&mut self, session: SessionId, track: &TrackId) {
        let Some(p) = self.sessions.get_mut(&session) else {
            return;
        };
        let Some(idx) = p.subs.iter().position(|s| &s.track == track) else {
            return;
        };
        if p.viewing.is_some() {
            // A viewer is never made an offer: its m-line just goes quiet, free for the
            // publisher's next track of that kind.
            p.subs.remove(idx);
            return;
        }
        match p.subs[idx].state {
            SubState::ToOpen => {
                p.subs.remove(idx);
            }
            SubState::Negotiating(m) | SubState::Open(m) => {
                p.subs[idx].state = SubState::ToStop(m);
                self.dirty.push(session);
            }
            SubState::ToStop(_) | SubState::NegotiatingStop(_) => {}
        }
    }

    /// Writes one publisher packet to every open subscription of the track: audio to all,
    /// video to those whose selected layer it belongs to (see `selector`).
    ///
    /// On a track with spatial layers, the last packet of a layer below the top that does
    /// not end the picture (no marker) is held until the next packet of the stream: an
    /// encoder short of time or bits may skip the higher layers' frames of a picture, and
    /// then nothing marks the end of that picture. A receiver (Chromium) never decodes a
    /// picture whose end is not marked, nor anything that refers to it, until a keyframe.
    /// The next packet tells: another timestamp means the picture ended with the held
    /// packet, which goes out with the marker. The wait is the time to the next packet,
    /// normally the higher layer's right behind it, and at most [`PICTURE_END_WAIT`].
    pub(super) fn forward(&mut self, now: Instant, track_id: &TrackId, pkt: Forwarded) {
        self.forward_as(now, track_id, pkt, PictureEnd::Unknown);
    }

    /// Forwards the held packets whose wait is over, as ending their pictures: nothing
    /// followed them.
    pub(super) fn release_held_ends(&mut self, now: Instant) {
        let due: Vec<TrackId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.held_end.as_ref().is_some_and(|h| h.until <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(held) = self.tracks.get_mut(&id).and_then(|t| t.held_end.take()) {
                self.forward_as(now, &id, held.pkt, PictureEnd::Here);
            }
        }
    }

    /// [`Core::forward`] of one packet, knowing whether it ends its picture (`end`).
    fn forward_as(&mut self, now: Instant, track_id: &TrackId, pkt: Forwarded, end: PictureEnd) {
        let Some(track) = self.tracks.get_mut(track_id) else {
            return;
        };
        // The packet after a held one tells whether the held one ended its picture; a late
        // packet says nothing about what follows it.
        if let Some(held) = track.held_end.take_if(|h| *h.pkt.seq_no <= *pkt.seq_no) {
            let held_end = if held.pkt.time == pkt.time {
                PictureEnd::AsMarked
            } else {
                PictureEnd::Here
            };
            self.forward_as(now, track_id, held.pkt, held_end);
            self.forward_as(now, track_id, pkt, end);
            return;
        }
        if track.held {
            return;
        }
        let meaning = match track.pt_meanings.iter().find(|(pt, _)| *pt == pkt.pt) {
            Some((_, m)) => *m,
            None => {
                let Some(publisher) = self.sessions.get(&track.publisher) else {
                    return;
                };
                let m = pt_meaning(publisher.rtc.codec_config(), pkt.pt);
                track.pt_meanings.push((pkt.pt, m));
                m
            }
        };
        let params = match meaning {
            PtMeaning::Primary(p) | PtMeaning::Red(p) => p,
            PtMeaning::Unknown => {
                self.metrics
                    .dropped
                    .with_label_values(&["unknown_pt"])
                    .inc();
                return;
            }
        };
        let video = track.kind == TrackKind::Video;
        let mut layer = 0;
        let mut keyframe = false;
        let mut vp8 = None;
        let mut vp9 = None;
        // The packet's place among spatial layers, on a track that has them.
        let mut spatial = None;
        // The temporal layer, switch points and start of frame of a packet whose codec's
        // own descriptor the SFU does not read, from its dependency descriptor.
        let mut described: Option<(u8, LayerSync, bool)> = None;
        // The packet's temporal layer, what it marks, and whether it starts a picture: what
        // the subscribers' frame rates are applied by (`temporal`).
        let mut thinnable: Option<(Option<(u8, LayerSync)>, bool)> = None;
        if video {
            let Some(l) = track.layers.index_of(pkt.rid) else {
                self.metrics
                    .dropped
                    .with_label_values(&["unknown_rid"])
                    .inc();
                return;
            };
            layer = l;
            let codec = *track
                .codec
                .get_or_insert_with(|| VideoCodec::of(params.spec().codec));
            keyframe = codec.is_none_or(|c| starts_keyframe(c, &pkt.payload));
            match codec {
                Some(VideoCodec::Vp8) => vp8 = Vp8Descriptor::parse(&pkt.payload),
                // Simulcast layers are separate encoders with unrelated picture ids; one VP9
                // stream's (spatial layers, or none) keep theirs across a pause, where a gap
                // before a keyframe is harmless, and are not copied to move them.
                Some(VideoCodec::Vp9) if track.layers.scheme() == Scheme::Simulcast => {
                    vp9 = Vp9Descriptor::parse(&pkt.payload)
                }
                _ => {}
            }
            let mut size = codec
                .filter(|_| keyframe)
                .and_then(|c| keyframe_size(c, &pkt.payload));
            if codec == Some(VideoCodec::Vp9) && track.layers.scheme() != Scheme::Simulcast {
                if keyframe && let Some((sizes, n)) = vp9_spatial_sizes(&pkt.payload) {
                    track.layers.spatial(&sizes[..n]);
                }
                if track.layers.scheme() == Scheme::Spatial {
                    spatial = SpatialPlace::vp9(&pkt.payload);
                }
            }
            // AV1's spatial layers are told only by the dependency descriptor's templates.
            if codec == Some(VideoCodec::Av1)
                && track.layers.scheme() != Scheme::Simulcast
                && let Some(dd) = DependencyDescriptor::of(&pkt.ext)
            {
                spatial = track.layers.described_spatial(dd, size);
            }
            if track.layers.scheme() == Scheme::Spatial {
                // Sizes are the structure's, one per layer.
                size = None;
                let top = (track.layers.len() - 1) as LayerIndex;
                layer = spatial.map_or(0, |v| v.spatial.min(top));
                let ends_lower_layer = spatial.is_some_and(|v| v.layer_end && v.spatial < top);
                if end == PictureEnd::Unknown
                    && ends_lower_layer
                    && !pkt.marker
                    && track.held_end.is_none()
                {
                    track.held_end = Some(HeldEnd {
                        pkt,
                        until: now + PICTURE_END_WAIT,
                    });
                    return;
                }
            }
            // The dependency descriptor's templates tell a frame's temporal layer and its
            // switch points: for VP8 where its own descriptor does not (Chromium), and for
            // codecs without a descriptor the SFU reads (AV1, H.264), with the descriptor's
            // start of frame.
            if codec != Some(VideoCodec::Vp9)
                && track.layers.scheme() != Scheme::Spatial
                && let Some(dd) = DependencyDescriptor::of(&pkt.ext)
            {
                described = track
                    .layers
                    .temporal_of(layer, dd)
                    .map(|(tid, sync)| (tid, sync, dd.frame_start()));
            }
            let marked = |on: bool, sync| if on { sync } else { LayerSync::Unmarked };
            thinnable = match (&vp8, &vp9) {
                (Some(d), _) => {
                    let own = d
                        .temporal
                        .map(|(tid, y)| (tid, marked(y, LayerSync::BaseOnly)));
                    let temporal = own.or(described.map(|(tid, sync, _)| (tid, sync)));
                    Some((temporal, d.picture_start))
                }
                (_, Some(d)) => {
                    let sync = marked(d.up_switch, LayerSync::UpSwitch);
                    Some((d.temporal.map(|tid| (tid, sync)), d.frame_start))
                }
                _ => described.map(|(tid, sync, start)| (Some((tid, sync)), start)),
            };
            if let Some((Some((_, sync)), true)) = thinnable {
                track.layers.note_sync(layer, sync, pkt.arrival);
            }
            if let Some(d) = vp8.as_mut()
                && d.temporal.is_none()
            {
                d.temporal = described.map(|(tid, _, _)| (tid, false));
            }
            track.layers.observe(
                layer,
                pkt.arrival,
                pkt.payload.len(),
                size,
                vp8.and_then(|d| d.temporal)
                    .map(|(tid, _)| tid)
                    .or(vp9.and_then(|d| d.temporal))
                    .or(described.map(|(tid, _, _)| tid)),
                pkt.marker,
            );
        } else {
            track
                .layers
                .observe(0, pkt.arrival, pkt.payload.len(), None, None, pkt.marker);
        }
        let clock_rate = params.spec().clock_rate.get();
        // The primary block of a RED packet, cut out once for every subscriber without RED.
        let mut red_stripped: Option<Option<Arc<[u8]>>> = None;
        for sid in &track.subscribers {
            let Some(sub) = self.sessions.get_mut(sid) else {
                continue;
            };
            let Some(s) = sub.subs.iter_mut().find(|s| &s.track == track_id) else {
                continue;
            };
            let SubState::Open(mid) = s.state else {
                continue;
            };
            // `track:layer`: what the subscriber now receives.
            let announce = |s: &Subscription| {
                layer_changed(
                    (&sub.room, &sub.key),
                    track_id,
                    &track.layers,
                    s.selector.current().unwrap_or(layer),
                    s.temporal.current(),
                    now,
                )
            };
            let mut switched = false;
            if video {
                let verdict = match spatial {
                    Some(v) => s.selector.admit_spatial(layer, keyframe, v.picture_start),
                    None => s.selector.admit(layer, keyframe),
                };
                match verdict {
                    Verdict::Forward => {}
                    // Same stream, same timestamps: only the layers forwarded changed.
                    Verdict::Shift => switched = true,
                    Verdict::Switch => {
                        s.stream.take_new_source();
                        s.seq.resync();
                        s.stream.resync(
                            pkt.time,
                            pkt.capture,
                            clock_rate,
                            vp8.map(|d| d.numbers()).or(vp9.map(|d| d.numbers())),
                            DependencyDescriptor::of(&pkt.ext),
                        );
                        switched = true;
                    }
                    Verdict::Drop => {
                        if spatial.is_some() {
                            // Left out of a stream that goes on: no gap for the subscriber.
                            s.seq.skip(pkt.ssrc, pkt.seq_no);
                        }
                        if s.congested {
                            self.metrics
                                .dropped
                                .with_label_values(&["congestion"])
                                .inc();
                        }
                        continue;
                    }
                }
                // A frame above the subscriber's frame rate: left out of a stream that goes
                // on, so the sequence numbers after it close up, and VP8's picture ids. A VP9
                // receiver infers a frame's references from the picture ids (the scalability
                // structure gives them as differences), so VP9's keep their gaps, as do the
                // dependency descriptor's frame numbers.
                if let Some((temporal, start)) = thinnable {
                    let rate = s.temporal.current();
                    let admitted = s.temporal.admit(temporal, start, keyframe);
                    if s.temporal.current() != rate && !switched {
                        let event = announce(s);
                        self.events.push_back(s.announcing(event, now));
                    }
                    if !admitted {
                        s.seq.skip(pkt.ssrc, pkt.seq_no);
                        if let Some(d) = vp8.as_ref() {
                            s.stream.leave_out_picture(d.numbers());
                        }
                        if s.temporal.target() < s.asked_rate {
                            self.metrics
                                .dropped
                                .with_label_values(&["congestion"])
                                .inc();
                        }
                        continue;
                    }
                }
            }
            let mapping = match s.pts.iter().find(|(pt, _)| *pt == pkt.pt) {
                Some((_, m)) => *m,
                None => {
                    let remote_pts = sub.rtc.media(mid).map(|m| m.remote_pts().to_vec());
                    let m = pt_mapping(sub.rtc.codec_config(), remote_pts.as_deref(), meaning);
                    s.pts.push((pkt.pt, m));
                    m
                }
            };
            let (pt, payload) = match mapping {
                PtMapping::Direct(pt) => match (&vp8, &vp9) {
                    (Some(d), _) => (pt, s.stream.vp8_payload(&pkt.payload, d)),
                    (_, Some(d)) => (pt, s.stream.vp9_payload(&pkt.payload, d)),
                    _ => (pt, Payload::shared(&pkt.payload)),
                },
                PtMapping::StripRed(pt) => match red_stripped
                    .get_or_insert_with(|| red_primary(&pkt.payload).map(Arc::from))
                {
                    Some(primary) => (pt, Payload::shared(primary)),
                    None => continue,
                },
                PtMapping::Drop => continue,
            };
            let Some(seq) = s.seq.rewrite(pkt.ssrc, pkt.seq_no) else {
                continue;
            };
            if !video && s.stream.take_new_source() {
                s.stream
                    .resync(pkt.time, pkt.capture, clock_rate, None, None);
            }
            let time = s.stream.timestamp(pkt.time, pkt.capture);
            let ext = s.stream.extensions(&pkt.ext);
            if switched {
                self.metrics.layer_switches.inc();
                let event = announce(s);
                self.events.push_back(s.announcing(event, now));
            }
            let len = payload.len();
            let mut api = sub.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            if s.nack_history == NackHistory::Default {
                s.nack_history = NackHistory::Sized;
                size_nack_history(tx, s.kind, self.config.nack_history);
            }
            tx.write_rtp(
                payload
                    .write(pt, seq, time, pkt.capture)
                    // The last packet of the highest layer forwarded ends the picture.
                    .marker(
                        pkt.marker
                            || end == PictureEnd::Here
                            || spatial.is_some_and(|v| {
                                v.layer_end && Some(layer) == s.selector.current()
                            }),
                    )
                    .ext_vals(ext)
                    .nackable(video),
            );
            self.out.forwarded.add(len);
            if !sub.media_forwarded {
                sub.media_forwarded = true;
                self.metrics.join_time.observe(
                    now.saturating_duration_since(sub.join_started)
                        .as_secs_f64(),
                );
                self.events.push_back(SfuEvent::FirstMediaForwarded {
                    room: sub.room.clone(),
                    participant: sub.key.clone(),
                });
            }
            sub.drain(now, &mut self.out);
        }
    }

    /// A subscriber asked for a keyframe of one layer (or one was asked on its behalf).
    pub(super) fn keyframe_request(
        &mut self,
        now: Instant,
        track: &TrackId,
        layer: LayerIndex,
        kind: KeyframeRequestKind,
    ) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let label = match kind {
            KeyframeRequestKind::Pli => "pli",
            KeyframeRequestKind::Fir => "fir",
        };
        // Spatial layers share their one stream, and its one throttle.
        let stream = match t.layers.scheme() {
            Scheme::Simulcast => usize::from(layer),
            _ => 0,
        };
        let Some(throttle) = t.throttles.get_mut(stream) else {
            return;
        };
        match throttle.request(now, kind) {
            Decision::Send(k) => {
                self.metrics
                    .keyframe_requests
                    .with_label_values(&[label, "sent"])
                    .inc();
                self.send_keyframe_request(now, track, layer, k);
            }
            Decision::Deferred => {
                self.metrics
                    .keyframe_requests
                    .with_label_values(&[label, "deferred"])
                    .inc();
            }
        }
    }

    /// Sends a PLI/FIR for one layer to the publisher of `track` now.
    pub(super) fn send_keyframe_request(
        &mut self,
        now: Instant,
        track: &TrackId,
        layer: LayerIndex,
        kind: KeyframeRequestKind,
    ) {
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        let rid = t.layers.layer(layer).and_then(|l| l.rid);
        let Some(p) = self.sessions.get_mut(&t.publisher) else {
            return;
        };
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(t.mid, rid) {
            rx.request_keyframe(kind);
        }
        p.drain(now, &mut self.out);
    }

    /// Queues a keyframe request for `layer` of a video track.
    pub(super) fn request_layer_keyframe(&mut self, track: &TrackId, layer: Option<LayerIndex>) {
        if self
            .tracks
            .get(track)
            .is_some_and(|t| t.kind == TrackKind::Video)
        {
            self.out.work.push_back(Work::Keyframe {
                track: track.clone(),
                layer,
                kind: KeyframeRequestKind::Pli,
            });
        }
    }
}

/// `track:layer` for the subscriber `(room, participant)`: it now receives layer `at` of
/// `track` at `rate`.
pub(super) fn layer_changed(
    (room, participant): (&RoomKey, &ParticipantKey),
    track: &TrackId,
    layers: &Layers,
    at: LayerIndex,
    rate: FrameRate,
    now: Instant,
) -> SfuEvent {
    let (width, height) = layers.size(at);
    SfuEvent::LayerChanged {
        room: room.clone(),
        participant: participant.clone(),
        track_id: track.clone(),
        layer: Some(LayerInfo {
            rid: layers.layer(at).and_then(|l| l.rid).map(|r| r.to_string()),
            width,
            height,
            frame_rate: layers.frames_per_second(at, rate, now),
        }),
    }
}

/// Source of a track the signaling layer gave no hint for: a msid (stream or track id)
/// containing "screen" means screen share, otherwise camera/microphone.
pub(crate) fn infer_source(kind: TrackKind, msid: Option<&str>) -> TrackSource {
    let screen = msid.is_some_and(|m| m.to_ascii_lowercase().contains("screen"));
    match (kind, screen) {
        (TrackKind::Video, true) => TrackSource::Screen,
        (TrackKind::Video, false) => TrackSource::Camera,
        (TrackKind::Audio, true) => TrackSource::ScreenAudio,
        (TrackKind::Audio, false) => TrackSource::Microphone,
    }
}

/// What `pt` means in the publisher's negotiated codec set.
fn pt_meaning(codecs: &CodecConfig, pt: Pt) -> PtMeaning {
    for p in codecs.params() {
        if p.pt() == pt {
            return PtMeaning::Primary(*p);
        }
        if p.red() == Some(pt) {
            return PtMeaning::Red(*p);
        }
    }
    PtMeaning::Unknown
}

/// How a subscriber receives a publisher codec.
fn pt_mapping(codecs: &CodecConfig, remote_pts: Option<&[Pt]>, meaning: PtMeaning) -> PtMapping {
    // An empty list means str0m did not narrow it down: everything configured is fine.
    let accepted = |pt: Pt| remote_pts.is_none_or(|r| r.is_empty() || r.contains(&pt));
    match meaning {
        PtMeaning::Unknown => PtMapping::Drop,
        PtMeaning::Primary(params) => match codecs.match_params(params) {
            Some(local) if accepted(local.pt()) => PtMapping::Direct(local.pt()),
            _ => PtMapping::Drop,
        },
        PtMeaning::Red(params) => match codecs.match_params(params) {
            Some(local) => match local.red() {
                Some(red) if accepted(red) => PtMapping::Direct(red),
                _ if accepted(local.pt()) => PtMapping::StripRed(local.pt()),
                _ => PtMapping::Drop,
            },
            None => PtMapping::Drop,
        },
    }
}

/// Most packets a video send stream keeps for retransmission, whatever `nack_history` says
/// (str0m's default): it bounds the history of a high-rate stream.
const MAX_NACK_HISTORY_PACKETS: usize = 2000;

/// str0m's default cap on retransmitted bytes, as a share of the stream's bytes.
const RTX_RATIO_CAP: f32 = 0.15;

/// Sizes a send stream's retransmission history: video keeps what was sent in the last
/// `history`; audio, never retransmitted (its packets are not nackable), keeps nothing and
/// skips the byte accounting that the retransmission cap needs.
fn size_nack_history(tx: &mut StreamTx, kind: TrackKind, history: Duration) {
    if kind == TrackKind::Video && !history.is_zero() {
        tx.set_rtx_cache(MAX_NACK_HISTORY_PACKETS, history, Some(RTX_RATIO_CAP));
    } else {
        tx.set_rtx_cache(0, Duration::ZERO, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_inference() {
        assert_eq!(infer_source(TrackKind::Video, None), TrackSource::Camera);
        assert_eq!(
            infer_source(TrackKind::Video, Some("{abc} Screen-1")),
            TrackSource::Screen
        );
        assert_eq!(
            infer_source(TrackKind::Audio, Some("s mic")),
            TrackSource::Microphone
        );
        assert_eq!(
            infer_source(TrackKind::Audio, Some("screen audio")),
            TrackSource::ScreenAudio
        );
    }
}
