//! The Redis implementation of the cluster seam, driven directly (no `chorus serve`): the
//! orderings other nodes rely on.

use super::{delete_keys, prefix, redis_url};
use fred::prelude::*;
use protocol::{CallId, UserId};
use signaling::cluster::{Body, Cluster, Involvement, RedisCluster, StateWrite};
use std::time::Duration;

/// A node that was away from Redis subscribes again and then reads the call index
/// (`Router::resync`). A ring published before it subscribed is lost to it, so the ring must
/// not reach Redis before the index entry that records the call: then a node that missed the
/// ring finds the call in the index, and a node that hears the ring finds it there too.
/// Here the writer is held back by writes queued ahead of the entry, as after a resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_reaches_redis_only_after_the_call_index_entry_queued_before_it() {
    let prefix = prefix("ring-after-index");
    let config = config::ClusterConfig {
        redis_url: redis_url(),
        node_id: "n1".into(),
        key_prefix: prefix.clone(),
        ..config::ClusterConfig::default()
    };
    let cluster = RedisCluster::connect(
        &config,
        "http://127.0.0.1:9".into(),
        &prometheus::Registry::new(),
    )
    .await
    .expect("connects to the test Redis");

    // Another node's view: carol's device channel, and a client that reads the index the
    // moment a ring arrives.
    let redis = Config::from_url(&redis_url()).expect("a Redis URL");
    let subscriber = Builder::from_config(redis.clone())
        .build_subscriber_client()
        .unwrap();
    subscriber.init().await.expect("the subscriber connects");
    let reader = Builder::from_config(redis).build().unwrap();
    reader.init().await.expect("the reader connects");
    let mut rings = subscriber.message_rx();
    subscriber
        .subscribe(format!("{prefix}user:carol"))
        .await
        .expect("subscribes");

    let (carol, call) = (UserId::from("carol"), CallId::from("call-1"));
    for i in 0..300 {
        cluster.write(StateWrite::Snapshot {
            space: CallId(format!("filler-{i}")),
            json: "x".repeat(512),
        });
    }
    cluster.write(StateWrite::UserCall {
        user: carol.clone(),
        call: call.clone(),
        involved: Involvement::Involved,
    });
    cluster.send_to_devices(&carol, Body::Resync);

    let ring = tokio::time::timeout(Duration::from_secs(20), rings.recv())
        .await
        .expect("the ring is published within 20 s")
        .expect("the subscriber is open");
    let index: Vec<String> = reader
        .smembers(format!("{prefix}user-calls:carol"))
        .await
        .expect("reads the index");
    delete_keys(&prefix);
    assert_eq!(
        index,
        vec![call.to_string()],
        "when the ring arrived ({:?}), the index held {index:?}",
        ring.value
    );
}
