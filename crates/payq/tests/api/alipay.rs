//! Payments through Alipay, end to end against a local gateway that speaks the protocol
//! (`AlipaySandbox`, keys made per run): the lifecycle every real channel goes through
//! ([`crate::real_channels`]: QR code, notification, repeats, the query fallback, the
//! timeout closing at Alipay, refunds, a late-payment refund, a hanging gateway), and what
//! is Alipay's own: its QR codes and trade numbers, and forged, mismatched and unknown
//! notifications that change nothing.

use crate::helpers::order_and_payment_ids;
use crate::real_channels::{self as lifecycle, hanging_gateway_settings};
use payq_channels::alipay::protocol::AppKey;
use payq_gateways::alipay::AlipaySandbox;

const SECRETS_KEY: &str = "a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11ba1a11b";

async fn sandbox() -> AlipaySandbox {
    AlipaySandbox::start().await.expect("sandbox gateway")
}

#[tokio::test]
async fn the_qr_code_is_in_the_answer_and_the_notification_pays_once() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let order = lifecycle::the_qr_code_is_in_the_answer_and_the_notification_pays_once(&app, &m, &sandbox).await;
    let (_, payment_id) = order_and_payment_ids(&order);
    let qr = order["payment"]["next_action"]["qr_code"].as_str().unwrap_or_default();
    assert!(qr.starts_with("https://qr.alipay.com/"), "{order}");
    assert_eq!(order["payment"]["channel_txn_id"], format!("2026{}", payment_id.trim_start_matches("pay_")));
    let trade = sandbox.trade(&payment_id).expect("a trade at Alipay");
    assert_eq!(trade.amount, 8888);
    assert_eq!(trade.notify_url, format!("{}/v1/channels/alipay/notify", app.base), "payq's own notify_url");
}

#[tokio::test]
async fn forged_mismatched_and_unknown_notifications_change_nothing() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let order = app.pay_through(&m, "alipay", "ALI-2", 500, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    let url = format!("{}/v1/channels/alipay/notify", app.base);
    let before = app.notification_state().await;
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
    assert_eq!(app.notification_state().await, before, "nothing changed");
    let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
    assert_eq!(r.body["status"], "paying");
}

#[tokio::test]
async fn a_lost_notification_is_found_by_the_query() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    lifecycle::a_lost_notification_is_found_by_the_query(&app, &m, &sandbox).await;
}

#[tokio::test]
async fn the_timeout_closes_the_trade_at_alipay_and_a_late_payment_is_refunded_there() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    lifecycle::the_timeout_closes_at_the_channel_and_a_late_payment_is_refunded_there(&app, &m, &sandbox).await;
}

#[tokio::test]
async fn a_gateway_that_hangs_leaves_the_payment_pending_until_it_answers() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, hanging_gateway_settings).await;
    lifecycle::a_gateway_that_hangs_leaves_the_payment_pending_until_it_answers(&app, &m, &sandbox).await;
}

#[tokio::test]
async fn alipay_needs_a_set_up_merchant_and_cny() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    lifecycle::the_channel_needs_a_set_up_merchant_and_cny(&app, &m, "alipay").await;
}
