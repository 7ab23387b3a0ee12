use crate::helpers::{eventually, spawn_app_with};
use crate::receiver::Receiver;
use payq_domain::Timestamp;
use serde_json::json;

async fn merchant_with_hook(app: &crate::helpers::TestApp, url: &str) -> (crate::helpers::TestMerchant, String) {
    let r = app.post("/v1/merchants", &app.admin_token, json!({ "name": "Hooked", "webhook_url": url })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = crate::helpers::TestMerchant {
        id: r.body["id"].as_str().unwrap_or_default().to_owned(),
        key: r.body["api_key"].as_str().unwrap_or_default().to_owned(),
    };
    (m, r.body["webhook_secret"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn every_event_reaches_the_webhook_signed_and_in_order() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms,100ms".into()).await;
    let (m, secret) = merchant_with_hook(&app, &hook.url).await;
    let order = app.paid_order(&m, "W-1", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    app.post(&format!("/v1/orders/{id}/ship"), &m.key, json!({ "carrier": "SF", "tracking_no": "1" })).await;
    let events = app.events(&m).await;
    let ids: Vec<String> = events.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
    eventually("every event is delivered", || async { (hook.delivered() == ids).then_some(()) }).await;
    let now = Timestamp::now().unix_seconds();
    for (received, event) in hook.log().iter().zip(&events) {
        payq_app::crypto::verify_signature(&secret, &received.signature, received.body.as_bytes(), now, 300)
            .unwrap_or_else(|e| panic!("bad signature on {}: {e}", received.event_id));
        let body: serde_json::Value = serde_json::from_str(&received.body).unwrap_or_default();
        assert_eq!(&body, event, "the webhook body is the event as the API lists it");
    }
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn a_failing_endpoint_gets_retries_and_each_event_is_delivered_once_in_order() {
    let hook = Receiver::start().await;
    hook.fail_first(2);
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms,100ms,100ms".into()).await;
    let (m, _) = merchant_with_hook(&app, &hook.url).await;
    let order = app.paid_order(&m, "W-2", 1000).await;
    let id = order["id"].as_str().unwrap_or_default();
    let ids: Vec<String> = app.events(&m).await.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(app.event_types(&m, id).await, ["order.created", "order.paying", "payment.succeeded"]);
    eventually("all delivered", || async { (hook.delivered().len() == ids.len()).then_some(()) }).await;
    assert_eq!(hook.delivered(), ids, "delivered once each, in the order of the event log");
    for event_id in &ids {
        let attempts: Vec<u16> = hook.log().iter().filter(|r| &r.event_id == event_id).map(|r| r.status).collect();
        assert_eq!(attempts, [500, 500, 200], "three attempts with the same Payq-Event-Id for {event_id}");
    }
    // A later event never overtakes an earlier one of the same order.
    let log = hook.log();
    for (i, event_id) in ids.iter().enumerate().skip(1) {
        let first_try = log.iter().position(|r| &r.event_id == event_id);
        let prev_done = log.iter().position(|r| r.event_id == ids[i - 1] && r.status == 200);
        assert!(first_try > prev_done, "{event_id} was tried before {} was delivered", ids[i - 1]);
    }
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn an_endpoint_that_always_fails_is_dead_lettered_then_replayed() {
    let hook = Receiver::start().await;
    hook.always_fail(true);
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "50ms,50ms".into()).await;
    let (m, _) = merchant_with_hook(&app, &hook.url).await;
    app.order(&m, "W-3", 100).await;
    let dead = eventually("the delivery is dead-lettered", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(dead["kind"], "webhook.deliver");
    assert_eq!(dead["attempts"], 3, "1 + 2 retries");
    assert!(dead["last_error"].as_str().is_some_and(|e| e.contains("500")), "{dead}");
    assert_eq!(hook.log().len(), 3);
    assert_eq!(app.verify().0, 0, "a dead-lettered delivery is accounted for");

    hook.always_fail(false);
    let dlq = dead["id"].as_str().unwrap_or_default();
    assert_eq!(
        app.post(&format!("/v1/admin/dead-letters/{dlq}/replay"), &app.admin_token, json!({})).await.status,
        200
    );
    eventually("the replay is delivered", || async { (hook.delivered().len() == 1).then_some(()) }).await;
    let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(0));
}
