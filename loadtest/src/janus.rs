//! The same load against a Janus VideoRoom, over Janus's WebSocket API (subprotocol
//! `janus-protocol`).
//!
//! [`Room::create`] opens a control session and creates a room (`create`, not permanent, VP8
//! and Opus, room for every publisher); [`Room::destroy`] removes it. Each client opens its own
//! WebSocket and session (`create`), attaches `janus.plugin.videoroom`, and:
//! - a publisher sends `joinandconfigure` (`ptype: publisher`) with its offer, applies the
//!   answer, and announces its feed id to the others; with other publishers in the room it
//!   attaches a second handle and subscribes to all their feeds, as a meeting client does;
//! - a subscriber waits until every publisher's feed is known, attaches, sends `join`
//!   (`ptype: subscriber`, `streams: [{feed}…]`), answers Janus's offer with `start`.
//!
//! A Janus subscription is its own PeerConnection, so a meeting client has two peers; their
//! counts are added into one report. Candidates are in the SDP, so trickle only says
//! `completed`; trickled Janus candidates are passed to the peer. A `keepalive` every
//! [`KEEPALIVE`] keeps the session (Janus drops it after 60 s of silence).

use crate::peer::{self, Publish, SignalIn, SignalOut, Signals, Start};
use crate::stats::{ClientReport, Live};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const KEEPALIVE: Duration = Duration::from_secs(20);
const REPLY_WAIT: Duration = Duration::from_secs(20);
const PLUGIN: &str = "janus.plugin.videoroom";

/// A VideoRoom the run created; shared by its clients.
#[derive(Clone)]
pub struct Room {
    url: String,
    id: u64,
    publishers: u32,
    /// Feed ids of publishers that have published so far.
    feeds: Arc<watch::Sender<Vec<u64>>>,
}

/// What a client does.
pub enum Role {
    Publisher(Publish),
    Subscriber,
}

impl Room {
    /// Creates room `name` (a random id when `name` is not a number) for `publishers`.
    pub async fn create(url: &str, name: &str, publishers: u32) -> Result<Room, String> {
        let id = name
            .parse()
            .unwrap_or_else(|_| u64::from(rand::random::<u32>()));
        let mut c = Session::open(url).await?;
        let handle = c.attach().await?;
        let body = json!({
            "request": "create",
            "room": id,
            "permanent": false,
            "publishers": publishers.max(1) + 1,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "bitrate": 0,
            "notify_joining": false,
        });
        let reply = c.message(handle, body, None).await?;
        let data = &reply["plugindata"]["data"];
        if data["videoroom"] != "created" {
            return Err(format!("creating Janus room {id}: {reply}"));
        }
        c.close().await;
        Ok(Room {
            url: url.to_owned(),
            id,
            publishers,
            feeds: Arc::new(watch::channel(Vec::new()).0),
        })
    }

    /// Destroys the room (errors only logged: the run's figures are already taken).
    pub async fn destroy(&self) {
        let outcome = async {
            let mut c = Session::open(&self.url).await?;
            let handle = c.attach().await?;
            let body = json!({"request": "destroy", "room": self.id});
            c.message(handle, body, None).await?;
            c.close().await;
            Ok::<_, String>(())
        };
        if let Err(e) = outcome.await {
            eprintln!("chorus-load: destroying Janus room {}: {e}", self.id);
        }
    }

    /// Waits until every publisher has a feed; the feeds.
    async fn all_feeds(&self) -> Result<Vec<u64>, String> {
        let mut rx = self.feeds.subscribe();
        let want = self.publishers as usize;
        let wait = rx.wait_for(|f| f.len() >= want);
        match tokio::time::timeout(peer::CONNECT_TIMEOUT * 3, wait).await {
            Ok(Ok(f)) => Ok(f.clone()),
            _ => Err("not every publisher published".into()),
        }
    }
}

