//! Deterministic scenario tests of the core: str0m clients exchange packets with the core
//! in memory under simulated time (no sockets, no sleeping).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;
use crate::event::SfuEvent;

mod simulcast;
mod svc;
mod sync;

const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 7882);

struct Client {
    key: ParticipantKey,
    rtc: Rtc,
    addr: SocketAddr,
    /// (mid, payload) of RTP received.
    received: Vec<(Mid, Arc<[u8]>)>,
    /// (sequence number, RTP timestamp) of RTP received, in order.
    headers: Vec<(u64, u32)>,
    /// The marker bit of each RTP packet received, in order.
    markers: Vec<bool>,
    /// The last sender report received for each mid.
    reports: HashMap<Mid, str0m::rtp::rtcp::SenderInfo>,
    keyframe_requests: usize,
    /// The rid of each keyframe request received (`None`: no simulcast).
    keyframe_rids: Vec<Option<str0m::media::Rid>>,
    /// Data channel events (open, data, close), in order.
    channel_events: Vec<Event>,
}

struct World {
    now: Instant,
    core: Core,
    clients: Vec<Client>,
    events: Vec<SfuEvent>,
    /// Clients whose packets are delivered (a "vanished" client is not).
    online: Vec<bool>,
    /// Client packets on their way to the server.
    wire: Vec<(SocketAddr, Vec<u8>)>,
    /// (client, ssrc, n): of the next n media packets of that SSRC to that client, every
    /// fifth is lost.
    lose: Option<(usize, u32, u32)>,
}

fn config(limits: Limits) -> CoreConfig {
    CoreConfig {
        candidates: vec![Candidate::host(SERVER.into(), "udp").unwrap()],
        ice_timeout: Duration::from_secs(15),
        keyframe_request_interval: Duration::from_millis(500),
        auto_subscribe: AutoSubscribe::All,
        limits,
        congestion_control: CongestionControl::Enabled,
        nack_history: Duration::from_secs(1),
        data: DataLimits::default(),
    }
}

fn room() -> RoomKey {
    RoomKey::new("r1")
}

impl World {
    fn new(limits: Limits) -> Self {
        Self::with_config(config(limits))
    }

    fn with_config(config: CoreConfig) -> Self {
        Self {
            now: Instant::now(),
            core: Core::new(config, Metrics::unregistered().unwrap()),
            clients: Vec::new(),
            events: Vec::new(),
            online: Vec::new(),
            wire: Vec::new(),
            lose: None,
        }
    }

    /// Joins a client and returns its index. Nothing negotiated yet.
    fn join(&mut self, name: &str) -> usize {
        self.join_with(name, Grants::default())
    }

    fn join_with(&mut self, name: &str, grants: Grants) -> usize {
        self.join_custom(name, grants, Rtc::builder())
    }

