use crate::helpers::{eventually, spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn pay_succeeds_through_the_channel_callback() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let order = app.order(&m, "P-1", 1999).await;
    let id = order["id"].as_str().unwrap_or_default();
    let paying = app.pay(&m, id, json!({ "outcome": "succeeded", "callback_delay": "100ms" })).await;
    assert!(paying["payment"]["id"].as_str().is_some_and(|p| p.starts_with("pay_")));
    assert_eq!(paying["payment"]["status"], "pending");
    let paid = app.wait_order(&m, id, "paid").await;
    assert_eq!(paid["payment"]["status"], "succeeded");
    assert!(paid["payment"]["channel_txn_id"].as_str().is_some_and(|t| t.starts_with("sim_")));
    assert!(paid["paid_at"].is_string());
    assert_eq!(app.event_types(&m, id).await, ["order.created", "order.paying", "payment.succeeded"]);
    // Each event carries the order as the API showed it after that step.
    let shown: Vec<_> = app.events(&m).await.into_iter().map(|e| e["data"]["order"].clone()).collect();
    assert_eq!(shown, [order.clone(), paying, paid]);
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn a_failed_payment_returns_the_order_to_pending_and_it_can_be_paid_again() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let id = app.order(&m, "P-2", 500).await["id"].as_str().unwrap_or_default().to_owned();
    app.pay(&m, &id, json!({ "outcome": "failed" })).await;
    let order = eventually("payment fails", || async {
        let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
        (o["payment"]["status"] == "failed").then_some(o)
    })
    .await;
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["payment"]["failure_reason"], "card_declined");
    let failed_event = app.events(&m).await.into_iter().find(|e| e["type"] == "payment.failed");
    assert_eq!(failed_event.map(|e| e["data"]["order"].clone()), Some(order.clone()));
    app.pay(&m, &id, json!({})).await;
    let paid = app.wait_order(&m, &id, "paid").await;
    assert_ne!(paid["payment"]["id"], order["payment"]["id"]);
    assert_eq!(
        app.event_types(&m, &id).await,
        ["order.created", "order.paying", "payment.failed", "order.paying", "payment.succeeded"]
    );
}

#[tokio::test]
async fn a_missing_callback_is_found_by_querying_the_channel() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let id = app.order(&m, "P-3", 800).await["id"].as_str().unwrap_or_default().to_owned();
    app.pay(&m, &id, json!({ "outcome": "no_callback" })).await;
    let paid = app.wait_order(&m, &id, "paid").await;
    assert_eq!(paid["payment"]["status"], "succeeded");
    assert_eq!(app.event_types(&m, &id).await.iter().filter(|t| *t == "payment.succeeded").count(), 1);
}

#[tokio::test]
async fn duplicate_callbacks_change_nothing_the_second_time() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let id = app.order(&m, "P-4", 900).await["id"].as_str().unwrap_or_default().to_owned();
    app.pay(&m, &id, json!({ "outcome": "duplicate_callbacks" })).await;
    app.wait_order(&m, &id, "paid").await;
    // The channel sends three callbacks: once payq has answered all three, the second and
    // third have changed nothing.
    let settled = app.db_fingerprint().await;
    eventually("payq answered the channel's three callbacks", || async {
        (app.sim.callbacks_answered() == 3).then_some(())
    })
    .await;
    assert_eq!(app.db_fingerprint().await, settled);
    assert_eq!(app.event_types(&m, &id).await, ["order.created", "order.paying", "payment.succeeded"]);
}

