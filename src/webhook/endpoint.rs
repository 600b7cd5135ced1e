//! Webhook endpoints: where events go, with their keys and their health.
//!
//! [`Endpoints`] is the one list every part reads (the sink choosing who gets an event, the
//! delivery task finding a row's target). It starts from `[[webhooks]]` ([`Source::Config`]) and
//! is changed while the server runs ([`Endpoints::put`], [`Endpoints::remove`]) by the server
//! API and the sync with the database ([`super::stored`], [`Source::Api`]), without touching
//! delivery. A removed endpoint's pending events are given up when they are claimed.

use axum::http::Uri;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Where an endpoint comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[[webhooks]]` in the configuration file: fixed while the server runs.
    Config,
    /// Created through the server API, kept in the chat database.
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Api => "api",
        }
    }
}

/// One endpoint, ready to use.
#[derive(Debug)]
pub struct Endpoint {
    pub config: config::WebhookEndpoint,
    pub source: Source,
    pub uri: Uri,
    /// The key bytes of each secret, newest first as configured: every request is signed with
    /// each.
    pub keys: Vec<Vec<u8>>,
    pub health: Mutex<Health>,
}

/// Whether an endpoint is paused (the circuit breaker of ADR 0073).
#[derive(Debug, Default, Clone, Copy)]
pub struct Health {
    /// Failed attempts in a row.
    pub failures: u32,
    /// Paused until then; once past, one attempt probes the endpoint.
    pub paused_until: Option<Instant>,
    /// A probe is in flight: other events wait.
    pub probing: bool,
}

impl Endpoint {
    /// Checks and prepares an endpoint.
    pub fn new(config: config::WebhookEndpoint, source: Source) -> Result<Self, String> {
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
            source,
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

/// Most endpoints one node holds: every configured one and every one the API may create.
const CAPACITY: usize = config::MAX_WEBHOOK_ENDPOINTS + config::MAX_API_WEBHOOK_ENDPOINTS as usize;

/// What [`Endpoints::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Added,
    /// Replaced an endpoint with another URL, events or keys; its health carried over.
    Replaced,
    /// The same endpoint was there already.
    Unchanged,
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
            store.add(Endpoint::new(c.clone(), Source::Config)?)?;
        }
        Ok(store)
    }

    /// Adds an endpoint; refused when its id is taken or the list is full.
    pub fn add(&self, endpoint: Endpoint) -> Result<(), String> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        if list.iter().any(|e| e.id() == endpoint.id()) {
            return Err(format!("a webhook endpoint `{}` exists", endpoint.id()));
        }
        if list.len() >= CAPACITY {
            return Err(format!("at most {CAPACITY} webhook endpoints"));
        }
        list.push(Arc::new(endpoint));
        Ok(())
    }

    /// Adds an endpoint, or replaces the one with its id (keeping its health) when its URL,
    /// events or keys differ. A configured endpoint is never replaced by an API one.
    pub fn put(&self, endpoint: Endpoint) -> Result<Put, String> {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let Some(at) = list.iter().position(|e| e.id() == endpoint.id()) else {
            drop(list);
            return self.add(endpoint).map(|()| Put::Added);
        };
        let old = &list[at];
        if old.source != endpoint.source {
            return Err(format!(
                "a webhook endpoint `{}` is configured",
                endpoint.id()
            ));
        }
        if old.config.url == endpoint.config.url
            && old.config.events == endpoint.config.events
            && old.keys == endpoint.keys
        {
            return Ok(Put::Unchanged);
        }
        *endpoint.health() = *old.health();
        list[at] = Arc::new(endpoint);
        Ok(Put::Replaced)
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
        let b = || Endpoint::new(config("b"), Source::Api).unwrap();
        store.add(b()).unwrap();
        assert!(store.add(b()).is_err());
        let ids: Vec<String> = store.list().iter().map(|e| e.id().to_owned()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(store.any_wants("call.ended"));
        assert!(!store.any_wants("room.started"));
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").unwrap().keys[0].len(), 24);
    }

    #[test]
    fn a_changed_endpoint_replaces_the_old_and_keeps_its_health() {
        let store = Endpoints::from_config(&[config("a")]).unwrap();
        let mut b = config("b");
        assert_eq!(
            store.put(Endpoint::new(b.clone(), Source::Api).unwrap()),
            Ok(Put::Added)
        );
        store.get("b").unwrap().health().failures = 3;
        assert_eq!(
            store.put(Endpoint::new(b.clone(), Source::Api).unwrap()),
            Ok(Put::Unchanged)
        );
        b.events = vec!["room.*".into()];
        assert_eq!(
            store.put(Endpoint::new(b, Source::Api).unwrap()),
            Ok(Put::Replaced)
        );
        let now = store.get("b").unwrap();
        assert_eq!(now.config.events, ["room.*"]);
        assert_eq!(now.health().failures, 3);
        assert!(
            store
                .put(Endpoint::new(config("a"), Source::Api).unwrap())
                .is_err(),
            "a configured endpoint stays"
        );
        assert_eq!(store.get("a").unwrap().source, Source::Config);
    }
}
