use crate::helpers::{assert_problem, spawn_app_with};
use payq_domain::Timestamp;
use serde_json::json;

#[tokio::test]
async fn badly_signed_stale_or_unsigned_callbacks_are_refused_and_change_nothing() {
    let app = spawn_app_with(|s| s.payment.query_schedule = "1h".into()).await;
    let m = app.merchant().await;
    let id = app.order(&m, "CB-1", 700).await["id"].as_str().unwrap_or_default().to_owned();
    // no_callback: the payment stays pending long enough to try forged callbacks on it.
    let paying = app.pay(&m, &id, json!({ "outcome": "no_callback", "callback_delay": "10m" })).await;
    let payment_id = paying["payment"]["id"].as_str().unwrap_or_default().to_owned();
    crate::helpers::eventually("the channel has the payment", || async {
        let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
        o["payment"]["channel_txn_id"].is_string().then_some(())
    })
    .await;
    let note = json!({ "payment_id": payment_id, "txn_id": "sim_forged", "status": "succeeded", "amount": 700, "currency": "CNY", "failure_reason": null });
    let before = app.db_fingerprint().await;
    let now = Timestamp::now().unix_seconds();

    assert_problem(&app.notify_signed(&note, "not-the-secret", now).await, 401, "unauthorized");
    assert_problem(&app.notify_signed(&note, &app.sim_secret, now - 301).await, 401, "unauthorized");
    assert_problem(&app.notify_signed(&note, &app.sim_secret, now + 400).await, 401, "unauthorized");
    let r = app.http.post(app.url("/v1/channels/sim/notify")).json(&note).send().await.expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .http
        .post(app.url("/v1/channels/sim/notify"))
        .header("sim-signature", "t=abc,v1=zz")
        .json(&note)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 401);
    // Correctly signed, but the amount does not match the payment.
    let mut wrong = note.clone();
    wrong["amount"] = json!(1);
    assert_problem(&app.notify_signed(&wrong, &app.sim_secret, now).await, 400, "invalid_request");
    let mut unknown = note.clone();
    unknown["payment_id"] = json!("pay_00000000000000000000000000000000");
    assert_problem(&app.notify_signed(&unknown, &app.sim_secret, now).await, 404, "not_found");
    assert_eq!(app.db_fingerprint().await, before);
    assert_eq!(app.get(&format!("/v1/orders/{id}"), &m.key).await.body["status"], "paying");
}

#[tokio::test]
async fn a_valid_callback_applies_once_and_repeats_are_no_ops() {
    let app = spawn_app_with(|s| s.payment.query_schedule = "1h".into()).await;
    let m = app.merchant().await;
    let id = app.order(&m, "CB-2", 700).await["id"].as_str().unwrap_or_default().to_owned();
    let paying = app.pay(&m, &id, json!({ "outcome": "no_callback", "callback_delay": "10m" })).await;
    let payment_id = paying["payment"]["id"].as_str().unwrap_or_default().to_owned();
    crate::helpers::eventually("the channel has the payment", || async {
        let o = app.get(&format!("/v1/orders/{id}"), &m.key).await.body;
        o["payment"]["channel_txn_id"].is_string().then_some(())
    })
    .await;
    let note = json!({ "payment_id": payment_id, "txn_id": "sim_abc", "status": "succeeded", "amount": 700, "currency": "CNY", "failure_reason": null });
    let now = Timestamp::now().unix_seconds();
    let r = app.notify_signed(&note, &app.sim_secret, now).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let paid = app.wait_order(&m, &id, "paid").await;
    assert_eq!(paid["payment"]["channel_txn_id"], "sim_abc");
    let before = app.db_fingerprint().await;
    for _ in 0..3 {
        assert_eq!(app.notify_signed(&note, &app.sim_secret, now).await.status, 200);
    }
    // A contradicting late "failed" for the same payment changes nothing either.
    let mut failed = note.clone();
    failed["status"] = json!("failed");
    assert_eq!(app.notify_signed(&failed, &app.sim_secret, now).await.status, 200);
    assert_eq!(app.db_fingerprint().await, before);
    assert_eq!(app.event_types(&m, &id).await, ["order.created", "order.paying", "payment.succeeded"]);
}
