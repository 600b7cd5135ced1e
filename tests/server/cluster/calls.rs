//! Calls across nodes: the caller on node 1, the callee's two devices on nodes 2 and 3.

use super::{Cluster, NodeOptions, labelled, metric};
use crate::client::Client;
use crate::server::Transport;
use serde_json::{Value, json};
use std::time::Duration;

fn call_id(ack: &Value) -> String {
    ack["callId"].as_str().expect("callId").to_owned()
}

async fn full_flow(transport: Transport) {
    let cluster = Cluster::start("calls", 3).await;
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let mut alice = n1.client(transport, "alice").await;
    let mut bob2 = n2.client(transport, "bob").await;
    let mut bob3 = n3.client(Transport::Ws, "bob").await;

    let call = call_id(&alice.initiate("video", &["bob"]).await);
    for bob in [&mut bob2, &mut bob3] {
        let incoming = bob.expect("call:incoming").await;
        assert_eq!(incoming["callId"], call.as_str());
        assert_eq!(incoming["from"]["userId"], "alice");
    }

    let ack = bob2
        .request("call:accept", json!({"callId": call}))
        .await
        .expect("accept across nodes");
    assert_eq!(ack["callId"], call.as_str());
    assert_eq!(alice.expect("call:accepted").await["userId"], "bob");
    assert_eq!(
        alice.expect("call:participant:joined").await["participant"]["userId"],
        "bob"
    );
    assert_eq!(
        bob3.expect("call:answered-elsewhere").await["callId"],
        call.as_str()
    );

    // Signals reach the device that answered, and only that one.
    alice
        .request(
            "offer",
            json!({"callId": call, "targetUserId": "bob", "offer": {"type": "offer", "sdp": "v=0 alice"}}),
        )
        .await
        .expect("offer relayed");
    let offer = bob2.expect("offer").await;
    assert_eq!(
        (offer["from"].as_str(), offer["offer"]["sdp"].as_str()),
        (Some("alice"), Some("v=0 alice"))
    );
    bob2.request(
        "answer",
        json!({"callId": call, "targetUserId": "alice", "answer": {"type": "answer", "sdp": "v=0 bob"}}),
    )
    .await
    .expect("answer relayed");
    assert_eq!(alice.expect("answer").await["answer"]["sdp"], "v=0 bob");
    let candidate = |target: &str| json!({"callId": call, "targetUserId": target, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}});
    alice
        .request("ice-candidate", candidate("bob"))
        .await
        .expect("candidate relayed");
    assert!(bob2.expect("ice-candidate").await["candidate"]["candidate"].is_string());
    bob2.request("ice-candidate", candidate("alice"))
        .await
        .expect("candidate relayed back");
    assert!(alice.expect("ice-candidate").await["candidate"]["candidate"].is_string());
    bob3.expect_none("offer").await;

    alice
        .request(
            "call:media-toggle",
            json!({"callId": call, "mediaType": "video", "enabled": false}),
        )
        .await
        .expect("media toggle");
    let toggled = bob2.expect("call:media-toggled").await;
    assert_eq!(
        (toggled["userId"].as_str(), toggled["enabled"].as_bool()),
        (Some("alice"), Some(false))
    );
    bob2.request("screen:share-start", json!({"callId": call}))
        .await
        .expect("share start");
    assert_eq!(alice.expect("screen:share-started").await["userId"], "bob");
    bob2.request("screen:share-stop", json!({"callId": call}))
        .await
        .expect("share stop");
    assert_eq!(alice.expect("screen:share-stopped").await["userId"], "bob");

    // The relays show in the metrics, and no series names a user.
    let (mut relayed_in, mut relayed_out, mut relays_timed) = (0.0, 0.0, 0.0);
    for node in &cluster.nodes {
        relayed_in += labelled(node, "chorus_cluster_relayed_total", "direction=\"in\"")
            .await
            .unwrap_or(0.0);
        relayed_out += labelled(node, "chorus_cluster_relayed_total", "direction=\"out\"")
            .await
            .unwrap_or(0.0);
        relays_timed += metric(node, "chorus_cluster_relay_seconds_count")
            .await
            .unwrap_or(0.0);
        assert_eq!(metric(node, "chorus_cluster_nodes").await, Some(3.0));
        let (_, body) = crate::server::http_get(node.addr, "/metrics", None).await;
        assert!(
            !body.contains("alice") && !body.contains("bob"),
            "a metric names a user"
        );
    }
    assert!(
        relayed_in > 0.0 && relayed_out > 0.0 && relays_timed > 0.0,
        "relays in {relayed_in}, out {relayed_out}, timed {relays_timed}"
    );

    alice
        .request("call:end", json!({"callId": call}))
        .await
        .expect("end");
    for c in [&mut alice, &mut bob2] {
        let ended = c.expect("call:ended").await;
        assert_eq!(
            (ended["callId"].as_str(), ended["reason"].as_str()),
            (Some(call.as_str()), Some("ended"))
        );
    }
    // Every node forgot the call.
    for node in &cluster.nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while metric(node, "chorus_calls_active").await != Some(0.0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} still holds the call",
                node.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_answers_signals_and_ends_across_three_nodes_over_websocket() {
    full_flow(Transport::Ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_answers_signals_and_ends_across_three_nodes_over_socketio() {
    full_flow(Transport::SocketIo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_on_another_node_ends_the_call_for_the_caller() {
    let cluster = Cluster::start("reject", 3).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob2 = cluster.node(1).client(Transport::SocketIo, "bob").await;
    let mut bob3 = cluster.node(2).client(Transport::Ws, "bob").await;
    let call = call_id(&alice.initiate("audio", &["bob"]).await);
    bob2.expect("call:incoming").await;
    bob3.expect("call:incoming").await;
    bob3.request("call:reject", json!({"callId": call}))
        .await
        .expect("reject across nodes");
    assert_eq!(alice.expect("call:rejected").await["userId"], "bob");
    assert_eq!(alice.expect("call:ended").await["reason"], "rejected");
    assert_eq!(bob2.expect("call:ended").await["callId"], call.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_is_missed_on_every_device() {
    let options = NodeOptions {
        env: vec![("CHORUS_CALLS_RING_TIMEOUT".into(), "1500ms".into())],
    };
    let cluster = Cluster::start_with("missed", 3, &options).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob2 = cluster.node(1).client(Transport::Ws, "bob").await;
    let mut bob3 = cluster.node(2).client(Transport::SocketIo, "bob").await;
    let call = call_id(&alice.initiate("audio", &["bob"]).await);
    bob2.expect("call:incoming").await;
    bob3.expect("call:incoming").await;
    assert_eq!(alice.expect("call:ended").await["reason"], "missed");
    for bob in [&mut bob2, &mut bob3] {
        assert_eq!(bob.expect("call:missed").await["callId"], call.as_str());
    }
}

/// A device that connects while the call rings elsewhere is rung too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connecting_on_another_node_while_it_rings_is_rung() {
    let cluster = Cluster::start("late-device", 2).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let _bob1 = cluster.node(0).client(Transport::Ws, "bob").await;
    let call = call_id(&alice.initiate("audio", &["bob"]).await);
    let mut late = cluster.node(1).client(Transport::Ws, "bob").await;
    assert_eq!(late.expect("call:incoming").await["callId"], call.as_str());
    late.request("call:accept", json!({"callId": call}))
        .await
        .expect("the late device answers");
    assert_eq!(alice.expect("call:accepted").await["userId"], "bob");
}

/// The third participant turns the call into an SFU call, whose media goes to the SFU of the
/// node that owns the call, whichever node the participant is connected to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_participant_moves_the_call_to_the_owners_sfu() {
    let cluster = Cluster::start("p2p-to-sfu", 3).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(1).client(Transport::Ws, "bob").await;
    let mut carol = cluster.node(2).client(Transport::SocketIo, "carol").await;
    let call = call_id(&alice.initiate("video", &["bob", "carol"]).await);
    bob.expect("call:incoming").await;
    carol.expect("call:incoming").await;
    bob.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    carol
        .request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.expect("call:mode").await["mode"], "sfu");
    }
    for (client, who) in [
        (&mut alice, "alice"),
        (&mut bob, "bob"),
        (&mut carol, "carol"),
    ] {
        let ack = client
            .request(
                "offer",
                json!({"callId": call, "offer": {"type": "offer", "sdp": crate::sfu::audio_offer("opus/48000/2", 1)}}),
            )
            .await
            .unwrap_or_else(|r| panic!("{who}'s SFU offer: {:?}", r.body));
        assert_eq!(ack["answer"]["type"], "answer");
        assert_eq!(client.expect("answer").await["from"], "sfu");
    }
    // All three seats are on one SFU: the owner's.
    let mut seated = Vec::new();
    for node in &cluster.nodes {
        seated.push(metric(node, "chorus_sfu_participants").await.unwrap_or(0.0));
    }
    seated.sort_by(f64::total_cmp);
    assert_eq!(seated, vec![0.0, 0.0, 3.0], "one SFU holds every seat");
    let _: Vec<Client> = vec![alice, bob, carol];
}
