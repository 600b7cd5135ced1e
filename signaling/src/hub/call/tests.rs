//! Transition tests of the call state machine, with time moved by hand.

use super::*;
use protocol::ErrorCode;
use serde_json::json;

struct Names;

impl Directory for Names {
    fn name_of(&self, user: &UserId) -> String {
        format!("Name of {user}")
    }
    fn ice_for(&self, user: &UserId) -> Vec<IceServer> {
        vec![IceServer {
            urls: vec!["turn:t:3478".into()],
            username: Some(format!("exp:{user}")),
            credential: Some("c".into()),
        }]
    }
}

const RULES: CallRules = CallRules {
    ring_timeout: Duration::from_secs(45),
    max_duration: Duration::from_secs(3600),
    reconnect_grace: Duration::from_secs(20),
    p2p_max: 2,
};

fn ctx(now: Instant) -> Context<'static> {
    Context {
        now,
        rules: RULES,
        dir: &Names,
    }
}

fn u(s: &str) -> UserId {
    s.into()
}

const A1: ConnectionId = ConnectionId(1);
const B1: ConnectionId = ConnectionId(2);
const B2: ConnectionId = ConnectionId(3);
const C1: ConnectionId = ConnectionId(4);

fn start(invitees: &[&str], t0: Instant) -> (Call, Vec<Notice>) {
    Call::initiate(
        "call1".into(),
        "conv".into(),
        CallType::Video,
        None,
        u("alice"),
        A1,
        invitees.iter().map(|s| u(s)).collect(),
        &ctx(t0),
    )
}

fn names(notices: &[Notice]) -> Vec<(&'static str, Audience)> {
    notices
        .iter()
        .map(|n| (n.event.name(), n.to.clone()))
        .collect()
}

fn ended_reason(notices: &[Notice]) -> Option<EndReason> {
    notices.iter().find_map(|n| match &n.event {
        ServerEvent::CallEnded(e) => Some(e.reason),
        _ => None,
    })
}

#[test]
fn initiate_rings_every_invitee_and_tells_the_caller_device() {
    let t0 = Instant::now();
    let (call, notices) = start(&["bob", "carol"], t0);
    assert_eq!(call.phase, Phase::Ringing);
    assert_eq!(call.shape, CallShape::Group);
    assert_eq!(
        names(&notices),
        vec![
            ("call:initiated", Audience::Device(A1)),
            ("call:incoming", Audience::User(u("bob"))),
            ("call:incoming", Audience::User(u("carol"))),
        ]
    );
    let ServerEvent::CallIncoming(incoming) = &notices[1].event else {
        panic!()
    };
    assert_eq!(incoming.from.name, "Name of alice");
    assert_eq!(incoming.call_type, CallType::Video);
    let ServerEvent::CallInitiated(init) = &notices[0].event else {
        panic!()
    };
    assert_eq!(init.ice_servers[0].username.as_deref(), Some("exp:alice"));
}

#[test]
fn accept_joins_stops_other_devices_and_tells_the_caller() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    let notices = call.accept(&u("bob"), B2, &ctx(t0)).unwrap();
    assert_eq!(call.phase, Phase::Active);
    assert_eq!(
        names(&notices),
        vec![
            (
                "call:answered-elsewhere",
                Audience::UserExcept(u("bob"), B2)
            ),
            ("call:accepted", Audience::InCall(u("alice"))),
            ("call:participant:joined", Audience::InCall(u("alice"))),
        ]
    );
    let ServerEvent::CallAccepted(acc) = &notices[1].event else {
        panic!()
    };
    assert_eq!(acc.user_id, u("bob"));
    assert_eq!(acc.ice_servers[0].username.as_deref(), Some("exp:alice"));
    assert!(call.members[&u("bob")].devices.contains_key(&B2));
    // Accepting twice from the same device is a no-op join; from a stranger it is refused.
    assert!(call.accept(&u("bob"), B2, &ctx(t0)).unwrap().is_empty());
    assert_eq!(
        call.accept(&u("mallory"), C1, &ctx(t0)).unwrap_err(),
        crate::hub::no_such_call(),
        "a stranger learns nothing about the call"
    );
    assert_eq!(call.accept(&u("alice"), A1, &ctx(t0)).unwrap().len(), 0);
}

