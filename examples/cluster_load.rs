//! Cluster load client for `bench/cluster.sh` (issue 11, item 6): holds thousands of idle
//! authenticated sessions spread over the nodes of a running cluster and measures how long an
//! `offer` takes from the caller's socket to the callee's socket when both are on one node and
//! when they are on different nodes, and how many offers per second cross nodes through Redis.
//!
//! ```text
//! cargo run --release --example cluster_load -- SECRET NODE_ID=ADDR NODE_ID=ADDR [options]
//!
//!   SECRET            the nodes' HS256 `auth.secret` (tokens are minted here)
//!   NODE_ID=ADDR      each node's `cluster.node_id` and host:port (two or more)
//!   --redis HOST:PORT the cluster's Redis (default 127.0.0.1:6379), read to learn call owners
//!   --prefix P        the cluster's `cluster.key_prefix` (required)
//!   --sessions LIST   session counts to measure at, ascending (default 1000,10000)
//!   --same-pairs N    caller/callee pairs on one node, per node (default 100)
//!   --cross-pairs N   caller/callee pairs on different nodes (default 200)
//!   --samples N       offers measured per kind at each session count (default 2000)
//!   --rate R          offers per second per kind during the latency runs (default 200)
//!   --throughput SECS length of each throughput run (default 10; 0 skips it)
//!   --window N        offers in flight per cross-node pair in the throughput run (default 4)
//!   --connect-parallel N  sessions being opened at once (default 64)
//!   --threads N       client runtime threads (default 1)
//! ```
//!
//! Sessions: user `u{i}` holds one raw WebSocket to node `i mod nodes`, so every count is spread
//! evenly. Sessions that are not in a measured pair stay idle (no events sent; their sockets
//! are read so they stay healthy) and are counted alive at every step: a closed one is reported.
//!
//! Pairs: the caller sends `call:initiate` inviting the callee, the callee answers
//! `call:incoming` with `call:accept`; both stay in the call for the whole run. Then the call's
//! owner node is read from Redis (`{prefix}owner:{callId}`), which sorts each pair into a kind:
//!
//! - `same-node`: caller, callee and owner on one node; no Redis on the path;
//! - `cross-node`: caller and callee on different nodes; the owner is one of them, so an offer
//!   crosses Redis once (as a request to the owner, or as the owner's delivery to the callee's
//!   node), reported in total and split by where the owner is;
//! - `same-node, owner elsewhere`: caller and callee on one node whose call was placed on the
//!   other (placement is least-loaded, ADR 0060): the offer crosses Redis twice. Reported, not
//!   part of the goal.
//!
//! Latency run, at each session count: offers at a steady rate (`--rate` per kind, the kinds
//! interleaved, pairs of a kind in turn) until `--samples` of each kind were sent. The offer's
//! SDP carries its send time (taken just before the frame is written); the callee's reader
//! takes the arrival time when the frame is read, so the figure is socket to socket, the client's
//! own scheduling included (the same for every kind). Alongside it, at the same rate, the
//! client measures one bare Redis pub/sub message between two connections of its own (no Chorus
//! on the path): the floor under one cross-node hop on this machine at that moment.
//!
//! Throughput run: every cross-node pair keeps `--window` offers in flight (the next one goes
//! when the callee received one) for `--throughput` seconds: the cross-node offers delivered per
//! second, their latency under that load, and the nodes' `chorus_cluster_relayed_total{direction="in"}`
//! (messages a node received from Redis) over the run.
//!
//! Exit status: 0 when every offer arrived and no session closed, 1 when something was lost, 2
//! on bad arguments or when the nodes cannot be reached.

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = Arc<Mutex<SplitSink<Ws, Message>>>;

/// Longest wait for a frame a setup step expects.
const FRAME_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait after the last offer of a run for the stragglers.
const ARRIVAL_GRACE: Duration = Duration::from_secs(5);
/// Offer frames carry ack ids from here up, so readers can drop their acks without a lookup.
const OFFER_IDS: u64 = 1 << 40;

#[derive(Clone, Debug)]
struct Options {
    secret: String,
    nodes: Vec<(String, String)>,
    redis: String,
    prefix: String,
    sessions: Vec<usize>,
    same_pairs: usize,
    cross_pairs: usize,
    samples: usize,
    rate: f64,
    throughput: Duration,
    window: usize,
    connect_parallel: usize,
    threads: usize,
}

