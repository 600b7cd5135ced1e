//! Chat on the signaling connection: the chat crate plugged into signaling as an
//! [`Extension`], plus its REST endpoints and background tasks.
//!
//! Event flow for `message:send`: the session routes it here in order with the connection's
//! other events; the chat service commits it (durably) and returns the ack; this adapter then
//! sends `message:ack` to the sending connection and `message:new` to every other device of
//! every member. Membership comes from signaling's join hook: whoever starts, accepts or joins
//! a call becomes a member of its conversation.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chat::{
    Actor, Change, ChatError, ChatService, ConversationId, HistoryQuery, MemberRole, MessageId,
    MessageKind, SendMessage, SequenceNumber, TempId, TypingAction,
};
use protocol::{CHAT_EVENT_NAMES, ChatEvent, ErrorCode, Failure, ServerEvent, UserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
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
}

impl ChatExtension {
    pub fn new(chat: ChatService) -> Self {
        Self { chat }
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
        match event {
            "message:send" => {
                let req: SendRequest = payload(event, data)?;
                if req.kind != "text" {
                    return Err(invalid("`type` must be \"text\""));
                }
                let sent = chat
                    .send(
                        &actor,
                        SendMessage {
                            conversation_id: conversation(&req.conversation_id)?,
                            content: req.content,
                            kind: MessageKind::Text,
                            temp_id: req
                                .temp_id
                                .map(TempId::parse)
                                .transpose()
                                .map_err(failure)?,
                            reply_to_id: req
                                .reply_to_id
                                .map(|id| MessageId::parse(&id))
                                .transpose()
                                .map_err(failure)?,
                        },
                    )
                    .await
                    .map_err(failure)?;
                let ack = to_value(&sent.ack);
                caller.reply(event_of("message:ack", ack.clone())).await;
                if sent.fanout.change == Change::Applied {
                    let recipients = users(&sent.fanout.recipients);
                    caller
                        .deliver(
                            recipients.clone(),
                            event_of("message:new", to_value(&sent.fanout.event)),
                            SkipCaller::Yes,
                        )
                        .await;
                    if let Some(stopped) = sent.typing_stopped {
                        let others = without(recipients, &caller.identity.user_id);
                        caller
                            .deliver(
                                others,
                                event_of("typing", to_value(&stopped)),
                                SkipCaller::Yes,
                            )
                            .await;
                    }
                }
                Ok(ack)
            }
            "message:edit" => {
                let req: EditRequest = payload(event, data)?;
                let f = chat
                    .edit(&actor, &message_id(&req.message_id)?, req.content)
                    .await;
                broadcast(caller, "message:updated", f.map_err(failure)?).await
            }
            "message:delete" => {
                let req: MessageRef = payload(event, data)?;
                let f = chat.delete(&actor, &message_id(&req.message_id)?).await;
                broadcast(caller, "message:deleted", f.map_err(failure)?).await
            }
            "message:react" | "message:unreact" => {
                let req: ReactRequest = payload(event, data)?;
                let id = message_id(&req.message_id)?;
                let (name, f) = if event == "message:react" {
                    (
                        "message:reaction:added",
                        chat.react(&actor, &id, &req.emoji).await,
                    )
                } else {
                    (
                        "message:reaction:removed",
                        chat.unreact(&actor, &id, &req.emoji).await,
                    )
                };
                broadcast(caller, name, f.map_err(failure)?).await
            }
            "message:read" => {
                let req: ReadRequest = payload(event, data)?;
                let f = chat
                    .mark_read(
                        &actor,
                        &conversation(&req.conversation_id)?,
                        &message_id(&req.message_id)?,
                    )
                    .await;
                broadcast(caller, "message:read", f.map_err(failure)?).await
            }
            "message:unread-count" => {
                let req: ConversationRef = payload(event, data)?;
                let count = chat
                    .unread_count(&actor, &conversation(&req.conversation_id)?)
                    .await
                    .map_err(failure)?;
                Ok(to_value(&count))
            }
            "message:history" => {
                let req: HistoryRequest = payload(event, data)?;
                let history = chat
                    .history(
                        &actor,
                        &conversation(&req.conversation_id)?,
                        HistoryQuery {
                            before: req.before_sequence.map(SequenceNumber::new),
                            limit: req.limit,
                        },
                    )
                    .await
                    .map_err(failure)?;
                Ok(to_value(&history))
            }
            "typing:start" | "typing:stop" => {
                let req: ConversationRef = payload(event, data)?;
                let action = if event == "typing:start" {
                    TypingAction::Start
                } else {
                    TypingAction::Stop
                };
                let f = chat
                    .typing(&actor, &conversation(&req.conversation_id)?, action)
                    .await
                    .map_err(failure)?;
                let ack = to_value(&f.event);
                if f.change == Change::Applied {
                    let others = without(users(&f.recipients), &caller.identity.user_id);
                    caller
                        .deliver(others, event_of("typing", ack.clone()), SkipCaller::Yes)
                        .await;
                }
                Ok(ack)
            }
            _ => Err(Failure::new(
                ErrorCode::UnknownEvent,
                format!("unknown event `{event}`"),
            )),
        }
    }

