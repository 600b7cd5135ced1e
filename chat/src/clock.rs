//! Time as an input: wall-clock timestamps for stored records, monotonic instants for limits.
//!
//! [`ChatService`](crate::ChatService) reads both from one [`Clock`], so tests drive edit windows,
//! retention, rate limits and typing expiry with [`ManualClock`] instead of sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use protocol::chat::Timestamp;
use protocol::chat::millis;

/// Where the service reads the time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for rate limits and typing expiry.
    fn instant(&self) -> Instant;
    /// Wall-clock time, for `createdAt`, `editedAt`, `readAt` and retention.
    fn timestamp(&self) -> Timestamp;
}

/// The real clocks of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn timestamp(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_millis(millis(since_epoch))
    }
}

/// A clock that moves only when told; both of its readings advance together.
///
/// Lifecycle: created at some wall time, then [`ManualClock::advance`]d by tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<(Instant, Timestamp)>,
}

impl ManualClock {
    /// Starts at the real current time.
    pub fn new() -> Self {
        Self::starting_at(SystemClock.timestamp())
    }

    /// Starts at a given wall time.
    pub fn starting_at(timestamp: Timestamp) -> Self {
        Self {
            now: Mutex::new((Instant::now(), timestamp)),
        }
    }

    /// Moves both readings forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poison| poison.into_inner());
        now.0 += duration;
        now.1 = now.1.saturating_add(duration);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn instant(&self) -> Instant {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn timestamp(&self) -> Timestamp {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_readings() {
        let clock = ManualClock::starting_at(Timestamp::from_unix_millis(1_000));
        let start = clock.instant();
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.instant() - start, Duration::from_secs(2));
        assert_eq!(clock.timestamp().unix_millis(), 3_000);
    }
}
