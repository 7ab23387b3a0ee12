//! `payq demo`: drives a realistic day of a small shop against payq — a paid and shipped
//! order, one cancelled for lack of stock, one left unpaid until it closes, a declined card
//! paid again, a refund after review, a payment that arrives too late, one refused by risk
//! control — and prints what happened to each, with the events and webhooks they produced.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `payq demo` options.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// A running payq to drive; without it, the demo starts one in-process on a temporary
    /// database with short timers.
    #[arg(long)]
    url: Option<String>,
    /// Admin token of that payq.
    #[arg(long, env = "PAYQ_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The channel the shop takes payments with: the simulated one, or Alipay or WeChat Pay
    /// against a local gateway that speaks its protocol (a payq given with --url needs
    /// PAYQ_SECRETS_KEY set).
    #[arg(long, value_enum, default_value_t = DemoChannel::Sim)]
    channel: DemoChannel,
}

/// The channels `payq demo` can show.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoChannel {
    Sim,
    Alipay,
    Wechatpay,
}

/// A client of payq's API.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Calls `path`; anything but a 2xx is an error that shows the answer.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.with_context(|| format!("calling {path}"))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{path} answered {status}: {body}");
        Ok(body)
    }
}

/// One order of the story: what is done to it and the status it should end in.
struct Scene {
    name: &'static str,
    amount: i64,
    items: Value,
    simulate: Option<Value>,
    want: &'static str,
}

/// The in-process payq the demo started: stopped, and waited for, when the demo ends.
struct InProcess {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Holds the temporary database until payq has stopped.
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Stops payq and waits until it has finished its work in hand and closed its store,
    /// so that nothing is cut off mid-commit when the demo returns.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("the in-process payq panicked")?
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (base, admin, server) = match args.url {
        Some(url) => (url, args.admin_token.context("--admin-token (or PAYQ_ADMIN_TOKEN) is needed with --url")?, None),
        None => {
            let dir = tempfile::tempdir()?;
            let admin = format!("demo-{}", payq_app::crypto::random_hex(16));
            let mut settings = payq_app::Settings {
                listen: "127.0.0.1:0".into(),
                database_url: format!("sqlite://{}/demo.db", dir.path().display()),
                admin_token: Some(admin.clone()),
                secrets_key: Some(payq_app::crypto::random_hex(32)),
                ..payq_app::Settings::default()
            };
            settings.payment.query_schedule = "500ms,1s,2s".into();
            // WeChat Pay's 5 minutes before a trade may be closed, shortened like the timers.
            settings.payment.wechatpay_close_after = payq_domain::HumanDuration::from_millis(500);
            let app = payq_app::Application::build(settings).await?;
            let base = format!("http://{}", app.local_addr());
            let stop = tokio_util::sync::CancellationToken::new();
            let task = tokio::spawn(app.run_until_stopped(stop.clone()));
            println!("payq demo: started an in-process payq at {base} (temporary database)");
            (base, admin, Some(InProcess { stop, task, _dir: dir }))
        }
    };
    let c = Client { http: payq_channels::http_client().build()?, base };
    // The local gateway outlives payq's shutdown: a call payq still has in hand reaches it.
    let gateway: Option<Box<dyn payq_gateways::LocalGateway>> = match args.channel {
        DemoChannel::Sim => None,
        DemoChannel::Alipay => Some(Box::new(payq_gateways::alipay::AlipaySandbox::start().await?)),
        DemoChannel::Wechatpay => Some(Box::new(payq_gateways::wechatpay::WechatPaySandbox::start().await?)),
    };
    let outcome = match &gateway {
        None => sim_story(&c, &admin).await,
        Some(gateway) => crate::demo_channels::run(&c, &admin, gateway.as_ref()).await,
    };
    if let Some(server) = server {
        server.stop().await?;
    }
    outcome
}

