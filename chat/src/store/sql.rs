//! The SQL both backends run, and the embedded migrations.
//!
//! SQLite (≥ 3.35) and PostgreSQL accept the same statements here (`$n` placeholders,
//! `ON CONFLICT`, `RETURNING`, `BIGINT`), so each is written once; `shared_impl` runs them.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The embedded migrations, tracked in `_chat_migrations` so chat can share a database (and a
/// schema) with other sqlx users without their migration histories colliding.
pub(super) fn migrator() -> Migrator {
    let mut migrator = Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("init"),
        MigrationType::Simple,
        include_str!("../../migrations/0001_init.sql").into_sql_str(),
        false,
    )]);
    migrator.dangerous_set_table_name("_chat_migrations");
    migrator
}

pub(super) const ADD_CONVERSATION: &str = "INSERT INTO chat_conversations (id, last_seq, created_at) \
     VALUES ($1, 0, $2) ON CONFLICT (id) DO NOTHING";

pub(super) const ADD_MEMBER: &str = "INSERT INTO chat_members (conversation_id, user_id, role, joined_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = CASE \
     WHEN excluded.role = 'owner' THEN 'owner' ELSE chat_members.role END";

pub(super) const MEMBER: &str = "SELECT user_id, role, read_seq, read_at FROM chat_members \
     WHERE conversation_id = $1 AND user_id = $2";

pub(super) const MEMBERS: &str =
    "SELECT user_id FROM chat_members WHERE conversation_id = $1 ORDER BY user_id";

/// Takes the next sequence number. The row lock (PostgreSQL) or write lock (SQLite) it takes is
/// held until the transaction ends, which is what makes numbers unique and, with rollback
/// undoing the increment, gap-free.
pub(super) const NEXT_SEQ: &str =
    "UPDATE chat_conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq";

pub(super) const INSERT_MESSAGE: &str = "INSERT INTO chat_messages \
     (id, conversation_id, seq, sender_id, sender_name, kind, content, reply_to_id, temp_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (conversation_id, sender_id, temp_id) DO NOTHING RETURNING id";

pub(super) const MESSAGE_BY_TEMP_ID: &str = "SELECT id, conversation_id, seq, sender_id, sender_name, \
     kind, content, reply_to_id, temp_id, created_at, edited_at, deleted_at FROM chat_messages \
     WHERE conversation_id = $1 AND sender_id = $2 AND temp_id = $3";

pub(super) const MESSAGE_BY_ID: &str = "SELECT id, conversation_id, seq, sender_id, sender_name, \
     kind, content, reply_to_id, temp_id, created_at, edited_at, deleted_at FROM chat_messages \
     WHERE id = $1";

pub(super) const EDIT_MESSAGE: &str = "UPDATE chat_messages SET content = $2, edited_at = $3 \
     WHERE id = $1 AND deleted_at IS NULL";

pub(super) const DELETE_MESSAGE: &str = "UPDATE chat_messages SET content = '', deleted_at = $2 \
     WHERE id = $1 AND deleted_at IS NULL";

pub(super) const DELETE_REACTIONS_OF: &str = "DELETE FROM chat_reactions WHERE message_id = $1";

pub(super) const DISTINCT_EMOJI: &str =
    "SELECT COUNT(DISTINCT emoji) FROM chat_reactions WHERE message_id = $1";

pub(super) const EMOJI_USES: &str =
    "SELECT COUNT(*) FROM chat_reactions WHERE message_id = $1 AND emoji = $2";

pub(super) const ADD_REACTION: &str = "INSERT INTO chat_reactions (message_id, user_id, emoji, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (message_id, user_id, emoji) DO NOTHING";

pub(super) const REMOVE_REACTION: &str =
    "DELETE FROM chat_reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3";

/// Newest first, one extra row to learn `has_more`.
pub(super) const HISTORY: &str = "SELECT id, conversation_id, seq, sender_id, sender_name, \
     kind, content, reply_to_id, temp_id, created_at, edited_at, deleted_at FROM chat_messages \
     WHERE conversation_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";

pub(super) const HISTORY_REACTIONS: &str = "SELECT r.message_id, r.user_id, r.emoji, r.created_at \
     FROM chat_reactions r JOIN chat_messages m ON m.id = r.message_id \
     WHERE m.conversation_id = $1 AND m.seq >= $2 AND m.seq <= $3 \
     ORDER BY r.created_at, r.user_id, r.emoji";

pub(super) const ADVANCE_READ: &str = "UPDATE chat_members SET read_seq = $3, read_at = $4 \
     WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $3";

pub(super) const UNREAD_COUNT: &str = "SELECT COUNT(*) FROM chat_messages m \
     JOIN chat_members u ON u.conversation_id = m.conversation_id AND u.user_id = $2 \
     WHERE m.conversation_id = $1 AND m.seq > u.read_seq AND m.sender_id <> $2 \
     AND m.deleted_at IS NULL";

pub(super) const READS: &str = "SELECT user_id, read_at FROM chat_members \
     WHERE conversation_id = $1 AND read_seq >= $2 AND read_at IS NOT NULL \
     ORDER BY read_at, user_id";

/// Oldest first, in bounded batches so one sweep never holds a long transaction. Reactions go
/// by `ON DELETE CASCADE`.
pub(super) const DELETE_EXPIRED: &str = "DELETE FROM chat_messages WHERE id IN \
     (SELECT id FROM chat_messages WHERE created_at < $1 ORDER BY created_at LIMIT $2)";
