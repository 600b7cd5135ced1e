//! The signaling hub (`signaling::hub::Hub`) driven through a sequence of operations, the quinn
//! way: devices of a few users connect and disconnect, send every kind of call, room, relay and
//! presence event (typed from JSON exactly as a client's would be), take viewers' seats in
//! rooms (as WHEP sessions do), and time moves. After every
//! step the harness checks:
//! - the hub's registries agree with each other and with its limits (`Hub::audit`);
//! - every event goes to a connection that is connected now;
//! - the hub's counts match the harness's own record of connections and online users;
//! - media seats end with exactly one `Leave` each: a seat that disappears gets one, a seat
//!   that stays gets none (no ghost participant in the SFU, no leave for a stranger);
//! - when everyone has gone and every grace period and call limit has passed, nothing is left.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run hub_ops`.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use protocol::{CallId, ClientEvent, ConnectionId, ServerEvent, UserId};
use serde_json::{Value, json};
use signaling::auth::{Grants, Identity};
use signaling::cluster::{NodeId, Topology};
use signaling::hub::call::CallRules;
use signaling::hub::{Hub, HubSettings};
use signaling::ice::IceServers;
use signaling::media::MediaCommand;
use signaling::metrics::Metrics;

const USERS: [&str; 4] = ["ana", "bo", "cy", "dee"];
const ROOMS: [&str; 3] = ["lobby", "standup", "x"];
const RING_TIMEOUT: Duration = Duration::from_secs(45);
const GRACE: Duration = Duration::from_secs(20);
const MAX_DURATION: Duration = Duration::from_secs(3600);

#[derive(Arbitrary, Debug)]
enum Op {
    /// A new device of a user connects into slot `slot` (if the slot is free).
    Connect { slot: u8, user: u8, admin: bool },
    /// The device in `slot` disconnects.
    Disconnect { slot: u8 },
    /// The device in `slot` sends an event.
    Send { slot: u8, event: Event },
    /// The device in `slot` takes a viewer's seat in a room, as a WHEP session does.
    View { slot: u8, room: u8 },
    /// Time moves.
    Advance { secs: u16, millis: u16 },
}

#[derive(Arbitrary, Debug)]
enum Event {
    Initiate {
        invitees: Vec<u8>,
        video: bool,
        sfu: bool,
    },
    Accept(Call),
    Reject(Call),
    End(Call),
    Join(Call),
    Ringing(Call),
    Signal {
        call: Call,
        target: Option<u8>,
        kind: u8,
    },
    MediaToggle {
        call: Call,
        video: bool,
        enabled: bool,
    },
    ScreenShare {
        call: Call,
        start: bool,
    },
    Status {
        status: u8,
        text: Option<String>,
    },
    ActivityPing,
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    RoomJoin(u8),
    RoomLeave(u8),
}

/// A call the harness heard of (by index), a room by name, or an id nobody issued.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Call {
    Known(u8),
    Room(u8),
    Unknown,
}

#[derive(Arbitrary, Debug)]
struct Scenario {
    ops: Vec<Op>,
}

fuzz_target!(|scenario: Scenario| {
    let mut h = Harness::new();
    for op in scenario.ops.into_iter().take(200) {
        h.step(op);
    }
    h.finish();
});

struct Harness {
    hub: Hub,
    now: Instant,
    next_conn: u64,
    /// Connected devices by slot, with their user.
    slots: BTreeMap<u8, (ConnectionId, UserId)>,
    /// Call ids seen in acks and events, oldest first.
    calls: Vec<CallId>,
    seats: BTreeSet<(CallId, ConnectionId)>,
}

