//! Connections that never become a request, or stop mid-way, are closed by the server.

use super::{closed_within, connect_from, fetch, loopback, sample};
use crate::server::TestServer;
use config::HumanDuration;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt};

/// A server with short timeouts; each test sets the one it checks shorter than the others.
async fn server(header: u64, idle: u64, request: u64) -> TestServer {
    TestServer::with(|c| {
        c.server.header_read_timeout = HumanDuration::millis(header);
        c.server.idle_timeout = HumanDuration::millis(idle);
        c.server.request_timeout = HumanDuration::millis(request);
        // The request-timeout test needs a route that reads a body.
        c.server.dev = true;
    })
    .await
}

/// Waits (up to 10 s) for the server to close `stream`, asserting it did not before
/// `not_before`; returns what it sent.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin), not_before: u64) -> Vec<u8> {
    let (after, said) = closed_within(stream, Duration::from_secs(10))
        .await
        .expect("the server closes the connection");
    assert!(
        after >= Duration::from_millis(not_before),
        "closed early, after {after:?}"
    );
    said
}

/// Asserts the server counted exactly one close for `reason`, then stops it.
async fn counted_once(server: TestServer, reason: &str) {
    let (_, _, metrics) = fetch(server.addr, "/metrics").await;
    let name = format!("chorus_http_connections_closed_total{{reason=\"{reason}\"}}");
    assert_eq!(sample(&metrics, &name), Some(1.0), "{metrics}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = server(1500, 30_000, 60_000).await;
    let mut silent = connect_from(loopback(1), server.addr).await;
    let said = closed_by_server(&mut silent, 1400).await;
    assert!(said.is_empty(), "closed without an answer");
    counted_once(server, "header_timeout").await;
}

/// Slowloris: a request line, then a header byte every second. Every byte is progress, so only
/// a deadline on the whole head closes it.
#[tokio::test]
async fn a_head_trickled_a_byte_a_second_is_closed_after_the_header_timeout() {
    let server = server(2000, 30_000, 60_000).await;
    let slow = connect_from(loopback(1), server.addr).await;
    let (mut from_server, mut to_server) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let _ = to_server.write_all(head).await;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if to_server.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    // Closed while it is still trickling (the trickle would go on for 12 s).
    let said = closed_by_server(&mut from_server, 1900).await;
    assert!(said.is_empty(), "{said:?}");
    trickle.abort();
    counted_once(server, "header_timeout").await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = server(10_000, 1000, 60_000).await;
    let mut kept = connect_from(loopback(1), server.addr).await;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, the connection stays open for the next request...
    let answered = closed_within(&mut kept, Duration::from_millis(300)).await;
    let said = answered.expect_err("kept alive after the response");
    assert!(String::from_utf8_lossy(&said).starts_with("HTTP/1.1 200"));
    // ...and is closed once it has idled for the idle timeout, well before the header timeout.
    closed_by_server(&mut kept, 500).await;
    counted_once(server, "idle_timeout").await;
}

/// A body sent a byte at a time keeps bytes moving, so only a deadline on the request ends it.
#[tokio::test]
async fn a_body_trickled_slower_than_the_request_timeout_gets_408_and_is_closed() {
    let server = server(10_000, 30_000, 1500).await;
    let (mut from_server, mut to_server) =
        connect_from(loopback(1), server.addr).await.into_split();
    let trickle = tokio::spawn(async move {
        let body = br#"{"name": "slow client with a long name"}"#;
        let head = format!(
            "POST /api/v1/dev/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = to_server.write_all(head.as_bytes()).await;
        for byte in body {
            if to_server.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    });
    let said = closed_by_server(&mut from_server, 1400).await;
    trickle.abort();
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("server.request_timeout"), "{said}");
    counted_once(server, "request_timeout").await;
}
