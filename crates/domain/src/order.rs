//! The order state machine (docs/architecture.md), as one transition function.
//!
//! ```text
//! pending_payment --pay--> paying --success--> paid --ship--> shipped
//!       | close/timeout      | timeout / fail->pending   | cancel      | full refund
//!       v                    v                           v             v
//!     closed               closed                    cancelled      refunded
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paying,
    Paid,
    Shipped,
    Closed,
    Cancelled,
    Refunded,
}

/// Something that happens to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderEvent {
    /// The customer asked to pay; the channel is about to be called.
    PayRequested,
    /// The channel reports the payment succeeded.
    PaymentSucceeded,
    /// The payment attempt failed (channel or risk); the order can be paid again.
    PaymentFailed,
    /// The payment deadline passed with no payment.
    Expired,
    /// The merchant closed the unpaid order.
    CloseRequested,
    /// The merchant shipped the goods.
    Shipped,
    /// The merchant cancelled, or the post-payment check failed; a full refund follows.
    Cancelled,
    /// Refunds now cover the whole amount paid.
    FullyRefunded,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from} cannot take {event:?}")]
pub struct TransitionError {
    /// The status the order was in.
    pub from: OrderStatus,
    /// The refused event.
    pub event: OrderEvent,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paying,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Closed,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    /// The single allow-list of order transitions.
    pub fn on(self, event: OrderEvent) -> Result<OrderStatus, TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        match (self, event) {
            (S::PendingPayment, E::PayRequested) => Ok(S::Paying),
            (S::Paying, E::PaymentSucceeded) => Ok(S::Paid),
            (S::Paying, E::PaymentFailed) => Ok(S::PendingPayment),
            (S::PendingPayment | S::Paying, E::Expired) => Ok(S::Closed),
            (S::PendingPayment, E::CloseRequested) => Ok(S::Closed),
            (S::Paid, E::Shipped) => Ok(S::Shipped),
            (S::Paid, E::Cancelled) => Ok(S::Cancelled),
            (S::Paid | S::Shipped, E::FullyRefunded) => Ok(S::Refunded),
            (from, event) => Err(TransitionError { from, event }),
        }
    }

    /// Whether no further transition can leave this status except refunds.
    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Closed | OrderStatus::Cancelled | OrderStatus::Refunded)
    }

    /// Whether money has been taken for the order (refunds are possible).
    pub fn is_paid(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Shipped)
    }

    /// The wire name, e.g. `"pending_payment"`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::Paying => "paying",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Closed => "closed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        OrderStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(40).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderEvent as E;
    use OrderStatus as S;
    use proptest::prelude::*;

    const EVENTS: [OrderEvent; 8] = [
        E::PayRequested,
        E::PaymentSucceeded,
        E::PaymentFailed,
        E::Expired,
        E::CloseRequested,
        E::Shipped,
        E::Cancelled,
        E::FullyRefunded,
    ];

    fn expected(from: OrderStatus, ev: OrderEvent) -> Option<OrderStatus> {
        Some(match (from, ev) {
            (S::PendingPayment, E::PayRequested) => S::Paying,
            (S::Paying, E::PaymentSucceeded) => S::Paid,
            (S::Paying, E::PaymentFailed) => S::PendingPayment,
            (S::PendingPayment, E::Expired) | (S::Paying, E::Expired) => S::Closed,
            (S::PendingPayment, E::CloseRequested) => S::Closed,
            (S::Paid, E::Shipped) => S::Shipped,
            (S::Paid, E::Cancelled) => S::Cancelled,
            (S::Paid, E::FullyRefunded) | (S::Shipped, E::FullyRefunded) => S::Refunded,
            _ => return None,
        })
    }

    #[test]
    fn every_status_event_pair() {
        let mut allowed = 0;
        for from in S::ALL {
            for ev in EVENTS {
                match (from.on(ev), expected(from, ev)) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from} + {ev:?}");
                        allowed += 1;
                    }
                    (Err(e), None) => assert_eq!(e, TransitionError { from, event: ev }),
                    (got, want) => panic!("{from} + {ev:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(allowed, 10);
    }

    #[test]
    fn terminal_statuses_accept_nothing() {
        for from in [S::Closed, S::Cancelled, S::Refunded] {
            assert!(from.is_terminal());
            assert!(EVENTS.iter().all(|ev| from.on(*ev).is_err()));
        }
    }

    #[test]
    fn status_strings_roundtrip() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::Value::from(s.as_str())));
        }
        assert!("PAID".parse::<OrderStatus>().is_err());
    }

    proptest! {
        #[test]
        fn random_event_sequences_stay_on_the_diagram(events in proptest::collection::vec(0usize..EVENTS.len(), 0..40)) {
            let mut status = S::PendingPayment;
            let mut was_paid = false;
            for i in events {
                let ev = EVENTS[i];
                if let Ok(next) = status.on(ev) {
                    prop_assert_eq!(Some(next), expected(status, ev));
                    // Money-bearing statuses are only reachable through a payment.
                    if next.is_paid() { prop_assert!(was_paid || status == S::Paying); }
                    if next == S::Paid { was_paid = true; }
                    // Closed is only reachable from unpaid statuses.
                    if next == S::Closed { prop_assert!(!status.is_paid()); }
                    status = next;
                }
            }
            prop_assert!(S::ALL.contains(&status));
        }
    }
}
