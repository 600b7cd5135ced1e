//! Simulcast scenarios: a str0m publisher sends three layers; subscribers get one, switched
//! at keyframes, as one continuous stream; unneeded layers are stopped at the publisher.

use str0m::media::{Rid, Simulcast, SimulcastLayer};
use str0m::rtp::ExtensionValues;

use super::*;
use crate::core::allocator::Wanted;
use crate::core::dependency::{self, DependencyDescriptor};
use crate::core::video::{Vp8Descriptor, Vp9Descriptor};
use crate::event::LayerInfo;

const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Bytes of one frame (one packet) per layer: 48, 144 and 264 kbit/s at 30 fps.
const FRAME_BYTES: [usize; 3] = [200, 600, 1100];

/// A VP8 frame of layer `l`: picture id `pic`, TL0PICIDX `tl0`, `tid_y` as the TID/Y/KEYIDX
/// byte, a keyframe header with the layer's size when `key`, padded to the layer's frame
/// size; the last byte names the layer.
fn frame(l: usize, pic: u16, tl0: u8, key: bool, tid_y: u8) -> Vec<u8> {
    let mut v = vec![0x90, 0xe0, 0x80 | (pic >> 8) as u8, pic as u8, tl0, tid_y];
    if key {
        let (w, h) = SIZES[l];
        v.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
    } else {
        v.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    pad(&mut v, l);
    v
}

/// The same as a VP9 frame of one layer (non-flexible mode, as Chromium sends each simulcast
/// layer): the descriptor with a 15-bit picture id, layer indices and TL0PICIDX, and on a
/// keyframe a scalability structure naming the layer's size. Every frame is a switching up
/// point (`U`), as libwebrtc marks its three temporal layers.
fn vp9_frame(l: usize, pic: u16, tl0: u8, key: bool, tid: u8) -> Vec<u8> {
    // I, L, B, E; P on inter frames, V on keyframes.
    let b0 = 0x80 | 0x20 | 0x08 | 0x04 | if key { 0x02 } else { 0x40 };
    let mut v = vec![b0, 0x80 | (pic >> 8) as u8, pic as u8, tid << 5 | 0x10, tl0];
    if key {
        let (w, h) = SIZES[l];
        // One spatial layer, with its size (Y), no picture group.
        v.push(0x10);
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
    }
    pad(&mut v, l);
    v
}

/// An H.264 frame of layer `l` (one NAL unit: IDR on a keyframe), whose second-to-last byte
/// names its temporal layer `tid` for the test to read: H.264 says nothing of it, only the
/// dependency descriptor does.
fn h264_frame(l: usize, key: bool, tid: u8) -> Vec<u8> {
    let mut v = vec![if key { 0x65 } else { 0x41 }, 0x88];
    v.resize(FRAME_BYTES[l] - 2, 0xee);
    v.push(tid);
    v.push(l as u8);
    v
}

/// The dependency descriptor of a one-packet `L1T3` frame in temporal layer `tid`, numbered
/// `number`; a keyframe's carries the template structure (templates 62 and 63 in temporal
/// layer 0, 0 in 1, 1 and 2 in 2), as libwebrtc sends it, up to its decode target
/// indications: a base frame is a switch point for all three decode targets, a TID 1
/// frame for the full rate only.
fn l1t3_descriptor(number: u16, key: bool, tid: u8) -> DependencyDescriptor {
    let template = if key {
        62
    } else {
        [63, 0, 1][usize::from(tid)]
    };
    let [hi, lo] = number.to_be_bytes();
    let mut wire = vec![0xc0 | template, hi, lo];
    if key {
        wire.extend_from_slice(&[0x87, 0xc2, 0x14, 0xea, 0xa8, 0x60, 0x41]);
    }
    DependencyDescriptor::parse(&wire).unwrap()
}

/// Pads a frame to layer `l`'s size; the last byte names the layer.
fn pad(v: &mut Vec<u8>, l: usize) {
    v.resize(FRAME_BYTES[l] - 1, 0xee);
    v.push(l as u8);
}

/// The publishing side of the scenario: per layer, its sequence number and picture ids
/// (each layer starts somewhere else, as real encoders do), and keyframes on request.
struct Publisher {
    client: usize,
    mid: Mid,
    codec: Codec,
    seq: [u64; 3],
    pic: [u16; 3],
    tl0: [u8; 3],
    ts: [u32; 3],
    sending: [bool; 3],
    frames: u64,
    /// Send each layer in three temporal layers, as Chromium does (`L1T3`).
    temporal: bool,
    /// Send each frame's dependency descriptor, numbering frames from this (the client
    /// must have the extension: [`join_publishing_described`]).
    described: Option<u16>,
    /// Per layer, the frame's place in the temporal pattern (0 at each keyframe).
    cycle: [usize; 3],
    /// Time between frames: 33 ms, about 30 per second.
    frame_interval: Duration,
    /// Keyframes asked for by the SFU, and keyframes sent.
    keyframes: (usize, usize),
}

/// `L1T3`: the temporal layer of each frame of a cycle, and whether it is a layer sync frame
/// (it refers to the base layer only).
const L1T3: [(u8, bool); 4] = [(0, false), (2, true), (1, true), (2, false)];

impl Publisher {
    fn new(client: usize, mid: Mid) -> Self {
        Publisher {
            client,
            mid,
            codec: Codec::Vp8,
            seq: [1_000, 20_000, 40_000],
            pic: [100, 9_000, 32_700],
            tl0: [10, 100, 250],
            ts: [1_000, 5_000_000, 4_000_000_000],
            sending: [true; 3],
            frames: 0,
            temporal: false,
            described: None,
            cycle: [0; 3],
            frame_interval: Duration::from_millis(33),
            keyframes: (0, 0),
        }
    }

    /// Sends one frame on every sending layer: a keyframe on the first frame, every 90th,
    /// and after a keyframe request for that layer.
    fn send_frame(&mut self, w: &mut World) {
        let asked: Vec<Option<Rid>> = std::mem::take(&mut w.clients[self.client].keyframe_rids);
        self.keyframes.0 += asked.len();
        for (l, name) in RIDS.iter().enumerate() {
            if !self.sending[l] {
                continue;
            }
            let rid = Rid::from(*name);
            let key = self.frames.is_multiple_of(90) || asked.contains(&Some(rid));
            if key {
                self.cycle[l] = 0;
                self.keyframes.1 += 1;
            }
            let (tid, sync) = if self.temporal {
                L1T3[self.cycle[l] % 4]
            } else {
                (0, false)
            };
            let payload = match self.codec {
                Codec::Vp9 => vp9_frame(l, self.pic[l], self.tl0[l], key, tid),
                Codec::H264 => h264_frame(l, key, tid),
                _ => frame(
                    l,
                    self.pic[l],
                    self.tl0[l],
                    key,
                    (tid << 6) | if sync { 0x20 } else { 0 },
                ),
            };
            let pt = w.clients[self.client]
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == self.codec)
                .unwrap()
                .pt();
            let now = w.now;
            let mut api = w.clients[self.client].rtc.direct_api();
            let tx = api.stream_tx_by_mid(self.mid, Some(rid)).unwrap();
            let mut ext = ExtensionValues::default();
            if let Some(number) = self.described.as_mut() {
                ext.user_values.set(l1t3_descriptor(*number, key, tid));
                *number = number.wrapping_add(1);
            }
            tx.write_rtp(
                RtpWrite::new(pt, self.seq[l].into(), self.ts[l], now, payload)
                    .marker(true)
                    .ext_vals(ext),
            );
            w.flush_client(self.client);
            self.seq[l] += 1;
            self.pic[l] = (self.pic[l] + 1) % (1 << 15);
            self.cycle[l] += 1;
            // TL0PICIDX counts base layer frames: the frames above it carry the last one's.
            if !self.temporal || self.cycle[l].is_multiple_of(4) {
                self.tl0[l] = self.tl0[l].wrapping_add(1);
            }
            self.ts[l] = self.ts[l].wrapping_add(3000);
        }
        self.frames += 1;
    }

    /// Sends frames for `d` of simulated time.
    fn run(&mut self, w: &mut World, d: Duration) {
        let end = w.now + d;
        while w.now < end {
            self.send_frame(w);
            w.run(self.frame_interval);
        }
    }
}

