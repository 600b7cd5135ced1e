//! Health, readiness, metrics, ICE servers and graceful shutdown.

use crate::client::{Client, SioClient, WsClient};
use crate::server::{TestServer, Transport, http_get};
use serde_json::{Value, json};
use signaling::auth::Grants;
use std::time::Duration;

#[tokio::test]
async fn health_ready_and_metrics_are_served() {
    let server = TestServer::start().await;
    let health = |body: String| -> Value { serde_json::from_str(&body).expect("JSON") };
    let (status, body) = http_get(server.addr, "/health", None).await;
    assert_eq!(status, 200);
    let before = health(body);
    assert_eq!(
        (before["status"].as_str(), before["connections"].as_u64()),
        (Some("ok"), Some(0)),
        "{before}"
    );
    assert!(before["uptime"].is_u64(), "{before}");
    assert_eq!(http_get(server.addr, "/ready", None).await.0, 200);
    let mut a = server.client(Transport::Ws, "alice").await;
    let mut b = server.client(Transport::SocketIo, "bob").await;
    let now = health(http_get(server.addr, "/health", None).await.1);
    assert_eq!(now["connections"], 2, "{now}");
    let ack = a.initiate("audio", &["bob"]).await;
    b.request("call:reject", json!({"callId": ack["callId"]}))
        .await
        .unwrap();
    a.expect("call:ended").await;
    let (status, m) = http_get(server.addr, "/metrics", None).await;
    assert_eq!(status, 200);
    for line in [
        r#"chorus_signaling_connections{transport="ws"} 1"#,
        r#"chorus_signaling_connections{transport="socketio"} 1"#,
        "chorus_signaling_sessions 2",
        "chorus_calls_active 0",
        r#"chorus_calls_total{outcome="rejected"} 1"#,
        r#"chorus_signaling_events_in_total{event="call:initiate"} 1"#,
        r#"chorus_signaling_events_out_total{event="call:incoming"} 1"#,
        "chorus_signaling_event_seconds_count 2",
    ] {
        assert!(m.contains(line), "missing `{line}` in:\n{m}");
    }
    assert!(
        !m.contains("alice") && !m.contains("bob"),
        "no per-user labels"
    );
    server.stop().await.unwrap();
}

/// The hub's records are gauges that follow what clients hold and are back at zero once they
/// are gone, and the runtime's alive tasks are reported: what `bench/soak.sh` checks.
#[tokio::test]
async fn hub_records_and_runtime_tasks_are_gauges() {
    let server = TestServer::with(|c| c.rooms.auto_create = Some(true)).await;
    let grants = signaling::auth::Grants {
        room: Some("gauges".into()),
        ..signaling::auth::Grants::default()
    };
    let token = server.token_with("alice", grants, Duration::from_secs(600));
    let mut alice = WsClient::connect(server.addr, &token).await.unwrap();
    alice.join_room("gauges").await;
    alice
        .request("presence:subscribe", json!({"userIds": ["bob"]}))
        .await
        .unwrap();
    // The hub sets the gauges after each command; the barrier's ack follows that.
    alice.barrier().await;
    let m = http_get(server.addr, "/metrics", None).await.1;
    for (kind, n) in [
        ("connections", 1),
        ("users", 1),
        ("rooms", 1),
        ("watched", 1),
    ] {
        assert_eq!(hub_records(&m, kind), n, "{kind} in:\n{m}");
    }
    assert_eq!(hub_records(&m, "calls"), 0, "{m}");
    assert!(gauge(&m, "chorus_runtime_tasks") > 0, "{m}");

    alice
        .request("room:leave", json!({"room": "gauges"}))
        .await
        .unwrap();
    alice.barrier().await;
    let m = http_get(server.addr, "/metrics", None).await.1;
    assert_eq!(hub_records(&m, "rooms"), 0, "{m}");
    assert_eq!(hub_records(&m, "connections"), 1, "{m}");

    alice.close().await;
    let mut m = String::new();
    for _ in 0..100 {
        m = http_get(server.addr, "/metrics", None).await.1;
        if hub_records(&m, "connections") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for kind in ["connections", "users", "rooms", "watched"] {
        assert_eq!(hub_records(&m, kind), 0, "{kind} after the close:\n{m}");
    }
    server.stop().await.unwrap();
}

/// The value of `chorus_hub_records{kind="<kind>"}` in a scrape.
fn hub_records(metrics: &str, kind: &str) -> i64 {
    gauge(metrics, &format!("chorus_hub_records{{kind=\"{kind}\"}}"))
}

/// The value of the sample named exactly `name` (labels included) in a scrape; panics if absent.
pub(crate) fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in:\n{metrics}"))
}

