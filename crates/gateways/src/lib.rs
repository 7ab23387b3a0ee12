//! Local gateways that speak the real channels' protocols, for `payq demo` and the tests
//! only: nothing that serves payments depends on this crate. [`alipay::AlipaySandbox`] and
//! [`wechatpay::WechatPaySandbox`] check payq's requests with the merchant's keys, sign
//! their answers and notifications with keys of their own made per run, keep their trades
//! in memory, and play the buyer. [`LocalGateway`] is what they have in common, so that
//! `payq demo` and the lifecycle tests play one story against either: set a merchant up,
//! let the buyer pay (with or without a notification), make the gateway hang or slow, and
//! read what happened at the channel.

pub mod alipay;
pub mod bills;
pub mod wechatpay;

use alipay::AlipaySandbox;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use wechatpay::WechatPaySandbox;

/// A running local gateway of one real channel.
pub trait LocalGateway: Send + Sync {
    /// The channel's name in the API (`"alipay"`).
    fn channel(&self) -> &'static str;
    /// The channel's name for people (`"Alipay"`).
    fn label(&self) -> &'static str;
    /// Where the gateway listens.
    fn url(&self) -> &str;
    /// The merchant account it plays, for people.
    fn account(&self) -> String;
    /// The `channels.<channel>` object that sets a merchant up with this gateway.
    fn credentials(&self) -> Value;
    /// The call payq makes to ask about a payment, as the channel names it.
    fn query_name(&self) -> &'static str;
    /// The buyer pays and the channel notifies payq; payq's answer (status, body).
    fn buyer_pays<'a>(&'a self, payment_id: &'a str) -> BoxFuture<'a, anyhow::Result<(u16, String)>>;
    /// The buyer pays and no notification comes; false when there is nothing to pay.
    fn buyer_pays_silently(&self, payment_id: &str) -> bool;
    /// The buyer's payment goes through although the trade was closed (a race with the
    /// close), and no notification comes: only the day's bill shows it.
    fn buyer_pays_after_close_silently(&self, payment_id: &str) -> bool;
    /// Makes the gateway hang (accept and never answer) or answer again.
    fn set_hang(&self, hang: bool);
    /// Makes the gateway slow (carry out each call, answer after `delay`) or quick again.
    fn set_delay(&self, delay: Option<std::time::Duration>);
    /// How many times payq asked the channel to create the payment.
    fn creates(&self, payment_id: &str) -> u32;
    /// The deadline the create call gave the channel (`time_expire`), read back.
    fn time_expire(&self, payment_id: &str) -> Option<payq_domain::Timestamp>;
    /// The payment's state at the channel, in the channel's words.
    fn state(&self, payment_id: &str) -> Option<String>;
    /// The channel's word for a payment waiting for the buyer.
    fn pending_state(&self) -> &'static str;
    /// The channel's word for a payment closed unpaid.
    fn closed_state(&self) -> &'static str;
    /// What the channel refunded of the payment, in fen.
    fn refunded(&self, payment_id: &str) -> i64;
    /// How many times payq asked the channel about the payment.
    fn queries(&self, payment_id: &str) -> u32;
    /// payq's answer to a notification it recorded (status, body).
    fn acknowledgement(&self) -> (u16, &'static str);
    /// The pay requests (beyond `channel`) of a payment on a phone and of one inside an
    /// app, with a word for people: the channel's products for them.
    fn phone_and_app_products(&self) -> [(&'static str, Value); 2];
    /// The buyer's browser or app takes a payment's `next_action` to the channel, which
    /// checks it (the signed request, or the merchant's signature of the buyer's side);
    /// answers what happened, for people.
    fn buyer_takes<'a>(&'a self, next_action: &'a Value) -> BoxFuture<'a, anyhow::Result<String>>;
    /// The money that moved at the gateway, for its bills (tests spoil them here).
    fn bill_book(&self) -> std::sync::MutexGuard<'_, bills::BillBook>;
}

const RETURN_URL: &str = "https://shop.example/orders/paid";

impl LocalGateway for AlipaySandbox {
    fn channel(&self) -> &'static str {
        "alipay"
    }
    fn label(&self) -> &'static str {
        "Alipay"
    }
    fn url(&self) -> &str {
        &self.gateway_url
    }
    fn account(&self) -> String {
        format!("app {}", self.app_id)
    }
    fn credentials(&self) -> Value {
        AlipaySandbox::credentials(self)
    }
    fn query_name(&self) -> &'static str {
        "alipay.trade.query"
    }
    fn buyer_pays<'a>(&'a self, payment_id: &'a str) -> BoxFuture<'a, anyhow::Result<(u16, String)>> {
        AlipaySandbox::buyer_pays(self, payment_id).boxed()
    }
    fn buyer_pays_silently(&self, payment_id: &str) -> bool {
        AlipaySandbox::buyer_pays_silently(self, payment_id)
    }
    fn buyer_pays_after_close_silently(&self, payment_id: &str) -> bool {
        AlipaySandbox::buyer_pays_after_close_silently(self, payment_id)
    }
    fn set_hang(&self, hang: bool) {
        AlipaySandbox::set_hang(self, hang);
    }
    fn set_delay(&self, delay: Option<std::time::Duration>) {
        AlipaySandbox::set_delay(self, delay);
    }
    fn creates(&self, payment_id: &str) -> u32 {
        self.trade(payment_id).and_then(|t| t.calls.get("alipay.trade.precreate").copied()).unwrap_or(0)
    }
    fn time_expire(&self, payment_id: &str) -> Option<payq_domain::Timestamp> {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let at = time::PrimitiveDateTime::parse(&self.trade(payment_id)?.time_expire, &format).ok()?;
        let china = time::UtcOffset::from_hms(8, 0, 0).ok()?;
        Some(payq_domain::Timestamp::from_millis(at.assume_offset(china).unix_timestamp() * 1000))
    }
    fn state(&self, payment_id: &str) -> Option<String> {
        self.trade(payment_id).map(|t| t.status)
    }
    fn pending_state(&self) -> &'static str {
        "WAIT_BUYER_PAY"
    }
    fn closed_state(&self) -> &'static str {
        "TRADE_CLOSED"
    }
    fn refunded(&self, payment_id: &str) -> i64 {
        self.trade(payment_id).map_or(0, |t| t.refunds.values().sum())
    }
    fn queries(&self, payment_id: &str) -> u32 {
        self.trade(payment_id).and_then(|t| t.calls.get("alipay.trade.query").copied()).unwrap_or(0)
    }
    fn acknowledgement(&self) -> (u16, &'static str) {
        (200, "success")
    }
    fn bill_book(&self) -> std::sync::MutexGuard<'_, bills::BillBook> {
        AlipaySandbox::bill_book(self)
    }
    fn phone_and_app_products(&self) -> [(&'static str, Value); 2] {
        [
            ("a phone's browser (wap)", serde_json::json!({ "product": "wap", "return_url": RETURN_URL })),
            ("the shop's app (app)", serde_json::json!({ "product": "app" })),
        ]
    }
    fn buyer_takes<'a>(&'a self, next_action: &'a Value) -> BoxFuture<'a, anyhow::Result<String>> {
        async move {
            match next_action["type"].as_str() {
                Some("redirect") => {
                    let url = next_action["url"].as_str().unwrap_or_default();
                    let page = payq_channels::http_client().build()?.get(url).send().await?;
                    anyhow::ensure!(page.status().is_success(), "Alipay refused the page request: {}", page.status());
                    Ok("the browser opened Alipay's checkout page (signature checked)".into())
                }
                Some("alipay_app") => {
                    self.app_opens(next_action["order_string"].as_str().unwrap_or_default())
                        .map_err(|why| anyhow::anyhow!("the Alipay app refused the order string: {why}"))?;
                    Ok("the Alipay app took the order string (signature checked)".into())
                }
                other => anyhow::bail!("no buyer's step for {other:?} at Alipay"),
            }
        }
        .boxed()
    }
}

