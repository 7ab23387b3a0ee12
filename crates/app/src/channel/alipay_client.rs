//! Calls to the Alipay gateway: `alipay.trade.precreate` (a QR code to scan),
//! `alipay.trade.query`, `alipay.trade.close` and `alipay.trade.refund`, each a signed
//! form POST whose answer is verified against Alipay's public key before it is believed.
//!
//! Answers map to payq's outcomes so that money is never taken twice nor lost: a definite
//! business answer (declined, closed, not found) is final; anything that leaves the result
//! unknown (a timeout, a network error, an HTTP 5xx, `20000` service unavailable, an
//! answer whose signature does not verify) is [`ChannelError::Unavailable`], which leaves
//! the payment pending for the query schedule to settle.

use super::alipay_protocol::{self as protocol, AlipayPublicKey, AppKey};
use super::{ChannelError, ChannelStatus, RefundOutcome};
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
    /// Minutes until Alipay stops accepting payment (`timeout_express`), at least 1.
    pub timeout_minutes: i64,
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
        Ok(AlipayClient { http: reqwest::Client::builder().timeout(timeout).build()? })
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
        let params = protocol::signed_request(
            &account.app_key,
            &account.app_id,
            method,
            &biz.to_string(),
            notify_url,
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
            "timeout_express": format!("{}m", p.timeout_minutes.max(1)),
        });
        let node = self.call(account, "alipay.trade.precreate", biz, Some(p.notify_url)).await?;
        match (text_code(&node), text(&node, "qr_code")) {
            (SUCCESS, qr) if !qr.is_empty() => Ok(qr.to_owned()),
            (SUCCESS, _) => Err(unavailable("precreate answered without a qr_code")),
            _ => Err(ChannelError::Invalid(business_error(&node))),
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

#[cfg(test)]
mod tests {
    //! Against a local gateway on 127.0.0.1 that checks each request's signature with the
    //! application's public key and signs its answers with its own key.
    use super::*;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const APP_KEY: &str = include_str!("testdata/alipay-app-key.pem");
    const APP_PUBLIC_KEY: &str = include_str!("testdata/alipay-app-pub.pem");
    const GATEWAY_KEY: &str = include_str!("testdata/alipay-gateway-key.pem");
    const GATEWAY_PUBLIC_KEY: &str = include_str!("testdata/alipay-gateway-pub.pem");

    /// What the local gateway knows and how it behaves.
    #[derive(Default)]
    struct Gateway {
        /// out_trade_no → (trade_status, total fen).
        trades: HashMap<String, (String, i64)>,
        refunds: HashMap<String, i64>,
        /// Answer every call with this HTTP status instead.
        fail_with: Option<u16>,
        /// Sign answers with the wrong key.
        forge: bool,
    }

    type Shared = Arc<Mutex<Gateway>>;

    async fn gateway(State(state): State<Shared>, body: String) -> axum::response::Response {
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let app_public = AlipayPublicKey::from_pem(APP_PUBLIC_KEY).expect("app public key");
        let content = protocol::signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
        let method = get("method");
        let node = if app_public.verify(&content, &get("sign")).is_err() {
            json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"})
        } else {
            let mut g = state.lock().expect("gateway state");
            if let Some(code) = g.fail_with {
                return (StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY), "down").into_response();
            }
            let biz: Value = serde_json::from_str(&get("biz_content")).unwrap_or_default();
            let no = biz["out_trade_no"].as_str().unwrap_or_default().to_owned();
            match method.as_str() {
                "alipay.trade.precreate" => {
                    let fen = protocol::minor_units(biz["total_amount"].as_str().unwrap_or_default()).unwrap_or(0);
                    g.trades.entry(no.clone()).or_insert(("WAIT_BUYER_PAY".into(), fen));
                    json!({"code": "10000", "msg": "Success", "out_trade_no": no, "qr_code": format!("https://qr.alipay.com/{no}")})
                }
                "alipay.trade.query" => match g.trades.get(&no) {
                    Some((status, fen)) => json!({"code": "10000", "msg": "Success", "out_trade_no": no,
                        "trade_no": format!("2026{no}"), "trade_status": status, "total_amount": protocol::yuan(*fen)}),
                    None => json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}),
                },
                "alipay.trade.close" => match g.trades.get_mut(&no) {
                    Some((status, _)) if status == "WAIT_BUYER_PAY" => {
                        *status = "TRADE_CLOSED".into();
                        json!({"code": "10000", "msg": "Success", "out_trade_no": no})
                    }
                    Some(_) => json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_STATUS_ERROR"}),
                    None => json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}),
                },
                "alipay.trade.refund" => {
                    let fen = protocol::minor_units(biz["refund_amount"].as_str().unwrap_or_default()).unwrap_or(0);
                    let request = biz["out_request_no"].as_str().unwrap_or_default().to_owned();
                    let total = g.trades.get(&no).map_or(0, |(_, t)| *t);
                    let refunded: i64 = g.refunds.iter().filter(|(r, _)| **r != request).map(|(_, f)| f).sum();
                    if refunded + fen > total {
                        json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"})
                    } else {
                        g.refunds.insert(request, fen);
                        json!({"code": "10000", "msg": "Success", "fund_change": "Y"})
                    }
                }
                _ => json!({"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method"}),
            }
        };
        let forge = state.lock().map(|g| g.forge).unwrap_or(false);
        let signer = AppKey::from_pem(if forge { APP_KEY } else { GATEWAY_KEY }).expect("gateway key");
        let node_text = node.to_string();
        let name = format!("{}_response", method.replace('.', "_"));
        format!(r#"{{"{name}":{node_text},"sign":"{}"}}"#, signer.sign(&node_text)).into_response()
    }

    async fn start() -> (AlipayAccount, Shared) {
        let state: Shared = Arc::default();
        let app = axum::Router::new().route("/gateway.do", axum::routing::post(gateway)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let account = AlipayAccount {
            app_id: "2021000000000001".into(),
            app_key: AppKey::from_pem(APP_KEY).expect("app key"),
            alipay_public_key: AlipayPublicKey::from_pem(GATEWAY_PUBLIC_KEY).expect("gateway public key"),
            gateway_url: format!("http://{addr}/gateway.do"),
        };
        (account, state)
    }

    fn client() -> AlipayClient {
        AlipayClient::new(Duration::from_secs(5)).expect("client")
    }

    fn pay<'a>(no: &'a str) -> Precreate<'a> {
        Precreate {
            out_trade_no: no,
            amount: 8888,
            subject: "order",
            notify_url: "http://127.0.0.1/notify",
            timeout_minutes: 15,
        }
    }

    #[tokio::test]
    async fn a_payment_goes_from_qr_code_to_paid_and_is_refunded_once_per_request_no() {
        let (account, gateway) = start().await;
        let c = client();
        assert_eq!(c.precreate(&account, &pay("pay_1")).await.expect("qr"), "https://qr.alipay.com/pay_1");
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), ChannelStatus::Pending);
        assert_eq!(c.query(&account, "pay_unknown").await.expect("query"), ChannelStatus::NotFound);
        gateway.lock().expect("state").trades.insert("pay_1".into(), ("TRADE_SUCCESS".into(), 8888));
        assert_eq!(
            c.query(&account, "pay_1").await.expect("query"),
            ChannelStatus::Succeeded { txn_id: "2026pay_1".into() }
        );
        // Paid: closing it says so instead of closing.
        assert_eq!(
            c.close(&account, "pay_1").await.expect("close"),
            ChannelStatus::Succeeded { txn_id: "2026pay_1".into() }
        );
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("refund"), RefundOutcome::Succeeded);
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("same refund"), RefundOutcome::Succeeded);
        assert!(matches!(
            c.refund(&account, "pay_1", "ref_2", 5000).await.expect("too much"),
            RefundOutcome::Refused { .. }
        ));
    }

    #[tokio::test]
    async fn an_unpaid_payment_closes_and_one_never_scanned_is_not_found() {
        let (account, _gateway) = start().await;
        let c = client();
        c.precreate(&account, &pay("pay_2")).await.expect("qr");
        assert_eq!(c.close(&account, "pay_2").await.expect("close"), ChannelStatus::Closed);
        assert_eq!(c.query(&account, "pay_2").await.expect("query"), ChannelStatus::Closed);
        assert_eq!(c.close(&account, "pay_never").await.expect("close"), ChannelStatus::NotFound);
    }

    #[tokio::test]
    async fn unknown_results_are_unavailable_never_an_outcome() {
        let (account, gateway) = start().await;
        let c = client();
        gateway.lock().expect("state").forge = true;
        assert!(matches!(c.query(&account, "pay_3").await, Err(ChannelError::Unavailable(_))), "forged answer");
        gateway.lock().expect("state").forge = false;
        gateway.lock().expect("state").fail_with = Some(502);
        assert!(matches!(c.query(&account, "pay_3").await, Err(ChannelError::Unavailable(_))), "HTTP 502");
        let mut nowhere = account.clone();
        nowhere.gateway_url = "http://127.0.0.1:9/gateway.do".into();
        assert!(matches!(c.precreate(&nowhere, &pay("pay_3")).await, Err(ChannelError::Unavailable(_))));
        // A wrong application key: the gateway refuses the signature, a definite answer.
        gateway.lock().expect("state").fail_with = None;
        let mut wrong_key = account.clone();
        wrong_key.app_key = AppKey::from_pem(GATEWAY_KEY).expect("another key");
        assert!(matches!(c.precreate(&wrong_key, &pay("pay_3")).await, Err(ChannelError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_gateway_that_hangs_is_unavailable_after_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        // Accepts connections and never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let (mut account, _gateway) = start().await;
        account.gateway_url = format!("http://{addr}/gateway.do");
        let c = AlipayClient::new(Duration::from_millis(300)).expect("client");
        let started = std::time::Instant::now();
        assert!(matches!(c.query(&account, "pay_4").await, Err(ChannelError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
