//! [`ChatService`]: the facade the transports call. One method per client event; each checks the
//! actor's rights and the limits, talks to the [`ChatStore`], and returns wire-ready records plus
//! who should receive them.
//!
//! Lifecycle: build one per process with [`ChatService::open`] (or [`ChatService::new`] with your
//! own store and clock), clone it freely (clones share state), call
//! [`ChatService::add_member`] whenever someone joins a call or room, drive
//! [`ChatService::expire_typing`] about once a second and run
//! [`ChatService::spawn_retention_sweeper`] once. Dropping the last clone closes the store.

mod actions;
mod reading;

pub use actions::TypingAction;
pub use reading::{HistoryQuery, Swept};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::content::check_content;
use crate::delivery::DeliveryTurn;
use crate::error::ChatError;
use crate::event::{Change, Fanout, Message, MessageAck, Sender, TypingEvent};
use crate::id::{ConversationId, MessageId, TempId, UserId};
use crate::rate::{Admission, LocalRate, SendRate};
use crate::settings::Settings;
use crate::store::{self, ChatStore, Inserted, Member, MemberRole, NewMessage, StoredMessage};
use crate::typing::{Typing, TypingChange};
use crate::writer::{WriteStats, Writer};

/// `message:send`, parsed (the wire type).
pub use protocol::chat::SendMessage;

/// Who is acting: taken from the authenticated session, never from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The JWT subject.
    pub user_id: UserId,
    /// Display name, copied into messages as `sender.name`.
    pub name: String,
    /// Whether the token grants moderation.
    pub authority: Authority,
}

/// What an actor may do beyond their own messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// A regular user.
    User,
    /// May delete any message in any conversation (moderation).
    Admin,
}

impl Actor {
    /// A regular user.
    pub fn user(user_id: UserId, name: impl Into<String>) -> Self {
        Self {
            user_id,
            name: name.into(),
            authority: Authority::User,
        }
    }

    /// An administrator.
    pub fn admin(user_id: UserId, name: impl Into<String>) -> Self {
        Self {
            authority: Authority::Admin,
            ..Self::user(user_id, name)
        }
    }
}

/// The result of `message:send`.
#[derive(Debug)]
pub struct Sent {
    /// For the sending device: `message:ack`.
    pub ack: MessageAck,
    /// `message:new` for every member device. `change` is [`Change::Unchanged`] when this was a
    /// retry of an already stored `tempId`: the original went out then, so only ack.
    pub fanout: Fanout<Message>,
    /// Sending ends the sender's typing indicator; if one was showing, broadcast this too.
    pub typing_stopped: Option<TypingEvent>,
    /// When to broadcast `message:new`: wait for the turn, hand the event to the connections,
    /// then drop the turn. That keeps each conversation's live events in sequence order even
    /// though sends complete concurrently (see [`DeliveryTurn`]).
    pub delivery: DeliveryTurn,
}

/// The chat facade. Cheap to clone.
#[derive(Clone)]
pub struct ChatService {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    store: Arc<dyn ChatStore>,
    writer: Writer,
    clock: Arc<dyn Clock>,
    /// Where the send rate is counted; `None` when `Settings::message_rate` is off.
    rate: std::sync::RwLock<Option<Arc<dyn SendRate>>>,
    typing: Mutex<Typing>,
}

impl ChatService {
    /// Opens the configured store (migrating it) with the system clock.
    pub async fn open(settings: Settings) -> Result<Self, ChatError> {
        let store = store::connect(&settings).await?;
        Ok(Self::new(settings, store, Arc::new(SystemClock)))
    }

    /// Builds the service over an already open store and a clock (tests use
    /// [`ManualClock`](crate::ManualClock)). Starts the group-commit writer's tasks, so it must
    /// be called within a tokio runtime.
    pub fn new(settings: Settings, store: Arc<dyn ChatStore>, clock: Arc<dyn Clock>) -> Self {
        let rate = std::sync::RwLock::new(
            settings
                .message_rate
                .map(|limit| Arc::new(LocalRate::new(limit, clock.clone())) as Arc<dyn SendRate>),
        );
        let typing = Mutex::new(Typing::new(settings.typing_timeout));
        Self {
            inner: Arc::new(Inner {
                settings,
                writer: Writer::spawn(store.clone()),
                store,
                clock,
                rate,
                typing,
            }),
        }
    }

