//! A durable outbox in the chat database, for events another system must receive at least once
//! (the binary's webhooks, ADR 0073).
//!
//! The chat database is already the one durable store of a Chorus deployment (SQLite on one
//! node, PostgreSQL shared by a cluster), so the outbox lives beside the messages, in the table
//! `webhook_outbox` (migration 3). This module knows rows, keys and leases, not HTTP: the caller
//! decides what a row's body is and where it goes.
//!
//! Lifecycle of a row: [`OutboxStore::append`] (pending) → [`OutboxStore::claim`] (leased to
//! one node for a while) → [`OutboxStore::delivered`], [`OutboxStore::retry_at`] (pending again,
//! due later) or [`OutboxStore::give_up`] → [`OutboxStore::prune`] deletes done rows.
//!
//! Ordering: only the oldest undone row of an `(endpoint, order_key)` can be claimed, so a
//! key's next row waits until the one before is delivered or given up. Several processes may
//! claim from one PostgreSQL: `FOR UPDATE SKIP LOCKED` keeps two claims from taking one row, and
//! the lease (`lease_until`) keeps a row claimed while its node works on it; a node that dies
//! leaves a lease that expires, and another node claims the row again (at least once).

use async_trait::async_trait;

use crate::error::ChatError;

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxRow {
    /// Who receives it (an endpoint id of the caller's).
    pub endpoint: String,
    /// The event's id; `(endpoint, event_id)` is unique, so appending twice stores once.
    pub event_id: String,
    /// What the event is ordered within (a room, call or conversation id).
    pub order_key: String,
    /// Order within the key; see the module docs.
    pub pos: i64,
    /// The payload, sent as is.
    pub body: String,
    /// Unix milliseconds when the event happened.
    pub created_at: i64,
}

/// A claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub endpoint: String,
    pub event_id: String,
    pub order_key: String,
    pub pos: i64,
    pub body: String,
    pub created_at: i64,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Given up (too old, or its endpoint is gone).
    Failed,
}

/// What became of a claimed row, for [`OutboxStore::settle_and_claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// [`OutboxStore::delivered`].
    Delivered {
        endpoint: String,
        event_id: String,
        at: i64,
    },
    /// [`OutboxStore::retry_at`].
    Retry {
        endpoint: String,
        event_id: String,
        attempts: u32,
        next_attempt_at: i64,
        error: String,
    },
    /// [`OutboxStore::give_up`].
    GiveUp {
        endpoint: String,
        event_id: String,
        at: i64,
        error: String,
    },
}

/// The outbox's storage; see the module docs. Shared between tasks and, on PostgreSQL,
/// between processes.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Stores `rows` in one transaction, durably, before returning; a row whose
    /// `(endpoint, event_id)` is stored already is skipped. Returns how many were new.
    async fn append(&self, rows: &[NewOutboxRow]) -> Result<u64, ChatError>;

    /// Leases up to `limit` due rows (`next_attempt_at <= now`, no live lease), each the oldest
    /// undone row of its key, until `lease_until`; oldest first.
    async fn claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, ChatError>;

    /// Records `settled` outcomes, then claims as [`OutboxStore::claim`] does, all in one
    /// transaction: one commit for a whole round of the delivery loop, so that it does not
    /// queue a commit per request ahead of the writers that append events.
    async fn settle_and_claim(
        &self,
        settled: &[Settle],
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>, ChatError>;

    /// Marks a row delivered. A row already done stays as it was.
    async fn delivered(&self, endpoint: &str, event_id: &str, at: i64) -> Result<(), ChatError>;

    /// Releases a row's lease and makes it due again at `next_attempt_at`, with `attempts`
    /// failed attempts so far and the last `error`.
    async fn retry_at(
        &self,
        endpoint: &str,
        event_id: &str,
        attempts: u32,
        next_attempt_at: i64,
        error: &str,
    ) -> Result<(), ChatError>;

    /// Marks a row failed for good; the key's next row may go.
    async fn give_up(
        &self,
        endpoint: &str,
        event_id: &str,
        at: i64,
        error: &str,
    ) -> Result<(), ChatError>;

    /// Rows not yet done.
    async fn depth(&self) -> Result<u64, ChatError>;

    /// Deletes up to `batch` rows done before `cutoff`; returns how many.
    async fn prune(&self, cutoff: i64, batch: u32) -> Result<u64, ChatError>;

    /// How a row ended, if it did (for tests and diagnostics); `None` while pending or unknown.
    async fn outcome(&self, endpoint: &str, event_id: &str) -> Result<Option<Outcome>, ChatError>;
}

