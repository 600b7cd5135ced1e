//! Synthetic media with the structure receivers and SFUs look at, and nothing else real.
//!
//! **VP8** ([`Vp8Layer`]): each frame is split into RTP payloads of at most [`MAX_PAYLOAD`]
//! bytes, each starting with an RFC 7741 payload descriptor (X=1, a 15-bit PictureID that
//! grows by one per frame, S=1 and PID=0 on the frame's first packet). The frame starts with
//! the RFC 6386 §9.1 frame tag (key/inter bit, version 0, show_frame, first-partition size);
//! a keyframe adds the start code `9d 01 2a` and its width and height, which is how a decoder
//! (and [`Vp8Info::parse`] on the receiving side) recognises a keyframe and the layer it
//! belongs to. The rest of the frame is filler, so a real decoder would reject the picture
//! data, but every SFU decision (keyframe or not, which layer, frame boundaries by marker)
//! sees what it would see from a browser. A keyframe is sent every [`KEYFRAME_EVERY`] frames
//! and on request (PLI/FIR); keyframes are [`KEYFRAME_SIZE_FACTOR`] times an interframe.
//!
//! **Opus** ([`opus_payload`]): 20 ms packets whose TOC byte says CELT fullband 20 ms, one
//! frame (config 31), followed by filler: 80 bytes, a 32 kbit/s voice stream.

/// Largest RTP payload we produce (leaves room for RTP header, extensions and SRTP tag
/// under a 1200-byte datagram, as browsers do).
pub const MAX_PAYLOAD: usize = 1100;
/// Frames per second of every video layer.
pub const FPS: u32 = 30;
/// A periodic keyframe every 3 s, like a browser with no loss.
pub const KEYFRAME_EVERY: u64 = 90;
pub const KEYFRAME_SIZE_FACTOR: usize = 3;
/// The RTP clock of video and of Opus.
pub const VIDEO_CLOCK: u32 = 90_000;
pub const OPUS_FRAME_SAMPLES: u32 = 960;
const OPUS_PAYLOAD_LEN: usize = 80;
/// TOC: config 31 (CELT-only FB 20 ms), mono, code 0 (one frame).
const OPUS_TOC: u8 = 31 << 3;

/// One simulcast layer (or the only stream) of a synthetic VP8 camera.
///
/// Lifecycle: [`Vp8Layer::new`]; then [`Vp8Layer::next_frame`] every 1/[`FPS`] s, after
/// [`Vp8Layer::request_keyframe`] when the receiver asked for one.
#[derive(Debug)]
pub struct Vp8Layer {
    pub width: u16,
    pub height: u16,
    /// An interframe's size in bytes (bitrate / 8 / FPS).
    frame_bytes: usize,
    picture_id: u16,
    frames: u64,
    keyframe_due: bool,
}

impl Vp8Layer {
    pub fn new(width: u16, height: u16, bitrate_bps: u64) -> Vp8Layer {
        let frame_bytes = (bitrate_bps / 8 / u64::from(FPS)).max(40) as usize;
        Vp8Layer {
            width,
            height,
            frame_bytes,
            picture_id: rand::random::<u16>() & 0x7fff,
            frames: 0,
            keyframe_due: true,
        }
    }

    pub fn request_keyframe(&mut self) {
        self.keyframe_due = true;
    }

    /// The RTP payloads of the next frame and whether it is a keyframe; the last payload
    /// carries the frame's marker bit.
    pub fn next_frame(&mut self) -> (Vec<Vec<u8>>, bool) {
        let keyframe = self.keyframe_due || self.frames.is_multiple_of(KEYFRAME_EVERY);
        self.keyframe_due = false;
        self.frames += 1;
        let size = if keyframe {
            self.frame_bytes * KEYFRAME_SIZE_FACTOR
        } else {
            self.frame_bytes
        };
        let frame = vp8_frame(keyframe, self.width, self.height, size, self.frames);
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let chunk = MAX_PAYLOAD - DESCRIPTOR_LEN;
        let payloads = frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let mut p = Vec::with_capacity(DESCRIPTOR_LEN + part.len());
                // X=1, N=0, S on the first packet, PID=0.
                p.push(0x80 | if i == 0 { 0x10 } else { 0 });
                // I=1: a PictureID follows, in its 15-bit form (M=1).
                p.push(0x80);
                p.push(0x80 | (pid >> 8) as u8);
                p.push(pid as u8);
                p.extend_from_slice(part);
                p
            })
            .collect();
        (payloads, keyframe)
    }
}

const DESCRIPTOR_LEN: usize = 4;

