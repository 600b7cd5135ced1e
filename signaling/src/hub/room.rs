//! Named rooms: open spaces anyone with the room's grant may join, media always through the SFU.
//!
//! A room's id is `room:<name>`; it appears as `callId` in every event about the room, so
//! clients handle rooms and calls with the same code. Lifecycle: created by the first join
//! (when auto-creation is on, or by an admin), joined and left by connections, and closed
//! when its last connection leaves. A room the server API created ([`Persistence::Kept`])
//! stays while empty, until the API deletes it. A dropped connection leaves at once: rooms do
//! not ring, so a reloaded page simply joins again.
//!
//! # Viewers
//! A room has two kinds of seat. A member (`room:join`) is a participant: the others hear it
//! join and leave, it is listed to them, and webhooks report it. A viewer (WHEP playback,
//! [`crate::whip`]) is a hidden seat: a connection that receives media through the SFU and is
//! never announced, listed to members, nor reported as a participant; only the server API
//! lists it, as a viewer. A viewer keeps the room open as a member does (a viewer may wait for
//! a publisher that has not come yet), and leaves when its connection goes, when the server
//! API removes it, or when the room is deleted. No wire event makes a viewer: the hub seats one
//! only on the WHEP session's behalf ([`super::Hub::view_room`]).

use super::call::{Audience, Notice};
use protocol::{CallId, CallUser, ConnectionId, ParticipantJoined, ServerEvent, UserId, UserRef};
use std::collections::BTreeMap;
use std::time::Instant;

/// The room id for a room name.
pub fn room_id(name: &str) -> CallId {
    CallId(format!("room:{name}"))
}

/// Whether a room closes when its last connection leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Created by a join: closes when empty.
    #[default]
    WhileOccupied,
    /// Created by the server API: stays until the API deletes it.
    Kept,
}

/// A viewer's seat: whose connection it is, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user: UserId,
    pub joined_at: Instant,
}

/// One room.
#[derive(Clone, Debug)]
pub struct Room {
    pub id: CallId,
    /// Connections in the room, by user, with when each joined.
    pub members: BTreeMap<UserId, BTreeMap<ConnectionId, Instant>>,
    /// Hidden seats (see the module docs), by connection.
    pub viewers: BTreeMap<ConnectionId, Viewer>,
    pub persistence: Persistence,
    /// The application's metadata for the room (server API); empty when none.
    pub metadata: String,
    /// The application's metadata per participant (server API); a participant's entry goes
    /// when they leave.
    pub participant_metadata: BTreeMap<UserId, String>,
    /// When the room was opened here (or taken over from a node that died): the start that
    /// `room.finished` reports.
    pub created_at: Instant,
}

impl Room {
    /// A room opened at `now`.
    pub fn opened(id: CallId, persistence: Persistence, now: Instant) -> Self {
        Self {
            id,
            members: BTreeMap::new(),
            viewers: BTreeMap::new(),
            persistence,
            metadata: String::new(),
            participant_metadata: BTreeMap::new(),
            created_at: now,
        }
    }

    /// Whether the room closes now: nobody (member or viewer) is in it, and it was not
    /// created by the server API.
    pub fn closes(&self) -> bool {
        self.is_empty() && self.viewers.is_empty() && self.persistence == Persistence::WhileOccupied
    }

    /// `conn` of `user` takes a viewer's seat at `now`. Nobody is told.
    pub fn view(&mut self, user: &UserId, conn: ConnectionId, now: Instant) {
        self.viewers.entry(conn).or_insert_with(|| Viewer {
            user: user.clone(),
            joined_at: now,
        });
    }

    /// Viewer `conn` leaves; its seat, if it had one. Nobody is told.
    pub fn unview(&mut self, conn: ConnectionId) -> Option<Viewer> {
        self.viewers.remove(&conn)
    }

    /// `conn` of `user` joins at `now`. Others hear `call:participant:joined` when the user is
    /// new here.
    pub fn join(
        &mut self,
        user: &UserId,
        name: String,
        conn: ConnectionId,
        now: Instant,
    ) -> Vec<Notice> {
        let devices = self.members.entry(user.clone()).or_default();
        let first = devices.is_empty();
        devices.entry(conn).or_insert(now);
        if !first {
            return Vec::new();
        }
        let event = ServerEvent::ParticipantJoined(ParticipantJoined {
            call_id: self.id.clone(),
            participant: UserRef {
                user_id: user.clone(),
                name,
            },
        });
        self.to_others(user, event)
    }

    /// `conn` of `user` leaves. Others hear `call:participant:left` when it was the user's last
    /// connection here.
    pub fn leave(&mut self, user: &UserId, conn: ConnectionId) -> Vec<Notice> {
        let Some(devices) = self.members.get_mut(user) else {
            return Vec::new();
        };
        if devices.remove(&conn).is_none() || !devices.is_empty() {
            return Vec::new();
        }
        self.members.remove(user);
        self.participant_metadata.remove(user);
        let event = ServerEvent::ParticipantLeft(CallUser {
            call_id: self.id.clone(),
            user_id: user.clone(),
        });
        self.to_others(user, event)
    }

