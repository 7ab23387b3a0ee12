//! Consumers of the work queues and of the dead-letter queue.
//!
//! A delivery is handled only while the store still holds its message with the claim token
//! the delivery carries (see `payq_store::OutboxMessage`): duplicates, stale copies and
//! cancelled timers are acknowledged and dropped. The handler runs, its outcome is recorded
//! in the store (done, retried later through the outbox with back-off, deferred, or
//! dead-lettered with the last error), and only then is the delivery acknowledged. A worker
//! killed mid-delivery never acknowledges: RabbitMQ hands the message to another worker.
//! The look-ups and the completions of the deliveries in flight are gathered into one
//! statement each ([`super::gather`]), so a burst costs the store a few round trips, not
//! two per message.
//!
//! A delivery that cannot be read (no `message_id` or claim header: a message from a newer
//! payq, or something published by hand) or whose outcome cannot be recorded (the database
//! is down) is returned to its queue; the queue's `x-delivery-limit` ends the loop by
//! dead-lettering it to `payq.dead-letters`, whose consumer records it with the other dead
//! letters, where operators list and replay them.

use super::connect::{NodeCursor, connect_until};
use super::gather::Gatherer;
use super::relay::{CLAIM_HEADER, sleep_or_stop};
use super::topology::{Topology, WorkQueue};
use crate::store_engine::{Verdict, judge, settle};
use crate::{ClaimedMessage, EngineConfig, Handler, WebhookDelivery};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use payq_store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The consumers of one worker process.
pub struct Consumers<H: Handler> {
    pub store: Store,
    pub handler: Arc<H>,
    pub amqp_url: String,
    pub topology: Topology,
    /// Unacknowledged deliveries per queue (and handlers running at once per queue).
    pub prefetch: u16,
    /// Attempts and back-off, as for the store engine.
    pub engine: EngineConfig,
}

/// Most look-ups or completions gathered into one statement.
const GATHER_LIMIT: usize = 256;

/// A delivery's identity: its `message_id` and claim token.
type Identity = (String, i64);

/// The consumers with the gatherers of their store work (see [`super::gather`]).
struct Running<H: Handler> {
    consumers: Consumers<H>,
    /// Finds the rows deliveries stand for.
    lookups: Gatherer<Identity, Result<Option<ClaimedMessage>, Arc<StoreError>>>,
    /// Removes the rows of handled messages and records the webhook deliveries they made.
    completions: Gatherer<(ClaimedMessage, Option<WebhookDelivery>), Result<(), Arc<StoreError>>>,
}

