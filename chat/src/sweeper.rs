//! The retention sweeper: a background task that deletes expired messages and idle, empty
//! conversations (see [`ChatService::sweep_expired`]).
//!
//! Lifecycle: [`ChatService::spawn_retention_sweeper`] starts it; it sweeps once right away, then
//! every `Settings::retention_sweep_interval`, and ends when the `shutdown` future completes
//! (or at once if retention is off). Several nodes on one PostgreSQL may all run it: deletes are
//! idempotent.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::ChatService;

impl ChatService {
    /// Spawns the sweeper on the current tokio runtime. A failed pass is logged and retried at the
    /// next interval; it never ends the task.
    pub fn spawn_retention_sweeper(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            if service.settings().retention.is_none() {
                return;
            }
            let mut ticks = tokio::time::interval(service.settings().retention_sweep_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = ticks.tick() => {}
                }
                match service.sweep_expired().await {
                    Ok(crate::Swept {
                        messages: 0,
                        conversations: 0,
                    }) => {}
                    Ok(swept) => tracing::info!(
                        messages = swept.messages,
                        conversations = swept.conversations,
                        "chat retention sweep"
                    ),
                    Err(error) => {
                        tracing::warn!(%error, source = ?std::error::Error::source(&error), "chat retention sweep failed")
                    }
                }
            }
        })
    }
}
