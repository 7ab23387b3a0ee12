//! `payq load`: a load generator. Creates a merchant through the admin API, then creates
//! orders from many concurrent clients, and reports throughput and latency percentiles.
//! With `--pay --webhook` it runs the whole lifecycle of SPEC §9: create → pay → the
//! channel's callback → the merchant's `payment.succeeded` webhook, received here.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `payq load` options.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Base URL of a running payq.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token of that payq.
    #[arg(long, env = "PAYQ_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Orders to create.
    #[arg(long, default_value_t = 10_000)]
    orders: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
    /// Also pay each order (create → pay).
    #[arg(long)]
    pay: bool,
    /// With `--pay`: receive each order's `payment.succeeded` webhook on a local endpoint
    /// (the payq under load must allow private webhook addresses) and wait for all of them.
    #[arg(long, requires = "pay")]
    webhook: bool,
}

/// The local webhook endpoint: counts the deliveries it answers `200`.
struct WebhookReceiver {
    url: String,
    received: Arc<AtomicU64>,
}

impl WebhookReceiver {
    async fn start() -> anyhow::Result<WebhookReceiver> {
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the webhook endpoint")?;
        let url = format!("http://{}/", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(WebhookReceiver { url, received })
    }

    /// Waits until `want` deliveries arrived (at most two minutes); answers how many did.
    async fn wait_for(&self, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = self.received.load(Ordering::Relaxed);
            if got >= want || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if args.orders == 0 || args.concurrency == 0 {
        bail!("--orders and --concurrency must be positive");
    }
    let http = payq_channels::http_client().pool_max_idle_per_host(args.concurrency as usize).build()?;
    let receiver = if args.webhook { Some(WebhookReceiver::start().await?) } else { None };
    let mut merchant = serde_json::json!({ "name": "load test" });
    if let Some(r) = &receiver {
        merchant["webhook_url"] = r.url.clone().into();
        merchant["webhook_events"] = serde_json::json!(["payment.succeeded"]);
    }
    let merchant: serde_json::Value = http
        .post(format!("{}/v1/merchants", args.url))
        .bearer_auth(&args.admin_token)
        .json(&merchant)
        .send()
        .await
        .context("creating the load-test merchant")?
        .error_for_status()?
        .json()
        .await?;
    let key = merchant["api_key"].as_str().context("no api_key in the merchant response")?.to_owned();
    let run_id = uuid_like();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let bar = ProgressBar::new(args.orders);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} orders  {per_sec}  eta {eta}")?);
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (http, key, url, next, errors, bar, run_id) =
            (http.clone(), key.clone(), args.url.clone(), next.clone(), errors.clone(), bar.clone(), run_id.clone());
        let (total, pay) = (args.orders, args.pay);
        clients.spawn(async move {
            let mut latencies = latency_histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return latencies;
                }
                let t = Instant::now();
                let body = serde_json::json!({
                    "merchant_order_no": format!("load-{run_id}-{i}"),
                    "amount": 1999, "currency": "CNY", "customer_id": format!("c{}", i % 1000),
                });
                let ok = match http.post(format!("{url}/v1/orders")).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        if pay {
                            pay_order(&http, &url, &key, r).await
                        } else {
                            true
                        }
                    }
                    _ => false,
                };
                // A latency beyond the histogram's hour is recorded as an hour.
                let _ = latencies.record(micros(t.elapsed()).min(latencies.high()));
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                bar.inc(1);
            }
        });
    }
    let mut all = latency_histogram();
    while let Some(done) = clients.join_next().await {
        all.add(done?).context("merging latencies")?;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let n = all.len();
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "payq load: {n} requests in {:.2}s = {:.0} orders/s, concurrency {}, errors {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        args.concurrency,
        errors.load(Ordering::Relaxed)
    );
    println!(
        "latency: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(all.value_at_quantile(0.50)),
        ms(all.value_at_quantile(0.90)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max())
    );
    let mut complete = true;
    if let Some(r) = &receiver {
        let want = n - errors.load(Ordering::Relaxed).min(n);
        let got = r.wait_for(want).await;
        println!(
            "webhooks: {got} of {want} payment.succeeded received, the last {:.1} s after the load ended",
            (started.elapsed() - elapsed).as_secs_f64()
        );
        complete = got >= want;
    }
    Ok(if errors.load(Ordering::Relaxed) == 0 && complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn pay_order(http: &reqwest::Client, url: &str, key: &str, created: reqwest::Response) -> bool {
    let Ok(order) = created.json::<serde_json::Value>().await else {
        return false;
    };
    let Some(id) = order["id"].as_str() else {
        return false;
    };
    http.post(format!("{url}/v1/orders/{id}/pay"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "channel": "sim" }))
        .send()
        .await
        .is_ok_and(|r| r.status().as_u16() == 202)
}

fn uuid_like() -> String {
    format!("{:x}", time::OffsetDateTime::now_utc().unix_timestamp_nanos())
}

/// Request latencies in microseconds, 1 µs to an hour, 3 significant digits.
fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds and precision are valid")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
