//! Payments through Alipay, end to end against a local gateway that speaks the protocol
//! (`AlipaySandbox`, keys made per run): the pay answer carries the QR code, Alipay's
//! notification pays the order, forged, mismatched and repeated notifications change
//! nothing, a lost notification is found by the query, the timeout closes the trade at
//! Alipay, refunds and late-payment refunds are executed there, and a gateway that hangs
//! leaves the payment pending until it answers.

use crate::helpers::{TestApp, TestMerchant, eventually, spawn_app_with};
use payq_app::channel::alipay_protocol::AppKey;
use payq_app::channel::alipay_sandbox::AlipaySandbox;
use payq_app::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};

const SECRETS_KEY: &str = "a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11b";

/// payq with a secrets key, and a merchant set up with a fresh sandbox gateway.
async fn setup(tweak: impl FnOnce(&mut Settings)) -> (TestApp, TestMerchant, AlipaySandbox) {
    let sandbox = AlipaySandbox::start().await.expect("sandbox gateway");
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
            Some(json!({ "channels": { "alipay": sandbox.credentials() } })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (app, m, sandbox)
}

/// Creates an order of `amount` fen and pays it with Alipay; the `202` answer.
async fn pay_with_alipay(app: &TestApp, m: &TestMerchant, no: &str, amount: i64, timeout: Option<&str>) -> Value {
    let mut body =
        json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY", "description": "Tea, 2 boxes" });
    if let Some(t) = timeout {
        body["payment_timeout"] = json!(t);
    }
    let order = app.order_with(m, body).await;
    let id = order["id"].as_str().unwrap_or_default();
    let r = app.post(&format!("/v1/orders/{id}/pay"), &m.key, json!({ "channel": "alipay" })).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "paying");
    r.body
}

/// What a notification could change: every table's rows but the message queue, whose
/// follow-up work (event deliveries, the payment request's completion) goes on by itself.
async fn state(app: &TestApp) -> Vec<(String, i64)> {
    app.db_fingerprint().await.into_iter().filter(|(table, _)| table != "messages").collect()
}

fn ids(order: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&order["id"]), text(&order["payment"]["id"]))
}

#[tokio::test]
async fn the_qr_code_is_in_the_answer_and_the_notification_pays_once() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_alipay(&app, &m, "ALI-1", 8888, None).await;
    let (order_id, payment_id) = ids(&order);
    let qr = order["payment"]["next_action"]["qr_code"].as_str().unwrap_or_default();
    assert_eq!(order["payment"]["next_action"]["type"], "qr_code", "{order}");
    assert!(qr.starts_with("https://qr.alipay.com/"), "{order}");
    let trade = sandbox.trade(&payment_id).expect("a trade at Alipay");
    assert_eq!((trade.amount, trade.status.as_str()), (8888, "WAIT_BUYER_PAY"));
    assert!(trade.notify_url.ends_with("/v1/channels/alipay/notify"), "{}", trade.notify_url);
    assert!(trade.notify_url.starts_with(&app.base), "notify_url {} is payq's own", trade.notify_url);

    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified"), (200, "success".into()));
    let paid = app.wait_order(&m, &order_id, "paid").await;
    assert_eq!(paid["payment"]["channel_txn_id"], format!("2026{}", payment_id.trim_start_matches("pay_")));
    // Alipay repeats a notification until it reads `success`: a repeat changes nothing.
    let before = state(&app).await;
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified"), (200, "success".into()));
    assert_eq!(state(&app).await, before);
    let types = app.event_types(&m, &order_id).await;
    assert_eq!(types.iter().filter(|t| *t == "payment.succeeded").count(), 1, "{types:?}");

    // A refund is executed at Alipay, once.
    let r = app.post(&format!("/v1/orders/{order_id}/refunds"), &m.key, json!({ "amount": 1000 })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.wait_refund(&m, r.body["id"].as_str().unwrap_or_default(), "succeeded").await;
    let refunds = sandbox.trade(&payment_id).map(|t| t.refunds).unwrap_or_default();
    assert_eq!(refunds.values().sum::<i64>(), 1000, "{refunds:?}");
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn forged_mismatched_and_unknown_notifications_change_nothing() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_alipay(&app, &m, "ALI-2", 500, None).await;
    let (order_id, payment_id) = ids(&order);
    let url = format!("{}/v1/channels/alipay/notify", app.base);
    let before = state(&app).await;
    let good = sandbox.notification(&payment_id, 500, "TRADE_SUCCESS");
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        good.iter().map(|(k, v)| (k.clone(), if k == name { value.to_owned() } else { v.clone() })).collect()
    };
    let other_key = AppKey::from_pem(&sandbox.app_private_key_pem).expect("a key that is not Alipay's");
    let cases = [
        ("signed with another key", sandbox.notify(&url, &good, Some(&other_key)).await),
        ("amount mismatch", sandbox.notify(&url, &with("total_amount", "5.01"), None).await),
        ("another app", sandbox.notify(&url, &with("app_id", "2021999999999999"), None).await),
        (
            "unknown payment",
            sandbox.notify(&url, &with("out_trade_no", "pay_0123456789abcdef0123456789abcdef"), None).await,
        ),
        ("not a payment id", sandbox.notify(&url, &with("out_trade_no", "'; DROP TABLE payments"), None).await),
        ("unknown status", sandbox.notify(&url, &with("trade_status", "TRADE_MAYBE"), None).await),
    ];
    for (what, answer) in cases {
        let (status, body) = answer.expect("answered");
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains("invalid_request") && !body.contains("success"), "{what}: {body}");
    }
    let unsigned = app
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("out_trade_no=x&trade_status=TRADE_SUCCESS")
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
    let order = pay_with_alipay(&app, &m, "ALI-3", 1999, None).await;
    let (order_id, payment_id) = ids(&order);
    assert!(sandbox.buyer_pays_silently(&payment_id));
    app.wait_order(&m, &order_id, "paid").await;
    let queries = sandbox.trade(&payment_id).and_then(|t| t.calls.get("alipay.trade.query").copied()).unwrap_or(0);
    assert!(queries >= 1, "payq asked Alipay");
}