    /// Counts the send rate with `rate` instead of on this node alone (a cluster counts across
    /// nodes). No effect when `Settings::message_rate` is off.
    pub fn with_send_rate(self, rate: Arc<dyn SendRate>) -> Self {
        if self.inner.settings.message_rate.is_some() {
            *self.inner.rate.write().unwrap_or_else(|e| e.into_inner()) = Some(rate);
        }
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Makes `user` a member of `conversation` (creating it), e.g. when they join the call or
    /// room; pass [`MemberRole::Owner`] for the call's initiator. Idempotent, never downgrades.
    pub async fn add_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        role: MemberRole,
    ) -> Result<(), ChatError> {
        let now = self.clock().timestamp();
        self.inner
            .store
            .add_member(conversation, user, role, now)
            .await
    }

    /// Every member of `conversation`, sorted (empty if it does not exist).
    pub async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, ChatError> {
        let mut members = self.store().members(conversation).await?;
        // Byte order, whatever the database's collation.
        members.sort_unstable();
        Ok(members)
    }

    /// Whether `user` is (or was) a participant, e.g. to guard the REST API.
    pub async fn is_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, ChatError> {
        Ok(self.store().member(conversation, user).await?.is_some())
    }

    /// `message:send`. Returns only after the message is durably committed, in a group commit
    /// with whatever other messages arrived meanwhile (see `writer.rs`). A repeated `tempId` from
    /// the same sender returns the original ack and stores nothing.
    pub async fn send(&self, actor: &Actor, request: SendMessage) -> Result<Sent, ChatError> {
        let settings = &self.inner.settings;
        check_content(&request.content, settings.max_content_chars)?;
        if let Some(reply_to) = &request.reply_to_id {
            // Membership first, so outsiders cannot probe which message ids exist where.
            self.require_member(&request.conversation_id, &actor.user_id)
                .await?;
            let target = self.store().message(reply_to).await?;
            if target.is_none_or(|m| m.conversation_id != request.conversation_id) {
                return Err(ChatError::NotFound("replyToId message"));
            }
        }
        if let Err(limited) = self.admit(&actor.user_id).await {
            return self.resend_while_limited(actor, request, limited).await;
        }
        let new = NewMessage {
            id: MessageId::generate(),
            conversation_id: request.conversation_id.clone(),
            sender_id: actor.user_id.clone(),
            sender_name: display_name(actor),
            kind: request.kind,
            content: request.content,
            reply_to_id: request.reply_to_id,
            temp_id: request.temp_id.clone(),
            created_at: self.clock().timestamp(),
        };
        // Membership is checked inside the commit, with the members read there: they are also
        // whom `message:new` goes to. Membership only grows while a conversation lives, so
        // someone joining meanwhile misses nothing: history shows them this message.
        let written = self.inner.writer.write(new).await?;
        let (stored, change) = match written.inserted {
            Inserted::Created(stored) => (stored, Change::Applied),
            Inserted::Duplicate(stored) => (stored, Change::Unchanged),
            Inserted::NotMember => return Err(ChatError::NotMember),
        };
        let typing_stopped = self.stop_typing_quietly(&request.conversation_id, &actor.user_id);
        Ok(sent(
            stored,
            request.temp_id,
            written.members.to_vec(),
            change,
            typing_stopped,
            written.turn,
        ))
    }

    /// A client retrying a lost ack should get it even while over the rate limit; anything
    /// else over the limit is refused.
    async fn resend_while_limited(
        &self,
        actor: &Actor,
        request: SendMessage,
        limited: ChatError,
    ) -> Result<Sent, ChatError> {
        let recipients = self.members(&request.conversation_id).await?;
        if !recipients.contains(&actor.user_id) {
            return Err(ChatError::NotMember);
        }
        let original = match &request.temp_id {
            Some(temp_id) => {
                self.store()
                    .message_by_temp_id(&request.conversation_id, &actor.user_id, temp_id)
                    .await?
            }
            None => None,
        };
        let Some(original) = original else {
            return Err(limited);
        };
        Ok(sent(
            original,
            request.temp_id,
            recipients,
            Change::Unchanged,
            None,
            DeliveryTurn::none(),
        ))
    }

