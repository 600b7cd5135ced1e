//! Chat load client for `bench/chat.sh` (issue 5, item 9): drives a running `chorus serve` over
//! the raw WebSocket transport and measures `message:send` → ack latency with durable commit.
//!
//! ```text
//! cargo run --release --example chat_load -- ADDR SECRET [SCENARIO] [options]
//!
//!   ADDR      host:port of the server, e.g. 127.0.0.1:8080
//!   SECRET    the server's HS256 `auth.secret` (tokens are minted here)
//!   SCENARIO  one-conversation    1 conversation × 10 senders (the default)
//!             many-conversations  100 conversations × 1 sender
//!             many-senders        200 conversations × 2 senders (each message goes to the
//!                                 other sender as message:new): the throughput scenario
//!
//!   --conversations N   override the scenario's conversation count
//!   --senders N         override the senders per conversation
//!   --duration SECS     each sender sends for this long (default 20)
//!   --messages N        or: each sender sends exactly N messages (overrides --duration)
//!   --window N          messages in flight per sender (default 1: next send after the ack)
//!   --rate R            fixed total rate instead: R messages per second over all senders,
//!                       each sender on its own evenly spaced schedule (open loop: a send is
//!                       not held back by a missing ack), latency counted from the scheduled
//!                       time, so a server that falls behind shows it
//!   --content-chars N   length of each message (default 100)
//!   --threads N         client runtime threads (default 1, to leave the cores to the server)
//!   --no-history        skip the final history read-back
//! ```
//!
//! Setup: every sender opens one WebSocket; per conversation the first sender starts a call
//! (`call:initiate`) inviting the others, who accept (`call:accept`), which makes them all
//! members of the chat conversation `callId`. A conversation with one sender invites a user
//! who never connects. Then all senders start at once; each keeps `--window` messages in
//! flight. Latency is measured from just before the frame is written to the arrival of its ack
//! frame (`{"ack": id, ...}`), which the server sends only after the durable commit.
//!
//! At the end it checks, and prints, that: no send failed; each conversation's acked sequence
//! numbers are exactly 1..=n (gap-free, no duplicates) and increase per sender; every other
//! member connection received `message:new` for each message exactly once, and counts those
//! that arrived after a higher sequence number (live order, reported, and a failure with
//! `--strict-order`); and (unless
//! `--no-history`) `message:history` returns exactly the acked messages in sequence order.
//! The last line is machine-readable (`RESULT key=value ...`). Exit status: 0 when every check
//! passed, 1 when one failed, 2 on bad arguments or when the server cannot be reached.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any single frame the client is expecting before it counts an error.
const FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait, after the last ack, for the remaining `message:new` deliveries.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
struct Options {
    addr: String,
    secret: String,
    scenario: String,
    conversations: usize,
    senders: usize,
    duration: Duration,
    messages: Option<u64>,
    window: usize,
    content_chars: usize,
    threads: usize,
    history: bool,
    rate: Option<f64>,
    strict_order: bool,
}

