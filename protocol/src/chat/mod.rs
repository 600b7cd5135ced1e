//! Chat on the signaling connection: the event names, the client payloads ([`ChatRequest`]),
//! the server payloads ([`ChatPush`] and the records in it), and the ids they carry.
//!
//! This module is the one definition of chat's wire format. The `chat` crate takes requests'
//! fields and returns these records; the binary's wiring parses a client event with
//! [`ChatRequest::parse`] and sends a [`ChatPush`] as a [`ServerEvent`](crate::ServerEvent).
//! `docs/protocol.md` ("Chat") describes every event for client authors.
//!
//! Ids are checked when they are parsed (from a payload or with `parse`): nothing downstream sees
//! an empty id, an over-long one, or one with control characters (PostgreSQL refuses NUL in
//! `TEXT`, and a newline in an id only ever means a confused or hostile client).

mod id;
mod push;
mod request;

pub use id::*;
pub use push::*;
pub use request::*;

/// Names of the chat events, client and server.
pub mod names {
    /// Client: send a message.
    pub const MESSAGE_SEND: &str = "message:send";
    /// Client: edit one's message.
    pub const MESSAGE_EDIT: &str = "message:edit";
    /// Client: delete a message.
    pub const MESSAGE_DELETE: &str = "message:delete";
    /// Client: add a reaction.
    pub const MESSAGE_REACT: &str = "message:react";
    /// Client: remove a reaction.
    pub const MESSAGE_UNREACT: &str = "message:unreact";
    /// Client: move one's read cursor. Also the server's broadcast of a moved cursor.
    pub const MESSAGE_READ: &str = "message:read";
    /// Client: count unread messages.
    pub const MESSAGE_UNREAD_COUNT: &str = "message:unread-count";
    /// Client: read a page of history.
    pub const MESSAGE_HISTORY: &str = "message:history";
    /// Client: the user started typing.
    pub const TYPING_START: &str = "typing:start";
    /// Client: the user stopped typing.
    pub const TYPING_STOP: &str = "typing:stop";

    /// Server: a message was durably stored (to the sending connection).
    pub const MESSAGE_ACK: &str = "message:ack";
    /// Server: a new message (to the other devices of every member).
    pub const MESSAGE_NEW: &str = "message:new";
    /// Server: a message was edited.
    pub const MESSAGE_UPDATED: &str = "message:updated";
    /// Server: a message was deleted.
    pub const MESSAGE_DELETED: &str = "message:deleted";
    /// Server: a reaction was added.
    pub const REACTION_ADDED: &str = "message:reaction:added";
    /// Server: a reaction was removed.
    pub const REACTION_REMOVED: &str = "message:reaction:removed";
    /// Server: someone started or stopped typing.
    pub const TYPING: &str = "typing";
}

/// Chat events the server sends. [`crate::ServerEvent::from_frame`] reads them back as
/// [`crate::ServerEvent::Chat`] (a node relaying a chat event to another).
pub const CHAT_SERVER_EVENT_NAMES: &[&str] = &[
    names::MESSAGE_ACK,
    names::MESSAGE_NEW,
    names::MESSAGE_UPDATED,
    names::MESSAGE_DELETED,
    names::REACTION_ADDED,
    names::REACTION_REMOVED,
    names::MESSAGE_READ,
    names::TYPING,
];

/// Chat events a client may send, served by the chat service rather than the call hub.
pub const CHAT_EVENT_NAMES: &[&str] = &[
    names::MESSAGE_SEND,
    names::MESSAGE_EDIT,
    names::MESSAGE_DELETE,
    names::MESSAGE_REACT,
    names::MESSAGE_UNREACT,
    names::MESSAGE_READ,
    names::MESSAGE_UNREAD_COUNT,
    names::MESSAGE_HISTORY,
    names::TYPING_START,
    names::TYPING_STOP,
];
