//! Use cases: everything payq does, as methods of [`Payq`]. HTTP handlers and the worker
//! call these; each one reads state, applies the domain's transition function and commits
//! the change with its events and messages in one transaction.

mod channel_setup;
mod channels;
mod errors;
mod follow_up;
mod inventory;
mod merchants;
mod operations;
mod orders;
mod pay_products;
mod payments;
mod reconciliation;
mod refunds;
mod webhooks;

pub use channel_setup::{AlipayCredentials, ChannelsUpdate, SealedChannels, WechatPayCredentials};
pub use channels::NotificationError;
pub use errors::{
    CreateOrderError, CreateRefundError, InputError, LookupError, OrderChangeError, PayError, ProcessError,
    ReviewRefundError, StoreFault, WriteError,
};
pub use merchants::{
    CreateMerchant, CreatedMerchant, MerchantChangeError, RotateCredentials, RotatedCredentials, UpdateMerchant,
    create_merchant,
};
pub use operations::{AuthError, EventsError, Stats};
pub use orders::{CreateOrder, CreateOrderOutcome, PayOrder, ShipOrder};
pub use pay_products::{Payer, check_return_url};
pub use reconciliation::{ReconcileError, refresh_discrepancy_gauge};
pub use refunds::CreateRefund;
pub use webhooks::{DeliveryOutcome, DeliveryTurn, RedeliverError};

use crate::config::Settings;
use crate::delivery_gate::DeliveryGate;
use crate::jobs::{self, Job};
use payq_channels::PaymentChannel;
use payq_domain::Timestamp;
use payq_domain::{
    EventType, Order, OrderEvent, PaymentId, PaymentStatus, Refund, RefundEvent, RefundTransitionError, TransitionError,
};
use payq_store::{NewEvent, Store, Tx};
use std::sync::Arc;

/// The use cases, with what they need.
#[derive(Clone)]
pub struct Payq {
    pub(crate) store: Store,
    pub(crate) channel: Arc<dyn PaymentChannel>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) http: reqwest::Client,
    pub(crate) delivery_gate: Arc<DeliveryGate>,
    /// Seals channel credentials (`PAYQ_SECRETS_KEY`), when configured.
    pub(crate) secrets: Option<Arc<crate::secrets::SecretsKey>>,
    /// Calls Alipay gateways (each merchant's own).
    pub(crate) alipay: payq_channels::alipay::client::AlipayClient,
    /// Calls the WeChat Pay API (each merchant's own account).
    pub(crate) wechatpay: payq_channels::wechatpay::client::WechatPayClient,
    /// The base URL channels call back (`PAYQ_PUBLIC_URL`, else the listen address).
    pub(crate) public_url: Arc<str>,
}

