//! The embedded default: one SQLite file in WAL mode.
//!
//! Lifecycle: [`SqliteStore::open`] creates the file and directory if needed, migrates, and
//! opens three pools: one writer connection (SQLite allows one writer at a time; funnelling writes
//! through one connection means no `SQLITE_BUSY` between our own writers and no lock upgrades),
//! a few read-only connections (WAL lets them read while the writer commits), and one
//! checkpointer connection with a task that copies the WAL into the database file in the
//! background. Dropping the last clone of the store ends that task and closes the pools; nothing
//! needs a graceful close for durability, because every write is committed (and, with
//! [`SqliteSync::Full`], fsynced) before the call returns.
//!
//! Why a checkpointer: by default SQLite checkpoints inside the commit that pushes the WAL past
//! 1,000 pages, so that one commit also copies those pages and fsyncs the database file — a
//! stall of tens of milliseconds for every message in its group, about once a second at 1,000
//! messages per second. The writer turns automatic checkpoints off and the checkpointer runs a
//! `PASSIVE` checkpoint every [`CHECKPOINT_EVERY`], which never blocks the writer (see
//! `checkpoint` for how the WAL stays bounded under sustained writes). Durability is the WAL's
//! fsync at commit, unchanged.
//!
//! Memory: each connection has its own SQLite page cache, which fills as the database grows and
//! then stays full. SQLite's default is 2,000 KiB per connection, so six connections could hold
//! about 12 MiB, growing for as long as the database is young; a soak shows that growth as RSS
//! that creeps for an hour. The caches are set explicitly instead: [`WRITER_CACHE_KIB`] for the
//! writer, [`READER_CACHE_KIB`] for each reader (history pages, read once per request) and
//! [`CHECKPOINTER_CACHE_KIB`] for the checkpointer, which copies pages without reading them
//! twice: at most about 2.1 MiB in all, reached early and then held. The writer's is a
//! trade-off, measured (docs/benchmarks.md): a group commit of 200 conversations touches about
//! 450 index pages, more than 1 MiB holds, so the writer re-reads some with `pread` and spills
//! dirty ones before the commit; a 4 or 8 MiB cache gave 12 % more messages per second in
//! alternating runs of `chat_store_load`, but it fills as slowly as the database grows, which an
//! hour-long soak cannot tell from a leak (a 20-minute soak already showed +2.5 % RSS over its
//! last half, tracking the database). Pages a cache drops are still in the OS page cache, one
//! `pread` away.
//!
//! One process per file: a second Chorus process on the same file would work but contend on the
//! write lock; clusters use PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::sync::Weak; // `Arc` comes with `impl_chat_store!`.
use std::time::Duration;

// `ChatError`, `sql` and the store types come into scope with `impl_chat_store!` (bottom).
use sqlx::Transaction;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::settings::SqliteSync;

/// Chat storage in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    checkpointer: SqlitePool,
    /// The checkpoint task runs while any clone holds this.
    _alive: Arc<()>,
}

/// Page cache of the writer connection, in KiB (`PRAGMA cache_size = -N`).
pub const WRITER_CACHE_KIB: u32 = 1024;
/// Page cache of each of the [`READERS`] read-only connections, in KiB.
pub const READER_CACHE_KIB: u32 = 256;
/// Page cache of the checkpointer connection, in KiB.
pub const CHECKPOINTER_CACHE_KIB: u32 = 128;
/// Prepared statements the writer connection keeps: the group commit's (`sql::GroupSql`, at
/// most 135 with its one-statement reads) and the rest of the writes, with room to spare, so
/// no group re-prepares a statement that an unusual size evicted.
pub const WRITER_STATEMENTS: usize = 200;
/// Read-only connections: WAL lets them read while the writer commits.
pub const READERS: u32 = 4;