/// `name` joins and publishes a simulcast camera (and a microphone when `mic`); returns its
/// client, camera mid and microphone mid.
fn join_publishing(w: &mut World, name: &str, mic: bool) -> (usize, Mid, Option<Mid>) {
    publishing_with(w, name, mic, Rtc::builder())
}

/// As [`join_publishing`], with a client that sends the dependency descriptor extension.
fn join_publishing_described(w: &mut World, name: &str) -> (usize, Mid) {
    let config = Rtc::builder().set_extension(dependency::ID, dependency::extension());
    let (a, mid, _) = publishing_with(w, name, false, config);
    (a, mid)
}

fn publishing_with(
    w: &mut World,
    name: &str,
    mic: bool,
    config: str0m::RtcConfig,
) -> (usize, Mid, Option<Mid>) {
    let a = w.join_custom(name, Grants::default(), config);
    let mut sim = Simulcast::new();
    for r in RIDS {
        sim.add_send_layer(SimulcastLayer::new(r));
    }
    let c = &mut w.clients[a];
    let mut change = c.rtc.sdp_api();
    let mid = change.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("s".into()),
        None,
        Some(sim),
    );
    let mic = mic.then(|| {
        change.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("s".into()),
            None,
            None,
        )
    });
    let (offer, pending) = change.apply().unwrap();
    let reply = w
        .core
        .offer(w.now, &room(), &name.into(), &offer.to_sdp_string(), &[])
        .unwrap();
    assert!(
        reply.answer.contains("a=simulcast:recv"),
        "the answer accepts the layers:\n{}",
        reply.answer
    );
    let answer = SdpAnswer::from_sdp_string(&reply.answer).unwrap();
    w.clients[a]
        .rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .unwrap();
    w.flush_client(a);
    (a, mid, mic)
}

