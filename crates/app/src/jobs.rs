//! The messages payq schedules for itself: their kinds and JSON payloads. Each is written
//! in the transaction of the change that causes it and handled by [`crate::worker`].

use payq_domain::{EventId, OrderId, PaymentId, RefundId, Timestamp};
use payq_store::NewMessage;
use serde::{Deserialize, Serialize};

/// Run risk control, then start the payment at the channel.
pub const PAYMENT_REQUEST: &str = "payment.request";
/// Close the order if it is still unpaid at `expires_at`.
pub const PAYMENT_TIMEOUT: &str = "payment.timeout";
/// Ask the channel about a payment whose callback has not come.
pub const PAYMENT_QUERY: &str = "payment.query";
/// Execute a refund (at the end of its review window, or now once approved).
pub const REFUND_EXECUTE: &str = "refund.execute";
/// The post-payment check: take the order's items from stock, or cancel and refund.
pub const ORDER_CHECK: &str = "order.check";
/// Remind the merchant to ship a paid order.
pub const SHIP_REMINDER: &str = "order.ship_reminder";
/// Deliver an event to the merchant's webhook (in event-log order per order).
pub const WEBHOOK_DELIVER: &str = "webhook.deliver";

/// Payload of [`PAYMENT_REQUEST`].
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentRequestJob {
    pub payment_id: PaymentId,
}

/// Payload of [`PAYMENT_TIMEOUT`].
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentTimeoutJob {
    pub order_id: OrderId,
}

/// Payload of [`PAYMENT_QUERY`]: `attempt` indexes the query schedule.
#[derive(Debug, Serialize, Deserialize)]
pub struct PaymentQueryJob {
    pub payment_id: PaymentId,
    pub attempt: usize,
}

/// Payload of [`REFUND_EXECUTE`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RefundExecuteJob {
    pub refund_id: RefundId,
}

/// Payload of [`ORDER_CHECK`].
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderCheckJob {
    pub order_id: OrderId,
}

/// Payload of [`SHIP_REMINDER`]: `attempt` counts from 1.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShipReminderJob {
    pub order_id: OrderId,
    pub attempt: u32,
}

/// Payload of [`WEBHOOK_DELIVER`].
#[derive(Debug, Serialize, Deserialize)]
pub struct WebhookDeliverJob {
    pub event_id: EventId,
}

/// Builds a message of `kind` about `key`, due at `due_at`.
pub fn message<T: Serialize>(kind: &str, key: &str, payload: &T, due_at: Timestamp) -> NewMessage {
    NewMessage {
        kind: kind.to_owned(),
        key: Some(key.to_owned()),
        ordinal: None,
        payload: serde_json::to_value(payload).unwrap_or(serde_json::Value::Null),
        due_at,
    }
}
