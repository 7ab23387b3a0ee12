//! Calls to the WeChat Pay API v3: Native pay (`code_url`, the QR code to scan), the
//! transaction query by `out_trade_no`, close, and refunds with their query. Each request
//! carries a `WECHATPAY2-SHA256-RSA2048` signature; each answer is believed only after its
//! signature verifies under one of the merchant's platform certificates.
//!
//! Answers map to payq's outcomes so that money is never taken twice nor lost: a definite,
//! verified business answer (declined, closed, not found, refund refused) is final;
//! anything that leaves the result unknown (a timeout, a network error, an HTTP 5xx or
//! 429, an answer whose signature does not verify, a refund still processing) is
//! [`ChannelError::Unavailable`], which leaves the payment pending for the query schedule,
//! or the refund for its retries, to settle.

use super::protocol::{self as protocol, MerchantKey, SignatureHeaders, SignedRequest, VerificationKey};
use crate::bill::{Bill, BillError};
use crate::{ChannelError, ChannelStatus, RefundOutcome};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// WeChat Pay's production API.
pub const PRODUCTION_BASE_URL: &str = "https://api.mch.weixin.qq.com";

/// One merchant's WeChat Pay credentials and API base URL.
#[derive(Clone)]
pub struct WechatPayAccount {
    /// The merchant id (`mchid`).
    pub mch_id: String,
    /// The app id (`appid`) the payments are made in.
    pub app_id: String,
    /// The serial number of the merchant's API certificate (names the key requests are
    /// signed with).
    pub serial_no: String,
    pub merchant_key: MerchantKey,
    /// Decrypts notifications (32 characters).
    pub api_v3_key: String,
    /// What WeChat Pay signs answers and notifications with: its platform certificates,
    /// its public key, or both during a switch-over (docs/channels.md).
    pub verification_keys: Vec<VerificationKey>,
    /// The WeChat Pay public key's id, when the merchant has one: requests name it in
    /// `Wechatpay-Serial`, so that answers are signed with that key.
    pub public_key_id: Option<String>,
    /// The mini program's app id (`appid` of `mini_program` payments), if set up.
    pub mini_program_app_id: Option<String>,
    /// `https://api.mch.weixin.qq.com` by default; a test gateway is set the same way.
    pub base_url: String,
}

impl std::fmt::Debug for WechatPayAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayAccount")
            .field("mch_id", &self.mch_id)
            .field("app_id", &self.app_id)
            .field("serial_no", &self.serial_no)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The kind of transaction a payment start makes (its path under
/// `/v3/pay/transactions/`), with what that kind needs.
#[derive(Debug, Clone, Copy)]
pub enum TradeKind<'a> {
    /// A QR code (`code_url`).
    Native,
    /// Inside WeChat: an official account page or a mini program (`prepay_id`), in the app
    /// `app_id` whose user `openid` pays.
    Jsapi { app_id: &'a str, openid: &'a str },
    /// A phone's browser outside WeChat (`h5_url`), for the buyer at `client_ip`.
    H5 { client_ip: &'a str },
    /// The shop's own app (`prepay_id`).
    App,
}

impl TradeKind<'_> {
    fn path(&self) -> &'static str {
        match self {
            TradeKind::Native => "/v3/pay/transactions/native",
            TradeKind::Jsapi { .. } => "/v3/pay/transactions/jsapi",
            TradeKind::H5 { .. } => "/v3/pay/transactions/h5",
            TradeKind::App => "/v3/pay/transactions/app",
        }
    }

    /// The answer's field the buyer's next step is made of.
    fn answer_field(&self) -> &'static str {
        match self {
            TradeKind::Native => "code_url",
            TradeKind::Jsapi { .. } | TradeKind::App => "prepay_id",
            TradeKind::H5 { .. } => "h5_url",
        }
    }
}

/// A payment to start.
#[derive(Debug, Clone)]
pub struct NativePay<'a> {
    /// payq's payment id, WeChat Pay's `out_trade_no`.
    pub out_trade_no: &'a str,
    /// In fen.
    pub amount: i64,
    pub description: &'a str,
    /// Where WeChat Pay posts the notification.
    pub notify_url: &'a str,
    /// When WeChat Pay stops accepting payment, unix milliseconds.
    pub expires_at_ms: i64,
}

/// The WeChat Pay API client (one per process; accounts are passed per call).
#[derive(Debug, Clone, Default)]
pub struct WechatPayClient {
    http: reqwest::Client,
}

