//! Webhooks: the endpoints (`[[webhooks]]`) and how events reach them (`[webhook]`).

use crate::{ConfigError, HumanDuration};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Every event type a webhook endpoint can receive.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "room.started",
    "room.finished",
    "participant.joined",
    "participant.left",
    "track.published",
    "track.unpublished",
    "call.started",
    "call.answered",
    "call.ended",
    "message.sent",
];

/// Events an endpoint receives only when it names them (not through `*` or `message.*`):
/// chat traffic can be far larger than call traffic.
pub const OPT_IN_EVENTS: &[&str] = &["message.sent"];

/// Most `[[webhooks]]` endpoints: each event is stored once per endpoint.
pub const MAX_WEBHOOK_ENDPOINTS: usize = 32;

/// Highest `webhook.max_api_endpoints`.
pub const MAX_API_WEBHOOK_ENDPOINTS: u32 = 64;

/// Longest webhook endpoint URL, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// Most entries in an endpoint's `events`.
pub const MAX_WEBHOOK_EVENT_ENTRIES: usize = 32;

/// `[webhook]`: delivery of webhook events, for every endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// One HTTP attempt, connecting included; a slower receiver counts as a failure.
    pub request_timeout: HumanDuration,
    /// How long an event is retried from when it happened; then it is given up
    /// (`chorus_webhook_events_failed_total`) and the next event of its room or call goes.
    pub retry_for: HumanDuration,
    /// Delay before the first retry; each further retry doubles it, with jitter.
    pub backoff_initial: HumanDuration,
    /// Longest delay between two attempts of one event.
    pub backoff_max: HumanDuration,
    /// Consecutive failed attempts after which an endpoint is paused.
    pub pause_after: u32,
    /// How long a paused endpoint gets no request; then one attempt probes it, and a success
    /// resumes it.
    pub pause_for: HumanDuration,
    /// Most undelivered events in the outbox (all endpoints together). When it is full, new
    /// events are dropped and counted (`chorus_webhook_events_dropped_total{reason="full"}`);
    /// calls go on.
    pub max_outbox: u64,
    /// Delivered and given-up events stay in the outbox this long, then are deleted.
    pub keep_done: HumanDuration,
    /// HTTP requests in flight at once on this node.
    pub concurrency: u32,
    /// How long a node holds an event it claimed before another node may take it over (after a
    /// crash). Longer than `request_timeout`.
    pub lease: HumanDuration,
    /// Longest time the hub waits for the outbox to store a step's events before it carries
    /// on without them (counted as dropped, `reason="storage"`): a database outage must not
    /// stop calls. After a failed or slow write, events are dropped at once for 5 s.
    pub write_timeout: HumanDuration,
    /// Most endpoints created through the server API (`/api/v1/admin/webhooks`), in the whole
    /// cluster; `[[webhooks]]` endpoints do not count. At most 64; 0 refuses every creation.
    pub max_api_endpoints: u32,
    /// Networks (CIDR, like `10.0.0.0/8`) that endpoints created through the server API may
    /// reach although they are not public: loopback, private, link-local (the cloud metadata
    /// service) and other special-purpose ranges are refused by default, at creation for an
    /// address and at every connection for a host name, so the API cannot be used to reach the
    /// server's own network. `[[webhooks]]` endpoints from this file are the operator's own and
    /// are not checked.
    pub allowed_ranges: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            request_timeout: HumanDuration::secs(10),
            retry_for: HumanDuration::secs(24 * 3600),
            backoff_initial: HumanDuration::secs(1),
            backoff_max: HumanDuration::secs(600),
            pause_after: 20,
            pause_for: HumanDuration::secs(60),
            max_outbox: 100_000,
            keep_done: HumanDuration::secs(3600),
            concurrency: 16,
            lease: HumanDuration::secs(60),
            write_timeout: HumanDuration::secs(2),
            max_api_endpoints: 16,
            allowed_ranges: Vec::new(),
        }
    }
}

/// One or several signing secrets; with several (rotation), every request carries one
/// signature per secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WebhookSecrets {
    One(String),
    Several(Vec<String>),
}

