//! What the service returns: the wire records of `protocol::chat`, wrapped in [`Fanout`], which
//! says who should receive them.

pub use protocol::chat::{
    History, HistoryMessage, Message, MessageAck, MessageDeleted, MessageUpdated, ReactionEvent,
    ReactionGroup, ReadEvent, ReadReceipt, ReadReceipts, Sender, TypingEvent, UnreadCount,
};

use crate::id::{ConversationId, UserId};

/// An event for every member of a conversation (every device, the actor's other devices too).
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout<E> {
    /// The wire payload.
    pub event: E,
    /// The conversation it belongs to (for routing; not part of every payload).
    pub conversation_id: ConversationId,
    /// Every member, the actor included, sorted.
    pub recipients: Vec<UserId>,
    /// Whether anything changed. On [`Change::Unchanged`] answer the actor but skip the
    /// broadcast (the members already saw the state).
    pub change: Change,
}

/// Whether an action changed anything, so the wiring can skip redundant broadcasts. The actor is
/// answered either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// State changed; broadcast.
    Applied,
    /// Already so (repeat reaction, second delete, read of an older message); no broadcast needed.
    Unchanged,
}