    fn join_custom(&mut self, name: &str, grants: Grants, config: str0m::RtcConfig) -> usize {
        let i = self.clients.len();
        let addr = SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16));
        let mut rtc = config.set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        self.core
            .join(self.now, room(), name.into(), grants, self.now)
            .unwrap();
        self.clients.push(Client {
            key: name.into(),
            rtc,
            addr,
            received: Vec::new(),
            headers: Vec::new(),
            markers: Vec::new(),
            reports: HashMap::new(),
            keyframe_requests: 0,
            keyframe_rids: Vec::new(),
            channel_events: Vec::new(),
        });
        self.online.push(true);
        self.collect_events();
        i
    }

    /// The client offers `media` (kind, direction) and applies the answer and any
    /// follow-up server offer. Returns the client's mids.
    fn offer(&mut self, i: usize, media: &[(MediaKind, Direction)]) -> Vec<Mid> {
        let c = &mut self.clients[i];
        let mut change = c.rtc.sdp_api();
        let mids: Vec<Mid> = media
            .iter()
            .map(|(k, d)| change.add_media(*k, *d, Some("s".into()), None, None))
            .collect();
        let (offer, pending) = change.apply().unwrap();
        let reply = self
            .core
            .offer(
                self.now,
                &room(),
                &c.key.clone(),
                &offer.to_sdp_string(),
                &[],
            )
            .unwrap();
        let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
        let c = &mut self.clients[i];
        c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
        self.flush_client(i);
        if let Some(o) = reply.server_offer {
            self.accept_server_offer(i, &o.sdp);
        }
        self.collect_events();
        mids
    }

    fn accept_server_offer(&mut self, i: usize, sdp: &str) {
        let c = &mut self.clients[i];
        let answer = c
            .rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(sdp).unwrap())
            .unwrap();
        let key = c.key.clone();
        self.flush_client(i);
        self.core
            .answer(self.now, &room(), &key, &answer.to_sdp_string())
            .unwrap();
    }

    /// Answers every server offer seen in events.
    fn answer_pending_offers(&mut self) {
        self.collect_events();
        let offers: Vec<(ParticipantKey, String)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                SfuEvent::Offer {
                    participant, sdp, ..
                } => Some((participant.clone(), sdp.clone())),
                _ => None,
            })
            .collect();
        self.events.retain(|e| !matches!(e, SfuEvent::Offer { .. }));
        for (who, sdp) in offers {
            let i = self.clients.iter().position(|c| c.key == who).unwrap();
            self.accept_server_offer(i, &sdp);
        }
        self.collect_events();
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
    }

    /// Moves packets both ways and advances simulated time by `duration`.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.exchange();
            let next = self.core.poll_timeout().unwrap_or(end).min(end);
            let next = next.max(self.now + Duration::from_millis(1));
            self.now = next.min(self.now + Duration::from_millis(10));
            self.core.handle_timeout(self.now);
            for i in 0..self.clients.len() {
                let now = self.now;
                self.clients[i]
                    .rtc
                    .handle_input(Input::Timeout(now))
                    .unwrap();
                self.flush_client(i);
            }
        }
        self.exchange();
        self.collect_events();
    }

    /// Drains client `i` (str0m: after every mutation), queueing its packets.
    fn flush_client(&mut self, i: usize) {
        let online = self.online[i];
        let c = &mut self.clients[i];
        loop {
            match c.rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) if online => self.wire.push((c.addr, t.contents.to_vec())),
                Output::Transmit(_) => {}
                Output::Event(Event::RtpPacket(p)) => {
                    let mid = c
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                        .unwrap();
                    c.headers.push((*p.seq_no, p.header.timestamp));
                    c.markers.push(p.header.marker);
                    if let Some(info) = p.last_sender_info {
                        c.reports.insert(mid, info);
                    }
                    c.received.push((mid, p.payload));
                }
                Output::Event(Event::KeyframeRequest(r)) => {
                    c.keyframe_requests += 1;
                    c.keyframe_rids.push(r.rid);
                }
                Output::Event(
                    e @ (Event::ChannelOpen(..) | Event::ChannelData(_) | Event::ChannelClose(_)),
                ) => c.channel_events.push(e),
                Output::Event(_) => {}
            }
        }
    }

    fn exchange(&mut self) {
        let server: SocketAddr = SERVER.into();
        for i in 0..self.clients.len() {
            self.flush_client(i);
        }
        for _ in 0..50 {
            let wire = std::mem::take(&mut self.wire);
            let mut moved = !wire.is_empty();
            for (from, data) in wire {
                self.core
                    .handle_receive(self.now, Protocol::Udp, from, server, &data);
            }
            while let Some(t) = self.core.poll_transmit() {
                let Some(i) = self.clients.iter().position(|c| c.addr == t.destination) else {
                    continue;
                };
                if !self.online[i] {
                    continue;
                }
                // Simulated loss: drop media of one SSRC (in clear in SRTP) to this client,
                // so retransmissions (RTX SSRC) get through.
                if let Some((to, ssrc, n)) = &mut self.lose
                    && *to == i
                    && t.contents.len() > 500
                    && t.contents[8..12] == ssrc.to_be_bytes()
                    && *n > 0
                {
                    *n -= 1;
                    if *n % 5 == 0 {
                        continue;
                    }
                }
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
                self.clients[i]
                    .rtc
                    .handle_input(Input::Receive(self.now, r))
                    .unwrap();
                self.flush_client(i);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    /// The payload type client `i` sends `codec` with.
    fn pt_of(&self, i: usize, codec: Codec) -> str0m::media::Pt {
        self.clients[i]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt()
    }

    /// Writes one RTP packet from client `i` on `mid`.
    fn send(&mut self, i: usize, mid: Mid, codec: Codec, seq: u64, payload: &[u8]) {
        let pt = self.pt_of(i, codec);
        let now = self.now;
        let mut api = self.clients[i].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).unwrap();
        tx.write_rtp(RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload).marker(true));
        self.flush_client(i);
    }
}

fn publish_two_tracks(w: &mut World) -> (usize, usize, Vec<Mid>) {
    let a = w.join("alice");
    let mids = w.offer(
        a,
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    let b = w.join("bob");
    // Bob only receives; the server adds the m-lines for alice's tracks.
    w.offer(b, &[(MediaKind::Audio, Direction::RecvOnly)]);
    // Tracks are published once the publisher's DTLS is up; bob then gets a server offer.
    w.run(Duration::from_secs(2));
    w.answer_pending_offers();
    w.run(Duration::from_secs(1));
    (a, b, mids)
}

#[test]
fn forwards_audio_and_video_intact() {
    let mut w = World::new(Limits::default());
    let (a, b, mids) = publish_two_tracks(&mut w);
    let published = w
        .events
        .iter()
        .filter(|e| matches!(e, SfuEvent::TrackPublished { .. }))
        .count();
    assert_eq!(published, 2);
    let mut sent = Vec::new();
    for seq in 1..=50u64 {
        let audio: Vec<u8> = (0..80).map(|x| (x as u64 * seq) as u8).collect();
        let video: Vec<u8> = std::iter::once(0x10)
            .chain((0..900).map(|x| (x as u64 + seq) as u8))
            .collect();
        w.send(a, mids[0], Codec::Opus, seq, &audio);
        w.send(a, mids[1], Codec::Vp8, seq, &video);
        sent.push(audio);
        sent.push(video);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(500));
    let got = &w.clients[b].received;
    assert!(got.len() >= 90, "bob got {} of 100 packets", got.len());
    for (_, payload) in got {
        assert!(sent.iter().any(|s| s[..] == payload[..]), "payload altered");
    }
    let mids_b: std::collections::HashSet<_> = got.iter().map(|(m, _)| *m).collect();
    assert_eq!(mids_b.len(), 2, "audio and video arrive on two m-lines");
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, SfuEvent::FirstMediaForwarded { participant, .. } if participant.user() == "bob"))
    );
    let s = w.core.stats();
    assert_eq!((s.participants, s.tracks, s.subscriptions), (2, 2, 2));

    w.core.leave(w.now, &room(), &"alice".into()).unwrap();
    w.run(Duration::from_millis(100));
    w.answer_pending_offers();
    assert_eq!(w.core.stats().tracks, 0);
    w.core.leave(w.now, &room(), &"bob".into()).unwrap();
    assert_eq!(w.core.stats(), Stats::default());
    w.collect_events();
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, SfuEvent::RoomClosed { .. }))
    );
}