fn usage() -> &'static str {
    "usage: cluster_load SECRET NODE_ID=ADDR NODE_ID=ADDR... --prefix P [--redis HOST:PORT] \
     [--sessions 1000,10000] [--same-pairs N] [--cross-pairs N] [--samples N] [--rate R] \
     [--throughput SECS] [--window N] [--connect-parallel N] [--threads N]"
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut flags: HashMap<String, String> = HashMap::new();
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
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
    const KNOWN: [&str; 11] = [
        "redis",
        "prefix",
        "sessions",
        "same-pairs",
        "cross-pairs",
        "samples",
        "rate",
        "throughput",
        "window",
        "connect-parallel",
        "threads",
    ];
    if let Some(unknown) = flags.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown option --{unknown}\n{}", usage()));
    }
    if positional.len() < 3 {
        return Err(usage().into());
    }
    let nodes = positional[1..]
        .iter()
        .map(|n| {
            n.split_once('=')
                .map(|(id, addr)| (id.to_owned(), addr.to_owned()))
                .ok_or(format!("`{n}` is not NODE_ID=ADDR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let num = |name: &str, default: u64| -> Result<u64, String> {
        flags.get(name).map_or(Ok(default), |v| {
            v.parse::<u64>()
                .map_err(|_| format!("--{name}: `{v}` is not a number"))
        })
    };
    let sessions = flags
        .get("sessions")
        .map_or("1000,10000", String::as_str)
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("--sessions: `{s}` is not a number"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sessions.windows(2).any(|w| w[0] > w[1]) || sessions.is_empty() {
        return Err("--sessions must be ascending".into());
    }
    let rate = flags
        .get("rate")
        .map_or(Ok(200.0), |v| match v.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
            _ => Err(format!("--rate: `{v}` is not a positive number")),
        })?;
    let opts = Options {
        secret: positional[0].clone(),
        nodes,
        redis: flags
            .get("redis")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:6379".into()),
        prefix: flags.get("prefix").cloned().ok_or("--prefix is required")?,
        sessions,
        same_pairs: num("same-pairs", 100)? as usize,
        cross_pairs: num("cross-pairs", 200)? as usize,
        samples: num("samples", 2000)? as usize,
        rate,
        throughput: Duration::from_secs(num("throughput", 10)?),
        window: num("window", 4)?.max(1) as usize,
        connect_parallel: num("connect-parallel", 64)?.max(1) as usize,
        threads: num("threads", 1)?.max(1) as usize,
    };
    let pair_users = 2 * (opts.same_pairs * opts.nodes.len() + opts.cross_pairs);
    if opts.sessions[0] < pair_users {
        return Err(format!(
            "the smallest session count ({}) must hold the {pair_users} pair users",
            opts.sessions[0]
        ));
    }
    Ok(opts)
}

fn mint(secret: &str, user: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 6 * 3600;
    let claims = json!({"sub": user, "name": format!("{user} (bench)"), "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing")
}

/// Microseconds since the process's clock base; offers carry it from sender to receiver.
fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Where a pair's offers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    SameNode,
    /// Different nodes, the call owned by the caller's node.
    CrossOwnerAtCaller,
    /// Different nodes, the call owned by the callee's node.
    CrossOwnerAtCallee,
    /// One node, the call owned by the other.
    SameNodeOwnerElsewhere,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::SameNode,
        Kind::CrossOwnerAtCaller,
        Kind::CrossOwnerAtCallee,
        Kind::SameNodeOwnerElsewhere,
    ];

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<Kind> {
        Kind::ALL.get(c as usize).copied()
    }

    fn cross(self) -> bool {
        matches!(self, Kind::CrossOwnerAtCaller | Kind::CrossOwnerAtCallee)
    }
}

/// One offer that reached its callee.
struct Arrival {
    run: u32,
    kind: Kind,
    pair: usize,
    latency_us: u64,
}

/// What every reader shares.
struct Shared {
    arrivals: mpsc::UnboundedSender<Arrival>,
    /// Sessions whose socket closed or failed.
    closed: AtomicUsize,
    /// Offers the server refused (their acks carried an error).
    refused: AtomicU64,
}

/// An open session. Pair members keep their sink and a channel of the frames they receive
/// (offers and offer acks aside); idle sessions keep nothing but their reader task.
struct Session {
    user: String,
    node: usize,
    sink: Sink,
    frames: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
}

impl Session {
    async fn connect(
        opts: &Options,
        shared: Arc<Shared>,
        index: usize,
        keep: bool,
    ) -> Result<Option<Session>, String> {
        let user = format!("u{index}");
        let node = index % opts.nodes.len();
        let token = mint(&opts.secret, &user);
        let url = format!("ws://{}/ws?access_token={token}", opts.nodes[node].1);
        let (ws, _) = connect_async(url.as_str())
            .await
            .map_err(|e| format!("{user}: connect to {}: {e}", opts.nodes[node].0))?;
        let (sink, mut stream) = ws.split();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        // An idle session's reader holds its sink too: the socket lives as long as the reader.
        let mut idle_sink = None;
        let sink = if keep {
            Some(sink)
        } else {
            idle_sink = Some(sink);
            None
        };
        tokio::spawn(async move {
            let _sink = idle_sink;
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Text(t)) if keep => read_frame(&shared, t.as_str(), &frames_tx),
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            shared.closed.fetch_add(1, Ordering::Relaxed);
        });
        let Some(sink) = sink else {
            return Ok(None);
        };
        Ok(Some(Session {
            user,
            node,
            sink: Arc::new(Mutex::new(sink)),
            frames,
            next_id: 1,
        }))
    }

    async fn send(&mut self, event: &str, data: Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"event": event, "data": data, "id": id}).to_string();
        self.sink
            .lock()
            .await
            .send(Message::Text(frame.into()))
            .await
            .map_err(|e| format!("{}: send: {e}", self.user))?;
        Ok(id)
    }

    async fn next_frame(&mut self) -> Result<Value, String> {
        tokio::time::timeout(FRAME_TIMEOUT, self.frames.recv())
            .await
            .map_err(|_| format!("{}: no frame within {FRAME_TIMEOUT:?}", self.user))?
            .ok_or(format!("{}: socket closed", self.user))
    }

    async fn request(&mut self, event: &str, data: Value) -> Result<Value, String> {
        let id = self.send(event, data).await?;
        loop {
            let frame = self.next_frame().await?;
            if frame.get("ack").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = frame.get("error") {
                    return Err(format!("{}: `{event}` refused: {err}", self.user));
                }
                return Ok(frame["data"].clone());
            }
        }
    }

    async fn expect(&mut self, event: &str) -> Result<Value, String> {
        loop {
            let frame = self.next_frame().await?;
            if frame.get("event").and_then(Value::as_str) == Some(event) {
                return Ok(frame["data"].clone());
            }
        }
    }
}