/// Alice publishes a simulcast VP8 camera; Bob receives it.
fn simulcast_room(congestion_control: CongestionControl) -> (World, Publisher, usize, TrackId) {
    simulcast_room_of(Codec::Vp8, congestion_control)
}

/// Alice publishes a simulcast camera in `codec`; Bob receives it.
fn simulcast_room_of(
    codec: Codec,
    congestion_control: CongestionControl,
) -> (World, Publisher, usize, TrackId) {
    let mut w = World::with_config(CoreConfig {
        congestion_control,
        ..config(Limits::default())
    });
    // Without a payload descriptor the SFU reads, the publisher describes its frames with the
    // dependency descriptor, as Chromium does.
    let described = codec == Codec::H264;
    let (a, mid) = match described {
        true => join_publishing_described(&mut w, "alice"),
        false => {
            let (a, mid, _) = join_publishing(&mut w, "alice", false);
            (a, mid)
        }
    };
    let b = w.join("bob");
    w.offer(b, &[(MediaKind::Audio, Direction::RecvOnly)]);
    w.run(Duration::from_secs(1));
    let mut publisher = Publisher::new(a, mid);
    publisher.codec = codec;
    publisher.described = described.then_some(1000);
    publisher.run(&mut w, Duration::from_millis(300));
    w.answer_pending_offers();
    let track = first_published(&w);
    (w, publisher, b, track)
}

/// The first track published in the world.
pub(super) fn first_published(w: &World) -> TrackId {
    w.events
        .iter()
        .find_map(|e| match e {
            SfuEvent::TrackPublished { track_id, .. } => Some(track_id.clone()),
            _ => None,
        })
        .expect("published")
}

/// A tile the size of the quarter layer.
const QUARTER: Wanted = Wanted::Size {
    width: 320,
    height: 180,
};

/// Asserts that the video client `b` received from its `(received, headers)` marks on has
/// no sequence gap; returns how many packets that was.
fn assert_one_stream(w: &World, b: usize, (from, headers_from): (usize, usize)) -> usize {
    let seqs: Vec<u64> = w.clients[b].headers[headers_from..]
        .iter()
        .zip(&w.clients[b].received[from..])
        .filter(|(_, (_, p))| p.len() >= 200)
        .map(|(h, _)| h.0)
        .collect();
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "sequence gap");
    }
    seqs.len()
}

/// Bob's `track:settings` for `track`.
pub(super) fn ask(w: &mut World, track: &TrackId, wanted: Wanted) {
    ask_fps(w, track, wanted, None);
}

/// Bob's `track:settings` for `track`, with a frame rate.
fn ask_fps(w: &mut World, track: &TrackId, wanted: Wanted, fps: Option<u32>) {
    w.core
        .set_track_settings(w.now, &room(), &"bob".into(), track, wanted, fps)
        .unwrap();
}

pub(super) fn layers_of(w: &World, who: &str) -> Vec<Option<LayerInfo>> {
    w.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::LayerChanged {
                participant, layer, ..
            } if participant.user() == who => Some(layer.clone()),
            _ => None,
        })
        .collect()
}

fn qualities(w: &World) -> Vec<Vec<bool>> {
    w.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::TrackQuality { layers, .. } => {
                Some(layers.iter().map(|l| l.active).collect())
            }
            _ => None,
        })
        .collect()
}

/// Layer (last payload byte) of each video packet Bob received.
fn received_layers(w: &World, b: usize) -> Vec<u8> {
    w.clients[b]
        .received
        .iter()
        .filter(|(_, p)| p.len() >= 200)
        .map(|(_, p)| *p.last().unwrap())
        .collect()
}

