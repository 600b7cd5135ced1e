//! The dependency descriptor RTP header extension (the AV1 RTP payload format, appendix A),
//! carried from a publisher to its subscribers.
//!
//! **Why the SFU negotiates it.** Chromium offers the descriptor for every video sender with a
//! scalability mode (spatial layers in one stream, or simulcast layers with temporal layers),
//! and its receiver finds frame dependencies from it. Without it, Chromium 156 decoded no
//! frame of AV1 with three spatial layers (`L3T3_KEY`) even peer to peer, and only part of
//! VP9's (59 of 143 frames, the middle layer); with it, both decode every frame at the top
//! layer (ADR 0090). str0m does not know the extension, so the SFU registers it as a user
//! extension: str0m parses it into [`ExtensionValues::user_values`] and writes it back from
//! there.
//!
//! **What the SFU does with it.** Little is interpreted: a stream forwarded whole keeps its
//! dependencies valid, and the template structure a keyframe carries travels with it. The
//! SFU reads each template's temporal layer from that structure ([`Templates`]), which is how
//! Chromium's VP8 tells a frame's temporal layer (its VP8 descriptor then has no `TID`), for
//! the reduced frame rates of `temporal`. Only the frame number (the 16 bits after the first
//! byte) is rewritten, after a simulcast layer
//! switch or a pause, so that the receiver sees one sequence of frames, as VP8's picture id
//! is (`forward`). Until the first switch every subscriber gets the publisher's value.
//!
//! **Cost.** str0m keeps user values in a type map with one `Arc` per value, so a packet
//! carrying the descriptor costs two allocations when received, and one per subscriber when
//! forwarded (the map is cloned; the value is shared), two once a switch moved the frame
//! number. Streams without the descriptor, VP8 simulcast from the demo page among them,
//! allocate nothing more.

use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};

/// The extension's URI.
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Id in the SFU's own offers (free in str0m's standard map; Chromium uses 12 or 13). In an
/// answer the offerer's id is used: str0m moves the mapping to it.
pub const ID: u8 = 12;

/// The extension, for `RtcConfig::set_extension`.
pub fn extension() -> Extension {
    Extension::with_serializer(URI, Serializer)
}

/// One packet's descriptor, as received: mandatory fields first, then whatever the sender
/// put after them (template structure, active decode targets, custom dependencies).
///
/// Held inline: an RTP header extension is at most 255 bytes.
#[derive(Clone)]
pub struct DependencyDescriptor {
    len: u8,
    bytes: [u8; 255],
}

/// Mandatory fields: start and end of frame, template id, 16-bit frame number.
const MANDATORY_LEN: usize = 3;

