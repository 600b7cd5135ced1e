//! The server API's webhook routes (`/api/v1/admin/webhooks`, ADR 0074), implemented over this
//! node's [`Endpoints`](super::endpoint::Endpoints) and the chat database.
//!
//! - Reads (list, show) answer from this node's list: an endpoint created on another node shows
//!   here as soon as its announcement arrives, and within
//!   [`SYNC_EVERY`](super::stored::SYNC_EVERY) at worst. Health is this node's.
//! - Changes (create, update, rotate, delete) are written to the database first, then applied
//!   here and announced; other nodes read the table when they hear it (or at their next
//!   sync). Configured (`[[webhooks]]`) endpoints
//!   answer `managed_by_config`.
//! - Secrets are made here (`whsec_` and 32 random bytes) unless the caller brings one, and are
//!   answered only by create and rotate.

use super::Webhooks;
use super::endpoint::{Endpoint, Source};
use super::event::millis;
use super::stored;
use ::chat::webhook_endpoints::{Inserted, StoredEndpoint, StoredSecret, Written};
use base64::Engine as _;
use protocol::{ErrorCode, Failure};
use signaling::admin::model::{
    CreateWebhook, RotateSecret, UpdateWebhook, WebhookDeleted, WebhookInfo, WebhookSecret,
};
use signaling::admin::webhooks::WebhookAdmin;
use std::time::SystemTime;

/// Grace period of a rotation when the caller names none.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;
/// Longest grace period of a rotation.
pub const MAX_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Most secrets signing one endpoint at once (as for `[[webhooks]] secret`).
pub const MAX_SECRETS: usize = 8;

/// A fresh signing secret: `whsec_` and base64 of 32 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// A fresh endpoint id: `wh_` and 24 hexadecimal digits.
fn new_id() -> String {
    let bytes: [u8; 12] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("wh_{hex}")
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::InvalidPayload, message)
}

fn not_found(id: &str) -> Failure {
    let shown: String = id.chars().take(128).collect();
    Failure::new(
        ErrorCode::NotFound,
        format!("no webhook endpoint `{shown}`"),
    )
}

fn storage(error: ::chat::ChatError) -> Failure {
    tracing::error!(%error, "webhook endpoint storage failed");
    Failure::new(
        ErrorCode::StorageUnavailable,
        "the webhook endpoints could not be read or written; nothing changed, retry later",
    )
}

/// Checks a URL as the API takes it.
/// An address in the URL must be one API endpoints may reach ([`super::client`]).
fn check_address(shared: &super::Shared, url: &str) -> Result<(), Failure> {
    shared
        .client
        .check_address(url)
        .map_err(|m| invalid(format!("`url`: {m}")))
}

pub fn check_url(url: &str) -> Result<(), Failure> {
    config::check_webhook_url(url).map_err(|m| invalid(format!("`url`: {m}")))
}

/// Checks an `events` list as the API takes it.
pub fn check_events(events: &[String]) -> Result<(), Failure> {
    config::check_webhook_events(events).map_err(|m| invalid(format!("`events`: {m}")))
}

/// Checks a secret the caller brings.
pub fn check_secret(secret: &str) -> Result<(), Failure> {
    config::webhook_secret_key(secret)
        .map(|_| ())
        .map_err(|m| invalid(format!("`secret`: {m}")))
}

/// The grace period of a rotation in milliseconds, checked.
pub fn grace_millis(grace_secs: Option<u64>) -> Result<i64, Failure> {
    match grace_secs.unwrap_or(DEFAULT_GRACE_SECS) {
        s if s <= MAX_GRACE_SECS => Ok(i64::try_from(s * 1000).unwrap_or(i64::MAX)),
        _ => Err(invalid(format!(
            "`graceSecs` is at most {MAX_GRACE_SECS} (30 days)"
        ))),
    }
}

/// `secrets` after a rotation to `new` at `now`: `new` first, the live ones after it expiring
/// at the latest `grace` from now, the ended ones gone.
pub fn rotated(
    secrets: &[StoredSecret],
    new: String,
    now: i64,
    grace: i64,
) -> Result<Vec<StoredSecret>, Failure> {
    if secrets.iter().any(|s| s.secret == new) {
        return Err(invalid("`secret`: that secret signs this endpoint already"));
    }
    let until = now.saturating_add(grace);
    let mut next = vec![StoredSecret {
        secret: new,
        expires_at: None,
    }];
    next.extend(
        secrets
            .iter()
            .filter(|s| s.live(now))
            .map(|s| StoredSecret {
                secret: s.secret.clone(),
                expires_at: Some(s.expires_at.map_or(until, |at| at.min(until))),
            })
            .filter(|s| s.live(now)),
    );
    if next.len() > MAX_SECRETS {
        return Err(Failure::new(
            ErrorCode::LimitExceeded,
            format!(
                "at most {MAX_SECRETS} secrets sign at once: wait until older ones expire, or \
                 rotate with `graceSecs: 0`"
            ),
        ));
    }
    Ok(next)
}

