//! Merchant self-service: `PATCH /v1/merchants/{id}`, credential rotation with an overlap,
//! redelivery of one event, and the webhook's event-type filter.

use crate::helpers::{TestApp, TestMerchant, assert_problem, eventually, spawn_app, spawn_app_with};
use crate::receiver::Receiver;
use payq_domain::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

async fn patch(app: &TestApp, id: &str, token: &str, body: Value) -> crate::helpers::Reply {
    app.send(Method::PATCH, &format!("/v1/merchants/{id}"), Some(token), Some(body)).await
}

/// A merchant whose webhook is `url` (and whose events are filtered by `events`), with its
/// webhook secret.
async fn hooked_merchant(app: &TestApp, url: &str, events: Value) -> (TestMerchant, String) {
    let body = json!({ "name": "Hooked", "webhook_url": url, "webhook_events": events });
    let r = app.post("/v1/merchants", &app.admin_token, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let text = |field: &str| r.body[field].as_str().unwrap_or_default().to_owned();
    (TestMerchant { id: text("id"), key: text("api_key") }, text("webhook_secret"))
}

fn verifies(secret: &str, received: &crate::receiver::Received) -> bool {
    let now = Timestamp::now().unix_seconds();
    payq_app::crypto::verify_signature(secret, &received.signature, received.body.as_bytes(), now, 300).is_ok()
}

#[tokio::test]
async fn patch_changes_only_what_it_names_and_a_refused_change_changes_nothing() {
    let app = spawn_app().await;
    let m = app.merchant_with(json!({ "ship_reminder_max": 2 })).await;
    let admin = app.admin_token.clone();

    let r = patch(&app, &m.id, &admin, json!({ "name": "Renamed", "settings": { "payment_timeout": "5m" } })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(r.body["settings"]["payment_timeout"], "5m");
    assert_eq!(r.body["settings"]["ship_reminder_max"], 2, "settings not named keep their value");
    assert_eq!(app.get(&format!("/v1/merchants/{}", m.id), &admin).await.body, r.body, "the change is stored");
    // The new timeout is what new orders get.
    let order = app.order(&m, "SS-1", 100).await;
    let (created, expires) = (order["created_at"].as_str().unwrap_or_default(), order["expires_at"].as_str());
    let span = Timestamp::parse_rfc3339(expires.unwrap_or_default())
        .map(|e| e.millis())
        .zip(Timestamp::parse_rfc3339(created).map(|c| c.millis()));
    assert_eq!(span.map(|(e, c)| e - c), Some(300_000), "{order}");

    let before = app.get(&format!("/v1/merchants/{}", m.id), &admin).await.body;
    for (body, status, code) in [
        (json!({ "webhook_url": "ftp://example.com/hook" }), 400, "invalid_request"),
        (json!({ "settings": { "payment_timeout": "1ms" } }), 400, "validation_failed"),
        (json!({ "settings": { "payment_timout": "5m" } }), 400, "invalid_request"),
        (json!({ "name": "" }), 400, "invalid_request"),
        (json!({ "webhook_events": ["order.nonsense"] }), 400, "invalid_request"),
        (json!({ "api_key": "sk_mine" }), 400, "invalid_request"),
    ] {
        let r = patch(&app, &m.id, &admin, body.clone()).await;
        assert_problem(&r, status, code);
        assert_eq!(app.get(&format!("/v1/merchants/{}", m.id), &admin).await.body, before, "{body} changed nothing");
    }
    assert_problem(&patch(&app, &m.id, &m.key, json!({ "name": "x" })).await, 401, "unauthorized");
    assert_problem(&patch(&app, "mer_00000000000000000000000000", &admin, json!({})).await, 404, "not_found");

    // A webhook URL is set, then removed with null.
    let r = patch(&app, &m.id, &admin, json!({ "webhook_url": "http://127.0.0.1:9/hook" })).await;
    assert_eq!(r.body["webhook_url"], "http://127.0.0.1:9/hook", "{}", r.body);
    let r = patch(&app, &m.id, &admin, json!({ "webhook_url": null })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["webhook_url"].is_null(), "{}", r.body);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn a_rotated_api_key_keeps_working_for_the_overlap_and_is_refused_after_it() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let admin = app.admin_token.clone();
    let rotate = format!("/v1/merchants/{}/rotate", m.id);
    assert_problem(&app.post(&rotate, &admin, json!({})).await, 400, "invalid_request");
    assert_problem(
        &app.post(&rotate, &admin, json!({ "api_key": true, "overlap": "31d" })).await,
        400,
        "validation_failed",
    );
    assert_problem(&app.post(&rotate, &m.key, json!({ "api_key": true })).await, 401, "unauthorized");

    let r = app.post(&rotate, &admin, json!({ "api_key": true, "overlap": "2s" })).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_key = r.body["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(new_key.starts_with("sk_") && new_key != m.key, "{}", r.body);
    assert!(r.body.get("webhook_secret").is_none(), "only what was asked is rotated: {}", r.body);
    assert!(r.body["previous_valid_until"].is_string(), "{}", r.body);

    // Both keys work during the overlap, and act as the same merchant.
    let order = app.order(&TestMerchant { id: m.id.clone(), key: new_key.clone() }, "ROT-1", 100).await;
    let id = order["id"].as_str().unwrap_or_default();
    assert_eq!(app.get(&format!("/v1/orders/{id}"), &m.key).await.status, 200, "the old key still works");
    // After the overlap only the new key does.
    eventually("the old key is refused", || async {
        (app.get(&format!("/v1/orders/{id}"), &m.key).await.status == 401).then_some(())
    })
    .await;
    assert_eq!(app.get(&format!("/v1/orders/{id}"), &new_key).await.status, 200);

    // Rotating with no overlap refuses the replaced key at once.
    let r = app.post(&rotate, &admin, json!({ "api_key": true, "overlap": "0s" })).await;
    let newest = r.body["api_key"].as_str().unwrap_or_default().to_owned();
    assert_problem(&app.get(&format!("/v1/orders/{id}"), &new_key).await, 401, "unauthorized");
    assert_eq!(app.get(&format!("/v1/orders/{id}"), &newest).await.status, 200);
}

#[tokio::test]
async fn during_a_secret_rotation_webhooks_verify_with_both_secrets_and_after_it_with_the_new_only() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms".into()).await;
    let (m, old_secret) = hooked_merchant(&app, &hook.url, Value::Null).await;
    let r = app
        .post(
            &format!("/v1/merchants/{}/rotate", m.id),
            &app.admin_token,
            json!({ "webhook_secret": true, "overlap": "1500ms" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_secret = r.body["webhook_secret"].as_str().unwrap_or_default().to_owned();
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    assert!(r.body.get("api_key").is_none());

    app.order(&m, "SEC-1", 100).await;
    let first = eventually("the first event arrives", || async { hook.log().into_iter().next() }).await;
    assert!(verifies(&new_secret, &first), "signed with the new secret: {}", first.signature);
    assert!(verifies(&old_secret, &first), "and, during the overlap, the old one: {}", first.signature);

    // Once the overlap has passed, new deliveries carry only the new secret's signature.
    let until = r.body["previous_valid_until"].as_str().and_then(Timestamp::parse_rfc3339).map(|t| t.millis());
    eventually("the overlap ends", || async { (Some(Timestamp::now().millis()) > until).then_some(()) }).await;
    app.order(&m, "SEC-2", 100).await;
    let second = eventually("the second event arrives", || async { hook.log().into_iter().nth(1) }).await;
    assert!(verifies(&new_secret, &second), "{}", second.signature);
    assert!(!verifies(&old_secret, &second), "the old secret no longer signs: {}", second.signature);
    assert_eq!(second.signature.matches("v1=").count(), 1);
}

#[tokio::test]
async fn redeliver_sends_a_delivered_event_once_more() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms".into()).await;
    let (m, secret) = hooked_merchant(&app, &hook.url, Value::Null).await;
    app.order(&m, "RD-1", 100).await;
    let event_id = eventually("the event is delivered", || async { hook.delivered().into_iter().next() }).await;

    let r = app.post(&format!("/v1/events/{event_id}/redeliver"), &m.key, json!({})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    eventually("it is delivered again", || async {
        (hook.delivered().iter().filter(|id| **id == event_id).count() == 2).then_some(())
    })
    .await;
    let copies: Vec<_> = hook.log().into_iter().filter(|r| r.event_id == event_id).collect();
    assert_eq!(copies[0].body, copies[1].body, "the same event");
    assert!(copies.iter().all(|c| verifies(&secret, c)));

    // Another merchant's event is not found; a merchant without a webhook has nowhere to send it.
    let other = app.merchant().await;
    assert_problem(
        &app.post(&format!("/v1/events/{event_id}/redeliver"), &other.key, json!({})).await,
        404,
        "not_found",
    );
    app.order(&other, "RD-2", 100).await;
    let own = app.events(&other).await;
    let own_id = own[0]["id"].as_str().unwrap_or_default();
    assert_problem(
        &app.post(&format!("/v1/events/{own_id}/redeliver"), &other.key, json!({})).await,
        409,
        "invalid_state",
    );
    assert_problem(&app.post("/v1/events/not-an-id/redeliver", &m.key, json!({})).await, 404, "not_found");
    assert_eq!(app.verify().0, 0);
}

#[tokio::test]
async fn the_webhook_receives_only_the_event_types_it_asked_for() {
    let hook = Receiver::start().await;
    let app = spawn_app_with(|s| s.webhook.retry_schedule = "100ms".into()).await;
    let (m, _) = hooked_merchant(&app, &hook.url, json!(["payment.succeeded"])).await;
    let r = app.get(&format!("/v1/merchants/{}", m.id), &app.admin_token).await;
    assert_eq!(r.body["webhook_events"], json!(["payment.succeeded"]), "{}", r.body);

    let order = app.paid_order(&m, "F-1", 100).await;
    let id = order["id"].as_str().unwrap_or_default();
    assert_eq!(app.event_types(&m, id).await, ["order.created", "order.paying", "payment.succeeded"]);
    let succeeded = app.events(&m).await.iter().find(|e| e["type"] == "payment.succeeded").cloned();
    let succeeded_id = succeeded.and_then(|e| e["id"].as_str().map(str::to_owned)).unwrap_or_default();
    // One order's deliveries keep the log's order, so once the last event has arrived the
    // earlier ones would have too, had they been sent.
    eventually("payment.succeeded arrives", || async { hook.delivered().contains(&succeeded_id).then_some(()) }).await;
    assert_eq!(hook.delivered(), [succeeded_id], "order.created and order.paying are filtered out");

    // Lifting the filter sends every type again.
    let r = patch(&app, &m.id, &app.admin_token, json!({ "webhook_events": null })).await;
    assert!(r.body["webhook_events"].is_null(), "{}", r.body);
    let second = app.order(&m, "F-2", 100).await;
    let created = app.events(&m).await.iter().rev().find(|e| e["data"]["order"]["id"] == second["id"]).cloned();
    let created_id = created.and_then(|e| e["id"].as_str().map(str::to_owned)).unwrap_or_default();
    eventually("order.created arrives", || async { hook.delivered().contains(&created_id).then_some(()) }).await;
    assert_eq!(app.verify().0, 0);
}
