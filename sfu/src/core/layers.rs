//! The simulcast layers of one published video track: which rid is which quality, how big
//! and how fast each layer is, and whether it is flowing.
//!
//! A publisher names its layers with rids. Two naming schemes are common and they disagree
//! about `h`: `q`/`h`/`f` (quarter, half, full) and `l`/`m`/`h` (low, medium, high). The
//! scheme is told from the whole set, so `h` is "half" next to `q` or `f` and "high" next to
//! `l` or `m`. Rids in neither scheme keep the order of the publisher's SDP. A track without
//! simulcast has one layer with no rid.
//!
//! A VP9 track without simulcast may carry spatial layers in its one stream (SVC, such as
//! Chrome's `L3T3_KEY`). Once a keyframe's scalability structure names them, with their
//! sizes, the track's layers become those spatial layers ([`Layers::spatial`]): layer `i`
//! is then "spatial layers 0 to `i`", what a subscriber receives of it, and its bitrate is
//! theirs together (see `selector` for how a subscriber moves between them).
//!
//! Lifecycle: built when the track is published, from the rids of its m-line; turned
//! spatial (or re-sized) by a VP9 keyframe's scalability structure; fed every packet
//! ([`Layers::observe`]); dropped with the track.

use std::time::{Duration, Instant};

use str0m::media::Rid;

use super::dependency::{DependencyDescriptor, Templates};
use super::temporal::{FrameRate, LayerSync};
use super::video::SpatialPlace;

/// Index of a layer in quality order: 0 is the lowest.
pub type LayerIndex = u8;

/// Most layers a video track may carry.
pub const MAX_LAYERS: usize = 3;

/// How much smaller than a tile a layer may be and still be chosen for it, in percent of
/// each side. Encoders round a scaled frame to even sizes or whole macroblocks (a quarter of
/// 960×540 comes out 240×134 from an H.264 encoder): without this a tile of the layer's
/// intended size would get the next layer up, four times the pixels.
pub const SIZE_TOLERANCE_PERCENT: u32 = 5;

/// A layer that sent nothing for this long is not flowing.
const LIVE_WINDOW: Duration = Duration::from_millis(1500);

/// A layer whose frames marked a switch point this recently is trusted to mark the next:
/// a subscriber's frame rate rises at one instead of at a keyframe asked for (`temporal`).
/// Chromium marks every base layer frame, several per second even at a reduced rate.
pub const SWITCH_POINT_WINDOW: Duration = Duration::from_secs(2);

/// Most temporal layers a layer's frames are told apart by (VP8's `TID`, as Chromium sends
/// each simulcast layer: `L1T3`).
pub const MAX_TEMPORAL: usize = 3;

/// How far short of a requested frame rate a set of temporal layers may fall and still be
/// chosen for it, in percent: frames arrive in bursts around a measurement's edges.
pub const FRAME_RATE_TOLERANCE_PERCENT: u64 = 5;

/// How far short the set already chosen may fall before another is chosen, in percent: a
/// measurement that wobbles around the request must not flip the rate (a higher one costs a
/// keyframe).
pub const FRAME_RATE_KEEP_PERCENT: u64 = 15;

/// Length of one bitrate measurement.
const RATE_BUCKET: Duration = Duration::from_millis(500);

/// A layer asked to resume counts as available this long before its first packet, so the
/// allocator does not turn away from it while the publisher's encoder restarts.
const RESUME_WINDOW: Duration = Duration::from_secs(3);

/// Sizes assumed for layers whose keyframes have not been seen (lowest first, for three
/// layers; fewer layers take the top entries).
const NOMINAL_SIZES: [(u16, u16); MAX_LAYERS] = [(320, 180), (640, 360), (1280, 720)];

/// Bitrates assumed for layers that have not been measured (bit/s), same order.
const NOMINAL_BITRATES: [u64; MAX_LAYERS] = [150_000, 500_000, 1_500_000];

