//! Real-channel credentials on a merchant: set with `PATCH /v1/merchants/{id}`, shown
//! without their keys, stored only sealed with `PAYQ_SECRETS_KEY`, refused when they do
//! not read or when the key is missing, and payq refuses to start without the key that
//! sealed them.

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with, test_settings};
use payq_app::application::Application;
use reqwest::Method;
use serde_json::{Value, json};

const APP_KEY: &str = include_str!("../../../channels/src/testdata/alipay-app-key.pem");
const ALIPAY_PUBLIC_KEY: &str = include_str!("../../../channels/src/testdata/alipay-gateway-pub.pem");
const SECRETS_KEY: &str = "5ec2e75e5ec2e75e5ec2e75e5ec2e75e5ec2e75e5ec2e75e5ec2e75e5ec2e75e";

async fn patch(app: &TestApp, id: &str, body: Value) -> crate::helpers::Reply {
    app.send(Method::PATCH, &format!("/v1/merchants/{id}"), Some(&app.admin_token), Some(body)).await
}

fn alipay(gateway_url: Option<&str>) -> Value {
    let mut a = json!({ "app_id": "2021000000000001", "private_key": APP_KEY, "alipay_public_key": ALIPAY_PUBLIC_KEY });
    if let Some(url) = gateway_url {
        a["gateway_url"] = json!(url);
    }
    json!({ "channels": { "alipay": a } })
}

/// A line from the middle of the private key: if it shows anywhere, the key leaked.
fn key_body_line() -> &'static str {
    APP_KEY.lines().nth(5).unwrap_or("MII")
}

#[tokio::test]
async fn alipay_credentials_are_shown_without_keys_and_stored_only_sealed() {
    let app = spawn_app_with(|s| s.secrets_key = Some(SECRETS_KEY.into())).await;
    let m = app.merchant().await;
    let r = patch(&app, &m.id, alipay(Some("http://127.0.0.1:9/gateway.do"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["channels"]["alipay"],
        json!({ "app_id": "2021000000000001", "gateway_url": "http://127.0.0.1:9/gateway.do" })
    );
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(shown, r.body, "the change is stored");
    for text in [r.body.to_string(), shown.to_string()] {
        assert!(!text.contains("PRIVATE KEY") && !text.contains(key_body_line()), "a key is shown: {text}");
    }

    // Stored only sealed: the credentials column holds no key material, and opens only with
    // the key.
    let mut conn = app.db.connect().await;
    let (public, sealed): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT channels, channel_secrets FROM merchants WHERE id = $1")
            .bind(&m.id)
            .fetch_one(&mut conn)
            .await
            .expect("merchant row");
    let sealed = sealed.expect("sealed credentials");
    for stored in [public.unwrap_or_default(), sealed.clone()] {
        assert!(!stored.contains("PRIVATE KEY") && !stored.contains(key_body_line()), "plain key stored: {stored}");
    }
    let key = payq_app::secrets::SecretsKey::from_hex(SECRETS_KEY).expect("key");
    let opened: Value = serde_json::from_slice(&key.open(&sealed).expect("opens")).expect("json");
    assert_eq!(opened["alipay"]["private_key"], APP_KEY);

    // Without a gateway, Alipay's production gateway.
    let r = patch(&app, &m.id, alipay(None)).await;
    assert_eq!(r.body["channels"]["alipay"]["gateway_url"], "https://openapi.alipay.com/gateway.do", "{}", r.body);

    // Refused changes change nothing.
    let before = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    let fingerprint = app.db_fingerprint().await;
    let mut wrong_kind = alipay(None);
    wrong_kind["channels"]["alipay"]["private_key"] = json!(ALIPAY_PUBLIC_KEY);
    let mut bad_id = alipay(None);
    bad_id["channels"]["alipay"]["app_id"] = json!("2021 0000; DROP");
    let mut bad_public = alipay(None);
    bad_public["channels"]["alipay"]["alipay_public_key"] = json!("-----BEGIN PUBLIC KEY-----\nnot a key\n");
    let mut extra = alipay(None);
    extra["channels"]["alipay"]["api_key"] = json!("x");
    for (body, needle) in [
        (wrong_kind, "private_key"),
        (bad_id, "app_id"),
        (bad_public, "alipay_public_key"),
        (alipay(Some("ftp://127.0.0.1/gateway.do")), "gateway_url"),
        (extra, "api_key"),
        (json!({ "channels": { "paypal": {} } }), "paypal"),
    ] {
        let r = patch(&app, &m.id, body).await;
        assert_problem(&r, 400, "invalid_request");
        assert!(r.body["detail"].as_str().unwrap_or_default().contains(needle), "{needle}: {}", r.body);
        assert!(!r.body.to_string().contains(key_body_line()), "the error shows a key: {}", r.body);
    }
    assert_eq!(app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body, before);
    assert_eq!(app.db_fingerprint().await, fingerprint);

    // `null` removes the channel and its credentials.
    let r = patch(&app, &m.id, json!({ "channels": { "alipay": null } })).await;
    assert_eq!(r.body["channels"]["alipay"], Value::Null, "{}", r.body);
    let sealed: Option<String> = sqlx::query_scalar("SELECT channel_secrets FROM merchants WHERE id = $1")
        .bind(&m.id)
        .fetch_one(&mut conn)
        .await
        .expect("merchant row");
    assert_eq!(sealed, None);
}

#[tokio::test]
async fn without_a_secrets_key_credentials_are_refused() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let r = patch(&app, &m.id, alipay(None)).await;
    assert_problem(&r, 400, "invalid_request");
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("PAYQ_SECRETS_KEY"), "{}", r.body);
    let shown = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await.body;
    assert_eq!(shown["channels"]["alipay"], Value::Null);
}

#[tokio::test]
async fn payq_starts_only_with_the_key_that_sealed_the_credentials() {
    let app = spawn_app_with(|s| s.secrets_key = Some(SECRETS_KEY.into())).await;
    let m = app.merchant().await;
    assert_eq!(patch(&app, &m.id, alipay(None)).await.status, 200);
    for (key, says) in [(None, "set PAYQ_SECRETS_KEY"), (Some("ab".repeat(32)), "does not open")] {
        let mut settings = test_settings(&app.db_url);
        settings.secrets_key = key;
        let refused = Application::build(settings).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(refused.contains(says) && refused.contains("PAYQ_SECRETS_KEY"), "{says}: {refused:?}");
    }
    let mut settings = test_settings(&app.db_url);
    settings.secrets_key = Some(SECRETS_KEY.into());
    assert!(Application::build(settings).await.is_ok(), "starts with the right key");
}
