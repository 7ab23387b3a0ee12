//! Which channel a payment goes through (with its merchant's credentials), and the
//! notifications real channels post: checked against the channel's signature and the
//! payment before anything changes (docs/channels.md).

use super::Payq;
use crate::channel::alipay::Alipay;
use crate::channel::alipay_protocol::{self, verify_notification};
use crate::channel::{ChannelError, ChannelStatus, PaymentChannel};
use payq_domain::{MerchantId, PaymentId};
use payq_store::StoreError;
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
        channel: &str,
        merchant: &MerchantId,
    ) -> Result<Arc<dyn PaymentChannel>, ChannelError> {
        match channel {
            "sim" => Ok(self.channel.clone()),
            "alipay" => {
                let account = self.alipay_account(merchant).await.map_err(|e| match e {
                    NotificationError::Unavailable(e) => ChannelError::Unavailable(e),
                    NotificationError::Refused(e) => ChannelError::Invalid(e),
                })?;
                Ok(Arc::new(Alipay { client: self.alipay.clone(), account, notify_url: self.notify_url("alipay") }))
            }
            other => Err(ChannelError::Invalid(format!("unknown channel {other:?}"))),
        }
    }

    /// Where channel `name` posts its notifications.
    pub(crate) fn notify_url(&self, name: &str) -> String {
        format!("{}/v1/channels/{name}/notify", self.public_url.trim_end_matches('/'))
    }

    /// Takes an Alipay notification (its form parameters): the signature must be Alipay's
    /// under the merchant's Alipay public key, and the app id and amount the payment's.
    /// `TRADE_SUCCESS`/`TRADE_FINISHED` pay, `TRADE_CLOSED` fails the payment; a repeated
    /// notification changes nothing. `Ok` only once the outcome is committed.
    pub async fn alipay_notification(&self, params: &[(String, String)]) -> Result<(), NotificationError> {
        let refused = |why: &str| NotificationError::Refused(why.to_owned());
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
        let payment_id: PaymentId = get("out_trade_no").parse().map_err(|_| refused("unknown out_trade_no"))?;
        let payment = match self.store.payment(&payment_id).await {
            Ok(p) if p.channel == "alipay" => p,
            Ok(_) | Err(StoreError::NotFound) => return Err(refused("unknown out_trade_no")),
            Err(e) => return Err(NotificationError::Unavailable(e.to_string())),
        };
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
        self.apply_channel_status(&payment_id, status).await.map_err(|e| NotificationError::Unavailable(e.to_string()))
    }

    /// The merchant's Alipay account: `Refused` when it has none (or it cannot be opened),
    /// `Unavailable` when the store cannot say.
    async fn alipay_account(
        &self,
        merchant: &MerchantId,
    ) -> Result<crate::channel::alipay_client::AlipayAccount, NotificationError> {
        let sealed = match self.store.merchant_channel_secrets(merchant).await {
            Ok(sealed) => sealed,
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(NotificationError::Unavailable(e.to_string())),
        };
        let channels = self.open_channels(sealed).map_err(|e| NotificationError::Refused(e.to_string()))?;
        let alipay = channels
            .alipay
            .ok_or_else(|| NotificationError::Refused("the merchant has no alipay channel set up".into()))?;
        alipay.account().map_err(|e| NotificationError::Refused(e.to_string()))
    }
}
