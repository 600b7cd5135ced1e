//! Which temporal layers of the layer it receives one subscriber gets: its frame rate.
//!
//! Chromium sends each VP8 simulcast layer in three temporal layers (`L1T3`, the VP8
//! descriptor's `TID`): every fourth frame is in the base layer (TID 0) and refers only to
//! earlier base frames, every other frame between them is in TID 1, and the rest in TID 2.
//! Leaving out the upper temporal layers lowers the frame rate (to a half or a quarter) and
//! the bitrate (to about 60 % or 40 % with libwebrtc's split) without breaking the picture.
//! The allocator offers these as the rungs below the lowest layer at its full frame rate
//! (`adaptive`), so a link too slow for it gets a slower picture instead of none.
//!
//! A lower frame rate applies from the next picture. A higher one needs a picture from which
//! on everything the new rate admits decodes from what was forwarded: a keyframe, or a
//! switch point as the stream marks it ([`LayerSync`]): VP8's *layer sync* bit, VP9's
//! *switching up point*, or the dependency descriptor's *switch* indication (ADR 0100).
//! Chromium marks every base layer frame a switch point for every rate, so a rise takes
//! effect within one cycle of the pattern, without a keyframe. Leaving out a picture also
//! moves the sequence numbers and VP8 picture ids that follow (`forward`), so the subscriber
//! sees no gap.
//!
//! VP9 simulcast layers (`L1T3` from Chromium too) are thinned alike from their descriptor's
//! `TID`, and their picture ids keep the gaps, from which a VP9 receiver infers what is
//! missing; other codecs (AV1, H.264), and Chromium's VP8, whose own descriptor has no
//! `TID`, from their dependency descriptor's templates (ADR 0097).
//!
//! Lifecycle: one per video subscription, at the full frame rate; each allocation sets its
//! target, and every packet of the layer forwarded goes through [`TemporalFilter::admit`].

/// How much of a layer's frame rate a subscriber gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameRate {
    /// Only temporal layers up to this one (0: the base layer alone).
    Reduced(u8),
    /// Every frame.
    #[default]
    Full,
}

impl FrameRate {
    /// Whether a frame of temporal layer `tid` is forwarded at this rate.
    pub fn admits(self, tid: u8) -> bool {
        match self {
            FrameRate::Full => true,
            FrameRate::Reduced(top) => tid <= top,
        }
    }

    /// Its bit in [`LayerSync::Targets`].
    fn target_bit(self) -> u8 {
        match self {
            FrameRate::Reduced(top) => 1 << top.min(7),
            FrameRate::Full => 1 << 7,
        }
    }
}

/// What a frame tells of whether a subscriber may rise to a higher frame rate at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerSync {
    /// Nothing: only a keyframe lets the rate rise.
    #[default]
    Unmarked,
    /// VP8's `Y` bit: the frame refers to the base temporal layer only, so a rate that
    /// admits its layer may start with it.
    BaseOnly,
    /// VP9's `U` bit (switching up point): no later frame above this one's temporal layer
    /// refers to one before it above that layer, so once it is forwarded any rate may follow.
    UpSwitch,
    /// The dependency descriptor's switch indications: bit `k` set when the frame is a
    /// switch point for temporal layers 0 to `k` (bit 7: every frame), see
    /// `Templates::switch_targets`.
    Targets(u8),
}

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TemporalFilter {
    current: FrameRate,
    target: FrameRate,
}

impl TemporalFilter {
    /// The frame rate now forwarded.
    pub fn current(&self) -> FrameRate {
        self.current
    }

    /// The frame rate the allocator wants.
    pub fn target(&self) -> FrameRate {
        self.target
    }

    /// Sets the target; returns whether it is higher than what is forwarded (it then waits
    /// for a switch point or a keyframe).
    pub fn set_target(&mut self, target: FrameRate) -> bool {
        self.target = target;
        target > self.current
    }

