//! Which RabbitMQ queue each of payq's messages goes to (distributed mode), and which are
//! events: the first delivery of an event to the merchant's webhook is published as the
//! event itself on `payq.events` (routing key = event type), so other systems subscribe to
//! the same stream payq's webhook queue reads. An event the merchant's webhook does not
//! take (no URL, or filtered out) is only announced: it skips payq's webhook queue.

use crate::jobs::{Job, JobKind};
use payq_bus::rabbit::RouteError;
use payq_bus::rabbit::relay::{Route, Router};
use payq_bus::rabbit::topology::WorkQueue;
use payq_store::{OutboxMessage, Store};

/// Routes payq's jobs to the work queues (docs/operations.md, "RabbitMQ topology").
pub struct JobRouter {
    store: Store,
}

impl JobRouter {
    /// A router that reads event bodies from `store`.
    pub fn new(store: Store) -> JobRouter {
        JobRouter { store }
    }
}

/// The work queue of a job kind.
pub fn queue_of(kind: JobKind) -> WorkQueue {
    match kind {
        JobKind::PaymentRequest => WorkQueue::Risk,
        JobKind::PaymentQuery | JobKind::PaymentClose => WorkQueue::Channel,
        JobKind::RefundExecute => WorkQueue::Refunds,
        JobKind::WebhookDeliver => WorkQueue::Webhooks,
        JobKind::PaymentTimeout
        | JobKind::OrderCheck
        | JobKind::ShipReminder
        | JobKind::ReconciliationDay
        | JobKind::ReconciliationRun => WorkQueue::Timers,
    }
}

impl Router for JobRouter {
    async fn route_all(&self, batch: &[OutboxMessage]) -> Vec<Result<Route, RouteError>> {
        let jobs: Vec<_> = batch.iter().map(|m| Job::parse(&m.message.kind, &m.message.payload)).collect();
        // First publication only (not a retry or a deferral, which move the due time).
        // A redelivery the merchant asked for goes to its webhook only.
        let announced: Vec<_> = batch
            .iter()
            .zip(&jobs)
            .map(|(m, job)| match job {
                Ok(Job::WebhookDeliver(job)) if m.due_at == m.message.scheduled_at && !job.redelivery => {
                    Some(job.event_id.clone())
                }
                _ => None,
            })
            .collect();
        let event_ids: Vec<_> = announced.iter().flatten().cloned().collect();
        let events = if event_ids.is_empty() {
            Ok(Default::default())
        } else {
            self.store.events_to_announce(&event_ids).await.map_err(|e| RouteError::Unavailable(e.to_string()))
        };
        announced
            .into_iter()
            .zip(&jobs)
            .map(|(event, job)| match (event, &events) {
                (Some(id), Ok(events)) => match events.get(&id) {
                    Some(a) => Ok(Route::Event {
                        event_type: a.event.event_type.clone(),
                        body: a.event.body.clone(),
                        webhook: a.webhook,
                    }),
                    None => Err(RouteError::EventNotFound(id.to_string())),
                },
                (Some(_), Err(e)) => Err(e.clone()),
                // A message payq cannot read still goes to a worker, which dead-letters it
                // with the reason.
                (None, _) => Ok(Route::Work(job.as_ref().map_or(WorkQueue::Timers, |job| queue_of(job.kind())))),
            })
            .collect()
    }
}