    /// How many group commits ran and how many messages they held (mean group size =
    /// messages / groups).
    pub fn write_stats(&self) -> WriteStats {
        self.inner.writer.stats()
    }

    /// Closes the store after in-flight queries finish (graceful shutdown: call it after the
    /// transports stopped accepting events). Calls after this fail with `storage_unavailable`.
    pub async fn close(&self) {
        self.store().close().await;
    }

    /// The earliest moment a typing indicator can expire; call [`ChatService::expire_typing`]
    /// then (or simply every second).
    pub fn next_typing_deadline(&self) -> Option<Instant> {
        lock(&self.inner.typing).next_deadline()
    }

    fn clock(&self) -> &dyn Clock {
        self.inner.clock.as_ref()
    }

    /// The durable outbox in the chat database (webhooks, ADR 0073).
    pub fn outbox(&self) -> Arc<dyn crate::outbox::OutboxStore> {
        self.store().outbox()
    }

    /// Webhook endpoints created through the server API (ADR 0074), in the chat database.
    pub fn webhook_endpoints(&self) -> Arc<dyn crate::webhook_endpoints::EndpointStore> {
        self.store().webhook_endpoints()
    }

    fn store(&self) -> &dyn ChatStore {
        self.inner.store.as_ref()
    }

    async fn require_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<Member, ChatError> {
        self.store()
            .member(conversation, user)
            .await?
            .ok_or(ChatError::NotMember)
    }

    async fn admit(&self, user: &UserId) -> Result<(), ChatError> {
        let rate = self
            .inner
            .rate
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(rate) = rate else {
            return Ok(());
        };
        match rate.admit(user).await {
            Admission::Allowed => Ok(()),
            Admission::Limited { retry_after } => Err(ChatError::RateLimited { retry_after }),
        }
    }

    fn stop_typing_quietly(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Option<TypingEvent> {
        let now = self.clock().instant();
        let change = lock(&self.inner.typing).stop(conversation, user, now);
        (change == TypingChange::Stopped).then(|| TypingEvent {
            user_id: user.clone(),
            conversation_id: conversation.clone(),
            is_typing: false,
        })
    }
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means another task panicked mid-update of in-memory, best-effort state
/// (rate buckets, typing); carrying on is better than failing every later call.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The name stored with a message: the token's name without control characters, at most 200
/// characters, falling back to the user id.
fn display_name(actor: &Actor) -> String {
    let name: String = actor
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(crate::id::MAX_ID_CHARS)
        .collect();
    if name.trim().is_empty() {
        actor.user_id.as_str().to_owned()
    } else {
        name
    }
}

fn sent(
    stored: StoredMessage,
    temp_id: Option<TempId>,
    recipients: Vec<UserId>,
    change: Change,
    typing_stopped: Option<TypingEvent>,
    delivery: DeliveryTurn,
) -> Sent {
    Sent {
        ack: MessageAck {
            temp_id,
            message_id: stored.id.clone(),
            sequence_number: stored.seq,
            created_at: stored.created_at,
        },
        fanout: Fanout {
            conversation_id: stored.conversation_id.clone(),
            event: message_event(stored),
            recipients,
            change,
        },
        typing_stopped,
        delivery,
    }
}

fn message_event(stored: StoredMessage) -> Message {
    Message {
        id: stored.id,
        conversation_id: stored.conversation_id,
        sender_id: stored.sender_id.clone(),
        sender: Sender {
            id: stored.sender_id,
            name: stored.sender_name,
        },
        kind: stored.kind,
        content: stored.content,
        sequence_number: stored.seq,
        reply_to_id: stored.reply_to_id,
        created_at: stored.created_at,
    }
}