fn usage() -> &'static str {
    "usage: chat_load ADDR SECRET [one-conversation|many-conversations|many-senders] \
     [--conversations N] [--senders N] [--duration SECS] [--messages N] [--window N] \
     [--rate R] [--content-chars N] [--threads N] [--no-history] [--strict-order]"
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut flags: HashMap<String, String> = HashMap::new();
    let mut history = true;
    let mut strict_order = false;
    while let Some(a) = args.next() {
        if a == "--no-history" {
            history = false;
        } else if a == "--strict-order" {
            strict_order = true;
        } else if a == "-h" || a == "--help" {
            return Err(usage().into());
        } else if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (
                    name.to_owned(),
                    args.next().ok_or(format!("--{name} needs a value"))?,
                ),
            };
            flags.insert(name, value);
        } else {
            positional.push(a);
        }
    }
    if positional.len() < 2 || positional.len() > 3 {
        return Err(usage().into());
    }
    let scenario = positional
        .get(2)
        .cloned()
        .unwrap_or_else(|| "one-conversation".into());
    let (mut conversations, mut senders) = match scenario.as_str() {
        "one-conversation" => (1, 10),
        "many-conversations" => (100, 1),
        "many-senders" => (200, 2),
        "custom" => (1, 1),
        other => return Err(format!("unknown scenario `{other}`\n{}", usage())),
    };
    let num = |name: &str| -> Result<Option<u64>, String> {
        flags
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("--{name}: `{v}` is not a number"))
            })
            .transpose()
    };
    for known in flags.keys() {
        if ![
            "conversations",
            "senders",
            "duration",
            "messages",
            "window",
            "content-chars",
            "threads",
            "rate",
        ]
        .contains(&known.as_str())
        {
            return Err(format!("unknown option --{known}\n{}", usage()));
        }
    }
    if let Some(n) = num("conversations")? {
        conversations = n as usize;
    }
    if let Some(n) = num("senders")? {
        senders = n as usize;
    }
    let window = num("window")?.unwrap_or(1) as usize;
    let threads = num("threads")?.unwrap_or(1) as usize;
    if conversations == 0 || senders == 0 || window == 0 || threads == 0 {
        return Err("--conversations, --senders, --window and --threads must be ≥ 1".into());
    }
    let rate = flags
        .get("rate")
        .map(|v| match v.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
            _ => Err(format!("--rate: `{v}` is not a positive number")),
        })
        .transpose()?;
    let messages = num("messages")?;
    if messages == Some(0) {
        return Err("--messages must be ≥ 1".into());
    }
    Ok(Options {
        addr: positional[0].clone(),
        secret: positional[1].clone(),
        scenario,
        conversations,
        senders,
        duration: Duration::from_secs(num("duration")?.unwrap_or(20)),
        messages,
        window,
        content_chars: num("content-chars")?.unwrap_or(100) as usize,
        threads,
        history,
        rate,
        strict_order,
    })
}

fn mint(secret: &str, user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": user, "name": format!("{user} (bench)"), "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

/// One sender: a user with one WebSocket, member of one conversation.
struct Conn {
    user: String,
    conv_index: usize,
    /// The conversation (call id) once setup made this user a member.
    conversation: String,
    ws: Ws,
    next_id: u64,
}

impl Conn {
    async fn connect(opts: &Options, user: String, conv_index: usize) -> Result<Self, String> {
        let token = mint(&opts.secret, &user);
        let url = format!("ws://{}/ws?access_token={token}", opts.addr);
        let (ws, _) = connect_async(url.as_str())
            .await
            .map_err(|e| format!("{user}: connect: {e}"))?;
        Ok(Self {
            user,
            conv_index,
            conversation: String::new(),
            ws,
            next_id: 1,
        })
    }

    async fn send(&mut self, event: &str, data: Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"event": event, "data": data, "id": id}).to_string();
        self.ws
            .send(Message::Text(frame.into()))
            .await
            .map_err(|e| format!("{}: send: {e}", self.user))?;
        Ok(id)
    }

    /// The next JSON text frame, or an error when the socket closes or stays silent too long.
    async fn next_frame(&mut self, timeout: Duration) -> Result<Value, String> {
        loop {
            let msg = tokio::time::timeout(timeout, self.ws.next())
                .await
                .map_err(|_| format!("{}: no frame within {timeout:?}", self.user))?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| format!("{}: bad JSON from server: {e}", self.user));
                }
                Some(Ok(Message::Close(c))) => {
                    return Err(format!("{}: server closed the socket: {c:?}", self.user));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("{}: read: {e}", self.user)),
                None => return Err(format!("{}: socket ended", self.user)),
            }
        }
    }

    /// Sends `event` and waits for its ack, skipping server events meanwhile.
    async fn request(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let id = self.send(event, data).await?;
        loop {
            let frame = self.next_frame(FRAME_TIMEOUT).await?;
            if frame.get("ack").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = frame.get("error") {
                    return Err(format!("{}: `{event}` refused: {err}", self.user));
                }
                return Ok(frame["data"].clone());
            }
        }
    }
}

