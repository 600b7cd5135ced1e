//! The frame size a keyframe announces, read from the first RTP packet of the keyframe for
//! the codecs that carry it there, so that layer choice and `track:layer` use what the
//! publisher really sends instead of a nominal size for the layer's rank:
//! - **VP9** (RFC 9628): the scalability structure (`V` bit) a keyframe's descriptor carries,
//!   with the size of each spatial layer; the largest is what a receiver decodes.
//! - **H.264** (ITU-T H.264 § 7.3.2.1): the sequence parameter set sent ahead of each IDR
//!   picture, as a single NAL unit or inside a STAP-A: macroblock counts less the cropping.
//! - **AV1**: the sequence header OBU at the start of a coded video sequence: its maximum frame
//!   size, which is the frame size for a stream that does not change resolution within a
//!   sequence (each browser simulcast layer is its own encoder).
//!
//! (VP8's size is in its keyframe header; see `video::vp8_keyframe_size`.)
//!
//! Everything is a pure function of the bytes, never indexes out of bounds and allocates
//! nothing; anything malformed or truncated reads as "no size".

/// Most spatial layers a VP9 scalability structure can describe (`N_S` is 3 bits).
pub const VP9_MAX_SPATIAL: usize = 8;

/// Size announced by a VP9 payload whose descriptor carries a scalability structure with
/// sizes: the largest spatial layer's.
pub fn vp9(payload: &[u8]) -> Option<(u16, u16)> {
    let (sizes, n) = vp9_spatial_sizes(payload)?;
    let (width, height) = sizes[n - 1];
    (width > 0 && height > 0).then_some((width, height))
}

/// The size of each spatial layer, lowest first, and how many there are, from a VP9
/// payload whose descriptor carries a scalability structure with sizes.
pub fn vp9_spatial_sizes(payload: &[u8]) -> Option<([(u16, u16); VP9_MAX_SPATIAL], usize)> {
    let b0 = *payload.first()?;
    let has_picture_id = b0 & 0x80 != 0;
    let inter = b0 & 0x40 != 0;
    let has_layers = b0 & 0x20 != 0;
    let flexible = b0 & 0x10 != 0;
    let has_structure = b0 & 0x02 != 0;
    if !has_structure {
        return None;
    }
    let mut at = 1;
    if has_picture_id {
        at += if payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
    }
    if has_layers {
        // Layer indices, then TL0PICIDX in non-flexible mode.
        at += if flexible { 1 } else { 2 };
    }
    if flexible && inter {
        // Up to three reference differences, each with N set when another follows.
        for _ in 0..3 {
            let diff = *payload.get(at)?;
            at += 1;
            if diff & 0x01 == 0 {
                break;
            }
        }
    }
    let ss = *payload.get(at)?;
    let spatial_layers = usize::from(ss >> 5) + 1;
    let has_sizes = ss & 0x10 != 0;
    if !has_sizes {
        return None;
    }
    let mut sizes = [(0, 0); VP9_MAX_SPATIAL];
    for (i, size) in sizes.iter_mut().take(spatial_layers).enumerate() {
        let from = at + 1 + i * 4;
        let b = payload.get(from..from + 4)?;
        *size = (
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        );
    }
    Some((sizes, spatial_layers))
}

/// Size from an H.264 sequence parameter set in the payload (a single SPS NAL unit, or one
/// inside a STAP-A).
pub fn h264(payload: &[u8]) -> Option<(u16, u16)> {
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    let b0 = *payload.first()?;
    match b0 & 0x1f {
        SPS => h264_sps(&payload[1..]),
        STAP_A => {
            let mut at = 1;
            while let Some(len) = payload.get(at..at + 2) {
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let nal = payload.get(at + 2..at + 2 + len)?;
                if nal.first().is_some_and(|h| h & 0x1f == SPS) {
                    return h264_sps(&nal[1..]);
                }
                at += 2 + len;
            }
            None
        }
        _ => None,
    }
}

