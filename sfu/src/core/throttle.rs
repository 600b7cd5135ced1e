//! Keyframe request throttling: at most one PLI/FIR per track per interval towards the
//! publisher. A request inside the window is remembered and sent when the window ends, so
//! a new subscriber never waits for a keyframe that nobody asked for.
//!
//! Lifecycle: one per published video track, created and dropped with the track.

use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;

/// Per-track throttle state.
#[derive(Debug)]
pub struct KeyframeThrottle {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: Option<KeyframeRequestKind>,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it to the publisher now.
    Send(KeyframeRequestKind),
    /// Within the window; it will come out of [`KeyframeThrottle::poll`] later.
    Deferred,
}

impl KeyframeThrottle {
    /// A throttle allowing one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: None,
        }
    }

    /// A subscriber (or the SFU on its behalf) wants a keyframe.
    pub fn request(&mut self, now: Instant, kind: KeyframeRequestKind) -> Decision {
        if self.is_open(now) {
            self.last_sent = Some(now);
            self.pending = None;
            Decision::Send(kind)
        } else {
            // FIR is the stronger request; keep it if any subscriber asked for one.
            self.pending = Some(match (self.pending, kind) {
                (Some(KeyframeRequestKind::Fir), _) => KeyframeRequestKind::Fir,
                _ => kind,
            });
            Decision::Deferred
        }
    }

    /// A deferred request whose window has ended.
    pub fn poll(&mut self, now: Instant) -> Option<KeyframeRequestKind> {
        if self.pending.is_some() && self.is_open(now) {
            self.last_sent = Some(now);
            return self.pending.take();
        }
        None
    }

    /// When [`Self::poll`] will have something, if anything is deferred.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending?;
        self.last_sent.map(|t| t + self.interval)
    }

    fn is_open(&self, now: Instant) -> bool {
        self.last_sent.is_none_or(|t| now >= t + self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLI: KeyframeRequestKind = KeyframeRequestKind::Pli;
    const FIR: KeyframeRequestKind = KeyframeRequestKind::Fir;

    #[test]
    fn at_most_one_per_interval() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut th = KeyframeThrottle::new(ms(500));
        assert_eq!(th.request(t0, PLI), Decision::Send(PLI));
        let mut sent = 1;
        // A storm of requests every 10 ms for 2 s.
        for i in 1..200 {
            let now = t0 + ms(10 * i);
            if let Decision::Send(_) = th.request(now, PLI) {
                sent += 1;
            }
            if th.poll(now).is_some() {
                sent += 1;
            }
        }
        // 0, 500, 1000, 1500 ms.
        assert_eq!(sent, 4);
    }

    #[test]
    fn deferred_request_is_not_lost() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut th = KeyframeThrottle::new(ms(500));
        assert_eq!(th.request(t0, PLI), Decision::Send(PLI));
        assert_eq!(th.deadline(), None);
        assert_eq!(th.request(t0 + ms(100), PLI), Decision::Deferred);
        assert_eq!(th.request(t0 + ms(200), FIR), Decision::Deferred);
        assert_eq!(th.request(t0 + ms(300), PLI), Decision::Deferred);
        assert_eq!(th.deadline(), Some(t0 + ms(500)));
        assert_eq!(th.poll(t0 + ms(499)), None);
        assert_eq!(th.poll(t0 + ms(500)), Some(FIR));
        assert_eq!(th.poll(t0 + ms(2000)), None);
        assert_eq!(th.deadline(), None);
    }
}