/// What one sender saw during the run.
#[derive(Default)]
struct SenderReport {
    /// (sequence number, message id) per acked message, in send order.
    acked: Vec<(u64, String)>,
    /// Ack latency per acked message, in microseconds.
    latencies_us: Vec<u64>,
    /// `message:new` sequence numbers received on this connection, in arrival order.
    delivered: Vec<u64>,
    errors: Vec<String>,
    last_ack: Option<Instant>,
}

/// Sends until the deadline (or the message count): keeping `window` messages in flight, or on
/// a fixed schedule when `--rate` is given.
async fn run_sender(
    mut conn: Conn,
    opts: Arc<Options>,
    start: Arc<Barrier>,
    index: usize,
    total_senders: usize,
) -> (Conn, SenderReport) {
    let mut report = SenderReport::default();
    let mut sender = Sending {
        conversation: conn.conversation.clone(),
        padding: "x".repeat(opts.content_chars),
        in_flight: HashMap::with_capacity(opts.window),
        sent: 0,
    };
    start.wait().await;
    let begun = Instant::now();
    let deadline = begun + opts.duration;
    let may_send = |sent: u64| match opts.messages {
        Some(n) => sent < n,
        None => Instant::now() < deadline,
    };
    if let Some(rate) = opts.rate {
        // Evenly spaced, each sender offset so the senders interleave.
        let interval = Duration::from_secs_f64(total_senders as f64 / rate);
        let mut next = tokio::time::Instant::from_std(
            begun + interval.mul_f64(index as f64 / total_senders as f64),
        );
        loop {
            let sending = may_send(sender.sent);
            if !sending && sender.in_flight.is_empty() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next), if sending => {
                    if let Err(e) = sender.send(&mut conn, &opts, next.into_std()).await {
                        report.errors.push(e);
                        return (conn, report);
                    }
                    next += interval;
                }
                frame = conn.next_frame(FRAME_TIMEOUT) => match frame {
                    Ok(frame) => sender.receive(&frame, &conn.user, &mut report),
                    Err(e) => {
                        report.errors.push(e);
                        break;
                    }
                },
            }
        }
        return (conn, report);
    }
    loop {
        while sender.in_flight.len() < opts.window && may_send(sender.sent) {
            if let Err(e) = sender.send(&mut conn, &opts, Instant::now()).await {
                report.errors.push(e);
                return (conn, report);
            }
        }
        if sender.in_flight.is_empty() {
            break;
        }
        match conn.next_frame(FRAME_TIMEOUT).await {
            Ok(frame) => sender.receive(&frame, &conn.user, &mut report),
            Err(e) => {
                report.errors.push(e);
                break;
            }
        }
    }
    (conn, report)
}

/// One sender's state while sending.
struct Sending {
    conversation: String,
    padding: String,
    /// Ack id → (when the send was due, tempId).
    in_flight: HashMap<u64, (Instant, String)>,
    sent: u64,
}

impl Sending {
    /// Sends the next message; its latency will count from `due`.
    async fn send(&mut self, conn: &mut Conn, opts: &Options, due: Instant) -> Result<(), String> {
        let temp_id = format!("{}-{}", conn.user, self.sent);
        let mut content = format!("{} #{} ", conn.user, self.sent);
        content.push_str(&self.padding);
        content.truncate(opts.content_chars.max(1));
        let data = json!({"conversationId": self.conversation, "content": content,
                          "type": "text", "tempId": temp_id});
        let id = conn.send("message:send", data).await?;
        self.in_flight.insert(id, (due, temp_id));
        self.sent += 1;
        Ok(())
    }

