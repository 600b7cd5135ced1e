//! Webhooks: signed, durable, ordered HTTP notifications of what happens to rooms, calls,
//! participants, tracks and (opt-in) chat messages (issue 14, ADR 0073).
//!
//! Flow: the signaling hub records lifecycle events in the step that makes them true; its
//! driver hands them to [`Webhooks`] (as a [`LifecycleSink`]) and waits until they are stored
//! before it sends anything of that step. The SFU event pump (`track.*`) and the chat adapter
//! (`message.sent`) call [`Webhooks::append`] the same way before they tell clients. Storing
//! writes one outbox row per endpoint that wants the event, in the chat database
//! ([`chat::outbox`]). The delivery task ([`delivery`]) claims due rows, signs and POSTs them,
//! and retries with back-off; every node runs one, and claims are leased, so a cluster sharing
//! PostgreSQL delivers each event at least once even when a node dies.
//!
//! Lifecycle: [`Webhooks::new`] at start (validates endpoints), [`Webhooks::run_delivery`] as a
//! supervised background part until shutdown.

pub mod client;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod metrics;
pub mod sign;

use ::chat::outbox::{NewOutboxRow, OutboxStore};
use endpoint::Endpoints;
use event::WebhookEvent;
use signaling::lifecycle::{Lifecycle, LifecycleSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// The webhook service of one node; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
}

