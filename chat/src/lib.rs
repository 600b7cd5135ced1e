//! Durable, ordered in-call chat for Chorus.
//!
//! A *conversation* is a call (`conversationId` = its `callId`) or a named room (`room:<name>`).
//! Its *members* are everyone who has ever been a participant; they keep read access after the
//! call ends. This crate owns the domain and its storage; the signaling transports parse client
//! events, call [`ChatService`], and put the returned records on the wire.
//!
//! # Wiring it in
//!
//! ```no_run
//! # async fn demo() -> Result<(), chat::ChatError> {
//! use chat::{Actor, ChatService, ConversationId, MemberRole, SendMessage, Settings, UserId};
//!
//! let chat = ChatService::open(Settings::default()).await?; // ./data/chat.db
//! let _sweeper = chat.spawn_retention_sweeper(std::future::pending());
//!
//! // When alice starts call c1 and bob joins it:
//! let call = ConversationId::parse("c1")?;
//! let alice = Actor::user(UserId::parse("alice")?, "Alice");
//! chat.add_member(&call, &alice.user_id, MemberRole::Owner).await?;
//! chat.add_member(&call, &UserId::parse("bob")?, MemberRole::Member).await?;
//!
//! // `message:send` from alice:
//! let sent = chat
//!     .send(&alice, SendMessage {
//!         conversation_id: call.clone(),
//!         content: "can you hear me?".into(),
//!         kind: chat::MessageKind::Text,
//!         temp_id: Some(chat::TempId::parse("t-1")?),
//!         reply_to_id: None,
//!     })
//!     .await?;
//! // emit "message:ack" = sent.ack to the sending socket;
//! // if sent.fanout.change == Change::Applied: wait for the delivery turn, emit
//! // "message:new" = sent.fanout.event to every device of every user in
//! // sent.fanout.recipients, then drop the turn.
//! let mut turn = sent.delivery;
//! turn.wait().await;
//! drop(turn);
//! # Ok(()) }
//! ```
//!
//! Every method takes the authenticated [`Actor`] and returns either wire-ready records
//! (`serde::Serialize`, camelCase, RFC 3339 timestamps) or a [`ChatError`] whose
//! [`ErrorCode`] goes into `error {tempId?, code, message}`. The records and ids are chat's wire
//! types, defined once in `protocol::chat`.
//! Broadcast events come wrapped in [`Fanout`]: the payload, the conversation, every member to
//! deliver to, and whether anything [`Change`]d (skip the broadcast if not, but still answer).
//!
//! # Guarantees
//!
//! - `send` returns only after the message is committed (SQLite WAL with `synchronous=FULL`, or
//!   PostgreSQL's durable commit): an acked message survives `kill -9`. Messages arriving while
//!   a commit is in flight share the next one (group commit, `writer.rs`).
//! - Live delivery keeps sequence order per conversation, for messages committed through this
//!   process: [`Sent::delivery`] is a [`DeliveryTurn`] chained to the previous message.
//! - Sequence numbers are per conversation, assigned at commit, strictly increasing and gap-free,
//!   also with several processes on one PostgreSQL (a row-locked counter updated in the insert
//!   transaction; a rollback undoes the increment).
//! - A repeated `tempId` from the same sender in the same conversation returns the original ack
//!   and stores nothing (a unique constraint decides races).
//! - Read cursors only move forward; edits only by the author within the edit window; deletes are
//!   soft (content emptied, metadata and position kept).
//!
//! # Moving parts
//!
//! - [`store`]: the [`ChatStore`] trait, [`SqliteStore`] (default) and [`PostgresStore`].
//! - The writer (`writer.rs`): group commit on one or more lanes, each owning a share of the
//!   conversations; and [`DeliveryTurn`]s (`delivery.rs`) for ordered live delivery.
//! - [`Settings`]: every limit and its default; see `docs/chat.md` for operators.
//! - [`RateLimiter`] and [`Typing`]: sans-IO (they take `now`), held in memory per node.
//! - [`Clock`]: the service reads time only from here, so tests use [`ManualClock`].

mod clock;
mod content;
mod delivery;
mod error;
mod event;
mod id;
pub mod outbox;
mod rate;
mod service;
mod settings;
pub mod store;
mod sweeper;
mod typing;
pub mod webhook_endpoints;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use content::{MessageKind, check_content, check_emoji};
pub use delivery::DeliveryTurn;
pub use error::{ChatError, ErrorCode};
pub use event::{
    Change, Fanout, History, HistoryMessage, Message, MessageAck, MessageDeleted, MessageUpdated,
    ReactionEvent, ReactionGroup, ReadEvent, ReadReceipt, ReadReceipts, Sender, TypingEvent,
    UnreadCount,
};
pub use id::{
    ConversationId, MAX_ID_CHARS, MAX_TEMP_ID_CHARS, MessageId, SequenceNumber, TempId, UserId,
};
pub use rate::{Admission, LocalRate, RateLimiter, SendRate};
pub use service::{
    Actor, Authority, ChatService, HistoryQuery, SendMessage, Sent, Swept, TypingAction,
};
pub use settings::{RateLimit, Settings, SqliteSync};
pub use store::{ChatStore, MemberRole, PostgresStore, SqliteStore};
pub use typing::{Typing, TypingChange};
pub use writer::WriteStats;
