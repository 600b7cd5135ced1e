//! Per-subscriber rewriting of forwarded RTP: sequence numbers, timestamps, VP8 picture
//! ids and payload types.
//!
//! str0m gives every outgoing m-line its own SSRC (and RTX SSRC), so SSRC rewriting is
//! implicit. What remains:
//! - **Sequence numbers** are rebased per subscriber so the first packet a subscriber sees
//!   is small (str0m derives the SRTP rollover counter from the extended sequence number; a
//!   late joiner must start at ROC 0), and so a publisher SSRC change (track replaced), a
//!   simulcast layer switch or a pause neither jumps backwards nor leaves a gap.
//! - **Timestamps** pass through until the first layer switch or pause; from then on they
//!   continue from the last one sent by the time that passed ([`StreamRewriter`]).
//! - **VP8 picture ids and TL0PICIDX** likewise continue across switches, so the decoder
//!   sees one stream of pictures, and so does the frame number of the dependency descriptor
//!   extension where the publisher sends one (`dependency`).
//! - **Payload types** are mapped by codec (publisher PT → codec → subscriber PT). Opus RED
//!   is forwarded as RED when the subscriber negotiated it, otherwise reduced to its
//!   primary Opus block.
//!
//! The payload itself is an `Arc<[u8]>` shared by all subscribers and never copied per
//! subscriber ([`Payload`]):
//! - A VP8 picture id or TL0PICIDX moved by a switch is not written into a copy: the new
//!   values go to str0m as a [`Vp8Patch`] with the shared payload, and str0m writes them
//!   as it copies the payload behind the RTP header in its serialization buffer, a copy it
//!   makes for every packet anyway before SRTP. Retransmissions are built from the same
//!   cached packet and patch. Only a descriptor str0m refuses to patch (TL0PICIDX without
//!   TID, which RFC 7741 forbids, so no browser sends it) is still rewritten into a copy.
//! - The RED-to-Opus reduction makes one copy of the primary block per packet, shared by
//!   every subscriber that needs it (a write takes an `Arc<[u8]>` of exactly the payload, so
//!   a sub-slice cannot be shared).
//!
//! Apart from those two, forwarding allocates nothing in the SFU's own code. What str0m
//! allocates is the floor: one buffer per forwarded packet (the SRTP output, which becomes
//! the `Transmit`), one `Arc` per received RTP packet (the payload shared here) and a few
//! per received RTCP/TWCC feedback packet. `examples/alloc_per_packet.rs` counts them, and
//! docs/benchmarks.md ("Allocations per forwarded packet") has the figures.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo, Ssrc, Vp8Patch};

use super::dependency::DependencyDescriptor;
use super::video::{NumberedPicture, PictureNumbers, Vp8Descriptor, Vp9Descriptor};

/// Rebases a publisher's extended sequence numbers into one subscriber's space.
///
/// Lifecycle: one per subscription; starts empty and locks onto the first packet. After
/// [`SeqRewriter::resync`] (a layer switch, or a pause that skipped packets) the next packet
/// continues right after the last one sent, so the subscriber sees no gap to NACK. Packets
/// left out on purpose within a stream (spatial layers above the subscriber's,
/// [`SeqRewriter::skip`]) close up the same way: the numbers after them move down.
#[derive(Clone, Debug, Default)]
pub struct SeqRewriter {
    ssrc: Option<Ssrc>,
    /// out = in + offset, for packets before the first step.
    offset: i64,
    /// Where skipped packets moved the offset: from input number `.0` on, out = in + `.1`.
    /// Kept for a while so a packet arriving late, behind a skip, keeps its own number.
    steps: std::collections::VecDeque<(u64, i64)>,
    /// Highest input number seen (forwarded or skipped) since the last re-base.
    highest_in: u64,
    last_out: u64,
    /// Lowest number still allowed out: after a resync, packets from before the switch
    /// point would collide with numbers already sent.
    floor: u64,
    /// Lowest input number still placed: older ones arrived too late to know their step.
    min_in: u64,
}

