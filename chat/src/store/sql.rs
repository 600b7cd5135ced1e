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
    let migration = |version, name, sql: &'static str| {
        Migration::new(
            version,
            Cow::Borrowed(name),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    let mut migrator = Migrator::with_migrations(vec![
        migration(1, "init", include_str!("../../migrations/0001_init.sql")),
        migration(
            2,
            "conversation activity",
            include_str!("../../migrations/0002_conversation_activity.sql"),
        ),
        migration(
            3,
            "webhook outbox",
            include_str!("../../migrations/0003_webhook_outbox.sql"),
        ),
        migration(
            4,
            "webhook endpoints",
            include_str!("../../migrations/0004_webhook_endpoints.sql"),
        ),
    ]);
    migrator.dangerous_set_table_name("_chat_migrations");
    migrator
}

/// Creates the conversation, or marks it active: a join is activity that keeps an idle
/// conversation from being swept.
pub(super) const ADD_CONVERSATION: &str = "INSERT INTO chat_conversations \
     (id, last_seq, created_at, active_at) VALUES ($1, 0, $2, $2) \
     ON CONFLICT (id) DO UPDATE SET active_at = excluded.active_at";

pub(super) const ADD_MEMBER: &str = "INSERT INTO chat_members (conversation_id, user_id, role, joined_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = CASE \
     WHEN excluded.role = 'owner' THEN 'owner' ELSE chat_members.role END";

pub(super) const MEMBER: &str = "SELECT user_id, role, read_seq, read_at FROM chat_members \
     WHERE conversation_id = $1 AND user_id = $2";

pub(super) const MEMBERS: &str =
    "SELECT user_id FROM chat_members WHERE conversation_id = $1 ORDER BY user_id";

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

/// Deletes idle conversations: no message left and no activity since `$1`; oldest first, at
/// most `$2`. Members go by `ON DELETE CASCADE`. A send commits its message and moves
/// `active_at` in one transaction, so a conversation that just got a message is never idle.
pub(super) const DELETE_IDLE_CONVERSATIONS: &str = "DELETE FROM chat_conversations WHERE id IN \
     (SELECT id FROM chat_conversations c WHERE active_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.conversation_id = c.id) \
     ORDER BY active_at LIMIT $2)";

/// [`DELETE_IDLE_CONVERSATIONS`] for PostgreSQL: the inner SELECT locks its rows and skips those
/// a group commit holds. Under READ COMMITTED a row whose `active_at` a send moved after this
/// statement's snapshot is re-checked against the new value when locked, and so left alone.
pub(super) const DELETE_IDLE_CONVERSATIONS_SKIP_LOCKED: &str = "DELETE FROM chat_conversations \
     WHERE id IN (SELECT id FROM chat_conversations c WHERE active_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM chat_messages m WHERE m.conversation_id = c.id) \
     ORDER BY active_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// Oldest first, in bounded batches so one sweep never holds a long transaction. Reactions go
/// by `ON DELETE CASCADE`.
pub(super) const DELETE_EXPIRED: &str = "DELETE FROM chat_messages WHERE id IN \
     (SELECT id FROM chat_messages WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

/// Columns of one message row, in the order [`GroupSql::insert`] binds them.
const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, sender_id, sender_name, kind, content, reply_to_id, temp_id, created_at";
const PARAMS_PER_MESSAGE: usize = 10;

/// Most messages one group commit takes. Bounds the transaction (and the statements' bind
/// parameters: 10 per message, far below SQLite's 32,766 and PostgreSQL's 65,535).
pub const MAX_GROUP: usize = 256;

/// The statements of a group commit, generated once per backend.
///
/// Their lists have a length that depends on the group, and sqlx prepares (and caches, per
/// connection) one statement per distinct SQL text. So lists are generated only in power-of-two
/// lengths (1, 2, 4, … [`MAX_GROUP`]): a list of 5 conversations is bound as 8, the last
/// repeated, which changes nothing for `IN` and `CASE`. Inserts cannot repeat rows, so `n`
/// messages go in chunks of powers of two (100 = 64 + 32 + 4). That is at most 9 × 5 distinct
/// statements per connection, within sqlx's statement cache of 100, plus 9 × 10 for
/// [`GroupRead::OneStatement`] (whose backend sizes its writer's cache for them:
/// `sqlite::WRITER_STATEMENTS`).
pub(crate) struct GroupSql {
    lock: Vec<String>,
    members: Vec<String>,
    originals: Vec<String>,
    /// `[conversations class][originals class + 1]` (0: no originals); only with
    /// [`GroupRead::OneStatement`].
    read: Vec<Vec<String>>,
    insert: Vec<String>,
    counters: Vec<String>,
}

/// How a backend reads what a group commit needs before it numbers the messages: the counters,
/// the members, and the messages already stored under the group's tempIds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupRead {
    /// Three statements (PostgreSQL): the counter rows `FOR UPDATE`, then the members, then the
    /// originals. Under READ COMMITTED a statement that joined the members to the locked rows
    /// would read them from the snapshot taken before it waited for the lock, and could miss a
    /// member added meanwhile; a statement after the lock sees it.
    Separate,
    /// One statement, [`GroupSql::read`] (SQLite): `BEGIN IMMEDIATE` already holds the write
    /// lock, so nothing changes between the parts. Each statement is a round trip to the
    /// connection's worker thread, two thread wake-ups, and at low rates a group commit is
    /// mostly such hand-offs (docs/benchmarks.md); this saves two of its seven.
    OneStatement,
}

