//! A local Alipay gateway on 127.0.0.1, for tests and `payq demo`: it speaks the open
//! platform's protocol (signed form requests, signed JSON answers, signed form
//! notifications) with keys it makes at start, keeps trades in memory, and plays the buyer:
//! [`AlipaySandbox::buyer_pays`] marks a trade paid and posts Alipay's notification to the
//! `notify_url` its precreate named. It is a counterpart to check payq against, never a
//! stand-in for Alipay in production.

mod buyer;
pub use buyer::Refusal;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use payq_channels::alipay::protocol::{self as protocol, AlipayPublicKey, AppKey};
use payq_channels::rsa_keys::pem_pair;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One trade at the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxTrade {
    /// `WAIT_BUYER_PAY`, `TRADE_SUCCESS` or `TRADE_CLOSED`.
    pub status: String,
    /// In fen.
    pub amount: i64,
    pub notify_url: String,
    /// Fen refunded, by `out_request_no`.
    pub refunds: HashMap<String, i64>,
    /// Gateway calls made for this trade, by method.
    pub calls: HashMap<String, u32>,
    /// The create call's `time_expire` (`yyyy-MM-dd HH:mm:ss`, China time).
    pub time_expire: String,
    /// Whether the buyer scanned the QR code: until then Alipay has no trade to query or
    /// close (it answers `ACQ.TRADE_NOT_EXIST`).
    pub scanned: bool,
    /// The method that created the trade (`alipay.trade.precreate`, `.page.pay`,
    /// `.wap.pay`, `.app.pay`).
    pub method: String,
    /// Where Alipay's page sends the buyer back (page and wap pay), and the wap page's
    /// `quit_url`.
    pub return_url: String,
    pub quit_url: String,
}

#[derive(Default)]
struct Books {
    trades: HashMap<String, SandboxTrade>,
    /// Accept calls and never answer (a gateway that hangs).
    hang: bool,
    /// Answer every call with this HTTP status instead (a gateway in trouble).
    fail_with: Option<u16>,
    /// Carry out every call at once but answer only after this long (a slow gateway).
    delay: Option<std::time::Duration>,
}

struct Inner {
    app_id: String,
    /// Verifies the application's requests.
    app_public_key: AlipayPublicKey,
    /// Signs answers and notifications (Alipay's key).
    alipay_key: AppKey,
    books: Mutex<Books>,
    /// The money that moved, for the day's bills.
    bills: Mutex<crate::bills::BillBook>,
    /// Where the gateway listens (bill downloads are there).
    base_url: String,
}