#[test]
fn the_initiator_adds_a_device_by_accepting() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    // Alice is joined already (her initiating device); a second device of hers joins.
    let n = call.accept(&u("alice"), ConnectionId(9), &ctx(t0)).unwrap();
    assert!(n.is_empty());
    assert_eq!(call.phase, Phase::Ringing);
}

#[test]
fn one_to_one_rejection_ends_the_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("alice"), A1, &ctx(t0)).unwrap();
    let notices = call.reject(&u("bob"), &ctx(t0)).unwrap();
    assert_eq!(
        names(&notices)[..2],
        [
            ("call:rejected", Audience::User(u("bob"))),
            ("call:rejected", Audience::InCall(u("alice"))),
        ]
    );
    assert_eq!(ended_reason(&notices), Some(EndReason::Rejected));
    assert_eq!(call.phase, Phase::Ended(EndReason::Rejected));
    assert_eq!(
        call.accept(&u("bob"), B1, &ctx(t0)).unwrap_err().code,
        ErrorCode::InvalidState
    );
}

#[test]
fn group_call_rings_on_until_everyone_declined() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob", "carol"], t0);
    let n = call.reject(&u("bob"), &ctx(t0)).unwrap();
    assert_eq!(ended_reason(&n), None);
    assert_eq!(
        call.reject(&u("bob"), &ctx(t0)).unwrap_err().code,
        ErrorCode::InvalidState
    );
    let n = call.reject(&u("carol"), &ctx(t0)).unwrap();
    assert_eq!(ended_reason(&n), Some(EndReason::Rejected));
}

#[test]
fn caller_cancelling_marks_invitees_missed() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    let notices = call.hang_up(&u("alice"), &ctx(t0)).unwrap();
    assert_eq!(
        names(&notices),
        vec![
            ("call:ended", Audience::User(u("alice"))),
            ("call:missed", Audience::User(u("bob"))),
            ("call:ended", Audience::User(u("bob"))),
        ]
    );
    assert_eq!(ended_reason(&notices), Some(EndReason::Ended));
}

#[test]
fn one_to_one_hang_up_ends_for_both() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    let notices = call.hang_up(&u("bob"), &ctx(t0)).unwrap();
    assert_eq!(
        names(&notices),
        vec![
            ("call:ended", Audience::User(u("alice"))),
            ("call:ended", Audience::User(u("bob"))),
        ]
    );
    assert!(call.is_ended());
    assert!(
        call.relay(&u("alice"), A1, Some(&u("bob")), "offer", json!({}))
            .is_err()
    );
}

#[test]
fn group_participants_leave_and_the_last_one_ends_it() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob", "carol"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    call.accept(&u("carol"), C1, &ctx(t0)).unwrap();
    let n = call.hang_up(&u("bob"), &ctx(t0)).unwrap();
    assert_eq!(
        names(&n),
        vec![
            ("call:ended", Audience::User(u("bob"))),
            ("call:participant:left", Audience::InCall(u("alice"))),
            ("call:participant:left", Audience::InCall(u("carol"))),
        ]
    );
    assert!(!call.is_ended());
    // Bob may come back to a group call.
    let n = call.join(&u("bob"), B2, &ctx(t0)).unwrap();
    assert_eq!(n.len(), 2, "alice and carol learn bob is back: {n:?}");
    call.hang_up(&u("bob"), &ctx(t0)).unwrap();
    call.hang_up(&u("alice"), &ctx(t0)).unwrap();
    let n = call.hang_up(&u("carol"), &ctx(t0)).unwrap();
    assert_eq!(ended_reason(&n), Some(EndReason::Ended));
    assert_eq!(call.phase, Phase::Ended(EndReason::Ended));
}

#[test]
fn ring_timeout_ends_an_unanswered_call_as_missed() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    assert_eq!(call.next_deadline(), Some(t0 + RULES.ring_timeout));
    assert!(call.tick(&ctx(t0 + Duration::from_secs(44))).is_empty());
    let n = call.tick(&ctx(t0 + RULES.ring_timeout));
    assert!(names(&n).contains(&("call:missed", Audience::User(u("bob")))));
    assert_eq!(ended_reason(&n), Some(EndReason::Missed));
    assert_eq!(call.next_deadline(), None);
}

