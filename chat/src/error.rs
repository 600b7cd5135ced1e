//! Typed failures with stable wire codes.
//!
//! Every [`ChatError`] maps to one of the protocol's [`ErrorCode`]s; the code is the contract with
//! clients (it goes in `error {tempId?, code, message}`), the message is for humans and may
//! change, and never holds storage details (those stay in the error's source, for logs).

use std::time::Duration;

pub use protocol::ErrorCode;
use protocol::Failure;

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

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidPayload(message.into())
    }
}

/// A payload or id that failed the protocol's checks.
impl From<Failure> for ChatError {
    fn from(failure: Failure) -> Self {
        Self::InvalidPayload(failure.message)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_do_not_leak_details() {
        let error = ChatError::from(sqlx::Error::Protocol("secret detail".into()));
        assert_eq!(error.code(), ErrorCode::StorageUnavailable);
        assert_eq!(error.to_string(), "storage unavailable");
        assert!(std::error::Error::source(&error).is_some(), "kept for logs");
    }
}
