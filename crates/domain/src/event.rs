//! The types of event payq records in a merchant's event log and announces to other systems.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An event type; the wire name is also the RabbitMQ routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.paying")]
    OrderPaying,
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "order.closed")]
    OrderClosed,
    #[serde(rename = "order.check_passed")]
    OrderCheckPassed,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.shipped")]
    OrderShipped,
    #[serde(rename = "merchant.ship_reminder")]
    ShipReminder,
    #[serde(rename = "refund.created")]
    RefundCreated,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    #[serde(rename = "refund.failed")]
    RefundFailed,
    #[serde(rename = "refund.rejected")]
    RefundRejected,
    #[serde(rename = "payment.late_refunded")]
    PaymentLateRefunded,
    #[serde(rename = "risk.rejected")]
    RiskRejected,
    #[serde(rename = "reconciliation.completed")]
    ReconciliationCompleted,
}

impl EventType {
    /// The wire name, e.g. `"order.created"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderPaying => "order.paying",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::OrderClosed => "order.closed",
            EventType::OrderCheckPassed => "order.check_passed",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderShipped => "order.shipped",
            EventType::ShipReminder => "merchant.ship_reminder",
            EventType::RefundCreated => "refund.created",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::RefundFailed => "refund.failed",
            EventType::RefundRejected => "refund.rejected",
            EventType::PaymentLateRefunded => "payment.late_refunded",
            EventType::RiskRejected => "risk.rejected",
            EventType::ReconciliationCompleted => "reconciliation.completed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for t in [EventType::OrderCreated, EventType::ShipReminder, EventType::PaymentLateRefunded] {
            assert_eq!(serde_json::to_value(t).ok(), Some(serde_json::Value::from(t.as_str())));
        }
    }
}
