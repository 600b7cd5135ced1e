//! Sharing one subscriber's downlink among the video tracks it receives.
//!
//! Inputs per track: what the subscriber asked for (the highest useful layer, or paused),
//! each layer's bitrate and whether it can be chosen, and the track's priority. The budget
//! is the subscriber's estimated bandwidth (str0m's TWCC estimator) less the audio it
//! receives: audio is never starved for video.
//!
//! The policy, in two passes over tracks in priority order (screen share, then the active
//! speaker, then the rest, each in a stable order):
//! 1. every track gets its lowest available layer while the budget lasts; a track that no
//!    longer fits is paused (counted as a congestion drop), a flowing one only when the budget
//!    left covers less than [`KEEP_SHARE`] of that layer;
//! 2. tracks are raised one layer at a time, highest priority first, up to what was asked,
//!    while the budget lasts.
//!
//! [`Allocator`] adds the hysteresis: a fall of the estimate below what is being sent
//! applies at once; a step up is taken only when it fits with [`UPGRADE_HEADROOM`] to spare,
//! and not within the *hold* of the last fall. A steady estimate therefore never flips
//! a track between two layers, and a recovering one raises layers in steps, not in a burst of
//! up-down-up. A step up the subscriber asked for (a bigger tile) is as quick as the budget
//! allows.
//!
//! The hold starts at [`UPGRADE_HOLD`]. A fall within [`RAISE_TRIAL`] of a step up means the
//! step up failed (the link could not carry it, or the estimate swings, as it does on a host
//! starved of CPU), and doubles the hold, up to [`MAX_UPGRADE_HOLD`]; a fall that no recent
//! step up caused starts it over. So a link that cannot carry a layer is offered it less and
//! less often instead of pausing and resuming the video every second or two, and a link that
//! recovers for real is back to full speed after one good step.
//!
//! A failed step up also falls back no lower than where it came from for [`RAISE_TRIAL`]:
//! overrunning a bottleneck's queue makes the loss-based estimate collapse far below what
//! the link carried a moment before, and following it would pause video the link can carry
//! (the *floor*). An estimate still short of the floor when it expires is followed down.
//!
//! A step up also needs the estimate to have allowed it for [`RAISE_CONFIRM`]: the budget of
//! a step up is the lowest estimate of that window, and the window starts over at each step
//! up, so each step is judged under the load of the one before. A track the budget paused
//! comes back only as a step up ([`Flow::Congested`]), and a flowing one is paused only when
//! the budget covers less than [`KEEP_SHARE`] of its lowest layer: pause and resume are a
//! trigger with two thresholds, not one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::layers::LayerIndex;

/// An upgrade must fit in the estimate divided by this.
pub const UPGRADE_HEADROOM: f64 = 1.15;

/// How long after a forced step down no step up is taken, at first (see the module docs).
pub const UPGRADE_HOLD: Duration = Duration::from_millis(1500);

/// The longest hold, reached after repeated failed step ups.
pub const MAX_UPGRADE_HOLD: Duration = Duration::from_secs(12);

/// A fall this soon after a step up counts the step up as failed.
pub const RAISE_TRIAL: Duration = Duration::from_secs(4);

/// The longest a track the budget paused waits after a fall to come back at its lowest
/// layer, however long the hold has grown: the doubling is for raises of quality, and a
/// frozen picture costs more than a failed try at the cheapest layer.
pub const RESUME_HOLD: Duration = Duration::from_secs(3);

/// A flowing track is paused only when the budget covers less than this share of its
/// lowest layer's rate (a new or resuming track needs all of it, with headroom to resume).
pub const KEEP_SHARE: f64 = 0.75;

/// A step up must fit the lowest estimate of this long a window: an estimate that jumps for
/// a moment (a probe that overshoots a bottleneck) raises nothing.
pub const RAISE_CONFIRM: Duration = Duration::from_secs(1);

/// Most estimates kept for [`RAISE_CONFIRM`]; updates come every tick and on events.
const RECENT_ESTIMATES: usize = 32;

/// What a subscriber asked to receive of a video track (`track:settings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// The best layer there is (the default).
    Highest,
    /// The smallest layer that covers this many pixels.
    Size {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Nothing: the tile is hidden.
    Paused,
}

