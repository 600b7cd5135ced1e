//! [`Backoff`]: how an accept loop reacts to a failed `accept`.
//!
//! Lifecycle: one [`Backoff`] per accept loop, for the loop's life. Each failed `accept` goes
//! to [`Backoff::failed`], which returns the pause to take (or none) and logs through the
//! loop's [`Reporter`]; each successful one goes to [`Backoff::succeeded`], which makes the
//! next failure start again from the shortest pause. Loops that serve one listener from
//! several threads (the TURN workers) share one [`Reporter`], so the log stays at one line a
//! second for the listener, not one per thread.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First pause after `accept` fails for lack of resources: short, because a descriptor is
/// often freed within milliseconds (a connection closing).
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause: accepting resumes at most this long after descriptors are free again, and
/// while they are not, a listener costs two `accept` calls a second.
pub const LONGEST_PAUSE: Duration = Duration::from_millis(500);
/// A listener logs its failed accepts at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What a failed `accept` means for the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The process or the system ran out of descriptors, buffers or memory (`EMFILE`,
    /// `ENFILE`, `ENOBUFS`, `ENOMEM`). The connection stays queued and the listener readable:
    /// retrying at once fails the same way, so the loop must pause.
    Exhausted,
    /// Only the connection being accepted failed (it was reset or aborted while queued, or a
    /// network error Linux reports through `accept`): accept the next one at once.
    Connection,
    /// Anything else. Unexpected, so it is paused and logged like [`Failure::Exhausted`]
    /// rather than retried in a loop that could spin.
    Other,
}

impl Failure {
    /// Classifies an error returned by `accept`.
    pub fn of(error: &io::Error) -> Failure {
        match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Failure::Exhausted,
            // accept(2): "Linux accept() passes already-pending network errors on the new
            // socket as an error code from accept()"; they concern that connection only.
            Some(
                libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT,
            ) => Failure::Connection,
            _ => match error.kind() {
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted => Failure::Connection,
                _ => Failure::Other,
            },
        }
    }
}

/// Back-off state of one accept loop; see the module docs.
#[derive(Debug)]
pub struct Backoff {
    /// The pause the next failure takes.
    next: Duration,
    reporter: Arc<Reporter>,
}

impl Backoff {
    /// A back-off logging as `listener` (`"HTTP"`, `"SFU ICE-TCP"`...).
    pub fn new(listener: &'static str) -> Backoff {
        Backoff::sharing(Reporter::new(listener))
    }

    /// A back-off logging through `reporter`, shared with other loops of the same listener.
    pub fn sharing(reporter: Arc<Reporter>) -> Backoff {
        Backoff {
            next: FIRST_PAUSE,
            reporter,
        }
    }

    /// `accept` worked: the next failure pauses for [`FIRST_PAUSE`] again.
    pub fn succeeded(&mut self) {
        self.next = FIRST_PAUSE;
    }

    /// `accept` failed with `error` at `now`. Returns how long to stop accepting, or `None`
    /// to accept again at once ([`Failure::Connection`]). Logs at most once per
    /// [`REPORT_EVERY`] for the listener.
    #[must_use = "the loop must pause for the returned time, or it spins"]
    pub fn failed(&mut self, error: &io::Error, now: Instant) -> Option<Duration> {
        let failure = Failure::of(error);
        if failure == Failure::Connection {
            return None;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        if let Some(unreported) = self.reporter.due(now) {
            let listener = self.reporter.listener;
            let pause_ms = pause.as_millis() as u64;
            match failure {
                Failure::Exhausted => tracing::warn!(
                    listener,
                    %error,
                    pause_ms,
                    unreported,
                    "accept failed: out of file descriptors or memory; pausing accepts \
                     (raise the open-file limit, LimitNOFILE, or lower the connection caps: \
                     see docs/operations.md)"
                ),
                _ => tracing::warn!(
                    listener,
                    %error,
                    pause_ms,
                    unreported,
                    "accept failed; pausing accepts"
                ),
            }
        }
        Some(pause)
    }
}

/// Rate-limits the failure log of one listener; see [`Backoff::sharing`].
#[derive(Debug)]
pub struct Reporter {
    listener: &'static str,
    state: Mutex<ReportState>,
}

#[derive(Debug, Default)]
struct ReportState {
    last: Option<Instant>,
    /// Failures since the last logged one.
    unreported: u64,
}

impl Reporter {
    /// A reporter for `listener`, to share between the loops that accept on it.
    pub fn new(listener: &'static str) -> Arc<Reporter> {
        Arc::new(Reporter {
            listener,
            state: Mutex::new(ReportState::default()),
        })
    }

