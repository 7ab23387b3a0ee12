//! The `store` delay engine: timers, commands and deliveries as rows of the SQL store.
//!
//! Each [`Lane`] has its own dispatcher: it sleeps until the lane's earliest due time, or
//! until a transaction schedules something new, claims due rows in batches with a lease,
//! runs the handler on each with the lane's concurrency bound, then deletes the row (done),
//! pushes it back with exponential back-off and jitter (transient failure), or moves it to
//! the dead letters (permanent failure, or too many attempts). Each message frees its slot
//! as soon as its handler returns, so one slow handler never holds up its batch.
//!
//! A process that dies is found by its missing heartbeat (see [`Lifeline`]) and its claims
//! are released at once; a handler that hangs inside a live process keeps its row until
//! the lease runs out. Handlers are idempotent, so running a row again is safe.

use crate::{Handled, Handler, HandlerError};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use payq_domain::Timestamp;
use payq_store::{ClaimedMessage, Lane, Store, WebhookDelivery};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Tuning of the store engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows claimed per round trip.
    pub batch: u32,
    /// Handlers running at once in the work lane (payments, timers, refunds).
    pub concurrency: usize,
    /// Handlers running at once in the deliveries lane (webhooks).
    pub delivery_concurrency: usize,
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
            delivery_concurrency: 64,
            lease: Duration::from_secs(60),
            max_attempts: 10,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(600),
            idle_poll: Duration::from_millis(500),
        }
    }
}

/// What one step of the store engine did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// This many due messages were claimed and handled (each completed, retried, deferred
    /// or dead-lettered).
    Processed(usize),
    /// Nothing was due.
    Idle,
}

/// The store engine: one dispatcher per lane.
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

    /// Runs every lane until `shutdown` is cancelled, then waits for the handlers in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = Lane::ALL.map(|lane| {
            let dispatcher = Dispatcher {
                lane,
                store: self.store.clone(),
                handler: self.handler.clone(),
                config: self.config.clone(),
            };
            dispatcher.run(shutdown.clone())
        });
        futures_util::future::join_all(lanes).await;
    }

    /// One step of the engine, driven by its caller instead of its clock: claims one batch
    /// of each lane's messages due now and handles them to the end. [`Step::Idle`] says
    /// that nothing was due, a fact a test can assert instead of waiting.
    pub async fn process_next(&self) -> payq_store::StoreResult<Step> {
        let mut handled = 0;
        for lane in Lane::ALL {
            let batch = self.store.claim_due(lane, Timestamp::now(), self.config.batch, lease_ms(&self.config)).await?;
            handled += batch.len();
            let count = u32::try_from(batch.len()).unwrap_or(u32::MAX);
            if let Ok(permits) = Arc::new(Semaphore::new(batch.len())).acquire_many_owned(count).await {
                run_batch(&self.store, &self.handler, &self.config, batch, permits).await;
            }
        }
        Ok(if handled == 0 { Step::Idle } else { Step::Processed(handled) })
    }

    /// Steps until nothing is due now; answers how many messages were handled.
    pub async fn process_due(&self) -> payq_store::StoreResult<usize> {
        let mut handled = 0;
        while let Step::Processed(n) = self.process_next().await? {
            handled += n;
        }
        Ok(handled)
    }
}

/// Claims and runs the messages of one lane.
struct Dispatcher<H: Handler> {
    lane: Lane,
    store: Store,
    handler: Arc<H>,
    config: EngineConfig,
}

impl<H: Handler> Dispatcher<H> {
    async fn run(self, shutdown: CancellationToken) {
        let concurrency = match self.lane {
            Lane::Work => self.config.concurrency,
            Lane::Deliveries => self.config.delivery_concurrency,
        }
        .max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let tracker = TaskTracker::new();
        tracing::info!(lane = self.lane.as_str(), concurrency, "store delay engine started");
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
            let claimed = match self.store.claim_due(self.lane, Timestamp::now(), limit, lease_ms(&self.config)).await {
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
                    run_batch(&store, &handler, &config, claimed, permit).await;
                });
            }
            if full {
                continue;
            }
            let wait = match self.store.next_due(self.lane).await {
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
                _ = self.store.messages_changed(self.lane) => {}
            }
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!(lane = self.lane.as_str(), "store delay engine stopped");
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
    /// Handled; with the webhook delivery it made, if any, to record with its completion.
    Done(Option<WebhookDelivery>),
    Retry {
        delay: Duration,
        error: String,
    },
    Defer(Duration),
    Dead(String),
}

