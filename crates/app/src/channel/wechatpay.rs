//! `wechatpay`: payments through one merchant's WeChat Pay account (API v3), as a
//! [`PaymentChannel`]. A payment is a Native pay `code_url` shown as a QR code; WeChat Pay
//! then posts an encrypted notification to `<public_url>/v1/channels/wechatpay/notify`
//! (handled by [`crate::usecases::Payq::wechatpay_notification`]), and the query schedule
//! asks for the transaction when none comes. payq's payment id is WeChat Pay's
//! `out_trade_no`; a refund's id is its `out_refund_no`.

use super::wechatpay_client::{NativePay, WechatPayAccount, WechatPayClient};
use super::{ChannelError, ChannelStatus, PaymentChannel, PaymentRequest, RefundOutcome, Started};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use payq_domain::{Currency, NextAction, PaymentId, RefundId};

/// WeChat Pay for one merchant.
pub struct WechatPay {
    pub client: WechatPayClient,
    pub account: WechatPayAccount,
    /// Where WeChat Pay posts notifications.
    pub notify_url: String,
}

/// The longest description WeChat Pay takes, in characters.
const MAX_DESCRIPTION_CHARS: usize = 127;

impl PaymentChannel for WechatPay {
    fn name(&self) -> &'static str {
        "wechatpay"
    }

    fn create_payment(&self, req: PaymentRequest) -> BoxFuture<'_, Result<Started, ChannelError>> {
        async move {
            if req.currency != Currency::Cny {
                return Err(ChannelError::Invalid(format!("wechatpay takes CNY, not {}", req.currency.code())));
            }
            let description: String = req.subject.chars().take(MAX_DESCRIPTION_CHARS).collect();
            let pay = NativePay {
                out_trade_no: req.payment_id.as_str(),
                amount: req.amount,
                description: &description,
                notify_url: &self.notify_url,
                expires_at_ms: req.expires_at.millis(),
            };
            let qr_code = self.client.native(&self.account, &pay).await?;
            Ok(Started { txn_id: None, next_action: Some(NextAction::QrCode { qr_code }) })
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
}
