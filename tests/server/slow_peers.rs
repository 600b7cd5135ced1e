//! Clients that stop reading cannot pin server memory, against the real `chorus` binary.
//!
//! Slow peers on both transports (a small receive buffer, never read after the handshake) are
//! each in a call with a pusher that relays them large offers. The server must drop them for
//! falling behind, reset their sockets within `limits.write_timeout`, and give the memory back:
//! its VmRSS returns to the baseline while the peers' sockets are still open on our side. A
//! reading client in another call gets every one of its offers meanwhile.
//!
//! The same holds for a storm of ordinary connections: thousands of idle clients that all
//! leave must not leave the server's RSS at its peak.

use crate::client::{Client, WAIT, WsClient};
use crate::server::{SECRET, mint, scratch_dir};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use signaling::auth::Grants;
use signaling::session::SessionLimits;
use signaling::transport::{memory, socketio};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

/// `limits.write_timeout` for this server: short, so the test is quick.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Scheduling slack on a loaded machine, on top of the write timeout.
const SLACK: Duration = Duration::from_secs(8);
/// Slow peers per transport.
const PEERS: usize = 2;
/// Offers pushed to each slow peer, of about [`PAD`] bytes each: 36 MB per peer, far beyond any
/// queue the server should keep for it.
const ROUNDS: usize = 600;
const PAD: usize = 60_000;
/// How far above its baseline the server's RSS may stay once the slow peers are gone (it held
/// about 120 MB more before the fix). Not less: on a loaded machine more of the runtime's
/// threads wake and each keeps a malloc arena of its own (4.4 MB above baseline was seen once).
const MARGIN_KB: u64 = 8 * 1024;

/// The two tests here measure a server's RSS and time its resets; run at once, each one's
/// 2,000 connections or 36 MB pushes skew the other's figures and deadlines. They take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn peers_that_stop_reading_are_reset_and_their_memory_returns() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let server = Chorus::start();
    server.wait_listening().await;
    let mut pusher = server.client("pusher").await;

    // Warm up with a reading client under the same load, so the baseline includes what normal
    // traffic of this size keeps (allocator arenas, buffers).
    let mut warm = Reader::start(&server, &mut pusher, "warm").await;
    for round in 0..100 {
        offer(&mut pusher, &warm.call, "warm", PAD).await;
        if round % 25 == 24 {
            barrier(&mut pusher).await;
        }
    }
    assert_eq!(
        warm.finish(100).await,
        100,
        "the warm-up reader gets every offer"
    );
    let baseline = server.rss_kb();

    let mut slow = Vec::new();
    for i in 0..PEERS {
        slow.push(SlowPeer::ws(&server, &mut pusher, &format!("slow-ws-{i}")).await);
        slow.push(SlowPeer::socketio(&server, &mut pusher, &format!("slow-sio-{i}")).await);
    }
    for _ in &slow {
        let accepted = pusher.expect("call:accepted").await;
        assert!(
            slow.iter().any(|p| p.call == accepted["callId"]),
            "{accepted}"
        );
    }
    let mut watcher = Reader::start(&server, &mut pusher, "watcher").await;

    let sampler = server.sample_rss();
    for round in 0..ROUNDS {
        for peer in &slow {
            offer(&mut pusher, &peer.call, &peer.user, PAD).await;
        }
        offer(&mut pusher, &watcher.call, "watcher", 100).await;
        if round % 25 == 24 {
            barrier(&mut pusher).await;
        }
    }
    let pushed = Instant::now();
    let others = watcher.finish(ROUNDS).await;

    // The server resets every slow peer within the write timeout: neither end of its connection
    // is left in the kernel's table (ours is closed by the reset, the server's by linger 0).
    let deadline = pushed + WRITE_TIMEOUT + SLACK;
    let mut open: Vec<u16> = slow.iter().map(|p| p.port).collect();
    while !open.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open.retain(|port| tcp_connection_exists(*port, server.addr.port()));
    }
    let closed_after = pushed.elapsed();
    let peak = sampler.stop().await;
    // Measured while the peers' sockets are still open here: the server alone must let go. It
    // gives freed memory back within a few seconds (`signaling::transport::memory`).
    let settled = Instant::now() + memory::MAX_DELAY;
    let mut after = server.rss_kb();
    while after > baseline + MARGIN_KB && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = server.rss_kb();
    }
    eprintln!(
        "server VmRSS: baseline {baseline} kB, peak while pushing {peak} kB, after {after} kB; \
         slow peers closed {closed_after:?} after the last push; watcher got {others}/{ROUNDS}"
    );

    assert_eq!(
        others, ROUNDS,
        "a reading client gets all its events meanwhile"
    );
    let stuck: Vec<&str> = slow
        .iter()
        .filter(|p| open.contains(&p.port))
        .map(|p| p.user.as_str())
        .collect();
    let states: Vec<String> = open
        .iter()
        .flat_map(|port| tcp_states(*port, server.addr.port()))
        .collect();
    assert!(
        open.is_empty(),
        "slow peers {stuck:?} (ports {open:?}) still connected {closed_after:?} after the push \
         (write timeout {WRITE_TIMEOUT:?}); sockets (local remote state send-queue:recv-queue): \
         {states:?}"
    );
    // While they were stuck, each held no more than its limits allow (twice, for what the
    // allocator and the pusher's traffic add).
    let budget = 2 * PEERS as u64 * held_at_most() / 1024;
    assert!(
        peak <= baseline + budget,
        "VmRSS peaked at {peak} kB with a baseline of {baseline} kB; the slow peers' limits \
         allow {budget} kB"
    );
    assert!(
        after <= baseline + MARGIN_KB,
        "VmRSS {after} kB after the slow peers were dropped; baseline {baseline} kB"
    );
    drop(slow);
    // The server is fine afterwards and stops cleanly.
    barrier(&mut pusher).await;
    server.stop();
}

