//! Limits that are global by meaning hold across nodes: the connections one user may hold, and
//! the participants of a room (counted by its one owner, wherever they connect).

use super::{Cluster, NodeOptions};
use crate::client::WsClient;
use crate::server::{Transport, mint};
use serde_json::json;
use signaling::auth::Grants;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_per_user_counts_every_node() {
    let options = NodeOptions {
        env: vec![("CHORUS_LIMITS_MAX_CONNECTIONS_PER_USER".into(), "2".into())],
    };
    let cluster = Cluster::start_with("conn-cap", 3, &options).await;
    let token = mint("alice", Grants::default(), Duration::from_secs(600));
    let first = WsClient::connect(cluster.node(0).addr, &token)
        .await
        .unwrap();
    let _second = WsClient::connect(cluster.node(1).addr, &token)
        .await
        .unwrap();
    crate::bad_input::refused_over_both_transports(cluster.node(2).addr, &token).await;
    // Other users are not affected; closing one of alice's connections frees a place anywhere.
    cluster.node(2).client(Transport::Ws, "bob").await;
    first.close().await;
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match WsClient::connect(cluster.node(2).addr, &token).await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < end, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_participant_cap_holds_whatever_node_they_join_from() {
    let options = NodeOptions {
        env: vec![("CHORUS_ROOMS_MAX_PARTICIPANTS".into(), "2".into())],
    };
    let cluster = Cluster::start_with("room-cap", 3, &options).await;
    // The first member is an admin: an admin's join creates the room.
    let grants = |admin| Grants {
        room: Some("standup".into()),
        admin,
        ..Grants::default()
    };
    let mut members = Vec::new();
    let mut clients = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let token = mint(user, grants(i == 0), Duration::from_secs(600));
        let mut c = cluster.node(i).client_with(Transport::Ws, &token).await;
        let joined = c.request("room:join", json!({"room": "standup"})).await;
        members.push((user, joined));
        clients.push(c);
    }
    assert!(members[0].1.is_ok(), "{members:?}");
    assert!(members[1].1.is_ok(), "{members:?}");
    let refused = members[2]
        .1
        .as_ref()
        .expect_err("a third member is over the cap");
    assert_eq!(refused.code, "limit_exceeded", "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_quota_counts_calls_owned_by_every_node_but_not_ringing_ones() {
    let options = NodeOptions {
        env: vec![("CHORUS_LIMITS_MAX_CALLS_PER_USER".into(), "1".into())],
    };
    let cluster = Cluster::start_with("call-quota", 3, &options).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(1).client(Transport::Ws, "bob").await;
    let mut dave = cluster.node(2).client(Transport::SocketIo, "dave").await;
    let _carol = cluster.node(2).client(Transport::Ws, "carol").await;
    let id = |ack: &serde_json::Value| ack["callId"].as_str().unwrap().to_owned();

    // Dave's call only rings alice: it does not count against her.
    let ringing = id(&dave.initiate("audio", &["alice"]).await);
    assert_eq!(
        alice.expect("call:incoming").await["callId"],
        ringing.as_str()
    );
    // Bob's call, placed on bob's node, is the one she takes part in.
    let taken = id(&bob.initiate("audio", &["alice"]).await);
    assert_eq!(
        alice.expect("call:incoming").await["callId"],
        taken.as_str()
    );
    alice
        .request("call:accept", json!({"callId": taken}))
        .await
        .expect("her first call");

    // Her own node owns neither call, yet knows she is in one.
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        match alice
            .request(
                "call:initiate",
                json!({"conversationId": "c", "callType": "audio", "participants": ["carol"]}),
            )
            .await
        {
            Err(r) => break r,
            Ok(ack) => {
                assert!(
                    tokio::time::Instant::now() < end,
                    "a second call is never refused"
                );
                alice
                    .request("call:end", json!({"callId": ack["callId"]}))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(refused.code, "limit_exceeded", "{refused:?}");
    let refused = alice
        .request("call:accept", json!({"callId": ringing}))
        .await
        .expect_err("accepting the ringing call would be a second");
    assert_eq!(refused.code, "limit_exceeded", "{refused:?}");

    // Once bob's call ends, she has room again.
    bob.request("call:end", json!({"callId": taken}))
        .await
        .unwrap();
    alice.expect("call:ended").await;
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match alice
            .request(
                "call:initiate",
                json!({"conversationId": "c", "callType": "audio", "participants": ["carol"]}),
            )
            .await
        {
            Ok(_) => break,
            Err(r) => assert!(
                tokio::time::Instant::now() < end,
                "still refused after her call ended: {r:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
