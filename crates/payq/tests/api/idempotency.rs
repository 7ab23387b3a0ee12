use crate::helpers::{assert_problem, spawn_app};
use serde_json::json;

async fn post_with_key(
    app: &crate::helpers::TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> crate::helpers::Reply {
    let r = app
        .http
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = r.json().await.unwrap_or(serde_json::Value::Null);
    crate::helpers::Reply { status, body, content_type, headers }
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let body = json!({ "merchant_order_no": "I-1", "amount": 100, "currency": "USD" });
    let first = post_with_key(&app, &m.key, "/v1/orders", "key-1", body.clone()).await;
    assert_eq!(first.status, 201);
    let before = app.db_fingerprint().await;
    let again = post_with_key(&app, &m.key, "/v1/orders", "key-1", body.clone()).await;
    assert_eq!(again.status, 201, "the first status is replayed, not 200");
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(app.db_fingerprint().await, before);

    // Errors are replayed too.
    let id = first.body["id"].as_str().unwrap_or_default();
    let e1 = post_with_key(
        &app,
        &m.key,
        &format!("/v1/orders/{id}/ship"),
        "key-2",
        json!({ "carrier": "a", "tracking_no": "b" }),
    )
    .await;
    assert_problem(&e1, 409, "invalid_state");
    let e2 = post_with_key(
        &app,
        &m.key,
        &format!("/v1/orders/{id}/ship"),
        "key-2",
        json!({ "carrier": "a", "tracking_no": "b" }),
    )
    .await;
    assert_problem(&e2, 409, "invalid_state");

    // Pay twice with one key: one payment attempt.
    let p1 = post_with_key(&app, &m.key, &format!("/v1/orders/{id}/pay"), "pay-1", json!({ "channel": "sim" })).await;
    let p2 = post_with_key(&app, &m.key, &format!("/v1/orders/{id}/pay"), "pay-1", json!({ "channel": "sim" })).await;
    assert_eq!((p1.status, p2.status), (202, 202));
    assert_eq!(p1.body["payment"]["id"], p2.body["payment"]["id"]);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let first = post_with_key(
        &app,
        &m.key,
        "/v1/orders",
        "key-9",
        json!({ "merchant_order_no": "I-2", "amount": 100, "currency": "USD" }),
    )
    .await;
    assert_eq!(first.status, 201);
    let before = app.db_fingerprint().await;
    let r = post_with_key(
        &app,
        &m.key,
        "/v1/orders",
        "key-9",
        json!({ "merchant_order_no": "I-3", "amount": 100, "currency": "USD" }),
    )
    .await;
    assert_problem(&r, 422, "idempotency_mismatch");
    assert_eq!(app.db_fingerprint().await, before);
    // Keys belong to one merchant: another merchant may use the same key.
    let other = app.merchant().await;
    let r = post_with_key(
        &app,
        &other.key,
        "/v1/orders",
        "key-9",
        json!({ "merchant_order_no": "I-3", "amount": 100, "currency": "USD" }),
    )
    .await;
    assert_eq!(r.status, 201);
    let long = "k".repeat(256);
    let r = post_with_key(
        &app,
        &m.key,
        "/v1/orders",
        &long,
        json!({ "merchant_order_no": "I-4", "amount": 1, "currency": "USD" }),
    )
    .await;
    assert_problem(&r, 400, "invalid_request");
}