/// Steps kept by [`SeqRewriter`]: skips come in runs, one run per picture (the packets of
/// the higher layers), so this is a few seconds of video.
const MAX_SEQ_STEPS: usize = 128;

/// First sequence number a subscriber sees. Small so the ROC is 0, not 0 so that a
/// slightly reordered earlier packet can still be placed.
const FIRST_OUT_SEQ: i64 = 100;

impl SeqRewriter {
    /// The outgoing sequence number, or `None` to drop (older than what this subscriber's
    /// stream started with).
    pub fn rewrite(&mut self, ssrc: Ssrc, seq: SeqNo) -> Option<SeqNo> {
        let seq_in = *seq as i64;
        if !self.follows(ssrc) {
            match self.ssrc {
                None if self.last_out == 0 => self.offset = FIRST_OUT_SEQ - seq_in,
                // Publisher restarted its stream, or a resync: continue right after what
                // we sent.
                _ => {
                    self.offset = self.last_out as i64 + 1 - seq_in;
                    self.floor = self.last_out + 1;
                }
            }
            self.rebase(ssrc, *seq);
        }
        if *seq < self.min_in {
            return None;
        }
        self.highest_in = self.highest_in.max(*seq);
        let offset = match self.steps.iter().rev().find(|(from, _)| *from <= *seq) {
            Some((_, offset)) => *offset,
            None => self.offset,
        };
        let out = seq_in.checked_add(offset)?;
        if out <= 0 || (out as u64) < self.floor {
            return None;
        }
        let out = out as u64;
        self.last_out = self.last_out.max(out);
        Some(out.into())
    }

    /// `seq` of this stream is left out on purpose: the packets after it close up behind
    /// it. Only a packet newer than every one seen counts (a late or repeated one was
    /// already accounted for, or cannot be any more).
    pub fn skip(&mut self, ssrc: Ssrc, seq: SeqNo) {
        if !self.follows(ssrc) || *seq < self.highest_in {
            return;
        }
        self.highest_in = *seq;
        let next = *seq + 1;
        match self.steps.back_mut() {
            // The run goes on: one step covers it.
            Some(step) if step.0 == *seq => *step = (next, step.1 - 1),
            last => {
                let offset = last.map_or(self.offset, |s| s.1);
                self.steps.push_back((next, offset - 1));
                if self.steps.len() > MAX_SEQ_STEPS
                    && let Some((from, offset)) = self.steps.pop_front()
                {
                    self.offset = offset;
                    self.min_in = from;
                }
            }
        }
    }

    /// Whether `ssrc` is the stream numbered now (else it must be re-based).
    fn follows(&self, ssrc: Ssrc) -> bool {
        self.ssrc == Some(ssrc)
    }

    fn rebase(&mut self, ssrc: Ssrc, seq: u64) {
        self.ssrc = Some(ssrc);
        self.steps.clear();
        self.highest_in = seq;
        self.min_in = 0;
    }

    /// The next packet continues the outgoing numbers whatever its own number is.
    pub fn resync(&mut self) {
        self.ssrc = None;
    }
}

/// Moves one subscriber's view of a stream across layer switches and pauses: RTP
/// timestamps, and VP8 picture ids and TL0PICIDX, continue where the previous layer left
/// them (sequence numbers are [`SeqRewriter`]'s).
///
/// Until the first resync every offset is zero, so a subscriber that never switched gets
/// the publisher's values (and the shared payload, uncopied).
///
/// Lifecycle: one per video subscription; [`StreamRewriter::resync`] is called with the
/// first packet after a switch or a pause.
#[derive(Clone, Debug, Default)]
pub struct StreamRewriter {
    /// out = in + offset (wrapping).
    ts_offset: u32,
    /// The next packet comes from another publisher (a viewer following the speaker): audio
    /// re-bases on it; video re-bases at its keyframe anyway.
    new_source: bool,
    last_ts_out: Option<u32>,
    last_wallclock: Option<Instant>,
    picture: Option<PictureState>,
    frames: Option<FrameNumbers>,
}

/// Dependency descriptor frame numbers: out = in + offset (wrapping at 16 bits).
#[derive(Debug, Default, Clone, Copy)]
struct FrameNumbers {
    offset: u16,
    last_out: u16,
}

