use crate::helpers::{assert_problem, eventually, spawn_app};
use serde_json::json;

#[tokio::test]
async fn stats_show_orders_and_pending_messages() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    app.order(&m, "S-1", 100).await;
    app.paid_order(&m, "S-2", 100).await;
    let r = app.get("/v1/admin/stats", &app.admin_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["orders_by_status"]["pending_payment"], 1);
    assert_eq!(r.body["orders_by_status"]["paid"], 1);
    assert_eq!(r.body["pending_messages_by_kind"]["payment.timeout"], 1);
    assert_eq!(r.body["dead_letters"], 0);
    assert_problem(&app.get("/v1/admin/stats", &m.key).await, 401, "unauthorized");
    assert_problem(&app.get("/v1/admin/dead-letters", &m.key).await, 401, "unauthorized");
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_can_be_replayed() {
    let app = spawn_app().await;
    // A message no handler understands (as a newer payq might leave behind).
    {
        let mut conn = app.db.connect().await;
        sqlx::query(
            "INSERT INTO messages (id, kind, key, payload, scheduled_at, due_at, created_at)
             VALUES ('msg_0000000000000000000000000000beef', 'payment.teleport', 'k1', '{\"x\":1}', 0, 0, 0)",
        )
        .execute(&mut conn)
        .await
        .expect("insert");
    }
    let dead = eventually("the message is dead-lettered", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(dead["kind"], "payment.teleport");
    assert_eq!(dead["key"], "k1");
    assert_eq!(dead["payload"], json!({ "x": 1 }));
    assert_eq!(dead["attempts"], 1, "a permanent error is not retried");
    assert!(dead["last_error"].as_str().is_some_and(|e| e.contains("unknown message kind")), "{dead}");
    assert!(dead["id"].as_str().is_some_and(|d| d.starts_with("dlq_")));

    let dlq = dead["id"].as_str().unwrap_or_default().to_owned();
    let r = app.post(&format!("/v1/admin/dead-letters/{dlq}/replay"), &app.admin_token, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_problem(
        &app.post(&format!("/v1/admin/dead-letters/{dlq}/replay"), &app.admin_token, json!({})).await,
        404,
        "not_found",
    );
    // Replayed, it fails again the same way and comes back as a new dead letter.
    let again = eventually("the replayed message is dead-lettered again", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        r.body["data"].as_array().and_then(|d| d.first().cloned()).filter(|d| d["id"] != dlq.as_str())
    })
    .await;
    assert_eq!(again["kind"], "payment.teleport");
    let r = app.get("/v1/admin/stats", &app.admin_token).await;
    assert_eq!(r.body["dead_letters"], 1);
}

#[tokio::test]
async fn a_refund_the_channel_refuses_ends_failed() {
    let app = spawn_app().await;
    // The review window leaves time to break the refund below before it executes.
    let m = app.merchant_with(json!({ "refund_review": "1s" })).await;
    let order = app.paid_order(&m, "D-1", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    let rid = app.post(&format!("/v1/orders/{id}/refunds"), &m.key, json!({ "amount": 100 })).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Point the refund at a payment the channel never saw.
    {
        let mut conn = app.db.connect().await;
        sqlx::query("UPDATE refunds SET payment_id = 'pay_00000000000000000000000000000000' WHERE id = $1")
            .bind(&rid)
            .execute(&mut conn)
            .await
            .expect("update");
    }
    let failed = app.wait_refund(&m, &rid, "failed").await;
    assert_eq!(failed["failure_reason"], "unknown payment");
    let order = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
    assert_eq!(order["amount_refunded"], 0);
    assert!(app.event_types(&m, id).await.contains(&"refund.failed".to_owned()));
}
