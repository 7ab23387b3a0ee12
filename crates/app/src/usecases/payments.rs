//! Payments after the request: risk control and the channel call, channel results
//! (callbacks and queries), missing callbacks, payment timeouts and late payments.

use super::{Payq, ProcessError, StoreFault, record, save, transition, update_payment};
use crate::jobs::{Job, JobKind, PaymentCloseJob, PaymentQueryJob, PaymentRequestJob};
use crate::risk;
use payq_channels::{ChannelError, ChannelStatus, PaymentRequest, StartDetails};
use payq_domain::{
    ChannelName, EventType, MerchantId, Money, Order, OrderEvent, OrderId, OrderStatus, PaymentEvent, PaymentId,
    PaymentStatus, RefundStatus, Timestamp,
};
use payq_store::{CallClaim, ChannelCall, PaymentRecord, PaymentStart, Tx};

impl Payq {
    /// Runs risk control on a requested payment, then starts it at the channel: the job's
    /// way in, which first claims the start (see [`Payq::start_payment`]).
    pub async fn request_payment(&self, payment_id: &PaymentId) -> Result<(), ProcessError> {
        self.start_payment(payment_id, false).await
    }

    /// Queues one more start of a payment whose start failed in the pay request, after the
    /// engine's back-off: the request queued with the payment is due only when the
    /// request's claim runs out. (If this cannot be written, that one still comes.)
    pub(crate) async fn retry_start_soon(&self, payment_id: &PaymentId) {
        let due = Timestamp::now().plus_millis(self.settings.engine.base_backoff.as_millis());
        let queued = async {
            let mut tx = self.store.begin().await?;
            tx.schedule(
                Job::PaymentRequest(PaymentRequestJob { payment_id: payment_id.clone() })
                    .message(payment_id.as_str(), due),
            )
            .await?;
            tx.commit().await
        };
        if let Err(e) = queued.await {
            tracing::warn!(payment_id = %payment_id, error = %e, "could not queue the payment's next start; it comes at the claim's end");
        }
    }

