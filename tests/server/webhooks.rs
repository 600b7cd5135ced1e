//! Webhooks against a real HTTP receiver started by the test (issue 14, item 1; ADR 0073):
//! signatures verify, a receiver that fails the first attempts still gets every event exactly
//! once per id and in order per room and call, events pending when the server is killed with
//! SIGKILL all arrive after it restarts (SQLite and PostgreSQL), and nodes sharing PostgreSQL
//! deliver each event once, also when one of them is killed.

use crate::client::{Client, WsClient};
use crate::durability::Schema;
use crate::server::{SECRET, TestServer, Transport, http_get, mint, scratch_dir};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The secret the receiver knows: the server also signs with a newer one (rotation).
const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    /// Whether the signature verified with the receiver's secret ([`OLD_SECRET`] unless set)
    /// and the headers matched the body.
    pub verified: bool,
    /// Whether the receiver answered 2xx.
    pub accepted: bool,
    pub body: Value,
}

/// An HTTP server that checks signatures, fails while told to, and logs every request.
pub struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    /// Fail every request while set.
    pub down: Arc<AtomicBool>,
    /// The key signatures are verified with.
    key: Arc<Mutex<Vec<u8>>>,
}

impl Receiver {
    /// A receiver that fails its first `fail_first` requests with 503.
    pub async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let fail_next = Arc::new(AtomicUsize::new(fail_first));
        let down = Arc::new(AtomicBool::new(false));
        let key = Arc::new(Mutex::new(config::webhook_secret_key(OLD_SECRET).unwrap()));
        let (l, f, d, k) = (log.clone(), fail_next.clone(), down.clone(), key.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, fail_next, down, key) = (l.clone(), f.clone(), d.clone(), k.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (log, fail_next, down, key) =
                            (log.clone(), fail_next.clone(), down.clone(), key.clone());
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            let (id, ts, sig) = (
                                header("webhook-id"),
                                header("webhook-timestamp"),
                                header("webhook-signature"),
                            );
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let timestamp: i64 = ts.parse().unwrap_or(0);
                            let parsed: Value =
                                serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let fresh = (now_secs() - timestamp).abs() < 300;
                            let key = key.lock().unwrap().clone();
                            let verified = fresh
                                && parsed["id"] == id.as_str()
                                && chorus::webhook::sign::verify(&key, &sig, &id, timestamp, &body);
                            let fail = down.load(Ordering::SeqCst)
                                || fail_next
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                            log.lock().unwrap().push(Received {
                                id,
                                verified,
                                accepted: !fail,
                                body: parsed,
                            });
                            let status = if fail { 503 } else { 204 };
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            log,
            down,
            key,
        }
    }

    /// Verifies signatures with `secret` from now on.
    pub fn set_secret(&self, secret: &str) {
        *self.key.lock().unwrap() = config::webhook_secret_key(secret).unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/chorus", self.addr)
    }

    pub fn log(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Accepted requests, in arrival order.
    pub fn delivered(&self) -> Vec<Received> {
        self.log().into_iter().filter(|r| r.accepted).collect()
    }

    /// Waits until `done` holds for the accepted requests; fails after `within`.
    pub async fn wait_for(&self, within: Duration, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if done(&self.delivered()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "webhooks did not arrive in time; received: {:#?}",
                self.log()
                    .iter()
                    .map(|r| (r.accepted, r.body["type"].clone(), r.body["data"].clone()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The delivered events of one room or call, in arrival order: (type, data).
pub fn of_space(delivered: &[Received], space: &str) -> Vec<(String, Value)> {
    delivered
        .iter()
        .filter(|r| r.body["data"]["callId"] == space || r.body["data"]["roomId"] == space)
        .map(|r| {
            (
                r.body["type"].as_str().unwrap().to_owned(),
                r.body["data"].clone(),
            )
        })
        .collect()
}

pub fn types(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

/// What a 1:1 call that alice starts, bob answers and alice hangs up produces, in order.
const CALL_EVENTS: [&str; 7] = [
    "call.started",
    "participant.joined",
    "call.answered",
    "participant.joined",
    "participant.left",
    "participant.left",
    "call.ended",
];

fn check_call(events: &[(String, Value)], call: &str) {
    assert_eq!(types(events), CALL_EVENTS, "{events:#?}");
    let data = |i: usize| &events[i].1;
    assert_eq!(data(0)["initiatorId"], "alice");
    assert_eq!(data(0)["inviteeIds"], json!(["bob"]));
    assert_eq!(data(1)["userId"], "alice");
    assert_eq!(data(2)["userId"], "bob");
    assert_eq!(data(3)["userId"], "bob");
    assert_eq!(data(4)["userId"], "alice");
    assert_eq!(data(4)["reason"], "left", "alice hung up");
    assert_eq!(data(5)["userId"], "bob");
    assert_eq!(data(5)["reason"], "call_ended");
    assert_eq!(data(6)["callId"], call);
    assert_eq!(data(6)["reason"], "ended");
    assert_eq!(data(6)["participantIds"], json!(["alice", "bob"]));
    assert!(data(6)["durationMs"].as_u64().is_some());
    assert!(data(6)["answeredAt"].is_string());
}

/// Every id accepted exactly once, every accepted request signed right.
pub fn check_once_and_signed(log: &[Received]) {
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for r in log {
        assert!(r.verified, "signature, id and timestamp verify: {r:?}");
        if r.accepted {
            *accepted.entry(r.id.as_str()).or_default() += 1;
        }
        let text = r.body.to_string();
        assert!(
            !text.contains("sdp") && !text.contains(SECRET),
            "no SDP, no secrets"
        );
    }
    for (id, n) in accepted {
        assert_eq!(n, 1, "event {id} accepted {n} times");
    }
}

pub async fn one_call(alice: &mut Client, bob: &mut Client) -> String {
    let ack = alice.initiate("audio", &["bob"]).await;
    let call = ack["callId"].as_str().unwrap().to_owned();
    bob.request("call:accept", json!({"callId": call}))
        .await
        .unwrap();
    alice
        .request("call:end", json!({"callId": call}))
        .await
        .unwrap();
    call
}

fn endpoint(receiver: &Receiver, events: &[&str]) -> config::WebhookEndpoint {
    config::WebhookEndpoint {
        id: "app".into(),
        url: receiver.url(),
        secret: config::WebhookSecrets::Several(vec![NEW_SECRET.into(), OLD_SECRET.into()]),
        events: events.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_every_event_once_in_order_and_signed() {
    let receiver = Receiver::start(5).await;
    let server = TestServer::with(|c| {
        c.rooms.auto_create = Some(true);
        c.webhook.backoff_initial = config::HumanDuration::millis(20);
        c.webhook.backoff_max = config::HumanDuration::millis(100);
        c.webhooks = vec![endpoint(&receiver, &["*", "message.sent"])];
    })
    .await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::SocketIo, "bob").await;
    let call = one_call(&mut alice, &mut bob).await;
    // A room, and chat (opted in).
    let grants = Grants {
        room: Some("standup".into()),
        ..Grants::default()
    };
    let token = mint("carol", grants, Duration::from_secs(600));
    let mut carol = Client::Ws(WsClient::connect(server.addr, &token).await.unwrap());
    carol
        .request("room:join", json!({"room": "standup"}))
        .await
        .unwrap();
    carol
        .request("room:leave", json!({"room": "standup"}))
        .await
        .unwrap();
    for i in 0..3 {
        alice
            .request(
                "message:send",
                // Chat conversations are the calls' ids.
                json!({"conversationId": call, "content": format!("hello {i}"), "tempId": format!("t{i}")}),
            )
            .await
            .unwrap();
    }
    receiver
        .wait_for(Duration::from_secs(20), |d| d.len() >= 7 + 4 + 3)
        .await;
    let log = receiver.log();
    check_once_and_signed(&log);
    assert_eq!(
        log.iter().filter(|r| !r.accepted).count(),
        5,
        "the first five attempts failed"
    );
    let delivered = receiver.delivered();
    check_call(&of_space(&delivered, &call), &call);
    let room = of_space(&delivered, "room:standup");
    assert_eq!(
        types(&room),
        [
            "room.started",
            "participant.joined",
            "participant.left",
            "room.finished"
        ]
    );
    assert_eq!(room[1].1["userId"], "carol");
    assert_eq!(room[2].1["reason"], "left");
    let messages: Vec<u64> = delivered
        .iter()
        .filter(|r| r.body["type"] == "message.sent")
        .map(|r| r.body["data"]["sequenceNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(messages, [1, 2, 3], "messages in sequence order");
    let message = delivered
        .iter()
        .find(|r| r.body["type"] == "message.sent")
        .unwrap();
    assert_eq!(message.body["data"]["senderId"], "alice");
    assert!(
        !message.body.to_string().contains("hello"),
        "no message text in webhooks"
    );
    let (_, metrics) = http_get(server.addr, "/metrics", None).await;
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in /metrics"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        line("chorus_webhook_events_delivered_total{endpoint=\"app\"}"),
        14.0
    );
    assert_eq!(
        line("chorus_webhook_events_retried_total{endpoint=\"app\"}"),
        5.0
    );
    assert!(metrics.contains("chorus_webhook_delivery_seconds_count 14"));
    assert!(metrics.contains("chorus_webhook_endpoint_paused{endpoint=\"app\"} 0"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_paused_then_resumed() {
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let server = TestServer::with(|c| {
        c.webhook.backoff_initial = config::HumanDuration::millis(10);
        c.webhook.backoff_max = config::HumanDuration::millis(20);
        c.webhook.pause_after = 3;
        c.webhook.pause_for = config::HumanDuration::millis(1500);
        c.webhooks = vec![endpoint(&receiver, &["call.*"])];
    })
    .await;
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::Ws, "bob").await;
    let call = one_call(&mut alice, &mut bob).await;
    let paused = "chorus_webhook_endpoint_paused{endpoint=\"app\"} 1";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(server.addr, "/metrics", None)
        .await
        .1
        .contains(paused)
    {
        assert!(Instant::now() < deadline, "the endpoint is paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        http_get(server.addr, "/metrics", None)
            .await
            .1
            .contains("chorus_webhook_endpoints_paused 1")
    );
    // Paused: no request for `pause_for`.
    let attempts = receiver.log().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.log().len(),
        attempts,
        "a paused endpoint gets no request"
    );
    receiver.down.store(false, Ordering::SeqCst);
    receiver
        .wait_for(Duration::from_secs(10), |d| d.len() >= 3)
        .await;
    let delivered = receiver.delivered();
    assert_eq!(
        types(&of_space(&delivered, &call)),
        ["call.started", "call.answered", "call.ended"]
    );
    assert!(
        http_get(server.addr, "/metrics", None)
            .await
            .1
            .contains("chorus_webhook_endpoints_paused 0")
    );
    check_once_and_signed(&receiver.log());
    server.stop().await.unwrap();
}

/// A `chorus serve` child process with a configuration file.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
}

impl Node {
    pub async fn start(dir: &Path, config: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let file = dir.join(format!("chorus-{port}.toml"));
        std::fs::write(&file, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir)
            .env("CHORUS_AUTH_SECRET", SECRET)
            .env("CHORUS_LOG_LEVEL", "warn")
            .env("CHORUS_SFU_UDP_LISTEN", "127.0.0.1:0")
            .env("CHORUS_SFU_TCP_LISTEN", "127.0.0.1:0")
            .env("CHORUS_TURN_ENABLED", "false")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chorus binary starts");
        // Owned by `Node` at once, so a failed start is killed and reaped by its `Drop`.
        let node = Self { child, addr };
        for _ in 0..400 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("chorus did not listen on {addr}");
    }

    pub async fn client(&self, user: &str) -> Client {
        let token = mint(user, Grants::default(), Duration::from_secs(600));
        Client::Ws(WsClient::connect(self.addr, &token).await.unwrap())
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_config(receiver: &Receiver, database_url: Option<&str>) -> String {
    let database = database_url
        .map(|u| format!("[chat]\ndatabase_url = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        "{database}
[webhook]
request_timeout = \"1s\"
lease = \"2s\"
backoff_initial = \"20ms\"
backoff_max = \"200ms\"
pause_after = 1000

[[webhooks]]
id = \"app\"
url = \"{}\"
secret = [\"{NEW_SECRET}\", \"{OLD_SECRET}\"]
events = [\"call.*\", \"participant.*\"]
",
        receiver.url()
    )
}

/// Events stored while the receiver is down survive SIGKILL: after the restart every one
/// arrives, once, in order. The last call ends right before the kill: its ack left only after
/// its events were stored.
async fn killed_with_pending_events(database_url: Option<String>) {
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let dir = scratch_dir();
    let config = node_config(&receiver, database_url.as_deref());
    let mut node = Node::start(&dir, &config).await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        let mut alice = node.client("alice").await;
        let mut bob = node.client("bob").await;
        calls.push(one_call(&mut alice, &mut bob).await);
    }
    // Some attempts failed: events are pending, not lost in memory somewhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.log().is_empty() {
        assert!(Instant::now() < deadline, "the server tried to deliver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    calls.push(one_call(&mut alice, &mut bob).await);
    node.kill9();
    assert!(receiver.delivered().is_empty());
    receiver.down.store(false, Ordering::SeqCst);
    let node = Node::start(&dir, &config).await;
    receiver
        .wait_for(Duration::from_secs(30), |d| d.len() >= 7 * calls.len())
        .await;
    // Nothing more comes (no duplicate of an event delivered already).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 7 * calls.len());
    for call in &calls {
        check_call(&of_space(&delivered, call), call);
    }
    check_once_and_signed(&receiver.log());
    drop(node);
}

#[tokio::test]
async fn events_pending_at_sigkill_arrive_after_restart_sqlite() {
    killed_with_pending_events(None).await;
}

#[tokio::test]
async fn events_pending_at_sigkill_arrive_after_restart_postgres() {
    let schema = Schema::create().await;
    killed_with_pending_events(Some(schema.url())).await;
    schema.drop_now().await;
}

/// Two nodes share one PostgreSQL and both deliver: claims (`FOR UPDATE SKIP LOCKED` and a
/// lease) give every event to one of them, and each call's events still arrive in order.
#[tokio::test]
async fn two_nodes_sharing_postgres_deliver_each_event_once_in_order() {
    let schema = Schema::create().await;
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let config = node_config(&receiver, Some(&schema.url()));
    let a = Node::start(&scratch_dir(), &config).await;
    let b = Node::start(&scratch_dir(), &config).await;
    let mut calls = Vec::new();
    for (i, node) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (x, y) = (format!("alice{i}"), format!("bob{i}"));
        let mut caller = node.client(&x).await;
        let mut callee = node.client(&y).await;
        let ack = caller.initiate("audio", &[y.as_str()]).await;
        let call = ack["callId"].as_str().unwrap().to_owned();
        callee
            .request("call:accept", json!({"callId": call}))
            .await
            .unwrap();
        caller
            .request("call:end", json!({"callId": call}))
            .await
            .unwrap();
        calls.push(call);
    }
    // Both nodes now hold every event in the shared outbox; let them race for it.
    receiver.down.store(false, Ordering::SeqCst);
    receiver
        .wait_for(Duration::from_secs(30), |d| d.len() >= 7 * calls.len())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 7 * calls.len(), "each event once");
    for call in &calls {
        assert_eq!(types(&of_space(&delivered, call)), CALL_EVENTS);
    }
    check_once_and_signed(&receiver.log());
    drop((a, b));
    schema.drop_now().await;
}

/// A failover: two nodes share PostgreSQL, one is killed with SIGKILL while the events of its
/// calls are pending (some leased to it); the other delivers every one, once, in order.
#[tokio::test]
async fn a_node_killed_with_pending_events_loses_none_the_other_delivers() {
    let schema = Schema::create().await;
    let receiver = Receiver::start(0).await;
    receiver.down.store(true, Ordering::SeqCst);
    let config = node_config(&receiver, Some(&schema.url()));
    let mut a = Node::start(&scratch_dir(), &config).await;
    let b = Node::start(&scratch_dir(), &config).await;
    let mut calls = Vec::new();
    for (i, node) in [&a, &a, &b].into_iter().enumerate() {
        let (x, y) = (format!("alice{i}"), format!("bob{i}"));
        let mut caller = node.client(&x).await;
        let mut callee = node.client(&y).await;
        let ack = caller.initiate("audio", &[y.as_str()]).await;
        let call = ack["callId"].as_str().unwrap().to_owned();
        callee
            .request("call:accept", json!({"callId": call}))
            .await
            .unwrap();
        caller
            .request("call:end", json!({"callId": call}))
            .await
            .unwrap();
        calls.push(call);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.log().len() < 6 {
        assert!(Instant::now() < deadline, "both nodes tried to deliver");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    receiver.down.store(false, Ordering::SeqCst);
    receiver
        .wait_for(Duration::from_secs(30), |d| d.len() >= 7 * calls.len())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 7 * calls.len(), "each event once");
    for call in &calls {
        assert_eq!(types(&of_space(&delivered, call)), CALL_EVENTS);
    }
    check_once_and_signed(&receiver.log());
    drop(b);
    schema.drop_now().await;
}

/// Tracks: a webrtc-rs peer publishes audio in a room; `track.published` and
/// `track.unpublished` reach the receiver in the room's order, after the publisher joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_tracks_are_reported_in_room_order() {
    let receiver = Receiver::start(0).await;
    let server = TestServer::with(|c| {
        c.rooms.auto_create = Some(true);
        c.webhooks = vec![endpoint(&receiver, &["room.*", "participant.*", "track.*"])];
    })
    .await;
    let (room, space) = ("stage", "room:stage");
    let token = |user: &str| {
        let grants = Grants {
            room: Some(room.to_owned()),
            ..Grants::default()
        };
        mint(user, grants, Duration::from_secs(600))
    };
    let mut bob = WsClient::connect(server.addr, &token("bob")).await.unwrap();
    bob.join_room(room).await;
    let mut alice = WsClient::connect(server.addr, &token("alice"))
        .await
        .unwrap();
    alice.join_room(room).await;
    let mut pc = testkit::Peer::new().await;
    pc.publish(testkit::Kind::Audio, "mic", 0x0B0B_0001).await;
    let offer = pc.offer().await;
    let answer = alice.offer_to_sfu(space, &offer).await.unwrap();
    pc.accept_answer(answer).await;
    pc.wait_connected("alice").await;
    let published = bob.expect("track:published").await;
    let leave = json!({ "room": room });
    alice.request("room:leave", leave.clone()).await.unwrap();
    bob.request("room:leave", leave).await.unwrap();
    pc.close().await;
    receiver
        .wait_for(Duration::from_secs(20), |d| {
            d.iter().any(|r| r.body["type"] == "track.unpublished")
                && d.iter().any(|r| r.body["type"] == "room.finished")
        })
        .await;
    let events = of_space(&receiver.delivered(), space);
    let kinds = types(&events);
    let at = |kind: &str, user: &str| {
        events
            .iter()
            .position(|(t, d)| t == kind && d["userId"] == user)
            .unwrap_or_else(|| panic!("{kind} of {user} in {kinds:?}"))
    };
    assert_eq!(kinds[0], "room.started");
    assert!(at("participant.joined", "alice") < at("track.published", "alice"));
    assert!(at("track.published", "alice") < at("track.unpublished", "alice"));
    let track = &events[at("track.published", "alice")].1;
    assert_eq!(track["trackId"], published["trackId"]);
    assert_eq!(track["kind"], "audio");
    assert!(!track.to_string().contains("sdp"));
    check_once_and_signed(&receiver.log());
    server.stop().await.unwrap();
}

/// A database that cannot store events does not stop calls: the events are dropped and
/// counted, and once the database is back, new events are stored and delivered again.
#[tokio::test]
async fn an_outbox_that_cannot_be_written_drops_events_and_calls_go_on() {
    use sqlx::Connection;
    let schema = Schema::create().await;
    let receiver = Receiver::start(0).await;
    let url = schema.url();
    let server = TestServer::with(|c| {
        c.chat.database_url = url.clone();
        c.webhook.write_timeout = config::HumanDuration::millis(500);
        c.webhooks = vec![endpoint(&receiver, &["call.*"])];
    })
    .await;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    sqlx::query(sqlx::AssertSqlSafe(rename(
        "webhook_outbox",
        "webhook_outbox_away",
    )))
    .execute(&mut db)
    .await
    .unwrap();
    let mut alice = server.client(Transport::Ws, "alice").await;
    let mut bob = server.client(Transport::Ws, "bob").await;
    let started = Instant::now();
    let lost = one_call(&mut alice, &mut bob).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a call goes on while its events cannot be stored: {:?}",
        started.elapsed()
    );
    let (_, metrics) = http_get(server.addr, "/metrics", None).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("chorus_webhook_events_dropped_total{reason=\"storage\"}")),
        "dropped events are counted"
    );
    sqlx::query(sqlx::AssertSqlSafe(rename(
        "webhook_outbox_away",
        "webhook_outbox",
    )))
    .execute(&mut db)
    .await
    .unwrap();
    // Past the storage retry, events are stored and delivered again.
    tokio::time::sleep(chorus::webhook::STORAGE_RETRY).await;
    let kept = one_call(&mut alice, &mut bob).await;
    receiver
        .wait_for(Duration::from_secs(10), |d| d.len() >= 3)
        .await;
    let delivered = receiver.delivered();
    assert_eq!(
        types(&of_space(&delivered, &kept)),
        ["call.started", "call.answered", "call.ended"]
    );
    assert!(of_space(&delivered, &lost).is_empty());
    server.stop().await.unwrap();
    db.close().await.unwrap();
    schema.drop_now().await;
}

/// Rooms the server API creates, removes people from and deletes are reported like any other:
/// `room.started` at creation (before anyone joined), `participant.left` with reason `removed`,
/// and `room.finished` when it is deleted with someone still inside.
#[tokio::test]
async fn server_api_room_changes_are_reported() {
    use crate::admin::{api, room_token};
    let receiver = Receiver::start(0).await;
    let server = TestServer::with(|c| c.webhooks = vec![endpoint(&receiver, &["*"])]).await;
    let (status, body) = api(
        server.addr,
        "POST",
        "/api/v1/admin/rooms",
        Some(json!({"name": "hall"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut joined = Vec::new();
    for user in ["dora", "ed"] {
        let token = room_token(user, "hall");
        let mut client = Client::Ws(WsClient::connect(server.addr, &token).await.unwrap());
        client
            .request("room:join", json!({"room": "hall"}))
            .await
            .unwrap();
        joined.push(client);
    }
    let (status, body) = api(
        server.addr,
        "DELETE",
        "/api/v1/admin/rooms/hall/participants/dora",
        None,
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = api(server.addr, "DELETE", "/api/v1/admin/rooms/hall", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    receiver
        .wait_for(Duration::from_secs(20), |d| d.len() >= 6)
        .await;
    let events = of_space(&receiver.delivered(), "room:hall");
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|(t, d)| (t.as_str(), d["userId"].as_str(), d["reason"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("room.started", None, None),
            ("participant.joined", Some("dora"), None),
            ("participant.joined", Some("ed"), None),
            ("participant.left", Some("dora"), Some("removed")),
            ("participant.left", Some("ed"), Some("removed")),
            ("room.finished", None, None),
        ],
        "{events:#?}"
    );
    check_once_and_signed(&receiver.log());
}

/// While the outbox cannot take a write (its table locked by another transaction), the hub
/// goes on taking commands: the steps of twenty users joining twenty rooms queue behind the
/// held write, none is acked before its events are stored, and once the lock goes they are
/// stored together, in far fewer transactions than steps, and every event arrives once and in
/// order per room.
#[tokio::test]
async fn steps_waiting_for_a_write_are_stored_together_and_acked_after() {
    use sqlx::Connection;
    const USERS: usize = 20;
    let schema = Schema::create().await;
    let receiver = Receiver::start(0).await;
    let url = schema.url();
    let server = TestServer::with(|c| {
        c.chat.database_url = url.clone();
        c.rooms.auto_create = Some(true);
        c.webhook.write_timeout = config::HumanDuration::secs(30);
        c.webhooks = vec![endpoint(&receiver, &["room.*", "participant.*"])];
    })
    .await;
    let room = |i: usize| format!("desk{i}");
    let mut clients = Vec::new();
    for i in 0..USERS {
        let grants = Grants {
            room: Some(room(i)),
            ..Grants::default()
        };
        let token = mint(&format!("user{i}"), grants, Duration::from_secs(600));
        clients.push(WsClient::connect(server.addr, &token).await.unwrap());
    }
    let writes_before = outbox_writes(server.addr).await;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut lock = db.begin().await.unwrap();
    sqlx::query("LOCK TABLE webhook_outbox IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let joins: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let room = room(i);
            tokio::spawn(async move {
                let ack = client.request("room:join", json!({ "room": room })).await;
                (client, ack)
            })
        })
        .collect();
    // Every join reaches the hub while the first write waits for the lock.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        joins.iter().all(|j| !j.is_finished()),
        "no join is acked before its events are stored"
    );
    lock.rollback().await.unwrap();
    // Kept connected: leaving would add events of its own.
    let mut joined = Vec::new();
    for join in joins {
        let (client, ack) = join.await.unwrap();
        ack.expect("the join is acked once its events are stored");
        joined.push(client);
    }
    let writes = outbox_writes(server.addr).await - writes_before;
    assert!(
        writes < USERS as u64 / 2,
        "{USERS} steps waiting together are stored in a few transactions, not {writes}"
    );
    receiver
        .wait_for(Duration::from_secs(20), |d| d.len() >= 2 * USERS)
        .await;
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 2 * USERS);
    for i in 0..USERS {
        let space = format!("room:{}", room(i));
        assert_eq!(
            types(&of_space(&delivered, &space)),
            ["room.started", "participant.joined"]
        );
    }
    check_once_and_signed(&receiver.log());
    drop(joined);
    server.stop().await.unwrap();
    db.close().await.unwrap();
    schema.drop_now().await;
}

/// `chorus_webhook_outbox_writes_total` as `/metrics` shows it.
async fn outbox_writes(addr: SocketAddr) -> u64 {
    let (_, metrics) = http_get(addr, "/metrics", None).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("chorus_webhook_outbox_writes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the outbox write counter is exported")
}