/// What the sink and the delivery task share.
pub struct Shared {
    pub endpoints: Arc<Endpoints>,
    outbox: Arc<dyn OutboxStore>,
    settings: config::WebhookConfig,
    metrics: metrics::Metrics,
    client: client::Client,
    /// Rung after an append, so this node's delivery task starts at once.
    wake: Notify,
    /// Undelivered rows, as last read from the database plus rows appended since: the
    /// `webhook.max_outbox` check, without a `COUNT` per step.
    depth: AtomicU64,
    /// After a failed or slow write, appends are dropped at once until then: during a database
    /// outage the hub then waits `webhook.write_timeout` once per [`STORAGE_RETRY`], not on every
    /// step.
    storage_down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long appends are dropped without trying after a write failed or timed out.
pub const STORAGE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Webhooks {
    /// The service over `outbox` with the configured endpoints; metrics go to `registry`.
    pub fn new(
        config: &config::Config,
        outbox: Arc<dyn OutboxStore>,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let endpoints = Endpoints::from_config(&config.webhooks)?;
        let metrics = metrics::Metrics::register(registry).map_err(|e| e.to_string())?;
        for e in endpoints.list() {
            metrics.paused.with_label_values(&[e.id()]).set(0);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                endpoints: Arc::new(endpoints),
                outbox,
                settings: config.webhook.clone(),
                metrics,
                client: client::Client::new(config.webhook.request_timeout.get()),
                wake: Notify::new(),
                depth: AtomicU64::new(0),
                storage_down_until: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The endpoints, which may be changed while the server runs.
    pub fn endpoints(&self) -> &Arc<Endpoints> {
        &self.shared.endpoints
    }

    /// Whether any endpoint receives events of type `kind` (callers skip building events
    /// nobody wants).
    pub fn wants(&self, kind: &str) -> bool {
        self.shared.endpoints.any_wants(kind)
    }

    /// Stores `events` for every endpoint that wants them, durably, and returns once they are
    /// stored: call it before telling any client. When the outbox is full, or the database
    /// fails or takes longer than `webhook.write_timeout`, the events are dropped, logged and
    /// counted (`chorus_webhook_events_dropped_total`), and this returns all the same; after a
    /// failure, events are dropped without trying for [`STORAGE_RETRY`].
    pub async fn append(&self, events: Vec<WebhookEvent>) {
        let shared = &self.shared;
        let endpoints = shared.endpoints.list();
        let mut rows: Vec<NewOutboxRow> = Vec::new();
        for event in &events {
            let mut body = None;
            for e in endpoints.iter().filter(|e| e.config.wants(event.kind)) {
                let body = body.get_or_insert_with(|| event.body());
                rows.push(NewOutboxRow {
                    endpoint: e.id().to_owned(),
                    event_id: event.id.clone(),
                    order_key: event.key.clone(),
                    pos: event.pos,
                    body: body.clone(),
                    created_at: event.at_millis(),
                });
            }
        }
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        let depth = shared.depth.load(Ordering::Relaxed);
        if depth + n > shared.settings.max_outbox {
            shared
                .metrics
                .dropped
                .with_label_values(&["full"])
                .inc_by(n);
            tracing::warn!(
                depth,
                max = shared.settings.max_outbox,
                dropped = n,
                "webhook outbox full (webhook.max_outbox): events dropped"
            );
            return;
        }
        let down = |until: Option<std::time::Instant>| {
            *shared
                .storage_down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = until;
        };
        let down_until = *shared
            .storage_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if down_until.is_some_and(|until| std::time::Instant::now() < until) {
            shared
                .metrics
                .dropped
                .with_label_values(&["storage"])
                .inc_by(n);
            return;
        }
        let timeout = shared.settings.write_timeout.get();
        let error = match tokio::time::timeout(timeout, shared.outbox.append(&rows)).await {
            Ok(Ok(new)) => {
                shared.depth.fetch_add(new, Ordering::Relaxed);
                shared.wake.notify_one();
                if down_until.is_some() {
                    tracing::info!("webhook outbox writable again");
                    down(None);
                }
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("slower than webhook.write_timeout ({timeout:?})"),
        };
        shared
            .metrics
            .dropped
            .with_label_values(&["storage"])
            .inc_by(n);
        tracing::error!(
            %error,
            dropped = n,
            retry_in = ?STORAGE_RETRY,
            "webhook outbox write failed: events dropped, and dropped at once until the retry"
        );
        down(Some(std::time::Instant::now() + STORAGE_RETRY));
    }

    /// Delivers until `stop` resolves; see [`delivery`].
    pub async fn run_delivery(&self, stop: impl std::future::Future<Output = ()>) {
        delivery::run(self.shared.clone(), stop).await;
    }
}

impl Shared {
    /// Reads the outbox depth from the database (every node's events).
    async fn refresh_depth(&self) {
        if let Ok(depth) = self.outbox.depth().await {
            self.depth.store(depth, Ordering::Relaxed);
            self.metrics
                .depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    /// An attempt to `endpoint` succeeded: it is not paused (any more).
    fn healthy(&self, endpoint: &endpoint::Endpoint) {
        let mut health = endpoint.health();
        health.failures = 0;
        health.probing = false;
        if health.paused_until.take().is_some() {
            tracing::info!(endpoint = %endpoint.id(), "webhook endpoint resumed");
            self.metrics
                .paused
                .with_label_values(&[endpoint.id()])
                .set(0);
            self.metrics.paused_endpoints.dec();
        }
    }

    /// An attempt to `endpoint` failed: pause it after `webhook.pause_after` in a row, or
    /// again when a probe failed.
    fn unhealthy(&self, endpoint: &endpoint::Endpoint) {
        let mut health = endpoint.health();
        health.failures = health.failures.saturating_add(1);
        let was_paused = health.paused_until.is_some();
        if was_paused || health.failures >= self.settings.pause_after {
            health.paused_until = Some(std::time::Instant::now() + self.settings.pause_for.get());
            health.probing = false;
            if !was_paused {
                tracing::warn!(
                    endpoint = %endpoint.id(),
                    failures = health.failures,
                    pause_for = %self.settings.pause_for,
                    "webhook endpoint paused after failing repeatedly"
                );
                self.metrics
                    .paused
                    .with_label_values(&[endpoint.id()])
                    .set(1);
                self.metrics.paused_endpoints.inc();
            }
        }
    }
}

#[async_trait::async_trait]
impl LifecycleSink for Webhooks {
    fn wants(&self) -> bool {
        !self.shared.endpoints.is_empty()
    }

    async fn record(&self, events: Vec<Lifecycle>) {
        let events = events.into_iter().map(event::from_lifecycle).collect();
        self.append(events).await;
    }
}
