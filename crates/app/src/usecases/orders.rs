//! Orders: create, pay, close, ship, cancel.

use super::StoreFault;
use super::pay_products::Payer;
use super::{
    CreateOrderError, InputError, LookupError, OrderChangeError, PayError, Payq, ProcessError, check_text, record,
    save, transition,
};
use crate::crypto;
use crate::jobs::{Job, JobKind, PaymentRequestJob, PaymentTimeoutJob};
use payq_channels::sim::Simulate;
use payq_domain::{
    ChannelName, CloseReason, Currency, EventType, HumanDuration, Merchant, Money, Order, OrderEvent, OrderId,
    OrderItem, PayProduct, PaymentId, Timestamp,
};
use payq_store::{ChannelCall, NewOrder, NewPayment, StoreError};
use serde::{Deserialize, Serialize};

/// `POST /v1/orders` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// The merchant's own order number; unique per merchant.
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]+$")]
    pub merchant_order_no: String,
    /// Minor units of `currency`, e.g. 1999 = 19.99 CNY.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    pub currency: Currency,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    #[schema(max_length = 128)]
    pub customer_id: Option<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub items: Vec<OrderItem>,
    /// Overrides the merchant's `payment_timeout` (100ms to 365d).
    pub payment_timeout: Option<HumanDuration>,
}

/// Whether an order was created or an identical one already existed.
pub enum CreateOrderOutcome {
    Created(Order),
    Existing(Order),
}

/// `POST /v1/orders/{id}/pay` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayOrder {
    /// The payment channel: `"sim"` (built in), or `"alipay"` / `"wechatpay"` once the
    /// merchant has them set up.
    pub channel: String,
    /// How the buyer pays through a real channel (docs/channels.md, "Pay products");
    /// default: the channel's QR code.
    pub product: Option<PayProduct>,
    /// Who pays, as the product needs it.
    pub payer: Option<Payer>,
    /// Where the channel's page sends the buyer back (`web`, `wap`, `h5`).
    pub return_url: Option<String>,
    /// Instructions for the simulated channel.
    pub simulate: Option<Simulate>,
}

/// `POST /v1/orders/{id}/ship` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipOrder {
    pub carrier: String,
    pub tracking_no: String,
}

fn validate(req: &CreateOrder) -> Result<Money, InputError> {
    let no = req.merchant_order_no.as_str();
    if no.is_empty() || no.len() > 64 {
        return Err(InputError::Malformed("merchant_order_no must be 1 to 64 printable ASCII characters".into()));
    }
    if !no.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::OutOfBounds("merchant_order_no must be printable ASCII characters".into()));
    }
    let amount = super::amount(req.amount, req.currency)?;
    check_text("description", req.description.as_deref(), 500)?;
    check_text("customer_id", req.customer_id.as_deref(), 128)?;
    if req.items.len() > 100 {
        return Err(InputError::Malformed("at most 100 items".into()));
    }
    for item in &req.items {
        if item.sku.is_empty() || item.sku.len() > 64 {
            return Err(InputError::Malformed("item sku must be 1 to 64 characters".into()));
        }
        if item.sku.chars().any(char::is_control) {
            return Err(InputError::OutOfBounds("item sku must not contain control characters".into()));
        }
        if item.quantity == 0 {
            return Err(InputError::Malformed("item quantity must be at least 1".into()));
        }
    }
    if let Some(timeout) = req.payment_timeout {
        timeout.check_bounds().map_err(|e| InputError::OutOfBounds(format!("payment_timeout: {e}")))?;
    }
    Ok(amount)
}