#[derive(Debug, Default, Clone, Copy)]
struct PictureState {
    id_offset: u16,
    last_id_out: u16,
    tl0_offset: u8,
    last_tl0_out: u8,
    /// The last picture left out (its incoming id): its other packets move nothing more.
    last_left_out: Option<u16>,
}

impl StreamRewriter {
    /// Re-bases the offsets on this packet, which starts a keyframe of the new layer:
    /// its timestamp follows the last one sent by the wallclock time that passed (capture
    /// times, see [`super::capture`]), and its picture id,
    /// TL0PICIDX (VP8 and VP9) and dependency descriptor frame number follow the last ones
    /// sent.
    pub fn resync(
        &mut self,
        ts_in: u32,
        wallclock: Instant,
        clock_rate: u32,
        picture: Option<PictureNumbers>,
        dependency: Option<&DependencyDescriptor>,
    ) {
        if let (Some(f), Some(d)) = (self.frames.as_mut(), dependency) {
            f.offset = f.last_out.wrapping_add(1).wrapping_sub(d.frame_number());
        }
        if let (Some(last), Some(at)) = (self.last_ts_out, self.last_wallclock) {
            let gap = wallclock.saturating_duration_since(at).as_micros() as u64
                * u64::from(clock_rate)
                / 1_000_000;
            let target = last.wrapping_add(gap.clamp(1, u64::from(u32::MAX / 2)) as u32);
            self.ts_offset = target.wrapping_sub(ts_in);
        }
        if let (Some(p), Some(n)) = (self.picture.as_mut(), picture) {
            if let Some((id, width)) = n.picture_id {
                p.id_offset = (p.last_id_out.wrapping_add(1).wrapping_sub(id)) % width.modulus();
            }
            if let Some(tl0) = n.tl0_pic_idx {
                p.tl0_offset = p.last_tl0_out.wrapping_add(1).wrapping_sub(tl0);
            }
        }
    }

    /// The next packet will come from another publisher's stream.
    pub fn expect_new_source(&mut self) {
        self.new_source = true;
    }

    /// Whether the next packet comes from another publisher; clears the mark.
    pub fn take_new_source(&mut self) -> bool {
        std::mem::take(&mut self.new_source)
    }

    /// The outgoing timestamp of a packet, remembering it as the latest sent.
    pub fn timestamp(&mut self, ts_in: u32, wallclock: Instant) -> u32 {
        let out = ts_in.wrapping_add(self.ts_offset);
        let newer = self
            .last_ts_out
            .is_none_or(|last| out.wrapping_sub(last) < u32::MAX / 2);
        if newer {
            self.last_ts_out = Some(out);
            self.last_wallclock = Some(wallclock);
        }
        out
    }

    /// The header extensions to send with a packet: the publisher's, with the dependency
    /// descriptor's frame number moved once a switch has set an offset. Before that the
    /// descriptor is shared, not copied.
    pub fn extensions(&mut self, ext: &ExtensionValues) -> ExtensionValues {
        let mut out = ext.clone();
        let Some(d) = DependencyDescriptor::of(ext) else {
            return out;
        };
        let number_in = d.frame_number();
        let Some(f) = self.frames.as_mut() else {
            self.frames = Some(FrameNumbers {
                offset: 0,
                last_out: number_in,
            });
            return out;
        };
        let number = number_in.wrapping_add(f.offset);
        // Later frames only: a reordered older packet must not pull the mark back.
        if number.wrapping_sub(f.last_out) < 1 << 15 {
            f.last_out = number;
        }
        if f.offset != 0 {
            out.user_values.set(d.with_frame_number(number));
        }
        out
    }

