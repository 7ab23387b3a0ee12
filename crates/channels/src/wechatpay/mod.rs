//! `wechatpay`: payments through one merchant's WeChat Pay account (API v3), as a
//! [`PaymentChannel`]. A payment is one of the pay products (docs/channels.md): a Native
//! `code_url` shown as a QR code, a JSAPI or mini-program `prepay_id` with the buyer's
//! signed `requestPayment` parameters, an H5 page, or an app `prepay_id`; WeChat Pay
//! then posts an encrypted notification to `<public_url>/v1/channels/wechatpay/notify`
//! (handled by [`crate::usecases::Payq::wechatpay_notification`]), and the query schedule
//! asks for the transaction when none comes. payq's payment id is WeChat Pay's
//! `out_trade_no`; a refund's id is its `out_refund_no`.

pub mod bill;
pub mod client;
pub mod protocol;

use crate::{ChannelError, ChannelStatus, PaymentChannel, PaymentRequest, RefundOutcome, Started};
use client::{NativePay, TradeKind, WechatPayAccount, WechatPayClient};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use payq_domain::{Currency, NextAction, PayProduct, PaymentId, RefundId};

/// WeChat Pay for one merchant.
pub struct WechatPay {
    pub client: WechatPayClient,
    pub account: WechatPayAccount,
    /// Where WeChat Pay posts notifications.
    pub notify_url: String,
}

/// A timestamp (unix seconds) and a nonce for the buyer's side of a payment.
fn fresh_stamp() -> (String, String) {
    let timestamp = payq_domain::Timestamp::now().unix_seconds().to_string();
    (timestamp, payq_domain::crypto::random_hex(16).to_ascii_uppercase())
}

/// The longest description WeChat Pay takes, in characters.
const MAX_DESCRIPTION_CHARS: usize = 127;

impl PaymentChannel for WechatPay {
    fn name(&self) -> payq_domain::ChannelName {
        payq_domain::ChannelName::Wechatpay
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
            let account = &self.account;
            let details = &req.details;
            let next_action = match req.product.unwrap_or(PayProduct::Native) {
                PayProduct::Native => {
                    NextAction::QrCode { qr_code: self.client.prepay(account, &pay, TradeKind::Native).await? }
                }
                product @ (PayProduct::Jsapi | PayProduct::MiniProgram) => {
                    let app_id = match product {
                        PayProduct::MiniProgram => account
                            .mini_program_app_id
                            .as_deref()
                            .ok_or_else(|| ChannelError::Invalid("wechatpay: no mini_program_app_id set up".into()))?,
                        _ => &account.app_id,
                    };
                    let openid = details.openid.as_deref().unwrap_or_default();
                    let prepay_id = self.client.prepay(account, &pay, TradeKind::Jsapi { app_id, openid }).await?;
                    let (time_stamp, nonce_str) = fresh_stamp();
                    let package = format!("prepay_id={prepay_id}");
                    let pay_sign =
                        protocol::client_signature(&account.merchant_key, [app_id, &time_stamp, &nonce_str, &package]);
                    NextAction::WechatJsapi {
                        app_id: app_id.to_owned(),
                        time_stamp,
                        nonce_str,
                        package,
                        sign_type: "RSA".into(),
                        pay_sign,
                    }
                }
                PayProduct::H5 => {
                    let client_ip = details.client_ip.as_deref().unwrap_or_default();
                    let mut url = self.client.prepay(account, &pay, TradeKind::H5 { client_ip }).await?;
                    if let Some(back) = &details.return_url {
                        let encoded: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
                        url = format!("{url}&redirect_url={encoded}");
                    }
                    NextAction::Redirect { url }
                }
                PayProduct::App => {
                    let prepay_id = self.client.prepay(account, &pay, TradeKind::App).await?;
                    let (timestamp, nonce_str) = fresh_stamp();
                    let sign = protocol::client_signature(
                        &account.merchant_key,
                        [&account.app_id, &timestamp, &nonce_str, &prepay_id],
                    );
                    NextAction::WechatApp {
                        app_id: account.app_id.clone(),
                        partner_id: account.mch_id.clone(),
                        prepay_id,
                        package: "Sign=WXPay".into(),
                        nonce_str,
                        timestamp,
                        sign,
                    }
                }
                other => {
                    return Err(ChannelError::Invalid(format!("wechatpay does not offer {:?}", other.as_str())));
                }
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

    fn trade_bill<'a>(&'a self, date: &'a str) -> BoxFuture<'a, Result<crate::bill::Bill, crate::bill::BillError>> {
        self.client.trade_bill(&self.account, date).boxed()
    }
}
