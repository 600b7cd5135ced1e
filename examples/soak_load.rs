//! Load driver for `bench/soak.sh` (issue 10, item 9): a steady, moderate mix of everything a
//! Chorus node serves, with users continuously coming and going, against a running
//! `chorus serve` on 127.0.0.1.
//!
//! ```text
//! cargo run --release --example soak_load -- ADDR SECRET TURN_UDP SECONDS [options]
//!
//!   ADDR      host:port of the server's HTTP listener
//!   SECRET    the server's HS256 `auth.secret` (tokens are minted here)
//!   TURN_UDP  host:port of the server's TURN UDP listener
//!   SECONDS   how long new work is started; work in flight then finishes (at most ~1 min)
//!
//!   --calls N      1:1 call workers (default 3)
//!   --rooms N      room workers (default 2)
//!   --presence N   presence workers (default 4)
//! ```
//!
//! Each worker repeats one scenario, each time with fresh user ids, until SECONDS are up:
//! - **call**: two users connect; the caller `call:initiate`s, allocates a TURN relay with the
//!   credentials from the ack, the callee hears `call:incoming` and accepts (every fifth call
//!   rejects instead); `offer`, `answer` and `ice-candidate` are relayed both ways; both send
//!   chat messages in the call's conversation (acked after the durable commit, each delivered
//!   to the other as `message:new`) with `typing:start`/`stop`; then the caller ends the call
//!   (every fourth call the callee's socket drops first, without a close frame) and deletes
//!   its TURN allocation (`Refresh` with lifetime 0). About 6 s per call; every sixth call
//!   talks for a minute instead, past the ring timeout.
//! - **room**: a publisher joins a room and publishes Opus and VP8 through the SFU with a
//!   webrtc-rs peer (`testkit`), a subscriber joins and receives both; after 10 s a third user
//!   joins and publishes audio, and leaves 10 s later (both others renegotiate each time);
//!   the subscriber unsubscribes from the video and subscribes again; after 30 s everyone
//!   leaves (every other time the subscriber's sockets just drop). The subscriber must have
//!   received audio and video. Media: 50 audio and 25 video packets per second per publisher.
//! - **presence**: a user (from a pool of ten per worker, so users come back) connects,
//!   subscribes to the presence of the others in the pool, goes `busy`, `dnd`, pings, goes
//!   `online` again over 3-9 s, and disconnects (every third time by dropping the socket).
//!
//! Every 30 s it prints running totals to stderr; at the end one line to stdout:
//! `RESULT calls=.. rooms=.. presence=.. chat_acked=.. turn_allocations=.. media_packets=..
//! failures=..`. A failed iteration (a refusal, a missing event, a timeout: each iteration is
//! bounded) is printed with its reason and counted. Exit status: 0 when nothing failed, 1 when
//! something did, 2 on bad arguments.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use testkit::{Capture, Kind, Participant, WsClient};
use tokio::time::{Instant, sleep, timeout};
use turn::wire::{self, Builder, Class};

/// The longest one iteration may take before it counts as failed (and its sockets are dropped).
const ITERATION_LIMIT: Duration = Duration::from_secs(120);
/// How long a room iteration keeps its media flowing.
const ROOM_SECONDS: u64 = 30;

#[derive(Clone)]
struct Options {
    addr: SocketAddr,
    secret: String,
    turn: SocketAddr,
    seconds: u64,
    calls: usize,
    rooms: usize,
    presence: usize,
}

/// Running totals, shared by every worker.
#[derive(Default)]
struct Tally {
    calls: AtomicU64,
    rooms: AtomicU64,
    presence: AtomicU64,
    chat_acked: AtomicU64,
    turn_allocations: AtomicU64,
    media_packets: AtomicU64,
    failures: AtomicU64,
}

