//! Calls to the Alipay gateway: `alipay.trade.precreate` (a QR code to scan),
//! `alipay.trade.query`, `alipay.trade.close` and `alipay.trade.refund`, each a signed
//! form POST whose answer is verified against Alipay's public key before it is believed.
//!
//! Answers map to payq's outcomes so that money is never taken twice nor lost: a definite
//! business answer (declined, closed, not found) is final; anything that leaves the result
//! unknown (a timeout, a network error, an HTTP 5xx, `20000` service unavailable, an
//! answer whose signature does not verify) is [`ChannelError::Unavailable`], which leaves
//! the payment pending for the query schedule to settle.

use super::protocol::{self as protocol, AlipayPublicKey, AppKey};
use crate::bill::{Bill, BillError};
use crate::{ChannelError, ChannelStatus, RefundOutcome};
use serde_json::{Value, json};
use std::time::Duration;

/// Alipay's production gateway.
pub const PRODUCTION_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// One merchant's Alipay credentials and gateway.
#[derive(Debug, Clone)]
pub struct AlipayAccount {
    pub app_id: String,
    pub app_key: AppKey,
    pub alipay_public_key: AlipayPublicKey,
    /// The gateway (production by default; a sandbox or a test gateway is set the same way).
    pub gateway_url: String,
}

/// A QR-code payment to start.
#[derive(Debug, Clone)]
pub struct Precreate<'a> {
    /// payq's payment id, Alipay's `out_trade_no`.
    pub out_trade_no: &'a str,
    /// In fen (minor units of CNY).
    pub amount: i64,
    pub subject: &'a str,
    /// Where Alipay posts the notification.
    pub notify_url: &'a str,
    /// When Alipay stops accepting payment (`time_expire`): the order's deadline, in
    /// milliseconds since the epoch. The same on every try, so a repeated create is the
    /// same request.
    pub expires_at_ms: i64,
}

/// A payment the buyer makes in Alipay's own page or app.
#[derive(Debug, Clone, Copy)]
pub enum BuyerPage<'a> {
    /// Alipay's checkout page on a desktop (`alipay.trade.page.pay`).
    Web { return_url: Option<&'a str> },
    /// Alipay's checkout page in a phone's browser (`alipay.trade.wap.pay`).
    Wap { return_url: Option<&'a str> },
    /// The Alipay app, called by the shop's app (`alipay.trade.app.pay`).
    App,
}

impl BuyerPage<'_> {
    /// The gateway method.
    pub fn method(&self) -> &'static str {
        match self {
            BuyerPage::Web { .. } => "alipay.trade.page.pay",
            BuyerPage::Wap { .. } => "alipay.trade.wap.pay",
            BuyerPage::App => "alipay.trade.app.pay",
        }
    }

    fn product_code(&self) -> &'static str {
        match self {
            BuyerPage::Web { .. } => "FAST_INSTANT_TRADE_PAY",
            BuyerPage::Wap { .. } => "QUICK_WAP_WAY",
            BuyerPage::App => "QUICK_MSECURITY_PAY",
        }
    }
}

/// The Alipay gateway client (one per process; accounts are passed per call).
#[derive(Debug, Clone, Default)]
pub struct AlipayClient {
    http: reqwest::Client,
}

/// A gateway answer's `code` for success.
const SUCCESS: &str = "10000";
/// A gateway answer's `code` when the service could not answer (result unknown).
const UNAVAILABLE: &str = "20000";

fn unavailable(what: impl std::fmt::Display) -> ChannelError {
    ChannelError::Unavailable(format!("alipay: {what}"))
}

fn text<'a>(node: &'a Value, field: &str) -> &'a str {
    node.get(field).and_then(Value::as_str).unwrap_or_default()
}

impl AlipayClient {
    /// A client whose calls give up after `timeout` (their result is then unknown).
    pub fn new(timeout: Duration) -> anyhow::Result<AlipayClient> {
        Ok(AlipayClient { http: crate::http_client().timeout(timeout).build()? })
    }