/// The statements, identical on both backends except the claim's lock clause.
mod statements {
    pub const INSERT: &str = "INSERT INTO webhook_outbox \
        (endpoint, event_id, order_key, pos, body, created_at, next_attempt_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (endpoint, event_id) DO NOTHING";

    /// `{lock}` is `FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite (one writer).
    pub const CLAIM: &str = "UPDATE webhook_outbox SET lease_until = $2 \
        WHERE (endpoint, event_id) IN ( \
          SELECT o.endpoint, o.event_id FROM webhook_outbox o \
          WHERE o.done_at IS NULL AND o.next_attempt_at <= $1 AND o.lease_until <= $1 \
            AND NOT EXISTS (SELECT 1 FROM webhook_outbox p \
              WHERE p.endpoint = o.endpoint AND p.order_key = o.order_key \
                AND p.done_at IS NULL \
                AND (p.pos < o.pos OR (p.pos = o.pos AND p.event_id < o.event_id))) \
          ORDER BY o.pos, o.event_id LIMIT $3{lock}) \
        RETURNING endpoint, event_id, order_key, pos, body, created_at, attempts";

    pub const DELIVERED: &str = "UPDATE webhook_outbox \
        SET done_at = $3, outcome = 'delivered', lease_until = 0 \
        WHERE endpoint = $1 AND event_id = $2 AND done_at IS NULL";

    pub const RETRY: &str = "UPDATE webhook_outbox \
        SET attempts = $3, next_attempt_at = $4, last_error = $5, lease_until = 0 \
        WHERE endpoint = $1 AND event_id = $2 AND done_at IS NULL";

    pub const GIVE_UP: &str = "UPDATE webhook_outbox \
        SET done_at = $3, outcome = 'failed', last_error = $4, lease_until = 0 \
        WHERE endpoint = $1 AND event_id = $2 AND done_at IS NULL";

    pub const DEPTH: &str = "SELECT COUNT(*) FROM webhook_outbox WHERE done_at IS NULL";

    pub const PRUNE: &str = "DELETE FROM webhook_outbox WHERE (endpoint, event_id) IN ( \
        SELECT endpoint, event_id FROM webhook_outbox \
        WHERE done_at IS NOT NULL AND done_at < $1 LIMIT $2)";

    pub const OUTCOME: &str =
        "SELECT outcome FROM webhook_outbox WHERE endpoint = $1 AND event_id = $2";
}