    /// Counts one failure at `now`; `Some(failures not logged since the last report)` when
    /// this one is to be logged.
    fn due(&self, now: Instant) -> Option<u64> {
        // A panic while holding this lock cannot leave the counts inconsistent.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.last {
            Some(last) if now.saturating_duration_since(last) < REPORT_EVERY => {
                state.unreported += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.unreported))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn errors_are_classified_by_what_they_say_about_the_listener() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(Failure::of(&os(code)), Failure::Exhausted, "errno {code}");
        }
        for code in [
            libc::ECONNABORTED,
            libc::EPROTO,
            libc::EINTR,
            libc::ENETUNREACH,
        ] {
            assert_eq!(Failure::of(&os(code)), Failure::Connection, "errno {code}");
        }
        assert_eq!(Failure::of(&os(libc::EINVAL)), Failure::Other);
        assert_eq!(
            Failure::of(&io::Error::from(io::ErrorKind::ConnectionReset)),
            Failure::Connection
        );
    }

    #[test]
    fn exhaustion_pauses_grow_to_the_longest_and_reset_after_a_success() {
        let mut backoff = Backoff::new("test");
        let t0 = Instant::now();
        let pauses: Vec<Duration> = (0..10)
            .map(|i| {
                backoff
                    .failed(&os(libc::EMFILE), t0 + Duration::from_millis(i))
                    .expect("exhaustion always pauses")
            })
            .collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]), "{pauses:?}");
        assert_eq!(*pauses.last().unwrap(), LONGEST_PAUSE);
        backoff.succeeded();
        assert_eq!(backoff.failed(&os(libc::ENFILE), t0), Some(FIRST_PAUSE));
    }

    #[test]
    fn a_failed_connection_is_skipped_without_pausing_or_growing_the_pause() {
        let mut backoff = Backoff::new("test");
        let now = Instant::now();
        assert_eq!(backoff.failed(&os(libc::ECONNABORTED), now), None);
        assert_eq!(backoff.failed(&os(libc::EMFILE), now), Some(FIRST_PAUSE));
        // Unknown errors pause too: a loop must never spin on an error it does not know.
        assert!(backoff.failed(&os(libc::EINVAL), now).is_some());
    }

    #[test]
    fn the_log_is_due_at_most_once_per_interval_and_counts_what_it_skipped() {
        let reporter = Reporter::new("test");
        let t0 = Instant::now();
        assert_eq!(reporter.due(t0), Some(0));
        let skipped = (1..100)
            .filter(|i| reporter.due(t0 + Duration::from_millis(*i)).is_some())
            .count();
        assert_eq!(skipped, 0, "nothing logged within the interval");
        assert_eq!(reporter.due(t0 + REPORT_EVERY), Some(99));
        assert_eq!(reporter.due(t0 + REPORT_EVERY * 2), Some(0));
    }

    #[test]
    fn loops_sharing_a_reporter_log_once_between_them() {
        let reporter = Reporter::new("TURN TCP");
        let mut a = Backoff::sharing(reporter.clone());
        let mut b = Backoff::sharing(reporter.clone());
        let now = Instant::now();
        assert!(a.failed(&os(libc::EMFILE), now).is_some());
        assert!(b.failed(&os(libc::EMFILE), now).is_some());
        // Both paused, but only the first failure was logged: the second is still counted.
        assert_eq!(reporter.due(now + REPORT_EVERY), Some(1));
    }
}
