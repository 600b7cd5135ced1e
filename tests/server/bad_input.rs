//! Malformed, oversized, unauthorized and too-frequent input: each gets a clear error, and
//! nobody else notices.

use crate::client::{SioClient, WsClient};
use crate::server::{SECRET, TestServer, Transport};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::time::Duration;

async fn assert_others_unaffected(server: &TestServer) {
    let mut x = server.client(Transport::Ws, "xavier").await;
    let mut y = server.client(Transport::SocketIo, "yvonne").await;
    let ack = x.initiate("audio", &["yvonne"]).await;
    assert_eq!(y.expect("call:incoming").await["callId"], ack["callId"]);
    y.request("call:accept", json!({"callId": ack["callId"]}))
        .await
        .unwrap();
    x.expect("call:accepted").await;
}

#[tokio::test]
async fn malformed_frames_get_error_events_and_the_connection_carries_on() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(server.addr, &server.token("alice"))
        .await
        .unwrap();
    for (frame, code) in [
        ("{not json", "malformed_frame"),
        ("[1,2,3]", "malformed_frame"),
        (r#"{"data": {}}"#, "malformed_frame"),
        (r#"{"event": 5}"#, "malformed_frame"),
        (r#"{"event": "call:dance", "data": {}}"#, "unknown_event"),
        (
            r#"{"event": "call:initiate", "data": {"conversationId": 1}}"#,
            "invalid_payload",
        ),
        (
            r#"{"event": "call:accept", "data": "nope"}"#,
            "invalid_payload",
        ),
        (
            r#"{"event": "call:accept", "data": {"callId": ""}}"#,
            "invalid_payload",
        ),
        (
            r#"{"event": "offer", "data": {"callId": "c", "targetUserId": "b"}}"#,
            "invalid_payload",
        ),
    ] {
        ws.send_text(frame.to_owned()).await;
        let mut client = crate::client::Client::Ws(ws);
        let err = client.expect("error").await;
        assert_eq!(err["code"], code, "{frame}: {err}");
        assert!(!err["message"].as_str().unwrap().is_empty());
        let crate::client::Client::Ws(back) = client else {
            unreachable!()
        };
        ws = back;
    }
    // With an id, the refusal is also acked, and names the event and id.
    ws.send_text(r#"{"event": "call:dance", "id": 41}"#.to_owned())
        .await;
    let e = ws.ack(41).await.unwrap_err();
    assert_eq!(e.code, "unknown_event");
    ws.send_text(r#"{"event": 7, "id": 42}"#.to_owned()).await;
    assert_eq!(ws.ack(42).await.unwrap_err().code, "malformed_frame");
    let mut client = crate::client::Client::Ws(ws);
    let e41 = client.expect("error").await;
    assert_eq!(
        (e41["id"].clone(), e41["event"].clone()),
        (json!(41), json!("call:dance"))
    );
    assert_eq!(client.expect("error").await["id"], 42);
    let crate::client::Client::Ws(mut ws) = client else {
        unreachable!()
    };
    // Binary frames are refused the same way.
    use futures_util::SinkExt;
    ws.ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![0, 1, 2].into(),
        ))
        .await
        .unwrap();
    let mut client = crate::client::Client::Ws(ws);
    assert_eq!(client.expect("error").await["code"], "malformed_frame");
    // Still a working session.
    client.request("activity:ping", json!({})).await.unwrap();
    assert_others_unaffected(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn socketio_bad_events_are_acked_with_codes() {
    let server = TestServer::start().await;
    let mut c = server.client(Transport::SocketIo, "alice").await;
    let e = c.request("call:dance", json!({})).await.unwrap_err();
    assert_eq!(e.code, "unknown_event");
    assert!(
        e.body["message"].as_str().unwrap().contains("call:dance"),
        "{}",
        e.body
    );
    assert_eq!(c.expect("error").await["event"], "call:dance");
    let e = c
        .request("call:initiate", json!({"conversationId": "c"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid_payload");
    let e = c
        .request("presence:subscribe", json!("everyone"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid_payload");
    c.request("activity:ping", json!(null)).await.unwrap();
    // A packet that is not Socket.IO at all is a protocol violation: socketioxide closes that
    // socket (the official client never sends one). Nobody else is touched.
    let crate::client::Client::Sio(mut raw) = c else {
        unreachable!()
    };
    raw.send_raw("42[not json").await;
    let closed =
        tokio::time::timeout(Duration::from_secs(5), async { while raw.pump().await {} }).await;
    assert!(closed.is_ok());
    assert_others_unaffected(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_messages_close_only_that_connection() {
    let server = TestServer::with(|c| c.limits.max_frame_bytes = 4096).await;
    let mut ws = WsClient::connect(server.addr, &server.token("alice"))
        .await
        .unwrap();
    let big = json!({"event": "activity:ping", "data": {"pad": "x".repeat(5000)}}).to_string();
    ws.send_text(big).await;
    assert_eq!(ws.closed_code().await, 1009);

    let mut sio = SioClient::connect(server.addr, &server.token("bob"))
        .await
        .unwrap();
    sio.emit("activity:ping", json!({"pad": "x".repeat(5000)}))
        .await;
    let closed =
        tokio::time::timeout(Duration::from_secs(5), async { while sio.pump().await {} }).await;
    assert!(closed.is_ok(), "socket.io connection closed on oversize");
    assert_others_unaffected(&server).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn event_floods_are_rate_limited_per_connection() {
    for transport in [Transport::Ws, Transport::SocketIo] {
        let server = TestServer::with(|c| {
            c.limits.events_per_second = 5;
            c.limits.event_burst = 5;
        })
        .await;
        let mut flooder = server.client(transport, "flooder").await;
        let mut limited = 0;
        for _ in 0..30 {
            match flooder.request("activity:ping", json!({})).await {
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.code, "rate_limited");
                    limited += 1;
                }
            }
        }
        assert!(limited >= 20, "{limited} of 30 limited");
        assert_eq!(flooder.expect("error").await["code"], "rate_limited");
        // The budget refills; the connection was never dropped.
        tokio::time::sleep(Duration::from_millis(500)).await;
        flooder.request("activity:ping", json!({})).await.unwrap();
        assert_others_unaffected(&server).await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let server = TestServer::with(|c| c.server.max_connections_per_ip = 2).await;
    let _a = WsClient::connect(server.addr, &server.token("a"))
        .await
        .unwrap();
    let _b = SioClient::connect(server.addr, &server.token("b"))
        .await
        .unwrap();
    refused_over_both_transports(server.addr, &server.token("c")).await;
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    WsClient::connect(server.addr, &server.token("e"))
        .await
        .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_per_user_are_capped_and_freed_on_close() {
    let server = TestServer::with(|c| c.limits.max_connections_per_user = 2).await;
    let a = WsClient::connect(server.addr, &server.token("alice"))
        .await
        .unwrap();
    let _b = SioClient::connect(server.addr, &server.token("alice"))
        .await
        .unwrap();
    refused_over_both_transports(server.addr, &server.token("alice")).await;
    // Another user is not affected, and a closed connection frees its place.
    WsClient::connect(server.addr, &server.token("bob"))
        .await
        .unwrap();
    a.close().await;
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match WsClient::connect(server.addr, &server.token("alice")).await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < end, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await.unwrap();
}

/// Both transports refuse a connection with `token` as too many: WebSocket with `429` before the
/// upgrade, Socket.IO with a `connect_error`.
pub async fn refused_over_both_transports(addr: std::net::SocketAddr, token: &str) {
    let err = WsClient::connect(addr, token).await.err().unwrap();
    assert!(
        err.starts_with("429") && err.contains("too_many_connections"),
        "{err}"
    );
    let err = SioClient::connect(addr, token).await.err().unwrap();
    assert_eq!(err, "too_many_connections");
}

fn forged(claims: Value, secret: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_session_with_a_reason() {
    let server = TestServer::start().await;
    let expired = forged(json!({"sub": "a", "exp": unix_now() - 120}), SECRET);
    let wrong_key = forged(
        json!({"sub": "a", "exp": unix_now() + 60}),
        "another-secret-another-secret-another",
    );
    let no_exp = forged(json!({"sub": "a"}), SECRET);
    for (token, code) in [
        (expired.as_str(), "token_expired"),
        (wrong_key.as_str(), "token_bad_signature"),
        (no_exp.as_str(), "token_invalid"),
        ("not.a.jwt", "token_invalid"),
    ] {
        let err = WsClient::connect(server.addr, token).await.err().unwrap();
        assert!(
            err.starts_with("401") && err.contains(code),
            "ws {code}: {err}"
        );
        let err = SioClient::connect(server.addr, token).await.err().unwrap();
        assert_eq!(err, code, "socket.io");
    }
    let err = WsClient::connect_url(&format!("ws://{}/ws", server.addr), None)
        .await
        .err()
        .unwrap();
    assert!(err.contains("token_missing"), "{err}");
    assert_eq!(
        SioClient::connect_with(server.addr, "", None)
            .await
            .err()
            .unwrap(),
        "token_missing"
    );
    // The other two ways to present a token.
    let good = server.token_with("carol", Grants::default(), Duration::from_secs(60));
    WsClient::connect_bearer(server.addr, &good).await.unwrap();
    SioClient::connect_with(server.addr, &format!("&access_token={good}"), None)
        .await
        .unwrap();
    let (_, metrics) = crate::server::http_get(server.addr, "/metrics", None).await;
    assert!(
        metrics.contains(r#"chorus_auth_failures_total{reason="token_expired"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"chorus_auth_failures_total{reason="token_missing"} 2"#));
    assert_others_unaffected(&server).await;
    server.stop().await.unwrap();
}
