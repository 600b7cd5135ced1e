//! What a client sends for chat: [`ChatRequest`], one variant per client event, typed from its
//! name and JSON data by [`ChatRequest::parse`].

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::id::{ConversationId, MessageId, MessageKind, TempId};
use super::names;
use crate::{ErrorCode, Failure, truncate};

/// A chat event from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatRequest {
    /// `message:send`.
    Send(SendMessage),
    /// `message:edit`.
    Edit(EditMessage),
    /// `message:delete`.
    Delete(MessageRef),
    /// `message:react`.
    React(Reaction),
    /// `message:unreact`.
    Unreact(Reaction),
    /// `message:read`.
    Read(ReadMessage),
    /// `message:unread-count`.
    UnreadCount(ConversationRef),
    /// `message:history`.
    History(HistoryRequest),
    /// `typing:start`.
    TypingStart(ConversationRef),
    /// `typing:stop`.
    TypingStop(ConversationRef),
}

/// `message:send {conversationId, content, type, tempId, replyToId?}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Target conversation.
    pub conversation_id: ConversationId,
    /// Text; its length is checked by the chat service against its configured limit.
    pub content: String,
    /// `type`; only `"text"` exists, and it is the default.
    #[serde(rename = "type", default)]
    pub kind: MessageKind,
    /// Idempotency key. Without one a retry stores a second message.
    #[serde(default)]
    pub temp_id: Option<TempId>,
    /// The message answered; must be in the same conversation.
    #[serde(default)]
    pub reply_to_id: Option<MessageId>,
}

/// `message:edit {messageId, content}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditMessage {
    /// The message.
    pub message_id: MessageId,
    /// Its new text.
    pub content: String,
}

/// `{messageId}` (`message:delete`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    /// The message.
    pub message_id: MessageId,
}

/// `{messageId, emoji}` (`message:react`, `message:unreact`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    /// The message.
    pub message_id: MessageId,
    /// The emoji; checked by the chat service.
    pub emoji: String,
}

/// `message:read {conversationId, messageId}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadMessage {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The newest message the user has seen.
    pub message_id: MessageId,
}

/// `{conversationId}` (`message:unread-count`, `typing:start`, `typing:stop`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRef {
    /// The conversation.
    pub conversation_id: ConversationId,
}

/// `message:history {conversationId, beforeSequence?, limit?}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Only messages with a smaller sequence number; the newest page without it.
    #[serde(default)]
    pub before_sequence: Option<u64>,
    /// Page size; the chat service defaults and clamps it.
    #[serde(default)]
    pub limit: Option<u32>,
}

impl ChatRequest {
    /// Types a chat event from its name and JSON data: `unknown_event` for a name not in
    /// [`CHAT_EVENT_NAMES`](super::CHAT_EVENT_NAMES), `invalid_payload` (naming the field) when
    /// the data does not fit.
    pub fn parse(name: &str, data: Value) -> Result<Self, Failure> {
        Ok(match name {
            names::MESSAGE_SEND => Self::Send(typed(name, data)?),
            names::MESSAGE_EDIT => Self::Edit(typed(name, data)?),
            names::MESSAGE_DELETE => Self::Delete(typed(name, data)?),
            names::MESSAGE_REACT => Self::React(typed(name, data)?),
            names::MESSAGE_UNREACT => Self::Unreact(typed(name, data)?),
            names::MESSAGE_READ => Self::Read(typed(name, data)?),
            names::MESSAGE_UNREAD_COUNT => Self::UnreadCount(typed(name, data)?),
            names::MESSAGE_HISTORY => Self::History(typed(name, data)?),
            names::TYPING_START => Self::TypingStart(typed(name, data)?),
            names::TYPING_STOP => Self::TypingStop(typed(name, data)?),
            _ => {
                return Err(Failure::new(
                    ErrorCode::UnknownEvent,
                    format!("unknown event `{}`", truncate(name, 100)),
                ));
            }
        })
    }

    /// The event's wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Send(_) => names::MESSAGE_SEND,
            Self::Edit(_) => names::MESSAGE_EDIT,
            Self::Delete(_) => names::MESSAGE_DELETE,
            Self::React(_) => names::MESSAGE_REACT,
            Self::Unreact(_) => names::MESSAGE_UNREACT,
            Self::Read(_) => names::MESSAGE_READ,
            Self::UnreadCount(_) => names::MESSAGE_UNREAD_COUNT,
            Self::History(_) => names::MESSAGE_HISTORY,
            Self::TypingStart(_) => names::TYPING_START,
            Self::TypingStop(_) => names::TYPING_STOP,
        }
    }
}

fn typed<T: DeserializeOwned>(event: &str, data: Value) -> Result<T, Failure> {
    serde_json::from_value(data).map_err(|e| {
        Failure::new(
            ErrorCode::InvalidPayload,
            format!("bad `{event}` payload: {}", truncate(&e.to_string(), 200)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::CHAT_EVENT_NAMES;
    use serde_json::json;

    #[test]
    fn every_listed_name_parses_to_its_own_name() {
        let id = "0190f3e2-1c2b-7a4d-8e9f-0123456789ab";
        let data = json!({"conversationId": "c1", "messageId": id, "content": "hi",
                          "emoji": "👍", "tempId": "t1"});
        for name in CHAT_EVENT_NAMES {
            let request = ChatRequest::parse(name, data.clone()).unwrap();
            assert_eq!(request.name(), *name);
        }
        let e = ChatRequest::parse("message:shout", data).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownEvent);
    }

    #[test]
    fn send_defaults_and_checks() {
        let ChatRequest::Send(send) = ChatRequest::parse(
            "message:send",
            json!({"conversationId": "c", "content": "x"}),
        )
        .unwrap() else {
            panic!("not a send");
        };
        assert_eq!(
            (send.kind, send.temp_id, send.reply_to_id),
            (MessageKind::Text, None, None)
        );
        for bad in [
            json!({"conversationId": "c", "content": "x", "type": "html"}),
            json!({"conversationId": "", "content": "x"}),
            json!({"conversationId": "c", "content": "x", "tempId": "a\nb"}),
            json!({"conversationId": "c", "content": "x", "replyToId": "nope"}),
            json!({"content": "x"}),
            Value::Null,
        ] {
            let e = ChatRequest::parse("message:send", bad.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidPayload, "{bad}");
        }
    }
}
