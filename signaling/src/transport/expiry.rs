//! When a session's token runs out, or is revoked.
//!
//! The session owns the [`Expiry`] (the Unix second after which its token is no longer
//! accepted, and what a revocation would name) and moves it on `session:refresh`; the
//! connection's writer holds a [`TokenClock`] and learns from it when to warn the client and
//! when to close.
//!
//! Lifecycle: created with the session from the connecting token's terms; the clock resolves
//! once with [`Due::Warn`] per expiry (a minute ahead, or at once if less is left), then with
//! [`Due::Expired`] unless a refresh moved the expiry first. Whenever the process's revocation
//! list changes, the clock checks the session's current token against it and resolves with
//! [`Due::Revoked`] if it is refused. It never resolves after the session is gone.

use crate::auth::TokenTerms;
use crate::revocation::Revocations;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long before the token runs out the client is told.
pub const WARNING: Duration = Duration::from_secs(60);

/// The session's side: moves the expiry.
#[derive(Debug)]
pub struct Expiry(watch::Sender<TokenTerms>);

/// The writer's side: says when something is due.
pub struct TokenClock {
    terms: watch::Receiver<TokenTerms>,
    warned_for: Option<u64>,
    revocations: Arc<Revocations>,
    revoked: watch::Receiver<u64>,
}

/// What the clock says is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Tell the client the token runs out at this Unix second.
    Warn(u64),
    /// The token is no longer accepted: close.
    Expired,
    /// The token was revoked: close.
    Revoked,
}

impl Expiry {
    /// A session whose token has `terms`.
    pub fn new(terms: TokenTerms) -> Self {
        Self(watch::channel(terms).0)
    }

    /// The current expiry, in Unix seconds.
    pub fn until(&self) -> u64 {
        self.0.borrow().until
    }

    /// A refresh: the session now runs on a token with `terms`.
    pub fn renew(&self, terms: TokenTerms) {
        self.0.send_replace(terms);
    }

    /// The writer's clock, checking revocations in `revocations`.
    pub fn clock(&self, revocations: Arc<Revocations>) -> TokenClock {
        TokenClock {
            terms: self.0.subscribe(),
            warned_for: None,
            revoked: revocations.watch(),
            revocations,
        }
    }
}

impl TokenClock {
    /// Resolves when a warning, the end or a revocation is due, following refreshes meanwhile.
    pub async fn next(&mut self) -> Due {
        loop {
            self.revoked.borrow_and_update();
            let (until, refused) = {
                let terms = self.terms.borrow_and_update();
                (
                    terms.until,
                    self.revocations.check(&terms.credential).is_err(),
                )
            };
            if refused {
                return Due::Revoked;
            }
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
                changed = self.terms.changed() => {
                    if changed.is_err() {
                        // The session is gone; so is the connection.
                        std::future::pending::<()>().await;
                    }
                }
                changed = self.revoked.changed() => {
                    if changed.is_err() {
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
    use crate::revocation::{Credential, Revocation, Target};

    fn terms(until: u64) -> TokenTerms {
        TokenTerms {
            until,
            credential: Credential {
                user: "u".into(),
                jti: Some("j".into()),
                iat: Some(now_secs()),
            },
        }
    }

    fn expiry(until: u64) -> (Expiry, TokenClock) {
        let expiry = Expiry::new(terms(until));
        let clock = expiry.clock(Revocations::forgetful());
        (expiry, clock)
    }

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[tokio::test]
    async fn a_short_token_is_warned_at_once_then_expires() {
        let (expiry, mut clock) = expiry(now_secs() + 1);
        assert_eq!(clock.next().await, Due::Warn(expiry.until()));
        assert_eq!(clock.next().await, Due::Expired);
    }

    #[tokio::test]
    async fn a_refresh_moves_the_end_and_earns_a_new_warning() {
        let (expiry, mut clock) = expiry(now_secs() + 1);
        assert!(matches!(clock.next().await, Due::Warn(_)));
        let later = now_secs() + 3600;
        expiry.renew(terms(later));
        // Well before the new warning is due, nothing resolves.
        let next = tokio::time::timeout(Duration::from_millis(1500), clock.next()).await;
        assert!(next.is_err(), "{next:?}");
        expiry.renew(terms(now_secs() + 1));
        assert!(matches!(clock.next().await, Due::Warn(_)));
    }

    #[tokio::test]
    async fn a_revocation_resolves_the_clock_at_once() {
        let revocations = Revocations::forgetful();
        let expiry = Expiry::new(terms(now_secs() + 3600));
        let mut clock = expiry.clock(revocations.clone());
        let waiting = tokio::spawn(async move { clock.next().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        revocations
            .revoke(&Revocation {
                target: Target::Token("j".into()),
                revoked_at: now_secs(),
                expires_at: now_secs() + 60,
            })
            .await
            .unwrap();
        let due = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(due.unwrap().unwrap(), Due::Revoked);
    }

    #[tokio::test]
    async fn a_token_already_past_expires_at_once() {
        let (_expiry, mut clock) = expiry(now_secs().saturating_sub(5));
        assert_eq!(clock.next().await, Due::Expired);
    }
}