/// A pair member's reader: offers become arrivals (timed here, as soon as the frame is read),
/// offer acks are checked and dropped, everything else goes to the session.
fn read_frame(shared: &Shared, text: &str, frames: &mpsc::UnboundedSender<Value>) {
    let received = now_us();
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if frame.get("event").and_then(Value::as_str) == Some("offer") {
        let sdp = frame["data"]["offer"]["sdp"].as_str().unwrap_or_default();
        if let Some((run, kind, pair, sent)) = parse_stamp(sdp) {
            let _ = shared.arrivals.send(Arrival {
                run,
                kind,
                pair,
                latency_us: received.saturating_sub(sent),
            });
        }
        return;
    }
    if let Some(id) = frame.get("ack").and_then(Value::as_u64)
        && id >= OFFER_IDS
    {
        if frame.get("error").is_some() {
            shared.refused.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let _ = frames.send(frame);
}

/// The SDP of a measured offer: `v=0 bench RUN KIND PAIR SENT_US`.
fn stamp(run: u32, kind: Kind, pair: usize, sent_us: u64) -> String {
    format!("v=0 bench {run} {} {pair} {sent_us}", kind.code())
}

fn parse_stamp(sdp: &str) -> Option<(u32, Kind, usize, u64)> {
    let mut f = sdp.strip_prefix("v=0 bench ")?.split(' ');
    let run = f.next()?.parse().ok()?;
    let kind = Kind::from_code(f.next()?.parse().ok()?)?;
    let pair = f.next()?.parse().ok()?;
    let sent = f.next()?.parse().ok()?;
    Some((run, kind, pair, sent))
}

/// A caller and callee in one call.
struct Pair {
    caller: Session,
    callee: Session,
    call: String,
    kind: Kind,
}

impl Pair {
    async fn set_up(mut caller: Session, mut callee: Session, tag: usize) -> Result<Pair, String> {
        let ack = caller
            .request(
                "call:initiate",
                json!({"conversationId": format!("bench-{tag}"), "callType": "audio",
                       "participants": [callee.user]}),
            )
            .await?;
        let call = ack["callId"]
            .as_str()
            .ok_or(format!("call:initiate ack without callId: {ack}"))?
            .to_owned();
        loop {
            let incoming = callee.expect("call:incoming").await?;
            if incoming["callId"] == call.as_str() {
                break;
            }
        }
        callee
            .request("call:accept", json!({"callId": call}))
            .await?;
        caller.expect("call:accepted").await?;
        Ok(Pair {
            caller,
            callee,
            call,
            kind: Kind::SameNode,
        })
    }

    /// The caller's sink and a maker of offer frames, each stamped when it is made and with a
    /// fresh ack id in the offer range.
    fn offer(&self, run: u32, index: usize) -> (Sink, impl Fn() -> Message + Send + 'static) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(OFFER_IDS);
        let (call, target, kind) = (self.call.clone(), self.callee.user.clone(), self.kind);
        let frame = move || {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let sdp = stamp(run, kind, index, now_us());
            let data = json!({"callId": call, "targetUserId": target,
                              "offer": {"type": "offer", "sdp": sdp}});
            Message::Text(
                json!({"event": "offer", "data": data, "id": id})
                    .to_string()
                    .into(),
            )
        };
        (self.caller.sink.clone(), frame)
    }
}

/// Reads each call's owner from Redis (`GET {prefix}owner:{call}`, pipelined) and sorts the
/// pairs into kinds.
async fn classify(opts: &Options, pairs: &mut [Pair]) -> Result<(), String> {
    let mut redis = TcpStream::connect(&opts.redis)
        .await
        .map_err(|e| format!("redis {}: {e}", opts.redis))?;
    let mut out = Vec::new();
    for p in pairs.iter() {
        let key = format!("{}owner:{}", opts.prefix, p.call);
        out.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    redis.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(redis);
    for p in pairs.iter_mut() {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let len: i64 = line
            .trim_end()
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or(format!("unexpected Redis reply `{}`", line.trim_end()))?;
        if len < 0 {
            return Err(format!("call {} has no owner in Redis", p.call));
        }
        let mut value = vec![0; len as usize + 2];
        reader
            .read_exact(&mut value)
            .await
            .map_err(|e| e.to_string())?;
        let owner = String::from_utf8_lossy(&value[..len as usize]).into_owned();
        let owner = opts
            .nodes
            .iter()
            .position(|(id, _)| *id == owner)
            .ok_or(format!(
                "call {} is owned by unknown node `{owner}`",
                p.call
            ))?;
        p.kind = match (p.caller.node == p.callee.node, owner == p.caller.node) {
            (true, true) => Kind::SameNode,
            (true, false) => Kind::SameNodeOwnerElsewhere,
            (false, true) => Kind::CrossOwnerAtCaller,
            (false, false) => Kind::CrossOwnerAtCallee,
        };
    }
    Ok(())
}

/// The floor under a cross-node hop on this machine, now: one Redis pub/sub message between two
/// connections of this process (`PUBLISH` on one, `SUBSCRIBE` on the other, both TCP_NODELAY),
/// `samples` of them at `rate` per second, publish written -> message read. No Chorus on the path;
/// what it costs is Redis, the loopback and the scheduling of two more processes' wake-ups.
async fn redis_floor(opts: &Options, samples: usize, rate: f64) -> Result<Figures, String> {
    let channel = format!("{}bench-floor", opts.prefix);
    let connect = || async {
        let s = TcpStream::connect(&opts.redis)
            .await
            .map_err(|e| format!("redis {}: {e}", opts.redis))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    };
    let (sub_read, mut sub_write) = connect().await?.into_split();
    sub_write
        .write_all(resp(&["SUBSCRIBE", &channel]).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut sub = BufReader::new(sub_read);
    // The confirmation: ["subscribe", channel, 1].
    read_array(&mut sub).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Ok(parts) = read_array(&mut sub).await {
            let received = now_us();
            if let Some(sent) = parts.get(2).and_then(|p| p.parse::<u64>().ok()) {
                let _ = tx.send(received.saturating_sub(sent));
            }
        }
    });
    let (pub_read, mut pub_write) = connect().await?.into_split();
    // Replies (subscriber counts) are read and dropped so the socket never backs up.
    let replies = tokio::spawn(async move {
        let mut lines = BufReader::new(pub_read).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    let mut figures = Figures::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for _ in 0..samples {
        loop {
            tokio::select! {
                biased;
                Some(l) = rx.recv() => figures.latencies.push(l),
                _ = ticker.tick() => break,
            }
        }
        let frame = resp(&["PUBLISH", &channel, &now_us().to_string()]);
        pub_write
            .write_all(frame.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        figures.sent += 1;
    }
    let deadline = tokio::time::Instant::now() + ARRIVAL_GRACE;
    while figures.latencies.len() < figures.sent {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(l)) => figures.latencies.push(l),
            _ => break,
        }
    }
    reader.abort();
    replies.abort();
    Ok(figures)
}

/// A command in RESP.
fn resp(args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    out
}

/// One RESP array of bulk strings and integers (a pub/sub push), as strings.
async fn read_array<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<String>, String> {
    let mut line = String::new();
    r.read_line(&mut line).await.map_err(|e| e.to_string())?;
    let n: usize = line
        .trim_end()
        .strip_prefix('*')
        .and_then(|n| n.parse().ok())
        .ok_or(format!("unexpected Redis push `{}`", line.trim_end()))?;
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let head = line.trim_end();
        if let Some(int) = head.strip_prefix(':') {
            parts.push(int.to_owned());
            continue;
        }
        let len: usize = head
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or(format!("unexpected Redis reply `{head}`"))?;
        let mut value = vec![0; len + 2];
        r.read_exact(&mut value).await.map_err(|e| e.to_string())?;
        parts.push(String::from_utf8_lossy(&value[..len]).into_owned());
    }
    Ok(parts)
}

/// `GET /metrics` from `addr`, summing each series named in `names` over its labels (a name may
/// carry a label filter, e.g. `chorus_cluster_relayed_total{direction="in"`).
async fn metrics(addr: &str, names: &[&str]) -> Result<Vec<f64>, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(names
        .iter()
        .map(|name| {
            body.lines()
                .filter(|l| {
                    l.starts_with(name) && l[name.len()..].starts_with([' ', '{', ',', '}'])
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .collect())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Latency figures of one kind in one run.
#[derive(Clone, Debug, Default)]
struct Figures {
    sent: usize,
    latencies: Vec<u64>,
}

impl Figures {
    fn line(&self, label: &str) -> String {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "{label:<32} {:>7} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            self.sent,
            v.len(),
            ms(percentile(&v, 50.0)),
            ms(percentile(&v, 99.0)),
            ms(percentile(&v, 99.9)),
            ms(v.last().copied().unwrap_or(0)),
        )
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut v = self.latencies.clone();
        v.sort_unstable();
        percentile(&v, p) as f64 / 1000.0
    }

    fn p99_ms(&self) -> f64 {
        self.percentile_ms(99.0)
    }
}

fn merged(a: &Figures, b: &Figures) -> Figures {
    Figures {
        sent: a.sent + b.sent,
        latencies: a.latencies.iter().chain(&b.latencies).copied().collect(),
    }
}

fn table_head() -> String {
    format!(
        "{:<32} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "kind", "sent", "arrived", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    )
}

/// Offers at a steady rate, `--rate` per measured kind, until each kind sent `--samples`.
async fn latency_run(
    opts: &Options,
    pairs: &[Pair],
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    run: u32,
) -> HashMap<Kind, Figures> {
    // Cross-node pairs are one kind for the schedule (their owner side is a detail).
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let same: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].kind == Kind::SameNode)
        .collect();
    let cross: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].kind.cross())
        .collect();
    let elsewhere: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].kind == Kind::SameNodeOwnerElsewhere)
        .collect();
    for g in [same, cross, elsewhere] {
        if !g.is_empty() {
            groups.push(g);
        }
    }
    let mut figures: HashMap<Kind, Figures> = HashMap::new();
    let total = groups.len() * opts.samples;
    let interval = Duration::from_secs_f64(1.0 / (opts.rate * groups.len() as f64));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut received = 0usize;
    for i in 0..total {
        let group = &groups[i % groups.len()];
        let index = group[(i / groups.len()) % group.len()];
        let pair = &pairs[index];
        // Arrivals are collected while waiting for the next tick (their time was taken by the
        // reader already).
        loop {
            tokio::select! {
                biased;
                Some(a) = arrivals.recv() => record(&mut figures, a, run, &mut received),
                _ = ticker.tick() => break,
            }
        }
        let (sink, frame) = pair.offer(run, index);
        figures.entry(pair.kind).or_default().sent += 1;
        let _ = sink.lock().await.send(frame()).await;
    }
    let deadline = tokio::time::Instant::now() + ARRIVAL_GRACE;
    while received < total {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(a)) => record(&mut figures, a, run, &mut received),
            _ => break,
        }
    }
    figures
}

