//! The raw per-IP cap: counted at accept, before any byte is read or token checked, and for as
//! long as an upgraded WebSocket lives.

use super::{closed_within, connect_from, fetch_from, loopback, sample};
use crate::client::WsClient;
use crate::server::TestServer;
use std::time::Duration;
use tokio::net::TcpStream;

async fn capped(per_ip: u32) -> TestServer {
    TestServer::with(|c| {
        c.server.max_raw_connections_per_ip = per_ip;
        c.server.max_connections_per_ip = per_ip;
    })
    .await
}

/// Asserts the server closes `stream` at once, having read nothing and sent nothing.
async fn refused(mut stream: TcpStream) {
    let (after, said) = closed_within(&mut stream, Duration::from_secs(3))
        .await
        .expect("refused at once");
    assert!(
        said.is_empty() && after < Duration::from_secs(2),
        "{after:?} {said:?}"
    );
}

/// Retries until a fresh connection from `from` is served (the server notices a closed
/// connection, and frees its slot, asynchronously).
async fn served_again(server: &TestServer, from: std::net::IpAddr) {
    for _ in 0..100 {
        let mut probe = connect_from(from, server.addr).await;
        if closed_within(&mut probe, Duration::from_millis(100))
            .await
            .is_err()
        {
            drop(probe);
            assert_eq!(fetch_from(from, server.addr, "/health").await.0, 200);
            return;
        }
    }
    panic!("{from} never got a slot back");
}

#[tokio::test]
async fn connection_n_plus_1_from_one_ip_is_closed_unread_while_other_ips_connect() {
    let server = capped(3).await;
    let a = loopback(1);
    // Three connections that never send a byte hold all of 127.0.0.1's slots...
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(a, server.addr).await);
    }
    // ...so the fourth is closed before the server reads anything from it.
    refused(connect_from(a, server.addr).await).await;
    // Another address is not affected.
    let (status, _, metrics) = fetch_from(loopback(2), server.addr, "/metrics").await;
    assert_eq!(status, 200);
    let name = r#"chorus_http_connections_refused_total{reason="per_ip"}"#;
    assert_eq!(sample(&metrics, name), Some(1.0), "{metrics}");
    // Open: the three held and the one asking for metrics; the refused one never counted.
    assert_eq!(sample(&metrics, "chorus_http_connections"), Some(4.0));
    // Closing one gives its slot back.
    held.pop();
    served_again(&server, a).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_upgraded_websocket_keeps_counting_against_the_raw_cap() {
    let server = capped(2).await;
    let mut first = WsClient::connect(server.addr, &server.token("alice"))
        .await
        .unwrap();
    let _second = WsClient::connect(server.addr, &server.token("bob"))
        .await
        .unwrap();
    // Both upgraded connections hold their slots: a plain connection is refused unread.
    refused(connect_from(loopback(1), server.addr).await).await;
    let _ = first.ws.close(None).await;
    drop(first);
    served_again(&server, loopback(1)).await;
    server.stop().await.unwrap();
}
