//! The worker: turns each message of the delay engine into the use case it stands for.

use crate::jobs::{Job, WebhookDeliverJob};
use crate::usecases::{DeliveryOutcome, DeliveryTurn};
use crate::usecases::{Payq, ProcessError, StoreFault};
use payq_bus::{ClaimedMessage, Handled, Handler, HandlerError};
use std::time::Duration;

/// Handles payq's messages with its use cases.
pub struct Worker {
    payq: Payq,
}

impl Worker {
    /// A worker running `payq`'s use cases.
    pub fn new(payq: Payq) -> Worker {
        Worker { payq }
    }
}

fn classify(e: ProcessError) -> HandlerError {
    if let ProcessError::Busy(until) | ProcessError::Unfinished(until) = e {
        let wait = until.millis().saturating_sub(payq_domain::Timestamp::now().millis()).max(1);
        return HandlerError::Defer(Duration::from_millis(u64::try_from(wait).unwrap_or(1)));
    }
    if e.is_transient() { HandlerError::Transient(format!("{e:#}")) } else { HandlerError::Permanent(format!("{e:#}")) }
}

/// How long a delivery waits when an earlier delivery of the same order is still pending.
const TURN_WAIT: Duration = Duration::from_millis(100);

impl Worker {
    /// Delivers one webhook, in event-log order per order, on the configured retry schedule;
    /// after the last retry the delivery is dead-lettered (and can be replayed).
    async fn deliver(&self, msg: &ClaimedMessage, job: WebhookDeliverJob) -> Result<Handled, HandlerError> {
        let turn = match (msg.key.as_deref(), msg.ordinal) {
            (Some(key), Some(ordinal)) => Some(DeliveryTurn { key, ordinal }),
            _ => None,
        };
        match self.payq.deliver_webhook(&job, msg.attempts, turn).await.map_err(|e: StoreFault| classify(e.into()))? {
            DeliveryOutcome::Sent(delivery) => Ok(Handled::Delivered(delivery)),
            DeliveryOutcome::Delivered | DeliveryOutcome::NoEndpoint => Ok(Handled::Done),
            DeliveryOutcome::NotYourTurn => Err(HandlerError::Defer(TURN_WAIT)),
            DeliveryOutcome::Throttled(wait) => Err(HandlerError::Defer(wait)),
            DeliveryOutcome::Failed(error) => {
                let schedule = self.payq.settings().webhook_retry_schedule();
                match schedule.get(msg.attempts.saturating_sub(1) as usize) {
                    Some(wait) => Err(HandlerError::RetryAfter { delay: wait.as_std(), error }),
                    None => Err(HandlerError::Permanent(format!(
                        "webhook not delivered after {} attempts: {error}",
                        msg.attempts
                    ))),
                }
            }
        }
    }
}

impl Handler for Worker {
    async fn handle(&self, msg: &ClaimedMessage) -> Result<Handled, HandlerError> {
        let job = Job::parse(&msg.kind, &msg.payload).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let result = match job {
            Job::PaymentRequest(job) => self.payq.request_payment(&job.payment_id).await,
            Job::PaymentTimeout(job) => self.payq.payment_timeout(&job.order_id).await,
            Job::PaymentQuery(job) => self.payq.query_payment(&job.payment_id, job.attempt).await,
            Job::PaymentClose(job) => self.payq.close_at_channel(&job.payment_id).await,
            Job::RefundExecute(job) => self.payq.execute_refund(&job.refund_id).await,
            Job::OrderCheck(job) => self.payq.post_pay_check(&job.order_id).await,
            Job::ShipReminder(job) => self.payq.ship_reminder(&job.order_id, job.attempt).await,
            Job::WebhookDeliver(job) => return self.deliver(msg, job).await,
            Job::ReconciliationDay(job) => self.payq.reconciliation_day(job.bill_date).await,
            Job::ReconciliationRun(job) => self.payq.run_reconciliation(&job.run_id, job.generation).await,
        };
        result.map(|()| Handled::Done).map_err(classify)
    }
}
