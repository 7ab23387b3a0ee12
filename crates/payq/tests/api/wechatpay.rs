//! Payments through WeChat Pay (API v3), end to end against a local gateway that speaks
//! the protocol (`WechatPaySandbox`: merchant key, platform certificate and API v3 key made
//! per run): the lifecycle every real channel goes through ([`crate::real_channels`]: QR
//! code, notification, repeats, the query fallback, the timeout closing at WeChat Pay,
//! refunds, a late-payment refund, a hanging gateway), and what is WeChat Pay's own: its
//! `code_url` and transaction ids, forged, stale, undecryptable, mismatched and unknown
//! notifications that change nothing, and its credentials.

use crate::helpers::order_and_payment_ids;
use crate::real_channels::{self as lifecycle, hanging_gateway_settings};
use payq_gateways::wechatpay::{Forgery, MINI_PROGRAM_APP_ID, SandboxKeys, WechatPaySandbox};
use reqwest::Method;
use serde_json::{Value, json};

const SECRETS_KEY: &str = "3ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a7953ec4a795";

/// `PATCH`es the merchant's `channels.wechatpay` with `credentials` (admin).
async fn set_up(
    app: &crate::helpers::TestApp,
    m: &crate::helpers::TestMerchant,
    credentials: Value,
) -> crate::helpers::Reply {
    let body = json!({ "channels": { "wechatpay": credentials } });
    app.send(Method::PATCH, &format!("/v1/merchants/{}", m.id), Some(&app.admin_token), Some(body)).await
}

async fn sandbox() -> WechatPaySandbox {
    WechatPaySandbox::start().await.expect("sandbox gateway")
}

#[tokio::test]
async fn the_code_url_is_in_the_answer_and_the_notification_pays_once() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let order = lifecycle::the_qr_code_is_in_the_answer_and_the_notification_pays_once(&app, &m, &sandbox).await;
    let (_, payment_id) = order_and_payment_ids(&order);
    let qr = order["payment"]["next_action"]["qr_code"].as_str().unwrap_or_default();
    assert!(qr.starts_with("weixin://wxpay/bizpayurl?pr="), "{order}");
    assert_eq!(order["payment"]["channel_txn_id"], format!("4200{}", payment_id.trim_start_matches("pay_")));
    let t = sandbox.transaction(&payment_id).expect("a transaction at WeChat Pay");
    assert_eq!((t.amount, t.trade_state.as_str()), (8888, "REFUND"));
    assert_eq!(t.notify_url, format!("{}/v1/channels/wechatpay/notify", app.base), "payq's own notify_url");
}

#[tokio::test]
async fn forged_stale_mismatched_and_unknown_notifications_change_nothing() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let order = app.pay_through(&m, "wechatpay", "WX-2", 500, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    let url = format!("{}/v1/channels/wechatpay/notify", app.base);
    let before = app.notification_state().await;
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
    assert_eq!(app.notification_state().await, before, "nothing changed");
    let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
    assert_eq!(r.body["status"], "paying");
}

