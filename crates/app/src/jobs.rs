//! The messages payq schedules for itself, as one typed [`Job`]: each is written in the
//! transaction of the change that causes it and handled by [`crate::worker`]. A new kind
//! is a new variant, and every `match` that must learn about it (handling, routing, lanes)
//! stops compiling until it does. The payloads are the JSON bodies documented in
//! docs/messages.md.

use payq_domain::{BillDate, EventId, OrderId, PaymentId, ReconciliationId, RefundId, Timestamp};
use payq_store::{Lane, NewMessage};
use serde::{Deserialize, Serialize};

/// The kind of a job, as stored and as the AMQP `type` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Run risk control, then start the payment at the channel.
    PaymentRequest,
    /// Close the order if it is still unpaid at `expires_at`.
    PaymentTimeout,
    /// Ask the channel about a payment whose callback has not come.
    PaymentQuery,
    /// Close an unpaid payment at its channel once the channel's rules allow (WeChat Pay:
    /// not within 5 minutes of its creation there).
    PaymentClose,
    /// Execute a refund (at the end of its review window, or now once approved).
    RefundExecute,
    /// The post-payment check: take the order's items from stock, or cancel and refund.
    OrderCheck,
    /// Remind the merchant to ship a paid order.
    ShipReminder,
    /// Deliver an event to the merchant's webhook (in event-log order per order).
    WebhookDeliver,
    /// A day's reconciliation: open a run per merchant and real channel, and set the next
    /// day's timer.
    ReconciliationDay,
    /// Download a channel's bill and match it (one run, one generation).
    ReconciliationRun,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 10] = [
        JobKind::PaymentRequest,
        JobKind::PaymentTimeout,
        JobKind::PaymentQuery,
        JobKind::PaymentClose,
        JobKind::RefundExecute,
        JobKind::OrderCheck,
        JobKind::ShipReminder,
        JobKind::WebhookDeliver,
        JobKind::ReconciliationDay,
        JobKind::ReconciliationRun,
    ];

    /// The kind's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PaymentRequest => "payment.request",
            JobKind::PaymentTimeout => "payment.timeout",
            JobKind::PaymentQuery => "payment.query",
            JobKind::PaymentClose => "payment.close",
            JobKind::RefundExecute => "refund.execute",
            JobKind::OrderCheck => "order.check",
            JobKind::ShipReminder => "order.ship_reminder",
            JobKind::WebhookDeliver => "webhook.deliver",
            JobKind::ReconciliationDay => "reconciliation.day",
            JobKind::ReconciliationRun => "reconciliation.run",
        }
    }

    /// The kind with this stored name, if any.
    pub fn parse(name: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The engine lane that runs it: deliveries to merchant endpoints apart from the rest.
    pub fn lane(self) -> Lane {
        match self {
            JobKind::WebhookDeliver => Lane::Deliveries,
            JobKind::PaymentRequest
            | JobKind::PaymentTimeout
            | JobKind::PaymentQuery
            | JobKind::PaymentClose
            | JobKind::RefundExecute
            | JobKind::OrderCheck
            | JobKind::ShipReminder
            | JobKind::ReconciliationDay
            | JobKind::ReconciliationRun => Lane::Work,
        }
    }
}

/// Payload of [`JobKind::PaymentRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentRequestJob {
    pub payment_id: PaymentId,
}

/// Payload of [`JobKind::PaymentTimeout`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentTimeoutJob {
    pub order_id: OrderId,
}

/// Payload of [`JobKind::PaymentQuery`]: `attempt` indexes the query schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentQueryJob {
    pub payment_id: PaymentId,
    pub attempt: usize,
}

/// Payload of [`JobKind::PaymentClose`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentCloseJob {
    pub payment_id: PaymentId,
}

/// Payload of [`JobKind::RefundExecute`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundExecuteJob {
    pub refund_id: RefundId,
}

/// Payload of [`JobKind::OrderCheck`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCheckJob {
    pub order_id: OrderId,
}

/// Payload of [`JobKind::ShipReminder`]: `attempt` counts from 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShipReminderJob {
    pub order_id: OrderId,
    pub attempt: u32,
}

/// Payload of [`JobKind::WebhookDeliver`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookDeliverJob {
    pub event_id: EventId,
    /// Asked for by the merchant (`POST /v1/events/{id}/redeliver`): delivered even if it
    /// was delivered before or the merchant's event filter leaves it out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redelivery: bool,
}