impl WebhookSecrets {
    pub fn all(&self) -> Vec<&str> {
        match self {
            WebhookSecrets::One(s) => vec![s.as_str()],
            WebhookSecrets::Several(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One `[[webhooks]]` endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// A stable name for the endpoint (metrics label, outbox rows). Default: the URL. Keep it
    /// when the URL changes, so pending events follow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// `http://` or `https://` URL that receives `POST`s.
    pub url: String,
    /// Standard Webhooks secret(s), `whsec_` and base64 of 24 to 64 random bytes.
    pub secret: WebhookSecrets,
    /// Event types to send (`call.ended`), or `room.*`-style prefixes; empty or `*`: every
    /// type but `message.sent`, which is sent only when named.
    #[serde(default)]
    pub events: Vec<String>,
}

impl WebhookEndpoint {
    /// The endpoint's id: `id`, or the URL.
    pub fn key(&self) -> &str {
        if self.id.is_empty() {
            &self.url
        } else {
            &self.id
        }
    }

    /// Whether the endpoint receives events of type `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        if self.events.iter().any(|e| e == kind) {
            return true;
        }
        if OPT_IN_EVENTS.contains(&kind) {
            return false;
        }
        self.events.is_empty()
            || self.events.iter().any(|e| {
                e == "*"
                    || e.strip_suffix(".*")
                        .is_some_and(|p| kind.split('.').next() == Some(p))
            })
    }
}

/// The key bytes of a `whsec_` secret.
pub fn webhook_secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("a secret starts with `whsec_`")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "`whsec_` is followed by standard base64".to_owned())?;
    if !(24..=64).contains(&key.len()) {
        return Err("the secret holds 24 to 64 bytes".into());
    }
    Ok(key)
}

/// Whether `url` can be a webhook endpoint: `http://` or `https://` with a host, at most
/// [`MAX_WEBHOOK_URL_BYTES`], no whitespace or control characters. The message says what is
/// wrong.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(format!("a URL of at most {MAX_WEBHOOK_URL_BYTES} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL without spaces or control characters".into());
    }
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .map(|authority| authority.rsplit('@').next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.starts_with(':') => Ok(()),
        _ => Err("an http:// or https:// URL with a host".into()),
    }
}

/// Whether every entry of `events` names a known event type ([`WEBHOOK_EVENTS`]), a prefix
/// like `call.*`, or `*`; at most [`MAX_WEBHOOK_EVENT_ENTRIES`] entries.
pub fn check_webhook_events(events: &[String]) -> Result<(), String> {
    if events.len() > MAX_WEBHOOK_EVENT_ENTRIES {
        return Err(format!("at most {MAX_WEBHOOK_EVENT_ENTRIES} entries"));
    }
    for kind in events {
        let known = kind == "*"
            || WEBHOOK_EVENTS.contains(&kind.as_str())
            || kind.strip_suffix(".*").is_some_and(|p| {
                WEBHOOK_EVENTS
                    .iter()
                    .any(|k| k.split('.').next() == Some(p))
            });
        if !known {
            let shown: String = kind.chars().take(64).collect();
            return Err(format!(
                "unknown event `{shown}`; known: {}, `*`, or a prefix like `call.*`",
                WEBHOOK_EVENTS.join(", ")
            ));
        }
    }
    Ok(())
}

