//! The hub's side of a cluster (ADR 0060).
//!
//! A clustered hub holds its own connections and presence, and exactly the calls and rooms its
//! node owns. Connections homed on other nodes that act in those spaces are **guests**: they sit
//! in calls and rooms like any connection, but presence ignores them (their own node keeps their
//! user's presence) and the driver relays what the hub delivers to them.
//!
//! Besides deliveries, a clustered hub produces [`ClusterNotice`]s for the other nodes: events
//! for a user's devices elsewhere, presence events, the channels it needs to listen to, and
//! state to write behind (snapshots of its spaces, users' call index, presence records). A solo
//! hub produces none.
//!
//! Lifecycle of a guest: [`Hub::attach_guest`] (on its first request, or when its node says it
//! connected while its user is rung here) → events and media like a local connection →
//! [`Hub::disconnect`] (its node says it left, or [`Hub::forget_node`] when its node died).

use super::snapshot::{Clock, Seat, SeatInfo, SpaceSnapshot};
use super::{CallEntry, Conn, Hub, User, room::Room};
use crate::auth::Identity;
use crate::cluster::{Interest, Involvement, MoveReason, NodeId, Seated, StateWrite, Topology};
use crate::media::MediaCommand;
use protocol::{CallId, CallMode, ConnectionId, MediaMoved, PresenceStatus, ServerEvent, UserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where a connection's socket is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Home {
    Here,
    /// A guest from another node.
    Node(NodeId),
}

/// What the device directory says about a user's devices on other nodes, when one of theirs
/// connects or disconnects here.
#[derive(Clone, Debug, PartialEq)]
pub enum Elsewhere {
    /// None: this device is the user's first (on connect) or last (on disconnect) anywhere.
    Nowhere,
    /// The user has devices on other nodes; on connect, their presence as last recorded.
    Online(Option<PresenceRecord>),
}

/// A user's presence as written for other nodes to start from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceRecord {
    pub status: PresenceStatus,
    pub text: Option<String>,
    pub manual: bool,
}

/// What other nodes must hear; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterNotice {
    /// `event` for every device of `user` on other nodes, but `except`.
    ToDevices {
        user: UserId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    },
    /// A presence event of `user`, for the audience other nodes know.
    Presence {
        user: UserId,
        event: Arc<ServerEvent>,
    },
    Listen(Interest),
    Unlisten(Interest),
    Write(StateWrite),
}

/// How a presence lookup came out for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Answered here: connected here, hidden from the viewer, or last seen here.
    Here,
    /// Visible to the viewer but not connected here: ask the shared record.
    Elsewhere,
}

/// What adopting a space changed, for the router to tell other nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Guests kept in the space, by home node: their nodes must learn the new owner.
    pub guests: BTreeMap<NodeId, Vec<ConnectionId>>,
}

/// Which channels the node listens to for one user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Listening {
    devices: bool,
    presence: bool,
}

impl Hub {
    /// Registers a connection homed on `home` that acts in a space owned here (a no-op when it
    /// is registered already).
    pub fn attach_guest(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        identity: &Identity,
        home: NodeId,
    ) {
        if self.connections.contains_key(&conn) {
            return;
        }
        self.connections.insert(
            conn,
            Conn {
                user: identity.user_id.clone(),
                name: identity.name.clone(),
                grants: identity.grants.clone(),
                contacts: identity.contacts.clone(),
                watching: HashSet::new(),
                home: Home::Node(home),
                viewing: None,
            },
        );
        self.users
            .entry(identity.user_id.clone())
            .or_insert_with(|| User::offline(identity.name.clone(), now));
    }

    /// A device of a user involved in calls here connected on `home`: it rings for the calls
    /// that ring its user, and may resume those its user is reconnecting to.
    pub fn guest_arrived(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        identity: &Identity,
        home: NodeId,
    ) {
        self.attach_guest(now, conn, identity, home);
        self.ring_new_device(now, conn, &identity.user_id);
    }

