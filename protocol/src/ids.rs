//! Id newtypes. Every id that crosses the wire is a string; the newtypes keep them apart in code.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as it appears on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A user, as named by the `sub` claim of their token. One user may have several devices
    /// (connections) at once.
    UserId
);
string_id!(
    /// A call, minted by the server on `call:initiate`.
    CallId
);
string_id!(
    /// The application's conversation a call belongs to; opaque to Chorus.
    ConversationId
);

/// One connection (device) of a user, unique within a server process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Longest id a client may send; ids beyond it are refused as `invalid_payload`.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` is an acceptable client-supplied id: non-empty, at most [`MAX_ID_LEN`] bytes, and
/// free of control characters (ids end up in logs and headers).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}