#[tokio::test]
async fn ice_servers_endpoint_mints_turn_credentials_for_the_caller() {
    let server = TestServer::start().await;
    let (status, body) = http_get(
        server.addr,
        "/api/v1/ice-servers",
        Some(&server.token("alice")),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let turn = &v["iceServers"][1];
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + 6 * 3600 - 60 && expiry <= now + 6 * 3600 + 5,
        "ttl is 6h"
    );
    // Recompute the coturn REST credential independently of the server code.
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"turn-secret").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected);
    assert_eq!(
        http_get(server.addr, "/api/v1/ice-servers", None).await.0,
        401
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_tells_clients_refuses_new_sessions_and_drains() {
    let server = TestServer::with(|c| {
        c.server.drain_timeout = config::HumanDuration::secs(3);
        c.server.reconnect_hint = config::HumanDuration::millis(1234);
    })
    .await;
    let addr = server.addr;
    let sig = server.signaling.clone();
    let mut a = server.client(Transport::Ws, "alice").await;
    let mut b = server.client(Transport::SocketIo, "bob").await;
    let token = server.token("late");
    let stopping = tokio::spawn(server.stop());
    assert_eq!(
        a.expect("server:shutdown").await,
        json!({"reconnectInMs": 1234})
    );
    assert_eq!(b.expect("server:shutdown").await["reconnectInMs"], 1234);
    assert!(sig.is_draining());
    assert_eq!(http_get(addr, "/ready", None).await.0, 503);
    let err = WsClient::connect(addr, &token).await.err().unwrap();
    assert!(
        err.starts_with("503") && err.contains("shutting_down"),
        "{err}"
    );
    // Clients leave; the server finishes without waiting out the whole drain timeout.
    let started = std::time::Instant::now();
    a.close().await;
    b.close().await;
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("drained")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// During a drain the node keeps its rooms until the deadline, then hands them over with their
/// members: a join to one of them still works (in a cluster, a member whose own node went away
/// rejoins through a live node while the owner drains); a new room is refused.
#[tokio::test]
async fn a_draining_server_takes_joins_to_its_rooms_but_opens_no_new_one() {
    let server = TestServer::with(|c| {
        c.server.drain_timeout = config::HumanDuration::secs(5);
    })
    .await;
    let admin = Grants {
        admin: true,
        ..Grants::default()
    };
    let token = |user| server.token_with(user, admin.clone(), Duration::from_secs(600));
    let mut alice = WsClient::connect(server.addr, &token("alice"))
        .await
        .unwrap();
    let mut bob = Client::Sio(
        SioClient::connect(server.addr, &token("bob"))
            .await
            .unwrap(),
    );
    alice
        .request("room:join", json!({"room": "standup"}))
        .await
        .expect("alice opens the room");
    let stopping = tokio::spawn(server.stop());
    bob.expect("server:shutdown").await;
    let joined = bob
        .request("room:join", json!({"room": "standup"}))
        .await
        .expect("bob joins the room the draining server still holds");
    assert_eq!(joined["participants"][0]["userId"], "alice", "{joined}");
    assert_eq!(
        alice.expect("call:participant:joined").await["participant"]["userId"],
        "bob"
    );
    let refused = bob
        .request("room:join", json!({"room": "retro"}))
        .await
        .expect_err("no new room while draining");
    assert_eq!(refused.code, "shutting_down", "{refused:?}");
    alice.close().await;
    bob.close().await;
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("drained")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_dead_sfu_worker_drains_the_server_and_ends_it_with_an_error() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut a = server.client(Transport::Ws, "alice").await;
    assert_eq!(http_get(addr, "/ready", None).await.0, 200);
    // The SFU's worker ends under the running server, as it does when its core panics.
    server.sfu.clone().expect("SFU enabled").shutdown().await;
    // The server drains as on SIGTERM instead of carrying on without media...
    assert!(a.expect("server:shutdown").await["reconnectInMs"].is_number());
    assert_eq!(http_get(addr, "/ready", None).await.0, 503);
    a.close().await;
    // ...and stops with the error, for the process to exit 1.
    let err = server
        .finished()
        .await
        .expect_err("a dead part is a failure");
    assert_eq!(err.to_string(), "SFU failed: its media worker ended");
}

#[tokio::test]
async fn a_dead_hub_drains_the_server_and_ends_it_with_an_error() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut a = WsClient::connect(addr, &server.token("alice"))
        .await
        .unwrap();
    assert_eq!(http_get(addr, "/ready", None).await.0, 200);
    // The hub's task ends under the running server, as it does when it panics.
    server.signaling.hub.stop().await;
    // Every command would now fail: the server must not keep answering `/ready` with 200.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while http_get(addr, "/ready", None).await.0 != 503 {
        assert!(tokio::time::Instant::now() < deadline, "/ready stayed 200");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Connections end with "server error" rather than hang on a hub that cannot serve them...
    assert_eq!(a.closed_code().await, 1011);
    // ...and the server stops with the error, for the process to exit 1.
    let err = server
        .finished()
        .await
        .expect_err("a dead hub is a failure");
    assert_eq!(
        err.to_string(),
        "signaling hub failed: its task ended (a bug: every command now fails)"
    );
}

#[tokio::test]
async fn clients_that_stay_are_closed_after_the_drain_timeout() {
    let server =
        TestServer::with(|c| c.server.drain_timeout = config::HumanDuration::millis(300)).await;
    let mut ws = WsClient::connect(server.addr, &server.token("stubborn"))
        .await
        .unwrap();
    let stopping = tokio::spawn(server.stop());
    assert_eq!(ws.closed_code().await, 1001);
    stopping.await.unwrap().unwrap();
}

/// The TURN relay inside `chorus serve` accepts the credentials signaling mints, and relays
/// with zero loss for coturn's own client (turnutils_uclient, turnutils_peer as the peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_relays_with_the_credentials_signaling_mints() {
    let uclient = std::path::Path::new("/usr/bin/turnutils_uclient");
    if !testkit::prerequisite(
        uclient.exists(),
        "turn_relays_with_the_credentials_signaling_mints",
        "coturn's tools are not installed (apt-get install coturn)",
    ) {
        return;
    }
    // Loopback peers are refused by default; this test's peer is on 127.0.0.1.
    let server =
        TestServer::with(|c| c.turn.allowed_peer_ranges = vec!["127.0.0.0/8".into()]).await;
    let turn = server
        .turn
        .clone()
        .expect("TURN runs when ice.turn_secret is set");
    let (status, body) = http_get(
        server.addr,
        "/api/v1/ice-servers",
        Some(&server.token("alice")),
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let username = v["iceServers"][1]["username"].as_str().unwrap().to_owned();
    let credential = v["iceServers"][1]["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let peer_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut peer = std::process::Command::new("/usr/bin/turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = turn.udp[0].port().to_string();
    let run = |password: String, messages: &'static str| {
        tokio::process::Command::new(uclient)
            .args([
                "-u",
                &username,
                "-w",
                &password,
                "-e",
                "127.0.0.1",
                "-r",
                &peer_port.to_string(),
            ])
            .args([
                "-p",
                &port,
                "-c",
                "-n",
                messages,
                "-m",
                "2",
                "-l",
                "400",
                "-z",
                "5",
                "127.0.0.1",
            ])
            .kill_on_drop(true)
            .output()
    };
    let out = tokio::time::timeout(Duration::from_secs(60), run(credential, "50"))
        .await
        .unwrap()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("tot_send_msgs=100") && text.contains("tot_recv_msgs=100"),
        "{text}"
    );
    assert!(text.contains("Total lost packets 0 "), "{text}");
    // A forged credential gets nothing relayed.
    let out = tokio::time::timeout(Duration::from_secs(60), run("forged".into(), "5"))
        .await
        .unwrap()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("tot_recv_msgs=10"),
        "forged credential relayed:\n{text}"
    );
    let _ = peer.kill();
    let _ = peer.wait();
    server.stop().await.unwrap();
}

