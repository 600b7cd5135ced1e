//! Test clients for both transports, with one interface so every flow runs on either.
//!
//! The Socket.IO client speaks Engine.IO v4 / Socket.IO v5 over WebSocket directly (the wire
//! format is small); the Node suite in `tests/node` covers the official `socket.io-client`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub use testkit::{Refusal, WAIT, WsClient};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client of either transport.
pub enum Client {
    Ws(WsClient),
    Sio(SioClient),
}

impl Client {
    /// Sends an event asking for an ack and waits for it.
    pub async fn request(&mut self, event: &str, data: Value) -> Result<Value, Refusal> {
        match self {
            Client::Ws(c) => c.request(event, data).await,
            Client::Sio(c) => c.request(event, data).await,
        }
    }

    /// `call:initiate` of a `call_type` call to `participants`; returns the ack.
    pub async fn initiate(&mut self, call_type: &str, participants: &[&str]) -> Value {
        self.request(
            "call:initiate",
            json!({"conversationId": "conv", "callType": call_type, "participants": participants}),
        )
        .await
        .expect("call:initiate is acked")
    }

    /// Sends an event without asking for an ack.
    pub async fn emit(&mut self, event: &str, data: Value) {
        match self {
            Client::Ws(c) => c.emit(event, data).await,
            Client::Sio(c) => c.emit(event, data).await,
        }
    }

    /// Waits for the next server event called `event`, keeping the others for later.
    pub async fn expect(&mut self, event: &str) -> Value {
        let found = tokio::time::timeout(WAIT, self.next_named(event)).await;
        found.unwrap_or_else(|_| panic!("no `{event}` within {WAIT:?}; got {:?}", self.buffered()))
    }

    /// Waits until the server has delivered every event caused by anything its hub received
    /// before this call; see `WsClient::barrier` for how that orders and what it covers, and
    /// `SioClient::barrier` for Socket.IO.
    pub async fn barrier(&mut self) {
        match self {
            Client::Ws(c) => c.barrier().await,
            Client::Sio(c) => c.barrier().await,
        }
    }

    /// Asserts that no `event` was delivered: after a [`Client::barrier`], none is buffered.
    pub async fn expect_none(&mut self, event: &str) {
        self.barrier().await;
        let buffer = match self {
            Client::Ws(c) => &c.events,
            Client::Sio(c) => &c.events,
        };
        if let Some((_, v)) = buffer.iter().find(|(n, _)| n == event) {
            panic!("unexpected `{event}`: {v}");
        }
    }

    pub async fn close(self) {
        match self {
            Client::Ws(mut c) => {
                let _ = c.ws.close(None).await;
            }
            Client::Sio(mut c) => {
                // As `socket.disconnect()` does: a Socket.IO DISCONNECT first, so the server
                // ends the session instead of keeping it for a resume (ADR 0079).
                let _ = c.ws.send(Message::Text("41".into())).await;
                let _ = c.ws.close(None).await;
            }
        }
    }

    fn buffered(&self) -> Vec<String> {
        let b = match self {
            Client::Ws(c) => &c.events,
            Client::Sio(c) => &c.events,
        };
        b.iter().map(|(n, _)| n.clone()).collect()
    }

    async fn next_named(&mut self, event: &str) -> Value {
        loop {
            let buffer = match self {
                Client::Ws(c) => &mut c.events,
                Client::Sio(c) => &mut c.events,
            };
            if let Some(i) = buffer.iter().position(|(n, _)| n == event) {
                return buffer.remove(i).expect("index from position").1;
            }
            let more = match self {
                Client::Ws(c) => c.pump().await,
                Client::Sio(c) => c.pump().await,
            };
            if !more {
                // Said at once, and apart from silence: a closed connection is a different bug.
                panic!(
                    "the connection closed while waiting for `{event}`; got {:?}",
                    self.buffered()
                );
            }
        }
    }
}

/// Minimal Socket.IO v5 client over the Engine.IO v4 WebSocket transport.
pub struct SioClient {
    pub ws: Ws,
    next_id: u64,
    pub events: VecDeque<(String, Value)>,
    acks: VecDeque<(u64, Value)>,
    /// Server events that asked for an ack: (event name, ack id).
    pub ack_requests: VecDeque<(String, u64)>,
}