/// Connections of the storm; about 15 kB each on the debug build, so about 30 MB in all.
const STORM: usize = 2000;

#[tokio::test]
async fn a_storm_of_connections_that_leave_gives_its_memory_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let cap = (STORM + 100).to_string();
    let server = Chorus::start_with(&[
        ("CHORUS_SERVER_MAX_CONNECTIONS", &cap),
        ("CHORUS_SERVER_MAX_CONNECTIONS_PER_IP", &cap),
        ("CHORUS_SERVER_MAX_RAW_CONNECTIONS_PER_IP", &cap),
        // The storm's clients vanish without a close frame, which parks their sessions for
        // `limits.resume_grace` (ADR 0079); this test is about what a connection that is gone
        // gives back, so they end at once.
        ("CHORUS_LIMITS_RESUME_GRACE", "0s"),
    ]);
    server.wait_listening().await;
    // A first, smaller storm warms the allocator's arenas and the runtime's threads.
    drop(storm(&server, "warm", STORM / 4).await);
    tokio::time::sleep(memory::MAX_DELAY + Duration::from_secs(1)).await;
    let baseline = server.rss_kb();

    let held = storm(&server, "storm", STORM).await;
    let peak = server.rss_kb();
    drop(held);
    // Every close counts; each CLOSES_PER_TRIM of them asks for a trim that runs at most
    // MAX_DELAY later.
    let settled = Instant::now() + memory::MAX_DELAY + SLACK;
    let mut after = server.rss_kb();
    while after > baseline + MARGIN_KB && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = server.rss_kb();
    }
    eprintln!(
        "server VmRSS: baseline {baseline} kB, {STORM} connections {peak} kB, after they left \
         {after} kB"
    );
    assert!(
        peak > baseline + 3 * MARGIN_KB,
        "the storm should cost memory: {peak} kB held against a baseline of {baseline} kB"
    );
    assert!(
        after <= baseline + MARGIN_KB,
        "VmRSS {after} kB after {STORM} connections left; baseline {baseline} kB, peak {peak} kB"
    );
    let mut check = server.client("after-storm").await;
    barrier(&mut check).await;
    server.stop();
}