/// A verified (or, for a 4xx, possibly unverified) answer.
struct Answer {
    status: u16,
    body: Value,
    /// Whether the signature verified (always true for a 2xx: others are errors).
    verified: bool,
}

impl Answer {
    fn code(&self) -> &str {
        text(&self.body, "code")
    }

    fn error(&self) -> String {
        format!("HTTP {} {} {}", self.status, self.code(), text(&self.body, "message")).trim().to_owned()
    }

    /// A business error WeChat Pay signed, so it is its answer and not someone else's.
    fn verified_error(&self, code: &str) -> bool {
        self.verified && (400..500).contains(&self.status) && self.code() == code
    }
}

fn unavailable(what: impl std::fmt::Display) -> ChannelError {
    ChannelError::Unavailable(format!("wechatpay: {what}"))
}

fn text<'a>(node: &'a Value, field: &str) -> &'a str {
    node.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

impl WechatPayClient {
    /// A client whose calls give up after `timeout` (their result is then unknown).
    pub fn new(timeout: Duration) -> anyhow::Result<WechatPayClient> {
        Ok(WechatPayClient { http: crate::http_client().timeout(timeout).build()? })
    }

    /// A request to `url` (whose path and query are `path_and_query`) signed with the
    /// merchant's key, `body` being what it will carry.
    fn signed(
        &self,
        account: &WechatPayAccount,
        method: Method,
        url: &str,
        path_and_query: &str,
        body: &str,
    ) -> reqwest::RequestBuilder {
        let nonce = payq_domain::crypto::random_hex(16).to_ascii_uppercase();
        let request = SignedRequest {
            method: method.as_str(),
            path_and_query,
            timestamp: payq_domain::Timestamp::now().unix_seconds(),
            nonce: &nonce,
            body,
        };
        let authorization = request.authorization(&account.merchant_key, &account.mch_id, &account.serial_no);
        let mut builder = self
            .http
            .request(method, url)
            .header("authorization", authorization)
            .header("accept", "application/json")
            .header("user-agent", concat!("payq/", env!("CARGO_PKG_VERSION")));
        if let Some(id) = &account.public_key_id {
            builder = builder.header("wechatpay-serial", id);
        }
        builder
    }

    /// Sends a signed request; an answer that is not a 2xx or 4xx, or a 2xx whose
    /// signature does not verify, is an error.
    async fn call(
        &self,
        account: &WechatPayAccount,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ChannelError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let url = format!("{}{path_and_query}", account.base_url.trim_end_matches('/'));
        let mut builder = self.signed(account, method.clone(), &url, path_and_query, &body);
        if method != Method::GET {
            builder = builder.header("content-type", "application/json").body(body);
        }
        let answer = builder.send().await.map_err(|e| unavailable(format!("{method} {path_and_query}: {e}")))?;
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let raw = answer.text().await.map_err(|e| unavailable(format!("{method} {path_and_query}: {e}")))?;
        let answered = (200..300).contains(&status) || (400..500).contains(&status);
        if !answered || status == 429 {
            return Err(unavailable(format!("{method} {path_and_query}: HTTP {status}")));
        }
        let signature = SignatureHeaders {
            serial: header(&headers, "wechatpay-serial"),
            timestamp: header(&headers, "wechatpay-timestamp"),
            nonce: header(&headers, "wechatpay-nonce"),
            signature: header(&headers, "wechatpay-signature"),
        };
        let verified =
            protocol::verify(&account.verification_keys, signature, &raw, payq_domain::Timestamp::now().unix_seconds());
        if let (Err(e), true) = (&verified, (200..300).contains(&status)) {
            return Err(unavailable(format!("{method} {path_and_query}: answer {e}")));
        }
        let body = if raw.trim().is_empty() { Value::Null } else { serde_json::from_str(&raw).unwrap_or(Value::Null) };
        Ok(Answer { status, body, verified: verified.is_ok() })
    }

    /// Starts a Native (QR code) payment; answers the `code_url` to show as a QR code.
    /// Repeating it for the same `out_trade_no` gives the same payment at WeChat Pay.
    pub async fn native(&self, account: &WechatPayAccount, p: &NativePay<'_>) -> Result<String, ChannelError> {
        self.prepay(account, p, TradeKind::Native).await
    }

