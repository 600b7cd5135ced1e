//! Chat on the signaling connection: the chat crate plugged into signaling as an
//! [`Extension`], plus its REST endpoints and background tasks.
//!
//! Event flow for `message:send`: the session routes it here in order with the connection's
//! other events; [`ChatRequest::parse`] types it; the chat service commits it (durably, in a
//! group commit with concurrent sends) and returns the ack; this adapter then sends
//! `message:ack` to the sending connection and, when its delivery turn comes (after the
//! conversation's previous message), `message:new` to every other device of every member.
//! Wire types and event names all come from `protocol::chat`. Membership comes from signaling's
//! join hook: whoever starts, accepts or joins a call becomes a member of its conversation.

use crate::webhook::Webhooks;
use crate::webhook::event::WebhookEvent;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chat::{
    Actor, Change, ChatError, ChatService, ConversationId, HistoryQuery, MemberRole, MessageId,
    SequenceNumber, TypingAction,
};
use protocol::chat::{ChatPush, ChatRequest, names};
use protocol::{CHAT_EVENT_NAMES, ErrorCode, Failure, UserId};
use serde::Deserialize;
use serde_json::Value;
use signaling::auth::Identity;
use signaling::driver::HubHandle;
use signaling::extension::{Caller, Extension, JoinRole, SkipCaller};
use signaling::{Refused, Signaling};
use std::sync::Arc;
use std::time::Duration;

/// Maps the `[chat]` configuration onto the chat crate's settings.
pub fn settings(config: &config::Config) -> chat::Settings {
    let c = &config.chat;
    chat::Settings {
        database_url: (!c.database_url.is_empty()).then(|| c.database_url.clone()),
        data_dir: config.server.data_dir.clone(),
        sqlite_sync: match c.sqlite_sync {
            config::SqliteSync::Full => chat::SqliteSync::Full,
            config::SqliteSync::Normal => chat::SqliteSync::Normal,
        },
        max_connections: c.max_connections,
        retention: Some(c.retention.get()),
        max_content_chars: c.max_content_chars,
        edit_window: c.edit_window.get(),
        message_rate: (c.messages_per_second > 0).then_some(chat::RateLimit {
            per_second: c.messages_per_second,
            burst: c.message_burst,
        }),
        typing_timeout: c.typing_timeout.get(),
        ..chat::Settings::default()
    }
}

/// The chat service as a signaling extension.
pub struct ChatExtension {
    chat: ChatService,
    /// Where `message.sent` webhook events go, for endpoints that opted in.
    webhooks: Option<Webhooks>,
}

impl ChatExtension {
    pub fn new(chat: ChatService) -> Self {
        Self {
            chat,
            webhooks: None,
        }
    }

    /// Stores a `message.sent` webhook event for every committed message before its ack.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }
}

#[async_trait::async_trait]
impl Extension for ChatExtension {
    fn serves(&self, event: &str) -> bool {
        CHAT_EVENT_NAMES.contains(&event)
    }