#[tokio::test]
async fn an_unpaid_order_closes_at_its_deadline() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "payment_timeout": "300ms" })).await;
    let id = app.order(&m, "T-1", 100).await["id"].as_str().unwrap_or_default().to_owned();
    let closed = app.wait_order(&m, &id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    assert_eq!(app.event_types(&m, &id).await, ["order.created", "order.closed"]);
    // The order override wins over the merchant setting.
    let long = app
        .order_with(
            &m,
            json!({ "merchant_order_no": "T-2", "amount": 100, "currency": "CNY", "payment_timeout": "1h" }),
        )
        .await;
    let long_id = long["id"].as_str().unwrap_or_default();
    // Its timeout is scheduled an hour from its creation, and it is still open.
    let due = app.pending("payment.timeout", long_id).await;
    assert_eq!(due.len(), 1, "{due:?}");
    let in_ms = due[0] - payq_domain::Timestamp::now().millis();
    assert!((3_590_000..=3_600_000).contains(&in_ms), "the timeout is due in {in_ms} ms");
    let r = app.get(&format!("/v1/orders/{long_id}"), &m.key).await;
    assert_eq!(r.body["status"], "pending_payment");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn a_timeout_racing_a_success_never_closes_a_paid_order() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "payment_timeout": "400ms" })).await;
    let mut ids = Vec::new();
    for (i, delay) in ["100ms", "350ms", "400ms", "450ms", "600ms"].iter().enumerate() {
        let id = app.order(&m, &format!("R-{i}"), 300).await["id"].as_str().unwrap_or_default().to_owned();
        app.pay(&m, &id, json!({ "outcome": "succeeded", "callback_delay": delay })).await;
        ids.push(id);
    }
    for id in &ids {
        let settled = eventually("the order settles", || async {
            let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
            let done = o["status"] == "paid" || (o["status"] == "closed" && o["payment"]["status"] != "pending");
            done.then_some(o)
        })
        .await;
        let types = app.event_types(&m, id).await;
        let paid = types.iter().any(|t| t == "payment.succeeded");
        let closed = types.iter().any(|t| t == "order.closed");
        assert!(!(paid && closed), "{id} was both paid and closed: {types:?}");
        assert!(paid || closed, "{id} settled nowhere: {types:?} {settled}");
    }
    // Callbacks that land after the close are refunded: once the channel has settled every
    // payment, every payment it captured is accounted for.
    eventually("the channel has settled every payment", || async { (app.sim_unsettled().await == 0).then_some(()) })
        .await;
    eventually("every captured payment is accounted for", || async { (app.verify().0 == 0).then_some(()) }).await;
}

#[tokio::test]
async fn a_late_payment_is_refunded_automatically() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "payment_timeout": "300ms" })).await;
    let id = app.order(&m, "LATE-1", 1500).await["id"].as_str().unwrap_or_default().to_owned();
    app.pay(&m, &id, json!({ "outcome": "late", "callback_delay": "200ms" })).await;
    let closed = app.wait_order(&m, &id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout");
    let order = eventually("the late payment is refunded", || async {
        let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
        (o["amount_refunded"] == 1500).then_some(o)
    })
    .await;
    assert_eq!(order["status"], "closed");
    let types = app.event_types(&m, &id).await;
    assert!(types.contains(&"payment.late_refunded".to_owned()), "{types:?}");
    assert!(types.contains(&"refund.succeeded".to_owned()), "{types:?}");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn risk_rules_refuse_payments_before_the_channel() {
    let app = spawn_app_with(|s| {
        s.risk.max_amount = 10_000;
        s.risk.blocked_customers = vec!["mallory".into()];
        s.risk.velocity = 2;
    })
    .await;
    let m = app.merchant().await;
    let cases = [
        (json!({ "merchant_order_no": "K-1", "amount": 10_001, "currency": "CNY" }), "risk:max_amount"),
        (
            json!({ "merchant_order_no": "K-2", "amount": 100, "currency": "CNY", "customer_id": "mallory" }),
            "risk:blocked_customer",
        ),
    ];
    for (body, reason) in cases {
        let id = app.order_with(&m, body).await["id"].as_str().unwrap_or_default().to_owned();
        app.pay(&m, &id, json!({})).await;
        let o = eventually("risk refuses", || async {
            let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
            (o["payment"]["status"] == "failed").then_some(o)
        })
        .await;
        assert_eq!(o["status"], "pending_payment");
        assert_eq!(o["payment"]["failure_reason"], reason);
        assert_eq!(o["payment"]["channel_txn_id"], serde_json::Value::Null, "the channel was never called");
        let types = app.event_types(&m, &id).await;
        assert_eq!(types, ["order.created", "order.paying", "risk.rejected", "payment.failed"]);
    }
    // Velocity: the third payment request of one customer within a minute is refused.
    let mut reasons = Vec::new();
    for i in 0..3 {
        let id = app
            .order_with(&m, json!({ "merchant_order_no": format!("V-{i}"), "amount": 100, "currency": "CNY", "customer_id": "eve" }))
            .await["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        app.pay(&m, &id, json!({ "outcome": "failed" })).await;
        let o = eventually("the attempt ends", || async {
            let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
            (o["payment"]["status"] == "failed").then_some(o)
        })
        .await;
        reasons.push(o["payment"]["failure_reason"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(reasons, ["card_declined", "card_declined", "risk:velocity"]);
}

#[tokio::test]
async fn pay_checks_its_input() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let id = app.order(&m, "PI-1", 100).await["id"].as_str().unwrap_or_default().to_owned();
    let before = app.db_fingerprint().await;
    for body in [
        json!({ "channel": "alipay" }),
        json!({}),
        json!({ "channel": "sim", "simulate": { "outcome": "maybe" } }),
        json!({ "channel": "sim", "simulate": { "callback_delay": "soon" } }),
    ] {
        let r = app.post(&format!("/v1/orders/{id}/pay"), &m.key, body).await;
        crate::helpers::assert_problem(&r, 400, "invalid_request");
    }
    assert_eq!(app.db_fingerprint().await, before);
}
