//! What the SFU reads from (and, for VP8, rewrites in) the first bytes of a video RTP
//! payload: whether a packet starts a keyframe, a keyframe's size, and VP8's picture id
//! and TL0PICIDX.
//!
//! A subscriber may switch simulcast layers only where the new layer starts a keyframe, so
//! every codec the SFU negotiates needs a keyframe test:
//! - **VP8** (RFC 7741): the start of partition 0 of a frame whose inverse key-frame bit
//!   `P` is 0. The keyframe header also carries the frame's width and height.
//! - **VP9** (RFC 9628): a packet with `B` (start of frame) set and `P` (inter-picture
//!   predicted) clear, in spatial layer 0 when layer indices are present.
//! - **H.264** (RFC 6184): an IDR slice or a sequence parameter set, as a single NAL unit,
//!   inside a STAP-A, or starting an FU-A.
//! - **AV1** (the AV1 RTP payload format): the `N` bit, set on the first packet of a coded
//!   video sequence.
//!
//! A keyframe's size comes from VP8's keyframe header here, and for the other codecs from
//! what `frame_size` reads (VP9's scalability structure, H.264's sequence parameter set,
//! AV1's sequence header).
//!
//! VP8's picture id and TL0PICIDX are rewritten after a layer switch (see `forward`). The
//! rewrite is normally not done here but handed to str0m as a patch
//! ([`Vp8Descriptor::patch`]), which it applies while serializing the packet, so the
//! publisher's payload stays shared; [`Vp8Descriptor::write`] rewrites in place, for the
//! rare descriptor str0m will not patch.
//!
//! Everything here is a pure function of the bytes; malformed input reads as "not a
//! keyframe" and is never indexed out of bounds.

use str0m::format::Codec;
use str0m::rtp::Vp8Patch;

use super::frame_size;

/// A video codec the SFU knows how to switch layers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8: keyframes, size, picture id and TL0PICIDX.
    Vp8,
    /// VP9: keyframes, size, and spatial layers within one stream.
    Vp9,
    /// H.264: keyframes.
    H264,
    /// AV1: keyframes.
    Av1,
}

impl VideoCodec {
    /// The codec behind a str0m codec, if it is a video codec the SFU can switch in.
    pub fn of(codec: Codec) -> Option<Self> {
        match codec {
            Codec::Vp8 => Some(VideoCodec::Vp8),
            Codec::Vp9 => Some(VideoCodec::Vp9),
            Codec::H264 => Some(VideoCodec::H264),
            Codec::Av1 => Some(VideoCodec::Av1),
            _ => None,
        }
    }
}

/// Whether `payload` is the first packet of a keyframe in `codec`.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => Vp8Descriptor::parse(payload).is_some_and(|d| d.keyframe_start),
        VideoCodec::Vp9 => vp9_keyframe_start(payload),
        VideoCodec::H264 => h264_has_keyframe(payload),
        VideoCodec::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
    }
}

/// Frame size (width, height) that the first packet of a keyframe in `codec` announces, where
/// the codec puts it there (see `frame_size` for VP9, H.264 and AV1).
pub fn keyframe_size(codec: VideoCodec, payload: &[u8]) -> Option<(u16, u16)> {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_size(payload),
        VideoCodec::Vp9 => frame_size::vp9(payload),
        VideoCodec::H264 => frame_size::h264(payload),
        VideoCodec::Av1 => frame_size::av1(payload),
    }
}

/// Frame size (width, height) carried by the first packet of a VP8 keyframe.
fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let d = Vp8Descriptor::parse(payload)?;
    if !d.keyframe_start {
        return None;
    }
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height, each with
    // two scaling bits on top.
    let frame = payload.get(d.header_len..)?;
    if frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let height = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    Some((width, height))
}

/// Width of a VP8 picture id field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PictureIdWidth {
    /// The `M` bit is clear: 7 bits.
    Short,
    /// The `M` bit is set: 15 bits (what browsers send).
    Long,
}

impl PictureIdWidth {
    /// How many picture ids there are at this width.
    pub fn modulus(self) -> u16 {
        match self {
            PictureIdWidth::Short => 1 << 7,
            PictureIdWidth::Long => 1 << 15,
        }
    }
}

