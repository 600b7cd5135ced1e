//! Scenarios for the rules that keep users from abusing one another: call quotas that
//! invitations cannot use up, invitation limits per target, whose presence a user may see, how
//! many `lastSeenAt` records are kept, and one answer for spaces that do not exist or are not
//! the caller's.

use super::*;
use config::PresenceVisibility;
use protocol::{MediaToggle, MediaType, PresenceStatus, Signal};

fn status(w: &mut World, conn: ConnectionId, status: PresenceStatus) {
    w.send(
        conn,
        ClientEvent::StatusUpdate(StatusUpdate {
            status,
            text: Some(format!("{status:?}")),
        }),
    )
    .unwrap();
}

fn subscribe(w: &mut World, conn: ConnectionId, users: &[&str]) -> Value {
    w.send(
        conn,
        ClientEvent::PresenceSubscribe(UserIds {
            user_ids: users.iter().map(|u| UserId::from(*u)).collect(),
        }),
    )
    .unwrap()
}

/// Connections that got any presence event about `user`.
fn heard_about(w: &mut World, user: &str) -> Vec<u64> {
    let mut to: Vec<u64> = w
        .out_events()
        .into_iter()
        .filter(|d| match &*d.event {
            ServerEvent::UserOnline(e) => e.user_id.as_str() == user,
            ServerEvent::UserOffline(e) => e.user_id.as_str() == user,
            ServerEvent::PresenceChanged(e) => e.user_id.as_str() == user,
            _ => false,
        })
        .map(|d| d.to.0)
        .collect();
    to.dedup();
    to
}

/// `user`'s presence as `viewer` (with its token's contacts) may see it, as JSON without the id.
fn view(w: &World, viewer: &Identity, user: &str) -> Value {
    let p = w.hub.presence_of(w.now, viewer, &[user.into()]).remove(0);
    let mut v = serde_json::to_value(p).unwrap();
    v.as_object_mut().unwrap().remove("userId");
    v
}

fn with_visibility(visibility: PresenceVisibility) -> World {
    World::with(HubSettings {
        visibility,
        ..settings()
    })
}

#[test]
fn calls_that_only_ring_a_user_do_not_use_up_their_quota() {
    // max_calls_per_user = 2.
    let mut w = World::new();
    let victim = w.connect(1, "victim");
    let mut ringing = Vec::new();
    for i in 0..5 {
        let m = w.connect(10 + i, &format!("mallory{i}"));
        ringing.push(w.initiate(m, &["victim"]));
    }
    let rung = w
        .out()
        .iter()
        .filter(|e| **e == (1, "call:incoming"))
        .count();
    assert_eq!(rung, 5);
    // Five calls ring the victim, who may still start one of their own and take another.
    let own = w.initiate(victim, &["friend"]);
    w.send(victim, ClientEvent::CallAccept(call_ref(&ringing[0])))
        .unwrap();
    // Now the victim takes part in two calls: a third is refused, started or accepted.
    assert_eq!(
        w.try_initiate(victim, &["friend2"]).unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        w.send(victim, ClientEvent::CallAccept(call_ref(&ringing[1])))
            .unwrap_err()
            .code,
        ErrorCode::LimitExceeded
    );
    // Another device joining a call the victim is in already is not another call.
    let v2 = w.connect(2, "victim");
    w.send(v2, ClientEvent::CallJoin(call_ref(&ringing[0])))
        .unwrap();
    // Leaving a call frees its place.
    w.send(victim, ClientEvent::CallEnd(call_ref(&own)))
        .unwrap();
    w.send(victim, ClientEvent::CallAccept(call_ref(&ringing[1])))
        .unwrap();
}

#[test]
fn invitations_are_limited_per_target_over_every_caller() {
    let mut w = World::with(HubSettings {
        invites_per_minute: 6,
        invite_burst: 3,
        ..settings()
    });
    let _bob = w.connect(1, "bob");
    let callers: Vec<ConnectionId> = (0..4)
        .map(|i| w.connect(10 + i, &format!("caller{i}")))
        .collect();
    for c in &callers[..3] {
        w.initiate(*c, &["bob"]);
    }
    w.out();
    // The fourth invitation within the burst is refused, whoever sends it, and a group call
    // with bob in it rings nobody: frank is not rung and keeps his budget.
    let e = w.try_initiate(callers[3], &["frank", "bob"]).unwrap_err();
    assert_eq!(e.code, ErrorCode::InviteRateLimited);
    assert!(
        e.message.contains("bob") && !e.message.contains("frank"),
        "{}",
        e.message
    );
    assert!(e.message.contains("retry in 10 s"), "{}", e.message);
    assert!(w.out().is_empty(), "nobody was rung");
    assert_eq!(w.hub.stats().calls, 3);
    w.initiate(callers[3], &["frank"]);
    w.initiate(callers[3], &["frank"]);
    w.initiate(callers[0], &["frank"]);
    assert_eq!(
        w.try_initiate(callers[1], &["frank"]).unwrap_err().code,
        ErrorCode::InviteRateLimited,
        "frank had his whole burst of 3"
    );
    // Six per minute: bob may be invited once more ten seconds later.
    w.advance(Duration::from_secs(10));
    w.initiate(callers[1], &["bob"]);
    assert_eq!(
        w.try_initiate(callers[2], &["bob"]).unwrap_err().code,
        ErrorCode::InviteRateLimited
    );
}

