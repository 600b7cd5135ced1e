//! Spatial layers in one VP9 or AV1 stream (SVC): a subscriber gets the layers up to the one
//! its tile needs, as one stream with no gaps in its numbers, each picture ending with a
//! marker.

use str0m::rtp::ExtensionValues;

use super::simulcast::{ask, first_published, layers_of};
use super::*;
use crate::core::allocator::Wanted;
use crate::core::dependency::{self, DependencyDescriptor};

const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Bytes of each layer's frame (one packet each).
const FRAME_BYTES: [usize; 3] = [200, 500, 900];

/// One packet of spatial layer `sid` of picture `pic`: a whole layer frame (`B` and `E`), with
/// the scalability structure (three layers and their sizes) on a keyframe's base layer. The
/// last byte names the layer.
fn layer_frame(sid: u8, pic: u16, key: bool) -> Vec<u8> {
    let structure = key && sid == 0;
    let mut b0 = 0x80 | 0x20 | 0x08 | 0x04; // I, L, B, E; non-flexible
    if !key {
        b0 |= 0x40; // P
    }
    if structure {
        b0 |= 0x02; // V
    }
    // Picture id (15 bits), layer indices (TID 0, SID, D on the upper layers), TL0PICIDX.
    let mut v = vec![
        b0,
        0x80 | (pic >> 8) as u8,
        pic as u8,
        (sid << 1) | u8::from(sid > 0),
        pic as u8,
    ];
    if structure {
        // N_S - 1 = 2, Y: sizes follow.
        v.push((2 << 5) | 0x10);
        for (w, h) in SIZES {
            v.extend_from_slice(&w.to_be_bytes());
            v.extend_from_slice(&h.to_be_bytes());
        }
    }
    v.resize(FRAME_BYTES[usize::from(sid)] - 1, 0xee);
    v.push(sid);
    v
}

/// One packet of spatial layer `sid` of AV1: an aggregation header (one OBU; `N` on a
/// keyframe's base layer), padded as VP9's; the spatial layer is told only by the dependency
/// descriptor ([`l3_descriptor`]).
fn av1_layer_frame(sid: u8, key: bool) -> Vec<u8> {
    let mut v = vec![0x10 | if key && sid == 0 { 0x08 } else { 0 }];
    v.resize(FRAME_BYTES[usize::from(sid)] - 1, 0xee);
    v.push(sid);
    v
}

/// The dependency descriptor of a one-packet frame of spatial layer `sid`, numbered `number`:
/// `L3T1` with templates 0 and 1 in spatial layer 0, 2 and 3 in layer 1, 4 and 5 in layer 2
/// (the first of each pair for a keyframe's picture). A keyframe's base layer carries the
/// structure: three decode targets, their indications, frame differences, no chains, and
/// the layers' sizes ([`SIZES`]).
fn l3_descriptor(number: u16, sid: u8, key: bool) -> DependencyDescriptor {
    let template = sid * 2 + u8::from(!key);
    let [hi, lo] = number.to_be_bytes();
    let mut wire = vec![0xc0 | template, hi, lo];
    if key && sid == 0 {
        let mut bits = String::from("1 0000 000000 00010 00 10 00 10 00 11");
        bits += " 101010 101111 001010 001011 000010 000011";
        bits += " 0 10000 0 10000 0 10010 0 10000 0 10010 0 00 1";
        for (w, h) in SIZES {
            bits += &format!(" {:016b} {:016b}", w - 1, h - 1);
        }
        let bits: Vec<u8> = bits
            .bytes()
            .filter(|b| *b != b' ')
            .map(|b| b - b'0')
            .collect();
        wire.extend(
            bits.chunks(8)
                .map(|c| c.iter().enumerate().fold(0, |v, (i, b)| v | (b << (7 - i)))),
        );
    }
    DependencyDescriptor::parse(&wire).unwrap()
}

/// Alice's camera: three spatial layers per picture, a keyframe every 90 pictures and
/// on request.
struct SvcPublisher {
    codec: Codec,
    client: usize,
    mid: Mid,
    seq: u64,
    pic: u16,
    ts: u32,
    frames: u64,
    /// Every this many pictures, the encoder skips the higher layers' frames (as one short of
    /// time or bits does): the picture is layer 0 alone, and nothing marks its end.
    skip_upper_every: Option<u64>,
}

