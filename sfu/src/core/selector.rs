//! Which layer of a video track one subscriber receives, and where it may change.
//!
//! The allocator sets a *target* (a layer, or none: paused). The selector forwards the
//! *current* layer until the target layer starts a keyframe, and switches there, so the
//! decoder never gets a frame that refers to a picture it has not seen. Pausing is
//! immediate; resuming waits for a keyframe like any switch.
//!
//! Spatial layers in one stream (VP9 SVC, see `layers`) are selected differently
//! ([`LayerSelector::admit_spatial`]): the current layer `i` means every packet of spatial
//! layers 0 to `i` is forwarded. Going up needs a keyframe (a higher layer's frames refer to
//! its own earlier frames, which the subscriber did not get); going down happens at the next
//! picture, since a lower layer never refers to a higher one. Both keep the stream's own
//! timestamps, so nothing is re-based ([`Verdict::Shift`]).
//!
//! Lifecycle: one per video subscription, starting with no current layer and the target
//! the allocator gives it; every packet of the track goes through [`LayerSelector::admit`]
//! (or `admit_spatial`).

use super::layers::LayerIndex;

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it, with the current offsets.
    Forward,
    /// Forward it as the first packet of a newly selected layer: re-base the rewriters.
    Switch,
    /// Forward it; the spatial layers forwarded changed here, within the same stream.
    Shift,
    /// Not for this subscriber.
    Drop,
}

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerSelector {
    current: Option<LayerIndex>,
    target: Option<LayerIndex>,
}

impl LayerSelector {
    /// The layer now forwarded (`None`: nothing yet, or paused).
    pub fn current(&self) -> Option<LayerIndex> {
        self.current
    }

    /// The layer the allocator wants (`None`: paused).
    pub fn target(&self) -> Option<LayerIndex> {
        self.target
    }

    /// Whether a keyframe of the target layer is awaited.
    pub fn switching(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    /// Sets the target. Returns whether a keyframe of it is now needed.
    pub fn set_target(&mut self, target: Option<LayerIndex>) -> bool {
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
        self.switching()
    }

    /// Decides for a packet of `layer`; `keyframe` says whether it starts a keyframe.
    pub fn admit(&mut self, layer: LayerIndex, keyframe: bool) -> Verdict {
        if Some(layer) == self.target && self.target != self.current {
            if keyframe {
                self.current = Some(layer);
                return Verdict::Switch;
            }
            return Verdict::Drop;
        }
        if Some(layer) == self.current {
            Verdict::Forward
        } else {
            Verdict::Drop
        }
    }

    /// Decides for a packet of spatial layer `spatial` of a stream with spatial layers;
    /// `keyframe` says whether it starts a keyframe, `picture_start` whether it starts a
    /// picture (see the module docs).
    pub fn admit_spatial(
        &mut self,
        spatial: LayerIndex,
        keyframe: bool,
        picture_start: bool,
    ) -> Verdict {
        let moved = match (self.current, self.target) {
            (_, None) => return Verdict::Drop,
            (current, Some(target)) if current == Some(target) => None,
            (None, Some(target)) => keyframe.then_some((target, Verdict::Switch)),
            (Some(current), Some(target)) if target > current => {
                keyframe.then_some((target, Verdict::Shift))
            }
            (Some(_), Some(target)) => picture_start.then_some((target, Verdict::Shift)),
        };
        if let Some((target, verdict)) = moved {
            // A keyframe or a picture starts in spatial layer 0: always forwarded.
            self.current = Some(target);
            return verdict;
        }
        match self.current {
            Some(current) if spatial <= current => Verdict::Forward,
            _ => Verdict::Drop,
        }
    }

    /// The current layer stopped flowing: forget it, so the target (or nothing) follows.
    pub fn lost_current(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::default();
        assert!(s.set_target(Some(2)));
        assert_eq!(s.admit(2, false), Verdict::Drop, "no keyframe yet");
        assert_eq!(s.admit(0, true), Verdict::Drop, "not the target");
        assert_eq!(s.admit(2, true), Verdict::Switch);
        assert_eq!(s.admit(2, false), Verdict::Forward);
        assert!(!s.switching());

        // Down to layer 0: layer 2 keeps flowing until layer 0 starts a keyframe.
        assert!(s.set_target(Some(0)));
        assert_eq!(s.admit(2, false), Verdict::Forward);
        assert_eq!(s.admit(0, false), Verdict::Drop);
        assert_eq!(s.admit(0, true), Verdict::Switch);
        assert_eq!(s.admit(2, false), Verdict::Drop);
        assert_eq!(s.current(), Some(0));
    }

    #[test]
    fn pause_is_immediate_and_resume_waits_for_a_keyframe() {
        let mut s = LayerSelector::default();
        s.set_target(Some(1));
        assert_eq!(s.admit(1, true), Verdict::Switch);
        assert!(!s.set_target(None));
        assert_eq!(s.admit(1, false), Verdict::Drop);
        assert_eq!(s.admit(1, true), Verdict::Drop);
        assert!(s.set_target(Some(1)));
        assert_eq!(s.admit(1, false), Verdict::Drop);
        assert_eq!(s.admit(1, true), Verdict::Switch);
    }

    #[test]
    fn spatial_layers_go_up_at_a_keyframe_and_down_at_the_next_picture() {
        let mut s = LayerSelector::default();
        s.set_target(Some(1));
        // Nothing until a keyframe; then layers 0 and 1, not 2.
        assert_eq!(s.admit_spatial(0, false, true), Verdict::Drop);
        assert_eq!(s.admit_spatial(0, true, true), Verdict::Switch);
        assert_eq!(s.admit_spatial(1, false, false), Verdict::Forward);
        assert_eq!(s.admit_spatial(2, false, false), Verdict::Drop);
        // Up: layer 2 waits for a keyframe, the others go on meanwhile.
        s.set_target(Some(2));
        assert_eq!(s.admit_spatial(0, false, true), Verdict::Forward);
        assert_eq!(s.admit_spatial(2, false, false), Verdict::Drop);
        assert_eq!(s.admit_spatial(0, true, true), Verdict::Shift);
        assert_eq!(s.admit_spatial(2, false, false), Verdict::Forward);
        // Down: from the next picture on, mid-picture packets still go out.
        s.set_target(Some(0));
        assert_eq!(s.admit_spatial(2, false, false), Verdict::Forward);
        assert_eq!(s.admit_spatial(0, false, true), Verdict::Shift);
        assert_eq!(s.admit_spatial(1, false, false), Verdict::Drop);
        assert_eq!(s.current(), Some(0));
        // Paused: at once.
        s.set_target(None);
        assert_eq!(s.admit_spatial(0, true, true), Verdict::Drop);
    }

    #[test]
    fn the_same_target_again_changes_nothing() {
        let mut s = LayerSelector::default();
        s.set_target(Some(1));
        s.admit(1, true);
        assert!(!s.set_target(Some(1)));
        assert_eq!(s.admit(1, false), Verdict::Forward);
        s.lost_current();
        assert!(s.switching());
        assert_eq!(s.admit(1, false), Verdict::Drop);
        assert_eq!(s.admit(1, true), Verdict::Switch);
    }
}