/// Whether the SFU has asked the publisher to send a layer (dynacast).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sending {
    /// Sending, or asked to send (the default: a publisher starts with every layer).
    Asked,
    /// Asked to stop: silence from it is expected, not a failure.
    Stopped,
}

/// One layer.
#[derive(Debug)]
pub struct Layer {
    /// The publisher's name for it (`None` without simulcast).
    pub rid: Option<Rid>,
    /// Frame size of its last keyframe, where the codec tells it.
    pub size: Option<(u16, u16)>,
    /// Whether the publisher was asked to send it.
    pub sending: Sending,
    /// When it was last asked to resume.
    pub resumed_at: Option<Instant>,
    /// Since when no subscriber has needed it (dynacast stops it after a delay).
    pub unneeded_since: Option<Instant>,
    rate: RateMeter,
    /// The part of `rate` per temporal layer, when its packets tell theirs.
    temporal_rates: [RateMeter; MAX_TEMPORAL],
    /// Frames per second (counted at each frame's marked last packet).
    frames: RateMeter,
    /// The part of `frames` per temporal layer.
    temporal_frames: [RateMeter; MAX_TEMPORAL],
    /// The highest temporal layer seen, and when last.
    top_temporal: Option<(u8, Instant)>,
    /// Its last keyframe's dependency descriptor templates, which tell each frame's temporal
    /// layer where the payload does not.
    templates: Option<Templates>,
    /// When a frame last marked itself a switch point for a higher frame rate.
    switch_point: Option<Instant>,
    last_packet: Option<Instant>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Layers {
    layers: Vec<Layer>,
    scheme: Scheme,
}

/// What a track's layers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// One stream, one layer.
    Single,
    /// One stream per rid (RFC 8853).
    Simulcast,
    /// One stream whose packets each belong to a spatial layer (VP9 or AV1 SVC).
    Spatial,
}

impl Layers {
    /// The layers of a track offered with `rids` (empty: no simulcast). Rids past
    /// [`MAX_LAYERS`] are ignored: their packets are dropped.
    pub fn new(rids: &[Rid]) -> Self {
        let ranked = rank(rids);
        let mut layers: Vec<Layer> = ranked.into_iter().map(|r| Layer::new(Some(r))).collect();
        let scheme = if layers.is_empty() {
            layers.push(Layer::new(None));
            Scheme::Single
        } else {
            Scheme::Simulcast
        };
        Layers { layers, scheme }
    }

    /// What the layers are.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// A keyframe of a track without simulcast announced spatial layers of `sizes` (lowest
    /// first): they become the track's layers, or take the new sizes. Two to [`MAX_LAYERS`]
    /// layers are taken; one makes the track single-layer again; more leave it as it was
    /// (forwarded whole).
    /// Returns whether the number of layers changed.
    pub fn spatial(&mut self, sizes: &[(u16, u16)]) -> bool {
        if self.scheme == Scheme::Simulcast || !(1..=MAX_LAYERS).contains(&sizes.len()) {
            return false;
        }
        if sizes.len() == 1 {
            // The publisher went back to one layer.
            let changed = self.scheme == Scheme::Spatial;
            if changed {
                self.scheme = Scheme::Single;
                self.layers = vec![Layer::new(None)];
            }
            self.layers[0].size = Some(sizes[0]);
            return changed;
        }
        let changed = self.scheme != Scheme::Spatial || self.layers.len() != sizes.len();
        if changed {
            self.scheme = Scheme::Spatial;
            self.layers = sizes.iter().map(|_| Layer::new(None)).collect();
        }
        for (layer, size) in self.layers.iter_mut().zip(sizes) {
            layer.size = Some(*size);
        }
        changed
    }

    /// Number of layers (at least 1).
    #[allow(clippy::len_without_is_empty)] // never empty: a track has at least its one layer
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the track is simulcast (more than one rid).
    pub fn is_simulcast(&self) -> bool {
        self.scheme == Scheme::Simulcast && self.layers.len() > 1
    }

