//! Revoked tokens: the list, where it is kept, and how live sessions learn of it.
//!
//! A revocation names a user (every token of theirs issued at or before it) or one token (its
//! `jti`), and lapses when the tokens it refuses have expired. [`Revocations`] owns the list of
//! one process: [`Revocations::revoke`] keeps an entry durably ([`RevocationStore`]) and then
//! applies it; [`Revocations::check`] refuses a token at connect and at `session:refresh`; every
//! change bumps a [`watch`] counter on which each connection's writer waits (see
//! [`crate::transport::expiry::TokenClock`]), so a revoked session is closed at once with
//! `token_revoked` (WebSocket 4003).
//!
//! In a cluster the node that takes the revocation tells every other node (a broadcast through
//! the cluster seam); each applies and keeps it too, so a restarted node still refuses the
//! token. Lifecycle: loaded from the store at startup ([`Revocations::load`]), added to while
//! serving, lapsed entries dropped as the list is read and compacted by the store at load.

use async_trait::async_trait;
use protocol::{ErrorCode, Failure, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Longest `jti` accepted in a revocation, in bytes.
pub const MAX_JTI_BYTES: usize = 256;

/// One revocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    pub target: Target,
    /// Unix seconds when it was made: a user's tokens issued (`iat`) after it are fine.
    pub revoked_at: u64,
    /// Unix seconds after which it may be forgotten.
    pub expires_at: u64,
}

/// What a revocation refuses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "subject", rename_all = "camelCase")]
pub enum Target {
    /// Every token of the user issued at or before `revoked_at`.
    User(UserId),
    /// The token with this `jti`.
    Token(String),
}

/// What is checked of a token: its user and, when it has them, its `jti` and `iat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub user: UserId,
    pub jti: Option<String>,
    pub iat: Option<u64>,
}

/// Where revocations are kept across restarts.
#[async_trait]
pub trait RevocationStore: Send + Sync + 'static {
    /// Every revocation kept that has not lapsed at `now` (Unix seconds).
    async fn load(&self, now: u64) -> Result<Vec<Revocation>, String>;
    /// Keeps `revocation` durably before returning.
    async fn keep(&self, revocation: &Revocation) -> Result<(), String>;
}

/// A store that keeps nothing (tests of the signaling crate, and tools).
pub struct Forgetful;

#[async_trait]
impl RevocationStore for Forgetful {
    async fn load(&self, _now: u64) -> Result<Vec<Revocation>, String> {
        Ok(Vec::new())
    }
    async fn keep(&self, _revocation: &Revocation) -> Result<(), String> {
        Ok(())
    }
}

/// The revocation list of one process; see the module docs.
pub struct Revocations {
    state: Mutex<State>,
    version: watch::Sender<u64>,
    store: Arc<dyn RevocationStore>,
    max: usize,
}

#[derive(Default)]
struct State {
    /// By user: the latest revocation time and when it lapses.
    users: HashMap<UserId, (u64, u64)>,
    /// By `jti`: when it was revoked and when it lapses.
    tokens: HashMap<String, (u64, u64)>,
}

impl State {
    fn len(&self) -> usize {
        self.users.len() + self.tokens.len()
    }

    fn lapse(&mut self, now: u64) {
        self.users.retain(|_, (_, until)| *until > now);
        self.tokens.retain(|_, (_, until)| *until > now);
    }

    /// Applies `r`; whether it changed anything.
    fn apply(&mut self, r: &Revocation) -> bool {
        match &r.target {
            Target::User(user) => {
                let entry = self.users.entry(user.clone()).or_insert((0, 0));
                let before = *entry;
                entry.0 = entry.0.max(r.revoked_at);
                entry.1 = entry.1.max(r.expires_at);
                *entry != before
            }
            Target::Token(jti) => {
                let entry = self.tokens.entry(jti.clone()).or_insert((r.revoked_at, 0));
                let before = *entry;
                entry.1 = entry.1.max(r.expires_at);
                *entry != before
            }
        }
    }
}

impl Revocations {
    /// The list as `store` kept it, holding at most `max` entries.
    pub async fn load(store: Arc<dyn RevocationStore>, max: usize) -> Result<Arc<Self>, String> {
        let now = unix_now();
        let mut state = State::default();
        for r in store.load(now).await? {
            if r.expires_at > now {
                state.apply(&r);
            }
        }
        Ok(Arc::new(Self {
            state: Mutex::new(state),
            version: watch::channel(0).0,
            store,
            max,
        }))
    }

