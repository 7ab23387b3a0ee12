//! Use cases: everything payq does, as methods of [`Payq`]. HTTP handlers and the worker
//! call these; each one reads state, applies the domain's transition function and commits
//! the change with its events and messages in one transaction.

mod follow_up;
mod inventory;
mod merchants;
mod orders;
mod payments;
mod refunds;
mod webhooks;

pub use merchants::{CreateMerchant, CreatedMerchant, create_merchant};
pub use orders::{CreateOrder, CreateOrderOutcome, PayOrder, ShipOrder};
pub use refunds::CreateRefund;
pub use webhooks::{DeliveryOutcome, DeliveryTurn};

use crate::channel::PaymentChannel;
use crate::config::Settings;
use crate::delivery_gate::DeliveryGate;
use crate::jobs::{self, Job};
use payq_domain::Timestamp;
use payq_domain::{EventType, Order, OrderEvent, Refund, RefundEvent, TransitionError};
use payq_store::{NewEvent, Store, StoreError, Tx};
use std::sync::Arc;

/// Why a use case did not happen. Each maps to one problem code at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    /// A value outside its bounds (amounts, durations, reminder counts, characters).
    #[error("{0}")]
    ValidationFailed(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    AmountExceedsRefundable(String),
    /// A concurrent change to the same resource won the race (a lost compare-and-set, a
    /// serialization failure); the resource is as the winner left it.
    #[error("{0}")]
    Contention(String),
    /// The database cannot take the request now (disk full, unreachable).
    #[error("{0}")]
    StorageUnavailable(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for AppError {
    /// Every store error has one meaning here: a missing row is handled where it is read
    /// (it names the resource), a lost race is contention, a storage fault is unavailability.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(d) => AppError::Contention(d),
            StoreError::Unavailable(d) => AppError::StorageUnavailable(d),
            e @ (StoreError::NotFound
            | StoreError::Corrupt(_)
            | StoreError::UnsupportedUrl(_)
            | StoreError::CommitFailed(_)
            | StoreError::Db(_)
            | StoreError::Sqlite(_)
            | StoreError::Migrate(_)
            | StoreError::Io(_)) => AppError::Unexpected(anyhow::Error::new(e)),
        }
    }
}

impl From<TransitionError> for AppError {
    fn from(e: TransitionError) -> Self {
        AppError::InvalidState(e.to_string())
    }
}

impl From<payq_domain::RefundTransitionError> for AppError {
    fn from(e: payq_domain::RefundTransitionError) -> Self {
        AppError::InvalidState(e.to_string())
    }
}

impl AppError {
    /// Whether retrying later may succeed (for the worker).
    pub fn is_transient(&self) -> bool {
        match self {
            AppError::Contention(_) | AppError::StorageUnavailable(_) => true,
            AppError::Unexpected(e) => e.downcast_ref::<StoreError>().is_none_or(StoreError::is_transient),
            AppError::NotFound(_)
            | AppError::InvalidRequest(_)
            | AppError::ValidationFailed(_)
            | AppError::InvalidState(_)
            | AppError::Conflict(_)
            | AppError::AmountExceedsRefundable(_) => false,
        }
    }
}

/// Result alias for use cases.
pub type AppResult<T> = Result<T, AppError>;

/// The use cases, with what they need.
#[derive(Clone)]
pub struct Payq {
    pub(crate) store: Store,
    pub(crate) channel: Arc<dyn PaymentChannel>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) http: reqwest::Client,
    pub(crate) delivery_gate: Arc<DeliveryGate>,
}

impl Payq {
    /// Use cases over `store`, paying through `channel`.
    pub fn new(store: Store, channel: Arc<dyn PaymentChannel>, settings: Arc<Settings>) -> Payq {
        // Redirects are never followed: a 3xx is a failed attempt, like any non-2xx.
        let timeout = settings.webhook.timeout.as_std();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none());
        if !settings.webhook.allow_private {
            // Names are checked against the addresses they resolve to at delivery time.
            builder = builder.dns_resolver(Arc::new(crate::url_policy::GuardedResolver));
        }
        let http = builder.build().unwrap_or_else(|e| {
            // Only a broken TLS setup fails here; never follow redirects even then.
            tracing::error!(error = %e, "could not build the webhook client; using a plain one");
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default()
        });
        let delivery_gate = Arc::new(DeliveryGate::new(settings.webhook.per_merchant_concurrency));
        Payq { store, channel, settings, http, delivery_gate }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

/// Applies `event` to the order's status through the state machine.
fn transition(order: &mut Order, event: OrderEvent) -> AppResult<()> {
    order.status = order.status.on(event)?;
    Ok(())
}

/// Applies `event` to the refund's status through the state machine.
fn transition_refund(refund: &mut Refund, event: RefundEvent) -> AppResult<()> {
    refund.status = refund.status.on(event)?;
    Ok(())
}

/// Appends an event carrying the order (and refund) as the API shows them.
async fn record(tx: &mut Tx, event_type: EventType, order: &Order, refund: Option<&Refund>) -> AppResult<()> {
    let mut data = serde_json::json!({ "order": order });
    if let Some(refund) = refund {
        data["refund"] = serde_json::to_value(refund).map_err(anyhow::Error::from)?;
    }
    publish(tx, event_type, order, data).await
}

/// Appends an event with `data` to the merchant's log and, if the merchant has a webhook
/// (or with RabbitMQ, always), schedules its delivery, ordered after the order's earlier
/// events, in the same transaction.
async fn publish(tx: &mut Tx, event_type: EventType, order: &Order, data: serde_json::Value) -> AppResult<()> {
    let (event, seq) = tx
        .insert_event(NewEvent { event_type, merchant_id: &order.merchant_id, order_id: Some(&order.id), data })
        .await?;
    // With RabbitMQ every event is announced on `payq.events`, so other systems see the
    // events of merchants without a webhook too.
    if tx.announces_all_events() || tx.merchant(&order.merchant_id).await?.webhook_url.is_some() {
        let mut delivery = Job::WebhookDeliver(jobs::WebhookDeliverJob { event_id: event.id })
            .message(order.id.as_str(), Timestamp::now());
        delivery.ordinal = Some(seq);
        tx.schedule(delivery).await?;
    }
    Ok(())
}

/// Writes the order, bumping its in-memory version to match the store.
async fn save(tx: &mut Tx, order: &mut Order) -> AppResult<()> {
    tx.update_order(order).await?;
    order.version += 1;
    Ok(())
}

/// An amount from a request, within its bounds (1 to 10^12 minor units).
fn amount(minor: i64, currency: payq_domain::Currency) -> AppResult<payq_domain::Money> {
    payq_domain::Money::new(minor, currency).map_err(|e| AppError::ValidationFailed(e.to_string()))
}

/// Checks free text from a request.
fn check_text(field: &str, value: Option<&str>, max: usize) -> AppResult<()> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(AppError::InvalidRequest(format!("{field} is longer than {max} characters")))
        }
        Some(v) if v.chars().any(char::is_control) => {
            Err(AppError::InvalidRequest(format!("{field} contains control characters")))
        }
        _ => Ok(()),
    }
}