/// [`GroupSql::read`]'s `part` column: what a row is.
pub(crate) const READ_PART_COUNTER: i64 = 0;
/// See [`READ_PART_COUNTER`].
pub(crate) const READ_PART_ORIGINAL: i64 = 1;

/// How a backend's group statements write their bind parameters. Every group statement binds in
/// textual order, so both styles take the same binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite). SQLite looks a numbered parameter's name up in a linear list, and
    /// sqlx asks for every parameter's name when binding: quadratic in the parameters of a
    /// statement, 10 % of the server's CPU with 2,560-parameter inserts. Anonymous ones are
    /// not in that list.
    Anonymous,
}

impl GroupSql {
    /// `lock_suffix` is appended to the counter SELECT: `" FOR UPDATE"` on PostgreSQL (rows are
    /// locked in `ORDER BY id` order, so two nodes' groups never deadlock); empty on SQLite,
    /// whose `BEGIN IMMEDIATE` already holds the write lock.
    pub(crate) fn new(lock_suffix: &str, style: Placeholders, reads: GroupRead) -> Self {
        let classes = size_classes();
        // `n` tuples of `per` parameters, numbered from `first`.
        let list = |n: usize, per: usize, first: usize| -> String {
            let mut next = first;
            let mut param = || {
                let p = match style {
                    Placeholders::Numbered => format!("${next}"),
                    Placeholders::Anonymous => "?".to_owned(),
                };
                next += 1;
                p
            };
            (0..n)
                .map(|_| {
                    let params: Vec<String> = (0..per).map(|_| param()).collect();
                    if per == 1 {
                        params[0].clone()
                    } else {
                        format!("({})", params.join(", "))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let param = |k: usize| match style {
            Placeholders::Numbered => format!("${k}"),
            Placeholders::Anonymous => "?".to_owned(),
        };
        let counter_rows = |n: usize| {
            // Named as message columns, since a compound SELECT takes its names from its first
            // part: the conversation, its last sequence number, and one member (NULL when it
            // has none) per row.
            format!(
                "SELECT {READ_PART_COUNTER} AS part, NULL AS id, c.id AS conversation_id, \
                 c.last_seq AS seq, m.user_id AS sender_id, NULL AS sender_name, NULL AS kind, \
                 NULL AS content, NULL AS reply_to_id, NULL AS temp_id, NULL AS created_at, \
                 NULL AS edited_at, NULL AS deleted_at \
                 FROM chat_conversations c LEFT JOIN chat_members m ON m.conversation_id = c.id \
                 WHERE c.id IN ({})",
                list(n, 1, 1)
            )
        };
        let read = match reads {
            GroupRead::Separate => Vec::new(),
            GroupRead::OneStatement => classes
                .iter()
                .map(|&n| {
                    std::iter::once(counter_rows(n))
                        .chain(classes.iter().map(|&k| {
                            format!(
                                "{} UNION ALL SELECT {READ_PART_ORIGINAL}, {MESSAGE_COLUMNS}, \
                                 edited_at, deleted_at FROM chat_messages \
                                 WHERE (conversation_id, sender_id, temp_id) IN (VALUES {})",
                                counter_rows(n),
                                list(k, 3, n + 1)
                            )
                        }))
                        .collect()
                })
                .collect(),
        };
        Self {
            read,
            lock: classes
                .iter()
                .map(|&n| {
                    format!(
                        "SELECT id, last_seq FROM chat_conversations WHERE id IN ({}) \
                         ORDER BY id{lock_suffix}",
                        list(n, 1, 1)
                    )
                })
                .collect(),
            members: classes
                .iter()
                .map(|&n| {
                    format!(
                        "SELECT conversation_id, user_id FROM chat_members \
                         WHERE conversation_id IN ({})",
                        list(n, 1, 1)
                    )
                })
                .collect(),
            originals: classes
                .iter()
                .map(|&n| {
                    format!(
                        "SELECT {MESSAGE_COLUMNS}, edited_at, deleted_at FROM chat_messages \
                         WHERE (conversation_id, sender_id, temp_id) IN (VALUES {})",
                        list(n, 3, 1)
                    )
                })
                .collect(),
            insert: classes
                .iter()
                .map(|&n| {
                    format!(
                        "INSERT INTO chat_messages ({MESSAGE_COLUMNS}) VALUES {}",
                        list(n, PARAMS_PER_MESSAGE, 1)
                    )
                })
                .collect(),
            counters: classes
                .iter()
                .map(|&n| {
                    // Binds: (id, last_seq) pairs, the activity time, then the ids again.
                    let cases: Vec<String> = (0..n)
                        .map(|i| format!("WHEN {} THEN {}", param(1 + 2 * i), param(2 + 2 * i)))
                        .collect();
                    format!(
                        "UPDATE chat_conversations SET last_seq = CASE id {} END, active_at = {} \
                         WHERE id IN ({})",
                        cases.join(" "),
                        param(2 * n + 1),
                        list(n, 1, 2 * n + 2)
                    )
                })
                .collect(),
        }
    }

    /// `SELECT id, last_seq … FOR UPDATE` for `n` conversation ids (bind [`padded`] to
    /// [`class`]`(n)`).
    pub(crate) fn lock(&self, n: usize) -> &str {
        &self.lock[class_index(n)]
    }

    /// `SELECT conversation_id, user_id` of the members of `n` conversations.
    pub(crate) fn members(&self, n: usize) -> &str {
        &self.members[class_index(n)]
    }

    /// Stored messages matching `n` (conversation, sender, tempId) triples.
    pub(crate) fn originals(&self, n: usize) -> &str {
        &self.originals[class_index(n)]
    }

    /// [`GroupRead::OneStatement`]: the counters and members of `n` conversations, then the
    /// messages stored under `k` (conversation, sender, tempId) triples (none when `k` is 0),
    /// each row tagged by `part` ([`READ_PART_COUNTER`], [`READ_PART_ORIGINAL`]). Binds: the
    /// [`padded`] conversation ids, then the padded triples.
    pub(crate) fn read(&self, n: usize, k: usize) -> &str {
        let originals = if k == 0 { 0 } else { class_index(k) + 1 };
        &self.read[class_index(n)][originals]
    }

    /// Inserts exactly `n` messages; `n` must be a power of two (see [`chunks`]).
    pub(crate) fn insert(&self, n: usize) -> &str {
        debug_assert!(n.is_power_of_two());
        &self.insert[class_index(n)]
    }

    /// Sets `last_seq` of `n` conversations and marks them active.
    pub(crate) fn counters(&self, n: usize) -> &str {
        &self.counters[class_index(n)]
    }
}

/// 1, 2, 4, … [`MAX_GROUP`].
fn size_classes() -> Vec<usize> {
    std::iter::successors(Some(1usize), |n| (*n < MAX_GROUP).then_some(n * 2)).collect()
}

/// The list length `n` items are bound as.
pub(crate) fn class(n: usize) -> usize {
    n.max(1).next_power_of_two().min(MAX_GROUP)
}

fn class_index(n: usize) -> usize {
    class(n).trailing_zeros() as usize
}

/// `items` extended to [`class`]`(len)` by repeating the last one.
pub(crate) fn padded<T: Clone>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    if let Some(last) = items.last() {
        out.resize(class(items.len()), last.clone());
    }
    out
}

/// Splits `n` rows into power-of-two chunk sizes, largest first (100 → 64, 32, 4).
pub(crate) fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    while n > 0 {
        let size = (1usize << (usize::BITS - 1 - n.leading_zeros())).min(MAX_GROUP);
        out.push(size);
        n -= size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_come_in_power_of_two_lengths() {
        assert_eq!(class(0), 1);
        assert_eq!(class(5), 8);
        assert_eq!(class(MAX_GROUP), MAX_GROUP);
        assert_eq!(padded(&[1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(chunks(100), [64, 32, 4]);
        assert_eq!(chunks(MAX_GROUP + 3), [MAX_GROUP, 2, 1]);
        assert!(chunks(0).is_empty());
    }

    #[test]
    fn statements_number_their_parameters() {
        let sql = GroupSql::new(" FOR UPDATE", Placeholders::Numbered, GroupRead::Separate);
        assert_eq!(
            sql.lock(3),
            "SELECT id, last_seq FROM chat_conversations WHERE id IN ($1, $2, $3, $4) \
             ORDER BY id FOR UPDATE"
        );
        assert!(
            sql.originals(2)
                .ends_with("IN (VALUES ($1, $2, $3), ($4, $5, $6))")
        );
        assert!(
            sql.insert(2)
                .ends_with("($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)")
        );
        assert_eq!(
            sql.counters(2),
            "UPDATE chat_conversations SET last_seq = CASE id WHEN $1 THEN $2 WHEN $3 THEN $4 \
             END, active_at = $5 WHERE id IN ($6, $7)"
        );
        let sql = GroupSql::new("", Placeholders::Anonymous, GroupRead::OneStatement);
        assert_eq!(
            sql.counters(1),
            "UPDATE chat_conversations SET last_seq = CASE id WHEN ? THEN ? END, \
             active_at = ? WHERE id IN (?)"
        );
        assert!(
            sql.insert(1)
                .ends_with("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        );
        assert!(sql.read(3, 0).ends_with("WHERE c.id IN (?, ?, ?, ?)"));
        assert!(sql.read(1, 2).ends_with(
            "WHERE c.id IN (?) UNION ALL SELECT 1, id, conversation_id, seq, \
                 sender_id, sender_name, kind, content, reply_to_id, temp_id, created_at, \
                 edited_at, deleted_at FROM chat_messages WHERE (conversation_id, sender_id, \
                 temp_id) IN (VALUES (?, ?, ?), (?, ?, ?))"
        ));
    }
}