    /// An empty list that keeps nothing.
    pub fn forgetful() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            version: watch::channel(0).0,
            store: Arc::new(Forgetful),
            max: 100_000,
        })
    }

    /// Keeps `revocation` durably, then applies it (live sessions it names close).
    pub async fn revoke(&self, revocation: &Revocation) -> Result<(), Failure> {
        {
            let mut state = self.lock();
            state.lapse(unix_now());
            if state.len() >= self.max {
                return Err(Failure::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "{} revocations are active (`admin.max_revocations`); they lapse as \
                         the tokens they name expire",
                        self.max
                    ),
                ));
            }
        }
        self.store.keep(revocation).await.map_err(|e| {
            Failure::new(
                ErrorCode::StorageUnavailable,
                format!("the revocation could not be kept: {e}"),
            )
        })?;
        self.apply(revocation);
        Ok(())
    }

    /// A revocation another node took: keep it here too (best effort: it is kept on the node
    /// that took it), and apply it.
    pub async fn adopt(&self, revocation: &Revocation) {
        if revocation.expires_at <= unix_now() {
            return;
        }
        if let Err(e) = self.store.keep(revocation).await {
            tracing::warn!(error = %e, "could not keep a revocation from another node");
        }
        self.apply(revocation);
    }

    /// Applies `revocation` in memory and wakes every session to check itself.
    pub fn apply(&self, revocation: &Revocation) {
        let changed = self.lock().apply(revocation);
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// `token_revoked` when `credential` names a revoked token.
    pub fn check(&self, credential: &Credential) -> Result<(), Failure> {
        let now = unix_now();
        let state = self.lock();
        if let Some(jti) = &credential.jti
            && state.tokens.get(jti).is_some_and(|(_, until)| *until > now)
        {
            return Err(revoked("the token was revoked"));
        }
        if let Some((at, until)) = state.users.get(&credential.user)
            && *until > now
            && credential.iat.is_none_or(|iat| iat <= *at)
        {
            return Err(revoked(
                "the user's tokens issued before their revocation are refused; \
                 get a new token",
            ));
        }
        Ok(())
    }

    /// Changes whenever a revocation is applied.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The revocations in force, users first.
    pub fn list(&self) -> Vec<Revocation> {
        let now = unix_now();
        let mut state = self.lock();
        state.lapse(now);
        let mut out: Vec<Revocation> = state
            .users
            .iter()
            .map(|(u, (at, until))| Revocation {
                target: Target::User(u.clone()),
                revoked_at: *at,
                expires_at: *until,
            })
            .collect();
        out.sort_by(|a, b| a.target_key().cmp(b.target_key()));
        let mut tokens: Vec<Revocation> = state
            .tokens
            .iter()
            .map(|(jti, (at, until))| Revocation {
                target: Target::Token(jti.clone()),
                revoked_at: *at,
                expires_at: *until,
            })
            .collect();
        tokens.sort_by(|a, b| a.target_key().cmp(b.target_key()));
        out.extend(tokens);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Revocation {
    fn target_key(&self) -> &str {
        match &self.target {
            Target::User(u) => u.as_str(),
            Target::Token(j) => j,
        }
    }
}

fn revoked(message: &str) -> Failure {
    Failure::new(ErrorCode::TokenRevoked, message)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(u: &str, at: u64) -> Revocation {
        Revocation {
            target: Target::User(u.into()),
            revoked_at: at,
            expires_at: unix_now() + 60,
        }
    }

    #[tokio::test]
    async fn a_user_revocation_refuses_older_tokens_only() {
        let list = Revocations::forgetful();
        let now = unix_now();
        list.revoke(&user("u", now)).await.unwrap();
        let old = Credential {
            user: "u".into(),
            jti: None,
            iat: Some(now - 10),
        };
        let err = list.check(&old).unwrap_err();
        assert_eq!(err.code, ErrorCode::TokenRevoked);
        let no_iat = Credential {
            iat: None,
            ..old.clone()
        };
        assert!(list.check(&no_iat).is_err());
        let newer = Credential {
            iat: Some(now + 1),
            ..old.clone()
        };
        assert!(list.check(&newer).is_ok());
        let other = Credential {
            user: "v".into(),
            ..old
        };
        assert!(list.check(&other).is_ok());
    }

    #[tokio::test]
    async fn a_token_revocation_names_its_jti_and_lapses() {
        let list = Revocations::forgetful();
        let mut watch = list.watch();
        list.revoke(&Revocation {
            target: Target::Token("j1".into()),
            revoked_at: unix_now(),
            expires_at: unix_now() + 60,
        })
        .await
        .unwrap();
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        let c = Credential {
            user: "u".into(),
            jti: Some("j1".into()),
            iat: None,
        };
        assert!(list.check(&c).is_err());
        assert!(
            list.check(&Credential {
                jti: Some("j2".into()),
                ..c
            })
            .is_ok()
        );
        // Applying it again changes nothing and wakes nobody.
        list.apply(&list.list()[0]);
        assert!(!watch.has_changed().unwrap());
        // A lapsed one is dropped from the list.
        list.apply(&Revocation {
            target: Target::Token("old".into()),
            revoked_at: 1,
            expires_at: 2,
        });
        assert_eq!(list.list().len(), 1);
    }

    #[tokio::test]
    async fn the_list_is_bounded() {
        let store: Arc<dyn RevocationStore> = Arc::new(Forgetful);
        let list = Revocations::load(store, 2).await.unwrap();
        list.revoke(&user("a", 1)).await.unwrap();
        list.revoke(&user("b", 1)).await.unwrap();
        let err = list.revoke(&user("c", 1)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
    }
}
