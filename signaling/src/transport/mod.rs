//! Transport adapters: raw WebSocket JSON at `/ws` and Socket.IO v5 at `/socket.io/`.
//!
//! Both authenticate before a session starts, then run every client event through one
//! [`crate::session::Session`] in arrival order, so relayed offers never overtake their
//! candidates. They differ only in framing.

pub mod socketio;
pub mod ws;
