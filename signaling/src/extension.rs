//! Event families served outside the call hub (chat), plugged in by the binary.
//!
//! Signaling does not depend on the chat crate: the binary implements [`Extension`] over it
//! and passes it to [`crate::Signaling::new`]. The session routes every event the extension
//! [`serves`](Extension::serves) to it, in arrival order with the connection's other events,
//! and tells it when the user joins a conversation (a call they start, accept or join).

use crate::auth::Identity;
use crate::driver::HubHandle;
use protocol::{ConnectionId, Failure, ServerEvent, UserId};
use serde_json::Value;
use std::sync::Arc;

/// How a user joined a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRole {
    /// Started it (the call's initiator): may moderate its chat.
    Owner,
    Member,
}

/// Who sent an event, and how to reach people.
pub struct Caller<'a> {
    pub identity: &'a Identity,
    pub conn: ConnectionId,
    pub hub: &'a HubHandle,
}

impl Caller<'_> {
    /// Delivers `event` to every device of `users`, except the calling connection when
    /// `skip_caller` says so.
    pub async fn deliver(&self, users: Vec<UserId>, event: ServerEvent, skip_caller: SkipCaller) {
        let except = match skip_caller {
            SkipCaller::Yes => Some(self.conn),
            SkipCaller::No => None,
        };
        self.hub.deliver(users, except, Arc::new(event)).await;
    }

    /// Delivers `event` to the calling connection only.
    pub async fn reply(&self, event: ServerEvent) {
        self.hub.deliver_to(self.conn, Arc::new(event)).await;
    }
}

/// Whether a fan-out skips the connection that caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipCaller {
    Yes,
    No,
}

/// A family of client events handled outside the hub; see the module docs.
#[async_trait::async_trait]
pub trait Extension: Send + Sync + 'static {
    /// Whether this extension handles `event`.
    fn serves(&self, event: &str) -> bool;

    /// Handles one event and returns its ack payload.
    async fn handle(&self, caller: &Caller<'_>, event: &str, data: Value)
    -> Result<Value, Failure>;

    /// `who` became a participant of `conversation` (a call id, or `room:<name>`).
    async fn joined(&self, who: &Identity, conversation: &str, role: JoinRole);
}
