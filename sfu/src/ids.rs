//! Identifiers. Room and participant keys belong to the caller (the signaling layer picks
//! them); track ids are minted by the SFU and are unique for the life of the process.

use std::fmt;
use std::sync::Arc;

macro_rules! string_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a string chosen by the caller.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }

            /// The key as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}

string_key!(
    /// A room (or SFU-mode call) as named by the signaling layer.
    RoomKey
);
string_key!(
    /// A participant within a room as named by the signaling layer (usually the user id).
    /// The same key may be used in different rooms.
    ParticipantKey
);
string_key!(
    /// A published track, minted by the SFU (`TR_<n>`). Unique within the process, so
    /// subscribe/unsubscribe calls cannot hit a track of another room by accident.
    TrackId
);

/// Internal handle of one participant session (one `Rtc`). Never reused, so a stale
/// route or queued action can never reach a later participant with the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);