    async fn handle(
        &self,
        caller: &Caller<'_>,
        event: &str,
        data: Value,
    ) -> Result<Value, Failure> {
        if !caller.identity.grants.can_chat {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "your token does not grant chat (canChat)",
            ));
        }
        let actor = actor(caller.identity)?;
        let chat = &self.chat;
        match ChatRequest::parse(event, data)? {
            ChatRequest::Send(request) => {
                let sent = chat.send(&actor, request).await.map_err(failure)?;
                let ack = ChatPush::Ack(sent.ack);
                let mut turn = sent.delivery;
                if let Some(hooks) = self.webhooks.as_ref().filter(|w| w.wants("message.sent")) {
                    // Stored before anyone hears of the message, the sender's ack included, and
                    // after the conversation's previous message (its turn). A retried tempId
                    // stores it again under the same event id, which keeps one copy.
                    turn.wait().await;
                    hooks.append(vec![message_sent(&sent.fanout.event)]).await;
                }
                caller.reply(ack.to_event()).await;
                if sent.fanout.change == Change::Applied {
                    // In sequence order per conversation: wait for the previous message's
                    // delivery to be handed to the hub, then hand this one, then let the next
                    // go (dropping the turn).
                    turn.wait().await;
                    let new = ChatPush::New(sent.fanout.event).to_event();
                    caller
                        .deliver(sent.fanout.recipients.clone(), new, SkipCaller::Yes)
                        .await;
                    drop(turn);
                    if let Some(stopped) = sent.typing_stopped {
                        let others = without(sent.fanout.recipients, &caller.identity.user_id);
                        let typing = ChatPush::Typing(stopped).to_event();
                        caller.deliver(others, typing, SkipCaller::Yes).await;
                    }
                }
                Ok(ack.data())
            }
            ChatRequest::Edit(request) => {
                let f = chat
                    .edit(&actor, &request.message_id, request.content)
                    .await;
                broadcast(caller, f.map_err(failure)?, ChatPush::Updated).await
            }
            ChatRequest::Delete(request) => {
                let f = chat.delete(&actor, &request.message_id).await;
                broadcast(caller, f.map_err(failure)?, ChatPush::Deleted).await
            }
            ChatRequest::React(request) => {
                let f = chat
                    .react(&actor, &request.message_id, &request.emoji)
                    .await;
                broadcast(caller, f.map_err(failure)?, ChatPush::ReactionAdded).await
            }
            ChatRequest::Unreact(request) => {
                let f = chat
                    .unreact(&actor, &request.message_id, &request.emoji)
                    .await;
                broadcast(caller, f.map_err(failure)?, ChatPush::ReactionRemoved).await
            }
            ChatRequest::Read(request) => {
                let f = chat
                    .mark_read(&actor, &request.conversation_id, &request.message_id)
                    .await;
                broadcast(caller, f.map_err(failure)?, ChatPush::Read).await
            }
            ChatRequest::UnreadCount(request) => {
                let count = chat
                    .unread_count(&actor, &request.conversation_id)
                    .await
                    .map_err(failure)?;
                Ok(to_value(&count))
            }
            ChatRequest::History(request) => {
                let history = chat
                    .history(
                        &actor,
                        &request.conversation_id,
                        HistoryQuery {
                            before: request.before_sequence.map(SequenceNumber::new),
                            limit: request.limit,
                        },
                    )
                    .await
                    .map_err(failure)?;
                Ok(to_value(&history))
            }
            ChatRequest::TypingStart(request) | ChatRequest::TypingStop(request) => {
                let action = if event == names::TYPING_START {
                    TypingAction::Start
                } else {
                    TypingAction::Stop
                };
                let f = chat
                    .typing(&actor, &request.conversation_id, action)
                    .await
                    .map_err(failure)?;
                let push = ChatPush::Typing(f.event);
                if f.change == Change::Applied {
                    let others = without(f.recipients, &caller.identity.user_id);
                    caller
                        .deliver(others, push.to_event(), SkipCaller::Yes)
                        .await;
                }
                Ok(push.data())
            }
        }
    }

    async fn joined(&self, who: &Identity, conversation: &str, role: JoinRole) {
        let (Ok(conv), Ok(user)) = (
            ConversationId::parse(conversation),
            UserId::parse(who.user_id.as_str()),
        ) else {
            return;
        };
        let role = match role {
            JoinRole::Owner => MemberRole::Owner,
            JoinRole::Member => MemberRole::Member,
        };
        if let Err(e) = self.chat.add_member(&conv, &user, role).await {
            tracing::warn!(error = %e, %conversation, "could not record chat membership");
        }
    }
}

