//! Consistency checks over the hub's registries, for the `hub_ops` fuzz target (`fuzz/`,
//! feature `fuzzing`) and the scenario tests. The hub keeps the same facts in several places
//! (a connection's user and the user's connections; a call's members and each user's calls; a
//! room's members and each user's rooms; watchers both ways) so that every lookup is direct;
//! [`Hub::audit`] says where they disagree, or where a limit is exceeded.

use super::Hub;
use super::call::MemberState;
use super::cluster::Home;
use std::collections::HashSet;
use std::time::Instant;

impl Hub {
    /// Every inconsistency in the hub's state at `now` (after [`Hub::handle_timeout`] ran for
    /// `now`); empty when everything holds.
    pub fn audit(&self, now: Instant) -> Vec<String> {
        let mut faults = Vec::new();
        let mut fault = |f: String| faults.push(f);
        let mut guests_of = HashSet::new();
        for (conn, c) in &self.connections {
            let user = self.users.get(&c.user);
            match c.home {
                // A guest from another node has no presence here: its user's record does not
                // list it, and may be gone once no call or room here holds the user (the
                // guest stays registered until its home node reports the disconnect).
                Home::Node(_) => {
                    guests_of.insert(&c.user);
                }
                Home::Here if !user.is_some_and(|u| u.connections.contains(conn)) => {
                    fault(format!("{conn:?} is not among {}'s connections", c.user));
                }
                Home::Here => {}
            }
            for watched in &c.watching {
                if !self.watchers.get(watched).is_some_and(|w| w.contains(conn)) {
                    fault(format!("{conn:?} watches {watched} unregistered"));
                }
            }
        }
        for (watched, watchers) in &self.watchers {
            if watchers.is_empty() {
                fault(format!("empty watcher set kept for {watched}"));
            }
            for conn in watchers {
                if !self
                    .connections
                    .get(conn)
                    .is_some_and(|c| c.watching.contains(watched))
                {
                    fault(format!(
                        "{conn:?} is registered watching {watched} but gone or not"
                    ));
                }
            }
        }
        for (id, user) in &self.users {
            for conn in &user.connections {
                let own = self.connections.get(conn);
                if own.map(|c| (&c.user, &c.home)) != Some((id, &Home::Here)) {
                    fault(format!("{id} lists {conn:?}, which is not theirs here"));
                }
            }
            for call in &user.calls {
                if !self
                    .calls
                    .get(call)
                    .is_some_and(|e| e.call.members.contains_key(id))
                {
                    fault(format!("{id} lists call {call}, which does not list them"));
                }
            }
            for room in &user.rooms {
                if !self
                    .rooms
                    .get(room)
                    .is_some_and(|r| r.members.contains_key(id))
                {
                    fault(format!("{id} lists room {room}, which does not list them"));
                }
            }
            let held = !user.calls.is_empty() || !user.rooms.is_empty() || guests_of.contains(id);
            if user.connections.is_empty() && !held {
                fault(format!("{id} is offline with nothing to hold their record"));
            }
            let present = user
                .calls
                .iter()
                .filter_map(|c| self.calls.get(c)?.call.members.get(id))
                .filter(|m| m.is_present())
                .count();
            if present > self.settings.max_calls_per_user {
                fault(format!("{id} is in {present} calls"));
            }
            if user.rooms.len() > self.settings.max_rooms {
                fault(format!("{id} is in {} rooms", user.rooms.len()));
            }
        }
        for (id, entry) in &self.calls {
            let call = &entry.call;
            if call.is_ended() {
                fault(format!("call {id} ended but is still held"));
            }
            let present = call.members.values().filter(|m| m.is_present()).count();
            if present > self.settings.max_participants {
                fault(format!("call {id} has {present} members present"));
            }
            for (user, member) in &call.members {
                let joined = member.state == MemberState::Joined;
                if joined == member.devices.is_empty() {
                    fault(format!(
                        "{user} in {id}: {:?} with {} devices",
                        member.state,
                        member.devices.len()
                    ));
                }
                if let MemberState::Reconnecting { until } = member.state
                    && until <= now
                {
                    fault(format!(
                        "{user} in {id} still reconnecting after their grace"
                    ));
                }
                for device in member.devices.keys() {
                    if self.connections.get(device).map(|c| &c.user) != Some(user) {
                        fault(format!(
                            "{user} in {id} holds {device:?}, not a connection of theirs"
                        ));
                    }
                }
                let listed = self.users.get(user).is_some_and(|u| u.calls.contains(id));
                if member.is_present() && !listed {
                    fault(format!("{user} is present in {id}, which they do not list"));
                }
            }
        }
        if self.rooms.len() > self.settings.max_rooms {
            fault(format!("{} rooms", self.rooms.len()));
        }
        for (id, room) in &self.rooms {
            // Only a room the server API created stays while empty.
            if room.closes() {
                fault(format!("room {id} is empty but kept"));
            }
            if room.members.len() > self.settings.max_room_participants {
                fault(format!("room {id} has {} users", room.members.len()));
            }
            for (user, devices) in &room.members {
                if devices.is_empty() {
                    fault(format!("{user} is in {id} with no connection"));
                }
                for device in devices.keys() {
                    if self.connections.get(device).map(|c| &c.user) != Some(user) {
                        fault(format!("{user} in room {id} holds {device:?}, not theirs"));
                    }
                }
                if !self.users.get(user).is_some_and(|u| u.rooms.contains(id)) {
                    fault(format!("{user} is in room {id}, which they do not list"));
                }
            }
            for (conn, viewer) in &room.viewers {
                match self.connections.get(conn) {
                    Some(c) if c.user == viewer.user && c.viewing.as_ref() == Some(id) => {}
                    _ => fault(format!("viewer {conn:?} of room {id} does not know it")),
                }
            }
        }
        for (conn, c) in &self.connections {
            if let Some(id) = &c.viewing
                && !self
                    .rooms
                    .get(id)
                    .is_some_and(|r| r.viewers.contains_key(conn))
            {
                fault(format!(
                    "{conn:?} views room {id}, which has no such viewer"
                ));
            }
        }
        faults
    }

    /// Every media seat: each connection in each call or room, by space. The fuzz target checks
    /// that each seat that disappears gets exactly one `MediaCommand::Leave`.
    #[cfg(feature = "fuzzing")]
    pub fn seats(&self) -> std::collections::BTreeSet<(protocol::CallId, protocol::ConnectionId)> {
        let calls = self
            .calls
            .iter()
            .flat_map(|(id, e)| e.call.seats().map(move |(conn, _)| (id.clone(), conn)));
        let rooms = self.rooms.iter().flat_map(|(id, r)| {
            r.seats()
                .chain(r.viewer_seats())
                .map(move |(conn, _)| (id.clone(), conn))
        });
        calls.chain(rooms).collect()
    }
}