#[test]
fn a_subscriber_gets_one_layer_switched_at_keyframes_as_one_stream() {
    let (mut w, mut publisher, b, track) = simulcast_room(CongestionControl::Enabled);
    publisher.run(&mut w, Duration::from_secs(2));
    let got = received_layers(&w, b);
    assert!(got.len() > 40, "bob got {} video packets", got.len());
    assert_eq!(
        *got.last().unwrap(),
        2,
        "the best layer by default: {got:?}"
    );
    assert_eq!(
        layers_of(&w, "bob")
            .last()
            .cloned()
            .flatten()
            .map(|l| (l.rid, l.width, l.height)),
        Some((Some("f".into()), 1280, 720))
    );

    // A small tile: down to the quarter layer, at its next keyframe.
    let before = w.clients[b].received.len();
    ask(&mut w, &track, QUARTER);
    publisher.run(&mut w, Duration::from_secs(1));
    let after: Vec<u8> = received_layers(&w, b).split_off(before.min(got.len()));
    assert_eq!(*after.last().unwrap(), 0, "{after:?}");
    assert_eq!(
        layers_of(&w, "bob").last().cloned().flatten().unwrap().rid,
        Some("q".into())
    );

    // Back up to full size.
    ask(&mut w, &track, Wanted::Highest);
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(*received_layers(&w, b).last().unwrap(), 2);

    // Through both switches Bob saw one stream: sequence numbers without a gap, timestamps
    // rising, picture ids and TL0PICIDX each one more than the last.
    let video: Vec<(u64, u32)> = w.clients[b]
        .headers
        .iter()
        .zip(&w.clients[b].received)
        .filter(|(_, (_, p))| p.len() >= 200)
        .map(|(h, _)| *h)
        .collect();
    for pair in video.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "sequence gap: {pair:?}");
        let step = pair[1].1.wrapping_sub(pair[0].1);
        assert!(step > 0 && step < 90_000, "timestamp step {step}: {pair:?}");
    }
    let pictures: Vec<(u16, u8)> = w.clients[b]
        .received
        .iter()
        .filter(|(_, p)| p.len() >= 200)
        .map(|(_, p)| {
            let d = Vp8Descriptor::parse(p).unwrap();
            (d.picture_id.unwrap().0, d.tl0_pic_idx.unwrap().0)
        })
        .collect();
    for pair in pictures.windows(2) {
        assert_eq!(
            pair[1].0,
            (pair[0].0 + 1) % (1 << 15),
            "picture id: {pair:?}"
        );
        assert_eq!(pair[1].1, pair[0].1.wrapping_add(1), "TL0PICIDX: {pair:?}");
    }
    let switches = layers_of(&w, "bob").len();
    assert!(switches >= 3, "{switches} track:layer events");
    assert!(w.core.metrics.layer_switches.get() >= 3);
}

#[test]
fn picture_ids_continue_across_a_switch_made_soon_after_the_start_in_vp8_and_vp9() {
    // Each simulcast layer is its own encoder with picture ids and TL0PICIDX of its own;
    // across a switch the subscriber must see them continue. The top layer's ids start high
    // (32,700 of 32,768), as a random first id does half the time, and the switch comes
    // before they wrap.
    for codec in [Codec::Vp8, Codec::Vp9] {
        let (mut w, mut publisher, b, track) =
            simulcast_room_of(codec, CongestionControl::Disabled);
        publisher.run(&mut w, Duration::from_secs(1));
        ask(&mut w, &track, QUARTER);
        publisher.run(&mut w, Duration::from_secs(1));
        ask(&mut w, &track, Wanted::Highest);
        publisher.run(&mut w, Duration::from_secs(1));
        let layers = received_layers(&w, b);
        assert!(
            layers.contains(&0) && layers.first() == Some(&2) && layers.last() == Some(&2),
            "{codec}: down to q and back up to f: {layers:?}"
        );
        let pictures: Vec<(u16, u8)> = w.clients[b]
            .received
            .iter()
            .filter(|(_, p)| p.len() >= 200)
            .map(|(_, p)| match codec {
                Codec::Vp9 => {
                    let d = Vp9Descriptor::parse(p).unwrap();
                    (d.picture_id.unwrap().0, d.tl0_pic_idx.unwrap().0)
                }
                _ => {
                    let d = Vp8Descriptor::parse(p).unwrap();
                    (d.picture_id.unwrap().0, d.tl0_pic_idx.unwrap().0)
                }
            })
            .collect();
        assert!(pictures.len() > 60, "{codec}: {} frames", pictures.len());
        for pair in pictures.windows(2) {
            assert_eq!(
                pair[1].0,
                (pair[0].0 + 1) % (1 << 15),
                "{codec}: picture id: {pair:?}"
            );
            assert_eq!(
                pair[1].1,
                pair[0].1.wrapping_add(1),
                "{codec}: TL0PICIDX: {pair:?}"
            );
        }
    }
}

