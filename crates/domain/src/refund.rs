//! The refund state machine (docs/architecture.md) and the refundable-amount rule.

use crate::money::{Money, MoneyError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a refund is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    PendingReview,
    Processing,
    Succeeded,
    Failed,
    Rejected,
}

/// Something that happens to a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundEvent {
    /// The review window ended, or the merchant approved: execute now.
    Execute,
    /// The merchant rejected the refund during review.
    Reject,
    /// The channel confirmed the refund.
    ChannelSucceeded,
    /// The channel refused the refund for good.
    ChannelFailed,
}

/// A transition the refund state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a refund that is {from} cannot take {event:?}")]
pub struct RefundTransitionError {
    /// The status the refund was in.
    pub from: RefundStatus,
    /// The refused event.
    pub event: RefundEvent,
}

impl RefundStatus {
    /// Every status.
    pub const ALL: [RefundStatus; 5] = [
        RefundStatus::PendingReview,
        RefundStatus::Processing,
        RefundStatus::Succeeded,
        RefundStatus::Failed,
        RefundStatus::Rejected,
    ];

    /// The single allow-list of refund transitions.
    pub fn on(self, event: RefundEvent) -> Result<RefundStatus, RefundTransitionError> {
        use RefundEvent as E;
        use RefundStatus as S;
        match (self, event) {
            (S::PendingReview, E::Execute) => Ok(S::Processing),
            (S::PendingReview, E::Reject) => Ok(S::Rejected),
            (S::Processing, E::ChannelSucceeded) => Ok(S::Succeeded),
            (S::Processing, E::ChannelFailed) => Ok(S::Failed),
            (from, event) => Err(RefundTransitionError { from, event }),
        }
    }

    /// Whether the refund's amount counts against the refundable amount.
    pub fn holds_funds(self) -> bool {
        matches!(self, RefundStatus::PendingReview | RefundStatus::Processing | RefundStatus::Succeeded)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::PendingReview => "pending_review",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
            RefundStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundStatus {
    type Err = crate::order::UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RefundStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| crate::order::UnknownStatus(s.chars().take(40).collect()))
    }
}

/// What is left to refund on a payment of `paid` when `held` (succeeded plus in-flight
/// refunds) is already spoken for.
pub fn refundable(paid: Money, held: Money) -> Result<Money, MoneyError> {
    paid.checked_sub(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use RefundEvent as E;
    use RefundStatus as S;
    use proptest::prelude::*;

    const EVENTS: [RefundEvent; 4] = [E::Execute, E::Reject, E::ChannelSucceeded, E::ChannelFailed];

    #[test]
    fn every_status_event_pair() {
        for from in S::ALL {
            for ev in EVENTS {
                let want = match (from, ev) {
                    (S::PendingReview, E::Execute) => Some(S::Processing),
                    (S::PendingReview, E::Reject) => Some(S::Rejected),
                    (S::Processing, E::ChannelSucceeded) => Some(S::Succeeded),
                    (S::Processing, E::ChannelFailed) => Some(S::Failed),
                    _ => None,
                };
                assert_eq!(from.on(ev).ok(), want, "{from} + {ev:?}");
            }
        }
    }

    proptest! {
        /// Granting refunds only while they fit never lets refunds exceed the payment.
        #[test]
        fn refunds_never_exceed_payment(paid in 1i64..1_000_000, asks in proptest::collection::vec(1i64..400_000, 0..30)) {
            let paid = Money::new(paid, Currency::Cny).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut held = Money::zero(Currency::Cny);
            for ask in asks {
                let ask = Money::new(ask, Currency::Cny).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let left = refundable(paid, held).map_err(|e| TestCaseError::fail(e.to_string()))?;
                if ask.minor() <= left.minor() {
                    held = held.checked_add(ask).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                prop_assert!(held.minor() <= paid.minor());
            }
        }
    }
}
