//! Per-source-IP token buckets for unauthenticated responses (401, 438).
//!
//! Lifecycle: an entry is created on the first challenge from an IP and removed by [`sweep`]
//! once its bucket has refilled, so the table only holds IPs seen recently. The table is capped;
//! when it is full, new IPs get no response until a sweep frees room. That keeps memory flat under
//! a spoofed-source flood at the cost of delaying new legitimate clients during one.
//!
//! [`sweep`]: RateLimiter::sweep

use std::{collections::HashMap, net::IpAddr, time::Instant};

/// Bounded table of token buckets, one per IP. Owned by one core; no locks.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    cap: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Outcome of asking for one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Allow,
    /// Drop it silently.
    Limited,
}

impl RateLimiter {
    /// `rate` responses per second per IP, `burst` at once, at most `cap` IPs tracked.
    pub fn new(rate: u32, burst: u32, cap: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            cap,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip` at `now`.
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        let len = self.buckets.len();
        let (rate, burst) = (self.rate, self.burst);
        let b = match self.buckets.get_mut(&ip) {
            Some(b) => b,
            None if len >= self.cap => return Verdict::Limited,
            None => self.buckets.entry(ip).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Verdict::Allow
        } else {
            Verdict::Limited
        }
    }

    /// Forgets IPs whose bucket would be full again by `now`.
    pub fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    /// Number of IPs tracked (for tests of flat memory).
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_then_sweep() {
        let mut r = RateLimiter::new(10, 5, 2);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(r.take(ip, t0), Verdict::Allow);
        }
        assert_eq!(r.take(ip, t0), Verdict::Limited);
        assert_eq!(r.take(ip, t0 + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(r.take("192.0.2.2".parse().unwrap(), t0), Verdict::Allow);
        assert_eq!(
            r.take("192.0.2.3".parse().unwrap(), t0),
            Verdict::Limited,
            "table full"
        );
        r.sweep(t0 + Duration::from_secs(10));
        assert_eq!(r.tracked(), 0);
    }
}