/// A burst of packets that reaches the core in one batch (one `recvmmsg`, one `now`) leaves for
/// every subscriber at once. str0m releases one queued packet per `Input::Timeout`; when the
/// core left that to the driver's next pass, a busy room's subscribers sent one packet per
/// pass and their queues grew without bound.
#[test]
fn a_burst_is_forwarded_without_waiting_for_the_next_timeout() {
    let mut w = World::new(Limits::default());
    let (a, b, mids) = publish_two_tracks(&mut w);
    let bob = w.clients[b].addr;
    let now = w.now;
    for seq in 1..=10u64 {
        w.send(a, mids[0], Codec::Opus, seq, &[seq as u8; 80]);
        // The client's own pacer releases the packet on its timeout; the core gets none.
        w.clients[a].rtc.handle_input(Input::Timeout(now)).unwrap();
        w.flush_client(a);
    }
    let server: SocketAddr = SERVER.into();
    for (from, data) in std::mem::take(&mut w.wire) {
        w.core
            .handle_receive(now, Protocol::Udp, from, server, &data);
    }
    let mut media_to_bob = 0;
    while let Some(t) = w.core.poll_transmit() {
        // RTP, not RTCP (payload types 192-223 read as 64-95 without the marker bit).
        let rtp = t.contents.len() > 12 && !(64..=95).contains(&(t.contents[1] & 0x7f));
        if t.destination == bob && rtp {
            media_to_bob += 1;
        }
    }
    assert_eq!(
        media_to_bob, 10,
        "the whole burst leaves before any timeout"
    );
}

#[test]
fn keyframe_requests_are_throttled_per_track() {
    let mut w = World::new(Limits::default());
    let (a, b, mids) = publish_two_tracks(&mut w);
    // Video must flow for bob to have a receive stream to send PLIs on.
    for seq in 1..=5u64 {
        w.send(a, mids[1], Codec::Vp8, seq, &[0x10, 0, 2, 3]);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(600));
    let before = w.clients[a].keyframe_requests;
    let video_mid_b = {
        let c = &mut w.clients[b];
        let ssrc_mids: Vec<Mid> = c.received.iter().map(|(m, _)| *m).collect();
        ssrc_mids[0]
    };
    // Bob asks every 20 ms for 2 s: 100 requests.
    for _ in 0..100 {
        let c = &mut w.clients[b];
        if let Some(rx) = c.rtc.direct_api().stream_rx_by_mid(video_mid_b, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        w.flush_client(b);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(600));
    let forwarded = w.clients[a].keyframe_requests - before;
    // At most one per 500 ms over ~2.6 s, and at least one got through.
    assert!(
        (1..=6).contains(&forwarded),
        "forwarded {forwarded} keyframe requests"
    );
}

#[test]
fn ice_timeout_frees_everything() {
    let mut w = World::new(Limits::default());
    let (a, b, _) = publish_two_tracks(&mut w);
    w.online[a] = false;
    w.online[b] = false;
    w.run(Duration::from_secs(16));
    let failed = w
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SfuEvent::ParticipantFailed {
                    reason: FailureReason::IceTimeout,
                    ..
                }
            )
        })
        .count();
    assert_eq!(failed, 2);
    assert_eq!(w.core.stats(), Stats::default());
    assert_eq!(w.core.poll_timeout(), None);
}

#[test]
fn limits_give_typed_errors() {
    let limits = Limits {
        max_mlines_per_offer: 2,
        max_tracks_per_participant: 1,
        max_participants_per_room: 2,
        max_rooms: 1,
    };
    let mut w = World::new(limits);
    let a = w.join("alice");
    w.join("bob");
    let now = w.now;
    assert_eq!(
        w.core
            .join(now, room(), "carol".into(), Grants::default(), now),
        Err(Error::RoomFull { limit: 2 })
    );
    assert_eq!(
        w.core
            .join(now, "r2".into(), "carol".into(), Grants::default(), now),
        Err(Error::TooManyRooms { limit: 1 })
    );
    assert_eq!(
        w.core
            .join(now, room(), "alice".into(), Grants::default(), now),
        Err(Error::AlreadyJoined("alice".into()))
    );

    let offer_of = |media: &[MediaKind]| {
        let mut rtc = Rtc::new(now);
        let mut change = rtc.sdp_api();
        for k in media {
            change.add_media(*k, Direction::SendRecv, None, None, None);
        }
        change.apply().unwrap().0.to_sdp_string()
    };
    let key = w.clients[a].key.clone();
    let three = offer_of(&[MediaKind::Audio, MediaKind::Video, MediaKind::Video]);
    assert!(matches!(
        w.core.offer(now, &room(), &key, &three, &[]),
        Err(Error::TooManyMLines { count: 3, limit: 2 })
    ));
    let two = offer_of(&[MediaKind::Audio, MediaKind::Video]);
    assert!(matches!(
        w.core.offer(now, &room(), &key, &two, &[]),
        Err(Error::TooManyTracks { count: 2, limit: 1 })
    ));
    let pcmu_only = offer_of(&[MediaKind::Audio])
        .lines()
        .filter(|l| !l.starts_with("a=rtpmap:") || l.contains("PCMU"))
        .collect::<Vec<_>>()
        .join("\r\n");
    assert!(matches!(
        w.core.offer(now, &room(), &key, &pcmu_only, &[]),
        Err(Error::NoUsableCodec { .. })
    ));
    assert!(matches!(
        w.core
            .offer(now, &room(), &key, "v=0\r\nm=audio x\r\n", &[]),
        Err(Error::BadSdp(_)) | Err(Error::NoUsableCodec { .. })
    ));
    assert!(matches!(
        w.core.answer(now, &room(), &key, "garbage"),
        Err(Error::BadSdp(_)) | Err(Error::NoPendingOffer)
    ));
    // Still works after all that.
    let one = offer_of(&[MediaKind::Audio]);
    assert!(w.core.offer(now, &room(), &key, &one, &[]).is_ok());
    // Leaving everyone frees everything.
    w.core.close_room(now, &room()).unwrap();
    assert_eq!(w.core.stats(), Stats::default());
}

