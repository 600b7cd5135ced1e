//! Failures: the owner of a room drained or killed under its participants, the owner of a P2P
//! call killed under two users on other nodes, and Redis lost and back.

use super::rooms::{Sender, sender, tracks, until_everyone_receives};
use super::{Cluster, Node, NodeOptions, OwnRedis, labelled, metric};
use crate::client::{Client, WsClient};
use crate::server::{Transport, http_get, mint};
use serde_json::json;
use signaling::auth::Grants;
use std::time::Duration;
use tokio::time::Instant;

/// What happens to the room's owner node.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// SIGTERM: drain, hand-over at the drain deadline, exit.
    Drain,
    /// SIGKILL.
    Crash,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_room_owner_hands_the_room_over_and_media_flows_again() {
    owner_lost_under_a_room(Loss::Drain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_room_owner_is_replaced_and_media_flows_again() {
    owner_lost_under_a_room(Loss::Crash).await;
}

/// Three participants on three nodes; the owner goes. Those on surviving nodes are told
/// `media:moved` and renegotiate with the new owner; the one whose node went reconnects to a
/// surviving node and joins again, as a client does after `server:shutdown` or a dropped
/// connection. Everyone receives everyone within 10 s of the old owner's exit.
async fn owner_lost_under_a_room(loss: Loss) {
    let name = match loss {
        Loss::Drain => "room-drain",
        Loss::Crash => "room-crash",
    };
    let mut cluster = Cluster::start(name, 3).await;
    let room = "standup";
    let users = ["alice", "bob", "carol"];
    let mut people: Vec<Sender> = Vec::new();
    for (i, user) in users.into_iter().enumerate() {
        people.push(sender(cluster.node(i), user, room, i as u32).await);
    }
    let end = Instant::now() + Duration::from_secs(20);
    if let Err(counts) = until_everyone_receives(&mut people, 4, end).await {
        panic!("before the loss, not everyone receives everyone: {counts}");
    }
    let mut owner = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if metric(node, "chorus_sfu_participants").await == Some(3.0) {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one node's SFU carries the room");

    let (lost_user, _, _) = people.remove(owner);
    let mut lost_user = lost_user;
    match loss {
        Loss::Drain => {
            cluster.nodes[owner].terminate();
            lost_user
                .signal
                .expect_within("server:shutdown", Duration::from_secs(5))
                .await;
        }
        Loss::Crash => cluster.nodes[owner].kill9(),
    }
    assert!(
        cluster.nodes[owner].exited(Duration::from_secs(15)).await,
        "the owner exits"
    );
    let gone = Instant::now();
    drop(lost_user);

    let reason = match loss {
        Loss::Drain => "node_drained",
        Loss::Crash => "node_failed",
    };
    let survivors: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let mut moved_people = Vec::new();
    for ((mut p, _, _), i) in people.into_iter().zip(&survivors) {
        let moved = p
            .signal
            .expect_within("media:moved", Duration::from_secs(10))
            .await;
        assert_eq!(
            (moved["callId"].as_str(), moved["reason"].as_str()),
            (Some("room:standup"), Some(reason)),
            "{moved}"
        );
        let [mic, cam] = p
            .reconnect_media(&tracks(*i as u32))
            .await
            .unwrap_or_else(|r| panic!("renegotiation after media:moved: {r:?}"))
            .try_into()
            .unwrap_or_else(|_| panic!("two tracks"));
        moved_people.push((p, mic, cam));
    }
    // The user whose node went comes back through a surviving node.
    let back = cluster.node(survivors[0]);
    moved_people.push(sender(back, users[owner], room, 10 + owner as u32).await);

    let end = gone + Duration::from_secs(10);
    if let Err(counts) = until_everyone_receives(&mut moved_people, 4, end).await {
        panic!("within 10 s of the owner's exit, not everyone receives everyone: {counts}");
    }
    eprintln!(
        "{loss:?}: everyone receives everyone again {:?} after the owner exited",
        gone.elapsed()
    );
    // One surviving SFU carries the room, and the move was counted where it landed.
    let mut seated = Vec::new();
    let mut moves = 0.0;
    for i in &survivors {
        let node = cluster.node(*i);
        seated.push(metric(node, "chorus_sfu_participants").await.unwrap_or(0.0));
        moves += labelled(
            node,
            "chorus_cluster_ownership_moves_total",
            &format!("reason=\"{reason}\""),
        )
        .await
        .unwrap_or(0.0);
    }
    seated.sort_by(f64::total_cmp);
    assert_eq!(seated, vec![0.0, 3.0], "one SFU seats all three");
    assert_eq!(moves, 1.0, "one ownership move, counted by the heir");
    for (p, _, _) in moved_people {
        p.leave().await;
    }
}

/// A join that reaches a live node just after the room's owner died is relayed to the dead
/// owner. With a request timeout far longer than the node timeout, the wait must end when the
/// death is noticed (the node is buried), not at the timeout; the retry lands on the heir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_a_dead_owner_fails_as_soon_as_the_death_is_noticed() {
    let options = NodeOptions {
        env: vec![("CHORUS_CLUSTER_REQUEST_TIMEOUT".into(), "60s".into())],
    };
    let mut cluster = Cluster::start_with("gone-owner", 2, &options).await;
    let token = |user| {
        let grants = Grants {
            room: Some("standup".into()),
            admin: true,
            ..Grants::default()
        };
        mint(user, grants, Duration::from_secs(600))
    };
    let mut alice = WsClient::connect(cluster.node(0).addr, &token("alice"))
        .await
        .unwrap();
    alice
        .request("room:join", json!({"room": "standup"}))
        .await
        .expect("alice creates the room on node 0");
    let mut bob = WsClient::connect(cluster.node(1).addr, &token("bob"))
        .await
        .unwrap();

    cluster.nodes[0].kill9();
    let killed = Instant::now();
    let refused = bob
        .request_within(
            "room:join",
            json!({"room": "standup"}),
            Duration::from_secs(30),
        )
        .await
        .expect_err("the owner is dead");
    let waited = killed.elapsed();
    assert_eq!(refused.code, "cluster_unavailable", "{refused:?}");
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped answering")),
        "the failure names the dead node, not a timeout: {refused:?}"
    );
    // node timeout 2 s, the registry read every second: far from the 60 s request timeout
    assert!(
        waited < Duration::from_secs(15),
        "the wait ended {waited:?} after the kill"
    );

    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match bob.request("room:join", json!({"room": "standup"})).await {
            Ok(_) => break,
            Err(r) => assert!(
                Instant::now() < end,
                "the heir does not take the join within 10 s: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_p2p_call_outlives_its_owner_and_a_live_node_adopts_its_signaling() {
    // Placement goes to the least loaded node however little the entry node's load exceeds it.
    let options = NodeOptions {
        env: vec![("CHORUS_CLUSTER_LOCAL_PREFERENCE".into(), "0".into())],
    };
    let mut cluster = Cluster::start_with("p2p-crash", 3, &options).await;
    // Idle connections load nodes 2 and 3, so the call alice starts on node 2 is placed on the
    // least loaded node, node 1, where neither user is connected.
    let mut ballast = Vec::new();
    for i in [1, 2] {
        for n in 0..12 {
            let user = format!("ballast-{i}-{n}");
            ballast.push(cluster.node(i).client(Transport::Ws, &user).await);
        }
    }
    let mut alice = cluster.node(1).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(2).client(Transport::SocketIo, "bob").await;
    let call = call_owned_by(&cluster, 0, &mut alice, (&mut bob, "bob")).await;
    bob.request("call:accept", json!({"callId": call}))
        .await
        .expect("accept");
    alice.expect("call:accepted").await;

    cluster.nodes[0].kill9();
    // Adoption: the call's state comes back on a live node, which relays its signals again.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let offer = alice
            .request(
                "offer",
                json!({"callId": call, "targetUserId": "bob", "offer": {"type": "offer", "sdp": "v=0 again"}}),
            )
            .await;
        match offer {
            Ok(_) => break,
            Err(r) => assert!(
                Instant::now() < end,
                "the call's signaling is not adopted within 10 s: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bob.expect("offer").await["offer"]["sdp"], "v=0 again");
    bob.request(
        "answer",
        json!({"callId": call, "targetUserId": "alice", "answer": {"type": "answer", "sdp": "v=0 bob"}}),
    )
    .await
    .expect("answer through the adopting node");
    assert_eq!(alice.expect("answer").await["answer"]["sdp"], "v=0 bob");
    // A P2P call's media never touched the dead node: nobody is told to move it.
    alice.expect_none("media:moved").await;
    bob.expect_none("media:moved").await;
    // The call is whole: ending it reaches the other side.
    alice
        .request("call:end", json!({"callId": call}))
        .await
        .expect("end");
    assert_eq!(bob.expect("call:ended").await["callId"], call.as_str());
    drop(ballast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_redis_is_away_local_calls_go_on_and_cross_node_actions_fail_clearly() {
    let mut redis = OwnRedis::start().await;
    // The call alice starts for bob, both on her node, stays there (see the ring test below).
    let options = NodeOptions {
        env: vec![
            ("CHORUS_CLUSTER_REDIS_URL".into(), redis.url()),
            ("CHORUS_CLUSTER_LOCAL_PREFERENCE".into(), "1000000".into()),
        ],
    };
    let cluster = Cluster::start_with("redis-lost", 2, &options).await;
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut alice = n1.client(Transport::Ws, "alice").await;
    let mut bob = n1.client(Transport::SocketIo, "bob").await;
    let mut carol = n2.client(Transport::Ws, "carol").await;
    let call = call_owned_by(&cluster, 0, &mut alice, (&mut bob, "bob")).await;
    bob.request("call:accept", json!({"callId": call}))
        .await
        .expect("accept");
    alice.expect("call:accepted").await;

    redis.kill();
    wait_for_ready(n1, "degraded", Duration::from_secs(10)).await;
    wait_for_ready(n2, "degraded", Duration::from_secs(10)).await;
    for node in [n1, n2] {
        assert_eq!(http_get(node.addr, "/health", None).await.0, 200);
        assert_eq!(metric(node, "chorus_cluster_redis_up").await, Some(0.0));
    }

    // The call whose members all sit on its owner's node goes on.
    alice
        .request(
            "offer",
            json!({"callId": call, "targetUserId": "bob", "offer": {"type": "offer", "sdp": "v=0 no redis"}}),
        )
        .await
        .expect("a local call relays without Redis");
    assert_eq!(bob.expect("offer").await["offer"]["sdp"], "v=0 no redis");
    let sent = alice
        .request(
            "message:send",
            json!({"conversationId": call, "content": "still here", "type": "text", "tempId": "t1"}),
        )
        .await
        .expect("chat works without Redis");
    assert!(sent["messageId"].is_string(), "{sent}");

    // Reaching a user on another node fails with a code that says why.
    let refused = alice
        .request(
            "call:initiate",
            json!({"conversationId": "conv", "callType": "audio", "participants": ["carol"]}),
        )
        .await
        .expect_err("a call to another node cannot be placed without Redis");
    assert_eq!(refused.code, "cluster_unavailable", "{refused:?}");

    // Redis comes back empty; nodes write again what they hold, and within 5 s a call across
    // nodes rings again, without any node restarting.
    redis.restart().await;
    let back = Instant::now();
    let call2 = loop {
        let attempt = alice
            .request(
                "call:initiate",
                json!({"conversationId": "conv", "callType": "audio", "participants": ["carol"]}),
            )
            .await;
        if let Ok(ack) = attempt {
            break ack["callId"].as_str().expect("callId").to_owned();
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "cross-node calls do not work 5 s after Redis came back: {attempt:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let incoming = carol.expect("call:incoming").await;
    assert_eq!(incoming["callId"], call2.as_str());
    let elapsed = back.elapsed();
    eprintln!("a cross-node call rang {elapsed:?} after Redis came back");
    assert!(elapsed < Duration::from_secs(5), "rang after {elapsed:?}");
    wait_for_ready(n1, "ready", Duration::from_secs(5)).await;
    wait_for_ready(n2, "ready", Duration::from_secs(5)).await;
    for node in [n1, n2] {
        assert_eq!(metric(node, "chorus_cluster_redis_up").await, Some(1.0));
        assert!(metric(node, "chorus_cluster_redis_errors_total").await >= Some(1.0));
        assert_eq!(
            metric(node, "chorus_cluster_redis_reconnects_total").await,
            Some(1.0)
        );
    }
    // The message acked while Redis was away is still there.
    let history = bob
        .request("message:history", json!({"conversationId": call}))
        .await
        .expect("history");
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(texts, vec!["still here"], "the acked message survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ring_published_while_the_callees_node_resubscribes_still_reaches_the_callee() {
    let redis = OwnRedis::start().await;
    // Every call alice starts stays on her node, whatever the two processes' CPU figures say
    // under a busy test run: the ring must cross to carol's node through pub/sub.
    let options = NodeOptions {
        env: vec![
            ("CHORUS_CLUSTER_REDIS_URL".into(), redis.url()),
            ("CHORUS_CLUSTER_LOCAL_PREFERENCE".into(), "1000000".into()),
        ],
    };
    let cluster = Cluster::start_with("subscriber-lost", 2, &options).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut carol = cluster.node(1).client(Transport::Ws, "carol").await;
    // A first call proves the path, and that node 2 listens for carol.
    let first = call_owned_by(&cluster, 0, &mut alice, (&mut carol, "carol")).await;
    alice
        .request("call:end", json!({"callId": first}))
        .await
        .expect("end");
    carol.expect("call:ended").await;

    // Only the subscribers lose their connections; commands and heartbeats go on, so no node
    // ever looks unhealthy. fred connects them again 500 ms later: a ring published right away
    // reaches nobody, and node 2 must find it in the call index once it listens again.
    for round in 0..3 {
        assert_eq!(redis.kill_subscribers(), 2, "one subscriber per node");
        let ack = alice
            .request(
                "call:initiate",
                json!({"conversationId": "conv", "callType": "audio", "participants": ["carol"]}),
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}: a call placed locally is refused: {e:?}"));
        let call = ack["callId"].as_str().expect("callId").to_owned();
        assert_eq!(owning_node(&cluster).await, Some(0), "round {round}");
        let incoming = carol.expect("call:incoming").await;
        assert_eq!(incoming["callId"], call.as_str(), "round {round}");
        alice
            .request("call:end", json!({"callId": call}))
            .await
            .expect("end");
        carol.expect("call:ended").await;
        // Both subscribers are back before the next round kills them again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}

/// Starts a call from `caller` to `callee` and makes sure node `owner` owns it, trying again
/// (ending the attempt) while placement chose another node. Returns the call id.
async fn call_owned_by(
    cluster: &Cluster,
    owner: usize,
    caller: &mut Client,
    (callee, callee_id): (&mut Client, &str),
) -> String {
    for _ in 0..10 {
        let ack = caller.initiate("audio", &[callee_id]).await;
        let call = ack["callId"].as_str().expect("callId").to_owned();
        let incoming = callee.expect("call:incoming").await;
        assert_eq!(incoming["callId"], call.as_str());
        if owning_node(cluster).await == Some(owner) {
            return call;
        }
        caller
            .request("call:end", json!({"callId": call}))
            .await
            .expect("end the misplaced attempt");
        callee.expect("call:ended").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("node {owner} never got the call");
}

/// The node that reports owning a call (the gauge follows within a heartbeat).
async fn owning_node(cluster: &Cluster) -> Option<usize> {
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        for (i, node) in cluster.nodes.iter().enumerate() {
            if labelled(node, "chorus_cluster_spaces_owned", "kind=\"call\"").await == Some(1.0) {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits until `/ready` on `node` says `status`.
async fn wait_for_ready(node: &Node, status: &str, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let (code, body) = http_get(node.addr, "/ready", None).await;
        if code == 200 && body.trim() == status {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} /ready says {code} {body:?}, not {status:?}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
