//! Durable storage: one trait, [`ChatStore`], and two real implementations, [`SqliteStore`]
//! (embedded default) and [`PostgresStore`] (cluster). [`connect`] picks one from
//! [`Settings::database_url`] and runs the embedded migrations.
//!
//! The store enforces what must hold under concurrency — gap-free sequence numbers, idempotent
//! `tempId`s, forward-only read cursors, the reaction bound — inside transactions. Permission
//! checks and input validation belong to [`ChatService`](crate::ChatService).

mod postgres;
mod shared_impl;
mod sql;
mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use postgres::PostgresStore;
pub use sql::MAX_GROUP;
pub use sqlite::SqliteStore;

use crate::clock::Timestamp;
use crate::content::MessageKind;
use crate::error::ChatError;
use crate::event::Change;
use crate::id::{ConversationId, MessageId, SequenceNumber, TempId, UserId};
use crate::settings::Settings;

/// A member's standing in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberRole {
    /// A participant.
    Member,
    /// The call's initiator (or a room's creator): may delete anyone's messages.
    Owner,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Who.
    pub user_id: UserId,
    /// Their standing.
    pub role: MemberRole,
    /// Their read cursor; 0 until they read something.
    pub read_seq: SequenceNumber,
    /// When the cursor last moved.
    pub read_at: Option<Timestamp>,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Server id.
    pub id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its position.
    pub seq: SequenceNumber,
    /// Author.
    pub sender_id: UserId,
    /// Author's display name at send time.
    pub sender_name: String,
    /// Message type.
    pub kind: MessageKind,
    /// Text; empty once deleted.
    pub content: String,
    /// Answered message.
    pub reply_to_id: Option<MessageId>,
    /// The sender's idempotency key.
    pub temp_id: Option<TempId>,
    /// Commit time.
    pub created_at: Timestamp,
    /// Last edit.
    pub edited_at: Option<Timestamp>,
    /// Soft-deletion time.
    pub deleted_at: Option<Timestamp>,
}

/// A message to insert; the store assigns `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Fresh server id.
    pub id: MessageId,
    /// Target conversation (must exist).
    pub conversation_id: ConversationId,
    /// Author.
    pub sender_id: UserId,
    /// Author's display name.
    pub sender_name: String,
    /// Message type.
    pub kind: MessageKind,
    /// Validated text.
    pub content: String,
    /// Validated reply target.
    pub reply_to_id: Option<MessageId>,
    /// Idempotency key.
    pub temp_id: Option<TempId>,
    /// Commit time.
    pub created_at: Timestamp,
}

/// What a group commit did with one of its messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// Committed with a new sequence number.
    Created(StoredMessage),
    /// The (conversation, sender, tempId) was already stored, or came earlier in the same group;
    /// this is the original.
    Duplicate(StoredMessage),
    /// Refused, nothing stored: the conversation does not exist (or was swept) or the sender is
    /// not one of its members.
    NotMember,
}

/// The outcome of [`ChatStore::insert_messages`]: one [`Inserted`] per message, in the order
/// given, and the members of every conversation in the group, read in the same transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Committed {
    /// One per message of the group, same order.
    pub outcomes: Vec<Inserted>,
    /// Members of each conversation of the group, sorted: whom `message:new` goes to.
    pub members: HashMap<ConversationId, Arc<[UserId]>>,
}

/// What adding a reaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReactionInsert {
    /// Stored.
    Added,
    /// That user already reacted with that emoji.
    AlreadyPresent,
    /// The emoji is new and the message already has the maximum of distinct emoji.
    LimitReached,
    /// The message is gone or deleted.
    MessageMissing,
}

/// A reaction as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReaction {
    /// The message.
    pub message_id: MessageId,
    /// Who.
    pub user_id: UserId,
    /// What.
    pub emoji: String,
    /// When.
    pub created_at: Timestamp,
}

/// One page of history, newest last.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// Messages in ascending sequence order.
    pub messages: Vec<StoredMessage>,
    /// Reactions on those messages, in order of creation.
    pub reactions: Vec<StoredReaction>,
    /// Whether older messages exist.
    pub has_more: bool,
}

/// A read cursor after an attempt to advance it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCursor {
    /// Whether it moved.
    pub change: Change,
    /// When it last moved; `None` only if the member is unknown.
    pub read_at: Option<Timestamp>,
}

