//! The lifecycle every real channel goes through, played against its local gateway
//! (`LocalGateway`: `AlipaySandbox`, `WechatPaySandbox`) over real HTTP. Each channel's test
//! file calls these with its own gateway and adds the checks of its protocol (forged
//! notifications, credentials).

use crate::helpers::{TestApp, TestMerchant, eventually, order_and_payment_ids};
use payq_app::config::Settings;
use payq_gateways::LocalGateway;
use serde_json::{Value, json};

/// payq with `secrets_key`, and a merchant set up with `gateway`.
pub async fn setup(
    secrets_key: &str,
    gateway: &dyn LocalGateway,
    tweak: impl FnOnce(&mut Settings),
) -> (TestApp, TestMerchant) {
    TestApp::with_channel(secrets_key, tweak, gateway.channel(), gateway.credentials()).await
}

/// Pays with the QR code: the notification pays the order once (a repeat changes
/// nothing), and two refunds are executed at the channel, each once. Answers the order as
/// it is at the end (with its payment).
pub async fn the_qr_code_is_in_the_answer_and_the_notification_pays_once(
    app: &TestApp,
    m: &TestMerchant,
    gateway: &dyn LocalGateway,
) -> Value {
    let order = app.pay_through(m, gateway.channel(), "RC-1", 8888, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert_eq!(order["payment"]["next_action"]["type"], "qr_code", "{order}");
    assert_eq!(gateway.state(&payment_id), Some(gateway.pending_state().into()), "{order}");
    // The channel itself refuses payment after the order's deadline (to the second).
    let deadline = payq_domain::Timestamp::parse_rfc3339(order["expires_at"].as_str().unwrap_or_default());
    let deadline = deadline.map(|d| payq_domain::Timestamp::from_millis(d.millis() / 1000 * 1000));
    assert_eq!(gateway.time_expire(&payment_id), deadline, "time_expire at {}", gateway.label());
    let (status, body) = gateway.buyer_pays(&payment_id).await.expect("notified");
    assert_eq!((status, body.as_str()), gateway.acknowledgement());
    app.wait_order(m, &order_id, "paid").await;
    // Channels repeat a notification until it is acknowledged: a repeat changes nothing.
    let before = app.notification_state().await;
    let (status, body) = gateway.buyer_pays(&payment_id).await.expect("notified");
    assert_eq!((status, body.as_str()), gateway.acknowledgement());
    assert_eq!(app.notification_state().await, before);
    let types = app.event_types(m, &order_id).await;
    assert_eq!(types.iter().filter(|t| *t == "payment.succeeded").count(), 1, "{types:?}");

    for amount in [1000, 500] {
        let r = app.post(&format!("/v1/orders/{order_id}/refunds"), &m.key, json!({ "amount": amount })).await;
        assert_eq!(r.status, 201, "{}", r.body);
        app.wait_refund(m, r.body["id"].as_str().unwrap_or_default(), "succeeded").await;
    }
    assert_eq!(gateway.refunded(&payment_id), 1500);
    assert_eq!(app.verify().0, 0, "payq verify");
    let end = app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body;
    assert_eq!(end["payment"]["next_action"], order["payment"]["next_action"]);
    end
}

/// The buyer pays and no notification comes: the query schedule finds it.
pub async fn a_lost_notification_is_found_by_the_query(app: &TestApp, m: &TestMerchant, gateway: &dyn LocalGateway) {
    let order = app.pay_through(m, gateway.channel(), "RC-3", 1999, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert!(gateway.buyer_pays_silently(&payment_id));
    app.wait_order(m, &order_id, "paid").await;
    assert!(gateway.queries(&payment_id) >= 1, "payq asked {}", gateway.label());
}

/// Nobody pays: the timeout closes the payment at the channel and the order; a payment
/// that arrives after that is refunded in full at the channel.
pub async fn the_timeout_closes_at_the_channel_and_a_late_payment_is_refunded_there(
    app: &TestApp,
    m: &TestMerchant,
    gateway: &dyn LocalGateway,
) {
    let order = app.pay_through(m, gateway.channel(), "RC-4", 3000, Some("1s")).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    let closed = app.wait_order(m, &order_id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    assert_eq!(gateway.state(&payment_id), Some(gateway.closed_state().into()));
    // The buyer's payment went through anyway (a race with the close): payq gives it back.
    let (status, body) = gateway.buyer_pays(&payment_id).await.expect("notified");
    assert_eq!((status, body.as_str()), gateway.acknowledgement());
    eventually("the late payment is refunded at the channel", || async {
        (gateway.refunded(&payment_id) == 3000).then_some(())
    })
    .await;
    let types = app.event_types(m, &order_id).await;
    assert!(types.iter().any(|t| t == "payment.late_refunded"), "{types:?}");
    assert_eq!(app.get(&format!("/v1/orders/{order_id}"), &m.key).await.body["status"], "closed");
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// Settings for [`a_gateway_that_hangs_leaves_the_payment_pending_until_it_answers`]: a
/// short channel timeout, and enough attempts for the queued request.
pub fn hanging_gateway_settings(s: &mut Settings) {
    s.payment.channel_timeout = payq_domain::HumanDuration::from_millis(300);
    s.engine.max_attempts = 20;
}

/// The gateway hangs when the buyer wants to pay: the answer has no QR code and the
/// payment stays pending; once the gateway answers, the queued request gets the QR code
/// and the payment completes.
pub async fn a_gateway_that_hangs_leaves_the_payment_pending_until_it_answers(
    app: &TestApp,
    m: &TestMerchant,
    gateway: &dyn LocalGateway,
) {
    gateway.set_hang(true);
    let order = app.pay_through(m, gateway.channel(), "RC-5", 700, None).await;
    let (order_id, payment_id) = order_and_payment_ids(&order);
    assert_eq!(order["payment"]["next_action"], Value::Null, "no QR code while the gateway hangs: {order}");
    assert_eq!(order["payment"]["status"], "pending");
    gateway.set_hang(false);
    eventually("the QR code appears", || async {
        let r = app.get(&format!("/v1/orders/{order_id}"), &m.key).await;
        r.body["payment"]["next_action"]["qr_code"].as_str().map(str::to_owned)
    })
    .await;
    assert!(gateway.buyer_pays_silently(&payment_id));
    app.wait_order(m, &order_id, "paid").await;
    assert_eq!(app.verify().0, 0, "payq verify");
}

/// A channel needs a CNY order and a merchant set up with it.
pub async fn the_channel_needs_a_set_up_merchant_and_cny(app: &TestApp, m: &TestMerchant, channel: &str) {
    let usd = app.order_with(m, json!({ "merchant_order_no": "RC-USD", "amount": 100, "currency": "USD" })).await;
    let pay = json!({ "channel": channel });
    let r = app.post(&format!("/v1/orders/{}/pay", usd["id"].as_str().unwrap_or_default()), &m.key, pay.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let plain = app.merchant().await;
    let order = app.order(&plain, "RC-NONE", 100).await;
    let r = app.post(&format!("/v1/orders/{}/pay", order["id"].as_str().unwrap_or_default()), &plain.key, pay).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("no {channel} channel")), "{}", r.body);
}