/// A running sandbox gateway.
#[derive(Clone)]
pub struct AlipaySandbox {
    /// The gateway URL (`http://127.0.0.1:<port>/gateway.do`).
    pub gateway_url: String,
    /// The application's id.
    pub app_id: String,
    /// The application's private key (PKCS#8 PEM), made for this run.
    pub app_private_key_pem: String,
    /// Alipay's public key (PEM), made for this run.
    pub alipay_public_key_pem: String,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

impl AlipaySandbox {
    /// Starts a gateway on a free port of 127.0.0.1 with fresh keys for the application
    /// and for "Alipay".
    pub async fn start() -> anyhow::Result<AlipaySandbox> {
        let (app_private, app_public) = pem_pair()?;
        let (alipay_private, alipay_public) = pem_pair()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            app_id: "2021000000000001".into(),
            app_public_key: AlipayPublicKey::from_pem(&app_public)?,
            alipay_key: AppKey::from_pem(&alipay_private)?,
            books: Mutex::default(),
            bills: Mutex::default(),
            base_url: format!("http://{addr}"),
        });
        let app = axum::Router::new()
            .route("/gateway.do", axum::routing::post(gateway).get(buyer::checkout_page))
            .route("/bills/{token}", axum::routing::get(bill_file))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AlipaySandbox {
            gateway_url: format!("http://{addr}/gateway.do"),
            app_id: inner.app_id.clone(),
            app_private_key_pem: app_private,
            alipay_public_key_pem: alipay_public,
            inner,
            http: payq_channels::http_client().timeout(std::time::Duration::from_secs(10)).build()?,
        })
    }

    /// The `channels.alipay` object that sets a merchant up with this sandbox.
    pub fn credentials(&self) -> Value {
        json!({
            "app_id": self.app_id,
            "private_key": self.app_private_key_pem,
            "alipay_public_key": self.alipay_public_key_pem,
            "gateway_url": self.gateway_url,
        })
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.inner)
    }

    /// The trade with this `out_trade_no`, if the sandbox has one.
    pub fn trade(&self, out_trade_no: &str) -> Option<SandboxTrade> {
        self.books().trades.get(out_trade_no).cloned()
    }

    /// Makes the gateway hang (accept and never answer) or answer again.
    pub fn set_hang(&self, hang: bool) {
        self.books().hang = hang;
    }

    /// Makes the gateway slow: it carries out each call at once and answers after `delay`
    /// (`None`: at once again).
    pub fn set_delay(&self, delay: Option<std::time::Duration>) {
        self.books().delay = delay;
    }

    /// Makes the gateway answer every call with HTTP `status` (`None`: answer again).
    pub fn set_failure(&self, status: Option<u16>) {
        self.books().fail_with = status;
    }

    /// The buyer scans the QR code and does not pay (yet): the trade exists at Alipay.
    pub fn buyer_scans(&self, out_trade_no: &str) -> bool {
        self.books().trades.get_mut(out_trade_no).map(|t| t.scanned = true).is_some()
    }

    /// The buyer pays without Alipay notifying anyone (a lost notification): only a query
    /// finds out.
    pub fn buyer_pays_silently(&self, out_trade_no: &str) -> bool {
        self.pay_silently_from(out_trade_no, "WAIT_BUYER_PAY")
    }

    /// The buyer's payment goes through although the trade was closed (a race with the
    /// close), and Alipay notifies no one: only the day's bill shows it.
    pub fn buyer_pays_after_close_silently(&self, out_trade_no: &str) -> bool {
        self.pay_silently_from(out_trade_no, "TRADE_CLOSED")
    }

    /// Pays a trade that is in `status`, notifying no one (its bill shows it); false when
    /// there is no such trade in that status.
    fn pay_silently_from(&self, out_trade_no: &str, status: &str) -> bool {
        let amount = match self.books().trades.get_mut(out_trade_no) {
            Some(t) if t.status == status => {
                t.status = "TRADE_SUCCESS".into();
                t.scanned = true;
                t.amount
            }
            _ => return false,
        };
        self.bill_book().paid(out_trade_no, &trade_no(out_trade_no), amount);
        true
    }

    /// The money that moved at this gateway, for its bills (and for tests to spoil them).
    pub fn bill_book(&self) -> MutexGuard<'_, crate::bills::BillBook> {
        self.inner.bills.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The buyer pays (also after payq closed the trade: a late payment) and Alipay posts its
    /// notification; answers payq's reply (status, body).
    pub async fn buyer_pays(&self, out_trade_no: &str) -> anyhow::Result<(u16, String)> {
        let (amount, url) = {
            let mut books = self.books();
            let trade = books.trades.get_mut(out_trade_no).ok_or_else(|| anyhow::anyhow!("no trade {out_trade_no}"))?;
            if trade.status != "TRADE_SUCCESS" {
                self.bill_book().paid(out_trade_no, &trade_no(out_trade_no), trade.amount);
            }
            trade.status = "TRADE_SUCCESS".into();
            trade.scanned = true;
            (trade.amount, trade.notify_url.clone())
        };
        let params = self.notification(out_trade_no, amount, "TRADE_SUCCESS");
        self.notify(&url, &params, None).await
    }

    /// The parameters of Alipay's notification for a trade, unsigned.
    pub fn notification(&self, out_trade_no: &str, amount: i64, trade_status: &str) -> Vec<(String, String)> {
        [
            ("notify_type", "trade_status_sync"),
            ("notify_id", &format!("nid_{out_trade_no}")),
            ("app_id", &self.app_id),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("out_trade_no", out_trade_no),
            ("trade_no", &trade_no(out_trade_no)),
            ("trade_status", trade_status),
            ("total_amount", &protocol::yuan(amount)),
            ("notify_time", &protocol::gateway_timestamp(payq_domain::Timestamp::now().millis())),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// Posts `params` to `url` signed as Alipay signs them, or with `forged_key` instead;
    /// answers payq's reply (status, body).
    pub async fn notify(
        &self,
        url: &str,
        params: &[(String, String)],
        forged_key: Option<&AppKey>,
    ) -> anyhow::Result<(u16, String)> {
        let content = protocol::signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
        let signer = forged_key.unwrap_or(&self.inner.alipay_key);
        let mut signed = params.to_vec();
        signed.push(("sign_type".into(), "RSA2".into()));
        signed.push(("sign".into(), signer.sign(&content)));
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(signed.iter()).finish();
        let r = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded;charset=utf-8")
            .body(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}

fn bills(inner: &Inner) -> MutexGuard<'_, crate::bills::BillBook> {
    inner.bills.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `alipay.data.dataservice.bill.downloadurl.query`: the day's trade bill as Alipay makes
/// it (a zip of GBK CSV: the detail file and a summary), behind a download URL.
fn bill_download_url(inner: &Inner, biz: &Value) -> Value {
    let date = biz["bill_date"].as_str().unwrap_or_default();
    if biz["bill_type"] != "trade" || date.len() != 10 {
        return business_failure("isv.invalid-parameter");
    }
    let mut book = bills(inner);
    if book.ask() {
        return business_failure("isp.bill_not_exist");
    }
    let rows = book.rows_for(date);
    let compact = date.replace('-', "");
    let detail = payq_channels::alipay::bill::write_detail_csv("20880000000000000156", date, &rows);
    let summary =
        format!("#支付宝业务汇总查询\n门店编号,门店名称,交易订单总笔数,退款订单总笔数\n\t,\t,{},0\n", rows.len());
    let zip = match zip_of(&[
        (format!("20880000000000000156_{compact}_业务明细.csv"), gbk(&detail)),
        (format!("20880000000000000156_{compact}_业务明细(汇总).csv"), gbk(&summary)),
    ]) {
        Ok(zip) => zip,
        Err(_) => return business_failure("isp.unknow-error"),
    };
    let token = book.hand_out(zip);
    json!({ "code": "10000", "msg": "Success", "bill_download_url": format!("{}/bills/{token}", inner.base_url) })
}

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> zip::result::ZipResult<Vec<u8>> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    for (name, content) in files {
        zip.start_file(name.as_str(), zip::write::SimpleFileOptions::default())?;
        zip.write_all(content)?;
    }
    zip.finish()?;
    Ok(out.into_inner())
}

/// `GET /bills/{token}`: a bill file handed out by the bill request.
async fn bill_file(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    match bills(&inner).file(&token) {
        Some(file) => ([("content-type", "application/zip")], file).into_response(),
        None => (StatusCode::NOT_FOUND, "no such bill").into_response(),
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Books> {
    inner.books.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Alipay's own reference for a trade.
fn trade_no(out_trade_no: &str) -> String {
    format!("2026{}", out_trade_no.trim_start_matches("pay_"))
}

fn business_failure(sub_code: &str) -> Value {
    json!({ "code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_code })
}

/// `/gateway.do`: checks the request's signature, carries out the method, answers signed
/// (late, when the gateway is slow).
async fn gateway(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let delay = lock(&inner).delay;
    let answer = carry_out(&inner, body).await;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    answer
}

async fn carry_out(inner: &Inner, body: String) -> Response {
    let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let method = get("method");
    if lock(inner).hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = lock(inner).fail_with {
        return (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), "unavailable").into_response();
    }
    let content = protocol::signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
    let node = if inner.app_public_key.verify(&content, &get("sign")).is_err() || get("app_id") != inner.app_id {
        // Alipay answers a request it cannot authenticate unsigned.
        let node = json!({ "code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature" });
        let name = format!("{}_response", method.replace('.', "_"));
        return (StatusCode::OK, format!(r#"{{"{name}":{node}}}"#)).into_response();
    } else {
        let biz: Value = serde_json::from_str(&get("biz_content")).unwrap_or_default();
        let no = biz["out_trade_no"].as_str().unwrap_or_default().to_owned();
        let fen = |field: &str| protocol::minor_units(biz[field].as_str().unwrap_or_default()).ok();
        let mut books = lock(inner);
        if let Some(t) = books.trades.get_mut(&no) {
            *t.calls.entry(method.clone()).or_default() += 1;
        }
        match method.as_str() {
            "alipay.trade.precreate" => match fen("total_amount") {
                Some(amount) if amount > 0 => {
                    let trade = books.trades.entry(no.clone()).or_insert_with(|| SandboxTrade {
                        status: "WAIT_BUYER_PAY".into(),
                        amount,
                        notify_url: get("notify_url"),
                        refunds: HashMap::new(),
                        calls: HashMap::from([(method.clone(), 1)]),
                        time_expire: biz["time_expire"].as_str().unwrap_or_default().to_owned(),
                        scanned: false,
                        method: method.clone(),
                        return_url: String::new(),
                        quit_url: String::new(),
                    });
                    if trade.amount == amount {
                        json!({ "code": "10000", "msg": "Success", "out_trade_no": no,
                                "qr_code": format!("https://qr.alipay.com/{}", trade_no(&no)) })
                    } else {
                        business_failure("ACQ.CONTEXT_INCONSISTENT")
                    }
                }
                _ => business_failure("ACQ.INVALID_PARAMETER"),
            },
            "alipay.trade.query" => match books.trades.get(&no) {
                Some(t) if !t.scanned && t.status == "WAIT_BUYER_PAY" => business_failure("ACQ.TRADE_NOT_EXIST"),
                Some(t) => json!({ "code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": trade_no(&no),
                                   "trade_status": t.status, "total_amount": protocol::yuan(t.amount) }),
                None => business_failure("ACQ.TRADE_NOT_EXIST"),
            },
            "alipay.trade.close" => match books.trades.get_mut(&no) {
                Some(t) if !t.scanned && t.status == "WAIT_BUYER_PAY" => {
                    // Never scanned: nothing to close, yet the buyer can no longer pay.
                    t.status = "TRADE_CLOSED".into();
                    business_failure("ACQ.TRADE_NOT_EXIST")
                }
                Some(t) if t.status == "WAIT_BUYER_PAY" => {
                    t.status = "TRADE_CLOSED".into();
                    json!({ "code": "10000", "msg": "Success", "out_trade_no": no })
                }
                Some(_) => business_failure("ACQ.TRADE_STATUS_ERROR"),
                None => business_failure("ACQ.TRADE_NOT_EXIST"),
            },
            "alipay.trade.refund" => {
                let request = biz["out_request_no"].as_str().unwrap_or_default().to_owned();
                match (books.trades.get_mut(&no), fen("refund_amount")) {
                    (Some(t), Some(amount)) if t.status == "TRADE_SUCCESS" => {
                        let others: i64 = t.refunds.iter().filter(|(r, _)| **r != request).map(|(_, f)| f).sum();
                        if others + amount > t.amount {
                            business_failure("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
                        } else {
                            if !t.refunds.contains_key(&request) {
                                let refund_txn = format!("{}_{request}", trade_no(&no));
                                bills(inner).refunded(&no, &request, &refund_txn, amount);
                            }
                            t.refunds.insert(request, amount);
                            json!({ "code": "10000", "msg": "Success", "out_trade_no": no, "fund_change": "Y",
                                    "refund_fee": protocol::yuan(others + amount) })
                        }
                    }
                    (Some(_), _) => business_failure("ACQ.TRADE_STATUS_ERROR"),
                    (None, _) => business_failure("ACQ.TRADE_NOT_EXIST"),
                }
            }
            "alipay.data.dataservice.bill.downloadurl.query" => {
                drop(books);
                bill_download_url(inner, &biz)
            }
            _ => business_failure("isv.invalid-method"),
        }
    };
    let text = node.to_string();
    let name = format!("{}_response", method.replace('.', "_"));
    (StatusCode::OK, format!(r#"{{"{name}":{text},"sign":"{}"}}"#, inner.alipay_key.sign(&text))).into_response()
}
