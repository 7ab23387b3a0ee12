//! The hosted checkout page in headless Chromium (as the console's tests), against the
//! local Alipay and WeChat Pay gateways: on a desktop the buyer scans a QR code payq drew
//! (read back from the page's pixels) and the page turns to "paid" by itself; on a phone
//! the Alipay link leads to the gateway's page with a valid signature; a bad link says
//! nothing about the order; a paid order offers no second payment; Chinese by
//! `Accept-Language`. `PAYQ_CONSOLE_SCREENSHOTS=dir` saves the screenshots docs/checkout.md
//! shows.

use crate::console::{Driver, el, screenshot, text_of, wait_for_text};
use crate::helpers::{TestApp, TestMerchant, eventually, eventually_within};
use fantoccini::Locator;
use payq_gateways::alipay::AlipaySandbox;
use payq_gateways::wechatpay::WechatPaySandbox;
use serde_json::{Value, json};
use std::time::Duration;

const SECRETS_KEY: &str = "c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec0c4ec";
const RETURN_URL: &str = "https://shop.example/orders/done";
const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                        (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// payq with a merchant that takes Alipay and WeChat Pay through the local gateways.
async fn shop() -> (TestApp, TestMerchant, AlipaySandbox, WechatPaySandbox) {
    let alipay = AlipaySandbox::start().await.expect("alipay sandbox");
    let wechatpay = WechatPaySandbox::start().await.expect("wechatpay sandbox");
    let (app, m) = crate::real_channels::setup(SECRETS_KEY, &alipay, |_| {}).await;
    let r = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/merchants/{}", m.id),
            Some(&app.admin_token),
            Some(json!({ "channels": { "wechatpay": wechatpay.credentials() } })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (app, m, alipay, wechatpay)
}

/// An order of `amount` fen and its checkout link.
async fn order_with_link(app: &TestApp, m: &TestMerchant, no: &str, amount: i64) -> (String, String) {
    let body =
        json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY", "description": "Oolong tea, 250 g" });
    let r = app.post("/v1/orders", &m.key, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    let r = app.post(&format!("/v1/orders/{id}/checkout"), &m.key, json!({ "return_url": RETURN_URL })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["expires_at"].is_string(), "{}", r.body);
    let url = r.body["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.starts_with(&format!("{}/checkout/{id}?t=", app.base)), "{url}");
    (id, url)
}

async fn order(app: &TestApp, m: &TestMerchant, id: &str) -> Value {
    app.get(&format!("/v1/orders/{id}"), &m.key).await.body
}

/// The text a QR code image (PNG) holds.
fn read_qr(png: &[u8]) -> String {
    let image = image::load_from_memory(png).expect("a PNG").to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("the QR code reads").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_desktop_the_buyer_scans_payqs_qr_code_and_the_page_turns_to_paid() {
    let Some(driver) = Driver::start().await else { return };
    let (app, m, _alipay, wechatpay) = shop().await;
    let (id, url) = order_with_link(&app, &m, "CK-1", 1999).await;

    let browser = driver.browser_with(&["--window-size=1280,900", "--lang=en-US"]).await;
    browser.goto(&url).await.expect("checkout");
    assert_eq!(text_of(&browser, "#amount").await, "¥19.99");
    assert_eq!(text_of(&browser, "#merchant").await, "Test Shop");
    assert!(text_of(&browser, "#time-left").await.starts_with("Pay within"));
    el(&browser, "#pay-alipay").await;
    screenshot(&browser, "checkout-desktop-en").await;

    // WeChat Pay: the page shows the payment's QR code, drawn by payq.
    el(&browser, "#pay-wechatpay").await.click().await.expect("clicked");
    let qr = el(&browser, "#qr svg").await;
    screenshot(&browser, "checkout-desktop-qr").await;
    let png = qr.screenshot().await.expect("the QR code's pixels");
    let paying = order(&app, &m, &id).await;
    assert_eq!(paying["status"], "paying", "{paying}");
    assert_eq!(read_qr(&png), paying["payment"]["next_action"]["qr_code"].as_str().unwrap_or_default());
    assert!(text_of(&browser, "#waiting").await.contains("refreshes by itself"));

    // The buyer pays; the page, refreshing itself every 3 s, says so.
    let payment = paying["payment"]["id"].as_str().unwrap_or_default().to_owned();
    wechatpay.buyer_pays(&payment).await.expect("notified");
    eventually_within("the page shows the payment", Duration::from_secs(15), || async {
        let found = browser.find(Locator::Css("#outcome")).await.ok()?;
        (found.text().await.ok()? == "Paid").then_some(())
    })
    .await;
    assert_eq!(el(&browser, "#back").await.attr("href").await.expect("href").as_deref(), Some(RETURN_URL));
    // A paid order never offers a second payment.
    browser.refresh().await.expect("reloaded");
    el(&browser, "#outcome").await;
    assert!(browser.find_all(Locator::Css("form.way")).await.expect("forms").is_empty());
    let r = payq_channels::http_client()
        .build()
        .expect("an HTTP client")
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("form=x&channel=alipay")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 403, "a form without the page's token");
    assert_eq!(order(&app, &m, &id).await["status"], "paid");
    browser.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_phone_the_alipay_link_leads_to_alipays_page() {
    let Some(driver) = Driver::start().await else { return };
    let (app, m, alipay, _wechatpay) = shop().await;
    let (id, url) = order_with_link(&app, &m, "CK-2", 4500).await;
    let ua = format!("--user-agent={PHONE_UA}");

    for lang in ["zh-CN", "en-US"] {
        let browser = driver.browser_with(&["--window-size=390,844", &ua, &format!("--lang={lang}")]).await;
        browser.goto(&url).await.expect("checkout");
        assert_eq!(text_of(&browser, "#amount").await, "¥45.00");
        let label = text_of(&browser, "#pay-alipay").await;
        assert_eq!(label, if lang == "zh-CN" { "支付宝" } else { "Alipay" });
        screenshot(&browser, &format!("checkout-phone-{}", &lang[..2])).await;
        if lang == "en-US" {
            // Alipay's phone checkout (wap): the browser lands on the gateway's page, which
            // checked the request's signature.
            el(&browser, "#pay-alipay").await.click().await.expect("clicked");
            wait_for_text(&browser, "h1", "Alipay checkout").await;
            let paying = order(&app, &m, &id).await;
            assert_eq!(paying["payment"]["product"], "wap", "{paying}");
            let payment = paying["payment"]["id"].as_str().unwrap_or_default().to_owned();
            assert_eq!(alipay.trade(&payment).map(|t| t.method), Some("alipay.trade.wap.pay".to_owned()));
        }
        browser.close().await.expect("closed");
    }
    // A desktop screenshot in Chinese, too.
    let browser = driver.browser_with(&["--window-size=1280,900", "--lang=zh-CN"]).await;
    let (_, url) = order_with_link(&app, &m, "CK-3", 880).await;
    browser.goto(&url).await.expect("checkout");
    assert_eq!(text_of(&browser, "h1").await, "选择支付方式");
    screenshot(&browser, "checkout-desktop-zh").await;
    browser.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_expired_link_is_refused_and_says_nothing_about_the_order() {
    let (app, m, _alipay, _wechatpay) = shop().await;
    let (id, url) = order_with_link(&app, &m, "CK-4", 1234).await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let get = |url: String, lang: &'static str| {
        let http = http.clone();
        async move {
            let r = http.get(url).header("accept-language", lang).send().await.expect("sent");
            let csp = r.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (r.status().as_u16(), csp, r.text().await.unwrap_or_default())
        }
    };
    let (status, csp, page) = get(url.clone(), "zh-CN,zh;q=0.9,en;q=0.8").await;
    assert_eq!(status, 200);
    assert!(csp.is_some_and(|c| c.contains("default-src 'none'")), "strict CSP");
    assert!(page.contains("选择支付方式") && page.contains("¥12.34") && !page.contains("<script"), "{page}");
    let tampered = format!("{}0", url);
    let other_order = url.replace(&id, &payq_domain::OrderId::generate().to_string());
    for bad in
        [tampered, other_order, format!("{}/checkout/{id}", app.base), format!("{}/checkout/{id}?t=1.2.3.4", app.base)]
    {
        let (status, _, page) = get(bad.clone(), "en").await;
        assert_eq!(status, 403, "{bad}");
        assert!(
            page.contains("not valid or has expired") && !page.contains("12.34") && !page.contains("Test Shop"),
            "{page}"
        );
    }
    // A link lives as long as its order may be paid: past the deadline it is refused.
    let body = json!({ "merchant_order_no": "CK-5", "amount": 100, "currency": "CNY", "payment_timeout": "1s" });
    let r = app.post("/v1/orders", &m.key, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let short = r.body["id"].as_str().unwrap_or_default().to_owned();
    let r = app.post(&format!("/v1/orders/{short}/checkout"), &m.key, json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let link = r.body["url"].as_str().unwrap_or_default().to_owned();
    assert_eq!(get(link.clone(), "en").await.0, 200);
    eventually("the link expires with its order", || async { (get(link.clone(), "en").await.0 == 403).then_some(()) })
        .await;
    // Bad requests for a link change nothing.
    let r =
        app.post(&format!("/v1/orders/{id}/checkout"), &m.key, json!({ "return_url": "javascript:alert(1)" })).await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("validation_failed")), "{}", r.body);
    let r = app.post(&format!("/v1/orders/ord_{}/checkout", "0".repeat(32)), &m.key, json!({})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(order(&app, &m, &id).await["status"], "pending_payment");
}
