//! Payments through WeChat Pay (API v3), end to end against a local gateway that speaks
//! the protocol (`WechatPaySandbox`: merchant key, platform certificate and API v3 key made
//! per run): the pay answer carries the `code_url` QR code, WeChat Pay's encrypted
//! notification pays the order, forged, stale, undecryptable, mismatched and repeated
//! notifications change nothing, a lost notification is found by the query, the timeout
//! closes the transaction at WeChat Pay, refunds and late-payment refunds are executed
//! there, and a gateway that hangs leaves the payment pending until it answers.

use crate::helpers::{TestApp, TestMerchant, eventually, spawn_app_with};
use payq_app::channel::wechatpay_sandbox::{Forgery, WechatPaySandbox};
use payq_app::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

const SECRETS_KEY: &str = "3ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a795";

/// payq with a secrets key, and a merchant set up with a fresh sandbox gateway.
async fn setup(tweak: impl FnOnce(&mut Settings)) -> (TestApp, TestMerchant, WechatPaySandbox) {
    let sandbox = WechatPaySandbox::start().await.expect("sandbox gateway");
    let app = spawn_app_with(|s| {
        s.secrets_key = Some(SECRETS_KEY.into());
        tweak(s);
    })
    .await;
    let m = app.merchant_with(json!({ "refund_review": "100ms" })).await;
    let r = app
        .send(
            Method::PATCH,
            &format!("/v1/merchants/{}", m.id),
            Some(&app.admin_token),
            Some(json!({ "channels": { "wechatpay": sandbox.credentials() } })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (app, m, sandbox)
}

/// Creates an order of `amount` fen and pays it with WeChat Pay; the `202` answer.
async fn pay_with_wechatpay(app: &TestApp, m: &TestMerchant, no: &str, amount: i64, timeout: Option<&str>) -> Value {
    let mut body =
        json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY", "description": "Green tea, 1 tin" });
    if let Some(t) = timeout {
        body["payment_timeout"] = json!(t);
    }
    let order = app.order_with(m, body).await;
    let id = order["id"].as_str().unwrap_or_default();
    let r = app.post(&format!("/v1/orders/{id}/pay"), &m.key, json!({ "channel": "wechatpay" })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "paying");
    r.body
}

/// What a notification could change: every table's rows but the message queue, whose
/// follow-up work goes on by itself.
async fn state(app: &TestApp) -> Vec<(String, i64)> {
    app.db_fingerprint().await.into_iter().filter(|(table, _)| table != "messages").collect()
}

fn ids(order: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&order["id"]), text(&order["payment"]["id"]))
}

#[tokio::test]
async fn the_code_url_is_in_the_answer_and_the_notification_pays_once() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_wechatpay(&app, &m, "WX-1", 8888, None).await;
    let (order_id, payment_id) = ids(&order);
    assert_eq!(order["payment"]["next_action"]["type"], "qr_code", "{order}");
    let qr = order["payment"]["next_action"]["qr_code"].as_str().unwrap_or_default();
    assert!(qr.starts_with("weixin://wxpay/bizpayurl?pr="), "{order}");
    let t = sandbox.transaction(&payment_id).expect("a transaction at WeChat Pay");
    assert_eq!((t.amount, t.trade_state.as_str()), (8888, "NOTPAY"));
    assert_eq!(t.notify_url, format!("{}/v1/channels/wechatpay/notify", app.base));

    let (status, _) = sandbox.buyer_pays(&payment_id).await.expect("notified");
    assert_eq!(status, 204);
    let paid = app.wait_order(&m, &order_id, "paid").await;
    assert_eq!(paid["payment"]["channel_txn_id"], format!("4200{}", payment_id.trim_start_matches("pay_")));
    // WeChat Pay repeats a notification until it is acknowledged: a repeat changes nothing.
    let before = state(&app).await;
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified").0, 204);
    assert_eq!(state(&app).await, before);
    let types = app.event_types(&m, &order_id).await;
    assert_eq!(types.iter().filter(|t| *t == "payment.succeeded").count(), 1, "{types:?}");

    // Two refunds are executed at WeChat Pay, each once.
    for amount in [1000, 500] {
        let r = app.post(&format!("/v1/orders/{order_id}/refunds"), &m.key, json!({ "amount": amount })).await;
        assert_eq!(r.status, 201, "{}", r.body);
        app.wait_refund(&m, r.body["id"].as_str().unwrap_or_default(), "succeeded").await;
    }
    let t = sandbox.transaction(&payment_id).expect("transaction");
    assert_eq!(t.refunds.values().sum::<i64>(), 1500, "{:?}", t.refunds);
    assert_eq!(t.trade_state, "REFUND");
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn forged_stale_mismatched_and_unknown_notifications_change_nothing() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_wechatpay(&app, &m, "WX-2", 500, None).await;
    let (order_id, payment_id) = ids(&order);
    let url = format!("{}/v1/channels/wechatpay/notify", app.base);
    let before = state(&app).await;
    let good = sandbox.notification(&payment_id, 500, "SUCCESS");
    let with = |pointer: &str, value: Value| -> Value {
        let mut t = good.clone();
        if let Some(field) = t.pointer_mut(pointer) {
            *field = value;
        }
        t
    };
    let cases = [
        ("signed with another key", sandbox.notify(&url, &good, Forgery::SignedWithAnotherKey).await),
        ("sealed with another API v3 key", sandbox.notify(&url, &good, Forgery::EncryptedWithAnotherKey).await),
        ("a stale signature", sandbox.notify(&url, &good, Forgery::Stale).await),
        ("amount mismatch", sandbox.notify(&url, &with("/amount/total", json!(501)), Forgery::Genuine).await),
        ("another merchant", sandbox.notify(&url, &with("/mchid", json!("1900000999")), Forgery::Genuine).await),
        ("another app", sandbox.notify(&url, &with("/appid", json!("wx0000000000000000")), Forgery::Genuine).await),
        (
            "unknown payment",
            sandbox
                .notify(&url, &with("/out_trade_no", json!("pay_0123456789abcdef0123456789abcdef")), Forgery::Genuine)
                .await,
        ),
        ("not a payment id", sandbox.notify(&url, &with("/out_trade_no", json!("'; DROP")), Forgery::Genuine).await),
    ];
    for (what, answer) in cases {
        let (status, body) = answer.expect("answered");
        assert_eq!(status, 400, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["code"], "FAIL", "{what}: {body}");
    }
    let unsigned = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"id":"EV-1","event_type":"TRANSACTION.SUCCESS","resource":{}}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(unsigned.status(), 400);
    assert_eq!(state(&app).await, before, "nothing changed");
    let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
    assert_eq!(r.body["status"], "paying");
}

