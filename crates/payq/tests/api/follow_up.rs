use crate::helpers::{eventually, spawn_app};
use serde_json::json;

#[tokio::test]
async fn the_post_payment_check_takes_stock_or_cancels_and_refunds() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "post_pay_check_delay": "200ms" })).await;
    app.send(reqwest::Method::PUT, "/v1/inventory/tea", Some(&m.key), Some(json!({ "available": 3 }))).await;
    let ok = app
        .order_with(
            &m,
            json!({ "merchant_order_no": "PC-1", "amount": 900, "currency": "CNY",
                                 "items": [{ "sku": "tea", "quantity": 2 }, { "sku": "untracked", "quantity": 5 }] }),
        )
        .await;
    let short = app
        .order_with(
            &m,
            json!({ "merchant_order_no": "PC-2", "amount": 500, "currency": "CNY",
                                 "items": [{ "sku": "tea", "quantity": 2 }] }),
        )
        .await;
    let (ok, short) =
        (ok["id"].as_str().unwrap_or_default().to_owned(), short["id"].as_str().unwrap_or_default().to_owned());
    app.pay(&m, &ok, json!({})).await;
    app.wait_order(&m, &ok, "paid").await;
    eventually("the first order passes its check", || async {
        app.event_types(&m, &ok).await.contains(&"order.check_passed".to_owned()).then_some(())
    })
    .await;
    assert_eq!(app.get("/v1/inventory/tea", &m.key).await.body["available"], 1);

    app.pay(&m, &short, json!({})).await;
    let cancelled = app.wait_order(&m, &short, "cancelled").await;
    assert_eq!(cancelled["close_reason"], "out_of_stock");
    eventually("the cancelled order is refunded in full", || async {
        let o = app.get(&format!("/v1/orders/{short}"), &m.key).await.body;
        (o["amount_refunded"] == 500).then_some(())
    })
    .await;
    assert_eq!(app.get("/v1/inventory/tea", &m.key).await.body["available"], 1, "a failed check takes nothing");
    let types = app.event_types(&m, &short).await;
    assert!(
        types.contains(&"order.cancelled".to_owned()) && types.contains(&"refund.succeeded".to_owned()),
        "{types:?}"
    );
    assert!(!types.contains(&"order.check_passed".to_owned()));
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn concurrent_checks_never_oversell() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "post_pay_check_delay": "100ms" })).await;
    app.send(reqwest::Method::PUT, "/v1/inventory/mug", Some(&m.key), Some(json!({ "available": 3 }))).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let o = app
            .order_with(
                &m,
                json!({ "merchant_order_no": format!("OS-{i}"), "amount": 100, "currency": "CNY",
                                     "items": [{ "sku": "mug", "quantity": 1 }] }),
            )
            .await;
        let id = o["id"].as_str().unwrap_or_default().to_owned();
        app.pay(&m, &id, json!({})).await;
        ids.push(id);
    }
    let mut passed = 0;
    let mut cancelled = 0;
    for id in &ids {
        let status = eventually("the check ran", || async {
            let types = app.event_types(&m, id).await;
            if types.contains(&"order.check_passed".to_owned()) {
                Some("passed")
            } else if types.contains(&"order.cancelled".to_owned()) {
                Some("cancelled")
            } else {
                None
            }
        })
        .await;
        if status == "passed" { passed += 1 } else { cancelled += 1 }
    }
    assert_eq!((passed, cancelled), (3, 3));
    assert_eq!(app.get("/v1/inventory/mug", &m.key).await.body["available"], 0);
}

#[tokio::test]
async fn merchants_who_do_not_ship_are_reminded_until_they_do() {
    let app = spawn_app().await;
    let m = app
        .merchant_with(json!({ "ship_deadline": "200ms", "ship_reminder_interval": "150ms", "ship_reminder_max": 3 }))
        .await;
    let lazy = app.paid_order(&m, "SR-1", 100).await["id"].as_str().unwrap_or_default().to_owned();
    let reminders = eventually("three reminders", || async {
        let events = app.events(&m).await;
        let r: Vec<serde_json::Value> = events
            .into_iter()
            .filter(|e| e["type"] == "merchant.ship_reminder" && e["data"]["order"]["id"] == lazy.as_str())
            .collect();
        (r.len() == 3).then_some(r)
    })
    .await;
    let attempts: Vec<i64> = reminders.iter().filter_map(|e| e["data"]["attempt"].as_i64()).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let order = app.get(&format!("/v1/orders/{lazy}"), &m.key).await.body;
    assert_eq!(order["ship_reminders_sent"], 3);
    // No fourth one: nothing more is scheduled for the order.
    eventually("no reminder is left to come", || async {
        app.pending("order.ship_reminder", &lazy).await.is_empty().then_some(())
    })
    .await;
    let count = app.events(&m).await.iter().filter(|e| e["type"] == "merchant.ship_reminder").count();
    assert_eq!(count, 3);

    // Shipping in time cancels the pending reminder.
    let prompt = app.paid_order(&m, "SR-2", 100).await["id"].as_str().unwrap_or_default().to_owned();
    let r =
        app.post(&format!("/v1/orders/{prompt}/ship"), &m.key, json!({ "carrier": "SF", "tracking_no": "9" })).await;
    assert_eq!(r.status, 200);
    // The reminder still scheduled finds the order shipped, and sends nothing.
    eventually("the scheduled reminder has run", || async {
        app.pending("order.ship_reminder", &prompt).await.is_empty().then_some(())
    })
    .await;
    assert!(!app.event_types(&m, &prompt).await.contains(&"merchant.ship_reminder".to_owned()));
    assert_eq!(app.get(&format!("/v1/orders/{prompt}"), &m.key).await.body["ship_reminders_sent"], 0);
    assert_eq!(app.verify().0, 0);
}
