//! What the SFU reads of a publisher's video packets before forwarding them (`sfu::core::video`,
//! `frame_size`, `dependency`): the VP8 and VP9 payload descriptors and their picture-number
//! rewrite, VP9's layer indices, each codec's keyframe start and size, VP9's scalability structure,
//! and the dependency descriptor extension with a keyframe's template structure, each template's
//! temporal and spatial layer, the spatial layers' sizes (ADR 0102) and a frame's switch points
//! (ADR 0100). Every byte of these comes from the publisher. Checked: nothing panics; a
//! descriptor's length stays within the payload; a picture id and TL0PICIDX written into a
//! descriptor read back as written; a frame number moved in a dependency descriptor reads back and
//! leaves its other bytes alone; the switch points above a structure's top temporal layer are the
//! top's; every template's spatial layer is below the structure's count, and sizes, when read, are
//! one per layer and not zero. The first input byte says how many of the rest are the two
//! dependency descriptors (a keyframe's, then a frame's, halved), the remainder is the RTP payload.
//! Run: `cd fuzz && cargo +nightly fuzz run media_descriptors`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sfu::core::dependency::DependencyDescriptor;
use sfu::core::frame_size::vp9_spatial_sizes;
use sfu::core::video::{
    NumberedPicture, SpatialPlace, VideoCodec, Vp8Descriptor, Vp9Descriptor, keyframe_size,
    starts_keyframe,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (extensions, payload) = rest.split_at(usize::from(split).min(rest.len()));

    if let Some(d) = Vp8Descriptor::parse(payload) {
        assert!(d.header_len <= payload.len());
        rewrite_reads_back(payload, &d, Vp8Descriptor::parse);
        let _ = d.patch(0x1234, 0x56);
    }
    if let Some(d) = Vp9Descriptor::parse(payload) {
        let again = rewrite_reads_back(payload, &d, Vp9Descriptor::parse);
        assert_eq!((again.temporal, again.up_switch), (d.temporal, d.up_switch));
    }
    let _ = SpatialPlace::vp9(payload);
    let _ = vp9_spatial_sizes(payload);
    for codec in [
        VideoCodec::Vp8,
        VideoCodec::Vp9,
        VideoCodec::H264,
        VideoCodec::Av1,
    ] {
        if starts_keyframe(codec, payload) {
            let _ = keyframe_size(codec, payload);
        }
    }

    let (key, frame) = extensions.split_at(extensions.len() / 2);
    let Some(key) = DependencyDescriptor::parse(key) else {
        return;
    };
    let moved = key.with_frame_number(0xbeef);
    assert_eq!(moved.frame_number(), 0xbeef);
    assert_eq!(moved.as_bytes()[3..], key.as_bytes()[3..]);
    assert_eq!(moved.as_bytes()[0], key.as_bytes()[0]);
    let Some(templates) = key.templates() else {
        return;
    };
    let top = (0..64u8)
        .filter_map(|id| templates.temporal_layer(id))
        .max()
        .unwrap_or(0)
        .min(7);
    // Every template's spatial layer is below the count, and sizes come one per layer.
    assert!((0..64u8).all(|id| {
        templates
            .spatial_layer(id)
            .is_none_or(|s| s < templates.spatial_layers)
    }));
    if let Some(sizes) = templates.sizes() {
        assert_eq!(sizes.len(), usize::from(templates.spatial_layers));
        assert!(sizes.iter().all(|&(w, h)| w > 0 && h > 0));
    }
    for d in [Some(key.clone()), DependencyDescriptor::parse(frame)]
        .into_iter()
        .flatten()
    {
        let _ = templates.temporal_layer(d.template_id());
        let switches = templates.switch_targets(&d);
        // Temporal layers above the structure's top are the top's decode target: bits `top`
        // to 7 (every frame) are all set or all clear.
        let above = switches >> top;
        assert!(
            above == 0 || above == 0xff >> top,
            "{switches:#010b} with top temporal layer {top}"
        );
    }
});

/// Writes a picture id and TL0PICIDX into a copy of `payload` with `d`, parses the copy again,
/// and checks that the fields the descriptor has read back as written.
fn rewrite_reads_back<D: NumberedPicture>(
    payload: &[u8],
    d: &D,
    parse: impl Fn(&[u8]) -> Option<D>,
) -> D {
    let mut moved = payload.to_vec();
    d.write(&mut moved, 0x1234, 0x56);
    let again = parse(&moved).expect("a rewritten descriptor parses");
    if let Some((_, width, _)) = d.picture_id_at() {
        assert_eq!(
            again.numbers().picture_id,
            Some((0x1234 % width.modulus(), width))
        );
    }
    if d.tl0_pic_idx_at().is_some() {
        assert_eq!(again.numbers().tl0_pic_idx, Some(0x56));
    }
    again
}