#[test]
fn ring_timeout_in_an_active_group_call_only_stops_the_ringing() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob", "carol"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    let n = call.tick(&ctx(t0 + RULES.ring_timeout));
    assert_eq!(
        names(&n),
        vec![
            ("call:missed", Audience::User(u("carol"))),
            ("call:ended", Audience::User(u("carol"))),
        ]
    );
    assert_eq!(call.phase, Phase::Active);
    assert_eq!(call.members[&u("carol")].state, MemberState::Missed);
    // Carol can still join late.
    assert!(
        call.join(&u("carol"), C1, &ctx(t0 + RULES.ring_timeout))
            .is_ok()
    );
}

#[test]
fn reconnect_within_grace_keeps_the_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    call.device_lost(&u("bob"), B1, t0 + RULES.reconnect_grace);
    assert!(matches!(
        call.members[&u("bob")].state,
        MemberState::Reconnecting { .. }
    ));
    assert_eq!(call.next_deadline(), Some(t0 + RULES.reconnect_grace));
    let t1 = t0 + Duration::from_secs(10);
    assert!(call.tick(&ctx(t1)).is_empty());
    let n = call.join(&u("bob"), B2, &ctx(t1)).unwrap();
    assert_eq!(
        names(&n),
        vec![("call:participant:joined", Audience::InCall(u("alice")))]
    );
    assert!(call.tick(&ctx(t0 + Duration::from_secs(30))).is_empty());
    assert_eq!(call.phase, Phase::Active);
}

#[test]
fn grace_expiry_fails_a_one_to_one_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    call.device_lost(&u("bob"), B1, t0 + RULES.reconnect_grace);
    let n = call.tick(&ctx(t0 + RULES.reconnect_grace));
    assert_eq!(ended_reason(&n), Some(EndReason::Failed));
}

#[test]
fn a_second_device_dropping_does_not_start_the_grace_period() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    call.join(&u("bob"), B2, &ctx(t0)).unwrap();
    call.device_lost(&u("bob"), B1, t0 + RULES.reconnect_grace);
    assert_eq!(call.members[&u("bob")].state, MemberState::Joined);
}

#[test]
fn maximum_duration_ends_the_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    assert_eq!(call.next_deadline(), Some(t0 + RULES.max_duration));
    let n = call.tick(&ctx(t0 + RULES.max_duration));
    assert_eq!(ended_reason(&n), Some(EndReason::Timeout));
}

