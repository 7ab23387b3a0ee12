//! payq's message transports: the delay engine on the SQL store ([`store_engine`]) and
//! RabbitMQ ([`rabbit`]: an outbox relay and consumers). Handlers do not know which transport delivered a message: they get a
//! [`ClaimedMessage`] and answer with a [`HandlerError`] kind on failure.

pub mod lifeline;
pub mod rabbit;
pub mod store_engine;

pub use lifeline::Lifeline;
pub use payq_store::{ClaimedMessage, WebhookDelivery};
pub use store_engine::{EngineConfig, Step, StoreEngine};

use std::future::Future;

/// Why handling a message failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later (a timeout, a database hiccup, a channel 5xx): retry with back-off.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed as is (an unknown kind, a malformed payload): dead-letter at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Failed; try again after exactly `delay` (the handler keeps its own schedule, e.g.
    /// webhook retries). Not limited by the engine's attempt limit.
    #[error("retry in {delay:?}: {error}")]
    RetryAfter { delay: std::time::Duration, error: String },
    /// Not this message's turn yet (an earlier one of the same key is pending): run it again
    /// after `0`, without counting an attempt.
    #[error("deferred for {0:?}")]
    Defer(std::time::Duration),
}

/// What handling a message did, besides its own effects (committed already): a webhook
/// delivery is recorded with the message's completion, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done; nothing more to record.
    Done,
    /// The message delivered an event to its merchant's webhook.
    Delivered(WebhookDelivery),
}

/// Handles one message. Must be idempotent: re-read state, apply the transition, and treat
/// a stale or repeated message as done.
pub trait Handler: Send + Sync + 'static {
    /// Handles `msg`; `Ok` means its effect has committed.
    fn handle(&self, msg: &ClaimedMessage) -> impl Future<Output = Result<Handled, HandlerError>> + Send;
}
