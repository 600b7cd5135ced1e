//! Chat on PostgreSQL across nodes: new messages, edits, reactions, reads and typing reach
//! every member's devices on every node, and the per-user send rate counts across nodes.

use super::{Cluster, NodeOptions};
use crate::durability::Schema;
use crate::server::Transport;
use serde_json::json;

async fn chat_cluster(test: &str, extra: &[(&str, &str)]) -> (Cluster, Schema) {
    let schema = Schema::create().await;
    let mut env = vec![("CHORUS_CHAT_DATABASE_URL".to_owned(), schema.url())];
    for (k, v) in extra {
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    let cluster = Cluster::start_with(test, 3, &NodeOptions { env }).await;
    (cluster, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_events_reach_every_members_devices_on_every_node() {
    let (cluster, schema) = chat_cluster("chat", &[]).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob2 = cluster.node(1).client(Transport::SocketIo, "bob").await;
    let mut bob3 = cluster.node(2).client(Transport::Ws, "bob").await;
    // The call makes both members of its conversation.
    let call = alice.initiate("audio", &["bob"]).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    bob2.expect("call:incoming").await;
    bob2.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();

    let ack = alice
        .request(
            "message:send",
            json!({"conversationId": call, "content": "hello from n1", "type": "text", "tempId": "t1"}),
        )
        .await
        .expect("message:send");
    let id = ack["messageId"].as_str().unwrap().to_owned();
    for bob in [&mut bob2, &mut bob3] {
        let new = bob.expect("message:new").await;
        assert_eq!(
            (new["content"].as_str(), new["sequenceNumber"].as_u64()),
            (Some("hello from n1"), Some(1))
        );
    }
    alice
        .request(
            "message:edit",
            json!({"messageId": id, "content": "hello, edited"}),
        )
        .await
        .expect("edit");
    for bob in [&mut bob2, &mut bob3] {
        assert_eq!(
            bob.expect("message:updated").await["content"],
            "hello, edited"
        );
    }
    bob3.request("message:react", json!({"messageId": id, "emoji": "👍"}))
        .await
        .expect("react");
    assert_eq!(
        alice.expect("message:reaction:added").await["userId"],
        "bob"
    );
    bob2.request(
        "message:read",
        json!({"conversationId": call, "messageId": id}),
    )
    .await
    .expect("read");
    assert_eq!(alice.expect("message:read").await["userId"], "bob");
    alice
        .request("typing:start", json!({"conversationId": call}))
        .await
        .expect("typing");
    for bob in [&mut bob2, &mut bob3] {
        let typing = bob.expect("typing").await;
        assert_eq!(
            (typing["userId"].as_str(), typing["isTyping"].as_bool()),
            (Some("alice"), Some(true))
        );
    }
    drop(cluster);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_send_rate_counts_across_nodes() {
    let (cluster, schema) = chat_cluster(
        "chat-rate",
        &[
            ("CHORUS_CHAT_MESSAGES_PER_SECOND", "1"),
            ("CHORUS_CHAT_MESSAGE_BURST", "2"),
        ],
    )
    .await;
    let mut a1 = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut a2 = cluster.node(1).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(2).client(Transport::Ws, "bob").await;
    let call = a1.initiate("audio", &["bob"]).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.expect("call:incoming").await;
    bob.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    let send = |n: u32| json!({"conversationId": call, "content": format!("m{n}"), "type": "text", "tempId": format!("t{n}")});
    a1.request("message:send", send(1)).await.expect("first");
    a2.request("message:send", send(2))
        .await
        .expect("second (burst of 2)");
    // A third, from either node, is over the user's one budget.
    let refused = a1
        .request("message:send", send(3))
        .await
        .expect_err("a third message at once is over the rate");
    assert_eq!(refused.code, "rate_limited", "{:?}", refused.body);
    drop(cluster);
    schema.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acked_message_is_lost_when_the_node_that_took_it_is_killed() {
    let (mut cluster, schema) = chat_cluster("chat-crash", &[]).await;
    let mut alice = cluster.node(0).client(Transport::Ws, "alice").await;
    let mut bob = cluster.node(1).client(Transport::SocketIo, "bob").await;
    let call = alice.initiate("audio", &["bob"]).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.expect("call:incoming").await;
    bob.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    // Acked through node 1, which dies right after the last ack.
    let mut acked = Vec::new();
    for n in 0..20 {
        let ack = alice
            .request(
                "message:send",
                json!({"conversationId": call, "content": format!("m{n}"), "type": "text", "tempId": format!("t{n}")}),
            )
            .await
            .expect("acked");
        acked.push(ack["messageId"].as_str().unwrap().to_owned());
    }
    cluster.nodes[0].kill9();
    // Every acked message is in the history a surviving node serves, in order.
    let history = bob
        .request(
            "message:history",
            json!({"conversationId": call, "limit": 50}),
        )
        .await
        .expect("history through node 2");
    let mut ids: Vec<String> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    if ids.first() != acked.first() {
        ids.reverse();
    }
    assert_eq!(ids, acked, "every acked message, once, in order");
    drop(cluster);
    schema.drop_now().await;
}