/// The `message.sent` webhook event of a committed message: ids, position and type, not the
/// text. Its id derives from the message id, and its position within the conversation is the
/// sequence number, so events of one conversation go out in sequence order from every node.
fn message_sent(message: &chat::Message) -> WebhookEvent {
    let at = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(message.created_at.unix_millis()).unwrap_or(0));
    let mut event = WebhookEvent::with_id(
        format!("evt_msg_{}", message.id.as_str()),
        "message.sent",
        format!("conversation:{}", message.conversation_id.as_str()),
        at,
        serde_json::json!({
            "conversationId": message.conversation_id,
            "messageId": message.id,
            "sequenceNumber": message.sequence_number,
            "senderId": message.sender_id,
            "type": message.kind,
            "replyToId": message.reply_to_id,
        }),
    );
    event.pos = i64::try_from(message.sequence_number.value()).unwrap_or(i64::MAX);
    event
}

/// Clears typing indicators that were not refreshed, telling the other members.
pub fn spawn_typing_expiry(chat: ChatService, hub: HubHandle) {
    tokio::spawn(async move {
        loop {
            let wait = chat
                .next_typing_deadline()
                .map(|at| at.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(50), Duration::from_secs(1));
            tokio::time::sleep(wait).await;
            match chat.expire_typing().await {
                Ok(expired) => {
                    for f in expired {
                        let others = without(f.recipients, &f.event.user_id);
                        let event = Arc::new(ChatPush::Typing(f.event).to_event());
                        hub.deliver(others, None, event).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "typing expiry failed"),
            }
        }
    });
}

/// `GET /api/v1/conversations/{id}/messages?before=&limit=` and
/// `GET /api/v1/conversations/{id}/messages/{messageId}/reads`, for members only.
pub fn router(sig: Arc<Signaling>, chat: ChatService) -> Router {
    Router::new()
        .route("/api/v1/conversations/{id}/messages", get(history))
        .route(
            "/api/v1/conversations/{id}/messages/{message_id}/reads",
            get(reads),
        )
        .with_state(Rest { sig, chat })
}

#[derive(Clone)]
struct Rest {
    sig: Arc<Signaling>,
    chat: ChatService,
}

#[derive(Deserialize)]
struct HistoryParams {
    before: Option<u64>,
    limit: Option<u32>,
}

async fn history(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Response {
    let actor = match rest_actor(&rest.sig, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let result = async {
        let conv = ConversationId::parse(id)?;
        rest.chat
            .history(
                &actor,
                &conv,
                HistoryQuery {
                    before: params.before.map(SequenceNumber::new),
                    limit: params.limit,
                },
            )
            .await
            .map_err(failure)
    }
    .await;
    respond(result.map(|h| to_value(&h)))
}

async fn reads(
    State(rest): State<Rest>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, message)): Path<(String, String)>,
) -> Response {
    let actor = match rest_actor(&rest.sig, &headers, &uri) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let result = async {
        let conv = ConversationId::parse(id)?;
        let message = MessageId::parse(&message)?;
        rest.chat
            .reads(&actor, &conv, &message)
            .await
            .map_err(failure)
    }
    .await;
    respond(result.map(|r| to_value(&r)))
}

fn rest_actor(sig: &Signaling, headers: &HeaderMap, uri: &Uri) -> Result<Actor, Refused> {
    let identity = sig.authenticate(headers, uri.query())?;
    if !identity.grants.can_chat {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            code: ErrorCode::Forbidden,
            message: "your token does not grant chat (canChat)".into(),
        });
    }
    actor(&identity).map_err(|f| Refused {
        status: StatusCode::BAD_REQUEST,
        code: f.code,
        message: f.message,
    })
}

fn respond(result: Result<Value, Failure>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(f) => {
            let status = match f.code {
                ErrorCode::NotMember | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            signaling::http::failure(status, f)
        }
    }
}

