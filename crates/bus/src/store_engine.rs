//! The `store` delay engine: timers, commands and deliveries as rows of the SQL store.
//!
//! The dispatcher sleeps until the earliest due time, or until a transaction schedules
//! something new, claims due rows in batches with a lease, runs the handler on each with a
//! concurrency bound, then deletes the row (done), pushes it back with exponential
//! back-off and jitter (transient failure), or moves it to the dead letters (permanent
//! failure, or too many attempts). A worker that dies leaves leases that expire, and the
//! rows run again elsewhere; handlers are idempotent, so that is safe.

use crate::{Handler, HandlerError};
use payq_domain::Timestamp;
use payq_store::{ClaimedMessage, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tuning of the store engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows claimed per round trip.
    pub batch: u32,
    /// Handlers running at once.
    pub concurrency: usize,
    /// How long a claim holds a row before another worker may take it.
    pub lease: Duration,
    /// Attempts before a message is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt.
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Longest sleep without looking at the store (rows written by other processes and
    /// expired leases are found at least this often).
    pub idle_poll: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch: 256,
            concurrency: 64,
            lease: Duration::from_secs(60),
            max_attempts: 10,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(600),
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// The dispatcher of the store engine.
pub struct StoreEngine<H: Handler> {
    store: Store,
    handler: Arc<H>,
    config: EngineConfig,
}

impl<H: Handler> StoreEngine<H> {
    /// An engine that runs `handler` on the messages of `store`.
    pub fn new(store: Store, handler: Arc<H>, config: EngineConfig) -> Self {
        StoreEngine { store, handler, config }
    }

    /// Runs until `shutdown` is cancelled, then waits for the handlers in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let tracker = TaskTracker::new();
        tracing::info!(concurrency = self.config.concurrency, "store delay engine started");
        while !shutdown.is_cancelled() {
            let free = permits.available_permits().min(self.config.batch as usize);
            if free == 0 {
                // Every handler slot is busy: wait for one to free up.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = permits.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            let limit = u32::try_from(free).unwrap_or(self.config.batch);
            let claimed = match self.store.claim_due(Timestamp::now(), limit, lease_ms(&self.config)).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim due messages; retrying");
                    sleep_or_stop(&shutdown, Duration::from_millis(500)).await;
                    continue;
                }
            };
            let full = claimed.len() == limit as usize;
            if !claimed.is_empty() {
                // One permit per message: the batch holds its share of the concurrency bound.
                let count = u32::try_from(claimed.len()).unwrap_or(u32::MAX);
                let Ok(permit) = permits.clone().acquire_many_owned(count).await else {
                    break;
                };
                let (store, handler, config) = (self.store.clone(), self.handler.clone(), self.config.clone());
                tracker.spawn(async move {
                    run_batch(&store, &*handler, &config, claimed).await;
                    drop(permit);
                });
            }
            if full {
                continue;
            }
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => {
                    let ms = due.millis().saturating_sub(Timestamp::now().millis()).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(self.config.idle_poll)
                }
                Ok(None) => self.config.idle_poll,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the next due time");
                    self.config.idle_poll
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.store.messages_changed() => {}
            }
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!("store delay engine stopped");
    }
}