    /// Takes an ack (or a `message:new`) off the wire.
    fn receive(&mut self, frame: &Value, user: &str, report: &mut SenderReport) {
        let Some(id) = frame.get("ack").and_then(Value::as_u64) else {
            note_event(frame, &self.conversation, report);
            return;
        };
        let now = Instant::now();
        let Some((at, temp_id)) = self.in_flight.remove(&id) else {
            report
                .errors
                .push(format!("{user}: ack for unknown id {id}"));
            return;
        };
        if let Some(err) = frame.get("error") {
            report
                .errors
                .push(format!("{user}: message:send refused: {err}"));
            return;
        }
        let data = &frame["data"];
        let seq = data["sequenceNumber"].as_u64();
        let message_id = data["messageId"].as_str();
        match (seq, message_id, data["tempId"].as_str()) {
            (Some(seq), Some(mid), Some(t)) if t == temp_id => {
                report.acked.push((seq, mid.to_owned()));
                report
                    .latencies_us
                    .push(now.duration_since(at).as_micros() as u64);
                report.last_ack = Some(now);
            }
            _ => report.errors.push(format!("{user}: malformed ack {frame}")),
        }
    }
}

/// Records `message:new` for our conversation; other events (call ringing, `message:ack`
/// echoes on the sending connection, ...) are ignored.
fn note_event(frame: &Value, conversation: &str, report: &mut SenderReport) {
    if frame["event"] == "message:new"
        && frame["data"]["conversationId"] == conversation
        && let Some(seq) = frame["data"]["sequenceNumber"].as_u64()
    {
        report.delivered.push(seq);
    }
}

/// Reads the rest of the `message:new` deliveries until `expected` have arrived.
async fn drain_deliveries(
    mut conn: Conn,
    expected: usize,
    mut report: SenderReport,
) -> (Conn, SenderReport) {
    let conversation = conn.conversation.clone();
    let until = Instant::now() + DELIVERY_GRACE;
    while report.delivered.len() < expected {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match conn.next_frame(left).await {
            Ok(frame) => note_event(&frame, &conversation, &mut report),
            Err(_) => break,
        }
    }
    (conn, report)
}