/// `chorus turn` on a dedicated relay host checks TURN credentials only, so it starts without
/// any `[auth]` setting; `chorus serve` with the same settings refuses, naming the key.
#[tokio::test]
async fn chorus_turn_needs_no_jwt_settings_but_serve_does() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args = |command: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg(command);
        for set in [
            format!("server.listen={addr}"),
            "turn.udp_listen=127.0.0.1:0".into(),
            "turn.tcp_listen=127.0.0.1:0".into(),
            "turn.relay_ip=127.0.0.1".into(),
            "turn.static_users=u:p".into(),
            "sfu.enabled=false".into(),
            "log.level=warn".into(),
        ] {
            cmd.args(["--set", &set]);
        }
        cmd.env_remove("CHORUS_AUTH_SECRET")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd
    };

    let serve = args("serve").output().unwrap();
    assert_eq!(
        serve.status.code(),
        Some(2),
        "serve exits with the config code"
    );
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(stderr.contains("auth.secret"), "{stderr}");

    let mut turn = args("turn").spawn().unwrap();
    let mut health = None;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            health = Some(http_get(addr, "/health", None).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Workers start right after the HTTP listener: wait until all of them report their path.
    let cores = std::thread::available_parallelism().unwrap().get() as i64;
    let mut metrics = (0, String::new());
    for _ in 0..100 {
        metrics = http_get(addr, "/metrics", None).await;
        if workers_running(&metrics.1) == cores {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::process::Command::new("kill")
        .args(["-TERM", &turn.id().to_string()])
        .status()
        .unwrap();
    let status = turn.wait().unwrap();
    let (code, body) = health.expect("/health answered");
    assert_eq!(code, 200);
    assert!(body.contains(r#""status":"ok""#), "{body}");
    assert!(
        metrics.1.contains("chorus_turn_allocations_active 0"),
        "{}",
        metrics.1
    );
    assert_eq!(
        workers_running(&metrics.1),
        cores,
        "one worker per core, each counted under its relay path:\n{}",
        metrics.1
    );
    assert!(status.success(), "SIGTERM stops it cleanly: {status:?}");
}

/// Sum of `chorus_turn_workers{relay_io="..."}` over both paths.
fn workers_running(metrics: &str) -> i64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("chorus_turn_workers{relay_io="))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}
