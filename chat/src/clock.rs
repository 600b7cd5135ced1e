//! Time as an input: wall-clock timestamps for stored records, monotonic instants for limits.
//!
//! [`ChatService`](crate::ChatService) reads both from one [`Clock`], so tests drive edit windows,
//! retention, rate limits and typing expiry with [`ManualClock`] instead of sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// A UTC instant with millisecond precision: stored as an integer, sent as RFC 3339
/// (`2026-11-21T15:21:29.123Z`, always three fraction digits so strings sort like times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch, as stored.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The RFC 3339 form used on the wire.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(at) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                at.millisecond()
            ),
            // Only reachable for stored values beyond year ±9999, which this crate never writes.
            Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
        }
    }

    /// This instant plus `duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis(duration)))
    }

    /// This instant minus `duration`, saturating.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(millis(duration)))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

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
        Timestamp(millis(since_epoch))
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

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(
            Timestamp::from_unix_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_795_792_889_123).to_rfc3339(),
            "2026-11-27T15:21:29.123Z"
        );
        let json = serde_json::to_value(Timestamp::from_unix_millis(5)).unwrap();
        assert_eq!(json, "1970-01-01T00:00:00.005Z");
    }

    #[test]
    fn manual_clock_moves_both_readings() {
        let clock = ManualClock::starting_at(Timestamp::from_unix_millis(1_000));
        let start = clock.instant();
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.instant() - start, Duration::from_secs(2));
        assert_eq!(clock.timestamp().unix_millis(), 3_000);
    }
}
