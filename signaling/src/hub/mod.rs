//! The signaling core: sessions, presence and calls, sans-IO.
//!
//! [`Hub`] owns every piece of signaling state of one process. It never touches a socket or a
//! clock: callers pass `now`, feed it connections, disconnections and typed client events, and
//! then drain [`Hub::poll_output`] for the server events to deliver. [`Hub::poll_timeout`] says
//! when [`Hub::handle_timeout`] must next run (ring timeouts, reconnect grace, maximum call
//! duration, idle → away). The tokio driver in [`crate::driver`] is the only owner in production;
//! tests own one directly and move time forward by hand.
//!
//! Lifecycle of a connection: [`Hub::connect`] (after authentication) → any number of
//! [`Hub::handle`] → [`Hub::disconnect`]. Every mutation must be followed by draining
//! `poll_output` completely.

pub mod admin;
#[cfg(any(test, feature = "fuzzing"))]
mod audit;
pub mod call;
pub mod cluster;
mod invitation;
mod presence;
pub use presence::rfc3339;
mod recent;
pub mod room;
pub mod snapshot;
mod spaces;

use crate::auth::{Contacts, Grants, Identity};
use crate::cluster::{Involvement, NodeId, StateWrite, Topology};
use crate::ice::IceServers;
use crate::lifecycle::{Happening, LeaveReason, Lifecycle};
use crate::metrics::Metrics;
use call::{Audience, Call, CallRules, Context, MemberState, Notice};
use cluster::{ClusterNotice, Elsewhere, Home, Listening};
use protocol::{
    CallId, ClientEvent, ConnectionId, ErrorCode, Failure, InitiateAck, JoinAck, PresenceStatus,
    ServerEvent, ServerShutdown, UserId,
};
use serde_json::{Value, json};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Limits and timings the hub enforces, from configuration.
#[derive(Clone, Debug)]
pub struct HubSettings {
    pub rules: CallRules,
    pub max_participants: usize,
    /// Calls a user may have started, accepted or joined and not yet left.
    pub max_calls_per_user: usize,
    pub max_presence_subscriptions: usize,
    pub away_after: Duration,
    /// Invitations one user may receive per minute (all callers together), and at once.
    pub invites_per_minute: u32,
    pub invite_burst: u32,
    pub visibility: config::PresenceVisibility,
    /// Offline users whose `lastSeenAt` is remembered.
    pub last_seen_capacity: usize,
    /// `room:join` creates missing rooms (admins always may).
    pub rooms_auto_create: bool,
    pub max_room_participants: usize,
    pub max_rooms: usize,
    /// Whether other nodes exist: only a clustered hub produces [`ClusterNotice`]s.
    pub topology: Topology,
    /// This node, as it names itself in snapshots.
    pub node: NodeId,
}

impl HubSettings {
    pub fn from_config(c: &config::Config) -> Self {
        Self {
            rules: CallRules {
                ring_timeout: c.calls.ring_timeout.get(),
                max_duration: c.calls.max_duration.get(),
                reconnect_grace: c.calls.reconnect_grace.get(),
                p2p_max: c.calls.p2p_max_participants,
            },
            max_participants: c.calls.max_participants,
            max_calls_per_user: c.limits.max_calls_per_user,
            max_presence_subscriptions: c.limits.max_presence_subscriptions,
            away_after: c.presence.away_after.get(),
            invites_per_minute: c.limits.invites_per_minute,
            invite_burst: c.limits.invite_burst,
            visibility: c.presence.visibility,
            last_seen_capacity: c.presence.last_seen_capacity,
            rooms_auto_create: c.rooms.auto_create(c.server.dev),
            max_room_participants: c.rooms.max_participants,
            max_rooms: c.rooms.max_rooms,
            topology: if c.cluster.enabled() {
                Topology::Clustered
            } else {
                Topology::Solo
            },
            node: NodeId::new("local"),
        }
    }
}

/// One server event for one connection. The event is shared between all its recipients.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub to: ConnectionId,
    pub event: Arc<ServerEvent>,
}

/// Counts of what the hub holds, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    pub connections: usize,
    pub online_users: usize,
    /// Users held in memory: online, or offline but still in a call's grace period.
    pub user_records: usize,
    pub calls: usize,
    pub rooms: usize,
    pub timers: usize,
    /// Offline users whose `lastSeenAt` is remembered.
    pub last_seen: usize,
    /// Users whose invitation budget is being tracked.
    pub invited_users: usize,
}

