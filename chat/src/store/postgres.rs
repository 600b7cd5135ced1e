//! PostgreSQL, for clusters: several Chorus processes may share one database.
//!
//! Lifecycle: [`PostgresStore::connect`] opens a pool and runs migrations (sqlx takes an advisory
//! lock, so processes starting together migrate once). Dropping the store closes the pool.
//!
//! Cross-process correctness comes from the database, not from this process: sequence numbers
//! from the row-locked counter in `chat_conversations`, idempotency from a unique constraint,
//! the reaction bound from `SELECT … FOR UPDATE` on the message. Commits are durable under the
//! server's default `synchronous_commit = on`.

use std::str::FromStr;

// `ChatError`, `sql` and the store types come into scope with `impl_chat_store!` (bottom).
use sqlx::Transaction;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, Postgres};

/// Chat storage in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    lanes: usize,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`; `?options=-csearch_path%3D<schema>` selects a schema)
    /// with at most `max_connections` connections, and runs migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ChatError> {
        let options = PgConnectOptions::from_str(url)?.application_name("chorus-chat");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        sql::migrator().run(&pool).await?;
        // Half the pool commits groups; the rest stays free for reads (history, membership).
        let lanes = (max_connections / 2).clamp(1, 8) as usize;
        Ok(Self { pool, lanes })
    }

    /// Closes the pool, waiting for in-flight queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn outbox_store(&self) -> crate::outbox::PostgresOutbox {
        crate::outbox::PostgresOutbox::new(self.pool.clone())
    }

    /// Row lock: reactions on one message serialise, other messages are unaffected.
    const LOCK_MESSAGE: &'static str =
        "SELECT deleted_at FROM chat_messages WHERE id = $1 FOR UPDATE";

    /// Counter rows are locked in `ORDER BY id` order (see `GroupSql::new`).
    const LOCK_SUFFIX: &'static str = " FOR UPDATE";

    const PLACEHOLDERS: sql::Placeholders = sql::Placeholders::Numbered;

    /// The members must be read after the counter rows are locked (see the variant).
    const GROUP_READ: sql::GroupRead = sql::GroupRead::Separate;

    const DELETE_IDLE_CONVERSATIONS: &'static str = sql::DELETE_IDLE_CONVERSATIONS_SKIP_LOCKED;

    /// Groups of different lanes hold disjoint conversations and commit in parallel.
    fn write_lanes(&self) -> usize {
        self.lanes
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

super::shared_impl::impl_chat_store!(PostgresStore, Postgres);
