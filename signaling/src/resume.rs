//! Session resume: a connection that drops keeps its session for `limits.resume_grace`.
//!
//! Every session gets a [`SessionKey`] at connect (sent as `session:ready`). When its transport
//! ends without a goodbye (no WebSocket close frame, no Socket.IO DISCONNECT, no server-side
//! close), the transport *parks* it here instead of disconnecting: its hub registration stays,
//! so its calls, rooms and SFU seat stay (the hub never hears of the drop, nobody sees a
//! leave, and media, which does not go through the WebSocket, never stops); its outbox stays
//! registered with the hub's driver, so the events it misses queue there, in order and bounded
//! like any outbox (`limits.outbound_queue` events and `limits.outbound_queue_bytes` bytes).
//! A new connection of the same user that sends `session:resume {sessionId, received}` within
//! the grace period takes the parked registration and outbox over: after the resume's ack its
//! writer writes the missed events — first those the old connection took but the client did
//! not receive (`received` says how many it did; the outbox keeps the last few it handed out,
//! [`OutboxReader::rewind`]), then the backlog — and its session acts under the old connection
//! id (the seat is keyed by it, ADR 0050). Otherwise the grace period ends and the parked registration
//! disconnects as the drop would have, or the outbox overflowed and the driver dropped the
//! connection already (the resume is then refused with `session_overflowed`).
//!
//! A new connection may arrive before the server noticed the old one was gone (a half-open TCP
//! connection after a network change): resuming a *live* session asks its transport to hand
//! over (it parks at once) and waits a moment for it.
//!
//! Parking is per node: a resume that reaches another node of a cluster finds nothing
//! (`session_not_found`), and the client joins afresh; see ADR 0079.
//!
//! Lifecycle of an entry: [`Sessions::open`] (live) → [`Sessions::park`] (parked, with its
//! expiry task) → [`Sessions::resume`] (taken by a new connection, which [`Sessions::adopt`]s the
//! key as live again) or expiry; [`Sessions::close`] when the session ends for good.
//! Entries are bounded by connections: one per live connection, one per parked one, and a
//! parked one lasts at most the grace period.

