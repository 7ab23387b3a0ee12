//! Payment channels. A channel takes payments, answers queries about them, closes unpaid
//! ones and refunds paid ones. The simulated channel [`sim`] is built in; real channels
//! ([`alipay`], [`wechatpay`]; next Stripe, UnionPay) implement the same [`PaymentChannel`] trait, and
//! everything else (state machines, timers, risk, refunds) stays channel-agnostic. How to
//! add one: docs/channels.md.

pub mod alipay;
pub mod bill;
pub mod rsa_keys;
pub mod sim;
pub mod wechatpay;

use futures_util::future::BoxFuture;

/// An HTTP client builder for payq's outgoing calls (channels, webhooks, the command line),
/// with the one TLS crypto provider, ring, installed for the process first: reqwest is built
/// without a provider of its own (a long C build), so every client starts here.
pub fn http_client() -> reqwest::ClientBuilder {
    // Installing again is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
use payq_domain::{ChannelName, Currency, NextAction, PayProduct, PaymentId, RefundId, Timestamp};
use serde::{Deserialize, Serialize};

/// What a real channel's payment start needs beyond the order: the buyer as the product
/// needs them, and where the channel's page sends the buyer back. Kept with the payment, so
/// that a start made later (by the queued request) is the same request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartDetails {
    /// The buyer's openid under the app paid in (WeChat Pay `jsapi`, `mini_program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// The buyer's IP address (WeChat Pay `h5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Where the channel's page sends the buyer when done (Alipay `web`/`wap`, WeChat Pay `h5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
}

/// A payment to start at the channel.
#[derive(Debug, Clone)]
pub struct PaymentRequest {
    /// payq's payment id: the merchant-side reference the channel keys the payment by.
    pub payment_id: PaymentId,
    pub amount: i64,
    pub currency: Currency,
    /// When the order stops accepting payment.
    pub expires_at: Timestamp,
    /// What the buyer sees the payment is for (the order's description or number).
    pub subject: String,
    /// The simulated channel's instructions (its `simulate` object).
    pub instructions: Option<serde_json::Value>,
    /// How the buyer pays through a real channel (`None`: the channel's QR code).
    pub product: Option<PayProduct>,
    /// A real channel's start details.
    pub details: StartDetails,
}

/// A payment the channel accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The channel's reference, when it gives one before the payment is made.
    pub txn_id: Option<String>,
    /// What the buyer does next (a QR code to scan), for channels where the buyer acts.
    pub next_action: Option<NextAction>,
}

/// What the channel says about a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Not final yet.
    Pending,
    /// Money was taken; `txn_id` is the channel's reference.
    Succeeded { txn_id: String },
    /// Refused; will never succeed.
    Failed { reason: String },
    /// Closed before it was paid.
    Closed,
    /// The channel has never heard of it.
    NotFound,
}

/// The channel's answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded,
    /// Accepted and not finished yet (WeChat Pay `PROCESSING`): the channel's refund
    /// notification, or asking again later, tells how it ends.
    Processing,
    /// Refused for good (e.g. more than was paid).
    Refused {
        reason: String,
    },
}

/// A channel failure.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Might work if tried again (network, 5xx, timeout).
    #[error("channel unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad instructions); retrying will not help.
    #[error("channel refused the request: {0}")]
    Invalid(String),
}

/// A payment channel.
pub trait PaymentChannel: Send + Sync + 'static {
    /// The channel's name in the API.
    fn name(&self) -> ChannelName;

    /// Starts a payment; repeating it for the same `payment_id` starts nothing new.
    fn create_payment(&self, req: PaymentRequest) -> BoxFuture<'_, Result<Started, ChannelError>>;

    /// The payment's status at the channel.
    fn query_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>>;

    /// Closes an unpaid payment; answers with the status after the attempt (a payment that
    /// was already paid stays `Succeeded`).
    fn close_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>>;

    /// Refunds `amount` of a paid payment, once per `refund_id`.
    fn refund<'a>(
        &'a self,
        payment_id: &'a PaymentId,
        refund_id: &'a RefundId,
        amount: i64,
    ) -> BoxFuture<'a, Result<RefundOutcome, ChannelError>>;

    /// The channel's trade bill for `date` (`YYYY-MM-DD`), for reconciliation; channels
    /// without bills (the simulated one) answer [`bill::BillError::Unsupported`].
    fn trade_bill<'a>(&'a self, date: &'a str) -> BoxFuture<'a, Result<bill::Bill, bill::BillError>> {
        let _ = date;
        let name = self.name();
        Box::pin(async move { Err(bill::BillError::Unsupported(name)) })
    }
}

#[cfg(test)]
mod tls_tests {
    /// An HTTPS client builds with the one crypto provider (ring) installed.
    #[test]
    fn https_clients_build_with_the_one_crypto_provider() {
        assert!(super::http_client().https_only(true).build().is_ok());
        let provider = rustls::crypto::CryptoProvider::get_default().expect("installed with the client");
        assert!(!provider.cipher_suites.is_empty());
    }
}