#[test]
fn unneeded_layers_are_stopped_at_the_publisher_and_resumed_at_once() {
    // Without congestion control, so that what is asked is what is allocated at once (the
    // in-memory link's estimate is the subject of the bandwidth tests).
    let (mut w, mut publisher, _b, track) = simulcast_room(CongestionControl::Disabled);
    publisher.run(&mut w, Duration::from_secs(1));
    ask(&mut w, &track, QUARTER);
    publisher.run(&mut w, DYNACAST_WAIT);
    assert_eq!(
        qualities(&w).last(),
        Some(&vec![true, false, false]),
        "only the quarter layer is needed: {:?}",
        qualities(&w)
    );
    // The publisher obeys.
    publisher.sending = [true, false, false];
    publisher.run(&mut w, Duration::from_secs(2));

    // The subscriber wants full size: the top layer is asked for at once.
    let asked = qualities(&w).len();
    ask(&mut w, &track, Wanted::Highest);
    w.collect_events();
    assert_eq!(qualities(&w).len(), asked + 1);
    assert_eq!(qualities(&w).last(), Some(&vec![true, false, true]));
    publisher.sending = [true, false, true];
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(*received_layers(&w, 1).last().unwrap(), 2);

    // Paused: nothing is forwarded, and every layer stops.
    ask(&mut w, &track, Wanted::Paused);
    let before = received_layers(&w, 1).len();
    publisher.run(&mut w, DYNACAST_WAIT);
    assert_eq!(
        received_layers(&w, 1).len(),
        before,
        "nothing after the pause"
    );
    assert_eq!(layers_of(&w, "bob").last(), Some(&None));
    assert_eq!(qualities(&w).last(), Some(&vec![false, false, false]));
}

/// Longer than the dynacast delay, with a tick to spare.
const DYNACAST_WAIT: Duration = Duration::from_millis(2_600);

use crate::core::adaptive::DYNACAST_DELAY;
const _: () = assert!(DYNACAST_DELAY.as_millis() < DYNACAST_WAIT.as_millis());

#[test]
fn a_receive_cap_lowers_the_layer_and_lifting_it_restores_it() {
    // Without the estimator, so the cap alone decides.
    let (mut w, mut publisher, b, _track) = simulcast_room(CongestionControl::Disabled);
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(*received_layers(&w, b).last().unwrap(), 2);
    // 200 kbit/s holds the half layer (144 kbit/s) but not the full one (264 kbit/s).
    w.core
        .set_receive_cap(w.now, &room(), &"bob".into(), Some(200_000))
        .unwrap();
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(*received_layers(&w, b).last().unwrap(), 1);
    // Too little for any layer: paused, counted as congestion.
    w.core
        .set_receive_cap(w.now, &room(), &"bob".into(), Some(10_000))
        .unwrap();
    let before = received_layers(&w, b).len();
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(received_layers(&w, b).len(), before);
    let congested = w
        .core
        .metrics
        .dropped
        .with_label_values(&["congestion"])
        .get();
    assert!(congested > 0, "drops for congestion are counted");
    w.core
        .set_receive_cap(w.now, &room(), &"bob".into(), None)
        .unwrap();
    publisher.run(&mut w, Duration::from_secs(1));
    assert_eq!(*received_layers(&w, b).last().unwrap(), 2);
}

#[test]
fn a_link_short_of_the_lowest_layer_gets_it_at_a_lower_frame_rate_not_a_pause() {
    // Three temporal layers per simulcast layer, as Chromium sends them. The quarter layer
    // costs 48 kbit/s at its full frame rate; 12 kbit/s of it is the base temporal layer
    // (every fourth frame) and 24 kbit/s the base and the middle one.
    let (mut w, mut publisher, b, _track) = simulcast_room(CongestionControl::Disabled);
    publisher.temporal = true;
    publisher.run(&mut w, Duration::from_secs(2));
    let cap = |w: &mut World, bps| {
        w.core
            .set_receive_cap(w.now, &room(), &"bob".into(), bps)
            .unwrap();
    };
    // Bob's frames from `from` on: (layer, picture id, TL0PICIDX, TID).
    let frames = |w: &World, from: usize| -> Vec<(u8, u16, u8, u8)> {
        w.clients[b].received[from..]
            .iter()
            .filter(|(_, p)| p.len() >= 200)
            .map(|(_, p)| {
                let d = Vp8Descriptor::parse(p).unwrap();
                (
                    *p.last().unwrap(),
                    d.picture_id.unwrap().0,
                    d.tl0_pic_idx.unwrap().0,
                    d.temporal.unwrap().0,
                )
            })
            .collect()
    };
    let from = w.clients[b].received.len();
    let headers_from = w.clients[b].headers.len();
    for (bps, tids) in [
        (Some(30_000), vec![0, 1]),
        (Some(15_000), vec![0]),
        (Some(200_000), vec![0, 1, 2]),
    ] {
        cap(&mut w, bps);
        let mark = w.clients[b].received.len();
        // Long enough for a sync frame, and for the rates to be measured again.
        publisher.run(&mut w, Duration::from_secs(2));
        let late: Vec<(u8, u16, u8, u8)> = frames(&w, mark).split_off(5);
        assert!(
            late.iter().all(|f| f.0 == 0 || bps == Some(200_000)),
            "{bps:?}: the quarter layer: {late:?}"
        );
        let mut seen: Vec<u8> = late.iter().map(|f| f.3).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, tids, "{bps:?}: temporal layers forwarded");
    }
    // Too little even for the base temporal layer: paused.
    cap(&mut w, Some(5_000));
    publisher.run(&mut w, Duration::from_millis(500));
    let mark = w.clients[b].received.len();
    publisher.run(&mut w, Duration::from_secs(1));
    assert!(
        frames(&w, mark).is_empty(),
        "paused: {:?}",
        frames(&w, mark)
    );

    // Through all of it Bob saw one stream: no sequence gap, and picture ids one apart
    // until the pause.
    let until_pause = frames(&w, from);
    assert_one_stream(&w, b, (from, headers_from));
    for pair in until_pause.windows(2) {
        assert_eq!(
            pair[1].1,
            (pair[0].1 + 1) % (1 << 15),
            "picture id: {pair:?}"
        );
    }
    assert!(until_pause.len() > 60, "{} frames", until_pause.len());
}

