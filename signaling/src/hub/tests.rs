//! Hub scenarios with several users and devices, time moved by hand.

use super::*;
use crate::auth::Grants;
use crate::media::MediaCommand;
use protocol::{CallInitiate, CallRef, CallType, StatusUpdate, UserIds};
use serde_json::json;

mod admin;
mod cluster;
mod lifecycle;
mod policy;
mod viewers;

/// Settings for scenarios; presence is visible to everyone here (the visibility modes have
/// their own scenarios in `policy`).
fn settings() -> HubSettings {
    HubSettings {
        rules: CallRules {
            ring_timeout: Duration::from_secs(45),
            max_duration: Duration::from_secs(3600),
            reconnect_grace: Duration::from_secs(20),
            p2p_max: 2,
        },
        max_participants: 4,
        max_calls_per_user: 2,
        max_presence_subscriptions: 3,
        away_after: Duration::from_secs(300),
        invites_per_minute: 60,
        invite_burst: 10,
        visibility: config::PresenceVisibility::Everyone,
        last_seen_capacity: 100,
        rooms_auto_create: false,
        max_room_participants: 2,
        max_rooms: 1,
        topology: crate::cluster::Topology::Solo,
        node: crate::cluster::NodeId::new("local"),
    }
}

struct World {
    hub: Hub,
    now: Instant,
}

impl World {
    fn new() -> Self {
        Self::with(settings())
    }

    fn with(settings: HubSettings) -> Self {
        let now = Instant::now();
        let ice = IceServers::new(&config::IceConfig::default());
        Self {
            hub: Hub::new(settings, ice, Metrics::unregistered(), now),
            now,
        }
    }

    fn connect(&mut self, conn: u64, user: &str) -> ConnectionId {
        self.connect_with(conn, user, Grants::default())
    }

    fn connect_with(&mut self, conn: u64, user: &str, grants: Grants) -> ConnectionId {
        self.connect_as(conn, &identity(user, grants, &[]))
    }

    fn connect_as(&mut self, conn: u64, identity: &Identity) -> ConnectionId {
        let id = ConnectionId(conn);
        self.hub.connect(self.now, id, identity);
        self.consistent();
        id
    }

    /// `user`'s presence as `viewer` (with no contacts) may see it.
    fn presence(&self, viewer: &str, user: &str) -> protocol::Presence {
        let viewer = identity(viewer, Grants::default(), &[]);
        self.hub
            .presence_of(self.now, &viewer, &[user.into()])
            .remove(0)
    }

    fn media_leaves(&mut self) -> Vec<(String, u64)> {
        self.media_commands()
            .into_iter()
            .filter_map(|c| match c {
                MediaCommand::Leave { space, conn, .. } => Some((space.to_string(), conn.0)),
                MediaCommand::Mute { .. } => None,
            })
            .collect()
    }

    fn media_commands(&mut self) -> Vec<MediaCommand> {
        std::iter::from_fn(|| self.hub.poll_media()).collect()
    }

    fn send(&mut self, conn: ConnectionId, event: ClientEvent) -> Result<Value, Failure> {
        let result = self.hub.handle(self.now, conn, event);
        self.consistent();
        result
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.hub.handle_timeout(self.now);
        self.consistent();
    }

    /// Every scenario step leaves the hub's registries in agreement (see `audit`).
    fn consistent(&self) {
        let faults = self.hub.audit(self.now);
        assert!(faults.is_empty(), "hub state inconsistent: {faults:#?}");
    }

    /// Drains the output as (connection, event name) pairs.
    fn out(&mut self) -> Vec<(u64, &'static str)> {
        std::iter::from_fn(|| self.hub.poll_output())
            .map(|d| (d.to.0, d.event.name()))
            .collect()
    }

