//! Policies that keep users from abusing one another, through real connections: required
//! token claims, invitations that cannot lock a user out, presence only for those allowed to
//! see it, one answer for spaces that do not exist or are not yours, and SDP errors that show
//! nothing of the server's memory.

use crate::client::{Client, SioClient, WsClient};
use crate::server::{SECRET, TestServer, Transport, http_get, mint};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BOTH: [Transport; 2] = [Transport::Ws, Transport::SocketIo];

/// A token signed with the test secret carrying exactly `claims` (plus `exp`).
fn token(mut claims: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["exp"] = json!(now + 600);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn configured_issuer_and_audience_must_be_in_the_token() {
    let server = TestServer::with(|c| {
        c.auth.issuer = Some("app".into());
        c.auth.audience = Some("chorus".into());
    })
    .await;
    let no_aud = token(json!({"sub": "alice", "iss": "app"}));
    let err = WsClient::connect(server.addr, &no_aud).await.err().unwrap();
    assert!(
        err.starts_with("401") && err.contains("token_bad_audience"),
        "{err}"
    );
    let no_iss = token(json!({"sub": "alice", "aud": ["chorus"]}));
    let err = SioClient::connect(server.addr, &no_iss)
        .await
        .err()
        .unwrap();
    assert_eq!(err, "token_bad_issuer");
    let (status, body) = http_get(server.addr, "/api/v1/ice-servers", Some(&no_iss)).await;
    assert_eq!(status, 401, "{body}");
    // `mint` (as `chorus token` without the settings) puts neither claim in.
    let bare = mint("alice", Grants::default(), Duration::from_secs(600));
    assert!(WsClient::connect(server.addr, &bare).await.is_err());
    // An array audience that holds ours is accepted, on both transports.
    let good = token(json!({"sub": "alice", "iss": "app", "aud": ["web", "chorus"]}));
    WsClient::connect(server.addr, &good).await.unwrap();
    SioClient::connect(server.addr, &good).await.unwrap();
    let other = token(json!({"sub": "alice", "iss": "app", "aud": ["web", "mobile"]}));
    let err = WsClient::connect(server.addr, &other).await.err().unwrap();
    assert!(err.contains("token_bad_audience"), "{err}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn five_invitations_no_longer_lock_the_callee_out() {
    for transport in BOTH {
        let server = TestServer::start().await;
        let mut victim = server.client(transport, "victim").await;
        let mut mallory = server.client(transport, "mallory").await;
        // limits.max_calls_per_user is 5: ring the victim five times.
        for _ in 0..5 {
            mallory.initiate("audio", &["victim"]).await;
            victim.expect("call:incoming").await;
        }
        let ack = victim.initiate("video", &["friend"]).await;
        assert!(ack["callId"].is_string(), "{ack}");
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn invitations_beyond_the_per_target_limit_are_refused_with_a_code() {
    for transport in BOTH {
        let server = TestServer::with(|c| {
            c.limits.invites_per_minute = 2;
            c.limits.invite_burst = 2;
        })
        .await;
        let mut bob = server.client(transport, "bob").await;
        let mut alice = server.client(transport, "alice").await;
        let mut carol = server.client(transport, "carol").await;
        alice.initiate("audio", &["bob"]).await;
        carol.initiate("audio", &["bob"]).await;
        for _ in 0..2 {
            bob.expect("call:incoming").await;
        }
        let refused = carol
            .request(
                "call:initiate",
                json!({"conversationId": "c", "callType": "audio", "participants": ["dave", "bob"]}),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code, "invite_rate_limited", "{:?}", refused.body);
        let event = carol.expect("error").await;
        assert_eq!(
            (event["code"].clone(), event["event"].clone()),
            (json!("invite_rate_limited"), json!("call:initiate"))
        );
        bob.expect_none("call:incoming").await;
        server.stop().await.unwrap();
    }
}

/// The token of `user` listing `contacts`.
fn with_contacts(user: &str, contacts: &[&str]) -> String {
    token(json!({"sub": user, "contacts": contacts}))
}

/// `GET /api/v1/presence?userIds=alice,ghost` with `token`: the two presences.
async fn alice_and_ghost(server: &TestServer, token: &str) -> Vec<Value> {
    let query = "/api/v1/presence?userIds=alice,ghost";
    let (status, body) = http_get(server.addr, query, Some(token)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["presences"].as_array().unwrap().clone()
}

async fn set_status(client: &mut Client, status: &str) {
    client
        .request("user:status:update", json!({"status": status}))
        .await
        .unwrap();
}

/// `presence:subscribe` to alice: the status the ack reports.
async fn watch_alice(client: &mut Client) -> Value {
    let ack = client
        .request("presence:subscribe", json!({"userIds": ["alice"]}))
        .await
        .unwrap();
    ack["presences"][0]["status"].clone()
}

#[tokio::test]
async fn presence_is_shown_only_to_contacts_and_call_partners_by_default() {
    let server = TestServer::start().await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    set_status(&mut alice, "busy").await;
    let mallory_token = server.token("mallory");
    // A stranger sees alice exactly as a user who never existed.
    let p = alice_and_ghost(&server, &mallory_token).await;
    assert_eq!(
        p[0],
        json!({"userId": "alice", "status": "offline", "text": null, "lastSeenAt": null})
    );
    assert_eq!(p[1]["status"], "offline");
    assert_eq!(p[0].get("lastSeenAt"), p[1].get("lastSeenAt"));
    // A token that lists alice as a contact sees her, over HTTP and by subscribing.
    let friend = with_contacts("friend", &["alice"]);
    assert_eq!(alice_and_ghost(&server, &friend).await[0]["status"], "busy");
    let mut f = Client::Sio(SioClient::connect(server.addr, &friend).await.unwrap());
    assert_eq!(watch_alice(&mut f).await, "busy");
    let mut m = server.client(Transport::SocketIo, "mallory").await;
    assert_eq!(watch_alice(&mut m).await, "offline");
    set_status(&mut alice, "dnd").await;
    assert_eq!(f.expect("presence:changed").await["status"], "dnd");
    m.expect_none("presence:changed").await;
    // Mallory calls alice: while it rings they see each other; once it ends, no more.
    let call = m.initiate("audio", &["alice"]).await["callId"].clone();
    assert_eq!(
        alice_and_ghost(&server, &mallory_token).await[0]["status"],
        "dnd"
    );
    alice
        .request("call:reject", json!({"callId": call}))
        .await
        .unwrap();
    m.expect("call:ended").await;
    assert_eq!(
        alice_and_ghost(&server, &mallory_token).await[0]["status"],
        "offline"
    );
    set_status(&mut alice, "online").await;
    assert_eq!(f.expect("presence:changed").await["status"], "online");
    m.expect_none("presence:changed").await;
    server.stop().await.unwrap();
}

/// Every media event naming `space`, answered for a connection that is not in it.
async fn probe(client: &mut Client, space: &str) -> Vec<Value> {
    let events = [
        (
            "call:media-toggle",
            json!({"callId": space, "mediaType": "audio", "enabled": false}),
        ),
        ("screen:share-start", json!({"callId": space})),
        ("screen:share-stop", json!({"callId": space})),
        ("track:subscribe", json!({"callId": space, "trackId": "t1"})),
        (
            "track:unsubscribe",
            json!({"callId": space, "trackId": "t1"}),
        ),
        (
            "offer",
            json!({"callId": space, "offer": {"type": "offer", "sdp": "v=0"}}),
        ),
        (
            "ice-candidate",
            json!({"callId": space, "candidate": {"candidate": ""}}),
        ),
        ("call:join", json!({"callId": space})),
    ];
    let mut out = Vec::new();
    for (event, data) in events {
        let refused = client.request(event, data).await.unwrap_err();
        out.push(json!({"event": event, "error": refused.body}));
    }
    out
}

#[tokio::test]
async fn rooms_and_calls_cannot_be_told_apart_from_ones_that_do_not_exist() {
    let server = TestServer::with(|c| c.rooms.auto_create = Some(true)).await;
    let boss_token = server.token_with(
        "boss",
        Grants {
            room: Some("secret".into()),
            ..Grants::default()
        },
        Duration::from_secs(600),
    );
    let mut boss = Client::Ws(WsClient::connect(server.addr, &boss_token).await.unwrap());
    boss.request("room:join", json!({"room": "secret"}))
        .await
        .unwrap();
    let mut alice = server.client(Transport::Ws, "alice").await;
    let call = alice.initiate("video", &["bob"]).await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut mallory = server.client(Transport::Ws, "mallory").await;

    let absent = probe(&mut mallory, "room:no-such-room").await;
    assert_eq!(probe(&mut mallory, "room:secret").await, absent);
    assert_eq!(probe(&mut mallory, &call).await, absent);
    assert_eq!(
        probe(&mut mallory, "00112233445566778899aabb").await,
        absent
    );
    assert!(
        absent.iter().all(|a| a["error"]["code"] == "not_found"),
        "{absent:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_malformed_sdp_gets_a_plain_message_without_addresses() {
    let server = TestServer::with(|c| c.rooms.auto_create = Some(true)).await;
    let grants = Grants {
        room: Some("lab".into()),
        ..Grants::default()
    };
    let token = server.token_with("alice", grants, Duration::from_secs(600));
    let mut alice = Client::Ws(WsClient::connect(server.addr, &token).await.unwrap());
    alice
        .request("room:join", json!({"room": "lab"}))
        .await
        .unwrap();
    // Passes the quick scan (one usable m-line) but not str0m's parser, whose own message
    // names a heap address (`PointerOffset(0x…)`).
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n\
        a=fingerprint:sha-256 zz\r\n";
    let refused = alice
        .request(
            "offer",
            json!({"callId": "room:lab", "offer": {"type": "offer", "sdp": sdp}}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, "invalid_payload");
    assert_eq!(
        refused.body["message"], "bad sdp: the SDP could not be parsed",
        "{:?}",
        refused.body
    );
    let event = alice.expect("error").await;
    assert!(!event.to_string().contains("0x"), "{event}");
    server.stop().await.unwrap();
}
