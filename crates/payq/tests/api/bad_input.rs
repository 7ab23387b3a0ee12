//! Every malformed request gets a 4xx problem response and leaves the database unchanged.

use crate::helpers::{assert_problem, spawn_app};
use serde_json::json;

#[tokio::test]
async fn malformed_order_bodies_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let before = app.db_fingerprint().await;
    let cases = [
        ("zero amount", json!({ "merchant_order_no": "B", "amount": 0, "currency": "CNY" })),
        ("negative amount", json!({ "merchant_order_no": "B", "amount": -1, "currency": "CNY" })),
        (
            "overflowing amount",
            json!({ "merchant_order_no": "B", "amount": 9_223_372_036_854_775_808u64, "currency": "CNY" }),
        ),
        ("float amount", json!({ "merchant_order_no": "B", "amount": 19.99, "currency": "CNY" })),
        ("string amount", json!({ "merchant_order_no": "B", "amount": "1999", "currency": "CNY" })),
        ("unknown currency", json!({ "merchant_order_no": "B", "amount": 1, "currency": "XYZ" })),
        ("lower-case currency", json!({ "merchant_order_no": "B", "amount": 1, "currency": "cny" })),
        ("missing amount", json!({ "merchant_order_no": "B", "currency": "CNY" })),
        ("missing currency", json!({ "merchant_order_no": "B", "amount": 1 })),
        ("missing order no", json!({ "amount": 1, "currency": "CNY" })),
        ("empty order no", json!({ "merchant_order_no": "", "amount": 1, "currency": "CNY" })),
        ("unknown field", json!({ "merchant_order_no": "B", "amount": 1, "currency": "CNY", "amout": 2 })),
        (
            "zero quantity",
            json!({ "merchant_order_no": "B", "amount": 1, "currency": "CNY", "items": [{ "sku": "a", "quantity": 0 }] }),
        ),
        (
            "negative quantity",
            json!({ "merchant_order_no": "B", "amount": 1, "currency": "CNY", "items": [{ "sku": "a", "quantity": -1 }] }),
        ),
        (
            "bad timeout",
            json!({ "merchant_order_no": "B", "amount": 1, "currency": "CNY", "payment_timeout": "15 parsecs" }),
        ),
        ("zero timeout", json!({ "merchant_order_no": "B", "amount": 1, "currency": "CNY", "payment_timeout": "0s" })),
        ("array body", json!([1, 2, 3])),
        ("null body", serde_json::Value::Null),
    ];
    for (what, body) in cases {
        let r = app.post("/v1/orders", &m.key, body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        // Values outside their bounds are `validation_failed`; malformed ones `invalid_request`.
        let bound = matches!(what, "zero amount" | "negative amount" | "zero timeout");
        assert_problem(&r, 400, if bound { "validation_failed" } else { "invalid_request" });
    }
    assert_eq!(app.db_fingerprint().await, before);
}

#[tokio::test]
async fn non_json_wrong_type_and_oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let before = app.db_fingerprint().await;
    let send = |body: Vec<u8>, content_type: &'static str| {
        let req =
            app.http.post(app.url("/v1/orders")).bearer_auth(&m.key).header("content-type", content_type).body(body);
        async move {
            let r = req.send().await.expect("sent");
            let status = r.status().as_u16();
            let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            crate::helpers::Reply { status, body, content_type: ct, headers: Default::default() }
        }
    };
    assert_problem(&send(b"not json".to_vec(), "application/json").await, 400, "invalid_request");
    assert_problem(&send(b"{\"amount\": 1".to_vec(), "application/json").await, 400, "invalid_request");
    assert_problem(&send(b"".to_vec(), "application/json").await, 400, "invalid_request");
    assert_problem(&send(b"{}".to_vec(), "text/plain").await, 415, "invalid_request");
    let mut big = b"{\"merchant_order_no\":\"B\",\"amount\":1,\"currency\":\"CNY\",\"description\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 65 * 1024));
    big.extend(b"\"}");
    assert_problem(&send(big.clone(), "application/json").await, 413, "payload_too_large");
    // The same with an Idempotency-Key (which buffers the body itself).
    let r = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&m.key)
        .header("content-type", "application/json")
        .header("idempotency-key", "big-1")
        .body(big)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(app.db_fingerprint().await, before);
}

#[tokio::test]
async fn malformed_ids_are_not_found() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    for path in ["/v1/orders/42", "/v1/orders/ord_", "/v1/orders/ref_00000000000000000000000000000000", "/v1/refunds/x"]
    {
        assert_problem(&app.get(path, &m.key).await, 404, "not_found");
    }
    assert_problem(&app.post("/v1/orders/nope/pay", &m.key, json!({ "channel": "sim" })).await, 404, "not_found");
}
