//! Webhook endpoints: where events go, with their keys and their health.
//!
//! [`Endpoints`] is the one list every part reads (the sink choosing who gets an event, the
//! delivery task finding a row's target). It starts from `[[webhooks]]` and can be changed
//! while the server runs ([`Endpoints::add`], [`Endpoints::remove`]), so a server API can
//! manage endpoints later without touching delivery. A removed endpoint's pending events are
//! given up when they are claimed.

use axum::http::Uri;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// One endpoint, ready to use.
#[derive(Debug)]
pub struct Endpoint {
    pub config: config::WebhookEndpoint,
    pub uri: Uri,
    /// The key bytes of each secret, newest first as configured: every request is signed with
    /// each.
    pub keys: Vec<Vec<u8>>,
    pub health: Mutex<Health>,
}

/// Whether an endpoint is paused (the circuit breaker of ADR 0073).
#[derive(Debug, Default)]
pub struct Health {
    /// Failed attempts in a row.
    pub failures: u32,
    /// Paused until then; once past, one attempt probes the endpoint.
    pub paused_until: Option<Instant>,
    /// A probe is in flight: other events wait.
    pub probing: bool,
}

impl Endpoint {
    /// Checks and prepares a configured endpoint.
    pub fn new(config: config::WebhookEndpoint) -> Result<Self, String> {
        let uri: Uri = config
            .url
            .parse()
            .map_err(|e| format!("webhook url `{}`: {e}", config.url))?;
        if uri.host().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!(
                "webhook url `{}`: an http:// or https:// URL",
                config.url
            ));
        }
        let keys = config
            .secret
            .all()
            .into_iter()
            .map(config::webhook_secret_key)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("webhook `{}` secret: {e}", config.key()))?;
        Ok(Self {
            config,
            uri,
            keys,
            health: Mutex::new(Health::default()),
        })
    }

    pub fn id(&self) -> &str {
        self.config.key()
    }

    pub fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The endpoints of this node; see the module docs.
#[derive(Debug, Default)]
pub struct Endpoints {
    list: RwLock<Vec<Arc<Endpoint>>>,
}

impl Endpoints {
    /// The configured endpoints.
    pub fn from_config(configs: &[config::WebhookEndpoint]) -> Result<Self, String> {
        let store = Self::default();
        for c in configs {
            store.add(Endpoint::new(c.clone())?)?;
        }
        Ok(store)
    }

    /// Adds an endpoint; refused when its id is taken or the list is full.
    pub fn add(&self, endpoint: Endpoint) -> Result<(), String> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.iter().any(|e| e.id() == endpoint.id()) {
            return Err(format!("a webhook endpoint `{}` exists", endpoint.id()));
        }
        if list.len() >= config::MAX_WEBHOOK_ENDPOINTS {
            return Err(format!(
                "at most {} webhook endpoints",
                config::MAX_WEBHOOK_ENDPOINTS
            ));
        }
        list.push(Arc::new(endpoint));
        Ok(())
    }

    /// Removes an endpoint; whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let before = list.len();
        list.retain(|e| e.id() != id);
        list.len() != before
    }

    /// Every endpoint, in the order added.
    pub fn list(&self) -> Vec<Arc<Endpoint>> {
        self.list.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Endpoint>> {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| e.id() == id)
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Whether any endpoint receives events of type `kind`.
    pub fn any_wants(&self, kind: &str) -> bool {
        self.list
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|e| e.config.wants(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str) -> config::WebhookEndpoint {
        config::WebhookEndpoint {
            id: id.into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret: config::WebhookSecrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            events: vec!["call.*".into()],
        }
    }

    #[test]
    fn endpoints_are_added_listed_and_removed_at_runtime() {
        let store = Endpoints::from_config(&[config("a")]).unwrap();
        store.add(Endpoint::new(config("b")).unwrap()).unwrap();
        assert!(store.add(Endpoint::new(config("b")).unwrap()).is_err());
        let ids: Vec<String> = store.list().iter().map(|e| e.id().to_owned()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(store.any_wants("call.ended"));
        assert!(!store.any_wants("room.started"));
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().keys[0].len(), 24);
    }
}
