//! A room whose three participants are connected to three different nodes: media goes through
//! the owner node's SFU and everyone receives everyone (webrtc-rs peers, synthetic media).

use super::{Cluster, metric};
use crate::server::mint;
use signaling::auth::Grants;
use std::time::Duration;
use testkit::{Capture, Kind, LocalTrack, Participant};

/// Answers every server offer `p` has received so far, without waiting for one.
async fn answer_pending_offers(p: &mut Participant) {
    // Read whatever arrived, briefly.
    while let Ok(true) = tokio::time::timeout(Duration::from_millis(2), p.signal.pump()).await {}
    while p
        .signal
        .events
        .iter()
        .any(|(n, v)| n == "offer" && v["from"] == "sfu")
    {
        p.answer_server_offer().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_participants_on_three_nodes_exchange_media_through_the_owners_sfu() {
    let cluster = Cluster::start("room-media", 3).await;
    let room = "standup";
    let token = |user: &str| {
        let grants = Grants {
            room: Some(room.into()),
            admin: true,
            ..Grants::default()
        };
        mint(user, grants, Duration::from_secs(600))
    };
    let test = async {
        let mut people: Vec<(Participant, LocalTrack, LocalTrack)> = Vec::new();
        for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
            let node = cluster.node(i);
            let mut p = Participant::join(node.addr, &token(user), room, Capture::CountsOnly)
                .await
                .unwrap_or_else(|e| panic!("{user} joins through {}: {e}", node.id));
            let mic = p.publish(Kind::Audio, "mic", 0xA0 + i as u32).await;
            let cam = p.publish(Kind::Video, "cam", 0xB0 + i as u32).await;
            p.connect_media()
                .await
                .unwrap_or_else(|r| panic!("{user}'s media through {}: {r:?}", node.id));
            people.push((p, mic, cam));
        }
        // Media until everyone counted 20 packets on each of the other two's four tracks.
        let enough = |p: &Participant| {
            let counts = p.peer.counts();
            counts.len() == 4 && counts.values().all(|c| c.packets >= 20)
        };
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !people.iter().all(|(p, _, _)| enough(p)) {
            assert!(
                tokio::time::Instant::now() < end,
                "not everyone receives everyone: {:?}",
                people
                    .iter()
                    .map(|(p, _, _)| p.peer.counts())
                    .collect::<Vec<_>>()
            );
            for (p, mic, cam) in &mut people {
                mic.send_next().await;
                cam.send_next().await;
                answer_pending_offers(p).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One SFU carries the room: the owner's.
        let mut seated = Vec::new();
        for node in &cluster.nodes {
            seated.push(metric(node, "chorus_sfu_participants").await.unwrap_or(0.0));
        }
        seated.sort_by(f64::total_cmp);
        assert_eq!(seated, vec![0.0, 0.0, 3.0]);
        for (p, _, _) in people {
            p.leave().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("finishes within 60 s");
    // The room is gone from every node once everyone left.
    for node in &cluster.nodes {
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while metric(node, "chorus_sfu_participants").await.unwrap_or(0.0) != 0.0 {
            assert!(
                tokio::time::Instant::now() < end,
                "{} keeps SFU seats",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
