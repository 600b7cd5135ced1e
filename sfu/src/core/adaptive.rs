//! Adaptive media: what each subscriber receives of each video track, and which layers
//! publishers are asked to send.
//!
//! - **Allocation** ([`super::allocator`]): per subscriber, from its `track:settings`, its
//!   downlink estimate and each layer's bitrate, a target layer per video track. Run when
//!   a subscription opens, when settings change, and every [`TICK`] (estimates and layer
//!   rates move continuously; a fall is acted on within one tick).
//! - **Switching** ([`super::selector`]): a new target takes effect at the target layer's
//!   next keyframe, which is requested at once.
//! - **Dynacast**: a simulcast layer no subscriber targets or receives is stopped at the
//!   publisher after [`DYNACAST_DELAY`] ([`SfuEvent::TrackQuality`]); one that becomes
//!   needed is resumed at once.
//! - **When the estimate is believed.** For [`ESTIMATE_STARTUP`] after a participant joins
//!   the estimate is str0m's guess, and every track gets what is asked. An estimate also
//!   only knows the rate that was used: while no video flows to a subscriber over a link
//!   that has not fallen for [`IDLE_RESUME_QUIET`], the link is *idle*, and once video
//!   starts to flow over an idle link (after the join, or after everything was paused) it
//!   is *on trial* for [`ESTIMATE_STARTUP`]. While idle or on trial the video budget is at
//!   least every asked-for track's lowest layer, so an estimate formed on audio alone, or
//!   on the first keyframes, pauses nothing; over an idle link it is also at least what a
//!   new subscriber starts from ([`super::INITIAL_ESTIMATE`]). On trial the estimate may
//!   still lower layers, and after it the estimate rules as usual (ADR 0103).

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;

use crate::error::Error;
use crate::event::{LayerActivity, SfuEvent, TrackKind, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, SessionId, TrackId};

use super::Core;
use super::allocator::{
    Demand, Flow, LayerCost, Priority, Wanted, allocate, cost, lowest_cost, next_step,
};
use super::layers::{LayerIndex, MAX_LAYERS, Scheme, Sending};
use super::participant::{SubState, Work};
use super::temporal::FrameRate;
use super::tracks::layer_changed;

/// How often allocation and dynacast run for everyone.
pub(super) const TICK: Duration = Duration::from_millis(250);

/// How far a forwarded frame rate may drift from the one `track:layer` last announced before
/// it is announced again: this fraction of it (a quarter)…
pub(super) const REANNOUNCE_DRIFT_DIVISOR: u16 = 4;

/// …and at least this many frames per second: the measurement over half a second moves by
/// one or two at a steady rate.
pub(super) const REANNOUNCE_DRIFT_LEAST: u16 = 3;

/// The least time between two `track:layer` for a drifting frame rate, per subscription: a
/// rate that swings between two values is told about at most this often.
pub(super) const REANNOUNCE_AFTER: Duration = Duration::from_secs(2);

/// How long a drifted frame rate must hold still (within one frame per second) before it is
/// announced: the measurement is smoothed over about two seconds, so after a step it passes
/// through every value between.
pub(super) const SETTLE: Duration = Duration::from_secs(1);

/// Whether a rate measured now has drifted from the one announced (see
/// [`REANNOUNCE_DRIFT_DIVISOR`]); any measurement has, after one announced as unmeasured.
fn drifted(announced: Option<u16>, measured: u16) -> bool {
    announced.is_none_or(|was| {
        was.abs_diff(measured) >= REANNOUNCE_DRIFT_LEAST.max(was / REANNOUNCE_DRIFT_DIVISOR)
    })
}

/// How long a simulcast layer goes unneeded before its publisher is asked to stop it.
/// Long enough that a subscriber stepping down and back up does not restart an encoder.
pub const DYNACAST_DELAY: Duration = Duration::from_secs(2);

/// With no video flowing, a subscriber whose estimate has not fallen for this long resumes
/// from the initial estimate rather than from what the idle link measured.
const IDLE_RESUME_QUIET: Duration = Duration::from_secs(10);

