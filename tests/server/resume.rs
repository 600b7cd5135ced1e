//! `session:resume` (ADR 0079): a session whose connection drops without a goodbye keeps its
//! room for `limits.resume_grace`, and a new connection of the same user takes it back with
//! the events it missed, in order; nobody else sees it leave. Expiry, another user's token, an
//! overflowed backlog and a goodbye (close frame) all end it, with their own error codes.

use crate::client::{Client, SioClient, WsClient};
use crate::server::{TestServer, Transport};
use config::{Config, HumanDuration};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::time::Duration;

/// The room every test here uses.
const ROOM: &str = "standup";

/// A server where rooms are created on first join, with `tweak` applied.
async fn server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with(|c| {
        c.rooms.auto_create = Some(true);
        tweak(c);
    })
    .await
}

/// A connection of `user` whose token grants [`ROOM`].
async fn member(server: &TestServer, transport: Transport, user: &str) -> Client {
    let grants = Grants {
        room: Some(ROOM.into()),
        ..Grants::default()
    };
    let token = server.token_with(user, grants, Duration::from_secs(600));
    match transport {
        Transport::Ws => Client::Ws(WsClient::connect(server.addr, &token).await.unwrap()),
        Transport::SocketIo => Client::Sio(SioClient::connect(server.addr, &token).await.unwrap()),
    }
}