impl Tally {
    fn line(&self) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "calls={} rooms={} presence={} chat_acked={} turn_allocations={} media_packets={} failures={}",
            n(&self.calls),
            n(&self.rooms),
            n(&self.presence),
            n(&self.chat_acked),
            n(&self.turn_allocations),
            n(&self.media_packets),
            n(&self.failures)
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Call,
    Room,
    Presence,
}

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "{e}\nusage: soak_load ADDR SECRET TURN_UDP SECONDS [--calls N] [--rooms N] [--presence N]"
            );
            return ExitCode::from(2);
        }
    };
    // Two threads: enough for the webrtc-rs peers and signaling, and the rest of the machine
    // stays with the server under test.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(opts))
}

async fn run(opts: Options) -> ExitCode {
    let tally = Arc::new(Tally::default());
    let end = Instant::now() + Duration::from_secs(opts.seconds);
    let mut workers = Vec::new();
    let plan = [
        (Scenario::Call, opts.calls),
        (Scenario::Room, opts.rooms),
        (Scenario::Presence, opts.presence),
    ];
    for (scenario, count) in plan {
        for w in 0..count {
            workers.push(tokio::spawn(worker(
                scenario,
                w,
                opts.clone(),
                tally.clone(),
                end,
            )));
        }
    }
    let progress = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                sleep(Duration::from_secs(30)).await;
                eprintln!("[{:>5}s] {}", start.elapsed().as_secs(), tally.line());
            }
        })
    };
    for w in workers {
        let _ = w.await;
    }
    progress.abort();
    println!("RESULT {}", tally.line());
    if tally.failures.load(Ordering::Relaxed) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Repeats `scenario` until `end`, each iteration in its own task so a panic in a testkit
