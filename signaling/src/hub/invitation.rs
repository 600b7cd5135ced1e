//! How often a user may be invited: a token bucket per *target* user, shared by every caller
//! (`limits.invites_per_minute`, `limits.invite_burst`), so nobody can be rung without end.
//!
//! Memory stays bounded whatever user ids callers name: a bucket is kept only while it is not
//! full (a full bucket is the same as none), at most [`MAX_TRACKED_TARGETS`] of them, keyed by
//! a 64-bit keyed hash of the user id rather than the id itself. When more targets than that
//! are being invited at once, the bucket written longest ago is forgotten, which lets that
//! user be invited a little more than the limit: under such a flood the limit fails open
//! rather than refusing invitations to users nobody has abused. See ADR 0045.

use super::recent::Recent;
use protocol::UserId;
use std::time::{Duration, Instant};

/// Most target users whose invitation budget is tracked at once (about 120 bytes each; `bench/hub-records-memory.sh`).
pub const MAX_TRACKED_TARGETS: usize = 65_536;

/// The per-target invitation limit; see the module docs.
///
/// Lifecycle: built once with the hub; [`Invitations::check`] before a call rings anyone,
/// [`Invitations::record`] once it does; buckets come and go inside.
#[derive(Debug)]
pub struct Invitations {
    /// Invitations a target regains per second.
    rate: f64,
    /// Invitations a target may receive at once.
    burst: f64,
    buckets: Recent<u64, Bucket>,
}

/// Why a call may not ring its invitees now.
#[derive(Debug, PartialEq)]
pub struct OverLimit {
    /// The invitees who have no invitation left.
    pub users: Vec<UserId>,
    /// When all of them have one again.
    pub retry_in: Duration,
}

/// Invitations left for one target, as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Invitations {
    pub fn new(per_minute: u32, burst: u32, capacity: usize) -> Self {
        Self {
            rate: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Recent::new(capacity),
        }
    }

    /// Checks that each of `targets` (keyed by `key`) may be invited now, taking nothing.
    pub fn check(
        &self,
        now: Instant,
        targets: &[UserId],
        key: impl Fn(&UserId) -> u64,
    ) -> Result<(), OverLimit> {
        let mut over = OverLimit {
            users: Vec::new(),
            retry_in: Duration::ZERO,
        };
        for user in targets {
            let tokens = self.tokens(now, key(user));
            if tokens < 1.0 {
                over.users.push(user.clone());
                let wait = Duration::from_secs_f64((1.0 - tokens) / self.rate);
                over.retry_in = over.retry_in.max(wait);
            }
        }
        if over.users.is_empty() {
            Ok(())
        } else {
            Err(over)
        }
    }

    /// Takes one invitation from each of `targets`. Call after [`Invitations::check`] passed.
    pub fn record(&mut self, now: Instant, targets: &[UserId], key: impl Fn(&UserId) -> u64) {
        self.forget_full(now);
        for user in targets {
            let k = key(user);
            let tokens = (self.tokens(now, k) - 1.0).max(0.0);
            self.buckets.insert(k, Bucket { tokens, at: now });
        }
    }

    /// Targets whose bucket is held now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn tokens(&self, now: Instant, key: u64) -> f64 {
        self.buckets
            .get(&key)
            .map_or(self.burst, |b| self.refilled(b, now))
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }

    /// Drops buckets that have refilled, oldest first. Every bucket is full at most
    /// `burst / rate` after its last write, so only recently invited targets stay.
    fn forget_full(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        while self.buckets.pop_oldest_if(|b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate >= burst
        }) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(u: &UserId) -> u64 {
        u.as_str().bytes().fold(7, |h, b| h * 31 + u64::from(b))
    }

    fn users(names: &[&str]) -> Vec<UserId> {
        names.iter().map(|n| UserId::from(*n)).collect()
    }

    #[test]
    fn each_target_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut inv = Invitations::new(6, 3, 100);
        let bob = users(&["bob"]);
        for _ in 0..3 {
            assert_eq!(inv.check(t0, &bob, key), Ok(()));
            inv.record(t0, &bob, key);
        }
        let over = inv.check(t0, &bob, key).unwrap_err();
        assert_eq!(over.users, bob);
        assert_eq!(over.retry_in, Duration::from_secs(10), "6 per minute");
        // Others are not affected by bob's budget.
        assert_eq!(inv.check(t0, &users(&["carol"]), key), Ok(()));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(inv.check(t1, &bob, key), Ok(()));
        inv.record(t1, &bob, key);
        assert!(inv.check(t1, &bob, key).is_err());
    }

    #[test]
    fn a_check_names_only_the_targets_over_the_limit() {
        let t0 = Instant::now();
        let mut inv = Invitations::new(60, 1, 100);
        inv.record(t0, &users(&["bob"]), key);
        let over = inv
            .check(t0, &users(&["carol", "bob", "dave"]), key)
            .unwrap_err();
        assert_eq!(over.users, users(&["bob"]));
        // A check takes nothing: carol and dave still have their invitation.
        assert_eq!(inv.check(t0, &users(&["carol", "dave"]), key), Ok(()));
    }

    #[test]
    fn memory_is_bounded_by_time_and_by_capacity() {
        let t0 = Instant::now();
        let mut inv = Invitations::new(60, 5, 1000);
        // 5000 distinct targets within one second: never more than the capacity.
        for i in 0..5000 {
            inv.record(t0, &[UserId(format!("u{i}"))], key);
            assert!(inv.tracked() <= 1000);
        }
        assert_eq!(inv.tracked(), 1000);
        // Five seconds on (burst / rate), every bucket has refilled and the next write
        // forgets them all.
        inv.record(t0 + Duration::from_secs(5), &users(&["late"]), key);
        assert_eq!(inv.tracked(), 1);
    }
}
