use crate::helpers::{assert_problem, spawn_app};
use serde_json::json;

#[tokio::test]
async fn admin_creates_and_reads_merchants_and_secrets_show_once() {
    let app = spawn_app().await;
    let r = app
        .post("/v1/merchants", &app.admin_token, json!({ "name": "Tea House", "webhook_url": "http://127.0.0.1:9/hook", "settings": { "payment_timeout": "30m" } }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    assert!(id.starts_with("mch_"));
    assert!(r.body["api_key"].as_str().is_some_and(|k| k.starts_with("sk_") && k.len() >= 32));
    assert!(r.body["webhook_secret"].as_str().is_some_and(|s| s.len() >= 32));
    assert_eq!(r.body["settings"]["payment_timeout"], "30m");
    assert_eq!(r.body["settings"]["refund_review"], "1h");

    let r = app.get(&format!("/v1/merchants/{id}"), &app.admin_token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["name"], "Tea House");
    assert!(r.body.get("api_key").is_none() && r.body.get("webhook_secret").is_none());

    let r = app.get("/v1/merchants/mch_00000000000000000000000000000000", &app.admin_token).await;
    assert_problem(&r, 404, "not_found");
}

#[tokio::test]
async fn merchant_routes_need_the_admin_token() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let before = app.db_fingerprint().await;
    for token in [None, Some("wrong"), Some(m.key.as_str())] {
        let r = app.send(reqwest::Method::POST, "/v1/merchants", token, Some(json!({ "name": "x" }))).await;
        assert_problem(&r, 401, "unauthorized");
        let r = app.send(reqwest::Method::GET, &format!("/v1/merchants/{}", m.id), token, None).await;
        assert_problem(&r, 401, "unauthorized");
    }
    assert_eq!(app.db_fingerprint().await, before);
}

#[tokio::test]
async fn merchant_input_is_checked() {
    let app = spawn_app().await;
    for body in [
        json!({ "name": "" }),
        json!({ "name": "x", "webhook_url": "ftp://example" }),
        json!({ "name": "x", "settings": { "payment_timeout": "soon" } }),
        json!({ "name": "x", "settings": { "bogus": "1s" } }),
        json!({}),
    ] {
        let r = app.post("/v1/merchants", &app.admin_token, body.clone()).await;
        assert_problem(&r, 400, "invalid_request");
    }
}

#[tokio::test]
async fn api_keys_authenticate_merchants_only() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let last = if m.key.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &m.key[..m.key.len() - 1]);
    for token in [None, Some("sk_nope"), Some(app.admin_token.as_str()), Some(forged.as_str())] {
        let r = app.send(reqwest::Method::GET, "/v1/orders", token, None).await;
        assert_problem(&r, 401, "unauthorized");
    }
    assert_eq!(app.get("/v1/orders", &m.key).await.status, 200);
}

#[tokio::test]
async fn merchants_over_their_rate_limit_get_429_and_change_nothing() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.http.rate_limit = 1;
        s.http.rate_limit_burst = 3;
    })
    .await;
    let m = app.merchant().await;
    let other = app.merchant().await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/orders", &m.key).await.status, 200);
    }
    let before = app.db_fingerprint().await;
    let r =
        app.post("/v1/orders", &m.key, json!({ "merchant_order_no": "RL-1", "amount": 1, "currency": "CNY" })).await;
    assert_problem(&r, 429, "rate_limited");
    let retry_after = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert_eq!(retry_after, Some(1), "at 1 request/s the next one is due within a second");
    assert_eq!(app.db_fingerprint().await, before);
    assert_eq!(app.get("/v1/orders", &other.key).await.status, 200, "limits are per merchant");
}
