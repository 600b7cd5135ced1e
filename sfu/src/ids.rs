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
    /// A published track, minted by the SFU (`TR_<n>`). Unique within the process, so
    /// subscribe/unsubscribe calls cannot hit a track of another room by accident.
    TrackId
);

/// A participant within a room: one signaling connection, named by the signaling layer.
///
/// `conn` identifies the connection (Chorus passes its connection id, which is unique across a
/// cluster, so a user's two devices are two participants); `user` says whose connection it is,
/// so events can name the user without the caller keeping a second table or parsing a string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey {
    conn: u64,
    user: Arc<str>,
}

impl ParticipantKey {
    /// The participant for connection `conn` of `user`.
    pub fn new(conn: u64, user: impl AsRef<str>) -> Self {
        Self {
            conn,
            user: Arc::from(user.as_ref()),
        }
    }

    /// The signaling connection.
    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// The user the connection belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }
}

/// A user seated once per room, keyed by name alone (connection 0): for callers that seat users
/// rather than connections, such as the tests and the fan-out example.
impl From<&str> for ParticipantKey {
    fn from(user: &str) -> Self {
        Self::new(0, user)
    }
}

impl From<String> for ParticipantKey {
    fn from(user: String) -> Self {
        Self::new(0, user)
    }
}

impl fmt::Debug for ParticipantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParticipantKey({:?}#{})", &*self.user, self.conn)
    }
}

impl fmt::Display for ParticipantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.user, self.conn)
    }
}

/// Internal handle of one participant session (one `Rtc`). Never reused, so a stale
/// route or queued action can never reach a later participant with the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);