/// helper (they panic on an unexpected answer) is counted, not fatal.
async fn worker(scenario: Scenario, w: usize, opts: Options, tally: Arc<Tally>, end: Instant) {
    // Stagger the workers so their iterations do not start in lockstep.
    sleep(Duration::from_millis(700 * w as u64)).await;
    let mut i = 0u64;
    while Instant::now() < end {
        let (o, t) = (opts.clone(), tally.clone());
        let task = tokio::spawn(async move {
            match scenario {
                Scenario::Call => call(&o, &t, w, i).await,
                Scenario::Room => room(&o, &t, w, i).await,
                Scenario::Presence => presence(&o, w, i).await,
            }
        });
        let abort = task.abort_handle();
        let outcome = match timeout(ITERATION_LIMIT, task).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(panic)) => Err(format!("panicked: {panic}")),
            Err(_) => {
                abort.abort();
                Err(format!("did not finish within {ITERATION_LIMIT:?}"))
            }
        };
        match outcome {
            Ok(()) => {
                let counter = match scenario {
                    Scenario::Call => &tally.calls,
                    Scenario::Room => &tally.rooms,
                    Scenario::Presence => &tally.presence,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tally.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("FAILED {scenario:?} worker {w} iteration {i}: {e}");
            }
        }
        i += 1;
        sleep(Duration::from_secs(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 1:1 calls with chat and a TURN allocation.

/// A minimal SDP: P2P `offer`/`answer` are relayed between the two users, not parsed.
const P2P_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

async fn call(opts: &Options, tally: &Tally, w: usize, i: u64) -> Result<(), String> {
    let (ua, ub) = (format!("call{w}-{i}-a"), format!("call{w}-{i}-b"));
    let mut a = connect(opts, &ua, None).await?;
    let mut b = connect(opts, &ub, None).await?;
    let initiated = a
        .request(
            "call:initiate",
            json!({"conversationId": format!("soak-{w}-{i}"), "callType": "video",
                   "participants": [ub]}),
        )
        .await
        .map_err(|r| format!("call:initiate refused: {}", r.body))?;
    let call_id = initiated["callId"]
        .as_str()
        .ok_or("call:initiate ack without callId")?
        .to_owned();
    let mut relay = TurnClient::from_ice_servers(opts.turn, &initiated["iceServers"]).await?;
    relay.allocate().await?;
    tally.turn_allocations.fetch_add(1, Ordering::Relaxed);

    let incoming = b.expect("call:incoming").await;
    if incoming["callId"] != call_id.as_str() {
        return Err(format!("call:incoming for another call: {incoming}"));
    }
    if i % 5 == 4 {
        b.request("call:reject", json!({"callId": call_id}))
            .await
            .map_err(|r| format!("call:reject refused: {}", r.body))?;
        a.expect("call:ended").await;
        relay.release().await?;
        a.close().await;
        b.close().await;
        return Ok(());
    }
    b.request("call:accept", json!({"callId": call_id}))
        .await
        .map_err(|r| format!("call:accept refused: {}", r.body))?;
    a.expect("call:accepted").await;

    let offer = json!({"callId": call_id, "targetUserId": ub,
                       "offer": {"type": "offer", "sdp": P2P_SDP}});
    a.request("offer", offer)
        .await
        .map_err(|r| format!("offer refused: {}", r.body))?;
    b.expect("offer").await;
    let answer = json!({"callId": call_id, "targetUserId": ua,
                        "answer": {"type": "answer", "sdp": P2P_SDP}});
    b.request("answer", answer)
        .await
        .map_err(|r| format!("answer refused: {}", r.body))?;
    a.expect("answer").await;
    candidate(&mut a, &mut b, &call_id, &ub).await?;
    candidate(&mut b, &mut a, &call_id, &ua).await?;

    // Chat in the call's conversation: five messages each way.
    // Every sixth call talks for about a minute, past the ring timeout (45 s), so its
    // maximum-duration deadline gets queued; the others for about 5 s.
    let gap = Duration::from_secs(if i % 6 == 5 { 12 } else { 1 });
    for n in 0..5 {
        let tag = format!("{w}-{i}-{n}");
        chat(&mut a, &mut b, &call_id, &format!("a-{tag}"), tally).await?;
        chat(&mut b, &mut a, &call_id, &format!("b-{tag}"), tally).await?;
        sleep(gap).await;
    }
    // Drop what piled up (typing events) so the buffers stay small.
    a.events.clear();
    b.events.clear();

    if i % 4 == 3 {
        // The callee's socket just goes away; the call outlives it for the reconnect grace.
        drop(b);
        a.request("call:end", json!({"callId": call_id}))
            .await
            .map_err(|r| format!("call:end refused: {}", r.body))?;
        a.expect("call:ended").await;
    } else {
        a.request("call:end", json!({"callId": call_id}))
            .await
            .map_err(|r| format!("call:end refused: {}", r.body))?;
        a.expect("call:ended").await;
        b.expect("call:ended").await;
        b.close().await;
    }
    relay.release().await?;
    a.close().await;
    Ok(())
}

/// Relays one ICE candidate from `from` to `to` (user `target`).
async fn candidate(
    from: &mut WsClient,
    to: &mut WsClient,
    call_id: &str,
    target: &str,
) -> Result<(), String> {
    let candidate = json!({"callId": call_id, "targetUserId": target,
        "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
                      "sdpMid": "0", "sdpMLineIndex": 0}});
    from.request("ice-candidate", candidate)
        .await
        .map_err(|r| format!("ice-candidate refused: {}", r.body))?;
    to.expect("ice-candidate").await;
    Ok(())
}

/// One chat message from `from`, typing around it; acked after its durable commit, and
/// delivered to `to` as `message:new`.
async fn chat(
    from: &mut WsClient,
    to: &mut WsClient,
    call_id: &str,
    temp_id: &str,
    tally: &Tally,
) -> Result<(), String> {
    from.emit("typing:start", json!({"conversationId": call_id}))
        .await;
    let ack = from
        .request(
            "message:send",
            json!({"conversationId": call_id, "type": "text", "tempId": temp_id,
                   "content": format!("soak message {temp_id}: {}", "x".repeat(60))}),
        )
        .await
        .map_err(|r| format!("message:send refused: {}", r.body))?;
    if ack["sequenceNumber"].as_u64().is_none() {
        return Err(format!("message:ack without sequenceNumber: {ack}"));
    }
    tally.chat_acked.fetch_add(1, Ordering::Relaxed);
    from.emit("typing:stop", json!({"conversationId": call_id}))
        .await;
    to.expect("message:new").await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rooms with media through the SFU.

async fn room(opts: &Options, tally: &Tally, w: usize, i: u64) -> Result<(), String> {
    let name = format!("soak{w}-{i}");
    let join = |user: String| {
        let token = mint(&opts.secret, &user, Some(&name));
        let (addr, name) = (opts.addr, name.clone());
        async move { Participant::join(addr, &token, &name, Capture::CountsOnly).await }
    };
    let mut publisher = join(format!("{name}-pub")).await?;
    let mic = publisher
        .publish(Kind::Audio, "mic", 0xA000 + w as u32)
        .await;
    let cam = publisher
        .publish(Kind::Video, "cam", 0xB000 + w as u32)
        .await;
    publisher
        .connect_media()
        .await
        .map_err(|r| format!("publisher's offer refused: {}", r.body))?;
    let mut subscriber = join(format!("{name}-sub")).await?;
    subscriber
        .connect_media()
        .await
        .map_err(|r| format!("subscriber's offer refused: {}", r.body))?;

    let mut guest: Option<(Participant, testkit::LocalTrack)> = None;
    let mut guest_came = false;
    let mut video_track: Option<String> = None;
    let start = Instant::now();
    let mut tick = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    while start.elapsed() < Duration::from_secs(ROOM_SECONDS) {
        ticker.tick().await;
        tick += 1;
        mic.send_next().await;
        if tick.is_multiple_of(2) {
            cam.send_next().await;
        }
        if let Some((_, guest_mic)) = &guest {
            guest_mic.send_next().await;
        }
        if !tick.is_multiple_of(10) {
            continue;
        }
        // Five times a second: read signaling and answer the SFU's offers.
        for p in [
            Some(&mut publisher),
            Some(&mut subscriber),
            guest.as_mut().map(|g| &mut g.0),
        ]
        .into_iter()
        .flatten()
        {
            answer_offers(p).await;
        }
        if video_track.is_none() {
            video_track = subscriber
                .signal
                .events
                .iter()
                .find(|(n, v)| n == "track:published" && v["kind"] == "video")
                .and_then(|(_, v)| v["trackId"].as_str().map(str::to_owned));
        }
        let at = start.elapsed().as_secs();
        if (10..20).contains(&at) && !guest_came {
            guest_came = true;
            let mut g = join(format!("{name}-guest")).await?;
            let g_mic = g.publish(Kind::Audio, "mic", 0xC000 + w as u32).await;
            g.connect_media()
                .await
                .map_err(|r| format!("guest's offer refused: {}", r.body))?;
            guest = Some((g, g_mic));
        } else if at >= 20 && guest.is_some() {
            let (g, _) = guest.take().expect("checked above");
            g.leave().await;
        }
        if let Some(track) = &video_track {
            let toggle = match tick {
                750 => Some("track:unsubscribe"),
                850 => Some("track:subscribe"),
                _ => None,
            };
            if let Some(event) = toggle {
                subscriber
                    .signal
                    .request(event, json!({"trackId": track, "callId": subscriber.space}))
                    .await
                    .map_err(|r| format!("{event} refused: {}", r.body))?;
            }
        }
    }
    if let Some((g, _)) = guest.take() {
        g.leave().await;
    }
    let counts = subscriber.peer.counts();
    let kinds = |k: Kind| {
        counts
            .values()
            .filter(|c| c.kind == k)
            .map(|c| c.packets)
            .sum::<u64>()
    };
    let (audio, video) = (kinds(Kind::Audio), kinds(Kind::Video));
    tally
        .media_packets
        .fetch_add(audio + video, Ordering::Relaxed);
    if audio == 0 || video == 0 {
        return Err(format!(
            "the subscriber received {audio} audio and {video} video packets"
        ));
    }
    if i % 2 == 1 {
        // Sockets just go away: no room:leave, no close frame, no DTLS close.
        drop(subscriber);
    } else {
        subscriber.leave().await;
    }
    publisher.leave().await;
    Ok(())
}

/// Reads what signaling has for `p` without waiting, and answers every SFU offer in it.
async fn answer_offers(p: &mut Participant) {
    while let Ok(true) = timeout(Duration::from_millis(1), p.signal.pump()).await {}
    while p
        .signal
        .events
        .iter()
        .any(|(n, v)| n == "offer" && v["from"] == "sfu")
    {
        p.answer_server_offer().await;
    }
    // Keep track announcements (the subscriber looks for the video one); drop the rest.
    p.signal.events.retain(|(n, _)| n == "track:published");
}

// ---------------------------------------------------------------------------------------------
// Presence churn.

async fn presence(opts: &Options, w: usize, i: u64) -> Result<(), String> {
    const POOL: u64 = 10;
    let user = format!("pres{w}-{}", i % POOL);
    let others: Vec<String> = (0..POOL)
        .filter(|k| *k != i % POOL)
        .map(|k| format!("pres{w}-{k}"))
        .collect();
    let mut ws = connect(opts, &user, None).await?;
    let ack = ws
        .request("presence:subscribe", json!({"userIds": others}))
        .await
        .map_err(|r| format!("presence:subscribe refused: {}", r.body))?;
    if ack["presences"].as_array().map(Vec::len) != Some(others.len()) {
        return Err(format!("presence:subscribe ack: {ack}"));
    }
    let pause = Duration::from_millis(1000 + 500 * (i % 5));
    for status in ["busy", "dnd"] {
        ws.request(
            "user:status:update",
            json!({"status": status, "text": "soak"}),
        )
        .await
        .map_err(|r| format!("user:status:update {status} refused: {}", r.body))?;
        sleep(pause).await;
    }
    ws.request("activity:ping", json!({}))
        .await
        .map_err(|r| format!("activity:ping refused: {}", r.body))?;
    ws.request("user:status:update", json!({"status": "online"}))
        .await
        .map_err(|r| format!("user:status:update online refused: {}", r.body))?;
    sleep(pause).await;
    if i % 3 == 2 {
        drop(ws);
    } else {
        ws.close().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn connect(opts: &Options, user: &str, room: Option<&str>) -> Result<WsClient, String> {
    WsClient::connect(opts.addr, &mint(&opts.secret, user, room))
        .await
        .map_err(|e| format!("{user} could not connect: {e}"))
}

fn mint(secret: &str, user: &str, room: Option<&str>) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
        + 3600;
    let mut claims = json!({"sub": user, "name": format!("{user} (soak)"), "exp": exp});
    if let Some(room) = room {
        claims["room"] = json!(room);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

/// One TURN allocation over UDP with the REST credentials a call's `iceServers` carry.
struct TurnClient {
    socket: tokio::net::UdpSocket,
    server: SocketAddr,
    user: String,
    password: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    txn: u32,
}

impl TurnClient {
    async fn from_ice_servers(server: SocketAddr, ice: &Value) -> Result<TurnClient, String> {
        let entry = ice
            .as_array()
            .and_then(|list| list.iter().find(|s| s["username"].is_string()))
            .ok_or_else(|| format!("no TURN entry in iceServers: {ice}"))?;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        Ok(TurnClient {
            socket,
            server,
            user: entry["username"].as_str().unwrap_or_default().to_owned(),
            password: entry["credential"].as_str().unwrap_or_default().to_owned(),
            realm: Vec::new(),
            nonce: Vec::new(),
            txn: 0,
        })
    }

    /// Allocate: the unauthenticated request draws a 401 with realm and nonce, then the signed
    /// one must succeed.
    async fn allocate(&mut self) -> Result<(), String> {
        let transport = (
            wire::ATTR_REQUESTED_TRANSPORT,
            vec![wire::PROTO_UDP, 0, 0, 0],
        );
        let challenge = self
            .request(
                wire::METHOD_ALLOCATE,
                std::slice::from_ref(&transport),
                false,
            )
            .await?;
        self.realm = attr(&challenge, wire::ATTR_REALM).ok_or("401 without REALM")?;
        self.nonce = attr(&challenge, wire::ATTR_NONCE).ok_or("401 without NONCE")?;
        let done = self
            .request(wire::METHOD_ALLOCATE, &[transport], true)
            .await?;
        success(&done, "Allocate")
    }

    /// Refresh with lifetime 0: the allocation is deleted now.
    async fn release(&mut self) -> Result<(), String> {
        let lifetime = (wire::ATTR_LIFETIME, 0u32.to_be_bytes().to_vec());
        let done = self
            .request(wire::METHOD_REFRESH, &[lifetime], true)
            .await?;
        success(&done, "Refresh(0)")
    }

    async fn request(
        &mut self,
        method: u16,
        attrs: &[(u16, Vec<u8>)],
        signed: bool,
    ) -> Result<Vec<u8>, String> {
        self.txn += 1;
        let mut txid = [7u8; 12];
        txid[..4].copy_from_slice(&self.txn.to_be_bytes());
        let mut buf = Vec::new();
        let mut b = Builder::new(&mut buf, method, Class::Request, txid);
        for (t, v) in attrs {
            b.attr(*t, v);
        }
        if signed {
            let key = turn::auth::long_term_key(
                self.user.as_bytes(),
                &self.realm,
                self.password.as_bytes(),
            );
            b.attr(wire::ATTR_USERNAME, self.user.as_bytes())
                .attr(wire::ATTR_REALM, &self.realm)
                .attr(wire::ATTR_NONCE, &self.nonce)
                .integrity(&key);
        }
        b.fingerprint();
        // UDP may drop a datagram even on loopback under load: three tries.
        for _ in 0..3 {
            self.socket
                .send_to(&buf, self.server)
                .await
                .map_err(|e| format!("send to TURN: {e}"))?;
            let mut reply = vec![0u8; 2048];
            let wait = async {
                loop {
                    let (n, _) = self.socket.recv_from(&mut reply).await?;
                    if n >= 20 && reply[8..20] == txid {
                        return Ok::<usize, std::io::Error>(n);
                    }
                }
            };
            if let Ok(n) = timeout(Duration::from_secs(2), wait).await {
                let n = n.map_err(|e| format!("recv from TURN: {e}"))?;
                reply.truncate(n);
                return Ok(reply);
            }
        }
        Err(format!("no TURN answer to method {method:#x}"))
    }
}

fn success(reply: &[u8], what: &str) -> Result<(), String> {
    match wire::classify(reply) {
        Ok(wire::Packet::Stun(m)) if m.class == Class::Success => Ok(()),
        _ => {
            let code = attr(reply, wire::ATTR_ERROR_CODE)
                .map(|v| u16::from(v[2] % 8) * 100 + u16::from(v[3]));
            Err(format!("TURN {what} failed: error {code:?}"))
        }
    }
}

/// The value of the first attribute of type `ty` in a STUN message.
fn attr(raw: &[u8], ty: u16) -> Option<Vec<u8>> {
    let mut off = 20;
    while off + 4 <= raw.len() {
        let t = u16::from_be_bytes([raw[off], raw[off + 1]]);
        let l = usize::from(u16::from_be_bytes([raw[off + 2], raw[off + 3]]));
        if t == ty {
            return raw.get(off + 4..off + 4 + l).map(<[u8]>::to_vec);
        }
        off += 4 + l.div_ceil(4) * 4;
    }
    None
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let positional: Vec<&String> = args.iter().take_while(|a| !a.starts_with("--")).collect();
    let [addr, secret, turn, seconds] = positional[..] else {
        return Err("ADDR SECRET TURN_UDP SECONDS are required".into());
    };
    let mut opts = Options {
        addr: addr.parse().map_err(|e| format!("ADDR: {e}"))?,
        secret: secret.clone(),
        turn: turn.parse().map_err(|e| format!("TURN_UDP: {e}"))?,
        seconds: seconds.parse().map_err(|e| format!("SECONDS: {e}"))?,
        calls: 3,
        rooms: 2,
        presence: 4,
    };
    let mut rest = args[4..].iter();
    while let Some(flag) = rest.next() {
        let value: usize = rest
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--calls" => opts.calls = value,
            "--rooms" => opts.rooms = value,
            "--presence" => opts.presence = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(opts)
}