    /// Drains the output, keeping the `presence:changed` events about `user`.
    fn about(&mut self, user: &str) -> Vec<(u64, protocol::PresenceStatus)> {
        self.out_events()
            .into_iter()
            .filter_map(|d| match &*d.event {
                ServerEvent::PresenceChanged(p) if p.user_id.as_str() == user => {
                    Some((d.to.0, p.status))
                }
                _ => None,
            })
            .collect()
    }

    fn out_events(&mut self) -> Vec<Delivery> {
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }

    fn initiate(&mut self, conn: ConnectionId, invitees: &[&str]) -> CallId {
        let ack = self.try_initiate(conn, invitees).unwrap();
        CallId(ack["callId"].as_str().unwrap().to_owned())
    }
}

fn identity(user: &str, grants: Grants, contacts: &[&str]) -> Identity {
    Identity {
        user_id: user.into(),
        name: format!("{user}!"),
        grants,
        contacts: contacts.iter().map(|c| UserId::from(*c)).collect(),
    }
}

impl World {
    fn try_initiate(&mut self, conn: ConnectionId, invitees: &[&str]) -> Result<Value, Failure> {
        self.send(
            conn,
            ClientEvent::CallInitiate(CallInitiate {
                conversation_id: "conv".into(),
                call_type: CallType::Audio,
                participants: invitees.iter().map(|s| UserId::from(*s)).collect(),
                mode: None,
            }),
        )
    }
}

fn call_ref(id: &CallId) -> CallRef {
    CallRef {
        call_id: id.clone(),
    }
}

#[test]
fn a_call_rings_every_device_and_late_devices_too() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b1 = w.connect(2, "bob");
    w.out();
    let call = w.initiate(a, &["bob"]);
    assert_eq!(w.out(), vec![(1, "call:initiated"), (2, "call:incoming")]);
    // A device that connects while the call rings rings too.
    let b2 = w.connect(3, "bob");
    assert_eq!(w.out(), vec![(3, "call:incoming")]);
    let ack = w
        .send(b2, ClientEvent::CallAccept(call_ref(&call)))
        .unwrap();
    assert_eq!(
        ack["participants"],
        json!([{"userId": "alice", "name": "alice!"}])
    );
    let mut out = w.out();
    out.sort();
    assert_eq!(
        out,
        vec![
            (1, "call:accepted"),
            (1, "call:participant:joined"),
            (2, "call:answered-elsewhere"),
        ]
    );
    let _ = b1;
}

#[test]
fn presence_reaches_only_call_members_and_subscribers() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let _b = w.connect(2, "bob");
    let carol = w.connect(3, "carol");
    let dave = w.connect(4, "dave");
    assert!(w.out().is_empty(), "nobody shares anything yet");
    w.initiate(a, &["bob"]);
    w.out();
    // Carol watches alice explicitly; dave does not care.
    let ack = w
        .send(
            carol,
            ClientEvent::PresenceSubscribe(UserIds {
                user_ids: vec!["alice".into(), "nobody".into()],
            }),
        )
        .unwrap();
    assert_eq!(ack["presences"][0]["status"], "online");
    assert_eq!(ack["presences"][1]["status"], "offline");
    w.send(
        a,
        ClientEvent::StatusUpdate(StatusUpdate {
            status: protocol::PresenceStatus::Busy,
            text: Some("in a meeting".into()),
        }),
    )
    .unwrap();
    let deliveries = w.out_events();
    let mut targets: Vec<u64> = deliveries.iter().map(|d| d.to.0).collect();
    targets.sort();
    assert_eq!(
        targets,
        vec![2, 3],
        "bob (in the call) and carol (subscribed), not dave"
    );
    let ServerEvent::PresenceChanged(p) = &*deliveries[0].event else {
        panic!()
    };
    assert_eq!(p.text.as_deref(), Some("in a meeting"));
    // A second device of alice hears her own change.
    let a2 = w.connect(5, "alice");
    w.out();
    w.send(
        a,
        ClientEvent::StatusUpdate(StatusUpdate {
            status: protocol::PresenceStatus::Dnd,
            text: None,
        }),
    )
    .unwrap();
    let mut targets: Vec<u64> = w.out().into_iter().map(|(c, _)| c).collect();
    targets.sort();
    assert_eq!(targets, vec![2, 3, 5]);
    let _ = (dave, a2);
}

