//! Media spaces: named rooms, and the checks and bookkeeping shared by rooms and SFU-mode
//! calls (who may send media where, who hears about it, who left).
//!
//! A connection that names a space it is not in gets exactly the answer for a space that does
//! not exist ([`super::no_such_call`]): otherwise `forbidden` versus `not_found` would tell
//! anyone which room names are in use. Only `room:join` says more, and only to a token that
//! holds the room's grant.

use super::room::{Persistence, Room, room_id};
use super::{Hub, ok};
use crate::lifecycle::{Happening, LeaveReason};
use crate::media::{MediaCommand, MediaSeat};
use protocol::{
    CallId, CallMode, ConnectionId, ErrorCode, Failure, RoomJoinAck, ServerEvent, UserId, UserRef,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

impl Hub {
    /// `room:join`: needs the token's grant for this room, or `admin`.
    pub(super) fn join_room(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        name: &str,
    ) -> Result<Value, Failure> {
        let (user, display, grants, viewing) = {
            let c = self.connections.get(&conn).ok_or_else(not_connected)?;
            (
                c.user.clone(),
                c.name.clone(),
                c.grants.clone(),
                c.viewing.is_some(),
            )
        };
        if viewing {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                "a viewer's connection takes no other seat",
            ));
        }
        let id = self.open_room(now, name, &grants)?;
        let room = self.rooms.get_mut(&id).expect("open_room opened it");
        if !room.members.contains_key(&user)
            && room.members.len() >= self.settings.max_room_participants
        {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "room `{name}` holds its maximum of {} participants",
                    self.settings.max_room_participants
                ),
            ));
        }
        let newcomer = !room.members.contains_key(&user);
        let notices = room.join(&user, display, conn, now);
        let metadata = (!room.metadata.is_empty()).then(|| room.metadata.clone());
        let participants: Vec<UserRef> = room
            .members
            .keys()
            .filter(|u| **u != user)
            .map(|u| UserRef {
                user_id: u.clone(),
                name: self
                    .users
                    .get(u)
                    .map_or_else(|| u.to_string(), |x| x.name.clone()),
            })
            .collect();
        if let Some(u) = self.users.get_mut(&user) {
            u.rooms.insert(id.clone());
        }
        if newcomer {
            let at = super::wall(self.epoch, now);
            self.record(
                at,
                Happening::ParticipantJoined {
                    space: id.clone(),
                    user: user.clone(),
                },
            );
        }
        self.mark_space(&id);
        self.mark_user(&user);
        self.deliver(&id, notices);
        let ack = RoomJoinAck {
            room_id: id,
            participants,
            tracks: Vec::new(),
            ice_servers: self.ice.for_user(&user, super::wall(self.epoch, now)),
            metadata,
        };
        Ok(serde_json::to_value(ack).unwrap_or_default())
    }

    /// Room `name` for a seat of a connection with `grants`: opened now when missing (with
    /// `rooms.auto_create`, or for an admin). Needs the room's grant, or `admin`.
    fn open_room(
        &mut self,
        now: Instant,
        name: &str,
        grants: &crate::auth::Grants,
    ) -> Result<CallId, Failure> {
        if grants.room.as_deref() != Some(name) && !grants.admin {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!("your token does not grant room `{name}`"),
            ));
        }
        let id = room_id(name);
        let exists = self.rooms.contains_key(&id);
        // A draining node keeps its rooms until the drain deadline and then hands them over
        // with their members, so joining one still works (a member on another node is told
        // `media:moved` with the rest); only a new room is refused.
        if self.draining && !exists {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        if !exists {
            if !self.settings.rooms_auto_create && !grants.admin {
                return Err(Failure::new(
                    ErrorCode::NotFound,
                    format!("no room `{name}` (rooms are created by an admin's join)"),
                ));
            }
            if self.rooms.len() >= self.settings.max_rooms {
                return Err(Failure::new(
                    ErrorCode::LimitExceeded,
                    "this server holds its maximum number of rooms",
                ));
            }
            self.rooms.insert(
                id.clone(),
                Room::opened(id.clone(), Persistence::WhileOccupied, now),
            );
            self.record(
                super::wall(self.epoch, now),
                Happening::RoomStarted { room: id.clone() },
            );
        }
        Ok(id)
    }

    /// Seats `conn` as a viewer of room `name` (WHEP playback; see [`super::room`]'s
    /// "Viewers"): a hidden seat, opening the room as a join would. Nobody is told, no
    /// participant event is recorded, and `rooms.max_participants` does not count it (WHEP
    /// has its own cap). The connection must hold no other seat. Returns the room's id.
    pub fn view_room(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        name: &str,
    ) -> Result<CallId, Failure> {
        let (user, grants) = {
            let c = self.connections.get(&conn).ok_or_else(not_connected)?;
            (c.user.clone(), c.grants.clone())
        };
        let seated = self.users.get(&user).is_some_and(|u| {
            let in_room = u
                .rooms
                .iter()
                .any(|id| self.rooms.get(id).is_some_and(|r| r.contains(&user, conn)));
            let in_call = u.calls.iter().any(|id| {
                self.calls
                    .get(id)
                    .is_some_and(|e| e.call.has_device(&user, conn))
            });
            in_room || in_call
        });
        // Viewing this room already is harmless: the seat stays as it is.
        let elsewhere = self
            .connections
            .get(&conn)
            .and_then(|c| c.viewing.as_ref())
            .is_some_and(|v| *v != room_id(name));
        if seated || elsewhere {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                "a viewer's connection takes no other seat",
            ));
        }
        let id = self.open_room(now, name, &grants)?;
        if let Some(room) = self.rooms.get_mut(&id) {
            room.view(&user, conn, now);
        }
        if let Some(c) = self.connections.get_mut(&conn) {
            c.viewing = Some(id.clone());
        }
        // Not in the room's snapshot, but the room may be new.
        self.mark_space(&id);
        Ok(id)
    }

    /// Viewer `conn` leaves room `id` (its connection went, or the server API removed it): the
    /// SFU frees its seat, and the room closes if nobody is left in it.
    pub(super) fn unview_room(&mut self, now: Instant, conn: ConnectionId, id: &CallId) {
        if let Some(c) = self.connections.get_mut(&conn)
            && c.viewing.as_ref() == Some(id)
        {
            c.viewing = None;
        }
        let Some(room) = self.rooms.get_mut(id) else {
            return;
        };
        let Some(viewer) = room.unview(conn) else {
            return;
        };
        self.media.push_back(MediaCommand::Leave {
            space: id.clone(),
            conn,
            user: viewer.user,
        });
        self.close_if_done(now, id);
    }

    /// Closes room `id` when nobody is left in it and it was not created by the server API.
    fn close_if_done(&mut self, now: Instant, id: &CallId) {
        let Some(room) = self.rooms.get(id).filter(|r| r.closes()) else {
            return;
        };
        let started_at = super::wall(self.epoch, room.created_at);
        self.record(
            super::wall(self.epoch, now),
            Happening::RoomFinished {
                room: id.clone(),
                started_at,
            },
        );
        self.rooms.remove(id);
        self.mark_space(id);
    }

    /// `room:leave`.
    pub(super) fn leave_room(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        name: &str,
    ) -> Result<Value, Failure> {
        let user = self
            .connections
            .get(&conn)
            .ok_or_else(not_connected)?
            .user
            .clone();
        let id = room_id(name);
        if !self.rooms.get(&id).is_some_and(|r| r.contains(&user, conn)) {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                format!("you are not in room `{name}`"),
            ));
        }
        self.leave_room_id(now, &user, conn, &id, LeaveReason::Left);
        Ok(ok())
    }

    /// A dropped connection leaves every room it was in.
    pub(super) fn leave_rooms(&mut self, now: Instant, user: &UserId, conn: ConnectionId) {
        let rooms: Vec<CallId> = self
            .users
            .get(user)
            .map(|u| u.rooms.iter().cloned().collect())
            .unwrap_or_default();
        for id in rooms {
            if self.rooms.get(&id).is_some_and(|r| r.contains(user, conn)) {
                self.leave_room_id(now, user, conn, &id, LeaveReason::Disconnected);
            }
        }
    }

    pub(super) fn leave_room_id(
        &mut self,
        now: Instant,
        user: &UserId,
        conn: ConnectionId,
        id: &CallId,
        reason: LeaveReason,
    ) {
        let Some(room) = self.rooms.get_mut(id) else {
            return;
        };
        let notices = room.leave(user, conn);
        let still_in = room.members.contains_key(user);
        let empty = room.closes();
        let started_at = super::wall(self.epoch, room.created_at);
        let at = super::wall(self.epoch, now);
        if !still_in {
            self.record(
                at,
                Happening::ParticipantLeft {
                    space: id.clone(),
                    user: user.clone(),
                    reason,
                },
            );
        }
        if empty {
            self.record(
                at,
                Happening::RoomFinished {
                    room: id.clone(),
                    started_at,
                },
            );
        }
        self.deliver(id, notices);
        self.media.push_back(MediaCommand::Leave {
            space: id.clone(),
            conn,
            user: user.clone(),
        });
        if empty {
            self.rooms.remove(id);
        }
        self.mark_space(id);
        if !still_in {
            if let Some(u) = self.users.get_mut(user) {
                u.rooms.remove(id);
            }
            self.forget_if_idle(user);
        }
    }

    /// Tells the room's other connections about `conn`'s media state (`call:media-toggled`,
    /// `screen:share-*`); the connection must be in the room.
    pub(super) fn announce_in_room(
        &mut self,
        conn: ConnectionId,
        user: &UserId,
        id: &CallId,
        event: ServerEvent,
    ) -> Result<Value, Failure> {
        let in_room = self.rooms.get(id).is_some_and(|r| r.contains(user, conn));
        if !in_room {
            return Err(super::no_such_call());
        }
        self.deliver_to_space(id, Some(conn), Arc::new(event));
        Ok(ok())
    }

    /// May `conn` send media signals in `space` (an SFU-mode call or a room it is in)? With
    /// no `space`, the one media space the connection is in, if there is exactly one.
    pub fn authorize_media(
        &self,
        conn: ConnectionId,
        space: Option<&CallId>,
    ) -> Result<MediaSeat, Failure> {
        let c = self.connections.get(&conn).ok_or_else(not_connected)?;
        let space = match space {
            Some(space) => space.clone(),
            None => self.only_media_space(conn, &c.user)?,
        };
        // "No such space" and "not yours" answer alike, so space names cannot be probed.
        let joined_at = if space.as_str().starts_with("room:") {
            self.rooms
                .get(&space)
                .and_then(|r| r.joined_at(&c.user, conn))
                .ok_or_else(super::no_such_call)?
        } else {
            let call = self
                .calls
                .get(&space)
                .map(|e| &e.call)
                .filter(|call| call.members.contains_key(&c.user))
                .ok_or_else(super::no_such_call)?;
            let Some(joined_at) = call.joined_at(&c.user, conn) else {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    "this connection has not joined the call (call:accept or call:join first)",
                ));
            };
            if call.mode != CallMode::Sfu {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    "this call is peer-to-peer: address signals to a user with `targetUserId`",
                ));
            }
            joined_at
        };
        Ok(MediaSeat {
            space,
            user: c.user.clone(),
            name: c.name.clone(),
            conn,
            grants: c.grants.clone(),
            joined_at,
        })
    }

    /// The single room or SFU-mode call `conn` is in, for requests that name none.
    fn only_media_space(&self, conn: ConnectionId, user: &UserId) -> Result<CallId, Failure> {
        let Some(u) = self.users.get(user) else {
            return Err(not_connected());
        };
        let rooms = u
            .rooms
            .iter()
            .filter(|id| self.rooms.get(*id).is_some_and(|r| r.contains(user, conn)));
        let calls = u.calls.iter().filter(|id| {
            self.calls
                .get(*id)
                .is_some_and(|e| e.call.mode == CallMode::Sfu && e.call.has_device(user, conn))
        });
        let mut spaces = rooms.chain(calls);
        match (spaces.next(), spaces.next()) {
            (Some(only), None) => Ok(only.clone()),
            (None, _) => Err(Failure::new(
                ErrorCode::InvalidState,
                "this connection is in no room or SFU call",
            )),
            (Some(_), Some(_)) => Err(Failure::new(
                ErrorCode::InvalidPayload,
                "`callId` is required when the connection is in several calls or rooms",
            )),
        }
    }

    /// A media toggle in `space` by `conn`: when the space's media goes through the SFU, tell
    /// the media server so it announces `track:muted`/`track:unmuted`.
    pub(super) fn note_media_toggle(
        &mut self,
        conn: ConnectionId,
        space: &CallId,
        kind: protocol::MediaType,
        enabled: bool,
    ) {
        if let Ok(seat) = self.authorize_media(conn, Some(space)) {
            self.media.push_back(MediaCommand::Mute {
                seat,
                kind,
                muted: !enabled,
            });
        }
    }

    /// Queues `event` for every connection in `space` but `except`.
    pub fn deliver_to_space(
        &mut self,
        space: &CallId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        let devices: Vec<ConnectionId> = if let Some(room) = self.rooms.get(space) {
            room.devices().collect()
        } else if let Some(entry) = self.calls.get(space) {
            entry.call.devices().collect()
        } else {
            Vec::new()
        };
        for conn in devices.into_iter().filter(|c| Some(*c) != except) {
            self.push(conn, event.clone());
        }
    }

    /// The next media command the hub issued (a seat left, a mute toggle); see
    /// [`crate::media`]. Drain it after every mutation, like [`Hub::poll_output`].
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media.pop_front()
    }

    /// Records the devices that left call `id` since `before` (all of them when it ended).
    pub(super) fn note_media_leaves(
        &mut self,
        id: &CallId,
        before: BTreeSet<(ConnectionId, UserId)>,
    ) {
        let after: BTreeSet<(ConnectionId, UserId)> = match self.calls.get(id) {
            Some(e) if !e.call.is_ended() => e.call.seats().map(|(c, u)| (c, u.clone())).collect(),
            _ => BTreeSet::new(),
        };
        for (conn, user) in before.difference(&after) {
            self.media.push_back(MediaCommand::Leave {
                space: id.clone(),
                conn: *conn,
                user: user.clone(),
            });
        }
    }
}

fn not_connected() -> Failure {
    Failure::new(ErrorCode::InvalidState, "connection is not registered")
}
