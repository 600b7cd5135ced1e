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
//! the reduced frame rates of `temporal`. AV1's spatial layers in one stream are told apart
//! the same way: each template's spatial layer and each layer's render resolution drive the
//! per-subscriber choice VP9's SVC uses (ADR 0102). Only the frame number (the 16 bits after
//! the first byte) is rewritten, after a simulcast layer switch or a pause, so that the
//! receiver sees one sequence of frames, as VP8's picture id is (`forward`). Until the first
//! switch every subscriber gets the publisher's value.
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

    /// Whether this packet ends its frame (`end_of_frame`).
    pub fn frame_end(&self) -> bool {
        self.bytes[0] & 0x40 != 0
    }

    /// The template this packet's frame follows (its `frame_dependency_template_id`).
    pub fn template_id(&self) -> u8 {
        self.bytes[0] & 0x3f
    }

    /// The template structure this descriptor carries (a keyframe's first packet does), as
    /// far as [`Templates`] reads it; `None` without one or if it is cut short before its
    /// templates' layers end.
    pub fn templates(&self) -> Option<Templates> {
        let mut bits = self.extended()?;
        // template_dependency_structure_present_flag, then four flags for other fields.
        if bits.read(1)? == 0 {
            return None;
        }
        bits.read(4)?;
        let offset = bits.read(6)? as u8;
        let decode_targets = bits.read(5)? as u8 + 1;
        // template_layers(): one template per step; next_layer_idc 1 is the next temporal
        // layer, 2 the next spatial layer (temporal back to 0), 3 the end.
        let mut temporal = [0u8; MAX_TEMPLATES];
        let mut spatial_of = [0u8; MAX_TEMPLATES];
        let (mut count, mut tid, mut spatial) = (0, 0u8, 0u8);
        loop {
            *temporal.get_mut(count)? = tid;
            spatial_of[count] = spatial;
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
        // template_dtis(): two bits per template and decode target. A structure cut short
        // here still tells each template's layer.
        let mut indications = [0u64; MAX_TEMPLATES];
        let mut complete = true;
        'templates: for dtis in indications.iter_mut().take(count) {
            for dt in 0..decode_targets {
                let Some(dti) = bits.read(2) else {
                    complete = false;
                    break 'templates;
                };
                *dtis |= u64::from(dti) << (2 * dt);
            }
        }
        let switches = complete.then(|| {
            Switches::new(
                &indications[..count],
                &temporal[..count],
                &spatial_of[..count],
                decode_targets,
            )
        });
        let sizes = if complete {
            read_resolutions(&mut bits, count, decode_targets, spatial + 1)
        } else {
            None
        };
        Some(Templates {
            offset,
            count: count as u8,
            temporal,
            spatial: spatial_of,
            spatial_layers: spatial + 1,
            switches,
            sizes,
        })
    }

    /// The bits after the mandatory fields; `None` if there are none.
    fn extended(&self) -> Option<Bits<'_>> {
        let rest = &self.bytes[MANDATORY_LEN..usize::from(self.len)];
        (!rest.is_empty()).then(|| Bits::new(rest))
    }

    /// The frame's decode target indications when it gives its own (`custom_dtis_flag`)
    /// instead of its template's: `Some(None)` when it does but they cannot be read here
    /// (after a template structure, or cut short), `None` when it does not.
    fn custom_indications(&self, decode_targets: u8) -> Option<Option<u64>> {
        let mut bits = self.extended()?;
        let structure = bits.read(1)? == 1;
        let active_targets = bits.read(1)? == 1;
        let custom = bits.read(1)? == 1;
        if !custom {
            return None;
        }
        if structure {
            return Some(None);
        }
        Some((|| {
            bits.read(2)?; // custom_fdiffs_flag, custom_chains_flag
            if active_targets {
                bits.read(usize::from(decode_targets))?;
            }
            let mut dtis = 0u64;
            for dt in 0..decode_targets {
                dtis |= u64::from(bits.read(2)?) << (2 * dt);
            }
            Some(dtis)
        })())
    }
}