/// One client (see the module docs); runs until `stop`.
pub async fn client(
    room: Room,
    name: String,
    role: Role,
    bind: IpAddr,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
) -> ClientReport {
    let started = Instant::now();
    let publisher = matches!(role, Role::Publisher(_));
    let mut peers = Vec::new();
    let outcome = run_client(&room, role, bind, &live, stop, started, &mut peers).await;
    let mut report = ClientReport {
        publisher,
        ..ClientReport::default()
    };
    // The client's own error says more than its peers' "signaling ended".
    if let Err(e) = &outcome {
        report.failed = Some(format!("{name}: {e}"));
    }
    for p in peers {
        match p.await {
            Ok(r) => merge(&mut report, r),
            Err(e) => report.failed = Some(format!("a peer task panicked: {e}")),
        }
    }
    if outcome.is_err() {
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    report
}

fn merge(into: &mut ClientReport, r: ClientReport) {
    into.failed = into.failed.take().or(r.failed);
    into.join = match (into.join, r.join) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    into.packets += r.packets;
    into.bytes += r.bytes;
    into.lost += r.lost;
    into.video_streams += r.video_streams;
    into.audio_streams += r.audio_streams;
    into.keyframes += r.keyframes;
    into.layer_switches += r.layer_switches;
    into.keyframe_requests += r.keyframe_requests;
}

/// A peer task and the channels to it, by Janus handle.
struct PeerLink {
    to_peer: mpsc::Sender<SignalIn>,
    from_peer: mpsc::Receiver<SignalOut>,
}

#[allow(clippy::too_many_arguments)]
fn spawn_peer(
    publish: Publish,
    start: Start,
    bind: IpAddr,
    live: &Arc<Live>,
    stop: &watch::Receiver<bool>,
    started: Instant,
    peers: &mut Vec<JoinHandle<ClientReport>>,
) -> PeerLink {
    let (in_tx, in_rx) = mpsc::channel(8);
    let (out_tx, out_rx) = mpsc::channel(8);
    peers.push(tokio::spawn(peer::run(
        publish,
        start,
        bind,
        Signals {
            inbound: in_rx,
            outbound: out_tx,
        },
        live.clone(),
        stop.clone(),
        started,
    )));
    PeerLink {
        to_peer: in_tx,
        from_peer: out_rx,
    }
}

async fn run_client(
    room: &Room,
    role: Role,
    bind: IpAddr,
    live: &Arc<Live>,
    mut stop: watch::Receiver<bool>,
    started: Instant,
    peers: &mut Vec<JoinHandle<ClientReport>>,
) -> Result<(), String> {
    let mut s = Session::open(&room.url).await?;
    let mut links: HashMap<u64, PeerLink> = HashMap::new();
    let mut own_feed = None;
    if let Role::Publisher(publish) = role {
        let handle = s.attach().await?;
        let mut link = spawn_peer(
            publish,
            Start::ClientOffers,
            bind,
            live,
            &stop,
            started,
            peers,
        );
        let Some(SignalOut::Offer(sdp)) = link.from_peer.recv().await else {
            return Err("the peer made no offer".into());
        };
        let body = json!({"request": "joinandconfigure", "room": room.id, "ptype": "publisher",
                          "audio": true, "video": true});
        let reply = s
            .message(handle, body, Some(json!({"type": "offer", "sdp": sdp})))
            .await?;
        let data = &reply["plugindata"]["data"];
        let feed = data["id"]
            .as_u64()
            .ok_or_else(|| format!("joinandconfigure: {reply}"))?;
        let answer = reply["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("joinandconfigure without an answer: {reply}"))?;
        let _ = link.to_peer.send(SignalIn::Answer(answer.to_owned())).await;
        s.trickle_completed(handle).await?;
        // Janus refuses subscriptions to a feed whose PeerConnection is not up yet.
        s.wait_for_webrtcup(handle).await?;
        room.feeds.send_modify(|f| f.push(feed));
        own_feed = Some(feed);
        links.insert(handle, link);
    }
    let feeds: Vec<u64> = room
        .all_feeds()
        .await?
        .into_iter()
        .filter(|f| Some(*f) != own_feed)
        .collect();
    if !feeds.is_empty() {
        let handle = s.attach().await?;
        let link = spawn_peer(
            Publish::default(),
            Start::ServerOffers,
            bind,
            live,
            &stop,
            started,
            peers,
        );
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let body = json!({"request": "join", "room": room.id, "ptype": "subscriber",
                          "streams": streams});
        let reply = s.message(handle, body, None).await?;
        let offer = reply["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("subscriber join without an offer: {reply}"))?;
        let _ = link.to_peer.send(SignalIn::Offer(offer.to_owned())).await;
        links.insert(handle, link);
    }

    let mut keepalive = tokio::time::interval(KEEPALIVE);
    loop {
        // Answers from subscriber peers go back with `start`.
        let mut answers = Vec::new();
        for (handle, link) in &mut links {
            while let Ok(out) = link.from_peer.try_recv() {
                if let SignalOut::Answer(sdp) = out {
                    answers.push((*handle, sdp));
                }
            }
        }
        for (handle, sdp) in answers {
            let body = json!({"request": "start", "room": room.id});
            let reply = s
                .message(handle, body, Some(json!({"type": "answer", "sdp": sdp})))
                .await?;
            if reply["janus"] == "error" || reply["plugindata"]["data"]["error"].is_string() {
                return Err(format!("start: {reply}"));
            }
            s.trickle_completed(handle).await?;
        }
        while let Some(event) = s.pending.pop_front() {
            on_event(&event, &links).await?;
        }
        tokio::select! {
            frame = s.frame() => on_event(&frame?, &links).await?,
            _ = keepalive.tick() => s.keepalive().await?,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => break,
        }
    }
    s.close().await;
    Ok(())
}

/// An unsolicited Janus event: trickled candidates go to the peer; a hangup ends the client.
async fn on_event(event: &Value, links: &HashMap<u64, PeerLink>) -> Result<(), String> {
    let sender = event["sender"].as_u64().unwrap_or(0);
    match event["janus"].as_str() {
        Some("trickle") => {
            if let (Some(link), Some(c)) =
                (links.get(&sender), event["candidate"]["candidate"].as_str())
            {
                let _ = link.to_peer.send(SignalIn::Candidate(c.to_owned())).await;
            }
        }
        Some("hangup") => return Err(format!("Janus hung up: {event}")),
        Some("event") => {
            if let (Some(link), Some("offer")) =
                (links.get(&sender), event["jsep"]["type"].as_str())
            {
                let sdp = event["jsep"]["sdp"].as_str().unwrap_or_default();
                let _ = link.to_peer.send(SignalIn::Offer(sdp.to_owned())).await;
            }
        }
        _ => {}
    }
    Ok(())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One Janus session on its own WebSocket.
struct Session {
    ws: Ws,
    id: u64,
    next_transaction: u64,
    /// Events read while waiting for a reply, handled later.
    pending: VecDeque<Value>,
}

impl Session {
    async fn open(url: &str) -> Result<Session, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().expect("a valid header value"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("Janus WebSocket {url}: {e}"))?;
        let mut s = Session {
            ws,
            id: 0,
            next_transaction: 1,
            pending: VecDeque::new(),
        };
        let reply = s.call(json!({"janus": "create"})).await?;
        s.id = reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("create: {reply}"))?;
        Ok(s)
    }

    async fn attach(&mut self) -> Result<u64, String> {
        let reply = self
            .call(json!({"janus": "attach", "plugin": PLUGIN, "session_id": self.id}))
            .await?;
        reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("attach: {reply}"))
    }

    /// A plugin message; the synchronous `success` or the asynchronous `event` reply.
    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        let mut m = json!({"janus": "message", "session_id": self.id, "handle_id": handle,
                           "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let reply = self.call(m).await?;
        if let Some(e) = reply["plugindata"]["data"]["error"].as_str() {
            return Err(format!("videoroom: {e}"));
        }
        Ok(reply)
    }

    async fn trickle_completed(&mut self, handle: u64) -> Result<(), String> {
        let t = self.next_transaction();
        self.send(
            json!({"janus": "trickle", "session_id": self.id, "handle_id": handle,
                         "transaction": t, "candidate": {"completed": true}}),
        )
        .await
    }

    /// Waits for `webrtcup` on `handle` (ICE and DTLS up); other events stay pending.
    async fn wait_for_webrtcup(&mut self, handle: u64) -> Result<(), String> {
        let up = |v: &Value| v["janus"] == "webrtcup" && v["sender"] == handle;
        if let Some(i) = self.pending.iter().position(up) {
            self.pending.remove(i);
            return Ok(());
        }
        let wait = async {
            loop {
                let v = self.frame().await?;
                if up(&v) {
                    return Ok(());
                }
                self.pending.push_back(v);
            }
        };
        tokio::time::timeout(peer::CONNECT_TIMEOUT, wait)
            .await
            .map_err(|_| "the publisher's PeerConnection did not come up".to_owned())?
    }

    async fn keepalive(&mut self) -> Result<(), String> {
        let t = self.next_transaction();
        self.send(json!({"janus": "keepalive", "session_id": self.id, "transaction": t}))
            .await
    }

    fn next_transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    async fn send(&mut self, m: Value) -> Result<(), String> {
        self.ws
            .send(Message::text(m.to_string()))
            .await
            .map_err(|e| format!("Janus WebSocket: {e}"))
    }

    /// Sends `m` with a fresh transaction and returns the reply (`success`, `event` or
    /// `error`; `ack`s are skipped), keeping other frames in `pending`.
    async fn call(&mut self, mut m: Value) -> Result<Value, String> {
        let t = self.next_transaction();
        m["transaction"] = Value::from(t.clone());
        self.send(m).await?;
        let wait = async {
            loop {
                let v = self.frame().await?;
                if v["transaction"] == t.as_str() {
                    match v["janus"].as_str() {
                        Some("ack") => continue,
                        Some("error") => return Err(format!("Janus error: {}", v["error"])),
                        _ => return Ok(v),
                    }
                }
                self.pending.push_back(v);
            }
        };
        tokio::time::timeout(REPLY_WAIT, wait)
            .await
            .map_err(|_| format!("no Janus reply to {t}"))?
    }

    async fn frame(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).map_err(|e| e.to_string());
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err("Janus closed the WebSocket".into());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("Janus WebSocket: {e}")),
            }
        }
    }

    async fn close(mut self) {
        let _ = self
            .send(json!({"janus": "destroy", "session_id": self.id, "transaction": "bye"}))
            .await;
        let _ = self.ws.close(None).await;
    }
}