/// The parts of a VP8 payload descriptor the SFU reads or rewrites, with where they are.
#[derive(Clone, Copy, Debug)]
pub struct Vp8Descriptor {
    /// Picture id, its width and its byte offset.
    pub picture_id: Option<(u16, PictureIdWidth, usize)>,
    /// TL0PICIDX and its byte offset.
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// Its temporal layer (`TID`), and whether it is a layer sync frame (`Y`: it refers to
    /// the base temporal layer only), when the descriptor tells.
    pub temporal: Option<(u8, bool)>,
    /// Start of partition 0: the first packet of a picture.
    pub picture_start: bool,
    /// Start of partition 0 of a keyframe.
    pub keyframe_start: bool,
    /// Length of the descriptor: the VP8 payload header follows.
    pub header_len: usize,
    /// str0m's reading of the same descriptor, from which it builds the patches it applies
    /// while serializing (see [`Vp8Descriptor::patch`]). `None` where str0m refuses the
    /// descriptor: TL0PICIDX without TID (which RFC 7741 forbids, so no browser sends it),
    /// or no byte after the descriptor.
    patchable: Option<str0m::rtp::Vp8Descriptor>,
}

impl Vp8Descriptor {
    /// Reads the descriptor at the start of a VP8 RTP payload.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let extended = b0 & 0x80 != 0;
        let start = b0 & 0x10 != 0;
        let partition = b0 & 0x07;
        let mut at = 1;
        let mut picture_id = None;
        let mut tl0_pic_idx = None;
        let mut temporal = None;
        if extended {
            let x = *payload.get(at)?;
            at += 1;
            if x & 0x80 != 0 {
                let (id, next) = read_picture_id(payload, at)?;
                picture_id = Some(id);
                at = next;
            }
            if x & 0x40 != 0 {
                tl0_pic_idx = Some((*payload.get(at)?, at));
                at += 1;
            }
            if x & 0x30 != 0 {
                // TID(2) Y(1) KEYIDX(5); TID and Y mean something only with T.
                let b = *payload.get(at)?;
                if x & 0x20 != 0 {
                    temporal = Some((b >> 6, b & 0x20 != 0));
                }
                at += 1;
            }
        }
        let first = payload.get(at).copied();
        let keyframe_start = start && partition == 0 && first.is_some_and(|b| b & 0x01 == 0);
        Some(Vp8Descriptor {
            picture_id,
            tl0_pic_idx,
            temporal,
            picture_start: start && partition == 0,
            keyframe_start,
            header_len: at,
            patchable: str0m::rtp::Vp8Descriptor::parse(payload).ok(),
        })
    }

    /// A new picture id and TL0PICIDX as a patch str0m applies while it copies the payload
    /// into the outgoing datagram, which it does for every packet anyway: the shared payload
    /// stays as it is and nothing is copied for the rewrite. Fields the descriptor lacks are
    /// left alone, as with [`Vp8Descriptor::write`]. `None` when str0m cannot patch this
    /// descriptor (see the `patchable` field); the caller then writes into a copy.
    pub fn patch(&self, picture_id: u16, tl0_pic_idx: u8) -> Option<Vp8Patch> {
        let mut patch = self.patchable?.patch();
        if let Some((_, width, _)) = self.picture_id {
            patch = patch.picture_id(picture_id % width.modulus());
        }
        if self.tl0_pic_idx.is_some() {
            patch = patch.tl0_pic_idx(tl0_pic_idx);
        }
        // Both parsers read the same RFC 7741 layout; should they ever disagree about a
        // field, str0m refuses the patch and the copy is the fallback.
        patch.build().ok()
    }
}

/// A picture's numbers in a VP8 or VP9 payload descriptor: what a switch re-bases so that
/// the subscriber sees them continue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PictureNumbers {
    /// Picture id and its width.
    pub picture_id: Option<(u16, PictureIdWidth)>,
    /// TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
}

/// The numbered fields of a VP9 payload descriptor (RFC 9628 § 4.2), with where they are:
/// the picture id (`I`), and TL0PICIDX, present with layer indices (`L`) in non-flexible mode
/// (`F` clear); and the frame's temporal layer and whether the packet starts it.
#[derive(Clone, Copy, Debug)]
pub struct Vp9Descriptor {
    /// Picture id, its width and its byte offset.
    pub picture_id: Option<(u16, PictureIdWidth, usize)>,
    /// TL0PICIDX and its byte offset.
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// Its temporal layer (`TID`), when the layer indices are present.
    pub temporal: Option<u8>,
    /// Whether it is a switching up point (`U`, with the layer indices): no later frame
    /// above its temporal layer refers to one before it above that layer.
    pub up_switch: bool,
    /// Start of a frame (`B`).
    pub frame_start: bool,
}

