//! Scenarios for the server API's operations on the hub (see `hub::admin`): kept rooms,
//! removals, metadata, data messages, ending calls; the registries stay consistent throughout.

use super::*;
use crate::hub::admin::{AdminOp, AdminOutput};

fn op(w: &mut World, op: AdminOp) -> Result<AdminOutput, Failure> {
    let out = w.hub.admin(w.now, op);
    w.consistent();
    out
}

fn create(w: &mut World, name: &str) -> Result<AdminOutput, Failure> {
    op(
        w,
        AdminOp::CreateRoom {
            name: name.into(),
            metadata: "m".into(),
        },
    )
}

#[test]
fn a_created_room_stays_while_empty_until_deleted_and_is_limited() {
    let mut w = World::new();
    let Ok(AdminOutput::Room(room)) = create(&mut w, "r") else {
        panic!("created")
    };
    assert!(room.kept && room.metadata == "m" && room.participants == 0);
    assert_eq!(
        create(&mut w, "r").unwrap_err().code,
        ErrorCode::InvalidState
    );
    // `max_rooms` is 1 in these scenarios.
    assert_eq!(
        create(&mut w, "s").unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    let a = w.connect_with(1, "alice", room_grant("r"));
    // Auto-creation is off, but the room exists; its metadata comes with the ack.
    let ack = w.send(a, join("r")).unwrap();
    assert_eq!(ack["metadata"], "m");
    w.send(
        a,
        ClientEvent::RoomLeave(protocol::RoomRef { room: "r".into() }),
    )
    .unwrap();
    let Ok(AdminOutput::Rooms(rooms)) = op(&mut w, AdminOp::Rooms) else {
        panic!("listed")
    };
    assert_eq!(rooms.len(), 1, "the empty room stays");
    w.send(a, join("r")).unwrap();
    w.out();
    w.media_leaves();
    let Ok(AdminOutput::Delivered(1)) = op(&mut w, AdminOp::DeleteRoom { name: "r".into() }) else {
        panic!("deleted")
    };
    let events = w.out_events();
    assert!(matches!(&*events[0].event,
        ServerEvent::CallEnded(e) if e.reason == protocol::EndReason::Terminated));
    assert_eq!(w.media_leaves(), vec![("room:r".into(), 1)]);
    assert_eq!(w.hub.stats().rooms, 0);
    let e = op(&mut w, AdminOp::DeleteRoom { name: "r".into() }).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn a_removed_participant_hears_why_and_the_others_hear_they_left() {
    let mut w = World::new();
    create(&mut w, "r").unwrap();
    let a = w.connect_with(1, "alice", room_grant("r"));
    let b = w.connect_with(2, "bob", room_grant("r"));
    w.send(a, join("r")).unwrap();
    w.send(b, join("r")).unwrap();
    w.out();
    w.media_leaves();
    let space: CallId = "room:r".into();
    let remove = AdminOp::Remove {
        space: space.clone(),
        user: "bob".into(),
    };
    op(&mut w, remove.clone()).unwrap();
    assert_eq!(
        w.out(),
        vec![(2, "call:ended"), (1, "call:participant:left")]
    );
    assert_eq!(w.media_leaves(), vec![("room:r".into(), 2)]);
    assert_eq!(op(&mut w, remove).unwrap_err().code, ErrorCode::NotFound);
    let Ok(AdminOutput::Participants(list)) = op(&mut w, AdminOp::Participants { space }) else {
        panic!("listed")
    };
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].user_id.as_str(), list[0].connections[0].id),
        ("alice", 1)
    );
}

