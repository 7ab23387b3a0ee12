//! Every pay product of both channels, end to end against the local gateways
//! (docs/channels.md, "Pay products"): the pay answer's `next_action` as the buyer's
//! browser, phone or app needs it, the create request (or the buyer's signed request)
//! checked by the gateway, the client-side signature checked with the merchant's key, the
//! buyer pays and the notification settles it. A product a channel does not offer, or a
//! missing payer field, is refused before anything reaches the channel.

use crate::helpers::{TestApp, TestMerchant, assert_problem, order_and_payment_ids};
use payq_gateways::LocalGateway;
use payq_gateways::alipay::AlipaySandbox;
use payq_gateways::wechatpay::{MINI_PROGRAM_APP_ID, WechatPaySandbox};
use serde_json::{Value, json};

const SECRETS_KEY: &str = "9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a";
const RETURN_URL: &str = "https://shop.example/orders/paid?from=payq";

/// Creates an order `no` and pays it through `channel` with `body` (merged into
/// `{channel}`); the `202` answer, after checking that `GET` shows the same payment.
async fn pay(app: &TestApp, m: &TestMerchant, channel: &str, no: &str, body: Value) -> Value {
    let order = app.order_with(m, json!({ "merchant_order_no": no, "amount": 2500, "currency": "CNY" })).await;
    let id = order["id"].as_str().unwrap_or_default();
    let mut request = json!({ "channel": channel });
    if let (Some(r), Some(extra)) = (request.as_object_mut(), body.as_object()) {
        r.extend(extra.clone());
    }
    let r = app.post(&format!("/v1/orders/{id}/pay"), &m.key, request).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let shown = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
    assert_eq!(shown["payment"], r.body["payment"], "GET shows the payment as the answer did");
    r.body
}

/// The buyer pays at the gateway and its notification pays the order, once.
async fn buyer_pays(app: &TestApp, m: &TestMerchant, gateway: &dyn LocalGateway, order: &Value) {
    let (order_id, payment_id) = order_and_payment_ids(order);
    let (status, body) = gateway.buyer_pays(&payment_id).await.expect("notified");
    assert_eq!((status, body.as_str()), gateway.acknowledgement());
    app.wait_order(m, &order_id, "paid").await;
    let deadline = payq_domain::Timestamp::parse_rfc3339(order["expires_at"].as_str().unwrap_or_default());
    let deadline = deadline.map(|d| payq_domain::Timestamp::from_millis(d.millis() / 1000 * 1000));
    assert_eq!(gateway.time_expire(&payment_id), deadline, "time_expire");
}

