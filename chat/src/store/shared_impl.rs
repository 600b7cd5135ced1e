//! The one implementation of [`ChatStore`](super::ChatStore), expanded for each backend.
//!
//! sqlx's generic bounds over "any database" are unwieldy, while its API on two concrete pools is
//! identical, so the logic is a `macro_rules!` expanded in `sqlite.rs` and `postgres.rs`. A
//! backend supplies its inherent items: `reader()` and `writer()` pools, `begin_write()` (how to
//! start a write transaction), `LOCK_MESSAGE` (how to serialise reactions on one message),
//! `LOCK_SUFFIX` (how a group commit locks its counter rows), `PLACEHOLDERS` (how its statements
//! write parameters), `GROUP_READ` (in how many statements a group commit reads),
//! `DELETE_IDLE_CONVERSATIONS`, `write_lanes()` and `close()`.

/// Expands `impl ChatStore for $store` where `$db` is its sqlx database type.
macro_rules! impl_chat_store {
    ($store:ty, $db:ty) => {
        use std::collections::HashMap;
        use std::sync::Arc;

        use async_trait::async_trait;
        use sqlx::Row as _;

        use crate::clock::Timestamp;
        use crate::content::MessageKind;
        use crate::error::ChatError;
        use crate::event::Change;
        use crate::id::{ConversationId, MessageId, SequenceNumber, TempId, UserId};
        use crate::store::sql;
        use crate::store::{
            ChatStore, Committed, HistoryPage, Inserted, Member, MemberRole, NewMessage,
            ReactionInsert, ReadCursor, StoredMessage, StoredReaction,
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

        /// What step 5 of a group commit does with one message.
        enum Plan {
            /// Not a member (or no such conversation).
            Refuse,
            /// New, unless its tempId is already stored.
            Store,
            /// A repeat of the group's message at this index.
            SameAs(usize),
        }

        fn stored_message(message: &NewMessage, seq: i64) -> StoredMessage {
            StoredMessage {
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
            }
        }

        /// This backend's group-commit statements, generated on first use.
        fn group_sql() -> &'static sql::GroupSql {
            static SQL: std::sync::OnceLock<sql::GroupSql> = std::sync::OnceLock::new();
            SQL.get_or_init(|| {
                sql::GroupSql::new(
                    <$store>::LOCK_SUFFIX,
                    <$store>::PLACEHOLDERS,
                    <$store>::GROUP_READ,
                )
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
            fn outbox(&self) -> Arc<dyn crate::outbox::OutboxStore> {
                Arc::new(self.outbox_store())
            }

            fn webhook_endpoints(&self) -> Arc<dyn crate::webhook_endpoints::EndpointStore> {
                Arc::new(self.outbox_store())
            }

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
                    .map(|row| Ok(UserId::parse(row.try_get::<String, _>(0)?)?))
                    .collect()
            }

            async fn insert_messages(&self, group: &[NewMessage]) -> Result<Committed, ChatError> {
                let statements = group_sql();
                // Sorted: PostgreSQL locks the counter rows in this order, so groups on several
                // nodes never deadlock.
                let mut conversations: Vec<&ConversationId> =
                    group.iter().map(|m| &m.conversation_id).collect();
                conversations.sort_unstable();
                conversations.dedup();
                if conversations.is_empty() {
                    return Ok(Committed::default());
                }
                // The group's distinct tempIds, and which message repeats which. Refusal
                // depends on conversation and sender only, so a repeat shares its first's.
                let mut first_of: HashMap<(&str, &str, &str), usize> = HashMap::new();
                let mut keyed: Vec<(&str, &str, &str)> = Vec::new();
                let mut repeats: Vec<Option<usize>> = Vec::with_capacity(group.len());
                for (index, message) in group.iter().enumerate() {
                    let repeat = message.temp_id.as_ref().and_then(|temp_id| {
                        let key = (
                            message.conversation_id.as_str(),
                            message.sender_id.as_str(),
                            temp_id.as_str(),
                        );
                        match first_of.get(&key) {
                            Some(&first) => Some(first),
                            None => {
                                first_of.insert(key, index);
                                keyed.push(key);
                                None
                            }
                        }
                    });
                    repeats.push(repeat);
                }

                let mut tx = self.begin_write().await?;

                // 1. Take the counters: the row locks (or SQLite's write lock) are held until
                //    commit, which is what keeps sequence numbers unique and gap-free.
                // 2. Their members, read under the same locks: who may send, and who receives.
                // 3. TempIds stored by an earlier commit (a client retrying a lost ack).
                let mut counters: HashMap<ConversationId, i64> = HashMap::new();
                let mut members: HashMap<ConversationId, Vec<UserId>> = HashMap::new();
                let mut originals: HashMap<(String, String, String), StoredMessage> =
                    HashMap::new();
                let mut add_original = |stored: StoredMessage| {
                    let key = (
                        stored.conversation_id.as_str().to_owned(),
                        stored.sender_id.as_str().to_owned(),
                        stored
                            .temp_id
                            .as_ref()
                            .map_or("", |t| t.as_str())
                            .to_owned(),
                    );
                    originals.insert(key, stored);
                };
                match <$store>::GROUP_READ {
                    sql::GroupRead::Separate => {
                        let mut query = sqlx::query(statements.lock(conversations.len()));
                        for id in sql::padded(&conversations) {
                            query = query.bind(id.as_str());
                        }
                        for row in query.fetch_all(&mut *tx).await? {
                            let id = ConversationId::parse(row.try_get::<String, _>(0)?)?;
                            counters.insert(id, row.try_get(1)?);
                        }
                        let mut query = sqlx::query(statements.members(conversations.len()));
                        for id in sql::padded(&conversations) {
                            query = query.bind(id.as_str());
                        }
                        for row in query.fetch_all(&mut *tx).await? {
                            let id = ConversationId::parse(row.try_get::<String, _>(0)?)?;
                            let user = UserId::parse(row.try_get::<String, _>(1)?)?;
                            members.entry(id).or_default().push(user);
                        }
                        if !keyed.is_empty() {
                            let mut query = sqlx::query(statements.originals(keyed.len()));
                            for (conversation, sender, temp_id) in sql::padded(&keyed) {
                                query = query.bind(conversation).bind(sender).bind(temp_id);
                            }
                            for row in query.fetch_all(&mut *tx).await? {
                                add_original(message_from_row(&row)?);
                            }
                        }
                    }
                    sql::GroupRead::OneStatement => {
                        let mut query =
                            sqlx::query(statements.read(conversations.len(), keyed.len()));
                        for id in sql::padded(&conversations) {
                            query = query.bind(id.as_str());
                        }
                        for (conversation, sender, temp_id) in sql::padded(&keyed) {
                            query = query.bind(conversation).bind(sender).bind(temp_id);
                        }
                        for row in query.fetch_all(&mut *tx).await? {
                            if row.try_get::<i64, _>("part")? == sql::READ_PART_ORIGINAL {
                                add_original(message_from_row(&row)?);
                                continue;
                            }
                            let id = ConversationId::parse(
                                row.try_get::<String, _>("conversation_id")?,
                            )?;
                            counters.insert(id.clone(), row.try_get("seq")?);
                            let list = members.entry(id).or_default();
                            if let Some(user) = row.try_get::<Option<String>, _>("sender_id")? {
                                list.push(UserId::parse(user)?);
                            }
                        }
                    }
                }
                for list in members.values_mut() {
                    // Byte order, whatever the database's collation.
                    list.sort_unstable();
                }

                // 4. Who may send, and which messages repeat an earlier one of the group.
                let plan: Vec<Plan> = group
                    .iter()
                    .zip(&repeats)
                    .map(|(message, repeat)| {
                        let allowed = counters.contains_key(&message.conversation_id)
                            && members
                                .get(&message.conversation_id)
                                .is_some_and(|m| m.binary_search(&message.sender_id).is_ok());
                        match (allowed, repeat) {
                            (false, _) => Plan::Refuse,
                            (true, Some(first)) => Plan::SameAs(*first),
                            (true, None) => Plan::Store,
                        }
                    })
                    .collect();

                // 5. Number the new ones, in group order.
                let mut outcomes: Vec<Inserted> = Vec::with_capacity(group.len());
                let mut created: Vec<(&NewMessage, i64)> = Vec::new();
                for (message, step) in group.iter().zip(&plan) {
                    let outcome = match step {
                        Plan::Refuse => Inserted::NotMember,
                        Plan::SameAs(first) => match &outcomes[*first] {
                            Inserted::Created(stored) | Inserted::Duplicate(stored) => {
                                Inserted::Duplicate(stored.clone())
                            }
                            Inserted::NotMember => Inserted::NotMember,
                        },
                        Plan::Store => {
                            let original = message.temp_id.as_ref().and_then(|temp_id| {
                                originals.get(&(
                                    message.conversation_id.as_str().to_owned(),
                                    message.sender_id.as_str().to_owned(),
                                    temp_id.as_str().to_owned(),
                                ))
                            });
                            match original {
                                Some(original) => Inserted::Duplicate(original.clone()),
                                None => {
                                    let counter = counters
                                        .get_mut(&message.conversation_id)
                                        .expect("allowed messages have a locked counter");
                                    *counter += 1;
                                    created.push((message, *counter));
                                    Inserted::Created(stored_message(message, *counter))
                                }
                            }
                        }
                    };
                    outcomes.push(outcome);
                }

                // 6. Write them and the counters, then commit once for the whole group.
                if created.is_empty() {
                    tx.rollback().await?;
                } else {
                    let mut rest = created.as_slice();
                    for size in sql::chunks(created.len()) {
                        let (chunk, tail) = rest.split_at(size);
                        rest = tail;
                        let mut query = sqlx::query(statements.insert(size));
                        for (message, seq) in chunk {
                            query = query
                                .bind(message.id.as_str())
                                .bind(message.conversation_id.as_str())
                                .bind(*seq)
                                .bind(message.sender_id.as_str())
                                .bind(message.sender_name.as_str())
                                .bind(message.kind.as_str())
                                .bind(message.content.as_str())
                                .bind(message.reply_to_id.as_ref().map(MessageId::as_str))
                                .bind(message.temp_id.as_ref().map(TempId::as_str))
                                .bind(message.created_at.unix_millis());
                        }
                        query.execute(&mut *tx).await?;
                    }
                    let mut touched: Vec<(&str, i64)> = created
                        .iter()
                        .map(|(m, _)| m.conversation_id.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .map(|id| {
                            let key = ConversationId::parse(id)?;
                            Ok((id, counters[&key]))
                        })
                        .collect::<Result<_, ChatError>>()?;
                    touched = sql::padded(&touched);
                    let active_at = created
                        .iter()
                        .map(|(m, _)| m.created_at.unix_millis())
                        .max()
                        .unwrap_or_default();
                    // Binds in textual order: (id, last_seq) pairs, the time, the ids again.
                    let mut query = sqlx::query(statements.counters(touched.len()));
                    for (id, seq) in &touched {
                        query = query.bind(*id).bind(*seq);
                    }
                    query = query.bind(active_at);
                    for (id, _) in &touched {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                    tx.commit().await?;
                }
                let members = members
                    .into_iter()
                    .map(|(id, list)| (id, Arc::from(list)))
                    .collect();
                Ok(Committed { outcomes, members })
            }

            fn write_lanes(&self) -> usize {
                <$store>::write_lanes(self)
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

            async fn delete_idle_conversations(
                &self,
                cutoff: Timestamp,
                batch: u32,
            ) -> Result<u64, ChatError> {
                let done = sqlx::query(<$store>::DELETE_IDLE_CONVERSATIONS)
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