#[test]
fn unsubscribe_and_subscribe_renegotiate() {
    let mut w = World::new(Limits::default());
    let (_a, b, _) = publish_two_tracks(&mut w);
    let tracks = w.core.room_tracks(&room());
    assert_eq!(tracks.len(), 2);
    let bob: ParticipantKey = w.clients[b].key.clone();
    w.core
        .unsubscribe(w.now, &room(), &bob, &tracks[0].track_id)
        .unwrap();
    w.answer_pending_offers();
    assert_eq!(w.core.stats().subscriptions, 1);
    w.core
        .subscribe(w.now, &room(), &bob, &tracks[0].track_id)
        .unwrap();
    w.answer_pending_offers();
    assert_eq!(w.core.stats().subscriptions, 2);
    assert!(matches!(
        w.core
            .subscribe(w.now, &room(), &bob, &TrackId::new("nope")),
        Err(Error::UnknownTrack(_))
    ));
}

fn count<F: Fn(&SfuEvent) -> bool>(w: &World, f: F) -> usize {
    w.events.iter().filter(|e| f(e)).count()
}

#[test]
fn client_offer_wins_glare_and_server_reoffers_in_reply() {
    let mut w = World::new(Limits::default());
    let (_a, b, _) = publish_two_tracks(&mut w);
    // Carol publishes audio: bob gets a server offer that he does not answer yet.
    let c = w.join("carol");
    let carol_mids = w.offer(c, &[(MediaKind::Audio, Direction::SendOnly)]);
    w.run(Duration::from_secs(2));
    let pending: Vec<String> = w
        .events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::Offer {
                participant, sdp, ..
            } if participant.user() == "bob" => Some(sdp.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pending.len(), 1, "one server offer outstanding for bob");
    w.events.retain(|e| !matches!(e, SfuEvent::Offer { .. }));

    // Glare: bob offers (he starts publishing video) without answering.
    let bob_key = w.clients[b].key.clone();
    let mut change = w.clients[b].rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, client_pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &bob_key, &offer.to_sdp_string(), &[])
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[b]
        .rtc
        .sdp_api()
        .accept_answer(client_pending, answer)
        .unwrap();
    w.flush_client(b);
    let re_offer = reply
        .server_offer
        .expect("server re-offers right after its answer");
    assert_eq!(re_offer.tracks.len(), 1, "carol's track is in the re-offer");
    w.collect_events();
    assert_eq!(
        count(
            &w,
            |e| matches!(e, SfuEvent::Offer { participant, .. } if participant.user() == "bob")
        ),
        0,
        "the re-offer is not also sent as an event"
    );
    w.accept_server_offer(b, &re_offer.sdp);
    w.run(Duration::from_secs(1));
    // bob: alice ×2 + carol; carol: alice ×2 + bob; alice: carol + bob.
    assert_eq!(w.core.stats().subscriptions, 3 + 3 + 2);

    // Carol's audio reaches bob.
    let before = w.clients[b].received.len();
    for seq in 1..=10u64 {
        w.send(c, carol_mids[0], Codec::Opus, seq, &[7, 7, seq as u8]);
        w.run(Duration::from_millis(20));
    }
    assert!(w.clients[b].received.len() >= before + 9);
}

#[test]
fn grants_are_enforced() {
    let mut w = World::new(Limits::default());
    let (a, _, _) = publish_two_tracks(&mut w);
    let silent = Grants {
        can_publish: false,
        can_subscribe: true,
        can_publish_data: true,
    };
    let d = w.join_with("dave", silent);
    w.offer(d, &[(MediaKind::Audio, Direction::SendOnly)]);
    w.run(Duration::from_secs(2));
    assert_eq!(
        count(
            &w,
            |e| matches!(e, SfuEvent::TrackPublished { participant, .. } if participant.user() == "dave")
        ),
        0
    );
    let blind = Grants {
        can_publish: true,
        can_subscribe: false,
        can_publish_data: true,
    };
    let e = w.join_with("erin", blind);
    w.offer(e, &[(MediaKind::Audio, Direction::SendOnly)]);
    w.run(Duration::from_secs(2));
    w.answer_pending_offers();
    let erin = w.clients[e].key.clone();
    let track = w.core.room_tracks(&room())[0].track_id.clone();
    assert_eq!(
        w.core.subscribe(w.now, &room(), &erin, &track),
        Err(Error::NotAllowed("can_subscribe"))
    );
    let erin_session = w.core.rooms[&room()].members[&erin];
    assert!(w.core.sessions[&erin_session].subs.is_empty());
    // Alice still publishes 2 tracks, erin 1; dave none.
    assert_eq!(w.core.stats().tracks, 3);
    let _ = a;
}