    /// The layer a packet with `rid` belongs to (for spatial layers, 0: the packet's own
    /// descriptor tells the rest).
    pub fn index_of(&self, rid: Option<Rid>) -> Option<LayerIndex> {
        if self.scheme != Scheme::Simulcast {
            return Some(0);
        }
        let rid = rid?;
        self.layers
            .iter()
            .position(|l| l.rid == Some(rid))
            .map(|i| i as LayerIndex)
    }

    /// A layer by index.
    pub fn layer(&self, i: LayerIndex) -> Option<&Layer> {
        self.layers.get(usize::from(i))
    }

    /// Every layer, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter()
    }

    /// Mutable access to a layer.
    pub fn layer_mut(&mut self, i: LayerIndex) -> Option<&mut Layer> {
        self.layers.get_mut(usize::from(i))
    }

    /// Counts a packet of layer `i`; `size` is the frame size if it starts a keyframe that
    /// tells it, `temporal` its temporal layer if its payload tells it, and `marker` its RTP
    /// marker bit, which ends a frame.
    pub fn observe(
        &mut self,
        i: LayerIndex,
        now: Instant,
        bytes: usize,
        size: Option<(u16, u16)>,
        temporal: Option<u8>,
        marker: bool,
    ) {
        if let Some(l) = self.layers.get_mut(usize::from(i)) {
            l.last_packet = Some(now);
            l.rate.add(now, bytes);
            if marker {
                l.frames.add(now, 1);
            }
            if size.is_some() {
                l.size = size;
            }
            if let Some(t) = temporal.filter(|t| usize::from(*t) < MAX_TEMPORAL) {
                l.temporal_rates[usize::from(t)].add(now, bytes);
                if marker {
                    l.temporal_frames[usize::from(t)].add(now, 1);
                }
                let top = match l.top_temporal {
                    Some((top, at)) if now.saturating_duration_since(at) < LIVE_WINDOW => {
                        top.max(t)
                    }
                    _ => t,
                };
                if t == top {
                    l.top_temporal = Some((top, now));
                }
            }
        }
    }

    /// Where an AV1 packet with dependency descriptor `d` sits among the spatial layers of a
    /// track without simulcast. A keyframe's template structure with render resolutions makes
    /// the track's layers its spatial layers, as VP9's scalability structure does
    /// ([`Layers::spatial`]); one with a single spatial layer, given by its resolution or by
    /// `keyframe_size`, makes it single-layer again. `None` while the track has no spatial
    /// layers, or for a template the structure lacks.
    pub fn described_spatial(
        &mut self,
        d: &DependencyDescriptor,
        keyframe_size: Option<(u16, u16)>,
    ) -> Option<SpatialPlace> {
        if let Some(t) = d.templates() {
            match (t.sizes(), keyframe_size) {
                (Some(sizes), _) => {
                    self.spatial(sizes);
                }
                (None, Some(size)) if t.spatial_layers == 1 => {
                    self.spatial(&[size]);
                }
                _ => {}
            }
            if self.scheme == Scheme::Spatial {
                // The stream's one structure, kept with its lowest layer.
                self.layers[0].templates = Some(t);
            }
        }
        if self.scheme != Scheme::Spatial {
            return None;
        }
        let spatial = self.layers[0]
            .templates
            .as_ref()?
            .spatial_layer(d.template_id())?;
        Some(SpatialPlace {
            spatial,
            picture_start: d.frame_start() && spatial == 0,
            layer_end: d.frame_end(),
        })
    }

    /// The temporal layer of a packet of layer `i` with dependency descriptor `d`, and the
    /// frame rates it is a switch point for, from the layer's templates (taken from `d` when
    /// it carries them).
    pub fn temporal_of(
        &mut self,
        i: LayerIndex,
        d: &DependencyDescriptor,
    ) -> Option<(u8, LayerSync)> {
        let l = self.layers.get_mut(usize::from(i))?;
        if let Some(t) = d.templates() {
            l.templates = Some(t);
        }
        let templates = l.templates.as_ref().filter(|t| t.spatial_layers == 1)?;
        let tid = templates.temporal_layer(d.template_id())?;
        Some((tid, LayerSync::Targets(templates.switch_targets(d))))
    }

    /// Notes that a frame of layer `i` starting now marks `sync`.
    pub fn note_sync(&mut self, i: LayerIndex, sync: LayerSync, now: Instant) {
        let marked = !matches!(sync, LayerSync::Unmarked | LayerSync::Targets(0));
        if let Some(l) = self.layers.get_mut(usize::from(i))
            && marked
        {
            l.switch_point = Some(now);
        }
    }

    /// Whether layer `i`'s frames mark switch points, so that a subscriber's frame rate can
    /// rise without a keyframe (see [`SWITCH_POINT_WINDOW`]).
    pub fn marks_switch_points(&self, i: LayerIndex, now: Instant) -> bool {
        self.layers
            .get(usize::from(i))
            .and_then(|l| l.switch_point)
            .is_some_and(|at| now.saturating_duration_since(at) < SWITCH_POINT_WINDOW)
    }

    /// What layer `i` costs at each reduced frame rate it offers, lowest first: the
    /// measured rate (bit/s) of its temporal layers up to each one below its highest (for
    /// `L1T3`, a quarter and a half of the frame rate). Empty unless it is sending several
    /// temporal layers and each was measured.
    pub fn temporal_bitrates(&self, i: LayerIndex, now: Instant) -> Vec<(u8, u64)> {
        self.cumulative(i, now, |l, t| l.temporal_rates[t].bitrate())
    }

    /// What layer `i` costs at `rate` (bit/s): its measured temporal layers up to the
    /// rate's, else (at the full rate, or not measured) the whole layer.
    pub fn bitrate_at(&self, i: LayerIndex, rate: FrameRate, now: Instant) -> u64 {
        match rate {
            FrameRate::Reduced(top) => {
                self.cumulative_to(i, top, now, |l, t| l.temporal_rates[t].bitrate())
            }
            FrameRate::Full => None,
        }
        .unwrap_or_else(|| self.bitrate(i))
    }

    /// The lowest frame rate of layer `i` that gives at least `fps` frames per second, give
    /// or take [`FRAME_RATE_TOLERANCE_PERCENT`]: fewer of its temporal layers where they
    /// suffice, else every frame (also when its temporal layers are not measured). `kept`,
    /// the rate chosen before, is not raised from while it is no more than
    /// [`FRAME_RATE_KEEP_PERCENT`] short.
    pub fn frame_rate_for(
        &self,
        i: LayerIndex,
        fps: u32,
        kept: Option<FrameRate>,
        now: Instant,
    ) -> FrameRate {
        let short_by = |percent: u64| u64::from(fps) * 1000 * (100 - percent) / 100;
        let rates = self.cumulative(i, now, |l, t| l.temporal_frames[t].per_second_milli());
        let fresh = rates
            .iter()
            .find(|(_, milli)| *milli >= short_by(FRAME_RATE_TOLERANCE_PERCENT))
            .map_or(FrameRate::Full, |(t, _)| FrameRate::Reduced(*t));
        // Only a raise is held back: a lower rate costs nothing to take.
        let holds = |rate: FrameRate| {
            rates.iter().any(|(t, milli)| {
                rate == FrameRate::Reduced(*t) && *milli >= short_by(FRAME_RATE_KEEP_PERCENT)
            })
        };
        match kept {
            Some(rate) if rate < fresh && holds(rate) => rate,
            _ => fresh,
        }
    }

    /// Frames per second of layer `i` at `rate`, as measured (rounded; `None` until
    /// measured). A spatial layer has its picture rate, which every layer shares.
    pub fn frames_per_second(&self, i: LayerIndex, rate: FrameRate, now: Instant) -> Option<u16> {
        let milli = match rate {
            FrameRate::Reduced(top) => {
                self.cumulative_to(i, top, now, |l, t| l.temporal_frames[t].per_second_milli())
            }
            FrameRate::Full if self.scheme == Scheme::Spatial => self
                .layers
                .iter()
                .filter_map(|l| l.frames.per_second_milli())
                .max(),
            FrameRate::Full => self
                .layers
                .get(usize::from(i))
                .and_then(|l| l.frames.per_second_milli()),
        }?;
        u16::try_from((milli + 500) / 1000).ok()
    }

    /// [`Layers::cumulative`]'s sum up to temporal layer `top`.
    fn cumulative_to(
        &self,
        i: LayerIndex,
        top: u8,
        now: Instant,
        measure: impl Fn(&Layer, usize) -> Option<u64>,
    ) -> Option<u64> {
        self.cumulative(i, now, measure)
            .into_iter()
            .find_map(|(t, v)| (t == top).then_some(v))
    }

    /// Per temporal layer of layer `i` below its highest one, the sum of `measure` over it
    /// and those under it. Empty unless several temporal layers are flowing and each was
    /// measured.
    fn cumulative(
        &self,
        i: LayerIndex,
        now: Instant,
        measure: impl Fn(&Layer, usize) -> Option<u64>,
    ) -> Vec<(u8, u64)> {
        let Some(l) = self.layers.get(usize::from(i)) else {
            return Vec::new();
        };
        let Some((top, _)) = l
            .top_temporal
            .filter(|(_, at)| now.saturating_duration_since(*at) < LIVE_WINDOW)
        else {
            return Vec::new();
        };
        let mut sum = 0;
        let mut out = Vec::new();
        for t in 0..top {
            let Some(v) = measure(l, usize::from(t)) else {
                return Vec::new();
            };
            sum += v;
            out.push((t, sum));
        }
        out
    }

    /// Frame size of layer `i`: the last keyframe's, else a nominal size for its rank.
    pub fn size(&self, i: LayerIndex) -> (u16, u16) {
        let n = self.layers.len();
        self.layers
            .get(usize::from(i))
            .and_then(|l| l.size)
            .unwrap_or(NOMINAL_SIZES[MAX_LAYERS - n + usize::from(i).min(n - 1)])
    }

    /// Bitrate of layer `i` (bit/s): measured, else a nominal rate for its rank. A spatial
    /// layer costs what it and the layers under it send.
    pub fn bitrate(&self, i: LayerIndex) -> u64 {
        let n = self.layers.len();
        let one = |i: usize| {
            self.layers
                .get(i)
                .and_then(|l| l.rate.bitrate())
                .unwrap_or(NOMINAL_BITRATES[MAX_LAYERS - n + i.min(n - 1)])
        };
        match self.scheme {
            Scheme::Spatial => (0..=usize::from(i)).map(one).sum(),
            _ => one(usize::from(i)),
        }
    }

    /// Measured bitrate of layer `i` (bit/s), if a measurement completed (for a spatial
    /// layer, of it and every layer under it).
    pub fn measured_bitrate(&self, i: LayerIndex) -> Option<u64> {
        let one = |i: usize| self.layers.get(i).and_then(|l| l.rate.bitrate());
        match self.scheme {
            Scheme::Spatial => (0..=usize::from(i)).map(one).sum(),
            _ => one(usize::from(i)),
        }
    }

    /// Every layer, mutably, lowest first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Layer> {
        self.layers.iter_mut()
    }

    /// Whether layer `i` can be chosen: it is flowing, or it only stopped because the
    /// publisher was asked to stop it (asking again brings it back). The only layer of a
    /// track without simulcast always can: there is nothing else to choose.
    pub fn available(&self, i: LayerIndex, now: Instant) -> bool {
        if self.scheme == Scheme::Single || self.layers.len() == 1 {
            return i == 0;
        }
        self.layers.get(usize::from(i)).is_some_and(|l| {
            l.sending == Sending::Stopped
                || l.last_packet
                    .is_some_and(|t| now.saturating_duration_since(t) < LIVE_WINDOW)
                || l.resumed_at
                    .is_some_and(|t| now.saturating_duration_since(t) < RESUME_WINDOW)
        })
    }

    /// The lowest layer whose frame covers `width`×`height`, give or take
    /// [`SIZE_TOLERANCE_PERCENT`], else the highest.
    pub fn layer_for_size(&self, width: u32, height: u32) -> LayerIndex {
        let top = (self.layers.len() - 1) as LayerIndex;
        let covers =
            |have: u16, want: u32| u32::from(have) * 100 >= want * (100 - SIZE_TOLERANCE_PERCENT);
        (0..=top)
            .find(|&i| {
                let (w, h) = self.size(i);
                covers(w, width) && covers(h, height)
            })
            .unwrap_or(top)
    }
}