impl Payq {
    /// Creates an order with its payment-timeout timer, in one transaction. The same
    /// `merchant_order_no` with the same content returns the existing order; with other
    /// content it is a conflict.
    pub async fn create_order(
        &self,
        merchant: &Merchant,
        req: CreateOrder,
    ) -> Result<CreateOrderOutcome, CreateOrderError> {
        let amount = validate(&req)?;
        let canonical = serde_json::to_vec(&req).map_err(StoreFault::from)?;
        let request_hash = crypto::sha256_hex(&canonical);
        let now = Timestamp::now();
        let timeout = req.payment_timeout.unwrap_or(merchant.settings.payment_timeout);
        let id = OrderId::generate();
        let mut tx = self.store.begin().await?;
        let inserted = tx
            .insert_order(NewOrder {
                id: &id,
                merchant_id: &merchant.id,
                merchant_order_no: &req.merchant_order_no,
                request_hash: &request_hash,
                amount: amount.minor(),
                currency: amount.currency(),
                description: req.description.as_deref(),
                customer_id: req.customer_id.as_deref(),
                items: &req.items,
                created_at: now,
                expires_at: now.plus_millis(timeout.as_millis()),
            })
            .await?;
        let Some(order) = inserted else {
            // The number is taken: a retry of the same request, or a conflicting reuse.
            let Some((existing, hash)) = tx.order_by_merchant_order_no(&merchant.id, &req.merchant_order_no).await?
            else {
                return Err(StoreFault::from(StoreError::Conflict(
                    "merchant_order_no taken by an order not visible yet; try again".into(),
                ))
                .into());
            };
            return if hash == request_hash {
                Ok(CreateOrderOutcome::Existing(existing))
            } else {
                Err(CreateOrderError::OrderNoTaken(format!(
                    "merchant_order_no {:?} already names order {} with other content",
                    req.merchant_order_no, existing.id
                )))
            };
        };
        record(&mut tx, EventType::OrderCreated, &order, None).await?;
        tx.schedule(
            Job::PaymentTimeout(PaymentTimeoutJob { order_id: order.id.clone() })
                .message(order.id.as_str(), order.expires_at),
        )
        .await?;
        tx.commit().await?;
        Ok(CreateOrderOutcome::Created(order))
    }

    /// The merchant's order.
    pub async fn order(&self, merchant: &Merchant, id: &OrderId) -> Result<Order, LookupError> {
        match self.store.order(&merchant.id, id).await {
            Err(StoreError::NotFound) => Err(LookupError::NotFound("order")),
            other => Ok(other?),
        }
    }