use crate::cluster::Registration;
use crate::metrics::Metrics;
use crate::transport::outbox::{OutboxReader, RECENT_EVENTS, Rewind};
use protocol::{ConnectionId, ErrorCode, Failure, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// A session's resume id: 128 random bits in hex. Unguessable; bound to its user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey(String);

impl SessionKey {
    /// A fresh key from 16 random bytes (the caller draws them).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a transport ended, which decides whether its session may be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// The client said goodbye (close frame, Socket.IO disconnect, page navigation), or the
    /// server closed the connection (token expired or revoked, too slow, draining): the session
    /// ends now.
    Left,
    /// The connection broke without a goodbye, or a resume took it over: park.
    Dropped,
}

/// What a parked session holds until it is resumed or expires.
pub struct Parked {
    pub user: UserId,
    pub conn: ConnectionId,
    pub registration: Registration,
    pub events: OutboxReader,
}

/// What [`Sessions::resume`] hands the new connection.
pub struct Taken {
    pub key: SessionKey,
    pub conn: ConnectionId,
    pub registration: Registration,
    pub events: OutboxReader,
}

enum Entry {
    Live {
        user: UserId,
        /// Notified when a resume takes this session over while its transport still runs.
        hand_over: Arc<Notify>,
    },
    Parked(Parked),
}

/// What a resume found under its key.
enum Found {
    Nothing,
    OtherUser,
    /// Its transport still runs: ask it to hand over.
    Live(Arc<Notify>),
    Parked(Parked),
}

/// The sessions of this node that may be resumed; see the module docs.
pub struct Sessions {
    grace: Duration,
    /// Set when the node drains: from then on a dropped session ends at once.
    draining: AtomicBool,
    entries: Mutex<HashMap<SessionKey, Entry>>,
    metrics: Metrics,
}

/// How long a resume waits for a live session's transport to hand over.
const HAND_OVER_WAIT: Duration = Duration::from_secs(2);

impl Sessions {
    pub fn new(grace: Duration, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            grace,
            draining: AtomicBool::new(false),
            entries: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// How long a dropped session waits; zero when resuming is off.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A new session of `user`: its key, and what its transport must watch to hand over.
    pub fn open(&self, user: &UserId) -> (SessionKey, Arc<Notify>) {
        let key = SessionKey::from_random(rand::random());
        let hand_over = Arc::new(Notify::new());
        self.lock().insert(
            key.clone(),
            Entry::Live {
                user: user.clone(),
                hand_over: hand_over.clone(),
            },
        );
        (key, hand_over)
    }

    /// A resumed session `key` is live again on a new transport.
    pub fn adopt(&self, key: &SessionKey, user: &UserId) -> Arc<Notify> {
        let hand_over = Arc::new(Notify::new());
        self.lock().insert(
            key.clone(),
            Entry::Live {
                user: user.clone(),
                hand_over: hand_over.clone(),
            },
        );
        hand_over
    }

    /// The session ended for good (or was taken over under another key): forget it.
    pub fn close(&self, key: &SessionKey) {
        self.lock().remove(key);
    }

    /// Parks a session whose connection dropped, until it is resumed or `grace` passes; then
    /// its registration disconnects. With resuming off, it disconnects at once.
    pub async fn park(self: &Arc<Self>, key: SessionKey, parked: Parked) {
        if self.grace.is_zero() || self.draining.load(Ordering::Acquire) {
            self.close(&key);
            parked.registration.disconnect().await;
            return;
        }
        self.lock().insert(key.clone(), Entry::Parked(parked));
        self.metrics.sessions_parked.inc();
        let sessions: Weak<Self> = Arc::downgrade(self);
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let Some(sessions) = sessions.upgrade() else {
                return;
            };
            let expired = sessions.take_parked(&key);
            if let Some(parked) = expired {
                sessions.count("expired");
                parked.registration.disconnect().await;
            }
        });
    }

    /// `session:resume {sessionId}` from a connection of `user`. Takes the parked session
    /// over (asking a live one to hand over first).
    /// `received`: how many events the client got from the old connection (see
    /// [`OutboxReader::rewind`]); without it, events in flight at the drop may be lost.
    pub async fn resume(
        &self,
        key: &str,
        user: &UserId,
        received: Option<u64>,
    ) -> Result<Taken, Failure> {
        let key = SessionKey(key.to_owned());
        let deadline = tokio::time::Instant::now() + HAND_OVER_WAIT;
        loop {
            // Decided under the lock, acted on after it (nothing awaits while it is held).
            let found = {
                let mut entries = self.lock();
                match entries.get(&key) {
                    None => Found::Nothing,
                    Some(
                        Entry::Live { user: owner, .. } | Entry::Parked(Parked { user: owner, .. }),
                    ) if owner != user => Found::OtherUser,
                    Some(Entry::Live { hand_over, .. }) => Found::Live(hand_over.clone()),
                    Some(Entry::Parked(_)) => match entries.remove(&key) {
                        Some(Entry::Parked(parked)) => Found::Parked(parked),
                        _ => Found::Nothing,
                    },
                }
            };
            match found {
                Found::Nothing => {
                    self.count("not_found");
                    return Err(not_found());
                }
                Found::OtherUser => {
                    self.count("forbidden");
                    return Err(Failure::new(
                        ErrorCode::Forbidden,
                        "that session belongs to another user",
                    ));
                }
                Found::Parked(parked) => {
                    self.metrics.sessions_parked.dec();
                    return self.take_over(key, parked, received).await;
                }
                Found::Live(hand_over) => {
                    if tokio::time::Instant::now() >= deadline {
                        self.count("not_found");
                        return Err(not_found());
                    }
                    hand_over.notify_one();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Disconnects every parked session (the server is draining: nobody will resume here).
    pub async fn release_all(&self) {
        self.draining.store(true, Ordering::Release);
        let parked: Vec<Parked> = {
            let mut entries = self.lock();
            let keys: Vec<SessionKey> = entries
                .iter()
                .filter(|(_, e)| matches!(e, Entry::Parked(_)))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| match entries.remove(&k) {
                    Some(Entry::Parked(p)) => Some(p),
                    _ => None,
                })
                .collect()
        };
        for p in parked {
            self.metrics.sessions_parked.dec();
            p.registration.disconnect().await;
        }
    }

    async fn take_over(
        &self,
        key: SessionKey,
        mut parked: Parked,
        received: Option<u64>,
    ) -> Result<Taken, Failure> {
        if parked.events.is_overflowed() {
            // The driver dropped the connection from the hub already; end the rest.
            parked.registration.disconnect().await;
            self.count("overflowed");
            return Err(Failure::new(
                ErrorCode::SessionOverflowed,
                "the session missed more events than it could hold and has ended; join again",
            ));
        }
        if parked.events.is_released() {
            // Something else removed the connection from the hub (the server API, a revoked
            // token): there is nothing left to resume.
            parked.registration.disconnect().await;
            self.count("not_found");
            return Err(not_found());
        }
        if let Some(received) = received {
            let rewound = parked.events.rewind(received);
            if let Err(why) = rewound {
                parked.registration.disconnect().await;
                return Err(match why {
                    Rewind::TooFar => {
                        self.count("overflowed");
                        Failure::new(
                            ErrorCode::SessionOverflowed,
                            format!(
                                "more events were in flight at the drop than the server keeps \
                                 ({RECENT_EVENTS}); the session has ended; join again"
                            ),
                        )
                    }
                    Rewind::Ahead => {
                        self.count("not_found");
                        Failure::new(
                            ErrorCode::InvalidPayload,
                            "`received` is more than the session ever sent; the session has \
                             ended; join again",
                        )
                    }
                });
            }
        }
        self.count("resumed");
        Ok(Taken {
            key,
            conn: parked.conn,
            registration: parked.registration,
            events: parked.events,
        })
    }

    fn take_parked(&self, key: &SessionKey) -> Option<Parked> {
        let mut entries = self.lock();
        if !matches!(entries.get(key), Some(Entry::Parked(_))) {
            return None;
        }
        match entries.remove(key) {
            Some(Entry::Parked(p)) => {
                self.metrics.sessions_parked.dec();
                Some(p)
            }
            _ => None,
        }
    }

    fn count(&self, result: &str) {
        self.metrics.resumes.with_label_values(&[result]).inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Entry>> {
        // A panic while holding this lock leaves a map of plain data: still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn not_found() -> Failure {
    Failure::new(
        ErrorCode::SessionNotFound,
        "no such session to resume here (unknown, expired, already resumed, or held by another \
         node); join again",
    )
}
