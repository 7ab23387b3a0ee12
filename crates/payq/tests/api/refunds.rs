use crate::helpers::{assert_problem, spawn_app};
use serde_json::json;

#[tokio::test]
async fn a_refund_waits_out_its_review_window_then_executes() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "refund_review": "300ms" })).await;
    let order = app.paid_order(&m, "RF-1", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    let r =
        app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 300, "reason": "scratched" })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending_review");
    assert!(r.body["id"].as_str().is_some_and(|i| i.starts_with("ref_")));
    assert!(r.body["execute_at"].is_string());
    let rid = r.body["id"].as_str().unwrap_or_default().to_owned();
    let done = app.wait_refund(&m, &rid, "succeeded").await;
    assert_eq!(done["amount"], 300);
    let order = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
    assert_eq!((order["status"].as_str(), order["amount_refunded"].as_i64()), (Some("paid"), Some(300)));
    let types = app.event_types(&m, id).await;
    assert!(types.ends_with(&["refund.created".into(), "refund.succeeded".into()]), "{types:?}");
}

#[tokio::test]
async fn approve_executes_now_and_reject_stops_it() {
    let app = spawn_app().await;
    let m = app.merchant().await; // refund_review 1h
    let order = app.paid_order(&m, "RF-2", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    let a = app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 400 })).await.body;
    let b = app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 600 })).await.body;
    let (a, b) = (a["id"].as_str().unwrap_or_default().to_owned(), b["id"].as_str().unwrap_or_default().to_owned());

    let r = app.post(&format!("/v1/refunds/{a}/approve"), &m.key, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.wait_refund(&m, &a, "succeeded").await;
    let r = app.post(&format!("/v1/refunds/{b}/reject"), &m.key, json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("rejected")));
    assert_problem(&app.post(&format!("/v1/refunds/{b}/approve"), &m.key, json!({})).await, 409, "invalid_state");
    assert_problem(&app.post(&format!("/v1/refunds/{a}/reject"), &m.key, json!({})).await, 409, "invalid_state");

    // What was rejected is refundable again; the full amount then makes the order refunded.
    let c = app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 600 })).await.body;
    let c = c["id"].as_str().unwrap_or_default().to_owned();
    app.post(&format!("/v1/refunds/{c}/approve"), &m.key, json!({})).await;
    app.wait_refund(&m, &c, "succeeded").await;
    let order = app.wait_order(&m, id, "refunded").await;
    assert_eq!(order["amount_refunded"], 1000);
    assert_problem(&app.get("/v1/refunds/ref_00000000000000000000000000000000", &m.key).await, 404, "not_found");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn refunds_never_exceed_the_payment_even_when_concurrent() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let order = app.paid_order(&m, "RF-3", 1000).await;
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let before = app.db_fingerprint().await;
    let r = app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 1001 })).await;
    assert_problem(&r, 422, "amount_exceeds_refundable");
    assert_eq!(app.db_fingerprint().await, before);

    let attempts = (0..10).map(|_| {
        let (app, key, id) = (&app, m.key.clone(), id.clone());
        async move { app.post(&format!("/v1/orders/{id}/refunds"), &key, json!({ "amount": 300 })).await }
    });
    let replies = futures_util::future::join_all(attempts).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies.iter().filter(|r| r.status == 422 && r.body["code"] == "amount_exceeds_refundable").count();
    assert_eq!((created, refused), (3, 7));
    for bad in [json!({ "amount": 0 }), json!({ "amount": -5 })] {
        assert_problem(&app.post(&format!("/v1/orders/{id}/refunds"), &m.key, bad).await, 400, "validation_failed");
    }
    for bad in [json!({ "amount": "1" }), json!({ "amount": 1, "review": "x" })] {
        assert_problem(&app.post(&format!("/v1/orders/{id}/refunds"), &m.key, bad).await, 400, "invalid_request");
    }
    assert_eq!(app.verify().0, 0);
}