#[test]
fn signals_are_relayed_only_between_joined_members() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob", "carol"], t0);
    let offer = json!({"type": "offer", "sdp": "v=0"});
    // Bob is still ringing: alice cannot reach him yet, and bob cannot signal.
    let e = call
        .relay(&u("alice"), A1, Some(&u("bob")), "offer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    let e = call
        .relay(&u("bob"), B1, Some(&u("alice")), "offer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    let n = call
        .relay(&u("alice"), A1, Some(&u("bob")), "offer", offer.clone())
        .unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].to, Audience::InCall(u("bob")));
    let ServerEvent::Offer(s) = &n[0].event else {
        panic!()
    };
    assert_eq!(
        (s.from.clone(), s.payload["offer"].clone()),
        (u("alice"), offer.clone())
    );
    // Strangers, other devices, self and missing targets are refused.
    let e = call
        .relay(&u("mallory"), C1, Some(&u("bob")), "offer", offer.clone())
        .unwrap_err();
    assert_eq!(e, crate::hub::no_such_call());
    let e = call
        .relay(&u("bob"), B2, Some(&u("alice")), "answer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
    let e = call
        .relay(&u("bob"), B1, Some(&u("bob")), "answer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidPayload);
    let e = call
        .relay(&u("bob"), B1, None, "answer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidPayload);
    let e = call
        .relay(&u("bob"), B1, Some(&u("mallory")), "answer", offer.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let n = call
        .relay(
            &u("bob"),
            B1,
            Some(&u("alice")),
            "ice-candidate",
            json!({"candidate": "c"}),
        )
        .unwrap();
    let ServerEvent::IceCandidate(s) = &n[0].event else {
        panic!()
    };
    assert!(s.payload.contains_key("candidate"));
}

#[test]
fn media_and_screen_share_reach_every_other_device_in_the_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    call.join(&u("bob"), B2, &ctx(t0)).unwrap();
    let n = call
        .toggle_media(&u("bob"), B1, MediaType::Audio, false)
        .unwrap();
    let targets: Vec<_> = n.iter().map(|n| n.to.clone()).collect();
    assert_eq!(targets, vec![Audience::Device(A1), Audience::Device(B2)]);
    assert!(!call.members[&u("bob")].audio);
    let n = call.screen_share(&u("alice"), A1, true).unwrap();
    assert_eq!(n.len(), 2);
    assert!(matches!(n[0].event, ServerEvent::ScreenShareStarted(_)));
    let e = call
        .screen_share(&u("alice"), ConnectionId(99), false)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidState);
}

#[test]
fn nothing_happens_to_an_ended_call() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    call.hang_up(&u("alice"), &ctx(t0)).unwrap();
    assert_eq!(
        call.hang_up(&u("alice"), &ctx(t0)).unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert_eq!(
        call.join(&u("bob"), B1, &ctx(t0)).unwrap_err().code,
        ErrorCode::InvalidState
    );
    assert!(call.tick(&ctx(t0 + RULES.max_duration)).is_empty());
    assert!(call.end(EndReason::Failed, &ctx(t0)).is_empty());
}

#[test]
fn ringing_is_confirmed_to_the_caller_once() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob"], t0);
    let n = call.ringing(&u("bob")).unwrap();
    assert_eq!(
        names(&n),
        vec![("call:ringing", Audience::InCall(u("alice")))]
    );
    assert!(
        call.ringing(&u("bob")).unwrap().is_empty(),
        "second device: no repeat"
    );
    assert_eq!(
        call.ringing(&u("mallory")).unwrap_err(),
        crate::hub::no_such_call()
    );
    call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    assert!(
        call.ringing(&u("bob")).unwrap().is_empty(),
        "no longer ringing"
    );
}

#[test]
fn a_third_participant_switches_the_call_to_the_sfu() {
    let t0 = Instant::now();
    let (mut call, _) = start(&["bob", "carol"], t0);
    assert_eq!(call.mode, CallMode::P2p);
    let n = call.accept(&u("bob"), B1, &ctx(t0)).unwrap();
    assert!(!names(&n).iter().any(|(e, _)| *e == "call:mode"));
    let n = call.accept(&u("carol"), C1, &ctx(t0)).unwrap();
    let modes: Vec<_> = names(&n)
        .into_iter()
        .filter(|(e, _)| *e == "call:mode")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        modes,
        vec![
            Audience::InCall(u("alice")),
            Audience::InCall(u("bob")),
            Audience::InCall(u("carol")),
        ]
    );
    assert_eq!(call.mode, CallMode::Sfu);
    // Once SFU, always SFU: someone leaving does not switch back.
    call.hang_up(&u("carol"), &ctx(t0)).unwrap();
    assert_eq!(call.mode, CallMode::Sfu);
}

#[test]
fn calls_may_start_in_sfu_mode() {
    let t0 = Instant::now();
    let (call, _) = Call::initiate(
        "c".into(),
        "conv".into(),
        CallType::Audio,
        Some(CallMode::Sfu),
        u("alice"),
        A1,
        vec![u("bob")],
        &ctx(t0),
    );
    assert_eq!(call.mode, CallMode::Sfu);
    let zero = CallRules {
        p2p_max: 0,
        ..RULES
    };
    let ctx0 = Context {
        now: t0,
        rules: zero,
        dir: &Names,
    };
    let (call, _) = Call::initiate(
        "d".into(),
        "conv".into(),
        CallType::Audio,
        None,
        u("alice"),
        A1,
        vec![u("bob")],
        &ctx0,
    );
    assert_eq!(
        call.mode,
        CallMode::Sfu,
        "p2p_max = 0 sends every call through the SFU"
    );
}