/// Most templates a structure holds (template ids are 6 bits).
const MAX_TEMPLATES: usize = 64;

/// Most spatial layers whose sizes [`Templates`] keeps (Chromium sends at most three).
const MAX_SIZES: usize = 4;

/// The structure's render resolutions (`render_resolutions()`), read after its frame
/// differences and chains, which are skipped; `None` when it has none, has more spatial layers
/// than [`MAX_SIZES`], or is cut short.
fn read_resolutions(
    bits: &mut Bits<'_>,
    templates: usize,
    decode_targets: u8,
    spatial_layers: u8,
) -> Option<Sizes> {
    // template_fdiffs(): per template, 4-bit differences each after a "follows" flag.
    for _ in 0..templates {
        while bits.read(1)? == 1 {
            bits.read(4)?;
        }
    }
    // template_chains(): the chain count, each decode target's chain, 4 bits per template
    // and chain.
    let chains = bits.non_symmetric(u32::from(decode_targets) + 1)?;
    if chains > 0 {
        for _ in 0..decode_targets {
            bits.non_symmetric(chains)?;
        }
        for _ in 0..templates * chains as usize {
            bits.read(4)?;
        }
    }
    if bits.read(1)? == 0 || usize::from(spatial_layers) > MAX_SIZES {
        return None;
    }
    let mut sizes = Sizes {
        count: spatial_layers,
        sizes: [(0, 0); MAX_SIZES],
    };
    for size in sizes.sizes.iter_mut().take(usize::from(spatial_layers)) {
        let width = bits.read(16)? + 1;
        let height = bits.read(16)? + 1;
        *size = (u16::try_from(width).ok()?, u16::try_from(height).ok()?);
    }
    Some(sizes)
}

/// Each spatial layer's largest frame size, lowest layer first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sizes {
    count: u8,
    sizes: [(u16, u16); MAX_SIZES],
}

/// A decode target indication (two bits): the frame is a *switch* point of that decode
/// target, as the AV1 RTP payload format defines it.
const DTI_SWITCH: u64 = 2;

/// What the SFU reads of a template dependency structure: each template's temporal layer,
/// and where a subscriber may rise to more of them ([`Templates::switch_targets`]).
///
/// Lifecycle: read from a keyframe's descriptor, kept per layer until the next one replaces it
/// (`layers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Templates {
    /// The template id of the first template (`template_id_offset`).
    offset: u8,
    count: u8,
    temporal: [u8; MAX_TEMPLATES],
    spatial: [u8; MAX_TEMPLATES],
    /// How many spatial layers the templates cover.
    pub spatial_layers: u8,
    /// `None` when the structure was cut short before its decode target indications.
    switches: Option<Switches>,
    /// `None` when the structure gives no render resolutions (see [`read_resolutions`]).
    sizes: Option<Sizes>,
}

impl Templates {
    /// The temporal layer of a frame that follows template `template_id`, if this structure
    /// has that template.
    pub fn temporal_layer(&self, template_id: u8) -> Option<u8> {
        self.index(template_id).map(|i| self.temporal[i])
    }

    /// The spatial layer of a frame that follows template `template_id`, if this structure
    /// has that template.
    pub fn spatial_layer(&self, template_id: u8) -> Option<u8> {
        self.index(template_id).map(|i| self.spatial[i])
    }

    /// Each spatial layer's largest frame size (`max_render_width` and `_height`), lowest
    /// first, when the structure gives them.
    pub fn sizes(&self) -> Option<&[(u16, u16)]> {
        self.sizes
            .as_ref()
            .map(|s| &s.sizes[..usize::from(s.count)])
    }