    /// The payload to send for a VP8 packet: the shared one, with a patch moving the
    /// picture id and TL0PICIDX once a switch has set offsets (see the module docs). Only a
    /// descriptor str0m cannot patch is copied.
    pub fn vp8_payload(&mut self, payload: &Arc<[u8]>, d: &Vp8Descriptor) -> Payload {
        let Some((id_out, tl0_out)) = self.renumber(d.numbers()) else {
            return Payload::shared(payload);
        };
        if let Some(patch) = d.patch(id_out, tl0_out) {
            return Payload {
                bytes: payload.clone(),
                vp8_patch: Some(patch),
            };
        }
        let mut copy = payload.to_vec();
        d.write(&mut copy, id_out, tl0_out);
        Payload {
            bytes: Arc::from(copy),
            vp8_patch: None,
        }
    }

    /// The payload to send for a VP9 packet: the shared one until a switch sets offsets,
    /// then a copy with the picture id and TL0PICIDX moved (str0m patches only VP8
    /// descriptors while it serializes).
    pub fn vp9_payload(&mut self, payload: &Arc<[u8]>, d: &Vp9Descriptor) -> Payload {
        let Some((id_out, tl0_out)) = self.renumber(d.numbers()) else {
            return Payload::shared(payload);
        };
        let mut copy = payload.to_vec();
        d.write(&mut copy, id_out, tl0_out);
        Payload {
            bytes: Arc::from(copy),
            vp8_patch: None,
        }
    }

    /// A packet of a picture left out of the stream (a temporal layer above the
    /// subscriber's frame rate, see `temporal`): the pictures after it move down one id, so
    /// the subscriber sees no gap. A picture older than the last one sent (reordered) moves
    /// nothing, nor does one before anything was sent.
    pub fn leave_out_picture(&mut self, n: PictureNumbers) {
        let (Some(p), Some((id_in, width))) = (self.picture.as_mut(), n.picture_id) else {
            return;
        };
        if p.last_left_out == Some(id_in) {
            return;
        }
        let modulus = width.modulus();
        let id_out = id_in.wrapping_add(p.id_offset) % modulus;
        let newer = id_out.wrapping_sub(p.last_id_out) % modulus;
        if newer == 0 || newer >= modulus / 2 {
            return;
        }
        p.last_left_out = Some(id_in);
        p.id_offset = p.id_offset.wrapping_sub(1);
    }

    /// The outgoing picture id and TL0PICIDX of a packet with these numbers, remembering the
    /// latest; `None` when both go out unchanged.
    fn renumber(&mut self, n: PictureNumbers) -> Option<(u16, u8)> {
        let id_in = n.picture_id.map(|(id, _)| id).unwrap_or(0);
        let tl0_in = n.tl0_pic_idx.unwrap_or(0);
        // The first packet sets the marks: from zero, an id in the upper half of the range
        // (where a random first id lands half the time) would not count as later, and a
        // switch would then continue from zero.
        let p = self.picture.get_or_insert(PictureState {
            id_offset: 0,
            last_id_out: id_in,
            tl0_offset: 0,
            last_tl0_out: tl0_in,
            last_left_out: None,
        });
        let modulus = n.picture_id.map_or(1 << 15, |(_, width)| width.modulus());
        let id_out = id_in.wrapping_add(p.id_offset) % modulus;
        let tl0_out = tl0_in.wrapping_add(p.tl0_offset);
        // Later pictures only: a reordered older packet must not pull the marks back.
        if n.picture_id.is_some() && id_out.wrapping_sub(p.last_id_out) % modulus < modulus / 2 {
            p.last_id_out = id_out;
        }
        if n.tl0_pic_idx.is_some() && tl0_out.wrapping_sub(p.last_tl0_out) < 128 {
            p.last_tl0_out = tl0_out;
        }
        let unchanged = (p.id_offset == 0 || n.picture_id.is_none())
            && (p.tl0_offset == 0 || n.tl0_pic_idx.is_none());
        (!unchanged).then_some((id_out, tl0_out))
    }
}

/// What is written to one subscriber for one packet: payload bytes (normally the
/// publisher's, shared by every subscriber) and the VP8 descriptor fields str0m replaces
/// while it serializes them.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The bytes.
    pub bytes: Arc<[u8]>,
    /// Picture id and TL0PICIDX written over `bytes` in the outgoing datagram (and in its
    /// retransmissions, which str0m builds from the same cached packet).
    pub vp8_patch: Option<Vp8Patch>,
}

