//! Which RabbitMQ queue each of payq's messages goes to (distributed mode), and which are
//! events: the first delivery of an event to the merchant's webhook is published as the
//! event itself on `payq.events` (routing key = event type), so other systems subscribe to
//! the same stream payq's webhook queue reads.

use crate::jobs::{self, WebhookDeliverJob};
use payq_bus::rabbit::relay::{Route, Router};
use payq_store::{OutboxMessage, Store};

/// Routes payq's jobs to the work queues of SPEC §5.
pub struct JobRouter {
    store: Store,
}

impl JobRouter {
    /// A router that reads event bodies from `store`.
    pub fn new(store: Store) -> JobRouter {
        JobRouter { store }
    }
}

/// The work queue (by purpose) of a message kind.
pub fn purpose(kind: &str) -> &'static str {
    match kind {
        jobs::PAYMENT_REQUEST => "risk",
        jobs::PAYMENT_QUERY => "channel",
        jobs::REFUND_EXECUTE => "refunds",
        jobs::WEBHOOK_DELIVER => "webhooks",
        _ => "timers",
    }
}

impl Router for JobRouter {
    async fn route(&self, m: &OutboxMessage) -> Result<Route, String> {
        let msg = &m.message;
        // First publication only (not a retry or a deferral, which move the due time).
        if msg.kind == jobs::WEBHOOK_DELIVER && m.due_at == msg.scheduled_at {
            let job: WebhookDeliverJob =
                serde_json::from_str(&msg.payload).map_err(|e| format!("malformed webhook.deliver payload: {e}"))?;
            let (_, body) = self.store.event_body(&job.event_id).await.map_err(|e| e.to_string())?;
            let event_type = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_owned))
                .ok_or_else(|| format!("event {} has no type", job.event_id))?;
            return Ok(Route::Event { event_type, body });
        }
        Ok(Route::Work(purpose(&msg.kind)))
    }
}
