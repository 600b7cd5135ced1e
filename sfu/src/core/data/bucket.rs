//! A token bucket with time passed in (sans-IO): `rate` tokens per second, holding at most
//! one second's worth, so `rate` is also the burst.

use std::time::Instant;

/// Lifecycle: created full when its participant joins; refilled lazily by [`TokenBucket::fits`]
/// and [`TokenBucket::take`]; dropped with the participant.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens refilling at `rate` per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Whether `amount` tokens are there at `now` (refills first; takes nothing).
    pub fn fits(&mut self, now: Instant, amount: u64) -> bool {
        self.refill(now);
        self.tokens >= amount as f64
    }

    /// Takes `amount` tokens; call after [`TokenBucket::fits`] said yes at the same `now`.
    pub fn take(&mut self, now: Instant, amount: u64) {
        self.refill(now);
        self.tokens = (self.tokens - amount as f64).max(0.0);
    }

    fn refill(&mut self, now: Instant) {
        // A `now` earlier than the last one (callers feed one clock, but be safe) adds nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = self.last.max(now);
    }
}