/// Size from the AV1 sequence header OBU among the OBU elements of an RTP payload.
pub fn av1(payload: &[u8]) -> Option<(u16, u16)> {
    const SEQUENCE_HEADER: u8 = 1;
    let aggregation = *payload.first()?;
    let continues_fragment = aggregation & 0x80 != 0;
    // W: how many elements, the last without a length field; 0: every one has a length.
    let counted = usize::from((aggregation >> 4) & 0x03);
    let mut at = 1;
    let mut element = 0;
    while at < payload.len() {
        element += 1;
        let len = if counted != 0 && element == counted {
            payload.len() - at
        } else {
            let (len, n) = leb128(payload.get(at..)?)?;
            at += n;
            usize::try_from(len).ok()?
        };
        let obu = payload.get(at..at.checked_add(len)?)?;
        at += len;
        if element == 1 && continues_fragment {
            continue;
        }
        let header = *obu.first()?;
        if (header >> 3) & 0x0f != SEQUENCE_HEADER {
            continue;
        }
        let mut body = 1 + usize::from(header & 0x04 != 0);
        let mut body_end = obu.len();
        if header & 0x02 != 0 {
            let (size, n) = leb128(obu.get(body..)?)?;
            body += n;
            body_end = body_end.min(body.checked_add(usize::try_from(size).ok()?)?);
        }
        return av1_sequence_header(obu.get(body..body_end)?);
    }
    None
}