#[test]
fn peer_closing_dtls_removes_it() {
    let mut w = World::new(Limits::default());
    let (a, _b, _) = publish_two_tracks(&mut w);
    w.clients[a].rtc.close().unwrap();
    w.flush_client(a);
    w.run(Duration::from_millis(200));
    let closed = count(&w, |e| {
        matches!(e, SfuEvent::ParticipantFailed { participant, reason: FailureReason::PeerClosed, .. }
            if participant.user() == "alice")
    });
    assert_eq!(closed, 1);
    let s = w.core.stats();
    assert_eq!((s.participants, s.tracks), (1, 0));
}

#[test]
fn malformed_packets_never_panic_or_kick_anyone() {
    let mut w = World::new(Limits::default());
    let (a, b, _) = publish_two_tracks(&mut w);
    let server: SocketAddr = SERVER.into();
    let (from_a, from_b) = (w.clients[a].addr, w.clients[b].addr);
    let stranger = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let len = (rnd() % 1300) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        // Steer some packets into each demultiplexing branch (STUN, DTLS, RTP/RTCP).
        match i % 4 {
            0 if len > 0 => data[0] = 0,
            1 if len > 0 => data[0] = 22,
            2 if len > 1 => {
                data[0] = 0x80;
                data[1] = 96;
            }
            _ => {}
        }
        let from = [from_a, from_b, stranger][i % 3];
        w.core
            .handle_receive(w.now, Protocol::Udp, from, server, &data);
    }
    w.run(Duration::from_millis(100));
    let s = w.core.stats();
    assert_eq!(
        (s.participants, s.tracks),
        (2, 2),
        "garbage kicked nobody out"
    );
}

#[test]
fn lost_video_is_repaired_from_the_sfu_send_buffer() {
    assert_eq!(video_packets_never_repaired(Duration::from_secs(1)), 0);
}

#[test]
fn no_nack_history_repairs_nothing() {
    assert_eq!(video_packets_never_repaired(Duration::ZERO), 4);
}

/// Bob loses 4 of 30 video packets from alice on the way, with `nack_history` configured;
/// returns how many he never got, after 2 s for repairs.
fn video_packets_never_repaired(nack_history: Duration) -> usize {
    let mut w = World::with_config(CoreConfig {
        nack_history,
        ..config(Limits::default())
    });
    let (a, b, mids) = publish_two_tracks(&mut w);
    // A first packet creates bob's receive stream; then every fifth of bob's next 20
    // video packets is lost on the way (4 losses).
    w.send(a, mids[1], Codec::Vp8, 1, &[0x10, 0, 0]);
    w.run(Duration::from_millis(100));
    let (video_mid, _) = w.clients[b].received.last().cloned().unwrap();
    let ssrc = w.clients[b]
        .rtc
        .direct_api()
        .stream_rx_by_mid(video_mid, None)
        .unwrap()
        .ssrc();
    w.lose = Some((b, *ssrc, 20));
    let mut sent = Vec::new();
    for seq in 2..=31u64 {
        let video: Vec<u8> = std::iter::once(0x10)
            .chain((0..900).map(|x| (x as u64 * 31 + seq) as u8))
            .collect();
        w.send(a, mids[1], Codec::Vp8, seq, &video);
        sent.push(video);
        w.run(Duration::from_millis(33));
    }
    w.run(Duration::from_secs(2));
    // The repairs come from the send buffer as RTX: answering NACKs, or sooner, as the
    // padding the bandwidth estimator probes with (str0m pads with resends of recent
    // packets), so the NACK count is not asserted here.
    assert_eq!(w.lose.map(|(_, _, n)| n), Some(0), "the losses happened");
    let got: std::collections::HashSet<Vec<u8>> = w.clients[b]
        .received
        .iter()
        .map(|(_, p)| p.to_vec())
        .collect();
    sent.iter().filter(|s| !got.contains(*s)).count()
}

