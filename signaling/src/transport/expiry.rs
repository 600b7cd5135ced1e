//! When a session's token runs out.
//!
//! The session owns the [`Expiry`] (the Unix second after which its token is no longer
//! accepted) and moves it on `session:refresh`; the connection's writer holds a [`TokenClock`]
//! and learns from it when to warn the client and when to close.
//!
//! Lifecycle: created with the session from the connecting token's expiry; the clock resolves
//! once with [`Due::Warn`] per expiry (a minute ahead, or at once if less is left), then with
//! [`Due::Expired`] unless a refresh moved the expiry first. It never resolves after the session
//! is gone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long before the token runs out the client is told.
pub const WARNING: Duration = Duration::from_secs(60);

/// The session's side: moves the expiry.
#[derive(Debug)]
pub struct Expiry(watch::Sender<u64>);

/// The writer's side: says when something is due.
#[derive(Debug)]
pub struct TokenClock {
    until: watch::Receiver<u64>,
    warned_for: Option<u64>,
}

/// What the clock says is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Tell the client the token runs out at this Unix second.
    Warn(u64),
    /// The token is no longer accepted: close.
    Expired,
}

impl Expiry {
    /// A session whose token is accepted until Unix second `until`.
    pub fn new(until: u64) -> Self {
        Self(watch::channel(until).0)
    }

    /// The current expiry, in Unix seconds.
    pub fn until(&self) -> u64 {
        *self.0.borrow()
    }

    /// A refresh: the session now lasts until `until`.
    pub fn extend(&self, until: u64) {
        self.0.send_replace(until);
    }

    pub fn clock(&self) -> TokenClock {
        TokenClock {
            until: self.0.subscribe(),
            warned_for: None,
        }
    }
}

impl TokenClock {
    /// Resolves when a warning or the end is due, following refreshes meanwhile.
    pub async fn next(&mut self) -> Due {
        loop {
            let until = *self.until.borrow_and_update();
            let left = time_left(until, SystemTime::now());
            if left.is_zero() {
                return Due::Expired;
            }
            let (wait, due) = if self.warned_for == Some(until) {
                (left, Due::Expired)
            } else {
                (left.saturating_sub(WARNING), Due::Warn(until))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {
                    if let Due::Warn(until) = due {
                        self.warned_for = Some(until);
                    }
                    return due;
                }
                changed = self.until.changed() => {
                    if changed.is_err() {
                        // The session is gone; so is the connection.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
}

/// Time from `now` until Unix second `until` (zero once it passed).
fn time_left(until: u64, now: SystemTime) -> Duration {
    (UNIX_EPOCH + Duration::from_secs(until))
        .duration_since(now)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn a_short_token_is_warned_at_once_then_expires() {
        let expiry = Expiry::new(now_secs() + 1);
        let mut clock = expiry.clock();
        assert_eq!(clock.next().await, Due::Warn(expiry.until()));
        assert_eq!(clock.next().await, Due::Expired);
    }

    #[tokio::test]
    async fn a_refresh_moves_the_end_and_earns_a_new_warning() {
        let expiry = Expiry::new(now_secs() + 1);
        let mut clock = expiry.clock();
        assert!(matches!(clock.next().await, Due::Warn(_)));
        let later = now_secs() + 3600;
        expiry.extend(later);
        // Well before the new warning is due, nothing resolves.
        let next = tokio::time::timeout(Duration::from_millis(1500), clock.next()).await;
        assert!(next.is_err(), "{next:?}");
        expiry.extend(now_secs() + 1);
        assert!(matches!(clock.next().await, Due::Warn(_)));
    }

    #[tokio::test]
    async fn a_token_already_past_expires_at_once() {
        let mut clock = Expiry::new(now_secs().saturating_sub(5)).clock();
        assert_eq!(clock.next().await, Due::Expired);
    }
}