/// Every message of `conversation`, oldest first, via `message:history` pages.
async fn history(conn: &mut Conn, conversation: &str) -> Result<Vec<Value>, String> {
    let mut pages: Vec<Vec<Value>> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"conversationId": conversation, "limit": 100});
        if let Some(b) = before {
            q["beforeSequence"] = json!(b);
        }
        let page = conn.request("message:history", q).await?;
        let msgs = page["messages"]
            .as_array()
            .ok_or("history: no `messages` array")?
            .clone();
        before = msgs.first().and_then(|m| m["sequenceNumber"].as_u64());
        let more = page["hasMore"].as_bool().unwrap_or(false);
        pages.push(msgs);
        if !more || before.is_none() {
            break;
        }
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// This process's user+system CPU time.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0: utime (14) is 11, stime (15) is 12.
    let ticks: f64 = f
        .get(11..13)
        .map(|v| v.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux.
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn setup(opts: &Options, prefix: &str) -> Result<Vec<Conn>, String> {
    // Connect everyone (a few at a time, so setup does not look like a connection storm).
    let mut conns = Vec::new();
    for c in 0..opts.conversations {
        let batch = (0..opts.senders)
            .map(|s| Conn::connect(opts, format!("{prefix}-c{c}-s{s}"), c))
            .collect::<Vec<_>>();
        for conn in futures_util::future::join_all(batch).await {
            conns.push(conn?);
        }
    }
    // One call per conversation: the first sender starts it, the others accept.
    let mut by_conv: Vec<Vec<Conn>> = (0..opts.conversations).map(|_| Vec::new()).collect();
    for conn in conns {
        by_conv[conn.conv_index].push(conn);
    }
    let calls = by_conv.into_iter().enumerate().map(|(c, mut members)| {
        let prefix = prefix.to_owned();
        async move {
            let mut invitees: Vec<String> =
                members.iter().skip(1).map(|m| m.user.clone()).collect();
            if invitees.is_empty() {
                // A call needs someone to ring; this user never connects.
                invitees.push(format!("{prefix}-c{c}-listener"));
            }
            let ack = members[0]
                .request(
                    "call:initiate",
                    json!({"conversationId": format!("bench-{c}"), "callType": "audio",
                           "participants": invitees}),
                )
                .await?;
            let call_id = ack["callId"]
                .as_str()
                .ok_or(format!("call:initiate ack without callId: {ack}"))?
                .to_owned();
            for m in members.iter_mut().skip(1) {
                m.request("call:accept", json!({"callId": call_id})).await?;
            }
            for m in &mut members {
                m.conversation = call_id.clone();
            }
            Ok::<_, String>(members)
        }
    });
    let mut out = Vec::new();
    for r in futures_util::future::join_all(calls).await {
        out.extend(r?);
    }
    Ok(out)
}

async fn run(opts: Options) -> Result<bool, String> {
    let opts = Arc::new(opts);
    let prefix = format!(
        "bench{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 100_000_000
    );
    let total_senders = opts.conversations * opts.senders;
    let load = match (opts.messages, opts.rate) {
        (Some(n), _) => format!("{n} messages per sender"),
        (None, _) => format!("{:?} per sender", opts.duration),
    };
    let load = match opts.rate {
        Some(rate) => format!("{load}, fixed rate {rate} msg/s in total"),
        None => format!("{load}, window {}", opts.window),
    };
    println!(
        "chat_load: {} — {} conversation(s) × {} sender(s) = {total_senders} senders, {load}, \
         {} chars, server {}",
        opts.scenario, opts.conversations, opts.senders, opts.content_chars, opts.addr
    );
    let setup_started = Instant::now();
    let members = setup(&opts, &prefix).await?;
    println!(
        "setup: {total_senders} connections, {} call(s) in {:.2} s",
        opts.conversations,
        setup_started.elapsed().as_secs_f64()
    );

    let cpu_before = own_cpu_seconds();
    let barrier = Arc::new(Barrier::new(total_senders + 1));
    let mut tasks = Vec::with_capacity(total_senders);
    for (index, conn) in members.into_iter().enumerate() {
        tasks.push(tokio::spawn(run_sender(
            conn,
            opts.clone(),
            barrier.clone(),
            index,
            total_senders,
        )));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut results = Vec::with_capacity(total_senders);
    for t in tasks {
        results.push(t.await.map_err(|e| format!("sender task: {e}"))?);
    }
    let finished = results
        .iter()
        .filter_map(|(_, r)| r.last_ack)
        .max()
        .unwrap_or(started);
    let wall = finished.duration_since(started);
    let client_cpu = own_cpu_seconds() - cpu_before;

    // Per conversation: the acked sequence numbers and message ids.
    let mut conv_acks: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for (conn, r) in &results {
        conv_acks
            .entry(conn.conversation.clone())
            .or_default()
            .extend(r.acked.iter().cloned());
    }

    // Let every connection receive the `message:new` of everyone else's messages.
    let mut drains = Vec::new();
    for (conn, r) in results {
        let expected = conv_acks[&conn.conversation].len() - r.acked.len();
        drains.push(tokio::spawn(drain_deliveries(conn, expected, r)));
    }
    let mut results = Vec::new();
    for d in drains {
        results.push(d.await.map_err(|e| format!("drain task: {e}"))?);
    }

    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|(_, r)| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let acked = latencies.len() as u64;
    let errors: Vec<String> = results
        .iter()
        .flat_map(|(_, r)| r.errors.iter().cloned())
        .collect();
    let rate = acked as f64 / wall.as_secs_f64().max(1e-9);
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0),
    );

    // ---- correctness ----
    let mut failures: Vec<String> = Vec::new();
    for e in errors.iter().take(10) {
        failures.push(format!("error: {e}"));
    }
    if errors.len() > 10 {
        failures.push(format!("... and {} more errors", errors.len() - 10));
    }
    if acked == 0 {
        failures.push("no message was acked".into());
    }
    for (conv, acks) in &conv_acks {
        let mut seqs: Vec<u64> = acks.iter().map(|(s, _)| *s).collect();
        seqs.sort_unstable();
        let gap_free = seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1);
        if !gap_free {
            let dups = seqs.windows(2).filter(|w| w[0] == w[1]).count();
            failures.push(format!(
                "conversation {conv}: {} acked sequence numbers are not 1..={} ({dups} duplicates, \
                 first {:?}, last {:?})",
                seqs.len(),
                seqs.len(),
                seqs.first(),
                seqs.last()
            ));
        }
    }
    let mut out_of_order_deliveries = 0u64;
    let mut delivered_total = 0u64;
    for (conn, r) in &results {
        let conv = &conn.conversation;
        if !r.acked.windows(2).all(|w| w[0].0 < w[1].0) {
            failures.push(format!(
                "{}: sequence numbers not increasing in send order",
                conn.user
            ));
        }
        // Every other member's message arrives as `message:new`, exactly once.
        let mut mine: Vec<u64> = r.acked.iter().map(|(s, _)| *s).collect();
        mine.sort_unstable();
        let mut expected: Vec<u64> = conv_acks[conv]
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| mine.binary_search(s).is_err())
            .collect();
        expected.sort_unstable();
        let mut got = r.delivered.clone();
        out_of_order_deliveries += got.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        delivered_total += got.len() as u64;
        got.sort_unstable();
        if got != expected {
            failures.push(format!(
                "{}: received {} message:new, expected {} (one per other member's message)",
                conn.user,
                got.len(),
                expected.len()
            ));
        }
    }
    if opts.strict_order && out_of_order_deliveries > 0 {
        failures.push(format!(
            "{out_of_order_deliveries} message:new arrived after a higher sequence number"
        ));
    }
    let mut history_checked = 0usize;
    if opts.history {
        // One reader per conversation: its first member's connection.
        let mut seen = std::collections::HashSet::new();
        for (conn, _) in results.iter_mut() {
            if !seen.insert(conn.conversation.clone()) {
                continue;
            }
            let conv = conn.conversation.clone();
            match history(conn, &conv).await {
                Ok(msgs) => {
                    let mut acks = conv_acks[&conv].clone();
                    acks.sort();
                    let same = msgs.len() == acks.len()
                        && msgs.iter().zip(&acks).enumerate().all(|(n, (m, (s, id)))| {
                            m["sequenceNumber"].as_u64() == Some(n as u64 + 1)
                                && m["sequenceNumber"].as_u64() == Some(*s)
                                && m["id"].as_str() == Some(id.as_str())
                        });
                    if !same {
                        failures.push(format!(
                            "conversation {conv}: history has {} messages, {} acked, or they differ",
                            msgs.len(),
                            acks.len()
                        ));
                    }
                    history_checked += msgs.len();
                }
                Err(e) => failures.push(format!("history of {conv}: {e}")),
            }
        }
    }
    for (mut conn, _) in results {
        let _ = conn.ws.close(None).await;
    }

    println!("messages acked : {acked}");
    println!("wall time      : {:.3} s", wall.as_secs_f64());
    println!("messages/s     : {rate:.1}");
    println!(
        "ack latency    : p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!("errors         : {}", errors.len());
    println!(
        "deliveries     : {delivered_total} message:new received, {out_of_order_deliveries} \
         arrived after a higher sequence number of their conversation"
    );
    println!("client CPU     : {client_cpu:.2} s during the run");
    let ok = failures.is_empty();
    if ok {
        println!(
            "correctness    : OK — {} conversation(s) gap-free 1..=n, no duplicates, per-sender \
             order kept, every message:new delivered once{}",
            conv_acks.len(),
            if opts.history {
                format!(", history matches acks ({history_checked} messages read back)")
            } else {
                String::new()
            }
        );
    } else {
        println!("correctness    : FAILED");
        for f in &failures {
            println!("  - {f}");
        }
    }
    println!(
        "RESULT scenario={} conversations={} senders={} window={} rate={} acked={acked} wall_s={:.3} \
         msgs_per_s={rate:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} errors={} late={out_of_order_deliveries} \
         client_cpu_s={client_cpu:.2} ok={ok}",
        opts.scenario,
        opts.conversations,
        opts.senders,
        opts.window,
        opts.rate.map_or("-".to_owned(), |r| format!("{r}")),
        wall.as_secs_f64(),
        ms(p50),
        ms(p99),
        ms(max),
        errors.len()
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match runtime.block_on(run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("chat_load: {e}");
            ExitCode::from(2)
        }
    }
}
