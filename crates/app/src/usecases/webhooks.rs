//! Delivering events to the merchant's webhook, signed:
//! `Payq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook_secret, "<t>.<body>")>`
//! (one more `v1` per secret still valid after a rotation), and redelivering one on request.

use super::{Payq, StoreFault};
use crate::crypto;
use crate::delivery_gate::Admission;
use crate::jobs::{Job, JobKind, WebhookDeliverJob};
use payq_domain::{EventId, Merchant, Timestamp};
use payq_store::{StoreError, WebhookDelivery};

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The merchant answered 2xx now: the delivery to record with the message's completion
    /// (docs/architecture.md, "Webhooks in order").
    Sent(WebhookDelivery),
    /// The merchant answered 2xx on an earlier attempt (recorded then).
    Delivered,
    /// There is nothing to deliver to: the merchant has no webhook URL any more, or its
    /// event filter leaves this event's type out.
    NoEndpoint,
    /// The merchant did not answer 2xx in time; the reason.
    Failed(String),
    /// Not attempted: the merchant's delivery slots are all busy; try again after this
    /// long (not counted as an attempt).
    Throttled(std::time::Duration),
    /// Not attempted: an earlier event of the same order is still to be delivered, and
    /// one order's events reach the merchant in event-log order.
    NotYourTurn,
}

/// Where a delivery stands in its order's sequence of deliveries: the pending deliveries
/// about `key` with a smaller `ordinal` go first.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryTurn<'a> {
    pub key: &'a str,
    pub ordinal: i64,
}

impl Payq {
    /// Attempts to deliver `job`'s event; `attempt` counts from 1. With a `turn`, the
    /// delivery waits for the earlier ones of its order. The merchant's endpoint is looked
    /// at first: an event of a merchant without a webhook (or whose filter leaves it out)
    /// is done at once, without the ordering and delivery checks (in the distributed mode
    /// every event passes here). A redelivery is sent whatever the filter and earlier
    /// deliveries say.
    pub async fn deliver_webhook(
        &self,
        job: &WebhookDeliverJob,
        attempt: u32,
        turn: Option<DeliveryTurn<'_>>,
    ) -> Result<DeliveryOutcome, StoreFault> {
        let event_id = &job.event_id;
        let earlier = turn.map(|turn| (JobKind::WebhookDeliver.as_str(), turn.key, turn.ordinal));
        let context = self.store.delivery_context(event_id, earlier).await?;
        let event = context.event;
        let merchant_id = event.merchant_id;
        let Some(creds) = context.merchant else {
            return Ok(DeliveryOutcome::NoEndpoint);
        };
        let Some(url) = creds.merchant.webhook_url.as_deref() else {
            return Ok(DeliveryOutcome::NoEndpoint);
        };
        if !job.redelivery && !creds.merchant.wants(&event.event_type) {
            return Ok(DeliveryOutcome::NoEndpoint);
        }
        if context.earlier_pending {
            return Ok(DeliveryOutcome::NotYourTurn);
        }
        if !job.redelivery && context.delivered {
            return Ok(DeliveryOutcome::Delivered);
        }
        let body = event.body;
        // Checked again at every delivery: the policy may have changed since the URL was set,
        // and the client's resolver checks what a name resolves to now.
        if let Err(refused) = crate::url_policy::check_form(url, self.settings.webhook.allow_private) {
            metrics::counter!("payq_webhook_deliveries_total", "outcome" => "refused").increment(1);
            return Ok(DeliveryOutcome::Failed(refused.to_string()));
        }
        let _pass = match self.delivery_gate.admit(&merchant_id) {
            Admission::Go(pass) => pass,
            Admission::Wait(wait) => {
                metrics::counter!("payq_webhook_deliveries_total", "outcome" => "throttled").increment(1);
                return Ok(DeliveryOutcome::Throttled(wait));
            }
        };
        let now = Timestamp::now();
        let t = now.unix_seconds();
        let mut secrets = vec![creds.webhook_secret.as_str()];
        secrets.extend(creds.previous_webhook_secret.as_ref().and_then(|p| p.valid_at(now)));
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("payq-event-id", event_id.as_str())
            .header("payq-signature", crypto::signature_header_for_all(&secrets, t, body.as_bytes()))
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("payq_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                return Ok(DeliveryOutcome::Sent(WebhookDelivery {
                    event: event_id.clone(),
                    merchant: merchant_id,
                    attempts: attempt,
                }));
            }
            Ok(r) => format!("merchant answered {}", r.status()),
            Err(e) if e.is_timeout() => "merchant did not answer in time".to_owned(),
            Err(e) => format!("could not reach the merchant: {e}"),
        };
        metrics::counter!("payq_webhook_deliveries_total", "outcome" => "failed").increment(1);
        Ok(DeliveryOutcome::Failed(failure))
    }
}

/// Why an event could not be redelivered.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("event not found")]
    EventNotFound,
    /// The merchant has no webhook URL to deliver to.
    #[error("the merchant has no webhook_url; set one with PATCH /v1/merchants/{{id}}")]
    NoWebhook,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<StoreError> for RedeliverError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => RedeliverError::EventNotFound,
            e => RedeliverError::Store(e.into()),
        }
    }
}

impl Payq {
    /// Schedules one more delivery of the merchant's event `id`, now, even if it was
    /// delivered before or the merchant's filter leaves it out. It counts its attempts and
    /// retries on the schedule like any delivery.
    pub async fn redeliver_event(&self, merchant: &Merchant, id: &EventId) -> Result<(), RedeliverError> {
        self.store.merchant_event_body(&merchant.id, id).await?;
        if merchant.webhook_url.is_none() {
            return Err(RedeliverError::NoWebhook);
        }
        let mut tx = self.store.begin().await?;
        tx.schedule(
            Job::WebhookDeliver(WebhookDeliverJob { event_id: id.clone(), redelivery: true })
                .message(id.as_str(), Timestamp::now()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