fn record(figures: &mut HashMap<Kind, Figures>, a: Arrival, run: u32, received: &mut usize) {
    if a.run == run {
        *received += 1;
        figures
            .entry(a.kind)
            .or_default()
            .latencies
            .push(a.latency_us);
    }
}

/// Cross-node offers with `--window` in flight per pair for `--throughput`.
async fn throughput_run(
    opts: &Options,
    pairs: &[Pair],
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    run: u32,
) -> (Figures, f64) {
    let cross: Vec<usize> = (0..pairs.len())
        .filter(|&i| pairs[i].kind.cross())
        .collect();
    let windows: HashMap<usize, Arc<Semaphore>> = cross
        .iter()
        .map(|&i| (i, Arc::new(Semaphore::new(opts.window))))
        .collect();
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop = started + opts.throughput;
    let mut senders = Vec::new();
    for &index in &cross {
        let window = windows[&index].clone();
        let sent = sent.clone();
        let (sink, frame) = pairs[index].offer(run, index);
        senders.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let Ok(permit) = window.acquire().await else {
                    break;
                };
                permit.forget();
                sent.fetch_add(1, Ordering::Relaxed);
                if sink.lock().await.send(frame()).await.is_err() {
                    break;
                }
            }
        }));
    }
    let mut figures = Figures::default();
    let mut in_time = 0usize;
    let deadline = tokio::time::Instant::from_std(stop) + ARRIVAL_GRACE;
    loop {
        let all_sent = senders.iter().all(|s| s.is_finished());
        if all_sent && figures.latencies.len() >= sent.load(Ordering::Relaxed) {
            break;
        }
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(a)) if a.run == run => {
                if let Some(w) = windows.get(&a.pair) {
                    w.add_permits(1);
                }
                if Instant::now() <= stop {
                    in_time += 1;
                }
                figures.latencies.push(a.latency_us);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    for s in &senders {
        s.abort();
    }
    figures.sent = sent.load(Ordering::Relaxed);
    let per_second = in_time as f64 / opts.throughput.as_secs_f64();
    (figures, per_second)
}

