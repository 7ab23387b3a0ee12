//! Which channel a payment goes through (with its merchant's credentials), and the
//! notifications real channels post: checked against the channel's signature and the
//! payment before anything changes (docs/channels.md).

use super::{Payq, SealedChannels};
use payq_channels::alipay::Alipay;
use payq_channels::alipay::protocol::{self as alipay_protocol, verify_notification};
use payq_channels::wechatpay::WechatPay;
use payq_channels::wechatpay::client::{WechatPayAccount, trade_state};
use payq_channels::wechatpay::protocol::{self as wechatpay_protocol, Notification, SignatureHeaders};
use payq_channels::{ChannelError, ChannelStatus, PaymentChannel};
use payq_domain::{ChannelName, MerchantId, PaymentId, RefundId};
use payq_store::{PaymentRecord, StoreError};
use serde_json::Value;
use std::sync::Arc;

/// Why a channel's notification was not taken.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// Not a notification payq can believe or use (bad signature, unknown payment, wrong
    /// app or amount); nothing changed.
    #[error("notification refused: {0}")]
    Refused(String),
    /// It could not be recorded now; the channel sends it again.
    #[error("notification not recorded: {0}")]
    Unavailable(String),
}

impl Payq {
    /// The channel named `channel`, for `merchant`'s payments.
    pub(crate) async fn channel_for(
        &self,
        channel: ChannelName,
        merchant: &MerchantId,
    ) -> Result<Arc<dyn PaymentChannel>, ChannelError> {
        match channel {
            ChannelName::Sim => Ok(self.channel.clone()),
            ChannelName::Alipay => {
                let account = self.alipay_account(merchant).await.map_err(ChannelError::from)?;
                let notify_url = self.notify_url(channel);
                Ok(Arc::new(Alipay { client: self.alipay.clone(), account, notify_url }))
            }
            ChannelName::Wechatpay => {
                let account = self.wechatpay_account(merchant).await.map_err(ChannelError::from)?;
                let notify_url = self.notify_url(channel);
                Ok(Arc::new(WechatPay { client: self.wechatpay.clone(), account, notify_url }))
            }
        }
    }

    /// Where channel `name` posts its notifications.
    pub(crate) fn notify_url(&self, name: ChannelName) -> String {
        format!("{}/v1/channels/{name}/notify", self.public_url.trim_end_matches('/'))
    }

    /// Takes an Alipay notification (its form parameters): the signature must be Alipay's
    /// under the merchant's Alipay public key, and the app id and amount the payment's.
    /// `TRADE_SUCCESS`/`TRADE_FINISHED` pay, `TRADE_CLOSED` fails the payment; a repeated
    /// notification changes nothing. `Ok` only once the outcome is committed.
    pub async fn alipay_notification(&self, params: &[(String, String)]) -> Result<(), NotificationError> {
        let refused = |why: &str| NotificationError::Refused(why.to_owned());
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
        let payment = self.channel_payment(get("out_trade_no"), ChannelName::Alipay).await?;
        let account = self.alipay_account(&payment.merchant_id).await?;
        verify_notification(params, &account.alipay_public_key).map_err(|_| refused("signature does not verify"))?;
        if get("app_id") != account.app_id {
            return Err(refused("app_id is not the merchant's"));
        }
        if alipay_protocol::minor_units(get("total_amount")).ok() != Some(payment.amount) {
            return Err(refused("total_amount is not the payment's"));
        }
        let status = match get("trade_status") {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => ChannelStatus::Succeeded { txn_id: get("trade_no").to_owned() },
            "TRADE_CLOSED" => ChannelStatus::Failed { reason: "alipay: TRADE_CLOSED".into() },
            "WAIT_BUYER_PAY" => return Ok(()),
            _ => return Err(refused("unknown trade_status")),
        };
        self.apply_channel_status(&payment.id, status).await.map_err(|e| NotificationError::Unavailable(e.to_string()))
    }

