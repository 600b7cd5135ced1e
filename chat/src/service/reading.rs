//! Reading: history, read cursors, unread counts, receipts; and retention.

use std::collections::HashMap;

use super::{Actor, ChatService, message_event};
use crate::error::ChatError;
use crate::event::{
    Fanout, History, HistoryMessage, ReactionGroup, ReadEvent, ReadReceipt, ReadReceipts,
    UnreadCount,
};
use crate::id::{ConversationId, MessageId, SequenceNumber};
use crate::store::{StoredMessage, StoredReaction};

/// Messages deleted per retention transaction.
const SWEEP_BATCH: u32 = 1000;

/// What one retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    /// Messages older than the retention window.
    pub messages: u64,
    /// Idle conversations without messages, with their members.
    pub conversations: u64,
}

/// `message:history {beforeSequence?, limit?}` (or `GET …/messages?before=&limit=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Only messages with a smaller sequence number; `None` for the newest page.
    pub before: Option<SequenceNumber>,
    /// Page size; `None` means `Settings::history_default_limit`, larger than
    /// `Settings::history_max_limit` is clamped, 0 is `invalid_payload`.
    pub limit: Option<u32>,
}

impl ChatService {
    /// `message:history`: one page, oldest first, with reactions and edit/delete state. Members
    /// only, including those who joined after the messages were sent or after the call ended.
    pub async fn history(
        &self,
        actor: &Actor,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<History, ChatError> {
        let settings = self.settings();
        let limit = match query.limit {
            Some(0) => return Err(ChatError::invalid("limit must be at least 1")),
            Some(limit) => limit.min(settings.history_max_limit),
            None => settings.history_default_limit,
        };
        self.require_member(conversation, &actor.user_id).await?;
        let page = self
            .store()
            .history(conversation, query.before, limit)
            .await?;
        let mut reactions = group_reactions(page.reactions);
        let messages = page
            .messages
            .into_iter()
            .map(|stored| {
                let reactions = reactions.remove(&stored.id).unwrap_or_default();
                history_message(stored, reactions)
            })
            .collect();
        Ok(History {
            messages,
            has_more: page.has_more,
        })
    }

    /// `message:read`: moves the actor's read cursor to `message_id` if that is forward. Reading an
    /// older message succeeds with [`Change::Unchanged`](crate::Change::Unchanged) and the time the cursor passed it.
    pub async fn mark_read(
        &self,
        actor: &Actor,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<Fanout<ReadEvent>, ChatError> {
        self.require_member(conversation, &actor.user_id).await?;
        let message = self.message_in(conversation, message_id).await?;
        let now = self.clock().timestamp();
        let cursor = self
            .store()
            .advance_read_cursor(conversation, &actor.user_id, message.seq, now)
            .await?;
        let event = ReadEvent {
            conversation_id: conversation.clone(),
            message_id: message.id,
            user_id: actor.user_id.clone(),
            read_at: cursor.read_at.unwrap_or(now),
        };
        self.fanout(conversation, event, cursor.change).await
    }

    /// `message:unread-count`.
    pub async fn unread_count(
        &self,
        actor: &Actor,
        conversation: &ConversationId,
    ) -> Result<UnreadCount, ChatError> {
        self.require_member(conversation, &actor.user_id).await?;
        let count = self
            .store()
            .unread_count(conversation, &actor.user_id)
            .await?;
        Ok(UnreadCount {
            conversation_id: conversation.clone(),
            count,
        })
    }

    /// `GET …/messages/{messageId}/reads`: members whose cursor is at or past the message.
    pub async fn reads(
        &self,
        actor: &Actor,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<ReadReceipts, ChatError> {
        self.require_member(conversation, &actor.user_id).await?;
        let message = self.message_in(conversation, message_id).await?;
        let reads = self
            .store()
            .reads(conversation, message.seq)
            .await?
            .into_iter()
            .map(|(user_id, read_at)| ReadReceipt { user_id, read_at })
            .collect();
        Ok(ReadReceipts {
            message_id: message.id,
            reads,
        })
    }

    /// One retention pass: deletes messages older than `Settings::retention`, then
    /// conversations (with their members) that hold no message and saw no activity — a join or
    /// a message — within the retention window, both in batches. Does nothing when retention is
    /// off.
    ///
    /// Chat cannot see calls, so "no activity" stands in for "no live call": joining touches the
    /// conversation, and a call outlives the retention window only if nobody joins or writes in
    /// it for that long. A swept conversation is gone: its former members get `not_member`, and
    /// an id used again (a room name) starts a new conversation numbered from 1.
    pub async fn sweep_expired(&self) -> Result<Swept, ChatError> {
        let mut swept = Swept::default();
        let Some(retention) = self.settings().retention else {
            return Ok(swept);
        };
        let cutoff = self.clock().timestamp().saturating_sub(retention);
        loop {
            let deleted = self.store().delete_expired(cutoff, SWEEP_BATCH).await?;
            swept.messages += deleted;
            if deleted < u64::from(SWEEP_BATCH) {
                break;
            }
            // Let sends in between batches.
            tokio::task::yield_now().await;
        }
        loop {
            let deleted = self
                .store()
                .delete_idle_conversations(cutoff, SWEEP_BATCH)
                .await?;
            swept.conversations += deleted;
            if deleted < u64::from(SWEEP_BATCH) {
                return Ok(swept);
            }
            tokio::task::yield_now().await;
        }
    }

    async fn message_in(
        &self,
        conversation: &ConversationId,
        message_id: &MessageId,
    ) -> Result<StoredMessage, ChatError> {
        self.store()
            .message(message_id)
            .await?
            .filter(|message| &message.conversation_id == conversation)
            .ok_or(ChatError::NotFound("message"))
    }
}

fn group_reactions(reactions: Vec<StoredReaction>) -> HashMap<MessageId, Vec<ReactionGroup>> {
    let mut groups: HashMap<MessageId, Vec<ReactionGroup>> = HashMap::new();
    for reaction in reactions {
        let list = groups.entry(reaction.message_id).or_default();
        match list.iter_mut().find(|group| group.emoji == reaction.emoji) {
            Some(group) => {
                group.count += 1;
                group.user_ids.push(reaction.user_id);
            }
            None => list.push(ReactionGroup {
                emoji: reaction.emoji,
                count: 1,
                user_ids: vec![reaction.user_id],
            }),
        }
    }
    groups
}

fn history_message(stored: StoredMessage, reactions: Vec<ReactionGroup>) -> HistoryMessage {
    let edited_at = stored.edited_at;
    let deleted_at = stored.deleted_at;
    HistoryMessage {
        message: message_event(stored),
        edited_at,
        deleted_at,
        reactions,
    }
}
