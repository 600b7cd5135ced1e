//! Wire types of every Chorus client <-> server event.
//!
//! Both transports carry the same events:
//! - raw WebSocket (`/ws`): a client frame is `{"event": "call:initiate", "data": {...}, "id": 7}`,
//!   a server event is `{"event": ..., "data": ...}`, an ack is `{"ack": 7, "data": ...}` or
//!   `{"ack": 7, "error": {"code": ..., "message": ...}}`;
//! - Socket.IO v5 (`/socket.io/`): `socket.emit("call:initiate", data, ack)`.
//!
//! [`ClientEvent::parse`] turns an event name and its JSON data into a typed event, telling an
//! unknown name apart from a payload of the wrong shape. [`ServerEvent`] is what the server sends;
//! [`ServerEvent::name`] and [`ServerEvent::data`] split it for Socket.IO, and
//! [`ServerEvent::to_frame`] renders the raw-WebSocket frame.
//!
//! Chat's events live in [`chat`]: [`chat::ChatRequest`] and [`chat::ChatPush`].
//!
//! Ids are newtypes ([`UserId`], [`CallId`], ...) so a call id can never be passed where a user id
//! is expected. Error codes are the closed set [`ErrorCode`]; `docs/protocol.md` lists them all.

pub mod chat;
mod client;
mod error;
mod ids;
mod presence;
mod server;

pub use chat::CHAT_EVENT_NAMES;
pub use client::*;
pub use error::*;
pub use ids::*;
pub use presence::*;
pub use server::*;