#[tokio::test]
async fn a_lost_notification_is_found_by_the_query() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_wechatpay(&app, &m, "WX-3", 1999, None).await;
    let (order_id, payment_id) = ids(&order);
    assert!(sandbox.buyer_pays_silently(&payment_id));
    app.wait_order(&m, &order_id, "paid").await;
    let queries = sandbox.transaction(&payment_id).and_then(|t| t.calls.get("query").copied()).unwrap_or(0);
    assert!(queries >= 1, "payq asked WeChat Pay");
}

#[tokio::test]
async fn the_timeout_closes_at_wechatpay_and_a_late_payment_is_refunded_there() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_wechatpay(&app, &m, "WX-4", 3000, Some("1s")).await;
    let (order_id, payment_id) = ids(&order);
    let closed = app.wait_order(&m, &order_id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    assert_eq!(sandbox.transaction(&payment_id).map(|t| t.trade_state), Some("CLOSED".into()));
    // The buyer's payment went through anyway (a race with the close): payq gives it back.
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified").0, 204);
    eventually("the late payment is refunded at WeChat Pay", || async {
        let refunded: i64 = sandbox.transaction(&payment_id).map(|t| t.refunds.values().sum()).unwrap_or(0);
        (refunded == 3000).then_some(())
    })
    .await;
    let types = app.event_types(&m, &order_id).await;
    assert!(types.iter().any(|t| t == "payment.late_refunded"), "{types:?}");
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["status"], "closed");
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn a_gateway_that_hangs_leaves_the_payment_pending_until_it_answers() {
    let (app, m, sandbox) = setup(|s| {
        s.payment.channel_timeout = payq_domain::HumanDuration::from_millis(300);
        s.engine.max_attempts = 20;
    })
    .await;
    sandbox.set_hang(true);
    let order = pay_with_wechatpay(&app, &m, "WX-5", 700, None).await;
    let (order_id, payment_id) = ids(&order);
    assert_eq!(order["payment"]["next_action"], Value::Null, "no QR code while the gateway hangs: {order}");
    assert_eq!(order["payment"]["status"], "pending");
    sandbox.set_hang(false);
    eventually("the QR code appears", || async {
        let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
        r.body["payment"]["next_action"]["qr_code"].as_str().map(str::to_owned)
    })
    .await;
    assert!(sandbox.buyer_pays_silently(&payment_id));
    app.wait_order(&m, &order_id, "paid").await;
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn wechatpay_credentials_are_checked_shown_without_keys_and_needed_to_pay() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(
        shown["channels"]["wechatpay"],
        json!({
            "mch_id": sandbox.mch_id,
            "app_id": sandbox.app_id,
            "serial_no": sandbox.serial_no,
            "platform_serials": [sandbox.platform_serial()],
            "base_url": sandbox.base_url,
        })
    );
    let text = shown.to_string();
    assert!(!text.contains(&sandbox.api_v3_key) && !text.contains("PRIVATE KEY"), "a key is shown: {text}");

    let credentials = sandbox.credentials();
    for (field, value) in [
        ("api_v3_key", json!("too short")),
        ("private_key", json!(sandbox.platform_certificate_pem)),
        ("platform_certificates", json!([])),
        ("platform_certificates", json!(["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"])),
        ("serial_no", json!("not hex")),
        ("base_url", json!("ftp://127.0.0.1/")),
    ] {
        let mut bad = credentials.clone();
        bad[field] = value;
        let r = app
            .send(
                Method::PATCH,
                &format!("/v1/merchants/{}", m.id),
                Some(&app.admin_token),
                Some(json!({ "channels": { "wechatpay": bad } })),
            )
            .await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
    }
    assert_eq!(app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body, shown, "unchanged");

    let usd = app.order_with(&m, json!({ "merchant_order_no": "WX-USD", "amount": 100, "currency": "USD" })).await;
    let r = app
        .post(
            &format!("/v1/orders/{}/pay", usd["id"].as_str().unwrap_or_default()),
            &m.key,
            json!({ "channel": "wechatpay" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let plain = app.merchant().await;
    let order = app.order(&plain, "WX-NONE", 100).await;
    let r = app
        .post(
            &format!("/v1/orders/{}/pay", order["id"].as_str().unwrap_or_default()),
            &plain.key,
            json!({ "channel": "wechatpay" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("no wechatpay channel"), "{}", r.body);
}
