//! The ids, numbers and times chat payloads carry, and the message `type`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::{ErrorCode, Failure, UserId};

/// Longest conversation or user id accepted, in characters.
pub const MAX_ID_CHARS: usize = 200;

/// Longest client `tempId` accepted, in characters.
pub const MAX_TEMP_ID_CHARS: usize = 100;

/// A chat conversation: a call (`conversationId` = its `callId`) or a named room
/// (`room:<name>`). Not the application's `conversationId` of `call:initiate`
/// ([`crate::ConversationId`]), which Chorus never interprets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConversationId(#[serde(deserialize_with = "conversation_id")] String);

/// A client-chosen idempotency key for one `message:send`, unique per (conversation, sender).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TempId(#[serde(deserialize_with = "temp_id")] String);

/// A server-assigned message id (a UUIDv7, so ids of one conversation sort roughly by time and
/// index well). Parsing accepts any usual UUID form and normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(#[serde(deserialize_with = "message_id")] String);

/// A message's position in its conversation: 1, 2, 3, … with no gaps, assigned at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SequenceNumber(u64);

/// A UTC instant with millisecond precision: stored as an integer, sent as RFC 3339
/// (`2026-11-21T15:21:29.123Z`, always three fraction digits so strings sort like times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A message's `type`. Only `"text"` exists today; the enum keeps room for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Plain text, rendered as text.
    #[default]
    Text,
}

impl ConversationId {
    /// Accepts 1..=200 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, Failure> {
        checked(raw.into(), MAX_ID_CHARS, "conversationId").map(Self)
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl UserId {
    /// Accepts 1..=200 characters without control characters: what chat stores as a member or
    /// sender. (The signaling layer takes user ids from verified tokens.)
    pub fn parse(raw: impl Into<String>) -> Result<Self, Failure> {
        checked(raw.into(), MAX_ID_CHARS, "userId").map(Self)
    }
}

impl TempId {
    /// Accepts 1..=100 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, Failure> {
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
    pub fn parse(raw: &str) -> Result<Self, Failure> {
        uuid::Uuid::try_parse(raw)
            .map(|id| Self(id.hyphenated().to_string()))
            .map_err(|_| invalid("messageId is not a valid id"))
    }

    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// An id read back from storage, where [`MessageId::generate`] wrote it; not checked again.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl SequenceNumber {
    /// Wraps a number (e.g. a client's `beforeSequence`).
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The plain number, as sent on the wire.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// For SQL, which stores sequence numbers as `BIGINT`. Saturates rather than wraps so a huge
    /// client value still means "after everything".
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// A number read back from storage, where it is never negative.
    pub fn from_stored(value: i64) -> Self {
        Self(u64::try_from(value).unwrap_or(0))
    }
}

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch, as stored.
    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// The RFC 3339 form used on the wire.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(at) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second(),
                at.millisecond()
            ),
            // Only reachable for stored values beyond year ±9999, which chat never writes.
            Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
        }
    }

    /// This instant plus `duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis(duration)))
    }

    /// This instant minus `duration`, saturating.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(millis(duration)))
    }
}

/// Whole milliseconds in `duration`, saturating.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl MessageKind {
    /// Parses a stored or client `type`.
    pub fn parse(raw: &str) -> Result<Self, Failure> {
        match raw {
            "text" => Ok(Self::Text),
            _ => Err(invalid("type must be \"text\"")),
        }
    }

    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
        }
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
display_as_str!(ConversationId, TempId, MessageId);

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::InvalidPayload, message)
}

fn checked(raw: String, max_chars: usize, what: &str) -> Result<String, Failure> {
    if raw.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    // Counting stops one past the limit so a megabyte of id costs no more than the limit.
    if raw.chars().take(max_chars + 1).count() > max_chars {
        return Err(invalid(format!(
            "{what} is longer than {max_chars} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(invalid(format!("{what} contains control characters")));
    }
    Ok(raw)
}

fn checked_field<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    check: fn(String) -> Result<String, Failure>,
) -> Result<String, D::Error> {
    let raw = String::deserialize(deserializer)?;
    check(raw).map_err(|f| serde::de::Error::custom(f.message))
}

fn conversation_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_field(d, |raw| checked(raw, MAX_ID_CHARS, "conversationId"))
}

fn temp_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_field(d, |raw| checked(raw, MAX_TEMP_ID_CHARS, "tempId"))
}

fn message_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_field(d, |raw| MessageId::parse(&raw).map(|id| id.0))
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
        assert_eq!(
            TempId::parse("").unwrap_err().code,
            ErrorCode::InvalidPayload
        );
    }

    #[test]
    fn payload_ids_are_checked_too() {
        let bad: Result<TempId, _> = serde_json::from_value(serde_json::json!("a\u{0}b"));
        assert!(bad.unwrap_err().to_string().contains("control"));
        let id: MessageId =
            serde_json::from_value(serde_json::json!("0190F3E2-1C2B-7A4D-8E9F-0123456789AB"))
                .unwrap();
        assert_eq!(id.as_str(), "0190f3e2-1c2b-7a4d-8e9f-0123456789ab");
    }

    #[test]
    fn message_ids_normalise() {
        let id = MessageId::parse("0190F3E2-1C2B-7A4D-8E9F-0123456789AB").unwrap();
        assert_eq!(id.as_str(), "0190f3e2-1c2b-7a4d-8e9f-0123456789ab");
        assert_eq!(
            MessageId::parse("nope").unwrap_err().code,
            ErrorCode::InvalidPayload
        );
    }

    #[test]
    fn sequence_numbers_saturate_into_sql() {
        assert_eq!(SequenceNumber::new(u64::MAX).as_i64(), i64::MAX);
        assert_eq!(SequenceNumber::from_stored(-1).value(), 0);
    }

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(
            Timestamp::from_unix_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_795_792_889_123).to_rfc3339(),
            "2026-11-27T15:21:29.123Z"
        );
        let json = serde_json::to_value(Timestamp::from_unix_millis(5)).unwrap();
        assert_eq!(json, "1970-01-01T00:00:00.005Z");
    }

    #[test]
    fn kinds() {
        assert_eq!(MessageKind::parse("text").unwrap(), MessageKind::Text);
        assert!(MessageKind::parse("html").is_err());
    }
}