    pub fn contains(&self, user: &UserId, conn: ConnectionId) -> bool {
        self.members
            .get(user)
            .is_some_and(|d| d.contains_key(&conn))
    }

    /// When `conn` of `user` took its seat (a member's or a viewer's), if it has one here.
    pub fn joined_at(&self, user: &UserId, conn: ConnectionId) -> Option<Instant> {
        let member = self.members.get(user).and_then(|d| d.get(&conn)).copied();
        let viewer = || {
            self.viewers
                .get(&conn)
                .filter(|v| &v.user == user)
                .map(|v| v.joined_at)
        };
        member.or_else(viewer)
    }

    /// Whether the room has no members (it may still have viewers).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's connection in the room (viewers are not among them).
    pub fn devices(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.members.values().flat_map(|d| d.keys().copied())
    }

    /// Every member's connection in the room with its user (viewers are not among them).
    pub fn seats(&self) -> impl Iterator<Item = (ConnectionId, &UserId)> + '_ {
        self.members
            .iter()
            .flat_map(|(u, d)| d.keys().map(move |c| (*c, u)))
    }

    /// Every viewer's connection with its user.
    pub fn viewer_seats(&self) -> impl Iterator<Item = (ConnectionId, &UserId)> + '_ {
        self.viewers.iter().map(|(c, v)| (*c, &v.user))
    }

    fn to_others(&self, user: &UserId, event: ServerEvent) -> Vec<Notice> {
        self.members
            .iter()
            .filter(|(u, _)| *u != user)
            .flat_map(|(_, devices)| devices.keys())
            .map(|d| Notice {
                to: Audience::Device(*d),
                event: event.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_are_announced_once_per_user() {
        let now = Instant::now();
        let mut room = Room::opened(room_id("standup"), Persistence::WhileOccupied, now);
        assert_eq!(room.id.as_str(), "room:standup");
        assert!(
            room.join(&"a".into(), "A".into(), ConnectionId(1), now)
                .is_empty()
        );
        let n = room.join(&"b".into(), "B".into(), ConnectionId(2), now);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].to, Audience::Device(ConnectionId(1)));
        assert!(
            matches!(&n[0].event, ServerEvent::ParticipantJoined(j) if j.participant.name == "B")
        );
        // B's second device is not news.
        assert!(
            room.join(&"b".into(), "B".into(), ConnectionId(3), now)
                .is_empty()
        );
        assert!(room.leave(&"b".into(), ConnectionId(2)).is_empty());
        let n = room.leave(&"b".into(), ConnectionId(3));
        assert!(
            matches!(&n[0].event, ServerEvent::ParticipantLeft(l) if l.user_id.as_str() == "b")
        );
        assert!(
            room.leave(&"b".into(), ConnectionId(3)).is_empty(),
            "leaving twice is harmless"
        );
        room.leave(&"a".into(), ConnectionId(1));
        assert!(room.is_empty());
    }

    #[test]
    fn viewers_are_never_announced_nor_told_and_keep_the_room_open() {
        let now = Instant::now();
        let mut room = Room::opened(room_id("stage"), Persistence::WhileOccupied, now);
        room.view(&"v".into(), ConnectionId(9), now);
        assert!(room.is_empty(), "a viewer is not a member");
        assert!(!room.closes(), "but it keeps the room open");
        assert_eq!(room.joined_at(&"v".into(), ConnectionId(9)), Some(now));
        assert_eq!(room.joined_at(&"w".into(), ConnectionId(9)), None);

        // A member's join is told to members only: the viewer is nobody's audience.
        assert!(
            room.join(&"a".into(), "A".into(), ConnectionId(1), now)
                .is_empty()
        );
        let n = room.join(&"b".into(), "B".into(), ConnectionId(2), now);
        assert_eq!(
            n.iter().map(|n| n.to.clone()).collect::<Vec<_>>(),
            [Audience::Device(ConnectionId(1))]
        );
        assert_eq!(
            room.devices().collect::<Vec<_>>(),
            [ConnectionId(1), ConnectionId(2)]
        );
        // A viewer with a member's user id is a seat of its own: the member leaving is news.
        room.view(&"b".into(), ConnectionId(8), now);
        let n = room.leave(&"b".into(), ConnectionId(2));
        assert!(
            matches!(&n[0].event, ServerEvent::ParticipantLeft(l) if l.user_id.as_str() == "b")
        );
        assert_eq!(
            room.unview(ConnectionId(8)).map(|v| v.user),
            Some("b".into())
        );

        room.leave(&"a".into(), ConnectionId(1));
        assert!(!room.closes(), "the viewer still watches");
        assert!(room.unview(ConnectionId(9)).is_some());
        assert!(
            room.unview(ConnectionId(9)).is_none(),
            "leaving twice is harmless"
        );
        assert!(room.closes());
    }
}
