//! Presence: who hears about whom, statuses, and the REST query.

use crate::server::{TestServer, Transport, http_get};
use serde_json::{Value, json};

/// These flows watch users they share nothing with, which only `everyone` allows (the other
/// modes are tested in `policy`).
fn everyone(c: &mut config::Config) {
    c.presence.visibility = config::PresenceVisibility::Everyone;
}

#[tokio::test]
async fn presence_reaches_subscribers_and_nobody_else() {
    for transport in [Transport::Ws, Transport::SocketIo] {
        let server = TestServer::with(everyone).await;
        let mut carol = server.client(transport, "carol").await;
        let mut dave = server.client(transport, "dave").await;
        let ack = carol
            .request("presence:subscribe", json!({"userIds": ["alice"]}))
            .await
            .unwrap();
        assert_eq!(ack["presences"][0]["status"], "offline");

        let mut alice = server.client(transport, "alice").await;
        assert_eq!(
            carol.expect("user:online").await,
            json!({"userId": "alice", "username": "alice name"})
        );
        alice
            .request(
                "user:status:update",
                json!({"status": "busy", "text": "focus time"}),
            )
            .await
            .unwrap();
        let changed = carol.expect("presence:changed").await;
        assert_eq!(
            (changed["status"].clone(), changed["text"].clone()),
            (json!("busy"), json!("focus time"))
        );
        assert!(changed["lastSeenAt"].as_str().unwrap().ends_with('Z'));

        let e = alice
            .request("user:status:update", json!({"status": "sleeping"}))
            .await
            .unwrap_err();
        assert_eq!(e.code, "invalid_payload");

        alice.close().await;
        let offline = carol.expect("user:offline").await;
        assert_eq!(offline["userId"], "alice");
        assert!(offline["lastSeenAt"].is_string());

        // Dave shares nothing with alice and asked for nothing.
        dave.expect_none("user:online").await;
        dave.expect_none("presence:changed").await;
        dave.expect_none("user:offline").await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn call_members_see_each_others_presence() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::SocketIo, "bob").await;
    alice.initiate("audio", &["bob"]).await;
    bob.expect("call:incoming").await;
    alice
        .request("user:status:update", json!({"status": "dnd"}))
        .await
        .unwrap();
    assert_eq!(bob.expect("presence:changed").await["status"], "dnd");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn presence_over_http_needs_a_token_and_bounds_the_query() {
    let server = TestServer::with(everyone).await;
    let _alice = server.client(Transport::Ws, "alice").await;
    let token = server.token("carol");
    let (status, body) = http_get(
        server.addr,
        "/api/v1/presence?userIds=alice,bob",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["presences"][0]["userId"], "alice");
    assert_eq!(v["presences"][0]["status"], "online");
    assert_eq!(v["presences"][1]["status"], "offline");

    let (status, body) = http_get(server.addr, "/api/v1/presence?userIds=alice", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "token_missing"
    );
    let (status, _) = http_get(
        server.addr,
        "/api/v1/presence?userIds=alice&access_token=junk",
        None,
    )
    .await;
    assert_eq!(status, 401);

    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let (status, body) = http_get(
        server.addr,
        &format!("/api/v1/presence?userIds={}", many.join(",")),
        Some(&token),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "limit_exceeded"
    );
    let (status, _) = http_get(server.addr, "/api/v1/presence", Some(&token)).await;
    assert_eq!(status, 400);
    server.stop().await.unwrap();
}
