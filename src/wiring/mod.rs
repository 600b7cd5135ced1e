//! Adapters that connect the domain crates, which never depend on each other:
//! - [`chat`]: signaling's `Extension` over `chat::ChatService` (the chat events and REST);
//! - [`sfu`]: signaling's `MediaServer` over `sfu::SfuHandle`, and the SFU event pump;
//! - [`turn`]: the `[turn]` configuration mapped onto the relay, and its binding;
//! - [`revocations`]: where signaling's token revocations are kept across restarts.

pub mod chat;
pub mod revocations;
pub mod sfu;
pub mod turn;
