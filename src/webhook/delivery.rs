//! The delivery task: claims due events from the outbox, POSTs them, and records the outcome.
//!
//! Every node runs one. A claim leases each row to this node for `webhook.lease`; only the
//! oldest undone event of a room or call (per endpoint) can be claimed, so events of one key go
//! one after the other, in order, while different keys go in parallel up to
//! `webhook.concurrency`. Outcomes are written in batches with the next claim. A failed attempt makes the row due again after a back-off
//! ([`backoff`]); an event older than `webhook.retry_for` is given up. An endpoint that fails
//! `webhook.pause_after` attempts in a row is paused for `webhook.pause_for`; its events are
//! put off (not counted as attempts) until one probe succeeds.

use super::Shared;
use super::endpoint::Endpoint;
use super::event::millis;
use super::sign;
use ::chat::outbox::{OutboxRow, Settle};
use bytes::Bytes;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How often the task looks for due events without being woken (other nodes' events, retries
/// coming due).
const POLL: Duration = Duration::from_millis(250);
/// How often the depth gauge is read from the database, and done rows are pruned.
const DEPTH_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(30);
const PRUNE_BATCH: u32 = 1000;
/// A paused endpoint being probed puts its other events off by this much at a time.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// An event for an endpoint this node does not know is given up only once it is this old: many
/// syncs ([`super::stored::SYNC_EVERY`]) after its endpoint was created or deleted elsewhere.
const UNKNOWN_GRACE: Duration = Duration::from_secs(30);

/// The delay before retry number `attempts` (1 after the first failure): `initial` doubled
/// per failure, at most `max`, then "equal jitter" (a uniform draw from its upper half), so
/// that endpoints recovering from an outage are not hit by every node at once.
pub fn backoff(attempts: u32, initial: Duration, max: Duration, draw: f64) -> Duration {
    let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
    let full = initial.saturating_mul(doubling).min(max);
    full.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0))
}

/// Runs until `stop` resolves.
///
/// Each round writes the outcomes of the attempts that finished since the last round and claims
/// the next rows in one transaction
/// ([`settle_and_claim`](::chat::outbox::OutboxStore::settle_and_claim)): the task has at most one
/// write in flight, so the hub's appends never queue behind a commit per request.
pub async fn run(shared: Arc<Shared>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut inflight: JoinSet<()> = JoinSet::new();
    let (done, mut finished) = mpsc::unbounded_channel::<Settle>();
    let mut settled: Vec<Settle> = Vec::new();
    let mut last_depth = Instant::now() - DEPTH_EVERY;
    let mut last_prune = Instant::now();
    let concurrency = shared.settings.concurrency as usize;
    loop {
        if last_depth.elapsed() >= DEPTH_EVERY {
            last_depth = Instant::now();
            shared.refresh_depth().await;
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            prune(&shared).await;
        }
        while inflight.try_join_next().is_some() {}
        while let Ok(s) = finished.try_recv() {
            settled.push(s);
        }
        // With no endpoint there is nothing to send (and no query to run every poll).
        let free = if shared.endpoints.is_empty() {
            0
        } else {
            concurrency.saturating_sub(inflight.len())
        };
        let mut claimed = 0;
        if free > 0 || !settled.is_empty() {
            let now = millis(SystemTime::now());
            let lease = now + millis_of(shared.settings.lease.get());
            match shared
                .outbox
                .settle_and_claim(&settled, now, lease, free as u32)
                .await
            {
                Ok(rows) => {
                    settled.clear();
                    claimed = rows.len();
                    for row in rows {
                        match admit(&shared, row) {
                            Admit::Go(go) => {
                                let (shared, done) = (shared.clone(), done.clone());
                                inflight.spawn(async move {
                                    let _ = done.send(attempt(&shared, go).await);
                                });
                            }
                            Admit::Settle(s) => settled.push(s),
                        }
                    }
                }
                // The outcomes stay for the next round; the claims' leases keep the rows.
                Err(e) => tracing::warn!(error = %e, "webhook outbox round failed; retrying"),
            }
        }
        // Claimed a full batch: there may be more due at once.
        if claimed > 0 && claimed == free {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::task::yield_now() => {}
            }
            continue;
        }
        tokio::select! {
            () = &mut stop => break,
            () = shared.wake.notified() => {}
            Some(s) = finished.recv() => settled.push(s),
            () = tokio::time::sleep(POLL) => {}
        }
    }
    // Attempts in flight finish (within `request_timeout`) and their outcomes are written, so
    // the next start does not wait for their leases; any still running then are abandoned, and
    // another node (or the next start) takes them over once their leases run out.
    let finish = async { while inflight.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.settings.request_timeout.get(), finish)
        .await
        .is_err()
    {
        inflight.shutdown().await;
    }
    while let Ok(s) = finished.try_recv() {
        settled.push(s);
    }
    if !settled.is_empty()
        && let Err(e) = shared.outbox.settle_and_claim(&settled, 0, 0, 0).await
    {
        tracing::warn!(error = %e, "could not record the last webhook outcomes");
    }
}

