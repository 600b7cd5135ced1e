//! Error codes and the `error` event payload.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error code the server sends, on acks, `error` events, HTTP bodies and Socket.IO
/// `connect_error` messages. The set is closed so clients can match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or not an event envelope.
    MalformedFrame,
    /// The event name is not one the server knows.
    UnknownEvent,
    /// The payload has the wrong shape, a wrong type, or a value out of range.
    InvalidPayload,
    /// The connection sent events faster than its limit.
    RateLimited,
    /// `call:initiate` named a user who was invited more often than `limits.invites_per_minute`
    /// allows (counted over every caller); nobody was rung.
    InviteRateLimited,
    /// The user may not do this (not a member of the call, missing grant, ...).
    Forbidden,
    /// The call, user or resource does not exist (or is no longer there).
    NotFound,
    /// The action does not fit the current state (accepting an ended call, ...).
    InvalidState,
    /// A configured limit would be exceeded (participants, subscriptions, ...).
    LimitExceeded,
    /// The server is draining and takes no new work.
    ShuttingDown,
    /// No token was presented.
    TokenMissing,
    /// The token cannot be decoded, uses another algorithm, or lacks required claims.
    TokenInvalid,
    /// The token's signature does not verify.
    TokenBadSignature,
    /// The token has expired.
    TokenExpired,
    /// The token is not valid yet (`nbf`).
    TokenNotYetValid,
    /// The token's issuer is not the configured one.
    TokenBadIssuer,
    /// The token's audience is not the configured one.
    TokenBadAudience,
    /// The token was revoked through the server API (by its `jti`, or every token of its user
    /// issued before the revocation); a live session is closed with it (WebSocket 4003).
    TokenRevoked,
    /// Server API: the call or room is owned by another node of the cluster; the body names it.
    WrongNode,
    /// Server API: the webhook endpoint comes from the configuration file (`[[webhooks]]`); change
    /// it there.
    ManagedByConfig,
    /// The client's address holds too many connections already.
    TooManyConnections,
    /// Chat: the user is not a member of the conversation.
    NotMember,
    /// Chat: the message is longer than the configured limit.
    ContentTooLong,
    /// Chat: the edit window of the message has passed.
    EditWindowPassed,
    /// Chat: the message holds its maximum number of distinct reactions.
    TooManyReactions,
    /// Chat: storage could not be reached; nothing was stored, retry later.
    StorageUnavailable,
    /// Cluster: the action needs another node or the shared state (Redis), and they cannot be
    /// reached right now; nothing happened, retry shortly.
    ClusterUnavailable,
    /// `session:resume`: no session with that id is waiting here (never issued, its grace
    /// period ended, ended with a goodbye, or held by another node of a cluster). Join afresh.
    SessionNotFound,
    /// `session:resume`: more events were missed than the session could hold
    /// (`limits.outbound_queue` / `limits.outbound_queue_bytes`, or more in flight at the drop
    /// than are kept); it ended. Join afresh.
    SessionOverflowed,
    /// The server failed; the message says what, the connection carries on.
    Internal,
}

impl ErrorCode {
    /// Whether the code says the bearer token is not accepted (missing, malformed, badly
    /// signed, expired, not yet valid, wrong issuer or audience, revoked): HTTP answers it with
    /// 401.
    pub fn is_token_refusal(self) -> bool {
        matches!(
            self,
            Self::TokenMissing
                | Self::TokenInvalid
                | Self::TokenBadSignature
                | Self::TokenExpired
                | Self::TokenNotYetValid
                | Self::TokenBadIssuer
                | Self::TokenBadAudience
                | Self::TokenRevoked
        )
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::UnknownEvent => "unknown_event",
            Self::InvalidPayload => "invalid_payload",
            Self::RateLimited => "rate_limited",
            Self::InviteRateLimited => "invite_rate_limited",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::InvalidState => "invalid_state",
            Self::LimitExceeded => "limit_exceeded",
            Self::ShuttingDown => "shutting_down",
            Self::TokenMissing => "token_missing",
            Self::TokenInvalid => "token_invalid",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenBadIssuer => "token_bad_issuer",
            Self::TokenBadAudience => "token_bad_audience",
            Self::TokenRevoked => "token_revoked",
            Self::WrongNode => "wrong_node",
            Self::ManagedByConfig => "managed_by_config",
            Self::TooManyConnections => "too_many_connections",
            Self::NotMember => "not_member",
            Self::ContentTooLong => "content_too_long",
            Self::EditWindowPassed => "edit_window_passed",
            Self::TooManyReactions => "too_many_reactions",
            Self::StorageUnavailable => "storage_unavailable",
            Self::ClusterUnavailable => "cluster_unavailable",
            Self::SessionNotFound => "session_not_found",
            Self::SessionOverflowed => "session_overflowed",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused action: a code for programs and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Payload of the server's `error` event: the failure plus what it answers, so a client that did
/// not ask for an ack can still tell which of its events failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    pub code: ErrorCode,
    pub message: String,
    /// The client event this answers, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The client's ack id, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The chat `tempId`, when the failed event carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
}
