//! Refunds: request with a review window, approve, reject, execute through the channel,
//! and the full refunds of cancellation and late payment.

use super::{
    CreateRefundError, LookupError, OrderChangeError, Payq, ProcessError, ReviewRefundError, StoreFault, check_text,
    record, save, transition, transition_refund,
};
use crate::jobs::{Job, JobKind, RefundExecuteJob};
use payq_channels::RefundOutcome;
use payq_domain::{
    EventType, HumanDuration, Merchant, Money, Order, OrderEvent, OrderId, PaymentId, Refund, RefundEvent, RefundId,
    RefundStatus, Timestamp,
};
use payq_store::{CallClaim, ChannelCall, StoreError, Tx};
use serde::Deserialize;

/// `POST /v1/orders/{id}/refunds` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    /// Minor units of the order's currency.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    pub reason: Option<String>,
    /// Overrides the merchant's `refund_review` window.
    pub review: Option<HumanDuration>,
}

impl Payq {
    /// Requests a refund; it waits in `pending_review` until its window ends.
    pub async fn create_refund(
        &self,
        merchant: &Merchant,
        order_id: &OrderId,
        req: CreateRefund,
    ) -> Result<Refund, CreateRefundError> {
        check_text("reason", req.reason.as_deref(), 200)?;
        let mut tx = self.store.begin().await?;
        let order = self.owned(&mut tx, merchant, order_id).await?;
        if !order.status.is_paid() {
            return Err(CreateRefundError::NotRefundable(format!(
                "an order that is {} cannot be refunded",
                order.status
            )));
        }
        let amount = super::amount(req.amount, order.currency)?;
        let review = req.review.unwrap_or(merchant.settings.refund_review);
        let execute_at = Timestamp::now().plus_millis(review.as_millis());
        let refund =
            self.open_refund(&mut tx, &order, amount, req.reason, RefundStatus::PendingReview, execute_at).await?;
        record(&mut tx, EventType::RefundCreated, &order, Some(&refund)).await?;
        tx.commit().await?;
        Ok(refund)
    }

    /// The merchant's refund.
    pub async fn refund(&self, merchant: &Merchant, id: &RefundId) -> Result<Refund, LookupError> {
        match self.store.refund(&merchant.id, id).await {
            Err(StoreError::NotFound) => Err(LookupError::NotFound("refund")),
            other => Ok(other?),
        }
    }

    /// Ends the review window now: the refund executes at once.
    pub async fn approve_refund(&self, merchant: &Merchant, id: &RefundId) -> Result<Refund, ReviewRefundError> {
        let mut tx = self.store.begin().await?;
        let mut refund = owned_refund(&mut tx, merchant, id).await?;
        transition_refund(&mut refund, RefundEvent::Execute)?;
        refund.execute_at = Timestamp::now();
        refund.updated_at = refund.execute_at;
        tx.update_refund(&refund).await?;
        refund.version += 1;
        tx.cancel_messages(JobKind::RefundExecute.as_str(), refund.id.as_str()).await?;
        schedule_execute(&mut tx, &refund).await?;
        tx.commit().await?;
        Ok(refund)
    }

    /// Rejects a refund during review.
    pub async fn reject_refund(&self, merchant: &Merchant, id: &RefundId) -> Result<Refund, ReviewRefundError> {
        let mut tx = self.store.begin().await?;
        let mut refund = owned_refund(&mut tx, merchant, id).await?;
        transition_refund(&mut refund, RefundEvent::Reject)?;
        refund.updated_at = Timestamp::now();
        tx.update_refund(&refund).await?;
        refund.version += 1;
        tx.cancel_messages(JobKind::RefundExecute.as_str(), refund.id.as_str()).await?;
        let order = tx.order(&refund.order_id).await?;
        record(&mut tx, EventType::RefundRejected, &order, Some(&refund)).await?;
        tx.commit().await?;
        Ok(refund)
    }