impl Payload {
    /// `bytes` unchanged (another reference, not a copy).
    pub fn shared(bytes: &Arc<[u8]>) -> Self {
        Payload {
            bytes: bytes.clone(),
            vp8_patch: None,
        }
    }

    /// Length in bytes (a patch never changes it).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The str0m write command carrying this payload.
    pub fn write(self, pt: Pt, seq: SeqNo, time: u32, wallclock: Instant) -> RtpWrite {
        let write = RtpWrite::new(pt, seq, time, wallclock, self.bytes);
        match self.vp8_patch {
            Some(patch) => write.vp8_patch(patch),
            None => write,
        }
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
    fn skipped_packets_close_up_and_late_ones_keep_their_number() {
        let mut rw = SeqRewriter::default();
        let a = Ssrc::from(1);
        let out = |rw: &mut SeqRewriter, s: u64| rw.rewrite(a, s.into()).map(|n| *n);
        assert_eq!(out(&mut rw, 1000), Some(100));
        // 1002 is late; 1003 to 1005 are a higher layer left out.
        for s in 1003..=1005u64 {
            rw.skip(a, s.into());
        }
        assert_eq!(out(&mut rw, 1006), Some(103));
        assert_eq!(out(&mut rw, 1001), Some(101));
        assert_eq!(out(&mut rw, 1002), Some(102), "late, behind the skip");
        // A skip repeated (a retransmission) or out of order changes nothing.
        rw.skip(a, 1004.into());
        assert_eq!(out(&mut rw, 1007), Some(104));
        // Many runs: the oldest steps go, and what is older than them is dropped.
        let mut next = 1008u64;
        for _ in 0..MAX_SEQ_STEPS + 5 {
            rw.skip(a, next.into());
            next += 1;
            assert!(out(&mut rw, next).is_some());
            next += 1;
        }
        assert_eq!(out(&mut rw, 1001), None);
        let last = out(&mut rw, next).expect("in order");
        assert_eq!(out(&mut rw, next + 1), Some(last + 1));
        // Numbers keep rising by one across every skip: no gap to NACK.
        let mut rw = SeqRewriter::default();
        let mut sent = Vec::new();
        for s in 0..300u64 {
            if s % 5 >= 3 {
                rw.skip(a, s.into());
            } else {
                sent.push(out(&mut rw, s).expect("forwarded"));
            }
        }
        assert!(sent.windows(2).all(|w| w[1] == w[0] + 1), "{sent:?}");
    }

    /// A VP8 payload whose descriptor has a 15-bit picture id, TL0PICIDX and, when `tid`,
    /// the TID byte RFC 7741 requires with TL0PICIDX (without it str0m will not patch).
    fn vp8(picture_id: u16, tl0: u8, key: bool, tid: bool) -> Arc<[u8]> {
        let mut v = vec![
            0x90,
            if tid { 0xe0 } else { 0xc0 },
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
        ];
        if tid {
            v.push(0x00);
        }
        v.extend_from_slice(&[if key { 0x00 } else { 0x01 }, 0x00, 0x00, 0xaa]);
        v.into()
    }

    /// Feeds `payload` through `rw` as a packet at `at`, re-basing first when `switch`.
    fn send(rw: &mut StreamRewriter, payload: &Arc<[u8]>, at: Instant, switch: bool) -> Payload {
        let d = Vp8Descriptor::parse(payload).unwrap();
        if switch {
            rw.resync(0, at, 90_000, Some(d.numbers()), None);
        }
        rw.vp8_payload(payload, &d)
    }

    #[test]
    fn vp8_fields_move_by_a_patch_on_the_shared_payload() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::default();
        // Layer A from its first keyframe: nothing moves yet.
        for (k, pic) in (100..103).enumerate() {
            let p = vp8(pic, 10 + k as u8, k == 0, true);
            let out = send(&mut rw, &p, t0, k == 0);
            assert!(Arc::ptr_eq(&out.bytes, &p) && out.vp8_patch.is_none());
        }
        // Switch to layer B, whose pictures are numbered elsewhere (and wrap at 15 bits):
        // they continue from 102 / 12, as a patch over B's own shared bytes.
        for (k, pic) in [32_766u16, 32_767, 0, 1].into_iter().enumerate() {
            let p = vp8(pic, 200 + k as u8, k == 0, true);
            let out = send(&mut rw, &p, t0, k == 0);
            assert!(Arc::ptr_eq(&out.bytes, &p), "not copied");
            let d = Vp8Descriptor::parse(&p).unwrap();
            assert_eq!(out.vp8_patch, d.patch(103 + k as u16, 13 + k as u8));
            assert!(out.vp8_patch.is_some());
            assert_eq!(out.len(), p.len());
        }
        // A reordered older packet of B gets its own moved number, not the newest one.
        let p = vp8(32_767, 201, false, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(send(&mut rw, &p, t0, false).vp8_patch, d.patch(104, 14));
    }

    #[test]
    fn vp8_fields_str0m_cannot_patch_are_moved_in_a_copy() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::default();
        let a = vp8(100, 10, true, false);
        assert!(Arc::ptr_eq(&send(&mut rw, &a, t0, true).bytes, &a));
        // TL0PICIDX without TID: str0m refuses the descriptor, so the copy carries the move.
        let b = vp8(5_000, 77, true, false);
        let out = send(&mut rw, &b, t0, true);
        assert!(out.vp8_patch.is_none());
        assert!(!Arc::ptr_eq(&out.bytes, &b));
        let moved = Vp8Descriptor::parse(&out.bytes).unwrap();
        assert_eq!(moved.picture_id.unwrap().0, 101);
        assert_eq!(moved.tl0_pic_idx.unwrap().0, 11);
        assert_eq!(out.bytes[moved.header_len..], b[moved.header_len..]);
    }