/// The signaling state of one process; see the module docs.
pub struct Hub {
    settings: HubSettings,
    ice: IceServers,
    metrics: Metrics,
    /// Wall-clock time at `epoch`, so wall times derive from the `now` callers pass.
    epoch: (Instant, SystemTime),
    connections: HashMap<ConnectionId, Conn>,
    users: HashMap<UserId, User>,
    calls: HashMap<CallId, CallEntry>,
    rooms: HashMap<CallId, room::Room>,
    /// Media commands issued by state changes (seats that ended, mute toggles), for the
    /// driver to pass on in order; see [`crate::media`].
    media: VecDeque<crate::media::MediaCommand>,
    /// Explicit `presence:subscribe` watchers, by watched user.
    watchers: HashMap<UserId, HashSet<ConnectionId>>,
    /// When users who are no longer connected were last seen, by [`Hub::user_key`]: bounded,
    /// as every user id that ever connected would otherwise stay here.
    last_seen: recent::Recent<u64, SystemTime>,
    /// How often each user was invited lately.
    invitations: invitation::Invitations,
    /// Keys the hashes of user ids in `last_seen` and `invitations` (random per process, so
    /// nobody can choose ids that collide).
    user_keys: RandomState,
    /// Queued timers, earliest first. Exact: a call or user record that goes takes its timer
    /// with it, so what is queued is bounded by what is live (a lazily deleted heap held every
    /// call longer than the ring timeout until its `max_duration` deadline, an hour later;
    /// ADR 0071).
    timers: BTreeSet<(Instant, Timer)>,
    outputs: VecDeque<Delivery>,
    /// Lifecycle events for the application's backend (webhooks), drained by the driver before
    /// `outputs`; see [`crate::lifecycle`].
    lifecycle: VecDeque<Lifecycle>,
    draining: bool,
    /// What other nodes must hear (clustered only); see [`cluster`].
    cluster: VecDeque<ClusterNotice>,
    /// Spaces whose snapshot must be written again (clustered only).
    dirty_spaces: BTreeSet<CallId>,
    /// Users whose channels may have to change (clustered only).
    dirty_users: BTreeSet<UserId>,
    /// The channels this node listens to, per user (clustered only).
    listening: HashMap<UserId, Listening>,
    /// Per call owned here, the users last written as taking part in it (clustered only): the
    /// cluster-wide call quota counts them.
    seats_written: HashMap<CallId, BTreeSet<UserId>>,
}