/// Chat persistence. Implementations must be safe to share between tasks and, for
/// [`PostgresStore`], between processes.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Creates the conversation if needed and makes `user` a member. Idempotent; a role never
    /// downgrades (an owner who rejoins stays owner).
    async fn add_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: MemberRole,
        at: Timestamp,
    ) -> Result<(), ChatError>;

    /// One member, if `user` is one.
    async fn member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<Option<Member>, ChatError>;

    /// Every member's id, sorted.
    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, ChatError>;

    /// Stores a group of messages in one transaction (a *group commit*): each gets the next
    /// sequence number of its conversation, in the order given, unless its sender is not a
    /// member ([`Inserted::NotMember`]) or its tempId is already stored or came earlier in the
    /// group ([`Inserted::Duplicate`]). Returns only after a durable commit. On `Err` nothing of
    /// the group is stored. At most [`MAX_GROUP`] messages.
    async fn insert_messages(&self, group: &[NewMessage]) -> Result<Committed, ChatError>;

    /// How many groups may usefully commit at once: 1 for SQLite (one writer), more for
    /// PostgreSQL, where groups touching different conversations commit in parallel.
    fn write_lanes(&self) -> usize;

    /// The message `sender` sent to `conversation` with `temp_id`, if any.
    async fn message_by_temp_id(
        &self,
        conversation: &ConversationId,
        sender: &UserId,
        temp_id: &TempId,
    ) -> Result<Option<StoredMessage>, ChatError>;

    /// One message by id.
    async fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, ChatError>;

    /// Replaces the content of a message that is not deleted; `false` if it is gone or deleted.
    async fn edit_message(
        &self,
        id: &MessageId,
        content: &str,
        at: Timestamp,
    ) -> Result<bool, ChatError>;

    /// Soft-deletes (empties content, drops reactions); `false` if already deleted or gone.
    async fn delete_message(&self, id: &MessageId, at: Timestamp) -> Result<bool, ChatError>;

    /// Adds a reaction unless it exists or would exceed `max_distinct` emoji on the message.
    async fn add_reaction(
        &self,
        message: &MessageId,
        user: &UserId,
        emoji: &str,
        at: Timestamp,
        max_distinct: usize,
    ) -> Result<ReactionInsert, ChatError>;

    /// Removes a reaction; `false` if there was none.
    async fn remove_reaction(
        &self,
        message: &MessageId,
        user: &UserId,
        emoji: &str,
    ) -> Result<bool, ChatError>;

    /// Up to `limit` messages with `seq < before` (all if `None`), with their reactions.
    async fn history(
        &self,
        conversation: &ConversationId,
        before: Option<SequenceNumber>,
        limit: u32,
    ) -> Result<HistoryPage, ChatError>;

    /// Moves `user`'s read cursor to `seq` if that is forward.
    async fn advance_read_cursor(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        seq: SequenceNumber,
        at: Timestamp,
    ) -> Result<ReadCursor, ChatError>;

    /// Messages by others after `user`'s cursor, deleted ones excluded.
    async fn unread_count(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<u64, ChatError>;

    /// Members whose cursor is at or past `seq`, with when it last moved, earliest first.
    async fn reads(
        &self,
        conversation: &ConversationId,
        seq: SequenceNumber,
    ) -> Result<Vec<(UserId, Timestamp)>, ChatError>;

    /// Deletes up to `batch` messages created before `cutoff`, oldest first; returns how many.
    async fn delete_expired(&self, cutoff: Timestamp, batch: u32) -> Result<u64, ChatError>;

    /// Deletes up to `batch` conversations, with their members, that hold no message and saw no
    /// activity (a join or a message) since `cutoff`; returns how many.
    async fn delete_idle_conversations(
        &self,
        cutoff: Timestamp,
        batch: u32,
    ) -> Result<u64, ChatError>;

    /// Closes the connections after in-flight queries finish; later calls fail with
    /// `storage_unavailable`. For graceful shutdown; not needed for durability.
    async fn close(&self);

    /// The durable outbox in the same database (see [`crate::outbox`]).
    fn outbox(&self) -> Arc<dyn crate::outbox::OutboxStore>;

    /// Webhook endpoints created through the server API, in the same database (see
    /// [`crate::webhook_endpoints`]).
    fn webhook_endpoints(&self) -> Arc<dyn crate::webhook_endpoints::EndpointStore>;
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection URL, passed to the driver as is.
    Postgres(String),
}

impl StoreUrl {
    /// Reads `chat.database_url`, defaulting to `<data_dir>/chat.db`.
    pub fn from_settings(settings: &Settings) -> Result<Self, ChatError> {
        let Some(url) = settings.database_url.as_deref() else {
            return Ok(Self::Sqlite(settings.data_dir.join("chat.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                ChatError::invalid("chat.database_url must start with sqlite:// or postgres://")
            })?;
        if path.is_empty() || path.contains(":memory:") || path.contains('?') {
            return Err(ChatError::invalid(
                "chat.database_url: sqlite:// needs a file path (no :memory:, no options)",
            ));
        }
        Ok(Self::Sqlite(path.into()))
    }
}

/// Opens the configured store and brings its schema up to date.
pub async fn connect(settings: &Settings) -> Result<Arc<dyn ChatStore>, ChatError> {
    Ok(match StoreUrl::from_settings(settings)? {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(&path, settings.sqlite_sync).await?),
        StoreUrl::Postgres(url) => {
            Arc::new(PostgresStore::connect(&url, settings.max_connections).await?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        let mut settings = Settings::default();
        assert_eq!(
            StoreUrl::from_settings(&settings).unwrap(),
            StoreUrl::Sqlite("./data/chat.db".into())
        );
        settings.database_url = Some("sqlite:///var/lib/chorus/chat.db".into());
        assert_eq!(
            StoreUrl::from_settings(&settings).unwrap(),
            StoreUrl::Sqlite("/var/lib/chorus/chat.db".into())
        );
        settings.database_url = Some("postgres://postgres@127.0.0.1/test".into());
        assert!(matches!(
            StoreUrl::from_settings(&settings).unwrap(),
            StoreUrl::Postgres(_)
        ));
        for bad in ["mysql://x", "sqlite::memory:", "sqlite://", "redis://x"] {
            settings.database_url = Some(bad.into());
            assert!(StoreUrl::from_settings(&settings).is_err(), "{bad}");
        }
    }
}
