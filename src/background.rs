//! Parts that run beside the HTTP server and must not fail silently: the TURN relay, the SFU.
//!
//! Why: if the relay's workers die while signaling keeps serving, clients keep receiving
//! `iceServers` that point at a relay nobody answers, and calls behind NATs fail with nothing in
//! the log until shutdown; if the SFU's worker dies, every group call fails to join. So a
//! [`Background`] part logs its failure the moment it happens, and [`Background::ended`] lets
//! `serve` start the same graceful drain as SIGTERM; `serve` then returns
//! [`crate::RunError::Part`] and the process exits non-zero, for its supervisor (systemd,
//! Kubernetes, Docker's restart policy) to restart it. Alternatives are in
//! `docs/adr/0024-fail-fast-when-a-media-part-dies.md`.
//!
//! Lifecycle: [`Background::spawn`] starts the part with a stop signal; [`Background::ended`]
//! resolves once it has ended on its own (failed, panicked, or returned without being asked);
//! [`Background::stop`] asks it to stop, waits, and reports how it ended.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A part running on its own task; see the module docs.
pub struct Background {
    name: &'static str,
    stop: watch::Sender<bool>,
    ended: watch::Receiver<bool>,
    task: JoinHandle<Result<(), String>>,
}

/// Resolves when the part is asked to stop.
pub type StopSignal = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

impl Background {
    /// Spawns `run(stop)`. `name` appears in logs and errors ("TURN relay").
    pub fn spawn<Fut, E>(name: &'static str, run: impl FnOnce(StopSignal) -> Fut) -> Background
    where
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (stop, mut stop_rx) = watch::channel(false);
        let (ended_tx, ended) = watch::channel(false);
        let signal: StopSignal = Box::pin(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
        let part = tokio::spawn(run(signal));
        let watching = stop.subscribe();
        let task = tokio::spawn(async move {
            let outcome = match part.await {
                Ok(Ok(())) if *watching.borrow() => Ok(()),
                Ok(Ok(())) => Err("stopped without being asked to".to_owned()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) if e.is_panic() => Err("panicked".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = &outcome
                && !*watching.borrow()
            {
                tracing::error!(part = name, %error, "failed; shutting down so a supervisor can restart chorus");
            }
            let _ = ended_tx.send(true);
            outcome
        });
        Background {
            name,
            stop,
            ended,
            task,
        }
    }

    /// Resolves once the part has ended, whatever the reason. Never resolves while it runs.
    pub fn ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.clone();
        async move {
            // An error means the supervising task was dropped without saying so, which only the
            // runtime shutting down does: there is nothing left to wait for either way.
            let _ = ended.wait_for(|e| *e).await;
        }
    }

    /// Asks the part to stop and waits until it has. `Err` carries the part's name and error
    /// when it failed, panicked or had ended on its own before.
    pub async fn stop(self) -> Result<(), crate::RunError> {
        let _ = self.stop.send(true);
        let outcome = match self.task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(e.to_string()),
        };
        outcome.map_err(|error| crate::RunError::Part {
            part: self.name,
            error,
        })
    }
}

/// Resolves once any of `parts` has ended; never, when there are none.
pub fn first_ended(parts: &[&Background]) -> impl Future<Output = ()> + Send + 'static {
    let ended: Vec<_> = parts.iter().map(|p| Box::pin(p.ended())).collect();
    async move {
        if ended.is_empty() {
            std::future::pending::<()>().await;
        }
        futures_util::future::select_all(ended).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// With the clock paused, a timeout only fires once every task is idle, so "did not end
    /// within an hour" is decided without waiting an hour.
    async fn ends_within_an_hour(part: &Background) -> bool {
        tokio::time::timeout(Duration::from_secs(3600), part.ended())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_that_runs_until_stopped_stops_cleanly() {
        let part = Background::spawn("relay", |stop| async move {
            stop.await;
            Ok::<(), String>(())
        });
        assert!(!ends_within_an_hour(&part).await);
        part.stop().await.expect("a clean stop is not an error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_part_ends_at_once_and_stop_reports_its_error() {
        let part = Background::spawn("TURN relay", |_stop| async move {
            Err::<(), _>(std::io::Error::other("io_uring_enter: EFAULT"))
        });
        assert!(ends_within_an_hour(&part).await);
        let error = part.stop().await.expect_err("the failure is reported");
        assert_eq!(
            error.to_string(),
            "TURN relay failed: io_uring_enter: EFAULT"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_part_ends_and_is_reported() {
        let part = Background::spawn("relay", |_stop| async move {
            if true {
                panic!("worker bug");
            }
            Ok::<(), String>(())
        });
        assert!(ends_within_an_hour(&part).await);
        let error = part.stop().await.expect_err("a panic is a failure");
        assert_eq!(error.to_string(), "relay failed: panicked");
    }

    #[tokio::test(start_paused = true)]
    async fn first_ended_waits_for_any_part_and_never_without_parts() {
        let running = Background::spawn("sfu", |stop| async move {
            stop.await;
            Ok::<(), String>(())
        });
        let failing = Background::spawn("relay", |_stop| async move { Err::<(), _>("gone") });
        let hour = Duration::from_secs(3600);
        assert!(
            tokio::time::timeout(hour, first_ended(&[&running]))
                .await
                .is_err()
        );
        assert!(tokio::time::timeout(hour, first_ended(&[])).await.is_err());
        assert!(
            tokio::time::timeout(hour, first_ended(&[&running, &failing]))
                .await
                .is_ok()
        );
        running.stop().await.expect("clean stop");
        assert!(failing.stop().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_returning_unasked_counts_as_failed() {
        let part = Background::spawn("relay", |_stop| async move { Ok::<(), String>(()) });
        assert!(ends_within_an_hour(&part).await);
        let error = part.stop().await.expect_err("nobody asked it to stop");
        assert_eq!(
            error.to_string(),
            "relay failed: stopped without being asked to"
        );
    }
}