    /// Starts a payment of `kind`; answers what the buyer's next step is made of: the
    /// `code_url` (Native), the `prepay_id` (JSAPI, app) or the `h5_url` (H5). Repeating it
    /// with the same request gives the same payment at WeChat Pay.
    pub async fn prepay(
        &self,
        account: &WechatPayAccount,
        p: &NativePay<'_>,
        kind: TradeKind<'_>,
    ) -> Result<String, ChannelError> {
        let mut body = json!({
            "appid": account.app_id,
            "mchid": account.mch_id,
            "description": p.description,
            "out_trade_no": p.out_trade_no,
            "time_expire": protocol::rfc3339_china(p.expires_at_ms),
            "notify_url": p.notify_url,
            "amount": { "total": p.amount, "currency": "CNY" },
        });
        match kind {
            TradeKind::Jsapi { app_id, openid } => {
                body["appid"] = json!(app_id);
                body["payer"] = json!({ "openid": openid });
            }
            TradeKind::H5 { client_ip } => {
                body["scene_info"] = json!({ "payer_client_ip": client_ip, "h5_info": { "type": "Wap" } });
            }
            TradeKind::Native | TradeKind::App => {}
        }
        let answer = self.call(account, Method::POST, kind.path(), Some(&body)).await?;
        let field = kind.answer_field();
        match (answer.status, text(&answer.body, field)) {
            (200..300, value) if !value.is_empty() => Ok(value.to_owned()),
            (200..300, _) => Err(unavailable(format!("{} answered without {field}", kind.path()))),
            // Refused before any payment existed: the buyer never saw a way to pay.
            _ => Err(ChannelError::Invalid(format!("wechatpay: {} refused: {}", kind.path(), answer.error()))),
        }
    }

    /// The transaction as WeChat Pay has it (`None`: it has none).
    async fn transaction(&self, account: &WechatPayAccount, out_trade_no: &str) -> Result<Option<Value>, ChannelError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}", account.mch_id);
        let answer = self.call(account, Method::GET, &path, None).await?;
        match answer.status {
            200..300 => Ok(Some(answer.body)),
            _ if answer.verified_error("ORDER_NOT_EXIST") => Ok(None),
            _ => Err(unavailable(format!("query: {}", answer.error()))),
        }
    }

    /// The payment's state at WeChat Pay.
    pub async fn query(&self, account: &WechatPayAccount, out_trade_no: &str) -> Result<ChannelStatus, ChannelError> {
        Ok(match self.transaction(account, out_trade_no).await? {
            Some(transaction) => trade_state(&transaction)?,
            None => ChannelStatus::NotFound,
        })
    }

    /// Closes an unpaid payment; answers the state after the attempt (a payment paid
    /// meanwhile stays `Succeeded`: WeChat Pay refuses to close it, and a query says so).
    pub async fn close(&self, account: &WechatPayAccount, out_trade_no: &str) -> Result<ChannelStatus, ChannelError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let answer = self.call(account, Method::POST, &path, Some(&json!({ "mchid": account.mch_id }))).await?;
        match answer.status {
            200..300 => Ok(ChannelStatus::Closed),
            // Too soon after the trade's creation (WeChat Pay's rule): try again later.
            403 if answer.code() == "RULE_LIMIT" => Err(unavailable("close: RULE_LIMIT, too soon after the creation")),
            // Paid, already closed or never created: the query tells which.
            _ => self.query(account, out_trade_no).await,
        }
    }

    /// Refunds `amount` fen of a paid payment, once per `out_refund_no`: an existing
    /// refund with that number is looked up first and never created twice.
    pub async fn refund(
        &self,
        account: &WechatPayAccount,
        out_trade_no: &str,
        out_refund_no: &str,
        amount: i64,
    ) -> Result<RefundOutcome, ChannelError> {
        let path = format!("/v3/refund/domestic/refunds/{out_refund_no}");
        let existing = self.call(account, Method::GET, &path, None).await?;
        match existing.status {
            200..300 => return refund_status(&existing.body),
            _ if existing.verified_error("RESOURCE_NOT_EXISTS") => {}
            _ => return Err(unavailable(format!("refund query: {}", existing.error()))),
        }
        let Some(transaction) = self.transaction(account, out_trade_no).await? else {
            return Ok(RefundOutcome::Refused { reason: "wechatpay: the payment does not exist".into() });
        };
        let total = transaction.pointer("/amount/total").and_then(Value::as_i64).unwrap_or_default();
        let body = json!({
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "amount": { "refund": amount, "total": total, "currency": "CNY" },
        });
        let answer = self.call(account, Method::POST, "/v3/refund/domestic/refunds", Some(&body)).await?;
        match answer.status {
            200..300 => refund_status(&answer.body),
            // A signed refusal is final; anything else may not have been WeChat Pay's
            // answer, and asking again with the same out_refund_no is safe.
            _ if answer.verified && answer.code() != "SYSTEM_ERROR" => {
                Ok(RefundOutcome::Refused { reason: format!("wechatpay: {}", answer.error()) })
            }
            _ => Err(unavailable(format!("refund: {}", answer.error()))),
        }
    }
}