/// A claimed row with its endpoint, cleared to be sent now.
struct Go {
    row: OutboxRow,
    endpoint: Arc<Endpoint>,
}

enum Admit {
    Go(Go),
    /// Not sent: given up (endpoint removed) or put off (endpoint paused).
    Settle(Settle),
}

/// Decides what to do with a claimed row: send it, give it up (endpoint gone), or put it off
/// (endpoint paused, being probed, or not known here yet).
fn admit(shared: &Shared, row: OutboxRow) -> Admit {
    let now = SystemTime::now();
    let Some(endpoint) = shared.endpoints.get(&row.endpoint) else {
        let settle = unknown_endpoint(row, millis(now));
        if let Settle::GiveUp { endpoint, .. } = &settle {
            shared
                .metrics
                .failed
                .with_label_values(&[endpoint.as_str()])
                .inc();
        }
        return Admit::Settle(settle);
    };
    let wait = {
        let mut health = endpoint.health();
        match health.paused_until {
            Some(until) if until > Instant::now() => Some(until - Instant::now()),
            Some(_) if health.probing => Some(PROBE_WAIT),
            Some(_) => {
                health.probing = true;
                None
            }
            None => None,
        }
    };
    match wait {
        // Not an attempt: the count and the back-off stay as they were.
        Some(wait) => Admit::Settle(Settle::Retry {
            endpoint: row.endpoint,
            event_id: row.event_id,
            attempts: row.attempts,
            next_attempt_at: millis(now) + millis_of(wait),
            error: "endpoint paused".into(),
        }),
        None => Admit::Go(Go { row, endpoint }),
    }
}

/// What becomes of a row whose endpoint this node does not know, at `now` (Unix ms). Another
/// node may have created the endpoint a moment ago and this one not have read it yet
/// (`stored::SYNC_EVERY`): a recent event waits for the next sync (not counted as an attempt);
/// an older one's endpoint was deleted, and it is given up.
fn unknown_endpoint(row: OutboxRow, now: i64) -> Settle {
    if row.created_at > now - millis_of(UNKNOWN_GRACE) {
        return Settle::Retry {
            endpoint: row.endpoint,
            event_id: row.event_id,
            attempts: row.attempts,
            next_attempt_at: now + millis_of(super::stored::SYNC_EVERY),
            error: "endpoint not known on this node yet".into(),
        };
    }
    Settle::GiveUp {
        endpoint: row.endpoint,
        event_id: row.event_id,
        at: now,
        error: "endpoint removed".into(),
    }
}