async fn sleep_or_stop(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

fn lease_ms(config: &EngineConfig) -> i64 {
    i64::try_from(config.lease.as_millis()).unwrap_or(60_000)
}

/// What to do with a message once its handler returned.
pub(crate) enum Verdict {
    Done,
    Retry { delay: Duration, error: String },
    Defer(Duration),
    Dead(String),
}

/// Runs the handler on one claimed message and decides what becomes of it.
pub(crate) async fn judge<H: Handler>(handler: &H, config: &EngineConfig, msg: &ClaimedMessage) -> Verdict {
    if msg.attempts <= 1 {
        let late_ms = Timestamp::now().millis().saturating_sub(msg.scheduled_at.millis()).max(0);
        metrics::histogram!("payq_timer_lateness_seconds", "kind" => msg.kind.clone()).record(late_ms as f64 / 1000.0);
    }
    match handler.handle(msg).await {
        Ok(()) => Verdict::Done,
        Err(HandlerError::Defer(delay)) => Verdict::Defer(delay),
        Err(HandlerError::RetryAfter { delay, error }) => Verdict::Retry { delay, error },
        Err(HandlerError::Transient(error)) if msg.attempts < config.max_attempts => {
            Verdict::Retry { delay: backoff(config, msg.attempts), error }
        }
        Err(e) => Verdict::Dead(e.to_string()),
    }
}

/// Runs the handlers of a claimed batch concurrently, then records the outcomes: all the
/// completions of the batch in one transaction.
async fn run_batch<H: Handler>(store: &Store, handler: &H, config: &EngineConfig, batch: Vec<ClaimedMessage>) {
    let handlers = futures_util::future::join_all(batch.iter().map(|m| judge(handler, config, m)));
    let verdicts = with_lease_renewal(store, config, &batch, handlers).await;
    let mut done = Vec::new();
    for (msg, verdict) in batch.iter().zip(verdicts) {
        let recorded = match verdict {
            Verdict::Done => {
                metrics::counter!("payq_messages_fired_total", "kind" => msg.kind.clone()).increment(1);
                done.push(msg);
                Ok(())
            }
            other => record_failure(store, msg, other).await,
        };
        if let Err(e) = recorded {
            // The lease will expire and the message will run again; handlers are idempotent.
            tracing::warn!(message = %msg.id, error = %e, "could not record the message outcome");
        }
    }
    if let Err(e) = store.complete_messages(&done).await {
        tracing::warn!(error = %e, count = done.len(), "could not complete handled messages; they will run again");
    }
}

/// Records what becomes of one handled message: removed (done), put back to run later
/// (deferred or retried), or moved to the dead letters. The same for every transport.
pub(crate) async fn settle(store: &Store, msg: &ClaimedMessage, verdict: Verdict) -> payq_store::StoreResult<()> {
    match verdict {
        Verdict::Done => {
            metrics::counter!("payq_messages_fired_total", "kind" => msg.kind.clone()).increment(1);
            store.complete_messages(&[msg]).await
        }
        other => record_failure(store, msg, other).await,
    }
}

async fn record_failure(store: &Store, msg: &ClaimedMessage, verdict: Verdict) -> payq_store::StoreResult<()> {
    let kind = msg.kind.clone();
    match verdict {
        Verdict::Done => Ok(()),
        Verdict::Defer(delay) => store.defer_message(msg, due_in(delay)).await,
        Verdict::Retry { delay, error } => {
            metrics::counter!("payq_messages_retried_total", "kind" => kind.clone()).increment(1);
            tracing::warn!(message = %msg.id, kind = %kind, attempt = msg.attempts, retry_in_ms = delay.as_millis() as u64, error = %error, "message failed; will retry");
            store.retry_message(msg, due_in(delay), &error).await
        }
        Verdict::Dead(error) => {
            metrics::counter!("payq_messages_failed_total", "kind" => kind.clone()).increment(1);
            tracing::error!(message = %msg.id, kind = %kind, attempts = msg.attempts, error = %error, "message dead-lettered");
            store.dead_letter_message(msg, &error).await.map(|_| ())
        }
    }
}

/// Awaits `work` while renewing the batch's leases every third of the lease, so handlers
/// slower than the lease (a webhook waiting for its timeout) are never run twice at once.
async fn with_lease_renewal<T>(
    store: &Store,
    config: &EngineConfig,
    batch: &[ClaimedMessage],
    work: impl std::future::Future<Output = T>,
) -> T {
    let period = config.lease / 3;
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(period) => {
                let held: Vec<&ClaimedMessage> = batch.iter().collect();
                if let Err(e) = store.extend_leases(&held, due_in(config.lease)).await {
                    tracing::warn!(error = %e, "could not renew message leases");
                }
            }
        }
    }
}

fn due_in(delay: Duration) -> Timestamp {
    Timestamp::now().plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// `base * 2^(attempt-1)`, capped, with ±20% jitter so retries of a burst spread out.
fn backoff(config: &EngineConfig, attempt: u32) -> Duration {
    let exp = config.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(config.max_backoff);
    let jitter: f64 = rand::random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = EngineConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..EngineConfig::default()
        };
        let first = backoff(&config, 1);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120), "{first:?}");
        let third = backoff(&config, 3);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480), "{third:?}");
        assert!(backoff(&config, 30) <= Duration::from_millis(1200));
    }
}