fn info(e: &Endpoint) -> WebhookInfo {
    let health = *e.health();
    WebhookInfo {
        id: e.id().to_owned(),
        url: e.config.url.clone(),
        events: e.config.events.clone(),
        source: e.source.as_str().to_owned(),
        secrets: e.keys.len(),
        paused: health.paused_until.is_some(),
        failures: health.failures,
    }
}

impl Webhooks {
    /// Refuses configured endpoints.
    fn editable(&self, id: &str) -> Result<(), Failure> {
        match self.shared.endpoints.get(id) {
            Some(e) if e.source == Source::Config => Err(Failure::new(
                ErrorCode::ManagedByConfig,
                format!(
                    "webhook endpoint `{id}` comes from `[[webhooks]]` in the configuration \
                     file; change or remove it there"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The stored row of `id`.
    async fn row(&self, id: &str) -> Result<StoredEndpoint, Failure> {
        self.shared
            .stored
            .list()
            .await
            .map_err(storage)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| not_found(id))
    }

    /// Writes `row` (read at its revision) and applies it here.
    async fn rewrite(&self, mut row: StoredEndpoint) -> Result<WebhookInfo, Failure> {
        let now = millis(SystemTime::now());
        let endpoint = stored::endpoint(&row, now).map_err(invalid)?;
        match self.shared.stored.update(&row).await.map_err(storage)? {
            Written::Stored => row.revision += 1,
            Written::Missing => return Err(not_found(&row.id)),
            Written::Changed => {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    "the endpoint was changed at the same time; read it and retry",
                ));
            }
        }
        self.shared.adopt(endpoint).map_err(invalid)?;
        self.shared
            .endpoints
            .get(&row.id)
            .map(|e| info(&e))
            .ok_or_else(|| not_found(&row.id))
    }
}

#[async_trait::async_trait]
impl WebhookAdmin for Webhooks {
    fn list(&self) -> Vec<WebhookInfo> {
        let mut list: Vec<WebhookInfo> = self
            .shared
            .endpoints
            .list()
            .iter()
            .map(|e| info(e))
            .collect();
        list.sort_by_key(|w| w.source != Source::Config.as_str());
        list
    }

    fn show(&self, id: &str) -> Result<WebhookInfo, Failure> {
        self.shared
            .endpoints
            .get(id)
            .map(|e| info(&e))
            .ok_or_else(|| not_found(id))
    }

    async fn create(&self, request: CreateWebhook) -> Result<WebhookSecret, Failure> {
        check_url(&request.url)?;
        check_address(&self.shared, &request.url)?;
        check_events(&request.events)?;
        let secret = match request.secret {
            Some(s) => {
                check_secret(&s)?;
                s
            }
            None => new_secret(),
        };
        let now = millis(SystemTime::now());
        let row = StoredEndpoint {
            id: new_id(),
            url: request.url,
            events: request.events,
            secrets: vec![StoredSecret {
                secret: secret.clone(),
                expires_at: None,
            }],
            created_at: now,
            revision: 1,
        };
        let endpoint = stored::endpoint(&row, now).map_err(invalid)?;
        let max = self.shared.settings.max_api_endpoints;
        let _turn = self.shared.sync.lock().await;
        match self
            .shared
            .stored
            .insert(&row, max)
            .await
            .map_err(storage)?
        {
            Inserted::Stored => {}
            Inserted::Full => {
                return Err(Failure::new(
                    ErrorCode::LimitExceeded,
                    format!("at most {max} webhook endpoints (`webhook.max_api_endpoints`)"),
                ));
            }
            Inserted::Exists => {
                return Err(Failure::new(
                    ErrorCode::InvalidState,
                    "a new endpoint id collided with another; retry",
                ));
            }
        }
        self.shared.adopt(endpoint).map_err(invalid)?;
        tracing::info!(endpoint = %row.id, url = %row.url, "webhook endpoint created");
        Ok(WebhookSecret {
            webhook: self.show(&row.id)?,
            secret,
        })
    }

    async fn update(&self, id: &str, request: UpdateWebhook) -> Result<WebhookInfo, Failure> {
        self.editable(id)?;
        if request.url.is_none() && request.events.is_none() {
            return Err(invalid("name `url`, `events` or both"));
        }
        if let Some(url) = &request.url {
            check_url(url)?;
            check_address(&self.shared, url)?;
        }
        if let Some(events) = &request.events {
            check_events(events)?;
        }
        let _turn = self.shared.sync.lock().await;
        let mut row = self.row(id).await?;
        if let Some(url) = request.url {
            row.url = url;
        }
        if let Some(events) = request.events {
            row.events = events;
        }
        self.rewrite(row).await
    }

    async fn rotate(&self, id: &str, request: RotateSecret) -> Result<WebhookSecret, Failure> {
        self.editable(id)?;
        let grace = grace_millis(request.grace_secs)?;
        let secret = match request.secret {
            Some(s) => {
                check_secret(&s)?;
                s
            }
            None => new_secret(),
        };
        let _turn = self.shared.sync.lock().await;
        let mut row = self.row(id).await?;
        row.secrets = rotated(
            &row.secrets,
            secret.clone(),
            millis(SystemTime::now()),
            grace,
        )?;
        let webhook = self.rewrite(row).await?;
        tracing::info!(endpoint = %id, "webhook endpoint secret rotated");
        Ok(WebhookSecret { webhook, secret })
    }

    async fn delete(&self, id: &str) -> Result<WebhookDeleted, Failure> {
        self.editable(id)?;
        let _turn = self.shared.sync.lock().await;
        let dropped = self
            .shared
            .stored
            .delete(id)
            .await
            .map_err(storage)?
            .ok_or_else(|| not_found(id))?;
        self.shared.forget(id);
        tracing::info!(endpoint = %id, dropped, "webhook endpoint deleted");
        Ok(WebhookDeleted {
            id: id.to_owned(),
            dropped_events: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str, expires_at: Option<i64>) -> StoredSecret {
        StoredSecret {
            secret: s.into(),
            expires_at,
        }
    }

    #[test]
    fn requests_are_checked_with_a_message_naming_the_field() {
        assert!(check_url("https://example.com/hook").is_ok());
        for bad in ["ftp://example.com", "https://", "not a url", ""] {
            let f = check_url(bad).unwrap_err();
            assert_eq!(f.code, ErrorCode::InvalidPayload);
            assert!(f.message.starts_with("`url`"), "{}", f.message);
        }
        let f = check_events(&["call.rang".into()]).unwrap_err();
        assert!(
            f.message.contains("unknown event `call.rang`"),
            "{}",
            f.message
        );
        assert!(check_events(&["call.*".into(), "message.sent".into()]).is_ok());
        assert!(check_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(check_secret("whsec_c2hvcnQ=").is_err(), "too short a key");
        assert!(check_secret("plain").is_err());
        assert_eq!(grace_millis(None), Ok(86_400_000));
        assert_eq!(grace_millis(Some(0)), Ok(0));
        assert!(grace_millis(Some(MAX_GRACE_SECS + 1)).is_err());
    }

    #[test]
    fn made_secrets_and_ids_are_valid_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(config::webhook_secret_key(&a).unwrap().len(), 32);
        let id = new_id();
        assert!(id.starts_with("wh_") && id.len() == 27, "{id}");
        assert_ne!(id, new_id());
    }

    #[test]
    fn a_rotation_puts_the_new_secret_first_and_ends_the_others_after_the_grace() {
        let now = 10_000;
        let before = [
            secret("whsec_current", None),
            secret("whsec_ending", Some(12_000)),
            secret("whsec_ended", Some(9_000)),
        ];
        let after = rotated(&before, "whsec_new".into(), now, 5_000).unwrap();
        assert_eq!(
            after,
            [
                secret("whsec_new", None),
                secret("whsec_current", Some(15_000)),
                secret("whsec_ending", Some(12_000)),
            ]
        );
        let at_once = rotated(&before, "whsec_new".into(), now, 0).unwrap();
        assert_eq!(
            at_once,
            [secret("whsec_new", None)],
            "grace 0 ends them now"
        );
        assert!(rotated(&before, "whsec_current".into(), now, 0).is_err());
        let full: Vec<StoredSecret> = (0..MAX_SECRETS)
            .map(|i| secret(&format!("whsec_{i}"), Some(20_000)))
            .collect();
        let refused = rotated(&full, "whsec_new".into(), now, 5_000).unwrap_err();
        assert_eq!(refused.code, ErrorCode::LimitExceeded);
    }
}
