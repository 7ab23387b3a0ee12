//! The local WeChat Pay gateway's HTTP side: each API v3 request's signature checked, the
//! request carried out on the sandbox's books, and the answer signed as WeChat Pay signs.

use super::*;
use axum::extract::State;

/// The key an answer is signed with: the one the request's `Wechatpay-Serial` names, else
/// the first (the platform certificate's, when the merchant has both).
fn answer_key<'a>(inner: &'a Inner, headers: &HeaderMap) -> &'a (String, MerchantKey) {
    let named = headers.get("wechatpay-serial").and_then(|v| v.to_str().ok()).unwrap_or_default();
    inner.signing_keys.iter().find(|(name, _)| name == named).unwrap_or(&inner.signing_keys[0])
}

/// An answer signed under `key`.
fn signed(key: &(String, MerchantKey), status: StatusCode, body: Option<Value>) -> Response {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let at = payq_domain::Timestamp::now().unix_seconds();
    let nonce = payq_domain::crypto::random_hex(16);
    let signature = key.1.sign(&format!("{at}\n{nonce}\n{text}\n"));
    let headers = [
        ("wechatpay-serial", key.0.clone()),
        ("wechatpay-timestamp", at.to_string()),
        ("wechatpay-nonce", nonce),
        ("wechatpay-signature", signature),
        ("content-type", "application/json".into()),
        ("request-id", payq_domain::crypto::random_hex(8)),
    ];
    let mut response = (status, text).into_response();
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn error(key: &(String, MerchantKey), status: StatusCode, code: &str) -> Response {
    signed(key, status, Some(json!({ "code": code, "message": code })))
}

/// Checks the `Authorization` header: the merchant, its certificate serial, a fresh
/// timestamp and the signature over method, path with query, timestamp, nonce and body.
fn authorized(inner: &Inner, method: &Method, uri: &Uri, headers: &HeaderMap, body: &str) -> bool {
    let value = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(fields) = value.strip_prefix("WECHATPAY2-SHA256-RSA2048 ") else {
        return false;
    };
    let fields: HashMap<&str, &str> =
        fields.split(',').filter_map(|f| f.split_once('=')).map(|(k, v)| (k.trim(), v.trim_matches('"'))).collect();
    let field = |name: &str| fields.get(name).copied().unwrap_or_default();
    let Ok(timestamp) = field("timestamp").parse::<i64>() else {
        return false;
    };
    let fresh = (payq_domain::Timestamp::now().unix_seconds() - timestamp).abs() <= protocol::FRESHNESS_S;
    let request = SignedRequest {
        method: method.as_str(),
        path_and_query: uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        timestamp,
        nonce: field("nonce_str"),
        body,
    };
    let signature = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, field("signature"))
        .ok()
        .and_then(|raw| Signature::try_from(raw.as_slice()).ok());
    fresh
        && field("mchid") == inner.mch_id
        && field("serial_no") == inner.serial_no
        && signature.is_some_and(|s| inner.merchant_public_key.verify(request.message().as_bytes(), &s).is_ok())
}

/// Every API call: authenticates it, carries it out, answers signed (late, when the
/// gateway is slow).
pub(super) async fn api(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let delay = lock(&inner).delay;
    let answer = carry_out(&inner, method, uri, headers, body).await;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    answer
}