impl Vp9Descriptor {
    /// Reads the descriptor at the start of a VP9 RTP payload; `None` if it is cut short.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let mut at = 1;
        let mut picture_id = None;
        if b0 & 0x80 != 0 {
            let (id, next) = read_picture_id(payload, at)?;
            picture_id = Some(id);
            at = next;
        }
        let layers = b0 & 0x20 != 0;
        let flexible = b0 & 0x10 != 0;
        let mut tl0_pic_idx = None;
        let mut temporal = None;
        let mut up_switch = false;
        if layers {
            // TID(3) U(1) SID(3) D(1)
            let indices = *payload.get(at)?;
            temporal = Some(indices >> 5);
            up_switch = indices & 0x10 != 0;
            at += 1;
            if !flexible {
                tl0_pic_idx = Some((*payload.get(at)?, at));
            }
        }
        Some(Vp9Descriptor {
            picture_id,
            tl0_pic_idx,
            temporal,
            up_switch,
            frame_start: b0 & 0x08 != 0,
        })
    }
}

/// A VP8 or VP9 payload descriptor's numbered fields, with where they are. The two encode
/// them alike: the picture id as the `M` bit and 7 or 15 bits, TL0PICIDX as one byte.
pub trait NumberedPicture {
    /// Picture id, its width and its byte offset.
    fn picture_id_at(&self) -> Option<(u16, PictureIdWidth, usize)>;
    /// TL0PICIDX and its byte offset.
    fn tl0_pic_idx_at(&self) -> Option<(u8, usize)>;

    /// Its picture id and TL0PICIDX, without their places.
    fn numbers(&self) -> PictureNumbers {
        PictureNumbers {
            picture_id: self.picture_id_at().map(|(id, width, _)| (id, width)),
            tl0_pic_idx: self.tl0_pic_idx_at().map(|(t, _)| t),
        }
    }

    /// Writes a new picture id and TL0PICIDX in place (fields the descriptor lacks are left
    /// alone). `payload` must be the one this descriptor was parsed from.
    fn write(&self, payload: &mut [u8], picture_id: u16, tl0_pic_idx: u8) {
        if let Some((_, width, at)) = self.picture_id_at() {
            let id = picture_id % width.modulus();
            match width {
                PictureIdWidth::Long => {
                    payload[at] = 0x80 | (id >> 8) as u8;
                    payload[at + 1] = id as u8;
                }
                PictureIdWidth::Short => payload[at] = id as u8,
            }
        }
        if let Some((_, at)) = self.tl0_pic_idx_at() {
            payload[at] = tl0_pic_idx;
        }
    }
}

impl NumberedPicture for Vp8Descriptor {
    fn picture_id_at(&self) -> Option<(u16, PictureIdWidth, usize)> {
        self.picture_id
    }
    fn tl0_pic_idx_at(&self) -> Option<(u8, usize)> {
        self.tl0_pic_idx
    }
}

impl NumberedPicture for Vp9Descriptor {
    fn picture_id_at(&self) -> Option<(u16, PictureIdWidth, usize)> {
        self.picture_id
    }
    fn tl0_pic_idx_at(&self) -> Option<(u8, usize)> {
        self.tl0_pic_idx
    }
}

/// Reads a picture id (`M` bit, then 7 or 15 bits) at `at`: the id, and where what follows
/// it starts.
fn read_picture_id(payload: &[u8], at: usize) -> Option<((u16, PictureIdWidth, usize), usize)> {
    let p = *payload.get(at)?;
    if p & 0x80 != 0 {
        let low = *payload.get(at + 1)?;
        let id = (u16::from(p & 0x7f) << 8) | u16::from(low);
        Some(((id, PictureIdWidth::Long, at), at + 2))
    } else {
        Some(((u16::from(p), PictureIdWidth::Short, at), at + 1))
    }
}

/// Where a packet sits among the spatial layers of one stream: from VP9's payload descriptor
/// ([`SpatialPlace::vp9`]), or from AV1's dependency descriptor (`layers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpatialPlace {
    /// Its spatial layer (VP9's `SID`).
    pub spatial: u8,
    /// It starts a frame of spatial layer 0 (VP9's `B`): a new picture begins.
    pub picture_start: bool,
    /// It ends its layer's frame (VP9's `E`).
    pub layer_end: bool,
}

