//! Reconciliation against each real channel's local gateway, whose bill is built from what
//! it really processed: a clean day is all matched; a dropped trade, a changed amount and a
//! payment payq never heard of are found; a bill not ready is fetched on the retry; a
//! discrepancy is resolved with a note; the run is announced.

use crate::helpers::{TestApp, TestMerchant, eventually_within, order_and_payment_ids};
use crate::real_channels;
use payq_gateways::LocalGateway;
use payq_gateways::alipay::AlipaySandbox;
use payq_gateways::wechatpay::WechatPaySandbox;
use serde_json::{Value, json};
use std::time::Duration;

const SECRETS_KEY: &str = "5eca7e5eca7e5eca7e5eca7e5eca7e5eca7e5eca7e5eca7e5eca7e5eca7e5eca";

/// Today in China, as the gateways date their bills (and payq's default time zone does).
fn today() -> String {
    payq_gateways::bills::china_date(payq_domain::Timestamp::now().millis())
}

/// Starts the reconciliation of `m`'s channel for today and waits until it ends.
async fn reconcile(app: &TestApp, m: &TestMerchant, channel: &str) -> Value {
    let r = app
        .post(
            "/v1/admin/reconciliations",
            &app.admin_token,
            json!({ "merchant_id": m.id, "channel": channel, "bill_date": today() }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled", "{}", r.body);
    let id = r.body["id"].as_str().unwrap_or_default().to_owned();
    eventually_within("the reconciliation ends", Duration::from_secs(20), || async {
        let run = app.get(&format!("/v1/admin/reconciliations/{id}"), &app.admin_token).await.body;
        matches!(run["status"].as_str(), Some("completed" | "failed")).then_some(run)
    })
    .await
}

async fn discrepancies(app: &TestApp, run: &Value) -> Vec<Value> {
    let id = run["id"].as_str().unwrap_or_default();
    let r = app.get(&format!("/v1/admin/reconciliations/{id}/discrepancies"), &app.admin_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

fn counts(run: &Value) -> [i64; 5] {
    ["matched", "missing_in_payq", "missing_at_channel", "amount_mismatch", "status_mismatch"]
        .map(|k| run["counts"][k].as_i64().unwrap_or(-1))
}

/// The day at one channel, first clean, then spoiled every way a bill can disagree.
async fn a_day_at(gateway: &dyn LocalGateway) {
    let (app, m) = real_channels::setup(SECRETS_KEY, gateway, |s| {
        // No query finds the silent payment before reconciliation does.
        s.payment.query_schedule = "1h".into();
        s.reconciliation.retry_every = "300ms".parse().unwrap_or(s.reconciliation.retry_every);
    })
    .await;
    let channel = gateway.channel();
    // Two payments notified, and a refund of the first.
    let mut paid = Vec::new();
    for (no, amount) in [("RE-1", 1000), ("RE-2", 2500)] {
        let order = app.pay_through(&m, channel, no, amount, None).await;
        let (order_id, payment_id) = order_and_payment_ids(&order);
        gateway.buyer_pays(&payment_id).await.expect("notified");
        app.wait_order(&m, &order_id, "paid").await;
        paid.push((order_id, payment_id));
    }
    let r = app.post(&format!("/v1/orders/{}/refunds", paid[0].0), &m.key, json!({ "amount": 300 })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.wait_refund(&m, r.body["id"].as_str().unwrap_or_default(), "succeeded").await;

    let run = reconcile(&app, &m, channel).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(counts(&run), [3, 0, 0, 0, 0], "a clean day: {run}");
    assert_eq!(run["totals"]["channel_amount"], 3500, "{run}");
    assert_eq!(run["totals"]["payq_amount"], 3500, "{run}");
    assert_eq!(run["totals"]["refunds"], 300, "{run}");
    // 0.6 % of 1000 and of 2500, less 0.6 % of the 300 refunded (rounded to the fen each).
    assert_eq!(run["totals"]["fees"], 6 + 15 - 2, "{run}");
    assert!(discrepancies(&app, &run).await.is_empty());

    // A bill cut short is a failed run with the reason, and changes nothing else.
    gateway.bill_book().set_malformed(true);
    let failed = reconcile(&app, &m, channel).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("malformed bill")), "{failed}");
    assert!(discrepancies(&app, &failed).await.is_empty());
    gateway.bill_book().set_malformed(false);

    // A payment whose notification was lost, and no query yet: payq has it pending.
    let order = app.pay_through(&m, channel, "RE-3", 4200, None).await;
    let (silent_order, silent_payment) = order_and_payment_ids(&order);
    assert!(gateway.buyer_pays_silently(&silent_payment));
    // An order closed at its deadline whose payment went through anyway, unnoticed.
    let order = app.pay_through(&m, channel, "RE-4", 1800, Some("1s")).await;
    let (late_order, late_payment) = order_and_payment_ids(&order);
    app.wait_order(&m, &late_order, "closed").await;
    assert!(gateway.buyer_pays_after_close_silently(&late_payment));
    {
        let mut book = gateway.bill_book();
        book.drop_trade(&paid[1].1);
        book.change_amount(&paid[0].1, 999);
        book.set_not_ready(1);
    }
    let asked = gateway.bill_book().requests();
    let run = reconcile(&app, &m, channel).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(gateway.bill_book().requests(), asked + 2, "not ready, then fetched on the retry");
    // RE-1 and its refund (both changed to 999 in the bill), RE-2 dropped, RE-3 and RE-4
    // unknown to payq.
    assert_eq!(counts(&run), [0, 2, 1, 2, 0], "{run}");
    let found = discrepancies(&app, &run).await;
    let of = |kind: &str| found.iter().filter(|d| d["kind"] == kind).cloned().collect::<Vec<_>>();
    assert_eq!(of("missing_at_channel")[0]["payment_id"], paid[1].1.as_str());
    assert_eq!(of("missing_at_channel")[0]["payq_amount"], 2500);
    let missing = of("missing_in_payq");
    let silent = missing.iter().find(|d| d["payment_id"] == silent_payment.as_str()).expect("RE-3 found");
    assert_eq!((silent["payq_status"].as_str(), silent["channel_amount"].as_i64()), (Some("pending"), Some(4200)));
    let late = missing.iter().find(|d| d["payment_id"] == late_payment.as_str()).expect("RE-4 found");
    assert_eq!(late["payq_status"], "closed", "{late}");
    // The payments payq never heard of are settled the ordinary way, once: the open order
    // is paid, the closed order's late payment is given back at the channel.
    app.wait_order(&m, &silent_order, "paid").await;
    let types = app.event_types(&m, &silent_order).await;
    assert_eq!(types.iter().filter(|t| *t == "payment.succeeded").count(), 1, "{types:?}");
    crate::helpers::eventually("the late payment is refunded at the channel", || async {
        (gateway.refunded(&late_payment) == 1800).then_some(())
    })
    .await;
    let types = app.event_types(&m, &late_order).await;
    assert_eq!(types.iter().filter(|t| *t == "payment.late_refunded").count(), 1, "{types:?}");
    assert_eq!(app.get(&format!("/v1/orders/{late_order}"), &m.key).await.body["status"], "closed");

    // A person looks into one and resolves it.
    let target = of("amount_mismatch")[0]["id"].as_str().unwrap_or_default().to_owned();
    let r = app
        .post(
            &format!("/v1/admin/discrepancies/{target}/resolve"),
            &app.admin_token,
            json!({ "note": "bill corrected" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["note"].as_str(), r.body["resolved_by"].as_str()), (Some("bill corrected"), Some("admin")));
    assert!(r.body["resolved_at"].is_string(), "{}", r.body);

    // Each completed run is in the merchant's event log.
    let completed: Vec<Value> =
        app.events(&m).await.into_iter().filter(|e| e["type"] == "reconciliation.completed").collect();
    assert_eq!(completed.len(), 2, "the failed run announced nothing: {completed:?}");
    assert_eq!(completed[1]["data"]["reconciliation"]["counts"]["amount_mismatch"], 2);

    // The runs are listed by day and channel.
    let r =
        app.get(&format!("/v1/admin/reconciliations?channel={channel}&bill_date={}", today()), &app.admin_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1), "one run per merchant, channel and day");

    // `payq reconcile` runs the day again from the command line and prints its table; it
    // exits 1, for the discrepancies.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .args(["reconcile", "--merchant", &m.id, "--channel", channel, "--date", &today()])
        .args(["--database-url", &app.db_url])
        .env("PAYQ_SECRETS_KEY", SECRETS_KEY)
        .env("PAYQ_LOG", "error")
        .env_remove("PAYQ_CONFIG")
        .output()
        .expect("payq reconcile runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("completed") && printed.contains("missing_at_channel"), "{printed}");
    assert!(printed.contains(&paid[1].1), "{printed}");
    assert_eq!(app.verify().0, 0, "payq verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alipay_day_is_matched_and_each_kind_of_discrepancy_is_found() {
    let sandbox = AlipaySandbox::start().await.expect("alipay sandbox");
    a_day_at(&sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wechatpay_day_is_matched_and_each_kind_of_discrepancy_is_found() {
    let sandbox = WechatPaySandbox::start().await.expect("wechatpay sandbox");
    a_day_at(&sandbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let sandbox = AlipaySandbox::start().await.expect("alipay sandbox");
    let (app, m) = real_channels::setup(SECRETS_KEY, &sandbox, |_| {}).await;
    let start = |body: Value| {
        let app = &app;
        async move { app.post("/v1/admin/reconciliations", &app.admin_token, body).await }
    };
    let r = start(json!({ "merchant_id": m.id, "channel": "wechatpay", "bill_date": today() })).await;
    assert_eq!((r.status, r.body["code"].as_str()), (422, Some("channel_not_set_up")), "{}", r.body);
    let r = start(json!({ "merchant_id": m.id, "channel": "sim", "bill_date": today() })).await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("validation_failed")), "{}", r.body);
    let r = start(json!({ "merchant_id": m.id, "channel": "alipay", "bill_date": "2026-13-01" })).await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("validation_failed")), "{}", r.body);
    let r = start(json!({ "merchant_id": m.id, "channel": "alipay", "bill_date": "2999-01-01" })).await;
    assert_eq!((r.status, r.body["code"].as_str()), (400, Some("validation_failed")), "{}", r.body);
    let r = app
        .post(
            "/v1/admin/reconciliations",
            &m.key,
            json!({ "merchant_id": m.id, "channel": "alipay", "bill_date": today() }),
        )
        .await;
    assert_eq!(r.status, 401, "merchants cannot start reconciliations: {}", r.body);
    let r = app.get("/v1/admin/reconciliations", &app.admin_token).await;
    assert_eq!(r.body["data"], json!([]), "nothing was started: {}", r.body);
    let r = app
        .post(
            &format!("/v1/admin/discrepancies/dis_{}/resolve", "0".repeat(32)),
            &app.admin_token,
            json!({ "note": "x" }),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(sandbox.bill_book().requests(), 0, "no bill was asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_timer_reconciles_the_day_before_for_every_merchant_once() {
    let sandbox = AlipaySandbox::start().await.expect("alipay sandbox");
    // Today's reconciliation a few seconds from now, China time.
    let china = time::UtcOffset::from_hms(8, 0, 0).expect("offset");
    let soon = time::OffsetDateTime::now_utc().to_offset(china) + time::Duration::seconds(3);
    let at = format!("{:02}:{:02}:{:02}", soon.hour(), soon.minute(), soon.second());
    let (app, m) = real_channels::setup(SECRETS_KEY, &sandbox, |s| s.reconciliation.at = at.clone()).await;
    // A second merchant on the same Alipay account.
    let other = app.merchant_with(json!({})).await;
    let r = app
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/merchants/{}", other.id),
            Some(&app.admin_token),
            Some(json!({ "channels": { "alipay": sandbox.credentials() } })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let yesterday = payq_gateways::bills::china_date(payq_domain::Timestamp::now().millis() - 86_400_000);
    let runs = eventually_within("the day's runs complete", Duration::from_secs(20), || async {
        let r = app.get(&format!("/v1/admin/reconciliations?bill_date={yesterday}"), &app.admin_token).await;
        let runs = r.body["data"].as_array().cloned().unwrap_or_default();
        (runs.len() == 2 && runs.iter().all(|run| run["status"] == "completed")).then_some(runs)
    })
    .await;
    let mut merchants: Vec<&str> = runs.iter().filter_map(|run| run["merchant_id"].as_str()).collect();
    merchants.sort_unstable();
    let mut wanted = vec![m.id.as_str(), other.id.as_str()];
    wanted.sort_unstable();
    assert_eq!(merchants, wanted, "one run per merchant");
    assert!(runs.iter().all(|run| counts(run) == [0, 0, 0, 0, 0] && run["attempts"] == 1), "{runs:?}");
    assert_eq!(sandbox.bill_book().requests(), 2, "one bill request per run");
    // The next day's timer is set, once.
    let stats = app.get("/v1/admin/stats", &app.admin_token).await;
    assert_eq!(stats.body["pending_messages_by_kind"]["reconciliation.day"], 1, "{}", stats.body);
}
