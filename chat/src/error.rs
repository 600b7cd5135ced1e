//! Typed failures with stable wire codes.
//!
//! Every [`ChatError`] maps to one [`ErrorCode`]; the code is the contract with clients (it goes
//! in `error {tempId?, code, message}`), the message is for humans and may change.

use std::time::Duration;

use serde::Serialize;

use crate::id::TempId;

/// What went wrong, as clients see it. Codes are stable; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The user has never been a participant of the conversation.
    NotMember,
    /// No such message (or conversation) — or it expired under retention.
    NotFound,
    /// A member may not do this to this message (e.g. edit someone else's).
    Forbidden,
    /// Content exceeds `Settings::max_content_chars`.
    ContentTooLong,
    /// The sender exceeded `Settings::message_rate`.
    RateLimited,
    /// The edit came after `Settings::edit_window`.
    EditWindowPassed,
    /// The message already carries `Settings::max_reactions_per_message` distinct emoji.
    TooManyReactions,
    /// A field is missing, empty, malformed or out of range.
    InvalidPayload,
    /// The database could not be reached or failed; the action did not happen (a send may be
    /// retried with the same `tempId`).
    StorageUnavailable,
}

impl ErrorCode {
    /// The code as sent on the wire, e.g. `"not_member"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotMember => "not_member",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::ContentTooLong => "content_too_long",
            Self::RateLimited => "rate_limited",
            Self::EditWindowPassed => "edit_window_passed",
            Self::TooManyReactions => "too_many_reactions",
            Self::InvalidPayload => "invalid_payload",
            Self::StorageUnavailable => "storage_unavailable",
        }
    }
}

/// A refused or failed chat action.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// See [`ErrorCode::NotMember`].
    #[error("you are not a member of this conversation")]
    NotMember,
    /// See [`ErrorCode::NotFound`].
    #[error("{0} not found")]
    NotFound(&'static str),
    /// See [`ErrorCode::Forbidden`].
    #[error("{0}")]
    Forbidden(&'static str),
    /// See [`ErrorCode::ContentTooLong`].
    #[error("content is longer than {max} characters")]
    ContentTooLong {
        /// The configured limit, so clients can tell the user.
        max: usize,
    },
    /// See [`ErrorCode::RateLimited`].
    #[error("too many messages; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// When one more message would be accepted.
        retry_after: Duration,
    },
    /// See [`ErrorCode::EditWindowPassed`].
    #[error("messages can only be edited within {} s of sending", window.as_secs())]
    EditWindowPassed {
        /// The configured window.
        window: Duration,
    },
    /// See [`ErrorCode::TooManyReactions`].
    #[error("a message carries at most {max} different reactions")]
    TooManyReactions {
        /// The configured limit.
        max: usize,
    },
    /// See [`ErrorCode::InvalidPayload`].
    #[error("{0}")]
    InvalidPayload(String),
    /// See [`ErrorCode::StorageUnavailable`]. The source is for logs; clients only see the code.
    #[error("storage unavailable")]
    StorageUnavailable(#[source] sqlx::Error),
}

impl ChatError {
    /// The stable code for the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotMember => ErrorCode::NotMember,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::ContentTooLong { .. } => ErrorCode::ContentTooLong,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::EditWindowPassed { .. } => ErrorCode::EditWindowPassed,
            Self::TooManyReactions { .. } => ErrorCode::TooManyReactions,
            Self::InvalidPayload(_) => ErrorCode::InvalidPayload,
            Self::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
        }
    }

    /// The `error {tempId?, code, message}` event for this failure.
    pub fn to_event(&self, temp_id: Option<&TempId>) -> ErrorEvent {
        ErrorEvent {
            temp_id: temp_id.cloned(),
            code: self.code(),
            message: self.to_string(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidPayload(message.into())
    }
}

impl From<sqlx::Error> for ChatError {
    fn from(error: sqlx::Error) -> Self {
        Self::StorageUnavailable(error)
    }
}

impl From<sqlx::migrate::MigrateError> for ChatError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Self::StorageUnavailable(sqlx::Error::Migrate(Box::new(error)))
    }
}

/// The wire `error` event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    /// Echoed for failed `message:send`, so the client can mark that bubble failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<TempId>,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable text; never contains storage internals.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_string() {
        for code in [
            ErrorCode::NotMember,
            ErrorCode::NotFound,
            ErrorCode::Forbidden,
            ErrorCode::ContentTooLong,
            ErrorCode::RateLimited,
            ErrorCode::EditWindowPassed,
            ErrorCode::TooManyReactions,
            ErrorCode::InvalidPayload,
            ErrorCode::StorageUnavailable,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn storage_errors_do_not_leak_details() {
        let error = ChatError::from(sqlx::Error::Protocol("secret detail".into()));
        let event = error.to_event(Some(&TempId::parse("t1").unwrap()));
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"tempId": "t1", "code": "storage_unavailable", "message": "storage unavailable"})
        );
    }
}
