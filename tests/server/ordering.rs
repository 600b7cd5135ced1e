//! Acks and events on one connection keep their order: an ack arrives after every event the
//! server had queued for the connection when it answered (ADR 0046). That is what makes an
//! acked `activity:ping` a delivery barrier (`expect_none` in these tests, `none()` in the Node
//! suites).

use crate::client::Client;
use crate::server::{TestServer, Transport};
use serde_json::json;
use std::time::Duration;

/// Enough offers, of [`SDP_BYTES`] each, that a client that does not read fills the socket
/// buffers between it and the server, so the server's writer blocks with events still queued.
const OFFERS: usize = 64;
const SDP_BYTES: usize = 32 * 1024;
/// A request id no other request of the test uses.
const PING_ID: u64 = 9_999;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_never_overtakes_events_queued_before_it() {
    for transport in [Transport::Ws, Transport::SocketIo] {
        let server = TestServer::with(|c| {
            c.limits.events_per_second = 10_000;
            c.limits.event_burst = 10_000;
        })
        .await;
        let mut alice = server.client(Transport::Ws, "alice").await;
        let mut bob = server.client(transport, "bob").await;
        let id = alice.initiate("audio", &["bob"]).await["callId"].clone();
        bob.expect("call:incoming").await;
        bob.request("call:accept", json!({"callId": id}))
            .await
            .unwrap();

        // Bob stops reading while alice's offers are queued for him.
        let sdp = "v".repeat(SDP_BYTES);
        for _ in 0..OFFERS {
            alice
                .request(
                    "offer",
                    json!({"callId": id, "targetUserId": "bob", "offer": {"type": "offer", "sdp": sdp}}),
                )
                .await
                .unwrap();
        }
        // Every offer is in bob's outbox now (alice has their acks). He pings without reading,
        // and reads only after a pause in which the server has produced the ping's ack while
        // its writer was still blocked on the offers. The pause only makes that race certain;
        // what is asserted does not depend on it.
        match &mut bob {
            Client::Ws(c) => {
                c.send_text(
                    json!({"event": "activity:ping", "data": {}, "id": PING_ID}).to_string(),
                )
                .await
            }
            Client::Sio(c) => {
                c.send_raw(&format!("42{PING_ID}{}", json!(["activity:ping", {}])))
                    .await
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let offers_before_the_ack = match &mut bob {
            Client::Ws(c) => {
                c.ack(PING_ID).await.unwrap();
                c.events.iter().filter(|(n, _)| n == "offer").count()
            }
            Client::Sio(c) => {
                c.ack(PING_ID).await.unwrap();
                c.events.iter().filter(|(n, _)| n == "offer").count()
            }
        };
        assert_eq!(
            offers_before_the_ack, OFFERS,
            "{transport:?}: the ping's ack overtook offers queued before it ({offers_before_the_ack} of {OFFERS})"
        );
        server.stop().await.unwrap();
    }
}
