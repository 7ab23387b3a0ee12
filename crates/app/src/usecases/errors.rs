//! Why a use case did not happen: one error enum per use case (or per group of use cases
//! that can give exactly the same answers), so the compiler shows which answers an
//! operation can give and the HTTP edge maps each one exhaustively. The parts they share,
//! a database fault and a bad request value, are their own types.

use payq_channels::ChannelError;
use payq_domain::{RefundTransitionError, TransitionError};
use payq_store::StoreError;

/// The database did not do what a use case asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreFault {
    /// A concurrent change to the same resource won the race (a lost compare-and-set, a
    /// serialization failure); the resource is as the winner left it.
    #[error("{0}")]
    Contention(String),
    /// The database cannot take the request now (disk full, unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a broken row, a failed commit, a bug.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<StoreError> for StoreFault {
    /// A missing row is handled where it is read (only there is it known what was missing);
    /// reaching this, it is unexpected.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(d) => StoreFault::Contention(d),
            StoreError::Unavailable(d) => StoreFault::Unavailable(d),
            e @ (StoreError::NotFound
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::UnwritableSessionAttrs(_)
            | StoreError::CommitFailed(_)
            | StoreError::Db(_)
            | StoreError::Sqlite(_)
            | StoreError::Migrate(_)
            | StoreError::Io(_)) => StoreFault::Unexpected(anyhow::Error::new(e)),
        }
    }
}

impl From<serde_json::Error> for StoreFault {
    /// A value payq built itself that does not serialize: a bug, never the caller's fault.
    fn from(e: serde_json::Error) -> Self {
        StoreFault::Unexpected(e.into())
    }
}

impl StoreFault {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreFault::Contention(_) | StoreFault::Unavailable(_) => true,
            StoreFault::Unexpected(e) => e.downcast_ref::<StoreError>().is_some_and(StoreError::is_transient),
        }
    }
}

/// A request value that is malformed or outside its bounds.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Missing, empty or the wrong shape (`400 invalid_request`).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed but outside its bounds: amounts, durations, characters
    /// (`400 validation_failed`).
    #[error("{0}")]
    OutOfBounds(String),
}

/// Reading one resource of the merchant's.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// There is no such resource, or it is another merchant's; names the resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `create_order`.
#[derive(Debug, thiserror::Error)]
pub enum CreateOrderError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// The merchant order number names an order with other content.
    #[error("{0}")]
    OrderNoTaken(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `pay`.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// The channel named is not one payq has; names those it has.
    #[error("{0}")]
    UnknownChannel(String),
    #[error("order not found")]
    OrderNotFound,
    #[error("the order's payment deadline has passed")]
    DeadlinePassed,
    /// The order is not waiting for payment.
    #[error(transparent)]
    InvalidState(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `close`, `ship` and `cancel`: a merchant's change to one of its orders.
#[derive(Debug, thiserror::Error)]
pub enum OrderChangeError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("order not found")]
    OrderNotFound,
    /// The order's status does not allow the change.
    #[error(transparent)]
    InvalidState(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `create_refund`.
#[derive(Debug, thiserror::Error)]
pub enum CreateRefundError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("order not found")]
    OrderNotFound,
    /// The order is not paid (or has no payment to refund).
    #[error("{0}")]
    NotRefundable(String),
    /// More than is left to refund.
    #[error("{0}")]
    ExceedsRefundable(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `approve_refund` and `reject_refund`: the merchant's decision on a refund in review.
#[derive(Debug, thiserror::Error)]
pub enum ReviewRefundError {
    #[error("refund not found")]
    RefundNotFound,
    /// The refund is no longer in review.
    #[error(transparent)]
    InvalidState(#[from] RefundTransitionError),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// `create_merchant` and `put_inventory`: writes whose only refusal is a bad value.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// A step payq takes by itself: a job (payment request, query, timeout, refund execution,
/// post-payment check, ship reminder) or a channel's answer. The worker retries the
/// transient ones and dead-letters the rest.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Store(#[from] StoreFault),
    /// Stored state that payq's own rules say cannot be (a transition its state machine
    /// refuses, an amount out of bounds): retrying will not help.
    #[error("{0}")]
    Broken(String),
    /// Another holder may be making the same channel call until then (see
    /// docs/architecture.md, "One call per channel step"): try again after it.
    #[error("the channel call is held elsewhere until {0}")]
    Busy(payq_domain::Timestamp),
    /// The channel accepted the request and has not finished it (a refund `PROCESSING`):
    /// ask again then.
    #[error("the channel has not finished; asking again at {0}")]
    Unfinished(payq_domain::Timestamp),
}

impl ProcessError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Channel(ChannelError::Unavailable(_)) => true,
            ProcessError::Channel(ChannelError::Invalid(_)) | ProcessError::Broken(_) => false,
            ProcessError::Store(f) => f.is_transient(),
            ProcessError::Busy(_) | ProcessError::Unfinished(_) => true,
        }
    }
}