/// A VP8 frame of `size` bytes: frame tag, keyframe start code and dimensions, filler.
fn vp8_frame(keyframe: bool, width: u16, height: u16, size: usize, seed: u64) -> Vec<u8> {
    let header = if keyframe { 10 } else { 3 };
    let size = size.max(header + 1);
    let first_partition = ((size - header) / 2).min((1 << 19) - 1) as u32;
    let tag = u32::from(!keyframe) | (1 << 4) | (first_partition << 5);
    let mut f = Vec::with_capacity(size);
    f.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        f.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        f.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        f.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while f.len() < size {
        // xorshift: cheap bytes that do not compress to nothing.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.push(x as u8);
    }
    f
}

/// What a receiver learns from one VP8 RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vp8Info {
    /// First packet of a frame (S=1, PID=0).
    pub frame_start: bool,
    /// A keyframe's first packet, with its dimensions.
    pub keyframe: Option<(u16, u16)>,
}

impl Vp8Info {
    /// Parses the payload descriptor and, on a frame's first packet, the frame header.
    /// `None` when the payload is not well-formed VP8.
    pub fn parse(p: &[u8]) -> Option<Vp8Info> {
        let b0 = *p.first()?;
        let mut at = 1;
        if b0 & 0x80 != 0 {
            let x = *p.get(1)?;
            at = 2;
            if x & 0x80 != 0 {
                // PictureID: one byte, or two when M is set.
                at += if *p.get(at)? & 0x80 != 0 { 2 } else { 1 };
            }
            if x & 0x40 != 0 {
                at += 1; // TL0PICIDX
            }
            if x & 0x30 != 0 {
                at += 1; // TID/Y/KEYIDX
            }
        }
        let frame = p.get(at..)?;
        let frame_start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
        let keyframe = if frame_start && frame.first()? & 0x01 == 0 {
            if frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u16::from_le_bytes([frame[6], *frame.get(7)?]) & 0x3fff;
            let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
            Some((w, h))
        } else {
            None
        };
        Some(Vp8Info {
            frame_start,
            keyframe,
        })
    }
}

/// Opus packet number `n`: TOC byte, then filler.
pub fn opus_payload(n: u64) -> Vec<u8> {
    let mut p = vec![OPUS_TOC];
    p.extend((1..OPUS_PAYLOAD_LEN as u64).map(|i| (i.wrapping_mul(31) ^ n) as u8));
    p
}

/// The simulcast layers for `bitrate` (the top layer's): rid, width, height, bitrate. Like a
/// browser at 720p: each lower layer halves the dimensions and quarters the bitrate.
pub fn simulcast_layers(bitrate_bps: u64) -> [(&'static str, u16, u16, u64); 3] {
    [
        ("q", 320, 180, bitrate_bps / 16),
        ("h", 640, 360, bitrate_bps / 4),
        ("f", 1280, 720, bitrate_bps),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_carry_start_code_and_size_and_are_recognised() {
        let mut layer = Vp8Layer::new(640, 360, 1_500_000);
        let (first, key) = layer.next_frame();
        assert!(key, "the first frame is a keyframe");
        let info = Vp8Info::parse(&first[0]).unwrap();
        assert_eq!(info.keyframe, Some((640, 360)));
        assert!(info.frame_start);
        // Later packets of the frame are not starts; the tag of an interframe says so.
        assert!(first.len() > 1);
        assert!(!Vp8Info::parse(&first[1]).unwrap().frame_start);
        let (inter, key) = layer.next_frame();
        assert!(!key);
        let info = Vp8Info::parse(&inter[0]).unwrap();
        assert!(info.frame_start && info.keyframe.is_none());
        layer.request_keyframe();
        assert!(layer.next_frame().1, "a requested keyframe comes next");
    }

    #[test]
    fn frame_size_follows_bitrate_and_picture_ids_advance() {
        let mut layer = Vp8Layer::new(1280, 720, 1_500_000);
        layer.next_frame();
        let (a, _) = layer.next_frame();
        let (b, _) = layer.next_frame();
        let bytes: usize = a.iter().map(|p| p.len() - DESCRIPTOR_LEN).sum();
        assert_eq!(bytes, 1_500_000 / 8 / 30);
        assert!(a.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let pid = |p: &[u8]| (u16::from(p[2] & 0x7f) << 8) | u16::from(p[3]);
        assert_eq!(pid(&b[0]), (pid(&a[0]) + 1) & 0x7fff);
    }

    #[test]
    fn foreign_bytes_are_not_keyframes() {
        // S=1, PID=0 and a keyframe bit, but no start code.
        assert_eq!(Vp8Info::parse(&[0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(Vp8Info::parse(&[]), None);
        assert_eq!(opus_payload(3)[0] >> 3, 31);
    }
}
