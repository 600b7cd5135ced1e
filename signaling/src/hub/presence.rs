//! Presence: online/offline, statuses, idle → away, and who may see them.
//!
//! Presence is never broadcast to every connection. A user's presence events reach only:
//! - connections that asked with `presence:subscribe` and may see the user (below);
//! - the devices of users who share a live call or a room with them;
//! - for `presence:changed`, the user's own other devices (so their status stays in sync).
//!
//! Who may see whom is `presence.visibility`: `everyone`; `contacts` (the viewer's token claim
//! `contacts`, plus users who share a call or room with the viewer); or `shared` (only those).
//! Sharing a call means both are involved in the same live call, ringing included; sharing a
//! room means both are in it. Visibility is decided each time presence is reported or an event
//! is sent, so it ends with the shared call. A user the viewer may not see is reported exactly
//! like an unknown user who is offline: no status, no text, no `lastSeenAt`. See ADR 0044.

use super::call::MemberState;
use super::cluster::ClusterNotice;
use super::{Hub, Timer, ok};
use crate::auth::{Contacts, Identity};
use config::PresenceVisibility;
use protocol::{
    ConnectionId, ErrorCode, Failure, Presence, PresenceList, PresenceStatus, ServerEvent,
    StatusUpdate, UserId, UserOffline, UserOnline,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

impl Hub {
    /// The presence of each of `users` as `viewer` may see it (`GET /api/v1/presence`).
    pub fn presence_of(&self, now: Instant, viewer: &Identity, users: &[UserId]) -> Vec<Presence> {
        self.presence_for(now, &viewer.user_id, &viewer.contacts, users)
    }

    /// Whether `viewer`, whose token lists `contacts`, may see `user`'s presence.
    pub(super) fn may_see(&self, viewer: &UserId, contacts: &Contacts, user: &UserId) -> bool {
        match self.settings.visibility {
            PresenceVisibility::Everyone => true,
            _ if viewer == user => true,
            PresenceVisibility::Contacts if contacts.contains(user) => true,
            PresenceVisibility::Contacts | PresenceVisibility::Shared => self.share(viewer, user),
        }
    }

    pub(super) fn touch(&mut self, now: Instant, user_id: &UserId) {
        let Some(user) = self.users.get_mut(user_id) else {
            return;
        };
        user.last_activity = now;
        if !user.manual && user.status == PresenceStatus::Away {
            user.status = PresenceStatus::Online;
            self.arm_away(now, user_id);
            self.announce_change(now, user_id, None);
        }
    }

    pub(super) fn check_idle(&mut self, now: Instant, user_id: &UserId) {
        let away_after = self.settings.away_after;
        let Some(user) = self.users.get_mut(user_id) else {
            return;
        };
        user.away_due = None;
        if user.manual || user.status != PresenceStatus::Online || user.connections.is_empty() {
            return;
        }
        let due = user.last_activity + away_after;
        if now >= due {
            user.status = PresenceStatus::Away;
            self.announce_change(now, user_id, None);
        } else {
            user.away_due = Some(due);
            self.timers.insert((due, Timer::Away(user_id.clone())));
        }
    }

    /// Queues an idle check `away_after` from now unless one is queued already.
    pub(super) fn arm_away(&mut self, now: Instant, user_id: &UserId) {
        if let Some(user) = self.users.get_mut(user_id)
            && user.away_due.is_none()
        {
            let due = now + self.settings.away_after;
            user.away_due = Some(due);
            self.timers.insert((due, Timer::Away(user_id.clone())));
        }
    }

    pub(super) fn announce_online(&mut self, user_id: &UserId) {
        let Some(user) = self.users.get(user_id) else {
            return;
        };
        let event = Arc::new(ServerEvent::UserOnline(UserOnline {
            user_id: user_id.clone(),
            username: user.name.clone(),
        }));
        for conn in self.audience(user_id) {
            self.push(conn, event.clone());
        }
        self.notify(ClusterNotice::Presence {
            user: user_id.clone(),
            event,
        });
        self.write_presence(user_id);
    }

    pub(super) fn go_offline(&mut self, now: Instant, user_id: &UserId) {
        let wall = super::wall(self.epoch, now);
        let invisible = self
            .users
            .get(user_id)
            .is_some_and(|u| u.status == PresenceStatus::Offline);
        if !invisible {
            let event = Arc::new(ServerEvent::UserOffline(UserOffline {
                user_id: user_id.clone(),
                last_seen_at: rfc3339(wall),
            }));
            for conn in self.audience(user_id) {
                self.push(conn, event.clone());
            }
            self.notify(ClusterNotice::Presence {
                user: user_id.clone(),
                event,
            });
        }
        // Calls keep the user's membership through the grace period; presence state goes now.
        let still_in_calls = self.users.get(user_id).is_some_and(|u| !u.calls.is_empty());
        if still_in_calls {
            if let Some(u) = self.users.get_mut(user_id) {
                u.status = PresenceStatus::Offline;
                u.manual = false;
            }
        } else {
            self.remove_user(user_id);
        }
        self.metrics.sessions.dec();
        if !invisible {
            self.last_seen.insert(self.user_key(user_id), wall);
        }
    }

    pub(super) fn update_status(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        user_id: &UserId,
        update: StatusUpdate,
    ) -> Result<Value, Failure> {
        let Some(user) = self.users.get_mut(user_id) else {
            return Err(Failure::new(ErrorCode::InvalidState, "not connected"));
        };
        user.manual = update.status != PresenceStatus::Online;
        user.status = update.status;
        user.text = update.text.filter(|t| !t.is_empty());
        if !user.manual {
            self.arm_away(now, user_id);
        }
        self.announce_change(now, user_id, Some(conn));
        Ok(ok())
    }

    pub(super) fn subscribe(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        users: Vec<UserId>,
    ) -> Result<Value, Failure> {
        let limit = self.settings.max_presence_subscriptions;
        let Some(c) = self.connections.get_mut(&conn) else {
            return Err(Failure::new(ErrorCode::InvalidState, "not connected"));
        };
        // Watching a user one may not see is allowed (refusing would tell that the user
        // exists); events reach the watcher only while it may see them.
        let new: BTreeSet<&UserId> = users.iter().filter(|u| !c.watching.contains(*u)).collect();
        if c.watching.len() + new.len() > limit {
            return Err(Failure::new(
                ErrorCode::LimitExceeded,
                format!("a connection may watch at most {limit} users"),
            ));
        }
        let new: Vec<UserId> = new.into_iter().cloned().collect();
        for u in &new {
            c.watching.insert(u.clone());
            self.watchers.entry(u.clone()).or_default().insert(conn);
        }
        for u in &new {
            self.mark_user(u);
        }
        let Some(c) = self.connections.get(&conn) else {
            return Err(Failure::new(ErrorCode::InvalidState, "not connected"));
        };
        let (viewer, contacts) = (c.user.clone(), c.contacts.clone());
        let list = PresenceList {
            presences: self.presence_for(now, &viewer, &contacts, &users),
        };
        Ok(serde_json::to_value(list).unwrap_or_default())
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnectionId, users: &[UserId]) {
        let Some(c) = self.connections.get_mut(&conn) else {
            return;
        };
        for u in users {
            c.watching.remove(u);
            if let Some(set) = self.watchers.get_mut(u) {
                set.remove(&conn);
                if set.is_empty() {
                    self.watchers.remove(u);
                }
            }
        }
        for u in users {
            self.mark_user(u);
        }
    }

    /// Sends `presence:changed` to the audience and to the user's other devices.
    fn announce_change(&mut self, now: Instant, user_id: &UserId, except: Option<ConnectionId>) {
        let event = Arc::new(ServerEvent::PresenceChanged(self.presence(now, user_id)));
        let mut targets = self.audience(user_id);
        if let Some(user) = self.users.get(user_id) {
            targets.extend(user.connections.iter().filter(|c| Some(**c) != except));
        }
        for conn in targets {
            self.push(conn, event.clone());
        }
        self.notify(ClusterNotice::Presence {
            user: user_id.clone(),
            event,
        });
        self.write_presence(user_id);
    }

    fn presence(&self, now: Instant, user_id: &UserId) -> Presence {
        match self.users.get(user_id) {
            Some(u) if !u.connections.is_empty() => Presence {
                user_id: user_id.clone(),
                status: u.status,
                text: if u.status == PresenceStatus::Offline {
                    None
                } else {
                    u.text.clone()
                },
                last_seen_at: (u.status != PresenceStatus::Offline)
                    .then(|| rfc3339(super::wall(self.epoch, now))),
            },
            _ => Presence {
                last_seen_at: self
                    .last_seen
                    .get(&self.user_key(user_id))
                    .map(|t| rfc3339(*t)),
                ..unknown(user_id)
            },
        }
    }

    fn presence_for(
        &self,
        now: Instant,
        viewer: &UserId,
        contacts: &Contacts,
        users: &[UserId],
    ) -> Vec<Presence> {
        users
            .iter()
            .map(|u| {
                if self.may_see(viewer, contacts, u) {
                    self.presence(now, u)
                } else {
                    unknown(u)
                }
            })
            .collect()
    }

    /// Whether `a` and `b` are both involved in one live call, or both in one room.
    fn share(&self, a: &UserId, b: &UserId) -> bool {
        let Some(user) = self.users.get(a) else {
            return false;
        };
        let involved = |call: &super::call::Call, u: &UserId| {
            call.members
                .get(u)
                .is_some_and(|m| m.is_present() || m.state == MemberState::Ringing)
        };
        let in_call = user.calls.iter().any(|id| {
            self.calls
                .get(id)
                .is_some_and(|e| !e.call.is_ended() && involved(&e.call, a) && involved(&e.call, b))
        });
        in_call
            || user.rooms.iter().any(|id| {
                self.rooms
                    .get(id)
                    .is_some_and(|r| r.members.contains_key(a) && r.members.contains_key(b))
            })
    }

    /// Connections allowed to see `user_id`'s presence, other than the user's own.
    pub(super) fn audience(&self, user_id: &UserId) -> BTreeSet<ConnectionId> {
        let mut out: BTreeSet<ConnectionId> = self
            .watchers
            .get(user_id)
            .into_iter()
            .flatten()
            .filter(|w| {
                self.connections
                    .get(w)
                    .is_some_and(|c| self.may_see(&c.user, &c.contacts, user_id))
            })
            .copied()
            .collect();
        if let Some(user) = self.users.get(user_id) {
            for call_id in &user.calls {
                let Some(entry) = self.calls.get(call_id) else {
                    continue;
                };
                for other in entry.call.involved_users() {
                    if other == user_id {
                        continue;
                    }
                    if let Some(o) = self.users.get(other) {
                        out.extend(o.connections.iter().copied());
                    }
                    // Devices in the call, guests from other nodes among them.
                    if let Some(m) = entry.call.members.get(other) {
                        out.extend(m.devices.keys().copied());
                    }
                }
            }
        }
        if let Some(user) = self.users.get(user_id) {
            for room_id in &user.rooms {
                if let Some(room) = self.rooms.get(room_id) {
                    out.extend(room.devices());
                }
            }
            for c in &user.connections {
                out.remove(c);
            }
        }
        out
    }
}

/// How a user with no presence on record looks: offline, never seen. Also how a user looks to
/// a viewer who may not see them, so the two cannot be told apart.
fn unknown(user_id: &UserId) -> Presence {
    Presence {
        user_id: user_id.clone(),
        status: PresenceStatus::Offline,
        text: None,
        last_seen_at: None,
    }
}

/// RFC 3339 UTC with millisecond precision, e.g. `2026-11-21T15:20:27.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let millis = d.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)),
            "2026-11-18T11:06:40.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