impl<H: Handler> Consumers<H> {
    /// Consumes until `shutdown` is cancelled, reconnecting when the broker goes away; on
    /// shutdown, stops taking deliveries and lets the handlers in flight finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let store = self.store.clone();
        let lookups = Gatherer::spawn(GATHER_LIMIT, move |wanted: Vec<Identity>| {
            let store = store.clone();
            async move {
                match store.deliveries(&wanted).await {
                    Ok(found) => found.into_iter().map(Ok).collect(),
                    Err(e) => {
                        let e = Arc::new(e);
                        wanted.iter().map(|_| Err(e.clone())).collect()
                    }
                }
            }
        });
        let store = self.store.clone();
        let completions = Gatherer::spawn(GATHER_LIMIT, move |done: Vec<(ClaimedMessage, Option<WebhookDelivery>)>| {
            let store = store.clone();
            async move {
                let refs: Vec<&ClaimedMessage> = done.iter().map(|(m, _)| m).collect();
                let delivered: Vec<WebhookDelivery> = done.iter().filter_map(|(_, d)| d.clone()).collect();
                let outcome = store.complete_messages(&refs, &delivered).await.map_err(Arc::new);
                done.iter().map(|_| outcome.clone()).collect()
            }
        });
        let this = Arc::new(Running { consumers: self, lookups, completions });
        let tracker = TaskTracker::new();
        let mut cursor = NodeCursor::default();
        while !shutdown.is_cancelled() {
            let Some(conn) = connect_until(&this.consumers.amqp_url, &mut cursor, &shutdown, "consumers").await else {
                break;
            };
            // The queues must exist before consuming (the broker may have been reset).
            if let Ok(channel) = conn.create_channel().await
                && let Err(e) = this.consumers.topology.declare(&channel).await
            {
                tracing::warn!(error = %e, "cannot declare the topology");
            }
            let lost = CancellationToken::new();
            let mut queues: Vec<(String, bool)> =
                WorkQueue::ALL.iter().map(|q| (this.consumers.topology.work_queue(*q), false)).collect();
            queues.push((this.consumers.topology.dead_letters(), true));
            let mut started = true;
            for (queue, dead) in queues {
                match this.consumers.consume(&conn, &queue).await {
                    Ok(consumer) => {
                        let this = this.clone();
                        let (stop, lost, tasks) = (shutdown.clone(), lost.clone(), tracker.clone());
                        tracker.spawn(async move { this.drain(consumer, dead, stop, lost, tasks).await });
                    }
                    Err(e) => {
                        tracing::warn!(queue, error = %e, "cannot consume; reconnecting");
                        started = false;
                        break;
                    }
                }
            }
            if started {
                tracing::info!(prefetch = this.consumers.prefetch, "consuming the work queues");
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = lost.cancelled() => tracing::warn!("RabbitMQ connection lost; reconnecting"),
                }
            }
            lost.cancel();
            if shutdown.is_cancelled() {
                // Let handlers in flight finish and acknowledge before the connection goes.
                tracker.close();
                tracker.wait().await;
            }
            let _ = conn.close(200, "payq consumers stopping".into()).await;
            sleep_or_stop(&shutdown, Duration::from_millis(200)).await;
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn consume(&self, conn: &lapin::Connection, queue: &str) -> Result<lapin::Consumer, lapin::Error> {
        let channel = conn.create_channel().await?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        let tag = format!("payq-{}-{}", std::process::id(), queue);
        channel
            .basic_consume(queue.into(), tag.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
    }
}

impl<H: Handler> Running<H> {
    /// Takes deliveries off one queue, each handled on its own task (the prefetch bounds
    /// how many are in flight).
    async fn drain(
        self: Arc<Self>,
        mut consumer: lapin::Consumer,
        dead_letters: bool,
        shutdown: CancellationToken,
        lost: CancellationToken,
        tasks: TaskTracker,
    ) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lost.cancelled() => return,
                next = consumer.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    let this = self.clone();
                    tasks.spawn(async move {
                        if dead_letters {
                            this.record_dead_letter(delivery).await;
                        } else {
                            this.handle(delivery).await;
                        }
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer failed");
                    lost.cancel();
                    return;
                }
                None => {
                    lost.cancel();
                    return;
                }
            }
        }
    }

    async fn handle(&self, delivery: Delivery) {
        metrics::counter!("payq_amqp_delivered_total").increment(1);
        let Some(identity) = identity(&delivery) else {
            tracing::warn!(routing_key = %delivery.routing_key, "unreadable delivery (no message_id or claim); returning it");
            requeue(&delivery, Duration::from_millis(200)).await;
            return;
        };
        let id = identity.0.clone();
        let msg = match self.lookups.ask(identity).await {
            Some(Ok(Some(msg))) => msg,
            Some(Ok(None)) => {
                // Handled already, superseded by a later publication, or cancelled.
                metrics::counter!("payq_deliveries_dropped_total").increment(1);
                ack(&delivery).await;
                return;
            }
            Some(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "cannot look up a delivery; returning it");
                requeue(&delivery, Duration::from_secs(1)).await;
                return;
            }
            None => {
                requeue(&delivery, Duration::from_secs(1)).await;
                return;
            }
        };
        let verdict = judge(self.consumers.handler.as_ref(), &self.consumers.engine, &msg).await;
        let recorded = match verdict {
            Verdict::Done(delivery) => {
                metrics::counter!("payq_messages_fired_total", "kind" => msg.kind.clone()).increment(1);
                self.completions.ask((msg, delivery)).await
            }
            other => Some(settle(&self.consumers.store, &msg, other).await.map_err(Arc::new)),
        };
        match recorded {
            Some(Ok(())) => ack(&delivery).await,
            Some(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "cannot record a delivery's outcome; returning it");
                requeue(&delivery, Duration::from_secs(1)).await;
            }
            None => {
                tracing::warn!(message_id = %id, "the completion task is gone; returning the delivery");
                requeue(&delivery, Duration::from_secs(1)).await;
            }
        }
    }

    /// Records a message RabbitMQ dead-lettered (its delivery limit ran out).
    async fn record_dead_letter(&self, delivery: Delivery) {
        metrics::counter!("payq_amqp_delivered_total").increment(1);
        let id = delivery.properties.message_id().as_ref().map(|s| s.to_string());
        let deliveries = header_int(&delivery, "x-delivery-count").unwrap_or(0);
        let reason = format!(
            "dead-lettered by RabbitMQ after {deliveries} deliveries (routing key {})",
            delivery.routing_key.as_str()
        );
        let pending = match &id {
            Some(id) => self.consumers.store.message_by_id(id).await,
            None => Ok(None),
        };
        let recorded = match pending {
            Ok(Some(msg)) => self.consumers.store.dead_letter_message(&msg, &reason).await.map(|_| ()),
            Ok(None) => {
                let kind =
                    delivery.properties.kind().as_ref().map(|s| s.to_string()).unwrap_or_else(|| "unknown".into());
                let payload = String::from_utf8_lossy(&delivery.data).into_owned();
                let message_id = id.unwrap_or_else(|| "unknown".into());
                self.consumers
                    .store
                    .record_foreign_dead_letter(&message_id, &kind, &payload, deliveries, &reason)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        };
        match recorded {
            Ok(()) => {
                metrics::counter!("payq_broker_dead_letters_total").increment(1);
                tracing::error!(%reason, "a message reached the dead letters");
                ack(&delivery).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a dead letter; returning it");
                requeue(&delivery, Duration::from_secs(1)).await;
            }
        }
    }
}

/// The delivery's `message_id` and claim token.
fn identity(d: &Delivery) -> Option<Identity> {
    let id = d.properties.message_id().as_ref()?.to_string();
    Some((id, header_int(d, CLAIM_HEADER)?))
}

fn header_int(d: &Delivery, name: &str) -> Option<i64> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(i) => Some(*i),
        AMQPValue::LongInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortInt(i) => Some(i64::from(*i)),
        AMQPValue::LongUInt(i) => Some(i64::from(*i)),
        AMQPValue::ShortShortInt(i) => Some(i64::from(*i)),
        _ => None,
    }
}

async fn ack(d: &Delivery) {
    if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
        // Unacknowledged: RabbitMQ delivers it again and the claim check drops the copy.
        tracing::warn!(error = %e, "ack failed");
    }
}

/// Returns a delivery to its queue after a pause (so a failing dependency is not hammered);
/// each return counts towards the queue's delivery limit.
async fn requeue(d: &Delivery, pause: Duration) {
    tokio::time::sleep(pause).await;
    if let Err(e) = d.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await {
        tracing::warn!(error = %e, "nack failed");
    }
}