#[test]
fn going_offline_and_online_is_announced_to_watchers() {
    let mut w = World::new();
    let carol = w.connect(3, "carol");
    w.send(
        carol,
        ClientEvent::PresenceSubscribe(UserIds {
            user_ids: vec!["alice".into()],
        }),
    )
    .unwrap();
    let a1 = w.connect(1, "alice");
    let a2 = w.connect(2, "alice");
    assert_eq!(
        w.out(),
        vec![(3, "user:online")],
        "online once, not per device"
    );
    w.hub.disconnect(w.now, a1);
    assert!(w.out().is_empty(), "still online on another device");
    w.hub.disconnect(w.now, a2);
    assert_eq!(w.out(), vec![(3, "user:offline")]);
    let p = w.presence("carol", "alice");
    assert_eq!(p.status, protocol::PresenceStatus::Offline);
    assert!(p.last_seen_at.is_some());
    // Unsubscribed watchers hear nothing more.
    w.send(
        carol,
        ClientEvent::PresenceUnsubscribe(UserIds {
            user_ids: vec!["alice".into()],
        }),
    )
    .unwrap();
    w.connect(4, "alice");
    assert!(w.out().is_empty());
}

#[test]
fn idle_users_become_away_and_activity_brings_them_back() {
    let mut w = World::new();
    let carol = w.connect(3, "carol");
    w.send(
        carol,
        ClientEvent::PresenceSubscribe(UserIds {
            user_ids: vec!["alice".into()],
        }),
    )
    .unwrap();
    let a = w.connect(1, "alice");
    w.out();
    w.advance(Duration::from_secs(200));
    w.send(a, ClientEvent::ActivityPing).unwrap();
    w.advance(Duration::from_secs(200));
    assert!(
        w.about("alice").is_empty(),
        "activity at 200 s postpones away to 500 s"
    );
    w.advance(Duration::from_secs(101));
    assert_eq!(
        w.about("alice"),
        vec![
            (1, protocol::PresenceStatus::Away),
            (3, protocol::PresenceStatus::Away)
        ]
    );
    assert_eq!(
        w.presence("carol", "alice").status,
        protocol::PresenceStatus::Away
    );
    w.send(a, ClientEvent::ActivityPing).unwrap();
    assert_eq!(
        w.about("alice"),
        vec![
            (1, protocol::PresenceStatus::Online),
            (3, protocol::PresenceStatus::Online)
        ]
    );
    assert_eq!(
        w.presence("carol", "alice").status,
        protocol::PresenceStatus::Online
    );
    // A chosen status is never overridden by idleness.
    w.send(
        a,
        ClientEvent::StatusUpdate(StatusUpdate {
            status: protocol::PresenceStatus::Busy,
            text: None,
        }),
    )
    .unwrap();
    w.advance(Duration::from_secs(1000));
    assert_eq!(
        w.presence("carol", "alice").status,
        protocol::PresenceStatus::Busy
    );
    assert!(
        w.hub.stats().timers <= 2,
        "idle checks do not pile up: {:?}",
        w.hub.stats()
    );
    for _ in 0..100 {
        w.send(
            a,
            ClientEvent::StatusUpdate(StatusUpdate {
                status: protocol::PresenceStatus::Online,
                text: None,
            }),
        )
        .unwrap();
        w.send(
            a,
            ClientEvent::StatusUpdate(StatusUpdate {
                status: protocol::PresenceStatus::Busy,
                text: None,
            }),
        )
        .unwrap();
    }
    assert!(
        w.hub.stats().timers <= 2,
        "status flapping queues no timers: {:?}",
        w.hub.stats()
    );
}