/// Runs the handler on one claimed message and decides what becomes of it.
pub(crate) async fn judge<H: Handler>(handler: &H, config: &EngineConfig, msg: &ClaimedMessage) -> Verdict {
    if msg.attempts <= 1 {
        let late_ms = Timestamp::now().millis().saturating_sub(msg.scheduled_at.millis()).max(0);
        metrics::histogram!("payq_timer_lateness_seconds", "kind" => msg.kind.clone()).record(late_ms as f64 / 1000.0);
    }
    // Every log line the handler writes names the message it is handling.
    let span = tracing::info_span!("message", message_id = %msg.id, kind = %msg.kind, attempt = msg.attempts);
    let outcome = handler.handle(msg).instrument(span).await;
    match outcome {
        Ok(Handled::Done) => Verdict::Done(None),
        Ok(Handled::Delivered(delivery)) => Verdict::Done(Some(delivery)),
        Err(HandlerError::Defer(delay)) => Verdict::Defer(delay),
        Err(HandlerError::RetryAfter { delay, error }) => Verdict::Retry { delay, error },
        Err(HandlerError::Transient(error)) if msg.attempts < config.max_attempts => {
            Verdict::Retry { delay: backoff(config, msg.attempts), error }
        }
        Err(e) => Verdict::Dead(e.to_string()),
    }
}

/// How long the outcomes of a batch are gathered after the first one, to be recorded together.
const GATHER_WINDOW: Duration = Duration::from_millis(2);

/// Runs the handlers of a claimed batch concurrently, holding one of `permits` per
/// message. Whenever handlers finish, the outcomes of all that have finished by then are
/// recorded (the completions in one transaction) and their permits freed, so fast handlers
/// keep their batching and a slow one holds only its own slot.
///
/// Each handler is a task of its own: a handler may hold the store's writer while this
/// loop waits for it to record outcomes, so handlers must make progress without it.
async fn run_batch<H: Handler>(
    store: &Store,
    handler: &Arc<H>,
    config: &EngineConfig,
    batch: Vec<ClaimedMessage>,
    mut permits: OwnedSemaphorePermit,
) {
    let mut running: FuturesUnordered<_> = batch
        .iter()
        .map(|m| {
            let permit = permits.split(1);
            let (handler, config, msg) = (handler.clone(), config.clone(), m.clone());
            tokio::spawn(async move { judge(&*handler, &config, &msg).await }).map(move |joined| {
                // A handler that panicked is retried later, like a transient failure.
                let verdict = joined.unwrap_or_else(|e| Verdict::Retry {
                    delay: Duration::from_secs(1),
                    error: format!("handler panicked: {e}"),
                });
                (m, verdict, permit)
            })
        })
        .collect();
    let mut held: std::collections::HashSet<i64> = batch.iter().map(|m| m.seq).collect();
    let renew_every = config.lease / 3;
    let mut renewal = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    loop {
        let first = tokio::select! {
            next = running.next() => match next {
                Some(first) => first,
                None => break,
            },
            _ = renewal.tick() => {
                // Handlers slower than the lease (a webhook waiting for its timeout) keep
                // their rows, so they are never run twice at once.
                let still: Vec<&ClaimedMessage> = batch.iter().filter(|m| held.contains(&m.seq)).collect();
                if let Err(e) = store.extend_leases(&still, due_in(config.lease)).await {
                    tracing::warn!(error = %e, "could not renew message leases");
                }
                continue;
            }
        };
        // Gather what finishes within a moment of the first, so quick handlers still share
        // one completion transaction, while a slow one never holds the others back.
        let mut finished = vec![first];
        let window = tokio::time::sleep(GATHER_WINDOW);
        tokio::pin!(window);
        loop {
            tokio::select! {
                biased;
                more = running.next() => match more {
                    Some(more) => finished.push(more),
                    None => break,
                },
                _ = &mut window => break,
            }
        }
        let mut done = Vec::new();
        let mut delivered = Vec::new();
        let mut deferred = Vec::new();
        for (msg, verdict, _) in &mut finished {
            held.remove(&msg.seq);
            match std::mem::replace(verdict, Verdict::Done(None)) {
                Verdict::Done(delivery) => {
                    metrics::counter!("payq_messages_fired_total", "kind" => msg.kind.clone()).increment(1);
                    done.push(*msg);
                    delivered.extend(delivery);
                }
                Verdict::Defer(delay) => deferred.push((*msg, due_in(delay))),
                failure => {
                    if let Err(e) = record_failure(store, msg, failure).await {
                        // The claim lapses and the message runs again; handlers are idempotent.
                        tracing::warn!(message_id = %msg.id, error = %e, "could not record the message outcome");
                    }
                }
            }
        }
        // Completions and deferrals of the round each take one transaction.
        if let Err(e) = store.complete_messages(&done, &delivered).await {
            tracing::warn!(error = %e, count = done.len(), "could not complete handled messages; they will run again");
        }
        if let Err(e) = store.defer_messages(&deferred).await {
            tracing::warn!(error = %e, count = deferred.len(), "could not defer messages; they will run again");
        }
        // `finished` drops here, and with it the permits of these messages.
    }
}

