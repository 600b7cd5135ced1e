//! Endpoints created through the server API: from their rows in the chat database
//! ([`chat::webhook_endpoints`]) to [`Endpoint`]s, and the sync that keeps every node's list
//! equal to the table (ADR 0074).
//!
//! The node that serves an API request writes the row, changes its own list at once, and
//! announces the change to the other nodes (`Body::WebhooksChanged` over the cluster bus), which
//! read the table as soon as they hear it. Every node also reads the whole table every
//! [`SYNC_EVERY`] (`run`), so a change whose announcement was lost (Redis down), or a
//! rotated-out secret whose grace period ended, applies here within that time. A
//! change and a sync never interleave: both hold one lock (`Shared::sync`), so a sync that read
//! the table before a change cannot undo it afterwards.

use super::Shared;
use super::endpoint::{Endpoint, Put, Source};
use super::event::millis;
use ::chat::ChatError;
use ::chat::webhook_endpoints::StoredEndpoint;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often every node reads the table.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);

/// The endpoint a row describes at `now` (Unix milliseconds): signed with the secrets whose
/// grace period has not ended, newest first.
pub fn endpoint(row: &StoredEndpoint, now: i64) -> Result<Endpoint, String> {
    let secrets: Vec<String> = row
        .secrets
        .iter()
        .filter(|s| s.live(now))
        .map(|s| s.secret.clone())
        .collect();
    if secrets.is_empty() {
        return Err(format!("webhook `{}` has no live secret", row.id));
    }
    let config = config::WebhookEndpoint {
        id: row.id.clone(),
        url: row.url.clone(),
        secret: config::WebhookSecrets::Several(secrets),
        events: row.events.clone(),
    };
    Endpoint::new(config, Source::Api)
}

/// Makes this node's API endpoints those of `rows`, as of `now`. Configured endpoints stay.
pub(super) fn apply(shared: &Shared, rows: &[StoredEndpoint], now: i64) {
    for e in shared.endpoints.list() {
        if e.source == Source::Api && !rows.iter().any(|r| r.id == e.id()) {
            shared.forget(e.id());
        }
    }
    for row in rows {
        match endpoint(row, now) {
            Ok(e) => {
                if let Err(error) = shared.adopt(e) {
                    tracing::warn!(endpoint = %row.id, %error, "stored webhook endpoint skipped");
                }
            }
            Err(error) => {
                tracing::warn!(endpoint = %row.id, %error, "stored webhook endpoint skipped");
            }
        }
    }
}

/// Reads the table and applies it.
pub(super) async fn sync(shared: &Shared) -> Result<(), ChatError> {
    let _turn = shared.sync.lock().await;
    let rows = shared.stored.list().await?;
    apply(shared, &rows, millis(SystemTime::now()));
    Ok(())
}

/// Syncs every [`SYNC_EVERY`] until `stop` resolves. A database outage is logged once, and
/// the list stays as it was until the database answers again.
pub(super) async fn run(
    shared: Arc<Shared>,
    stop: impl std::future::Future<Output = ()>,
    changed: Arc<tokio::sync::Notify>,
) {
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(SYNC_EVERY) => {}
            () = changed.notified() => {}
        }
        match sync(&shared).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("webhook endpoints readable again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read the webhook endpoints; keeping the last list");
            }
            Err(_) => {}
        }
    }
}

impl Shared {
    /// Adds or replaces an endpoint on this node, with its metrics.
    pub(super) fn adopt(&self, endpoint: Endpoint) -> Result<Put, String> {
        let id = endpoint.id().to_owned();
        let put = self.endpoints.put(endpoint)?;
        if put == Put::Added {
            self.metrics.paused.with_label_values(&[id.as_str()]).set(0);
        }
        Ok(put)
    }

    /// Removes an endpoint from this node, with its metrics.
    pub(super) fn forget(&self, id: &str) {
        let Some(endpoint) = self.endpoints.get(id) else {
            return;
        };
        self.endpoints.remove(id);
        if endpoint.health().paused_until.is_some() {
            self.metrics.paused_endpoints.dec();
        }
        let _ = self.metrics.paused.remove_label_values(&[id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::chat::webhook_endpoints::StoredSecret;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";

    #[test]
    fn a_rotated_out_secret_signs_until_its_grace_period_ends() {
        let row = StoredEndpoint {
            id: "wh_1".into(),
            url: "https://example.com/hook".into(),
            events: vec![],
            secrets: vec![
                StoredSecret {
                    secret: NEW.into(),
                    expires_at: None,
                },
                StoredSecret {
                    secret: OLD.into(),
                    expires_at: Some(5000),
                },
            ],
            created_at: 0,
            revision: 2,
        };
        let during = endpoint(&row, 4999).unwrap();
        assert_eq!(during.keys.len(), 2);
        assert_eq!(during.keys[0], config::webhook_secret_key(NEW).unwrap());
        assert_eq!(during.source, Source::Api);
        let after = endpoint(&row, 5000).unwrap();
        assert_eq!(after.keys, [config::webhook_secret_key(NEW).unwrap()]);
        let mut expired = row;
        expired.secrets.remove(0);
        assert!(
            endpoint(&expired, 5000).is_err(),
            "nothing left to sign with"
        );
    }
}
