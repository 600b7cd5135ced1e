//! Data channels through the whole server: webrtc-rs peers open the relayed reliable channel on
//! their SFU connection; a message reaches the other members stamped with the sender's user id,
//! and an over-size message or a sender without `canPublishData` gets an `error` event and
//! reaches nobody.

use crate::client::{Client, WsClient};
use crate::server::TestServer;
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::sync::Arc;
use std::time::Duration;
use testkit::peer::{DataChannel, next_message, wait_open};
use testkit::{Kind, Peer};

const ROOM: &str = "huddle";
const SPACE: &str = "room:huddle";
const WITHIN: Duration = Duration::from_secs(5);

struct Member {
    client: Client,
    _pc: Peer,
    channel: Arc<dyn DataChannel>,
}

fn ws(client: &mut Client) -> &mut WsClient {
    match client {
        Client::Ws(c) => c,
        Client::Sio(_) => unreachable!("these tests use the raw WebSocket transport"),
    }
}

/// `user` joins the room and connects to the SFU with a receive-only audio m-line and the
/// `chorus-reliable` channel, open when this returns.
async fn member(server: &TestServer, user: &str, grants: Grants) -> Member {
    let grants = Grants {
        room: Some(ROOM.to_owned()),
        ..grants
    };
    let token = server.token_with(user, grants, Duration::from_secs(600));
    let mut client = Client::Ws(WsClient::connect(server.addr, &token).await.unwrap());
    ws(&mut client).join_room(ROOM).await;
    let mut pc = Peer::new().await;
    pc.receive_only(Kind::Audio).await;
    let channel = pc.data_channel("chorus-reliable", None).await;
    let offer = pc.offer().await;
    let answer = ws(&mut client).offer_to_sfu(SPACE, &offer).await.unwrap();
    pc.accept_answer(answer).await;
    pc.wait_connected(user).await;
    wait_open(&channel).await;
    Member {
        client,
        _pc: pc,
        channel,
    }
}

/// The next relayed text message on `m`'s channel, parsed.
async fn next_text(m: &Member) -> Value {
    let (text, bytes) = next_message(&m.channel, WITHIN)
        .await
        .expect("a relayed message");
    assert!(text, "text is relayed as text");
    serde_json::from_slice(&bytes).expect("the text envelope is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_messages_are_relayed_stamped_and_limited() {
    let test = async {
        let server = TestServer::with(|c| {
            c.rooms.auto_create = Some(true);
            c.sfu.data_max_message_bytes = 1024;
        })
        .await;
        let mut alice = member(&server, "alice", Grants::default()).await;
        let bob = member(&server, "bob", Grants::default()).await;
        let no_data = Grants {
            can_publish_data: false,
            ..Grants::default()
        };
        let mut carol = member(&server, "carol", no_data).await;

        // Alice's message reaches Bob and Carol with her id stamped by the server.
        alice
            .channel
            .send_text(r#"{"from":"mallory"}"#)
            .await
            .unwrap();
        let expected = json!({"from": "alice", "data": r#"{"from":"mallory"}"#});
        assert_eq!(next_text(&bob).await, expected);
        assert_eq!(next_text(&carol).await, expected);

        // Over the size limit: refused with limit_exceeded, relayed to nobody. The channel is
        // ordered, so Bob's next message is the one Alice sent after it.
        alice.channel.send_text(&"x".repeat(2000)).await.unwrap();
        let error = ws(&mut alice.client).expect("error").await;
        assert_eq!(error["code"], "limit_exceeded", "{error}");
        assert_eq!(error["event"], "chorus-reliable", "{error}");
        alice.channel.send_text("after").await.unwrap();
        assert_eq!(next_text(&bob).await["data"], "after");

        // Carol lacks canPublishData: forbidden, relayed to nobody; she still receives.
        carol.channel.send_text("psst").await.unwrap();
        let error = ws(&mut carol.client).expect("error").await;
        assert_eq!(error["code"], "forbidden", "{error}");
        alice.channel.send_text("again").await.unwrap();
        assert_eq!(next_text(&bob).await["data"], "again");
        assert_eq!(next_text(&carol).await["data"], "after");
        assert_eq!(next_text(&carol).await["data"], "again");
        assert!(
            next_message(&alice.channel, Duration::from_millis(300))
                .await
                .is_none(),
            "Alice hears neither herself nor Carol"
        );
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test did not finish within 60 s");
}