/// The simulated channel's story.
async fn sim_story(c: &Client, admin: &str) -> anyhow::Result<ExitCode> {
    let shop = c
        .call(
            reqwest::Method::POST,
            "/v1/merchants",
            admin,
            Some(json!({ "name": "Demo Tea House", "settings": {
                "payment_timeout": "3s", "post_pay_check_delay": "1s", "ship_deadline": "2s",
                "ship_reminder_interval": "1s", "ship_reminder_max": 2, "refund_review": "2s" } })),
        )
        .await?;
    let key = shop["api_key"].as_str().context("no api_key")?.to_owned();
    c.call(reqwest::Method::PUT, "/v1/inventory/oolong", &key, Some(json!({ "available": 5 }))).await?;
    println!("merchant {} created; stock of oolong set to 5", shop["id"]);

    let scenes = [
        Scene {
            name: "paid, then shipped",
            amount: 1999,
            items: json!([{ "sku": "oolong", "quantity": 2 }]),
            simulate: Some(json!({})),
            want: "shipped",
        },
        Scene {
            name: "paid, out of stock: cancelled + refunded",
            amount: 8800,
            items: json!([{ "sku": "oolong", "quantity": 10 }]),
            simulate: Some(json!({})),
            want: "cancelled",
        },
        Scene {
            name: "never paid: closes at its deadline",
            amount: 500,
            items: json!([]),
            simulate: None,
            want: "closed",
        },
        Scene {
            name: "card declined, paid again",
            amount: 1200,
            items: json!([]),
            simulate: Some(json!({ "outcome": "failed" })),
            want: "paid",
        },
        Scene {
            name: "callback lost: found by querying",
            amount: 900,
            items: json!([]),
            simulate: Some(json!({ "outcome": "no_callback" })),
            want: "paid",
        },
        Scene {
            name: "paid after its deadline: refunded",
            amount: 700,
            items: json!([]),
            simulate: Some(json!({ "outcome": "late" })),
            want: "closed",
        },
        Scene {
            name: "refused by risk control, closes unpaid",
            amount: 20_000_000,
            items: json!([]),
            simulate: Some(json!({})),
            want: "closed",
        },
        Scene {
            name: "paid, refund approved after review",
            amount: 3000,
            items: json!([]),
            simulate: Some(json!({})),
            want: "refunded",
        },
    ];
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, s) in scenes.iter().enumerate() {
        // The orders whose story is their deadline keep the shop's 3 s; the others get time
        // for the merchant's part (paying again, shipping), however slow the machine.
        let timeout = if s.want == "closed" { "3s" } else { "30s" };
        let order = c
            .call(
                reqwest::Method::POST,
                "/v1/orders",
                &key,
                Some(json!({ "merchant_order_no": format!("DEMO-{i}-{}", started.elapsed().as_nanos()),
                             "amount": s.amount, "currency": "CNY", "items": s.items, "description": s.name,
                             "payment_timeout": timeout })),
            )
            .await?;
        let id = order["id"].as_str().context("no order id")?.to_owned();
        if let Some(simulate) = &s.simulate {
            c.call(
                reqwest::Method::POST,
                &format!("/v1/orders/{id}/pay"),
                &key,
                Some(json!({ "channel": "sim", "simulate": simulate })),
            )
            .await?;
        }
        ids.push(id);
    }

    let bar = ProgressBar::new(scenes.len() as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} {pos}/{len} orders settled  {msg}")?);
    let mut acted = [false; 8];
    let mut paid_seen: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut settled = 0;
        for (i, (s, id)) in scenes.iter().zip(&ids).enumerate() {
            let o = c.call(reqwest::Method::GET, &format!("/v1/orders/{id}"), &key, None).await?;
            let status = o["status"].as_str().unwrap_or_default();
            // The merchant's part of the story, once each order is ready for it.
            match (i, status) {
                // Ship 2.5 s after payment, so a reminder goes out first (without holding up
                // the other orders' parts meanwhile).
                (0, "paid")
                    if !acted[0]
                        && paid_seen.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(2_500) =>
                {
                    c.call(
                        reqwest::Method::POST,
                        &format!("/v1/orders/{id}/ship"),
                        &key,
                        Some(json!({ "carrier": "SF", "tracking_no": "SF1001" })),
                    )
                    .await?;
                    acted[0] = true;
                }
                (3, "pending_payment") if !acted[3] && o["payment"]["status"] == "failed" => {
                    c.call(
                        reqwest::Method::POST,
                        &format!("/v1/orders/{id}/pay"),
                        &key,
                        Some(json!({ "channel": "sim" })),
                    )
                    .await?;
                    acted[3] = true;
                }
                (7, "paid") if !acted[7] => {
                    let r = c
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/orders/{id}/refunds"),
                            &key,
                            Some(json!({ "amount": 3000, "reason": "wrong tea" })),
                        )
                        .await?;
                    let rid = r["id"].as_str().unwrap_or_default();
                    c.call(reqwest::Method::POST, &format!("/v1/refunds/{rid}/approve"), &key, Some(json!({}))).await?;
                    acted[7] = true;
                }
                _ => {}
            }
            let risk_done = i != 6 || o["payment"]["failure_reason"].as_str().is_some_and(|r| r.starts_with("risk:"));
            let late_done = i != 5 || o["amount_refunded"] == s.amount;
            if status == s.want && risk_done && late_done {
                settled += 1;
            }
        }
        bar.set_position(settled);
        if settled == scenes.len() as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bar.finish_and_clear();

    let events = c.call(reqwest::Method::GET, "/v1/events?limit=100", &key, None).await?;
    let events = events["data"].as_array().cloned().unwrap_or_default();
    println!("\nwhat happened ({:.1}s):", started.elapsed().as_secs_f64());
    let mut all_ok = true;
    for (s, id) in scenes.iter().zip(&ids) {
        let o = c.call(reqwest::Method::GET, &format!("/v1/orders/{id}"), &key, None).await?;
        let ok = o["status"] == s.want;
        all_ok &= ok;
        let trail: Vec<&str> = events
            .iter()
            .filter(|e| e["data"]["order"]["id"] == id.as_str())
            .filter_map(|e| e["type"].as_str())
            .collect();
        println!(
            "{} {:<42} {:<16} refunded {:>6}  {}",
            if ok { "ok " } else { "!! " },
            s.name,
            o["status"].as_str().unwrap_or("?"),
            o["amount_refunded"],
            trail.join(" → ")
        );
    }
    let stock = c.call(reqwest::Method::GET, "/v1/inventory/oolong", &key, None).await?;
    println!(
        "\noolong left in stock: {} (2 taken by the shipped order; the 10 of the cancelled one were never there)",
        stock["available"]
    );
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