impl From<TransitionError> for ProcessError {
    fn from(e: TransitionError) -> Self {
        ProcessError::Broken(e.to_string())
    }
}

impl From<payq_domain::PaymentTransitionError> for ProcessError {
    fn from(e: payq_domain::PaymentTransitionError) -> Self {
        ProcessError::Broken(e.to_string())
    }
}

impl From<RefundTransitionError> for ProcessError {
    fn from(e: RefundTransitionError) -> Self {
        ProcessError::Broken(e.to_string())
    }
}

impl From<payq_domain::MoneyError> for ProcessError {
    fn from(e: payq_domain::MoneyError) -> Self {
        ProcessError::Broken(format!("stored amount: {e}"))
    }
}

/// `?` on a store call inside a use case: the store error becomes the use case's
/// [`StoreFault`] variant.
macro_rules! store_errors_into {
    ($($t:ident),+ $(,)?) => {$(
        impl From<StoreError> for $t {
            fn from(e: StoreError) -> Self {
                $t::Store(StoreFault::from(e))
            }
        }
    )+};
}

store_errors_into!(
    LookupError,
    CreateOrderError,
    PayError,
    OrderChangeError,
    CreateRefundError,
    ReviewRefundError,
    WriteError,
    ProcessError,
);

/// A [`LookupError`] of the resource a use case acts on becomes its not-found variant.
macro_rules! lookup_into {
    ($($t:ident :: $not_found:ident),+ $(,)?) => {$(
        impl From<LookupError> for $t {
            fn from(e: LookupError) -> Self {
                match e {
                    LookupError::NotFound(_) => $t::$not_found,
                    LookupError::Store(f) => $t::Store(f),
                }
            }
        }
    )+};
}

lookup_into!(
    PayError::OrderNotFound,
    OrderChangeError::OrderNotFound,
    CreateRefundError::OrderNotFound,
    ReviewRefundError::RefundNotFound,
);

impl From<OrderChangeError> for ProcessError {
    /// A change payq makes to an order by itself (the post-payment check's cancellation)
    /// is refused only when the stored order breaks payq's rules.
    fn from(e: OrderChangeError) -> Self {
        match e {
            OrderChangeError::Store(f) => ProcessError::Store(f),
            e @ (OrderChangeError::Input(_) | OrderChangeError::OrderNotFound | OrderChangeError::InvalidState(_)) => {
                ProcessError::Broken(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_races_and_storage_faults_are_retried_and_broken_state_is_not() {
        let transient = [
            ProcessError::Store(StoreError::Conflict("order changed".into()).into()),
            ProcessError::Store(StoreError::Unavailable("disk full".into()).into()),
            ProcessError::Channel(ChannelError::Unavailable("timeout".into())),
        ];
        assert!(transient.iter().all(ProcessError::is_transient));
        let permanent = [
            ProcessError::Store(StoreError::NotFound.into()),
            ProcessError::Store(StoreError::Corrupt("bad row".into()).into()),
            ProcessError::Channel(ChannelError::Invalid("bad instructions".into())),
            ProcessError::Broken("paid order without payment".into()),
        ];
        assert!(permanent.iter().all(|e| !e.is_transient()));
    }

    #[test]
    fn a_missing_resource_becomes_the_use_cases_not_found() {
        assert!(matches!(PayError::from(LookupError::NotFound("order")), PayError::OrderNotFound));
        assert!(matches!(ReviewRefundError::from(LookupError::NotFound("refund")), ReviewRefundError::RefundNotFound));
        let fault = OrderChangeError::from(LookupError::Store(StoreFault::Unavailable("down".into())));
        assert!(matches!(fault, OrderChangeError::Store(StoreFault::Unavailable(_))));
    }
}
