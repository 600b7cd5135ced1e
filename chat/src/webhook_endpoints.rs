//! Webhook endpoints created through the server API, kept in the chat database beside the
//! outbox (table `webhook_endpoints`, migration 4; the binary's webhooks, ADR 0074).
//!
//! The database is the one list every node shares: a node that creates, changes or deletes an
//! endpoint writes it here, and every node reads the whole table every few seconds
//! ([`EndpointStore::list`]; it holds a few dozen rows at most). This module stores rows; the
//! caller checks what goes in them.
//!
//! - [`EndpointStore::insert`] refuses when the table already holds the caller's maximum, in the
//!   same transaction as the count, with writers serialized (SQLite's `BEGIN IMMEDIATE`, a
//!   table lock on PostgreSQL), so nodes creating at once never overshoot it.
//! - [`EndpointStore::update`] applies only to the revision the caller read: of two concurrent
//!   changes, one is refused ([`Written::Changed`]) instead of silently undoing the other.
//! - [`EndpointStore::delete`] drops the endpoint's undelivered outbox rows in the same
//!   transaction.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ChatError;

/// One stored endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub id: String,
    pub url: String,
    /// Event types and prefixes, as in `[[webhooks]] events`.
    pub events: Vec<String>,
    /// Newest first.
    pub secrets: Vec<StoredSecret>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// 1 when created, one more per update.
    pub revision: i64,
}

/// A signing secret, with when it stops signing (after a rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    /// `whsec_...`.
    pub secret: String,
    /// Unix milliseconds; `None` while it is current.
    pub expires_at: Option<i64>,
}

impl StoredSecret {
    /// Whether it still signs at `now` (Unix milliseconds).
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// What [`EndpointStore::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    Stored,
    /// The table holds the maximum already.
    Full,
    /// The id is taken.
    Exists,
}

/// What [`EndpointStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Stored,
    /// No such endpoint.
    Missing,
    /// Someone changed it since the revision given.
    Changed,
}

/// Storage of API-created endpoints; see the module docs.
#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    /// Every stored endpoint, oldest first.
    async fn list(&self) -> Result<Vec<StoredEndpoint>, ChatError>;

    /// Stores `endpoint` (with revision 1) unless `max` are stored or its id is taken.
    async fn insert(&self, endpoint: &StoredEndpoint, max: u32) -> Result<Inserted, ChatError>;

    /// Replaces the stored endpoint `endpoint.id` if its revision is still `endpoint.revision`,
    /// and counts the revision up.
    async fn update(&self, endpoint: &StoredEndpoint) -> Result<Written, ChatError>;

    /// Deletes the endpoint and its undelivered outbox rows; the rows dropped, or `None` when
    /// there was no such endpoint.
    async fn delete(&self, id: &str) -> Result<Option<u64>, ChatError>;
}

mod statements {
    pub const LIST: &str = "SELECT id, url, events, secrets, created_at, revision \
        FROM webhook_endpoints ORDER BY created_at, id";

    /// The `WHERE` also keeps SQLite from reading `ON CONFLICT` as a join constraint.
    pub const INSERT: &str = "INSERT INTO webhook_endpoints \
        (id, url, events, secrets, created_at, revision) \
        SELECT $1, $2, $3, $4, $5, 1 \
        WHERE (SELECT COUNT(*) FROM webhook_endpoints) < $6 \
        ON CONFLICT (id) DO NOTHING";

    pub const EXISTS: &str = "SELECT COUNT(*) FROM webhook_endpoints WHERE id = $1";

    pub const UPDATE: &str = "UPDATE webhook_endpoints \
        SET url = $2, events = $3, secrets = $4, revision = revision + 1 \
        WHERE id = $1 AND revision = $5";

    pub const DELETE: &str = "DELETE FROM webhook_endpoints WHERE id = $1";

    pub const DROP_PENDING: &str =
        "DELETE FROM webhook_outbox WHERE endpoint = $1 AND done_at IS NULL";
}

fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("strings and numbers serialise")
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ChatError> {
    serde_json::from_str(text).map_err(|e| ChatError::from(sqlx::Error::Decode(Box::new(e))))
}