/// `n` authenticated raw WebSocket clients of distinct users, each answered once.
async fn storm(server: &Chorus, prefix: &str, n: usize) -> Vec<Client> {
    let mut held = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(100) {
        let joins = (batch * 100..n.min(batch * 100 + 100)).map(|i| {
            let user = format!("{prefix}-{i}");
            async move {
                let mut client = server.client(&user).await;
                barrier(&mut client).await;
                client
            }
        });
        held.extend(futures_util::future::join_all(joins).await);
    }
    held
}

/// Bytes one slow peer of each transport may hold under the default limits: its outbox, and
/// for Socket.IO socketioxide's packet buffer, with a relayed offer of up to `max_frame_bytes`
/// per packet (and one frame being written).
fn held_at_most() -> u64 {
    let limits = SessionLimits::from_config(&config::Config::default());
    let frame = limits.max_frame_bytes as u64;
    let ws = limits.outbound_queue_bytes as u64 + frame;
    let sio = ws + socketio::buffered_packets(&limits) as u64 * frame;
    ws + sio
}

/// A `chorus serve` child process with a short write timeout.
struct Chorus {
    child: Child,
    addr: SocketAddr,
}

impl Chorus {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Started with these `CHORUS_*` variables on top of the defaults above.
    fn start_with(vars: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--data-dir")
            .arg(scratch_dir())
            .env("CHORUS_AUTH_SECRET", SECRET)
            .env("CHORUS_LOG_LEVEL", "error")
            .env("CHORUS_LIMITS_EVENTS_PER_SECOND", "100000")
            .env("CHORUS_LIMITS_EVENT_BURST", "100000")
            .env("CHORUS_LIMITS_MAX_CALLS_PER_USER", "20")
            .env("CHORUS_LIMITS_WRITE_TIMEOUT", "2s")
            .env("CHORUS_LIMITS_CLOSE_TIMEOUT", "1s")
            .env("CHORUS_SFU_ENABLED", "false")
            .env("CHORUS_TURN_ENABLED", "false")
            .envs(vars.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chorus binary starts");
        Self { child, addr }
    }

    async fn wait_listening(&self) {
        for _ in 0..400 {
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("chorus did not listen on {}", self.addr);
    }

    async fn client(&self, user: &str) -> Client {
        Client::Ws(WsClient::connect(self.addr, &token(user)).await.unwrap())
    }

    fn rss_kb(&self) -> u64 {
        rss_kb(self.child.id())
    }

    /// Samples VmRSS every 50 ms until stopped; the peak comes back.
    fn sample_rss(&self) -> Sampler {
        let pid = self.child.id();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(rss_kb(pid));
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Sampler { stop, task }
    }

    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop exits 0: {status:?}");
    }
}

impl Drop for Chorus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl Sampler {
    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Whether any TCP connection on loopback has `port` at either end (`/proc/net/tcp`).
/// Whether the connection between the client port `port` and the server's port `server` is still
/// in the kernel's table, at either end. Both ports are matched: tests running beside this one
/// reuse ephemeral ports, and a later connection of theirs on `port` is not the slow peer's.
fn tcp_connection_exists(port: u16, server: u16) -> bool {
    !tcp_states(port, server).is_empty()
}

/// The `/proc/net/tcp` rows of that connection: local, remote, state (hex, `01` established,
/// `08` close-wait, `04` fin-wait-1, `05` fin-wait-2, `06` time-wait) and queue sizes.
fn tcp_states(port: u16, server: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let (ours, theirs) = (format!(":{port:04X}"), format!(":{server:04X}"));
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let pair = f.len() > 4
                && ((f[1].ends_with(&ours) && f[2].ends_with(&theirs))
                    || (f[1].ends_with(&theirs) && f[2].ends_with(&ours)));
            pair.then(|| format!("{} {} {} {}", f[1], f[2], f[3], f[4]))
        })
        .collect()
}

fn token(user: &str) -> String {
    mint(user, Grants::default(), Duration::from_secs(600))
}

/// Calls `callee` from `pusher`; returns the call id.
async fn call(pusher: &mut Client, callee: &str) -> String {
    let ack = pusher.initiate("video", &[callee]).await;
    ack["callId"].as_str().expect("a call id").to_owned()
}

