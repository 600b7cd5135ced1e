//! The server API in a cluster: revocations reach every node (and nodes that start later), and
//! any node answers for a room another node owns, by forwarding the request to it.

use super::revocation::{closed_as_revoked, token_issued};
use super::{api, room_token};
use crate::client::WsClient;
use crate::cluster::{Cluster, Node, NodeOptions};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_revocation_on_one_node_closes_a_session_on_another_and_binds_later_nodes() {
    let cluster = Cluster::start("admin-revoke", 2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let token = token_issued("dave", -5);
    let mut on_b = WsClient::connect(b.addr, &token).await.unwrap();
    on_b.request("activity:ping", json!({})).await.unwrap();
    let started = Instant::now();
    let (status, body) = api(
        a.addr,
        "POST",
        "/api/v1/admin/revocations",
        Some(json!({"userId": "dave"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let took = closed_as_revoked(&mut on_b, started).await;
    assert!(
        took < Duration::from_secs(1),
        "closed on the other node after {took:?}"
    );
    let refused = WsClient::connect(b.addr, &token).await.err().unwrap();
    assert!(refused.contains("token_revoked"), "{refused}");
    let (_, list) = api(b.addr, "GET", "/api/v1/admin/revocations", None).await;
    assert_eq!(list[0]["subject"], "dave", "{list}");
    // A node that joins afterwards (its own empty data directory) refuses the token too.
    let late = Node::start("n3", &cluster.prefix, &NodeOptions::default()).await;
    let refused = WsClient::connect(late.addr, &token).await.err().unwrap();
    assert!(refused.contains("token_revoked"), "{refused}");
}

/// Any node answers for any room: a request about a room another node owns is forwarded to the
/// owner and the owner's answer returned (create, list participants, send data, delete). A
/// request that arrives already forwarded is not forwarded again: the node that does not own
/// the room answers 421 `wrong_node` with the owner's id and URL.
#[tokio::test]
async fn any_node_answers_for_a_room_another_node_owns() {
    let cluster = Cluster::start("admin-owner", 2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    // Created through A wherever the cluster places it.
    let create = Some(json!({"name": "hall"}));
    let (status, body) = api(a.addr, "POST", "/api/v1/admin/rooms", create).await;
    assert_eq!(status, 201, "{body}");
    // Marked as forwarded, a request is answered where it lands: that shows the owner.
    let path = "/api/v1/admin/rooms/hall/participants";
    let (at_a, at_b) = (forwarded(a.addr, path).await, forwarded(b.addr, path).await);
    let (owner, other, misdirected) = match (at_a.0, at_b.0) {
        (200, 421) => (a, b, at_b.1),
        (421, 200) => (b, a, at_a.1),
        answers => panic!("one owner answers 200, the other 421: {answers:?} {at_a:?} {at_b:?}"),
    };
    assert_eq!(misdirected["code"], "wrong_node", "{misdirected}");
    assert_eq!(misdirected["node"], owner.id.as_str());
    assert_eq!(misdirected["url"], format!("http://{}", owner.addr));
    // A participant connected to the other node joins; asked there, the owner's list comes back.
    let mut guest = WsClient::connect(other.addr, &room_token("gina", "hall"))
        .await
        .unwrap();
    guest.join_room("hall").await;
    let (status, people) = api(other.addr, "GET", path, None).await;
    assert_eq!(status, 200, "{people}");
    assert_eq!(people[0]["userId"], "gina", "{people}");
    assert_eq!(
        people[0]["connections"][0]["node"],
        other.id.as_str(),
        "{people}"
    );
    // A data message sent through the other node reaches the guest.
    let (status, _) = api(
        other.addr,
        "POST",
        "/api/v1/admin/rooms/hall/data",
        Some(json!({"data": "hello"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(guest.expect("room:data").await["data"], "hello");
    let (status, _) = api(other.addr, "DELETE", "/api/v1/admin/rooms/hall", None).await;
    assert_eq!(status, 200);
    assert_eq!(guest.expect("call:ended").await["reason"], "terminated");
    // Gone everywhere: the owner's 404 comes back through the other node.
    let (status, err) = api(other.addr, "GET", path, None).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );
}

/// A GET with the admin token and the header one node adds when it forwards a request.
async fn forwarded(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nchorus-forwarded: test\r\n\r\n",
        super::admin_token()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Small JSON answers come in one chunk when chunked: take the JSON between the braces.
    let json = body
        .find(['{', '['])
        .and_then(|start| body.rfind(['}', ']']).map(|end| &body[start..=end]))
        .unwrap_or("null");
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}
