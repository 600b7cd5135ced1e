//! The key test: one webrtc-rs client publishes synthetic Opus and VP8 RTP through the
//! running SFU, another receives both, payloads byte-equal; then everything is freed.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rtc::rtp::header::Header;
use rtc::rtp::packet::Packet;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use sfu::{Grants, SfuEvent, TrackKind};
use webrtc::media_stream::track_local::TrackLocal;

use crate::client::Client;
use crate::{eventually, metric, start_sfu};

fn audio_payload(n: u32) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.extend((0..76u32).map(|i| (i * 7 + n) as u8));
    v
}

fn video_payload(n: u32) -> Vec<u8> {
    // VP8 payload descriptor (S=1, PID 0) then synthetic bytes.
    let mut v = vec![0x10];
    v.extend(n.to_be_bytes());
    v.extend((0..1000u32).map(|i| (i * 13 + n) as u8));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webrtc_rs_clients_exchange_opus_and_vp8() {
    let (sfu, registry) = start_sfu();
    let mut events = sfu.events().unwrap();
    let room: sfu::RoomKey = "room".into();

    // Alice publishes audio + video.
    let mut alice = Client::new().await;
    let audio = alice.add_track(RtpCodecKind::Audio, "mic", 1111).await;
    let video = alice.add_track(RtpCodecKind::Video, "cam", 2222).await;
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
    tokio::time::timeout(Duration::from_secs(10), alice.connected.recv())
        .await
        .expect("alice connects");

    // Bob only receives: one recvonly m-line to start, the server offers the rest.
    let mut bob = Client::new().await;
    bob.add_recvonly(RtpCodecKind::Audio).await;
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
    tokio::time::timeout(Duration::from_secs(10), bob.connected.recv())
        .await
        .expect("bob connects");

    // Send 2 s of synthetic media: 50 audio packets and 50 video packets.
    let (audio_pt, video_pt) = (111u8, 96u8);
    for n in 0..100u32 {
        let a = Packet {
            header: Header {
                version: 2,
                payload_type: audio_pt,
                sequence_number: n as u16,
                timestamp: n * 960,
                ssrc: 1111,
                marker: n == 0,
                ..Default::default()
            },
            payload: audio_payload(n).into(),
        };
        audio.write_rtp(a).await.unwrap();
        let v = Packet {
            header: Header {
                version: 2,
                payload_type: video_pt,
                sequence_number: n as u16,
                timestamp: n * 3000,
                ssrc: 2222,
                marker: true,
                ..Default::default()
            },
            payload: video_payload(n).into(),
        };
        video.write_rtp(v).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sent_audio: HashSet<Vec<u8>> = (0..100).map(audio_payload).collect();
    let sent_video: HashSet<Vec<u8>> = (0..100).map(video_payload).collect();
    let (mut got_audio, mut got_video) = (0, 0);
    while let Ok((kind, _pt, payload)) = bob.received.try_recv() {
        match kind {
            RtpCodecKind::Audio => {
                assert!(sent_audio.contains(&payload), "audio payload altered");
                got_audio += 1;
            }
            _ => {
                assert!(sent_video.contains(&payload), "video payload altered");
                got_video += 1;
            }
        }
    }
    eprintln!("bob received {got_audio} audio and {got_video} video packets of 100 each");
    // Loopback loses nothing in practice; allow a little for packets sent before bob's
    // DTLS was up.
    assert!(got_audio >= 80, "bob got {got_audio} audio packets");
    assert!(got_video >= 80, "bob got {got_video} video packets");

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
    let _ = alice.pc.close().await;
    let _ = bob.pc.close().await;
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
    let mut bob = Client::new().await;
    bob.add_recvonly(RtpCodecKind::Audio).await;
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
    tokio::time::timeout(Duration::from_secs(10), bob.connected.recv())
        .await
        .expect("bob connects");

    // Carol publishes audio.
    let mut carol = Client::new().await;
    let audio = carol.add_track(RtpCodecKind::Audio, "mic", 3333).await;
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
    tokio::time::timeout(Duration::from_secs(10), carol.connected.recv())
        .await
        .expect("carol connects");

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

    for n in 0..50u32 {
        let p = Packet {
            header: Header {
                version: 2,
                payload_type: 111,
                sequence_number: n as u16,
                timestamp: n * 960,
                ssrc: 3333,
                ..Default::default()
            },
            payload: audio_payload(n).into(),
        };
        audio.write_rtp(p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent: HashSet<Vec<u8>> = (0..50).map(audio_payload).collect();
    let mut got = 0;
    while let Ok((kind, _, payload)) = bob.received.try_recv() {
        assert_eq!(kind, RtpCodecKind::Audio);
        assert!(sent.contains(&payload), "payload altered");
        got += 1;
    }
    assert!(got >= 40, "bob got {got} of 50 packets from carol");

    sfu.close_room(room).await.unwrap();
    let s = eventually(&sfu, Duration::from_secs(2), |s| {
        *s == sfu::Stats::default()
    })
    .await;
    assert_eq!(s, sfu::Stats::default());
    let _ = bob.pc.close().await;
    let _ = carol.pc.close().await;
    sfu.shutdown().await;
}
