//! Several media workers: two rooms placed on different workers each carry media through their
//! own worker's UDP port, the worker gauges show where the participants are, and track ids
//! stay unique across workers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sfu::{Grants, RoomKey, Settings, Sfu, SfuEvent, SfuHandle};
use testkit::{Kind, LocalTrack, Peer};

use crate::{eventually, metric};

/// A room the SFU places on `worker`.
fn room_on(sfu: &SfuHandle, worker: usize) -> RoomKey {
    (0..)
        .map(|i| RoomKey::new(format!("room-{i}")))
        .find(|r| sfu.worker_of(r) == worker)
        .expect("some room lands on every worker")
}

/// Alice publishes audio and Bob receives it in `room`; both connected. Checks that the SFU's
/// answers name `port`, the UDP port of the room's worker.
async fn publisher_and_receiver(
    sfu: &SfuHandle,
    room: &RoomKey,
    port: u16,
) -> (Peer, LocalTrack, Peer) {
    let candidate = format!("127.0.0.1 {port} typ host");
    let mut alice = Peer::new().await;
    let audio = alice.publish(Kind::Audio, "mic", 1111).await;
    sfu.join(
        room.clone(),
        "alice".into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();
    let reply = sfu
        .offer(room.clone(), "alice".into(), alice.offer().await)
        .await
        .unwrap();
    assert!(
        reply.answer.contains(&candidate),
        "the answer names the worker's port {port}:\n{}",
        reply.answer
    );
    alice.accept_answer(reply.answer).await;
    alice.wait_connected("alice").await;

    let mut bob = Peer::new().await;
    bob.receive_only(Kind::Audio).await;
    sfu.join(
        room.clone(),
        "bob".into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();
    let reply = sfu
        .offer(room.clone(), "bob".into(), bob.offer().await)
        .await
        .unwrap();
    assert!(reply.answer.contains(&candidate), "{}", reply.answer);
    bob.accept_answer(reply.answer).await;
    if let Some(server_offer) = reply.server_offer {
        let answer = bob.answer(server_offer.sdp).await;
        sfu.answer(room.clone(), "bob".into(), answer)
            .await
            .unwrap();
    }
    bob.wait_connected("bob").await;
    (alice, audio, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_different_workers_forward_media_each_through_its_own_port() {
    let registry = prometheus::Registry::new();
    let settings = Settings {
        workers: 2,
        tcp_listen: None,
        ..Settings::loopback()
    };
    let sfu = Sfu::start(settings, &registry).expect("sfu starts");
    let mut events = sfu.events().unwrap();
    let ports: Vec<u16> = sfu.udp_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 2);
    assert_ne!(ports[0], ports[1], "each worker has its own port");
    assert_eq!(metric(&registry, "chorus_sfu_workers", None), 2.0);

    let rooms = [room_on(&sfu, 0), room_on(&sfu, 1)];
    let mut peers = Vec::new();
    for (worker, room) in rooms.iter().enumerate() {
        peers.push(publisher_and_receiver(&sfu, room, ports[worker]).await);
    }
    for worker in ["0", "1"] {
        assert_eq!(
            metric(&registry, "chorus_sfu_worker_participants", Some(worker)),
            2.0,
            "worker {worker} holds its room's two participants"
        );
    }

    // 100 audio packets in each room, sent side by side.
    for _ in 0..100 {
        for (_, audio, _) in &peers {
            audio.send_next().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (worker, (_, _, bob)) in peers.iter_mut().enumerate() {
        let mut got = 0;
        let end = tokio::time::Instant::now() + Duration::from_secs(2);
        while got < 100 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            while bob.try_received().is_some() {
                got += 1;
            }
        }
        eprintln!("worker {worker}: bob received {got} of 100 audio packets");
        // Loopback loses nothing in practice; allow for packets sent before DTLS was up.
        assert!(got >= 80, "worker {worker}: bob got {got} packets");
    }

    let mut tracks = HashSet::new();
    while let Ok(e) = events.try_recv() {
        if let SfuEvent::TrackPublished {
            track_id: track, ..
        } = e
        {
            assert!(tracks.insert(track.clone()), "track id {track} given twice");
        }
    }
    assert_eq!(tracks.len(), 2, "one track per room: {tracks:?}");

    for room in &rooms {
        sfu.close_room(room.clone()).await.unwrap();
    }
    let s = eventually(&sfu, Duration::from_secs(2), |s| {
        *s == sfu::Stats::default()
    })
    .await;
    assert_eq!(s, sfu::Stats::default(), "both workers are empty");
    for worker in ["0", "1"] {
        assert_eq!(
            metric(&registry, "chorus_sfu_worker_participants", Some(worker)),
            0.0
        );
    }
    for (alice, _, bob) in peers {
        alice.close().await;
        bob.close().await;
    }
}
