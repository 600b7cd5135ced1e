//! Per-user rate limiting for `message:send`. Sans-IO: every call takes `now`.
//!
//! A token bucket of `burst` tokens refilled at `per_second`, computed as GCRA (the "theoretical
//! arrival time" form): one `Instant` per user and exact integer arithmetic, so a user sending
//! exactly at the limit is never refused by a rounding error.
//!
//! Lifecycle: a user's entry is created on their first message and forgotten once their bucket
//! has refilled (a full bucket and no entry behave the same), so memory follows active senders.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::settings::RateLimit;

/// Forget full buckets once this many users have an entry, to bound memory.
const PRUNE_AT: usize = 4096;

/// Token buckets keyed by sender.
#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Time one token takes to refill.
    interval: Duration,
    /// How far ahead of `now` a user's arrival time may run: `(burst - 1) * interval`.
    tolerance: Duration,
    /// Per user: when their bucket will be full again.
    full_at: HashMap<K, Instant>,
}

/// Whether a message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go; one token was taken.
    Allowed,
    /// Refused; one token will be available after this long.
    Limited {
        /// Time until the next token.
        retry_after: Duration,
    },
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter where every key starts with a full bucket. A `per_second` of 0 refills one token
    /// per hour; to disable limiting, set `Settings::message_rate` to `None` instead.
    pub fn new(limit: RateLimit) -> Self {
        let interval = if limit.per_second == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs(1) / limit.per_second
        };
        Self {
            interval,
            tolerance: interval * limit.burst.saturating_sub(1),
            full_at: HashMap::new(),
        }
    }

    /// Takes a token for `key` if one is available at `now`.
    pub fn admit(&mut self, key: &K, now: Instant) -> Admission {
        if self.full_at.len() >= PRUNE_AT {
            self.full_at.retain(|_, full_at| *full_at > now);
        }
        let arrival = self
            .full_at
            .get(key)
            .copied()
            .filter(|full_at| *full_at > now)
            .unwrap_or(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            return Admission::Limited {
                retry_after: ahead - self.tolerance,
            };
        }
        self.full_at.insert(key.clone(), arrival + self.interval);
        Admission::Allowed
    }

    /// How many users currently have a partly used bucket (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.full_at.len()
    }
}

/// Where the per-user send rate is counted. [`LocalRate`] counts on this node (the default); a
/// cluster plugs in one that counts across nodes, so a user cannot multiply their rate by
/// connecting to several.
#[async_trait::async_trait]
pub trait SendRate: Send + Sync + 'static {
    /// Takes a token for `user` if one is available now.
    async fn admit(&self, user: &crate::UserId) -> Admission;
}

/// The in-process [`SendRate`]: one [`RateLimiter`] read with the service's clock.
pub struct LocalRate {
    limiter: std::sync::Mutex<RateLimiter<crate::UserId>>,
    clock: std::sync::Arc<dyn crate::Clock>,
}

impl LocalRate {
    pub fn new(limit: RateLimit, clock: std::sync::Arc<dyn crate::Clock>) -> Self {
        Self {
            limiter: std::sync::Mutex::new(RateLimiter::new(limit)),
            clock,
        }
    }

    /// [`SendRate::admit`] without awaiting.
    pub fn admit_now(&self, user: &crate::UserId) -> Admission {
        let now = self.clock.instant();
        self.limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(user, now)
    }
}

#[async_trait::async_trait]
impl SendRate for LocalRate {
    async fn admit(&self, user: &crate::UserId) -> Admission {
        self.admit_now(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter<&'static str> {
        RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 20,
        })
    }

    #[test]
    fn burst_then_sustained_rate() {
        let mut limiter = limiter();
        let start = Instant::now();
        for _ in 0..20 {
            assert_eq!(limiter.admit(&"alice", start), Admission::Allowed);
        }
        let Admission::Limited { retry_after } = limiter.admit(&"alice", start) else {
            panic!("21st message in the same instant must be limited");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // Other users have their own bucket.
        assert_eq!(limiter.admit(&"bob", start), Admission::Allowed);
        // 10 per second afterwards: one every 100 ms.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.admit(&"alice", later), Admission::Allowed);
        assert!(matches!(
            limiter.admit(&"alice", later),
            Admission::Limited { .. }
        ));
        let second = start + Duration::from_millis(1100);
        let allowed = (0..20)
            .filter(|_| limiter.admit(&"alice", second) == Admission::Allowed)
            .count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let mut limiter = RateLimiter::new(RateLimit {
            per_second: 10,
            burst: 2,
        });
        let start = Instant::now();
        for user in 0..PRUNE_AT {
            limiter.admit(&user, start);
        }
        assert_eq!(limiter.tracked(), PRUNE_AT);
        limiter.admit(&usize::MAX, start + Duration::from_secs(1));
        assert_eq!(limiter.tracked(), 1);
    }
}