/// One HTTP attempt; returns its outcome for the outbox.
async fn attempt(shared: &Shared, go: Go) -> Settle {
    let Go { row, endpoint } = go;
    let sent_at = SystemTime::now();
    let timestamp = millis(sent_at) / 1000;
    let body = Bytes::from(row.body.clone());
    let signature = sign::signature_header(&endpoint.keys, &row.event_id, timestamp, &body);
    let headers = [
        ("webhook-id", row.event_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ];
    let outcome = match shared.client.post(&endpoint, &headers, body).await {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(format!("HTTP {status}")),
        Err(e) => Err(e),
    };
    let id = endpoint.id().to_owned();
    let done_at = SystemTime::now();
    match outcome {
        Ok(()) => {
            shared.metrics.delivered.with_label_values(&[&id]).inc();
            let latency = (millis(done_at) - row.created_at).max(0) as f64 / 1000.0;
            shared.metrics.latency.observe(latency);
            shared.healthy(&endpoint);
            Settle::Delivered {
                endpoint: row.endpoint,
                event_id: row.event_id,
                at: millis(done_at),
            }
        }
        Err(error) => {
            shared.unhealthy(&endpoint);
            let attempts = row.attempts.saturating_add(1);
            let s = &shared.settings;
            let delay = backoff(
                attempts,
                s.backoff_initial.get(),
                s.backoff_max.get(),
                rand::rng().random(),
            );
            let next = millis(done_at) + millis_of(delay);
            let deadline = row.created_at + millis_of(s.retry_for.get());
            if next > deadline {
                tracing::warn!(endpoint = %id, event = %row.event_id, %error, attempts,
                    "webhook event given up after webhook.retry_for");
                shared.metrics.failed.with_label_values(&[&id]).inc();
                Settle::GiveUp {
                    endpoint: row.endpoint,
                    event_id: row.event_id,
                    at: millis(done_at),
                    error,
                }
            } else {
                tracing::debug!(endpoint = %id, event = %row.event_id, %error, attempts,
                    "webhook attempt failed; retrying");
                shared.metrics.retried.with_label_values(&[&id]).inc();
                Settle::Retry {
                    endpoint: row.endpoint,
                    event_id: row.event_id,
                    attempts,
                    next_attempt_at: next,
                    error,
                }
            }
        }
    }
}

async fn prune(shared: &Shared) {
    let cutoff = millis(SystemTime::now()) - millis_of(shared.settings.keep_done.get());
    loop {
        match shared.outbox.prune(cutoff, PRUNE_BATCH).await {
            Ok(n) if n == u64::from(PRUNE_BATCH) => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox pruning failed");
                return;
            }
        }
    }
}

fn millis_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let s = Duration::from_secs;
        let (initial, max) = (s(1), s(600));
        assert_eq!(backoff(1, initial, max, 1.0), s(1));
        assert_eq!(backoff(2, initial, max, 1.0), s(2));
        assert_eq!(backoff(5, initial, max, 1.0), s(16));
        assert_eq!(backoff(11, initial, max, 1.0), s(600), "capped");
        assert_eq!(backoff(1000, initial, max, 1.0), s(600), "no overflow");
        assert_eq!(
            backoff(5, initial, max, 0.0),
            s(8),
            "jitter keeps at least half"
        );
        let d = backoff(5, initial, max, 0.3);
        assert!(d > s(8) && d < s(16), "{d:?}");
    }

    #[test]
    fn an_event_for_an_unknown_endpoint_waits_for_the_sync_then_is_given_up() {
        let row = |created_at| OutboxRow {
            endpoint: "wh_new".into(),
            event_id: "evt_1".into(),
            order_key: "call:1".into(),
            pos: 1,
            body: "{}".into(),
            created_at,
            attempts: 2,
        };
        let now = 100_000;
        match unknown_endpoint(row(now - 1_000), now) {
            Settle::Retry {
                attempts,
                next_attempt_at,
                ..
            } => {
                assert_eq!(attempts, 2, "not an attempt");
                assert_eq!(next_attempt_at, now + 2_000, "after the next sync");
            }
            other => panic!("{other:?}"),
        }
        let old = now - millis_of(UNKNOWN_GRACE) - 1;
        assert!(matches!(
            unknown_endpoint(row(old), now),
            Settle::GiveUp { at, .. } if at == now
        ));
    }

    /// With the defaults, retries reach `retry_for` (24 h) after a bounded number of attempts.
    #[test]
    fn a_day_of_retries_is_a_few_hundred_attempts() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(600));
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        while elapsed < Duration::from_secs(24 * 3600) {
            attempts += 1;
            elapsed += backoff(attempts, initial, max, 0.5);
        }
        assert!((150..300).contains(&attempts), "{attempts}");
    }
}