/// (layer, TID, picture id) of each frame `client` received from its `from`th packet on
/// (H.264 has no picture id: its frames count as one apart).
fn received_frames(w: &World, client: usize, from: usize, codec: Codec) -> Vec<(u8, u8, u16)> {
    w.clients[client].received[from..]
        .iter()
        .filter(|(_, p)| p.len() >= 200)
        .enumerate()
        .map(|(i, (_, p))| match codec {
            Codec::Vp9 => {
                let d = Vp9Descriptor::parse(p).unwrap();
                let id = d.picture_id.unwrap().0;
                (*p.last().unwrap(), d.temporal.unwrap(), id)
            }
            Codec::H264 => (*p.last().unwrap(), p[p.len() - 2], i as u16),
            _ => {
                let d = Vp8Descriptor::parse(p).unwrap();
                let id = d.picture_id.unwrap().0;
                (*p.last().unwrap(), d.temporal.unwrap().0, id)
            }
        })
        .collect()
}

#[test]
fn a_higher_frame_rate_starts_at_the_streams_switch_points_without_a_keyframe() {
    // VP8 marks them with its layer sync bit, VP9 with its switching up point bit, and
    // H.264 (like AV1, and Chromium's VP8) through the dependency descriptor.
    for codec in [Codec::Vp8, Codec::Vp9, Codec::H264] {
        let (mut w, mut publisher, b, track) =
            simulcast_room_of(codec, CongestionControl::Disabled);
        publisher.temporal = true;
        publisher.run(&mut w, Duration::from_secs(6));
        ask_fps(&mut w, &track, Wanted::Highest, Some(5));
        publisher.run(&mut w, Duration::from_secs(2));
        let before = publisher.keyframes;
        let mark = w.clients[b].received.len();
        ask_fps(&mut w, &track, Wanted::Highest, None);
        publisher.run(&mut w, Duration::from_millis(400));
        assert_eq!(
            publisher.keyframes, before,
            "{codec}: no keyframe asked for or sent"
        );
        // Within one cycle of the pattern (4 frames) every temporal layer flows again.
        let tids: Vec<u8> = received_frames(&w, b, mark, codec)
            .iter()
            .map(|f| f.1)
            .collect();
        let first_top = tids.iter().position(|t| *t == 2);
        assert!(
            first_top.is_some_and(|i| i <= 5),
            "{codec}: temporal layers after the rise {tids:?}"
        );
        let told = layers_of(&w, "bob").last().cloned().flatten().unwrap();
        assert_eq!(
            told.frame_rate.map(|f| f >= 20),
            Some(true),
            "{codec}: {told:?}"
        );
    }
}

#[test]
fn a_subscriber_that_asks_for_fewer_frames_gets_only_the_temporal_layers_that_give_them() {
    for codec in [Codec::Vp8, Codec::Vp9, Codec::H264] {
        fewer_frames_asked_for(codec);
    }
}

