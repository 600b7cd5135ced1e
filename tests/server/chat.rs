//! In-call chat end to end: two users, two devices, both transports.

use crate::client::Client;
use crate::server::{TestServer, Transport, http_get};
use config::HumanDuration;
use serde_json::{Value, json};
use std::time::Duration;

/// Alice (one WS device) calls bob (a Socket.IO phone and a WS laptop); bob accepts on the
/// laptop. Returns the call id, which is the chat conversation id.
async fn call_with_two_devices(server: &TestServer) -> (String, Client, Client, Client) {
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut phone = server.client(Transport::SocketIo, "bob").await;
    let mut laptop = server.client(Transport::Ws, "bob").await;
    let ack = alice.initiate("video", &["bob"]).await;
    let call = ack["callId"].as_str().unwrap().to_owned();
    laptop
        .request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    phone.expect("call:answered-elsewhere").await;
    (call, alice, phone, laptop)
}

fn send(conv: &str, content: &str, temp: &str) -> Value {
    json!({"conversationId": conv, "content": content, "type": "text", "tempId": temp})
}

#[tokio::test]
async fn send_ack_new_and_history_for_a_late_joiner() {
    let server = TestServer::start().await;
    let (call, mut alice, mut phone, mut laptop) = call_with_two_devices(&server).await;
    let ack = alice
        .request(
            "message:send",
            send(&call, "can you hear me? <b>hi</b>", "t1"),
        )
        .await
        .unwrap();
    assert_eq!(ack["tempId"], "t1");
    assert_eq!(ack["sequenceNumber"], 1);
    let id = ack["messageId"].as_str().unwrap().to_owned();
    assert!(ack["createdAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alice.expect("message:ack").await, ack);
    // Both of bob's devices get it; content is returned exactly as sent.
    for device in [&mut phone, &mut laptop] {
        let new = device.expect("message:new").await;
        assert_eq!(new["id"], id.as_str());
        assert_eq!(new["content"], "can you hear me? <b>hi</b>");
        assert_eq!(new["sender"], json!({"id": "alice", "name": "alice name"}));
        assert_eq!(new["senderId"], "alice");
        assert_eq!(new["sequenceNumber"], 1);
        assert_eq!(new["conversationId"], call.as_str());
    }
    alice.expect_none("message:new").await;

    // Bob's laptop replies; alice and bob's phone get it, not the laptop.
    let reply = laptop
        .request(
            "message:send",
            json!({"conversationId": call, "content": "yes", "tempId": "b1", "replyToId": id}),
        )
        .await
        .unwrap();
    assert_eq!(reply["sequenceNumber"], 2);
    assert_eq!(alice.expect("message:new").await["replyToId"], id.as_str());
    assert_eq!(phone.expect("message:new").await["content"], "yes");
    laptop.expect_none("message:new").await;

    // Carol was never in the call: she may neither read nor write.
    let mut carol = server.client(Transport::SocketIo, "carol").await;
    let e = carol
        .request("message:history", json!({"conversationId": call}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_member");
    let e = carol
        .request("message:send", send(&call, "let me in", "c1"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "not_member");
    assert_eq!(carol.expect("error").await["event"], "message:history");
    let err = carol.expect("error").await;
    assert_eq!(
        (err["code"].clone(), err["tempId"].clone()),
        (json!("not_member"), json!("c1"))
    );

    let h = laptop
        .request(
            "message:history",
            json!({"conversationId": call, "limit": 1}),
        )
        .await
        .unwrap();
    assert_eq!(h["hasMore"], true);
    assert_eq!(h["messages"][0]["sequenceNumber"], 2);
    let h = phone
        .request(
            "message:history",
            json!({"conversationId": call, "beforeSequence": 2, "limit": 100}),
        )
        .await
        .unwrap();
    assert_eq!(h["hasMore"], false);
    assert_eq!(h["messages"][0]["content"], "can you hear me? <b>hi</b>");

    // Members keep read access after the call ends.
    alice
        .request("call:end", json!({"callId": call}))
        .await
        .unwrap();
    let h = alice
        .request("message:history", json!({"conversationId": call}))
        .await
        .unwrap();
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn late_joiner_of_a_group_call_reads_earlier_messages() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::Ws, "bob").await;
    let ack = alice.initiate("audio", &["bob", "carol"]).await;
    let call = ack["callId"].as_str().unwrap().to_owned();
    bob.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    for i in 0..3 {
        alice
            .request(
                "message:send",
                send(&call, &format!("m{i}"), &format!("a{i}")),
            )
            .await
            .unwrap();
    }
    let mut carol = server.client(Transport::SocketIo, "carol").await;
    carol
        .request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    let h = carol
        .request("message:history", json!({"conversationId": call}))
        .await
        .unwrap();
    let contents: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m0", "m1", "m2"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn retries_with_the_same_temp_id_store_nothing_new() {
    let server = TestServer::start().await;
    let (call, mut alice, mut phone, _laptop) = call_with_two_devices(&server).await;
    let first = alice
        .request("message:send", send(&call, "once", "same"))
        .await
        .unwrap();
    phone.expect("message:new").await;
    let again = alice
        .request("message:send", send(&call, "once", "same"))
        .await
        .unwrap();
    assert_eq!(first, again);
    phone.expect_none("message:new").await;
    let h = alice
        .request("message:history", json!({"conversationId": call}))
        .await
        .unwrap();
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn edit_delete_react_and_read_receipts() {
    let server = TestServer::start().await;
    let (call, mut alice, mut phone, mut laptop) = call_with_two_devices(&server).await;
    let ack = alice
        .request("message:send", send(&call, "helo", "t"))
        .await
        .unwrap();
    let id = ack["messageId"].clone();
    phone.expect("message:new").await;
    laptop.expect("message:new").await;

    let e = laptop
        .request(
            "message:edit",
            json!({"messageId": id, "content": "hacked"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    let updated = alice
        .request("message:edit", json!({"messageId": id, "content": "hello"}))
        .await
        .unwrap();
    assert_eq!(updated["content"], "hello");
    let got = phone.expect("message:updated").await;
    assert_eq!(
        (got["messageId"].clone(), got["content"].clone()),
        (id.clone(), json!("hello"))
    );
    assert!(got["editedAt"].is_string());

    let added = laptop
        .request("message:react", json!({"messageId": id, "emoji": "👍"}))
        .await
        .unwrap();
    assert_eq!(
        added,
        json!({"messageId": id, "userId": "bob", "emoji": "👍"})
    );
    assert_eq!(alice.expect("message:reaction:added").await["emoji"], "👍");
    assert_eq!(
        phone.expect("message:reaction:added").await["userId"],
        "bob"
    );
    laptop
        .request("message:unreact", json!({"messageId": id, "emoji": "👍"}))
        .await
        .unwrap();
    assert_eq!(
        alice.expect("message:reaction:removed").await["userId"],
        "bob"
    );
    let e = laptop
        .request("message:react", json!({"messageId": id, "emoji": ""}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid_payload");

    assert_eq!(
        laptop
            .request("message:unread-count", json!({"conversationId": call}))
            .await
            .unwrap()["count"],
        1
    );
    let read = laptop
        .request(
            "message:read",
            json!({"conversationId": call, "messageId": id}),
        )
        .await
        .unwrap();
    assert_eq!(read["userId"], "bob");
    assert!(read["readAt"].is_string());
    assert_eq!(alice.expect("message:read").await["userId"], "bob");
    assert_eq!(
        laptop
            .request("message:unread-count", json!({"conversationId": call}))
            .await
            .unwrap()["count"],
        0
    );
    let token = server.token("alice");
    let (status, body) = http_get(
        server.addr,
        &format!(
            "/api/v1/conversations/{call}/messages/{}/reads",
            id.as_str().unwrap()
        ),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reads: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reads["reads"][0]["userId"], "bob");

    let e = laptop
        .request("message:delete", json!({"messageId": id}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    alice
        .request("message:delete", json!({"messageId": id}))
        .await
        .unwrap();
    assert_eq!(
        phone.expect("message:deleted").await,
        json!({"messageId": id})
    );
    let h = laptop
        .request("message:history", json!({"conversationId": call}))
        .await
        .unwrap();
    let m = &h["messages"][0];
    assert_eq!(
        (m["content"].clone(), m["sequenceNumber"].clone()),
        (json!(""), json!(1))
    );
    assert!(m["deletedAt"].is_string());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn typing_reaches_others_and_expires_by_itself() {
    let server = TestServer::with(|c| c.chat.typing_timeout = HumanDuration::millis(600)).await;
    let (call, mut alice, mut phone, mut laptop) = call_with_two_devices(&server).await;
    alice
        .request("typing:start", json!({"conversationId": call}))
        .await
        .unwrap();
    let t = phone.expect("typing").await;
    assert_eq!(
        t,
        json!({"userId": "alice", "conversationId": call, "isTyping": true})
    );
    assert_eq!(laptop.expect("typing").await["isTyping"], true);
    alice.expect_none("typing").await;
    // No refresh: it clears itself.
    let t = phone.expect("typing").await;
    assert_eq!(t["isTyping"], false);
    laptop
        .request("typing:start", json!({"conversationId": call}))
        .await
        .unwrap();
    assert_eq!(alice.expect("typing").await["userId"], "bob");
    laptop
        .request("typing:stop", json!({"conversationId": call}))
        .await
        .unwrap();
    assert_eq!(alice.expect("typing").await["isTyping"], false);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn chat_limits_give_codes() {
    let server = TestServer::with(|c| {
        c.chat.max_content_chars = 100;
        c.chat.messages_per_second = 2;
        c.chat.message_burst = 3;
    })
    .await;
    let (call, mut alice, _phone, _laptop) = call_with_two_devices(&server).await;
    let e = alice
        .request("message:send", send(&call, &"é".repeat(101), "long"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "content_too_long");
    alice
        .request("message:send", send(&call, &"é".repeat(100), "fits"))
        .await
        .unwrap();
    let mut limited = 0;
    for i in 0..10 {
        if let Err(e) = alice
            .request("message:send", send(&call, "spam", &format!("s{i}")))
            .await
        {
            assert_eq!(e.code, "rate_limited");
            limited += 1;
        }
    }
    assert!(limited >= 6, "{limited}");
    for (event, data) in [
        (
            "message:send",
            json!({"conversationId": call, "content": "x", "type": "image", "tempId": "i"}),
        ),
        ("message:send", json!({"conversationId": call})),
        (
            "message:edit",
            json!({"messageId": "not-a-uuid", "content": "x"}),
        ),
        (
            "message:history",
            json!({"conversationId": call, "limit": 0}),
        ),
        ("message:history", json!({"conversationId": ""})),
    ] {
        let e = alice.request(event, data.clone()).await.unwrap_err();
        assert_eq!(e.code, "invalid_payload", "{event} {data}");
    }
    let h = alice
        .request(
            "message:history",
            json!({"conversationId": call, "limit": 1000}),
        )
        .await
        .unwrap();
    assert!(h["messages"].as_array().unwrap().len() <= 100);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_without_chat_grant_and_rest_outsiders_are_refused() {
    let server = TestServer::start().await;
    let (call, _alice, _phone, _laptop) = call_with_two_devices(&server).await;
    let grants = signaling::auth::Grants {
        can_chat: false,
        ..Default::default()
    };
    let token = server.token_with("alice", grants, Duration::from_secs(60));
    let ws = crate::client::WsClient::connect(server.addr, &token)
        .await
        .unwrap();
    let mut muted = Client::Ws(ws);
    let e = muted
        .request("message:send", send(&call, "hi", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code, "forbidden");
    let path = format!("/api/v1/conversations/{call}/messages?limit=10");
    assert_eq!(
        http_get(server.addr, &path, Some(&server.token("mallory")))
            .await
            .0,
        403
    );
    assert_eq!(http_get(server.addr, &path, None).await.0, 401);
    let (status, body) = http_get(server.addr, &path, Some(&server.token("bob"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["hasMore"],
        false
    );
    server.stop().await.unwrap();
}

/// A throwaway PostgreSQL schema for one test server's chat, dropped at the end.
struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    async fn create() -> Self {
        use sqlx::Connection;
        let base = std::env::var("CHORUS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!(
            "chorus_order_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .expect("PostgreSQL at CHORUS_TEST_POSTGRES_URL or 127.0.0.1:5432 (database test)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Self { base, name }
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{}", self.base, self.name)
    }

    async fn drop_now(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.base).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// Eight members send at once into one call on PostgreSQL (where commits of several groups can
/// be in flight): every member's devices see each other's `message:new` in `sequenceNumber`
/// order, each exactly once. Before delivery turns, acks raced each other into the hub and
/// about 4.5 % arrived after a higher number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_new_arrives_in_sequence_order_under_concurrent_senders() {
    const SENDERS: usize = 8;
    const MESSAGES: usize = 40;
    let schema = PgSchema::create().await;
    let url = schema.url();
    let server = TestServer::with(|c| {
        c.chat.database_url = url;
        c.chat.messages_per_second = 0;
        c.limits.events_per_second = 10_000;
        c.limits.event_burst = 10_000;
    })
    .await;
    let users: Vec<String> = (0..SENDERS).map(|i| format!("user{i}")).collect();
    let mut clients = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let transport = if i % 2 == 0 {
            Transport::Ws
        } else {
            Transport::SocketIo
        };
        clients.push(server.client(transport, user).await);
    }
    // A member who only listens, on a second device of user0 too.
    let mut listener = server.client(Transport::Ws, "listener").await;
    let mut second_device = server.client(Transport::SocketIo, "user0").await;
    let invitees: Vec<&str> = users[1..]
        .iter()
        .map(String::as_str)
        .chain(["listener"])
        .collect();
    let call = clients[0].initiate("audio", &invitees).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    for client in clients.iter_mut().skip(1).chain([&mut listener]) {
        client
            .request("call:accept", json!({"callId": call}))
            .await
            .unwrap();
    }

    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for m in 0..MESSAGES {
                let ack = client
                    .request(
                        "message:send",
                        send(&call, &format!("{i}/{m}"), &format!("{i}-{m}")),
                    )
                    .await
                    .unwrap();
                mine.push(ack["sequenceNumber"].as_u64().unwrap());
            }
            (client, mine)
        }));
    }
    let mut senders = Vec::new();
    for task in tasks {
        senders.push(task.await.unwrap());
    }
    let total = SENDERS * MESSAGES;
    let mut all: Vec<u64> = senders.iter().flat_map(|(_, mine)| mine.clone()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=total as u64).collect::<Vec<_>>(), "gap-free acks");

    async fn received(client: &mut Client, count: usize) -> Vec<u64> {
        let mut seqs = Vec::with_capacity(count);
        for _ in 0..count {
            let new = client.expect("message:new").await;
            seqs.push(new["sequenceNumber"].as_u64().unwrap());
        }
        seqs
    }
    let mut deliveries = vec![("listener".to_owned(), received(&mut listener, total).await)];
    let own_first = senders[0].1.len();
    deliveries.push((
        "user0's second device".into(),
        received(&mut second_device, total).await,
    ));
    for (i, (client, mine)) in senders.iter_mut().enumerate() {
        let seqs = received(client, total - mine.len()).await;
        let mut expected: Vec<u64> = all.clone();
        expected.retain(|s| !mine.contains(s));
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "user{i} gets every other message once");
        deliveries.push((format!("user{i}"), seqs));
    }
    assert_eq!(own_first, MESSAGES);
    for (who, seqs) in &deliveries {
        let late: Vec<_> = seqs.windows(2).filter(|w| w[1] < w[0]).collect();
        assert!(
            late.is_empty(),
            "{who}: {} of {} message:new arrived after a higher sequence number, e.g. {:?}",
            late.len(),
            seqs.len(),
            late.first()
        );
    }
    for (client, _) in senders {
        client.close().await;
    }
    server.stop().await.unwrap();
    schema.drop_now().await;
}

#[tokio::test]
async fn group_commits_are_counted_in_the_metrics() {
    let server = TestServer::start().await;
    let (call, mut alice, _phone, _laptop) = call_with_two_devices(&server).await;
    let scrape = || async { http_get(server.addr, "/metrics", None).await.1 };
    let before = scrape().await;
    let groups_before = crate::ops::gauge(&before, "chorus_chat_commit_groups_total");
    let messages_before = crate::ops::gauge(&before, "chorus_chat_commit_messages_total");
    for n in 0..3 {
        alice
            .request("message:send", send(&call, "counted", &format!("m{n}")))
            .await
            .unwrap();
    }
    let after = scrape().await;
    let groups = crate::ops::gauge(&after, "chorus_chat_commit_groups_total") - groups_before;
    let messages = crate::ops::gauge(&after, "chorus_chat_commit_messages_total") - messages_before;
    // Each send waited for its ack, so each had a commit of its own.
    assert_eq!((groups, messages), (3, 3), "{after}");
}