    /// Whether to forward a packet whose descriptor gives `temporal` (its temporal layer and
    /// what it marks; `None`: the stream has no temporal layers, so it is forwarded);
    /// `picture_start` says whether it is a picture's first packet, `keyframe` whether it
    /// starts a keyframe.
    pub fn admit(
        &mut self,
        temporal: Option<(u8, LayerSync)>,
        picture_start: bool,
        keyframe: bool,
    ) -> bool {
        let Some((tid, sync)) = temporal else {
            return true;
        };
        if self.current != self.target && picture_start {
            let lower = self.target < self.current;
            let synced = match sync {
                LayerSync::Unmarked => false,
                LayerSync::BaseOnly => self.target.admits(tid) && !self.current.admits(tid),
                LayerSync::UpSwitch => self.current.admits(tid),
                LayerSync::Targets(mask) => mask & self.target.target_bit() != 0,
            };
            if lower || keyframe || synced {
                self.current = self.target;
            }
        }
        self.current.admits(tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(tid, sync, picture_start, keyframe)` → admitted, for each packet.
    fn run(f: &mut TemporalFilter, packets: &[(u8, bool, bool, bool)]) -> Vec<bool> {
        packets
            .iter()
            .map(|&(t, y, s, k)| {
                let sync = if y {
                    LayerSync::BaseOnly
                } else {
                    LayerSync::Unmarked
                };
                f.admit(Some((t, sync)), s, k)
            })
            .collect()
    }

    #[test]
    fn down_at_the_next_picture_up_at_a_sync_frame_or_a_keyframe() {
        let mut f = TemporalFilter::default();
        // The L1T3 pattern: TID 0, 2, 1, 2; the first TID 1 and 2 after a base frame sync.
        let cycle = [
            (0, false, true, false),
            (2, true, true, false),
            (1, true, true, false),
            (2, false, true, false),
        ];
        assert_eq!(run(&mut f, &cycle), [true; 4], "full rate by default");

        // Down to the base layer: from the next picture, mid-picture packets still go.
        assert!(!f.set_target(FrameRate::Reduced(0)));
        assert!(
            f.admit(Some((2, LayerSync::Unmarked)), false, false),
            "the rest of a picture"
        );
        assert_eq!(run(&mut f, &cycle), [true, false, false, false]);
        assert_eq!(f.current(), FrameRate::Reduced(0));

        // Up to half: the first TID 1 sync frame.
        assert!(f.set_target(FrameRate::Reduced(1)));
        assert_eq!(run(&mut f, &cycle), [true, false, true, false]);
        // Up to full: a TID 2 sync frame; a TID 2 frame without Y is not one.
        assert!(f.set_target(FrameRate::Full));
        assert!(!f.admit(Some((2, LayerSync::Unmarked)), true, false));
        assert_eq!(run(&mut f, &cycle), [true, true, true, true]);

        // A keyframe is a sync point for every layer.
        f.set_target(FrameRate::Reduced(0));
        run(&mut f, &cycle);
        f.set_target(FrameRate::Full);
        assert!(f.admit(Some((0, LayerSync::Unmarked)), true, true));
        assert!(f.admit(Some((2, LayerSync::Unmarked)), true, false));
    }

    #[test]
    fn vp9_rises_after_a_forwarded_switching_up_point() {
        use LayerSync::{Unmarked, UpSwitch};
        let mut f = TemporalFilter::default();
        f.set_target(FrameRate::Reduced(0));
        f.admit(Some((0, Unmarked)), true, false);
        assert!(f.set_target(FrameRate::Full));
        // A marked frame of a layer not forwarded is no switch point: what it refers to
        // above the base layer never reached the subscriber.
        assert!(!f.admit(Some((2, UpSwitch)), true, false));
        assert!(!f.admit(Some((1, UpSwitch)), true, false));
        assert!(f.admit(Some((0, Unmarked)), true, false));
        assert!(!f.admit(Some((2, Unmarked)), true, false));
        assert_eq!(f.current(), FrameRate::Reduced(0));
        // A forwarded one is: it and every frame after it go.
        assert!(f.admit(Some((0, UpSwitch)), true, false));
        assert_eq!(f.current(), FrameRate::Full);
        assert!(f.admit(Some((2, Unmarked)), true, false));
        assert!(f.admit(Some((1, Unmarked)), true, false));
    }

    #[test]
    fn a_dependency_descriptor_switch_point_serves_only_the_rates_it_names() {
        use LayerSync::Targets;
        let mut f = TemporalFilter::default();
        f.set_target(FrameRate::Reduced(0));
        f.admit(Some((0, Targets(0))), true, false);
        // libwebrtc's L1T3: a TID 1 frame is a switch point for every frame (bit 2 and up)
        // but not for half of them (bit 1); a base frame is one for every rate.
        assert!(f.set_target(FrameRate::Reduced(1)));
        assert!(!f.admit(Some((1, Targets(!0b11))), true, false));
        assert_eq!(f.current(), FrameRate::Reduced(0));
        assert!(f.admit(Some((0, Targets(!0))), true, false));
        assert_eq!(f.current(), FrameRate::Reduced(1));
        assert!(f.set_target(FrameRate::Full));
        assert!(f.admit(Some((1, Targets(!0b11))), true, false));
        assert_eq!(f.current(), FrameRate::Full);
        // Only at a frame's start.
        f.set_target(FrameRate::Reduced(0));
        f.admit(Some((0, Targets(0))), true, false);
        f.set_target(FrameRate::Full);
        assert!(!f.admit(Some((2, Targets(!0))), false, false));
    }

    #[test]
    fn a_stream_without_temporal_layers_is_forwarded_whole() {
        let mut f = TemporalFilter::default();
        f.set_target(FrameRate::Reduced(0));
        assert!(f.admit(None, true, false));
        assert!(f.admit(None, false, false));
    }
}