    /// Takes a WeChat Pay notification: its signature must verify under a platform
    /// certificate of the merchant it is for, its `resource` must decrypt under that
    /// merchant's API v3 key, and the transaction's merchant, app and amount must be the
    /// payment's. `SUCCESS` pays; `CLOSED`, `REVOKED` and `PAYERROR` fail the payment; a
    /// repeated notification changes nothing. `Ok` only once the outcome is committed.
    pub async fn wechatpay_notification(
        &self,
        headers: SignatureHeaders<'_>,
        body: &str,
    ) -> Result<(), NotificationError> {
        let refused = |why: &str| NotificationError::Refused(why.to_owned());
        let Some(key_name) = wechatpay_protocol::KeyName::parse(headers.serial) else {
            return Err(refused("no Wechatpay-Serial naming a platform certificate or public key"));
        };
        let envelope: Notification = serde_json::from_str(body).map_err(|_| refused("not a notification"))?;
        // The certificate names the merchant; the API v3 key confirms it.
        let candidates = self
            .store
            .merchants_with_channel_key(key_name.as_str())
            .await
            .map_err(|e| NotificationError::Unavailable(e.to_string()))?;
        let now = payq_domain::Timestamp::now().unix_seconds();
        // Every merchant under whose certificate and API v3 key it verifies and opens (one,
        // unless the same WeChat Pay account is set up on several merchants).
        let mut opened = Vec::new();
        for (merchant, sealed) in candidates {
            let Some(account) =
                self.open_channels(sealed).ok().and_then(|c| c.wechatpay).and_then(|w| w.account().ok())
            else {
                continue;
            };
            if wechatpay_protocol::verify(&account.verification_keys, headers, body, now).is_err() {
                continue;
            }
            if let Ok(plain) = envelope.resource.open(&account.api_v3_key) {
                opened.push((merchant, account, plain));
            }
        }
        let Some((_, _, plain)) = opened.first() else {
            return Err(refused("signature or resource does not verify"));
        };
        if envelope.event_type.starts_with("REFUND.") {
            return self.wechatpay_refund_notification(plain, &opened).await;
        }
        if !envelope.event_type.starts_with("TRANSACTION.") {
            return Err(refused("unknown event_type"));
        }
        let transaction: Value = serde_json::from_slice(plain).map_err(|_| refused("resource is not a transaction"))?;
        let text = |field: &str| transaction.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let payment = self.channel_payment(&text("out_trade_no"), ChannelName::Wechatpay).await?;
        let account = opened
            .iter()
            .find(|(merchant, _, _)| *merchant == payment.merchant_id)
            .map(|(_, account, _)| account)
            .ok_or_else(|| refused("the payment is another merchant's"))?;
        if text("mchid") != account.mch_id || text("appid") != account.app_id {
            return Err(refused("mchid or appid is not the merchant's"));
        }
        let total = transaction.pointer("/amount/total").and_then(Value::as_i64);
        if total != Some(payment.amount)
            || transaction.pointer("/amount/currency").and_then(Value::as_str) != Some("CNY")
        {
            return Err(refused("amount is not the payment's"));
        }
        let status = match trade_state(&transaction).map_err(|_| refused("unknown trade_state"))? {
            ChannelStatus::Closed => ChannelStatus::Failed { reason: format!("wechatpay: {}", text("trade_state")) },
            ChannelStatus::Pending => return Ok(()),
            other => other,
        };
        self.apply_channel_status(&payment.id, status).await.map_err(|e| NotificationError::Unavailable(e.to_string()))
    }

