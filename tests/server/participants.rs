//! `testkit::Participant`, the room client other suites and tools build on, against the whole
//! server: two users join a room, one publishes audio and video, and the other counts what it
//! receives per track.

use crate::server::TestServer;
use signaling::auth::Grants;
use std::time::Duration;
use testkit::{Capture, Kind, Participant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_participant_counts_packets_and_frames_per_track() {
    let server = TestServer::with(|c| c.rooms.auto_create = Some(true)).await;
    let token = |user: &str| {
        let grants = Grants {
            room: Some("count".to_owned()),
            ..Grants::default()
        };
        server.token_with(user, grants, Duration::from_secs(600))
    };
    let test = async {
        let mut bob = Participant::join(server.addr, &token("bob"), "count", Capture::CountsOnly)
            .await
            .unwrap();
        bob.connect_media().await.unwrap();

        let mut alice =
            Participant::join(server.addr, &token("alice"), "count", Capture::CountsOnly)
                .await
                .unwrap();
        assert_eq!(alice.space, "room:count");
        assert_eq!(alice.joined["participants"][0]["userId"], "bob");
        let mic = alice.publish(Kind::Audio, "mic", 0xA1).await;
        let cam = alice.publish(Kind::Video, "cam", 0xB2).await;
        alice.connect_media().await.unwrap();
        let tracks = bob.answer_server_offer().await;
        assert_eq!(tracks.as_array().map(Vec::len), Some(2), "{tracks}");

        // 20 ms packets until bob counted 30 of each (bounded).
        let end = tokio::time::Instant::now() + Duration::from_secs(8);
        let done = |bob: &Participant| {
            let counts = bob.peer.counts();
            counts.len() == 2 && counts.values().all(|c| c.packets >= 30)
        };
        while !done(&bob) && tokio::time::Instant::now() < end {
            mic.send_next().await;
            cam.send_next().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let counts = bob.peer.counts();
        assert_eq!(counts.len(), 2, "{counts:?}");
        for (track_id, c) in &counts {
            assert!(c.packets >= 30, "{track_id}: {c:?}");
            // Each synthetic packet is a whole frame, audio or video.
            assert_eq!(c.frames, c.packets, "{track_id}: {c:?}");
            assert!(
                c.packets <= u64::from(mic.sent()),
                "{track_id}: more than was sent: {c:?}"
            );
        }
        let kinds: Vec<Kind> = counts.values().map(|c| c.kind).collect();
        assert!(
            kinds.contains(&Kind::Audio) && kinds.contains(&Kind::Video),
            "{counts:?}"
        );
        // The track ids are the SFU's, as announced in the server offer.
        for t in tracks.as_array().unwrap() {
            let id = t["trackId"].as_str().unwrap();
            assert!(counts.contains_key(id), "{id} not in {counts:?}");
        }
        alice.leave().await;
        bob.leave().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("finishes within 30 s");
    server.stop().await.unwrap();
}