/// Expands an [`OutboxStore`] over one sqlx pool type.
macro_rules! impl_outbox {
    ($name:ident, $pool:ty, $begin:literal, $lock:literal) => {
        /// The outbox on this backend's pool (the chat store's writer pool).
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            pub fn new(pool: $pool) -> Self {
                Self { pool }
            }

            /// The pool, for the endpoint store on the same database
            /// ([`crate::webhook_endpoints`]).
            pub(crate) fn pool(&self) -> &$pool {
                &self.pool
            }
        }

        #[async_trait]
        impl OutboxStore for $name {
            async fn append(&self, rows: &[NewOutboxRow]) -> Result<u64, ChatError> {
                if rows.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let mut new = 0;
                for row in rows {
                    new += sqlx::query(statements::INSERT)
                        .bind(&row.endpoint)
                        .bind(&row.event_id)
                        .bind(&row.order_key)
                        .bind(row.pos)
                        .bind(&row.body)
                        .bind(row.created_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(new)
            }

            async fn claim(
                &self,
                now: i64,
                lease_until: i64,
                limit: u32,
            ) -> Result<Vec<OutboxRow>, ChatError> {
                self.settle_and_claim(&[], now, lease_until, limit).await
            }

            async fn settle_and_claim(
                &self,
                settled: &[Settle],
                now: i64,
                lease_until: i64,
                limit: u32,
            ) -> Result<Vec<OutboxRow>, ChatError> {
                use sqlx::Row as _;
                static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                let sql = SQL.get_or_init(|| statements::CLAIM.replace("{lock}", $lock));
                let mut tx = self.pool.begin_with($begin).await?;
                for s in settled {
                    let query = match s {
                        Settle::Delivered {
                            endpoint,
                            event_id,
                            at,
                        } => sqlx::query(statements::DELIVERED)
                            .bind(endpoint)
                            .bind(event_id)
                            .bind(*at),
                        Settle::Retry {
                            endpoint,
                            event_id,
                            attempts,
                            next_attempt_at,
                            error,
                        } => sqlx::query(statements::RETRY)
                            .bind(endpoint)
                            .bind(event_id)
                            .bind(i64::from(*attempts))
                            .bind(*next_attempt_at)
                            .bind(error),
                        Settle::GiveUp {
                            endpoint,
                            event_id,
                            at,
                            error,
                        } => sqlx::query(statements::GIVE_UP)
                            .bind(endpoint)
                            .bind(event_id)
                            .bind(*at)
                            .bind(error),
                    };
                    query.execute(&mut *tx).await?;
                }
                let rows = if limit == 0 {
                    Vec::new()
                } else {
                    sqlx::query(sql.as_str())
                        .bind(now)
                        .bind(lease_until)
                        .bind(i64::from(limit))
                        .fetch_all(&mut *tx)
                        .await?
                };
                tx.commit().await?;
                let mut claimed = rows
                    .iter()
                    .map(|r| {
                        Ok(OutboxRow {
                            endpoint: r.try_get("endpoint")?,
                            event_id: r.try_get("event_id")?,
                            order_key: r.try_get("order_key")?,
                            pos: r.try_get("pos")?,
                            body: r.try_get("body")?,
                            created_at: r.try_get("created_at")?,
                            attempts: u32::try_from(r.try_get::<i64, _>("attempts")?)
                                .unwrap_or(u32::MAX),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                // RETURNING gives no order.
                claimed.sort_by(|a, b| (a.pos, &a.event_id).cmp(&(b.pos, &b.event_id)));
                Ok(claimed)
            }

            async fn delivered(
                &self,
                endpoint: &str,
                event_id: &str,
                at: i64,
            ) -> Result<(), ChatError> {
                sqlx::query(statements::DELIVERED)
                    .bind(endpoint)
                    .bind(event_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn retry_at(
                &self,
                endpoint: &str,
                event_id: &str,
                attempts: u32,
                next_attempt_at: i64,
                error: &str,
            ) -> Result<(), ChatError> {
                sqlx::query(statements::RETRY)
                    .bind(endpoint)
                    .bind(event_id)
                    .bind(i64::from(attempts))
                    .bind(next_attempt_at)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn give_up(
                &self,
                endpoint: &str,
                event_id: &str,
                at: i64,
                error: &str,
            ) -> Result<(), ChatError> {
                sqlx::query(statements::GIVE_UP)
                    .bind(endpoint)
                    .bind(event_id)
                    .bind(at)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn depth(&self) -> Result<u64, ChatError> {
                let (n,): (i64,) = sqlx::query_as(statements::DEPTH)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn prune(&self, cutoff: i64, batch: u32) -> Result<u64, ChatError> {
                Ok(sqlx::query(statements::PRUNE)
                    .bind(cutoff)
                    .bind(i64::from(batch))
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }

            async fn outcome(
                &self,
                endpoint: &str,
                event_id: &str,
            ) -> Result<Option<Outcome>, ChatError> {
                let row: Option<(Option<String>,)> = sqlx::query_as(statements::OUTCOME)
                    .bind(endpoint)
                    .bind(event_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match row.and_then(|(o,)| o).as_deref() {
                    Some("delivered") => Some(Outcome::Delivered),
                    Some("failed") => Some(Outcome::Failed),
                    _ => None,
                })
            }
        }
    };
}

// SQLite: through the store's one writer connection, so outbox writes never meet chat writes
// with `SQLITE_BUSY`; `BEGIN IMMEDIATE` takes the write lock up front.
impl_outbox!(SqliteOutbox, sqlx::SqlitePool, "BEGIN IMMEDIATE", "");
impl_outbox!(
    PostgresOutbox,
    sqlx::PgPool,
    "BEGIN",
    " FOR UPDATE SKIP LOCKED"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::{ChatStore, SqliteSync};

    fn row(endpoint: &str, id: &str, key: &str, pos: i64) -> NewOutboxRow {
        NewOutboxRow {
            endpoint: endpoint.into(),
            event_id: id.into(),
            order_key: key.into(),
            pos,
            body: format!("{{\"id\":\"{id}\"}}"),
            created_at: 1000,
        }
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.db"), SqliteSync::Full)
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_key_waits_for_its_previous_row_and_keys_go_in_parallel() {
        let (_dir, store) = store().await;
        let outbox = store.outbox();
        let rows = [
            row("a", "e1", "room:x", 1),
            row("a", "e2", "room:x", 2),
            row("a", "e3", "room:y", 3),
            row("b", "e1", "room:x", 1),
        ];
        assert_eq!(outbox.append(&rows).await.unwrap(), 4);
        assert_eq!(outbox.append(&rows[..1]).await.unwrap(), 0, "stored once");
        assert_eq!(outbox.depth().await.unwrap(), 4);
        let claimed = outbox.claim(1000, 2000, 10).await.unwrap();
        let ids: Vec<_> = claimed
            .iter()
            .map(|r| (r.endpoint.as_str(), r.event_id.as_str()))
            .collect();
        assert_eq!(ids, [("a", "e1"), ("b", "e1"), ("a", "e3")]);
        // Leased: nothing more until a row is done or its lease runs out.
        assert!(outbox.claim(1500, 3000, 10).await.unwrap().is_empty());
        outbox.retry_at("a", "e1", 1, 1800, "503").await.unwrap();
        assert!(outbox.claim(1700, 3000, 10).await.unwrap().is_empty());
        let again = outbox.claim(1800, 3000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].event_id.as_str(), again[0].attempts), ("e1", 1));
        outbox.delivered("a", "e1", 1900).await.unwrap();
        let next = outbox.claim(1900, 3000, 10).await.unwrap();
        assert_eq!(
            next[0].event_id, "e2",
            "the key's next row goes once e1 is delivered"
        );
        assert_eq!(
            outbox.outcome("a", "e1").await.unwrap(),
            Some(Outcome::Delivered)
        );
        outbox.give_up("a", "e2", 2000, "too old").await.unwrap();
        assert_eq!(
            outbox.outcome("a", "e2").await.unwrap(),
            Some(Outcome::Failed)
        );
        // An expired lease is claimed again (the node holding it died).
        let retaken = outbox.claim(3000, 4000, 10).await.unwrap();
        assert_eq!(retaken.len(), 2, "b/e1 and a/e3, leased until 2000");
        assert_eq!(outbox.prune(2001, 100).await.unwrap(), 2);
        assert_eq!(outbox.depth().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn outcomes_and_the_next_claim_commit_together() {
        let (_dir, store) = store().await;
        let outbox = store.outbox();
        let rows = [
            row("a", "e1", "k", 1),
            row("a", "e2", "k", 2),
            row("a", "e3", "j", 3),
        ];
        outbox.append(&rows).await.unwrap();
        let first = outbox.settle_and_claim(&[], 1000, 2000, 1).await.unwrap();
        assert_eq!(first[0].event_id, "e1", "oldest first, up to the limit");
        let settled = [Settle::Delivered {
            endpoint: "a".into(),
            event_id: "e1".into(),
            at: 1100,
        }];
        let next = outbox
            .settle_and_claim(&settled, 1100, 2100, 10)
            .await
            .unwrap();
        let ids: Vec<_> = next.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(
            ids,
            ["e2", "e3"],
            "e1's outcome lets e2 go in the same round"
        );
        let retry = [Settle::Retry {
            endpoint: "a".into(),
            event_id: "e2".into(),
            attempts: 1,
            next_attempt_at: 5000,
            error: "HTTP 500".into(),
        }];
        assert!(
            outbox
                .settle_and_claim(&retry, 1200, 2200, 0)
                .await
                .unwrap()
                .is_empty()
        );
        let early = outbox.claim(4999, 6000, 10).await.unwrap();
        assert_eq!(early.len(), 1, "e2 is not due yet");
        assert_eq!(early[0].event_id, "e3", "e3's lease ran out at 2100");
        assert_eq!(outbox.claim(5000, 6000, 10).await.unwrap()[0].attempts, 1);
    }
}
