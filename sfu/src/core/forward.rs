//! Per-subscriber rewriting of forwarded RTP: sequence numbers and payload types.
//!
//! str0m gives every outgoing m-line its own SSRC (and RTX SSRC), so SSRC rewriting is
//! implicit. What remains:
//! - **Sequence numbers** are rebased per subscriber so the first packet a subscriber sees
//!   is small (str0m derives the SRTP rollover counter from the extended sequence number; a
//!   late joiner must start at ROC 0) and so a publisher SSRC change (track replaced) does
//!   not make the numbers jump backwards.
//! - **Timestamps** pass through unchanged: receivers only need them monotonic per SSRC.
//! - **Payload types** are mapped by codec (publisher PT → codec → subscriber PT). Opus RED
//!   is forwarded as RED when the subscriber negotiated it, otherwise reduced to its
//!   primary Opus block.
//!
//! The payload itself is an `Arc<[u8]>` shared by all subscribers; only the RED-to-Opus
//! reduction makes a (smaller) copy.

use str0m::format::PayloadParams;
use str0m::media::Pt;
use str0m::rtp::{SeqNo, Ssrc};

/// Rebases a publisher's extended sequence numbers into one subscriber's space.
///
/// Lifecycle: one per subscription; starts empty and locks onto the first packet.
#[derive(Debug, Default)]
pub struct SeqRewriter {
    ssrc: Option<Ssrc>,
    /// out = in + offset.
    offset: i64,
    last_out: u64,
}

/// First sequence number a subscriber sees. Small so the ROC is 0, not 0 so that a
/// slightly reordered earlier packet can still be placed.
const FIRST_OUT_SEQ: i64 = 100;

impl SeqRewriter {
    /// The outgoing sequence number, or `None` to drop (older than what this subscriber's
    /// stream started with).
    pub fn rewrite(&mut self, ssrc: Ssrc, seq: SeqNo) -> Option<SeqNo> {
        let seq_in = *seq as i64;
        match self.ssrc {
            None => {
                self.ssrc = Some(ssrc);
                self.offset = FIRST_OUT_SEQ - seq_in;
            }
            Some(s) if s != ssrc => {
                // Publisher restarted its stream: continue right after what we sent.
                self.ssrc = Some(ssrc);
                self.offset = self.last_out as i64 + 1 - seq_in;
            }
            Some(_) => {}
        }
        let out = seq_in.checked_add(self.offset)?;
        if out <= 0 {
            return None;
        }
        let out = out as u64;
        self.last_out = self.last_out.max(out);
        Some(out.into())
    }
}

/// What a publisher's payload type means, resolved once per PT per track.
#[derive(Clone, Copy, Debug)]
pub enum PtMeaning {
    /// A primary codec.
    Primary(PayloadParams),
    /// RED (RFC 2198) wrapping this primary codec.
    Red(PayloadParams),
    /// Not in the publisher's negotiated set: dropped.
    Unknown,
}

/// How a subscriber receives one publisher PT, resolved once per subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtMapping {
    /// Send with this PT, payload unchanged.
    Direct(Pt),
    /// Publisher sends RED, subscriber has no RED: send the primary block with this PT.
    StripRed(Pt),
    /// The subscriber cannot receive this codec: drop.
    Drop,
}

/// The primary block of an RFC 2198 RED payload, or `None` if malformed.
pub fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    let mut redundant_len = 0usize;
    loop {
        let b = *payload.get(at)?;
        if b & 0x80 == 0 {
            // Final 1-byte header: the primary block follows the redundant ones.
            at += 1;
            break;
        }
        // 4-byte header: F(1) PT(7) ts offset(14) length(10).
        let hdr = payload.get(at..at + 4)?;
        redundant_len += (((hdr[2] & 0x03) as usize) << 8) | hdr[3] as usize;
        at += 4;
    }
    payload.get(at + redundant_len..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_is_rebased_small() {
        let mut rw = SeqRewriter::default();
        let ssrc = Ssrc::from(1);
        assert_eq!(rw.rewrite(ssrc, 5_000_000.into()), Some(100.into()));
        assert_eq!(rw.rewrite(ssrc, 5_000_001.into()), Some(101.into()));
        // Reordered packet from before the first one still fits.
        assert_eq!(rw.rewrite(ssrc, 4_999_999.into()), Some(99.into()));
        // Far older: dropped, not wrapped.
        assert_eq!(rw.rewrite(ssrc, 1.into()), None);
    }

    #[test]
    fn ssrc_change_continues_sequence() {
        let mut rw = SeqRewriter::default();
        let a = Ssrc::from(1);
        let b = Ssrc::from(2);
        for s in 10..20u64 {
            rw.rewrite(a, s.into());
        }
        assert_eq!(rw.rewrite(b, 60_000.into()), Some(110.into()));
        assert_eq!(rw.rewrite(b, 60_001.into()), Some(111.into()));
    }

    #[test]
    fn red_primary_extraction() {
        // One redundant block of 3 bytes (PT 111), then primary (PT 111) of 2 bytes.
        let red = [0x80 | 111, 0x00, 0x40, 0x03, 111, 9, 9, 9, 1, 2];
        assert_eq!(red_primary(&red), Some(&[1u8, 2][..]));
        // No redundancy.
        assert_eq!(red_primary(&[111, 5, 6]), Some(&[5u8, 6][..]));
        // Malformed: never panics.
        assert_eq!(red_primary(&[]), None);
        assert_eq!(red_primary(&[0x80, 0, 0]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0, 0x03, 0xff, 111]), None);
    }
}
