//! What the server API asks of the hub: rooms, calls and participants as they are, and changes
//! made on the application's behalf (see [`crate::admin`]).
//!
//! Everything here acts on spaces this node owns. A call or room that is not here answers
//! `not_found`; in a cluster the HTTP layer then asks who owns it.

use super::call::MemberState;
use super::room::{Persistence, Room, room_id};
use super::{Cause, Hub, cluster::Home, no_such_call, wall};
use crate::admin::model::{
    CallSummary, ConnectionInfo, ParticipantInfo, ParticipantKind, RoomSummary,
};
use crate::lifecycle::{Happening, LeaveReason};
use crate::media::MediaCommand;
use protocol::{
    CallEnded, CallId, ConnectionId, EndReason, ErrorCode, Failure, ParticipantMetadata, RoomData,
    RoomMetadata, ServerEvent, UserId,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Longest metadata string, in bytes (rooms and participants).
pub const MAX_METADATA_BYTES: usize = 4096;

/// An operation of the server API on the hub.
#[derive(Clone, Debug)]
pub enum AdminOp {
    Rooms,
    Room {
        name: String,
    },
    CreateRoom {
        name: String,
        metadata: String,
    },
    DeleteRoom {
        name: String,
    },
    Participants {
        space: CallId,
    },
    Remove {
        space: CallId,
        user: UserId,
    },
    RoomMetadata {
        name: String,
        metadata: String,
    },
    ParticipantMetadata {
        name: String,
        user: UserId,
        metadata: String,
    },
    SendData {
        name: String,
        topic: Option<String>,
        data: Value,
        to: Option<Vec<UserId>>,
    },
    Calls,
    EndCall {
        id: CallId,
    },
    /// The connections of `user` in `space`, for a media command about their tracks.
    Seats {
        space: CallId,
        user: UserId,
    },
}

/// The hub's answer to an [`AdminOp`].
#[derive(Clone, Debug)]
pub enum AdminOutput {
    Rooms(Vec<RoomSummary>),
    Room(RoomSummary),
    Participants(Vec<ParticipantInfo>),
    Calls(Vec<CallSummary>),
    /// Done; this many connections were told.
    Delivered(usize),
    Seats(Vec<ConnectionId>),
}

impl Hub {
    /// Runs one server API operation.
    pub fn admin(&mut self, now: Instant, op: AdminOp) -> Result<AdminOutput, Failure> {
        match op {
            AdminOp::Rooms => {
                let mut rooms: Vec<RoomSummary> =
                    self.rooms.values().map(|r| self.room_summary(r)).collect();
                rooms.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(AdminOutput::Rooms(rooms))
            }
            AdminOp::Room { name } => {
                let room = self
                    .rooms
                    .get(&room_id(&name))
                    .ok_or_else(|| no_room(&name))?;
                Ok(AdminOutput::Room(self.room_summary(room)))
            }
            AdminOp::CreateRoom { name, metadata } => self.create_room(now, name, metadata),
            AdminOp::DeleteRoom { name } => self.delete_room(now, &name),
            AdminOp::Participants { space } => self.participants(now, &space),
            AdminOp::Remove { space, user } => self.remove_participant(now, &space, &user),
            AdminOp::RoomMetadata { name, metadata } => {
                let id = room_id(&name);
                let room = self.rooms.get_mut(&id).ok_or_else(|| no_room(&name))?;
                room.metadata.clone_from(&metadata);
                let event = ServerEvent::RoomMetadata(RoomMetadata {
                    call_id: id.clone(),
                    metadata,
                });
                Ok(AdminOutput::Delivered(self.tell_room(&id, None, event)))
            }
            AdminOp::ParticipantMetadata {
                name,
                user,
                metadata,
            } => {
                let id = room_id(&name);
                let room = self.rooms.get_mut(&id).ok_or_else(|| no_room(&name))?;
                if !room.members.contains_key(&user) {
                    return Err(no_participant(&user));
                }
                if metadata.is_empty() {
                    room.participant_metadata.remove(&user);
                } else {
                    room.participant_metadata
                        .insert(user.clone(), metadata.clone());
                }
                let event = ServerEvent::ParticipantMetadata(ParticipantMetadata {
                    call_id: id.clone(),
                    user_id: user,
                    metadata,
                });
                Ok(AdminOutput::Delivered(self.tell_room(&id, None, event)))
            }
            AdminOp::SendData {
                name,
                topic,
                data,
                to,
            } => {
                let id = room_id(&name);
                if !self.rooms.contains_key(&id) {
                    return Err(no_room(&name));
                }
                let event = ServerEvent::RoomData(RoomData {
                    call_id: id.clone(),
                    topic,
                    data,
                });
                Ok(AdminOutput::Delivered(self.tell_room(
                    &id,
                    to.as_deref(),
                    event,
                )))
            }
            AdminOp::Calls => {
                let mut calls: Vec<CallSummary> = self
                    .calls
                    .keys()
                    .filter_map(|id| self.call_summary(now, id))
                    .collect();
                calls.sort_by(|a, b| a.started_at.cmp(&b.started_at));
                Ok(AdminOutput::Calls(calls))
            }
            AdminOp::EndCall { id } => {
                let devices = self.calls.get(&id).map_or(0, |e| e.call.devices().count());
                self.with_call(now, Cause::Admin { removed: None }, &id, |call, ctx| {
                    Ok(call.end(EndReason::Terminated, ctx))
                })?;
                Ok(AdminOutput::Delivered(devices))
            }
            AdminOp::Seats { space, user } => {
                let seats: Vec<ConnectionId> = if let Some(room) = self.rooms.get(&space) {
                    room.members
                        .get(&user)
                        .map(|d| d.keys().copied().collect())
                        .ok_or_else(|| no_participant(&user))?
                } else if let Some(entry) = self.calls.get(&space) {
                    entry
                        .call
                        .members
                        .get(&user)
                        .map(|m| m.devices.keys().copied().collect())
                        .ok_or_else(|| no_participant(&user))?
                } else {
                    return Err(no_such_call());
                };
                Ok(AdminOutput::Seats(seats))
            }
        }
    }

    fn create_room(
        &mut self,
        now: Instant,
        name: String,
        metadata: String,
    ) -> Result<AdminOutput, Failure> {
        if self.draining {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down",
            ));
        }
        let id = room_id(&name);
        if self.rooms.contains_key(&id) {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                format!("room `{name}` exists already"),
            ));
        }
        if self.rooms.len() >= self.settings.max_rooms {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "this node holds its maximum of {} rooms (`rooms.max_rooms`)",
                    self.settings.max_rooms
                ),
            ));
        }
        let mut room = Room::opened(id.clone(), Persistence::Kept, now);
        room.metadata = metadata;
        let summary = self.room_summary(&room);
        self.rooms.insert(id.clone(), room);
        self.record(
            wall(self.epoch, now),
            Happening::RoomStarted { room: id.clone() },
        );
        self.mark_space(&id);
        Ok(AdminOutput::Room(summary))
    }

    /// Everyone in the room hears `call:ended` (`terminated`) and leaves it; the room goes.
    fn delete_room(&mut self, now: Instant, name: &str) -> Result<AdminOutput, Failure> {
        let id = room_id(name);
        let Some(room) = self.rooms.get(&id) else {
            return Err(no_room(name));
        };
        let started_at = wall(self.epoch, room.created_at);
        let seats: Vec<(ConnectionId, UserId)> =
            room.seats().map(|(c, u)| (c, u.clone())).collect();
        let viewers: Vec<(ConnectionId, UserId)> =
            room.viewer_seats().map(|(c, u)| (c, u.clone())).collect();
        let ended = Arc::new(ServerEvent::CallEnded(CallEnded {
            call_id: id.clone(),
            reason: EndReason::Terminated,
        }));
        // Viewers hear it too (it ends their WHEP sessions), but leave unreported.
        for (conn, _) in seats.iter().chain(&viewers) {
            self.push(*conn, ended.clone());
        }
        self.rooms.remove(&id);
        for (conn, user) in seats.iter().chain(&viewers) {
            self.media.push_back(MediaCommand::Leave {
                space: id.clone(),
                conn: *conn,
                user: user.clone(),
            });
        }
        for (conn, _) in &viewers {
            if let Some(c) = self.connections.get_mut(conn) {
                c.viewing = None;
            }
        }
        let mut users: Vec<&UserId> = seats.iter().map(|(_, u)| u).collect();
        users.sort();
        users.dedup();
        let at = wall(self.epoch, now);
        for user in &users {
            self.record(
                at,
                Happening::ParticipantLeft {
                    space: id.clone(),
                    user: (*user).clone(),
                    reason: LeaveReason::Removed,
                },
            );
        }
        self.record(
            at,
            Happening::RoomFinished {
                room: id.clone(),
                started_at,
            },
        );
        for user in users {
            if let Some(u) = self.users.get_mut(user) {
                u.rooms.remove(&id);
            }
            self.mark_user(user);
            self.forget_if_idle(user);
        }
        self.mark_space(&id);
        Ok(AdminOutput::Delivered(seats.len() + viewers.len()))
    }

    fn participants(&self, now: Instant, space: &CallId) -> Result<AdminOutput, Failure> {
        let wall_of = |at: Instant| super::rfc3339(wall(self.epoch, at));
        if let Some(room) = self.rooms.get(space) {
            let list = room
                .members
                .iter()
                .map(|(user, devices)| ParticipantInfo {
                    user_id: user.to_string(),
                    name: self.name_of(user),
                    kind: ParticipantKind::Participant,
                    state: "joined".into(),
                    metadata: room
                        .participant_metadata
                        .get(user)
                        .cloned()
                        .unwrap_or_default(),
                    connections: devices
                        .iter()
                        .map(|(c, at)| self.connection_info(*c, wall_of(*at)))
                        .collect(),
                    tracks: Vec::new(),
                })
                .chain(self.viewers_of(room))
                .collect();
            return Ok(AdminOutput::Participants(list));
        }
        let summary = self.call_summary(now, space).ok_or_else(no_such_call)?;
        Ok(AdminOutput::Participants(summary.participants))
    }

    fn remove_participant(
        &mut self,
        now: Instant,
        space: &CallId,
        user: &UserId,
    ) -> Result<AdminOutput, Failure> {
        if let Some(room) = self.rooms.get(space) {
            let conns: Vec<ConnectionId> = room
                .members
                .get(user)
                .map(|d| d.keys().copied().collect())
                .unwrap_or_default();
            let viewers: Vec<ConnectionId> = room
                .viewer_seats()
                .filter(|(_, u)| *u == user)
                .map(|(c, _)| c)
                .collect();
            if conns.is_empty() && viewers.is_empty() {
                return Err(no_participant(user));
            }
            let removed = Arc::new(ServerEvent::CallEnded(CallEnded {
                call_id: space.clone(),
                reason: EndReason::Removed,
            }));
            for conn in conns.iter().chain(&viewers) {
                self.push(*conn, removed.clone());
            }
            for conn in &conns {
                self.leave_room_id(now, user, *conn, space, LeaveReason::Removed);
            }
            // A removed viewer leaves unannounced, as it came.
            for conn in &viewers {
                self.unview_room(now, *conn, space);
            }
            return Ok(AdminOutput::Delivered(conns.len() + viewers.len()));
        }
        let devices = match self.calls.get(space) {
            None => return Err(no_such_call()),
            Some(e) => match e.call.members.get(user) {
                None => return Err(no_participant(user)),
                Some(m) => m.devices.len(),
            },
        };
        self.with_call(
            now,
            Cause::Admin {
                removed: Some(user),
            },
            space,
            |call, ctx| call.remove(user, ctx),
        )?;
        Ok(AdminOutput::Delivered(devices))
    }

    /// Queues `event` for the room's connections (only those of `to`, when given); returns how
    /// many.
    fn tell_room(&mut self, id: &CallId, to: Option<&[UserId]>, event: ServerEvent) -> usize {
        let Some(room) = self.rooms.get(id) else {
            return 0;
        };
        let targets: Vec<ConnectionId> = room
            .seats()
            .filter(|(_, u)| to.is_none_or(|to| to.contains(u)))
            .map(|(c, _)| c)
            .collect();
        let event = Arc::new(event);
        for conn in &targets {
            self.push(*conn, event.clone());
        }
        self.mark_space(id);
        targets.len()
    }

    fn room_summary(&self, room: &Room) -> RoomSummary {
        let name = room
            .id
            .as_str()
            .strip_prefix("room:")
            .unwrap_or(room.id.as_str());
        RoomSummary {
            name: name.to_owned(),
            id: room.id.to_string(),
            participants: room.members.len(),
            connections: room.devices().count(),
            viewers: room.viewers.len(),
            metadata: room.metadata.clone(),
            kept: room.persistence == Persistence::Kept,
            created_at: super::rfc3339(wall(self.epoch, room.created_at)),
            node: self.settings.node.to_string(),
        }
    }

    fn call_summary(&self, now: Instant, id: &CallId) -> Option<CallSummary> {
        let call = &self.calls.get(id)?.call;
        if call.is_ended() {
            return None;
        }
        let started = call
            .end_deadline
            .checked_sub(self.settings.rules.max_duration)
            .unwrap_or(now);
        let participants = call
            .members
            .iter()
            .map(|(user, m)| ParticipantInfo {
                user_id: user.to_string(),
                name: self.name_of(user),
                kind: ParticipantKind::Participant,
                state: member_state(m.state).into(),
                metadata: String::new(),
                connections: m
                    .devices
                    .iter()
                    .map(|(c, at)| self.connection_info(*c, super::rfc3339(wall(self.epoch, *at))))
                    .collect(),
                tracks: Vec::new(),
            })
            .collect();
        Some(CallSummary {
            call_id: id.to_string(),
            conversation_id: call.conversation_id.to_string(),
            call_type: json_word(&call.call_type),
            mode: json_word(&call.mode),
            phase: match call.phase {
                super::call::Phase::Ringing => "ringing",
                _ => "active",
            }
            .into(),
            initiator: call.initiator.to_string(),
            started_at: super::rfc3339(wall(self.epoch, started)),
            participants,
            node: self.settings.node.to_string(),
        })
    }

    /// Room `room`'s viewers, one entry per user with their viewing connections.
    fn viewers_of<'a>(&'a self, room: &'a Room) -> impl Iterator<Item = ParticipantInfo> + 'a {
        let mut by_user: BTreeMap<&UserId, Vec<ConnectionInfo>> = BTreeMap::new();
        for (conn, viewer) in &room.viewers {
            let joined_at = super::rfc3339(wall(self.epoch, viewer.joined_at));
            by_user
                .entry(&viewer.user)
                .or_default()
                .push(self.connection_info(*conn, joined_at));
        }
        by_user
            .into_iter()
            .map(|(user, connections)| ParticipantInfo {
                user_id: user.to_string(),
                name: self.name_of(user),
                kind: ParticipantKind::Viewer,
                state: "joined".into(),
                metadata: String::new(),
                connections,
                tracks: Vec::new(),
            })
    }

    fn connection_info(&self, conn: ConnectionId, joined_at: String) -> ConnectionInfo {
        let node = match self.connections.get(&conn).map(|c| &c.home) {
            Some(Home::Node(node)) => node.to_string(),
            _ => self.settings.node.to_string(),
        };
        ConnectionInfo {
            id: conn.0,
            node,
            joined_at,
        }
    }

    fn name_of(&self, user: &UserId) -> String {
        self.users
            .get(user)
            .map_or_else(|| user.to_string(), |u| u.name.clone())
    }
}

fn member_state(state: MemberState) -> &'static str {
    match state {
        MemberState::Ringing => "ringing",
        MemberState::Declined => "declined",
        MemberState::Missed => "missed",
        MemberState::Joined => "joined",
        MemberState::Reconnecting { .. } => "reconnecting",
        MemberState::Left => "left",
    }
}

/// A unit enum's serde name (`audio`, `sfu`, ...).
fn json_word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

fn no_room(name: &str) -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        format!("no room `{name}` on this node"),
    )
}

fn no_participant(user: &UserId) -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        format!("`{user}` is not a participant"),
    )
}