#[test]
fn opus_red_is_reduced_to_its_primary_for_subscribers_without_red() {
    let mut w = World::new(Limits::default());
    let with_red = Rtc::builder().clear_codecs().enable_opus(true, true);
    let a = w.join_custom("alice", Grants::default(), with_red);
    let mids = w.offer(a, &[(MediaKind::Audio, Direction::SendOnly)]);
    let without_red = Rtc::builder().clear_codecs().enable_opus(true, false);
    let b = w.join_custom("bob", Grants::default(), without_red);
    w.offer(b, &[(MediaKind::Audio, Direction::RecvOnly)]);
    w.run(Duration::from_secs(2));
    w.answer_pending_offers();
    w.run(Duration::from_secs(1));

    let opus = *w.clients[a]
        .rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Opus)
        .unwrap();
    let red_pt = opus.red().expect("alice negotiated RED");
    let mut primaries = Vec::new();
    for seq in 1..=10u64 {
        let primary = vec![seq as u8; 40];
        // One redundant block (the previous frame, 3 bytes) then the primary.
        let mut red = vec![0x80 | *opus.pt(), 0x03, 0xC0, 3, *opus.pt()];
        red.extend_from_slice(&[9, 9, 9]);
        red.extend_from_slice(&primary);
        let now = w.now;
        let mut api = w.clients[a].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mids[0], None).unwrap();
        tx.write_rtp(RtpWrite::new(
            red_pt,
            seq.into(),
            (seq * 960) as u32,
            now,
            red,
        ));
        w.flush_client(a);
        primaries.push(primary);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(200));
    let got: Vec<Vec<u8>> = w.clients[b]
        .received
        .iter()
        .map(|(_, p)| p.to_vec())
        .collect();
    assert!(got.len() >= 9, "bob got {} packets", got.len());
    for p in &got {
        assert!(primaries.contains(p), "bob must get the bare Opus primary");
    }
}

#[test]
fn screen_share_is_its_own_track_and_stopping_it_unpublishes() {
    let mut w = World::new(Limits::default());
    let (a, b, _) = publish_two_tracks(&mut w);
    // Alice starts a screen share: a new video m-line whose msid names the screen.
    let alice = w.clients[a].key.clone();
    let mut change = w.clients[a].rtc.sdp_api();
    let screen = change.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("alice-screen".into()),
        Some("screen-1".into()),
        None,
    );
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &alice, &offer.to_sdp_string(), &[])
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(a);
    w.run(Duration::from_millis(200));
    let screen_tracks: Vec<TrackId> = w
        .events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::TrackPublished {
                track_id,
                source: TrackSource::Screen,
                kind: TrackKind::Video,
                ..
            } => Some(track_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        screen_tracks.len(),
        1,
        "screen share published as source=screen"
    );
    w.answer_pending_offers();
    w.run(Duration::from_millis(200));
    assert_eq!(
        w.core.stats().subscriptions,
        3,
        "bob receives the screen too"
    );

    // Alice stops sharing: the m-line is stopped in her next offer.
    let mut change = w.clients[a].rtc.sdp_api();
    change.stop_media(screen);
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &alice, &offer.to_sdp_string(), &[])
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(a);
    w.run(Duration::from_millis(200));
    assert_eq!(
        count(
            &w,
            |e| matches!(e, SfuEvent::TrackUnpublished { track_id, .. } if *track_id == screen_tracks[0])
        ),
        1
    );
    w.answer_pending_offers();
    w.run(Duration::from_millis(200));
    let s = w.core.stats();
    assert_eq!((s.tracks, s.subscriptions), (2, 2));
    let _ = b;
}

#[test]
fn explicit_source_hint_wins_over_inference() {
    let mut w = World::new(Limits::default());
    let a = w.join("alice");
    let alice = w.clients[a].key.clone();
    let mut change = w.clients[a].rtc.sdp_api();
    let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let hints = [(mid.to_string(), TrackSource::Screen)];
    let reply = w
        .core
        .offer(w.now, &room(), &alice, &offer.to_sdp_string(), &hints)
        .unwrap();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(a);
    w.run(Duration::from_secs(1));
    let tracks = w.core.room_tracks(&room());
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].source, TrackSource::Screen);
}

#[test]
fn remote_candidates_are_parsed_or_refused() {
    let mut w = World::new(Limits::default());
    w.join("alice");
    let alice: ParticipantKey = "alice".into();
    let now = w.now;
    let good = "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host";
    assert_eq!(
        w.core.add_remote_candidate(now, &room(), &alice, good),
        Ok(())
    );
    assert_eq!(
        w.core
            .add_remote_candidate(now, &room(), &alice, &format!("a={good}")),
        Ok(())
    );
    assert_eq!(
        w.core.add_remote_candidate(now, &room(), &alice, ""),
        Ok(())
    );
    assert_eq!(
        w.core
            .add_remote_candidate(now, &room(), &alice, "a=end-of-candidates"),
        Ok(())
    );
    assert!(matches!(
        w.core
            .add_remote_candidate(now, &room(), &alice, "candidate:nonsense"),
        Err(Error::BadCandidate(_))
    ));
}