    async fn joined(&self, who: &Identity, conversation: &str, role: JoinRole) {
        let (Ok(conv), Ok(user)) = (
            ConversationId::parse(conversation),
            chat::UserId::parse(who.user_id.as_str()),
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
                        let user = UserId(f.event.user_id.as_str().to_owned());
                        let others = without(users(&f.recipients), &user);
                        let event = Arc::new(event_of("typing", to_value(&f.event)));
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
        let conv = ConversationId::parse(id).map_err(failure)?;
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
        let conv = ConversationId::parse(id).map_err(failure)?;
        let message = message_id(&message)?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendRequest {
    conversation_id: String,
    content: String,
    #[serde(rename = "type", default = "text")]
    kind: String,
    #[serde(default)]
    temp_id: Option<String>,
    #[serde(default)]
    reply_to_id: Option<String>,
}

fn text() -> String {
    "text".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditRequest {
    message_id: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageRef {
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactRequest {
    message_id: String,
    emoji: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadRequest {
    conversation_id: String,
    message_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConversationRef {
    conversation_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRequest {
    conversation_id: String,
    #[serde(default)]
    before_sequence: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Sends a fan-out's event to the other devices of every member, and acks with it.
async fn broadcast<E: serde::Serialize>(
    caller: &Caller<'_>,
    name: &'static str,
    fanout: chat::Fanout<E>,
) -> Result<Value, Failure> {
    let data = to_value(&fanout.event);
    if fanout.change == Change::Applied {
        caller
            .deliver(
                users(&fanout.recipients),
                event_of(name, data.clone()),
                SkipCaller::Yes,
            )
            .await;
    }
    Ok(data)
}

fn actor(identity: &Identity) -> Result<Actor, Failure> {
    let user = chat::UserId::parse(identity.user_id.as_str()).map_err(failure)?;
    Ok(if identity.grants.admin {
        Actor::admin(user, identity.name.clone())
    } else {
        Actor::user(user, identity.name.clone())
    })
}

fn payload<T: DeserializeOwned>(event: &str, data: Value) -> Result<T, Failure> {
    serde_json::from_value(data).map_err(|e| {
        invalid(format!(
            "bad `{event}` payload: {}",
            protocol::truncate(&e.to_string(), 200)
        ))
    })
}

fn conversation(id: &str) -> Result<ConversationId, Failure> {
    ConversationId::parse(id).map_err(failure)
}

fn message_id(id: &str) -> Result<MessageId, Failure> {
    MessageId::parse(id).map_err(failure)
}

fn users(recipients: &[chat::UserId]) -> Vec<UserId> {
    recipients
        .iter()
        .map(|u| UserId(u.as_str().to_owned()))
        .collect()
}

fn without(mut users: Vec<UserId>, user: &UserId) -> Vec<UserId> {
    users.retain(|u| u != user);
    users
}

fn event_of(name: &'static str, data: Value) -> ServerEvent {
    ServerEvent::Chat(ChatEvent { name, data })
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::InvalidPayload, message)
}

/// A chat error as the client sees it. Storage details stay in the server log.
fn failure(e: ChatError) -> Failure {
    let code = match e.code() {
        chat::ErrorCode::NotMember => ErrorCode::NotMember,
        chat::ErrorCode::NotFound => ErrorCode::NotFound,
        chat::ErrorCode::Forbidden => ErrorCode::Forbidden,
        chat::ErrorCode::ContentTooLong => ErrorCode::ContentTooLong,
        chat::ErrorCode::RateLimited => ErrorCode::RateLimited,
        chat::ErrorCode::EditWindowPassed => ErrorCode::EditWindowPassed,
        chat::ErrorCode::TooManyReactions => ErrorCode::TooManyReactions,
        chat::ErrorCode::InvalidPayload => ErrorCode::InvalidPayload,
        chat::ErrorCode::StorageUnavailable => {
            tracing::error!(error = ?e, "chat storage failed");
            ErrorCode::StorageUnavailable
        }
    };
    Failure::new(code, e.to_string())
}