async fn connect_range(
    opts: &Options,
    shared: &Arc<Shared>,
    range: std::ops::Range<usize>,
    keep: impl Fn(usize) -> bool,
) -> Result<Vec<(usize, Session)>, String> {
    let started = Instant::now();
    let n = range.len();
    let results: Vec<Result<(usize, Option<Session>), String>> =
        futures_util::stream::iter(range.map(|i| {
            let shared = shared.clone();
            let keep = keep(i);
            async move {
                Session::connect(opts, shared, i, keep)
                    .await
                    .map(|s| (i, s))
            }
        }))
        .buffer_unordered(opts.connect_parallel)
        .collect()
        .await;
    let mut kept = Vec::new();
    for r in results {
        if let (i, Some(s)) = r? {
            kept.push((i, s));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "opened {n} sessions in {secs:.1} s ({:.0}/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(kept)
}

async fn run(opts: Options) -> Result<bool, String> {
    now_us();
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        arrivals: arrivals_tx,
        closed: AtomicUsize::new(0),
        refused: AtomicU64::new(0),
    });
    let nodes = opts.nodes.len();
    let pair_users = 2 * (opts.same_pairs * nodes + opts.cross_pairs);
    println!(
        "nodes: {}; pairs: {} same-node per node, {} cross-node; {} samples per kind at {}/s per kind",
        opts.nodes
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(" "),
        opts.same_pairs,
        opts.cross_pairs,
        opts.samples,
        opts.rate
    );

    // The pair users are the first sessions: u0, u1, ... alternate nodes.
    let mut kept = connect_range(&opts, &shared, 0..opts.sessions[0], |i| i < pair_users).await?;
    kept.sort_by_key(|(i, _)| *i);
    let mut by_node: Vec<Vec<Session>> = (0..nodes).map(|_| Vec::new()).collect();
    for (_, s) in kept.into_iter().rev() {
        by_node[s.node].push(s);
    }
    let mut members: Vec<(Session, Session)> = Vec::new();
    for sessions in &mut by_node {
        for _ in 0..opts.same_pairs {
            let caller = sessions.pop().ok_or("uneven pair users")?;
            let callee = sessions.pop().ok_or("uneven pair users")?;
            members.push((caller, callee));
        }
    }
    for i in 0..opts.cross_pairs {
        let from = i % nodes;
        let to = (i + 1) % nodes;
        let caller = by_node[from].pop().ok_or("uneven pair users")?;
        let callee = by_node[to].pop().ok_or("uneven pair users")?;
        members.push((caller, callee));
    }
    let setup = Instant::now();
    let results: Vec<Result<Pair, String>> = futures_util::stream::iter(
        members
            .into_iter()
            .enumerate()
            .map(|(tag, (caller, callee))| Pair::set_up(caller, callee, tag)),
    )
    .buffered(16)
    .collect()
    .await;
    let mut pairs = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    classify(&opts, &mut pairs).await?;
    let count = |k: Kind| pairs.iter().filter(|p| p.kind == k).count();
    println!(
        "set up {} calls in {:.1} s: {} same-node, {} cross-node (owner at caller {}, at callee {}), {} same-node with the owner elsewhere",
        pairs.len(),
        setup.elapsed().as_secs_f64(),
        count(Kind::SameNode),
        count(Kind::CrossOwnerAtCaller) + count(Kind::CrossOwnerAtCallee),
        count(Kind::CrossOwnerAtCaller),
        count(Kind::CrossOwnerAtCallee),
        count(Kind::SameNodeOwnerElsewhere),
    );
    if count(Kind::SameNode) == 0
        || count(Kind::CrossOwnerAtCaller) + count(Kind::CrossOwnerAtCallee) == 0
    {
        return Err("no same-node or no cross-node pair to measure".into());
    }

    let mut ok = true;
    let mut opened = opts.sessions[0];
    let mut summary = Vec::new();
    for (step, &target) in opts.sessions.iter().enumerate() {
        if target > opened {
            connect_range(&opts, &shared, opened..target, |_| false).await?;
            opened = target;
        }
        // Let the connection burst settle (heartbeats, subscriptions) before timing anything.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut server_sessions = Vec::new();
        for (_, addr) in &opts.nodes {
            server_sessions.push(metrics(addr, &["chorus_signaling_connections"]).await?[0]);
        }
        let closed = shared.closed.load(Ordering::Relaxed);
        println!();
        println!(
            "=== {target} sessions: {} alive here, {closed} closed; nodes report {:?} connections",
            opened - closed,
            server_sessions
        );
        if closed > 0 {
            ok = false;
        }
        let run = 2 * step as u32 + 1;
        // The Redis floor runs alongside, so it sees the same machine.
        let (figures, floor) = tokio::join!(
            latency_run(&opts, &pairs, &mut arrivals, run),
            redis_floor(&opts, opts.samples, opts.rate)
        );
        let floor = floor?;
        let f = |k: Kind| figures.get(&k).cloned().unwrap_or_default();
        let same = f(Kind::SameNode);
        let cross = merged(&f(Kind::CrossOwnerAtCaller), &f(Kind::CrossOwnerAtCallee));
        println!("latency, offer sent by the caller -> received by the callee:");
        println!("{}", table_head());
        println!("{}", same.line("same-node"));
        println!("{}", cross.line("cross-node"));
        println!(
            "{}",
            f(Kind::CrossOwnerAtCaller).line("  cross, owner at caller")
        );
        println!(
            "{}",
            f(Kind::CrossOwnerAtCallee).line("  cross, owner at callee")
        );
        let elsewhere = f(Kind::SameNodeOwnerElsewhere);
        if elsewhere.sent > 0 {
            println!("{}", elsewhere.line("same-node, owner elsewhere"));
        }
        println!("{}", floor.line("redis pub/sub hop (no chorus)"));
        for fig in figures.values() {
            if fig.latencies.len() < fig.sent {
                ok = false;
            }
        }
        let mut line = format!(
            "RESULT sessions={target} same_p50_ms={:.3} same_p99_ms={:.3} cross_p50_ms={:.3} cross_p99_ms={:.3} same_samples={} cross_samples={}",
            same.percentile_ms(50.0),
            same.p99_ms(),
            cross.percentile_ms(50.0),
            cross.p99_ms(),
            same.latencies.len(),
            cross.latencies.len(),
        );
        line.push_str(&format!(
            " redis_hop_p50_ms={:.3} redis_hop_p99_ms={:.3}",
            floor.percentile_ms(50.0),
            floor.p99_ms()
        ));

        if !opts.throughput.is_zero() {
            let before = relayed(&opts).await?;
            let run = 2 * step as u32 + 2;
            let t = Instant::now();
            let (fig, per_second) = throughput_run(&opts, &pairs, &mut arrivals, run).await;
            let after = relayed(&opts).await?;
            let elapsed = t.elapsed().as_secs_f64();
            let redis_rate = (after - before) / elapsed;
            println!(
                "throughput, cross-node offers, {} in flight per pair over {} pairs for {} s:",
                opts.window,
                pairs.iter().filter(|p| p.kind.cross()).count(),
                opts.throughput.as_secs()
            );
            println!("{}", table_head());
            println!("{}", fig.line("cross-node at max rate"));
            println!(
                "delivered {per_second:.0} cross-node offers/s; the nodes received {redis_rate:.0} messages/s from Redis (chorus_cluster_relayed_total{{direction=\"in\"}}, both nodes, over {elapsed:.1} s with the tail)"
            );
            if fig.latencies.len() < fig.sent {
                ok = false;
            }
            line.push_str(&format!(
                " offers_per_s={per_second:.0} relayed_in_per_s={redis_rate:.0} max_rate_p99_ms={:.3}",
                fig.p99_ms()
            ));
        }
        println!("{line}");
        summary.push((target, same, cross));
    }

    let refused = shared.refused.load(Ordering::Relaxed);
    let closed = shared.closed.load(Ordering::Relaxed);
    println!();
    println!("offers refused by the server: {refused}; sessions closed: {closed}");
    println!(
        "load client CPU: {:.1} s (utime+stime, whole run)",
        own_cpu_seconds()
    );
    if refused > 0 || closed > 0 {
        ok = false;
    }
    if let Some((target, same, cross)) = summary.last() {
        let gap = cross.p99_ms() - same.p99_ms();
        println!(
            "goal at {target} sessions: cross-node p99 {:.3} ms - same-node p99 {:.3} ms = {gap:+.3} ms (at most +5 ms): {}",
            cross.p99_ms(),
            same.p99_ms(),
            if gap <= 5.0 { "MET" } else { "NOT MET" }
        );
    }
    Ok(ok)
}

/// This process's user+system CPU time.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// `chorus_cluster_relayed_total{direction="in"}` summed over the nodes.
async fn relayed(opts: &Options) -> Result<f64, String> {
    let mut total = 0.0;
    for (_, addr) in &opts.nodes {
        total += metrics(addr, &["chorus_cluster_relayed_total{direction=\"in\""]).await?[0];
    }
    Ok(total)
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
            eprintln!("cluster_load: {e}");
            ExitCode::from(2)
        }
    }
}
