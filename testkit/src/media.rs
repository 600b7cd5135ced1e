//! Synthetic media: RTP payloads that carry their own number, so a receiver can tell that a
//! packet arrived byte for byte as sent and which one it was.
//!
//! Packet `n` of a track:
//! - audio (Opus, payload type [`OPUS_PT`]): `"OPUS"`, `n` as 4 big-endian bytes, then 72 bytes
//!   derived from `n`; timestamp `n * 960` (20 ms at 48 kHz);
//! - video (VP8, payload type [`VP8_PT`]): a VP8 payload descriptor (`0x10`: start of partition
//!   0), `"VP8!"`, `n`, then 1000 bytes derived from `n`; timestamp `n * 3000` (30 fps at
//!   90 kHz). Each packet is a whole frame, so its marker bit is set.
//!
//! The SFU forwards RTP without decoding it, so these need not be decodable media.

use crate::Kind;
use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;

/// The payload type webrtc-rs's default codecs give Opus.
pub const OPUS_PT: u8 = 111;
/// The payload type webrtc-rs's default codecs give VP8.
pub const VP8_PT: u8 = 96;

/// The payload of packet `n` of a `kind` track.
pub fn payload(kind: Kind, n: u32) -> Vec<u8> {
    match kind {
        Kind::Audio => {
            let mut v = b"OPUS".to_vec();
            v.extend(n.to_be_bytes());
            v.extend((0..72u32).map(|i| (i * 7 + n) as u8));
            v
        }
        _ => {
            let mut v = vec![0x10];
            v.extend(b"VP8!");
            v.extend(n.to_be_bytes());
            v.extend((0..1000u32).map(|i| (i * 13 + n) as u8));
            v
        }
    }
}

/// Packet `n` of a `kind` track sent with `ssrc`.
pub fn packet(kind: Kind, ssrc: u32, n: u32) -> Packet {
    let (payload_type, timestamp, marker) = match kind {
        Kind::Audio => (OPUS_PT, n.wrapping_mul(960), n == 0),
        _ => (VP8_PT, n.wrapping_mul(3000), true),
    };
    Packet {
        header: Header {
            version: 2,
            payload_type,
            sequence_number: n as u16,
            timestamp,
            ssrc,
            marker,
            ..Default::default()
        },
        payload: payload(kind, n).into(),
    }
}

/// Packet `n` of simulcast layer `layer` (0 is the lowest) of a synthetic VP8 track whose
/// frames are `size` (width, height): each packet is a whole keyframe with a real VP8
/// keyframe header (frame tag, start code, size), so an SFU can switch layers at any packet
/// and learn each layer's size; then `"SIM!"`, the layer, `n`, and more filler the higher
/// the layer (a layer's rate grows with it).
pub fn simulcast_payload(layer: u8, n: u32, size: (u16, u16)) -> Vec<u8> {
    // Descriptor (start of partition 0), frame tag (keyframe, shown), start code 9d 01 2a.
    let mut v = vec![0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a];
    v.extend(size.0.to_le_bytes());
    v.extend(size.1.to_le_bytes());
    v.extend(b"SIM!");
    v.push(layer);
    v.extend(n.to_be_bytes());
    v.extend((0..200 * (u32::from(layer) + 1)).map(|i| (i * 11 + n) as u8));
    v
}

/// The layer and number of a [`simulcast_payload`], when the payload is exactly what it makes
/// for them (at some size); `None` for anything altered or foreign.
pub fn simulcast_layer_of(received: &[u8]) -> Option<(u8, u32)> {
    let layer = *received.get(15)?;
    let n = u32::from_be_bytes(received.get(16..20)?.try_into().ok()?);
    let size = (
        u16::from_le_bytes(received.get(7..9)?.try_into().ok()?),
        u16::from_le_bytes(received.get(9..11)?.try_into().ok()?),
    );
    (simulcast_payload(layer, n, size) == received).then_some((layer, n))
}

/// The number of the packet whose payload this is, when it is exactly what [`payload`] makes
/// for that number; `None` for anything altered or foreign.
pub fn number_of(kind: Kind, received: &[u8]) -> Option<u32> {
    let at = match kind {
        Kind::Audio => 4,
        _ => 5,
    };
    let n = u32::from_be_bytes(received.get(at..at + 4)?.try_into().ok()?);
    (payload(kind, n) == received).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulcast_payloads_name_their_layer_and_number() {
        let p = simulcast_payload(2, 77, (1280, 720));
        assert_eq!(simulcast_layer_of(&p), Some((2, 77)));
        assert_eq!(u16::from_le_bytes([p[7], p[8]]), 1280);
        let mut altered = p.clone();
        altered[40] ^= 1;
        assert_eq!(simulcast_layer_of(&altered), None);
        assert_eq!(simulcast_layer_of(&payload(Kind::Video, 3)), None);
    }

    #[test]
    fn payloads_name_their_number_and_nothing_else_passes() {
        for kind in [Kind::Audio, Kind::Video] {
            for n in [0, 1, 77, 65_536] {
                assert_eq!(number_of(kind, &payload(kind, n)), Some(n), "{kind:?} {n}");
            }
            let mut altered = payload(kind, 5);
            *altered.last_mut().unwrap() ^= 1;
            assert_eq!(number_of(kind, &altered), None);
            assert_eq!(number_of(kind, &[1, 2, 3]), None);
        }
        // An audio payload is not a video payload.
        assert_eq!(number_of(Kind::Video, &payload(Kind::Audio, 3)), None);
    }
}
