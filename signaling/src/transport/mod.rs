//! Transport adapters: raw WebSocket JSON at `/ws` and Socket.IO v5 at `/socket.io/`.
//!
//! Both authenticate before a session starts, then run every client event through one
//! [`crate::session::Session`] in arrival order, so relayed offers never overtake their
//! candidates. They differ only in framing.
//!
//! Output is bounded the same way on both: server events wait in the connection's [`outbox`]
//! (bounded in bytes and events), and every socket write has a [`deadline`]. A client that stops
//! reading is closed within `limits.write_timeout`, and everything held for it is freed (and,
//! with glibc, given back to the system: [`memory`]).
//!
//! A session lives as long as its token: both writers watch the session's [`expiry`], warn the
//! client with `session:expiring` a minute ahead, and close the connection when the token is no
//! longer accepted, unless `session:refresh` brought a newer one.

pub mod deadline;
pub mod expiry;
pub mod memory;
pub mod outbox;
pub mod socketio;
pub mod ws;
