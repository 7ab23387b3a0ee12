use crate::helpers::{assert_problem, spawn_app};
use serde_json::json;

#[tokio::test]
async fn create_read_and_dedupe_by_merchant_order_no() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let body = json!({ "merchant_order_no": "A-1", "amount": 1999, "currency": "CNY", "description": "Oolong",
                       "customer_id": "c1", "items": [{ "sku": "tea", "quantity": 2 }], "payment_timeout": "30m" });
    let r = app.post("/v1/orders", &m.key, body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let order = r.body;
    assert!(order["id"].as_str().is_some_and(|id| id.starts_with("ord_")));
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["amount"], 1999);
    assert_eq!(order["amount_refunded"], 0);
    assert_eq!(order["payment"], serde_json::Value::Null);
    assert_eq!(order["items"][0]["sku"], "tea");
    assert!(order["created_at"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{}", order["created_at"]);

    let again = app.post("/v1/orders", &m.key, body.clone()).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], order["id"]);

    let mut other = body.clone();
    other["amount"] = json!(2000);
    let r = app.post("/v1/orders", &m.key, other).await;
    assert_problem(&r, 409, "conflict");

    let r = app.get(&format!("/v1/orders/{}", order["id"].as_str().unwrap_or_default()), &m.key).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, order);
    assert_eq!(app.event_types(&m, order["id"].as_str().unwrap_or_default()).await, ["order.created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_merchant_order_no_make_one_order() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let body = json!({ "merchant_order_no": "RACE-1", "amount": 700, "currency": "CNY" });
    let replies = futures_util::future::join_all((0..8).map(|_| app.post("/v1/orders", &m.key, body.clone()))).await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(created.len(), 1, "exactly one create wins: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in &replies {
        assert!(r.status == 201 || r.status == 200, "{} {}", r.status, r.body);
        assert_eq!(r.body, created[0].body, "every retry answers with the one order");
    }
    let id = created[0].body["id"].as_str().unwrap_or_default();
    assert_eq!(app.event_types(&m, id).await, ["order.created"]);

    // A racing create with other content is refused while the first one's answer stands.
    let mut other = body.clone();
    other["amount"] = json!(701);
    let replies = futures_util::future::join_all((0..4).map(|_| app.post("/v1/orders", &m.key, other.clone()))).await;
    for r in &replies {
        assert_problem(r, 409, "conflict");
    }
    let list = app.get("/v1/orders?limit=10", &m.key).await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1), "{}", list.body);
}

#[tokio::test]
async fn list_filters_by_status_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.order(&m, &format!("L-{i}"), 100 + i).await["id"].as_str().unwrap_or_default().to_owned());
    }
    let closed = app.post(&format!("/v1/orders/{}/close", ids[1]), &m.key, json!({})).await;
    assert_eq!(closed.status, 200);

    let r = app.get("/v1/orders?limit=2", &m.key).await;
    assert_eq!(r.status, 200);
    let page: Vec<&str> =
        r.body["data"].as_array().map(|a| a.iter().filter_map(|o| o["id"].as_str()).collect()).unwrap_or_default();
    assert_eq!(page, [ids[4].as_str(), ids[3].as_str()]);
    assert_eq!(r.body["has_more"], true);
    let r = app.get(&format!("/v1/orders?limit=2&after={}", ids[3]), &m.key).await;
    let page: Vec<&str> =
        r.body["data"].as_array().map(|a| a.iter().filter_map(|o| o["id"].as_str()).collect()).unwrap_or_default();
    assert_eq!(page, [ids[2].as_str(), ids[1].as_str()]);
    let r = app.get(&format!("/v1/orders?after={}", ids[1]), &m.key).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["has_more"], false);

    let r = app.get("/v1/orders?status=closed", &m.key).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["data"][0]["id"], ids[1].as_str());

    for bad in [
        "/v1/orders?status=lost",
        "/v1/orders?limit=0",
        "/v1/orders?limit=101",
        "/v1/orders?after=xyz",
        "/v1/orders?limit=-1",
    ] {
        assert_problem(&app.get(bad, &m.key).await, 400, "invalid_request");
    }
}

