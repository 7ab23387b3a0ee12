//! One channel call per payment start (docs/architecture.md, "One call per channel step"):
//! the pay request and its queued job never both create a payment at the channel, however
//! they meet. Played against both local gateways, which count the create calls they
//! receive: many payments at once, a gateway slower than the pay request waits, and payq
//! killed after it claimed the start and before the channel heard of it.

use crate::crash::{Server, call};
use crate::helpers::{TestApp, eventually_within, order_and_payment_ids};
use futures_util::future::join_all;
use payq_app::config::Settings;
use payq_domain::HumanDuration;
use payq_gateways::LocalGateway;
use payq_gateways::alipay::AlipaySandbox;
use payq_gateways::wechatpay::WechatPaySandbox;
use serde_json::{Value, json};
use std::time::Duration;

const SECRETS_KEY: &str = "0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c";

async fn alipay() -> AlipaySandbox {
    AlipaySandbox::start().await.expect("Alipay's local gateway")
}

async fn wechatpay() -> WechatPaySandbox {
    WechatPaySandbox::start().await.expect("WeChat Pay's local gateway")
}

/// A channel timeout of 2 s (so a claim on a call lasts 5 s and the queued request's turn
/// comes within the test), and a pay request that waits 300 ms for the channel.
fn quick_claims(s: &mut Settings) {
    s.payment.channel_timeout = HumanDuration::from_millis(2_000);
    s.payment.start_wait = HumanDuration::from_millis(300);
}

/// Waits until every queued payment request has had its turn (none is pending).
async fn wait_for_queued_requests(app: &TestApp) {
    eventually_within("every queued payment request ran", Duration::from_secs(20), || async {
        let r = app.get("/v1/admin/stats", &app.admin_token).await;
        let pending = r.body["pending_messages_by_kind"]["payment.request"].as_i64().unwrap_or(0);
        (r.status == 200 && pending == 0).then_some(())
    })
    .await;
}

/// 24 payments started at once: each gets its QR code, and after the queued requests had
/// their turn, the channel was asked to create each payment exactly once.
async fn many_payments_at_once_are_each_created_once(gateway: &dyn LocalGateway) {
    let (app, m) = TestApp::with_channel(SECRETS_KEY, quick_claims, gateway.channel(), gateway.credentials()).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let body = json!({ "merchant_order_no": format!("ONE-{i}"), "amount": 100 + i, "currency": "CNY" });
        ids.push(app.order_with(&m, body).await["id"].as_str().unwrap_or_default().to_owned());
    }
    let paths: Vec<String> = ids.iter().map(|id| format!("/v1/orders/{id}/pay")).collect();
    let pays = paths.iter().map(|path| app.post(path, &m.key, json!({ "channel": gateway.channel() })));
    let answers = join_all(pays).await;
    let mut payments = Vec::new();
    for r in answers {
        assert_eq!(r.status, 202, "{}", r.body);
        payments.push(order_and_payment_ids(&r.body).1);
    }
    // Under this load some answers come before the channel's (after 300 ms): each order
    // shows its QR code once the channel answered.
    for id in &ids {
        eventually_within("the QR code is on the order", Duration::from_secs(10), || async {
            let r = app.get(&format!("/v1/orders/{id}"), &m.key).await;
            (r.body["payment"]["next_action"]["type"] == "qr_code").then_some(())
        })
        .await;
    }
    wait_for_queued_requests(&app).await;
    for payment in &payments {
        assert_eq!(
            gateway.creates(payment),
            1,
            "{} was asked {} times to create {payment}",
            gateway.label(),
            gateway.creates(payment)
        );
    }
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn many_alipay_payments_at_once_are_each_created_once() {
    many_payments_at_once_are_each_created_once(&alipay().await).await;
}

#[tokio::test]
async fn many_wechatpay_payments_at_once_are_each_created_once() {
    many_payments_at_once_are_each_created_once(&wechatpay().await).await;
}

