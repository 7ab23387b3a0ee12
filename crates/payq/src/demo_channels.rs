//! `payq demo --channel alipay|wechatpay`: a shop taking payments with a real channel,
//! against a local gateway that speaks its protocol (`AlipaySandbox`, `WechatPaySandbox`:
//! keys and certificates made for the run): a QR code paid and notified, a lost
//! notification found by querying, an unpaid payment closed at the channel at the order's
//! deadline, a refund executed there, and a payment on a phone (Alipay wap, WeChat Pay H5)
//! and one inside an app (the Alipay app, WeChat JSAPI). Prints each step.

use crate::demo::Client;
use anyhow::Context;
use payq_gateways::LocalGateway;
use reqwest::Method;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Polls the order until `done` holds for it (at most 30 s); answers it.
async fn wait_for(c: &Client, key: &str, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = c.call(Method::GET, &format!("/v1/orders/{id}"), key, None).await?;
        if done(&o) {
            return Ok(o);
        }
        anyhow::ensure!(Instant::now() < deadline, "order {id}: {what} did not happen within 30 s ({o})");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates an order and pays it through `channel` with the channel's QR code; answers the
/// `202` order.
async fn pay(c: &Client, key: &str, channel: &str, no: &str, amount: i64, timeout: &str) -> anyhow::Result<Value> {
    pay_with(c, key, channel, no, amount, timeout, json!({})).await
}

/// Creates an order and pays it through `channel` with `extra` in the pay request (its
/// product, payer, return URL); answers the `202` order.
async fn pay_with(
    c: &Client,
    key: &str,
    channel: &str,
    no: &str,
    amount: i64,
    timeout: &str,
    extra: Value,
) -> anyhow::Result<Value> {
    let order = c
        .call(
            Method::POST,
            "/v1/orders",
            key,
            Some(json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY",
                         "description": format!("Demo Tea House order {no}"), "payment_timeout": timeout })),
        )
        .await?;
    let id = order["id"].as_str().context("no order id")?;
    let mut body = json!({ "channel": channel });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    c.call(Method::POST, &format!("/v1/orders/{id}/pay"), key, Some(body)).await
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Plays the story through `gateway`'s channel.
pub async fn run(c: &Client, admin: &str, gateway: &dyn LocalGateway) -> anyhow::Result<ExitCode> {
    let (channel, label) = (gateway.channel(), gateway.label());
    println!("a local {label} gateway listens at {} (keys made for this run)", gateway.url());
    let shop = c
        .call(
            Method::POST,
            "/v1/merchants",
            admin,
            Some(json!({ "name": "Demo Tea House", "settings": { "refund_review": "1s" } })),
        )
        .await?;
    let (shop_id, key) = (text(&shop["id"]), text(&shop["api_key"]));
    let set_up = c
        .call(
            Method::PATCH,
            &format!("/v1/merchants/{shop_id}"),
            admin,
            Some(json!({ "channels": { channel: gateway.credentials() } })),
        )
        .await
        .with_context(|| format!("setting up {label} (a payq given with --url needs PAYQ_SECRETS_KEY)"))?;
    println!(
        "merchant {shop_id} set up with {label} {} (shown without keys: {})",
        gateway.account(),
        set_up["channels"]
    );

    println!("\n1. an order paid by scanning the QR code");
    let order = pay(c, &key, channel, "TEA-1", 3880, "5m").await?;
    let (id, payment) = (text(&order["id"]), text(&order["payment"]["id"]));
    println!("   pay answered 202 with next_action {}", order["payment"]["next_action"]);
    let (status, body) = gateway.buyer_pays(&payment).await?;
    println!("   the buyer paid; {label}'s notification was answered {status} {body:?}");
    let paid = wait_for(c, &key, &id, "paid", |o| o["status"] == "paid").await?;
    println!("   order {id}: {} ({label} transaction {})", paid["status"], paid["payment"]["channel_txn_id"]);

    println!("\n2. an order whose notification is lost");
    let lost = pay(c, &key, channel, "TEA-2", 1200, "5m").await?;
    let (lost_id, lost_payment) = (text(&lost["id"]), text(&lost["payment"]["id"]));
    gateway.buyer_pays_silently(&lost_payment);
    let found = wait_for(c, &key, &lost_id, "paid by querying", |o| o["status"] == "paid").await?;
    println!("   the buyer paid, no notification came; payq asked {}: {}", gateway.query_name(), found["status"]);

    println!("\n3. an order nobody pays");
    let unpaid = pay(c, &key, channel, "TEA-3", 500, "2s").await?;
    let (unpaid_id, unpaid_payment) = (text(&unpaid["id"]), text(&unpaid["payment"]["id"]));
    let closed = wait_for(c, &key, &unpaid_id, "closed", |o| o["status"] == "closed").await?;
    let state = gateway.state(&unpaid_payment).unwrap_or_default();
    println!("   at its deadline: order {} ({}), payment at {label} {state}", closed["status"], closed["close_reason"]);

    println!("\n4. a refund of order 1");
    let refund = c
        .call(
            Method::POST,
            &format!("/v1/orders/{id}/refunds"),
            &key,
            Some(json!({ "amount": 880, "reason": "a box arrived broken" })),
        )
        .await?;
    let refunded = wait_for(c, &key, &id, "the refund", |o| o["amount_refunded"] == 880).await?;
    let at_channel = gateway.refunded(&payment);
    println!(
        "   refund {} after its review window: order refunded {} fen, {label} refunded {at_channel} fen",
        refund["id"], refunded["amount_refunded"]
    );

    println!("\n5. a payment on a phone and one inside an app");
    let mut elsewhere_paid = true;
    for (n, (place, extra)) in gateway.phone_and_app_products().into_iter().enumerate() {
        let order = pay_with(c, &key, channel, &format!("TEA-{}", 5 + n), 990, "5m", extra).await?;
        let (order_id, payment) = (text(&order["id"]), text(&order["payment"]["id"]));
        let action = &order["payment"]["next_action"];
        println!("   {place}: pay answered 202 with next_action type {}", action["type"]);
        println!("   {}", gateway.buyer_takes(action).await?);
        gateway.buyer_pays(&payment).await?;
        let paid = wait_for(c, &key, &order_id, "paid", |o| o["status"] == "paid").await?;
        println!("   the buyer paid: order {order_id} {}", paid["status"]);
        elsewhere_paid &= paid["status"] == "paid";
    }

    let ok =
        closed["close_reason"] == "timeout" && state == gateway.closed_state() && at_channel == 880 && elsewhere_paid;
    println!("\n{}", if ok { "every step went as it should" } else { "!! something went differently" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
