//! The one implementation of [`ChatStore`](super::ChatStore), expanded for each backend.
//!
//! sqlx's generic bounds over "any database" are unwieldy, while its API on two concrete pools is
//! identical, so the logic is a `macro_rules!` expanded in `sqlite.rs` and `postgres.rs`. A
//! backend supplies five inherent items: `reader()` and `writer()` pools, `begin_write()` (how to
//! start a write transaction), `LOCK_MESSAGE` (how to serialise reactions on one message) and
//! `close()`.

/// Expands `impl ChatStore for $store` where `$db` is its sqlx database type.
macro_rules! impl_chat_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::Row as _;

        use crate::clock::Timestamp;
        use crate::content::MessageKind;
        use crate::error::ChatError;
        use crate::event::Change;
        use crate::id::{ConversationId, MessageId, SequenceNumber, TempId, UserId};
        use crate::store::sql;
        use crate::store::{
            ChatStore, HistoryPage, Inserted, Member, MemberRole, NewMessage, ReactionInsert,
            ReadCursor, StoredMessage, StoredReaction,
        };

        type DbRow = <$db as sqlx::Database>::Row;

        fn message_from_row(row: &DbRow) -> Result<StoredMessage, ChatError> {
            let kind: String = row.try_get("kind")?;
            Ok(StoredMessage {
                id: MessageId::from_stored(row.try_get("id")?),
                conversation_id: ConversationId::parse(
                    row.try_get::<String, _>("conversation_id")?,
                )?,
                seq: SequenceNumber::from_stored(row.try_get("seq")?),
                sender_id: UserId::parse(row.try_get::<String, _>("sender_id")?)?,
                sender_name: row.try_get("sender_name")?,
                kind: MessageKind::parse(&kind)?,
                content: row.try_get("content")?,
                reply_to_id: row
                    .try_get::<Option<String>, _>("reply_to_id")?
                    .map(MessageId::from_stored),
                temp_id: row
                    .try_get::<Option<String>, _>("temp_id")?
                    .map(TempId::parse)
                    .transpose()?,
                created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
                edited_at: row
                    .try_get::<Option<i64>, _>("edited_at")?
                    .map(Timestamp::from_unix_millis),
                deleted_at: row
                    .try_get::<Option<i64>, _>("deleted_at")?
                    .map(Timestamp::from_unix_millis),
            })
        }

        fn role_str(role: MemberRole) -> &'static str {
            match role {
                MemberRole::Owner => "owner",
                MemberRole::Member => "member",
            }
        }

        #[async_trait]
        impl ChatStore for $store {
            async fn add_member(
                &self,
                conversation: &ConversationId,
                user: &UserId,
                role: MemberRole,
                at: Timestamp,
            ) -> Result<(), ChatError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(sql::ADD_CONVERSATION)
                    .bind(conversation.as_str())
                    .bind(at.unix_millis())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::ADD_MEMBER)
                    .bind(conversation.as_str())
                    .bind(user.as_str())
                    .bind(role_str(role))
                    .bind(at.unix_millis())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn member(
                &self,
                conversation: &ConversationId,
                user: &UserId,
            ) -> Result<Option<Member>, ChatError> {
                let Some(row) = sqlx::query(sql::MEMBER)
                    .bind(conversation.as_str())
                    .bind(user.as_str())
                    .fetch_optional(self.reader())
                    .await?
                else {
                    return Ok(None);
                };
                let role = match row.try_get::<String, _>("role")?.as_str() {
                    "owner" => MemberRole::Owner,
                    _ => MemberRole::Member,
                };
                Ok(Some(Member {
                    user_id: user.clone(),
                    role,
                    read_seq: SequenceNumber::from_stored(row.try_get("read_seq")?),
                    read_at: row
                        .try_get::<Option<i64>, _>("read_at")?
                        .map(Timestamp::from_unix_millis),
                }))
            }

            async fn members(
                &self,
                conversation: &ConversationId,
            ) -> Result<Vec<UserId>, ChatError> {
                let rows = sqlx::query(sql::MEMBERS)
                    .bind(conversation.as_str())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| UserId::parse(row.try_get::<String, _>(0)?))
                    .collect()
            }

            async fn insert_message(
                &self,
                message: &NewMessage,
            ) -> Result<Option<Inserted>, ChatError> {
                // Fast path for retries: no write lock needed to find the original.
                if let Some(temp_id) = &message.temp_id {
                    if let Some(original) = self
                        .message_by_temp_id(&message.conversation_id, &message.sender_id, temp_id)
                        .await?
                    {
                        return Ok(Some(Inserted::Duplicate(original)));
                    }
                }
                let mut tx = self.begin_write().await?;
                let Some(row) = sqlx::query(sql::NEXT_SEQ)
                    .bind(message.conversation_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                let seq: i64 = row.try_get(0)?;
                let inserted = sqlx::query(sql::INSERT_MESSAGE)
                    .bind(message.id.as_str())
                    .bind(message.conversation_id.as_str())
                    .bind(seq)
                    .bind(message.sender_id.as_str())
                    .bind(message.sender_name.as_str())
                    .bind(message.kind.as_str())
                    .bind(message.content.as_str())
                    .bind(message.reply_to_id.as_ref().map(MessageId::as_str))
                    .bind(message.temp_id.as_ref().map(TempId::as_str))
                    .bind(message.created_at.unix_millis())
                    .fetch_optional(&mut *tx)
                    .await?;
                if inserted.is_none() {
                    // A concurrent retry of the same tempId committed first. Rolling back also
                    // undoes our counter increment, so no gap is left.
                    tx.rollback().await?;
                    let temp_id = message.temp_id.as_ref().ok_or_else(|| {
                        ChatError::StorageUnavailable(sqlx::Error::Protocol(
                            "insert conflicted without a tempId".into(),
                        ))
                    })?;
                    let original = self
                        .message_by_temp_id(&message.conversation_id, &message.sender_id, temp_id)
                        .await?;
                    return Ok(original.map(Inserted::Duplicate));
                }
                tx.commit().await?;
                Ok(Some(Inserted::Created(StoredMessage {
                    id: message.id.clone(),
                    conversation_id: message.conversation_id.clone(),
                    seq: SequenceNumber::from_stored(seq),
                    sender_id: message.sender_id.clone(),
                    sender_name: message.sender_name.clone(),
                    kind: message.kind,
                    content: message.content.clone(),
                    reply_to_id: message.reply_to_id.clone(),
                    temp_id: message.temp_id.clone(),
                    created_at: message.created_at,
                    edited_at: None,
                    deleted_at: None,
                })))
            }

            async fn message_by_temp_id(
                &self,
                conversation: &ConversationId,
                sender: &UserId,
                temp_id: &TempId,
            ) -> Result<Option<StoredMessage>, ChatError> {
                sqlx::query(sql::MESSAGE_BY_TEMP_ID)
                    .bind(conversation.as_str())
                    .bind(sender.as_str())
                    .bind(temp_id.as_str())
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(message_from_row)
                    .transpose()
            }

            async fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, ChatError> {
                sqlx::query(sql::MESSAGE_BY_ID)
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(message_from_row)
                    .transpose()
            }

            async fn edit_message(
                &self,
                id: &MessageId,
                content: &str,
                at: Timestamp,
            ) -> Result<bool, ChatError> {
                let done = sqlx::query(sql::EDIT_MESSAGE)
                    .bind(id.as_str())
                    .bind(content)
                    .bind(at.unix_millis())
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_message(
                &self,
                id: &MessageId,
                at: Timestamp,
            ) -> Result<bool, ChatError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(sql::DELETE_MESSAGE)
                    .bind(id.as_str())
                    .bind(at.unix_millis())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(sql::DELETE_REACTIONS_OF)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn add_reaction(
                &self,
                message: &MessageId,
                user: &UserId,
                emoji: &str,
                at: Timestamp,
                max_distinct: usize,
            ) -> Result<ReactionInsert, ChatError> {
                let mut tx = self.begin_write().await?;
                // Serialises reactions on this message so the distinct-emoji bound holds under
                // concurrency.
                let row = sqlx::query(Self::LOCK_MESSAGE)
                    .bind(message.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                let live = match &row {
                    Some(row) => row.try_get::<Option<i64>, _>(0)?.is_none(),
                    None => false,
                };
                if !live {
                    tx.rollback().await?;
                    return Ok(ReactionInsert::MessageMissing);
                }
                let uses: i64 = sqlx::query(sql::EMOJI_USES)
                    .bind(message.as_str())
                    .bind(emoji)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                if uses == 0 {
                    let distinct: i64 = sqlx::query(sql::DISTINCT_EMOJI)
                        .bind(message.as_str())
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                    if usize::try_from(distinct).unwrap_or(usize::MAX) >= max_distinct {
                        tx.rollback().await?;
                        return Ok(ReactionInsert::LimitReached);
                    }
                }
                let done = sqlx::query(sql::ADD_REACTION)
                    .bind(message.as_str())
                    .bind(user.as_str())
                    .bind(emoji)
                    .bind(at.unix_millis())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(if done.rows_affected() == 1 {
                    ReactionInsert::Added
                } else {
                    ReactionInsert::AlreadyPresent
                })
            }

            async fn remove_reaction(
                &self,
                message: &MessageId,
                user: &UserId,
                emoji: &str,
            ) -> Result<bool, ChatError> {
                let done = sqlx::query(sql::REMOVE_REACTION)
                    .bind(message.as_str())
                    .bind(user.as_str())
                    .bind(emoji)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn history(
                &self,
                conversation: &ConversationId,
                before: Option<SequenceNumber>,
                limit: u32,
            ) -> Result<HistoryPage, ChatError> {
                let before = before.map_or(i64::MAX, SequenceNumber::as_i64);
                let rows = sqlx::query(sql::HISTORY)
                    .bind(conversation.as_str())
                    .bind(before)
                    .bind(i64::from(limit) + 1)
                    .fetch_all(self.reader())
                    .await?;
                let has_more = rows.len() > limit as usize;
                let mut messages = rows
                    .iter()
                    .take(limit as usize)
                    .map(message_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                messages.reverse();
                let reactions = match (messages.first(), messages.last()) {
                    (Some(first), Some(last)) => {
                        let rows = sqlx::query(sql::HISTORY_REACTIONS)
                            .bind(conversation.as_str())
                            .bind(first.seq.as_i64())
                            .bind(last.seq.as_i64())
                            .fetch_all(self.reader())
                            .await?;
                        rows.iter()
                            .map(|row| {
                                Ok(StoredReaction {
                                    message_id: MessageId::from_stored(row.try_get(0)?),
                                    user_id: UserId::parse(row.try_get::<String, _>(1)?)?,
                                    emoji: row.try_get(2)?,
                                    created_at: Timestamp::from_unix_millis(row.try_get(3)?),
                                })
                            })
                            .collect::<Result<Vec<_>, ChatError>>()?
                    }
                    _ => Vec::new(),
                };
                Ok(HistoryPage {
                    messages,
                    reactions,
                    has_more,
                })
            }

            async fn advance_read_cursor(
                &self,
                conversation: &ConversationId,
                user: &UserId,
                seq: SequenceNumber,
                at: Timestamp,
            ) -> Result<ReadCursor, ChatError> {
                // One conditional UPDATE: concurrent reads can only ever move the cursor forward.
                let done = sqlx::query(sql::ADVANCE_READ)
                    .bind(conversation.as_str())
                    .bind(user.as_str())
                    .bind(seq.as_i64())
                    .bind(at.unix_millis())
                    .execute(self.writer())
                    .await?;
                if done.rows_affected() == 1 {
                    return Ok(ReadCursor {
                        change: Change::Applied,
                        read_at: Some(at),
                    });
                }
                let member = self.member(conversation, user).await?;
                Ok(ReadCursor {
                    change: Change::Unchanged,
                    read_at: member.and_then(|m| m.read_at),
                })
            }

            async fn unread_count(
                &self,
                conversation: &ConversationId,
                user: &UserId,
            ) -> Result<u64, ChatError> {
                let count: i64 = sqlx::query(sql::UNREAD_COUNT)
                    .bind(conversation.as_str())
                    .bind(user.as_str())
                    .fetch_one(self.reader())
                    .await?
                    .try_get(0)?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            async fn reads(
                &self,
                conversation: &ConversationId,
                seq: SequenceNumber,
            ) -> Result<Vec<(UserId, Timestamp)>, ChatError> {
                let rows = sqlx::query(sql::READS)
                    .bind(conversation.as_str())
                    .bind(seq.as_i64())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok((
                            UserId::parse(row.try_get::<String, _>(0)?)?,
                            Timestamp::from_unix_millis(row.try_get(1)?),
                        ))
                    })
                    .collect()
            }

            async fn delete_expired(
                &self,
                cutoff: Timestamp,
                batch: u32,
            ) -> Result<u64, ChatError> {
                let done = sqlx::query(sql::DELETE_EXPIRED)
                    .bind(cutoff.unix_millis())
                    .bind(i64::from(batch))
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected())
            }

            async fn close(&self) {
                <$store>::close(self).await;
            }
        }
    };
}

pub(super) use impl_chat_store;
