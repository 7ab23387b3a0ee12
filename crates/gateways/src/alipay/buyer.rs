//! The buyer's side of the local Alipay gateway: the page and wap pay requests a browser
//! carries to Alipay, and the app pay order string the Alipay app takes, each checked and
//! opened as a trade with the buyer in front of it.

use super::*;

impl AlipaySandbox {
    /// The Alipay app takes the order string a shop's app hands it
    /// (`alipay.trade.app.pay`): its signature must be the application's; then the trade
    /// exists, the buyer in front of it. Answers why not, if it is refused.
    pub fn app_opens(&self, order_string: &str) -> Result<(), Refusal> {
        let params: Vec<(String, String)> = form_urlencoded::parse(order_string.as_bytes()).into_owned().collect();
        open_buyer_request(&self.inner, &params, &["alipay.trade.app.pay"]).map(|_| ())
    }
}

/// Why the local gateway refuses a request the buyer carries, as Alipay's error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("isv.invalid-signature")]
    InvalidSignature,
    #[error("isv.invalid-method {0}")]
    InvalidMethod(String),
    #[error("ACQ.INVALID_PARAMETER")]
    InvalidParameter,
    #[error("ACQ.CONTEXT_INCONSISTENT")]
    ContextInconsistent,
}

/// A request the buyer carries to Alipay (page, wap or app pay): checks its signature and
/// fields and opens the trade, the buyer in front of it (as if they had scanned). Answers
/// the trade's number, or why the request is refused.
fn open_buyer_request(inner: &Inner, params: &[(String, String)], methods: &[&str]) -> Result<String, Refusal> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let content = protocol::signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
    if inner.app_public_key.verify(&content, &get("sign")).is_err() || get("app_id") != inner.app_id {
        return Err(Refusal::InvalidSignature);
    }
    let method = get("method");
    if !methods.contains(&method.as_str()) {
        return Err(Refusal::InvalidMethod(method));
    }
    let biz: Value = serde_json::from_str(&get("biz_content")).unwrap_or_default();
    let product_code = match method.as_str() {
        "alipay.trade.page.pay" => "FAST_INSTANT_TRADE_PAY",
        "alipay.trade.wap.pay" => "QUICK_WAP_WAY",
        _ => "QUICK_MSECURITY_PAY",
    };
    let no = biz["out_trade_no"].as_str().unwrap_or_default().to_owned();
    let amount = biz["total_amount"].as_str().and_then(|a| protocol::minor_units(a).ok()).unwrap_or(0);
    if no.is_empty() || amount <= 0 || biz["product_code"] != product_code || biz["time_expire"].as_str().is_none() {
        return Err(Refusal::InvalidParameter);
    }
    let mut books = lock(inner);
    let trade = books.trades.entry(no.clone()).or_insert_with(|| SandboxTrade {
        status: "WAIT_BUYER_PAY".into(),
        amount,
        notify_url: get("notify_url"),
        refunds: HashMap::new(),
        calls: HashMap::new(),
        time_expire: biz["time_expire"].as_str().unwrap_or_default().to_owned(),
        scanned: true,
        method: method.clone(),
        return_url: get("return_url"),
        quit_url: biz["quit_url"].as_str().unwrap_or_default().to_owned(),
    });
    *trade.calls.entry(method).or_default() += 1;
    if trade.amount != amount {
        return Err(Refusal::ContextInconsistent);
    }
    Ok(no)
}

/// `GET /gateway.do?…`: the buyer's browser arrives with a signed page or wap pay request
/// and sees Alipay's checkout page for the trade.
pub(super) async fn checkout_page(State(inner): State<Arc<Inner>>, uri: axum::http::Uri) -> Response {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    match open_buyer_request(&inner, &params, &["alipay.trade.page.pay", "alipay.trade.wap.pay"]) {
        Ok(no) => axum::response::Html(format!("<html><body><h1>Alipay checkout</h1><p>{no}</p></body></html>"))
            .into_response(),
        Err(why) => {
            (StatusCode::BAD_REQUEST, axum::response::Html(format!("<html><body>{why}</body></html>"))).into_response()
        }
    }
}