/// Bitrate assumed for an audio track not yet measured (bit/s).
const AUDIO_NOMINAL: u64 = 48_000;

/// How long after a participant joins its estimate is taken as a guess, not a measurement:
/// long enough for str0m's initial probes (its startup phase is 2 s). Until then every track
/// gets what is asked, as with no estimator; a receive cap still applies. Also how long video
/// that starts over an idle link is on trial (see the module docs).
const ESTIMATE_STARTUP: Duration = Duration::from_secs(2);

/// Whether video is being forwarded to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Video {
    Flowing,
    Stopped,
}

/// Whether a subscriber's estimate was measured with video on its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// It was: the allocator follows it.
    Measured,
    /// No video flows over a link that has not fallen lately: the estimate measured audio.
    Idle,
    /// Video began to flow over an idle link less than [`ESTIMATE_STARTUP`] ago.
    Trial,
}

/// Whether a subscriber's link is idle or its video on trial (see the module docs).
///
/// Lifecycle: one per participant, idle at join; [`LinkUse::observe`] at every reallocation.
#[derive(Debug)]
pub(crate) struct LinkUse {
    /// Whether the last reallocation found no video flowing over a link that had not
    /// fallen for [`IDLE_RESUME_QUIET`].
    idle: bool,
    /// Until when video that began to flow over an idle link is on trial.
    trial_until: Option<Instant>,
}

impl Default for LinkUse {
    fn default() -> Self {
        Self {
            idle: true,
            trial_until: None,
        }
    }
}

impl LinkUse {
    /// Takes in what flows now, and whether the link has been `calm` (no fall of the
    /// estimate under what was sent for [`IDLE_RESUME_QUIET`]).
    pub(crate) fn observe(&mut self, now: Instant, video: Video, calm: bool) -> Trust {
        if video == Video::Flowing && self.idle {
            self.trial_until = Some(now + ESTIMATE_STARTUP);
        }
        self.idle = video == Video::Stopped && calm;
        if self.idle {
            Trust::Idle
        } else if self.trial_until.is_some_and(|until| now < until) {
            Trust::Trial
        } else {
            Trust::Measured
        }
    }
}

/// The video budget of a subscriber from its `estimate` less `audio`, by [`Trust`]: never
/// less than every asked-for track's lowest layer while the estimate is untested, so nothing
/// is paused on it; and over an idle link, what a new subscriber starts from (the initial
/// estimate). On trial it is not raised: an estimate that fell under the first video may
/// lower layers, only not pause them.
fn video_budget(estimate: u64, audio: u64, trust: Trust, demands: &[Demand]) -> u64 {
    let video = estimate.saturating_sub(audio);
    match trust {
        Trust::Measured => video,
        Trust::Trial => video.max(lowest_cost(demands)),
        Trust::Idle => video
            .max(super::INITIAL_ESTIMATE.saturating_sub(audio))
            .max(lowest_cost(demands)),
    }
}

impl Core {
    /// What `participant` wants of video `track` (`track:settings`): the smallest layer that
    /// covers a size, the best one, or nothing; and at least how many frames per second
    /// (`None`: every frame), which it gets from fewer temporal layers where the publisher
    /// sends them and they suffice.
    pub fn set_track_settings(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        track: &TrackId,
        wanted: Wanted,
        fps: Option<u32>,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        let video = self
            .tracks
            .get(track)
            .is_some_and(|t| &t.room == room && t.kind == TrackKind::Video);
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        let Some(s) = p.sub_mut(track).filter(|_| video) else {
            return Err(Error::UnknownTrack(track.clone()));
        };
        s.wanted = wanted;
        s.wanted_fps = fps;
        self.out.work.push_back(Work::Reallocate { session: id });
        self.settle(now);
        Ok(())
    }