/// Records what becomes of one handled message: removed (done), put back to run later
/// (deferred or retried), or moved to the dead letters. The same for every transport.
pub(crate) async fn settle(store: &Store, msg: &ClaimedMessage, verdict: Verdict) -> payq_store::StoreResult<()> {
    match verdict {
        Verdict::Done(delivery) => {
            metrics::counter!("payq_messages_fired_total", "kind" => msg.kind.clone()).increment(1);
            store.complete_messages(&[msg], delivery.as_slice()).await
        }
        other => record_failure(store, msg, other).await,
    }
}

async fn record_failure(store: &Store, msg: &ClaimedMessage, verdict: Verdict) -> payq_store::StoreResult<()> {
    let kind = msg.kind.clone();
    match verdict {
        Verdict::Done(_) => Ok(()),
        Verdict::Defer(delay) => store.defer_message(msg, due_in(delay)).await,
        Verdict::Retry { delay, error } => {
            metrics::counter!("payq_messages_retried_total", "kind" => kind.clone()).increment(1);
            tracing::warn!(message_id = %msg.id, kind = %kind, attempt = msg.attempts, retry_in_ms = delay.as_millis() as u64, error = %error, "message failed; will retry");
            store.retry_message(msg, due_in(delay), &error).await
        }
        Verdict::Dead(error) => {
            metrics::counter!("payq_messages_failed_total", "kind" => kind.clone()).increment(1);
            tracing::error!(message_id = %msg.id, kind = %kind, attempts = msg.attempts, error = %error, "message dead-lettered");
            store.dead_letter_message(msg, &error).await.map(|_| ())
        }
    }
}

fn due_in(delay: Duration) -> Timestamp {
    Timestamp::now().plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// The wait before attempt `attempt + 1`: `base * 2^(attempt-1)`, capped at `max`, plus
/// up to as much again at random so the retries of a burst spread out (`backon`'s
/// exponential back-off; the attempt count is stored with the message, so this is the
/// schedule's `attempt`-th step).
fn backoff(config: &EngineConfig, attempt: u32) -> Duration {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(config.base_backoff)
        .with_max_delay(config.max_backoff)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1).min(64) as usize)
        .unwrap_or(config.max_backoff)
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
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
        let third = backoff(&config, 3);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(800), "{third:?}");
        let last = backoff(&config, 30);
        assert!(last >= Duration::from_secs(1) && last <= Duration::from_secs(2), "{last:?}");
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    impl Handler for Counting {
        async fn handle(&self, _msg: &ClaimedMessage) -> Result<Handled, HandlerError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Handled::Done)
        }
    }

    #[tokio::test]
    async fn process_due_runs_what_is_due_in_every_lane_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&format!("sqlite://{}/engine.db", dir.path().display())).await.expect("store");
        let message = |lane, due_at| payq_store::NewMessage {
            kind: "test.kind".into(),
            key: None,
            lane,
            ordinal: None,
            payload: serde_json::Value::Null,
            due_at,
        };
        let mut tx = store.begin().await.expect("tx");
        for lane in [Lane::Work, Lane::Deliveries, Lane::Work] {
            tx.schedule(message(lane, Timestamp::now())).await.expect("schedule");
        }
        tx.schedule(message(Lane::Work, Timestamp::now().plus_millis(3_600_000))).await.expect("schedule");
        tx.commit().await.expect("commit");

        let handler = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
        let engine = StoreEngine::new(store.clone(), handler.clone(), EngineConfig::default());
        assert_eq!(engine.process_due().await.expect("step"), 3);
        assert_eq!(handler.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Drained: a second step finds nothing, and only the timer due in an hour waits.
        assert_eq!(engine.process_due().await.expect("step"), 0);
        assert_eq!(store.pending_messages(None, 10).await.expect("pending").len(), 1);
    }

    #[tokio::test]
    async fn process_next_takes_one_batch_per_lane_then_says_idle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&format!("sqlite://{}/step.db", dir.path().display())).await.expect("store");
        let mut tx = store.begin().await.expect("tx");
        for lane in [Lane::Work, Lane::Work, Lane::Deliveries] {
            let m = payq_store::NewMessage {
                kind: "test.kind".into(),
                key: None,
                lane,
                ordinal: None,
                payload: serde_json::Value::Null,
                due_at: Timestamp::now(),
            };
            tx.schedule(m).await.expect("schedule");
        }
        tx.commit().await.expect("commit");
        let handler = Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0)));
        let config = EngineConfig { batch: 1, ..EngineConfig::default() };
        let engine = StoreEngine::new(store.clone(), handler.clone(), config);
        assert_eq!(engine.process_next().await.expect("step"), Step::Processed(2), "one of each lane");
        assert_eq!(engine.process_next().await.expect("step"), Step::Processed(1), "the second work message");
        assert_eq!(engine.process_next().await.expect("step"), Step::Idle);
        assert_eq!(handler.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert!(store.pending_messages(None, 10).await.expect("pending").is_empty());
    }
}
