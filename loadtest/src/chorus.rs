//! A load client of a Chorus room, speaking signaling as `docs/protocol.md` describes: raw
//! WebSocket `/ws`, `room:join`, a targetless `offer` to the SFU (answered in the ack and by an
//! `answer` event), and an `answer` to every server `offer`.
//!
//! Glare: the client offers once, first. A server offer that arrives before the `answer`
//! event to that offer was superseded by it (the server sends a fresh one after), so it is
//! dropped, as the protocol asks.

use crate::peer::{self, Publish, SignalIn, SignalOut, Signals, Start};
use crate::stats::{ClientReport, Live};
use crate::token::TokenSource;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// How long a request may wait for its ack.
const ACK_WAIT: Duration = Duration::from_secs(15);

/// Where and how a client joins.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` of the HTTP listener.
    pub authority: String,
    pub room: String,
    pub tokens: TokenSource,
    /// Local address of the client's media socket.
    pub bind: IpAddr,
}

/// One client: joins, negotiates, sends/receives until `stop`, then leaves.
pub async fn client(
    target: Target,
    user: String,
    publish: Publish,
    live: Arc<Live>,
    stop: watch::Receiver<bool>,
) -> ClientReport {
    let started = Instant::now();
    let failed = |e: String| {
        live.failed.fetch_add(1, Ordering::Relaxed);
        ClientReport {
            publisher: publish.audio || publish.video_bps.is_some(),
            failed: Some(e),
            ..ClientReport::default()
        }
    };
    use std::sync::atomic::Ordering;
    let mut ws = match join(&target, &user).await {
        Ok(ws) => ws,
        Err(e) => return failed(format!("{user}: {e}")),
    };
    let (in_tx, in_rx) = mpsc::channel(8);
    let (out_tx, mut out_rx) = mpsc::channel(8);
    let peer = tokio::spawn(peer::run(
        publish.clone(),
        Start::ClientOffers,
        target.bind,
        Signals {
            inbound: in_rx,
            outbound: out_tx,
        },
        live.clone(),
        stop.clone(),
        started,
    ));
    let space = format!("room:{}", target.room);
    let signaling = ws
        .relay(&space, &in_tx, &mut out_rx, stop)
        .await
        .map_err(|e| format!("{user}: {e}"));
    let mut report = match peer.await {
        Ok(r) => r,
        Err(e) => return failed(format!("{user}: the peer task panicked: {e}")),
    };
    if let (Err(e), None) = (signaling, &report.failed) {
        live.failed.fetch_add(1, Ordering::Relaxed);
        report.failed = Some(e);
    }
    let _ = ws.ws.close(None).await;
    report
}

async fn join(target: &Target, user: &str) -> Result<Connection, String> {
    let token = target.tokens.token(user, &target.room).await?;
    let url = format!("ws://{}/ws?access_token={token}", target.authority);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("WebSocket: {e}"))?;
    let mut c = Connection { ws, next_id: 1 };
    let id = c.send("room:join", json!({"room": target.room})).await?;
    c.ack(id).await?;
    Ok(c)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Connection {
    ws: Ws,
    next_id: u64,
}

impl Connection {
    async fn send(&mut self, event: &str, data: Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = json!({"event": event, "data": data, "id": id}).to_string();
        self.ws
            .send(Message::text(frame))
            .await
            .map_err(|e| format!("send {event}: {e}"))?;
        Ok(id)
    }

    /// Reads frames until the ack of `id` (events before it are dropped: only used while
    /// joining, when nothing else is expected).
    async fn ack(&mut self, id: u64) -> Result<Value, String> {
        let wait = async {
            loop {
                let v = self.frame().await?;
                if v["ack"] == id {
                    return match v.get("error") {
                        Some(e) => Err(format!("refused: {e}")),
                        None => Ok(v["data"].clone()),
                    };
                }
            }
        };
        tokio::time::timeout(ACK_WAIT, wait)
            .await
            .map_err(|_| format!("no ack for request {id}"))?
    }

    async fn frame(&mut self) -> Result<Value, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).map_err(|e| e.to_string());
                }
                Some(Ok(Message::Close(f))) => return Err(format!("closed by the server: {f:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("WebSocket: {e}")),
                None => return Err("WebSocket closed".into()),
            }
        }
    }

    /// Relays between the peer and the server until `stop`.
    async fn relay(
        &mut self,
        space: &str,
        to_peer: &mpsc::Sender<SignalIn>,
        from_peer: &mut mpsc::Receiver<SignalOut>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), String> {
        // The id of our outstanding offer, until its answer (ack or event) reached the peer.
        let mut offer_id = None;
        // Between our offer and the `answer` event, server offers are stale (glare).
        let mut glare = false;
        let mut answered = false;
        loop {
            tokio::select! {
                out = from_peer.recv() => match out {
                    Some(SignalOut::Offer(sdp)) => {
                        let data = json!({"callId": space, "offer": {"type": "offer", "sdp": sdp}});
                        offer_id = Some(self.send("offer", data).await?);
                        glare = true;
                        answered = false;
                    }
                    Some(SignalOut::Answer(sdp)) => {
                        let data = json!({"callId": space, "answer": {"type": "answer", "sdp": sdp}});
                        self.send("answer", data).await?;
                    }
                    // The peer stopped (stop, or it failed and reports why).
                    None => return Ok(()),
                },
                frame = self.frame() => {
                    let v = frame?;
                    if let Some(id) = v.get("ack") {
                        if let Some(e) = v.get("error") {
                            return Err(format!("request {id} refused: {e}"));
                        }
                        if Some(id) == offer_id.map(Value::from).as_ref() && !answered {
                            answered = true;
                            let sdp = v["data"]["answer"]["sdp"].as_str().ok_or("an offer ack without sdp")?;
                            let _ = to_peer.send(SignalIn::Answer(sdp.to_owned())).await;
                        }
                        continue;
                    }
                    let data = &v["data"];
                    if data["callId"] != space {
                        continue;
                    }
                    match v["event"].as_str() {
                        Some("answer") if glare => {
                            glare = false;
                            if !answered {
                                answered = true;
                                let sdp = data["answer"]["sdp"].as_str().ok_or("an answer without sdp")?;
                                let _ = to_peer.send(SignalIn::Answer(sdp.to_owned())).await;
                            }
                        }
                        Some("offer") if !glare => {
                            let sdp = data["offer"]["sdp"].as_str().ok_or("an offer without sdp")?;
                            let _ = to_peer.send(SignalIn::Offer(sdp.to_owned())).await;
                        }
                        _ => {}
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }
}