/// Payload of [`JobKind::ReconciliationDay`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconciliationDayJob {
    pub bill_date: BillDate,
}

/// Payload of [`JobKind::ReconciliationRun`]: a start of a run that a newer start
/// (`generation`) has replaced does nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconciliationRunJob {
    pub run_id: ReconciliationId,
    pub generation: i64,
}

/// One job with its payload.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Job {
    PaymentRequest(PaymentRequestJob),
    PaymentTimeout(PaymentTimeoutJob),
    PaymentQuery(PaymentQueryJob),
    PaymentClose(PaymentCloseJob),
    RefundExecute(RefundExecuteJob),
    OrderCheck(OrderCheckJob),
    ShipReminder(ShipReminderJob),
    WebhookDeliver(WebhookDeliverJob),
    ReconciliationDay(ReconciliationDayJob),
    ReconciliationRun(ReconciliationRunJob),
}

/// Why a stored message is not a job payq knows.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    #[error("malformed {kind} payload: {error}")]
    Malformed { kind: &'static str, error: serde_json::Error },
}

impl Job {
    /// The job's kind.
    pub fn kind(&self) -> JobKind {
        match self {
            Job::PaymentRequest(_) => JobKind::PaymentRequest,
            Job::PaymentTimeout(_) => JobKind::PaymentTimeout,
            Job::PaymentQuery(_) => JobKind::PaymentQuery,
            Job::PaymentClose(_) => JobKind::PaymentClose,
            Job::RefundExecute(_) => JobKind::RefundExecute,
            Job::OrderCheck(_) => JobKind::OrderCheck,
            Job::ShipReminder(_) => JobKind::ShipReminder,
            Job::WebhookDeliver(_) => JobKind::WebhookDeliver,
            Job::ReconciliationDay(_) => JobKind::ReconciliationDay,
            Job::ReconciliationRun(_) => JobKind::ReconciliationRun,
        }
    }

    /// Reads a stored message back into a job.
    pub fn parse(kind: &str, payload: &str) -> Result<Job, JobError> {
        let kind = JobKind::parse(kind).ok_or_else(|| JobError::UnknownKind(kind.to_owned()))?;
        let malformed = |error| JobError::Malformed { kind: kind.as_str(), error };
        Ok(match kind {
            JobKind::PaymentRequest => Job::PaymentRequest(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::PaymentTimeout => Job::PaymentTimeout(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::PaymentQuery => Job::PaymentQuery(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::PaymentClose => Job::PaymentClose(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::RefundExecute => Job::RefundExecute(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::OrderCheck => Job::OrderCheck(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::ShipReminder => Job::ShipReminder(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::WebhookDeliver => Job::WebhookDeliver(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::ReconciliationDay => Job::ReconciliationDay(serde_json::from_str(payload).map_err(malformed)?),
            JobKind::ReconciliationRun => Job::ReconciliationRun(serde_json::from_str(payload).map_err(malformed)?),
        })
    }

    /// The message that schedules this job about `key`, due at `due_at`.
    pub fn message(&self, key: &str, due_at: Timestamp) -> NewMessage {
        let kind = self.kind();
        NewMessage {
            kind: kind.as_str().to_owned(),
            key: Some(key.to_owned()),
            lane: kind.lane(),
            ordinal: None,
            // Serializing these plain structs cannot fail.
            payload: serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
            due_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_the_store_spells_in_sql_is_a_job_kind() {
        for kind in payq_store::JOB_KINDS_IN_SQL {
            assert!(JobKind::ALL.iter().any(|k| k.as_str() == kind), "the store's SQL names {kind}, no JobKind is");
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(JobKind::parse("nonsense"), None);
    }

    #[test]
    fn a_job_round_trips_through_its_message() {
        let job = Job::ShipReminder(ShipReminderJob { order_id: OrderId::generate(), attempt: 2 });
        let msg = job.message("k", Timestamp::now());
        assert_eq!(msg.lane, Lane::Work);
        let back = Job::parse(&msg.kind, &msg.payload.to_string()).expect("parses");
        assert!(matches!(back, Job::ShipReminder(ShipReminderJob { attempt: 2, .. })));
        assert!(matches!(Job::parse("order.check", "{}"), Err(JobError::Malformed { .. })));
        assert!(matches!(Job::parse("bogus", "{}"), Err(JobError::UnknownKind(_))));
    }
}