impl SvcPublisher {
    fn send_picture(&mut self, w: &mut World) {
        let asked = std::mem::take(&mut w.clients[self.client].keyframe_requests) > 0;
        let key = self.frames.is_multiple_of(90) || asked;
        let pt = w.clients[self.client]
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == self.codec)
            .unwrap()
            .pt();
        let skipped = self
            .skip_upper_every
            .is_some_and(|n| !key && self.frames % n == n / 2);
        let layers = if skipped { 1 } else { 3 };
        for sid in 0..layers {
            let mut ext = ExtensionValues::default();
            let payload = if self.codec == Codec::Av1 {
                let number = (self.seq % (1 << 16)) as u16;
                ext.user_values.set(l3_descriptor(number, sid, key));
                av1_layer_frame(sid, key)
            } else {
                layer_frame(sid, self.pic, key)
            };
            let now = w.now;
            let mut api = w.clients[self.client].rtc.direct_api();
            let tx = api.stream_tx_by_mid(self.mid, None).unwrap();
            // The marker ends the picture: the top layer's packet.
            tx.write_rtp(
                RtpWrite::new(pt, self.seq.into(), self.ts, now, payload)
                    .marker(sid == 2)
                    .ext_vals(ext),
            );
            w.flush_client(self.client);
            self.seq += 1;
        }
        self.pic = (self.pic + 1) % (1 << 15);
        self.ts = self.ts.wrapping_add(3000);
        self.frames += 1;
    }

    fn run(&mut self, w: &mut World, d: Duration) {
        let end = w.now + d;
        while w.now < end {
            self.send_picture(w);
            w.run(Duration::from_millis(33));
        }
    }
}

/// Alice publishes an SVC camera in `codec` (VP9 or AV1, the only codec her client offers);
/// Bob receives it. Returns the world, the publisher, Bob's client and the track.
fn svc_room(codec: Codec) -> (World, SvcPublisher, usize, TrackId) {
    let mut w = World::new(Limits::default());
    let config = Rtc::builder()
        .clear_codecs()
        .enable_vp9(codec == Codec::Vp9)
        .enable_av1(codec == Codec::Av1)
        .set_extension(dependency::ID, dependency::extension());
    let a = w.join_custom("alice", Grants::default(), config);
    let mids = w.offer(a, &[(MediaKind::Video, Direction::SendOnly)]);
    let b = w.join("bob");
    w.offer(b, &[(MediaKind::Audio, Direction::RecvOnly)]);
    w.run(Duration::from_secs(1));
    let mut publisher = SvcPublisher {
        codec,
        client: a,
        mid: mids[0],
        seq: 7_000,
        pic: 500,
        ts: 90_000,
        frames: 0,
        skip_upper_every: None,
    };
    publisher.run(&mut w, Duration::from_millis(300));
    w.answer_pending_offers();
    let track = first_published(&w);
    (w, publisher, b, track)
}

/// (spatial layer, sequence number, marker) of each video packet Bob received since `from`.
fn received(w: &World, b: usize, from: usize) -> Vec<(u8, u64, bool)> {
    let c = &w.clients[b];
    (from..c.received.len())
        .filter(|&i| c.received[i].1.len() >= 200)
        .map(|i| {
            (
                *c.received[i].1.last().unwrap(),
                c.headers[i].0,
                c.markers[i],
            )
        })
        .collect()
}

#[test]
fn a_small_tile_gets_the_lower_spatial_layers_as_one_stream_and_a_large_one_all() {
    for codec in [Codec::Vp9, Codec::Av1] {
        small_tile_then_large(codec);
    }
}