#[tokio::test]
async fn merchants_never_see_each_others_resources() {
    let app = spawn_app().await;
    let a = app.merchant().await;
    let b = app.merchant().await;
    let order = app.paid_order(&a, "ISO-1", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    let refund = app.post(&format!("/v1/orders/{id}/refunds"), &a.key, json!({ "amount": 100 })).await;
    assert_eq!(refund.status, 201);
    let rid = refund.body["id"].as_str().unwrap_or_default();
    let before = app.db_fingerprint().await;

    assert_problem(&app.get(&format!("/v1/orders/{id}"), &b.key).await, 404, "not_found");
    assert_problem(&app.get(&format!("/v1/refunds/{rid}"), &b.key).await, 404, "not_found");
    for (path, body) in [
        (format!("/v1/orders/{id}/pay"), json!({ "channel": "sim" })),
        (format!("/v1/orders/{id}/close"), json!({})),
        (format!("/v1/orders/{id}/ship"), json!({ "carrier": "SF", "tracking_no": "1" })),
        (format!("/v1/orders/{id}/cancel"), json!({})),
        (format!("/v1/orders/{id}/refunds"), json!({ "amount": 1 })),
        (format!("/v1/refunds/{rid}/approve"), json!({})),
        (format!("/v1/refunds/{rid}/reject"), json!({})),
    ] {
        assert_problem(&app.post(&path, &b.key, body).await, 404, "not_found");
    }
    assert_eq!(app.get("/v1/orders", &b.key).await.body["data"].as_array().map(Vec::len), Some(0));
    assert_eq!(app.events(&b).await.len(), 0);
    assert_eq!(app.db_fingerprint().await, before);
}

#[tokio::test]
async fn close_ship_and_illegal_transitions() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let open = app.order(&m, "C-1", 500).await;
    let open_id = open["id"].as_str().unwrap_or_default();

    let before = app.db_fingerprint().await;
    let r =
        app.post(&format!("/v1/orders/{open_id}/ship"), &m.key, json!({ "carrier": "SF", "tracking_no": "1" })).await;
    assert_problem(&r, 409, "invalid_state");
    let r = app.post(&format!("/v1/orders/{open_id}/cancel"), &m.key, json!({})).await;
    assert_problem(&r, 409, "invalid_state");
    let r = app.post(&format!("/v1/orders/{open_id}/refunds"), &m.key, json!({ "amount": 1 })).await;
    assert_problem(&r, 409, "invalid_state");
    assert_eq!(app.db_fingerprint().await, before);

    let r = app.post(&format!("/v1/orders/{open_id}/close"), &m.key, json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["close_reason"], "merchant_closed");
    assert!(r.body["closed_at"].is_string());
    let before = app.db_fingerprint().await;
    assert_problem(&app.post(&format!("/v1/orders/{open_id}/close"), &m.key, json!({})).await, 409, "invalid_state");
    assert_problem(
        &app.post(&format!("/v1/orders/{open_id}/pay"), &m.key, json!({ "channel": "sim" })).await,
        409,
        "invalid_state",
    );
    assert_eq!(app.db_fingerprint().await, before);

    let paid = app.paid_order(&m, "C-2", 700).await;
    let paid_id = paid["id"].as_str().unwrap_or_default();
    assert_problem(&app.post(&format!("/v1/orders/{paid_id}/close"), &m.key, json!({})).await, 409, "invalid_state");
    let r = app
        .post(&format!("/v1/orders/{paid_id}/ship"), &m.key, json!({ "carrier": "SF", "tracking_no": "SF123" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "shipped");
    assert_eq!(r.body["tracking_no"], "SF123");
    assert!(r.body["shipped_at"].is_string());
    assert_problem(&app.post(&format!("/v1/orders/{paid_id}/cancel"), &m.key, json!({})).await, 409, "invalid_state");
    let r = app.post(&format!("/v1/orders/{paid_id}/ship"), &m.key, json!({ "carrier": "", "tracking_no": "x" })).await;
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(
        app.event_types(&m, paid_id).await,
        ["order.created", "order.paying", "payment.succeeded", "order.shipped"]
    );
}

#[tokio::test]
async fn cancel_refunds_in_full() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let paid = app.paid_order(&m, "X-1", 4200).await;
    let id = paid["id"].as_str().unwrap_or_default();
    let r = app.post(&format!("/v1/orders/{id}/cancel"), &m.key, json!({ "reason": "customer changed mind" })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["close_reason"], "customer changed mind");
    crate::helpers::eventually("the full refund succeeds", || async {
        let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
        (o["amount_refunded"] == 4200).then_some(())
    })
    .await;
    let types = app.event_types(&m, id).await;
    assert!(
        types.ends_with(&["order.cancelled".into(), "refund.created".into(), "refund.succeeded".into()]),
        "{types:?}"
    );
    assert_eq!(app.wait_order(&m, id, "cancelled").await["status"], "cancelled");
}

#[tokio::test]
async fn inventory_is_set_and_read_per_merchant() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let other = app.merchant().await;
    let r = app.send(reqwest::Method::PUT, "/v1/inventory/tea-1", Some(&m.key), Some(json!({ "available": 7 }))).await;
    assert_eq!((r.status, r.body["available"].as_i64()), (200, Some(7)));
    let r = app.get("/v1/inventory/tea-1", &m.key).await;
    assert_eq!(r.body, json!({ "sku": "tea-1", "available": 7 }));
    assert_problem(&app.get("/v1/inventory/tea-1", &other.key).await, 404, "not_found");
    assert_problem(&app.get("/v1/inventory/unknown", &m.key).await, 404, "not_found");
    let before = app.db_fingerprint().await;
    for body in [json!({ "available": -1 }), json!({ "available": "7" }), json!({}), json!({ "available": 1.5 })] {
        let r = app.send(reqwest::Method::PUT, "/v1/inventory/tea-1", Some(&m.key), Some(body)).await;
        assert_problem(&r, 400, "invalid_request");
    }
    assert_eq!(app.db_fingerprint().await, before);
}

#[tokio::test]
async fn events_page_oldest_first() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    for i in 0..3 {
        app.order(&m, &format!("E-{i}"), 100).await;
    }
    let r = app.get("/v1/events?limit=2", &m.key).await;
    assert_eq!(r.status, 200);
    let first = r.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(first.len(), 2);
    assert_eq!(r.body["has_more"], true);
    assert_eq!(first[0]["type"], "order.created");
    assert_eq!(first[0]["data"]["order"]["merchant_order_no"], "E-0");
    assert_eq!(first[0]["merchant_id"], m.id.as_str());
    assert!(first[0]["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    let after = first[1]["id"].as_str().unwrap_or_default();
    let r = app.get(&format!("/v1/events?after={after}"), &m.key).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["data"][0]["data"]["order"]["merchant_order_no"], "E-2");
    assert_eq!(r.body["has_more"], false);
    assert_problem(&app.get("/v1/events?after=evt_zzz", &m.key).await, 400, "invalid_request");
    assert_problem(
        &app.get("/v1/events?after=evt_00000000000000000000000000000000", &m.key).await,
        400,
        "invalid_request",
    );
}