    /// Starts a payment attempt: the order becomes `paying` and the channel call is queued.
    pub async fn pay(&self, merchant: &Merchant, id: &OrderId, req: PayOrder) -> Result<Order, PayError> {
        let channel: ChannelName = req.channel.parse().map_err(|e: payq_domain::UnknownChannel| {
            PayError::UnknownChannel(format!("{e}; available: \"sim\", \"alipay\", \"wechatpay\""))
        })?;
        let set_up = match channel {
            ChannelName::Sim => true,
            ChannelName::Alipay => merchant.channels.alipay.is_some(),
            ChannelName::Wechatpay => merchant.channels.wechatpay.is_some(),
        };
        if !set_up {
            return Err(PayError::UnknownChannel(format!(
                "the merchant has no {channel} channel set up (PATCH /v1/merchants/{{id}} with channels.{channel})"
            )));
        }
        if channel.is_real() && req.simulate.is_some() {
            return Err(PayError::UnknownChannel("simulate applies to the sim channel only".into()));
        }
        let inline = channel.is_real();
        // A real channel's product and what it needs; the simulated channel's instructions.
        let (product, instructions) = if inline {
            let (product, details) =
                super::pay_products::check(merchant, channel, req.product, req.payer, req.return_url)?;
            (Some(product), Some(serde_json::to_string(&details).map_err(StoreFault::from)?))
        } else {
            if req.product.is_some() || req.payer.is_some() || req.return_url.is_some() {
                return Err(InputError::OutOfBounds(
                    "product, payer and return_url apply to real channels only".into(),
                )
                .into());
            }
            (None, req.simulate.map(|s| serde_json::to_string(&s)).transpose().map_err(StoreFault::from)?)
        };
        let mut tx = self.store.begin().await?;
        let mut order = self.owned(&mut tx, merchant, id).await?;
        if Timestamp::now() >= order.expires_at {
            return Err(PayError::DeadlinePassed);
        }
        if channel.is_real() && order.currency != payq_domain::Currency::Cny {
            return Err(PayError::UnknownChannel(format!("{channel} takes CNY, not {}", order.currency.code())));
        }
        transition(&mut order, OrderEvent::PayRequested)?;
        let payment_id = PaymentId::generate();
        let payment = tx
            .insert_payment(NewPayment {
                id: &payment_id,
                order: &order,
                channel,
                simulate: instructions.as_deref(),
                product,
                created_at: Timestamp::now(),
            })
            .await?;
        order.payment = Some(payment);
        save(&mut tx, &mut order).await?;
        record(&mut tx, EventType::OrderPaying, &order, None).await?;
        // A real channel's buyer needs its next step (the QR code) in this answer, so this
        // request starts the payment itself: it claims the start here, and the queued
        // request is due only once that claim has run out, to take over if this process
        // dies or the call fails (docs/architecture.md, "One call per channel step").
        let due = if inline {
            let lease_until = self.call_lease_until();
            tx.claim_channel_call(ChannelCall::Create(&payment_id), lease_until).await?;
            lease_until
        } else {
            Timestamp::now()
        };
        tx.schedule(
            Job::PaymentRequest(PaymentRequestJob { payment_id: payment_id.clone() }).message(payment_id.as_str(), due),
        )
        .await?;
        tx.commit().await?;
        if !inline {
            return Ok(order);
        }
        // The call runs on its own task: a buyer who gives up waiting, or an answer given
        // after `start_wait`, does not cut it off; the order shows the step once it is there.
        let payq = self.clone();
        let started = payment_id.clone();
        let call = tokio::spawn(async move {
            let result = payq.start_payment(&started, true).await;
            if result.as_ref().is_err_and(ProcessError::is_transient) {
                // The claim is released; the queued request need not wait for its lease.
                payq.retry_start_soon(&started).await;
            }
            result
        });
        match tokio::time::timeout(self.settings.payment.start_wait.as_std(), call).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(payment_id = %payment_id, error = %e, "could not start the payment at the channel yet");
            }
            Ok(Err(e)) => tracing::error!(payment_id = %payment_id, error = %e, "the payment's start failed"),
            Err(_) => tracing::info!(payment_id = %payment_id, "the channel is slow; answering before it does"),
        }
        match self.store.order(&merchant.id, id).await {
            Ok(started) => Ok(started),
            Err(_) => Ok(order),
        }
    }

    /// Closes an unpaid order at the merchant's request.
    pub async fn close(&self, merchant: &Merchant, id: &OrderId) -> Result<Order, OrderChangeError> {
        let mut tx = self.store.begin().await?;
        let mut order = self.owned(&mut tx, merchant, id).await?;
        transition(&mut order, OrderEvent::CloseRequested)?;
        order.closed_at = Some(Timestamp::now());
        order.close_reason = Some(CloseReason::MerchantClosed);
        save(&mut tx, &mut order).await?;
        tx.cancel_messages(JobKind::PaymentTimeout.as_str(), order.id.as_str()).await?;
        record(&mut tx, EventType::OrderClosed, &order, None).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Marks a paid order shipped.
    pub async fn ship(&self, merchant: &Merchant, id: &OrderId, req: ShipOrder) -> Result<Order, OrderChangeError> {
        for (field, value) in [("carrier", &req.carrier), ("tracking_no", &req.tracking_no)] {
            if value.trim().is_empty() {
                return Err(InputError::Malformed(format!("{field} must not be empty")).into());
            }
            check_text(field, Some(value), 128)?;
        }
        let mut tx = self.store.begin().await?;
        let mut order = self.owned(&mut tx, merchant, id).await?;
        transition(&mut order, OrderEvent::Shipped)?;
        order.shipped_at = Some(Timestamp::now());
        order.carrier = Some(req.carrier);
        order.tracking_no = Some(req.tracking_no);
        save(&mut tx, &mut order).await?;
        tx.cancel_messages(JobKind::ShipReminder.as_str(), order.id.as_str()).await?;
        record(&mut tx, EventType::OrderShipped, &order, None).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Cancels a paid order and refunds it in full.
    pub async fn cancel(
        &self,
        merchant: &Merchant,
        id: &OrderId,
        reason: Option<String>,
    ) -> Result<Order, OrderChangeError> {
        check_text("reason", reason.as_deref(), 200)?;
        let mut tx = self.store.begin().await?;
        let order = self.owned(&mut tx, merchant, id).await?;
        let reason = reason.map_or(CloseReason::MerchantCancelled, |words| CloseReason::parse(&words));
        let order = self.cancel_and_refund(&mut tx, order, reason).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Reads the order inside `tx`, refusing another merchant's.
    pub(crate) async fn owned(
        &self,
        tx: &mut payq_store::Tx,
        merchant: &Merchant,
        id: &OrderId,
    ) -> Result<Order, LookupError> {
        match tx.order(id).await {
            Ok(order) if order.merchant_id == merchant.id => Ok(order),
            Ok(_) | Err(StoreError::NotFound) => Err(LookupError::NotFound("order")),
            Err(e) => Err(e.into()),
        }
    }
}
