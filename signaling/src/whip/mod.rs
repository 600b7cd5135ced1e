//! WHIP ingest (RFC 9725): an encoder publishes into a room over plain HTTP; and WHEP
//! playback (draft-ietf-wish-whep): a viewer receives one participant's tracks the same way.
//!
//! ```text
//! POST    /whip/v1/rooms/{room}        application/sdp offer, Bearer JWT with the room grant
//!         -> 201, SDP answer, Location: /whip/v1/sessions/{id}, ETag, Link rel="ice-server"
//! PATCH   /whip/v1/sessions/{id}       application/trickle-ice-sdpfrag, If-Match
//!         -> 204 (trickle) | 200 + fragment + new ETag (ICE restart)
//! DELETE  /whip/v1/sessions/{id}       -> 200
//! OPTIONS on either                    -> 204 with CORS headers
//!
//! POST    /whep/v1/rooms/{room}/participants/{user}   receive-only offer, the room grant
//!         -> 201, SDP answer, Location: /whep/v1/sessions/{id}, ETag, Link
//! PATCH, DELETE, OPTIONS /whep/v1/sessions/{id}      as for WHIP
//! ```
//!
//! # A WHIP session is a connection of the hub
//!
//! Each session is what a WebSocket client would be: a connection id registered with the hub
//! ([`crate::cluster::Router::register`]), a `room:join` of the token's room, and a targetless
//! offer through the hub's seat check ([`crate::driver::HubHandle::media`]). So the room sees a
//! participant join, its tracks are announced and forwarded like any publisher's, and it leaves
//! when the session ends; the hub stays the one record of who sits where and the SFU the one
//! record of media (ADR 0050). The session's connection subscribes to nothing (a WHIP client
//! cannot renegotiate), so the SFU never makes it an offer.
//!
//! A WHEP session is the same, with a viewer's seat instead of a `room:join`
//! ([`crate::cluster::Router::view`]) and a viewer's offer
//! ([`crate::media::MediaRequest::View`]): the SFU binds the named participant's tracks to the
//! offer's receive-only m-lines and never makes it an offer either. A viewer's seat is hidden
//! (see [`crate::hub::room`]'s "Viewers"): the room's members never hear it come or go nor see
//! it listed, webhooks report no participant for it, and only the server API lists it, as a
//! viewer. It still leaves the room, and the SFU, when the session ends.
//!
//! What is WHIP's own: the resource id, its entity tag and the client's offer (for ICE
//! restarts). A task per session (module `session`) owns them together with the hub registration;
//! [`Whip`] keeps only the way to each task, keyed by resource id, and the counts its limits
//! need. See ADR 0076.
//!
//! # Lifecycle of a session
//! Created by a POST whose join and offer both succeeded; it ends, and its participant leaves
//! the room, on the first of: DELETE; ICE and DTLS not up within `whip.connect_timeout`; the
//! SFU dropping the participant (ICE timeout, DTLS close); removal from the room (server API)
//! or the room's deletion; the token's expiry or revocation; the server's drain.
//!
//! # Limits
//! WHIP sessions: `whip.max_sessions_per_user` and `whip.max_sessions_per_room`, and
//! everything a room join is subject to (`rooms.max_participants`). WHEP sessions, counted
//! apart: `whip.max_viewer_sessions_per_user` and `whip.max_viewers_per_room` (viewers do not
//! count toward `rooms.max_participants`). All four answer 409 `limit_exceeded` past them.
//! Both: `whip.max_sdp_bytes` (413).
//!
//! # In a cluster
//! A POST for a room another node owns is answered `307` to that node (RFC 9725 §4.5), after
//! the token's room grant is checked; a room nobody owns yet is placed first. So a session
//! always lives on the node whose SFU carries its media and reports on it, and its `Location`
//! (relative) resolves to that node.

mod routes;
pub mod sdp;
mod session;

use crate::auth::Identity;
use protocol::{ConnectionId, UserId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

pub use routes::router;

/// What WHIP and WHEP enforce, from `[whip]`.
#[derive(Clone, Copy, Debug)]
pub struct WhipSettings {
    /// WHIP (publishing) sessions per user and per room.
    pub max_sessions_per_user: usize,
    pub max_sessions_per_room: usize,
    /// WHEP (viewing) sessions per user and per room.
    pub max_viewer_sessions_per_user: usize,
    pub max_viewers_per_room: usize,
    pub connect_timeout: Duration,
    pub max_sdp_bytes: usize,
}

impl WhipSettings {
    pub fn from_config(c: &config::Config) -> Self {
        Self {
            max_sessions_per_user: c.whip.max_sessions_per_user,
            max_sessions_per_room: c.whip.max_sessions_per_room,
            max_viewer_sessions_per_user: c.whip.max_viewer_sessions_per_user,
            max_viewers_per_room: c.whip.max_viewers_per_room,
            connect_timeout: c.whip.connect_timeout.get(),
            max_sdp_bytes: c.whip.max_sdp_bytes,
        }
    }
}

/// A WHIP resource id: 128 random bits in hex, so a session URL cannot be guessed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WhipId(String);

impl WhipId {
    fn fresh() -> Self {
        Self(random_hex())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WhipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the SFU reports about a session's media, passed on by the binary
/// ([`Whip::media_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaState {
    /// ICE and DTLS are up.
    Connected,
    /// The SFU dropped the participant (ICE timeout, DTLS close, a failure).
    Failed,
}

/// The WHIP sessions of this node: how to reach each session's task. See the module docs.
pub struct Whip {
    settings: WhipSettings,
    sessions: Mutex<BTreeMap<WhipId, Entry>>,
}

/// One live session, as the routes and the SFU events find it.
struct Entry {
    user: UserId,
    room: String,
    kind: Kind,
    conn: ConnectionId,
    commands: mpsc::Sender<session::Command>,
}

/// What a session does, which decides the limits it counts toward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// WHIP: `whip.max_sessions_per_*`.
    Publish,
    /// WHEP: `whip.max_viewer_sessions_per_user`, `whip.max_viewers_per_room`.
    View,
}

/// A session over one of its kind's limits: the kind, and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    User(Kind, usize),
    Room(Kind, usize),
}

