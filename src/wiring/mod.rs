//! Adapters that connect the domain crates, which never depend on each other:
//! - [`chat`]: signaling's `Extension` over `chat::ChatService` (the chat events and REST);
//! - [`sfu`]: signaling's `MediaServer` over `sfu::SfuHandle`, and the SFU event pump;
//! - [`turn`]: the `[turn]` configuration mapped onto the relay, and its binding.

pub mod chat;
pub mod sfu;
pub mod turn;
