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
