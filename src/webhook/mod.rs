//! Webhooks: signed, durable, ordered HTTP notifications of what happens to rooms, calls,
//! participants, tracks and (opt-in) chat messages (issue 14, ADR 0073).
//!
//! Flow: the signaling hub records lifecycle events in the step that makes them true; its
//! driver hands them to [`Webhooks`] (as a [`LifecycleSink`]) and holds everything that step
//! sends until they are stored, while it goes on with later steps. The SFU event pump
//! (`track.*`) and the chat adapter (`message.sent`) call [`Webhooks::append`] the same way
//! before they tell clients. Storing
//! writes one outbox row per endpoint that wants the event, in the chat database
//! ([`chat::outbox`]). The delivery task ([`delivery`]) claims due rows, signs and POSTs them,
//! and retries with back-off; every node runs one, and claims are leased, so a cluster sharing
//! PostgreSQL delivers each event at least once even when a node dies.
//!
//! Endpoints come from `[[webhooks]]` and from the server API ([`api`], ADR 0074), which keeps
//! them in the chat database; every node reads them from there ([`stored`]).
//!
//! Lifecycle: [`Webhooks::new`] at start (validates endpoints), [`Webhooks::load`] (the stored
//! endpoints), then [`Webhooks::run_delivery`] and [`Webhooks::run_sync`] as supervised
//! background parts until shutdown.

pub mod api;
pub mod client;
pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod metrics;
pub mod sign;
pub mod stored;

use ::chat::outbox::{NewOutboxRow, OutboxStore};
use ::chat::webhook_endpoints::EndpointStore;
use endpoint::Endpoints;
use event::WebhookEvent;
use signaling::lifecycle::{Lifecycle, LifecycleSink};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, mpsc, oneshot};

/// The webhook service of one node; cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    shared: Arc<Shared>,
    /// Appends waiting for the appender task, in the order they were made.
    queue: mpsc::UnboundedSender<Append>,
}

pub use signaling::lifecycle::Stored;

/// Rows queued for the appender, and who waits for them.
struct Append {
    rows: Vec<NewOutboxRow>,
    stored: oneshot::Sender<()>,
}

/// Appends stored in one transaction at most: bounds a group's rows (and its transaction)
/// when a backlog built up behind a slow write.
const MAX_APPENDS_PER_GROUP: usize = 64;