/// A sequence parameter set's RBSP after the NAL header: emulation prevention bytes
/// (`00 00 03`) are dropped as it is read.
fn h264_sps(nal: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::rbsp(nal);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    let mut separate_planes = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            separate_planes = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frames_only = r.bit()?;
    if !frames_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0, 0, 0);
    if r.bit()? {
        (left, right, top, bottom) = (
            r.ue()?.into(),
            r.ue()?.into(),
            r.ue()?.into(),
            r.ue()?.into(),
        );
    }
    let field_factor = if frames_only { 1 } else { 2 };
    let (crop_x, crop_y) = match (chroma_format, separate_planes) {
        (0, _) | (3, true) => (1, field_factor),
        (1, _) => (2, 2 * field_factor),
        (2, _) => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub((left + right) * crop_x)?;
    let height = (field_factor * height_units * 16).checked_sub((top + bottom) * crop_y)?;
    let width = u16::try_from(width).ok().filter(|w| *w > 0)?;
    let height = u16::try_from(height).ok().filter(|h| *h > 0)?;
    Some((width, height))
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last = 8i64;
    let mut next = 8i64;
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// AV1 `sequence_header_obu()` up to `max_frame_{width,height}_minus_1`.
fn av1_sequence_header(obu: &[u8]) -> Option<(u16, u16)> {
    let mut r = BitReader::plain(obu);
    r.bits(3)?; // seq_profile
    r.bit()?; // still_picture
    let reduced = r.bit()?;
    if reduced {
        r.bits(5)?; // seq_level_idx[0]
    } else {
        let mut buffer_delay_bits = 0;
        let timing_info = r.bit()?;
        let mut decoder_model_info = false;
        if timing_info {
            r.bits(32)?; // num_units_in_display_tick
            r.bits(32)?; // time_scale
            if r.bit()? {
                r.ue()?; // num_ticks_per_picture_minus_1 (uvlc)
            }
            decoder_model_info = r.bit()?;
            if decoder_model_info {
                buffer_delay_bits = r.bits(5)? + 1;
                r.bits(32)?; // num_units_in_decoding_tick
                r.bits(5)?; // buffer_removal_time_length_minus_1
                r.bits(5)?; // frame_presentation_time_length_minus_1
            }
        }
        let initial_display_delay = r.bit()?;
        for _ in 0..=r.bits(5)? {
            r.bits(12)?; // operating_point_idc
            if r.bits(5)? > 7 {
                r.bit()?; // seq_tier
            }
            if decoder_model_info && r.bit()? {
                r.bits(buffer_delay_bits)?; // decoder_buffer_delay
                r.bits(buffer_delay_bits)?; // encoder_buffer_delay
                r.bit()?; // low_delay_mode_flag
            }
            if initial_display_delay && r.bit()? {
                r.bits(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    let width = u16::try_from(r.bits(width_bits)? + 1).ok()?;
    let height = u16::try_from(r.bits(height_bits)? + 1).ok()?;
    Some((width, height))
}

/// Unsigned LEB128 as AV1 uses it (at most 8 bytes): the value and the bytes it took.
fn leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads bits most significant first. In RBSP mode a `03` after two zero bytes is an emulation
/// prevention byte and is skipped.
struct BitReader<'a> {
    bytes: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
    rbsp: bool,
}

impl<'a> BitReader<'a> {
    fn plain(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            byte: 0,
            bit: 0,
            zeros: 0,
            rbsp: false,
        }
    }

    fn rbsp(bytes: &'a [u8]) -> Self {
        BitReader {
            rbsp: true,
            ..Self::plain(bytes)
        }
    }

    fn bit(&mut self) -> Option<bool> {
        if self.bit == 0 && self.rbsp {
            if self.zeros >= 2 && self.bytes.get(self.byte) == Some(&0x03) {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.bytes.get(self.byte)?;
            self.zeros = if b == 0 {
                self.zeros.saturating_add(1)
            } else {
                0
            };
        }
        let b = *self.bytes.get(self.byte)?;
        let value = (b >> (7 - self.bit)) & 1 == 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(value)
    }

    /// Up to 32 bits.
    fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    /// Exp-Golomb unsigned (H.264 `ue(v)`, AV1 `uvlc()`: the same code), at most 32 bits of
    /// value.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        u32::try_from((1u64 << zeros) - 1 + u64::from(rest)).ok()
    }

    /// Exp-Golomb signed (H.264 `se(v)`).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes bits most significant first, the inverse of [`BitReader`], to build test streams.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: u8,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) -> &mut Self {
            if self.bits == 0 {
                self.bytes.push(0);
            }
            if b {
                *self.bytes.last_mut().unwrap() |= 0x80 >> self.bits;
            }
            self.bits = (self.bits + 1) % 8;
            self
        }
        fn bits(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let x = u64::from(v) + 1;
            let len = 64 - x.leading_zeros();
            self.bits(len - 1, 0).bits(len, x)
        }
        fn se(&mut self, v: i32) -> &mut Self {
            let k = if v > 0 { 2 * v - 1 } else { -2 * v };
            self.ue(k as u32)
        }
        /// The bytes with a stop bit, and emulation prevention where `rbsp`.
        fn finish(&mut self, rbsp: bool) -> Vec<u8> {
            self.bit(true);
            let mut out = Vec::new();
            let mut zeros = 0;
            for &b in &self.bytes {
                if rbsp && zeros >= 2 && b <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                out.push(b);
            }
            out
        }
    }

    /// An SPS NAL unit (with its header byte) for `profile`, sized in macroblocks and cropped,
    /// with the given `pic_order_cnt_type`; high profile (100) with scaling lists if `scaling`.
    fn sps(
        profile: u8,
        mbs: (u32, u32),
        crop: Option<[u32; 4]>,
        scaling: bool,
        poc_type: u32,
    ) -> Vec<u8> {
        let mut w = BitWriter::default();
        // Level 1b for profile 0 (which no encoder sends), so that the SPS starts 00 00 01
        // and needs an emulation prevention byte; level 3.1 otherwise.
        let level = if profile == 0 { 1 } else { 31 };
        w.bits(8, u64::from(profile))
            .bits(8, 0)
            .bits(8, level)
            .ue(0);
        if profile == 100 {
            w.ue(1).ue(0).ue(0).bit(false).bit(scaling);
            if scaling {
                for i in 0..8 {
                    w.bit(i == 0 || i == 6);
                    if i == 0 {
                        // Sixteen deltas, the last making the next scale 0 (the rest implied).
                        for _ in 0..15 {
                            w.se(1);
                        }
                        w.se(-23);
                    } else if i == 6 {
                        w.se(-8); // next scale 0 at once: the default list
                    }
                }
            }
        }
        w.ue(0).ue(poc_type);
        match poc_type {
            0 => {
                w.ue(2);
            }
            1 => {
                w.bit(false).se(-3).se(5).ue(2).se(7).se(-1);
            }
            _ => {}
        }
        w.ue(1)
            .bit(false)
            .ue(mbs.0 - 1)
            .ue(mbs.1 - 1)
            .bit(true)
            .bit(true);
        match crop {
            Some([l, r, t, b]) => {
                w.bit(true).ue(l).ue(r).ue(t).ue(b);
            }
            None => {
                w.bit(false);
            }
        }
        w.bit(false); // vui_parameters_present_flag
        let mut nal = vec![0x67];
        nal.extend(w.finish(true));
        nal
    }

    #[test]
    fn h264_sps_sizes_with_cropping_profiles_and_stap_a() {
        // 1280×720: 80×45 macroblocks, no cropping.
        assert_eq!(h264(&sps(66, (80, 45), None, false, 2)), Some((1280, 720)));
        // 320×180: 20×12 macroblocks, 12 lines cropped at the bottom (6 in 4:2:0 units).
        assert_eq!(
            h264(&sps(66, (20, 12), Some([0, 0, 0, 6]), false, 0)),
            Some((320, 180))
        );
        // High profile with scaling lists and POC type 1 cycles.
        assert_eq!(
            h264(&sps(100, (40, 23), Some([0, 0, 0, 4]), true, 1)),
            Some((640, 360))
        );
        // Inside a STAP-A, after a leading NAL unit, before the PPS.
        let sps = sps(66, (40, 23), Some([0, 0, 0, 4]), false, 2);
        let mut stap = vec![0x78, 0x00, 0x01, 0x06];
        stap.extend((sps.len() as u16).to_be_bytes());
        stap.extend(&sps);
        stap.extend([0x00, 0x02, 0x68, 0xce]);
        assert_eq!(h264(&stap), Some((640, 360)));
        // Not an SPS, or cut short anywhere: no size, no panic.
        assert_eq!(h264(&[0x65, 0x88]), None);
        for end in 0..sps.len() - 2 {
            assert_eq!(h264(&sps[..end]), None, "truncated at {end}");
        }
        assert_eq!(h264(&stap[..stap.len() - 8]), None);
    }

    #[test]
    fn h264_emulation_prevention_bytes_are_skipped() {
        // Profile 0, constraints 0, level 1: the SPS starts 00 00 03 01, which a reader that
        // kept the 03 would misread.
        let nal = sps(0, (80, 45), None, false, 2);
        assert_eq!(&nal[1..4], &[0x00, 0x00, 0x03]);
        assert_eq!(h264(&nal), Some((1280, 720)));
    }

    #[test]
    fn vp9_scalability_structure_sizes() {
        // I (15-bit id), L, B, V, non-flexible: id, layer byte, TL0PICIDX, then SS with one
        // spatial layer of 640×360 and Y set, G clear.
        let p = [
            0xaa, 0x80, 0x01, 0x00, 0x05, 0x10, 0x02, 0x80, 0x01, 0x68, 0xff,
        ];
        assert_eq!(vp9(&p), Some((640, 360)));
        // Three spatial layers: the largest.
        let p = [
            0x0a, 0x50, 0x00, 0xa0, 0x00, 0x5a, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68,
        ];
        assert_eq!(vp9(&p), Some((640, 360)));
        // Without V, without Y, or truncated: none.
        assert_eq!(vp9(&[0x88, 0x05]), None);
        assert_eq!(vp9(&[0x0a, 0x00]), None);
        for end in 0..p.len() {
            assert_eq!(vp9(&p[..end]), None);
        }
        // Flexible mode with reference differences before the SS.
        let p = [0x52, 0x03, 0x04, 0x10, 0x01, 0x40, 0x00, 0xb4];
        assert_eq!(vp9(&p), Some((320, 180)));
    }

    #[test]
    fn vp9_scalability_structure_gives_every_spatial_layer() {
        let p = [
            0x0a, 0x50, 0x00, 0xa0, 0x00, 0x5a, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68,
        ];
        let (sizes, n) = vp9_spatial_sizes(&p).expect("sizes");
        assert_eq!(&sizes[..n], &[(160, 90), (320, 180), (640, 360)]);
        // Every size must be there.
        assert_eq!(vp9_spatial_sizes(&p[..13]), None);
    }

    /// A sequence header OBU (header byte, no size field) for `width`×`height`, with timing and
    /// decoder model information when `full`.
    fn av1_sequence(width: u32, height: u32, full: bool) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.bits(3, 0).bit(false).bit(false); // profile, still_picture, reduced
        w.bit(full); // timing_info_present
        if full {
            w.bits(32, 1).bits(32, 90_000).bit(true).ue(2); // uvlc is ue's layout
            w.bit(true).bits(5, 9).bits(32, 1).bits(5, 4).bits(5, 4);
        }
        w.bit(full); // initial_display_delay_present
        w.bits(5, 1); // two operating points
        for level in [8u64, 4] {
            w.bits(12, 0x103).bits(5, level);
            if level > 7 {
                w.bit(false);
            }
            if full {
                w.bit(true).bits(10, 3).bits(10, 4).bit(false);
                w.bit(true).bits(4, 9);
            }
        }
        w.bits(4, 15)
            .bits(4, 15)
            .bits(16, u64::from(width - 1))
            .bits(16, u64::from(height - 1));
        let mut obu = vec![0x08];
        obu.extend(w.finish(false));
        obu
    }

    #[test]
    fn av1_sequence_header_sizes() {
        let obu = av1_sequence(1280, 720, false);
        // One element, W=1 (no length), N set.
        let mut p = vec![0x18];
        p.extend(&obu);
        assert_eq!(av1(&p), Some((1280, 720)));
        // W=0: every element with a length; the sequence header second, after a frame OBU.
        let full = av1_sequence(320, 180, true);
        let mut p = vec![0x08, 0x02, 0x30, 0x00, full.len() as u8];
        p.extend(&full);
        assert_eq!(av1(&p), Some((320, 180)));
        // An OBU with its own size field (and an extension byte).
        let mut with_size = vec![0x0e, 0x00, (obu.len() - 1) as u8];
        with_size.extend(&obu[1..]);
        let mut p = vec![0x10];
        p.extend(&with_size);
        assert_eq!(av1(&p), Some((1280, 720)));
        // A continued fragment first, no sequence header, truncated: none.
        let mut p = vec![0x98];
        p.extend(&obu);
        assert_eq!(av1(&p), None);
        assert_eq!(av1(&[0x10, 0x30, 0x00]), None);
        let mut p = vec![0x18];
        p.extend(&obu);
        for end in 0..p.len() - 1 {
            assert_eq!(av1(&p[..end]), None, "truncated at {end}");
        }
        assert_eq!(
            av1(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            None
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64: the same bytes every run.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 64];
        for _ in 0..50_000 {
            let len = (next() % 64) as usize;
            for b in &mut buf[..len] {
                *b = next() as u8;
            }
            // Bias the first bytes towards the paths that read further.
            if len > 0 {
                buf[0] |= [0x02, 0x07, 0x18, 0x00][(next() % 4) as usize];
            }
            let p = &buf[..len];
            for size in [vp9(p), h264(p), av1(p)].into_iter().flatten() {
                assert!(size.0 > 0 && size.1 > 0);
            }
        }
    }
}