impl Harness {
    fn new() -> Harness {
        let settings = HubSettings {
            rules: CallRules {
                ring_timeout: RING_TIMEOUT,
                max_duration: MAX_DURATION,
                reconnect_grace: GRACE,
                p2p_max: 2,
            },
            max_participants: 3,
            max_calls_per_user: 2,
            max_presence_subscriptions: 3,
            away_after: Duration::from_secs(300),
            invites_per_minute: 6,
            invite_burst: 3,
            visibility: config::PresenceVisibility::Shared,
            last_seen_capacity: 3,
            rooms_auto_create: true,
            max_room_participants: 3,
            max_rooms: 2,
            topology: Topology::Solo,
            node: NodeId::new("fuzz"),
        };
        let now = Instant::now();
        let ice = IceServers::new(&config::IceConfig::default());
        Harness {
            hub: Hub::new(settings, ice, Metrics::unregistered(), now),
            now,
            next_conn: 1,
            slots: BTreeMap::new(),
            calls: Vec::new(),
            seats: BTreeSet::new(),
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Connect { slot, user, admin } => {
                let slot = slot % 8;
                if self.slots.contains_key(&slot) {
                    return;
                }
                let user = UserId::from(USERS[usize::from(user) % USERS.len()]);
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                let identity = Identity {
                    user_id: user.clone(),
                    name: format!("{user}!"),
                    grants: Grants {
                        admin,
                        ..Grants::default()
                    },
                    contacts: Default::default(),
                };
                self.slots.insert(slot, (conn, user));
                self.hub.connect(self.now, conn, &identity);
            }
            Op::Disconnect { slot } => {
                let Some((conn, _)) = self.slots.remove(&(slot % 8)) else {
                    return;
                };
                self.hub.disconnect(self.now, conn);
            }
            Op::Send { slot, event } => {
                let Some((conn, _)) = self.slots.get(&(slot % 8)).cloned() else {
                    return;
                };
                let Some((name, data)) = self.wire(event) else {
                    return;
                };
                // Typed as the session types a client's event; what fails here never reaches
                // the hub.
                let Ok(event) = ClientEvent::parse(name, data) else {
                    return;
                };
                if let Ok(ack) = self.hub.handle(self.now, conn, event) {
                    self.learn(&ack);
                }
            }
            Op::View { slot, room } => {
                let Some((conn, _)) = self.slots.get(&(slot % 8)).cloned() else {
                    return;
                };
                let name = ROOMS[usize::from(room) % ROOMS.len()];
                if let Ok(id) = self.hub.view_room(self.now, conn, name) {
                    self.learn(&json!({ "roomId": id.as_str() }));
                }
            }
            Op::Advance { secs, millis } => {
                self.now += Duration::from_secs(u64::from(secs % 4000))
                    + Duration::from_millis(u64::from(millis));
            }
        }
        self.hub.handle_timeout(self.now);
        self.check();
    }

    /// The event as a client would put it on the wire.
    fn wire(&self, event: Event) -> Option<(&'static str, Value)> {
        let users = |picks: &[u8]| -> Vec<&str> {
            picks
                .iter()
                .take(5)
                .map(|u| USERS[usize::from(*u) % USERS.len()])
                .collect()
        };
        Some(match event {
            Event::Initiate {
                invitees,
                video,
                sfu,
            } => {
                let mut data = json!({
                    "conversationId": "conv-1",
                    "callType": if video { "video" } else { "audio" },
                    "participants": users(&invitees),
                });
                if sfu {
                    data["mode"] = json!("sfu");
                }
                ("call:initiate", data)
            }
            Event::Accept(c) => ("call:accept", json!({"callId": self.call_id(c)})),
            Event::Reject(c) => ("call:reject", json!({"callId": self.call_id(c)})),
            Event::End(c) => ("call:end", json!({"callId": self.call_id(c)})),
            Event::Join(c) => ("call:join", json!({"callId": self.call_id(c)})),
            Event::Ringing(c) => ("call:ringing", json!({"callId": self.call_id(c)})),
            Event::Signal { call, target, kind } => {
                let (name, field) = [
                    ("offer", "offer"),
                    ("answer", "answer"),
                    ("ice-candidate", "candidate"),
                ][usize::from(kind) % 3];
                let mut data =
                    json!({"callId": self.call_id(call), field: {"type": name, "sdp": "v=0"}});
                if let Some(t) = target {
                    data["targetUserId"] = json!(USERS[usize::from(t) % USERS.len()]);
                }
                (name, data)
            }
            Event::MediaToggle {
                call,
                video,
                enabled,
            } => (
                "call:media-toggle",
                json!({"callId": self.call_id(call), "mediaType": if video { "video" } else { "audio" }, "enabled": enabled}),
            ),
            Event::ScreenShare { call, start } => (
                if start {
                    "screen:share-start"
                } else {
                    "screen:share-stop"
                },
                json!({"callId": self.call_id(call)}),
            ),
            Event::Status { status, text } => {
                let status = ["online", "away", "busy", "dnd", "offline"][usize::from(status) % 5];
                (
                    "user:status:update",
                    json!({"status": status, "text": text}),
                )
            }
            Event::ActivityPing => ("activity:ping", Value::Null),
            Event::Subscribe(u) => ("presence:subscribe", json!({"userIds": users(&u)})),
            Event::Unsubscribe(u) => ("presence:unsubscribe", json!({"userIds": users(&u)})),
            Event::RoomJoin(r) => (
                "room:join",
                json!({"room": ROOMS[usize::from(r) % ROOMS.len()]}),
            ),
            Event::RoomLeave(r) => (
                "room:leave",
                json!({"room": ROOMS[usize::from(r) % ROOMS.len()]}),
            ),
        })
    }