#[tokio::test]
async fn every_alipay_product_is_paid_end_to_end() {
    let gateway = AlipaySandbox::start().await.expect("Alipay's local gateway");
    let (app, m) = TestApp::with_channel(SECRETS_KEY, |_| {}, "alipay", gateway.credentials()).await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    for (product, method) in [("web", "alipay.trade.page.pay"), ("wap", "alipay.trade.wap.pay")] {
        let order =
            pay(&app, &m, "alipay", &format!("AP-{product}"), json!({ "product": product, "return_url": RETURN_URL }))
                .await;
        let (_, payment_id) = order_and_payment_ids(&order);
        assert_eq!(order["payment"]["product"], product);
        let action = &order["payment"]["next_action"];
        assert_eq!(action["type"], "redirect", "{order}");
        let url = action["url"].as_str().unwrap_or_default();
        assert!(url.starts_with(&gateway.gateway_url), "{url}");
        // Nothing was sent to Alipay yet: the buyer's browser carries the signed request.
        assert!(gateway.trade(&payment_id).is_none());
        let tampered = url.replace("25.00", "0.01");
        assert_eq!(http.get(&tampered).send().await.expect("page").status(), 400, "a changed request is refused");
        let page = http.get(url).send().await.expect("Alipay's page");
        assert_eq!(page.status(), 200, "the gateway checked the signature");
        let trade = gateway.trade(&payment_id).expect("a trade once the buyer is on the page");
        assert_eq!((trade.method.as_str(), trade.amount), (method, 2500));
        assert_eq!(trade.return_url, RETURN_URL);
        assert_eq!(trade.quit_url, if product == "wap" { RETURN_URL } else { "" });
        buyer_pays(&app, &m, &gateway, &order).await;
    }
    let order = pay(&app, &m, "alipay", "AP-app", json!({ "product": "app" })).await;
    let (_, payment_id) = order_and_payment_ids(&order);
    assert_eq!(order["payment"]["next_action"]["type"], "alipay_app", "{order}");
    let order_string = order["payment"]["next_action"]["order_string"].as_str().unwrap_or_default();
    assert!(gateway.app_opens(&order_string.replace("25.00", "0.01")).is_err(), "a changed order string is refused");
    assert_eq!(gateway.app_opens(order_string), Ok(()));
    assert_eq!(gateway.trade(&payment_id).map(|t| t.method), Some("alipay.trade.app.pay".into()));
    buyer_pays(&app, &m, &gateway, &order).await;
    // The QR code is still the default.
    let order = pay(&app, &m, "alipay", "AP-qr", json!({})).await;
    assert_eq!(
        (&order["payment"]["product"], &order["payment"]["next_action"]["type"]),
        (&json!("qr"), &json!("qr_code"))
    );
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn every_wechatpay_product_is_paid_end_to_end() {
    let gateway = WechatPaySandbox::start().await.expect("WeChat Pay's local gateway");
    let (app, m) = TestApp::with_channel(SECRETS_KEY, |_| {}, "wechatpay", gateway.credentials()).await;
    for (product, app_id) in [("jsapi", gateway.app_id.as_str()), ("mini_program", MINI_PROGRAM_APP_ID)] {
        let payer = json!({ "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" });
        let order =
            pay(&app, &m, "wechatpay", &format!("WP-{product}"), json!({ "product": product, "payer": payer })).await;
        let (_, payment_id) = order_and_payment_ids(&order);
        let a = &order["payment"]["next_action"];
        assert_eq!(
            (&a["type"], &a["app_id"], &a["sign_type"]),
            (&json!("wechat_jsapi"), &json!(app_id), &json!("RSA")),
            "{a}"
        );
        let field = |name: &str| a[name].as_str().unwrap_or_default().to_owned();
        assert!(field("package").starts_with("prepay_id=wx"), "{a}");
        let lines = [app_id, &field("time_stamp"), &field("nonce_str"), &field("package")];
        assert!(gateway.merchant_signed(lines, &field("pay_sign")), "paySign is the merchant's: {a}");
        assert!(!gateway.merchant_signed([app_id, "1", "n", "prepay_id=other"], &field("pay_sign")));
        let t = gateway.transaction(&payment_id).expect("a JSAPI transaction");
        assert_eq!(
            (t.trade_type.as_str(), t.appid.as_str(), t.openid.as_str()),
            ("JSAPI", app_id, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")
        );
        buyer_pays(&app, &m, &gateway, &order).await;
    }

    let body = json!({ "product": "h5", "payer": { "client_ip": "203.0.113.7" }, "return_url": RETURN_URL });
    let order = pay(&app, &m, "wechatpay", "WP-h5", body).await;
    let (_, payment_id) = order_and_payment_ids(&order);
    let url = order["payment"]["next_action"]["url"].as_str().unwrap_or_default();
    assert_eq!(order["payment"]["next_action"]["type"], "redirect");
    assert!(url.starts_with(&format!("{}/h5/checkmweb?prepay_id=wx", gateway.base_url)), "{url}");
    let back = "https%3A%2F%2Fshop.example%2Forders%2Fpaid%3Ffrom%3Dpayq"; // RETURN_URL, URL-encoded
    assert!(url.ends_with(&format!("&redirect_url={back}")), "{url}");
    let t = gateway.transaction(&payment_id).expect("an H5 transaction");
    assert_eq!((t.trade_type.as_str(), t.client_ip.as_str()), ("MWEB", "203.0.113.7"));
    buyer_pays(&app, &m, &gateway, &order).await;

    let order = pay(&app, &m, "wechatpay", "WP-app", json!({ "product": "app" })).await;
    let (_, payment_id) = order_and_payment_ids(&order);
    let a = &order["payment"]["next_action"];
    let field = |name: &str| a[name].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        (field("type"), field("partner_id"), field("package")),
        ("wechat_app".into(), gateway.mch_id.clone(), "Sign=WXPay".into())
    );
    let lines = [gateway.app_id.as_str(), &field("timestamp"), &field("nonce_str"), &field("prepay_id")];
    assert!(gateway.merchant_signed(lines, &field("sign")), "the app's sign is the merchant's: {a}");
    assert_eq!(gateway.transaction(&payment_id).map(|t| t.trade_type), Some("APP".into()));
    buyer_pays(&app, &m, &gateway, &order).await;
    assert_eq!(gateway.creates(&payment_id), 1);
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test]
async fn a_product_the_channel_does_not_offer_or_a_missing_payer_field_is_refused_before_the_channel() {
    let gateway = WechatPaySandbox::start().await.expect("WeChat Pay's local gateway");
    let (app, m) = TestApp::with_channel(SECRETS_KEY, |_| {}, "wechatpay", gateway.credentials()).await;
    let order = app.order_with(&m, json!({ "merchant_order_no": "NO-1", "amount": 100, "currency": "CNY" })).await;
    let id = order["id"].as_str().unwrap_or_default();
    let before = app.db_fingerprint().await;
    for (body, field) in [
        (json!({ "channel": "wechatpay", "product": "qr" }), "product"),
        (json!({ "channel": "wechatpay", "product": "web" }), "product"),
        (json!({ "channel": "wechatpay", "product": "jsapi" }), "payer.openid"),
        (
            json!({ "channel": "wechatpay", "product": "mini_program", "payer": { "client_ip": "1.2.3.4" } }),
            "payer.openid",
        ),
        (json!({ "channel": "wechatpay", "product": "h5" }), "payer.client_ip"),
        (json!({ "channel": "wechatpay", "product": "h5", "payer": { "client_ip": "localhost" } }), "payer.client_ip"),
        (
            json!({ "channel": "wechatpay", "product": "h5", "payer": { "client_ip": "1.2.3.4" }, "return_url": "ftp://x/" }),
            "return_url",
        ),
        (json!({ "channel": "sim", "product": "native" }), "product"),
    ] {
        let r = app.post(&format!("/v1/orders/{id}/pay"), &m.key, body.clone()).await;
        assert_problem(&r, 400, "validation_failed");
        assert!(r.body["detail"].as_str().unwrap_or_default().starts_with(field), "{body}: {}", r.body);
    }
    let r = app
        .post(&format!("/v1/orders/{id}/pay"), &m.key, json!({ "channel": "wechatpay", "product": "teleport" }))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(app.db_fingerprint().await, before, "nothing changed");
    assert_eq!(app.get(&format!("/v1/orders/{id}"), &m.key).await.body["payment"], Value::Null);
}