impl Layer {
    fn new(rid: Option<Rid>) -> Self {
        Layer {
            rid,
            size: None,
            sending: Sending::Asked,
            resumed_at: None,
            unneeded_since: None,
            rate: RateMeter::default(),
            temporal_rates: Default::default(),
            frames: RateMeter::default(),
            temporal_frames: Default::default(),
            top_temporal: None,
            templates: None,
            switch_point: None,
            last_packet: None,
        }
    }
}

/// Orders rids from the lowest quality to the highest (see the module docs), keeping at
/// most [`MAX_LAYERS`].
pub fn rank(rids: &[Rid]) -> Vec<Rid> {
    let all_in = |set: &[&str]| rids.iter().all(|r| set.contains(&&**r));
    let any_of = |set: &[&str]| rids.iter().any(|r| set.contains(&&**r));
    let order: Option<&[&str]> = if all_in(&["q", "h", "f"]) && any_of(&["q", "f"]) {
        Some(&["q", "h", "f"])
    } else if all_in(&["l", "m", "h"]) && any_of(&["l", "m"]) {
        Some(&["l", "m", "h"])
    } else {
        None
    };
    let mut out: Vec<Rid> = rids.to_vec();
    out.dedup();
    if let Some(order) = order {
        out.sort_by_key(|r| order.iter().position(|o| *o == &**r));
    }
    out.truncate(MAX_LAYERS);
    out
}

