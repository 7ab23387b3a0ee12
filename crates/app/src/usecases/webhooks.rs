//! Delivering events to the merchant's webhook, signed:
//! `Payq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook_secret, "<t>.<body>")>`.

use super::{Payq, StoreFault};
use crate::crypto;
use crate::delivery_gate::Admission;
use crate::jobs::JobKind;
use payq_domain::{EventId, Timestamp};
use payq_store::StoreError;

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The merchant answered 2xx (now or on an earlier attempt).
    Delivered,
    /// There is nothing to deliver to (the merchant has no webhook URL any more).
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
    /// Attempts to deliver event `event_id`; `attempt` counts from 1. With a `turn`, the
    /// delivery waits for the earlier ones of its order. The merchant's endpoint is looked
    /// at first: an event of a merchant without a webhook is done at once, without the
    /// ordering and delivery checks (in the distributed mode every event passes here).
    pub async fn deliver_webhook(
        &self,
        event_id: &EventId,
        attempt: u32,
        turn: Option<DeliveryTurn<'_>>,
    ) -> Result<DeliveryOutcome, StoreFault> {
        let (merchant_id, body) = self.store.event_body(event_id).await?;
        let creds = match self.store.merchant_with_credentials(&merchant_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Ok(DeliveryOutcome::NoEndpoint),
            Err(e) => return Err(e.into()),
        };
        let Some(url) = creds.merchant.webhook_url.as_deref() else {
            return Ok(DeliveryOutcome::NoEndpoint);
        };
        if let Some(turn) = turn
            && self.store.has_earlier_message(JobKind::WebhookDeliver.as_str(), turn.key, turn.ordinal).await?
        {
            return Ok(DeliveryOutcome::NotYourTurn);
        }
        if self.store.webhook_delivered(event_id).await? {
            return Ok(DeliveryOutcome::Delivered);
        }
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
        let t = Timestamp::now().unix_seconds();
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("payq-event-id", event_id.as_str())
            .header("payq-signature", crypto::signature_header(&creds.webhook_secret, t, body.as_bytes()))
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(r) if r.status().is_success() => {
                self.store.record_webhook_delivery(event_id, &merchant_id, attempt).await?;
                metrics::counter!("payq_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                return Ok(DeliveryOutcome::Delivered);
            }
            Ok(r) => format!("merchant answered {}", r.status()),
            Err(e) if e.is_timeout() => "merchant did not answer in time".to_owned(),
            Err(e) => format!("could not reach the merchant: {e}"),
        };
        metrics::counter!("payq_webhook_deliveries_total", "outcome" => "failed").increment(1);
        Ok(DeliveryOutcome::Failed(failure))
    }
}
