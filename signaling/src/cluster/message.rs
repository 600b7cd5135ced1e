//! What nodes say to each other (JSON over Redis pub/sub).
//!
//! Every message is an [`Envelope`]: the sender and a [`Body`]. Requests carry an id that their
//! [`Reply`] echoes; everything else is one-way. Server events travel as their client frame
//! ([`WireEvent`]), so a relayed event reaches the client byte for byte as the owner rendered it.

use super::NodeId;
use crate::auth::Identity;
use crate::media::{MediaAnswer, MediaRequest};
use protocol::{CallId, ClientEvent, ConnectionId, Failure, ServerEvent, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// One message between nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Body {
    /// Asks the receiving node, as the owner of a space, to act for a guest connection.
    Request { id: u64, request: Request },
    /// The answer to the request with this id.
    Reply { id: u64, reply: Reply },
    /// An event for one connection homed at the receiving node.
    Deliver {
        conn: ConnectionId,
        event: WireEvent,
    },
    /// An event for every device of `user` on the receiving node, but `except`.
    ToDevices {
        user: UserId,
        except: Option<ConnectionId>,
        event: WireEvent,
    },
    /// A presence event of `user`, for the audience the receiving node knows.
    Presence { user: UserId, event: WireEvent },
    /// A guest connection homed at the sender went away.
    DeviceLeft { conn: ConnectionId },
    /// `space` is now owned by `owner`, where `conns` (homed at the receiver) are guests.
    OwnerChanged {
        space: CallId,
        owner: NodeId,
        conns: Vec<ConnectionId>,
    },
    /// The receiving node now owns `space`: restore it from `snapshot`, or from the one in
    /// Redis when none is sent. `previous` is the node that owned it.
    Adopt {
        space: CallId,
        previous: NodeId,
        reason: MoveReason,
        snapshot: Option<String>,
    },
    /// Local only (never sent): `node` is dead; forget its guests.
    NodeGone { node: NodeId },
    /// Local only (never sent): Redis is back; write again what this node holds.
    Resync,
    /// A revocation taken through the server API of the sending node: every node applies and
    /// keeps it.
    Revoked {
        revocation: crate::revocation::Revocation,
    },
    /// The sending node changed the webhook endpoints stored in the shared database: read
    /// them now rather than at the next periodic sync.
    WebhooksChanged,
}

/// Why a space changed owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its owner stopped answering (crashed, partitioned).
    NodeFailed,
    /// Its owner was drained.
    NodeDrained,
}

impl MoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeFailed => "node_failed",
            Self::NodeDrained => "node_drained",
        }
    }
}

/// A connection homed at the sender, acting in a space the receiver owns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guest {
    pub conn: ConnectionId,
    pub user: UserId,
    pub name: String,
    pub grants: crate::auth::Grants,
}

impl Guest {
    pub fn new(conn: ConnectionId, identity: &Identity) -> Self {
        Self {
            conn,
            user: identity.user_id.clone(),
            name: identity.name.clone(),
            grants: identity.grants.clone(),
        }
    }

    pub fn identity(&self) -> Identity {
        // Contacts decide what the connection may watch, which only its own node serves.
        Identity {
            user_id: self.user.clone(),
            name: self.name.clone(),
            grants: self.grants.clone(),
            contacts: Default::default(),
        }
    }
}

/// What a guest asks of a space's owner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Request {
    /// A client event for the hub. `placed` is the id the sender chose for a new call.
    Event {
        guest: Guest,
        name: String,
        data: Value,
        placed: Option<CallId>,
    },
    /// A media request for the guest's seat.
    Media {
        guest: Guest,
        space: Option<CallId>,
        request: MediaRequest,
    },
    /// A device of a user involved in a call here connected at the sender: ring it if the call
    /// rings, offer it the way back if its user is reconnecting.
    DeviceArrived { guest: Guest },
}

impl Request {
    /// The request for client `event`.
    pub fn event(guest: Guest, event: &ClientEvent, placed: Option<CallId>) -> Self {
        Self::Event {
            guest,
            name: event.name().to_owned(),
            data: event.data(),
            placed,
        }
    }
}

/// The owner's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Reply {
    /// The ack payload of an event, or its failure.
    Ack { result: Result<Value, Failure> },
    /// A media request's answer for the seat in `space`.
    Media {
        result: Result<(CallId, MediaAnswer), Failure>,
    },
    /// A request that needs no answer beyond "done".
    Done,
}

/// A server event as its raw-WebSocket frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WireEvent(pub String);

impl WireEvent {
    pub fn of(event: &ServerEvent) -> Self {
        Self(event.to_frame())
    }

    /// The event again, or `None` for a frame this node cannot read (a newer node's event).
    pub fn event(&self) -> Option<Arc<ServerEvent>> {
        ServerEvent::from_frame(&self.0).ok().map(Arc::new)
    }
}
