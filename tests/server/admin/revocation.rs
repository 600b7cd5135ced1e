//! Revocation through the server API: live sessions close within 1 s with `token_revoked`
//! (WebSocket 4003), the tokens are refused at connect and at `session:refresh`, across a
//! restart, and on every node of a cluster.

use super::{admin_token, api, call};
use crate::client::{Client, SioClient, WsClient};
use crate::server::{SECRET, TestServer, scratch_dir};
use base64::Engine;
use serde_json::{Value, json};
use signaling::auth::{Authenticator, Grants};
use std::time::{Duration, Instant, SystemTime};

/// A token for `user`, issued `issued_in` from now (negative: in the past).
pub fn token_issued(user: &str, issued_in: i64) -> String {
    let auth = Authenticator::new(
        &config::AuthConfig {
            secret: SECRET.into(),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let now = SystemTime::now();
    let at = if issued_in >= 0 {
        now + Duration::from_secs(issued_in as u64)
    } else {
        now - Duration::from_secs((-issued_in) as u64)
    };
    auth.mint(user, user, Grants::default(), Duration::from_secs(600), at)
        .unwrap()
}

fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Waits for the `error` event `token_revoked` and the close; returns how long it took.
pub async fn closed_as_revoked(client: &mut WsClient, since: Instant) -> Duration {
    let error = client.expect_within("error", Duration::from_secs(2)).await;
    assert_eq!(error["code"], "token_revoked", "{error}");
    assert_eq!(client.closed_code().await, 4003);
    let took = since.elapsed();
    eprintln!("revoked session closed {took:?} after the request was sent");
    took
}

#[tokio::test]
async fn revoking_a_user_closes_their_sessions_at_once_and_refuses_their_older_tokens() {
    let dir = scratch_dir();
    let server = TestServer::with(|c| c.server.data_dir = dir.clone()).await;
    let addr = server.addr;
    let old = token_issued("alice", -5);
    let mut ws = WsClient::connect(addr, &old).await.unwrap();
    let mut sio = Client::Sio(SioClient::connect(addr, &old).await.unwrap());
    let mut bob = WsClient::connect(addr, &token_issued("bob", -5))
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = api(
        addr,
        "POST",
        "/api/v1/admin/revocations",
        Some(json!({"userId": "alice"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["kind"].as_str(), body["subject"].as_str()),
        (Some("user"), Some("alice"))
    );
    let took = closed_as_revoked(&mut ws, started).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    let error = sio.expect("error").await;
    assert_eq!(error["code"], "token_revoked");
    let Client::Sio(mut sio) = sio else {
        unreachable!()
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while sio.pump().await {
        assert!(
            tokio::time::Instant::now() < end,
            "Socket.IO session still open"
        );
    }
    // Bob is untouched.
    bob.request("activity:ping", json!({})).await.unwrap();
    // The old token is refused at connect, on both transports and by the server API.
    let refused = WsClient::connect(addr, &old).await.err().unwrap();
    assert!(
        refused.starts_with("401") && refused.contains("token_revoked"),
        "{refused}"
    );
    assert!(SioClient::connect(addr, &old).await.is_err());
    // A token issued after the revocation is fine, and cannot refresh to an old one.
    let newer = token_issued("alice", 2);
    let mut again = Client::Ws(WsClient::connect(addr, &newer).await.unwrap());
    let refusal = again
        .request("session:refresh", json!({"token": old}))
        .await
        .unwrap_err();
    assert_eq!(refusal.code, "token_revoked");
    let (status, list) = api(addr, "GET", "/api/v1/admin/revocations", None).await;
    assert_eq!((status, list[0]["subject"].as_str()), (200, Some("alice")));
    drop(again);
    server.stop().await.unwrap();

    // After a restart on the same data directory the old token is still refused.
    let restarted = TestServer::with(|c| c.server.data_dir = dir.clone()).await;
    let refused = WsClient::connect(restarted.addr, &old).await.err().unwrap();
    assert!(refused.contains("token_revoked"), "{refused}");
    WsClient::connect(restarted.addr, &token_issued("bob", -5))
        .await
        .unwrap();
    restarted.stop().await.unwrap();
}

#[tokio::test]
async fn revoking_a_jti_closes_that_session_only_and_refuses_that_token() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let first = token_issued("carol", -5);
    let second = token_issued("carol", -5);
    let mut one = WsClient::connect(addr, &first).await.unwrap();
    let mut two = WsClient::connect(addr, &second).await.unwrap();
    let started = Instant::now();
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/revocations",
        Some(json!({"jti": jti_of(&first)})),
    )
    .await;
    assert_eq!(status, 201);
    let took = closed_as_revoked(&mut one, started).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    two.request("activity:ping", json!({})).await.unwrap();
    assert!(WsClient::connect(addr, &first).await.is_err());
    WsClient::connect(addr, &second).await.unwrap();
    // A session refreshing to the revoked token is refused, and carries on with its own.
    let mut two = Client::Ws(two);
    let refusal = two
        .request("session:refresh", json!({"token": first}))
        .await
        .unwrap_err();
    assert_eq!(refusal.code, "token_revoked");
    two.request("activity:ping", json!({})).await.unwrap();
    // An admin token that is revoked no longer opens the server API.
    let admin = admin_token();
    let (status, _) = api(
        addr,
        "POST",
        "/api/v1/admin/revocations",
        Some(json!({"jti": jti_of(&admin)})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, err) = call(addr, "GET", "/api/v1/admin/rooms", Some(&admin), None).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("token_revoked")));
    server.stop().await.unwrap();
}
