//! The per-connection pipeline shared by both transports.
//!
//! A transport adapter authenticates the connection, then hands every incoming event (name and
//! JSON data) to [`Session::handle`], which rate-limits, types, dispatches and measures it, and
//! returns the ack payload or the failure. The adapter renders that in its own framing and, on
//! failure, also sends an `error` event ([`error_event`]).
//!
//! Lifecycle: created after the hub accepted the connection; dropped when the connection ends
//! (the adapter then calls `HubHandle::disconnect`).

use crate::auth::Identity;
use crate::driver::HubHandle;
use crate::extension::{Caller, Extension, JoinRole};
use crate::limits::TokenBucket;
use crate::metrics::Metrics;
use protocol::{
    CHAT_EVENT_NAMES, CLIENT_EVENT_NAMES, ClientEvent, ConnectionId, ErrorCode, ErrorEvent,
    Failure, ServerEvent,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Per-connection limits, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    pub events_per_second: u32,
    pub event_burst: u32,
    pub max_frame_bytes: usize,
    pub outbound_queue: usize,
}

impl SessionLimits {
    pub fn from_config(c: &config::Config) -> Self {
        Self {
            events_per_second: c.limits.events_per_second,
            event_burst: c.limits.event_burst,
            max_frame_bytes: c.limits.max_frame_bytes,
            outbound_queue: c.limits.outbound_queue,
        }
    }
}

/// One authenticated connection's event pipeline; see the module docs.
pub struct Session {
    pub conn: ConnectionId,
    pub identity: Identity,
    hub: HubHandle,
    extension: Option<Arc<dyn Extension>>,
    bucket: TokenBucket,
    metrics: Metrics,
}

/// The outcome of one client event: the ack payload or the failure, and the chat `tempId`
/// the event carried (failures echo it in the `error` event).
pub struct Answer {
    pub result: Result<Value, Failure>,
    pub temp_id: Option<String>,
}

impl Session {
    pub fn new(
        conn: ConnectionId,
        identity: Identity,
        hub: HubHandle,
        extension: Option<Arc<dyn Extension>>,
        limits: SessionLimits,
        metrics: Metrics,
    ) -> Self {
        Self {
            conn,
            identity,
            hub,
            extension,
            bucket: TokenBucket::new(limits.events_per_second, limits.event_burst, Instant::now()),
            metrics,
        }
    }

    /// Handles one client event and returns its ack payload.
    pub async fn handle(&mut self, name: &str, data: Value) -> Answer {
        let started = Instant::now();
        let label = CLIENT_EVENT_NAMES
            .iter()
            .chain(CHAT_EVENT_NAMES)
            .find(|n| **n == name)
            .copied()
            .unwrap_or("unknown");
        self.metrics.events_in.with_label_values(&[label]).inc();
        let temp_id = data
            .get("tempId")
            .and_then(Value::as_str)
            .map(|t| protocol::truncate(t, 100).to_owned());
        let result = self.dispatch(name, data, started).await;
        self.metrics
            .event_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            self.metrics
                .event_errors
                .with_label_values(&[f.code.as_str()])
                .inc();
        }
        Answer { result, temp_id }
    }

    async fn dispatch(&mut self, name: &str, data: Value, now: Instant) -> Result<Value, Failure> {
        if !self.bucket.try_take(now) {
            return Err(Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "too many events; retry in {} ms",
                    self.bucket.wait_time().as_millis().max(1)
                ),
            ));
        }
        if let Some(ext) = self.extension.as_ref().filter(|e| e.serves(name)) {
            let caller = Caller {
                identity: &self.identity,
                conn: self.conn,
                hub: &self.hub,
            };
            return ext.handle(&caller, name, data).await;
        }
        let event = ClientEvent::parse(name, data)?;
        let joined = match &event {
            ClientEvent::CallAccept(r) | ClientEvent::CallJoin(r) => {
                Some((r.call_id.to_string(), JoinRole::Member))
            }
            _ => None,
        };
        let initiating = matches!(event, ClientEvent::CallInitiate(_));
        let ack = self.hub.event(self.conn, event).await?;
        if let Some(ext) = &self.extension {
            // Membership is recorded before the ack, so the caller's next event (a chat
            // message in the call) already finds it.
            let joined = joined.or_else(|| {
                initiating
                    .then(|| {
                        ack["callId"]
                            .as_str()
                            .map(|id| (id.to_owned(), JoinRole::Owner))
                    })
                    .flatten()
            });
            if let Some((conversation, role)) = joined {
                ext.joined(&self.identity, &conversation, role).await;
            }
        }
        Ok(ack)
    }
}

/// The `error` event answering a failed client event.
pub fn error_event(
    failure: &Failure,
    event: Option<&str>,
    id: Option<u64>,
    temp_id: Option<String>,
) -> ServerEvent {
    ServerEvent::Error(ErrorEvent {
        code: failure.code,
        message: failure.message.clone(),
        event: event.map(|e| protocol::truncate(e, 64).to_owned()),
        id,
        temp_id,
    })
}
