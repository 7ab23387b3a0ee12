//! Which RabbitMQ queue each of payq's messages goes to (distributed mode), and which are
//! events: the first delivery of an event to the merchant's webhook is published as the
//! event itself on `payq.events` (routing key = event type), so other systems subscribe to
//! the same stream payq's webhook queue reads.

use crate::jobs::{Job, JobKind};
use payq_bus::rabbit::relay::{Route, Router};
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

/// The work queue (by purpose) of a job kind.
pub fn purpose(kind: JobKind) -> &'static str {
    match kind {
        JobKind::PaymentRequest => "risk",
        JobKind::PaymentQuery => "channel",
        JobKind::RefundExecute => "refunds",
        JobKind::WebhookDeliver => "webhooks",
        JobKind::PaymentTimeout | JobKind::OrderCheck | JobKind::ShipReminder => "timers",
    }
}

impl Router for JobRouter {
    async fn route(&self, m: &OutboxMessage) -> Result<Route, String> {
        let msg = &m.message;
        let job = Job::parse(&msg.kind, &msg.payload);
        // First publication only (not a retry or a deferral, which move the due time).
        // A redelivery the merchant asked for goes to its webhook only.
        if let Ok(Job::WebhookDeliver(job)) = &job
            && m.due_at == msg.scheduled_at
            && !job.redelivery
        {
            let event = self.store.event_body(&job.event_id).await.map_err(|e| e.to_string())?;
            return Ok(Route::Event { event_type: event.event_type, body: event.body });
        }
        // A message payq cannot read still goes to a worker, which dead-letters it with the
        // reason.
        Ok(Route::Work(job.map_or("timers", |job| purpose(job.kind()))))
    }
}
