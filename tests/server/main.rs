//! End-to-end signaling tests: a whole server on 127.0.0.1:0 in this process, driven over real
//! sockets through both transports (raw WebSocket and Socket.IO v5).

mod admin;
pub mod bad_input;
mod calls;
mod chat;
mod client;
mod close_codes;
mod cluster;
pub mod durability;
mod edge;
mod ops;
mod ordering;
mod participants;
mod policy;
mod presence;
mod resume;
mod server;
mod session_token;
mod sfu;
mod sfu_data;
mod slow_peers;
mod webhook_api;
mod webhooks;
mod whep;
mod whip;
