//! [`WsClient`]: a raw WebSocket client of Chorus' `/ws` (see `docs/protocol.md`, "Framing").
//!
//! Lifecycle: [`WsClient::connect`] (HTTP errors come back as `Err("401 {body}")`); then any mix
//! of [`WsClient::request`] (waits for the ack), [`WsClient::emit`] (no ack), [`WsClient::expect`]
//! (the next server event of a name) and [`WsClient::expect_none`]; [`WsClient::close`] or a drop
//! ends it. Server events are buffered as they are read, in arrival order, so a test can wait
//! for an event that arrived while it was waiting for something else.

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

/// How long a test waits for an ack or an event before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A refused request: the error code and the whole error object.
#[derive(Debug)]
pub struct Refusal {
    pub code: String,
    pub body: Value,
}

/// A raw WebSocket connection to `/ws`; see the module docs.
pub struct WsClient {
    pub ws: Ws,
    next_id: u64,
    /// Server events read but not yet taken, oldest first: (name, data).
    pub events: VecDeque<(String, Value)>,
    acks: VecDeque<Value>,
    /// The close code and reason, once the server closed (1006 when it just went away).
    pub closed: Option<(u16, String)>,
}

impl WsClient {
    /// Connects with the token as `?access_token=`.
    pub async fn connect(addr: SocketAddr, token: &str) -> Result<Self, String> {
        Self::connect_url(&format!("ws://{addr}/ws?access_token={token}"), None).await
    }

    /// Connects with the token in an `Authorization: Bearer` header instead.
    pub async fn connect_bearer(addr: SocketAddr, token: &str) -> Result<Self, String> {
        Self::connect_url(&format!("ws://{addr}/ws"), Some(token)).await
    }

    /// Connects to `url`; a refused upgrade is `Err("<status> <body>")`.
    pub async fn connect_url(url: &str, bearer: Option<&str>) -> Result<Self, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(t) = bearer {
            let value = format!("Bearer {t}").parse().map_err(|_| "bad token")?;
            request.headers_mut().insert("authorization", value);
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
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("the connection is open");
    }

    /// Sends `event` asking for an ack and waits for it (at most [`WAIT`]).
    pub async fn request(&mut self, event: &str, data: Value) -> Result<Value, Refusal> {
        self.request_within(event, data, WAIT).await
    }

    /// [`Self::request`], waiting at most `within` for the ack.
    pub async fn request_within(
        &mut self,
        event: &str,
        data: Value,
        within: Duration,
    ) -> Result<Value, Refusal> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(json!({"event": event, "data": data, "id": id}).to_string())
            .await;
        self.ack_within(id, within).await
    }

    /// Waits for the ack of request `id` (at most [`WAIT`]), buffering events meanwhile.
    pub async fn ack(&mut self, id: u64) -> Result<Value, Refusal> {
        self.ack_within(id, WAIT).await
    }

    /// [`Self::ack`], waiting at most `within`.
    pub async fn ack_within(&mut self, id: u64, within: Duration) -> Result<Value, Refusal> {
        let wait = async {
            loop {
                if let Some(i) = self.acks.iter().position(|a| a["ack"] == id) {
                    return self.acks.remove(i).expect("index from position");
                }
                assert!(self.pump().await, "connection closed before ack {id}");
            }
        };
        let ack = tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("no ack {id} within {within:?}"));
        match ack.get("error") {
            Some(e) => Err(Refusal {
                code: e["code"].as_str().unwrap_or_default().to_owned(),
                body: e.clone(),
            }),
            None => Ok(ack["data"].clone()),
        }
    }

    /// Sends `event` without asking for an ack.
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_text(json!({"event": event, "data": data}).to_string())
            .await;
    }

    /// Takes the oldest buffered server event called `event`, reading more frames until one
    /// arrives; panics after [`WAIT`].
    pub async fn expect(&mut self, event: &str) -> Value {
        self.expect_within(event, WAIT).await
    }

    /// [`WsClient::expect`], waiting at most `within`.
    pub async fn expect_within(&mut self, event: &str, within: Duration) -> Value {
        let wait = async {
            loop {
                if let Some(v) = self.take(event) {
                    return v;
                }
                if !self.pump().await {
                    // Closed: nothing more will come; let the timeout report it.
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(v) => v,
            Err(_) => panic!("no `{event}` within {within:?}; got {:?}", self.buffered()),
        }
    }

    /// Waits until the server has delivered, on this connection, every event caused by anything
    /// the server's hub had received before this call: a *delivery barrier*.
    ///
    /// It sends `activity:ping` asking for an ack, and returns when the ack arrives. That orders:
    /// - the hub is one task handling commands in arrival order, and it pushes each command's
    ///   events into the outboxes of the connections they go to before it takes the next
    ///   command, so every event caused before the ping is in this connection's outbox when the
    ///   hub answers the ping;
    /// - the server writes an ack only after every event that was in the connection's outbox
    ///   when the ack was produced (ADR 0046): the raw WebSocket writer drains the outbox before
    ///   each reply.
    ///
    /// What counts as "received before": a request from any connection whose ack the test has
    /// seen, a disconnect or timer whose consequence the test has seen. Not covered: an event a
    /// *different* connection emitted without an ack (barrier that connection first: its own
    /// events are handled in order), a close the server may not have noticed yet, and timers not
    /// yet due (wait out their deadline first).
    ///
    /// Panics if the ping is refused (for example `rate_limited`): a refused ping never reached
    /// the hub, so it would order nothing.
    pub async fn barrier(&mut self) {
        if let Err(r) = self.request("activity:ping", json!({})).await {
            panic!(
                "the barrier's activity:ping was refused ({}): it orders nothing",
                r.code
            );
        }
    }

    /// Asserts that no `event` was delivered: after a [`WsClient::barrier`], no such event is
    /// buffered. See the barrier for what "delivered" covers.
    pub async fn expect_none(&mut self, event: &str) {
        self.barrier().await;
        if let Some((_, v)) = self.events.iter().find(|(n, _)| n == event) {
            panic!("unexpected `{event}`: {v}");
        }
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

    /// Reads until the server closes (at most [`WAIT`]); returns the close code.
    pub async fn closed_code(&mut self) -> u16 {
        let wait = async { while self.pump().await {} };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("closed in time");
        self.closed.as_ref().map(|c| c.0).unwrap_or(1006)
    }

    /// Sends a close frame (errors on a dead connection are ignored).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The names of the buffered events, for failure messages.
    pub fn buffered(&self) -> Vec<String> {
        self.events.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Removes and returns the oldest buffered event called `event`.
    pub fn take(&mut self, event: &str) -> Option<Value> {
        let i = self.events.iter().position(|(n, _)| n == event)?;
        self.events.remove(i).map(|(_, v)| v)
    }
}