    /// The frame rates a subscriber of the top spatial layer may rise to at the frame of
    /// descriptor `d`: bit `k` is set when the frame is a switch point of the decode target
    /// holding temporal layers 0 to `k` (bit 7 stands for every higher one, the full rate),
    /// so that it and what follows decode from what was forwarded before. Zero when the
    /// structure or the frame does not say.
    pub fn switch_targets(&self, d: &DependencyDescriptor) -> u8 {
        let (Some(switches), Some(i)) = (self.switches.as_ref(), self.index(d.template_id()))
        else {
            return 0;
        };
        let dtis = match d.custom_indications(switches.decode_targets) {
            None => switches.indications[i],
            Some(Some(custom)) => custom,
            Some(None) => return 0,
        };
        switches.targets(dtis)
    }

    fn index(&self, template_id: u8) -> Option<usize> {
        let index = usize::from(template_id.wrapping_sub(self.offset) % MAX_TEMPLATES as u8);
        (index < usize::from(self.count)).then_some(index)
    }
}

/// Each template's decode target indications, and which decode target holds which
/// temporal layers of the top spatial layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Switches {
    decode_targets: u8,
    /// Per template, two bits per decode target.
    indications: [u64; MAX_TEMPLATES],
    /// Per temporal layer `k`, the decode targets (bit per target) of the top spatial layer
    /// whose highest temporal layer is `k`.
    by_temporal: [u32; 8],
    /// The highest temporal layer of any such target.
    top: u8,
}

impl Switches {
    /// A decode target's layers are the highest spatial and temporal layers of the
    /// templates it holds (the payload format's `decode_target_layers()`).
    fn new(indications: &[u64], temporal: &[u8], spatial: &[u8], decode_targets: u8) -> Self {
        let mut layers = [(0u8, 0u8); 32];
        for (t, dtis) in indications.iter().enumerate() {
            for (dt, layer) in layers
                .iter_mut()
                .enumerate()
                .take(usize::from(decode_targets))
            {
                if (dtis >> (2 * dt)) & 3 != 0 {
                    layer.0 = layer.0.max(spatial[t]);
                    layer.1 = layer.1.max(temporal[t]);
                }
            }
        }
        let top_spatial = spatial.iter().copied().max().unwrap_or(0);
        let mut by_temporal = [0u32; 8];
        let mut top = 0;
        for (dt, &(s, t)) in layers.iter().enumerate().take(usize::from(decode_targets)) {
            if s == top_spatial {
                by_temporal[usize::from(t.min(7))] |= 1 << dt;
                top = top.max(t.min(7));
            }
        }
        let mut all = [0u64; MAX_TEMPLATES];
        all[..indications.len()].copy_from_slice(indications);
        Switches {
            decode_targets,
            indications: all,
            by_temporal,
            top,
        }
    }

