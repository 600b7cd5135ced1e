//! Active speaker detection for one room, from the RFC 6464 audio levels publishers put in
//! their audio packets (the `ssrc-audio-level` header extension). The SFU never decodes audio.
//!
//! How it decides (the figures are the constants below; `docs/sfu.md` explains them):
//! - Each microphone packet gives a level in -dBov (0 loudest, 127 silence). It is turned into
//!   a linear amplitude `10^(-dBov/20)` (0.0–1.0) and counted in a 100 ms bucket of its
//!   participant; five buckets make the 500 ms window. Nothing is allocated per packet.
//! - A participant is *speaking* when at least [`MIN_VOICED_SHARE_PERCENT`] of its packets in
//!   the window are louder than [`VOICE_THRESHOLD_DBOV`], and at least [`MIN_VOICED_PACKETS`]
//!   of them are. Its *level* is the mean amplitude over all its packets in the window, so a
//!   speaker who stops (silent packets, or no packets at all) decays out within the window.
//! - Speakers are ranked by level with hysteresis: the last announced order is kept, and a
//!   speaker moves above another only when its level exceeds the other's by
//!   [`OVERTAKE_RATIO`]. Two people at about the same loudness do not swap places every tick.
//! - The ranking is evaluated at every bucket boundary. A new order is announced when it
//!   differs from the last announced one (who is in it, or in which order), and at most once
//!   per [`MIN_INTERVAL`]; a change held back by that cap is announced at the first evaluation
//!   after the cap allows it, if it still holds then.
//!
//! Lifecycle: created with its room (empty), fed by [`SpeakerDetector::hear`] for every
//! microphone packet the room forwards, ticked by [`SpeakerDetector::handle_timeout`] when
//! [`SpeakerDetector::poll_timeout`] is due, told by [`SpeakerDetector::forget`] when a
//! participant's microphone stops counting (muted, held, unpublished, left); dropped with the
//! room. Time is an argument everywhere (sans-IO): nothing here reads a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::event::{AudioLevel, Muted, SfuEvent, TrackKind, TrackSource};
use crate::ids::{ParticipantKey, RoomKey, TrackId};

use super::Core;

/// Length of one bucket; the ranking is re-evaluated at each bucket boundary.
pub const BUCKET: Duration = Duration::from_millis(100);
/// Buckets in the smoothing window ([`BUCKET`] × this = 500 ms).
pub const BUCKETS: usize = 5;
/// A packet counts as voice when its level is at most this many dB below full scale.
pub const VOICE_THRESHOLD_DBOV: u8 = 50;
/// Share of a participant's packets in the window that must be voice for it to be speaking.
pub const MIN_VOICED_SHARE_PERCENT: u32 = 30;
/// Voice packets needed in the window (about 60 ms of 20 ms Opus frames), so one click or
/// cough is not a speaker.
pub const MIN_VOICED_PACKETS: u32 = 3;
/// Level factor by which a speaker must beat the one ranked above it to take its place (about
/// 3.5 dB).
pub const OVERTAKE_RATIO: f32 = 1.5;
/// Shortest time between two announcements for one room.
pub const MIN_INTERVAL: Duration = Duration::from_millis(300);
/// Most speakers announced at once (the loudest ones); bounds the event's size.
pub const MAX_LISTED: usize = 8;

impl Core {
    /// A forwarded packet of `track` carried RFC 6464 level `level` (str0m gives it as
    /// `-dBov`). Only unmuted, unheld microphone tracks count.
    pub(super) fn hear(&mut self, now: Instant, track: &TrackId, level: i8) {
        let Some(t) = self.tracks.get(track) else {
            return;
        };
        if t.kind != TrackKind::Audio
            || t.source != TrackSource::Microphone
            || t.muted == Muted::Yes
            || t.held
        {
            return;
        }
        let Some(room) = self.rooms.get_mut(&t.room) else {
            return;
        };
        let change = room
            .speakers
            .hear(now, &t.publisher_key, level.unsigned_abs());
        if change.is_some() {
            let room = t.room.clone();
            self.announce_speakers(room, change);
        }
    }

    /// Emits [`SfuEvent::Speakers`] for a change the detector decided on.
    pub(super) fn announce_speakers(
        &mut self,
        room: RoomKey,
        change: Option<Vec<(ParticipantKey, AudioLevel)>>,
    ) {
        if let Some(speakers) = change {
            self.metrics.speaker_changes.inc();
            self.events.push_back(SfuEvent::Speakers {
                room: room.clone(),
                speakers,
            });
            self.follow_speaker(&room);
        }
    }