/// Expands an [`EndpointStore`] over an outbox type and its sqlx pool.
macro_rules! impl_endpoints {
    ($outbox:ty, $begin:literal, $serialize:expr) => {
        #[async_trait]
        impl EndpointStore for $outbox {
            async fn list(&self) -> Result<Vec<StoredEndpoint>, ChatError> {
                let rows: Vec<(String, String, String, String, i64, i64)> =
                    sqlx::query_as(statements::LIST)
                        .fetch_all(self.pool())
                        .await?;
                rows.into_iter()
                    .map(|(id, url, events, secrets, created_at, revision)| {
                        Ok(StoredEndpoint {
                            id,
                            url,
                            events: decode(&events)?,
                            secrets: decode(&secrets)?,
                            created_at,
                            revision,
                        })
                    })
                    .collect()
            }

            async fn insert(
                &self,
                endpoint: &StoredEndpoint,
                max: u32,
            ) -> Result<Inserted, ChatError> {
                let mut tx = self.pool().begin_with($begin).await?;
                let serialize: Option<&str> = $serialize;
                if let Some(lock) = serialize {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let stored = sqlx::query(statements::INSERT)
                    .bind(&endpoint.id)
                    .bind(&endpoint.url)
                    .bind(encode(&endpoint.events))
                    .bind(encode(&endpoint.secrets))
                    .bind(endpoint.created_at)
                    .bind(i64::from(max))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let outcome = if stored == 1 {
                    Inserted::Stored
                } else {
                    let (n,): (i64,) = sqlx::query_as(statements::EXISTS)
                        .bind(&endpoint.id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if n > 0 {
                        Inserted::Exists
                    } else {
                        Inserted::Full
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn update(&self, endpoint: &StoredEndpoint) -> Result<Written, ChatError> {
                let mut tx = self.pool().begin_with($begin).await?;
                let stored = sqlx::query(statements::UPDATE)
                    .bind(&endpoint.id)
                    .bind(&endpoint.url)
                    .bind(encode(&endpoint.events))
                    .bind(encode(&endpoint.secrets))
                    .bind(endpoint.revision)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let outcome = if stored == 1 {
                    Written::Stored
                } else {
                    let (n,): (i64,) = sqlx::query_as(statements::EXISTS)
                        .bind(&endpoint.id)
                        .fetch_one(&mut *tx)
                        .await?;
                    if n > 0 {
                        Written::Changed
                    } else {
                        Written::Missing
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn delete(&self, id: &str) -> Result<Option<u64>, ChatError> {
                let mut tx = self.pool().begin_with($begin).await?;
                let gone = sqlx::query(statements::DELETE)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let dropped = sqlx::query(statements::DROP_PENDING)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(Some(dropped))
            }
        }
    };
}

// SQLite's `BEGIN IMMEDIATE` already lets one writer in at a time. PostgreSQL's default
// isolation would let two transactions count the same rows and both insert, so creations
// take the table's write lock first (reads go on).
impl_endpoints!(crate::outbox::SqliteOutbox, "BEGIN IMMEDIATE", None);
impl_endpoints!(
    crate::outbox::PostgresOutbox,
    "BEGIN",
    Some("LOCK TABLE webhook_endpoints IN EXCLUSIVE MODE")
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::NewOutboxRow;
    use crate::store::SqliteStore;
    use crate::{ChatStore, SqliteSync};

    fn endpoint(id: &str) -> StoredEndpoint {
        StoredEndpoint {
            id: id.into(),
            url: format!("https://example.com/{id}"),
            events: vec!["call.*".into()],
            secrets: vec![StoredSecret {
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                expires_at: None,
            }],
            created_at: 1000,
            revision: 1,
        }
    }

    #[tokio::test]
    async fn endpoints_are_stored_capped_updated_once_per_revision_and_deleted_with_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("chat.db"), SqliteSync::Full)
            .await
            .unwrap();
        let endpoints = store.webhook_endpoints();
        assert_eq!(
            endpoints.insert(&endpoint("a"), 2).await.unwrap(),
            Inserted::Stored
        );
        assert_eq!(
            endpoints.insert(&endpoint("a"), 2).await.unwrap(),
            Inserted::Exists
        );
        assert_eq!(
            endpoints.insert(&endpoint("b"), 2).await.unwrap(),
            Inserted::Stored
        );
        assert_eq!(
            endpoints.insert(&endpoint("c"), 2).await.unwrap(),
            Inserted::Full
        );
        let mut a = endpoints.list().await.unwrap().remove(0);
        assert_eq!(a, endpoint("a"));
        a.events = vec!["room.*".into()];
        a.secrets.insert(
            0,
            StoredSecret {
                secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".into(),
                expires_at: None,
            },
        );
        a.secrets[1].expires_at = Some(5000);
        assert_eq!(endpoints.update(&a).await.unwrap(), Written::Stored);
        assert_eq!(
            endpoints.update(&a).await.unwrap(),
            Written::Changed,
            "revision 1 is gone"
        );
        let stored = endpoints.list().await.unwrap().remove(0);
        assert_eq!((stored.revision, stored.events.clone()), (2, a.events));
        assert!(stored.secrets[1].live(4999) && !stored.secrets[1].live(5000));
        assert_eq!(
            endpoints.update(&endpoint("zz")).await.unwrap(),
            Written::Missing
        );

        let outbox = store.outbox();
        let row = |endpoint: &str, id: &str| NewOutboxRow {
            endpoint: endpoint.into(),
            event_id: id.into(),
            order_key: "k".into(),
            pos: 1,
            body: "{}".into(),
            created_at: 1000,
        };
        outbox
            .append(&[row("a", "e1"), row("a", "e2"), row("b", "e1")])
            .await
            .unwrap();
        outbox.delivered("a", "e1", 1100).await.unwrap();
        assert_eq!(
            endpoints.delete("a").await.unwrap(),
            Some(1),
            "the pending row"
        );
        assert_eq!(endpoints.delete("a").await.unwrap(), None);
        assert_eq!(outbox.depth().await.unwrap(), 1, "b's row stays");
        let ids: Vec<String> = endpoints
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["b"]);
    }
}