/// A rate over the last completed [`RATE_BUCKET`], smoothed: bytes (as a bitrate) or frames
/// per second.
///
/// Lifecycle: empty until a bucket completes; keeps its last figure while nothing arrives
/// (a layer the publisher paused keeps the rate it had, which is what resuming it costs).
#[derive(Debug, Default)]
struct RateMeter {
    bucket_start: Option<Instant>,
    amount: u64,
    /// Thousandths of the amount per second.
    smoothed: Option<u64>,
}

impl RateMeter {
    fn add(&mut self, now: Instant, amount: usize) {
        let start = *self.bucket_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_BUCKET {
            if elapsed < RATE_BUCKET * 4 {
                let sample = self.amount * 1_000_000_000 / elapsed.as_micros().max(1) as u64;
                // A quarter weight: one keyframe in a bucket doubles its sample, and the
                // allocator should not pause or raise on that.
                self.smoothed = Some(match self.smoothed {
                    Some(s) => (s * 3 + sample) / 4,
                    None => sample,
                });
            }
            // A long silence says nothing about the rate: start a fresh bucket.
            self.bucket_start = Some(now);
            self.amount = 0;
        }
        self.amount += amount as u64;
    }

    /// Bit/s, where the amounts are bytes.
    fn bitrate(&self) -> Option<u64> {
        self.smoothed.map(|m| m * 8 / 1000)
    }