    /// Calls `method` and returns its verified response node, whatever its `code` (the
    /// callers read business answers); results that are unknown are errors.
    async fn call(
        &self,
        account: &AlipayAccount,
        method: &str,
        biz: Value,
        notify_url: Option<&str>,
    ) -> Result<Value, ChannelError> {
        let timestamp = protocol::gateway_timestamp(payq_domain::Timestamp::now().millis());
        let callbacks = protocol::Callbacks { notify_url, return_url: None };
        let params = protocol::signed_request(
            &account.app_key,
            &account.app_id,
            method,
            &biz.to_string(),
            callbacks,
            &timestamp,
        );
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        let separator = if account.gateway_url.contains('?') { '&' } else { '?' };
        let answer = self
            .http
            .post(format!("{}{separator}charset=utf-8", account.gateway_url))
            .header("content-type", "application/x-www-form-urlencoded;charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(format!("{method}: {e}")))?;
        let status = answer.status();
        let raw = answer.text().await.map_err(|e| unavailable(format!("{method}: {e}")))?;
        if !status.is_success() {
            return Err(unavailable(format!("{method}: HTTP {status}")));
        }
        let node = protocol::verified_response(&raw, method, &account.alipay_public_key)
            .map_err(|e| unavailable(format!("{method}: {e}")))?;
        if text_code(&node) == UNAVAILABLE {
            return Err(unavailable(format!("{method}: {} ({})", text(&node, "sub_msg"), text(&node, "sub_code"))));
        }
        Ok(node)
    }

    /// Starts a QR-code payment; answers the QR code's content. Repeating it for the same
    /// `out_trade_no` gives the same payment at Alipay.
    pub async fn precreate(&self, account: &AlipayAccount, p: &Precreate<'_>) -> Result<String, ChannelError> {
        let biz = json!({
            "out_trade_no": p.out_trade_no,
            "total_amount": protocol::yuan(p.amount),
            "subject": p.subject,
            "time_expire": protocol::gateway_timestamp(p.expires_at_ms),
        });
        let node = self.call(account, "alipay.trade.precreate", biz, Some(p.notify_url)).await?;
        match (text_code(&node), text(&node, "qr_code")) {
            (SUCCESS, qr) if !qr.is_empty() => Ok(qr.to_owned()),
            (SUCCESS, _) => Err(unavailable("precreate answered without a qr_code")),
            _ => Err(ChannelError::Invalid(business_error(&node))),
        }
    }

    /// The buyer's side of a payment made in Alipay's own page or app, signed, with nothing
    /// sent: for page and wap pay (`web`, `wap`) the gateway URL with the request as its
    /// query, where the buyer's browser goes; for app pay, the order string the Alipay app
    /// SDK takes. `quit_url` (wap) is `return_url` too.
    pub fn buyer_request(&self, account: &AlipayAccount, p: &Precreate<'_>, kind: BuyerPage<'_>) -> String {
        let mut biz = json!({
            "out_trade_no": p.out_trade_no,
            "total_amount": protocol::yuan(p.amount),
            "subject": p.subject,
            "time_expire": protocol::gateway_timestamp(p.expires_at_ms),
            "product_code": kind.product_code(),
        });
        let return_url = match kind {
            BuyerPage::Web { return_url } => return_url,
            BuyerPage::Wap { return_url } => {
                if let Some(url) = return_url {
                    biz["quit_url"] = json!(url);
                }
                return_url
            }
            BuyerPage::App => None,
        };
        let timestamp = protocol::gateway_timestamp(payq_domain::Timestamp::now().millis());
        let callbacks = protocol::Callbacks { notify_url: Some(p.notify_url), return_url };
        let params = protocol::signed_request(
            &account.app_key,
            &account.app_id,
            kind.method(),
            &biz.to_string(),
            callbacks,
            &timestamp,
        );
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
        match kind {
            BuyerPage::App => query,
            BuyerPage::Web { .. } | BuyerPage::Wap { .. } => {
                let separator = if account.gateway_url.contains('?') { '&' } else { '?' };
                format!("{}{separator}{query}", account.gateway_url)
            }
        }
    }

    /// The payment's state at Alipay.
    pub async fn query(&self, account: &AlipayAccount, out_trade_no: &str) -> Result<ChannelStatus, ChannelError> {
        let node = self.call(account, "alipay.trade.query", json!({ "out_trade_no": out_trade_no }), None).await?;
        if text_code(&node) != SUCCESS {
            return match text(&node, "sub_code") {
                "ACQ.TRADE_NOT_EXIST" => Ok(ChannelStatus::NotFound),
                _ => Err(unavailable(format!("query: {}", business_error(&node)))),
            };
        }
        Ok(trade_status(&node))
    }

    /// Closes an unpaid payment; answers the state after the attempt (a payment paid
    /// meanwhile stays `Succeeded`: Alipay refuses to close it, and a query says so).
    pub async fn close(&self, account: &AlipayAccount, out_trade_no: &str) -> Result<ChannelStatus, ChannelError> {
        let node = self.call(account, "alipay.trade.close", json!({ "out_trade_no": out_trade_no }), None).await?;
        match (text_code(&node), text(&node, "sub_code")) {
            (SUCCESS, _) => Ok(ChannelStatus::Closed),
            // Never scanned: Alipay has no trade to close, and none can appear any more
            // once payq closes the order.
            (_, "ACQ.TRADE_NOT_EXIST") => Ok(ChannelStatus::NotFound),
            // Paid or already closed: the query tells which.
            (_, "ACQ.TRADE_STATUS_ERROR") => self.query(account, out_trade_no).await,
            _ => Err(unavailable(format!("close: {}", business_error(&node)))),
        }
    }

    /// Refunds `amount` fen of a paid payment, once per `out_request_no` (Alipay treats a
    /// repeated `out_request_no` as the same refund).
    pub async fn refund(
        &self,
        account: &AlipayAccount,
        out_trade_no: &str,
        out_request_no: &str,
        amount: i64,
    ) -> Result<RefundOutcome, ChannelError> {
        let biz = json!({
            "out_trade_no": out_trade_no,
            "out_request_no": out_request_no,
            "refund_amount": protocol::yuan(amount),
        });
        let node = self.call(account, "alipay.trade.refund", biz, None).await?;
        match (text_code(&node), text(&node, "sub_code")) {
            (SUCCESS, _) => Ok(RefundOutcome::Succeeded),
            // Alipay's answer when it could not finish: try again with the same request no.
            (_, "ACQ.SYSTEM_ERROR") => Err(unavailable(format!("refund: {}", business_error(&node)))),
            _ => Ok(RefundOutcome::Refused { reason: business_error(&node) }),
        }
    }
}

/// How long a bill download may take (bills are larger than any other answer).
const BILL_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

impl AlipayClient {
    /// The day's trade bill (`date`: `YYYY-MM-DD`, China time): asks
    /// `alipay.data.dataservice.bill.downloadurl.query` for its URL, downloads the zip and
    /// reads its detail file (docs/channels.md, "Reconciliation").
    pub async fn trade_bill(&self, account: &AlipayAccount, date: &str) -> Result<Bill, BillError> {
        let biz = json!({ "bill_type": "trade", "bill_date": date });
        let node = self
            .call(account, "alipay.data.dataservice.bill.downloadurl.query", biz, None)
            .await
            .map_err(|e| BillError::Unavailable(e.to_string()))?;
        let url = match (text_code(&node), text(&node, "sub_code")) {
            (SUCCESS, _) => text(&node, "bill_download_url").to_owned(),
            (_, "isp.bill_not_exist" | "isp.bill_not_ready") => return Err(BillError::NotReady(business_error(&node))),
            (_, sub) if sub.starts_with("isp.") => return Err(BillError::Unavailable(business_error(&node))),
            _ => return Err(BillError::Refused(business_error(&node))),
        };
        if url.is_empty() {
            return Err(BillError::Unavailable("alipay: the bill answer has no bill_download_url".into()));
        }
        let answer = self
            .http
            .get(&url)
            .timeout(BILL_DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| BillError::Unavailable(format!("alipay: bill download: {e}")))?;
        if !answer.status().is_success() {
            return Err(BillError::Unavailable(format!("alipay: bill download: HTTP {}", answer.status())));
        }
        let raw =
            answer.bytes().await.map_err(|e| BillError::Unavailable(format!("alipay: bill download: {e}")))?.to_vec();
        let rows = super::bill::parse_bill_zip(&raw)?;
        Ok(Bill { rows, raw })
    }
}

fn text_code(node: &Value) -> &str {
    text(node, "code")
}

/// `code msg: sub_code sub_msg`, for logs and failure reasons.
fn business_error(node: &Value) -> String {
    format!("{} {}: {} {}", text(node, "code"), text(node, "msg"), text(node, "sub_code"), text(node, "sub_msg"))
        .trim()
        .to_owned()
}

/// A successful query's `trade_status` as payq's view of the payment.
fn trade_status(node: &Value) -> ChannelStatus {
    match text(node, "trade_status") {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => ChannelStatus::Succeeded { txn_id: text(node, "trade_no").to_owned() },
        "TRADE_CLOSED" => ChannelStatus::Closed,
        _ => ChannelStatus::Pending,
    }
}