/// What ran a call transition, for the reasons its lifecycle events give.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cause<'a> {
    /// An event of this user: a hang-up by them is `left`.
    User(&'a UserId),
    /// A timer (ring timeout, grace, maximum duration).
    Timer,
    /// The server API; the user it removed, if any, leaves as `removed`.
    Admin { removed: Option<&'a UserId> },
}

struct Conn {
    user: UserId,
    name: String,
    grants: Grants,
    /// The token's `contacts`: users whose presence this connection may see.
    contacts: Contacts,
    /// Users this connection watches through `presence:subscribe`.
    watching: HashSet<UserId>,
    /// Here, or a guest from another node (which has no presence here).
    home: Home,
    /// The room this connection holds a viewer's seat in ([`room`]'s "Viewers"); such a
    /// connection takes no other seat.
    viewing: Option<CallId>,
}

struct User {
    name: String,
    connections: BTreeSet<ConnectionId>,
    status: PresenceStatus,
    /// Set when the user chose their status; auto-away and activity leave it alone.
    manual: bool,
    text: Option<String>,
    last_activity: Instant,
    /// When the queued idle check is due; one is enough, as it re-queues itself from
    /// `last_activity`.
    away_due: Option<Instant>,
    /// Calls not yet ended in which the user is a member.
    calls: HashSet<CallId>,
    /// Rooms the user is in.
    rooms: HashSet<CallId>,
}

impl User {
    /// A record for a user with no connection yet (it comes online in `connect`).
    fn offline(name: String, now: Instant) -> Self {
        Self {
            name,
            connections: BTreeSet::new(),
            status: PresenceStatus::Online,
            manual: false,
            text: None,
            last_activity: now,
            away_due: None,
            calls: HashSet::new(),
            rooms: HashSet::new(),
        }
    }
}

struct CallEntry {
    call: Call,
    /// The deadline its timer is queued for (exactly one queued timer while `Some`).
    scheduled: Option<Instant>,
    /// When it started ringing and was answered, and who was ever in it: what `call.ended`
    /// reports (see [`crate::lifecycle`]).
    started: SystemTime,
    answered: Option<SystemTime>,
    seen: BTreeSet<UserId>,
}

/// A call's phase and who is present (with whether they are reconnecting), to tell what a
/// transition changed.
struct CallView {
    phase: call::Phase,
    present: BTreeMap<UserId, bool>,
}

impl CallView {
    fn of(call: &Call) -> Self {
        let present = if call.is_ended() {
            BTreeMap::new()
        } else {
            call.members
                .iter()
                .filter(|(_, m)| m.is_present())
                .map(|(u, m)| {
                    let reconnecting = matches!(m.state, MemberState::Reconnecting { .. });
                    (u.clone(), reconnecting)
                })
                .collect()
        };
        Self {
            phase: call.phase,
            present,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Call(CallId),
    Away(UserId),
}

impl Hub {
    pub fn new(settings: HubSettings, ice: IceServers, metrics: Metrics, now: Instant) -> Self {
        Self {
            ice,
            metrics,
            epoch: (now, SystemTime::now()),
            connections: HashMap::new(),
            users: HashMap::new(),
            calls: HashMap::new(),
            rooms: HashMap::new(),
            media: VecDeque::new(),
            watchers: HashMap::new(),
            last_seen: recent::Recent::new(settings.last_seen_capacity),
            invitations: invitation::Invitations::new(
                settings.invites_per_minute,
                settings.invite_burst,
                invitation::MAX_TRACKED_TARGETS,
            ),
            user_keys: RandomState::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            lifecycle: VecDeque::new(),
            draining: false,
            cluster: VecDeque::new(),
            dirty_spaces: BTreeSet::new(),
            dirty_users: BTreeSet::new(),
            listening: HashMap::new(),
            seats_written: HashMap::new(),
            settings,
        }
    }

    /// Registers an authenticated connection. A user's first connection brings them online;
    /// a device that connects while the user is being rung, or is reconnecting to a call, is
    /// told so at once.
    pub fn connect(&mut self, now: Instant, conn: ConnectionId, identity: &Identity) {
        self.connect_with(now, conn, identity, Elsewhere::Nowhere);
    }

    /// [`Hub::connect`], knowing whether the user has devices on other nodes: then they are
    /// online already, with the presence `elsewhere` carries.
    pub fn connect_with(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        identity: &Identity,
        elsewhere: Elsewhere,
    ) {
        let user_id = identity.user_id.clone();
        self.connections.insert(
            conn,
            Conn {
                user: user_id.clone(),
                name: identity.name.clone(),
                grants: identity.grants.clone(),
                contacts: identity.contacts.clone(),
                watching: HashSet::new(),
                home: Home::Here,
                viewing: None,
            },
        );
        // A user record may outlive the user's connections while they are still in a call.
        let user = self
            .users
            .entry(user_id.clone())
            .or_insert_with(|| User::offline(identity.name.clone(), now));
        let first = user.connections.is_empty();
        user.name.clone_from(&identity.name);
        user.connections.insert(conn);
        user.last_activity = now;
        let announce = first && elsewhere == Elsewhere::Nowhere;
        if first {
            user.status = PresenceStatus::Online;
            user.manual = false;
            user.text = None;
            if let Elsewhere::Online(Some(record)) = &elsewhere {
                user.status = record.status;
                user.manual = record.manual;
                user.text.clone_from(&record.text);
            }
            self.metrics.sessions.inc();
            self.arm_away(now, &user_id);
        }
        self.last_seen.remove(&self.user_key(&user_id));
        if announce {
            self.announce_online(&user_id);
        }
        self.mark_user(&user_id);
        self.ring_new_device(now, conn, &user_id);
    }

    /// Calls the user is part of: the new device rings too, or may resume.
    fn ring_new_device(&mut self, now: Instant, conn: ConnectionId, user_id: &UserId) {
        let mut pending = Vec::new();
        {
            let dir = Dir::new(&self.users, None, wall(self.epoch, now));
            let ctx = Context::new(now, self.settings.rules, &dir);
            for id in self.users.get(user_id).into_iter().flat_map(|u| &u.calls) {
                let Some(entry) = self.calls.get(id) else {
                    continue;
                };
                match entry.call.members.get(user_id).map(|m| m.state) {
                    Some(MemberState::Ringing) => pending.push(entry.call.incoming(&ctx)),
                    Some(MemberState::Reconnecting { .. }) => {
                        pending.push(entry.call.resumable(&ctx))
                    }
                    _ => {}
                }
            }
        }
        for event in pending {
            self.push(conn, Arc::new(event));
        }
    }

    /// Forgets a connection. The user's calls keep their place for the reconnect grace period;
    /// a user's last connection takes them offline.
    pub fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        self.disconnect_with(now, conn, Elsewhere::Nowhere);
    }

    /// [`Hub::disconnect`], knowing whether the user still has devices on other nodes: then
    /// they stay online there and nobody is told they went offline.
    pub fn disconnect_with(&mut self, now: Instant, conn: ConnectionId, elsewhere: Elsewhere) {
        let Some(c) = self.connections.remove(&conn) else {
            return;
        };
        for watched in &c.watching {
            if let Some(set) = self.watchers.get_mut(watched) {
                set.remove(&conn);
                if set.is_empty() {
                    self.watchers.remove(watched);
                }
                self.mark_user(watched);
            }
        }
        let Some(user) = self.users.get_mut(&c.user) else {
            return;
        };
        let local = user.connections.remove(&conn);
        let calls: Vec<CallId> = user.calls.iter().cloned().collect();
        let gone = local && user.connections.is_empty();
        for id in calls {
            let grace = self.settings.rules.reconnect_grace;
            if let Some(entry) = self.calls.get_mut(&id)
                && entry.call.has_device(&c.user, conn)
            {
                entry.call.device_lost(&c.user, conn, now + grace);
                self.media.push_back(crate::media::MediaCommand::Leave {
                    space: id.clone(),
                    conn,
                    user: c.user.clone(),
                });
                self.mark_space(&id);
            }
            self.reschedule(&id);
        }
        self.leave_rooms(now, &c.user, conn);
        if let Some(room) = &c.viewing {
            self.unview_room(now, conn, room);
        }
        if gone {
            match elsewhere {
                Elsewhere::Nowhere => self.go_offline(now, &c.user),
                // Online on another node: presence there is unchanged; only the record here goes.
                Elsewhere::Online(_) => {
                    self.metrics.sessions.dec();
                    self.forget_if_idle(&c.user);
                }
            }
        }
        self.mark_user(&c.user);
    }

    /// Handles one client event from `conn` and returns the ack payload.
    pub fn handle(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        event: ClientEvent,
    ) -> Result<Value, Failure> {
        self.handle_placed(now, conn, event, None)
    }

    /// [`Hub::handle`], with the id a new call must take: the node that placed the call here
    /// chose it (a solo hub draws its own).
    pub fn handle_placed(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        event: ClientEvent,
        placed: Option<CallId>,
    ) -> Result<Value, Failure> {
        let user_id = self
            .connections
            .get(&conn)
            .map(|c| c.user.clone())
            .ok_or_else(|| Failure::new(ErrorCode::InvalidState, "connection is not registered"))?;
        self.touch(now, &user_id);
        match event {
            ClientEvent::CallInitiate(init) => self.initiate(now, conn, &user_id, init, placed),
            ClientEvent::CallAccept(r) => {
                self.check_call_quota(&user_id, Some(&r.call_id))?;
                self.with_call(now, Cause::User(&user_id), &r.call_id, |call, ctx| {
                    call.accept(&user_id, conn, ctx)
                })?;
                Ok(self.join_ack(now, &r.call_id, &user_id))
            }
            ClientEvent::CallJoin(r) => {
                self.check_call_quota(&user_id, Some(&r.call_id))?;
                self.with_call(now, Cause::User(&user_id), &r.call_id, |call, ctx| {
                    call.join(&user_id, conn, ctx)
                })?;
                Ok(self.join_ack(now, &r.call_id, &user_id))
            }
            ClientEvent::CallRinging(r) => {
                self.with_call(now, Cause::User(&user_id), &r.call_id, |call, _| {
                    call.ringing(&user_id)
                })?;
                Ok(ok())
            }
            ClientEvent::CallReject(r) => {
                self.with_call(now, Cause::User(&user_id), &r.call_id, |call, ctx| {
                    call.reject(&user_id, ctx)
                })?;
                Ok(ok())
            }
            ClientEvent::CallEnd(r) => {
                self.with_call(now, Cause::User(&user_id), &r.call_id, |call, ctx| {
                    call.hang_up(&user_id, ctx)
                })?;
                Ok(ok())
            }
            ClientEvent::Offer(s) => self.relay(conn, &user_id, "offer", s),
            ClientEvent::Answer(s) => self.relay(conn, &user_id, "answer", s),
            ClientEvent::IceCandidate(s) => self.relay(conn, &user_id, "ice-candidate", s),
            ClientEvent::MediaToggle(m) => {
                let event = ServerEvent::MediaToggled(protocol::MediaToggled {
                    call_id: m.call_id.clone(),
                    user_id: user_id.clone(),
                    media_type: m.media_type,
                    enabled: m.enabled,
                });
                if self.rooms.contains_key(&m.call_id) {
                    self.announce_in_room(conn, &user_id, &m.call_id, event)?;
                } else {
                    self.with_call(now, Cause::User(&user_id), &m.call_id, |call, _| {
                        call.toggle_media(&user_id, conn, m.media_type, m.enabled)
                    })?;
                }
                self.note_media_toggle(conn, &m.call_id, m.media_type, m.enabled);
                Ok(ok())
            }
            ClientEvent::ScreenShareStart(r) => {
                self.share_screen(now, conn, &user_id, &r.call_id, true)
            }
            ClientEvent::ScreenShareStop(r) => {
                self.share_screen(now, conn, &user_id, &r.call_id, false)
            }
            ClientEvent::StatusUpdate(s) => self.update_status(now, conn, &user_id, s),
            ClientEvent::ActivityPing => Ok(ok()),
            ClientEvent::PresenceSubscribe(u) => self.subscribe(now, conn, u.user_ids),
            ClientEvent::PresenceUnsubscribe(u) => {
                self.unsubscribe(conn, &u.user_ids);
                Ok(ok())
            }
            ClientEvent::RoomJoin(r) => self.join_room(now, conn, &r.room),
            ClientEvent::RoomLeave(r) => self.leave_room(now, conn, &r.room),
            ClientEvent::TrackSubscribe(_)
            | ClientEvent::TrackUnsubscribe(_)
            | ClientEvent::TrackSettings(_)
            | ClientEvent::MediaBandwidth(_) => Err(Failure::new(
                ErrorCode::InvalidState,
                "this server forwards no media (no SFU configured)",
            )),
        }
    }

    /// Queues `server:shutdown` for every connection and refuses new calls from now on.
    pub fn shutdown(&mut self, reconnect_in: Duration) {
        self.draining = true;
        let event = Arc::new(ServerEvent::ServerShutdown(ServerShutdown {
            reconnect_in_ms: reconnect_in.as_millis() as u64,
        }));
        // Guests hear it from their own node, if it shuts down.
        let all: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.home == Home::Here)
            .map(|(id, _)| *id)
            .collect();
        for conn in all {
            self.push(conn, event.clone());
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            let Some((_, timer)) = self.timers.pop_first() else {
                break;
            };
            match timer {
                Timer::Call(id) => {
                    if let Some(entry) = self.calls.get_mut(&id) {
                        entry.scheduled = None;
                    }
                    let dir = Dir::new(&self.users, Some(&self.ice), wall(self.epoch, now));
                    let Some(entry) = self.calls.get_mut(&id) else {
                        continue;
                    };
                    let ctx = Context::new(now, self.settings.rules, &dir);
                    let before = seats(&entry.call);
                    let view = CallView::of(&entry.call);
                    let notices = entry.call.tick(&ctx);
                    self.note_call_change(now, &id, view, Cause::Timer);
                    self.deliver(&id, notices);
                    self.note_media_leaves(&id, before);
                    self.mark_space(&id);
                    self.reschedule(&id);
                }
                Timer::Away(user) => self.check_idle(now, &user),
            }
        }
    }

    /// When [`Hub::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next server event to deliver.
    pub fn poll_output(&mut self) -> Option<Delivery> {
        self.outputs.pop_front()
    }

    /// The next lifecycle event for the application's backend. The driver drains these before
    /// [`Hub::poll_output`], and stores them before it delivers anything; see
    /// [`crate::lifecycle`].
    pub fn poll_lifecycle(&mut self) -> Option<Lifecycle> {
        self.lifecycle.pop_front()
    }

    /// Queues a lifecycle event.
    pub(super) fn record(&mut self, at: SystemTime, what: Happening) {
        self.lifecycle.push_back(Lifecycle { at, what });
    }

    /// Records what a transition of call `id` changed since `before`: answered, joined, left,
    /// ended, for the reasons `cause` implies.
    fn note_call_change(&mut self, now: Instant, id: &CallId, before: CallView, cause: Cause<'_>) {
        let actor = match cause {
            Cause::User(user) => Some(user),
            Cause::Timer | Cause::Admin { .. } => None,
        };
        let at = wall(self.epoch, now);
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        let after = CallView::of(&entry.call);
        let mut happened = Vec::new();
        if before.phase == call::Phase::Ringing && entry.call.phase == call::Phase::Active {
            entry.answered = Some(at);
            let by = actor.cloned().or_else(|| {
                after
                    .present
                    .keys()
                    .find(|u| !before.present.contains_key(*u))
                    .cloned()
            });
            if let Some(by) = by {
                happened.push(Happening::CallAnswered {
                    call: id.clone(),
                    by,
                });
            }
        }
        for user in after.present.keys() {
            if !before.present.contains_key(user) {
                entry.seen.insert(user.clone());
                happened.push(Happening::ParticipantJoined {
                    space: id.clone(),
                    user: user.clone(),
                });
            }
        }
        for (user, reconnecting) in &before.present {
            if after.present.contains_key(user) {
                continue;
            }
            let reason = if matches!(cause, Cause::Admin { removed: Some(r) } if r == user) {
                LeaveReason::Removed
            } else if actor == Some(user) {
                LeaveReason::Left
            } else if *reconnecting {
                LeaveReason::Disconnected
            } else {
                LeaveReason::CallEnded
            };
            happened.push(Happening::ParticipantLeft {
                space: id.clone(),
                user: user.clone(),
                reason,
            });
        }
        if let call::Phase::Ended(reason) = entry.call.phase
            && !matches!(before.phase, call::Phase::Ended(_))
        {
            happened.push(Happening::CallEnded {
                call: id.clone(),
                reason,
                started_at: entry.started,
                answered_at: entry.answered,
                participants: entry.seen.iter().cloned().collect(),
            });
        }
        for what in happened {
            self.record(at, what);
        }
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            connections: self.connections.len(),
            online_users: self
                .users
                .values()
                .filter(|u| !u.connections.is_empty())
                .count(),
            user_records: self.users.len(),
            calls: self.calls.len(),
            rooms: self.rooms.len(),
            timers: self.timers.len(),
            last_seen: self.last_seen.len(),
            invited_users: self.invitations.tracked(),
        }
    }

    /// Sets the `chorus_hub_records` gauges from the sizes of the hub's maps; O(1), for the
    /// hub's task to run after each command.
    pub fn record_sizes(&self) {
        let g = &self.metrics.hub_records;
        let set = |gauge: &prometheus::IntGauge, n: usize| gauge.set(n as i64);
        set(&g.connections, self.connections.len());
        set(&g.users, self.users.len());
        set(&g.calls, self.calls.len());
        set(&g.rooms, self.rooms.len());
        set(&g.watched, self.watchers.len());
        set(&g.timers, self.timers.len());
    }

    /// Queues `event` for every connected device of `users`, except one connection.
    pub fn deliver_to_users(
        &mut self,
        users: &[UserId],
        except: Option<ConnectionId>,
        event: Arc<ServerEvent>,
    ) {
        for user in users {
            self.deliver_to_local_devices(user, except, event.clone());
            self.notify(ClusterNotice::ToDevices {
                user: user.clone(),
                except,
                event: event.clone(),
            });
        }
    }

    /// Queues `event` for one connection, if it is still registered.
    pub fn deliver_to_connection(&mut self, conn: ConnectionId, event: Arc<ServerEvent>) {
        if self.connections.contains_key(&conn) {
            self.push(conn, event);
        }
    }

    // ---- calls -------------------------------------------------------------------------

    /// `screen:share-start` (`sharing`) and `screen:share-stop`, in a call or a room.
    fn share_screen(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        user_id: &UserId,
        space: &CallId,
        sharing: bool,
    ) -> Result<Value, Failure> {
        if self.rooms.contains_key(space) {
            let body = protocol::CallUser {
                call_id: space.clone(),
                user_id: user_id.clone(),
            };
            let event = if sharing {
                ServerEvent::ScreenShareStarted(body)
            } else {
                ServerEvent::ScreenShareStopped(body)
            };
            return self.announce_in_room(conn, user_id, space, event);
        }
        self.with_call(now, Cause::User(user_id), space, |call, _| {
            call.screen_share(user_id, conn, sharing)
        })?;
        Ok(ok())
    }

    /// `offer`, `answer` and `ice-candidate`: `kind` is the event name.
    fn relay(
        &mut self,
        conn: ConnectionId,
        user_id: &UserId,
        kind: &str,
        signal: protocol::Signal,
    ) -> Result<Value, Failure> {
        let entry = self.calls.get(&signal.call_id).ok_or_else(no_such_call)?;
        let notices = entry.call.relay(
            user_id,
            conn,
            signal.target_user_id.as_ref(),
            kind,
            signal.payload,
        )?;
        self.deliver(&signal.call_id, notices);
        Ok(ok())
    }

    fn initiate(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        user_id: &UserId,
        init: protocol::CallInitiate,
        placed: Option<CallId>,
    ) -> Result<Value, Failure> {
        if self.draining {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect and try again",
            ));
        }
        let mut seen = HashSet::new();
        let invitees: Vec<UserId> = init
            .participants
            .into_iter()
            .filter(|u| u != user_id && seen.insert(u.clone()))
            .collect();
        if invitees.is_empty() {
            return Err(Failure::new(
                ErrorCode::InvalidPayload,
                "`participants` must name someone other than yourself",
            ));
        }
        if invitees.len() + 1 > self.settings.max_participants {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!(
                    "a call holds at most {} participants",
                    self.settings.max_participants
                ),
            ));
        }
        self.check_call_quota(user_id, None)?;
        let key = |u: &UserId| self.user_keys.hash_one(u);
        if let Err(over) = self.invitations.check(now, &invitees, key) {
            return Err(invite_rate_limited(&over, self.settings.invites_per_minute));
        }
        self.invitations.record(now, &invitees, key);
        let id = placed.unwrap_or_else(|| CallId(new_call_id()));
        if self.calls.contains_key(&id) || self.rooms.contains_key(&id) {
            return Err(Failure::new(
                ErrorCode::InvalidState,
                "that call id is taken",
            ));
        }
        let dir = Dir::new(&self.users, Some(&self.ice), wall(self.epoch, now));
        let ctx = Context::new(now, self.settings.rules, &dir);
        let (call, notices) = Call::initiate(
            id.clone(),
            init.conversation_id,
            init.call_type,
            init.mode,
            user_id.clone(),
            conn,
            invitees,
            &ctx,
        );
        let ice_servers = self.ice.for_user(user_id, wall(self.epoch, now));
        let mode = call.mode;
        // Invitees who are offline get a record too, so the device they connect while the call
        // rings is rung (and the record goes once the call no longer involves them).
        let members: Vec<UserId> = call.members.keys().cloned().collect();
        for member in &members {
            self.users
                .entry(member.clone())
                .or_insert_with(|| User::offline(member.to_string(), now))
                .calls
                .insert(id.clone());
            self.mark_user(member);
            self.write(StateWrite::UserCall {
                user: member.clone(),
                call: id.clone(),
                involved: Involvement::Involved,
            });
        }
        let at = wall(self.epoch, now);
        self.record(
            at,
            Happening::CallStarted {
                call: id.clone(),
                conversation: call.conversation_id.clone(),
                call_type: call.call_type,
                initiator: user_id.clone(),
                invitees: members.iter().filter(|u| *u != user_id).cloned().collect(),
            },
        );
        self.record(
            at,
            Happening::ParticipantJoined {
                space: id.clone(),
                user: user_id.clone(),
            },
        );
        self.calls.insert(
            id.clone(),
            CallEntry {
                call,
                scheduled: None,
                started: at,
                answered: None,
                seen: BTreeSet::from([user_id.clone()]),
            },
        );
        self.metrics.calls_active.inc();
        self.deliver(&id, notices);
        self.mark_space(&id);
        self.reschedule(&id);
        Ok(serde_json::to_value(InitiateAck {
            call_id: id,
            ice_servers,
            mode,
        })
        .unwrap_or_default())
    }

    /// Refuses when `user` already takes part in `max_calls_per_user` calls and would take part
    /// in one more: a new call (`joining` is `None`) or one they are a member of but not present
    /// in. Calls that only ring the user do not count, so nobody can use up another's quota.
    fn check_call_quota(&self, user: &UserId, joining: Option<&CallId>) -> Result<(), Failure> {
        let present_in = |id: &CallId| {
            self.calls
                .get(id)
                .and_then(|e| e.call.members.get(user))
                .is_some_and(call::Member::is_present)
        };
        let newly = match joining {
            None => true,
            Some(id) => {
                self.calls
                    .get(id)
                    .is_some_and(|e| e.call.members.contains_key(user))
                    && !present_in(id)
            }
        };
        if !newly {
            return Ok(());
        }
        let live = self
            .users
            .get(user)
            .map_or(0, |u| u.calls.iter().filter(|id| present_in(id)).count());
        let limit = self.settings.max_calls_per_user;
        if live >= limit {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!("you are in {live} calls already (limit {limit})"),
            ));
        }
        Ok(())
    }

    /// The key of `user` in the hub's bounded per-user records.
    fn user_key(&self, user: &UserId) -> u64 {
        self.user_keys.hash_one(user)
    }

    /// Runs a transition on a call, delivers its notices and keeps timers and indexes right.
    fn with_call(
        &mut self,
        now: Instant,
        cause: Cause<'_>,
        id: &CallId,
        f: impl FnOnce(&mut Call, &Context<'_>) -> Result<Vec<Notice>, Failure>,
    ) -> Result<(), Failure> {
        let dir = Dir::new(&self.users, Some(&self.ice), wall(self.epoch, now));
        let entry = self.calls.get_mut(id).ok_or_else(no_such_call)?;
        let ctx = Context::new(now, self.settings.rules, &dir);
        let before = seats(&entry.call);
        let view = CallView::of(&entry.call);
        let notices = f(&mut entry.call, &ctx)?;
        self.note_call_change(now, id, view, cause);
        self.deliver(id, notices);
        self.note_media_leaves(id, before);
        self.mark_space(id);
        self.reschedule(id);
        Ok(())
    }

    fn join_ack(&self, now: Instant, id: &CallId, user: &UserId) -> Value {
        let dir = Dir::new(&self.users, None, wall(self.epoch, now));
        let ctx = Context::new(now, self.settings.rules, &dir);
        let participants = self
            .calls
            .get(id)
            .map(|e| e.call.present_refs(Some(user), &ctx));
        serde_json::to_value(JoinAck {
            call_id: id.clone(),
            ice_servers: self.ice.for_user(user, wall(self.epoch, now)),
            participants: participants.unwrap_or_default(),
            mode: self
                .calls
                .get(id)
                .map_or(protocol::CallMode::P2p, |e| e.call.mode),
            // The media server knows them: the session adds them (see `Session::joined`).
            tracks: None,
        })
        .unwrap_or_default()
    }

    /// Resolves notices to connections and queues them. Runs while the call is still in the
    /// map so in-call audiences resolve to its devices.
    fn deliver(&mut self, id: &CallId, notices: Vec<Notice>) {
        for notice in notices {
            let event = Arc::new(notice.event);
            // A user's devices on other nodes hear it through their own node.
            match &notice.to {
                Audience::User(u) => self.notify(ClusterNotice::ToDevices {
                    user: u.clone(),
                    except: None,
                    event: event.clone(),
                }),
                Audience::UserExcept(u, except) => self.notify(ClusterNotice::ToDevices {
                    user: u.clone(),
                    except: Some(*except),
                    event: event.clone(),
                }),
                Audience::Device(_) | Audience::InCall(_) => {}
            }
            let targets: Vec<ConnectionId> = match &notice.to {
                Audience::Device(c) => vec![*c],
                Audience::User(u) => self.devices_of(u).collect(),
                Audience::UserExcept(u, except) => {
                    self.devices_of(u).filter(|c| c != except).collect()
                }
                Audience::InCall(u) => self
                    .calls
                    .get(id)
                    .and_then(|e| e.call.members.get(u))
                    .map(|m| m.devices.keys().copied().collect())
                    .unwrap_or_default(),
            };
            for conn in targets {
                self.push(conn, event.clone());
            }
        }
    }

    /// Queues the next timer of a call, or forgets the call once it has ended.
    fn reschedule(&mut self, id: &CallId) {
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        if let call::Phase::Ended(reason) = entry.call.phase {
            let entry = self.remove_call(id).expect("present above");
            self.mark_space(id);
            for member in entry.call.members.keys() {
                self.leave_call_index(member, id);
            }
            self.metrics.calls_active.dec();
            self.metrics
                .calls_total
                .with_label_values(&[reason.as_str()])
                .inc();
            return;
        }
        // Users no longer involved (declined, missed, left) stop counting against their limit.
        let uninvolved: Vec<UserId> = entry
            .call
            .members
            .keys()
            .filter(|u| !entry.call.involved_users().any(|i| i == *u))
            .cloned()
            .collect();
        for u in uninvolved {
            self.leave_call_index(&u, id);
        }
        // And users involved again (a member who left or missed a group call and joined it
        // back) count again, and their disconnects reach the call.
        let rejoined: Vec<UserId> = match self.calls.get(id) {
            Some(entry) => entry
                .call
                .involved_users()
                .filter(|u| !self.users.get(*u).is_some_and(|r| r.calls.contains(id)))
                .cloned()
                .collect(),
            None => return,
        };
        for u in rejoined {
            self.enter_call_index(&u, id);
        }
        let Some(entry) = self.calls.get_mut(id) else {
            return;
        };
        let Some(next) = entry.call.next_deadline() else {
            return;
        };
        if entry.scheduled.is_none_or(|at| next < at) {
            if let Some(earlier) = entry.scheduled.replace(next) {
                self.timers.remove(&(earlier, Timer::Call(id.clone())));
            }
            self.timers.insert((next, Timer::Call(id.clone())));
        }
    }

    /// Removes a call with its queued timer.
    fn remove_call(&mut self, id: &CallId) -> Option<CallEntry> {
        let entry = self.calls.remove(id)?;
        if let Some(at) = entry.scheduled {
            self.timers.remove(&(at, Timer::Call(id.clone())));
        }
        Some(entry)
    }

    /// Removes a user record with its queued idle check.
    fn remove_user(&mut self, id: &UserId) {
        if let Some(user) = self.users.remove(id)
            && let Some(due) = user.away_due
        {
            self.timers.remove(&(due, Timer::Away(id.clone())));
        }
    }

    /// Adds `id` to the live calls of `user`, who is connected (they just joined it).
    fn enter_call_index(&mut self, user: &UserId, id: &CallId) {
        if let Some(u) = self.users.get_mut(user)
            && u.calls.insert(id.clone())
        {
            self.mark_user(user);
            self.write(StateWrite::UserCall {
                user: user.clone(),
                call: id.clone(),
                involved: Involvement::Involved,
            });
        }
    }

    /// Drops `id` from the user's live calls, and the user record itself once it holds
    /// neither connections nor calls.
    fn leave_call_index(&mut self, user: &UserId, id: &CallId) {
        if let Some(u) = self.users.get_mut(user)
            && u.calls.remove(id)
        {
            self.write(StateWrite::UserCall {
                user: user.clone(),
                call: id.clone(),
                involved: Involvement::NotInvolved,
            });
        }
        self.forget_if_idle(user);
    }

    fn devices_of<'a>(&'a self, user: &UserId) -> impl Iterator<Item = ConnectionId> + 'a {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|u| u.connections.iter().copied())
    }

    fn push(&mut self, to: ConnectionId, event: Arc<ServerEvent>) {
        self.metrics
            .events_out
            .with_label_values(&[event.name()])
            .inc();
        self.outputs.push_back(Delivery { to, event });
    }
}

