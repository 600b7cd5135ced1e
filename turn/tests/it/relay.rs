//! Relaying through the real driver with a Rust client over UDP, TCP and TLS: Send/Data
//! indications, ChannelData both ways, Refresh 0 freeing the relay port, shutdown freeing all.

use std::{net::SocketAddr, time::Duration};

use tokio::net::{TcpStream, UdpSocket};
use turn::wire::{self, Builder, Class};

use crate::common::*;

async fn roundtrip(mut c: Client, stream: bool, s: &Running) {
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let relayed = c.allocate_ok().await;
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!((49152..=65535).contains(&relayed.port()));
    assert_eq!(s.shared.allocations(), 1);

    // Send indication before any permission is dropped.
    let send = |c: &mut Client, data: &[u8]| {
        let txid = c.txid();
        let mut buf = Vec::new();
        Builder::new(&mut buf, wire::METHOD_SEND, Class::Indication, txid)
            .xor_address(wire::ATTR_XOR_PEER_ADDRESS, peer_addr)
            .attr(wire::ATTR_DATA, data);
        buf
    };
    let mut buf = [0u8; 2048];
    let early = send(&mut c, b"early");
    c.send(&early).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf))
            .await
            .is_err(),
        "no permission: nothing relayed"
    );

    assert_eq!(c.permit(peer_addr).await.class, Class::Success);
    let ping = send(&mut c, b"ping");
    c.send(&ping).await;
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], relayed));

    peer.send_to(b"pong", relayed).await.unwrap();
    let data = c
        .recv(Duration::from_secs(5))
        .await
        .expect("data indication");
    let r = Resp::parse(&data).expect("STUN");
    assert_eq!(r.class, Class::Indication);
    assert_eq!(r.attr(wire::ATTR_DATA), Some(&b"pong"[..]));
    assert_eq!(r.addr(wire::ATTR_XOR_PEER_ADDRESS), peer_addr);

    assert_eq!(
        c.bind_channel(0x4000, peer_addr).await.class,
        Class::Success
    );
    let mut frame = vec![0x40, 0x00, 0, 5];
    frame.extend_from_slice(b"hello");
    if stream {
        frame.extend_from_slice(&[0, 0, 0]);
    }
    c.send(&frame).await;
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello");
    peer.send_to(b"world", relayed).await.unwrap();
    let got = c.recv(Duration::from_secs(5)).await.expect("channel data");
    assert_eq!(&got[..9], &[0x40, 0x00, 0, 5, b'w', b'o', b'r', b'l', b'd']);

    // Refresh 0 deletes the allocation and frees its port.
    let r = c.refresh(0).await;
    assert_eq!(r.class, Class::Success);
    assert_eq!(s.shared.allocations(), 0);
    assert!(
        port_freed(relayed).await,
        "relay port {relayed} still bound"
    );
}

async fn port_freed(addr: SocketAddr) -> bool {
    for _ in 0..50 {
        if std::net::UdpSocket::bind(addr).is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_udp() {
    let s = start(loopback_settings()).await;
    let c = Client::udp(s.udp(), "u", "p").await;
    roundtrip(c, false, &s).await;
    s.stop().await;
}

/// The UDP round trip with relay sockets on the given I/O path.
async fn udp_roundtrip_with(relay_io: turn::RelayIo) {
    let s = start(turn::Settings {
        relay_io,
        ..loopback_settings()
    })
    .await;
    let c = Client::udp(s.udp(), "u", "p").await;
    roundtrip(c, false, &s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_udp_with_epoll() {
    udp_roundtrip_with(turn::RelayIo::Epoll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_udp_with_io_uring() {
    if !testkit::prerequisite(
        turn::Server::io_uring_supported(),
        "relay_over_udp_with_io_uring",
        "io_uring is not available here (kernel before 6.0, or refused by seccomp)",
    ) {
        return;
    }
    udp_roundtrip_with(turn::RelayIo::IoUring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_tcp() {
    let s = start(loopback_settings()).await;
    let tcp = TcpStream::connect(s.tcp()).await.unwrap();
    let c = Client::new(Link::Stream(Box::new(tcp)), "u", "p");
    roundtrip(c, true, &s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_tls() {
    let tls = Tls::new("relay");
    let s = start(tls.settings(loopback_settings())).await;
    let stream = tls.connect(s.addrs.tls[0]).await;
    let c = Client::new(Link::Stream(Box::new(stream)), "u", "p");
    roundtrip(c, true, &s).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_tcp_connection_frees_its_allocation() {
    let s = start(loopback_settings()).await;
    let tcp = TcpStream::connect(s.tcp()).await.unwrap();
    let mut c = Client::new(Link::Stream(Box::new(tcp)), "u", "p");
    let relayed = c.allocate_ok().await;
    drop(c);
    assert!(port_freed(relayed).await);
    for _ in 0..50 {
        if s.shared.allocations() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.shared.allocations(), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_every_allocation_and_port() {
    let s = start(loopback_settings()).await;
    let mut relayed = Vec::new();
    for _ in 0..5 {
        let mut c = Client::udp(s.udp(), "u", "p").await;
        relayed.push(c.allocate_ok().await);
    }
    assert_eq!(s.shared.allocations(), 5);
    let shared = s.shared.clone();
    s.stop().await;
    assert_eq!(shared.allocations(), 0);
    assert_eq!(shared.users_tracked(), 0);
    for r in relayed {
        assert!(port_freed(r).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_allocations_expire_and_free_their_ports() {
    let s = start(turn::Settings {
        default_lifetime: Duration::from_secs(1),
        max_lifetime: Duration::from_secs(1),
        ..loopback_settings()
    })
    .await;
    let mut relayed = Vec::new();
    for _ in 0..3 {
        let mut c = Client::udp(s.udp(), "u", "p").await;
        relayed.push(c.allocate_ok().await);
    }
    assert_eq!(s.shared.allocations(), 3);
    // Lifetime 1 s, expiry checked every second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.shared.allocations(), 0);
    assert_eq!(s.shared.users_tracked(), 0);
    for r in relayed {
        assert!(
            port_freed(r).await,
            "relay port {r} still bound after expiry"
        );
    }
    s.stop().await;
}
