//! The key test: one webrtc-rs client publishes synthetic Opus and VP8 RTP through the
//! running SFU, another receives both, payloads byte-equal; then everything is freed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sfu::{Grants, SfuEvent, TrackKind};
use testkit::{Kind, Peer, media};

use crate::{eventually, metric, start_sfu};

/// Drains what `peer` received: (audio, video) packet counts, checking each payload is one that
/// was sent (numbers below `sent`) byte for byte.
fn received(peer: &mut Peer, sent: u32) -> (u32, u32) {
    let (mut audio, mut video) = (0, 0);
    while let Some(p) = peer.try_received() {
        let n = media::number_of(p.kind, &p.payload)
            .unwrap_or_else(|| panic!("{:?} payload altered: {:02x?}", p.kind, p.payload));
        assert!(n < sent, "{:?} packet {n} was never sent", p.kind);
        match p.kind {
            Kind::Audio => audio += 1,
            _ => video += 1,
        }
    }
    (audio, video)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webrtc_rs_clients_exchange_opus_and_vp8() {
    let (sfu, registry) = start_sfu();
    let mut events = sfu.events().unwrap();
    let room: sfu::RoomKey = "room".into();

    // Alice publishes audio + video.
    let mut alice = Peer::new().await;
    let audio = alice.publish(Kind::Audio, "mic", 1111).await;
    let video = alice.publish(Kind::Video, "cam", 2222).await;
    sfu.join(
        room.clone(),
        "alice".into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();
    let offer = alice.offer().await;
    let reply = sfu
        .offer(room.clone(), "alice".into(), offer)
        .await
        .unwrap();
    assert!(reply.server_offer.is_none(), "nothing to receive yet");
    alice.accept_answer(reply.answer).await;
    alice.wait_connected("alice").await;

    // Bob only receives: one recvonly m-line to start, the server offers the rest.
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
    let offer = bob.offer().await;
    let reply = sfu.offer(room.clone(), "bob".into(), offer).await.unwrap();
    bob.accept_answer(reply.answer).await;
    let server_offer = reply.server_offer.expect("server offers alice's tracks");
    assert_eq!(server_offer.tracks.len(), 2);
    let answer = bob.answer(server_offer.sdp).await;
    sfu.answer(room.clone(), "bob".into(), answer)
        .await
        .unwrap();
    bob.wait_connected("bob").await;

    // Send 2 s of synthetic media: 100 audio packets and 100 video packets.
    for _ in 0..100u32 {
        audio.send_next().await;
        video.send_next().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait (bounded) until the stragglers are in, rather than a fixed time.
    let (mut got_audio, mut got_video) = (0, 0);
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while (got_audio < 100 || got_video < 100) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (a, v) = received(&mut bob, 100);
        (got_audio, got_video) = (got_audio + a, got_video + v);
    }
    eprintln!("bob received {got_audio} audio and {got_video} video packets of 100 each");
    // Loopback loses nothing in practice; allow a little for packets sent before bob's
    // DTLS was up.
    assert!(got_audio >= 80, "bob got {got_audio} audio packets");
    assert!(got_video >= 80, "bob got {got_video} video packets");
    let counts = bob.counts();
    assert_eq!(counts.len(), 2, "two tracks counted: {counts:?}");
    for c in counts.values() {
        // Each synthetic video packet is a whole frame; each audio packet is one.
        assert_eq!(c.frames, c.packets, "{c:?}");
        // Participant keys are connections (user `alice`, connection 0 here): one stream per
        // device, so two devices of one user never share a MediaStream.
        assert_eq!(
            c.stream_id, "alice#0",
            "the SFU's msid names the publisher's connection: {c:?}"
        );
    }

    // Events announced both tracks and the first forwarded media.
    let mut kinds = HashSet::new();
    let mut first_media = false;
    while let Ok(e) = events.try_recv() {
        match e {
            SfuEvent::TrackPublished {
                kind, participant, ..
            } => {
                assert_eq!(participant.user(), "alice");
                kinds.insert(kind);
            }
            SfuEvent::FirstMediaForwarded { participant, .. } => {
                first_media |= participant.user() == "bob";
            }
            _ => {}
        }
    }
    assert_eq!(kinds, HashSet::from([TrackKind::Audio, TrackKind::Video]));
    assert!(first_media);

    // Metrics saw the traffic, without per-participant labels.
    assert!(metric(&registry, "chorus_sfu_rtp_packets_total", Some("out")) >= 160.0);
    assert!(metric(&registry, "chorus_sfu_rtp_packets_total", Some("in")) >= 160.0);
    assert_eq!(metric(&registry, "chorus_sfu_participants", None), 2.0);
    assert_eq!(metric(&registry, "chorus_sfu_tracks", Some("camera")), 1.0);
    assert_eq!(
        metric(&registry, "chorus_sfu_tracks", Some("microphone")),
        1.0
    );
    assert!(metric(&registry, "chorus_sfu_keyframe_requests_total", Some("pli")) >= 1.0);

    // Everyone leaves: nothing is left.
    sfu.leave(room.clone(), "alice".into()).await.unwrap();
    sfu.leave(room.clone(), "bob".into()).await.unwrap();
    let s = eventually(&sfu, Duration::from_secs(2), |s| {
        *s == sfu::Stats::default()
    })
    .await;
    assert_eq!(s, sfu::Stats::default());
    assert_eq!(metric(&registry, "chorus_sfu_participants", None), 0.0);
    assert_eq!(metric(&registry, "chorus_sfu_tracks", None), 0.0);
    alice.close().await;
    bob.close().await;
    sfu.shutdown().await;
}

/// A participant who starts publishing later reaches an already connected subscriber
/// through a spontaneous server offer (`SfuEvent::Offer`) answered by webrtc-rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_publisher_reaches_subscriber_through_server_offer() {
    let (sfu, _registry) = start_sfu();
    let mut events = sfu.events().unwrap();
    let room: sfu::RoomKey = "late".into();

    // Bob joins first and receives nothing yet.
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
    let offer = bob.offer().await;
    let reply = sfu.offer(room.clone(), "bob".into(), offer).await.unwrap();
    assert!(reply.server_offer.is_none());
    bob.accept_answer(reply.answer).await;
    bob.wait_connected("bob").await;

    // Carol publishes audio.
    let mut carol = Peer::new().await;
    let audio = carol.publish(Kind::Audio, "mic", 3333).await;
    sfu.join(
        room.clone(),
        "carol".into(),
        Grants::default(),
        Instant::now(),
    )
    .await
    .unwrap();
    let offer = carol.offer().await;
    let reply = sfu
        .offer(room.clone(), "carol".into(), offer)
        .await
        .unwrap();
    carol.accept_answer(reply.answer).await;
    carol.wait_connected("carol").await;

    // The SFU offers carol's track to bob on its own.
    let sdp = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await.expect("events open") {
                SfuEvent::Offer {
                    participant,
                    sdp,
                    tracks,
                    ..
                } if participant.user() == "bob" => {
                    assert_eq!(tracks.len(), 1);
                    return sdp;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("server offer for bob");
    let answer = bob.answer(sdp).await;
    sfu.answer(room.clone(), "bob".into(), answer)
        .await
        .unwrap();

    for _ in 0..50u32 {
        audio.send_next().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut got = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while got < 50 && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (a, v) = received(&mut bob, 50);
        assert_eq!(v, 0, "carol sent no video");
        got += a;
    }
    assert!(got >= 40, "bob got {got} of 50 packets from carol");

    sfu.close_room(room).await.unwrap();
    let s = eventually(&sfu, Duration::from_secs(2), |s| {
        *s == sfu::Stats::default()
    })
    .await;
    assert_eq!(s, sfu::Stats::default());
    bob.close().await;
    carol.close().await;
    sfu.shutdown().await;
}
