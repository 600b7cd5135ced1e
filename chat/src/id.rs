//! Identifiers, parsed at the edge so the rest of the crate never sees an unchecked string.
//!
//! Every identifier that reaches storage is free of control characters: PostgreSQL refuses NUL in
//! `TEXT`, and a newline in an id only ever means a confused or hostile client.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::ChatError;

/// Longest conversation or user id accepted, in characters.
pub const MAX_ID_CHARS: usize = 200;

/// Longest client `tempId` accepted, in characters.
pub const MAX_TEMP_ID_CHARS: usize = 100;

/// A conversation: a call (`conversationId` = its `callId`) or a named room (`room:<name>`).
///
/// Opaque to this crate: the wiring decides which ids exist; chat only checks the shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConversationId(String);

/// An authenticated user (the JWT subject).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

/// A client-chosen idempotency key for one `message:send`, unique per (conversation, sender).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TempId(String);

/// A server-assigned message id (a UUIDv7, so ids of one conversation sort roughly by time and
/// index well).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MessageId(String);

/// A message's position in its conversation: 1, 2, 3, … with no gaps, assigned at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SequenceNumber(u64);

impl ConversationId {
    /// Accepts 1..=200 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ChatError> {
        checked(raw.into(), MAX_ID_CHARS, "conversationId").map(Self)
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl UserId {
    /// Accepts 1..=200 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ChatError> {
        checked(raw.into(), MAX_ID_CHARS, "userId").map(Self)
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TempId {
    /// Accepts 1..=100 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ChatError> {
        checked(raw.into(), MAX_TEMP_ID_CHARS, "tempId").map(Self)
    }

    /// The id as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl MessageId {
    /// Accepts a UUID in any of its usual text forms and normalises it to lower-case hyphenated,
    /// the form stored and sent.
    pub fn parse(raw: &str) -> Result<Self, ChatError> {
        uuid::Uuid::try_parse(raw)
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| ChatError::invalid("messageId is not a valid id"))
    }

    /// A fresh, time-ordered id.
    pub(crate) fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// Rebuilds an id read back from storage, where it was written by [`MessageId::generate`].
    pub(crate) fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SequenceNumber {
    /// Wraps a number received from a client (e.g. `beforeSequence`).
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The plain number, as sent on the wire.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// For binding in SQL, which stores sequence numbers as `BIGINT`. Saturates rather than wraps
    /// so a huge client value still means "after everything".
    pub(crate) fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// Rebuilds a number read back from storage, where it is never negative.
    pub(crate) fn from_stored(value: i64) -> Self {
        Self(u64::try_from(value).unwrap_or(0))
    }
}

impl Serialize for SequenceNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

macro_rules! display_as_str {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(ConversationId, UserId, TempId, MessageId);

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn checked(raw: String, max_chars: usize, what: &str) -> Result<String, ChatError> {
    if raw.is_empty() {
        return Err(ChatError::invalid(format!("{what} is empty")));
    }
    if raw.chars().count() > max_chars {
        return Err(ChatError::invalid(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ChatError::invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_accept_calls_and_rooms() {
        assert!(ConversationId::parse("9f1c2d").is_ok());
        assert!(ConversationId::parse("room:standup").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_control() {
        assert!(ConversationId::parse("").is_err());
        assert!(ConversationId::parse("x".repeat(201)).is_err());
        assert!(ConversationId::parse("é".repeat(200)).is_ok());
        assert!(UserId::parse("a\0b").is_err());
        assert!(TempId::parse("a\nb").is_err());
        assert!(TempId::parse("t".repeat(101)).is_err());
    }

    #[test]
    fn message_ids_normalise() {
        let id = MessageId::parse("0190F3E2-1C2B-7A4D-8E9F-0123456789AB").unwrap();
        assert_eq!(id.as_str(), "0190f3e2-1c2b-7a4d-8e9f-0123456789ab");
        assert_eq!(
            MessageId::parse("nope").unwrap_err().code().as_str(),
            "invalid_payload"
        );
    }

    #[test]
    fn sequence_numbers_saturate_into_sql() {
        assert_eq!(SequenceNumber::new(u64::MAX).as_i64(), i64::MAX);
        assert_eq!(SequenceNumber::from_stored(-1).value(), 0);
    }
}