    /// Header extensions carrying a dependency descriptor with `frame`.
    fn with_descriptor(frame: u16) -> ExtensionValues {
        let mut ext = ExtensionValues::default();
        let [hi, lo] = frame.to_be_bytes();
        ext.user_values
            .set(DependencyDescriptor::parse(&[0x80, hi, lo, 0x11]).unwrap());
        ext
    }

    fn frame_out(ext: &ExtensionValues) -> u16 {
        DependencyDescriptor::of(ext).unwrap().frame_number()
    }

    #[test]
    fn descriptor_frame_numbers_continue_across_a_switch() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::default();
        // Layer A: the publisher's numbers, and its value itself (no copy).
        for frame in [500u16, 500, 501, 502] {
            let ext = with_descriptor(frame);
            let out = rw.extensions(&ext);
            assert_eq!(frame_out(&out), frame);
            assert!(std::ptr::eq(
                DependencyDescriptor::of(&out).unwrap(),
                DependencyDescriptor::of(&ext).unwrap()
            ));
        }
        // Layer B numbers its frames elsewhere (and wraps): they continue from 502.
        let first = with_descriptor(65_535);
        rw.resync(0, t0, 90_000, None, DependencyDescriptor::of(&first));
        assert_eq!(frame_out(&rw.extensions(&first)), 503);
        assert_eq!(frame_out(&rw.extensions(&with_descriptor(65_535))), 503);
        assert_eq!(frame_out(&rw.extensions(&with_descriptor(0))), 504);
        assert_eq!(frame_out(&rw.extensions(&with_descriptor(1))), 505);
        // A reordered older frame keeps its own number and does not pull the mark back.
        assert_eq!(frame_out(&rw.extensions(&with_descriptor(0))), 504);
        let next = with_descriptor(40_000);
        rw.resync(0, t0, 90_000, None, DependencyDescriptor::of(&next));
        assert_eq!(frame_out(&rw.extensions(&next)), 506);
        // Everything else in the descriptor is the publisher's.
        let out = rw.extensions(&with_descriptor(40_001));
        assert_eq!(
            DependencyDescriptor::of(&out).unwrap().as_bytes(),
            [0x80, 0x01, 0xfb, 0x11]
        );
        // Packets without a descriptor pass as they are.
        assert!(DependencyDescriptor::of(&rw.extensions(&ExtensionValues::default())).is_none());
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
