//! What the server sends for chat: [`ChatPush`], one variant per server event, and the records
//! in it (camelCase, RFC 3339 times).

use serde::Serialize;
use serde_json::Value;

use super::id::{ConversationId, MessageId, MessageKind, SequenceNumber, TempId, Timestamp};
use super::names;
use crate::{ChatEvent, ServerEvent, UserId};

/// A chat event from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatPush {
    /// `message:ack`, to the sending connection after the durable commit.
    Ack(MessageAck),
    /// `message:new`.
    New(Message),
    /// `message:updated`.
    Updated(MessageUpdated),
    /// `message:deleted`.
    Deleted(MessageDeleted),
    /// `message:reaction:added`.
    ReactionAdded(ReactionEvent),
    /// `message:reaction:removed`.
    ReactionRemoved(ReactionEvent),
    /// `message:read`.
    Read(ReadEvent),
    /// `typing`.
    Typing(TypingEvent),
}

impl ChatPush {
    /// The event's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ack(_) => names::MESSAGE_ACK,
            Self::New(_) => names::MESSAGE_NEW,
            Self::Updated(_) => names::MESSAGE_UPDATED,
            Self::Deleted(_) => names::MESSAGE_DELETED,
            Self::ReactionAdded(_) => names::REACTION_ADDED,
            Self::ReactionRemoved(_) => names::REACTION_REMOVED,
            Self::Read(_) => names::MESSAGE_READ,
            Self::Typing(_) => names::TYPING,
        }
    }

    /// The payload as JSON (also the ack of the client event that caused it, where there is one).
    pub fn data(&self) -> Value {
        match self {
            Self::Ack(p) => json(p),
            Self::New(p) => json(p),
            Self::Updated(p) => json(p),
            Self::Deleted(p) => json(p),
            Self::ReactionAdded(p) | Self::ReactionRemoved(p) => json(p),
            Self::Read(p) => json(p),
            Self::Typing(p) => json(p),
        }
    }

    /// As a server event, ready for either transport.
    pub fn to_event(&self) -> ServerEvent {
        ServerEvent::Chat(ChatEvent {
            name: self.name(),
            data: self.data(),
        })
    }
}

fn json<T: Serialize>(payload: &T) -> Value {
    // These records hold only strings, numbers, bools and lists: serialising cannot fail.
    serde_json::to_value(payload).expect("chat payloads serialise to JSON")
}

/// `message:ack {tempId, messageId, sequenceNumber, createdAt}`, sent only after commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageAck {
    /// The client's idempotency key, echoed (null if the client sent none).
    pub temp_id: Option<TempId>,
    /// The server id of the message.
    pub message_id: MessageId,
    /// Its position in the conversation.
    pub sequence_number: SequenceNumber,
    /// When it was committed.
    pub created_at: Timestamp,
}

/// `sender: {id, name}` inside a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sender {
    /// The sender's user id.
    pub id: UserId,
    /// The display name the sender had when sending.
    pub name: String,
}

/// `message:new {id, conversationId, senderId, sender, type, content, sequenceNumber, replyToId,
/// createdAt}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Server message id.
    pub id: MessageId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Same as `sender.id`; kept flat for existing clients.
    pub sender_id: UserId,
    /// Who sent it.
    pub sender: Sender,
    /// Always `"text"` today.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The text as sent; empty once deleted.
    pub content: String,
    /// Position in the conversation.
    pub sequence_number: SequenceNumber,
    /// The message this one answers, if any (null otherwise).
    pub reply_to_id: Option<MessageId>,
    /// Commit time.
    pub created_at: Timestamp,
}

/// One message in a history page: the `message:new` fields plus its later life.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMessage {
    /// The fields of `message:new` (content empty if deleted).
    #[serde(flatten)]
    pub message: Message,
    /// Last edit time, null if never edited.
    pub edited_at: Option<Timestamp>,
    /// Deletion time, null if not deleted. Deleted messages keep their place and metadata.
    pub deleted_at: Option<Timestamp>,
    /// Reactions grouped by emoji, in order of first use.
    pub reactions: Vec<ReactionGroup>,
}

/// All reactions of one emoji on one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionGroup {
    /// The emoji.
    pub emoji: String,
    /// How many users reacted with it.
    pub count: usize,
    /// Who, in order of reacting.
    pub user_ids: Vec<UserId>,
}

/// The ack of `message:history`: `{messages, hasMore}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Oldest first. For the next older page pass the first one's `sequenceNumber` as
    /// `beforeSequence`.
    pub messages: Vec<HistoryMessage>,
    /// Whether older messages exist.
    pub has_more: bool,
}

/// `message:updated {messageId, content, editedAt}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageUpdated {
    /// The edited message.
    pub message_id: MessageId,
    /// Its new text.
    pub content: String,
    /// When it was edited.
    pub edited_at: Timestamp,
}

/// `message:deleted {messageId}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    /// The deleted message.
    pub message_id: MessageId,
}

/// `message:reaction:added` / `message:reaction:removed {messageId, userId, emoji}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionEvent {
    /// The message reacted to.
    pub message_id: MessageId,
    /// Who reacted.
    pub user_id: UserId,
    /// With what.
    pub emoji: String,
}

/// `message:read {conversationId, messageId, userId, readAt}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadEvent {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message the client said it read.
    pub message_id: MessageId,
    /// The reader.
    pub user_id: UserId,
    /// When the reader's cursor reached this message.
    pub read_at: Timestamp,
}

/// The ack of `message:unread-count`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnreadCount {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Messages from others after the read cursor, deleted ones excluded.
    pub count: u64,
}

/// One read receipt: this user's cursor is at or past the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    /// The reader.
    pub user_id: UserId,
    /// When their cursor last moved (at or after they read this message).
    pub read_at: Timestamp,
}

/// `GET …/messages/{messageId}/reads`: `{messageId, reads}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipts {
    /// The message.
    pub message_id: MessageId,
    /// Readers, earliest first.
    pub reads: Vec<ReadReceipt>,
}

/// `typing {userId, conversationId, isTyping}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypingEvent {
    /// Who.
    pub user_id: UserId,
    /// Where.
    pub conversation_id: ConversationId,
    /// Started (true) or stopped/expired (false). A bool because that is the wire format.
    pub is_typing: bool,
}