    /// When a claim on a channel call made now runs out.
    pub(crate) fn call_lease_until(&self) -> Timestamp {
        let lease = self.settings.payment.call_lease();
        Timestamp::now().plus_millis(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
    }

    /// Runs risk control on a requested payment, then creates it at the channel, once. What
    /// the start needs is read outside any transaction (committed state), so a start that
    /// passes writes nothing before the call: a real channel's create call is claimed first,
    /// in a transaction that checks the payment again under its order's lock (`claimed`
    /// when the pay request claimed it already), and only the claim's holder calls; a
    /// refusal is written in a transaction of its own ([`Payq::refuse_at_risk`]). A start
    /// held elsewhere is [`ProcessError::Busy`]; a start done already, or an attempt that
    /// ended, is a no-op. A failed call hands the claim back for the next try.
    pub(crate) async fn start_payment(&self, payment_id: &PaymentId, claimed: bool) -> Result<(), ProcessError> {
        let call = ChannelCall::Create(payment_id);
        let (payment, order) = self.store.payment_and_order(payment_id).await?;
        if !awaits_start(&payment, &order, payment_id) {
            return Ok(());
        }
        // The simulated channel needs no claim: its create is an upsert by payment id in
        // payq's own database, with no provider behind it to count or refuse a repeat, and
        // only the queued request makes it. Its hot path keeps its cost.
        let claims = payment.channel.is_real();
        if claims && !claimed {
            let mut tx = self.store.begin().await?;
            let payment = tx.payment(payment_id).await?;
            let order = tx.order(&payment.order_id).await?;
            if !awaits_start(&payment, &order, payment_id) {
                return Ok(());
            }
            match tx.claim_channel_call(call, self.call_lease_until()).await? {
                CallClaim::Claimed => {}
                CallClaim::Done => return Ok(()),
                CallClaim::HeldUntil(until) => return Err(ProcessError::Busy(until)),
            }
            tx.commit().await?;
        }
        if let Some(rule) = risk::check(&self.settings.risk, &self.store, &order).await? {
            return self.refuse_at_risk(payment_id, rule, claims).await;
        }

        // The `simulate` column keeps the sim channel's instructions, or a real channel's
        // start details.
        let instructions: Option<serde_json::Value> =
            payment.simulate.as_deref().map(serde_json::from_str).transpose().map_err(StoreFault::from)?;
        let details = match (&payment.product, &instructions) {
            (Some(_), Some(details)) => serde_json::from_value(details.clone()).map_err(StoreFault::from)?,
            _ => StartDetails::default(),
        };
        let request = PaymentRequest {
            payment_id: payment_id.clone(),
            amount: payment.amount,
            currency: payment.currency,
            expires_at: order.expires_at,
            subject: order.description.clone().unwrap_or_else(|| format!("Order {}", order.merchant_order_no)),
            instructions: if payment.product.is_none() { instructions } else { None },
            product: payment.product,
            details,
        };
        let started = match self.channel_for(payment.channel, &payment.merchant_id).await {
            Ok(channel) => channel.create_payment(request).await,
            Err(e) => Err(e),
        };
        let started = match started {
            Ok(started) => started,
            Err(ChannelError::Invalid(reason)) => {
                // Refused for good: the payment fails, and the claim stays until it ends.
                return self.apply_channel_status(payment_id, ChannelStatus::Failed { reason }).await;
            }
            Err(e) => {
                // The outcome is unknown: the next try asks again with the same payment
                // number, which the channel answers with the same payment.
                if claims {
                    self.store.release_channel_call(call).await?;
                }
                return Err(e.into());
            }
        };
        // The channel's callback may have been applied already (under load it can arrive
        // before this write): then the payment is settled and keeps its outcome (the start
        // is recorded only while the payment is still pending); a blind write of `Pending`
        // here would undo it, and the next query would take the paid order's success for a
        // late payment and refund it.
        let from = PaymentStatus::Pending;
        self.store
            .record_payment_start(PaymentStart {
                id: payment_id,
                from,
                to: from.on(PaymentEvent::Started)?,
                channel_txn_id: started.txn_id.as_deref(),
                next_action: started.next_action.as_ref(),
                finish: claims.then_some(call),
                first_query: self.query_message(payment_id, 0),
            })
            .await?;
        Ok(())
    }

    /// Fails a payment that risk control refused, with its events, under its order's lock,
    /// and finishes the start's channel claim (`claims`). A payment that moved on meanwhile
    /// keeps its state.
    async fn refuse_at_risk(
        &self,
        payment_id: &PaymentId,
        rule: risk::RiskRule,
        claims: bool,
    ) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let payment = tx.payment(payment_id).await?;
        let mut order = tx.order(&payment.order_id).await?;
        if !awaits_start(&payment, &order, payment_id) {
            return Ok(());
        }
        let reason = format!("risk:{}", rule.as_str());
        let failed = payment.status.on(PaymentEvent::Failed)?;
        update_payment(&mut tx, &mut order, payment_id, (payment.status, failed), None, Some(&reason)).await?;
        if claims {
            tx.finish_channel_call(ChannelCall::Create(payment_id)).await?;
        }
        transition(&mut order, OrderEvent::PaymentFailed)?;
        save(&mut tx, &mut order).await?;
        record(&mut tx, EventType::RiskRejected, &order, None).await?;
        record(&mut tx, EventType::PaymentFailed, &order, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn schedule_query(&self, tx: &mut Tx, payment_id: &PaymentId, attempt: usize) -> Result<(), StoreFault> {
        if let Some(query) = self.query_message(payment_id, attempt) {
            tx.schedule(query).await?;
        }
        Ok(())
    }

    /// The payment's query number `attempt`, due after its wait in the query schedule;
    /// `None` once the schedule is over.
    fn query_message(&self, payment_id: &PaymentId, attempt: usize) -> Option<payq_store::NewMessage> {
        let wait = self.settings.query_schedule().get(attempt).copied()?;
        Some(
            Job::PaymentQuery(PaymentQueryJob { payment_id: payment_id.clone(), attempt })
                .message(payment_id.as_str(), Timestamp::now().plus_millis(wait.as_millis())),
        )
    }

    /// Records what the channel says about a payment (from a callback or a query).
    /// Repeated and out-of-date answers change nothing; a success for an order that is no
    /// longer waiting for this payment is refunded.
    pub async fn apply_channel_status(
        &self,
        payment_id: &PaymentId,
        status: ChannelStatus,
    ) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let payment = tx.payment(payment_id).await?;
        let mut order = tx.order(&payment.order_id).await?;
        let current = order.payment.as_ref().is_some_and(|p| &p.id == payment_id);
        match status {
            ChannelStatus::Succeeded { txn_id } => {
                let Ok(succeeded) = payment.status.on(PaymentEvent::Succeeded) else {
                    return Ok(()); // duplicate
                };
                let change = (payment.status, succeeded);
                update_payment(&mut tx, &mut order, payment_id, change, Some(&txn_id), None).await?;
                if current && order.status == OrderStatus::Paying {
                    // The queries and the order's payment timeout end together.
                    tx.cancel_messages_of(&[
                        (JobKind::PaymentQuery.as_str(), payment_id.as_str()),
                        (JobKind::PaymentTimeout.as_str(), order.id.as_str()),
                    ])
                    .await?;
                    transition(&mut order, OrderEvent::PaymentSucceeded)?;
                    order.paid_at = Some(Timestamp::now());
                    save(&mut tx, &mut order).await?;
                    self.schedule_follow_up(&mut tx, &order).await?;
                    record(&mut tx, EventType::PaymentSucceeded, &order, None).await?;
                } else {
                    tx.cancel_messages(JobKind::PaymentQuery.as_str(), payment_id.as_str()).await?;
                    // Paid after the order closed (or for a superseded attempt): give it back.
                    let amount = Money::new(payment.amount, payment.currency)?;
                    let refund = self
                        .open_refund_of(
                            &mut tx,
                            &order,
                            payment_id,
                            amount,
                            Some("late_payment".into()),
                            RefundStatus::Processing,
                            Timestamp::now(),
                        )
                        .await?;
                    record(&mut tx, EventType::PaymentLateRefunded, &order, Some(&refund)).await?;
                }
            }
            ChannelStatus::Failed { reason } => {
                let Ok(failed) = payment.status.on(PaymentEvent::Failed) else {
                    return Ok(()); // settled already: a late or repeated failure changes nothing
                };
                update_payment(&mut tx, &mut order, payment_id, (payment.status, failed), None, Some(&reason)).await?;
                tx.cancel_messages(JobKind::PaymentQuery.as_str(), payment_id.as_str()).await?;
                if current && order.status == OrderStatus::Paying {
                    transition(&mut order, OrderEvent::PaymentFailed)?;
                    save(&mut tx, &mut order).await?;
                    record(&mut tx, EventType::PaymentFailed, &order, None).await?;
                }
            }
            ChannelStatus::Closed | ChannelStatus::NotFound => {
                if let Ok(closed) = payment.status.on(PaymentEvent::Closed) {
                    tx.update_payment(payment_id, payment.status, closed, None, None).await?;
                    tx.cancel_messages(JobKind::PaymentQuery.as_str(), payment_id.as_str()).await?;
                }
            }
            ChannelStatus::Pending => return Ok(()),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queries the channel about a payment whose callback has not come, and schedules the
    /// next query if it is still pending. One query of a payment at a time: the call is
    /// claimed first.
    pub async fn query_payment(&self, payment_id: &PaymentId, attempt: usize) -> Result<(), ProcessError> {
        let payment = self.store.payment(payment_id).await?;
        if payment.status != PaymentStatus::Pending {
            return Ok(());
        }
        // The simulated channel answers from payq's own database: no claim (as for its create).
        let call = payment.channel.is_real().then_some(ChannelCall::Query(payment_id));
        self.claim_call(call).await?;
        let queried = async {
            let status =
                self.channel_for(payment.channel, &payment.merchant_id).await?.query_payment(payment_id).await?;
            if status == ChannelStatus::Pending || status == ChannelStatus::NotFound {
                let mut tx = self.store.begin().await?;
                self.schedule_query(&mut tx, payment_id, attempt + 1).await?;
                tx.commit().await?;
                return Ok(());
            }
            self.apply_channel_status(payment_id, status).await
        };
        self.release_after(call, queried.await).await
    }

    /// Claims `call` in a transaction of its own: `Busy` while another holder may be
    /// making it. (Only calls that are released after use go through here.)
    pub(crate) async fn claim_call(&self, call: Option<ChannelCall<'_>>) -> Result<(), ProcessError> {
        let Some(call) = call else {
            return Ok(());
        };
        let mut tx = self.store.begin().await?;
        let claim = tx.claim_channel_call(call, self.call_lease_until()).await?;
        tx.commit().await?;
        match claim {
            CallClaim::Claimed | CallClaim::Done => Ok(()),
            CallClaim::HeldUntil(until) => Err(ProcessError::Busy(until)),
        }
    }

    /// Hands `call` back once its outcome (`result`) is recorded or failed.
    pub(crate) async fn release_after<T>(
        &self,
        call: Option<ChannelCall<'_>>,
        result: Result<T, ProcessError>,
    ) -> Result<T, ProcessError> {
        let Some(call) = call else {
            return result;
        };
        let released = self.store.release_channel_call(call).await;
        let value = result?;
        released?;
        Ok(value)
    }

    /// At the payment deadline: closes an unpaid order. If a payment is in flight, the
    /// channel is asked first; a paid order is never closed.
    pub async fn payment_timeout(&self, order_id: &OrderId) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let order = tx.order(order_id).await?;
        tx.commit().await?;
        let in_flight = order.payment.as_ref().filter(|p| p.status == PaymentStatus::Pending);
        // A channel that forbids closing this payment yet: the order closes now, and a
        // `payment.close` closes the trade at the channel once its rules allow.
        let mut close_later = None;
        if order.status == OrderStatus::Paying
            && let Some(payment) = in_flight
        {
            close_later = self.earliest_channel_close(&payment.id, payment.channel).await?;
            if self.ask_and_close(&payment.id, payment.channel, &order.merchant_id, close_later.is_none()).await? {
                return Ok(()); // paid after all
            }
        }
        let mut tx = self.store.begin().await?;
        let mut order = tx.order(order_id).await?;
        if !matches!(order.status, OrderStatus::PendingPayment | OrderStatus::Paying) {
            return Ok(()); // paid, closed or cancelled meanwhile
        }
        if let Some((p, closed)) =
            order.payment.as_ref().and_then(|p| Some((p, p.status.on(PaymentEvent::Closed).ok()?)))
        {
            // The channel call has not been made yet (or the channel never saw it, or its
            // trade closes later): a success reported from now on is a late payment.
            tx.update_payment(&p.id, p.status, closed, None, None).await?;
            if let Some(at) = close_later {
                tx.schedule(Job::PaymentClose(PaymentCloseJob { payment_id: p.id.clone() }).message(p.id.as_str(), at))
                    .await?;
            }
        }
        transition(&mut order, OrderEvent::Expired)?;
        order.closed_at = Some(Timestamp::now());
        order.close_reason = Some(payq_domain::CloseReason::Timeout);
        save(&mut tx, &mut order).await?;
        let order = tx.order(order_id).await?;
        record(&mut tx, EventType::OrderClosed, &order, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// When a payment may be closed at its channel, if not yet: WeChat Pay refuses to close
    /// a trade within `payment.wechatpay_close_after` (5 minutes) of its creation there,
    /// which is no later than when payq recorded the answer to the payment's start.
    async fn earliest_channel_close(
        &self,
        id: &PaymentId,
        channel: ChannelName,
    ) -> Result<Option<Timestamp>, ProcessError> {
        if channel != ChannelName::Wechatpay {
            return Ok(None);
        }
        let payment = self.store.payment(id).await?;
        let created = payment.updated_at.max(payment.created_at);
        let earliest = created.plus_millis(self.settings.payment.wechatpay_close_after.as_millis());
        Ok((Timestamp::now() < earliest).then_some(earliest))
    }

    /// Asks the channel about an unpaid payment and, unless it is settled there (or `close`
    /// is false), closes it; records the answer. One claimed call: a second delivery waits.
    /// Answers whether the payment turned out paid.
    async fn ask_and_close(
        &self,
        payment_id: &PaymentId,
        channel: ChannelName,
        merchant_id: &MerchantId,
        close: bool,
    ) -> Result<bool, ProcessError> {
        let call = channel.is_real().then_some(ChannelCall::Close(payment_id));
        self.claim_call(call).await?;
        let closed = async {
            let channel = self.channel_for(channel, merchant_id).await?;
            let mut status = channel.query_payment(payment_id).await?;
            let settled = matches!(status, ChannelStatus::Succeeded { .. } | ChannelStatus::Failed { .. });
            if !settled && !close {
                return Ok(false);
            }
            if !settled {
                status = channel.close_payment(payment_id).await?;
            }
            let paid = matches!(status, ChannelStatus::Succeeded { .. });
            self.apply_channel_status(payment_id, status).await?;
            Ok(paid)
        };
        self.release_after(call, closed.await).await
    }

    /// Closes at its channel a payment whose order closed before the channel allowed it
    /// (`payment.close`); a payment made meanwhile is refunded like any late payment.
    pub async fn close_at_channel(&self, payment_id: &PaymentId) -> Result<(), ProcessError> {
        let payment = self.store.payment(payment_id).await?;
        if payment.status == PaymentStatus::Succeeded {
            return Ok(());
        }
        self.ask_and_close(payment_id, payment.channel, &payment.merchant_id, true).await.map(|_| ())
    }
}

/// Whether the attempt still waits for its start: pending, its order's current payment
/// while the order is paying, and not started at the channel yet.
fn awaits_start(payment: &PaymentRecord, order: &Order, id: &PaymentId) -> bool {
    let current = order.payment.as_ref().is_some_and(|p| &p.id == id);
    payment.status == PaymentStatus::Pending
        && order.status == OrderStatus::Paying
        && current
        && payment.next_action.is_none()
}