    /// Caps what `participant` receives (`media:bandwidth`): its layers are fitted under the
    /// lower of this and its estimate. `None` lifts the cap.
    pub fn set_receive_cap(
        &mut self,
        now: Instant,
        room: &RoomKey,
        participant: &ParticipantKey,
        cap: Option<u64>,
    ) -> Result<(), Error> {
        let id = self.session_id(room, participant)?;
        let p = self
            .sessions
            .get_mut(&id)
            .expect("session ids in rooms exist");
        p.receive_cap = cap;
        self.out.work.push_back(Work::Reallocate { session: id });
        self.settle(now);
        Ok(())
    }

    /// Runs allocation for everyone, then dynacast, and refreshes the layer gauges.
    pub(super) fn tick(&mut self, now: Instant) {
        self.next_tick = Some(now + TICK);
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, p)| p.subs.iter().any(|s| s.kind == TrackKind::Video))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.reallocate(now, id);
        }
        self.dynacast(now);
        self.reannounce_drifted_rates(now);
        self.count_subscriptions();
    }

    /// Sends `track:layer` again to each subscriber whose forwarded frame rate, as measured,
    /// has drifted from the one it was last told by [`REANNOUNCE_DRIFT_DIVISOR`] or more, once the
    /// measurement has settled (moved by at most one frame per second over [`SETTLE`]) and
    /// no sooner than [`REANNOUNCE_AFTER`] after the last. A publisher's own rate moves (a
    /// camera in low light, an encoder short of CPU, Chromium's start-up ramp), and a rate
    /// announced unmeasured (`null`) at the first packet gets its figure this way. Waiting
    /// for the smoothed measurement to settle tells the rate it arrives at, not one on the
    /// way there.
    pub(super) fn reannounce_drifted_rates(&mut self, now: Instant) {
        for p in self.sessions.values_mut() {
            for s in p.subs.iter_mut() {
                let (Some(layer), Some(last)) = (s.selector.current(), s.announced.as_mut()) else {
                    continue;
                };
                if s.kind != TrackKind::Video || !matches!(s.state, SubState::Open(_)) {
                    continue;
                }
                let Some(track) = self.tracks.get(&s.track) else {
                    continue;
                };
                let rate = s.temporal.current();
                let Some(measured) = track.layers.frames_per_second(layer, rate, now) else {
                    continue;
                };
                if !drifted(last.frame_rate, measured) {
                    last.drift = None;
                    continue;
                }
                match last.drift {
                    Some((near, since)) if near.abs_diff(measured) <= 1 => {
                        if now < since + SETTLE || now < last.at + REANNOUNCE_AFTER {
                            continue;
                        }
                    }
                    _ => {
                        last.drift = Some((measured, now));
                        continue;
                    }
                }
                let event =
                    layer_changed((&p.room, &p.key), &s.track, &track.layers, layer, rate, now);
                self.events.push_back(s.announcing(event, now));
            }
        }
    }

    /// Refreshes this core's share of the subscription gauges. Run every tick, and when the
    /// last participant leaves (no tick follows).
    pub(super) fn count_subscriptions(&mut self) {
        let mut now_counted = SubscriptionCounts::default();
        for p in self.sessions.values() {
            for s in p.subs.iter().filter(|s| s.kind == TrackKind::Video) {
                if let SubState::Open(_) = s.state {
                    let at = s.selector.current().map_or(MAX_LAYERS, usize::from);
                    now_counted.by_layer[at.min(MAX_LAYERS)] += 1;
                    if at < MAX_LAYERS && s.temporal.current() != FrameRate::Full {
                        now_counted.reduced_frame_rate += 1;
                    }
                }
            }
        }
        // Every worker's core shares the gauges: each adds the change in its own counts.
        let was = std::mem::replace(&mut self.subscription_counts, now_counted);
        let now_counted = &self.subscription_counts;
        self.metrics
            .reduced_frame_rate
            .add(now_counted.reduced_frame_rate - was.reduced_frame_rate);
        for (i, (n, before)) in now_counted.by_layer.iter().zip(was.by_layer).enumerate() {
            let label = ["0", "1", "2", "none"][i];
            self.metrics
                .subscriptions_by_layer
                .with_label_values(&[label])
                .add(n - before);
        }
    }

    /// Chooses the layers `id` receives (see the module docs).
    pub(super) fn reallocate(&mut self, now: Instant, id: SessionId) {
        let Some(p) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut demands = Vec::new();
        let mut at = Vec::new();
        let mut current = Vec::new();
        // Per demand, the reduced frame rates of its lowest layer, offered as the rungs
        // below it (see `temporal`), and the frame rate of each layer the subscriber asked
        // for: the allocator sees rung `r`, a track gets `split_rung(r)`.
        let mut rungs: Vec<Rungs> = Vec::new();
        let mut audio = 0u64;
        for (i, s) in p.subs.iter().enumerate() {
            let SubState::Open(_) = s.state else {
                continue;
            };
            let Some(t) = self.tracks.get(&s.track) else {
                continue;
            };
            if s.kind == TrackKind::Audio {
                audio += t.layers.measured_bitrate(0).unwrap_or(AUDIO_NOMINAL);
                continue;
            }
            let top = (t.layers.len() - 1) as LayerIndex;
            // Only simulcast and single streams are thinned by temporal layer (`temporal`).
            let thinned = t.layers.scheme() != Scheme::Spatial;
            let asked: Vec<FrameRate> = (0..=top)
                .map(|l| match s.wanted_fps {
                    Some(fps) if thinned => {
                        let kept = (s.selector.target() == Some(l)).then_some(s.asked_rate);
                        t.layers.frame_rate_for(l, fps, kept, now)
                    }
                    _ => FrameRate::Full,
                })
                .collect();
            let reduced: Vec<(u8, u64)> = match thinned {
                false => Vec::new(),
                true => t
                    .layers
                    .temporal_bitrates(0, now)
                    .into_iter()
                    .filter(|&(tid, _)| FrameRate::Reduced(tid) < asked[0])
                    .collect(),
            };
            let floor = reduced.len() as LayerIndex;
            let wanted = match s.wanted {
                _ if t.held => None,
                Wanted::Highest => Some(top),
                Wanted::Size { width, height } => Some(t.layers.layer_for_size(width, height)),
                Wanted::Paused => None,
            }
            .map(|l| l + floor);
            let speaking = self
                .rooms
                .get(&t.room)
                .and_then(|r| r.speakers.dominant())
                .is_some_and(|k| *k == t.publisher_key);
            let priority = match t.source {
                TrackSource::Screen => Priority::Screen,
                TrackSource::Camera if speaking => Priority::Speaker,
                _ => Priority::Other,
            };
            let rates = Rungs {
                reduced: reduced
                    .iter()
                    .map(|&(tid, _)| FrameRate::Reduced(tid))
                    .collect(),
                asked,
            };
            let sent = rates.rung_of(s.selector.target(), s.temporal.target());
            demands.push(Demand {
                priority,
                flow: match sent {
                    Some(rung) => Flow::Flowing(rung),
                    None if s.congested => Flow::Congested,
                    None => Flow::Fresh,
                },
                wanted,
                layers: reduced
                    .iter()
                    .map(|&(_, bitrate)| LayerCost {
                        bitrate,
                        available: t.layers.available(0, now),
                        measured: true,
                    })
                    .chain((0..=top).map(|l| LayerCost {
                        bitrate: t.layers.bitrate_at(l, rates.asked[usize::from(l)], now),
                        available: t.layers.available(l, now),
                        measured: t.layers.measured_bitrate(l).is_some(),
                    }))
                    .collect(),
                reduced: floor,
            });
            at.push(i);
            current.push(sent);
            rungs.push(rates);
        }
        if demands.is_empty() {
            return;
        }
        // The estimator starts from a guess (INITIAL_ESTIMATE) and needs its first probes
        // to learn the link: nothing is paused or lowered on that guess.
        let estimating = now.saturating_duration_since(p.join_started) >= ESTIMATE_STARTUP;
        let estimate = p.estimate.filter(|_| estimating);
        let video = match at.iter().any(|&i| p.subs[i].selector.current().is_some()) {
            true => Video::Flowing,
            false => Video::Stopped,
        };
        let calm = p.allocator.calm(now, IDLE_RESUME_QUIET);
        let trust = p.link_use.observe(now, video, calm);
        let mut budget = estimate.map(|e| video_budget(e, audio, trust, &demands));
        let cap = p.receive_cap.map(|cap| cap.saturating_sub(audio));
        if let Some(cap) = cap {
            budget = Some(budget.map_or(cap, |b| b.min(cap)));
        }
        let choice = p.allocator.update(now, budget, cap, &demands, &current);
        if choice != current {
            tracing::debug!(
                room = %p.room,
                participant = %p.key,
                estimate = ?p.estimate,
                ?budget,
                ?current,
                ?choice,
                layer_bitrates = ?demands
                    .iter()
                    .map(|d| d.layers.iter().map(|l| l.bitrate).collect::<Vec<_>>())
                    .collect::<Vec<_>>(),
                "sfu layers reallocated"
            );
        }
        if p.estimate.is_some() {
            // The estimator can only learn of capacity that is used: while a step up is
            // wanted, pad up to it, but only as far as the budget has held for a second
            // (str0m caps padding at the estimate, and an estimate that jumps for a moment,
            // a probe overshooting a bottleneck, would otherwise be padded into at once and
            // overrun the link); probe towards all that was asked for.
            let mut desired = cost(&demands, &allocate(None, &demands)) + audio;
            if let Some(cap) = p.receive_cap {
                desired = desired.min(cap);
            }
            let sending = cost(&demands, &choice);
            let minimum = (match (next_step(&demands, &choice), p.allocator.sustained(now)) {
                (Some(step), Some(held)) if !p.allocator.settling(now) => {
                    step.min(held).max(sending)
                }
                _ => sending,
            } + audio)
                .min(desired);
            let wish = (minimum, desired.max(minimum));
            if p.bandwidth_wish != wish {
                p.bandwidth_wish = wish;
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::bps(wish.0), Bitrate::bps(wish.1));
            }
        }
        let mut keyframes: Vec<(TrackId, LayerIndex)> = Vec::new();
        for (k, &i) in at.iter().enumerate() {
            let s = &mut p.subs[i];
            s.congested = demands[k].wanted.is_some() && choice[k].is_none();
            let had = s.selector.current();
            let (layer, rate) = rungs[k].split_rung(choice[k]);
            s.asked_rate = layer
                .and_then(|l| rungs[k].asked.get(usize::from(l)).copied())
                .unwrap_or(FrameRate::Full);
            // A higher frame rate waits for a switch point; a keyframe is one, asked for
            // only when the layer's frames do not mark others (ADR 0100).
            let raised = s.temporal.set_target(rate)
                && layer.is_some_and(|l| {
                    self.tracks
                        .get(&s.track)
                        .is_none_or(|t| !t.layers.marks_switch_points(l, now))
                });
            if (s.selector.set_target(layer) || raised)
                && let Some(layer) = layer
            {
                keyframes.push((s.track.clone(), layer));
            }
            if had.is_some() && s.selector.current().is_none() {
                let event = SfuEvent::LayerChanged {
                    room: p.room.clone(),
                    participant: p.key.clone(),
                    track_id: s.track.clone(),
                    layer: None,
                };
                self.events.push_back(s.announcing(event, now));
            }
        }
        p.drain(now, &mut self.out);
        for (track, layer) in keyframes {
            self.request_layer_keyframe(&track, Some(layer));
        }
    }

    /// Stops unneeded simulcast layers and resumes needed ones (see the module docs).
    pub(super) fn dynacast(&mut self, now: Instant) {
        for (track_id, t) in self.tracks.iter_mut() {
            if !t.layers.is_simulcast() {
                continue;
            }
            let mut needed = [false; MAX_LAYERS];
            for sid in &t.subscribers {
                let Some(s) = self
                    .sessions
                    .get(sid)
                    .and_then(|p| p.subs.iter().find(|s| &s.track == track_id))
                else {
                    continue;
                };
                for l in [s.selector.current(), s.selector.target()]
                    .into_iter()
                    .flatten()
                {
                    needed[usize::from(l).min(MAX_LAYERS - 1)] = true;
                }
            }
            let mut changed = false;
            for (i, layer) in t.layers.iter_mut().enumerate() {
                if needed[i] {
                    layer.unneeded_since = None;
                    if layer.sending == Sending::Stopped {
                        layer.sending = Sending::Asked;
                        layer.resumed_at = Some(now);
                        changed = true;
                        self.metrics.dynacast.with_label_values(&["resumed"]).inc();
                    }
                } else if layer.sending == Sending::Asked {
                    let since = *layer.unneeded_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= DYNACAST_DELAY {
                        layer.sending = Sending::Stopped;
                        layer.unneeded_since = None;
                        changed = true;
                        self.metrics.dynacast.with_label_values(&["stopped"]).inc();
                    }
                }
            }
            if changed {
                self.events.push_back(SfuEvent::TrackQuality {
                    room: t.room.clone(),
                    participant: t.publisher_key.clone(),
                    track_id: track_id.clone(),
                    layers: t
                        .layers
                        .iter()
                        .map(|l| LayerActivity {
                            rid: l.rid.map(|r| r.to_string()).unwrap_or_default(),
                            active: l.sending == Sending::Asked,
                        })
                        .collect(),
                });
            }
        }
    }
}

