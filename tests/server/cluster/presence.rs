//! Presence across nodes: watchers anywhere hear a user come online with their first device on
//! any node and go offline with their last; status changes reach watchers and the user's other
//! devices on other nodes.

use super::Cluster;
use crate::server::{Transport, http_get, mint};
use serde_json::json;
use signaling::auth::Grants;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_a_users_devices_across_nodes() {
    let cluster = Cluster::start("presence", 3).await;
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let mut carol = n3.client(Transport::SocketIo, "carol").await;
    let ack = carol
        .request("presence:subscribe", json!({"userIds": ["alice"]}))
        .await
        .unwrap();
    assert_eq!(ack["presences"][0]["status"], "offline");

    let mut alice1 = n1.client(Transport::Ws, "alice").await;
    assert_eq!(carol.expect("user:online").await["userId"], "alice");
    // Her second device, on another node, is no news.
    let mut alice2 = n2.client(Transport::Ws, "alice").await;
    // Presence of a user connected elsewhere, asked on a third node.
    let token = mint("carol", Grants::default(), Duration::from_secs(60));
    let (status, body) = http_get(n3.addr, "/api/v1/presence?userIds=alice", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["presences"][0]["status"], "online", "{body}");

    alice2
        .request(
            "user:status:update",
            json!({"status": "busy", "text": "in a meeting"}),
        )
        .await
        .expect("status update");
    let changed = carol.expect("presence:changed").await;
    assert_eq!(
        (changed["status"].as_str(), changed["text"].as_str()),
        (Some("busy"), Some("in a meeting"))
    );
    // Her device on the other node stays in sync.
    assert_eq!(alice1.expect("presence:changed").await["status"], "busy");

    // The device on n1 goes: she is still online on n2, so nobody hears she went offline.
    alice1.close().await;
    alice2
        .request("user:status:update", json!({"status": "online"}))
        .await
        .unwrap();
    let changed = carol.expect("presence:changed").await;
    assert_eq!(changed["status"], "online");
    carol.expect_none("user:offline").await;
    alice2.close().await;
    assert_eq!(carol.expect("user:offline").await["userId"], "alice");
    // Asked again on a third node, she is offline.
    let (_, body) = http_get(n3.addr, "/api/v1/presence?userIds=alice", Some(&token)).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["presences"][0]["status"], "offline", "{body}");
}
