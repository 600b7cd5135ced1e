//! Prometheus metrics of webhook delivery. The `endpoint` label is an endpoint's id from the
//! configuration: a set the operator bounds (at most `MAX_WEBHOOK_ENDPOINTS`).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct Metrics {
    /// Events a receiver accepted (2xx), by endpoint.
    pub delivered: IntCounterVec,
    /// Events given up after `webhook.retry_for` (or whose endpoint was removed), by endpoint.
    pub failed: IntCounterVec,
    /// Failed attempts that will be retried, by endpoint.
    pub retried: IntCounterVec,
    /// Events never stored, by reason: `full` (`webhook.max_outbox`), `storage` (the database
    /// failed or was slower than `webhook.write_timeout`).
    pub dropped: IntCounterVec,
    /// Undelivered events in the outbox (all nodes', read from the database).
    pub depth: IntGauge,
    /// Transactions that stored events in the outbox; each holds every append queued while the
    /// one before was written, so against the events stored this shows the grouping.
    pub writes: IntCounter,
    /// From the event to its delivery (retries included).
    pub latency: Histogram,
    /// 1 while an endpoint is paused, by endpoint.
    pub paused: IntGaugeVec,
    /// How many endpoints are paused.
    pub paused_endpoints: IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let m = Self {
            delivered: counter(
                "chorus_webhook_events_delivered_total",
                "Webhook events a receiver accepted (2xx)",
                "endpoint",
            )?,
            failed: counter(
                "chorus_webhook_events_failed_total",
                "Webhook events given up (too old, or endpoint removed)",
                "endpoint",
            )?,
            retried: counter(
                "chorus_webhook_events_retried_total",
                "Failed webhook attempts that will be retried",
                "endpoint",
            )?,
            dropped: counter(
                "chorus_webhook_events_dropped_total",
                "Webhook events not stored: outbox full, or storage failed",
                "reason",
            )?,
            depth: IntGauge::new(
                "chorus_webhook_outbox_depth",
                "Undelivered webhook events in the outbox",
            )?,
            writes: IntCounter::new(
                "chorus_webhook_outbox_writes_total",
                "Transactions that stored webhook events in the outbox (one holds all appends queued meanwhile)",
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_webhook_delivery_seconds",
                    "Time from a webhook event to its delivery, retries included",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 1800.0, 3600.0, 21600.0, 86400.0,
                ]),
            )?,
            paused: IntGaugeVec::new(
                Opts::new(
                    "chorus_webhook_endpoint_paused",
                    "1 while a webhook endpoint is paused after failing repeatedly",
                ),
                &["endpoint"],
            )?,
            paused_endpoints: IntGauge::new(
                "chorus_webhook_endpoints_paused",
                "Webhook endpoints paused after failing repeatedly",
            )?,
        };
        registry.register(Box::new(m.delivered.clone()))?;
        registry.register(Box::new(m.failed.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.depth.clone()))?;
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.paused.clone()))?;
        registry.register(Box::new(m.paused_endpoints.clone()))?;
        Ok(m)
    }
}
