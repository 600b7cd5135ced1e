//! Credentials over the wire: REST expiry on Allocate and Refresh, forged credentials, and an
//! unauthenticated flood that must be rate-limited and leave no state.

use std::time::{Duration, SystemTime};

use turn::{rest_credential, wire};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_credentials_work_and_expire_on_allocate() {
    let s = start(test_settings()).await;
    let (u, p) = rest_credential(
        SECRET.as_bytes(),
        "alice",
        Duration::from_secs(60),
        SystemTime::now(),
    );
    Client::udp(s.udp(), &u, &p).await.allocate_ok().await;

    let past = SystemTime::now() - Duration::from_secs(120);
    let (u, p) = rest_credential(SECRET.as_bytes(), "alice", Duration::from_secs(60), past);
    let r = Client::udp(s.udp(), &u, &p).await.allocate().await;
    assert_eq!(r.code(), Some(401), "expired credential");

    let (u, _) = rest_credential(
        SECRET.as_bytes(),
        "alice",
        Duration::from_secs(60),
        SystemTime::now(),
    );
    let r = Client::udp(s.udp(), &u, "forged").await.allocate().await;
    assert_eq!(r.code(), Some(401), "forged password");
    let (u, p) = rest_credential(
        b"other-secret",
        "alice",
        Duration::from_secs(60),
        SystemTime::now(),
    );
    let r = Client::udp(s.udp(), &u, &p).await.allocate().await;
    assert_eq!(r.code(), Some(401), "unknown secret");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credential_cannot_refresh() {
    let s = start(test_settings()).await;
    let (u, p) = rest_credential(
        SECRET.as_bytes(),
        "bob",
        Duration::from_secs(1),
        SystemTime::now(),
    );
    let mut c = Client::udp(s.udp(), &u, &p).await;
    c.allocate_ok().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(c.refresh(600).await.code(), Some(401));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_flood_is_rate_limited_and_stateless() {
    let s = start(turn::Settings {
        unauthenticated_responses_per_second: 10,
        unauthenticated_burst: 50,
        workers: 1,
        ..test_settings()
    })
    .await;
    let rss_before = rss_kib();
    let mut c = Client::udp(s.udp(), "u", "p").await;
    let started = std::time::Instant::now();
    for _ in 0..20_000 {
        let req = c.build(wire::METHOD_ALLOCATE, &[udp_transport()], false);
        c.send(&req).await;
    }
    let mut answered = 0;
    while c.recv(Duration::from_millis(500)).await.is_some() {
        answered += 1;
    }
    // Burst of 50, then 10/s while the flood lasted (slow CI machines take longer to send).
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        (40..=50 + refill + 2).contains(&answered),
        "answered {answered} of 20000 (refill allowance {refill})"
    );
    assert_eq!(s.shared.allocations(), 0);
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "RSS grew {grown} KiB");
    s.stop().await;
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