/// What one core last added to the subscription gauges
/// (`chorus_sfu_video_subscriptions{layer}`, `chorus_sfu_video_subscriptions_reduced_frame_rate`).
#[derive(Debug, Default)]
pub(super) struct SubscriptionCounts {
    /// Open video subscriptions per layer forwarded, lowest first, then none.
    by_layer: [i64; MAX_LAYERS + 1],
    /// Of those, the ones at a reduced frame rate.
    reduced_frame_rate: i64,
}

/// The frame rates a track offers one subscriber, which turn its layers into the
/// allocator's rungs: below its lowest layer at the rate asked for, that layer at the
/// reduced rates under it.
struct Rungs {
    /// The lowest layer's reduced frame rates below the one asked for, lowest first.
    reduced: Vec<FrameRate>,
    /// Per layer, the frame rate the subscriber asked for (`track:settings`).
    asked: Vec<FrameRate>,
}

impl Rungs {
    /// The allocator's rung for a track sent `layer` at `rate`.
    fn rung_of(&self, layer: Option<LayerIndex>, rate: FrameRate) -> Option<LayerIndex> {
        let floor = self.reduced.len() as LayerIndex;
        let layer = layer?;
        if layer == 0 && floor > 0 && rate < self.asked[0] {
            return Some(
                self.reduced
                    .iter()
                    .position(|r| *r >= rate)
                    .unwrap_or(self.reduced.len() - 1) as LayerIndex,
            );
        }
        Some(layer + floor)
    }