impl DependencyDescriptor {
    /// The descriptor in `buf`, or `None` if it is shorter than its mandatory fields.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        if buf.len() < MANDATORY_LEN || buf.len() > 255 {
            return None;
        }
        let mut bytes = [0; 255];
        bytes[..buf.len()].copy_from_slice(buf);
        Some(DependencyDescriptor {
            len: buf.len() as u8,
            bytes,
        })
    }

    /// The descriptor of a packet, if it carries one.
    pub fn of(ext: &ExtensionValues) -> Option<&Self> {
        ext.user_values.get::<Self>()
    }

    /// The frame number this packet belongs to.
    pub fn frame_number(&self) -> u16 {
        u16::from_be_bytes([self.bytes[1], self.bytes[2]])
    }

    /// The same descriptor with another frame number.
    pub fn with_frame_number(&self, frame_number: u16) -> Self {
        let mut moved = self.clone();
        moved.bytes[1..MANDATORY_LEN].copy_from_slice(&frame_number.to_be_bytes());
        moved
    }

    /// The bytes as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether this packet starts its frame (`start_of_frame`).
    pub fn frame_start(&self) -> bool {
        self.bytes[0] & 0x80 != 0
    }

    /// The template this packet's frame follows (its `frame_dependency_template_id`).
    pub fn template_id(&self) -> u8 {
        self.bytes[0] & 0x3f
    }

    /// The template structure this descriptor carries (a keyframe's first packet does), as
    /// far as [`Templates`] reads it; `None` without one or if it is cut short.
    pub fn templates(&self) -> Option<Templates> {
        let mut bits = Bits::new(&self.bytes[MANDATORY_LEN..usize::from(self.len)]);
        // template_dependency_structure_present_flag, then four flags for other fields.
        if bits.read(1)? == 0 {
            return None;
        }
        bits.read(4)?;
        let offset = bits.read(6)? as u8;
        let _decode_targets = bits.read(5)?;
        // template_layers(): one template per step; next_layer_idc 1 is the next temporal
        // layer, 2 the next spatial layer (temporal back to 0), 3 the end.
        let mut temporal = [0u8; MAX_TEMPLATES];
        let (mut count, mut tid, mut spatial) = (0, 0u8, 0u8);
        loop {
            *temporal.get_mut(count)? = tid;
            count += 1;
            match bits.read(2)? {
                0 => {}
                1 => tid += 1,
                2 => {
                    tid = 0;
                    spatial += 1;
                }
                _ => break,
            }
        }
        Some(Templates {
            offset,
            count: count as u8,
            temporal,
            spatial_layers: spatial + 1,
        })
    }
}

/// Most templates a structure holds (template ids are 6 bits).
const MAX_TEMPLATES: usize = 64;

/// What the SFU reads of a template dependency structure: each template's temporal layer.
///
/// Lifecycle: read from a keyframe's descriptor, kept per layer until the next one replaces it
/// (`layers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Templates {
    /// The template id of the first template (`template_id_offset`).
    offset: u8,
    count: u8,
    temporal: [u8; MAX_TEMPLATES],
    /// How many spatial layers the templates cover.
    pub spatial_layers: u8,
}

impl Templates {
    /// The temporal layer of a frame that follows template `template_id`, if this structure
    /// has that template.
    pub fn temporal_layer(&self, template_id: u8) -> Option<u8> {
        let index = usize::from(template_id.wrapping_sub(self.offset) % MAX_TEMPLATES as u8);
        (index < usize::from(self.count)).then(|| self.temporal[index])
    }
}

/// Reads a byte string bit by bit, most significant first.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Bits { bytes, at: 0 }
    }

    /// The next `n` bits (at most 32); `None` past the end.
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.bytes.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(v)
    }
}

impl std::fmt::Debug for DependencyDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DependencyDescriptor")
            .field("frame_number", &self.frame_number())
            .field("len", &self.len)
            .finish()
    }
}

/// str0m's hooks for the extension: the value lives in `user_values` as a
/// [`DependencyDescriptor`].
#[derive(Debug)]
struct Serializer;