/// Sends a fan-out's event to the other devices of every member, and acks with it.
async fn broadcast<E>(
    caller: &Caller<'_>,
    fanout: chat::Fanout<E>,
    push: fn(E) -> ChatPush,
) -> Result<Value, Failure> {
    let push = push(fanout.event);
    if fanout.change == Change::Applied {
        caller
            .deliver(fanout.recipients, push.to_event(), SkipCaller::Yes)
            .await;
    }
    Ok(push.data())
}

fn actor(identity: &Identity) -> Result<Actor, Failure> {
    let user = UserId::parse(identity.user_id.as_str())?;
    Ok(if identity.grants.admin {
        Actor::admin(user, identity.name.clone())
    } else {
        Actor::user(user, identity.name.clone())
    })
}

fn without(mut users: Vec<UserId>, user: &UserId) -> Vec<UserId> {
    users.retain(|u| u != user);
    users
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A chat error as the client sees it. Storage details stay in the server log.
fn failure(e: ChatError) -> Failure {
    let code = e.code();
    if code == ErrorCode::StorageUnavailable {
        tracing::error!(error = ?e, "chat storage failed");
    }
    Failure::new(code, e.to_string())
}

/// Chat's per-user send rate counted across the cluster (a user connected to several nodes
/// gets one budget). While Redis is away it counts on this node alone.
pub struct ClusterRate {
    cluster: Arc<dyn signaling::cluster::Cluster>,
    limit: chat::RateLimit,
    local: chat::LocalRate,
}

impl ClusterRate {
    pub fn new(cluster: Arc<dyn signaling::cluster::Cluster>, limit: chat::RateLimit) -> Self {
        Self {
            cluster,
            limit,
            local: chat::LocalRate::new(limit, Arc::new(chat::SystemClock)),
        }
    }
}

#[async_trait::async_trait]
impl chat::SendRate for ClusterRate {
    async fn admit(&self, user: &chat::UserId) -> chat::Admission {
        let bucket = format!("chat-send:{user}");
        match self
            .cluster
            .take_token(&bucket, self.limit.per_second, self.limit.burst)
            .await
        {
            Ok(None) => chat::Admission::Allowed,
            Ok(Some(retry_after)) => chat::Admission::Limited { retry_after },
            Err(_) => self.local.admit_now(user),
        }
    }
}

/// The group commit's counters as Prometheus metrics, read from the chat service at each
/// scrape: `chorus_chat_commit_groups_total` (transactions the writer ran, one per group) and
/// `chorus_chat_commit_messages_total` (messages in them, refused and retried ones included).
/// Their ratio is the mean group size: near 1 under light load, hundreds when the store is the
/// bottleneck.
pub struct CommitMetrics {
    chat: ChatService,
    groups: prometheus::IntCounter,
    messages: prometheus::IntCounter,
    /// Scrapes may run at once; each moves the counters up to the service's figures.
    catching_up: std::sync::Mutex<()>,
}

impl CommitMetrics {
    /// Registers the counters for `chat` with `registry`.
    pub fn register(chat: ChatService, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let metrics = CommitMetrics {
            chat,
            groups: prometheus::IntCounter::new(
                "chorus_chat_commit_groups_total",
                "Chat group commits: transactions the writer ran, each for a group of messages",
            )?,
            messages: prometheus::IntCounter::new(
                "chorus_chat_commit_messages_total",
                "Chat messages in group commits, refused and retried ones included",
            )?,
            catching_up: std::sync::Mutex::new(()),
        };
        registry.register(Box::new(metrics))
    }
}

impl prometheus::core::Collector for CommitMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.groups.desc();
        descs.extend(self.messages.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let stats = self.chat.write_stats();
        {
            let _one_at_a_time = self
                .catching_up
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.groups
                .inc_by(stats.groups.saturating_sub(self.groups.get()));
            self.messages
                .inc_by(stats.messages.saturating_sub(self.messages.get()));
        }
        let mut families = self.groups.collect();
        families.extend(self.messages.collect());
        families
    }
}
