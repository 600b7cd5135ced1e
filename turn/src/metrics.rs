//! Prometheus metrics. Label values are fixed small sets: no per-user or per-IP labels.
//!
//! Cores count in plain integers ([`Counts`]) on the hot path and flush them here once per tick,
//! so workers never contend on shared atomics per packet.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metric handles registered in the caller's registry.
#[derive(Clone)]
pub struct Metrics {
    /// `chorus_turn_allocations_active`.
    pub allocations_active: IntGauge,
    /// `chorus_turn_allocations_total{result}`.
    pub allocations_total: IntCounterVec,
    /// `chorus_turn_auth_failures_total{reason}`.
    pub auth_failures: IntCounterVec,
    /// `chorus_turn_relayed_packets_total{direction}`.
    pub relayed_packets: IntCounterVec,
    /// `chorus_turn_relayed_bytes_total{direction}`.
    pub relayed_bytes: IntCounterVec,
    /// `chorus_turn_peer_refusals_total{reason}`.
    pub peer_refusals: IntCounterVec,
    /// `chorus_turn_quota_refusals_total{quota}`.
    pub quota_refusals: IntCounterVec,
    /// `chorus_turn_rate_limited_total`: challenges not sent because of the per-IP limit.
    pub rate_limited: IntCounter,
    /// `chorus_turn_workers{relay_io}`: running workers by relay socket path (`io_uring`,
    /// `epoll`), so operators see when `auto` fell back.
    pub workers: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let m = Metrics {
            allocations_active: IntGauge::new(
                "chorus_turn_allocations_active",
                "TURN allocations currently live",
            )?,
            allocations_total: vec(
                "chorus_turn_allocations_total",
                "Allocate requests answered, by result",
                "result",
            )?,
            auth_failures: vec(
                "chorus_turn_auth_failures_total",
                "TURN requests that failed authentication, by reason",
                "reason",
            )?,
            relayed_packets: vec(
                "chorus_turn_relayed_packets_total",
                "Packets relayed, by direction",
                "direction",
            )?,
            relayed_bytes: vec(
                "chorus_turn_relayed_bytes_total",
                "Payload bytes relayed, by direction",
                "direction",
            )?,
            peer_refusals: vec(
                "chorus_turn_peer_refusals_total",
                "Peers refused by the peer policy, by reason",
                "reason",
            )?,
            quota_refusals: vec(
                "chorus_turn_quota_refusals_total",
                "Requests or packets refused by a quota, by quota",
                "quota",
            )?,
            rate_limited: IntCounter::new(
                "chorus_turn_rate_limited_total",
                "Unauthenticated responses suppressed by the per-IP rate limit",
            )?,
            workers: IntGaugeVec::new(
                Opts::new(
                    "chorus_turn_workers",
                    "TURN worker threads running, by relay socket path",
                ),
                &["relay_io"],
            )?,
        };
        registry.register(Box::new(m.allocations_active.clone()))?;
        registry.register(Box::new(m.allocations_total.clone()))?;
        registry.register(Box::new(m.auth_failures.clone()))?;
        registry.register(Box::new(m.relayed_packets.clone()))?;
        registry.register(Box::new(m.relayed_bytes.clone()))?;
        registry.register(Box::new(m.peer_refusals.clone()))?;
        registry.register(Box::new(m.quota_refusals.clone()))?;
        registry.register(Box::new(m.rate_limited.clone()))?;
        registry.register(Box::new(m.workers.clone()))?;
        Ok(m)
    }
}

/// Hot-path counters of one core, flushed into [`Metrics`] each tick.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Packets client → peer.
    pub up_packets: u64,
    /// Bytes client → peer.
    pub up_bytes: u64,
    /// Packets peer → client.
    pub down_packets: u64,
    /// Bytes peer → client.
    pub down_bytes: u64,
    /// Packets dropped by the bandwidth cap.
    pub bandwidth_drops: u64,
    /// Send indications / ChannelData / peer packets dropped for lack of permission.
    pub no_permission_drops: u64,
}

impl Counts {
    /// Adds these counts to the metrics and resets them.
    pub fn flush(&mut self, m: &Metrics) {
        let c = std::mem::take(self);
        m.relayed_packets
            .with_label_values(&["client_to_peer"])
            .inc_by(c.up_packets);
        m.relayed_bytes
            .with_label_values(&["client_to_peer"])
            .inc_by(c.up_bytes);
        m.relayed_packets
            .with_label_values(&["peer_to_client"])
            .inc_by(c.down_packets);
        m.relayed_bytes
            .with_label_values(&["peer_to_client"])
            .inc_by(c.down_bytes);
        if c.bandwidth_drops > 0 {
            m.quota_refusals
                .with_label_values(&["bandwidth"])
                .inc_by(c.bandwidth_drops);
        }
        if c.no_permission_drops > 0 {
            m.peer_refusals
                .with_label_values(&["no_permission"])
                .inc_by(c.no_permission_drops);
        }
    }
}
