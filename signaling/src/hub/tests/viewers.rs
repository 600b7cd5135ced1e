//! Viewers (WHEP playback, [`crate::hub::room`]'s "Viewers"): hidden seats that members never
//! hear of, webhooks never report as participants, and that still leave cleanly.

use super::*;
use crate::admin::model::ParticipantKind;
use crate::hub::admin::{AdminOp, AdminOutput};

fn view(w: &mut World, conn: ConnectionId, room: &str) -> Result<CallId, Failure> {
    let out = w.hub.view_room(w.now, conn, room);
    w.consistent();
    out
}

fn op(w: &mut World, op: AdminOp) -> Result<AdminOutput, Failure> {
    let out = w.hub.admin(w.now, op);
    w.consistent();
    out
}

/// The room's participants as the server API lists them: `(user, kind, connections)`.
fn listed(w: &mut World, room: &str) -> Vec<(String, ParticipantKind, usize)> {
    let space = crate::hub::room::room_id(room);
    let Ok(AdminOutput::Participants(list)) = op(w, AdminOp::Participants { space }) else {
        panic!("listed")
    };
    list.into_iter()
        .map(|p| (p.user_id, p.kind, p.connections.len()))
        .collect()
}

#[test]
fn members_never_hear_of_a_viewer_and_webhooks_never_report_it() {
    let mut w = World::new();
    let boss = w.connect_with(1, "boss", admin());
    w.send(boss, join("r")).unwrap();
    w.out();
    w.lifecycle();

    let v = w.connect_with(2, "carol", room_grant("r"));
    w.out();
    assert_eq!(view(&mut w, v, "r").unwrap().as_str(), "room:r");
    assert!(
        !w.out().iter().any(|(_, name)| name.starts_with("call:")),
        "no join announced"
    );
    assert!(w.lifecycle().is_empty(), "no participant.joined");
    // A viewer takes a media seat in the room, as the SFU needs.
    let seat = w.hub.authorize_media(v, Some(&"room:r".into())).unwrap();
    assert_eq!((seat.user.as_str(), seat.conn), ("carol", v));

    // `max_room_participants` is 2 here: the viewer leaves room for alice.
    let a = w.connect_with(3, "alice", room_grant("r"));
    let ack = w.send(a, join("r")).unwrap();
    assert_eq!(
        ack["participants"],
        json!([{"userId": "boss", "name": "boss!"}]),
        "the viewer is not listed"
    );
    assert_eq!(w.out(), [(1, "call:participant:joined")], "nor told");
    assert_eq!(w.lifecycle(), ["joined alice"]);
    assert_eq!(
        listed(&mut w, "r"),
        [
            ("alice".into(), ParticipantKind::Participant, 1),
            ("boss".into(), ParticipantKind::Participant, 1),
            ("carol".into(), ParticipantKind::Viewer, 1),
        ],
        "the server API lists it, as a viewer"
    );
    let Ok(AdminOutput::Room(summary)) = op(&mut w, AdminOp::Room { name: "r".into() }) else {
        panic!("summary")
    };
    assert_eq!((summary.participants, summary.viewers), (2, 1));

    w.hub.disconnect(w.now, v);
    w.consistent();
    assert!(
        !w.out().iter().any(|(_, name)| name.starts_with("call:")),
        "no leave announced"
    );
    assert!(w.lifecycle().is_empty(), "no participant.left");
    assert_eq!(w.media_leaves(), [("room:r".to_string(), 2)]);
    assert_eq!(listed(&mut w, "r").len(), 2);
}

#[test]
fn a_viewer_keeps_its_room_open_and_ends_with_it() {
    let mut w = World::with(HubSettings {
        rooms_auto_create: true,
        ..settings()
    });
    // A viewer may come before anyone publishes: it opens the room.
    let v = w.connect_with(1, "carol", room_grant("r"));
    view(&mut w, v, "r").unwrap();
    assert_eq!(w.lifecycle(), ["room.started room:r"]);
    let a = w.connect_with(2, "alice", room_grant("r"));
    w.send(a, join("r")).unwrap();
    room_leave(&mut w, a, "r").unwrap();
    assert_eq!(w.lifecycle(), ["joined alice", "left alice left"]);
    assert_eq!(w.hub.stats().rooms, 1, "the viewer still watches");
    w.out();
    w.media_leaves();

    // The room's deletion ends the viewer's session (`call:ended`) and frees its media seat,
    // without a participant.left.
    let Ok(AdminOutput::Delivered(1)) = op(&mut w, AdminOp::DeleteRoom { name: "r".into() }) else {
        panic!("deleted")
    };
    let events = w.out_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].to, v);
    assert!(matches!(&*events[0].event,
        ServerEvent::CallEnded(e) if e.reason == protocol::EndReason::Terminated));
    assert_eq!(w.media_leaves(), [("room:r".to_string(), 1)]);
    assert_eq!(w.lifecycle(), ["room.finished room:r"]);
    // Its connection is free: it may view again (a new room).
    view(&mut w, v, "r").unwrap();
    w.lifecycle();
    // The last viewer's departure closes a room nobody else is in.
    w.hub.disconnect(w.now, v);
    w.consistent();
    assert_eq!(w.lifecycle(), ["room.finished room:r"]);
    assert_eq!(w.hub.stats().rooms, 0);
}

#[test]
fn the_server_api_removes_a_viewer_without_telling_the_room() {
    let mut w = World::new();
    let boss = w.connect_with(1, "boss", admin());
    w.send(boss, join("r")).unwrap();
    let v = w.connect_with(2, "carol", room_grant("r"));
    view(&mut w, v, "r").unwrap();
    w.out();
    w.lifecycle();
    w.media_leaves();

    let removed = op(
        &mut w,
        AdminOp::Remove {
            space: "room:r".into(),
            user: "carol".into(),
        },
    );
    assert!(
        matches!(removed, Ok(AdminOutput::Delivered(1))),
        "{removed:?}"
    );
    let events = w.out_events();
    assert_eq!(events.len(), 1, "only the viewer hears it");
    assert_eq!(events[0].to, v);
    assert!(matches!(&*events[0].event,
        ServerEvent::CallEnded(e) if e.reason == protocol::EndReason::Removed));
    assert!(w.lifecycle().is_empty());
    assert_eq!(w.media_leaves(), [("room:r".to_string(), 2)]);
    assert_eq!(
        w.hub
            .authorize_media(v, Some(&"room:r".into()))
            .unwrap_err(),
        no_such_call()
    );
    let again = op(
        &mut w,
        AdminOp::Remove {
            space: "room:r".into(),
            user: "carol".into(),
        },
    );
    assert_eq!(again.unwrap_err().code, ErrorCode::NotFound);
}

#[test]
fn a_viewers_connection_takes_no_other_seat() {
    let mut w = World::new();
    let boss = w.connect_with(1, "boss", admin());
    w.send(boss, join("r")).unwrap();
    let v = w.connect_with(2, "carol", room_grant("r"));
    view(&mut w, v, "r").unwrap();
    assert_eq!(
        w.send(v, join("r")).unwrap_err().code,
        ErrorCode::InvalidState
    );
    // And a member's connection cannot turn into a hidden viewer.
    assert_eq!(
        view(&mut w, boss, "r").unwrap_err().code,
        ErrorCode::InvalidState
    );
    // A viewer needs the room's grant, as a join does.
    let m = w.connect_with(3, "mallory", room_grant("other"));
    assert_eq!(view(&mut w, m, "r").unwrap_err().code, ErrorCode::Forbidden);
}