impl SioClient {
    /// Connects with `auth: {token}`; `Err` carries the `connect_error` message (the code).
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Self, String> {
        Self::connect_with(addr, "", Some(json!({"token": token}))).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        query: &str,
        auth: Option<Value>,
    ) -> Result<Self, String> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket{query}");
        let (mut ws, _) = connect_async(url).await.map_err(|e| e.to_string())?;
        let open = next_text(&mut ws).await.ok_or("no open packet")?;
        assert!(open.starts_with('0'), "engine.io open packet: {open}");
        let connect = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_owned(),
        };
        ws.send(Message::Text(connect.into())).await.unwrap();
        loop {
            let packet = next_text(&mut ws).await.ok_or("closed during connect")?;
            if packet == "2" {
                ws.send(Message::Text("3".into())).await.unwrap();
            } else if let Some(rest) = packet.strip_prefix("40") {
                assert!(rest.contains("sid"), "connect packet: {packet}");
                break;
            } else if let Some(rest) = packet.strip_prefix("44") {
                let v: Value = serde_json::from_str(rest).unwrap();
                return Err(v["message"].as_str().unwrap_or_default().to_owned());
            } else {
                panic!("unexpected packet while connecting: {packet}");
            }
        }
        Ok(Self {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            acks: VecDeque::new(),
            ack_requests: VecDeque::new(),
        })
    }

    /// Acks the oldest server event called `event` that asked for an ack.
    pub async fn ack_server_event(&mut self, event: &str, data: Value) {
        let i = self
            .ack_requests
            .iter()
            .position(|(n, _)| n == event)
            .unwrap_or_else(|| panic!("`{event}` did not ask for an ack"));
        let (_, id) = self.ack_requests.remove(i).expect("index from position");
        let packet = format!("43{id}{}", json!([data]));
        self.ws.send(Message::Text(packet.into())).await.unwrap();
    }

    pub async fn request(&mut self, event: &str, data: Value) -> Result<Value, Refusal> {
        let id = self.next_id;
        self.next_id += 1;
        let packet = format!("42{id}{}", json!([event, data]));
        self.ws.send(Message::Text(packet.into())).await.unwrap();
        self.ack(id).await
    }

    /// Waits for the ack of request `id` (at most [`WAIT`]), buffering events meanwhile.
    pub async fn ack(&mut self, id: u64) -> Result<Value, Refusal> {
        let wait = async {
            loop {
                if let Some(i) = self.acks.iter().position(|(a, _)| *a == id) {
                    return self.acks.remove(i).expect("index from position").1;
                }
                assert!(self.pump().await, "connection closed before ack {id}");
            }
        };
        let ack = tokio::time::timeout(WAIT, wait).await.expect("ack in time");
        match ack.get("error") {
            Some(e) => Err(Refusal {
                code: e["code"].as_str().unwrap_or_default().to_owned(),
                body: e.clone(),
            }),
            None => Ok(ack),
        }
    }

    pub async fn emit(&mut self, event: &str, data: Value) {
        let packet = format!("42{}", json!([event, data]));
        self.ws.send(Message::Text(packet.into())).await.unwrap();
    }

    /// The Socket.IO delivery barrier: `activity:ping` with an ack, as `WsClient::barrier`.
    ///
    /// The ordering holds on this transport too. Chorus hands acks to the task that emits the
    /// connection's events, which emits every event already in the outbox before it sends the
    /// ack (ADR 0046). socketioxide then keeps that order on the wire: `SocketRef::emit` and
    /// `AckSender::send` both reserve a slot on the one bounded channel of the engine.io socket
    /// (`Socket::reserve`), and one writer drains that channel in order.
    pub async fn barrier(&mut self) {
        if let Err(r) = self.request("activity:ping", json!({})).await {
            panic!(
                "the barrier's activity:ping was refused ({}): it orders nothing",
                r.code
            );
        }
    }

    pub async fn send_raw(&mut self, packet: &str) {
        self.ws
            .send(Message::Text(packet.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn pump(&mut self) -> bool {
        let Some(packet) = next_text(&mut self.ws).await else {
            return false;
        };
        if packet == "2" {
            let _ = self.ws.send(Message::Text("3".into())).await;
        } else if let Some(rest) = packet.strip_prefix("42") {
            let split = rest.find('[').expect("event packets carry an array");
            let v: Value =
                serde_json::from_str(&rest[split..]).expect("event packets are JSON arrays");
            let name = v[0].as_str().unwrap_or_default().to_owned();
            if split > 0 {
                let id: u64 = rest[..split].parse().expect("numeric ack id");
                self.ack_requests.push_back((name.clone(), id));
            }
            self.events
                .push_back((name, v.get(1).cloned().unwrap_or(Value::Null)));
        } else if let Some(rest) = packet.strip_prefix("43") {
            let split = rest.find('[').expect("ack packets carry an array");
            let id: u64 = rest[..split].parse().unwrap();
            let v: Value = serde_json::from_str(&rest[split..]).unwrap();
            self.acks
                .push_back((id, v.get(0).cloned().unwrap_or(Value::Null)));
        } else if packet.starts_with('1') || packet.starts_with("41") {
            return false;
        }
        true
    }
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