/// How long a bill download may take (bills are larger than any other answer).
const BILL_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

impl WechatPayClient {
    /// The day's trade bill (`date`: `YYYY-MM-DD`): `GET /v3/bill/tradebill` (signed
    /// answer) gives the download URL and the file's SHA1; the file is fetched with a signed
    /// request (its answer is not signed: the digest vouches for it) and read
    /// (docs/channels.md, "Reconciliation").
    pub async fn trade_bill(&self, account: &WechatPayAccount, date: &str) -> Result<Bill, BillError> {
        let path = format!("/v3/bill/tradebill?bill_date={date}&bill_type=ALL&tar_type=GZIP");
        let answer =
            self.call(account, Method::GET, &path, None).await.map_err(|e| BillError::Unavailable(e.to_string()))?;
        match answer.status {
            200..300 => {}
            _ if answer.verified_error("NO_STATEMENT_EXIST") || answer.verified_error("STATEMENT_CREATING") => {
                return Err(BillError::NotReady(format!("wechatpay: {}", answer.error())));
            }
            _ if answer.verified && answer.code() != "SYSTEM_ERROR" => {
                return Err(BillError::Refused(format!("wechatpay: {}", answer.error())));
            }
            _ => return Err(BillError::Unavailable(format!("wechatpay: tradebill: {}", answer.error()))),
        }
        let url = text(&answer.body, "download_url").to_owned();
        let digest = text(&answer.body, "hash_value").to_owned();
        let hash_type = text(&answer.body, "hash_type");
        if url.is_empty() || digest.is_empty() || !hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(BillError::Unavailable(format!("wechatpay: tradebill answered {}", answer.body)));
        }
        let path_and_query = reqwest::Url::parse(&url)
            .map(|u| match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            })
            .map_err(|e| BillError::Unavailable(format!("wechatpay: download_url {url:?}: {e}")))?;
        let file = self
            .signed(account, Method::GET, &url, &path_and_query, "")
            .timeout(BILL_DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| BillError::Unavailable(format!("wechatpay: bill download: {e}")))?;
        if !file.status().is_success() {
            return Err(BillError::Unavailable(format!("wechatpay: bill download: HTTP {}", file.status())));
        }
        let raw =
            file.bytes().await.map_err(|e| BillError::Unavailable(format!("wechatpay: bill download: {e}")))?.to_vec();
        let rows = super::bill::parse_bill_file(&raw, &digest)?;
        Ok(Bill { rows, raw })
    }
}

/// A transaction's `trade_state` as payq's view of the payment; a state payq does not
/// know is no answer (`Unavailable`: asked again later, and logged), never taken as pending.
pub fn trade_state(transaction: &Value) -> Result<ChannelStatus, ChannelError> {
    match text(transaction, "trade_state") {
        // `REFUND`: paid, then (partly) refunded.
        "SUCCESS" | "REFUND" => Ok(ChannelStatus::Succeeded { txn_id: text(transaction, "transaction_id").to_owned() }),
        "CLOSED" | "REVOKED" => Ok(ChannelStatus::Closed),
        "PAYERROR" => Ok(ChannelStatus::Failed {
            reason: format!("wechatpay: PAYERROR {}", text(transaction, "trade_state_desc")).trim().to_owned(),
        }),
        "NOTPAY" | "USERPAYING" => Ok(ChannelStatus::Pending),
        other => {
            let shown: String = other.chars().take(40).collect();
            Err(unavailable(format!("unknown trade_state {shown:?}; asked again later")))
        }
    }
}

/// A refund's `status` (in an answer; `refund_status` in a notification): `SUCCESS` is
/// done, `PROCESSING` is not finished yet, `CLOSED` and `ABNORMAL` are refusals (the money
/// did not go back).
pub fn refund_status(refund: &Value) -> Result<RefundOutcome, ChannelError> {
    let status = match text(refund, "status") {
        "" => text(refund, "refund_status"),
        status => status,
    };
    match status {
        "SUCCESS" => Ok(RefundOutcome::Succeeded),
        "PROCESSING" => Ok(RefundOutcome::Processing),
        "CLOSED" | "ABNORMAL" => Ok(RefundOutcome::Refused { reason: format!("wechatpay: refund {status}") }),
        other => Err(unavailable(format!("refund {other}; asked again later"))),
    }
}
