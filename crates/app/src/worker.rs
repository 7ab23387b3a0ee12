//! The worker: turns each message of the delay engine into the use case it stands for.

use crate::jobs::{self, PaymentQueryJob, PaymentRequestJob, PaymentTimeoutJob, RefundExecuteJob};
use crate::usecases::{AppError, Payq};
use payq_bus::{ClaimedMessage, Handler, HandlerError};
use serde::de::DeserializeOwned;

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

fn payload<T: DeserializeOwned>(msg: &ClaimedMessage) -> Result<T, HandlerError> {
    serde_json::from_str(&msg.payload)
        .map_err(|e| HandlerError::Permanent(format!("malformed {} payload: {e}", msg.kind)))
}

fn classify(e: AppError) -> HandlerError {
    if e.is_transient() {
        HandlerError::Transient(format!("{e:#}"))
    } else {
        HandlerError::Permanent(format!("{e:#}"))
    }
}

impl Handler for Worker {
    async fn handle(&self, msg: &ClaimedMessage) -> Result<(), HandlerError> {
        let result = match msg.kind.as_str() {
            jobs::PAYMENT_REQUEST => {
                let job: PaymentRequestJob = payload(msg)?;
                self.payq.request_payment(&job.payment_id).await
            }
            jobs::PAYMENT_TIMEOUT => {
                let job: PaymentTimeoutJob = payload(msg)?;
                self.payq.payment_timeout(&job.order_id).await
            }
            jobs::PAYMENT_QUERY => {
                let job: PaymentQueryJob = payload(msg)?;
                self.payq.query_payment(&job.payment_id, job.attempt).await
            }
            jobs::REFUND_EXECUTE => {
                let job: RefundExecuteJob = payload(msg)?;
                self.payq.execute_refund(&job.refund_id).await
            }
            other => {
                return Err(HandlerError::Permanent(format!(
                    "unknown message kind {other:?}"
                )));
            }
        };
        result.map_err(classify)
    }
}