#[test]
fn invitation_records_are_dropped_once_their_budget_has_refilled() {
    // 60 per minute with a burst of 10: a bucket is full again 10 s after its last use.
    let mut w = World::new();
    let a = w.connect(1, "alice");
    for round in 0..20 {
        let invitees: Vec<String> = (0..3).map(|i| format!("u{round}-{i}")).collect();
        let invitees: Vec<&str> = invitees.iter().map(String::as_str).collect();
        let call = w.initiate(a, &invitees);
        w.send(a, ClientEvent::CallEnd(call_ref(&call))).unwrap();
    }
    assert_eq!(w.hub.stats().invited_users, 60);
    w.advance(Duration::from_secs(11));
    w.initiate(a, &["late"]);
    assert_eq!(w.hub.stats().invited_users, 1);
}

#[test]
fn everyone_sees_everyone_when_visibility_is_everyone() {
    let mut w = with_visibility(PresenceVisibility::Everyone);
    let stranger = w.connect(1, "stranger");
    subscribe(&mut w, stranger, &["alice"]);
    let a = w.connect(2, "alice");
    status(&mut w, a, PresenceStatus::Busy);
    assert_eq!(heard_about(&mut w, "alice"), vec![1]);
    assert_eq!(w.presence("stranger", "alice").status, PresenceStatus::Busy);
}

#[test]
fn shared_visibility_shows_only_users_sharing_a_call_or_room_and_ends_with_it() {
    let mut w = with_visibility(PresenceVisibility::Shared);
    // In `shared` mode the token's contacts do not count.
    let carol_id = identity("carol", Grants::default(), &["alice"]);
    let carol = w.connect_as(1, &carol_id);
    let ghost = view(&w, &carol_id, "ghost");
    let a = w.connect(2, "alice");
    status(&mut w, a, PresenceStatus::Busy);
    let ack = subscribe(&mut w, carol, &["alice", "ghost"]);
    let mut seen = ack["presences"][0].clone();
    seen.as_object_mut().unwrap().remove("userId");
    assert_eq!(seen, ghost, "alice looks like a user who never existed");
    assert_eq!(view(&w, &carol_id, "alice"), ghost);
    status(&mut w, a, PresenceStatus::Dnd);
    assert!(heard_about(&mut w, "alice").is_empty(), "no events either");

    // A call (ringing is enough) makes them visible to each other.
    let call = w.initiate(a, &["carol"]);
    assert_eq!(w.presence("carol", "alice").status, PresenceStatus::Dnd);
    assert_eq!(w.presence("alice", "carol").status, PresenceStatus::Online);
    status(&mut w, a, PresenceStatus::Busy);
    assert_eq!(heard_about(&mut w, "alice"), vec![1]);

    // When the call ends, so does visibility, for queries and events alike.
    w.send(carol, ClientEvent::CallReject(call_ref(&call)))
        .unwrap();
    assert_eq!(w.hub.stats().calls, 0);
    assert_eq!(view(&w, &carol_id, "alice"), ghost);
    status(&mut w, a, PresenceStatus::Away);
    w.hub.disconnect(w.now, a);
    assert!(heard_about(&mut w, "alice").is_empty());
    assert_eq!(w.hub.stats().last_seen, 1, "the hub did see alice go");
    assert_eq!(view(&w, &carol_id, "alice"), ghost, "no lastSeenAt either");
}

#[test]
fn shared_visibility_covers_rooms_while_both_are_in_them() {
    let mut w = with_visibility(PresenceVisibility::Shared);
    let boss = w.connect_with(1, "boss", admin());
    let a = w.connect_with(2, "alice", room_grant("r"));
    w.send(boss, join("r")).unwrap();
    assert_eq!(w.presence("alice", "boss").status, PresenceStatus::Offline);
    w.send(a, join("r")).unwrap();
    assert_eq!(w.presence("alice", "boss").status, PresenceStatus::Online);
    w.send(
        a,
        ClientEvent::RoomLeave(protocol::RoomRef { room: "r".into() }),
    )
    .unwrap();
    let p = w.presence("alice", "boss");
    assert_eq!((p.status, p.text), (PresenceStatus::Offline, None));
}