/// Who goes first when the budget is short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Screen share: favoured first.
    Screen,
    /// The room's active speaker.
    Speaker,
    /// Everyone else.
    Other,
}

/// Whether a track is being sent a layer, and if not why not: the pause for lack of budget
/// has its own hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// This layer (rung, see [`Demand::reduced`]) is being sent. It, or a lower one, is
    /// kept while the budget covers [`KEEP_SHARE`] of its rate: a layer's measured rate
    /// swings with every keyframe, and a pause costs a frozen picture until the track comes
    /// back. A higher one costs its full rate.
    Flowing(LayerIndex),
    /// It is new, or the subscriber paused it: it gets what fits at once.
    Fresh,
    /// The budget paused it: it comes back as a step up does, with headroom, after the hold
    /// and on a confirmed estimate.
    Congested,
}

/// One video track as the allocator sees it.
#[derive(Clone, Debug)]
pub struct Demand {
    /// See [`Priority`].
    pub priority: Priority,
    /// See [`Flow`].
    pub flow: Flow,
    /// Highest layer the subscriber can use; `None`: it paused the track.
    pub wanted: Option<LayerIndex>,
    /// Per layer, lowest first.
    pub layers: Vec<LayerCost>,
    /// How many of `layers` are the lowest layer at a reduced frame rate (its temporal
    /// layers, see `temporal`), below the same layer at its full rate. A track gets its
    /// lowest layer at the full rate when that fits, and a reduced rate only when it does not.
    pub reduced: LayerIndex,
}

/// One layer as the allocator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// Bitrate (bit/s): measured, or nominal for its rank.
    pub bitrate: u64,
    /// Whether it can be chosen now (flowing, or stopped only because it was asked to).
    pub available: bool,
    /// Whether `bitrate` was measured. A track is never paused on a guess: an unmeasured
    /// lowest layer is granted even when its nominal rate does not fit.
    pub measured: bool,
}

/// A budget: `None` means unknown (no estimate yet, or no estimator): give what is asked.
pub type Budget = Option<u64>;

/// Chooses a layer (or none) per demand, in the demands' order. See the module docs.
pub fn allocate(budget: Budget, demands: &[Demand]) -> Vec<Option<LayerIndex>> {
    let mut out: Vec<Option<LayerIndex>> = vec![None; demands.len()];
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| demands[i].priority);
    let mut left = budget.map(|b| b as i128);
    let fits = |left: &Option<i128>, cost: u64| left.is_none_or(|l| l >= cost as i128);

    for &i in &order {
        let d = &demands[i];
        let Some(wanted) = d.wanted else { continue };
        let usable = |l: &LayerIndex| d.layers.get(usize::from(*l)).is_some_and(|x| x.available);
        let Some(lowest) = lowest_usable(d) else {
            continue;
        };
        // The lowest layer at its full frame rate, then its reduced rates, highest first.
        let full_rate = d.reduced.max(lowest).min(wanted);
        let candidates = std::iter::once(full_rate)
            .chain((lowest..full_rate).rev())
            .filter(usable);
        for l in candidates {
            let layer = d.layers[usize::from(l)];
            let needed = match d.flow {
                Flow::Flowing(sent) if l <= sent => (layer.bitrate as f64 * KEEP_SHARE) as u64,
                Flow::Flowing(_) | Flow::Fresh | Flow::Congested => layer.bitrate,
            };
            if fits(&left, needed) || !layer.measured {
                out[i] = Some(l);
                if let Some(b) = left.as_mut() {
                    *b -= layer.bitrate as i128;
                }
                break;
            }
        }
    }
    for &i in &order {
        let d = &demands[i];
        let (Some(wanted), Some(mut at)) = (d.wanted, out[i]) else {
            continue;
        };
        for next in at + 1..=wanted {
            let Some(layer) = d.layers.get(usize::from(next)).filter(|l| l.available) else {
                continue;
            };
            let extra = layer
                .bitrate
                .saturating_sub(d.layers[usize::from(at)].bitrate);
            if !fits(&left, extra) {
                break;
            }
            if let Some(b) = left.as_mut() {
                *b -= extra as i128;
            }
            at = next;
        }
        out[i] = Some(at);
    }
    out
}

/// The lowest layer of `d` that can be chosen, up to what is asked.
fn lowest_usable(d: &Demand) -> Option<LayerIndex> {
    (0..=d.wanted?).find(|l| d.layers.get(usize::from(*l)).is_some_and(|x| x.available))
}