fn small_tile_then_large(codec: Codec) {
    let (mut w, mut publisher, b, track) = svc_room(codec);
    publisher.run(&mut w, Duration::from_secs(2));
    let all = received(&w, b, 0);
    assert!(all.len() > 60, "bob got {} video packets", all.len());
    let tail: Vec<u8> = all.iter().rev().take(9).map(|p| p.0).collect();
    assert_eq!(tail, [2, 1, 0, 2, 1, 0, 2, 1, 0], "every layer by default");
    assert_eq!(
        layers_of(&w, "bob")
            .last()
            .cloned()
            .flatten()
            .map(|l| (l.rid, l.width, l.height)),
        Some((None, 1280, 720))
    );

    // A tile of 320×180: from the next picture, only the base layer, with no gap in the
    // numbers and a marker on each picture's last packet, which is now the base layer's.
    ask(
        &mut w,
        &track,
        Wanted::Size {
            width: 320,
            height: 180,
        },
    );
    let from = w.clients[b].received.len();
    publisher.run(&mut w, Duration::from_secs(2));
    let small = received(&w, b, from);
    let settled: Vec<_> = small
        .iter()
        .skip_while(|p| p.0 != 0 || !p.2)
        .skip(1)
        .collect();
    assert!(settled.len() > 40, "{small:?}");
    assert!(settled.iter().all(|p| p.0 == 0 && p.2), "{settled:?}");
    let numbers: Vec<u64> = small.iter().map(|p| p.1).collect();
    assert!(
        numbers.windows(2).all(|n| n[1] == n[0] + 1),
        "no gap across the step down: {numbers:?}"
    );
    assert_eq!(
        layers_of(&w, "bob")
            .last()
            .cloned()
            .flatten()
            .map(|l| (l.rid, l.width, l.height)),
        Some((None, 320, 180))
    );

    // Back to the best: at the keyframe asked for, every layer again, still one stream.
    ask(&mut w, &track, Wanted::Highest);
    let from = w.clients[b].received.len();
    publisher.run(&mut w, Duration::from_secs(2));
    let big = received(&w, b, from);
    let tail: Vec<u8> = big.iter().rev().take(6).map(|p| p.0).collect();
    assert_eq!(tail, [2, 1, 0, 2, 1, 0], "{big:?}");
    let numbers: Vec<u64> = big.iter().map(|p| p.1).collect();
    assert!(numbers.windows(2).all(|n| n[1] == n[0] + 1), "{numbers:?}");
    assert!(
        big.iter().filter(|p| p.2).all(|p| p.0 == 2 || p.0 == 0),
        "markers end pictures: {big:?}"
    );
    assert_eq!(
        layers_of(&w, "bob")
            .last()
            .cloned()
            .flatten()
            .map(|l| l.width),
        Some(1280)
    );
}

#[test]
fn a_picture_whose_higher_layers_were_skipped_still_ends_with_a_marker() {
    for codec in [Codec::Vp9, Codec::Av1] {
        skipped_layers_end_with_a_marker(codec);
    }
}

fn skipped_layers_end_with_a_marker(codec: Codec) {
    let (mut w, mut publisher, b, _track) = svc_room(codec);
    publisher.skip_upper_every = Some(5);
    let from = w.clients[b].received.len();
    publisher.run(&mut w, Duration::from_secs(2));
    // Bob's packets by picture (RTP timestamp), in order; the last picture may still wait.
    let c = &w.clients[b];
    let mut pictures: Vec<(u32, Vec<(u8, bool)>)> = Vec::new();
    for i in from..c.received.len() {
        let (_, payload) = &c.received[i];
        if payload.len() < 200 {
            continue;
        }
        let packet = (*payload.last().unwrap(), c.markers[i]);
        match pictures.last_mut() {
            Some((ts, packets)) if *ts == c.headers[i].1 => packets.push(packet),
            _ => pictures.push((c.headers[i].1, vec![packet])),
        }
    }
    pictures.pop();
    let alone = pictures.iter().filter(|(_, p)| p.len() == 1).count();
    assert!(alone >= 5, "pictures of layer 0 alone: {alone}");
    for (ts, packets) in &pictures {
        let marked: Vec<bool> = packets.iter().map(|p| p.1).collect();
        let mut expected = vec![false; packets.len()];
        *expected.last_mut().unwrap() = true;
        assert_eq!(marked, expected, "picture {ts}: {packets:?}");
    }
}
