//! A session lives as long as its token: `session:expiring` a minute ahead (at once for shorter
//! tokens), `session:refresh` with a newer token for the same user, and the close at expiry.

use crate::client::Client;
use crate::client::{SioClient, WsClient};
use crate::server::{TestServer, mint};
use config::HumanDuration;
use serde_json::json;
use signaling::auth::Grants;
use std::time::Duration;

/// No leeway: a token's session ends at its `exp`.
async fn server() -> TestServer {
    TestServer::with(|c| c.auth.leeway = HumanDuration::secs(0)).await
}

fn short(user: &str) -> String {
    mint(user, Grants::default(), Duration::from_secs(3))
}

fn long(user: &str) -> String {
    mint(user, Grants::default(), Duration::from_secs(3600))
}

#[tokio::test]
async fn a_websocket_whose_token_runs_out_is_warned_then_closed_with_4001() {
    let server = server().await;
    let mut alice = WsClient::connect(server.addr, &short("alice"))
        .await
        .unwrap();
    let warning = alice.expect("session:expiring").await;
    assert!(
        warning["expiresAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{warning}"
    );
    assert_eq!(alice.expect("error").await["code"], "token_expired");
    assert_eq!(alice.closed_code().await, 4001);
    // The server is fine, and a new token connects.
    WsClient::connect(server.addr, &long("alice"))
        .await
        .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_refreshed_session_outlives_its_first_token() {
    let server = server().await;
    for transport in ["ws", "socketio"] {
        let mut client = match transport {
            "ws" => Client::Ws(WsClient::connect(server.addr, &short("bob")).await.unwrap()),
            _ => Client::Sio(
                SioClient::connect(server.addr, &short("bob"))
                    .await
                    .unwrap(),
            ),
        };
        client.expect("session:expiring").await;
        let ack = client
            .request("session:refresh", json!({"token": long("bob")}))
            .await
            .expect("refresh");
        assert!(ack["expiresAt"].is_string(), "{ack}");
        tokio::time::sleep(Duration::from_secs(4)).await;
        client
            .request("activity:ping", json!({}))
            .await
            .unwrap_or_else(|r| panic!("{transport}: still connected past the first token: {r:?}"));
        client.expect_none("error").await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_refresh_with_another_users_or_a_bad_token_is_refused_and_the_session_still_ends() {
    let server = server().await;
    let mut carol = Client::Sio(
        SioClient::connect(server.addr, &short("carol"))
            .await
            .unwrap(),
    );
    let refused = carol
        .request("session:refresh", json!({"token": long("mallory")}))
        .await
        .expect_err("another user's token");
    assert_eq!(refused.code, "forbidden");
    let refused = carol
        .request("session:refresh", json!({"token": "not.a.jwt"}))
        .await
        .expect_err("a bad token");
    assert_eq!(refused.code, "token_invalid");
    let refused = carol
        .request("session:refresh", json!({}))
        .await
        .expect_err("no token");
    assert_eq!(refused.code, "invalid_payload");
    // Each refusal came with its `error` event; the last one says the token expired.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let error = carol.expect("error").await;
        seen.push(error["code"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        seen,
        [
            "forbidden",
            "token_invalid",
            "invalid_payload",
            "token_expired"
        ]
    );
    let Client::Sio(mut carol) = carol else {
        unreachable!()
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while carol.pump().await {
        assert!(tokio::time::Instant::now() < end, "still connected");
    }
    server.stop().await.unwrap();
}