    fn call_id(&self, call: Call) -> String {
        match call {
            Call::Known(i) if !self.calls.is_empty() => {
                self.calls[usize::from(i) % self.calls.len()].0.clone()
            }
            Call::Room(r) => format!("room:{}", ROOMS[usize::from(r) % ROOMS.len()]),
            _ => "call-nobody-issued".to_owned(),
        }
    }

    fn learn(&mut self, value: &Value) {
        for field in ["callId", "roomId"] {
            if let Some(id) = value.get(field).and_then(Value::as_str) {
                let id = CallId(id.to_owned());
                if !self.calls.contains(&id) {
                    self.calls.push(id);
                }
            }
        }
    }

    fn check(&mut self) {
        let faults = self.hub.audit(self.now);
        assert!(faults.is_empty(), "hub state inconsistent: {faults:#?}");

        let connected: HashSet<ConnectionId> = self.slots.values().map(|(c, _)| *c).collect();
        while let Some(delivery) = self.hub.poll_output() {
            assert!(
                connected.contains(&delivery.to),
                "{} addressed to {:?}, which is not connected",
                delivery.event.name(),
                delivery.to
            );
            if let ServerEvent::CallIncoming(incoming) = &*delivery.event {
                let id = incoming.call_id.clone();
                if !self.calls.contains(&id) {
                    self.calls.push(id);
                }
            }
        }

        let stats = self.hub.stats();
        assert_eq!(stats.connections, connected.len(), "connection count");
        let online: HashSet<&UserId> = self.slots.values().map(|(_, u)| u).collect();
        assert_eq!(stats.online_users, online.len(), "online user count");

        let seats = self.hub.seats();
        let mut left = BTreeSet::new();
        while let Some(command) = self.hub.poll_media() {
            if let MediaCommand::Leave { space, conn, .. } = command {
                assert!(
                    self.seats.contains(&(space.clone(), conn)),
                    "leave for {conn:?} in {space}, which had no seat there"
                );
                assert!(left.insert((space, conn)), "a seat left twice");
            }
        }
        let gone: BTreeSet<_> = self.seats.difference(&seats).cloned().collect();
        let rejoined: BTreeSet<_> = left.difference(&gone).cloned().collect();
        // A seat that left and came back within one step has its leave, and is seated again.
        assert!(
            rejoined.iter().all(|s| seats.contains(s)),
            "leave for a seat that stayed"
        );
        let ghosts: Vec<_> = gone.difference(&left).collect();
        assert!(ghosts.is_empty(), "seats gone without a leave: {ghosts:?}");
        self.seats = seats;
    }

    /// Everyone disconnects; after every grace period and the longest call, nothing is left.
    fn finish(mut self) {
        for slot in self.slots.keys().copied().collect::<Vec<_>>() {
            self.step(Op::Disconnect { slot });
        }
        self.now += MAX_DURATION + RING_TIMEOUT + GRACE + Duration::from_secs(1);
        self.hub.handle_timeout(self.now);
        self.check();
        let stats = self.hub.stats();
        assert_eq!(
            (
                stats.connections,
                stats.online_users,
                stats.user_records,
                stats.calls,
                stats.rooms
            ),
            (0, 0, 0, 0, 0),
            "state left after everyone went: {stats:?}"
        );
        assert!(self.seats.is_empty(), "seats left: {:?}", self.seats);
    }
}
