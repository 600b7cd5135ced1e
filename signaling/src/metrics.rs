//! Prometheus metrics of the signaling service. No label carries a user, call or connection id:
//! labels are bounded sets (transport, event name, outcome, reason).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Handles to every signaling metric. Cloning shares the underlying atomics.
#[derive(Clone)]
pub struct Metrics {
    /// Open connections by transport (`ws`, `socketio`, and `whip` for WHIP sessions).
    pub connections: IntGaugeVec,
    /// Users with at least one authenticated connection.
    pub sessions: IntGauge,
    /// Calls not yet ended.
    pub calls_active: IntGauge,
    /// Ended calls by outcome (the `call:ended` reason).
    pub calls_total: IntCounterVec,
    /// Client events received, by event name (`unknown` for names not in the protocol).
    pub events_in: IntCounterVec,
    /// Server events sent, by event name.
    pub events_out: IntCounterVec,
    /// Refused tokens by reason (the error code).
    pub auth_failures: IntCounterVec,
    /// Client events refused, by error code.
    pub event_errors: IntCounterVec,
    /// Connections refused before a session started, by reason.
    pub connections_refused: IntCounterVec,
    /// Time from receiving a client event to its ack.
    pub event_seconds: Histogram,
    /// `chorus_hub_records{kind}`: what the hub holds; see [`HubRecords`].
    pub hub_records: HubRecords,
    /// `chorus_session_resumes_total{result}`: `session:resume` outcomes (`resumed`,
    /// `not_found`, `forbidden`, `overflowed`) and parked sessions that were never resumed
    /// (`expired`); see [`crate::resume`].
    pub resumes: IntCounterVec,
    /// `chorus_sessions_parked`: sessions whose connection dropped, waiting for a resume.
    pub sessions_parked: IntGauge,
}

/// The sizes of the hub's maps, as gauges (`chorus_hub_records{kind}`), set by the hub's task
/// after every command it applied. Each one is back at zero when nobody is connected and the
/// last timers have run, so a soak run can tell held state from leaked state
/// (`bench/soak.sh`). Handles are resolved once: the hub sets them on its hot path.
#[derive(Clone)]
pub struct HubRecords {
    /// Local and guest connections.
    pub connections: IntGauge,
    /// User records: online, or offline but still in a call's reconnect grace.
    pub users: IntGauge,
    pub calls: IntGauge,
    pub rooms: IntGauge,
    /// Users watched through `presence:subscribe`.
    pub watched: IntGauge,
    /// Pending timers (call timeouts, idle → away), stale ones included until they fire.
    pub timers: IntGauge,
}

impl HubRecords {
    fn new(vec: &IntGaugeVec) -> Self {
        Self {
            connections: vec.with_label_values(&["connections"]),
            users: vec.with_label_values(&["users"]),
            calls: vec.with_label_values(&["calls"]),
            rooms: vec.with_label_values(&["rooms"]),
            watched: vec.with_label_values(&["watched"]),
            timers: vec.with_label_values(&["timers"]),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let hub_records = IntGaugeVec::new(
            Opts::new(
                "chorus_hub_records",
                "What the signaling hub holds in memory, by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(hub_records.clone()))?;
        let m = Self {
            connections: IntGaugeVec::new(
                Opts::new("chorus_signaling_connections", "Open signaling connections"),
                &["transport"],
            )?,
            sessions: IntGauge::new(
                "chorus_signaling_sessions",
                "Users with at least one open connection",
            )?,
            calls_active: IntGauge::new("chorus_calls_active", "Calls not yet ended")?,
            calls_total: IntCounterVec::new(
                Opts::new("chorus_calls_total", "Ended calls by outcome"),
                &["outcome"],
            )?,
            events_in: IntCounterVec::new(
                Opts::new("chorus_signaling_events_in_total", "Client events received"),
                &["event"],
            )?,
            events_out: IntCounterVec::new(
                Opts::new("chorus_signaling_events_out_total", "Server events sent"),
                &["event"],
            )?,
            auth_failures: IntCounterVec::new(
                Opts::new("chorus_auth_failures_total", "Refused tokens by reason"),
                &["reason"],
            )?,
            event_errors: IntCounterVec::new(
                Opts::new(
                    "chorus_signaling_event_errors_total",
                    "Refused client events by code",
                ),
                &["code"],
            )?,
            connections_refused: IntCounterVec::new(
                Opts::new(
                    "chorus_signaling_connections_refused_total",
                    "Connections refused before a session started",
                ),
                &["reason"],
            )?,
            event_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "chorus_signaling_event_seconds",
                    "Time from receiving a client event to answering it",
                )
                .buckets(vec![
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0,
                ]),
            )?,
            hub_records: HubRecords::new(&hub_records),
            resumes: IntCounterVec::new(
                Opts::new(
                    "chorus_session_resumes_total",
                    "session:resume outcomes, and parked sessions that expired",
                ),
                &["result"],
            )?,
            sessions_parked: IntGauge::new(
                "chorus_sessions_parked",
                "Sessions whose connection dropped, waiting for session:resume",
            )?,
        };
        registry.register(Box::new(m.connections.clone()))?;
        registry.register(Box::new(m.sessions.clone()))?;
        registry.register(Box::new(m.calls_active.clone()))?;
        registry.register(Box::new(m.calls_total.clone()))?;
        registry.register(Box::new(m.events_in.clone()))?;
        registry.register(Box::new(m.events_out.clone()))?;
        registry.register(Box::new(m.auth_failures.clone()))?;
        registry.register(Box::new(m.event_errors.clone()))?;
        registry.register(Box::new(m.connections_refused.clone()))?;
        registry.register(Box::new(m.event_seconds.clone()))?;
        registry.register(Box::new(m.resumes.clone()))?;
        registry.register(Box::new(m.sessions_parked.clone()))?;
        Ok(m)
    }

    /// Metrics registered nowhere, for unit tests of components that record them.
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("fresh registry has no conflicts")
    }
}