    /// Executes a refund whose review is over: moves it to `processing`, asks the channel,
    /// and records the answer. Safe to run again at any point.
    pub async fn execute_refund(&self, id: &RefundId) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let mut refund = tx.refund(id).await?;
        if refund.status == RefundStatus::PendingReview {
            transition_refund(&mut refund, RefundEvent::Execute)?;
            refund.updated_at = Timestamp::now();
            tx.update_refund(&refund).await?;
            refund.version += 1;
        }
        let payment_id = tx.refund_payment_id(id).await?;
        if refund.status != RefundStatus::Processing {
            tx.commit().await?;
            return Ok(()); // already finished or rejected
        }
        // One execution at the channel at a time, and none once it is recorded.
        let call = ChannelCall::Refund(id);
        let claim = tx.claim_channel_call(call, self.call_lease_until()).await?;
        tx.commit().await?;
        match claim {
            CallClaim::Claimed => {}
            CallClaim::Done => return Ok(()),
            CallClaim::HeldUntil(until) => return Err(ProcessError::Busy(until)),
        }
        let executed = async {
            match self.store.payment(&payment_id).await {
                Ok(payment) => {
                    let channel = self.channel_for(payment.channel, &payment.merchant_id).await?;
                    Ok(channel.refund(&payment_id, &refund.id, refund.amount).await?)
                }
                // Nothing to give back through any channel.
                Err(payq_store::StoreError::NotFound) => {
                    Ok(RefundOutcome::Refused { reason: "unknown payment".into() })
                }
                Err(e) => Err(ProcessError::from(e)),
            }
        };
        match executed.await {
            // Not finished at the channel: the notification or the next ask settles it.
            Ok(RefundOutcome::Processing) => {
                let next = self.next_refund_query(refund.updated_at);
                self.release_after(Some(call), Err(ProcessError::Unfinished(next))).await
            }
            Ok(outcome) => self.finish_refund(id, outcome).await,
            Err(e) => self.release_after(Some(call), Err(e)).await,
        }
    }

    /// When to ask again about a refund the channel is still processing, on the payment
    /// query schedule counted from `processing_since` (its last wait repeated after the end).
    fn next_refund_query(&self, processing_since: Timestamp) -> Timestamp {
        let elapsed = Timestamp::now().millis().saturating_sub(processing_since.millis());
        let schedule = self.settings.query_schedule();
        let mut due = 0_i64;
        for wait in &schedule {
            due = due.saturating_add(wait.as_millis());
            if due > elapsed {
                return processing_since.plus_millis(due);
            }
        }
        let last = schedule.last().map_or(60_000, |w| w.as_millis()).max(1);
        Timestamp::now().plus_millis(last)
    }

    /// Records the channel's final answer to a refund's execution (from the execution or
    /// the channel's refund notification), and that the execution is done.
    pub(crate) async fn finish_refund(&self, id: &RefundId, outcome: RefundOutcome) -> Result<(), ProcessError> {
        if outcome == RefundOutcome::Processing {
            return Ok(()); // nothing final to record
        }
        let mut tx = self.store.begin().await?;
        tx.finish_channel_call(ChannelCall::Refund(id)).await?;
        let mut refund = tx.refund(id).await?;
        if refund.status != RefundStatus::Processing {
            return Ok(());
        }
        let mut order = tx.order(&refund.order_id).await?;
        refund.updated_at = Timestamp::now();
        let event = match outcome {
            RefundOutcome::Succeeded => {
                transition_refund(&mut refund, RefundEvent::ChannelSucceeded)?;
                let refunded = order
                    .refunded()
                    .and_then(|r| r.checked_add(Money::new(refund.amount, refund.currency)?))
                    .map_err(|e| ProcessError::Broken(format!("refund total: {e}")))?;
                order.amount_refunded = refunded.minor();
                if order.amount_refunded == order.amount && order.status.is_paid() {
                    transition(&mut order, OrderEvent::FullyRefunded)?;
                }
                save(&mut tx, &mut order).await?;
                EventType::RefundSucceeded
            }
            RefundOutcome::Refused { reason } => {
                transition_refund(&mut refund, RefundEvent::ChannelFailed)?;
                refund.failure_reason = Some(reason);
                EventType::RefundFailed
            }
            RefundOutcome::Processing => return Ok(()),
        };
        tx.update_refund(&refund).await?;
        refund.version += 1;
        record(&mut tx, event, &order, Some(&refund)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Cancels a paid order inside `tx` and starts a refund of everything not yet refunded
    /// (refunds still in review are rejected: the full refund replaces them).
    pub(crate) async fn cancel_and_refund(
        &self,
        tx: &mut Tx,
        mut order: Order,
        reason: payq_domain::CloseReason,
    ) -> Result<Order, OrderChangeError> {
        transition(&mut order, OrderEvent::Cancelled)?;
        order.cancelled_at = Some(Timestamp::now());
        let refund_reason = reason.as_str().to_owned();
        order.close_reason = Some(reason);
        save(tx, &mut order).await?;
        tx.cancel_messages(JobKind::ShipReminder.as_str(), order.id.as_str()).await?;
        tx.cancel_messages(JobKind::OrderCheck.as_str(), order.id.as_str()).await?;
        for mut pending in tx.refunds_pending_review(&order.id).await? {
            // Refunds in review can always be rejected.
            transition_refund(&mut pending, RefundEvent::Reject)
                .map_err(|e| StoreFault::Unexpected(anyhow::anyhow!("refund {}: {e}", pending.id)))?;
            pending.updated_at = Timestamp::now();
            tx.update_refund(&pending).await?;
            tx.cancel_messages(JobKind::RefundExecute.as_str(), pending.id.as_str()).await?;
            record(tx, EventType::RefundRejected, &order, Some(&pending)).await?;
        }
        record(tx, EventType::OrderCancelled, &order, None).await?;
        let held = tx.refunds_held(&order.id).await?;
        let left = order.amount - held;
        if left > 0 {
            // What is left of a paid order always fits its bounds and its payment.
            let unexpected = |e: String| StoreFault::Unexpected(anyhow::anyhow!("cancelling {}: {e}", order.id));
            let amount = Money::new(left, order.currency).map_err(|e| unexpected(e.to_string()))?;
            let refund = self
                .open_refund(tx, &order, amount, Some(refund_reason), RefundStatus::Processing, Timestamp::now())
                .await
                .map_err(|e| match e {
                    OpenRefundError::Store(f) => f,
                    e @ (OpenRefundError::NoPayment | OpenRefundError::Exceeds(_)) => unexpected(e.to_string()),
                })?;
            record(tx, EventType::RefundCreated, &order, Some(&refund)).await?;
        }
        Ok(order)
    }

    /// Inserts a refund after checking it fits in what is left to refund, and schedules its
    /// execution.
    pub(crate) async fn open_refund(
        &self,
        tx: &mut Tx,
        order: &Order,
        amount: Money,
        reason: Option<String>,
        status: RefundStatus,
        execute_at: Timestamp,
    ) -> Result<Refund, OpenRefundError> {
        let payment_id: PaymentId = order.payment.as_ref().map(|p| p.id.clone()).ok_or(OpenRefundError::NoPayment)?;
        self.open_refund_of(tx, order, &payment_id, amount, reason, status, execute_at).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn open_refund_of(
        &self,
        tx: &mut Tx,
        order: &Order,
        payment_id: &PaymentId,
        amount: Money,
        reason: Option<String>,
        status: RefundStatus,
        execute_at: Timestamp,
    ) -> Result<Refund, OpenRefundError> {
        // Refunds of one order are opened one at a time, so together they never exceed it.
        tx.lock_order(&order.id).await?;
        let held = Money::from_stored(tx.refunds_held(&order.id).await?, order.currency)
            .map_err(|e| StoreFault::Unexpected(anyhow::anyhow!("refunds of {}: {e}", order.id)))?;
        let paid = order.amount().map_err(|e| StoreFault::Unexpected(anyhow::anyhow!("order {}: {e}", order.id)))?;
        let left = payq_domain::refund::refundable(paid, held).unwrap_or(Money::zero(order.currency));
        if amount.minor() > left.minor() {
            return Err(OpenRefundError::Exceeds(format!("refund of {amount} exceeds the {left} left to refund")));
        }
        let now = Timestamp::now();
        let refund = Refund {
            id: RefundId::generate(),
            order_id: order.id.clone(),
            merchant_id: order.merchant_id.clone(),
            amount: amount.minor(),
            currency: amount.currency(),
            reason,
            status,
            execute_at,
            created_at: now,
            updated_at: now,
            failure_reason: None,
            version: 0,
        };
        tx.insert_refund(&refund, payment_id).await?;
        schedule_execute(tx, &refund).await?;
        Ok(refund)
    }
}

async fn schedule_execute(tx: &mut Tx, refund: &Refund) -> Result<(), StoreFault> {
    tx.schedule(
        Job::RefundExecute(RefundExecuteJob { refund_id: refund.id.clone() })
            .message(refund.id.as_str(), refund.execute_at),
    )
    .await?;
    Ok(())
}

async fn owned_refund(tx: &mut Tx, merchant: &Merchant, id: &RefundId) -> Result<Refund, LookupError> {
    match tx.refund(id).await {
        Ok(r) if r.merchant_id == merchant.id => Ok(r),
        Ok(_) | Err(StoreError::NotFound) => Err(LookupError::NotFound("refund")),
        Err(e) => Err(e.into()),
    }
}

/// Why a refund could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenRefundError {
    #[error("the order has no payment to refund")]
    NoPayment,
    #[error("{0}")]
    Exceeds(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<StoreError> for OpenRefundError {
    fn from(e: StoreError) -> Self {
        OpenRefundError::Store(e.into())
    }
}

impl From<OpenRefundError> for CreateRefundError {
    fn from(e: OpenRefundError) -> Self {
        match e {
            e @ OpenRefundError::NoPayment => CreateRefundError::NotRefundable(e.to_string()),
            OpenRefundError::Exceeds(d) => CreateRefundError::ExceedsRefundable(d),
            OpenRefundError::Store(f) => CreateRefundError::Store(f),
        }
    }
}

impl From<OpenRefundError> for ProcessError {
    fn from(e: OpenRefundError) -> Self {
        match e {
            e @ (OpenRefundError::NoPayment | OpenRefundError::Exceeds(_)) => ProcessError::Broken(e.to_string()),
            OpenRefundError::Store(f) => ProcessError::Store(f),
        }
    }
}