#[tokio::test]
async fn one_wechatpay_account_on_two_merchants_pays_each_its_own_orders() {
    let sandbox = sandbox().await;
    let (app, first) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let second = app.merchant().await;
    let r = app
        .send(
            Method::PATCH,
            &format!("/v1/merchants/{}", second.id),
            Some(&app.admin_token),
            Some(json!({ "channels": { "wechatpay": sandbox.credentials() } })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Whichever merchant the certificate finds first, each notification pays the order of
    // the merchant whose payment it names.
    for (m, no) in [(&first, "WX-A"), (&second, "WX-B")] {
        let order = app.pay_through(m, "wechatpay", no, 1200, None).await;
        let (order_id, payment_id) = order_and_payment_ids(&order);
        assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified").0, 204, "{no}");
        app.wait_order(m, &order_id, "paid").await;
    }
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn a_lost_notification_is_found_by_the_query() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    lifecycle::a_lost_notification_is_found_by_the_query(&app, &m, &sandbox).await;
}

#[tokio::test]
async fn the_timeout_closes_at_wechatpay_and_a_late_payment_is_refunded_there() {
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
async fn wechatpay_credentials_are_checked_shown_without_keys_and_needed_to_pay() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(
        shown["channels"]["wechatpay"],
        json!({
            "mch_id": sandbox.mch_id,
            "app_id": sandbox.app_id,
            "serial_no": sandbox.serial_no,
            "platform_serials": [sandbox.platform_serial()],
            "public_key_id": null,
            "mini_program_app_id": MINI_PROGRAM_APP_ID,
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
        ("public_key_id", json!("PUB_KEY_ID_0112345678902026120400000000000001")),
        ("mini_program_app_id", json!("wx mini")),
        ("platform_certificates", json!(["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"])),
        ("serial_no", json!("not hex")),
        ("base_url", json!("ftp://127.0.0.1/")),
    ] {
        let mut bad = credentials.clone();
        bad[field] = value;
        let r = set_up(&app, &m, bad).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
    }
    assert_eq!(app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body, shown, "unchanged");

    lifecycle::the_channel_needs_a_set_up_merchant_and_cny(&app, &m, "wechatpay").await;
}

/// A merchant set up since 2024: no platform certificate, a WeChat Pay public key. It is
/// set up (the key is never shown), and every answer and notification verifies under the
/// key through the whole lifecycle; the certificate's key does not stand in for it.
#[tokio::test]
async fn a_merchant_with_only_a_wechatpay_public_key_is_set_up_and_paid_end_to_end() {
    let sandbox = WechatPaySandbox::start_with(SandboxKeys::PublicKey).await.expect("sandbox gateway");
    let (id, pem) = sandbox.public_key.clone().expect("a public key");
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(shown["channels"]["wechatpay"]["public_key_id"], id.as_str());
    assert_eq!(shown["channels"]["wechatpay"]["platform_serials"], json!([]));
    assert!(!shown.to_string().contains(pem.lines().nth(1).unwrap_or("PUBLIC KEY")), "the key is shown: {shown}");
    lifecycle::the_qr_code_is_in_the_answer_and_the_notification_pays_once(&app, &m, &sandbox).await;
    lifecycle::a_lost_notification_is_found_by_the_query(&app, &m, &sandbox).await;

    // The same merchant with the certificate only (not its own key) refuses the answers.
    let mut wrong = sandbox.credentials();
    wrong["public_key_id"] = Value::Null;
    wrong["public_key"] = Value::Null;
    wrong["platform_certificates"] = json!([sandbox.platform_certificate_pem]);
    let r = set_up(&app, &m, wrong).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let order = app.pay_through(&m, "wechatpay", "PK-UNVERIFIED", 100, None).await;
    assert_eq!(order["payment"]["next_action"], Value::Null, "an answer it cannot verify is no answer: {order}");

    // Half a pair is refused.
    for (field, value) in [("public_key", Value::Null), ("public_key_id", json!("F5765756002FDD77"))] {
        let mut bad = sandbox.credentials();
        bad[field] = value;
        let r = set_up(&app, &m, bad).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
    }
}

/// A merchant in switch-over keeps its platform certificate and its public key; WeChat Pay
/// signs notifications with either. Payments notified under each key are paid.
#[tokio::test]
async fn a_merchant_in_switch_over_takes_notifications_signed_with_either_key() {
    let sandbox = WechatPaySandbox::start_with(SandboxKeys::Both).await.expect("sandbox gateway");
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(shown["channels"]["wechatpay"]["platform_serials"], json!([sandbox.platform_serial()]));
    assert!(shown["channels"]["wechatpay"]["public_key_id"].as_str().is_some_and(|id| id.starts_with("PUB_KEY_ID_")));
    for n in 0..4 {
        // The sandbox signs its notifications with the certificate and the key in turn.
        let order = app.pay_through(&m, "wechatpay", &format!("SW-{n}"), 100 + n, None).await;
        assert_eq!(order["payment"]["next_action"]["type"], "qr_code", "{order}");
        let (order_id, payment_id) = order_and_payment_ids(&order);
        let (status, body) = sandbox.buyer_pays(&payment_id).await.expect("notified");
        assert_eq!(status, 204, "notification {n}: {body}");
        app.wait_order(&m, &order_id, "paid").await;
    }
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// A paid WeChat Pay order and a refund of `amount` that WeChat Pay answered `PROCESSING`:
/// (order id, payment id, refund id), the refund `processing` in payq.
async fn a_refund_left_processing(
    app: &crate::helpers::TestApp,
    m: &crate::helpers::TestMerchant,
    sandbox: &WechatPaySandbox,
    no: &str,
    amount: i64,
) -> (String, String, String) {
    sandbox.set_refunds_processing(true);
    let order = app.pay_through(m, "wechatpay", no, 5000, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified").0, 204);
    app.wait_order(m, &order_id, "paid").await;
    let r = app.post(&format!("/v1/orders/{order_id}/refunds"), &m.key, json!({ "amount": amount })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let refund_id = r.body["id"].as_str().unwrap_or_default().to_owned();
    crate::helpers::eventually("WeChat Pay is processing the refund", || async {
        sandbox.refund_processing(&refund_id).then_some(())
    })
    .await;
    app.wait_refund(m, &refund_id, "processing").await;
    (order_id, payment_id, refund_id)
}

/// `PROCESSING` is not success: the refund stays `processing` until WeChat Pay's
/// `REFUND.SUCCESS` notification settles it, once.
#[tokio::test]
async fn a_refund_processing_at_wechatpay_finishes_by_its_notification() {
    let sandbox = sandbox().await;
    // Asking again only after a minute: the notification has to do it.
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |s| s.payment.query_schedule = "1m".into()).await;
    let (order_id, payment_id, refund_id) = a_refund_left_processing(&app, &m, &sandbox, "RP-1", 1200).await;
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["amount_refunded"], 0);
    let answer = sandbox.finish_refund(&refund_id, "SUCCESS", true).await.expect("notified");
    assert_eq!(answer.map(|(status, _)| status), Some(204));
    let refund = app.wait_refund(&m, &refund_id, "succeeded").await;
    assert_eq!(refund["amount"], 1200);
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["amount_refunded"], 1200);
    // WeChat Pay repeats a notification until it is acknowledged: a repeat changes nothing.
    let before = app.notification_state().await;
    let again = sandbox.refund_notification(&payment_id, &refund_id, 1200, 5000, "SUCCESS");
    let url = format!("{}/v1/channels/wechatpay/notify", app.base);
    assert_eq!(sandbox.notify(&url, &again, Forgery::Genuine).await.expect("answered").0, 204);
    assert_eq!(app.notification_state().await, before);
    let types = app.event_types(&m, &order_id).await;
    assert_eq!(types.iter().filter(|t| *t == "refund.succeeded").count(), 1, "{types:?}");
    assert_eq!(payq_gateways::LocalGateway::refunded(&sandbox, &payment_id), 1200);
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// No notification comes: payq asks again on the payment query schedule and finds the
/// refund finished.
#[tokio::test]
async fn a_refund_processing_at_wechatpay_is_found_by_asking_again() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let (order_id, _, refund_id) = a_refund_left_processing(&app, &m, &sandbox, "RP-2", 700).await;
    assert_eq!(sandbox.finish_refund(&refund_id, "SUCCESS", false).await.expect("finished"), None);
    app.wait_refund(&m, &refund_id, "succeeded").await;
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["amount_refunded"], 700);
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// A refund WeChat Pay could not make (`REFUND.ABNORMAL`) fails; refund notifications that
/// are forged, for another amount or for a refund payq never asked for change nothing.
#[tokio::test]
async fn an_abnormal_refund_fails_and_forged_refund_notifications_change_nothing() {
    let sandbox = sandbox().await;
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |s| s.payment.query_schedule = "1m".into()).await;
    let (order_id, payment_id, refund_id) = a_refund_left_processing(&app, &m, &sandbox, "RP-3", 900).await;
    let url = format!("{}/v1/channels/wechatpay/notify", app.base);
    let before = app.notification_state().await;
    let genuine = sandbox.refund_notification(&payment_id, &refund_id, 900, 5000, "SUCCESS");
    let mut other_amount = genuine.clone();
    other_amount["amount"]["refund"] = json!(5000);
    let mut other_merchant = genuine.clone();
    other_merchant["mchid"] = json!("1900000999");
    let mut unknown = genuine.clone();
    unknown["out_refund_no"] = json!("ref_0123456789abcdef0123456789abcdef");
    let cases = [
        ("signed with another key", sandbox.notify(&url, &genuine, Forgery::SignedWithAnotherKey).await),
        ("sealed with another key", sandbox.notify(&url, &genuine, Forgery::EncryptedWithAnotherKey).await),
        ("stale", sandbox.notify(&url, &genuine, Forgery::Stale).await),
        ("another amount", sandbox.notify(&url, &other_amount, Forgery::Genuine).await),
        ("another merchant", sandbox.notify(&url, &other_merchant, Forgery::Genuine).await),
        ("unknown refund", sandbox.notify(&url, &unknown, Forgery::Genuine).await),
    ];
    for (what, answer) in cases {
        let (status, body) = answer.expect("answered");
        assert_eq!(status, 400, "{what}: {body}");
    }
    assert_eq!(app.notification_state().await, before, "nothing changed");
    assert_eq!(app.get(&format!("/v1/refunds/{refund_id}"), &m.key).await.body["status"], "processing");

    let answer = sandbox.finish_refund(&refund_id, "ABNORMAL", true).await.expect("notified");
    assert_eq!(answer.map(|(status, _)| status), Some(204));
    let refund = app.wait_refund(&m, &refund_id, "failed").await;
    assert!(refund["failure_reason"].as_str().is_some_and(|r| r.contains("ABNORMAL")), "{refund}");
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["amount_refunded"], 0);
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// WeChat Pay does not close a trade within 5 minutes of its creation (here 2 s, at both
/// ends): an order that times out sooner closes at its deadline, its trade is closed at the
/// channel once the rule allows, and a payment made in between is refunded in full.
#[tokio::test]
async fn a_trade_younger_than_wechatpays_close_limit_is_closed_once_the_rule_allows() {
    let sandbox = sandbox().await;
    sandbox.set_close_after(std::time::Duration::from_secs(2));
    let (app, m) = lifecycle::setup(SECRETS_KEY, &sandbox, |s| {
        s.payment.wechatpay_close_after = payq_domain::HumanDuration::from_millis(2_000);
    })
    .await;
    let order = app.pay_through(&m, "wechatpay", "CL-1", 3000, Some("300ms")).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    let closed = app.wait_order(&m, &order_id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    let t = sandbox.transaction(&payment_id).expect("a transaction");
    assert_eq!(t.trade_state, "NOTPAY", "not closed at WeChat Pay before the rule allows");
    assert_eq!(sandbox.calls(&payment_id, "close"), 0, "no close refused by the rule was even tried");
    crate::helpers::eventually("the trade is closed at WeChat Pay", || async {
        (sandbox.transaction(&payment_id).map(|t| t.trade_state) == Some("CLOSED".into())).then_some(())
    })
    .await;
    assert_eq!(sandbox.calls(&payment_id, "close"), 1);

    // The same, with the buyer paying between the order's close and the trade's.
    let order = app.pay_through(&m, "wechatpay", "CL-2", 4000, Some("300ms")).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    app.wait_order(&m, &order_id, "closed").await;
    assert_eq!(sandbox.buyer_pays(&payment_id).await.expect("notified").0, 204);
    crate::helpers::eventually("the late payment is refunded at WeChat Pay", || async {
        (payq_gateways::LocalGateway::refunded(&sandbox, &payment_id) == 4000).then_some(())
    })
    .await;
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["status"], "closed");
    assert_eq!(app.verify().0, 0, "payq verify");
}