/// The gateway answers after 1 s, later than the pay request waits (300 ms) and sooner
/// than the channel timeout (2 s): the answer has no QR code yet, the call goes on and
/// brings it, and the queued request, when its turn comes, does not ask again.
async fn a_slow_gateway_is_asked_once(gateway: &dyn LocalGateway) {
    let (app, m) = TestApp::with_channel(SECRETS_KEY, quick_claims, gateway.channel(), gateway.credentials()).await;
    gateway.set_delay(Some(Duration::from_millis(1_000)));
    let order = app.pay_through(&m, gateway.channel(), "SLOW-1", 1999, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert_eq!(order["payment"]["next_action"], Value::Null, "answered before the slow gateway: {order}");
    eventually_within("the QR code arrives", Duration::from_secs(5), || async {
        let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
        r.body["payment"]["next_action"]["qr_code"].as_str().map(str::to_owned)
    })
    .await;
    wait_for_queued_requests(&app).await;
    assert_eq!(gateway.creates(&payment_id), 1, "asked {} times", gateway.creates(&payment_id));
    gateway.set_delay(None);
    assert!(gateway.buyer_pays_silently(&payment_id));
    app.wait_order(&m, &order_id, "paid").await;
    assert_eq!(gateway.creates(&payment_id), 1);
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn a_slow_alipay_gateway_is_asked_once() {
    a_slow_gateway_is_asked_once(&alipay().await).await;
}

#[tokio::test]
async fn a_slow_wechatpay_gateway_is_asked_once() {
    a_slow_gateway_is_asked_once(&wechatpay().await).await;
}

/// `payq serve` is killed while its pay request holds the start and the gateway has not
/// heard of the payment (it hangs before it reads a call): after the restart the queued
/// request starts the payment, once, and the buyer pays.
async fn killed_between_claim_and_call_starts_once_after_the_restart(gateway: &dyn LocalGateway) {
    let db = crate::db::TestDb::new().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let env = [
        ("PAYQ_SECRETS_KEY", SECRETS_KEY.to_owned()),
        ("PAYQ_PAYMENT__CHANNEL_TIMEOUT", "1s".to_owned()),
        ("PAYQ_PAYMENT__START_WAIT", "1s".to_owned()),
    ];
    let server = Server::start_with(&db.url, &env);
    let (status, merchant) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/merchants", server.base),
        crate::crash::ADMIN,
        Some(json!({ "name": "Kill Shop" })),
    )
    .await;
    assert_eq!(status, 201, "{merchant}");
    let key = merchant["api_key"].as_str().unwrap_or_default().to_owned();
    let merchant_id = merchant["id"].as_str().unwrap_or_default().to_owned();
    let (status, body) = call(
        &http,
        reqwest::Method::PATCH,
        format!("{}/v1/merchants/{merchant_id}", server.base),
        crate::crash::ADMIN,
        Some(json!({ "channels": { gateway.channel(): gateway.credentials() } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body = json!({ "merchant_order_no": "KILL-1", "amount": 4200, "currency": "CNY" });
    let (status, order) =
        call(&http, reqwest::Method::POST, format!("{}/v1/orders", server.base), &key, Some(body)).await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().unwrap_or_default().to_owned();

    gateway.set_hang(true);
    let pay_url = format!("{}/v1/orders/{order_id}/pay", server.base);
    // Cut off by the kill: its outcome is of no interest.
    let pay = tokio::spawn({
        let (http, key, channel) = (http.clone(), key.clone(), gateway.channel());
        async move { http.post(pay_url).bearer_auth(key).json(&json!({ "channel": channel })).send().await.is_ok() }
    });
    // The start is claimed (with the order's move to `paying`) before the call is made.
    let order_url = format!("{}/v1/orders/{order_id}", server.base);
    let payment_id = eventually_within("the pay request claimed the start", Duration::from_secs(5), || async {
        let (_, o) = call(&http, reqwest::Method::GET, order_url.clone(), &key, None).await;
        o["payment"]["id"].as_str().map(str::to_owned)
    })
    .await;
    server.kill9();
    let _ = pay.await;
    assert_eq!(gateway.creates(&payment_id), 0, "the gateway never heard of it");
    gateway.set_hang(false);

    let server = Server::start_with(&db.url, &env);
    let order_url = format!("{}/v1/orders/{order_id}", server.base);
    eventually_within("the payment is started after the restart", Duration::from_secs(15), || async {
        let (_, o) = call(&http, reqwest::Method::GET, order_url.clone(), &key, None).await;
        o["payment"]["next_action"]["qr_code"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(gateway.creates(&payment_id), 1);
    assert!(gateway.buyer_pays_silently(&payment_id));
    eventually_within("the order is paid", Duration::from_secs(10), || async {
        let (_, o) = call(&http, reqwest::Method::GET, order_url.clone(), &key, None).await;
        (o["status"] == "paid").then_some(())
    })
    .await;
    assert_eq!(gateway.creates(&payment_id), 1);
    drop(server);
    let (code, out) = crate::helpers::verify_db(&db.url);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alipay_killed_between_claim_and_call_starts_once_after_the_restart() {
    killed_between_claim_and_call_starts_once_after_the_restart(&alipay().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpay_killed_between_claim_and_call_starts_once_after_the_restart() {
    killed_between_claim_and_call_starts_once_after_the_restart(&wechatpay().await).await;
}

/// The gateway fails the pay request's call (HTTP 502, nothing created): the answer has no
/// QR code, and the next start comes after the engine's back-off, not when the request's
/// claim would have run out (21 s with the default 10 s channel timeout); created once.
#[tokio::test]
async fn a_start_that_failed_in_the_pay_request_is_tried_again_soon() {
    let gateway = alipay().await;
    let (app, m) = TestApp::with_channel(SECRETS_KEY, |_| {}, gateway.channel(), gateway.credentials()).await;
    gateway.set_failure(Some(502));
    let order = app.pay_through(&m, "alipay", "FAIL-1", 1500, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert_eq!(order["payment"]["next_action"], Value::Null, "no QR code from a failing gateway: {order}");
    gateway.set_failure(None);
    eventually_within("the QR code arrives well before the claim's lease", Duration::from_secs(5), || async {
        let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
        r.body["payment"]["next_action"]["qr_code"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(gateway.creates(&payment_id), 1);
}