impl Payq {
    /// Use cases over `store`, paying through `channel`.
    pub fn new(store: Store, channel: Arc<dyn PaymentChannel>, settings: Arc<Settings>) -> Payq {
        // Redirects are never followed: a 3xx is a failed attempt, like any non-2xx.
        let timeout = settings.webhook.timeout.as_std();
        let mut builder = payq_channels::http_client()
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
            payq_channels::http_client().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default()
        });
        let delivery_gate = Arc::new(DeliveryGate::new(settings.webhook.per_merchant_concurrency));
        // Checked when the settings were loaded; a key that does not read is no key.
        // Shared, not copied: the use cases are cloned for every request.
        let secrets =
            settings.secrets_key.as_deref().and_then(|k| crate::secrets::SecretsKey::from_hex(k).ok()).map(Arc::new);
        let channel_timeout = settings.payment.channel_timeout.as_std();
        let alipay = payq_channels::alipay::client::AlipayClient::new(channel_timeout).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not build the Alipay client; using defaults");
            payq_channels::alipay::client::AlipayClient::default()
        });
        let wechatpay = payq_channels::wechatpay::client::WechatPayClient::new(channel_timeout).unwrap_or_else(|e| {
            tracing::error!(error = %e, "could not build the WeChat Pay client; using defaults");
            payq_channels::wechatpay::client::WechatPayClient::default()
        });
        let public_url: Arc<str> =
            settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen)).into();
        Payq { store, channel, settings, http, delivery_gate, secrets, alipay, wechatpay, public_url }
    }

    /// Sets the base URL channels call back when `PAYQ_PUBLIC_URL` does not name one (the
    /// address the listener really bound).
    pub fn with_listen_address(mut self, base: String) -> Payq {
        if self.settings.public_url.is_none() {
            self.public_url = base.into();
        }
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The base URL of payq's public pages and of the notifications channels post.
    pub fn public_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

/// Applies `event` to the order's status through the state machine.
fn transition(order: &mut Order, event: OrderEvent) -> Result<(), TransitionError> {
    order.status = order.status.on(event)?;
    Ok(())
}

/// Applies `event` to the refund's status through the state machine.
fn transition_refund(refund: &mut Refund, event: RefundEvent) -> Result<(), RefundTransitionError> {
    refund.status = refund.status.on(event)?;
    Ok(())
}

/// Appends an event carrying the order (and refund) as the API shows them.
async fn record(tx: &mut Tx, event_type: EventType, order: &Order, refund: Option<&Refund>) -> Result<(), StoreFault> {
    let mut data = serde_json::json!({ "order": order });
    if let Some(refund) = refund {
        data["refund"] = serde_json::to_value(refund)?;
    }
    publish(tx, event_type, order, data).await
}

/// Appends an event with `data` to the order's merchant's log, with its delivery (see
/// [`announce`]).
async fn publish(tx: &mut Tx, event_type: EventType, order: &Order, data: serde_json::Value) -> Result<(), StoreFault> {
    let event = NewEvent { event_type, merchant_id: &order.merchant_id, order_id: Some(&order.id), data };
    announce(tx, event, order.id.as_str()).await
}

/// Appends an event to the merchant's log and, if the merchant has a webhook that
/// receives its type (or with RabbitMQ, always), schedules its delivery, keyed by `key`
/// and ordered after the earlier events of the same key, in the same transaction.
pub(crate) async fn announce(tx: &mut Tx, event: NewEvent<'_>, key: &str) -> Result<(), StoreFault> {
    let (event_type, merchant_id) = (event.event_type, event.merchant_id.clone());
    let event = tx.insert_event(event)?;
    // With RabbitMQ every event is announced on `payq.events`, so other systems see the
    // events of merchants without a webhook too.
    if tx.announces_all_events() || {
        let merchant = tx.merchant(&merchant_id).await?;
        merchant.webhook_url.is_some() && merchant.wants(event_type.as_str())
    } {
        let delivery = Job::WebhookDeliver(jobs::WebhookDeliverJob { event_id: event.id.clone(), redelivery: false })
            .message(key, Timestamp::now());
        tx.schedule_in_event_order(delivery, &event.id)?;
    }
    Ok(())
}

/// Moves one of the order's payment attempts from `from` to `to` in the store
/// ([`Tx::update_payment`]) and in the order's view of its current payment, so that the
/// event written next shows the change without reading the order back.
async fn update_payment(
    tx: &mut Tx,
    order: &mut Order,
    id: &PaymentId,
    (from, to): (PaymentStatus, PaymentStatus),
    channel_txn_id: Option<&str>,
    failure_reason: Option<&str>,
) -> Result<(), StoreFault> {
    tx.update_payment(id, from, to, channel_txn_id, failure_reason).await?;
    if let Some(current) = order.payment.as_mut().filter(|p| &p.id == id) {
        current.status = to;
        if let Some(txn) = channel_txn_id {
            current.channel_txn_id = Some(txn.to_owned());
        }
        current.failure_reason = failure_reason.map(str::to_owned);
    }
    Ok(())
}

/// Writes the order, bumping its in-memory version to match the store.
async fn save(tx: &mut Tx, order: &mut Order) -> Result<(), StoreFault> {
    tx.update_order(order).await?;
    order.version += 1;
    Ok(())
}

/// An amount from a request, within its bounds (1 to 10^12 minor units).
fn amount(minor: i64, currency: payq_domain::Currency) -> Result<payq_domain::Money, InputError> {
    payq_domain::Money::new(minor, currency).map_err(|e| InputError::OutOfBounds(e.to_string()))
}

/// Checks free text from a request.
fn check_text(field: &str, value: Option<&str>, max: usize) -> Result<(), InputError> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(InputError::Malformed(format!("{field} is longer than {max} characters")))
        }
        Some(v) if v.chars().any(char::is_control) => {
            Err(InputError::Malformed(format!("{field} contains control characters")))
        }
        _ => Ok(()),
    }
}
