//! The lifeline task of a payq process: it beats the process's heartbeat into the store and
//! releases the claims of processes that stopped beating, so work held by a process killed
//! with `kill -9` resumes within seconds (Oban calls this a lifeline, Sidekiq super_fetch).

use payq_store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Heartbeats and reclaims for one process.
pub struct Lifeline {
    pub store: Store,
    /// The process's role, as shown in the registry.
    pub role: String,
    /// How often the process beats. A process silent for three beats counts as dead.
    pub heartbeat: Duration,
}

impl Lifeline {
    /// How long a process may stay silent before its claims are released.
    pub fn silence_limit(&self) -> Duration {
        self.heartbeat * 3
    }

    /// Beats and reclaims until `shutdown`. (Leaving the registry is
    /// [`Store::deregister`], once the process's handlers have finished.)
    pub async fn run(self, shutdown: CancellationToken) {
        let silence_ms = i64::try_from(self.silence_limit().as_millis()).unwrap_or(i64::MAX);
        // The first round also sweeps the queue for owners that never registered.
        let mut sweep = true;
        loop {
            if let Err(e) = self.store.heartbeat(&self.role).await {
                tracing::warn!(error = %e, "could not record the heartbeat");
            }
            let released = self.store.release_claims_of_dead_processes(silence_ms, sweep).await;
            sweep = false;
            match released {
                Ok(0) => {}
                Ok(n) => tracing::info!(messages = n, "released the claims of a process that stopped"),
                Err(e) => tracing::warn!(error = %e, "could not release the claims of stopped processes"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.heartbeat) => {}
            }
        }
    }
}