impl ExtensionSerializer for Serializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(d) = DependencyDescriptor::of(ev) else {
            return 0;
        };
        let bytes = d.as_bytes();
        match buf.get_mut(..bytes.len()) {
            Some(out) => {
                out.copy_from_slice(bytes);
                bytes.len()
            }
            None => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        match DependencyDescriptor::parse(buf) {
            Some(d) => {
                ev.user_values.set(d);
                true
            }
            None => false,
        }
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    // The one-byte form holds at most 16 bytes; a keyframe's template structure is longer.
    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        DependencyDescriptor::of(ev).is_some_and(|d| d.len > 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_round_trips_through_the_serializer() {
        let wire = [0xc1, 0x12, 0x34, 0x80, 0x01, 0x02];
        let mut ev = ExtensionValues::default();
        assert!(Serializer.parse_value(&wire, &mut ev));
        let d = DependencyDescriptor::of(&ev).unwrap();
        assert_eq!(d.frame_number(), 0x1234);
        assert!(!Serializer.requires_two_byte_form(&ev));
        let mut out = [0u8; 32];
        assert_eq!(Serializer.write_to(&mut out, &ev), wire.len());
        assert_eq!(out[..wire.len()], wire);
    }

    #[test]
    fn the_frame_number_moves_and_nothing_else() {
        let wire = [0x80, 0xff, 0xfe, 0xaa, 0xbb];
        let d = DependencyDescriptor::parse(&wire).unwrap();
        let moved = d.with_frame_number(7);
        assert_eq!(moved.as_bytes(), [0x80, 0x00, 0x07, 0xaa, 0xbb]);
        assert_eq!(d.as_bytes(), wire);
    }

    #[test]
    fn short_long_and_missing_values() {
        let mut ev = ExtensionValues::default();
        assert!(!Serializer.parse_value(&[0x80, 0x00], &mut ev));
        assert!(DependencyDescriptor::of(&ev).is_none());
        let mut out = [0u8; 8];
        assert_eq!(Serializer.write_to(&mut out, &ev), 0, "nothing to write");

        // A keyframe's structure: longer than the one-byte form allows.
        let long: Vec<u8> = (0..40).collect();
        assert!(Serializer.parse_value(&long, &mut ev));
        assert!(Serializer.requires_two_byte_form(&ev));
        assert_eq!(
            Serializer.write_to(&mut out, &ev),
            0,
            "a short buffer is not overrun"
        );
        let mut big = [0u8; 64];
        assert_eq!(Serializer.write_to(&mut big, &ev), 40);
        assert!(DependencyDescriptor::parse(&[0; 256]).is_none());
    }

    /// Bytes from a string of '0' and '1' (spaces ignored), zero-padded to whole bytes.
    fn bits(s: &str) -> Vec<u8> {
        let bits: Vec<u8> = s.bytes().filter(|b| *b != b' ').map(|b| b - b'0').collect();
        bits.chunks(8)
            .map(|c| c.iter().enumerate().fold(0, |v, (i, b)| v | (b << (7 - i))))
            .collect()
    }

    #[test]
    fn each_templates_temporal_layer_is_read_from_a_keyframes_structure() {
        // L1T3 as libwebrtc describes it: five templates, with temporal layers 0, 0, 1, 2, 2
        // (next_layer_idc 0, 1, 1, 0, then 3 to end), the first with id 62.
        let mut wire = vec![0x80 | 62, 0x00, 0x01];
        wire.extend(bits("1 0000 111110 00010 00 01 01 00 11 000000"));
        let d = DependencyDescriptor::parse(&wire).unwrap();
        assert_eq!(d.template_id(), 62);
        let t = d.templates().unwrap();
        assert_eq!(t.spatial_layers, 1);
        let layers: Vec<Option<u8>> = [62, 63, 0, 1, 2, 3].map(|id| t.temporal_layer(id)).to_vec();
        assert_eq!(layers, [Some(0), Some(0), Some(1), Some(2), Some(2), None]);

        // Two spatial layers (next_layer_idc 2).
        let mut wire = vec![0x80, 0x00, 0x01];
        wire.extend(bits("1 0000 000000 00011 01 10 01 11"));
        let t = DependencyDescriptor::parse(&wire)
            .unwrap()
            .templates()
            .unwrap();
        assert_eq!(t.spatial_layers, 2);
        assert_eq!(t.temporal_layer(3), Some(1));

        // No structure; a structure cut short; mandatory fields only.
        let mut wire = vec![0x80, 0x00, 0x01];
        wire.extend(bits("0 0001 000000"));
        assert_eq!(
            DependencyDescriptor::parse(&wire).unwrap().templates(),
            None
        );
        let mut wire = vec![0x80, 0x00, 0x01];
        wire.extend(bits("1 0000 000000 00010 00 00"));
        assert_eq!(
            DependencyDescriptor::parse(&wire).unwrap().templates(),
            None
        );
        assert_eq!(
            DependencyDescriptor::parse(&[0x80, 0, 1])
                .unwrap()
                .templates(),
            None
        );
    }
}
