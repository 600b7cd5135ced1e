//! Changes to existing messages (edit, delete, reactions) and typing.

use super::{Actor, Authority, ChatService, lock};
use crate::content::{check_content, check_emoji};
use crate::error::ChatError;
use crate::event::{Change, Fanout, MessageDeleted, MessageUpdated, ReactionEvent, TypingEvent};
use crate::id::{ConversationId, MessageId};
use crate::store::{MemberRole, ReactionInsert, StoredMessage};
use crate::typing::TypingChange;

/// `typing:start` or `typing:stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypingAction {
    /// The user is typing (refreshes the timeout).
    Start,
    /// The user stopped.
    Stop,
}

impl ChatService {
    /// `message:edit`: own messages only, within `Settings::edit_window`, not once deleted.
    pub async fn edit(
        &self,
        actor: &Actor,
        message_id: &MessageId,
        content: String,
    ) -> Result<Fanout<MessageUpdated>, ChatError> {
        check_content(&content, self.settings().max_content_chars)?;
        let message = self.live_message(actor, message_id).await?;
        if message.sender_id != actor.user_id {
            return Err(ChatError::Forbidden("only the author may edit a message"));
        }
        let now = self.clock().timestamp();
        let window = self.settings().edit_window;
        if now > message.created_at.saturating_add(window) {
            return Err(ChatError::EditWindowPassed { window });
        }
        if !self.store().edit_message(message_id, &content, now).await? {
            return Err(ChatError::NotFound("message"));
        }
        self.fanout(
            &message.conversation_id,
            MessageUpdated {
                message_id: message.id,
                content,
                edited_at: now,
            },
            Change::Applied,
        )
        .await
    }

    /// `message:delete`: soft delete by the author, the conversation's owner (call initiator) or
    /// an admin (in any conversation). Deleting twice succeeds with [`Change::Unchanged`].
    pub async fn delete(
        &self,
        actor: &Actor,
        message_id: &MessageId,
    ) -> Result<Fanout<MessageDeleted>, ChatError> {
        let message = self
            .store()
            .message(message_id)
            .await?
            .ok_or(ChatError::NotFound("message"))?;
        let allowed = if message.sender_id == actor.user_id || actor.authority == Authority::Admin {
            true
        } else {
            let member = self
                .require_member(&message.conversation_id, &actor.user_id)
                .await?;
            member.role == MemberRole::Owner
        };
        if !allowed {
            return Err(ChatError::Forbidden(
                "only the author, the call's initiator or an admin may delete a message",
            ));
        }
        let now = self.clock().timestamp();
        let change = if self.store().delete_message(message_id, now).await? {
            Change::Applied
        } else {
            Change::Unchanged
        };
        self.fanout(
            &message.conversation_id,
            MessageDeleted {
                message_id: message.id,
            },
            change,
        )
        .await
    }

    /// `message:react`: adding the same reaction twice succeeds with [`Change::Unchanged`].
    pub async fn react(
        &self,
        actor: &Actor,
        message_id: &MessageId,
        emoji: &str,
    ) -> Result<Fanout<ReactionEvent>, ChatError> {
        let settings = self.settings();
        check_emoji(emoji, settings.max_emoji_chars)?;
        let message = self.live_message(actor, message_id).await?;
        let now = self.clock().timestamp();
        let max = settings.max_reactions_per_message;
        let change = match self
            .store()
            .add_reaction(message_id, &actor.user_id, emoji, now, max)
            .await?
        {
            ReactionInsert::Added => Change::Applied,
            ReactionInsert::AlreadyPresent => Change::Unchanged,
            ReactionInsert::LimitReached => return Err(ChatError::TooManyReactions { max }),
            ReactionInsert::MessageMissing => return Err(ChatError::NotFound("message")),
        };
        self.reaction_fanout(actor, message, emoji, change).await
    }

    /// `message:unreact`: removing an absent reaction succeeds with [`Change::Unchanged`].
    pub async fn unreact(
        &self,
        actor: &Actor,
        message_id: &MessageId,
        emoji: &str,
    ) -> Result<Fanout<ReactionEvent>, ChatError> {
        check_emoji(emoji, self.settings().max_emoji_chars)?;
        let message = self.live_message(actor, message_id).await?;
        let change = if self
            .store()
            .remove_reaction(message_id, &actor.user_id, emoji)
            .await?
        {
            Change::Applied
        } else {
            Change::Unchanged
        };
        self.reaction_fanout(actor, message, emoji, change).await
    }

    /// `typing:start` / `typing:stop`. Refreshing or stopping twice gives [`Change::Unchanged`].
    pub async fn typing(
        &self,
        actor: &Actor,
        conversation: &ConversationId,
        action: TypingAction,
    ) -> Result<Fanout<TypingEvent>, ChatError> {
        self.require_member(conversation, &actor.user_id).await?;
        let now = self.clock().instant();
        let change = {
            let mut typing = lock(&self.inner.typing);
            match action {
                TypingAction::Start => typing.start(conversation, &actor.user_id, now),
                TypingAction::Stop => typing.stop(conversation, &actor.user_id, now),
            }
        };
        let change = match change {
            TypingChange::Started | TypingChange::Stopped => Change::Applied,
            TypingChange::Refreshed | TypingChange::AlreadyStopped => Change::Unchanged,
        };
        let event = TypingEvent {
            user_id: actor.user_id.clone(),
            conversation_id: conversation.clone(),
            is_typing: action == TypingAction::Start,
        };
        self.fanout(conversation, event, change).await
    }

    /// Clears typing indicators not refreshed within `Settings::typing_timeout` and returns a
    /// `typing {isTyping: false}` for each, to broadcast.
    pub async fn expire_typing(&self) -> Result<Vec<Fanout<TypingEvent>>, ChatError> {
        let expired = lock(&self.inner.typing).expire(self.clock().instant());
        let mut out = Vec::with_capacity(expired.len());
        for (conversation, user) in expired {
            let event = TypingEvent {
                user_id: user,
                conversation_id: conversation.clone(),
                is_typing: false,
            };
            out.push(self.fanout(&conversation, event, Change::Applied).await?);
        }
        Ok(out)
    }

    /// A message the actor can see and that is not deleted.
    async fn live_message(
        &self,
        actor: &Actor,
        message_id: &MessageId,
    ) -> Result<StoredMessage, ChatError> {
        let message = self
            .store()
            .message(message_id)
            .await?
            .ok_or(ChatError::NotFound("message"))?;
        self.require_member(&message.conversation_id, &actor.user_id)
            .await?;
        if message.deleted_at.is_some() {
            return Err(ChatError::NotFound("message"));
        }
        Ok(message)
    }

    async fn reaction_fanout(
        &self,
        actor: &Actor,
        message: StoredMessage,
        emoji: &str,
        change: Change,
    ) -> Result<Fanout<ReactionEvent>, ChatError> {
        let event = ReactionEvent {
            message_id: message.id,
            user_id: actor.user_id.clone(),
            emoji: emoji.to_owned(),
        };
        self.fanout(&message.conversation_id, event, change).await
    }

    pub(super) async fn fanout<E>(
        &self,
        conversation: &ConversationId,
        event: E,
        change: Change,
    ) -> Result<Fanout<E>, ChatError> {
        Ok(Fanout {
            event,
            conversation_id: conversation.clone(),
            recipients: self.members(conversation).await?,
            change,
        })
    }
}
