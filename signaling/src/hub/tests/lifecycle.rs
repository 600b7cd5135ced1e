//! Lifecycle events (webhooks, ADR 0073): what each path through a call or room records.

use super::*;
use crate::lifecycle::Happening;

impl World {
    /// Drains the lifecycle events as short strings: `type user reason`.
    pub(super) fn lifecycle(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.hub.poll_lifecycle())
            .map(|l| match l.what {
                Happening::RoomStarted { room } => format!("room.started {room}"),
                Happening::RoomFinished { room, .. } => format!("room.finished {room}"),
                Happening::ParticipantJoined { user, .. } => format!("joined {user}"),
                Happening::ParticipantLeft { user, reason, .. } => {
                    format!("left {user} {}", reason.as_str())
                }
                Happening::CallStarted {
                    initiator,
                    invitees,
                    ..
                } => format!("call.started {initiator} {}", ids(&invitees)),
                Happening::CallAnswered { by, .. } => format!("call.answered {by}"),
                Happening::CallEnded {
                    reason,
                    answered_at,
                    participants,
                    ..
                } => format!(
                    "call.ended {} answered={} {}",
                    reason.as_str(),
                    answered_at.is_some(),
                    ids(&participants)
                ),
            })
            .collect()
    }
}

fn ids(users: &[UserId]) -> String {
    users
        .iter()
        .map(UserId::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_one_to_one_call_reports_start_answer_leaves_and_end() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let call = w.initiate(a, &["bob"]);
    assert_eq!(w.lifecycle(), ["call.started alice bob", "joined alice"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    assert_eq!(w.lifecycle(), ["call.answered bob", "joined bob"]);
    // A dropped device within the grace, and back: not a leave.
    w.hub.disconnect(w.now, b);
    let b2 = w.connect(3, "bob");
    w.send(b2, ClientEvent::CallJoin(call_ref(&call))).unwrap();
    assert!(w.lifecycle().is_empty(), "a reconnect is not news");
    w.send(b2, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    assert_eq!(
        w.lifecycle(),
        [
            "left alice call_ended",
            "left bob left",
            "call.ended ended answered=true alice,bob"
        ]
    );
}

#[test]
fn unanswered_and_lost_calls_say_why() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let _b = w.connect(2, "bob");
    w.initiate(a, &["bob"]);
    w.lifecycle();
    w.advance(Duration::from_secs(46));
    assert_eq!(
        w.lifecycle(),
        [
            "left alice call_ended",
            "call.ended missed answered=false alice"
        ]
    );
    // A group call whose member does not come back within the grace.
    let b = w.connect(3, "bob");
    let c = w.connect(4, "carol");
    let call = w.initiate(a, &["bob", "carol"]);
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    w.send(c, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    w.lifecycle();
    w.hub.disconnect(w.now, c);
    w.advance(Duration::from_secs(21));
    assert_eq!(w.lifecycle(), ["left carol disconnected"]);
    w.send(b, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    w.send(a, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    let out = w.lifecycle();
    assert_eq!(out[0], "left bob left");
    assert_eq!(out[1], "left alice left");
    assert_eq!(out[2], "call.ended ended answered=true alice,bob,carol");
}

#[test]
fn rooms_report_start_members_and_finish() {
    let mut w = World::with(HubSettings {
        rooms_auto_create: true,
        ..settings()
    });
    let grants = Grants {
        room: Some("standup".into()),
        ..Grants::default()
    };
    let a = w.connect_with(1, "alice", grants.clone());
    let a2 = w.connect_with(2, "alice", grants.clone());
    let b = w.connect_with(3, "bob", grants);
    let join = |room: &str| ClientEvent::RoomJoin(protocol::RoomRef { room: room.into() });
    w.send(a, join("standup")).unwrap();
    w.send(a2, join("standup")).unwrap();
    w.send(b, join("standup")).unwrap();
    assert_eq!(
        w.lifecycle(),
        ["room.started room:standup", "joined alice", "joined bob"],
        "a second device is not a second join"
    );
    w.hub.disconnect(w.now, a);
    assert!(
        w.lifecycle().is_empty(),
        "alice is still in on another device"
    );
    w.hub.disconnect(w.now, a2);
    w.send(
        b,
        ClientEvent::RoomLeave(protocol::RoomRef {
            room: "standup".into(),
        }),
    )
    .unwrap();
    assert_eq!(
        w.lifecycle(),
        [
            "left alice disconnected",
            "left bob left",
            "room.finished room:standup"
        ]
    );
}