    /// The layer and frame rate of the allocator's `rung` (the inverse of
    /// [`Rungs::rung_of`]).
    fn split_rung(&self, rung: Option<LayerIndex>) -> (Option<LayerIndex>, FrameRate) {
        let floor = self.reduced.len() as LayerIndex;
        match rung {
            None => (None, FrameRate::Full),
            Some(r) if r < floor => (Some(0), self.reduced[usize::from(r)]),
            Some(r) => {
                let layer = r - floor;
                let rate = self
                    .asked
                    .get(usize::from(layer))
                    .copied()
                    .unwrap_or(FrameRate::Full);
                (Some(layer), rate)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK_MS: u64 = 250;

    /// What `LinkUse` says at each tick of `video` (one entry per tick), `calm` throughout.
    fn trust_over(link: &mut LinkUse, start: Instant, video: &[Video], calm: bool) -> Vec<Trust> {
        (0..video.len())
            .map(|i| {
                let now = start + Duration::from_millis(TICK_MS * i as u64);
                link.observe(now, video[i], calm)
            })
            .collect()
    }

    #[test]
    fn video_that_starts_over_an_idle_link_is_on_trial_for_the_startup_time() {
        use Video::{Flowing, Stopped};
        let start = Instant::now();
        let mut link = LinkUse::default();
        // At join nothing flows: idle. Video flows from the third tick: on trial for 2 s
        // (eight ticks), then measured.
        let video = [[Stopped; 2].as_slice(), &[Flowing; 12]].concat();
        let trust = trust_over(&mut link, start, &video, true);
        let on_trial = (ESTIMATE_STARTUP.as_millis() as u64 / TICK_MS) as usize;
        assert_eq!(trust[..2], [Trust::Idle; 2]);
        assert_eq!(trust[2..2 + on_trial], vec![Trust::Trial; on_trial]);
        assert!(trust[2 + on_trial..].iter().all(|t| *t == Trust::Measured));
    }

    #[test]
    fn a_link_whose_video_the_estimate_just_paused_is_not_idle() {
        use Video::{Flowing, Stopped};
        let start = Instant::now();
        let mut link = LinkUse::default();
        trust_over(&mut link, start, &[Flowing; 12], true);
        // Paused for the budget (a fall, so not calm): the estimate is believed, and video
        // that comes back is not on trial.
        let later = start + Duration::from_secs(5);
        let trust = trust_over(
            &mut link,
            later,
            &[Stopped, Stopped, Flowing, Flowing],
            false,
        );
        assert_eq!(trust, [Trust::Measured; 4]);
        // Once the link has been calm with nothing flowing, it is idle again, and the next
        // video is on trial.
        let much_later = start + Duration::from_secs(20);
        let trust = trust_over(&mut link, much_later, &[Stopped, Flowing, Flowing], true);
        assert_eq!(trust, [Trust::Idle, Trust::Trial, Trust::Trial]);
    }

    #[test]
    fn an_untested_estimate_pauses_no_lowest_layer_and_an_idle_one_starts_from_the_initial() {
        let layer = |bitrate| LayerCost {
            bitrate,
            available: true,
            measured: true,
        };
        let camera = |bitrates: &[u64]| Demand {
            priority: Priority::Other,
            flow: Flow::Flowing(0),
            wanted: Some(bitrates.len() as LayerIndex - 1),
            layers: bitrates.iter().map(|&b| layer(b)).collect(),
            reduced: 0,
        };
        let audio = 80_000;
        let simulcast = [0, 1].map(|_| camera(&[150_000, 500_000, 1_500_000]));
        // An estimate formed on audio alone (100k): measured, it pauses both cameras; on
        // trial, both keep their lowest layer and nothing more; idle, the budget is what a new
        // subscriber starts from.
        let measured = video_budget(100_000, audio, Trust::Measured, &simulcast);
        assert_eq!(allocate(Some(measured), &simulcast), vec![None, None]);
        let trial = video_budget(100_000, audio, Trust::Trial, &simulcast);
        assert_eq!(allocate(Some(trial), &simulcast), vec![Some(0), Some(0)]);
        let idle = video_budget(100_000, audio, Trust::Idle, &simulcast);
        assert_eq!(idle, super::super::INITIAL_ESTIMATE - audio);
        // A higher estimate is followed in every state.
        for trust in [Trust::Measured, Trust::Trial, Trust::Idle] {
            assert_eq!(video_budget(3_000_000, audio, trust, &simulcast), 2_920_000);
        }
        // Four single-layer 1.5 Mbit/s cameras on trial: all keep flowing.
        let four = [0, 1, 2, 3].map(|_| camera(&[1_500_000]));
        let budget = video_budget(100_000, audio, Trust::Trial, &four);
        assert_eq!(allocate(Some(budget), &four), vec![Some(0); 4]);
    }
}