/// What the first pass of [`allocate`] gives every asked-for track at the least: its lowest
/// usable layer at the full frame rate asked for (bit/s). A budget of this much pauses
/// nothing.
pub fn lowest_cost(demands: &[Demand]) -> u64 {
    demands
        .iter()
        .filter_map(|d| {
            let lowest = lowest_usable(d)?;
            let full_rate = d.reduced.max(lowest).min(d.wanted?);
            d.layers.get(usize::from(full_rate)).map(|l| l.bitrate)
        })
        .sum()
}

/// What an allocation costs (bit/s).
pub fn cost(demands: &[Demand], choice: &[Option<LayerIndex>]) -> u64 {
    demands
        .iter()
        .zip(choice)
        .filter_map(|(d, c)| {
            c.and_then(|l| d.layers.get(usize::from(l)))
                .map(|x| x.bitrate)
        })
        .sum()
}

/// The rate to sustain (media and padding) so the estimate can grow into the next step up:
/// what `choice` costs plus, with headroom, the cheapest one-layer raise towards what is
/// asked. `None` when nothing is to be raised.
pub fn next_step(demands: &[Demand], choice: &[Option<LayerIndex>]) -> Option<u64> {
    let extra = demands
        .iter()
        .zip(choice)
        .filter_map(|(d, c)| {
            let wanted = d.wanted?;
            let (from, to) = match c {
                Some(c) if *c < wanted => (d.layers.get(usize::from(*c))?.bitrate, *c + 1),
                Some(_) => return None,
                None => (0, 0),
            };
            let next = d.layers.get(usize::from(to))?;
            Some(next.bitrate.saturating_sub(from))
        })
        .min()?;
    Some(cost(demands, choice) + (extra as f64 * UPGRADE_HEADROOM) as u64)
}

/// One subscriber's allocation over time, with the hysteresis of the module docs.
///
/// Lifecycle: one per participant that receives video; [`Allocator::update`] is called on
/// every estimate, every change of what is asked or published, and on the core's tick.
#[derive(Debug)]
pub struct Allocator {
    /// When the estimate last forced a step down.
    fell_at: Option<Instant>,
    /// When a step up was last taken under an estimate.
    raised_at: Option<Instant>,
    /// How long after `fell_at` no step up is taken.
    hold: Duration,
    /// Estimates of the last [`RAISE_CONFIRM`], oldest first, with when each was seen; the
    /// oldest may be older, as it was the one in effect when the window began.
    recent: VecDeque<(Instant, u64)>,
    /// The choice the last step up was taken from (while `raised_at` is set).
    raised_from: Vec<Option<LayerIndex>>,
    /// After a failed step up: the choice it was taken from, and until when no track falls
    /// below it (see the module docs).
    floor: Option<(Instant, Vec<Option<LayerIndex>>)>,
}

impl Default for Allocator {
    fn default() -> Self {
        Self {
            fell_at: None,
            raised_at: None,
            hold: UPGRADE_HOLD,
            recent: VecDeque::new(),
            raised_from: Vec::new(),
            floor: None,
        }
    }
}

impl Allocator {
    /// Whether no fall happened for `quiet` (or ever).
    pub fn calm(&self, now: Instant, quiet: Duration) -> bool {
        self.fell_at
            .is_none_or(|t| now.saturating_duration_since(t) >= quiet)
    }