    /// A microphone of `participant` stopped counting (muted or held): drop its samples.
    pub(super) fn silence(&mut self, room: &RoomKey, participant: &ParticipantKey) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.speakers.forget(participant);
        }
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct SpeakerDetector {
    /// Bucket numbers count [`BUCKET`]s from here (the room's creation).
    epoch: Instant,
    heard: HashMap<ParticipantKey, Window>,
    /// The order last announced (empty before the first announcement).
    announced: Vec<ParticipantKey>,
    announced_at: Option<Instant>,
    /// Bucket number of the last evaluation.
    evaluated: u64,
}

impl SpeakerDetector {
    /// An empty detector; `now` is the room's creation.
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            heard: HashMap::new(),
            announced: Vec::new(),
            announced_at: None,
            evaluated: 0,
        }
    }

    /// One microphone packet of `participant` with RFC 6464 level `dbov` (0 loud, 127
    /// silence; larger values are clamped) arrived at `now`. Returns a new speaker order when
    /// this packet crossed a bucket boundary and the order changed.
    pub fn hear(
        &mut self,
        now: Instant,
        participant: &ParticipantKey,
        dbov: u8,
    ) -> Option<Vec<(ParticipantKey, AudioLevel)>> {
        let bucket = self.bucket(now);
        let window = match self.heard.get_mut(participant) {
            Some(w) => w,
            None => {
                if self.heard.len() >= MAX_HEARD {
                    return self.handle_timeout(now);
                }
                self.heard.entry(participant.clone()).or_default()
            }
        };
        window.add(bucket, dbov.min(127));
        self.handle_timeout(now)
    }

    /// `participant`'s microphone no longer counts (muted, held, unpublished or gone): its
    /// samples are dropped, and the next evaluation leaves it out.
    pub fn forget(&mut self, participant: &ParticipantKey) {
        self.heard.remove(participant);
    }

    /// The loudest speaker as last announced (the active speaker), if anyone speaks.
    pub fn dominant(&self) -> Option<&ParticipantKey> {
        self.announced.first()
    }

    /// When [`SpeakerDetector::handle_timeout`] must run next: the next bucket boundary while
    /// anything could change the announced order (someone spoke within the window, or the
    /// last announcement named anyone); `None` when the room is quiet and announced quiet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let current = self.evaluated;
        let live = !self.announced.is_empty()
            || self
                .heard
                .values()
                .any(|w| w.voiced_since(current.saturating_sub(BUCKETS as u64 - 1)) > 0);
        live.then(|| self.epoch + BUCKET * (current as u32 + 1))
    }

    /// Re-evaluates the ranking if a bucket boundary has passed since the last evaluation.
    /// Returns the new order when it changed and the rate cap allows announcing it.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Vec<(ParticipantKey, AudioLevel)>> {
        let bucket = self.bucket(now);
        if bucket <= self.evaluated {
            return None;
        }
        self.evaluated = bucket;
        // The bucket being filled is part of the window: with 5 buckets that is 400–500 ms.
        let first = bucket.saturating_sub(BUCKETS as u64 - 1);
        self.heard.retain(|_, w| w.packets_since(first) > 0);
        let ranked = self.rank(first);
        let same = ranked.len() == self.announced.len()
            && ranked.iter().zip(&self.announced).all(|((a, _), b)| a == b);
        if same {
            return None;
        }
        if self.announced_at.is_some_and(|at| now < at + MIN_INTERVAL) {
            return None;
        }
        self.announced = ranked.iter().map(|(k, _)| k.clone()).collect();
        self.announced_at = Some(now);
        Some(
            ranked
                .into_iter()
                .map(|(k, level)| (k, AudioLevel::from_linear(level)))
                .collect(),
        )
    }

    /// Speaking participants, loudest first, with the hysteresis of [`OVERTAKE_RATIO`].
    fn rank(&self, first: u64) -> Vec<(ParticipantKey, f32)> {
        let speaking: HashMap<&ParticipantKey, f32> = self
            .heard
            .iter()
            .filter_map(|(k, w)| w.speaking_level(first).map(|l| (k, l)))
            .collect();
        // Start from the announced order; newcomers go below, loudest first.
        let mut order: Vec<(ParticipantKey, f32)> = self
            .announced
            .iter()
            .filter_map(|k| speaking.get(k).map(|l| (k.clone(), *l)))
            .collect();
        let mut newcomers: Vec<(ParticipantKey, f32)> = speaking
            .iter()
            .filter(|(k, _)| !self.announced.contains(k))
            .map(|(k, l)| ((*k).clone(), *l))
            .collect();
        newcomers.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        order.extend(newcomers);
        // Insertion sort whose "greater" needs a clear margin: a close challenger stays put.
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && order[j].1 > order[j - 1].1 * OVERTAKE_RATIO {
                order.swap(j, j - 1);
                j -= 1;
            }
        }
        order.truncate(MAX_LISTED);
        order
    }

    fn bucket(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_millis() / BUCKET.as_millis()) as u64
    }
}