impl LocalGateway for WechatPaySandbox {
    fn channel(&self) -> &'static str {
        "wechatpay"
    }
    fn label(&self) -> &'static str {
        "WeChat Pay"
    }
    fn url(&self) -> &str {
        &self.base_url
    }
    fn account(&self) -> String {
        format!("merchant {} (app {})", self.mch_id, self.app_id)
    }
    fn credentials(&self) -> Value {
        WechatPaySandbox::credentials(self)
    }
    fn query_name(&self) -> &'static str {
        "GET /v3/pay/transactions/out-trade-no/{out_trade_no}"
    }
    fn buyer_pays<'a>(&'a self, payment_id: &'a str) -> BoxFuture<'a, anyhow::Result<(u16, String)>> {
        WechatPaySandbox::buyer_pays(self, payment_id).boxed()
    }
    fn buyer_pays_silently(&self, payment_id: &str) -> bool {
        WechatPaySandbox::buyer_pays_silently(self, payment_id)
    }
    fn buyer_pays_after_close_silently(&self, payment_id: &str) -> bool {
        WechatPaySandbox::buyer_pays_after_close_silently(self, payment_id)
    }
    fn set_hang(&self, hang: bool) {
        WechatPaySandbox::set_hang(self, hang);
    }
    fn set_delay(&self, delay: Option<std::time::Duration>) {
        WechatPaySandbox::set_delay(self, delay);
    }
    fn creates(&self, payment_id: &str) -> u32 {
        self.transaction(payment_id).and_then(|t| t.calls.get("create").copied()).unwrap_or(0)
    }
    fn time_expire(&self, payment_id: &str) -> Option<payq_domain::Timestamp> {
        payq_domain::Timestamp::parse_rfc3339(&self.transaction(payment_id)?.time_expire)
    }
    fn state(&self, payment_id: &str) -> Option<String> {
        self.transaction(payment_id).map(|t| t.trade_state)
    }
    fn pending_state(&self) -> &'static str {
        "NOTPAY"
    }
    fn closed_state(&self) -> &'static str {
        "CLOSED"
    }
    fn refunded(&self, payment_id: &str) -> i64 {
        self.transaction(payment_id).map_or(0, |t| t.refunds.values().sum())
    }
    fn queries(&self, payment_id: &str) -> u32 {
        self.transaction(payment_id).and_then(|t| t.calls.get("query").copied()).unwrap_or(0)
    }
    fn acknowledgement(&self) -> (u16, &'static str) {
        (204, "")
    }
    fn bill_book(&self) -> std::sync::MutexGuard<'_, bills::BillBook> {
        WechatPaySandbox::bill_book(self)
    }
    fn phone_and_app_products(&self) -> [(&'static str, Value); 2] {
        [
            (
                "a phone's browser (h5)",
                serde_json::json!({ "product": "h5", "payer": { "client_ip": "203.0.113.7" }, "return_url": RETURN_URL }),
            ),
            (
                "WeChat, on the shop's official account page (jsapi)",
                serde_json::json!({ "product": "jsapi", "payer": { "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" } }),
            ),
        ]
    }
    fn buyer_takes<'a>(&'a self, next_action: &'a Value) -> BoxFuture<'a, anyhow::Result<String>> {
        async move {
            let field = |name: &str| next_action[name].as_str().unwrap_or_default();
            match field("type") {
                "redirect" => {
                    let page = payq_channels::http_client().build()?.get(field("url")).send().await?;
                    anyhow::ensure!(page.status().is_success(), "WeChat Pay refused the H5 page: {}", page.status());
                    Ok("the browser opened WeChat Pay's H5 page".into())
                }
                "wechat_jsapi" => {
                    let lines = [field("app_id"), field("time_stamp"), field("nonce_str"), field("package")];
                    anyhow::ensure!(self.merchant_signed(lines, field("pay_sign")), "WeChat refused paySign");
                    Ok("WeChat checked paySign against the merchant's key".into())
                }
                "wechat_app" => {
                    let lines = [field("app_id"), field("timestamp"), field("nonce_str"), field("prepay_id")];
                    anyhow::ensure!(self.merchant_signed(lines, field("sign")), "WeChat refused sign");
                    Ok("the WeChat app checked sign against the merchant's key".into())
                }
                other => anyhow::bail!("no buyer's step for {other:?} at WeChat Pay"),
            }
        }
        .boxed()
    }
}
