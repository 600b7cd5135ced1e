//! Presence statuses.

use serde::{Deserialize, Serialize};

/// A user's presence status. `online` and `away` are also set by the server (connect, idle);
/// `busy`, `dnd` and `offline` (appear offline) only by the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    Online,
    Away,
    Busy,
    Dnd,
    Offline,
}

/// Longest custom status text, in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 200;
