//! WHEP playback (draft-ietf-wish-whep) through the whole server: a webrtc-rs viewer with two
//! receive-only m-lines POSTs its offer to `/whep/v1/rooms/{room}/participants/{user}` and
//! receives that participant's audio and video byte for byte, without any signaling
//! connection and without ever being made an offer.

use crate::whip::{bounded, delete, encoder, post_offer, room_token, send, server, stream};
use std::net::SocketAddr;
use testkit::{Kind, Peer};

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