/// What the sink and the delivery task share.
pub struct Shared {
    pub endpoints: Arc<Endpoints>,
    outbox: Arc<dyn OutboxStore>,
    /// Endpoints created through the server API.
    stored: Arc<dyn EndpointStore>,
    /// Held while the API endpoints are written and applied, or read and applied: see
    /// [`stored`].
    sync: tokio::sync::Mutex<()>,
    settings: config::WebhookConfig,
    metrics: metrics::Metrics,
    client: client::Client,
    /// Rung after an append, so this node's delivery task starts at once.
    wake: Notify,
    /// Undelivered rows, as last read from the database plus rows appended since: the
    /// `webhook.max_outbox` check, without a `COUNT` per step.
    depth: AtomicU64,
    /// Rows queued for the appender and not yet written: counted against
    /// `webhook.max_outbox` with `depth`, so a stalled database cannot grow the queue.
    queued: AtomicU64,
    /// After a failed or slow write, appends are dropped at once until then: during a database
    /// outage the hub then waits `webhook.write_timeout` once per [`STORAGE_RETRY`], not on every
    /// step.
    storage_down_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long appends are dropped without trying after a write failed or timed out.
pub const STORAGE_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Webhooks {
    /// The service over `outbox` with the configured endpoints, keeping API endpoints in
    /// `stored`; metrics go to `registry`.
    pub fn new(
        config: &config::Config,
        outbox: Arc<dyn OutboxStore>,
        stored: Arc<dyn EndpointStore>,
        registry: &prometheus::Registry,
    ) -> Result<Self, String> {
        let endpoints = Endpoints::from_config(&config.webhooks)?;
        let metrics = metrics::Metrics::register(registry).map_err(|e| e.to_string())?;
        for e in endpoints.list() {
            metrics.paused.with_label_values(&[e.id()]).set(0);
        }
        let shared = Arc::new(Shared {
            endpoints: Arc::new(endpoints),
            outbox,
            stored,
            sync: tokio::sync::Mutex::new(()),
            settings: config.webhook.clone(),
            metrics,
            client: client::Client::new(
                config.webhook.request_timeout.get(),
                &config.webhook.allowed_ranges,
            ),
            wake: Notify::new(),
            depth: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            storage_down_until: std::sync::Mutex::new(None),
        });
        let (queue, appends) = mpsc::unbounded_channel();
        // Ends once every clone of the service (every sender) is gone.
        tokio::spawn(run_appender(shared.clone(), appends));
        Ok(Self { shared, queue })
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

    /// Stores `events` for every endpoint that wants them, durably: the rows are queued now,
    /// behind every append made before (so the events of one room or call are stored in the
    /// order they happened), and the returned future resolves once they are stored. Await it
    /// before telling any client. Appends queued while a write is in flight are stored
    /// together in the next transaction (group commit), so a burst of calls costs a few
    /// commits, not one each.
    ///
    /// When the outbox is full (stored and queued rows over `webhook.max_outbox`), or the
    /// database fails or takes longer than `webhook.write_timeout`, the events are dropped,
    /// logged and counted (`chorus_webhook_events_dropped_total`), and the future resolves all
    /// the same; after a failure, events are dropped without trying for [`STORAGE_RETRY`].
    pub fn append(&self, events: Vec<WebhookEvent>) -> Stored {
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
            return Box::pin(std::future::ready(()));
        }
        let n = rows.len() as u64;
        let depth = shared.depth.load(Ordering::Relaxed);
        let queued = shared.queued.load(Ordering::Relaxed);
        if depth + queued + n > shared.settings.max_outbox {
            shared
                .metrics
                .dropped
                .with_label_values(&["full"])
                .inc_by(n);
            tracing::warn!(
                depth,
                queued,
                max = shared.settings.max_outbox,
                dropped = n,
                "webhook outbox full (webhook.max_outbox): events dropped"
            );
            return Box::pin(std::future::ready(()));
        }
        let (stored, done) = oneshot::channel();
        shared.queued.fetch_add(n, Ordering::Relaxed);
        if self.queue.send(Append { rows, stored }).is_err() {
            // The appender ended: only at shutdown, with every clone of this service gone.
            shared.queued.fetch_sub(n, Ordering::Relaxed);
            return Box::pin(std::future::ready(()));
        }
        Box::pin(async move {
            let _ = done.await;
        })
    }

    /// Delivers until `stop` resolves; see [`delivery`].
    pub async fn run_delivery(&self, stop: impl std::future::Future<Output = ()>) {
        delivery::run(self.shared.clone(), stop).await;
    }

    /// Reads the endpoints created through the server API (at start, before serving).
    pub async fn load(&self) -> Result<(), String> {
        stored::sync(&self.shared)
            .await
            .map_err(|e| format!("cannot read the webhook endpoints: {e}"))
    }

    /// Keeps this node's API endpoints equal to the database's until `stop` resolves; see
    /// [`stored`].
    /// `changed` wakes it when another node announces a change (see
    /// `signaling::cluster::Router::webhook_changes`).
    pub async fn run_sync(
        &self,
        stop: impl std::future::Future<Output = ()>,
        changed: Arc<Notify>,
    ) {
        stored::run(self.shared.clone(), stop, changed).await;
    }
}

impl Shared {
    /// Writes `rows` in one transaction; on failure or timeout drops them (see
    /// [`Webhooks::append`]).
    async fn store(&self, rows: &[NewOutboxRow]) {
        let n = rows.len() as u64;
        let down = |until: Option<std::time::Instant>| {
            *self
                .storage_down_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = until;
        };
        let down_until = *self
            .storage_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if down_until.is_some_and(|until| std::time::Instant::now() < until) {
            self.metrics
                .dropped
                .with_label_values(&["storage"])
                .inc_by(n);
            return;
        }
        let timeout = self.settings.write_timeout.get();
        let error = match tokio::time::timeout(timeout, self.outbox.append(rows)).await {
            Ok(Ok(new)) => {
                self.metrics.writes.inc();
                self.depth.fetch_add(new, Ordering::Relaxed);
                self.wake.notify_one();
                if down_until.is_some() {
                    tracing::info!("webhook outbox writable again");
                    down(None);
                }
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("slower than webhook.write_timeout ({timeout:?})"),
        };
        self.metrics
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

impl LifecycleSink for Webhooks {
    fn wants(&self) -> bool {
        !self.shared.endpoints.is_empty()
    }

    fn record(&self, events: Vec<Lifecycle>) -> Stored {
        // Converted here, in the hub's order: each event takes its position now.
        let events = events.into_iter().map(event::from_lifecycle).collect();
        self.append(events)
    }
}

/// The appender: stores queued appends, everything queued meanwhile in one transaction, and
/// tells each waiter once its rows are stored (or dropped).
async fn run_appender(shared: Arc<Shared>, mut appends: mpsc::UnboundedReceiver<Append>) {
    let mut group: Vec<Append> = Vec::with_capacity(MAX_APPENDS_PER_GROUP);
    while appends.recv_many(&mut group, MAX_APPENDS_PER_GROUP).await > 0 {
        let rows: Vec<NewOutboxRow> = group
            .iter_mut()
            .flat_map(|append| std::mem::take(&mut append.rows))
            .collect();
        shared.store(&rows).await;
        shared
            .queued
            .fetch_sub(rows.len() as u64, Ordering::Relaxed);
        for append in group.drain(..) {
            let _ = append.stored.send(());
        }
    }
}