pub(crate) fn validate(
    settings: &WebhookConfig,
    endpoints: &[WebhookEndpoint],
) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        key: key.into(),
        message,
    };
    for (key, d) in [
        ("webhook.request_timeout", settings.request_timeout),
        ("webhook.retry_for", settings.retry_for),
        ("webhook.backoff_initial", settings.backoff_initial),
        ("webhook.backoff_max", settings.backoff_max),
        ("webhook.pause_for", settings.pause_for),
        ("webhook.lease", settings.lease),
        ("webhook.write_timeout", settings.write_timeout),
    ] {
        if d.get().is_zero() {
            return Err(invalid(key, "must be longer than 0s".into()));
        }
    }
    if settings.backoff_max < settings.backoff_initial {
        return Err(invalid(
            "webhook.backoff_max",
            "at least webhook.backoff_initial".into(),
        ));
    }
    if settings.lease <= settings.request_timeout {
        return Err(invalid(
            "webhook.lease",
            "longer than webhook.request_timeout, or two nodes would send one event at once".into(),
        ));
    }
    if settings.pause_after == 0 {
        return Err(invalid("webhook.pause_after", "at least 1".into()));
    }
    if settings.max_outbox == 0 {
        return Err(invalid("webhook.max_outbox", "at least 1".into()));
    }
    if !(1..=256).contains(&settings.concurrency) {
        return Err(invalid("webhook.concurrency", "between 1 and 256".into()));
    }
    if settings.max_api_endpoints > MAX_API_WEBHOOK_ENDPOINTS {
        return Err(invalid(
            "webhook.max_api_endpoints",
            format!("at most {MAX_API_WEBHOOK_ENDPOINTS}"),
        ));
    }
    if let Some(r) = settings
        .allowed_ranges
        .iter()
        .find(|r| !crate::model::is_ip_range(r))
    {
        return Err(invalid(
            "webhook.allowed_ranges",
            format!("`{r}` is not a range like 10.0.0.0/8"),
        ));
    }
    if endpoints.len() > MAX_WEBHOOK_ENDPOINTS {
        return Err(invalid(
            "webhooks",
            format!("at most {MAX_WEBHOOK_ENDPOINTS} endpoints"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        check_webhook_url(&e.url).map_err(|m| invalid(&at("url"), m))?;
        if e.id.len() > 128 || e.id.chars().any(char::is_control) {
            return Err(invalid(
                &at("id"),
                "at most 128 printable characters".into(),
            ));
        }
        if !seen.insert(e.key().to_owned()) {
            return Err(invalid(
                &at("id"),
                format!("`{}` names two endpoints; give each its own `id`", e.key()),
            ));
        }
        let secrets = e.secret.all();
        if secrets.is_empty() || secrets.len() > 8 {
            return Err(invalid(&at("secret"), "one to eight secrets".into()));
        }
        for s in secrets {
            webhook_secret_key(s).map_err(|m| invalid(&at("secret"), m))?;
        }
        check_webhook_events(&e.events).map_err(|m| invalid(&at("events"), m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(events: &[&str]) -> WebhookEndpoint {
        WebhookEndpoint {
            id: String::new(),
            url: "https://example.com/hook".into(),
            secret: WebhookSecrets::One("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            events: events.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn message_events_are_opt_in() {
        assert!(endpoint(&[]).wants("call.ended"));
        assert!(!endpoint(&[]).wants("message.sent"));
        assert!(!endpoint(&["*"]).wants("message.sent"));
        assert!(!endpoint(&["message.*"]).wants("message.sent"));
        assert!(endpoint(&["message.sent"]).wants("message.sent"));
        assert!(endpoint(&["call.*"]).wants("call.answered"));
        assert!(!endpoint(&["call.*"]).wants("room.started"));
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = WebhookConfig::default();
        assert!(validate(&ok, &[endpoint(&["call.*", "message.sent"])]).is_ok());
        let refused = |e: WebhookEndpoint| match validate(&ok, &[e]) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let mut e = endpoint(&[]);
        e.url = "ftp://x".into();
        assert_eq!(refused(e), "webhooks[0].url");
        let mut e = endpoint(&[]);
        e.secret = WebhookSecrets::One("plain".into());
        assert_eq!(refused(e), "webhooks[0].secret");
        let mut e = endpoint(&[]);
        e.secret = WebhookSecrets::Several(vec!["whsec_c2hvcnQ=".into()]);
        assert_eq!(refused(e), "webhooks[0].secret", "too short a key");
        assert_eq!(refused(endpoint(&["call.rang"])), "webhooks[0].events");
        let mut e = endpoint(&[]);
        e.url = "https:///path".into();
        assert_eq!(refused(e), "webhooks[0].url", "no host");
        let twice = [endpoint(&[]), endpoint(&[])];
        assert!(validate(&ok, &twice).is_err(), "two endpoints with one id");
        let short_lease = WebhookConfig {
            lease: HumanDuration::secs(5),
            ..WebhookConfig::default()
        };
        assert!(validate(&short_lease, &[]).is_err());
        let too_many = WebhookConfig {
            max_api_endpoints: MAX_API_WEBHOOK_ENDPOINTS + 1,
            ..WebhookConfig::default()
        };
        assert!(validate(&too_many, &[]).is_err());
        let ranges = |r: &str| WebhookConfig {
            allowed_ranges: vec![r.into()],
            ..WebhookConfig::default()
        };
        assert!(validate(&ranges("10.20.0.0/16"), &[]).is_ok());
        assert!(validate(&ranges("fd00::1"), &[]).is_ok());
        match validate(&ranges("intranet"), &[]) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "webhook.allowed_ranges"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        for ok in [
            "http://127.0.0.1:9000/hook",
            "https://app.example.com",
            "https://user@app.example.com/x?y=1",
        ] {
            assert_eq!(check_webhook_url(ok), Ok(()), "{ok}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL_BYTES));
        for bad in [
            "",
            "ftp://example.com/",
            "http://",
            "https:///x",
            "http://:80/x",
            "https://exa mple.com/",
            "example.com/hook",
            long.as_str(),
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_must_be_known() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_webhook_events(&list(&[])).is_ok());
        assert!(check_webhook_events(&list(&["*", "call.*", "message.sent"])).is_ok());
        assert!(check_webhook_events(&list(&["call.rang"])).is_err());
        assert!(check_webhook_events(&list(&["nothing.*"])).is_err());
        assert!(check_webhook_events(&list(&["call.ended"; MAX_WEBHOOK_EVENT_ENTRIES])).is_ok());
        assert!(
            check_webhook_events(&list(&["call.ended"; MAX_WEBHOOK_EVENT_ENTRIES + 1])).is_err()
        );
    }
}
