//! WHEP playback (draft-ietf-wish-whep) through the whole server: a webrtc-rs viewer with two
//! receive-only m-lines POSTs its offer to `/whep/v1/rooms/{room}/participants/{user}` and
//! receives that participant's audio and video byte for byte, without any signaling
//! connection and without ever being made an offer; the room's members never see the viewer;
//! and viewers have limits of their own.

use crate::whip::{
    bounded, delete, encoder, post_offer, room_token, send, server, server_with, stream,
};
use serde_json::Value;
use std::net::SocketAddr;
use testkit::{Kind, Peer, WsClient};

/// A viewer peer with one receive-only audio and one receive-only video m-line, and its offer.
async fn viewer() -> (Peer, String) {
    let mut pc = Peer::new().await;
    pc.receive_only(Kind::Audio).await;
    pc.receive_only(Kind::Video).await;
    let offer = pc.offer().await;
    (pc, offer)
}

/// `POST` a viewer's offer for `user`'s tracks in `room`.
async fn post_view(
    addr: SocketAddr,
    room: &str,
    user: &str,
    token: &str,
    offer: &str,
) -> crate::whip::Reply {
    let bearer = format!("Bearer {token}");
    send(
        addr,
        "POST",
        &format!("/whep/v1/rooms/{room}/participants/{user}"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/sdp"),
        ],
        Some(offer),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_receives_a_publishers_tracks_byte_for_byte() {
    bounded(async {
        let server = server().await;
        let (addr, room) = (server.addr, "stage");

        // Alice publishes Opus and VP8 (over WHIP here; any publisher would do).
        let alice = room_token("alice", room);
        let (mut alice_pc, audio, video, offer) = encoder().await;
        let reply = post_offer(addr, room, &alice, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        alice_pc.accept_answer(reply.body.clone()).await;
        alice_pc.wait_connected("alice").await;

        // Carol views alice's tracks.
        let carol = room_token("carol", room);
        let (mut pc, offer) = viewer().await;
        let reply = post_view(addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        assert_eq!(reply.header("content-type"), Some("application/sdp"));
        let location = reply.header("location").unwrap().to_owned();
        assert!(location.starts_with("/whep/v1/sessions/"), "{location}");
        assert!(reply.header("etag").is_some());
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("carol's viewer").await;

        let (_, a, v) = stream(&audio, &video, &mut pc, 0).await;
        eprintln!("the WHEP viewer got {a} audio and {v} video packets");
        assert!(a >= 50 && v >= 50, "{a} audio, {v} video");

        let reply = delete(addr, &location, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let reply = delete(addr, &location, &carol).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        // The publisher carries on.
        sessions_left(&server, 1).await;
        pc.close().await;
        alice_pc.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_waiting_for_a_publisher_gets_its_tracks_when_they_come() {
    bounded(async {
        let server = server().await;
        let (addr, room) = (server.addr, "stage");
        // Carol views alice before alice publishes anything.
        let carol = room_token("carol", room);
        let (mut pc, offer) = viewer().await;
        let reply = post_view(addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("carol's viewer").await;

        // Bob publishes too: carol, who views alice, gets none of it.
        let (mut bob_pc, bob_audio, bob_video, bob_offer) = encoder().await;
        let reply = post_offer(addr, room, &room_token("bob", room), &bob_offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        bob_pc.accept_answer(reply.body.clone()).await;
        bob_pc.wait_connected("bob").await;

        let alice = room_token("alice", room);
        let (mut alice_pc, audio, video, offer) = encoder().await;
        let reply = post_offer(addr, room, &alice, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        alice_pc.accept_answer(reply.body.clone()).await;
        alice_pc.wait_connected("alice").await;

        // Bob's packets are numbered from 10 000, alice's from 0: every packet carol takes
        // must be alice's.
        for n in 10_000..10_020 {
            bob_audio.send(n).await;
            bob_video.send(n).await;
        }
        let (_, a, v) = stream(&audio, &video, &mut pc, 0).await;
        assert!(a >= 50 && v >= 50, "{a} audio, {v} video");

        let reply = delete(addr, &location, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        sessions_left(&server, 2).await;
        pc.close().await;
        alice_pc.close().await;
        bob_pc.close().await;
    })
    .await;
}

/// Polls until the server holds `n` WHIP and WHEP sessions (bounded).
async fn sessions_left(server: &crate::server::TestServer, n: usize) {
    let whip = server.signaling.whip.as_ref().expect("WHIP is served");
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while whip.len() != n {
        assert!(tokio::time::Instant::now() < end, "{} sessions", whip.len());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A WHIP publisher of one microphone in `room` as `user`, connected.
async fn microphone(addr: SocketAddr, room: &str, user: &str) -> (Peer, testkit::LocalTrack) {
    let mut pc = Peer::new().await;
    let mic = pc
        .publish(Kind::Audio, "mic", 0x5EED_0000 + user.len() as u32)
        .await;
    let offer = pc.offer().await;
    let reply = post_offer(addr, room, &room_token(user, room), &offer).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    pc.accept_answer(reply.body.clone()).await;
    pc.wait_connected(user).await;
    (pc, mic)
}

/// Bob's packets are numbered from here, Alice's from 0, so the viewer can tell them apart.
const BOB_FROM: u32 = 1_000_000;

/// Both publishers send for `d`, `loud` at −10 dBov and the other silent; returns whose
/// audio the viewer got last ("alice" or "bob"), and how many packets it got.
async fn talk(
    alice: &testkit::LocalTrack,
    bob: &testkit::LocalTrack,
    next: &mut u32,
    loud: &str,
    viewer: &mut Peer,
    d: std::time::Duration,
) -> (Option<&'static str>, u32) {
    let (mut last, mut got) = (None, 0);
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        let (a, b) = if loud == "alice" {
            (10, 127)
        } else {
            (127, 10)
        };
        alice.send_with_level(*next, a).await;
        bob.send_with_level(BOB_FROM + *next, b).await;
        *next += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        while let Some(p) = viewer.try_received() {
            if p.kind != Kind::Audio {
                continue;
            }
            let n = testkit::media::number_of(Kind::Audio, &p.payload)
                .expect("every payload received is one that was sent");
            last = Some(if n >= BOB_FROM { "bob" } else { "alice" });
            got += 1;
        }
    }
    (last, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_of_the_speaker_follows_whoever_speaks() {
    bounded(async {
        let server = server().await;
        let (addr, room) = (server.addr, "panel");
        // Bob publishes first, so a quiet room's viewer starts with him.
        let (bob_pc, bob) = microphone(addr, room, "bob").await;
        let (alice_pc, alice) = microphone(addr, room, "alice").await;

        let carol = room_token("carol", room);
        let (mut pc, offer) = viewer().await;
        let reply = send(
            addr,
            "POST",
            &format!("/whep/v1/rooms/{room}/speaker"),
            &[
                ("Authorization", &format!("Bearer {carol}")),
                ("Content-Type", "application/sdp"),
            ],
            Some(&offer),
        )
        .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        assert!(location.starts_with("/whep/v1/sessions/"), "{location}");
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("carol's viewer").await;

        let mut next = 0;
        let second = std::time::Duration::from_secs(1);
        let (_, quiet) = talk(&alice, &bob, &mut next, "nobody", &mut pc, second).await;
        assert!(
            quiet > 10,
            "a quiet room's viewer gets the first publisher: {quiet}"
        );
        for (speaker, turn) in [("alice", 1), ("bob", 2), ("alice", 3)] {
            // Two seconds: the speaker is announced within half a second of speaking.
            let (last, got) = talk(&alice, &bob, &mut next, speaker, &mut pc, 2 * second).await;
            eprintln!(
                "turn {turn}: {speaker} speaks, the viewer got {got} packets, last from {last:?}"
            );
            assert_eq!(last, Some(speaker), "turn {turn}");
        }

        let reply = delete(addr, &location, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        pc.close().await;
        alice_pc.close().await;
        bob_pc.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_is_hidden_from_the_rooms_members() {
    bounded(async {
        let server = server().await;
        let (addr, room) = (server.addr, "stage");
        let mut bob = WsClient::connect(addr, &room_token("bob", room))
            .await
            .unwrap();
        bob.join_room(room).await;

        // Alice publishes over WHIP: bob sees her join, as a participant.
        let alice = room_token("alice", room);
        let (mut alice_pc, audio, video, offer) = encoder().await;
        let reply = post_offer(addr, room, &alice, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let alice_session = reply.header("location").unwrap().to_owned();
        alice_pc.accept_answer(reply.body.clone()).await;
        alice_pc.wait_connected("alice").await;
        let joined = bob.expect("call:participant:joined").await;
        assert_eq!(joined["participant"]["userId"], "alice", "{joined}");

        // Carol views alice, and gets her media: the SFU side works.
        let carol = room_token("carol", room);
        let (mut pc, offer) = viewer().await;
        let reply = post_view(addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("carol's viewer").await;
        let (_, a, v) = stream(&audio, &video, &mut pc, 0).await;
        assert!(a >= 50 && v >= 50, "{a} audio, {v} video");
        // The POST was answered after the hub seated the viewer: the barrier in
        // `expect_none` orders after it.
        bob.expect_none("call:participant:joined").await;

        // A member joining now is not told of her either.
        let mut dave = WsClient::connect(addr, &room_token("dave", room))
            .await
            .unwrap();
        let ack = dave.join_room(room).await;
        assert_eq!(user_ids(&ack["participants"]), ["alice", "bob"], "{ack}");
        bob.expect("call:participant:joined").await;

        // The server API lists her, as a viewer; the others as participants.
        let (status, people) = crate::admin::api(
            addr,
            "GET",
            &format!("/api/v1/admin/rooms/{room}/participants"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{people}");
        let mut kinds: Vec<(String, String)> = people
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (text(&p["userId"]), text(&p["kind"])))
            .collect();
        kinds.sort();
        let expected = [
            ("alice", "participant"),
            ("bob", "participant"),
            ("carol", "viewer"),
            ("dave", "participant"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(u, k)| (u.to_string(), k.to_string()))
            .collect();
        assert_eq!(kinds, expected, "{people}");

        // Her leaving is not news either; alice's is.
        let reply = delete(addr, &location, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        bob.expect_none("call:participant:left").await;
        let reply = delete(addr, &alice_session, &alice).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "alice", "{left}");
        sessions_left(&server, 0).await;
        pc.close().await;
        alice_pc.close().await;
        bob.close().await;
        dave.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_have_their_own_caps_apart_from_whip_and_the_room() {
    bounded(async {
        let server = server_with(|c| {
            c.whip.max_sessions_per_room = 1;
            c.whip.max_viewer_sessions_per_user = 1;
            c.whip.max_viewers_per_room = 2;
            c.rooms.max_participants = 2;
        })
        .await;
        let (addr, room) = (server.addr, "stage");
        let mut mia = WsClient::connect(addr, &room_token("mia", room))
            .await
            .unwrap();
        mia.join_room(room).await;

        // Alice's WHIP session fills the room's WHIP cap and its last participant place.
        let alice = room_token("alice", room);
        let (_alice_pc, _, _, offer) = encoder().await;
        let reply = post_offer(addr, room, &alice, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let alice_session = reply.header("location").unwrap().to_owned();
        let (_bob_pc, _, _, bob_offer) = encoder().await;
        let bob = room_token("bob", room);
        let reply = post_offer(addr, room, &bob, &bob_offer).await;
        refused(&reply, "whip.max_sessions_per_room");

        // Viewers come in regardless, up to their own caps.
        let (_carol_pc, offer) = viewer().await;
        let carol = room_token("carol", room);
        let reply = post_view(addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let carol_session = reply.header("location").unwrap().to_owned();
        let (_again_pc, again) = viewer().await;
        let reply = post_view(addr, room, "alice", &carol, &again).await;
        refused(&reply, "whip.max_viewer_sessions_per_user");
        let (_dave_pc, offer) = viewer().await;
        let reply = post_view(addr, room, "alice", &room_token("dave", room), &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let (_erin_pc, erin_offer) = viewer().await;
        let erin = room_token("erin", room);
        let reply = post_view(addr, room, "alice", &erin, &erin_offer).await;
        refused(&reply, "whip.max_viewers_per_room");

        // A viewer's place freed is a viewer's place: erin comes in.
        let reply = delete(addr, &carol_session, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let reply = post_view(addr, room, "alice", &erin, &erin_offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        // Two viewers stay, yet a publisher's place freed is a publisher's: bob comes in.
        let reply = delete(addr, &alice_session, &alice).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let reply = post_offer(addr, room, &bob, &bob_offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        sessions_left(&server, 3).await;
        mia.close().await;
    })
    .await;
}

/// Asserts a `409 limit_exceeded` whose message names the config key `key`.
fn refused(reply: &crate::whip::Reply, key: &str) {
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.code(), "limit_exceeded", "{reply:?}");
    assert!(reply.body.contains(key), "{reply:?}");
}

/// The `userId`s of a list of users, sorted.
fn user_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| text(&u["userId"]))
        .collect();
    ids.sort();
    ids
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_cluster_a_viewer_sits_on_the_rooms_owner_hidden_from_members_anywhere() {
    bounded(async {
        let options = crate::cluster::NodeOptions {
            env: vec![("CHORUS_ROOMS_AUTO_CREATE".into(), "true".into())],
        };
        let cluster = crate::cluster::Cluster::start_with("whep-owner", 2, &options).await;
        let (a, b) = (cluster.node(0), cluster.node(1));
        let room = "hall";

        // Alice publishes over WHIP, on whichever node owns the room.
        let alice = room_token("alice", room);
        let (mut alice_pc, audio, video, offer) = encoder().await;
        let reply = post_offer(a.addr, room, &alice, &offer).await;
        let (owner, other, reply) = match reply.status {
            201 => (a, b, reply),
            307 => (b, a, post_offer(b.addr, room, &alice, &offer).await),
            _ => panic!("{reply:?}"),
        };
        assert_eq!(reply.status, 201, "{reply:?}");
        let alice_session = reply.header("location").unwrap().to_owned();
        alice_pc.accept_answer(reply.body.clone()).await;
        alice_pc.wait_connected("alice").await;

        // Bob is a member through the other node.
        let mut bob = WsClient::connect(other.addr, &room_token("bob", room))
            .await
            .unwrap();
        bob.join_room(room).await;

        // Carol asks the other node, is sent to the owner, and views alice there.
        let carol = room_token("carol", room);
        let (mut pc, offer) = viewer().await;
        let reply = post_view(other.addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 307, "{reply:?}");
        let path = format!("/whep/v1/rooms/{room}/participants/alice");
        let expected = format!("http://{}{path}", owner.addr);
        assert_eq!(reply.header("location"), Some(expected.as_str()));
        let reply = post_view(owner.addr, room, "alice", &carol, &offer).await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let location = reply.header("location").unwrap().to_owned();
        pc.accept_answer(reply.body.clone()).await;
        pc.wait_connected("carol's viewer").await;
        let (_, got_audio, got_video) = stream(&audio, &video, &mut pc, 0).await;
        assert!(
            got_audio >= 50 && got_video >= 50,
            "{got_audio} {got_video}"
        );

        // The owner's hub sends bob's node the room's news in order: had carol's seat been
        // announced, her join would come before dave's, and her leave before alice's.
        let mut dave = WsClient::connect(other.addr, &room_token("dave", room))
            .await
            .unwrap();
        dave.join_room(room).await;
        let joined = bob.expect("call:participant:joined").await;
        assert_eq!(joined["participant"]["userId"], "dave", "{joined}");
        let reply = delete(owner.addr, &location, &carol).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let reply = delete(owner.addr, &alice_session, &alice).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let left = bob.expect("call:participant:left").await;
        assert_eq!(left["userId"], "alice", "{left}");
        pc.close().await;
        alice_pc.close().await;
        bob.close().await;
        dave.close().await;
    })
    .await;
}
