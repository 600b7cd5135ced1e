//! Admitting TCP and TLS clients: a per-source cap shared by every worker, and a deadline for
//! the TLS handshake and the first STUN message.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// How long until the server closes `stream`, reading whatever it sends; `None` if it is still
/// open after `limit`.
async fn closed_after(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn quick_handshakes(base: turn::Settings) -> turn::Settings {
    turn::Settings {
        stream_handshake_timeout: Duration::from_millis(600),
        ..base
    }
}

/// Asserts the server closes `stream` within 5 s, but not before the 600 ms deadline.
async fn closed_at_the_deadline(stream: &mut TcpStream) {
    let after = closed_after(stream, Duration::from_secs(5))
        .await
        .expect("closed at the deadline");
    assert!(
        after >= Duration::from_millis(500),
        "closed early: {after:?}"
    );
}

/// Allocates over `stream` at once, then checks the connection still serves after the
/// handshake deadline has passed.
async fn kept_past_the_deadline(stream: Box<dyn Stream>) {
    let mut c = Client::new(Link::Stream(stream), "u", "p");
    c.allocate_ok().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(c.refresh(600).await.class, turn::wire::Class::Success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_client_that_sends_nothing_is_closed_after_the_handshake_timeout() {
    let s = start(quick_handshakes(loopback_settings())).await;
    let mut silent = TcpStream::connect(s.tcp()).await.unwrap();
    closed_at_the_deadline(&mut silent).await;
    // A client that speaks at once keeps its connection.
    let tcp = TcpStream::connect(s.tcp()).await.unwrap();
    kept_past_the_deadline(Box::new(tcp)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_stalls_its_handshake_is_closed_after_the_timeout() {
    let tls = Tls::new("stall");
    let s = start(tls.settings(quick_handshakes(loopback_settings()))).await;
    let mut stalled = TcpStream::connect(s.addrs.tls[0]).await.unwrap();
    // The first bytes of a TLS record header, then nothing.
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    closed_at_the_deadline(&mut stalled).await;
    // A complete handshake followed by an Allocate is not affected.
    kept_past_the_deadline(Box::new(tls.connect(s.addrs.tls[0]).await)).await;
    s.stop().await;
}

/// Two workers accept on the port (SO_REUSEPORT spreads connections between them), so the cap
/// only holds if they share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_connections_per_source_are_capped_across_workers() {
    let s = start(turn::Settings {
        max_stream_connections_per_ip: 3,
        workers: 2,
        ..loopback_settings()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let tcp = TcpStream::connect(s.tcp()).await.unwrap();
        let mut c = Client::new(Link::Stream(Box::new(tcp)), "u", "p");
        c.allocate_ok().await;
        held.push(c);
    }
    // Over the cap: closed at accept, long before the 10 s handshake deadline.
    for _ in 0..4 {
        let mut extra = TcpStream::connect(s.tcp()).await.unwrap();
        let after = closed_after(&mut extra, Duration::from_secs(5))
            .await
            .expect("refused");
        assert!(after < Duration::from_secs(2), "{after:?}");
    }
    // Closing one gives its slot back (once its worker has seen the close).
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..100 {
        let mut next = TcpStream::connect(s.tcp()).await.unwrap();
        if closed_after(&mut next, Duration::from_millis(100))
            .await
            .is_none()
        {
            let mut c = Client::new(Link::Stream(Box::new(next)), "u", "p");
            c.allocate_ok().await;
            admitted = true;
            break;
        }
    }
    assert!(admitted, "the freed slot was never reused");
    s.stop().await;
}