#[test]
fn contacts_visibility_adds_the_users_the_token_lists() {
    let mut w = with_visibility(PresenceVisibility::Contacts);
    let carol_id = identity("carol", Grants::default(), &["alice"]);
    let carol = w.connect_as(1, &carol_id);
    let dave_id = identity("dave", Grants::default(), &[]);
    let dave = w.connect_as(2, &dave_id);
    subscribe(&mut w, carol, &["alice"]);
    subscribe(&mut w, dave, &["alice"]);
    let a = w.connect(3, "alice");
    status(&mut w, a, PresenceStatus::Busy);
    assert_eq!(heard_about(&mut w, "alice"), vec![1], "carol, not dave");
    assert_eq!(view(&w, &carol_id, "alice")["status"], "busy");
    assert_eq!(view(&w, &dave_id, "alice"), view(&w, &dave_id, "ghost"));
    // Contacts go one way: alice's token lists nobody.
    assert_eq!(w.presence("alice", "carol").status, PresenceStatus::Offline);
    // A viewer with no connection (an HTTP query) is judged by its token alone.
    let erin = identity("erin", Grants::default(), &["alice"]);
    assert_eq!(view(&w, &erin, "alice")["status"], "busy");
    // Sharing a call counts in `contacts` mode too.
    w.initiate(a, &["dave"]);
    assert_eq!(view(&w, &dave_id, "alice")["status"], "busy");
}

#[test]
fn last_seen_records_are_bounded() {
    let mut w = World::with(HubSettings {
        last_seen_capacity: 100,
        ..settings()
    });
    for i in 0..10_000u64 {
        let c = w.connect(i, &format!("user-{i}"));
        w.hub.disconnect(w.now, c);
        w.now += Duration::from_millis(1);
        assert!(w.hub.stats().last_seen <= 100);
    }
    assert_eq!(w.hub.stats().last_seen, 100);
    // The most recently gone are remembered; the longest gone are forgotten.
    assert!(w.presence("x", "user-9999").last_seen_at.is_some());
    assert!(w.presence("x", "user-9900").last_seen_at.is_some());
    assert!(w.presence("x", "user-9899").last_seen_at.is_none());
    // Coming back online drops the record.
    w.connect(20_000, "user-9999");
    assert_eq!(w.hub.stats().last_seen, 99);
    assert!(
        w.presence("x", "user-9999").last_seen_at.is_some(),
        "online now"
    );
}

/// Every way of naming a space without being in it, answered for `space`.
fn probe(w: &mut World, conn: ConnectionId, space: &str) -> Vec<Failure> {
    let id = CallId::from(space);
    let events = [
        ClientEvent::MediaToggle(MediaToggle {
            call_id: id.clone(),
            media_type: MediaType::Audio,
            enabled: false,
        }),
        ClientEvent::ScreenShareStart(call_ref(&id)),
        ClientEvent::ScreenShareStop(call_ref(&id)),
        ClientEvent::Offer(Signal {
            call_id: id.clone(),
            target_user_id: Some("bob".into()),
            payload: json!({}),
        }),
        ClientEvent::CallAccept(call_ref(&id)),
        ClientEvent::CallJoin(call_ref(&id)),
        ClientEvent::CallReject(call_ref(&id)),
        ClientEvent::CallEnd(call_ref(&id)),
        ClientEvent::CallRinging(call_ref(&id)),
    ];
    let mut out: Vec<Failure> = events
        .into_iter()
        .map(|e| w.send(conn, e).unwrap_err())
        .collect();
    out.push(w.hub.authorize_media(conn, Some(&id)).unwrap_err());
    out
}

#[test]
fn spaces_that_do_not_exist_and_spaces_one_is_not_in_get_the_same_answer() {
    let mut w = World::new();
    let boss = w.connect_with(1, "boss", admin());
    w.send(boss, join("secret")).unwrap();
    let a = w.connect(2, "alice");
    w.connect(3, "bob");
    let call = w.initiate(a, &["bob"]);
    let mallory = w.connect(4, "mallory");
    w.out();

    let absent_room = probe(&mut w, mallory, "room:nothing-here");
    assert_eq!(probe(&mut w, mallory, "room:secret"), absent_room);
    let absent_call = probe(&mut w, mallory, "00112233445566778899aabb");
    assert_eq!(probe(&mut w, mallory, call.as_str()), absent_call);
    assert!(absent_room.iter().all(|f| *f == no_such_call()));
    assert_eq!(absent_call, absent_room);
    assert!(w.out().is_empty(), "nothing reached the members");
}
