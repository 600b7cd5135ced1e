//! A room whose three participants are connected to three different nodes: media goes through
//! the owner node's SFU and everyone receives everyone (webrtc-rs peers, synthetic media).

use super::{Cluster, Node, metric};
use crate::server::mint;
use signaling::auth::Grants;
use std::time::Duration;
use testkit::{Capture, Kind, LocalTrack, Participant};

/// A room member sending synthetic media on its tracks.
pub type Sender = (Participant, LocalTrack, LocalTrack);

/// `user` joins `room` through `node` and sends audio and video (SSRCs derived from `n`).
pub async fn sender(node: &Node, user: &str, room: &str, n: u32) -> Sender {
    let grants = Grants {
        room: Some(room.into()),
        admin: true,
        ..Grants::default()
    };
    let token = mint(user, grants, Duration::from_secs(600));
    let mut p = Participant::join(node.addr, &token, room, Capture::CountsOnly)
        .await
        .unwrap_or_else(|e| panic!("{user} joins through {}: {e}", node.id));
    let [mic, cam] = tracks(n);
    let mic = p.publish(mic.0, mic.1, mic.2).await;
    let cam = p.publish(cam.0, cam.1, cam.2).await;
    p.connect_media()
        .await
        .unwrap_or_else(|r| panic!("{user}'s media through {}: {r:?}", node.id));
    (p, mic, cam)
}

/// The tracks a [`sender`] publishes: kind, track id, SSRC.
pub fn tracks(n: u32) -> [(Kind, &'static str, u32); 2] {
    [
        (Kind::Audio, "mic", 0xA0 + n),
        (Kind::Video, "cam", 0xB0 + n),
    ]
}

/// Sends media and answers server offers until every participant counted 20 packets on each of
/// `tracks` tracks of others, or `end` passes (then the counts, for the failure message).
pub async fn until_everyone_receives(
    people: &mut [Sender],
    tracks: usize,
    end: tokio::time::Instant,
) -> Result<(), String> {
    let enough = |p: &Participant| {
        let counts = p.peer.counts();
        counts.len() == tracks && counts.values().all(|c| c.packets >= 20)
    };
    while !people.iter().all(|(p, _, _)| enough(p)) {
        if tokio::time::Instant::now() >= end {
            let counts: Vec<_> = people.iter().map(|(p, _, _)| p.peer.counts()).collect();
            return Err(format!("{counts:?}"));
        }
        for (p, mic, cam) in people.iter_mut() {
            mic.send_next().await;
            cam.send_next().await;
            answer_pending_offers(p).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

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
    let test = async {
        let mut people: Vec<Sender> = Vec::new();
        for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
            people.push(sender(cluster.node(i), user, room, i as u32).await);
        }
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        if let Err(counts) = until_everyone_receives(&mut people, 4, end).await {
            panic!("not everyone receives everyone: {counts}");
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