impl SpatialPlace {
    /// Reads the VP9 descriptor at the start of `payload` (RFC 9628 § 4.2); `None` without
    /// layer indices (`L`) or if it is cut short.
    pub fn vp9(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let has_picture_id = b0 & 0x80 != 0;
        let has_layers = b0 & 0x20 != 0;
        if !has_layers {
            return None;
        }
        let mut at = 1;
        if has_picture_id {
            at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        // Layer indices: TID(3) U(1) SID(3) D(1).
        let spatial = (payload.get(at)? >> 1) & 0x07;
        Some(SpatialPlace {
            spatial,
            picture_start: b0 & 0x08 != 0 && spatial == 0,
            layer_end: b0 & 0x04 != 0,
        })
    }
}

fn vp9_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let inter = b0 & 0x40 != 0;
    let layers = b0 & 0x20 != 0;
    let begins = b0 & 0x08 != 0;
    if inter || !begins {
        return false;
    }
    // With layer indices, only the base spatial layer starts a keyframe.
    !layers || SpatialPlace::vp9(payload).is_some_and(|v| v.spatial == 0)
}

const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;
const H264_STAP_A: u8 = 24;
const H264_FU_A: u8 = 28;

fn h264_has_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let key = |t: u8| t == H264_IDR || t == H264_SPS;
    match b0 & 0x1f {
        H264_STAP_A => {
            let mut at = 1;
            while let (Some(&hi), Some(&lo)) = (payload.get(at), payload.get(at + 1)) {
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                let Some(&nal) = payload.get(at + 2) else {
                    return false;
                };
                if len > 0 && key(nal & 0x1f) {
                    return true;
                }
                at += 2 + len;
            }
            false
        }
        H264_FU_A => payload
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        t => key(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: extended descriptor with a 15-bit picture id, TL0PICIDX and TID, then
    /// a frame header (a keyframe of 1280×720 when `key`).
    pub(crate) fn vp8(picture_id: u16, tl0: u8, key: bool, start: bool) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        let mut v = vec![
            b0,
            0xe0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
            0x00,
        ];
        if key {
            v.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02]);
        } else {
            v.extend_from_slice(&[0x01, 0x00, 0x00, 0xaa]);
        }
        v
    }

    #[test]
    fn vp8_descriptor_reads_and_writes() {
        let mut p = vp8(0x1234, 7, true, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((0x1234, PictureIdWidth::Long, 2)));
        assert_eq!(d.tl0_pic_idx, Some((7, 4)));
        assert_eq!(d.temporal, Some((0, false)));
        assert!(d.keyframe_start && d.picture_start);
        assert_eq!(vp8_keyframe_size(&p), Some((1280, 720)));
        // TID 2 with the layer sync bit; not the start of a picture.
        let mut q = vp8(5, 7, false, false);
        q[5] = 0b1010_0000;
        let d = Vp8Descriptor::parse(&q).unwrap();
        assert_eq!(d.temporal, Some((2, true)));
        assert!(!d.picture_start);
        d.write(&mut p, 0x7fff + 3, 200);
        let again = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(again.picture_id.unwrap().0, 2, "wraps at 15 bits");
        assert_eq!(again.tl0_pic_idx.unwrap().0, 200);
        // The frame itself is untouched.
        assert_eq!(vp8_keyframe_size(&p), Some((1280, 720)));
    }

    #[test]
    fn vp8_patches_where_str0m_reads_the_same_fields() {
        let p = vp8(0x1234, 7, false, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.patch(1, 2).is_some());
        // The patch carries the values (and wraps the picture id at its width).
        assert_eq!(d.patch(0x7fff + 3, 200), d.patch(2, 200));
        assert_ne!(d.patch(2, 200), d.patch(3, 200));
        assert_ne!(d.patch(2, 200), d.patch(2, 201));
        // TL0PICIDX without TID (RFC 7741 forbids it): str0m will not patch it.
        let mut odd = p.clone();
        odd[1] = 0xc0;
        odd.remove(5);
        let d = Vp8Descriptor::parse(&odd).unwrap();
        assert_eq!(d.tl0_pic_idx, Some((7, 4)));
        assert_eq!(d.patch(1, 2), None);
        // Nothing to move: an empty patch, not a refusal.
        let plain = Vp8Descriptor::parse(&[0x10, 0x00, 0x00]).unwrap();
        assert!(plain.patch(1, 2).is_some());
    }

    #[test]
    fn vp8_keyframe_only_at_the_start_of_a_key_picture() {
        assert!(starts_keyframe(VideoCodec::Vp8, &vp8(1, 1, true, true)));
        assert!(!starts_keyframe(VideoCodec::Vp8, &vp8(1, 1, true, false)));
        assert!(!starts_keyframe(VideoCodec::Vp8, &vp8(1, 1, false, true)));
        assert_eq!(vp8_keyframe_size(&vp8(1, 1, false, true)), None);
        // A short descriptor without extensions.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00]));
        let d = Vp8Descriptor::parse(&[0x90, 0x80, 0x05, 0x00]).unwrap();
        assert_eq!(d.picture_id, Some((5, PictureIdWidth::Short, 2)));
    }

    #[test]
    fn other_codecs_keyframes() {
        // VP9 layer indices: SID 2 (byte 0x05 after a 15-bit picture id), B and E set.
        let v = SpatialPlace::vp9(&[0xac, 0x81, 0x02, 0x05, 0x00]).expect("layer");
        assert_eq!((v.spatial, v.picture_start, v.layer_end), (2, false, true));
        let v = SpatialPlace::vp9(&[0x28, 0x00, 0x00]).expect("layer");
        assert_eq!((v.spatial, v.picture_start, v.layer_end), (0, true, false));
        assert_eq!(SpatialPlace::vp9(&[0x88, 0x01]), None, "no layer indices");
        assert_eq!(SpatialPlace::vp9(&[0xa8, 0x81]), None, "cut short");
        // VP9: B set, P clear; with layer indices only SID 0.
        assert!(starts_keyframe(VideoCodec::Vp9, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0x48]));
        assert!(starts_keyframe(VideoCodec::Vp9, &[0xa8, 0x81, 0x02, 0x00]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0xa8, 0x81, 0x02, 0x02]));
        // H.264: IDR, SPS in STAP-A, FU-A start of an IDR.
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a]));
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]
        ));
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x88]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x88]));
        // AV1: N bit.
        assert!(starts_keyframe(VideoCodec::Av1, &[0x18]));
        assert!(!starts_keyframe(VideoCodec::Av1, &[0x10]));
    }

    #[test]
    fn malformed_payloads_are_not_keyframes() {
        for codec in [
            VideoCodec::Vp8,
            VideoCodec::Vp9,
            VideoCodec::H264,
            VideoCodec::Av1,
        ] {
            assert!(!starts_keyframe(codec, &[]));
        }
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80, 0x85]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0xa8]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0x00, 0x09]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x78, 0xff]));
        assert_eq!(vp8_keyframe_size(&[0x10, 0x00, 0x00, 0x00, 0x9d]), None);
    }

    #[test]
    fn vp9_descriptor_reads_and_writes_picture_numbers() {
        // I, L, B, E (non-flexible): 15-bit picture id 0x1234, layer byte, TL0PICIDX 7.
        let mut p = vec![0xac, 0x92, 0x34, 0x00, 0x07, 0xaa];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((0x1234, PictureIdWidth::Long, 1)));
        assert_eq!(d.tl0_pic_idx, Some((7, 4)));
        d.write(&mut p, 0x0102, 9);
        assert_eq!(p, [0xac, 0x81, 0x02, 0x00, 0x09, 0xaa]);
        assert_eq!(
            Vp9Descriptor::parse(&p).unwrap().numbers(),
            PictureNumbers {
                picture_id: Some((0x0102, PictureIdWidth::Long)),
                tl0_pic_idx: Some(9),
            }
        );

        assert_eq!((d.temporal, d.up_switch), (Some(0), false));
        // TID 2 with the switching up point bit, spatial layer 0.
        let marked = Vp9Descriptor::parse(&[0xac, 0x92, 0x34, 0x50, 0x07]).unwrap();
        assert_eq!((marked.temporal, marked.up_switch), (Some(2), true));

        // Flexible mode has no TL0PICIDX; a 7-bit picture id wraps at 128.
        let mut p = vec![0xb8, 0x05, 0x00, 0xaa];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((5, PictureIdWidth::Short, 1)));
        assert_eq!(d.tl0_pic_idx, None);
        d.write(&mut p, 130, 1);
        assert_eq!(p, [0xb8, 2, 0x00, 0xaa]);

        // No picture id, no layers: nothing to move.
        assert_eq!(
            Vp9Descriptor::parse(&[0x0c, 0xaa]).unwrap().numbers(),
            PictureNumbers::default()
        );
        // Cut short.
        assert!(Vp9Descriptor::parse(&[]).is_none());
        assert!(Vp9Descriptor::parse(&[0x80]).is_none());
        assert!(Vp9Descriptor::parse(&[0x80, 0x81]).is_none());
        assert!(Vp9Descriptor::parse(&[0xa0, 0x01, 0x00]).is_none());
    }
}