/// The hub's users as a call sees them.
struct Dir<'a> {
    users: &'a HashMap<UserId, User>,
    /// `None` where no ICE servers are needed, so no credentials are minted for nothing.
    ice: Option<&'a IceServers>,
    wall: SystemTime,
}

impl<'a> Dir<'a> {
    fn new(
        users: &'a HashMap<UserId, User>,
        ice: Option<&'a IceServers>,
        wall: SystemTime,
    ) -> Self {
        Self { users, ice, wall }
    }
}

impl call::Directory for Dir<'_> {
    /// From the user's token once they have connected; their id before that.
    fn name_of(&self, user: &UserId) -> String {
        self.users
            .get(user)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| user.to_string())
    }

    fn ice_for(&self, user: &UserId) -> Vec<protocol::IceServer> {
        self.ice
            .map(|ice| ice.for_user(user, self.wall))
            .unwrap_or_default()
    }
}

/// A call's devices with their users, to tell which left across a transition.
fn seats(call: &Call) -> BTreeSet<(ConnectionId, UserId)> {
    call.seats().map(|(c, u)| (c, u.clone())).collect()
}

fn wall(epoch: (Instant, SystemTime), now: Instant) -> SystemTime {
    epoch.1 + now.saturating_duration_since(epoch.0)
}

fn ok() -> Value {
    json!({"ok": true})
}

/// The one answer for a call or room that does not exist *and* for one the user is not in, so
/// that nobody can learn which calls or rooms exist by probing ids.
fn no_such_call() -> Failure {
    Failure::new(
        ErrorCode::NotFound,
        "no such call or room, or you are not in it (it may have ended)",
    )
}

fn invite_rate_limited(over: &invitation::OverLimit, per_minute: u32) -> Failure {
    let names: Vec<&str> = over.users.iter().take(3).map(UserId::as_str).collect();
    let more = over.users.len().saturating_sub(names.len());
    let others = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Failure::new(
        ErrorCode::InviteRateLimited,
        format!(
            "{}{others} received too many invitations lately (limit {per_minute} per minute); \
             nobody was rung; retry in {} s",
            names.join(", "),
            over.retry_in.as_secs_f64().ceil().max(1.0)
        ),
    )
}

/// A fresh call id: 96 random bits in hex.
pub(crate) fn new_call_id() -> String {
    use rand::Rng;
    let bytes: [u8; 12] = rand::rng().random();
    let mut s = String::with_capacity(24);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests;
