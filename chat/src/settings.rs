//! Operator knobs. [`Settings::default`] is the product's default (issue 5); the config crate maps
//! `chat.*` keys onto these fields.

use std::path::PathBuf;
use std::time::Duration;

/// Everything chat can be tuned by.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `chat.database_url`. `None` keeps the embedded default, a SQLite file
    /// `<data_dir>/chat.db`; `sqlite://<path>` names another file; `postgres://…` (or
    /// `postgresql://…`) puts chat in PostgreSQL, which several Chorus nodes may share. A
    /// `?options=-csearch_path%3D<schema>` parameter places the tables in a schema.
    pub database_url: Option<String>,
    /// Where the default SQLite file lives (the process-wide data directory). Created if missing.
    pub data_dir: PathBuf,
    /// How SQLite commits. [`SqliteSync::Full`] fsyncs the WAL on every commit, so an acked
    /// message survives power loss as well as `kill -9`.
    pub sqlite_sync: SqliteSync,
    /// Most pooled connections to PostgreSQL per process. Sends to one conversation serialise on
    /// its counter row anyway; this bounds parallelism across conversations and readers.
    pub max_connections: u32,
    /// How long messages are kept before the background sweeper deletes them. `None` keeps them
    /// forever. A conversation outlives its messages by up to this long again: it is deleted,
    /// with its members and read cursors, once it holds no message and nobody joined or wrote in
    /// it for this long (conversation rows are written for every call, chat or not).
    pub retention: Option<Duration>,
    /// How often the retention sweeper runs. Expiry is not to the second: a message lives between
    /// `retention` and `retention + retention_sweep_interval`.
    pub retention_sweep_interval: Duration,
    /// Longest message content, in Unicode scalar values (what users think of as characters,
    /// close enough). Bounds storage and fan-out per message.
    pub max_content_chars: usize,
    /// How long after sending its author may still edit a message; later edits are refused with
    /// `edit_window_passed` so history can be trusted.
    pub edit_window: Duration,
    /// Per-user sending rate (token bucket over all of a user's devices on this node). `None`
    /// disables the limit — for benchmarks, never for the internet.
    pub message_rate: Option<RateLimit>,
    /// A typing indicator without a refresh for this long is cleared, so a client that vanished
    /// mid-sentence does not "type" forever.
    pub typing_timeout: Duration,
    /// History page size when the client gives none.
    pub history_default_limit: u32,
    /// Largest history page; larger requests are clamped to it. Bounds one query's work.
    pub history_max_limit: u32,
    /// Most distinct emoji on one message; bounds the reactions a message can accumulate.
    pub max_reactions_per_message: usize,
    /// Longest emoji, in Unicode scalar values. 16 fits ZWJ family sequences and skin tones.
    pub max_emoji_chars: usize,
}

/// SQLite `synchronous` mode in WAL journal mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// fsync the WAL at each commit: an ack means on disk. The default.
    #[default]
    Full,
    /// fsync only at checkpoints: an ack survives a killed process (the OS still has the page)
    /// but not a power cut or kernel crash. Faster on slow disks.
    Normal,
}

/// A token bucket: `per_second` tokens refill continuously up to `burst`; each message takes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Messages that may be sent at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 10,
            burst: 20,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("./data"),
            sqlite_sync: SqliteSync::Full,
            max_connections: 10,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
            retention_sweep_interval: Duration::from_secs(10 * 60),
            max_content_chars: 4000,
            edit_window: Duration::from_secs(24 * 3600),
            message_rate: Some(RateLimit::default()),
            typing_timeout: Duration::from_secs(10),
            history_default_limit: 50,
            history_max_limit: 100,
            max_reactions_per_message: 20,
            max_emoji_chars: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_5_defaults() {
        let settings = Settings::default();
        assert_eq!(settings.database_url, None);
        assert_eq!(settings.sqlite_sync, SqliteSync::Full);
        assert_eq!(settings.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(settings.max_content_chars, 4000);
        assert_eq!(settings.edit_window, Duration::from_secs(86_400));
        assert_eq!(settings.typing_timeout, Duration::from_secs(10));
        assert_eq!(settings.history_max_limit, 100);
        let rate = settings.message_rate.expect("rate limited by default");
        assert_eq!(rate.per_second, 10);
        assert!(rate.burst > rate.per_second && rate.burst <= 2 * rate.per_second);
    }
}