#[test]
fn ice_restart_registers_the_new_server_ufrag() {
    let mut w = World::new(Limits::default());
    let (a, b, mids) = publish_two_tracks(&mut w);
    let routes_before = w.core.stats().routes;
    let alice = w.clients[a].key.clone();
    let mut change = w.clients[a].rtc.sdp_api();
    change.ice_restart(true);
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &alice, &offer.to_sdp_string(), &[])
        .unwrap();
    let ufrag = reply
        .answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_string();
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(a);
    w.run(Duration::from_secs(2));

    // A STUN request naming the new ufrag from an unknown address routes to alice.
    let username = format!("{ufrag}:x");
    let mut msg = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    msg.extend_from_slice(&[1; 12]);
    msg.extend_from_slice(&[0x00, 0x06]);
    msg.extend_from_slice(&(username.len() as u16).to_be_bytes());
    msg.extend_from_slice(username.as_bytes());
    while msg.len() % 4 != 0 {
        msg.push(0);
    }
    let body = (msg.len() - 20) as u16;
    msg[2..4].copy_from_slice(&body.to_be_bytes());
    let tuple = FiveTuple {
        proto: Protocol::Udp,
        remote: SocketAddr::from(([127, 0, 0, 1], 41_000)),
        local: SERVER.into(),
    };
    let alice_id = w.core.rooms[&room()].members[&alice];
    assert_eq!(w.core.router.route(&tuple, &msg), Route::Ufrag(alice_id));
    assert_eq!(
        w.core.stats().routes,
        routes_before,
        "the old ufrag was replaced, and the path checked again under the new one kept"
    );
    assert_eq!(w.core.metrics.ice_restarts.get(), 1);
    // A renegotiation without new credentials is no restart.
    let mut change = w.clients[a].rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &alice, &offer.to_sdp_string(), &[])
        .unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&reply.answer).unwrap())
        .unwrap();
    w.flush_client(a);
    assert_eq!(w.core.metrics.ice_restarts.get(), 1);

    // Media still flows after the restart.
    let before = w.clients[b].received.len();
    for seq in 1..=10u64 {
        w.send(a, mids[0], Codec::Opus, 100 + seq, &[1, 2, 3, seq as u8]);
        w.run(Duration::from_millis(20));
    }
    assert!(w.clients[b].received.len() >= before + 9);
}

#[test]
fn an_offer_that_made_str0m_panic_is_refused() {
    // Found by fuzz/fuzz_targets/sdp_offer.rs: a Chromium offer whose audio section describes
    // the video payload type 114, which str0m 0.25 locks twice and panics on.
    let mut w = World::new(Limits::default());
    let i = w.join("mallory");
    let key = w.clients[i].key.clone();
    let now = w.now;
    let crash = include_str!("../../../fuzz/crashes/sdp_offer-str0m-pt-locked-multiple-times.sdp");
    assert!(matches!(
        w.core.offer(now, &room(), &key, crash, &[]),
        Err(Error::BadSdp(_))
    ));
    // A real Chromium offer still goes through.
    let chromium = include_str!("../../../fuzz/corpus-seed/sdp_offer/chromium-audio-video.sdp");
    assert!(w.core.offer(now, &room(), &key, chromium, &[]).is_ok());
}

#[test]
fn a_held_track_is_not_forwarded_and_its_publisher_cannot_release_it() {
    let mut w = World::new(Limits::default());
    let (a, b, mids) = publish_two_tracks(&mut w);
    let audio = w
        .events
        .iter()
        .find_map(|e| match e {
            SfuEvent::TrackPublished { track_id, kind, .. } if *kind == TrackKind::Audio => {
                Some(track_id.clone())
            }
            _ => None,
        })
        .expect("alice's audio is published");
    let send = |w: &mut World, n: u64| {
        for seq in n..n + 10 {
            w.send(a, mids[0], Codec::Opus, seq, &[seq as u8; 40]);
            w.run(Duration::from_millis(20));
        }
        w.run(Duration::from_millis(200));
    };
    send(&mut w, 1);
    let before = w.clients[b].received.len();
    assert!(before >= 8, "forwarded before: {before}");
    // Someone else's user name does not find the track.
    let e = w
        .core
        .set_track_held(w.now, &room(), "bob", &audio, true)
        .unwrap_err();
    assert_eq!(e, Error::UnknownTrack(audio.clone()));
    w.core
        .set_track_held(w.now, &room(), "alice", &audio, true)
        .unwrap();
    // The publisher's own unmute does not release it.
    w.core
        .set_source_muted(&room(), &"alice".into(), TrackSource::Microphone, Muted::No)
        .unwrap();
    send(&mut w, 11);
    assert_eq!(
        w.clients[b].received.len(),
        before,
        "nothing forwarded while held"
    );
    w.collect_events();
    assert_eq!(
        count(&w, |e| matches!(
            e,
            SfuEvent::TrackMuted {
                muted: Muted::Yes,
                ..
            }
        )),
        1
    );
    assert_eq!(
        count(&w, |e| matches!(
            e,
            SfuEvent::TrackMuted {
                muted: Muted::No,
                ..
            }
        )),
        0
    );
    w.core
        .set_track_held(w.now, &room(), "alice", &audio, false)
        .unwrap();
    send(&mut w, 21);
    assert!(w.clients[b].received.len() >= before + 8, "forwarded again");
}

/// A viewer `name` of `publisher`'s tracks with one receive-only audio and one receive-only
/// video m-line (WHEP): its index and mids.
fn view(w: &mut World, name: &str, publisher: &str) -> (usize, Vec<Mid>) {
    let i = w.clients.len();
    let addr = SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16));
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(w.now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mids: Vec<Mid> = [MediaKind::Audio, MediaKind::Video]
        .into_iter()
        .map(|k| change.add_media(k, Direction::RecvOnly, None, None, None))
        .collect();
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer_viewing(
            w.now,
            room(),
            name.into(),
            Viewed::User(publisher.to_owned()),
            w.now,
            &offer.to_sdp_string(),
        )
        .unwrap();
    assert!(
        reply.server_offer.is_none(),
        "a viewer is never made an offer"
    );
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    w.clients.push(Client {
        key: name.into(),
        rtc,
        addr,
        received: Vec::new(),
        headers: Vec::new(),
        markers: Vec::new(),
        reports: HashMap::new(),
        keyframe_requests: 0,
        keyframe_rids: Vec::new(),
        channel_events: Vec::new(),
    });
    w.online.push(true);
    w.flush_client(i);
    w.collect_events();
    (i, mids)
}