#[test]
fn limits_are_enforced_with_codes() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let too_many = ClientEvent::CallInitiate(CallInitiate {
        conversation_id: "c".into(),
        call_type: CallType::Audio,
        participants: ["b", "c", "d", "e"]
            .iter()
            .map(|s| UserId::from(*s))
            .collect(),
        mode: None,
    });
    assert_eq!(
        w.send(a, too_many).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let only_me = ClientEvent::CallInitiate(CallInitiate {
        conversation_id: "c".into(),
        call_type: CallType::Audio,
        participants: vec!["alice".into(), "alice".into()],
        mode: None,
    });
    assert_eq!(
        w.send(a, only_me).unwrap_err().code,
        ErrorCode::InvalidPayload
    );
    w.initiate(a, &["b"]);
    w.initiate(a, &["c"]);
    let third = ClientEvent::CallInitiate(CallInitiate {
        conversation_id: "c".into(),
        call_type: CallType::Audio,
        participants: vec!["d".into()],
        mode: None,
    });
    assert_eq!(w.send(a, third).unwrap_err().code, ErrorCode::LimitExceeded);
    let subs = UserIds {
        user_ids: ["1", "2", "3", "4"]
            .iter()
            .map(|s| UserId::from(*s))
            .collect(),
    };
    assert_eq!(
        w.send(a, ClientEvent::PresenceSubscribe(subs))
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    let e = w
        .send(
            a,
            ClientEvent::CallAccept(CallRef {
                call_id: "nope".into(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn grace_period_survives_a_reload_and_nothing_is_left_afterwards() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let call = w.initiate(a, &["bob"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    w.out();
    // Bob reloads: his device drops, a new one connects and is told it may resume.
    w.hub.disconnect(w.now, b);
    w.advance(Duration::from_secs(5));
    let b2 = w.connect(3, "bob");
    let out = w.out_events();
    assert!(
        out.iter()
            .any(|d| d.to.0 == 3 && d.event.name() == "call:resumable"),
        "{out:?}"
    );
    w.send(b2, ClientEvent::CallJoin(call_ref(&call))).unwrap();
    assert!(w.out().contains(&(1, "call:participant:joined")));
    w.advance(Duration::from_secs(60));
    assert_eq!(w.hub.stats().calls, 1, "the call survived the reload");
    // Alice loses her connection for good: the call fails after the grace period.
    w.hub.disconnect(w.now, a);
    w.advance(Duration::from_secs(21));
    let out = w.out_events();
    let ended = out.iter().find_map(|d| match &*d.event {
        ServerEvent::CallEnded(e) => Some((d.to.0, e.reason)),
        _ => None,
    });
    assert_eq!(ended, Some((3, protocol::EndReason::Failed)));
    w.hub.disconnect(w.now, b2);
    w.advance(Duration::from_secs(3600));
    let stats = w.hub.stats();
    assert_eq!(
        (
            stats.connections,
            stats.online_users,
            stats.user_records,
            stats.calls
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(stats.timers, 0, "{stats:?}");
}

/// A call that outlived its ring timeout has its `max_duration` deadline queued; once the call
/// ends and its users leave, no timer stays behind (a lazily deleted queue held one per such
/// call for an hour, and every departed user's idle check until `away_after`).
#[test]
fn ended_calls_and_departed_users_take_their_timers_with_them() {
    let mut w = World::new();
    for n in 0..20u64 {
        let a = w.connect(10 * n + 1, &format!("alice{n}"));
        let b = w.connect(10 * n + 2, &format!("bob{n}"));
        let call = w.initiate(a, &[&format!("bob{n}")]);
        w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
        w.advance(Duration::from_secs(50));
        assert_eq!(
            w.hub.stats().calls,
            1,
            "the call runs past its ring timeout"
        );
        w.send(a, ClientEvent::CallEnd(call_ref(&call))).unwrap();
        w.hub.disconnect(w.now, a);
        w.hub.disconnect(w.now, b);
        w.out();
    }
    let stats = w.hub.stats();
    assert_eq!((stats.calls, stats.user_records), (0, 0), "{stats:?}");
    assert_eq!(stats.timers, 0, "nothing is left to time: {stats:?}");
}

#[test]
fn events_from_unknown_connections_are_refused() {
    let mut w = World::new();
    let e = w
        .send(ConnectionId(42), ClientEvent::ActivityPing)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
}

#[test]
fn draining_refuses_new_calls_and_tells_everyone() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    w.connect(2, "bob");
    w.hub.shutdown(Duration::from_millis(1500));
    let out = w.out_events();
    assert_eq!(out.len(), 2);
    assert!(matches!(&*out[0].event, ServerEvent::ServerShutdown(s) if s.reconnect_in_ms == 1500));
    let e = w
        .send(
            a,
            ClientEvent::CallInitiate(CallInitiate {
                conversation_id: "c".into(),
                call_type: CallType::Video,
                participants: vec!["bob".into()],
                mode: None,
            }),
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::ShuttingDown);
}

fn room_grant(room: &str) -> Grants {
    Grants {
        room: Some(room.into()),
        ..Grants::default()
    }
}

fn admin() -> Grants {
    Grants {
        admin: true,
        ..Grants::default()
    }
}

fn join(room: &str) -> ClientEvent {
    ClientEvent::RoomJoin(protocol::RoomRef { room: room.into() })
}

#[test]
fn rooms_need_their_grant_and_are_created_by_admins_when_auto_creation_is_off() {
    let mut w = World::new();
    let a = w.connect_with(1, "alice", room_grant("standup"));
    let m = w.connect_with(2, "mallory", room_grant("other"));
    assert_eq!(
        w.send(m, join("standup")).unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        w.send(a, join("standup")).unwrap_err().code,
        ErrorCode::NotFound
    );
    let boss = w.connect_with(3, "boss", admin());
    let ack = w.send(boss, join("standup")).unwrap();
    assert_eq!(ack["roomId"], "room:standup");
    let ack = w.send(a, join("standup")).unwrap();
    assert_eq!(
        ack["participants"],
        json!([{"userId": "boss", "name": "boss!"}])
    );
    assert!(w.out().contains(&(3, "call:participant:joined")));
    // max_room_participants = 2; max_rooms = 1.
    let b = w.connect_with(4, "bob", room_grant("standup"));
    assert_eq!(
        w.send(b, join("standup")).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        w.send(boss, join("another")).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    assert_eq!(w.hub.stats().rooms, 1);
}

#[test]
fn rooms_close_when_the_last_connection_leaves_and_media_is_told() {
    let mut w = World::new();
    let boss = w.connect_with(1, "boss", admin());
    let a = w.connect_with(2, "alice", room_grant("r"));
    w.send(boss, join("r")).unwrap();
    w.send(a, join("r")).unwrap();
    w.out();
    w.send(
        boss,
        ClientEvent::StatusUpdate(StatusUpdate {
            status: protocol::PresenceStatus::Dnd,
            text: None,
        }),
    )
    .unwrap();
    assert!(
        w.out().contains(&(2, "presence:changed")),
        "room members see presence"
    );
    let who = w.hub.authorize_media(a, Some(&"room:r".into())).unwrap();
    assert_eq!((who.user.as_str(), who.conn), ("alice", a));
    let e = w
        .hub
        .authorize_media(ConnectionId(9), Some(&"room:r".into()))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    w.send(
        a,
        ClientEvent::RoomLeave(protocol::RoomRef { room: "r".into() }),
    )
    .unwrap();
    assert_eq!(w.out(), vec![(1, "call:participant:left")]);
    assert_eq!(w.media_leaves(), vec![("room:r".into(), 2)]);
    assert_eq!(
        w.hub
            .authorize_media(a, Some(&"room:r".into()))
            .unwrap_err(),
        no_such_call()
    );
    // Room members see each other's presence; alice left, so she no longer hears the boss.
    w.send(
        boss,
        ClientEvent::StatusUpdate(StatusUpdate {
            status: protocol::PresenceStatus::Busy,
            text: None,
        }),
    )
    .unwrap();
    assert!(!w.out().iter().any(|(c, _)| *c == 2));
    w.hub.disconnect(w.now, boss);
    assert_eq!(w.media_leaves(), vec![("room:r".into(), 1)]);
    let stats = w.hub.stats();
    assert_eq!((stats.rooms, stats.user_records), (0, 1));
}

#[test]
fn media_goes_to_the_sfu_only_in_sfu_calls_and_leaves_are_reported() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let c = w.connect(3, "carol");
    let call = w.initiate(a, &["bob", "carol"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    let e = w.hub.authorize_media(a, Some(&call)).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState, "still peer-to-peer");
    w.out();
    w.send(c, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    let mut modes: Vec<u64> = w
        .out()
        .into_iter()
        .filter(|(_, e)| *e == "call:mode")
        .map(|(c, _)| c)
        .collect();
    modes.sort();
    assert_eq!(modes, vec![1, 2, 3]);
    assert!(w.hub.authorize_media(c, Some(&call)).is_ok());
    // Bob hangs up: his device leaves the media space; then the call ends for the rest.
    w.send(b, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    assert_eq!(w.media_leaves(), vec![(call.to_string(), 2)]);
    w.send(a, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    w.send(c, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    let mut left: Vec<u64> = w.media_leaves().into_iter().map(|(_, c)| c).collect();
    left.sort();
    assert_eq!(left, vec![1, 3]);
    assert_eq!(
        w.hub.authorize_media(a, Some(&call)).unwrap_err().code,
        ErrorCode::NotFound
    );
}

/// Found by the `hub_ops` fuzz target: a member who left a group call and joined it back was
/// not indexed as in the call again, so their disconnect never reached it (their dead device
/// stayed seated, the others never heard they left) and the call did not count against their
/// limit.
#[test]
fn a_member_who_rejoins_a_group_call_leaves_it_when_disconnecting() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let c = w.connect(3, "carol");
    let call = w.initiate(a, &["bob", "carol"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    w.send(c, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    w.send(b, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    w.send(b, ClientEvent::CallJoin(call_ref(&call))).unwrap();
    w.out();
    w.media_commands();
    w.hub.disconnect(w.now, b);
    w.consistent();
    assert_eq!(
        w.media_leaves(),
        vec![(call.to_string(), 2)],
        "bob's seat is freed"
    );
    w.advance(Duration::from_secs(21));
    let left: Vec<u64> = w
        .out_events()
        .into_iter()
        .filter(
            |d| matches!(&*d.event, ServerEvent::ParticipantLeft(p) if p.user_id.as_str() == "bob"),
        )
        .map(|d| d.to.0)
        .collect();
    assert_eq!(left, vec![1, 3], "the others hear bob left after his grace");
}

#[test]
fn an_invitee_who_comes_online_while_it_rings_is_rung() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let call = w.initiate(a, &["bob"]);
    assert_eq!(
        w.out(),
        vec![(1, "call:initiated")],
        "bob has no device yet"
    );
    assert_eq!(
        w.hub.stats().online_users,
        1,
        "an offline invitee is not online"
    );
    let b = w.connect(2, "bob");
    assert_eq!(
        w.out(),
        vec![(1, "user:online"), (2, "call:incoming")],
        "alice shares the call, so she hears bob come online; bob's device rings"
    );
    w.send(b, ClientEvent::CallReject(call_ref(&call))).unwrap();
    w.hub.disconnect(w.now, b);
    w.hub.disconnect(w.now, a);
    let stats = w.hub.stats();
    assert_eq!((stats.user_records, stats.calls), (0, 0), "{stats:?}");
}

#[test]
fn an_invitee_who_never_connects_leaves_no_record_behind() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    w.initiate(a, &["bob"]);
    w.advance(Duration::from_secs(46));
    w.hub.disconnect(w.now, a);
    let stats = w.hub.stats();
    assert_eq!((stats.user_records, stats.calls), (0, 0), "{stats:?}");
}

fn room_join(w: &mut World, conn: ConnectionId, room: &str) -> Result<Value, Failure> {
    w.send(
        conn,
        ClientEvent::RoomJoin(protocol::RoomRef { room: room.into() }),
    )
}

fn room_leave(w: &mut World, conn: ConnectionId, room: &str) -> Result<Value, Failure> {
    w.send(
        conn,
        ClientEvent::RoomLeave(protocol::RoomRef { room: room.into() }),
    )
}

/// A seat's leave and its next join come out in the order they happened, each time, so the
/// media server (which takes them in that order) can never end with a ghost seat.
#[test]
fn rapid_leave_and_rejoin_issue_one_leave_per_leave_in_order() {
    let mut w = World::new();
    let a = w.connect_with(1, "alice", admin());
    room_join(&mut w, a, "r").unwrap();
    let first = w.hub.authorize_media(a, None).unwrap().joined_at;
    for _ in 0..3 {
        room_leave(&mut w, a, "r").unwrap();
        assert!(
            w.hub.authorize_media(a, None).is_err(),
            "no seat between a leave and the next join"
        );
        w.advance(Duration::from_millis(10));
        room_join(&mut w, a, "r").unwrap();
        assert_eq!(w.media_leaves(), vec![("room:r".into(), 1)]);
        let seat = w.hub.authorize_media(a, None).unwrap();
        assert!(seat.joined_at > first, "a rejoin is a new seat");
    }
    w.hub.disconnect(w.now, a);
    assert_eq!(w.media_leaves(), vec![("room:r".into(), 1)]);
}

/// The hub is the one record of where a connection sits: after leaving room A for room B,
/// a request that names no space goes to B (the session no longer keeps its own list).
#[test]
fn leaving_one_room_then_joining_another_moves_the_default_space() {
    let mut w = World::new();
    w.hub.settings.max_rooms = 2;
    let a = w.connect_with(1, "alice", admin());
    room_join(&mut w, a, "a").unwrap();
    assert_eq!(
        w.hub.authorize_media(a, None).unwrap().space.as_str(),
        "room:a"
    );
    room_join(&mut w, a, "b").unwrap();
    let e = w.hub.authorize_media(a, None).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidPayload, "two spaces: name one");
    room_leave(&mut w, a, "a").unwrap();
    assert_eq!(
        w.hub.authorize_media(a, None).unwrap().space.as_str(),
        "room:b"
    );
    assert_eq!(w.media_leaves(), vec![("room:a".into(), 1)]);
}

/// Mute toggles reach the media server only where media goes through it, with the seat.
#[test]
fn media_toggles_become_mute_commands_in_sfu_spaces_only() {
    let mut w = World::new();
    let a = w.connect_with(1, "alice", admin());
    let b = w.connect(2, "bob");
    let call = w.initiate(a, &["bob"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    let toggle = |space: &CallId| {
        ClientEvent::MediaToggle(protocol::MediaToggle {
            call_id: space.clone(),
            media_type: protocol::MediaType::Audio,
            enabled: false,
        })
    };
    w.send(a, toggle(&call)).unwrap();
    assert!(w.media_commands().is_empty(), "a P2P call has no SFU seat");
    room_join(&mut w, a, "r").unwrap();
    w.send(a, toggle(&"room:r".into())).unwrap();
    match w.media_commands().as_slice() {
        [MediaCommand::Mute { seat, kind, muted }] => {
            assert_eq!((seat.space.as_str(), seat.conn), ("room:r", a));
            assert_eq!((*kind, *muted), (protocol::MediaType::Audio, true));
        }
        other => panic!("expected one mute command, got {other:?}"),
    }
}