#[tokio::test]
async fn the_timeout_closes_the_trade_at_alipay_and_a_late_payment_is_refunded_there() {
    let (app, m, sandbox) = setup(|_| {}).await;
    let order = pay_with_alipay(&app, &m, "ALI-4", 3000, Some("1s")).await;
    let (order_id, payment_id) = ids(&order);
    let closed = app.wait_order(&m, &order_id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    assert_eq!(sandbox.trade(&payment_id).map(|t| t.status), Some("TRADE_CLOSED".into()));
    // The buyer's payment went through at Alipay anyway (a race with the close): payq
    // gives it back.
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified"), (200, "success".into()));
    eventually("the late payment is refunded at Alipay", || async {
        let refunded: i64 = sandbox.trade(&payment_id).map(|t| t.refunds.values().sum()).unwrap_or(0);
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
        // The queued request keeps trying while the gateway hangs.
        s.engine.max_attempts = 20;
    })
    .await;
    sandbox.set_hang(true);
    let order = pay_with_alipay(&app, &m, "ALI-5", 700, None).await;
    let (order_id, payment_id) = ids(&order);
    assert_eq!(order["payment"]["next_action"], Value::Null, "no QR code while the gateway hangs: {order}");
    assert_eq!(order["payment"]["status"], "pending");
    sandbox.set_hang(false);
    // The queued request tries again; the order shows the QR code once Alipay answers.
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
async fn alipay_needs_a_set_up_merchant_and_cny() {
    let (app, m, _sandbox) = setup(|_| {}).await;
    let usd = app.order_with(&m, json!({ "merchant_order_no": "ALI-USD", "amount": 100, "currency": "USD" })).await;
    let r = app
        .post(
            &format!("/v1/orders/{}/pay", usd["id"].as_str().unwrap_or_default()),
            &m.key,
            json!({ "channel": "alipay" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let plain = app.merchant().await;
    let order = app.order(&plain, "ALI-NONE", 100).await;
    let r = app
        .post(
            &format!("/v1/orders/{}/pay", order["id"].as_str().unwrap_or_default()),
            &plain.key,
            json!({ "channel": "alipay" }),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("no alipay channel"), "{}", r.body);
}
