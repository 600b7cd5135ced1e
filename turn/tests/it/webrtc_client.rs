//! An independent Rust TURN client (webrtc-rs `turn` 0.17) against our server: Binding,
//! Allocate with long-term credentials, and relaying to a UDP peer both ways (the client
//! creates the permission and binds a channel on its own).

use std::{sync::Arc, time::Duration};

use tokio::net::UdpSocket;
use webrtc_turn::client::{Client, ClientConfig};
use webrtc_util::Conn;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_client_allocates_and_relays() {
    let s = start(loopback_settings()).await;
    let server = s.udp().to_string();
    let conn = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = conn.local_addr().unwrap();
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.clone(),
        turn_serv_addr: server,
        username: "u".into(),
        password: "p".into(),
        realm: REALM.into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();

    let mapped = client.send_binding_request().await.unwrap();
    assert_eq!(mapped, local);

    let relay = client.allocate().await.expect("allocate");
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert_eq!(s.shared.allocations(), 1);

    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut buf = [0u8; 1500];
    // Several rounds: the first goes by Send indication, later ones by ChannelData once the
    // client's ChannelBind completes.
    for round in 0..5u8 {
        let msg = [b'x', round];
        relay
            .send_to(&msg, peer_addr)
            .await
            .expect("send via relay");
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .expect("peer receives")
            .unwrap();
        assert_eq!((&buf[..n], from), (&msg[..], relayed));
        peer.send_to(&[b'y', round], relayed).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
            .await
            .expect("client receives")
            .unwrap();
        assert_eq!((&buf[..n], from), (&[b'y', round][..], peer_addr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.close().await.unwrap();
    client.close().await.unwrap();
    s.stop().await;
}