fn fewer_frames_asked_for(codec: Codec) {
    // Three temporal layers per simulcast layer at 30 frames per second, as Chromium sends
    // them; no estimator, so only what Bob asks for decides.
    let (mut w, mut publisher, b, track) = simulcast_room_of(codec, CongestionControl::Disabled);
    publisher.temporal = true;
    // The keyframes asked for at the start are all base layer frames: long enough for the
    // smoothed frame rates to forget them.
    publisher.run(&mut w, Duration::from_secs(6));
    let from = w.clients[b].received.len();
    let headers_from = w.clients[b].headers.len();
    // (frames per second asked for, TIDs forwarded, frame rate announced in `track:layer`)
    for (fps, tids, announced) in [
        (Some(15), vec![0, 1], 15),
        (Some(5), vec![0], 8),
        (Some(12), vec![0, 1], 15),
        (None, vec![0, 1, 2], 30),
    ] {
        ask_fps(&mut w, &track, Wanted::Highest, fps);
        let mark = w.clients[b].received.len();
        publisher.run(&mut w, Duration::from_secs(2));
        // (layer, TID, picture id) of each frame Bob got (H.264 has no picture id: its
        // frames count as one apart).
        let late: Vec<(u8, u8, u16)> = received_frames(&w, b, mark, codec)
            .into_iter()
            .skip(5)
            .collect();
        assert!(
            late.iter().all(|f| f.0 == 2),
            "{codec} {fps:?}: still the full layer: {late:?}"
        );
        let mut seen: Vec<u8> = late.iter().map(|f| f.1).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, tids, "{codec} {fps:?}: temporal layers forwarded");
        // VP8's picture ids close up over the frames left out; VP9's keep the gaps, from
        // which its receiver tells which frames are missing (see `tracks`).
        let steps: Vec<u16> = late
            .windows(2)
            .map(|f| f[1].2.wrapping_sub(f[0].2) % (1 << 15))
            .collect();
        // One frame in two, or in four, forwarded; the periodic keyframe restarts the
        // pattern, so a step may be shorter there.
        let gap = match (codec, tids.len()) {
            (Codec::Vp9, 1) => 4,
            (Codec::Vp9, 2) => 2,
            _ => 1,
        };
        let regular = steps.iter().filter(|d| **d == gap).count();
        assert!(
            steps.iter().all(|d| (1..=gap).contains(d)) && regular * 10 >= steps.len() * 9,
            "{codec} {fps:?}: picture id steps {steps:?}"
        );
        let told = layers_of(&w, "bob").last().cloned().flatten().unwrap();
        assert_eq!(told.rid.as_deref(), Some("f"));
        assert_eq!(
            w.core.metrics.reduced_frame_rate.get(),
            i64::from(fps.is_some()),
            "{codec} {fps:?}: subscriptions at a reduced frame rate"
        );
        let rate = told.frame_rate.expect("measured");
        assert!(
            rate.abs_diff(announced) <= 1,
            "{codec} {fps:?}: announced {rate} frames per second: {:?}",
            layers_of(&w, "bob")
        );
    }
    // One stream throughout, and nothing counted as a drop for congestion: Bob asked.
    let packets = assert_one_stream(&w, b, (from, headers_from));
    assert!(packets > 100, "{packets} packets");
    let congestion = w
        .core
        .metrics
        .dropped
        .with_label_values(&["congestion"])
        .get();
    assert_eq!(
        congestion, 0,
        "frames left out on request are not congestion"
    );
}

#[test]
fn fewer_frames_asked_for_fit_a_higher_layer_into_the_same_budget() {
    let (mut w, mut publisher, b, track) = simulcast_room(CongestionControl::Disabled);
    publisher.temporal = true;
    publisher.run(&mut w, Duration::from_secs(6));
    // 200 kbit/s holds the half layer (144 kbit/s) but not the full one (264 kbit/s) at
    // every frame; half the full layer's frames cost about 132 kbit/s.
    w.core
        .set_receive_cap(w.now, &room(), &"bob".into(), Some(200_000))
        .unwrap();
    publisher.run(&mut w, Duration::from_secs(2));
    assert_eq!(*received_layers(&w, b).last().unwrap(), 1);
    ask_fps(&mut w, &track, Wanted::Highest, Some(15));
    publisher.run(&mut w, Duration::from_secs(2));
    assert_eq!(
        *received_layers(&w, b).last().unwrap(),
        2,
        "the full layer at 15 fps"
    );
    let told = layers_of(&w, "bob").last().cloned().flatten().unwrap();
    assert_eq!(
        (
            told.rid.as_deref(),
            told.frame_rate.map(|f| f.abs_diff(15) <= 1)
        ),
        (Some("f"), Some(true)),
        "{told:?}"
    );
}