async fn carry_out(inner: &Inner, method: Method, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let key = answer_key(inner, &headers);
    if method == Method::GET && uri.path() == "/h5/checkmweb" {
        // The buyer's phone browser on WeChat Pay's H5 page (which opens WeChat to pay).
        return axum::response::Html("<html><body><h1>WeChat Pay</h1></body></html>").into_response();
    }
    if lock(inner).hang {
        std::future::pending::<()>().await;
    }
    if !authorized(inner, &method, &uri, &headers, &body) {
        return error(key, StatusCode::UNAUTHORIZED, "SIGN_ERROR");
    }
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let path = uri.path();
    let mut books = lock(inner);
    let count = |no: &str, operation: &str, books: &mut Books| {
        if let Some(t) = books.transactions.get_mut(no) {
            *t.calls.entry(operation.to_owned()).or_default() += 1;
        }
    };
    let trade_type = match path {
        "/v3/pay/transactions/native" => Some("NATIVE"),
        "/v3/pay/transactions/jsapi" => Some("JSAPI"),
        "/v3/pay/transactions/h5" => Some("MWEB"),
        "/v3/pay/transactions/app" => Some("APP"),
        _ => None,
    };
    if let (&Method::POST, Some(trade_type)) = (&method, trade_type) {
        let no = request["out_trade_no"].as_str().unwrap_or_default().to_owned();
        let amount = request.pointer("/amount/total").and_then(Value::as_i64).unwrap_or(0);
        let field = |pointer: &str| request.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
        let appid = field("/appid");
        let app_ok = appid == inner.app_id || (trade_type == "JSAPI" && appid == MINI_PROGRAM_APP_ID);
        let payer_ok = match trade_type {
            "JSAPI" => !field("/payer/openid").is_empty(),
            "MWEB" => !field("/scene_info/payer_client_ip").is_empty() && field("/scene_info/h5_info/type") == "Wap",
            _ => true,
        };
        if no.is_empty() || amount <= 0 || request["mchid"] != inner.mch_id.as_str() || !app_ok || !payer_ok {
            return error(key, StatusCode::BAD_REQUEST, "PARAM_ERROR");
        }
        let t = books.transactions.entry(no.clone()).or_insert_with(|| SandboxTransaction {
            trade_state: "NOTPAY".into(),
            amount,
            notify_url: field("/notify_url"),
            refunds: HashMap::new(),
            calls: HashMap::new(),
            time_expire: field("/time_expire"),
            trade_type: trade_type.into(),
            appid: appid.clone(),
            openid: field("/payer/openid"),
            client_ip: field("/scene_info/payer_client_ip"),
            created_ms: payq_domain::Timestamp::now().millis(),
        });
        if t.amount != amount || t.trade_type != trade_type {
            return error(key, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        }
        count(&no, "create", &mut books);
        let token = payq_domain::crypto::sha256_hex(no.as_bytes())[..10].to_owned();
        let answer = match trade_type {
            "NATIVE" => json!({ "code_url": format!("weixin://wxpay/bizpayurl?pr={token}") }),
            "MWEB" => json!({ "h5_url": format!("{}/h5/checkmweb?prepay_id=wx{token}", inner.base_url) }),
            _ => json!({ "prepay_id": format!("wx{token}") }),
        };
        return signed(key, StatusCode::OK, Some(answer));
    }
    if let Some(rest) = path.strip_prefix("/v3/pay/transactions/out-trade-no/") {
        if let (&Method::POST, Some(no)) = (&method, rest.strip_suffix("/close")) {
            count(no, "close", &mut books);
            let close_after = books.close_after;
            return match books.transactions.get_mut(no) {
                // WeChat Pay's rule: no close within minutes of the trade's creation.
                Some(t) if payq_domain::Timestamp::now().millis() - t.created_ms < close_after => {
                    error(key, StatusCode::FORBIDDEN, "RULE_LIMIT")
                }
                Some(t) if t.trade_state == "NOTPAY" || t.trade_state == "CLOSED" => {
                    t.trade_state = "CLOSED".into();
                    signed(key, StatusCode::NO_CONTENT, None)
                }
                Some(_) => error(key, StatusCode::BAD_REQUEST, "ORDERPAID"),
                None => error(key, StatusCode::NOT_FOUND, "ORDER_NOT_EXIST"),
            };
        }
        if method == Method::GET {
            count(rest, "query", &mut books);
            return match books.transactions.get(rest) {
                Some(t) => signed(key, StatusCode::OK, Some(transaction_json(inner, rest, t.amount, &t.trade_state))),
                None => error(key, StatusCode::NOT_FOUND, "ORDER_NOT_EXIST"),
            };
        }
    }
    if method == Method::POST && path == "/v3/refund/domestic/refunds" {
        let no = request["out_trade_no"].as_str().unwrap_or_default().to_owned();
        let refund_no = request["out_refund_no"].as_str().unwrap_or_default().to_owned();
        let amount = request.pointer("/amount/refund").and_then(Value::as_i64).unwrap_or(0);
        let total = request.pointer("/amount/total").and_then(Value::as_i64).unwrap_or(0);
        count(&no, "refund", &mut books);
        let processing = books.refunds_processing;
        let Some(t) = books.transactions.get_mut(&no) else {
            return error(key, StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS");
        };
        if !matches!(t.trade_state.as_str(), "SUCCESS" | "REFUND") || total != t.amount || amount <= 0 {
            return error(key, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        }
        let others: i64 = t.refunds.iter().filter(|(r, _)| **r != refund_no).map(|(_, f)| f).sum();
        if others + amount > t.amount {
            return error(key, StatusCode::FORBIDDEN, "NOT_ENOUGH");
        }
        if processing {
            books.processing.insert(refund_no.clone(), ProcessingRefund { out_trade_no: no.clone(), amount, total });
            return signed(key, StatusCode::OK, Some(refund_json(&no, &refund_no, amount, total, "PROCESSING")));
        }
        if !t.refunds.contains_key(&refund_no) {
            let refund_id = format!("5030{}", refund_no.trim_start_matches("ref_"));
            bills(inner).refunded(&no, &refund_no, &refund_id, amount);
        }
        t.refunds.insert(refund_no.clone(), amount);
        t.trade_state = "REFUND".into();
        return signed(key, StatusCode::OK, Some(refund_json(&no, &refund_no, amount, t.amount, "SUCCESS")));
    }
    if let (&Method::GET, Some(refund_no)) = (&method, path.strip_prefix("/v3/refund/domestic/refunds/")) {
        if let Some(r) = books.processing.get(refund_no) {
            return signed(
                key,
                StatusCode::OK,
                Some(refund_json(&r.out_trade_no, refund_no, r.amount, r.total, "PROCESSING")),
            );
        }
        if let Some((r, status)) = books.refused.get(refund_no) {
            return signed(
                key,
                StatusCode::OK,
                Some(refund_json(&r.out_trade_no, refund_no, r.amount, r.total, status)),
            );
        }
        let found = books.transactions.iter().find_map(|(no, t)| t.refunds.get(refund_no).map(|a| (no, *a, t.amount)));
        return match found {
            Some((no, amount, total)) => {
                signed(key, StatusCode::OK, Some(refund_json(no, refund_no, amount, total, "SUCCESS")))
            }
            None => error(key, StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS"),
        };
    }
    if method == Method::GET && path == "/v3/bill/tradebill" {
        drop(books);
        return trade_bill(inner, key, &uri);
    }
    if method == Method::GET && path == "/v3/billdownload/file" {
        drop(books);
        let token = query_param(&uri, "token");
        // The file's answer is not signed: the digest the bill request gave vouches for it.
        return match bills(inner).file(&token) {
            Some(file) => ([("content-type", "application/octet-stream")], file).into_response(),
            None => error(key, StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS"),
        };
    }
    error(key, StatusCode::NOT_FOUND, "NOT_FOUND")
}

fn query_param(uri: &Uri, name: &str) -> String {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `GET /v3/bill/tradebill`: the day's `ALL` bill as WeChat Pay makes it (gzip when asked
/// for), behind a download URL, with its SHA1.
fn trade_bill(inner: &Inner, key: &(String, MerchantKey), uri: &Uri) -> Response {
    let date = query_param(uri, "bill_date");
    if date.len() != 10 || query_param(uri, "bill_type") != "ALL" {
        return error(key, StatusCode::BAD_REQUEST, "PARAM_ERROR");
    }
    let mut book = bills(inner);
    if book.ask() {
        return error(key, StatusCode::BAD_REQUEST, "NO_STATEMENT_EXIST");
    }
    let text =
        payq_channels::wechatpay::bill::write_bill_text(&inner.app_id, &inner.mch_id, &date, &book.rows_for(&date));
    let digest = payq_channels::wechatpay::bill::sha1_of(text.as_bytes());
    let file = if query_param(uri, "tar_type") == "GZIP" {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        match gz.write_all(text.as_bytes()).and_then(|()| gz.finish()) {
            Ok(file) => file,
            Err(_) => return error(key, StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR"),
        }
    } else {
        text.into_bytes()
    };
    let token = book.hand_out(file);
    let url = format!("{}/v3/billdownload/file?token={token}", inner.base_url);
    signed(key, StatusCode::OK, Some(json!({ "hash_type": "SHA1", "hash_value": digest, "download_url": url })))
}

fn refund_json(out_trade_no: &str, out_refund_no: &str, amount: i64, total: i64, status: &str) -> Value {
    json!({
        "refund_id": format!("5030{}", out_refund_no.trim_start_matches("ref_")),
        "out_refund_no": out_refund_no,
        "transaction_id": transaction_id(out_trade_no),
        "out_trade_no": out_trade_no,
        "channel": "ORIGINAL",
        "status": status,
        "amount": { "refund": amount, "total": total, "currency": "CNY", "payer_refund": amount },
    })
}
