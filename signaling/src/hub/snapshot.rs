//! A space's state as another node needs it to adopt the space (ADR 0060).
//!
//! The owner writes a [`SpaceSnapshot`] after every change of a call or room; when the owner
//! dies or is drained, the new owner restores the space from it. Times are wall-clock Unix
//! milliseconds, since the `Instant`s of one process mean nothing to another. Devices carry
//! their home node, so the new owner knows which survive and where to reach them.

use super::call::{Call, CallShape, Member, MemberState, Phase, Role};
use super::room::Room;
use crate::auth::Grants;
use crate::cluster::NodeId;
use protocol::{CallId, CallMode, CallType, ConnectionId, ConversationId, EndReason, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A call or a room.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SpaceSnapshot {
    Room { id: CallId, seats: Vec<Seat> },
    Call(CallSnapshot),
}

impl SpaceSnapshot {
    pub fn id(&self) -> &CallId {
        match self {
            Self::Room { id, .. } => id,
            Self::Call(c) => &c.id,
        }
    }

    /// Every device in the space.
    pub fn seats(&self) -> Box<dyn Iterator<Item = &Seat> + '_> {
        match self {
            Self::Room { seats, .. } => Box::new(seats.iter()),
            Self::Call(c) => Box::new(c.members.iter().flat_map(|m| m.devices.iter())),
        }
    }
}