#[test]
fn track_layer_is_sent_again_when_the_publishers_frame_rate_drifts_and_not_while_it_holds() {
    let (mut w, mut publisher, _, _) = simulcast_room(CongestionControl::Disabled);
    publisher.run(&mut w, Duration::from_secs(4));
    let told = layers_of(&w, "bob");
    let first = told.first().cloned().flatten().expect("a layer");
    let last = told.last().cloned().flatten().expect("a layer");
    assert_eq!(last.rid.as_deref(), Some("f"), "{told:?}");
    assert!(
        last.frame_rate.is_some_and(|f| f.abs_diff(30) <= 1),
        "a rate announced unmeasured ({:?}) is told once measured: {told:?}",
        first.frame_rate
    );

    // The camera slows to 15 frames per second (low light): same layer, half the frames.
    let mark = told.len();
    publisher.frame_interval = Duration::from_millis(66);
    publisher.run(&mut w, Duration::from_secs(5));
    let told = layers_of(&w, "bob");
    let again = &told[mark..];
    let [Some(last)] = again else {
        panic!("told again once, where the measurement settles: {again:?}");
    };
    assert_eq!(last.rid.as_deref(), Some("f"));
    // Within the drift that would be told again (3 frames per second at this rate).
    assert!(
        last.frame_rate.is_some_and(|f| (15..=17).contains(&f)),
        "{again:?}"
    );

    // Steady at 15: nothing more to tell.
    let mark = told.len();
    publisher.run(&mut w, Duration::from_secs(6));
    assert_eq!(
        layers_of(&w, "bob")[mark..],
        [],
        "no announcement at a steady rate"
    );
}

#[test]
fn the_subscription_gauges_add_up_every_workers_subscriptions() {
    // Two cores, as two media workers are, each with one subscriber on the full layer,
    // counting into the same gauges from here on.
    let (mut w1, mut p1, _, _) = simulcast_room(CongestionControl::Disabled);
    let (mut w2, mut p2, _, _) = simulcast_room(CongestionControl::Disabled);
    let shared = Metrics::unregistered().unwrap();
    for w in [&mut w1, &mut w2] {
        w.core.metrics = shared.clone();
        w.core.subscription_counts = Default::default();
    }
    for _ in 0..3 {
        p1.run(&mut w1, Duration::from_millis(400));
        p2.run(&mut w2, Duration::from_millis(400));
    }
    let at = |layer: &str| {
        shared
            .subscriptions_by_layer
            .with_label_values(&[layer])
            .get()
    };
    assert_eq!(
        (at("2"), at("none")),
        (2, 0),
        "one subscriber on each worker"
    );
    // When a core empties, its share goes at once: no tick runs on an empty core.
    for who in ["bob", "alice"] {
        w2.core.leave(w2.now, &room(), &who.into()).unwrap();
    }
    assert_eq!(
        (at("2"), at("none")),
        (1, 0),
        "one worker's subscriber left"
    );
}

#[test]
fn a_short_budget_goes_to_the_active_speakers_camera_first() {
    let mut w = World::with_config(CoreConfig {
        congestion_control: CongestionControl::Disabled,
        ..config(Limits::default())
    });
    let (a, cam_a, mic_a) = join_publishing(&mut w, "alice", true);
    let (c, cam_c, mic_c) = join_publishing(&mut w, "carol", true);
    let b = w.join("bob");
    w.offer(b, &[(MediaKind::Audio, Direction::RecvOnly)]);
    w.run(Duration::from_secs(1));
    let mut alice = Publisher::new(a, cam_a);
    let mut carol = Publisher::new(c, cam_c);
    let (mic_a, mic_c) = (mic_a.unwrap(), mic_c.unwrap());
    let mut seq = 0;
    // Carol speaks, Alice is silent; Bob's downlink holds one full layer and one quarter.
    w.core
        .set_receive_cap(w.now, &room(), &"bob".into(), Some(400_000))
        .unwrap();
    let mut speak = |w: &mut World, loud: (usize, Mid), quiet: (usize, Mid), d: Duration| {
        let end = w.now + d;
        while w.now < end {
            alice.send_frame(w);
            carol.send_frame(w);
            w.send_level(loud.0, loud.1, seq, 10);
            w.send_level(quiet.0, quiet.1, seq, 127);
            seq += 1;
            w.answer_pending_offers();
            w.run(Duration::from_millis(33));
        }
    };
    speak(&mut w, (c, mic_c), (a, mic_a), Duration::from_secs(3));
    // Whether the last layer Bob was told of for `who`'s camera is the full one.
    let full_from = |w: &World, who: &str| {
        let camera = w
            .core
            .room_tracks(&room())
            .into_iter()
            .find(|t| t.participant.user() == who && t.kind == TrackKind::Video)
            .unwrap()
            .track_id;
        let last = w.events.iter().rev().find_map(|e| match e {
            SfuEvent::LayerChanged {
                participant,
                track_id,
                layer,
                ..
            } if participant.user() == "bob" && *track_id == camera => Some(layer.clone()),
            _ => None,
        });
        last.flatten().and_then(|l| l.rid) == Some("f".to_owned())
    };
    assert!(full_from(&w, "carol"), "the speaker gets the full layer");
    assert!(!full_from(&w, "alice"));
    // Alice takes over: the full layer follows her.
    speak(&mut w, (a, mic_a), (c, mic_c), Duration::from_secs(3));
    assert!(
        full_from(&w, "alice"),
        "the new speaker gets the full layer"
    );
    assert!(!full_from(&w, "carol"));
}
