//! Health, readiness, metrics, ICE servers and graceful shutdown.

use crate::client::WsClient;
use crate::server::{TestServer, Transport, http_get};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn health_ready_and_metrics_are_served() {
    let server = TestServer::start().await;
    assert_eq!(
        http_get(server.addr, "/health", None).await,
        (200, "ok".into())
    );
    assert_eq!(http_get(server.addr, "/ready", None).await.0, 200);
    let mut a = server.client(Transport::Ws, "alice").await;
    let mut b = server.client(Transport::SocketIo, "bob").await;
    let ack = a
        .request(
            "call:initiate",
            json!({"conversationId": "c", "callType": "audio", "participants": ["bob"]}),
        )
        .await
        .unwrap();
    b.request("call:reject", json!({"callId": ack["callId"]}))
        .await
        .unwrap();
    a.expect("call:ended").await;
    let (status, m) = http_get(server.addr, "/metrics", None).await;
    assert_eq!(status, 200);
    for line in [
        r#"chorus_signaling_connections{transport="ws"} 1"#,
        r#"chorus_signaling_connections{transport="socketio"} 1"#,
        "chorus_signaling_sessions 2",
        "chorus_calls_active 0",
        r#"chorus_calls_total{outcome="rejected"} 1"#,
        r#"chorus_signaling_events_in_total{event="call:initiate"} 1"#,
        r#"chorus_signaling_events_out_total{event="call:incoming"} 1"#,
        "chorus_signaling_event_seconds_count 2",
    ] {
        assert!(m.contains(line), "missing `{line}` in:\n{m}");
    }
    assert!(
        !m.contains("alice") && !m.contains("bob"),
        "no per-user labels"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn ice_servers_endpoint_mints_turn_credentials_for_the_caller() {
    let server = TestServer::start().await;
    let (status, body) = http_get(
        server.addr,
        "/api/v1/ice-servers",
        Some(&server.token("alice")),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let turn = &v["iceServers"][1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + 6 * 3600 - 60 && expiry <= now + 6 * 3600 + 5,
        "ttl is 6h"
    );
    // Recompute the coturn REST credential independently of the server code.
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"turn-secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected);
    assert_eq!(
        http_get(server.addr, "/api/v1/ice-servers", None).await.0,
        401
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_tells_clients_refuses_new_sessions_and_drains() {
    let server = TestServer::with(|c| {
        c.server.drain_timeout = config::HumanDuration::secs(3);
        c.server.reconnect_hint = config::HumanDuration::millis(1234);
    })
    .await;
    let addr = server.addr;
    let sig = server.signaling.clone();
    let mut a = server.client(Transport::Ws, "alice").await;
    let mut b = server.client(Transport::SocketIo, "bob").await;
    let token = server.token("late");
    let stopping = tokio::spawn(server.stop());
    assert_eq!(
        a.expect("server:shutdown").await,
        json!({"reconnectInMs": 1234})
    );
    assert_eq!(b.expect("server:shutdown").await["reconnectInMs"], 1234);
    assert!(sig.is_draining());
    assert_eq!(http_get(addr, "/ready", None).await.0, 503);
    let err = WsClient::connect(addr, &token).await.err().unwrap();
    assert!(
        err.starts_with("503") && err.contains("shutting_down"),
        "{err}"
    );
    // Clients leave; the server finishes without waiting out the whole drain timeout.
    let started = std::time::Instant::now();
    a.close().await;
    b.close().await;
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("drained")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn clients_that_stay_are_closed_after_the_drain_timeout() {
    let server =
        TestServer::with(|c| c.server.drain_timeout = config::HumanDuration::millis(300)).await;
    let mut ws = WsClient::connect(server.addr, &server.token("stubborn"))
        .await
        .unwrap();
    let stopping = tokio::spawn(server.stop());
    assert_eq!(ws.closed_code().await, 1001);
    stopping.await.unwrap().unwrap();
}