#[test]
fn a_viewer_gets_one_publishers_tracks_on_its_own_mlines_and_never_an_offer() {
    let mut w = World::new(Limits::default());
    let (a, _bob, mids) = publish_two_tracks(&mut w);
    let (v, viewer_mids) = view(&mut w, "viewer", "alice");
    // Carol publishes too, after the viewer came: the viewer gets none of it.
    let c = w.join("carol");
    let carol_mids = w.offer(
        c,
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
    );
    w.run(Duration::from_secs(2));
    let offered_to_viewer = |w: &World| {
        count(
            w,
            |e| matches!(e, SfuEvent::Offer { participant, .. } if participant.user() == "viewer"),
        )
    };
    assert_eq!(
        offered_to_viewer(&w),
        0,
        "carol's tracks made the viewer an offer"
    );
    w.answer_pending_offers();
    w.run(Duration::from_millis(500));
    let mut sent = Vec::new();
    for seq in 1..=30u64 {
        let audio: Vec<u8> = (0..80).map(|x| (x as u64 * seq) as u8).collect();
        let video: Vec<u8> = std::iter::once(0x10)
            .chain((0..900).map(|x| (x as u64 + seq) as u8))
            .collect();
        w.send(a, mids[0], Codec::Opus, seq, &audio);
        w.send(a, mids[1], Codec::Vp8, seq, &video);
        w.send(c, carol_mids[0], Codec::Opus, seq, &[0xCA; 80]);
        sent.push(audio);
        sent.push(video);
        w.run(Duration::from_millis(20));
    }
    w.run(Duration::from_millis(500));
    let got = &w.clients[v].received;
    assert!(
        got.len() >= 50,
        "the viewer got {} of 60 packets",
        got.len()
    );
    for (mid, payload) in got {
        assert!(
            viewer_mids.contains(mid),
            "a packet on {mid:?}, not the viewer's m-lines"
        );
        assert!(
            sent.iter().any(|s| s[..] == payload[..]),
            "not alice's, or altered"
        );
    }
    let on: std::collections::HashSet<_> = got.iter().map(|(m, _)| *m).collect();
    assert_eq!(on.len(), 2, "audio and video on the viewer's two m-lines");
    assert_eq!(offered_to_viewer(&w), 0);
}

mod data;
impl World {
    /// Writes one Opus-sized packet from client `i` on `mid` with an RFC 6464 audio level
    /// (`dbov` below full scale).
    fn send_level(&mut self, i: usize, mid: Mid, seq: u64, dbov: i8) {
        let c = &mut self.clients[i];
        let pt = c
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .unwrap()
            .pt();
        let now = self.now;
        let mut api = c.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).unwrap();
        let ext = str0m::rtp::ExtensionValues {
            audio_level: Some(-dbov),
            voice_activity: Some(dbov < 127),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), (seq * 960) as u32, now, vec![0xf8; 60]).ext_vals(ext),
        );
        self.flush_client(i);
    }

    /// Every `SfuEvent::Speakers` seen, as (user, level) lists.
    fn speaker_lists(&self) -> Vec<Vec<(String, f32)>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SfuEvent::Speakers { speakers, .. } => Some(
                    speakers
                        .iter()
                        .map(|(k, l)| (k.user().to_owned(), l.linear()))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn the_loud_publisher_is_the_speaker_until_it_mutes() {
    let mut w = World::new(Limits::default());
    let a = w.join("alice");
    let ma = w.offer(a, &[(MediaKind::Audio, Direction::SendOnly)]);
    let b = w.join("bob");
    let mb = w.offer(b, &[(MediaKind::Audio, Direction::SendOnly)]);
    w.run(Duration::from_secs(2));
    w.answer_pending_offers();
    w.run(Duration::from_secs(1));
    assert!(w.speaker_lists().is_empty(), "nobody spoke yet");

    let mut seq = 0;
    for _ in 0..50 {
        w.send_level(a, ma[0], seq, 10);
        w.send_level(b, mb[0], seq, 127);
        seq += 1;
        w.run(Duration::from_millis(20));
    }
    let lists = w.speaker_lists();
    assert_eq!(lists.len(), 1, "one change: {lists:?}");
    assert_eq!(lists[0].len(), 1, "bob is silent: {lists:?}");
    assert_eq!(lists[0][0].0, "alice");
    assert!(
        (lists[0][0].1 - 0.316).abs() < 0.01,
        "level {}",
        lists[0][0].1
    );

    // Alice mutes her microphone: her packets (still loud here) stop counting at once.
    let track = w
        .core
        .room_tracks(&room())
        .into_iter()
        .find(|t| t.participant.user() == "alice")
        .unwrap()
        .track_id;
    w.core
        .set_track_muted(&room(), &"alice".into(), &track, Muted::Yes)
        .unwrap();
    for _ in 0..25 {
        w.send_level(a, ma[0], seq, 10);
        w.send_level(b, mb[0], seq, 127);
        seq += 1;
        w.run(Duration::from_millis(20));
    }
    let lists = w.speaker_lists();
    assert_eq!(lists.len(), 2, "{lists:?}");
    assert!(lists[1].is_empty());
    assert_eq!(w.core.metrics.speaker_changes.get(), 2);
}
