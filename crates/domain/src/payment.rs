//! The payment state machine (docs/architecture.md): what may happen to one payment
//! attempt at its channel, as one allow-list, like the order's and the refund's.

use crate::model::PaymentStatus;

/// Something that happens to a payment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentEvent {
    /// The channel created the payment (its trade id and what the buyer does next are
    /// known); the payment still waits for the buyer.
    Started,
    /// The channel took the money.
    Succeeded,
    /// The attempt failed for good: refused by risk control or by the channel.
    Failed,
    /// The attempt was closed before it was paid: at its order's deadline, or the channel
    /// says the trade is closed or unknown.
    Closed,
}

/// A transition the payment state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payment that is {} cannot take {event:?}", from.as_str())]
pub struct PaymentTransitionError {
    /// The status the payment was in.
    pub from: PaymentStatus,
    /// The refused event.
    pub event: PaymentEvent,
}

impl PaymentStatus {
    /// Every status.
    pub const ALL: [PaymentStatus; 4] =
        [PaymentStatus::Pending, PaymentStatus::Succeeded, PaymentStatus::Failed, PaymentStatus::Closed];

    /// The single allow-list of payment transitions. A success is taken from any status
    /// but itself: the channel's word that money moved wins over what payq had decided
    /// (a payment closed or failed here and paid at the channel is a late payment, and is
    /// refunded).
    pub fn on(self, event: PaymentEvent) -> Result<PaymentStatus, PaymentTransitionError> {
        use PaymentEvent as E;
        use PaymentStatus as S;
        match (self, event) {
            (S::Pending, E::Started) => Ok(S::Pending),
            (S::Pending | S::Failed | S::Closed, E::Succeeded) => Ok(S::Succeeded),
            (S::Pending, E::Failed) => Ok(S::Failed),
            (S::Pending, E::Closed) => Ok(S::Closed),
            (from, event) => Err(PaymentTransitionError { from, event }),
        }
    }

    /// Whether the attempt has its final answer from payq's side (only a late success at
    /// the channel can still change a closed or failed one).
    pub fn is_settled(self) -> bool {
        self != PaymentStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentEvent as E;
    use PaymentStatus as S;

    const EVENTS: [PaymentEvent; 4] = [E::Started, E::Succeeded, E::Failed, E::Closed];

    #[test]
    fn every_status_event_pair() {
        for from in S::ALL {
            for ev in EVENTS {
                let want = match (from, ev) {
                    (S::Pending, E::Started) => Some(S::Pending),
                    (S::Pending, E::Succeeded) | (S::Failed, E::Succeeded) | (S::Closed, E::Succeeded) => {
                        Some(S::Succeeded)
                    }
                    (S::Pending, E::Failed) => Some(S::Failed),
                    (S::Pending, E::Closed) => Some(S::Closed),
                    _ => None,
                };
                assert_eq!(from.on(ev).ok(), want, "{} + {ev:?}", from.as_str());
                if want.is_none() {
                    assert_eq!(from.on(ev), Err(PaymentTransitionError { from, event: ev }));
                }
            }
        }
    }

    #[test]
    fn a_success_is_final() {
        for ev in EVENTS {
            assert!(S::Succeeded.on(ev).is_err(), "{ev:?}");
        }
    }
}