impl Over {
    /// What the refusal says: how many, of what, and the key that sets the limit.
    fn message(self, room: &str) -> String {
        match self {
            Over::User(Kind::Publish, n) => format!(
                "this user holds {n} WHIP sessions already (the limit, `whip.max_sessions_per_user`)"
            ),
            Over::Room(Kind::Publish, n) => format!(
                "room `{room}` holds {n} WHIP sessions already (the limit, `whip.max_sessions_per_room`)"
            ),
            Over::User(Kind::View, n) => format!(
                "this user holds {n} WHEP sessions already (the limit, \
                 `whip.max_viewer_sessions_per_user`)"
            ),
            Over::Room(Kind::View, n) => format!(
                "room `{room}` has {n} WHEP viewers already (the limit, `whip.max_viewers_per_room`)"
            ),
        }
    }
}

impl Whip {
    pub fn new(settings: WhipSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            sessions: Mutex::new(BTreeMap::new()),
        })
    }

    /// The SFU's news about connection `conn`'s media; ignored unless `conn` is a WHIP
    /// session's. Never waits: a session whose queue is full is busy ending anyway.
    pub fn media_state(&self, conn: ConnectionId, state: MediaState) {
        let sessions = lock(&self.sessions);
        if let Some(entry) = sessions.values().find(|e| e.conn == conn) {
            let _ = entry.commands.try_send(session::Command::Media(state));
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reserves a place for a new session of `kind` of `identity` in `room`, within the
    /// limits of its kind (the other kind's sessions do not count).
    fn reserve(
        &self,
        identity: &Identity,
        (room, kind): (&str, Kind),
        conn: ConnectionId,
        commands: mpsc::Sender<session::Command>,
    ) -> Result<WhipId, Over> {
        let mut sessions = lock(&self.sessions);
        let user = &identity.user_id;
        let (per_user, per_room) = match kind {
            Kind::Publish => (
                self.settings.max_sessions_per_user,
                self.settings.max_sessions_per_room,
            ),
            Kind::View => (
                self.settings.max_viewer_sessions_per_user,
                self.settings.max_viewers_per_room,
            ),
        };
        let same = || sessions.values().filter(|e| e.kind == kind);
        if same().filter(|e| &e.user == user).count() >= per_user {
            return Err(Over::User(kind, per_user));
        }
        if same().filter(|e| e.room == room).count() >= per_room {
            return Err(Over::Room(kind, per_room));
        }
        let id = WhipId::fresh();
        sessions.insert(
            id.clone(),
            Entry {
                user: user.clone(),
                room: room.to_owned(),
                kind,
                conn,
                commands,
            },
        );
        Ok(id)
    }

    /// Session `id`'s user, and the way to its task.
    fn commands(&self, id: &WhipId) -> Option<(UserId, mpsc::Sender<session::Command>)> {
        lock(&self.sessions)
            .get(id)
            .map(|e| (e.user.clone(), e.commands.clone()))
    }

    /// Forgets session `id` (it ended, or never started).
    fn release(&self, id: &WhipId) {
        lock(&self.sessions).remove(id);
    }
}

/// 128 random bits in hex.
fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whip() -> Arc<Whip> {
        Whip::new(WhipSettings {
            max_sessions_per_user: 1,
            max_sessions_per_room: 2,
            max_viewer_sessions_per_user: 2,
            max_viewers_per_room: 3,
            connect_timeout: Duration::from_secs(1),
            max_sdp_bytes: 1024,
        })
    }

    fn reserve(whip: &Whip, user: &str, kind: Kind) -> Result<WhipId, Over> {
        let identity = Identity {
            user_id: user.into(),
            name: user.into(),
            grants: Default::default(),
            contacts: Default::default(),
        };
        let (commands, _) = mpsc::channel(1);
        whip.reserve(&identity, ("stage", kind), ConnectionId(0), commands)
    }

    #[test]
    fn publishers_and_viewers_are_counted_apart() {
        let w = whip();
        reserve(&w, "a", Kind::Publish).unwrap();
        assert_eq!(
            reserve(&w, "a", Kind::Publish),
            Err(Over::User(Kind::Publish, 1))
        );
        // A's publishing session leaves both of A's viewing places.
        reserve(&w, "a", Kind::View).unwrap();
        reserve(&w, "a", Kind::View).unwrap();
        assert_eq!(reserve(&w, "a", Kind::View), Err(Over::User(Kind::View, 2)));
        reserve(&w, "b", Kind::View).unwrap();
        assert_eq!(reserve(&w, "c", Kind::View), Err(Over::Room(Kind::View, 3)));
        // Three viewers in the room, yet a publisher's place is free.
        let id = reserve(&w, "b", Kind::Publish).unwrap();
        assert_eq!(
            reserve(&w, "c", Kind::Publish),
            Err(Over::Room(Kind::Publish, 2))
        );
        w.release(&id);
        reserve(&w, "c", Kind::Publish).unwrap();
        assert!(
            Over::Room(Kind::View, 3)
                .message("stage")
                .contains("`whip.max_viewers_per_room`")
        );
    }
}