/// One device in a space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seat {
    pub conn: ConnectionId,
    pub home: NodeId,
    pub user: UserId,
    pub name: String,
    pub grants: Grants,
    pub joined_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallSnapshot {
    pub id: CallId,
    pub conversation_id: ConversationId,
    pub call_type: CallType,
    pub initiator: UserId,
    pub group: bool,
    pub mode: CallMode,
    /// `None` while it rings.
    pub active: bool,
    pub ended: Option<EndReason>,
    pub ring_deadline_ms: u64,
    pub end_deadline_ms: u64,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberSnapshot {
    pub user: UserId,
    pub name: String,
    pub initiator: bool,
    pub state: StateSnapshot,
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
    pub ringing_confirmed: bool,
    pub devices: Vec<Seat>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum StateSnapshot {
    Ringing,
    Declined,
    Missed,
    Joined,
    Reconnecting { until_ms: u64 },
    Left,
}

/// Converts between this process's `Instant`s and wall-clock milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub epoch: (Instant, SystemTime),
}

impl Clock {
    pub fn millis(&self, at: Instant) -> u64 {
        let wall = if at >= self.epoch.0 {
            self.epoch.1 + (at - self.epoch.0)
        } else {
            self.epoch.1 - (self.epoch.0 - at)
        };
        wall.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64
    }

    pub fn instant(&self, millis: u64) -> Instant {
        let wall = UNIX_EPOCH + Duration::from_millis(millis);
        match wall.duration_since(self.epoch.1) {
            Ok(ahead) => self.epoch.0 + ahead,
            Err(behind) => self
                .epoch
                .0
                .checked_sub(behind.duration())
                .unwrap_or(self.epoch.0),
        }
    }
}

/// What the hub knows about a device besides its id, to write a [`Seat`].
pub trait SeatInfo {
    fn seat(&self, conn: ConnectionId, user: &UserId, joined: Instant) -> Seat;
}

impl SpaceSnapshot {
    pub fn of_room(room: &Room, info: &dyn SeatInfo) -> Self {
        let seats = room
            .members
            .iter()
            .flat_map(|(u, devices)| devices.iter().map(move |(c, at)| info.seat(*c, u, *at)))
            .collect();
        Self::Room {
            id: room.id.clone(),
            seats,
        }
    }

    pub fn of_call(
        call: &Call,
        clock: &Clock,
        info: &dyn SeatInfo,
        name: &dyn Fn(&UserId) -> String,
    ) -> Self {
        let members = call
            .members
            .iter()
            .map(|(u, m)| MemberSnapshot {
                user: u.clone(),
                name: name(u),
                initiator: m.role == Role::Initiator,
                state: match m.state {
                    MemberState::Ringing => StateSnapshot::Ringing,
                    MemberState::Declined => StateSnapshot::Declined,
                    MemberState::Missed => StateSnapshot::Missed,
                    MemberState::Joined => StateSnapshot::Joined,
                    MemberState::Reconnecting { until } => StateSnapshot::Reconnecting {
                        until_ms: clock.millis(until),
                    },
                    MemberState::Left => StateSnapshot::Left,
                },
                audio: m.audio,
                video: m.video,
                screen: m.screen,
                ringing_confirmed: m.ringing_confirmed,
                devices: m
                    .devices
                    .iter()
                    .map(|(c, at)| info.seat(*c, u, *at))
                    .collect(),
            })
            .collect();
        Self::Call(CallSnapshot {
            id: call.id.clone(),
            conversation_id: call.conversation_id.clone(),
            call_type: call.call_type,
            initiator: call.initiator.clone(),
            group: call.shape == CallShape::Group,
            mode: call.mode,
            active: call.phase == Phase::Active,
            ended: match call.phase {
                Phase::Ended(r) => Some(r),
                _ => None,
            },
            ring_deadline_ms: clock.millis(call.ring_deadline),
            end_deadline_ms: clock.millis(call.end_deadline),
            members,
        })
    }
}

impl CallSnapshot {
    /// The call again, keeping only the devices `keep` accepts. A member whose every device
    /// is gone while joined enters the reconnect grace until `grace_until`.
    pub fn restore(
        &self,
        clock: &Clock,
        keep: &dyn Fn(&Seat) -> bool,
        grace_until: Instant,
    ) -> Call {
        let members: BTreeMap<UserId, Member> = self
            .members
            .iter()
            .map(|m| {
                let devices: BTreeMap<ConnectionId, Instant> = m
                    .devices
                    .iter()
                    .filter(|s| keep(s))
                    .map(|s| (s.conn, clock.instant(s.joined_ms)))
                    .collect();
                let mut state = match m.state {
                    StateSnapshot::Ringing => MemberState::Ringing,
                    StateSnapshot::Declined => MemberState::Declined,
                    StateSnapshot::Missed => MemberState::Missed,
                    StateSnapshot::Joined => MemberState::Joined,
                    StateSnapshot::Reconnecting { until_ms } => MemberState::Reconnecting {
                        until: clock.instant(until_ms),
                    },
                    StateSnapshot::Left => MemberState::Left,
                };
                if state == MemberState::Joined && devices.is_empty() {
                    state = MemberState::Reconnecting { until: grace_until };
                }
                let member = Member {
                    role: if m.initiator {
                        Role::Initiator
                    } else {
                        Role::Invitee
                    },
                    state,
                    devices,
                    audio: m.audio,
                    video: m.video,
                    screen: m.screen,
                    ringing_confirmed: m.ringing_confirmed,
                };
                (m.user.clone(), member)
            })
            .collect();
        Call {
            id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            call_type: self.call_type,
            initiator: self.initiator.clone(),
            shape: if self.group {
                CallShape::Group
            } else {
                CallShape::OneToOne
            },
            mode: self.mode,
            phase: match (self.ended, self.active) {
                (Some(r), _) => Phase::Ended(r),
                (None, true) => Phase::Active,
                (None, false) => Phase::Ringing,
            },
            members,
            ring_deadline: clock.instant(self.ring_deadline_ms),
            end_deadline: clock.instant(self.end_deadline_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips_instants_through_wall_millis() {
        let now = Instant::now();
        let clock = Clock {
            epoch: (now, SystemTime::now()),
        };
        for offset in [0u64, 1, 1500, 3_600_000] {
            let later = now + Duration::from_millis(offset);
            let back = clock.instant(clock.millis(later));
            let diff = if back > later {
                back - later
            } else {
                later - back
            };
            assert!(diff < Duration::from_millis(2), "{offset}: {diff:?}");
        }
    }
}
