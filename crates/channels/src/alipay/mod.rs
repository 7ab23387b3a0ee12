//! `alipay`: payments through one merchant's Alipay application, as a [`PaymentChannel`].
//! A payment is a face-to-face QR code (`alipay.trade.precreate`) the buyer scans; Alipay
//! then posts a notification to `<public_url>/v1/channels/alipay/notify` (handled by
//! [`crate::usecases::AlipayNotification`]), and the query schedule asks
//! `alipay.trade.query` when none comes. payq's payment id is Alipay's `out_trade_no`; a
//! refund's id is its `out_request_no`.

pub mod bill;
pub mod client;
pub mod protocol;

use crate::bill::{Bill, BillError};
use crate::{ChannelError, ChannelStatus, PaymentChannel, PaymentRequest, RefundOutcome, Started};
use client::{AlipayAccount, AlipayClient, BuyerPage, Precreate};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use payq_domain::{Currency, NextAction, PayProduct, PaymentId, RefundId};

/// Alipay for one merchant.
pub struct Alipay {
    pub client: AlipayClient,
    pub account: AlipayAccount,
    /// Where Alipay posts notifications.
    pub notify_url: String,
}

/// The longest subject Alipay takes.
const MAX_SUBJECT_CHARS: usize = 256;

impl PaymentChannel for Alipay {
    fn name(&self) -> payq_domain::ChannelName {
        payq_domain::ChannelName::Alipay
    }

    fn create_payment(&self, req: PaymentRequest) -> BoxFuture<'_, Result<Started, ChannelError>> {
        async move {
            if req.currency != Currency::Cny {
                return Err(ChannelError::Invalid(format!("alipay takes CNY, not {}", req.currency.code())));
            }
            let subject: String = req.subject.chars().take(MAX_SUBJECT_CHARS).collect();
            let pay = Precreate {
                out_trade_no: req.payment_id.as_str(),
                amount: req.amount,
                subject: &subject,
                notify_url: &self.notify_url,
                expires_at_ms: req.expires_at.millis(),
            };
            let return_url = req.details.return_url.as_deref();
            let next_action = match req.product.unwrap_or(PayProduct::Qr) {
                PayProduct::Qr => NextAction::QrCode { qr_code: self.client.precreate(&self.account, &pay).await? },
                // The buyer's browser or app carries these signed requests to Alipay.
                PayProduct::Web => NextAction::Redirect {
                    url: self.client.buyer_request(&self.account, &pay, BuyerPage::Web { return_url }),
                },
                PayProduct::Wap => NextAction::Redirect {
                    url: self.client.buyer_request(&self.account, &pay, BuyerPage::Wap { return_url }),
                },
                PayProduct::App => NextAction::AlipayApp {
                    order_string: self.client.buyer_request(&self.account, &pay, BuyerPage::App),
                },
                other => return Err(ChannelError::Invalid(format!("alipay does not offer {:?}", other.as_str()))),
            };
            Ok(Started { txn_id: None, next_action: Some(next_action) })
        }
        .boxed()
    }

    fn query_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>> {
        self.client.query(&self.account, payment_id.as_str()).boxed()
    }

    fn close_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>> {
        self.client.close(&self.account, payment_id.as_str()).boxed()
    }

    fn refund<'a>(
        &'a self,
        payment_id: &'a PaymentId,
        refund_id: &'a RefundId,
        amount: i64,
    ) -> BoxFuture<'a, Result<RefundOutcome, ChannelError>> {
        self.client.refund(&self.account, payment_id.as_str(), refund_id.as_str(), amount).boxed()
    }

    fn trade_bill<'a>(&'a self, date: &'a str) -> BoxFuture<'a, Result<Bill, BillError>> {
        self.client.trade_bill(&self.account, date).boxed()
    }
}