    /// Whether a recent fall holds step-ups back.
    pub fn settling(&self, now: Instant) -> bool {
        self.fell_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.hold)
    }

    /// Records a fall of the estimate under what is sent: a failed step up doubles the hold
    /// and sets the floor.
    fn fell(&mut self, now: Instant) {
        let failed_raise = self
            .raised_at
            .is_some_and(|t| now.saturating_duration_since(t) < RAISE_TRIAL);
        if failed_raise {
            self.floor = Some((now + RAISE_TRIAL, std::mem::take(&mut self.raised_from)));
        }
        // A fall while settling continues the one that started it.
        if !self.settling(now) {
            self.hold = if failed_raise {
                (self.hold * 2).min(MAX_UPGRADE_HOLD)
            } else {
                UPGRADE_HOLD
            };
        }
        self.fell_at = Some(now);
        self.raised_at = None;
    }

    /// The lowest budget of the last [`RAISE_CONFIRM`] up to `now`: what the link has carried
    /// for a while, and so how far a step up, or padding, may go. `None` before a second of
    /// budgets was seen, right after a step up (its own load is yet to be measured), and while
    /// there is no estimate.
    pub fn sustained(&self, now: Instant) -> Option<u64> {
        let start = now.checked_sub(RAISE_CONFIRM)?;
        let (first, _) = self.recent.front()?;
        (*first <= start).then(|| self.recent.iter().map(|(_, e)| *e).min())?
    }

    /// Records `estimate` for [`Allocator::sustained`], keeping only the last
    /// [`RAISE_CONFIRM`] (and the estimate in effect when it began).
    fn record(&mut self, now: Instant, estimate: u64) {
        if self.recent.back().is_none_or(|(_, e)| *e != estimate) {
            self.recent.push_back((now, estimate));
        }
        let Some(start) = now.checked_sub(RAISE_CONFIRM) else {
            return;
        };
        while self.recent.len() > RECENT_ESTIMATES
            || self.recent.get(1).is_some_and(|(t, _)| *t <= start)
        {
            self.recent.pop_front();
        }
    }

    /// The new choice given the `current` one (same order as `demands`).
    /// `cap` is the part of `budget` the subscriber set itself (`media:bandwidth`): unlike
    /// the estimate, it is never exceeded to hold the floor.
    pub fn update(
        &mut self,
        now: Instant,
        budget: Budget,
        cap: Budget,
        demands: &[Demand],
        current: &[Option<LayerIndex>],
    ) -> Vec<Option<LayerIndex>> {
        let Some(estimate) = budget else {
            self.recent.clear();
            return allocate(None, demands);
        };
        self.record(now, estimate);
        if cost(demands, current) > estimate {
            self.fell(now);
        }
        let full = self.floored(
            now,
            allocate(Some(estimate), demands),
            cap,
            demands,
            current,
        );
        // What is asked for or available may have changed under the current choice: keep
        // each track at or below what the full estimate allows, and off where it must be.
        let kept: Vec<Option<LayerIndex>> = current
            .iter()
            .zip(&full)
            .zip(demands)
            .map(|((c, f), d)| match (c, f) {
                (Some(c), Some(f))
                    if d.layers.get(usize::from(*c)).is_some_and(|x| x.available) =>
                {
                    Some((*c).min(*f))
                }
                (None, Some(_)) if d.flow == Flow::Congested => None,
                (_, f) => *f,
            })
            .collect();
        if cost(demands, &kept) > estimate {
            return full;
        }
        let Some(confirmed) = self.sustained(now) else {
            return kept;
        };
        let headroom = (confirmed as f64 / UPGRADE_HEADROOM) as u64;
        let better = allocate(Some(headroom), demands);
        let raises = better
            .iter()
            .zip(&kept)
            .any(|(b, k)| b.unwrap_or(0) > k.unwrap_or(0) || (b.is_some() && k.is_none()));
        if !raises {
            return kept;
        }
        let raised: Vec<Option<LayerIndex>> = if self.settling(now) {
            // Within a long hold, only paused tracks come back, at their lowest layer.
            let resuming = self
                .fell_at
                .is_some_and(|t| now.saturating_duration_since(t) >= RESUME_HOLD);
            if !resuming {
                return kept;
            }
            let resumed: Vec<Option<LayerIndex>> = kept
                .iter()
                .zip(&better)
                .zip(demands)
                .map(|((k, b), d)| match (k, b) {
                    (None, Some(_)) => lowest_usable(d),
                    _ => *k,
                })
                .collect();
            if resumed == kept {
                return kept;
            }
            resumed
        } else {
            // Never lower a track on the way up: take the higher of the two per track.
            better
                .iter()
                .zip(&kept)
                .map(|(b, k)| (*b).max(*k))
                .collect()
        };
        self.raised_at = Some(now);
        self.raised_from = kept;
        self.floor = None;
        // The next step up is judged on estimates made under this one's load.
        self.recent.clear();
        raised
    }

    /// `choice` raised to the floor while it lasts: per track, no lower than the layer the
    /// failed step up came from, if that layer is still sent or above, available and asked.
    fn floored(
        &mut self,
        now: Instant,
        choice: Vec<Option<LayerIndex>>,
        cap: Budget,
        demands: &[Demand],
        current: &[Option<LayerIndex>],
    ) -> Vec<Option<LayerIndex>> {
        if self.floor.as_ref().is_some_and(|(until, _)| now >= *until) {
            self.floor = None;
        }
        let Some((_, floor)) = &self.floor else {
            return choice;
        };
        // Tracks came or went since the step up: the floor no longer describes them.
        if floor.len() != demands.len() {
            return choice;
        }
        let mut floored = choice.clone();
        for (i, c) in floored.iter_mut().enumerate() {
            let (Some(f), Some(sent)) = (floor[i], current[i]) else {
                continue;
            };
            let usable = f <= sent
                && demands[i].wanted.is_some_and(|w| f <= w)
                && demands[i]
                    .layers
                    .get(usize::from(f))
                    .is_some_and(|l| l.available);
            if usable {
                *c = (*c).max(Some(f));
            }
        }
        if cap.is_some_and(|cap| cost(demands, &floored) > cap) {
            return choice;
        }
        floored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(priority: Priority, wanted: Option<LayerIndex>) -> Demand {
        let layer = |bitrate| LayerCost {
            bitrate,
            available: true,
            measured: true,
        };
        Demand {
            priority,
            flow: Flow::Fresh,
            wanted,
            layers: vec![layer(150_000), layer(500_000), layer(1_500_000)],
            reduced: 0,
        }
    }

    #[test]
    fn unknown_budget_gives_what_is_asked() {
        let d = [
            video(Priority::Other, Some(2)),
            video(Priority::Other, None),
        ];
        assert_eq!(allocate(None, &d), vec![Some(2), None]);
    }

    #[test]
    fn the_lowest_cost_is_the_budget_that_pauses_nothing() {
        let mut thinned = video(Priority::Other, Some(2));
        // Two reduced rungs under the low layer: its full rate is rung 2.
        thinned.layers.splice(0..0, [thinned.layers[0]; 2]);
        thinned.layers[0].bitrate = 40_000;
        thinned.layers[1].bitrate = 80_000;
        thinned.reduced = 2;
        let mut unavailable_low = video(Priority::Other, Some(2));
        unavailable_low.layers[0].available = false;
        let d = [
            video(Priority::Speaker, Some(2)),
            video(Priority::Other, None),
            thinned,
            unavailable_low,
        ];
        let lowest = lowest_cost(&d);
        assert_eq!(lowest, 150_000 + 150_000 + 500_000);
        assert_eq!(
            allocate(Some(lowest), &d),
            vec![Some(0), None, Some(2), Some(1)]
        );
        assert!(allocate(Some(lowest - 1), &d).contains(&None::<LayerIndex>));
    }

    #[test]
    fn screen_share_then_speaker_then_the_rest() {
        let d = [
            video(Priority::Other, Some(2)),
            video(Priority::Speaker, Some(2)),
            video(Priority::Screen, Some(2)),
        ];
        // Everyone's low layer (450k) then raise the screen to high (+1.35M): 1.8M.
        assert_eq!(
            allocate(Some(1_800_000), &d),
            vec![Some(0), Some(0), Some(2)]
        );
        // With 350k more the speaker goes to medium.
        assert_eq!(
            allocate(Some(2_150_000), &d),
            vec![Some(0), Some(1), Some(2)]
        );
        // Too little for three low layers: the lowest priority is paused.
        assert_eq!(allocate(Some(310_000), &d), vec![None, Some(0), Some(0)]);
    }

    #[test]
    fn a_small_tile_gets_a_small_layer_and_unavailable_layers_are_skipped() {
        let mut d = video(Priority::Other, Some(0));
        assert_eq!(
            allocate(Some(10_000_000), std::slice::from_ref(&d)),
            vec![Some(0)]
        );
        d.wanted = Some(2);
        d.layers[2].available = false;
        assert_eq!(allocate(Some(10_000_000), &[d.clone()]), vec![Some(1)]);
        d.layers[0].available = false;
        assert_eq!(allocate(Some(600_000), &[d]), vec![Some(1)]);
    }

    #[test]
    fn a_track_is_not_paused_on_a_guess() {
        let mut d = video(Priority::Other, Some(2));
        d.layers[0].measured = false;
        // The guess does not fit, yet the lowest layer is granted; nothing is raised.
        assert_eq!(
            allocate(Some(100_000), std::slice::from_ref(&d)),
            vec![Some(0)]
        );
        d.layers[0].measured = true;
        assert_eq!(allocate(Some(100_000), &[d]), vec![None]);
    }

    #[test]
    fn falls_at_once_and_rises_only_after_holding() {
        let t0 = Instant::now();
        let d = [video(Priority::Other, Some(2))];
        let mut a = Allocator::default();
        let c = a.update(t0, Some(2_000_000), None, &d, &[None]);
        assert_eq!(c, vec![Some(2)], "a first choice takes what fits");

        // The estimate drops under what is sent: down within one update.
        let c = a.update(t0, Some(700_000), None, &d, &c);
        assert_eq!(c, vec![Some(1)]);

        // It recovers: up only after the hold.
        let mut c = c;
        let mut t = t0;
        while c == vec![Some(1)] {
            t += Duration::from_millis(250);
            c = a.update(t, Some(2_000_000), None, &d, &c);
            assert!(t - t0 < Duration::from_secs(3));
        }
        assert_eq!(c, vec![Some(2)]);
        assert!(t - t0 >= UPGRADE_HOLD);

        // An estimate with too little headroom for the next layer never flips the choice.
        let mut c = a.update(t, Some(1_600_000), None, &d, &[Some(1)]);
        for i in 0..40 {
            c = a.update(
                t + Duration::from_millis(250 * i),
                Some(1_600_000),
                None,
                &d,
                &c,
            );
            assert_eq!(c, vec![Some(1)]);
        }
    }

    #[test]
    fn step_ups_that_keep_failing_are_tried_less_and_less_often() {
        // A link whose estimate sinks half a second after every step up (a bottleneck that
        // cannot carry the high layer, or a CPU-starved host): one try per hold, the hold
        // doubling up to its cap.
        let t0 = Instant::now();
        let d = [video(Priority::Other, Some(2))];
        let mut a = Allocator::default();
        let mut c = a.update(t0, Some(700_000), None, &d, &[None]);
        assert_eq!(c, vec![Some(1)]);
        let tick = Duration::from_millis(250);
        let mut raised: Vec<Duration> = Vec::new();
        let mut t = t0;
        while t - t0 < Duration::from_secs(60) {
            t += tick;
            let since_raise = raised.last().map(|r| t - t0 - *r);
            let estimate = match since_raise {
                Some(s) if s >= Duration::from_millis(500) && c == vec![Some(2)] => 700_000,
                _ => 2_000_000,
            };
            let next = a.update(t, Some(estimate), None, &d, &c);
            if next[0] > c[0] {
                raised.push(t - t0);
            }
            c = next;
        }
        let gaps: Vec<Duration> = raised.windows(2).map(|w| w[1] - w[0]).collect();
        // Without the back-off this raised every 2 s (30 times).
        assert!(raised.len() <= 8, "raised at {raised:?}");
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "the gaps between tries grow: {gaps:?}"
        );
        assert!(
            gaps.last().unwrap() >= &MAX_UPGRADE_HOLD,
            "the hold reaches its cap: {gaps:?}"
        );

        // The link steadies: the step up comes within the longest hold and stays.
        let steady_from = t;
        while c != vec![Some(2)] {
            t += tick;
            c = a.update(t, Some(2_000_000), None, &d, &c);
            assert!(t - steady_from <= MAX_UPGRADE_HOLD + tick);
        }

        // A later fall that no step up caused starts the hold over.
        t += Duration::from_secs(30);
        c = a.update(t, Some(700_000), None, &d, &c);
        assert_eq!(c, vec![Some(1)]);
        let fell = t;
        while c == vec![Some(1)] {
            t += tick;
            c = a.update(t, Some(2_000_000), None, &d, &c);
        }
        assert!(
            t - fell <= UPGRADE_HOLD + tick,
            "back up after {:?}",
            t - fell
        );
    }

    #[test]
    fn pausing_for_the_budget_has_two_thresholds_and_resuming_is_a_step_up() {
        let t0 = Instant::now();
        let mut d = [video(Priority::Other, Some(0))];
        let mut a = Allocator::default();
        let c = a.update(t0, Some(400_000), None, &d, &[None]);
        assert_eq!(c, vec![Some(0)], "a new track gets what fits at once");
        d[0].flow = Flow::Flowing(0);
        let c = a.update(t0, Some(140_000), None, &d, &c);
        assert_eq!(
            c,
            vec![Some(0)],
            "kept while the budget covers most of its lowest layer"
        );
        let c = a.update(t0, Some(110_000), None, &d, &c);
        assert_eq!(
            c,
            vec![None],
            "paused when the budget covers less than KEEP_SHARE of it"
        );
        d[0].flow = Flow::Congested;

        // A budget that hovers just over the lowest layer's rate does not bring it back...
        let mut t = t0;
        for i in 0..40 {
            t += Duration::from_millis(250);
            let budget = if i % 2 == 0 { 155_000 } else { 140_000 };
            assert_eq!(a.update(t, Some(budget), None, &d, &[None]), vec![None]);
        }
        // ...nor does a moment of plenty.
        t += Duration::from_millis(250);
        assert_eq!(a.update(t, Some(1_000_000), None, &d, &[None]), vec![None]);
        t += Duration::from_millis(250);
        assert_eq!(a.update(t, Some(140_000), None, &d, &[None]), vec![None]);

        // A budget with headroom that lasts does.
        let from = t;
        let mut c = vec![None];
        while c == vec![None] {
            t += Duration::from_millis(250);
            c = a.update(t, Some(200_000), None, &d, &c);
            assert!(t - from <= RAISE_CONFIRM + UPGRADE_HOLD, "still paused");
        }
        assert_eq!(c, vec![Some(0)]);
        assert!(t - from >= RAISE_CONFIRM);
    }

    #[test]
    fn a_failed_step_up_falls_back_no_lower_than_it_came_from_for_a_while() {
        // A bottleneck's queue overrun by a step up: the loss-based estimate collapses below
        // the layer the link carried a moment before. The track goes back to that layer, not
        // to a pause, until RAISE_TRIAL has passed.
        let (mut a, d, mut c, mut t) = stepped_up_once();
        let tick = Duration::from_millis(250);
        let t0 = t;
        t += tick;
        c = a.update(t, Some(60_000), None, &d, &c);
        assert_eq!(
            c,
            vec![Some(0)],
            "back to the layer it came from, not paused"
        );
        let fell = t;
        while t - fell + tick < RAISE_TRIAL {
            t += tick;
            c = a.update(t, Some(60_000), None, &d, &c);
            assert_eq!(c, vec![Some(0)], "{:?} after the fall", t - fell);
        }
        t += tick;
        c = a.update(t, Some(60_000), None, &d, &c);
        assert_eq!(
            c,
            vec![None],
            "an estimate still short when the floor expires is followed"
        );

        // A fall that no step up caused follows the estimate at once.
        let mut a = Allocator::default();
        let c = a.update(t0, Some(400_000), None, &d, &[None]);
        assert_eq!(c, vec![Some(0)]);
        assert_eq!(a.update(t0 + tick, Some(60_000), None, &d, &c), vec![None]);
    }

    /// One track on layer 0 under 400 kbit/s, then stepped up to layer 1 once 700 kbit/s
    /// held: the allocator, the demand, the choice and the time of the step up.
    fn stepped_up_once() -> (Allocator, [Demand; 1], Vec<Option<LayerIndex>>, Instant) {
        let t0 = Instant::now();
        let mut d = [video(Priority::Other, Some(2))];
        let mut a = Allocator::default();
        let mut c = a.update(t0, Some(400_000), None, &d, &[None]);
        assert_eq!(c, vec![Some(0)]);
        d[0].flow = Flow::Flowing(0);
        let mut t = t0;
        while c == vec![Some(0)] {
            t += Duration::from_millis(250);
            c = a.update(t, Some(700_000), None, &d, &c);
            assert!(t - t0 <= Duration::from_secs(5), "never stepped up");
        }
        assert_eq!(c, vec![Some(1)]);
        (a, d, c, t)
    }

    #[test]
    fn the_floor_never_exceeds_the_subscribers_own_cap() {
        let (mut a, d, c, t) = stepped_up_once();
        // The step up fails, but on the subscriber's media:bandwidth, not the estimate.
        let c = a.update(
            t + Duration::from_millis(250),
            Some(60_000),
            Some(60_000),
            &d,
            &c,
        );
        assert_eq!(c, vec![None]);
    }

    #[test]
    fn a_reduced_frame_rate_only_when_the_lowest_layer_at_its_full_rate_does_not_fit() {
        let layer = |bitrate| LayerCost {
            bitrate,
            available: true,
            measured: true,
        };
        // The lowest layer at a quarter and a half of its frame rate, then the three layers.
        let demand = |priority| Demand {
            priority,
            flow: Flow::Fresh,
            wanted: Some(4),
            layers: [60_000, 90_000, 150_000, 500_000, 1_500_000]
                .map(layer)
                .to_vec(),
            reduced: 2,
        };
        let one = [demand(Priority::Other)];
        assert_eq!(allocate(Some(1_000_000), &one), vec![Some(3)]);
        assert_eq!(allocate(Some(150_000), &one), vec![Some(2)]);
        assert_eq!(allocate(Some(120_000), &one), vec![Some(1)]);
        assert_eq!(allocate(Some(70_000), &one), vec![Some(0)]);
        assert_eq!(allocate(Some(50_000), &one), vec![None]);
        // Two tracks: each gets the lowest layer at its full rate before either is raised,
        // and only the one that comes second does with less.
        let two = [demand(Priority::Speaker), demand(Priority::Other)];
        assert_eq!(allocate(Some(300_000), &two), vec![Some(2), Some(2)]);
        assert_eq!(allocate(Some(250_000), &two), vec![Some(2), Some(1)]);
        // A flowing track keeps its reduced rate on KEEP_SHARE of it, and pays in full to
        // go higher.
        let mut flowing = demand(Priority::Other);
        flowing.flow = Flow::Flowing(1);
        assert_eq!(allocate(Some(70_000), &[flowing.clone()]), vec![Some(1)]);
        assert_eq!(allocate(Some(140_000), &[flowing]), vec![Some(1)]);
    }

    #[test]
    fn a_paused_track_comes_back_at_its_lowest_layer_before_a_long_hold_ends() {
        // Step ups kept failing: the hold is at its longest. The estimate then allows
        // everything, for good.
        let t0 = Instant::now();
        let tick = Duration::from_millis(250);
        let mut d = [video(Priority::Other, Some(2))];
        d[0].flow = Flow::Congested;
        let mut a = Allocator::default();
        a.update(t0, Some(2_000_000), None, &d, &[None]);
        a.hold = MAX_UPGRADE_HOLD;
        a.fell_at = Some(t0);
        let mut c = vec![None];
        let mut t = t0;
        while c == vec![None] {
            t += tick;
            c = a.update(t, Some(2_000_000), None, &d, &c);
            assert!(t - t0 <= RESUME_HOLD + tick, "still paused");
        }
        assert_eq!(c, vec![Some(0)], "back at the lowest layer");
        assert!(t - t0 >= RESUME_HOLD);
        // Higher layers wait for the hold.
        d[0].flow = Flow::Flowing(0);
        while c == vec![Some(0)] {
            t += tick;
            c = a.update(t, Some(2_000_000), None, &d, &c);
        }
        assert!(t - t0 >= MAX_UPGRADE_HOLD, "raised after {:?}", t - t0);
    }

    #[test]
    fn the_next_step_is_the_cheapest_raise_with_headroom() {
        let d = [
            video(Priority::Other, Some(2)),
            video(Priority::Other, Some(1)),
        ];
        // From (0, 0): +350k for either; with headroom.
        let step = next_step(&d, &[Some(0), Some(0)]).unwrap();
        assert_eq!(step, 300_000 + (350_000.0 * UPGRADE_HEADROOM) as u64);
        // Everything as asked: nothing to probe for.
        assert_eq!(next_step(&d, &[Some(2), Some(1)]), None);
        // A paused track comes back at its lowest layer.
        let step = next_step(&d, &[Some(2), None]).unwrap();
        assert_eq!(step, 1_500_000 + (150_000.0 * UPGRADE_HEADROOM) as u64);
    }

    #[test]
    fn a_paused_track_costs_nothing() {
        let d = [
            video(Priority::Other, None),
            video(Priority::Other, Some(2)),
        ];
        assert_eq!(allocate(Some(1_600_000), &d), vec![None, Some(2)]);
        assert_eq!(cost(&d, &[None, Some(2)]), 1_500_000);
    }
}