/// Relays an offer of about `size` bytes to `target` in `call`, without waiting for an ack.
async fn offer(pusher: &mut Client, call: &str, target: &str, size: usize) {
    let sdp = "x".repeat(size);
    pusher
        .emit(
            "offer",
            json!({"callId": call, "targetUserId": target, "offer": {"type": "offer", "sdp": sdp}}),
        )
        .await;
}

/// Waits until the server has handled everything `pusher` sent before (and reads what it got).
async fn barrier(pusher: &mut Client) {
    pusher
        .request("activity:ping", json!({}))
        .await
        .expect("the pusher is served");
}

/// A client that never reads after its handshake; its receive buffer is small, so the server's
/// writes to it block almost at once.
struct SlowPeer {
    user: String,
    call: String,
    /// Its local port: what identifies the connection in `/proc/net/tcp`.
    port: u16,
    _ws: WebSocketStream<TcpStream>,
}

impl SlowPeer {
    async fn ws(server: &Chorus, pusher: &mut Client, user: &str) -> Self {
        let url = format!("ws://{}/ws?access_token={}", server.addr, token(user));
        let (mut ws, port) = handshake(server.addr, &url).await;
        let call = call(pusher, user).await;
        let accept = json!({"event": "call:accept", "data": {"callId": call}});
        ws.send(Message::Text(accept.to_string().into()))
            .await
            .unwrap();
        Self {
            user: user.into(),
            call,
            port,
            _ws: ws,
        }
    }

    async fn socketio(server: &Chorus, pusher: &mut Client, user: &str) -> Self {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        let (mut ws, port) = handshake(server.addr, &url).await;
        let open = next_text(&mut ws).await;
        assert!(open.starts_with('0'), "engine.io open packet: {open}");
        let connect = format!("40{}", json!({"token": token(user)}));
        ws.send(Message::Text(connect.into())).await.unwrap();
        loop {
            match next_text(&mut ws).await.as_str() {
                // Engine.IO pings once right away; the next comes after the test is over.
                "2" => ws.send(Message::Text("3".into())).await.unwrap(),
                connected if connected.starts_with("40{") => break,
                other => panic!("socket.io connect: {other}"),
            }
        }
        let call = call(pusher, user).await;
        let accept = format!("42{}", json!(["call:accept", {"callId": call}]));
        ws.send(Message::Text(accept.into())).await.unwrap();
        Self {
            user: user.into(),
            call,
            port,
            _ws: ws,
        }
    }
}

/// A WebSocket handshake over a socket with a small receive buffer.
async fn handshake(addr: SocketAddr, url: &str) -> (WebSocketStream<TcpStream>, u16) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let port = stream.local_addr().unwrap().port();
    let (ws, _) = client_async(url, stream)
        .await
        .expect("WebSocket handshake");
    (ws, port)
}

async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> String {
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    match next {
        Ok(Some(Ok(Message::Text(t)))) => t.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// A client that reads everything, in a call with the pusher; counts the offers it receives.
struct Reader {
    call: String,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    async fn start(server: &Chorus, pusher: &mut Client, user: &str) -> Self {
        let mut client = server.client(user).await;
        let call = call(pusher, user).await;
        client.expect("call:incoming").await;
        client
            .request("call:accept", json!({"callId": call}))
            .await
            .expect("accepted");
        pusher.expect("call:accepted").await;
        let Client::Ws(mut client) = client else {
            unreachable!("Chorus::client is raw WebSocket")
        };
        let received = Arc::new(AtomicUsize::new(0));
        let counted = received.clone();
        let task = tokio::spawn(async move {
            while client.pump().await {
                for (name, data) in client.events.drain(..) {
                    if name == "offer" && data["from"] == "pusher" {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Self {
            call,
            received,
            task,
        }
    }

    /// How many offers arrived, once `expected` did or [`WAIT`] passed without a new one.
    async fn finish(&mut self, expected: usize) -> usize {
        let mut last = (self.received.load(Ordering::Relaxed), Instant::now());
        loop {
            let now = self.received.load(Ordering::Relaxed);
            if now >= expected {
                break;
            }
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > WAIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.task.abort();
        self.received.load(Ordering::Relaxed)
    }
}