/// The session id from the `session:ready` every connection gets first.
async fn session_id(client: &mut Client) -> String {
    let ready = client.expect("session:ready").await;
    assert!(ready["resumeWithinMs"].as_u64().unwrap() > 0);
    let id = ready["sessionId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "128 bits in hex: {id}");
    id
}

/// Drops the connection without a close frame, as a network change does.
fn drop_connection(client: Client) {
    drop(client);
}

/// Events `client` has buffered and not taken, counted as the server counts them.
fn buffered(client: &Client) -> u64 {
    let events = match client {
        Client::Ws(c) => &c.events,
        Client::Sio(c) => &c.events,
    };
    events
        .iter()
        .filter(|(name, _)| name != "error" && name != "session:expiring")
        .count() as u64
}

/// `call:media-toggled` events buffered by `client`, in arrival order: `(mediaType, enabled)`.
fn toggles(client: &mut Client) -> Vec<(String, bool)> {
    let events = match client {
        Client::Ws(c) => &mut c.events,
        Client::Sio(c) => &mut c.events,
    };
    let mut out = Vec::new();
    events.retain(|(name, data)| {
        if name != "call:media-toggled" {
            return true;
        }
        out.push((
            data["mediaType"].as_str().unwrap_or_default().to_owned(),
            data["enabled"].as_bool().unwrap_or_default(),
        ));
        false
    });
    out
}

/// Alice and Bob (raw WebSocket) in [`ROOM`], and Alice's session id.
async fn alice_and_bob_in_the_room(server: &TestServer) -> (Client, Client, String) {
    let mut alice = member(server, Transport::Ws, "alice").await;
    let mut bob = member(server, Transport::Ws, "bob").await;
    let id = session_id(&mut alice).await;
    join(&mut alice, ROOM).await;
    join(&mut bob, ROOM).await;
    (alice, bob, id)
}

/// The error code of a `session:resume` the server must refuse.
async fn resume_refused(client: &mut Client, id: &str) -> String {
    client
        .request("session:resume", json!({ "sessionId": id }))
        .await
        .unwrap_err()
        .code
}

async fn join(client: &mut Client, room: &str) -> Value {
    client
        .request("room:join", json!({ "room": room }))
        .await
        .expect("room:join is acked")
}

async fn toggle(client: &mut Client, room: &str, media: &str, enabled: bool) {
    client
        .request(
            "call:media-toggle",
            json!({"callId": room, "mediaType": media, "enabled": enabled}),
        )
        .await
        .expect("call:media-toggle is acked");
}

async fn resume_with(server: &TestServer, transport: Transport) {
    let server_ref = server;
    let mut alice = member(server_ref, transport, "alice").await;
    let mut bob = member(server_ref, Transport::Ws, "bob").await;
    let id = session_id(&mut alice).await;
    let room = join(&mut alice, ROOM).await["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    join(&mut bob, ROOM).await;
    alice.expect("call:participant:joined").await;
    // Events Alice got: the two taken above, and any still buffered.
    let received = 2 + buffered(&alice);
    drop_connection(alice);
    // What Alice misses while she is away, in this order. The first ones may still have been
    // written to the old connection before the server saw it break: `received` gets them back.
    let missed = [("audio", false), ("video", false), ("audio", true)];
    for (media, enabled) in missed {
        toggle(&mut bob, &room, media, enabled).await;
    }

    let mut alice = member(server_ref, transport, "alice").await;
    let ack = alice
        .request(
            "session:resume",
            json!({ "sessionId": id, "received": received }),
        )
        .await
        .expect("the session resumes");
    assert_eq!(ack["sessionId"], id.as_str());
    assert_eq!(ack["resumed"], true);
    // The missed events follow the ack, in order.
    let mut got = Vec::new();
    for _ in missed {
        let t = alice.expect("call:media-toggled").await;
        got.push((
            t["mediaType"].as_str().unwrap().to_owned(),
            t["enabled"].as_bool().unwrap(),
        ));
    }
    let expected: Vec<(String, bool)> = missed.iter().map(|(m, e)| (m.to_string(), *e)).collect();
    assert_eq!(got, expected);
    // Live again, as the same seat: new events reach her, and she can act in the room.
    toggle(&mut bob, &room, "video", true).await;
    assert_eq!(alice.expect("call:media-toggled").await["enabled"], true);
    assert_eq!(toggles(&mut alice), vec![], "nothing twice");
    bob.expect_none("call:participant:left").await;
    alice
        .request("room:leave", json!({ "room": ROOM }))
        .await
        .unwrap();
    assert_eq!(bob.expect("call:participant:left").await["userId"], "alice");
}

#[tokio::test]
async fn a_dropped_ws_session_resumes_with_its_room_and_missed_events_in_order() {
    let server = server_with(|_| {}).await;
    resume_with(&server, Transport::Ws).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_dropped_socketio_session_resumes_with_its_room_and_missed_events_in_order() {
    let server = server_with(|_| {}).await;
    resume_with(&server, Transport::SocketIo).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_not_resumed_within_the_grace_period_leaves() {
    let server = server_with(|c| c.limits.resume_grace = HumanDuration::millis(400)).await;
    let (alice, mut bob, id) = alice_and_bob_in_the_room(&server).await;
    drop_connection(alice);
    // Held for the grace period, then gone.
    bob.expect_none("call:participant:left").await;
    assert_eq!(bob.expect("call:participant:left").await["userId"], "alice");
    let mut alice = member(&server, Transport::Ws, "alice").await;
    assert_eq!(resume_refused(&mut alice, &id).await, "session_not_found");
    // An id nobody issued gets the same answer.
    assert_eq!(
        resume_refused(&mut alice, &"00".repeat(16)).await,
        "session_not_found"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn another_user_cannot_resume_a_session() {
    let server = server_with(|_| {}).await;
    let (alice, mut bob, id) = alice_and_bob_in_the_room(&server).await;
    drop_connection(alice);
    let mut mallory = member(&server, Transport::Ws, "mallory").await;
    assert_eq!(resume_refused(&mut mallory, &id).await, "forbidden");
    // The attempt took nothing: Alice still resumes.
    let mut alice = member(&server, Transport::Ws, "alice").await;
    alice
        .request("session:resume", json!({ "sessionId": id }))
        .await
        .expect("Alice resumes her own session");
    bob.expect_none("call:participant:left").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_that_missed_too_much_ends_and_says_so() {
    let server = server_with(|c| c.limits.outbound_queue = 16).await;
    let mut alice = member(&server, Transport::Ws, "alice").await;
    let mut bob = member(&server, Transport::Ws, "bob").await;
    let id = session_id(&mut alice).await;
    let room = join(&mut alice, ROOM).await["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    join(&mut bob, ROOM).await;
    alice.expect("call:participant:joined").await;
    drop_connection(alice);
    for i in 0..24 {
        toggle(&mut bob, &room, "audio", i % 2 == 0).await;
    }
    // The backlog overflowed: the server dropped her (everyone sees it).
    assert_eq!(bob.expect("call:participant:left").await["userId"], "alice");
    let mut alice = member(&server, Transport::Ws, "alice").await;
    assert_eq!(resume_refused(&mut alice, &id).await, "session_overflowed");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_goodbye_ends_the_session_at_once() {
    let server = server_with(|_| {}).await;
    let (alice, mut bob, id) = alice_and_bob_in_the_room(&server).await;
    alice.close().await; // a close frame: the client meant to leave
    assert_eq!(bob.expect("call:participant:left").await["userId"], "alice");
    let mut alice = member(&server, Transport::Ws, "alice").await;
    assert_eq!(resume_refused(&mut alice, &id).await, "session_not_found");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_resume_takes_over_a_connection_the_server_still_thinks_alive() {
    let server = server_with(|_| {}).await;
    let mut old = member(&server, Transport::Ws, "alice").await;
    let mut bob = member(&server, Transport::Ws, "bob").await;
    let id = session_id(&mut old).await;
    join(&mut old, ROOM).await;
    join(&mut bob, ROOM).await;
    // The old connection is still open (a half-open TCP connection after a network change).
    let mut alice = member(&server, Transport::Ws, "alice").await;
    let started = std::time::Instant::now();
    alice
        .request("session:resume", json!({ "sessionId": id }))
        .await
        .expect("a live session is handed over");
    assert!(started.elapsed() < Duration::from_secs(2));
    bob.expect_none("call:participant:left").await;
    alice
        .request("room:leave", json!({ "room": ROOM }))
        .await
        .unwrap();
    assert_eq!(bob.expect("call:participant:left").await["userId"], "alice");
    drop(old);
    server.stop().await.unwrap();
}