    /// A WeChat Pay refund notification (`REFUND.SUCCESS`, `REFUND.ABNORMAL`,
    /// `REFUND.CLOSED`), its `resource` opened under the keys of the merchants in `opened`:
    /// the refund must be payq's, of the payment and merchant it names, with the amounts
    /// payq asked for. It settles a refund still `processing`; a repeat changes nothing.
    async fn wechatpay_refund_notification(
        &self,
        plain: &[u8],
        opened: &[(MerchantId, WechatPayAccount, Vec<u8>)],
    ) -> Result<(), NotificationError> {
        let refused = |why: &str| NotificationError::Refused(why.to_owned());
        let unavailable = |e: StoreError| NotificationError::Unavailable(e.to_string());
        let notice: Value = serde_json::from_slice(plain).map_err(|_| refused("resource is not a refund"))?;
        let text = |field: &str| notice.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
        let refund_id: RefundId = text("out_refund_no").parse().map_err(|_| refused("unknown out_refund_no"))?;
        let payment = self.channel_payment(&text("out_trade_no"), ChannelName::Wechatpay).await?;
        let refund = match self.store.refund(&payment.merchant_id, &refund_id).await {
            Ok(refund) if refund.order_id == payment.order_id => refund,
            Ok(_) => return Err(refused("out_trade_no is not the refund's payment")),
            Err(StoreError::NotFound) => return Err(refused("unknown out_refund_no")),
            Err(e) => return Err(unavailable(e)),
        };
        let account = opened
            .iter()
            .find(|(merchant, _, _)| *merchant == payment.merchant_id)
            .map(|(_, account, _)| account)
            .ok_or_else(|| refused("the refund is another merchant's"))?;
        if text("mchid") != account.mch_id {
            return Err(refused("mchid is not the merchant's"));
        }
        let amount = |field: &str| notice.pointer(&format!("/amount/{field}")).and_then(Value::as_i64);
        if amount("refund") != Some(refund.amount) || amount("total") != Some(payment.amount) {
            return Err(refused("amounts are not the refund's"));
        }
        let outcome =
            payq_channels::wechatpay::client::refund_status(&notice).map_err(|_| refused("unknown refund_status"))?;
        self.finish_refund(&refund_id, outcome).await.map_err(|e| NotificationError::Unavailable(e.to_string()))
    }

    /// The payment `out_trade_no` names, if it is one of `channel`'s.
    async fn channel_payment(
        &self,
        out_trade_no: &str,
        channel: ChannelName,
    ) -> Result<PaymentRecord, NotificationError> {
        let unknown = || NotificationError::Refused("unknown out_trade_no".into());
        let payment_id: PaymentId = out_trade_no.parse().map_err(|_| unknown())?;
        match self.store.payment(&payment_id).await {
            Ok(p) if p.channel == channel => Ok(p),
            Ok(_) | Err(StoreError::NotFound) => Err(unknown()),
            Err(e) => Err(NotificationError::Unavailable(e.to_string())),
        }
    }

    /// The merchant's channel credentials, opened: `Refused` when they cannot be opened,
    /// `Unavailable` when the store cannot say.
    async fn merchant_channels(&self, merchant: &MerchantId) -> Result<SealedChannels, NotificationError> {
        let sealed = match self.store.merchant_channel_secrets(merchant).await {
            Ok(sealed) => sealed,
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(NotificationError::Unavailable(e.to_string())),
        };
        self.open_channels(sealed).map_err(|e| NotificationError::Refused(e.to_string()))
    }

    /// The merchant's Alipay account: `Refused` when it has none (or it cannot be opened),
    /// `Unavailable` when the store cannot say.
    async fn alipay_account(
        &self,
        merchant: &MerchantId,
    ) -> Result<payq_channels::alipay::client::AlipayAccount, NotificationError> {
        let alipay = self
            .merchant_channels(merchant)
            .await?
            .alipay
            .ok_or_else(|| NotificationError::Refused("the merchant has no alipay channel set up".into()))?;
        alipay.account().map_err(|e| NotificationError::Refused(e.to_string()))
    }

    /// The merchant's WeChat Pay account, as [`Payq::alipay_account`] reads Alipay's.
    async fn wechatpay_account(&self, merchant: &MerchantId) -> Result<WechatPayAccount, NotificationError> {
        let wechatpay = self
            .merchant_channels(merchant)
            .await?
            .wechatpay
            .ok_or_else(|| NotificationError::Refused("the merchant has no wechatpay channel set up".into()))?;
        wechatpay.account().map_err(|e| NotificationError::Refused(e.to_string()))
    }
}

impl From<NotificationError> for ChannelError {
    /// Credentials that cannot be used make the call invalid; a store that cannot say
    /// leaves it to be tried again.
    fn from(e: NotificationError) -> ChannelError {
        match e {
            NotificationError::Unavailable(e) => ChannelError::Unavailable(e),
            NotificationError::Refused(e) => ChannelError::Invalid(e),
        }
    }
}
