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
//! **What the SFU does with it.** Nothing is interpreted: a stream forwarded whole keeps its
//! dependencies valid, and the template structure a keyframe carries travels with it. Only
//! the frame number (the 16 bits after the first byte) is rewritten, after a simulcast layer
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
}