    /// Forgets every guest homed on `node` (it died): as if each had disconnected.
    pub fn forget_node(&mut self, now: Instant, node: &NodeId) {
        let gone: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.home == Home::Node(node.clone()))
            .map(|(id, _)| *id)
            .collect();
        for conn in gone {
            self.disconnect(now, conn);
        }
    }

    /// Queues `event` for `user`'s devices on this node, but `except`: what another node fanned
    /// out to every device of the user.
    pub fn deliver_to_local_devices(
        &mut self,
        user: &UserId,
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        let targets: Vec<ConnectionId> = self
            .devices_of(user)
            .filter(|c| Some(*c) != except)
            .collect();
        for conn in targets {
            self.push(conn, event.clone());
        }
    }

    /// A presence event of `user` from another node: delivered to the audience this node knows
    /// (its watchers, the devices in spaces it owns, and, for `presence:changed`, the user's own
    /// devices here, whose record follows the change).
    pub fn apply_remote_presence(&mut self, user: &UserId, event: Arc<ServerEvent>) {
        let mut targets = self.audience(user);
        if let ServerEvent::PresenceChanged(p) = &*event
            && let Some(u) = self.users.get_mut(user)
            && !u.connections.is_empty()
        {
            u.status = p.status;
            u.text.clone_from(&p.text);
            u.manual = p.status != PresenceStatus::Online;
            targets.extend(u.connections.iter().copied());
        }
        for conn in targets {
            self.push(conn, event.clone());
        }
    }

    /// The next notice for other nodes; drain it after every mutation like `poll_output`.
    pub fn poll_cluster(&mut self) -> Option<ClusterNotice> {
        if self.cluster.is_empty() {
            self.flush_dirty();
        }
        self.cluster.pop_front()
    }

    /// The snapshot of a space owned here.
    pub fn snapshot(&self, space: &CallId) -> Option<SpaceSnapshot> {
        let clock = Clock { epoch: self.epoch };
        if let Some(room) = self.rooms.get(space) {
            return Some(SpaceSnapshot::of_room(room, &Seats { hub: self, clock }));
        }
        let entry = self.calls.get(space)?;
        let name = |u: &UserId| {
            self.users
                .get(u)
                .map_or_else(|| u.to_string(), |x| x.name.clone())
        };
        Some(SpaceSnapshot::of_call(
            &entry.call,
            &clock,
            &Seats { hub: self, clock },
            &name,
        ))
    }

    /// The presence of each of `users` as `viewer` may see it, and whether it was answered
    /// here or needs the shared record.
    pub fn presence_lookup(
        &self,
        now: Instant,
        viewer: &Identity,
        users: &[UserId],
    ) -> Vec<(protocol::Presence, Lookup)> {
        self.presence_of(now, viewer, users)
            .into_iter()
            .zip(users)
            .map(|(p, u)| {
                let here = self.users.get(u).is_some_and(|x| !x.connections.is_empty());
                let lookup = if !here && self.may_see(&viewer.user_id, &viewer.contacts, u) {
                    Lookup::Elsewhere
                } else {
                    Lookup::Here
                };
                (p, lookup)
            })
            .collect()
    }

    /// Spaces owned here.
    pub fn owned(&self) -> Vec<CallId> {
        self.calls
            .keys()
            .chain(self.rooms.keys())
            .cloned()
            .collect()
    }

    /// Devices connected here, by user.
    pub fn local_devices(&self) -> Vec<(ConnectionId, Identity)> {
        self.connections
            .iter()
            .filter(|(_, c)| c.home == Home::Here)
            .map(|(id, c)| {
                let identity = Identity {
                    user_id: c.user.clone(),
                    name: c.name.clone(),
                    grants: c.grants.clone(),
                    contacts: c.contacts.clone(),
                };
                (*id, identity)
            })
            .collect()
    }

    /// The presence record of a user connected here.
    pub fn presence_record(&self, user: &UserId) -> Option<PresenceRecord> {
        let u = self.users.get(user).filter(|u| !u.connections.is_empty())?;
        Some(PresenceRecord {
            status: u.status,
            text: u.text.clone(),
            manual: u.manual,
        })
    }

    /// Everything other nodes keep about this node's state, written again (Redis came back,
    /// possibly empty): the snapshots and call index of its spaces, its users' presence records.
    pub fn restate(&mut self) {
        if self.settings.topology != Topology::Clustered {
            return;
        }
        self.seats_written.clear();
        for space in self.owned() {
            self.dirty_spaces.insert(space);
        }
        let involved: Vec<(UserId, CallId)> = self
            .calls
            .values()
            .flat_map(|e| {
                e.call
                    .involved_users()
                    .map(|u| (u.clone(), e.call.id.clone()))
            })
            .collect();
        for (user, call) in involved {
            self.write(StateWrite::UserCall {
                user,
                call,
                involved: Involvement::Involved,
            });
        }
        let online: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, u)| !u.connections.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for user in online {
            self.write_presence(&user);
        }
    }

    /// Takes over a space from its snapshot: `previous` owned it and is gone (or going), so
    /// devices homed there are dropped; the others stay, guests here from now on. Devices in a
    /// space whose media went through the old owner's SFU are told `media:moved`.
    pub fn adopt(
        &mut self,
        now: Instant,
        snapshot: &SpaceSnapshot,
        previous: &NodeId,
        reason: MoveReason,
    ) -> Adopted {
        let id = snapshot.id().clone();
        if self.calls.contains_key(&id) || self.rooms.contains_key(&id) {
            return Adopted::default();
        }
        let clock = Clock { epoch: self.epoch };
        let mut adopted = Adopted::default();
        let mut kept: BTreeSet<ConnectionId> = BTreeSet::new();
        for seat in snapshot.seats() {
            if &seat.home == previous {
                continue;
            }
            if seat.home == self.settings.node {
                // A device of this node: still here, or gone since.
                if !self.connections.contains_key(&seat.conn) {
                    continue;
                }
            } else {
                let identity = Identity {
                    user_id: seat.user.clone(),
                    name: seat.name.clone(),
                    grants: seat.grants.clone(),
                    contacts: Default::default(),
                };
                self.attach_guest(now, seat.conn, &identity, seat.home.clone());
                adopted
                    .guests
                    .entry(seat.home.clone())
                    .or_default()
                    .push(seat.conn);
            }
            kept.insert(seat.conn);
        }
        let sfu = match snapshot {
            SpaceSnapshot::Room { seats, .. } => {
                let mut room =
                    Room::opened(id.clone(), super::room::Persistence::WhileOccupied, now);
                for seat in seats.iter().filter(|s| kept.contains(&s.conn)) {
                    room.members
                        .entry(seat.user.clone())
                        .or_default()
                        .insert(seat.conn, clock.instant(seat.joined_ms));
                    if let Some(u) = self.users.get_mut(&seat.user) {
                        u.rooms.insert(id.clone());
                    }
                }
                if room.is_empty() {
                    return adopted;
                }
                self.rooms.insert(id.clone(), room);
                true
            }
            SpaceSnapshot::Call(c) => {
                let grace_until = now + self.settings.rules.reconnect_grace;
                let call = c.restore(&clock, &|s: &Seat| kept.contains(&s.conn), grace_until);
                for user in call.members.keys() {
                    let name = c
                        .members
                        .iter()
                        .find(|m| &m.user == user)
                        .map_or_else(|| user.to_string(), |m| m.name.clone());
                    self.users
                        .entry(user.clone())
                        .or_insert_with(|| User::offline(name, now))
                        .calls
                        .insert(id.clone());
                }
                let sfu = call.mode == CallMode::Sfu;
                self.calls.insert(
                    id.clone(),
                    CallEntry {
                        scheduled: None,
                        // When it started (its end deadline is `max_duration` after) and was
                        // answered (the first invitee's device joined), as well as the snapshot
                        // tells; who was in it before the snapshot is not kept.
                        started: SystemTime::UNIX_EPOCH
                            + Duration::from_millis(c.end_deadline_ms)
                                .saturating_sub(self.settings.rules.max_duration),
                        answered: c.active.then(|| {
                            let first = c
                                .members
                                .iter()
                                .filter(|m| !m.initiator)
                                .flat_map(|m| m.devices.iter().map(|d| d.joined_ms))
                                .min()
                                .unwrap_or(c.end_deadline_ms);
                            SystemTime::UNIX_EPOCH + Duration::from_millis(first)
                        }),
                        seen: call
                            .members
                            .iter()
                            .filter(|(_, m)| m.is_present())
                            .map(|(u, _)| u.clone())
                            .collect(),
                        call,
                    },
                );
                self.metrics.calls_active.inc();
                self.reschedule(&id);
                sfu
            }
        };
        if sfu {
            let moved = Arc::new(ServerEvent::MediaMoved(MediaMoved {
                call_id: id.clone(),
                reason: reason.as_str().to_owned(),
            }));
            for conn in &kept {
                self.push(*conn, moved.clone());
            }
        }
        self.mark_space(&id);
        adopted
    }

    /// Forgets a space handed over to another node, without ending it: its participants carry
    /// on there. The local media server frees its seats.
    pub fn release(&mut self, space: &CallId) {
        let seats: Vec<(ConnectionId, UserId)> = if let Some(room) = self.rooms.remove(space) {
            self.end_viewing(space, &room);
            room.seats().map(|(c, u)| (c, u.clone())).collect()
        } else if let Some(entry) = self.remove_call(space) {
            self.metrics.calls_active.dec();
            entry.call.seats().map(|(c, u)| (c, u.clone())).collect()
        } else {
            return;
        };
        for (conn, user) in seats {
            self.media.push_back(MediaCommand::Leave {
                space: space.clone(),
                conn,
                user,
            });
        }
        let members: Vec<UserId> = self
            .users
            .iter()
            .filter(|(_, u)| u.calls.contains(space) || u.rooms.contains(space))
            .map(|(id, _)| id.clone())
            .collect();
        for user in members {
            if let Some(u) = self.users.get_mut(&user) {
                u.calls.remove(space);
                u.rooms.remove(space);
            }
            self.forget_if_idle(&user);
        }
        // Its snapshot, owner record and seats now belong to the new owner: write nothing.
        self.dirty_spaces.remove(space);
        self.seats_written.remove(space);
    }

    /// Room `id`'s viewers, when the room goes to another node: their media is in this node's
    /// SFU and their seats are not in the room's snapshot, so their sessions end (`call:ended`,
    /// `terminated`); a WHEP client POSTs again, and is sent to the new owner.
    fn end_viewing(&mut self, id: &CallId, room: &Room) {
        let ended = Arc::new(ServerEvent::CallEnded(protocol::CallEnded {
            call_id: id.clone(),
            reason: protocol::EndReason::Terminated,
        }));
        for (conn, user) in room.viewer_seats() {
            self.push(conn, ended.clone());
            self.media.push_back(MediaCommand::Leave {
                space: id.clone(),
                conn,
                user: user.clone(),
            });
            if let Some(c) = self.connections.get_mut(&conn) {
                c.viewing = None;
            }
        }
    }

    // ---- bookkeeping -------------------------------------------------------------------

    pub(super) fn clustered(&self) -> bool {
        self.settings.topology == Topology::Clustered
    }

    /// Something other nodes snapshot about `space` changed.
    pub(super) fn mark_space(&mut self, space: &CallId) {
        if self.clustered() {
            self.dirty_spaces.insert(space.clone());
        }
    }

    /// Something that decides which channels this node listens to for `user` changed.
    pub(super) fn mark_user(&mut self, user: &UserId) {
        if self.clustered() {
            self.dirty_users.insert(user.clone());
        }
    }

    pub(super) fn notify(&mut self, notice: ClusterNotice) {
        if self.clustered() {
            self.cluster.push_back(notice);
        }
    }

    pub(super) fn write(&mut self, write: StateWrite) {
        self.notify(ClusterNotice::Write(write));
    }

    /// Writes who joined or left the call `space` since its seats were last written (all of
    /// them out once it ended here).
    fn write_seats(&mut self, space: &CallId) {
        let now: BTreeSet<UserId> = self
            .calls
            .get(space)
            .map(|e| {
                e.call
                    .members
                    .iter()
                    .filter(|(_, m)| m.is_present())
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default();
        let before = self.seats_written.remove(space).unwrap_or_default();
        for user in now.difference(&before) {
            self.cluster
                .push_back(ClusterNotice::Write(StateWrite::Seat {
                    user: user.clone(),
                    call: space.clone(),
                    seated: Seated::In,
                }));
        }
        for user in before.difference(&now) {
            self.cluster
                .push_back(ClusterNotice::Write(StateWrite::Seat {
                    user: user.clone(),
                    call: space.clone(),
                    seated: Seated::Out,
                }));
        }
        if !now.is_empty() {
            self.seats_written.insert(space.clone(), now);
        }
    }

    pub(super) fn write_presence(&mut self, user: &UserId) {
        if let Some(record) = self.presence_record(user) {
            let json = serde_json::to_string(&record).unwrap_or_default();
            self.write(StateWrite::Presence {
                user: user.clone(),
                json,
            });
        }
    }

    /// A user record with no connection, call or room left goes.
    pub(super) fn forget_if_idle(&mut self, user: &UserId) {
        if let Some(u) = self.users.get(user)
            && u.calls.is_empty()
            && u.rooms.is_empty()
            && u.connections.is_empty()
        {
            self.remove_user(user);
        }
        self.mark_user(user);
    }

    fn flush_dirty(&mut self) {
        for space in std::mem::take(&mut self.dirty_spaces) {
            self.write_seats(&space);
            let write = match self.snapshot(&space) {
                Some(snapshot) => StateWrite::Snapshot {
                    space,
                    json: serde_json::to_string(&snapshot).unwrap_or_default(),
                },
                None => StateWrite::Released { space },
            };
            self.cluster.push_back(ClusterNotice::Write(write));
        }
        for user in std::mem::take(&mut self.dirty_users) {
            let now = Listening {
                devices: self
                    .users
                    .get(&user)
                    .is_some_and(|u| !u.connections.is_empty()),
                presence: self.watchers.contains_key(&user)
                    || self.users.get(&user).is_some_and(|u| {
                        !u.connections.is_empty() || !u.calls.is_empty() || !u.rooms.is_empty()
                    }),
            };
            let before = self.listening.get(&user).copied().unwrap_or_default();
            let changes = [
                (before.devices, now.devices, Interest::Devices(user.clone())),
                (
                    before.presence,
                    now.presence,
                    Interest::Presence(user.clone()),
                ),
            ];
            for (was, is, interest) in changes {
                match (was, is) {
                    (false, true) => self.cluster.push_back(ClusterNotice::Listen(interest)),
                    (true, false) => self.cluster.push_back(ClusterNotice::Unlisten(interest)),
                    _ => {}
                }
            }
            if now == Listening::default() {
                self.listening.remove(&user);
            } else {
                self.listening.insert(user, now);
            }
        }
    }
}

/// Seats as the hub knows them: a guest's home, or this node.
struct Seats<'a> {
    hub: &'a Hub,
    clock: Clock,
}

impl SeatInfo for Seats<'_> {
    fn seat(&self, conn: ConnectionId, user: &UserId, joined: Instant) -> Seat {
        let c = self.hub.connections.get(&conn);
        Seat {
            conn,
            home: match c.map(|c| &c.home) {
                Some(Home::Node(n)) => n.clone(),
                _ => self.hub.settings.node.clone(),
            },
            user: user.clone(),
            name: c.map_or_else(|| user.to_string(), |c| c.name.clone()),
            grants: c.map(|c| c.grants.clone()).unwrap_or_default(),
            joined_ms: self.clock.millis(joined),
        }
    }
}