/// Participants tracked at once per room. Rooms are capped well below this by
/// `max_participants_per_room`; this only bounds the map if that limit is raised absurdly.
const MAX_HEARD: usize = 1024;

/// One participant's last [`BUCKETS`] buckets, as a ring indexed by bucket number.
#[derive(Debug, Default)]
struct Window {
    buckets: [Bucket; BUCKETS],
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Which bucket number this slot holds (a stale slot is reset on reuse).
    number: u64,
    packets: u32,
    voiced: u32,
    /// Sum of linear amplitudes of all packets.
    amplitude: f32,
}

impl Window {
    fn add(&mut self, bucket: u64, dbov: u8) {
        let slot = &mut self.buckets[(bucket % BUCKETS as u64) as usize];
        if slot.number != bucket {
            *slot = Bucket {
                number: bucket,
                ..Bucket::default()
            };
        }
        slot.packets += 1;
        if dbov <= VOICE_THRESHOLD_DBOV {
            slot.voiced += 1;
        }
        slot.amplitude += amplitude(dbov);
    }

    fn live(&self, first: u64) -> impl Iterator<Item = &Bucket> {
        self.buckets
            .iter()
            .filter(move |b| b.number >= first && b.packets > 0)
    }

    fn packets_since(&self, first: u64) -> u32 {
        self.live(first).map(|b| b.packets).sum()
    }

    fn voiced_since(&self, first: u64) -> u32 {
        self.live(first).map(|b| b.voiced).sum()
    }

    /// The mean amplitude over the window, if the participant is speaking.
    fn speaking_level(&self, first: u64) -> Option<f32> {
        let (packets, voiced, sum) = self.live(first).fold((0u32, 0u32, 0f32), |(p, v, s), b| {
            (p + b.packets, v + b.voiced, s + b.amplitude)
        });
        let speaking =
            voiced >= MIN_VOICED_PACKETS && voiced * 100 >= packets * MIN_VOICED_SHARE_PERCENT;
        speaking.then(|| sum / packets as f32)
    }
}