    /// See [`Templates::switch_targets`]; `dtis` is the frame's indications.
    fn targets(&self, dtis: u64) -> u8 {
        let switch = |k: usize| {
            let targets = self.by_temporal[k];
            targets != 0
                && (0..32)
                    .filter(|dt| targets & (1 << dt) != 0)
                    .all(|dt| (dtis >> (2 * dt)) & 3 == DTI_SWITCH)
        };
        let mut mask = 0u8;
        for k in 0..=usize::from(self.top) {
            if switch(k) {
                mask |= 1 << k;
            }
        }
        // Temporal layers above the structure's are the same decode target as its top.
        if mask & (1 << self.top) != 0 {
            mask |= !0u8 << self.top;
        }
        mask
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

    /// A value below `n` in the payload format's non-symmetric encoding (`ns(n)`): values
    /// below `m` take one bit fewer than the rest.
    fn non_symmetric(&mut self, n: u32) -> Option<u32> {
        if n <= 1 {
            return Some(0);
        }
        let width = 32 - n.leading_zeros() as usize;
        let m = (1u32 << width) - n;
        let v = self.read(width - 1)?;
        if v < m {
            return Some(v);
        }
        Some((v << 1) - m + self.read(1)?)
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

        assert_eq!(t.switch_targets(&d), 0, "no decode target indications");

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

    #[test]
    fn switch_points_are_read_from_the_decode_target_indications() {
        // libwebrtc's L1T3 with its indications (two bits each: 0 not present, 1
        // discardable, 2 switch, 3 required): templates 62 and 63 "SSS", 0 (TID 1) "-DS",
        // 1 and 2 (TID 2) "--D".
        let structure = "1 0000 111110 00010 00 01 01 00 11 101010 101010 000110 000001 000001";
        let mut wire = vec![0x80 | 62, 0x00, 0x01];
        wire.extend(bits(structure));
        let key = DependencyDescriptor::parse(&wire).unwrap();
        let t = key.templates().unwrap();
        let frame = |template: u8, extended: &str| {
            let mut wire = vec![0x80 | template, 0x00, 0x02];
            wire.extend(bits(extended));
            DependencyDescriptor::parse(&wire).unwrap()
        };
        // A base frame: every rate may start at it (bits 0 to 7).
        assert_eq!(t.switch_targets(&key), 0xff);
        assert_eq!(t.switch_targets(&frame(63, "")), 0xff);
        // TID 1: the full rate (TID 2 and up) only; TID 2: none.
        assert_eq!(t.switch_targets(&frame(0, "")), 0b1111_1100);
        assert_eq!(t.switch_targets(&frame(1, "")), 0);
        // A template the structure lacks.
        assert_eq!(t.switch_targets(&frame(10, "")), 0);
        // A frame's own indications override its template's: TID 2 frame marked "SSS"
        // (after the five flags: custom_dtis only, then three indications).
        assert_eq!(t.switch_targets(&frame(1, "0010 0 101010")), 0xff);
        // With the active decode targets bitmask (three bits) before them.
        assert_eq!(
            t.switch_targets(&frame(1, "0110 0 111 000010")),
            0b1111_1100
        );
        // Cut short: nothing.
        assert_eq!(t.switch_targets(&frame(1, "0010 0 1")), 0);
        // Extended fields without custom indications: the template's.
        assert_eq!(t.switch_targets(&frame(63, "0100 0 111")), 0xff);
    }

    #[test]
    fn spatial_layers_and_their_sizes_are_read_from_the_structure() {
        // L2T1: templates 0, 1 in spatial layer 0 and 2, 3 in layer 1 (next_layer_idc 0, 2,
        // 0, 3); two decode targets; frame differences; two chains; 320×180 and 640×360.
        let head = "1 0000 000000 00001 00 10 00 11 1010 1011 0010 0011 0 10000 0 10000 0 10001 0";
        let chains = "11 0 1 00000000 00000000 00000000 00000000";
        let sizes = "1 0000000100111111 0000000010110011 0000001001111111 0000000101100111";
        let structure = |parts: &[&str]| {
            let mut wire = vec![0xc0, 0x00, 0x01];
            wire.extend(bits(&parts.join(" ")));
            DependencyDescriptor::parse(&wire).unwrap()
        };
        let d = structure(&[head, chains, sizes]);
        assert!(d.frame_start() && d.frame_end());
        let t = d.templates().unwrap();
        assert_eq!(t.spatial_layers, 2);
        let layers: Vec<Option<u8>> = [0, 1, 2, 3, 4].map(|id| t.spatial_layer(id)).to_vec();
        assert_eq!(layers, [Some(0), Some(0), Some(1), Some(1), None]);
        assert_eq!(t.sizes(), Some(&[(320, 180), (640, 360)][..]));

        // No chains (ns(3) = 0 in one bit): the same sizes.
        let t = structure(&[head, "0", sizes]).templates().unwrap();
        assert_eq!(t.sizes(), Some(&[(320, 180), (640, 360)][..]));
        // No resolutions, or cut short inside them: none, the layers still read.
        let t = structure(&[head, chains, "0"]).templates().unwrap();
        assert_eq!((t.sizes(), t.spatial_layer(2)), (None, Some(1)));
        let t = structure(&[head, chains, &sizes[..40]])
            .templates()
            .unwrap();
        assert_eq!((t.sizes(), t.spatial_layer(3)), (None, Some(1)));
    }
}
