//! What happened to rooms, calls and their participants, for an application's backend
//! (webhooks, ADR 0073).
//!
//! The hub records a [`Lifecycle`] in the same step that makes it true (a room created, a call
//! answered, a participant gone) and the driver drains them with
//! [`Hub::poll_lifecycle`](crate::hub::Hub::poll_lifecycle) *before* it hands that step's
//! server events to any connection: it passes them to a [`LifecycleSink`] (the binary's durable
//! webhook outbox) and holds that step's output until they are stored. So a receiver never
//! learns of an event later than a client could, and no client sees what the outbox would then
//! lose in a crash.
//!
//! These carry ids and times only: no tokens, no SDP, no display names.

use protocol::{CallId, CallType, ConversationId, EndReason, UserId};
use std::time::SystemTime;

/// One thing that happened, and when (wall clock, derived from the hub's `now`).
#[derive(Clone, Debug, PartialEq)]
pub struct Lifecycle {
    pub at: SystemTime,
    pub what: Happening,
}

/// Why a participant is no longer in a room or call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// They left: `room:leave`, or `call:end` (hang-up) by themselves.
    Left,
    /// Their connection dropped (a room), or they did not come back within the call's
    /// reconnect grace.
    Disconnected,
    /// The call ended around them (the other side of a 1:1 hung up, the maximum duration).
    CallEnded,
    /// The server API removed them, or deleted the room they were in.
    Removed,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::CallEnded => "call_ended",
            LeaveReason::Removed => "removed",
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    /// A room was created by its first join.
    RoomStarted { room: CallId },
    /// A room's last participant left; `started_at` is when it was created (on this node, or
    /// when this node took it over after a failover).
    RoomFinished {
        room: CallId,
        started_at: SystemTime,
    },
    /// A user is in a room or call now (their first device joined).
    ParticipantJoined { space: CallId, user: UserId },
    /// A user is no longer in a room or call (their last device left, or their grace ran out).
    ParticipantLeft {
        space: CallId,
        user: UserId,
        reason: LeaveReason,
    },
    /// `call:initiate`: the call rings its invitees.
    CallStarted {
        call: CallId,
        conversation: ConversationId,
        call_type: CallType,
        initiator: UserId,
        invitees: Vec<UserId>,
    },
    /// The first invitee accepted.
    CallAnswered { call: CallId, by: UserId },
    /// The call ended. `participants` are the users who were ever in it (joined), initiator
    /// included.
    CallEnded {
        call: CallId,
        reason: EndReason,
        started_at: SystemTime,
        answered_at: Option<SystemTime>,
        participants: Vec<UserId>,
    },
}

impl Happening {
    /// The room or call the event belongs to: events of one space are delivered in order.
    pub fn space(&self) -> &CallId {
        match self {
            Happening::RoomStarted { room } | Happening::RoomFinished { room, .. } => room,
            Happening::ParticipantJoined { space, .. }
            | Happening::ParticipantLeft { space, .. } => space,
            Happening::CallStarted { call, .. }
            | Happening::CallAnswered { call, .. }
            | Happening::CallEnded { call, .. } => call,
        }
    }
}

/// Where the driver puts lifecycle events; implemented by the binary over its webhook outbox.
///
/// `record` starts storing the events at once, behind everything recorded before (the order of
/// calls is the order events are stored and delivered in), and returns a future that resolves
/// once they are stored as durably as the sink can store them. The driver holds the step's
/// acks and server events until then, and meanwhile goes on with the next commands, so the
/// hub never waits for a disk. A sink that cannot store the events (its database is down, its
/// outbox is full) logs and counts that and resolves anyway: calls go on without webhooks
/// rather than stop.
pub trait LifecycleSink: Send + Sync + 'static {
    /// Whether `record` would store anything at all (no endpoint configured: nothing to wait
    /// for).
    fn wants(&self) -> bool;
    fn record(&self, events: Vec<Lifecycle>) -> Stored;
}

/// Resolves once a [`LifecycleSink::record`] is stored (or given up).
pub type Stored = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
