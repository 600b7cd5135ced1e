//! Test clients for both transports, with one interface so every flow runs on either.
//!
//! The Socket.IO client speaks Engine.IO v4 / Socket.IO v5 over WebSocket directly (the wire
//! format is small); the Node suite in `tests/node` covers the official `socket.io-client`.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(5);

/// A refused request: the error code and the whole error object.
#[derive(Debug)]
pub struct Refusal {
    pub code: String,
    pub body: Value,
}

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

    /// Asserts no `event` arrives within `within`.
    pub async fn expect_none(&mut self, event: &str, within: Duration) {
        if let Ok(v) = tokio::time::timeout(within, self.next_named(event)).await {
            panic!("unexpected `{event}`: {v}");
        }
    }

    pub async fn close(self) {
        match self {
            Client::Ws(mut c) => {
                let _ = c.ws.close(None).await;
            }
            Client::Sio(mut c) => {
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
                // Closed: wait out the caller's timeout.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Raw WebSocket client for `/ws`.
pub struct WsClient {
    pub ws: Ws,
    next_id: u64,
    pub events: VecDeque<(String, Value)>,
    acks: VecDeque<Value>,
    pub closed: Option<(u16, String)>,
}

impl WsClient {
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Self, String> {
        Self::connect_url(&format!("ws://{addr}/ws?access_token={token}"), None).await
    }

    /// Connects with the token in an `Authorization: Bearer` header instead.
    pub async fn connect_bearer(addr: SocketAddr, token: &str) -> Result<Self, String> {
        Self::connect_url(&format!("ws://{addr}/ws"), Some(token)).await
    }

    pub async fn connect_url(url: &str, bearer: Option<&str>) -> Result<Self, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(t) = bearer {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let (ws, _) = connect_async(request).await.map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(resp) => {
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                format!("{} {body}", resp.status().as_u16())
            }
            other => other.to_string(),
        })?;
        Ok(Self {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            acks: VecDeque::new(),
            closed: None,
        })
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn request(&mut self, event: &str, data: Value) -> Result<Value, Refusal> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(json!({"event": event, "data": data, "id": id}).to_string())
            .await;
        self.ack(id).await
    }

    pub async fn ack(&mut self, id: u64) -> Result<Value, Refusal> {
        let wait = async {
            loop {
                if let Some(i) = self.acks.iter().position(|a| a["ack"] == id) {
                    return self.acks.remove(i).expect("index from position");
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
            None => Ok(ack["data"].clone()),
        }
    }

    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_text(json!({"event": event, "data": data}).to_string())
            .await;
    }

    /// Reads one frame into the buffers; false once the connection is closed.
    pub async fn pump(&mut self) -> bool {
        match self.ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
                if v.get("ack").is_some() {
                    self.acks.push_back(v);
                } else {
                    let name = v["event"]
                        .as_str()
                        .expect("event frames are named")
                        .to_owned();
                    self.events.push_back((name, v["data"].clone()));
                }
                true
            }
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                false
            }
            Some(Ok(_)) => true,
            Some(Err(_)) | None => {
                self.closed.get_or_insert((1006, String::new()));
                false
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed_code(&mut self) -> u16 {
        let wait = async { while self.pump().await {} };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("closed in time");
        self.closed.as_ref().map(|c| c.0).unwrap_or(1006)
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