#[test]
fn metadata_and_data_reach_the_room_and_only_the_users_named() {
    let mut w = World::new();
    create(&mut w, "r").unwrap();
    let a = w.connect_with(1, "alice", room_grant("r"));
    let b = w.connect_with(2, "bob", room_grant("r"));
    w.send(a, join("r")).unwrap();
    w.send(b, join("r")).unwrap();
    w.out();
    let set = AdminOp::RoomMetadata {
        name: "r".into(),
        metadata: "x".into(),
    };
    op(&mut w, set).unwrap();
    assert_eq!(w.out(), vec![(1, "room:metadata"), (2, "room:metadata")]);
    let set = AdminOp::ParticipantMetadata {
        name: "r".into(),
        user: "bob".into(),
        metadata: "speaker".into(),
    };
    op(&mut w, set).unwrap();
    assert_eq!(
        w.out(),
        vec![(1, "participant:metadata"), (2, "participant:metadata")]
    );
    let stranger = AdminOp::ParticipantMetadata {
        name: "r".into(),
        user: "carol".into(),
        metadata: "x".into(),
    };
    assert_eq!(op(&mut w, stranger).unwrap_err().code, ErrorCode::NotFound);
    let data = AdminOp::SendData {
        name: "r".into(),
        topic: None,
        data: json!(1),
        to: Some(vec!["alice".into()]),
    };
    assert!(matches!(op(&mut w, data), Ok(AdminOutput::Delivered(1))));
    assert_eq!(w.out(), vec![(1, "room:data")]);
    // Bob's metadata goes when he leaves.
    w.send(
        b,
        ClientEvent::RoomLeave(protocol::RoomRef { room: "r".into() }),
    )
    .unwrap();
    assert!(
        w.hub.rooms[&"room:r".into()]
            .participant_metadata
            .is_empty()
    );
}

#[test]
fn calls_are_listed_and_removing_or_ending_tells_each_the_right_reason() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let c = w.connect(3, "carol");
    let id = w.initiate(a, &["bob", "carol"]);
    w.send(
        b,
        ClientEvent::CallAccept(CallRef {
            call_id: id.clone(),
        }),
    )
    .unwrap();
    w.send(
        c,
        ClientEvent::CallAccept(CallRef {
            call_id: id.clone(),
        }),
    )
    .unwrap();
    w.out();
    let Ok(AdminOutput::Calls(calls)) = op(&mut w, AdminOp::Calls) else {
        panic!("listed")
    };
    assert_eq!((calls.len(), calls[0].phase.as_str()), (1, "active"));
    assert_eq!(calls[0].participants.len(), 3);
    let remove = AdminOp::Remove {
        space: id.clone(),
        user: "carol".into(),
    };
    op(&mut w, remove).unwrap();
    let reasons: Vec<(u64, protocol::EndReason)> = w
        .out_events()
        .into_iter()
        .filter_map(|d| match &*d.event {
            ServerEvent::CallEnded(e) => Some((d.to.0, e.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec![(3, protocol::EndReason::Removed)]);
    op(&mut w, AdminOp::EndCall { id: id.clone() }).unwrap();
    let mut reasons: Vec<(u64, protocol::EndReason)> = w
        .out_events()
        .into_iter()
        .filter_map(|d| match &*d.event {
            ServerEvent::CallEnded(e) => Some((d.to.0, e.reason)),
            _ => None,
        })
        .collect();
    reasons.sort_by_key(|r| r.0);
    assert_eq!(
        reasons,
        vec![
            (1, protocol::EndReason::Terminated),
            (2, protocol::EndReason::Terminated)
        ]
    );
    assert_eq!(w.hub.stats().calls, 0);
    let e = op(&mut w, AdminOp::EndCall { id }).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

#[test]
fn removing_someone_from_a_one_to_one_call_ends_it_for_the_other() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    let b = w.connect(2, "bob");
    let id = w.initiate(a, &["bob"]);
    w.send(
        b,
        ClientEvent::CallAccept(CallRef {
            call_id: id.clone(),
        }),
    )
    .unwrap();
    w.out();
    let remove = AdminOp::Remove {
        space: id,
        user: "bob".into(),
    };
    op(&mut w, remove).unwrap();
    let mut reasons: Vec<(u64, protocol::EndReason)> = w
        .out_events()
        .into_iter()
        .filter_map(|d| match &*d.event {
            ServerEvent::CallEnded(e) => Some((d.to.0, e.reason)),
            _ => None,
        })
        .collect();
    reasons.sort_by_key(|r| r.0);
    assert_eq!(
        reasons,
        vec![
            (1, protocol::EndReason::Terminated),
            (2, protocol::EndReason::Removed)
        ]
    );
    assert_eq!(w.hub.stats().calls, 0);
}
