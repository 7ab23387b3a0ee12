//! payq's domain model: money with its currency, prefixed time-ordered ids, durations,
//! the order and refund state machines, per-merchant settings and event types.
//!
//! Pure code: no I/O, no async runtime, no database. Everything here is parsed once at the
//! edge and then trusted by the layers above.

pub mod channel;
pub mod close_reason;
pub mod crypto;
pub mod duration;
pub mod event;
pub mod ids;
pub mod model;
pub mod money;
pub mod order;
pub mod payment;
pub mod reconciliation;
pub mod refund;
pub mod settings;
pub mod timestamp;

pub use channel::{ChannelName, UnknownChannel};
pub use close_reason::CloseReason;
pub use duration::{DurationError, HumanDuration};
pub use event::EventType;
pub use ids::{
    DeadLetterId, DiscrepancyId, EventId, IdError, MerchantId, MessageId, OrderId, PaymentId, ReconciliationId,
    RefundId,
};
pub use model::{
    AlipayChannel, Event, InventoryLevel, Merchant, MerchantChannels, NextAction, Order, OrderItem, PayProduct,
    Payment, PaymentStatus, Refund, WechatPayChannel,
};
pub use money::{Currency, Money, MoneyError};
pub use order::{OrderEvent, OrderStatus, TransitionError};
pub use payment::{PaymentEvent, PaymentTransitionError};
pub use reconciliation::{
    BillChannel, BillDate, Discrepancy, DiscrepancyKind, ReconciliationRun, RunCounts, RunStatus, RunTotals,
};
pub use refund::{RefundEvent, RefundStatus, RefundTransitionError};
pub use settings::MerchantSettings;
pub use timestamp::Timestamp;
