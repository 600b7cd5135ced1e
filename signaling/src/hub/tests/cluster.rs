//! A clustered hub: guests from other nodes, notices for other nodes, snapshots and adoption.

use super::*;
use crate::cluster::{Interest, MoveReason, NodeId, StateWrite, Topology};
use crate::hub::cluster::{ClusterNotice, Elsewhere};

fn clustered(node: &str) -> World {
    World::with(HubSettings {
        topology: Topology::Clustered,
        node: NodeId::new(node),
        ..settings()
    })
}

impl World {
    fn notices(&mut self) -> Vec<ClusterNotice> {
        std::iter::from_fn(|| self.hub.poll_cluster()).collect()
    }

    fn guest(&mut self, conn: u64, user: &str, home: &str) -> ConnectionId {
        let id = ConnectionId(conn);
        let grants = Grants {
            room: Some("r".into()),
            ..Grants::default()
        };
        let who = identity(user, grants, &[]);
        self.hub.attach_guest(self.now, id, &who, NodeId::new(home));
        id
    }
}

fn listens(notices: &[ClusterNotice]) -> Vec<String> {
    notices
        .iter()
        .filter_map(|n| match n {
            ClusterNotice::Listen(Interest::Devices(u)) => Some(format!("+devices:{u}")),
            ClusterNotice::Listen(Interest::Presence(u)) => Some(format!("+presence:{u}")),
            ClusterNotice::Unlisten(Interest::Devices(u)) => Some(format!("-devices:{u}")),
            ClusterNotice::Unlisten(Interest::Presence(u)) => Some(format!("-presence:{u}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_solo_hub_says_nothing_to_other_nodes() {
    let mut w = World::new();
    let a = w.connect(1, "alice");
    w.initiate(a, &["bob"]);
    assert!(w.hub.poll_cluster().is_none());
}

/// A node listens for a user's devices while it holds one, and for their presence while it
/// holds a device, a watcher or a space of theirs.
#[test]
fn channels_follow_devices_watchers_and_spaces() {
    let mut w = clustered("n1");
    let a = w.connect(1, "alice");
    let mut got = listens(&w.notices());
    got.sort();
    assert_eq!(got, vec!["+devices:alice", "+presence:alice"]);
    w.send(
        a,
        ClientEvent::PresenceSubscribe(UserIds {
            user_ids: vec!["carol".into()],
        }),
    )
    .unwrap();
    assert_eq!(listens(&w.notices()), vec!["+presence:carol"]);
    // A call with bob, who is nowhere here, makes this node care about bob's presence.
    w.initiate(a, &["bob"]);
    assert_eq!(listens(&w.notices()), vec!["+presence:bob"]);
    w.hub.disconnect(w.now, a);
    let mut got = listens(&w.notices());
    got.sort();
    assert_eq!(
        got,
        vec!["-devices:alice", "-presence:carol"],
        "alice's call rings on: her presence still matters here"
    );
}

/// Ringing reaches the callee's devices on other nodes through their nodes; the call is indexed
/// for the callee and snapshotted.
#[test]
fn a_call_to_a_user_elsewhere_is_fanned_out_indexed_and_snapshotted() {
    let mut w = clustered("n1");
    let a = w.connect(1, "alice");
    w.notices();
    let call = w.initiate(a, &["bob"]);
    let notices = w.notices();
    assert!(
        notices.iter().any(|n| matches!(n,
            ClusterNotice::ToDevices { user, except: None, event }
                if user.as_str() == "bob" && event.name() == "call:incoming")),
        "{notices:?}"
    );
    let indexed: Vec<&str> = notices
        .iter()
        .filter_map(|n| match n {
            ClusterNotice::Write(StateWrite::UserCall { user, call: c, .. }) if *c == call => {
                Some(user.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        indexed.len(),
        2,
        "caller and callee are indexed: {indexed:?}"
    );
    assert!(notices.iter().any(|n| matches!(n,
        ClusterNotice::Write(StateWrite::Snapshot { space, .. }) if *space == call)));
}

/// A guest acts like a local device in the call; deliveries to it leave the hub like any other
/// (the driver relays them), and presence ignores it.
#[test]
fn a_guest_accepts_and_is_delivered_to_without_coming_online_here() {
    let mut w = clustered("n1");
    let a = w.connect(1, "alice");
    let call = w.initiate(a, &["bob"]);
    w.out();
    w.notices();
    let b = w.guest(900, "bob", "n2");
    w.send(b, ClientEvent::CallAccept(call_ref(&call))).unwrap();
    let out = w.out();
    assert!(out.contains(&(1, "call:accepted")), "{out:?}");
    assert!(out.contains(&(1, "call:participant:joined")), "{out:?}");
    assert_eq!(w.hub.stats().online_users, 1, "only alice is online here");
    w.send(
        a,
        ClientEvent::Offer(protocol::Signal {
            call_id: call.clone(),
            target_user_id: Some("bob".into()),
            payload: json!({"type": "offer", "sdp": "v=0"}),
        }),
    )
    .unwrap();
    assert_eq!(w.out(), vec![(900, "offer")], "relayed to the guest");
    // The guest's node says it left: bob keeps his place for the grace period.
    w.hub.disconnect(w.now, b);
    assert_eq!(w.hub.stats().calls, 1);
}

/// A user online on another node is not announced online again, nor offline when one of their
/// devices here goes.
#[test]
fn presence_across_nodes_announces_only_first_and_last_devices() {
    let mut w = clustered("n1");
    let watcher = w.connect(1, "carol");
    w.send(
        watcher,
        ClientEvent::PresenceSubscribe(UserIds {
            user_ids: vec!["alice".into()],
        }),
    )
    .unwrap();
    w.out();
    let who = identity("alice", Grants::default(), &[]);
    w.hub
        .connect_with(w.now, ConnectionId(2), &who, Elsewhere::Online(None));
    assert!(!w.out().iter().any(|(_, e)| *e == "user:online"));
    w.hub
        .disconnect_with(w.now, ConnectionId(2), Elsewhere::Online(None));
    assert!(!w.out().iter().any(|(_, e)| *e == "user:offline"));
    w.hub.connect(w.now, ConnectionId(3), &who);
    assert!(w.out().contains(&(1, "user:online")));
    let notices = w.notices();
    assert!(notices.iter().any(|n| matches!(n,
        ClusterNotice::Presence { user, event } if user.as_str() == "alice" && event.name() == "user:online")));
    w.hub.disconnect(w.now, ConnectionId(3));
    assert!(w.out().contains(&(1, "user:offline")));
}

/// Another node restores a room from its snapshot: devices homed on the dead owner are gone,
/// the others stay (as guests) and are told to renegotiate their media.
#[test]
fn a_room_snapshot_is_adopted_without_the_dead_nodes_devices() {
    let admin = Grants {
        admin: true,
        ..Grants::default()
    };
    let mut owner = clustered("n1");
    let a = owner.connect_with(1, "alice", admin.clone());
    owner
        .send(
            a,
            ClientEvent::RoomJoin(protocol::RoomRef { room: "r".into() }),
        )
        .unwrap();
    let b = owner.guest(200, "bob", "n2");
    owner
        .send(
            b,
            ClientEvent::RoomJoin(protocol::RoomRef { room: "r".into() }),
        )
        .unwrap();
    let snapshot = owner.hub.snapshot(&"room:r".into()).expect("owned here");
    // The snapshot survives its trip through JSON, as it does through Redis.
    let json = serde_json::to_string(&snapshot).unwrap();
    let snapshot: crate::hub::snapshot::SpaceSnapshot = serde_json::from_str(&json).unwrap();

    let mut heir = clustered("n3");
    let adopted = heir.hub.adopt(
        heir.now,
        &snapshot,
        &NodeId::new("n1"),
        MoveReason::NodeFailed,
    );
    assert_eq!(
        adopted.guests.get(&NodeId::new("n2")),
        Some(&vec![ConnectionId(200)])
    );
    assert_eq!(heir.out(), vec![(200, "media:moved")]);
    let seat = heir
        .hub
        .authorize_media(ConnectionId(200), Some(&"room:r".into()))
        .expect("bob sits in the adopted room");
    assert_eq!(seat.user.as_str(), "bob");
    assert!(
        heir.hub
            .authorize_media(ConnectionId(1), Some(&"room:r".into()))
            .is_err(),
        "alice was on the dead node"
    );
}

/// A call adopted after its owner died keeps its members; one whose every device was on the
/// dead node gets the reconnect grace, and the call ends as `failed` if they do not come back.
#[test]
fn an_adopted_call_gives_members_of_the_dead_node_the_grace_period() {
    let mut owner = clustered("n1");
    let a = owner.connect(1, "alice");
    let call = owner.initiate(a, &["bob"]);
    let b = owner.guest(200, "bob", "n2");
    owner
        .send(b, ClientEvent::CallAccept(call_ref(&call)))
        .unwrap();
    let snapshot = owner.hub.snapshot(&call).unwrap();

    let mut heir = clustered("n3");
    heir.hub.adopt(
        heir.now,
        &snapshot,
        &NodeId::new("n1"),
        MoveReason::NodeFailed,
    );
    assert_eq!(heir.hub.stats().calls, 1);
    assert!(heir.out().is_empty(), "a P2P call's media does not move");
    // Bob's device survives and can still signal... to nobody until alice is back.
    heir.notices();
    heir.advance(Duration::from_secs(21));
    assert_eq!(heir.hub.stats().calls, 0, "alice never came back");
    // The end reaches bob through his own node, which delivers to all his devices there.
    let notices = heir.notices();
    assert!(
        notices.iter().any(|n| matches!(n,
            ClusterNotice::ToDevices { user, event, .. }
                if user.as_str() == "bob" && event.name() == "call:ended")),
        "{notices:?}"
    );
}

/// A space handed to another node is forgotten here without ending it.
#[test]
fn a_released_space_ends_for_nobody() {
    let mut w = clustered("n1");
    let a = w.connect(1, "alice");
    let call = w.initiate(a, &["bob"]);
    w.out();
    w.notices();
    w.hub.release(&call);
    assert_eq!(w.hub.stats().calls, 0);
    assert!(w.out().is_empty(), "nobody is told the call ended");
    assert!(
        !w.notices()
            .iter()
            .any(|n| matches!(n, ClusterNotice::Write(StateWrite::Released { .. }))),
        "the new owner's records are left alone"
    );
}