    /// Thousandths of the amount per second.
    fn per_second_milli(&self) -> Option<u64> {
        self.smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(v: &[&str]) -> Vec<Rid> {
        v.iter().map(|s| Rid::from(*s)).collect()
    }

    #[test]
    fn both_rid_schemes_rank_low_to_high() {
        assert_eq!(rank(&rids(&["f", "h", "q"])), rids(&["q", "h", "f"]));
        assert_eq!(rank(&rids(&["h", "m", "l"])), rids(&["l", "m", "h"]));
        // `h` next to `q` is half; next to `l` it is high.
        assert_eq!(rank(&rids(&["h", "q"])), rids(&["q", "h"]));
        assert_eq!(rank(&rids(&["h", "l"])), rids(&["l", "h"]));
        // Unknown names keep the SDP order; a fourth layer is ignored.
        assert_eq!(rank(&rids(&["a", "c", "b"])), rids(&["a", "c", "b"]));
        assert_eq!(rank(&rids(&["0", "1", "2", "3"])), rids(&["0", "1", "2"]));
    }

    #[test]
    fn packets_map_to_layers_by_rid() {
        let l = Layers::new(&rids(&["f", "q", "h"]));
        assert!(l.is_simulcast());
        assert_eq!(l.index_of(Some(Rid::from("q"))), Some(0));
        assert_eq!(l.index_of(Some(Rid::from("f"))), Some(2));
        assert_eq!(l.index_of(Some(Rid::from("x"))), None);
        assert_eq!(l.index_of(None), None);
        let single = Layers::new(&[]);
        assert!(!single.is_simulcast());
        assert_eq!(single.index_of(None), Some(0));
        assert_eq!(single.index_of(Some(Rid::from("q"))), Some(0));
    }

    #[test]
    fn sizes_pick_the_smallest_layer_that_covers() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["q", "h", "f"]));
        // Nominal sizes before any keyframe.
        assert_eq!(l.layer_for_size(320, 180), 0);
        assert_eq!(l.layer_for_size(336, 180), 0, "within 5 %");
        assert_eq!(l.layer_for_size(337, 180), 1);
        assert_eq!(l.layer_for_size(1920, 1080), 2);
        l.observe(0, t0, 100, Some((480, 270)), None, false);
        assert_eq!(l.layer_for_size(400, 200), 0);
        assert_eq!(l.size(0), (480, 270));
        // Rounded by the encoder: still the layer for a tile of its intended size.
        l.observe(0, t0, 100, Some((240, 134)), None, false);
        assert_eq!(l.layer_for_size(240, 135), 0);
        assert_eq!(l.layer_for_size(252, 141), 0, "within 5 %");
        assert_eq!(l.layer_for_size(253, 135), 1, "more than 5 % wider");
        assert_eq!(l.layer_for_size(240, 142), 1, "more than 5 % taller");
        // Two layers take the top nominal sizes.
        let two = Layers::new(&rids(&["l", "h"]));
        assert_eq!(two.size(0), (640, 360));
        assert_eq!(two.size(1), (1280, 720));
    }

    #[test]
    fn spatial_layers_come_from_the_structure_and_cost_what_is_under_them() {
        let mut l = Layers::new(&[]);
        assert_eq!(l.scheme(), Scheme::Single);
        assert!(l.spatial(&[(320, 180), (640, 360), (1280, 720)]));
        assert_eq!((l.scheme(), l.len()), (Scheme::Spatial, 3));
        assert!(
            !l.is_simulcast(),
            "one stream: nothing to stop at the publisher"
        );
        assert_eq!(l.index_of(None), Some(0));
        assert_eq!(l.layer_for_size(600, 340), 1);
        assert_eq!(l.bitrate(2), l.bitrate(1) + NOMINAL_BITRATES[2]);
        assert_eq!(l.bitrate(1), NOMINAL_BITRATES[0] + NOMINAL_BITRATES[1]);
        // The same structure again changes nothing; one layer ends it.
        assert!(!l.spatial(&[(320, 180), (640, 360), (1280, 720)]));
        assert!(l.spatial(&[(640, 360)]));
        assert_eq!(
            (l.scheme(), l.len(), l.size(0)),
            (Scheme::Single, 1, (640, 360))
        );
        // Simulcast tracks keep their rids.
        let mut l = Layers::new(&rids(&["q", "h", "f"]));
        assert!(!l.spatial(&[(320, 180), (640, 360)]));
        assert_eq!(l.scheme(), Scheme::Simulcast);
    }

    #[test]
    fn bitrate_is_measured_and_kept_through_silence() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["q", "h"]));
        assert_eq!(l.bitrate(0), 500_000, "nominal before measuring");
        // 125 000 bytes/s = 1 Mbit/s, in 10 ms packets.
        for i in 0..=100u64 {
            l.observe(
                0,
                t0 + Duration::from_millis(10 * i),
                1250,
                None,
                None,
                false,
            );
        }
        let rate = l.bitrate(0);
        assert!((900_000..=1_100_000).contains(&rate), "{rate}");
        assert!(l.available(0, t0 + Duration::from_secs(1)));
        assert!(!l.available(0, t0 + Duration::from_secs(3)));
        assert!(!l.available(1, t0), "never seen");
        assert!(
            Layers::new(&[]).available(0, t0),
            "a single layer is always there"
        );
        l.layer_mut(1).unwrap().sending = Sending::Stopped;
        assert!(l.available(1, t0), "stopped on request can be resumed");
        // After a long pause the old figure stays.
        l.observe(0, t0 + Duration::from_secs(60), 10, None, None, false);
        assert_eq!(l.bitrate(0), rate);
    }

    #[test]
    fn frame_rates_are_measured_per_temporal_layer_and_chosen_to_cover_a_request() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["q", "h", "f"]));
        assert_eq!(l.frames_per_second(2, FrameRate::Full, t0), None);
        assert_eq!(
            l.frame_rate_for(2, 10, None, t0),
            FrameRate::Full,
            "not measured"
        );
        // 30 frames per second in L1T3 order (TIDs 0 2 1 2), two packets each, the second
        // marked.
        let mut now = t0;
        for frame in 0..90u64 {
            now = t0 + Duration::from_micros(33_333 * frame);
            let tid = [0, 2, 1, 2][(frame % 4) as usize];
            l.observe(2, now, 600, None, Some(tid), false);
            l.observe(2, now, 600, None, Some(tid), true);
        }
        let fps = |rate| l.frames_per_second(2, rate, now);
        assert_eq!(fps(FrameRate::Full), Some(30));
        assert_eq!(fps(FrameRate::Reduced(0)), Some(8), "7.5, rounded");
        assert_eq!(fps(FrameRate::Reduced(1)), Some(15));
        // The fewest temporal layers that give what is asked, with a little slack.
        assert_eq!(l.frame_rate_for(2, 5, None, now), FrameRate::Reduced(0));
        assert_eq!(l.frame_rate_for(2, 7, None, now), FrameRate::Reduced(0));
        assert_eq!(l.frame_rate_for(2, 15, None, now), FrameRate::Reduced(1));
        assert_eq!(l.frame_rate_for(2, 16, None, now), FrameRate::Full);
        assert_eq!(l.frame_rate_for(2, 60, None, now), FrameRate::Full);
        // A rate already chosen is not raised from until it is well short (8 asked, 7.5
        // given), and is lowered from at once.
        assert_eq!(l.frame_rate_for(2, 8, None, now), FrameRate::Reduced(1));
        let kept = Some(FrameRate::Reduced(0));
        assert_eq!(l.frame_rate_for(2, 8, kept, now), FrameRate::Reduced(0));
        assert_eq!(l.frame_rate_for(2, 9, kept, now), FrameRate::Reduced(1));
        let kept = Some(FrameRate::Reduced(1));
        assert_eq!(l.frame_rate_for(2, 5, kept, now), FrameRate::Reduced(0));
        // What each costs: the base layer carries a quarter of the packets here.
        let full = l.bitrate_at(2, FrameRate::Full, now);
        let base = l.bitrate_at(2, FrameRate::Reduced(0), now);
        assert!(full > 0 && base * 4 <= full + full / 10, "{base} of {full}");
        // Another layer's frames are not this one's.
        assert_eq!(l.frames_per_second(0, FrameRate::Full, now), None);
        assert_eq!(l.frame_rate_for(0, 5, None, now), FrameRate::Full);
    }
}
