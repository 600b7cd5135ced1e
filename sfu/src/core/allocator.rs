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
//!    longer fits is paused (counted as a congestion drop);
//! 2. tracks are raised one layer at a time, highest priority first, up to what was asked,
//!    while the budget lasts.
//!
//! [`Allocator`] adds the hysteresis: a fall of the estimate below what is being sent
//! applies at once; a step up is taken only when it fits with [`UPGRADE_HEADROOM`] to spare,
//! and not within [`UPGRADE_HOLD`] of the last fall. A steady estimate therefore never flips
//! a track between two layers, and a recovering one raises layers in steps, not in a burst of
//! up-down-up. A step up the subscriber asked for (a bigger tile) is as quick as the budget
//! allows.

use std::time::{Duration, Instant};

use super::layers::LayerIndex;

/// An upgrade must fit in the estimate divided by this.
pub const UPGRADE_HEADROOM: f64 = 1.15;

/// How long after a forced step down no step up is taken.
pub const UPGRADE_HOLD: Duration = Duration::from_millis(1500);

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

/// One video track as the allocator sees it.
#[derive(Clone, Debug)]
pub struct Demand {
    /// See [`Priority`].
    pub priority: Priority,
    /// Highest layer the subscriber can use; `None`: it paused the track.
    pub wanted: Option<LayerIndex>,
    /// Per layer, lowest first.
    pub layers: Vec<LayerCost>,
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
        let lowest =
            (0..=wanted).find(|&l| d.layers.get(usize::from(l)).is_some_and(|x| x.available));
        if let Some(l) = lowest {
            let layer = d.layers[usize::from(l)];
            if fits(&left, layer.bitrate) || !layer.measured {
                out[i] = Some(l);
                if let Some(b) = left.as_mut() {
                    *b -= layer.bitrate as i128;
                }
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
#[derive(Debug, Default)]
pub struct Allocator {
    /// When the estimate last forced a step down.
    fell_at: Option<Instant>,
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
            .is_some_and(|t| now.saturating_duration_since(t) < UPGRADE_HOLD)
    }

    /// The new choice given the `current` one (same order as `demands`).
    pub fn update(
        &mut self,
        now: Instant,
        budget: Budget,
        demands: &[Demand],
        current: &[Option<LayerIndex>],
    ) -> Vec<Option<LayerIndex>> {
        let Some(estimate) = budget else {
            return allocate(None, demands);
        };
        let full = allocate(Some(estimate), demands);
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
                (_, f) => *f,
            })
            .collect();
        if cost(demands, current) > estimate {
            self.fell_at = Some(now);
        }
        if cost(demands, &kept) > estimate {
            return full;
        }
        let headroom = (estimate as f64 / UPGRADE_HEADROOM) as u64;
        let better = allocate(Some(headroom), demands);
        let raises = better
            .iter()
            .zip(&kept)
            .any(|(b, k)| b.unwrap_or(0) > k.unwrap_or(0) || (b.is_some() && k.is_none()));
        if !raises || self.settling(now) {
            return kept;
        }
        // Never lower a track on the way up: take the higher of the two per track.
        better
            .iter()
            .zip(&kept)
            .map(|(b, k)| (*b).max(*k))
            .collect()
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
            wanted,
            layers: vec![layer(150_000), layer(500_000), layer(1_500_000)],
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
        let c = a.update(t0, Some(2_000_000), &d, &[None]);
        assert_eq!(c, vec![Some(2)], "a first choice takes what fits");

        // The estimate drops under what is sent: down within one update.
        let c = a.update(t0, Some(700_000), &d, &c);
        assert_eq!(c, vec![Some(1)]);

        // It recovers: up only after the hold.
        let mut c = c;
        let mut t = t0;
        while c == vec![Some(1)] {
            t += Duration::from_millis(250);
            c = a.update(t, Some(2_000_000), &d, &c);
            assert!(t - t0 < Duration::from_secs(3));
        }
        assert_eq!(c, vec![Some(2)]);
        assert!(t - t0 >= UPGRADE_HOLD);

        // An estimate with too little headroom for the next layer never flips the choice.
        let mut c = a.update(t, Some(1_600_000), &d, &[Some(1)]);
        for i in 0..40 {
            c = a.update(t + Duration::from_millis(250 * i), Some(1_600_000), &d, &c);
            assert_eq!(c, vec![Some(1)]);
        }
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