/// Linear amplitude (0.0–1.0) of a level in -dBov.
fn amplitude(dbov: u8) -> f32 {
    10f32.powf(-f32::from(dbov) / 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: Duration = Duration::from_millis(20);

    fn key(n: u64) -> ParticipantKey {
        ParticipantKey::new(n, format!("user{n}"))
    }

    /// Drives a detector with 20 ms packets from each (participant, dBov) for `duration`,
    /// ticking it like the core would; returns every announcement with its time offset.
    struct Sim {
        start: Instant,
        now: Instant,
        d: SpeakerDetector,
        announced: Vec<(Duration, Vec<(ParticipantKey, AudioLevel)>)>,
    }

    impl Sim {
        fn new() -> Self {
            let start = Instant::now();
            Self {
                start,
                now: start,
                d: SpeakerDetector::new(start),
                announced: Vec::new(),
            }
        }

        fn run(&mut self, duration: Duration, talkers: &[(u64, u8)]) {
            let end = self.now + duration;
            while self.now < end {
                for (n, dbov) in talkers {
                    if let Some(a) = self.d.hear(self.now, &key(*n), *dbov) {
                        self.announced.push((self.now - self.start, a));
                    }
                }
                let next = self.now + PACKET;
                // Timer ticks between packets, as the driver would deliver them.
                while let Some(t) = self.d.poll_timeout().filter(|t| *t <= next) {
                    if let Some(a) = self.d.handle_timeout(t) {
                        self.announced.push((t - self.start, a));
                    }
                    if self.d.poll_timeout() == Some(t) {
                        break;
                    }
                }
                self.now = next;
            }
        }

        fn last_order(&self) -> Vec<u64> {
            self.announced
                .last()
                .map(|(_, a)| a.iter().map(|(k, _)| k.conn()).collect())
                .unwrap_or_default()
        }
    }

    #[test]
    fn the_louder_speaker_is_first() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(1), &[(1, 40), (2, 10), (3, 127)]);
        assert_eq!(s.last_order(), vec![2, 1]);
        let (_, list) = s.announced.last().expect("announced");
        assert!(list[0].1.linear() > list[1].1.linear());
        assert!((list[0].1.linear() - 10f32.powf(-0.5)).abs() < 0.01);
    }

    #[test]
    fn silence_alone_is_never_announced() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(2), &[(1, 127), (2, 90)]);
        assert!(s.announced.is_empty());
        assert_eq!(s.d.poll_timeout(), None, "a quiet room needs no timer");
    }

    #[test]
    fn announcements_are_at_least_300_ms_apart() {
        let mut s = Sim::new();
        // Four participants switch on and off at random levels every 100 ms: the order wants
        // to change far more often than the cap allows.
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..100 {
            let talkers: Vec<(u64, u8)> = (1..=4)
                .map(|n| {
                    let r = next();
                    (n, if r % 2 == 0 { 127 } else { (r >> 8) as u8 % 40 })
                })
                .collect();
            s.run(Duration::from_millis(100), &talkers);
        }
        assert!(
            s.announced.len() >= 10,
            "{} announcements",
            s.announced.len()
        );
        let gaps: Vec<Duration> = s.announced.windows(2).map(|p| p[1].0 - p[0].0).collect();
        for gap in &gaps {
            assert!(
                *gap >= Duration::from_millis(300),
                "announcements {gap:?} apart"
            );
        }
        // The cap delays changes, it does not swallow them: some follow as soon as it allows.
        assert!(
            gaps.iter().any(|g| *g < Duration::from_millis(400)),
            "{gaps:?}"
        );
    }

    #[test]
    fn a_speaker_who_falls_silent_decays_out() {
        let mut s = Sim::new();
        s.run(Duration::from_millis(600), &[(1, 20)]);
        assert_eq!(s.last_order(), vec![1]);
        let spoke_until = s.now - s.start;
        s.run(Duration::from_secs(1), &[(1, 127)]);
        assert_eq!(s.last_order(), Vec::<u64>::new());
        let (at, _) = s.announced.last().expect("announced");
        assert!(
            *at - spoke_until <= Duration::from_millis(600),
            "decayed after {:?}",
            *at - spoke_until
        );
        assert_eq!(s.d.poll_timeout(), None);
    }

    #[test]
    fn a_speaker_whose_packets_stop_decays_out() {
        let mut s = Sim::new();
        s.run(Duration::from_millis(600), &[(1, 20)]);
        assert_eq!(s.last_order(), vec![1]);
        // No packets at all: only the timer drives the detector.
        s.run(Duration::from_secs(1), &[]);
        assert_eq!(s.last_order(), Vec::<u64>::new());
        assert_eq!(s.d.poll_timeout(), None);
    }

    #[test]
    fn two_similar_speakers_do_not_flap() {
        let mut s = Sim::new();
        s.run(Duration::from_millis(600), &[(1, 20)]);
        // Participant 2 joins at about the same level, a little louder half the time.
        for i in 0..40 {
            let (l1, l2) = if i % 2 == 0 { (20, 18) } else { (19, 21) };
            s.run(Duration::from_millis(100), &[(1, l1), (2, l2)]);
        }
        let orders: Vec<Vec<u64>> = s
            .announced
            .iter()
            .map(|(_, a)| a.iter().map(|(k, _)| k.conn()).collect())
            .collect();
        assert_eq!(orders, vec![vec![1], vec![1, 2]], "no swaps back and forth");
    }

    #[test]
    fn a_clearly_louder_speaker_takes_over() {
        let mut s = Sim::new();
        s.run(Duration::from_millis(600), &[(1, 30), (2, 60)]);
        assert_eq!(s.last_order(), vec![1]);
        s.run(Duration::from_millis(800), &[(1, 30), (2, 10)]);
        assert_eq!(s.last_order(), vec![2, 1]);
    }

    #[test]
    fn forgetting_a_speaker_drops_it_at_the_next_evaluation() {
        let mut s = Sim::new();
        s.run(Duration::from_millis(600), &[(1, 20), (2, 10)]);
        assert_eq!(s.last_order(), vec![2, 1]);
        s.d.forget(&key(2));
        s.run(Duration::from_millis(400), &[(1, 20)]);
        assert_eq!(s.last_order(), vec![1]);
    }

    #[test]
    fn the_list_is_bounded() {
        let mut s = Sim::new();
        let talkers: Vec<(u64, u8)> = (1..=20).map(|n| (n, n as u8)).collect();
        s.run(Duration::from_millis(600), &talkers);
        assert_eq!(s.last_order(), (1..=MAX_LISTED as u64).collect::<Vec<_>>());
    }
}
