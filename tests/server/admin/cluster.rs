//! The server API in a cluster: revocations reach every node (and nodes that start later), and
//! a room owned by another node is answered with `wrong_node` and that node's URL.

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

#[tokio::test]
async fn a_room_owned_by_another_node_is_answered_with_wrong_node() {
    let cluster = Cluster::start("admin-owner", 2).await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    // Created where the cluster places it: the node asked, or the one a 421 names.
    let create = Some(json!({"name": "hall"}));
    let (status, body) = api(a.addr, "POST", "/api/v1/admin/rooms", create.clone()).await;
    let (owner, other) = match status {
        201 => (a, b),
        421 => {
            assert_eq!(body["code"], "wrong_node", "{body}");
            assert_eq!(body["url"], format!("http://{}", b.addr), "{body}");
            let (status, body) = api(b.addr, "POST", "/api/v1/admin/rooms", create).await;
            assert_eq!(status, 201, "{body}");
            (b, a)
        }
        _ => panic!("{status} {body}"),
    };
    assert_eq!(body["node"].as_str().unwrap_or(owner.id.as_str()), owner.id);
    // A participant connected to the other node joins it; the owner lists them with their node.
    let mut guest = WsClient::connect(other.addr, &room_token("gina", "hall"))
        .await
        .unwrap();
    guest.join_room("hall").await;
    let (status, people) = api(
        owner.addr,
        "GET",
        "/api/v1/admin/rooms/hall/participants",
        None,
    )
    .await;
    assert_eq!(status, 200, "{people}");
    assert_eq!(
        people[0]["connections"][0]["node"],
        other.id.as_str(),
        "{people}"
    );
    // The other node points to the owner.
    let (status, err) = api(
        other.addr,
        "GET",
        "/api/v1/admin/rooms/hall/participants",
        None,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (421, Some("wrong_node")),
        "{err}"
    );
    assert_eq!(err["node"], owner.id.as_str());
    assert_eq!(err["url"], format!("http://{}", owner.addr));
    // The owner's data message reaches the guest on the other node.
    let (status, _) = api(
        owner.addr,
        "POST",
        "/api/v1/admin/rooms/hall/data",
        Some(json!({"data": "hello"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(guest.expect("room:data").await["data"], "hello");
    let (status, _) = api(owner.addr, "DELETE", "/api/v1/admin/rooms/hall", None).await;
    assert_eq!(status, 200);
    assert_eq!(guest.expect("call:ended").await["reason"], "terminated");
}