/// How often the background checkpointer copies the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs migrations.
    pub async fn open(path: &Path, sync: SqliteSync) -> Result<Self, ChatError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| ChatError::StorageUnavailable(sqlx::Error::Io(error)))?;
        }
        let synchronous = match sync {
            SqliteSync::Full => SqliteSynchronous::Full,
            SqliteSync::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            // Only readers of another process (or a checkpoint) can make us wait; bound it.
            .busy_timeout(Duration::from_secs(5));
        let cache = |kib: u32| format!("-{kib}");
        let writer = pool(1)
            .connect_with(
                options
                    .clone()
                    .statement_cache_capacity(WRITER_STATEMENTS)
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("cache_size", cache(WRITER_CACHE_KIB)),
            )
            .await?;
        sql::migrator().run(&writer).await?;
        let checkpointer = pool(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", cache(CHECKPOINTER_CACHE_KIB)),
            )
            .await?;
        let reader = pool(READERS)
            .connect_with(
                options
                    .read_only(true)
                    .pragma("cache_size", cache(READER_CACHE_KIB)),
            )
            .await?;
        let alive = Arc::new(());
        tokio::spawn(checkpoint(checkpointer.clone(), Arc::downgrade(&alive)));
        Ok(Self {
            writer,
            reader,
            checkpointer,
            _alive: alive,
        })
    }

    /// Closes both pools, waiting for in-flight queries. Optional: see the module docs.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        self.checkpointer.close().await;
    }

    /// The outbox through the one writer connection.
    fn outbox_store(&self) -> crate::outbox::SqliteOutbox {
        crate::outbox::SqliteOutbox::new(self.writer.clone())
    }

    /// No lock needed: the single writer connection already serialises all writes.
    const LOCK_MESSAGE: &'static str = "SELECT deleted_at FROM chat_messages WHERE id = $1";

    /// `BEGIN IMMEDIATE` already holds the write lock.
    const LOCK_SUFFIX: &'static str = "";

    const PLACEHOLDERS: sql::Placeholders = sql::Placeholders::Anonymous;

    /// `BEGIN IMMEDIATE` holds the write lock, so one statement reads a consistent view.
    const GROUP_READ: sql::GroupRead = sql::GroupRead::OneStatement;

    const DELETE_IDLE_CONVERSATIONS: &'static str = sql::DELETE_IDLE_CONVERSATIONS;

    /// One writer connection: one group commits at a time.
    fn write_lanes(&self) -> usize {
        1
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction never fails halfway on
    /// a lock upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

/// A pool of `size` connections that hands them out without sqlx's default ping: a connection
/// to a local file has no far end to lose, and the ping is one more round trip to the
/// connection's worker thread before every transaction (every group commit).
fn pool(size: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(size)
        .test_before_acquire(false)
}

/// WAL frames (pages) past which a checkpoint that could not catch up waits for the writer.
const WAL_RESTART_FRAMES: i64 = 8192;

/// Checkpoints every [`CHECKPOINT_EVERY`] until the store is dropped or closed. `PASSIVE` copies
/// what it can without waiting for readers or the writer. Under sustained writes it never
/// catches the last frames (the writer appends while it copies), and SQLite only starts the WAL
/// over once every frame is copied: so when the WAL has grown past [`WAL_RESTART_FRAMES`]
/// (32 MiB) it runs one `RESTART` checkpoint, which makes the writer wait while it finishes —
/// one stall per 32 MiB of messages instead of one per 4 MiB inside a commit. A failed pass is
/// logged and retried next time.
async fn checkpoint(pool: SqlitePool, alive: Weak<()>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if alive.strong_count() == 0 || pool.is_closed() {
            pool.close().await;
            return;
        }
        let pass = async {
            // (busy, frames in the WAL, frames copied)
            let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await?;
            let (log, copied): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
            if log >= WAL_RESTART_FRAMES && copied < log {
                sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&pool)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(error) = pass.await {
            tracing::warn!(%error, "chat WAL checkpoint failed; retrying");
        }
    }
}

super::shared_impl::impl_chat_store!(SqliteStore, Sqlite);

#[cfg(test)]
mod tests {
    use super::*;

    async fn cache_kib(pool: &SqlitePool) -> i64 {
        let size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(pool)
            .await
            .unwrap();
        // Negative: a size in KiB rather than in pages.
        -size
    }

    #[tokio::test]
    async fn every_connection_has_its_own_bounded_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.db"), SqliteSync::Full)
            .await
            .unwrap();
        assert_eq!(cache_kib(&store.writer).await, WRITER_CACHE_KIB as i64);
        assert_eq!(
            cache_kib(&store.checkpointer).await,
            CHECKPOINTER_CACHE_KIB as i64
        );
        // Every reader the pool opens, not only the first.
        let mut held = Vec::new();
        for _ in 0..READERS {
            let mut conn = store.reader.acquire().await.unwrap();
            let size: i64 = sqlx::query_scalar("PRAGMA cache_size")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(-size, READER_CACHE_KIB as i64);
            held.push(conn);
        }
        // `close` waits for every connection to come back to its pool.
        drop(held);
        store.close().await;
    }
}
