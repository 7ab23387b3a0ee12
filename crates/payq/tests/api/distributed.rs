//! The distributed mode end to end: real `payq serve` processes (one `--role api`, two
//! `--role worker`) sharing a fresh PostgreSQL database and the local RabbitMQ under a name
//! prefix of their own, with the plugin-free delay tiers. Faults: RabbitMQ stopped and
//! started under load, `kill -9` of a worker mid-delivery, a poison message.
//!
//! These tests stop the broker, so they take turns (one lock for the module). Without
//! RabbitMQ or PostgreSQL they are skipped, unless `CI` is set: then they fail.

use crate::crash::{ADMIN, Server, all_events, call, merchant, order_paid};
use crate::db::TestDb;
use crate::helpers::{eventually, eventually_within};
use crate::receiver::Receiver;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use payq_bus::rabbit::topology::{Topology, WorkQueue};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn amqp_url() -> String {
    std::env::var("PAYQ_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Whether RabbitMQ and PostgreSQL answer; with `CI` set, a missing service is a failure.
async fn services_up() -> bool {
    let url = amqp_url();
    let connect = Connection::connect(&url, ConnectionProperties::default());
    let rabbit = matches!(tokio::time::timeout(Duration::from_secs(30), connect).await, Ok(Ok(_)));
    let pg = tokio::net::TcpStream::connect("127.0.0.1:5432").await.is_ok();
    if rabbit && pg {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI: RabbitMQ ({rabbit}) and PostgreSQL ({pg}) must both answer");
    eprintln!("skipping: RabbitMQ or PostgreSQL is not reachable");
    false
}

/// This test's turn on the broker, its cluster, an HTTP client and a webhook endpoint; `None`
/// (skip) when RabbitMQ or PostgreSQL is missing outside CI.
async fn setup(workers: usize) -> Option<(tokio::sync::MutexGuard<'static, ()>, Cluster, reqwest::Client, Receiver)> {
    setup_with(workers, &[]).await
}

/// [`setup`] with extra environment for every process.
async fn setup_with(
    workers: usize,
    extra: &[(&'static str, &str)],
) -> Option<(tokio::sync::MutexGuard<'static, ()>, Cluster, reqwest::Client, Receiver)> {
    let turn = BROKER.lock().await;
    if !services_up().await {
        return None;
    }
    Some((
        turn,
        Cluster::start(workers, extra).await,
        payq_channels::http_client().build().expect("an HTTP client"),
        Receiver::start().await,
    ))
}

/// One API process and `workers` worker processes on their own database and name prefix.
struct Cluster {
    db: TestDb,
    topology: Topology,
    env: Vec<(&'static str, String)>,
    api: Server,
    workers: Vec<Option<Server>>,
}

impl Cluster {
    async fn start(workers: usize, extra: &[(&'static str, &str)]) -> Cluster {
        let db = TestDb::postgres().await;
        let prefix = format!("payqt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let mut env = vec![
            ("PAYQ_AMQP_URL", amqp_url()),
            ("PAYQ_RABBITMQ__PREFIX", prefix.clone()),
            ("PAYQ_RABBITMQ__DELIVERY_LIMIT", "3".to_owned()),
            ("PAYQ_ENGINE__MAX_ATTEMPTS", "5".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let mut api_env = env.clone();
        api_env.push(("PAYQ_ROLE", "api".into()));
        let api = Server::start_with(&db.url, &api_env);
        let mut cluster = Cluster { db, topology: Topology::new(prefix), env, api, workers: Vec::new() };
        for _ in 0..workers {
            let worker = cluster.worker();
            cluster.workers.push(Some(worker));
        }
        cluster
    }

    /// A worker process; the simulated channel calls back through the API process.
    fn worker(&self) -> Server {
        let mut env = self.env.clone();
        env.push(("PAYQ_ROLE", "worker".into()));
        env.push(("PAYQ_SIM__CALLBACK_URL", self.api.base.clone()));
        Server::start_with(&self.db.url, &env)
    }

    fn verify(&self) -> (i32, String) {
        crate::helpers::verify_db(&self.db.url)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The processes first: a live consumer would declare the queues again.
        for worker in self.workers.iter_mut().flatten() {
            worker.stop();
        }
        self.api.stop();
        remove_topology(self.topology.clone());
    }
}

/// Removes a test's queues and exchanges from the shared broker.
fn remove_topology(topology: Topology) {
    {
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.ok()?;
                let ch = conn.create_channel().await.ok()?;
                for q in topology.queues() {
                    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                }
                for x in topology.exchanges() {
                    let _ = ch.exchange_delete(x.as_str().into(), Default::default()).await;
                }
                Some(())
            })
        })
        .join();
    }
}

/// Another system's queue on `payq.events`, bound with `#`: every event, routing key = event
/// type. Keep the connection while consuming.
async fn observe_events(topology: &Topology) -> (Connection, lapin::Consumer) {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let observer = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .expect("observer queue");
    ch.queue_bind(
        observer.name().clone(),
        topology.events().as_str().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let seen = ch
        .basic_consume(
            observer.name().clone(),
            "observer".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    (conn, seen)
}

/// Orders by status, through the API.
async fn status_of(http: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    call(http, reqwest::Method::GET, format!("{base}/v1/orders/{id}"), key, None).await.1
}

async fn wait_status(http: &reqwest::Client, base: &str, key: &str, id: &str, want: &str) -> Value {
    eventually(&format!("order {id} becomes {want}"), || async {
        let o = status_of(http, base, key, id).await;
        (o["status"] == want).then_some(o)
    })
    .await
}

/// Every event of the merchant reached the webhook (each recorded once: `payq verify`).
async fn wait_all_delivered(http: &reqwest::Client, base: &str, key: &str, hook: &Receiver) -> Vec<Value> {
    let events = all_events(http, base, key).await;
    eventually("every event reaches the webhook", || async {
        let delivered = hook.delivered();
        events.iter().all(|e| delivered.iter().any(|d| e["id"] == d.as_str())).then_some(())
    })
    .await;
    events
}

/// Every order ends paid, exactly once, every event reaches the webhook, and `payq verify`
/// passes.
async fn assert_each_paid_once(cluster: &Cluster, http: &reqwest::Client, key: &str, hook: &Receiver, ids: &[String]) {
    let base = &cluster.api.base;
    for id in ids {
        wait_status(http, base, key, id, "paid").await;
    }
    let events = wait_all_delivered(http, base, key, hook).await;
    for id in ids {
        assert_eq!(count(&events, "payment.succeeded", id), 1, "order {id} paid once");
    }
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

fn count(events: &[Value], event_type: &str, order: &str) -> usize {
    events.iter().filter(|e| e["type"] == event_type && e["data"]["order"]["id"] == order).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_run_every_time_driven_behaviour() {
    let Some((_turn, cluster, http, hook)) = setup(2).await else { return };
    let base = cluster.api.base.clone();

    // Another system's queue on payq.events sees every event, routing key = event type.
    let (_conn, mut seen) = observe_events(&cluster.topology).await;

    let settings = json!({ "payment_timeout": "2s", "post_pay_check_delay": "300ms", "refund_review": "300ms",
                           "ship_deadline": "600ms", "ship_reminder_interval": "300ms", "ship_reminder_max": 1 });
    let key = merchant(&http, &base, &hook.url, settings).await;
    // Paid by callback; paid with no callback (found by the channel query); never paid.
    let paid = order_paid(&http, &base, &key, "D-1", 1000, json!({})).await;
    let queried = order_paid(&http, &base, &key, "D-2", 500, json!({ "outcome": "no_callback" })).await;
    let body = json!({ "merchant_order_no": "D-3", "amount": 300, "currency": "CNY" });
    let (_, unpaid) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
    let unpaid = unpaid["id"].as_str().unwrap_or_default().to_owned();

    wait_status(&http, &base, &key, &paid, "paid").await;
    wait_status(&http, &base, &key, &queried, "paid").await;
    let closed = wait_status(&http, &base, &key, &unpaid, "closed").await;
    assert_eq!(closed["close_reason"], "timeout", "{closed}");
    // A refund waits out its review window, then runs on a worker.
    let (s, refund) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/orders/{paid}/refunds"),
        &key,
        Some(json!({ "amount": 400 })),
    )
    .await;
    assert_eq!(s, 201, "{refund}");
    let refund_id = refund["id"].as_str().unwrap_or_default().to_owned();
    eventually("the refund succeeds after its review window", || async {
        let r = call(&http, reqwest::Method::GET, format!("{base}/v1/refunds/{refund_id}"), &key, None).await.1;
        (r["status"] == "succeeded").then_some(())
    })
    .await;
    let events = wait_all_delivered(&http, &base, &key, &hook).await;
    assert_eq!(count(&events, "payment.succeeded", &paid), 1);
    assert_eq!(count(&events, "payment.succeeded", &queried), 1);
    assert_eq!(count(&events, "order.closed", &unpaid), 1);
    eventually("the unshipped order's merchant is reminded", || async {
        let events = all_events(&http, &base, &key).await;
        (count(&events, "merchant.ship_reminder", &paid) == 1).then_some(())
    })
    .await;

    // Webhooks of one order arrive in event-log order.
    let order_of: BTreeMap<String, String> = events
        .iter()
        .filter_map(|e| Some((e["id"].as_str()?.to_owned(), e["data"]["order"]["id"].as_str()?.to_owned())))
        .collect();
    for order in [&paid, &queried, &unpaid] {
        let logged: Vec<&str> = events
            .iter()
            .filter(|e| e["data"]["order"]["id"] == order.as_str())
            .filter_map(|e| e["id"].as_str())
            .collect();
        let mut delivered: Vec<String> =
            hook.delivered().into_iter().filter(|d| order_of.get(d) == Some(order)).collect();
        delivered.dedup();
        assert_eq!(delivered, logged, "deliveries of {order} in log order");
    }

    // A merchant without a webhook: its events reach payq.events all the same.
    let body = json!({ "name": "No Hook Shop" });
    let (s, quiet) = call(&http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(body)).await;
    assert_eq!(s, 201, "{quiet}");
    let quiet_key = quiet["api_key"].as_str().unwrap_or_default().to_owned();
    let body = json!({ "merchant_order_no": "Q-1", "amount": 100, "currency": "CNY" });
    let (s, _) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &quiet_key, Some(body)).await;
    assert_eq!(s, 201);

    // The observer saw the same events with their types as routing keys.
    let mut routing_keys = Vec::new();
    let mut merchants = std::collections::BTreeSet::new();
    while routing_keys.len() < events.len() + 1 {
        let d = tokio::time::timeout(Duration::from_secs(10), seen.next())
            .await
            .expect("the observer receives every event")
            .expect("delivery")
            .expect("delivery ok");
        let body: Value = serde_json::from_slice(&d.data).unwrap_or_default();
        assert_eq!(body["type"].as_str(), Some(d.routing_key.as_str()));
        routing_keys.push(d.routing_key.to_string());
        merchants.insert(body["merchant_id"].as_str().unwrap_or_default().to_owned());
    }
    assert!(routing_keys.contains(&"refund.succeeded".to_owned()), "{routing_keys:?}");
    assert!(merchants.contains(quiet["id"].as_str().unwrap_or_default()), "{merchants:?}");
    // Each worker answers its probes on its own listener, metrics included.
    for worker in cluster.workers.iter().flatten() {
        for probe in ["healthz", "readyz"] {
            let r = http.get(format!("{}/{probe}", worker.base)).send().await.expect("the worker answers");
            assert_eq!(r.status(), 200, "worker /{probe}");
        }
        let metrics = http.get(format!("{}/metrics", worker.base)).send().await.expect("the worker answers");
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap_or_default();
        assert!(text.contains("payq_"), "the worker exports its own metrics: {text}");
        let api = http.get(format!("{}/v1/orders", worker.base)).send().await.expect("the worker answers");
        assert_eq!(api.status(), 404, "a worker does not serve the API");
    }
    // Admin stats report what waits in each of this topology's queues.
    let (s, stats) = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await;
    assert_eq!(s, 200);
    for q in [
        cluster.topology.work_queue(WorkQueue::Timers),
        cluster.topology.tiers.queue(0),
        cluster.topology.dead_letters(),
    ] {
        assert!(stats["queue_depths"][q.as_str()].is_u64(), "depth of {q} in {stats}");
    }
    // Engine totals are summed over their rows: every fired kind counts at least once.
    let totals = stats["engine_totals"].as_object().cloned().unwrap_or_default();
    let fired: i64 = totals.iter().filter(|(k, _)| k.starts_with("fired:")).filter_map(|(_, n)| n.as_i64()).sum();
    assert!(fired > 0, "{stats}");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_shortage_late_payment_and_a_dead_webhook_on_two_workers() {
    let Some((_turn, cluster, http, hook)) = setup(2).await else { return };
    let base = cluster.api.base.clone();
    hook.always_fail(true);
    let key =
        merchant(&http, &base, &hook.url, json!({ "payment_timeout": "1s", "post_pay_check_delay": "200ms" })).await;
    let (s, _) =
        call(&http, reqwest::Method::PUT, format!("{base}/v1/inventory/tea"), &key, Some(json!({ "available": 1 })))
            .await;
    assert_eq!(s, 200);

    // Two paid orders for the last tea: one takes it, the other is cancelled and refunded.
    let mut tea = Vec::new();
    for no in ["S-1", "S-2"] {
        let body = json!({ "merchant_order_no": no, "amount": 800, "currency": "CNY",
                           "items": [{ "sku": "tea", "quantity": 1 }] });
        let (s, o) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
        assert_eq!(s, 201, "{o}");
        let id = o["id"].as_str().unwrap_or_default().to_owned();
        let pay = json!({ "channel": "sim", "simulate": {} });
        let (s, _) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders/{id}/pay"), &key, Some(pay)).await;
        assert_eq!(s, 202);
        tea.push(id);
    }
    // A payment that succeeds after its order closed is refunded automatically.
    let late =
        order_paid(&http, &base, &key, "S-3", 1500, json!({ "outcome": "late", "callback_delay": "200ms" })).await;

    let finals = eventually("one tea order keeps its stock, the other is cancelled", || async {
        let mut statuses = Vec::new();
        for id in &tea {
            statuses.push(status_of(&http, &base, &key, id).await["status"].as_str().unwrap_or_default().to_owned());
        }
        statuses.sort();
        (statuses == ["cancelled", "paid"]).then_some(statuses)
    })
    .await;
    assert_eq!(finals, ["cancelled", "paid"]);
    eventually("the late payment is refunded", || async {
        let o = status_of(&http, &base, &key, &late).await;
        (o["status"] == "closed" && o["amount_refunded"] == 1500).then_some(())
    })
    .await;
    let events = all_events(&http, &base, &key).await;
    assert_eq!(count(&events, "payment.late_refunded", &late), 1);

    // The endpoint never answers 2xx: deliveries end in the dead letters after 1 + 4 tries
    // (one order's in log order, so the first of each order goes first).
    let dead = eventually("the first delivery of each order is dead-lettered", || async {
        let (_, r) =
            call(&http, reqwest::Method::GET, format!("{base}/v1/admin/dead-letters?limit=100"), ADMIN, None).await;
        let dead = r["data"].as_array().cloned().unwrap_or_default();
        (dead.len() >= 3).then_some(dead)
    })
    .await;
    assert!(dead.iter().all(|d| d["kind"] == "webhook.deliver" && d["attempts"] == 5), "{dead:?}");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "dead-lettered deliveries are accounted for: {out}");
    // Replayed once the endpoint is back: delivered.
    hook.always_fail(false);
    let replay = dead[0]["id"].as_str().unwrap_or_default();
    let (s, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/admin/dead-letters/{replay}/replay"),
        ADMIN,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200);
    eventually("the replayed delivery arrives", || async { (!hook.delivered().is_empty()).then_some(()) }).await;
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_filter_and_a_redelivery_hold_on_rabbitmq() {
    let Some((_turn, cluster, http, hook)) = setup(1).await else { return };
    let base = cluster.api.base.clone();
    let body = json!({ "name": "Filtered", "webhook_url": hook.url, "webhook_events": ["payment.succeeded"] });
    let (s, m) = call(&http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(body)).await;
    assert_eq!(s, 201, "{m}");
    let key = m["api_key"].as_str().unwrap_or_default().to_owned();
    let id = order_paid(&http, &base, &key, "F-1", 100, json!({})).await;
    wait_status(&http, &base, &key, &id, "paid").await;
    let events = all_events(&http, &base, &key).await;
    let succeeded = events.iter().find(|e| e["type"] == "payment.succeeded").map(|e| e["id"].clone());
    let succeeded = succeeded.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    // Deliveries of one order keep the log's order: the filtered events came first.
    eventually("payment.succeeded arrives", || async { hook.delivered().contains(&succeeded).then_some(()) }).await;
    assert_eq!(hook.delivered(), std::slice::from_ref(&succeeded), "order.created and order.paying are filtered out");

    // A redelivery reaches the webhook again.
    let (s, r) =
        call(&http, reqwest::Method::POST, format!("{base}/v1/events/{succeeded}/redeliver"), &key, Some(json!({})))
            .await;
    assert_eq!(s, 202, "{r}");
    eventually("the event is delivered again", || async { (hook.delivered().len() == 2).then_some(()) }).await;
    assert_eq!(hook.delivered(), [succeeded.clone(), succeeded]);
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

/// Waits until admin stats show `want` messages in `queue`.
async fn wait_depth(http: &reqwest::Client, base: &str, queue: &str, want: u64) {
    eventually(&format!("{want} messages in {queue}"), || async {
        let (_, stats) = call(http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await;
        (stats["queue_depths"][queue].as_u64() == Some(want)).then_some(())
    })
    .await;
}

/// The sum of an unlabelled counter over the processes' `/metrics` (0 where absent).
async fn counter_total(http: &reqwest::Client, cluster: &Cluster, name: &str) -> f64 {
    let mut total = 0.0;
    for server in std::iter::once(&cluster.api).chain(cluster.workers.iter().flatten()) {
        let text = http.get(format!("{}/metrics", server.base)).send().await.expect("metrics").text().await;
        let text = text.unwrap_or_default();
        total += text
            .lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_cancelled_while_in_the_tiers_stops_at_the_splitter() {
    // The first query waits 5 s in the tiers: published an hour ahead, it goes there at
    // once. The callback comes after 1 s: late enough for the relay to have published the
    // query into the tiers even on a loaded machine (a timer cancelled before its
    // publication never reaches the broker at all, as the next test shows), and early
    // enough to cancel it before it comes out.
    let extra = [("PAYQ_PAYMENT_QUERY_SCHEDULE", "5s"), ("PAYQ_RABBITMQ__PUBLISH_AHEAD", "1h")];
    let Some((_turn, cluster, http, hook)) = setup_with(1, &extra).await else { return };
    let base = cluster.api.base.clone();
    let key = merchant(&http, &base, &hook.url, json!({})).await;
    let paid = order_paid(&http, &base, &key, "S-1", 100, json!({ "callback_delay": "1s" })).await;
    wait_status(&http, &base, &key, &paid, "paid").await;
    let waited = Duration::from_secs(30);
    eventually_within("the cancelled query leaves the tiers and is dropped by the splitter", waited, || async {
        (counter_total(&http, &cluster, "payq_delay_dropped_in_split_total").await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        counter_total(&http, &cluster, "payq_deliveries_dropped_total").await,
        0.0,
        "no copy of a cancelled timer reached a consumer"
    );
    let events = wait_all_delivered(&http, &base, &key, &hook).await;
    assert_eq!(count(&events, "payment.succeeded", &paid), 1);
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_waits_in_the_database_until_it_is_due_within_the_publish_ahead() {
    // Published 1 s ahead: the first payment query (due at 3 s) is cancelled by the callback
    // (after 300 ms) while it still waits in the database, and never reaches RabbitMQ; a
    // payment timeout of 4 s waits there 3 s, then 1 s in the tiers, and fires on time.
    let extra = [("PAYQ_PAYMENT_QUERY_SCHEDULE", "3s"), ("PAYQ_RABBITMQ__PUBLISH_AHEAD", "1s")];
    let Some((_turn, cluster, http, hook)) = setup_with(1, &extra).await else { return };
    let base = cluster.api.base.clone();
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "4s" })).await;
    let paid = order_paid(&http, &base, &key, "P-1", 100, json!({ "callback_delay": "300ms" })).await;
    let created = std::time::Instant::now();
    let body = json!({ "merchant_order_no": "P-2", "amount": 100, "currency": "CNY" });
    let (s, unpaid) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
    assert_eq!(s, 201, "{unpaid}");
    wait_status(&http, &base, &key, &paid, "paid").await;
    // Until a second before its deadline the unpaid order's timeout is not in the broker
    // (looked at only while that is surely so on a loaded machine).
    let depth = tier_depths(&cluster.topology).await.iter().sum::<u32>();
    if created.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(depth, 0, "no timer is in the tiers yet");
    }
    let unpaid = unpaid["id"].as_str().unwrap_or_default().to_owned();
    let closed = wait_status(&http, &base, &key, &unpaid, "closed").await;
    assert_eq!(closed["close_reason"], "timeout", "{closed}");
    let late = closed_late_ms(&closed);
    assert!((0..1_000).contains(&late), "the order closed {late} ms after its deadline");
    // The query was due a second before the timeout: had it been published, the splitter
    // would have dropped it by now (bundles leave the tiers in due order).
    assert_eq!(
        counter_total(&http, &cluster, "payq_delay_dropped_in_split_total").await,
        0.0,
        "the cancelled query never reached the tiers"
    );
    assert_eq!(counter_total(&http, &cluster, "payq_deliveries_dropped_total").await, 0.0);
    let events = wait_all_delivered(&http, &base, &key, &hook).await;
    assert_eq!(count(&events, "payment.succeeded", &paid), 1);
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_no_webhook_takes_are_announced_without_reaching_the_webhook_queue() {
    // No workers: what reaches payq.webhooks stays there to be counted.
    let Some((_turn, cluster, http, hook)) = setup(0).await else { return };
    let base = cluster.api.base.clone();
    let (_conn, mut seen) = observe_events(&cluster.topology).await;

    let hooked = merchant(&http, &base, &hook.url, json!({})).await;
    let body = json!({ "name": "Quiet", "webhook_url": hook.url, "webhook_events": ["payment.succeeded"] });
    let (s, filtered) = call(&http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(body)).await;
    assert_eq!(s, 201, "{filtered}");
    let (s, bare) =
        call(&http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(json!({ "name": "Bare" })))
            .await;
    assert_eq!(s, 201, "{bare}");
    for (i, key) in [
        hooked.as_str(),
        filtered["api_key"].as_str().unwrap_or_default(),
        bare["api_key"].as_str().unwrap_or_default(),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({ "merchant_order_no": format!("A-{i}"), "amount": 100, "currency": "CNY" });
        let (s, o) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), key, Some(body)).await;
        assert_eq!(s, 201, "{o}");
    }
    // Every order.created is announced to other systems ...
    let mut announced = std::collections::BTreeSet::new();
    while announced.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), seen.next())
            .await
            .expect("the observer receives every event")
            .expect("delivery")
            .expect("delivery ok");
        assert_eq!(d.routing_key.as_str(), "order.created");
        let body: Value = serde_json::from_slice(&d.data).unwrap_or_default();
        announced.insert(body["merchant_id"].as_str().unwrap_or_default().to_owned());
    }
    // ... but only the one a webhook takes waits in payq.webhooks; the other two are done.
    let webhooks = cluster.topology.work_queue(WorkQueue::Webhooks);
    wait_depth(&http, &base, &webhooks, 1).await;
    eventually("the announced-only deliveries are done", || async {
        let (_, stats) = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await;
        (stats["engine_totals"]["fired:webhook.deliver"].as_i64() == Some(2)).then_some(())
    })
    .await;
    assert!(hook.delivered().is_empty(), "no worker runs, so nothing is delivered yet");
    // A worker then delivers the one event that waits, to the merchant whose webhook takes it.
    let mut cluster = cluster;
    let worker = cluster.worker();
    cluster.workers.push(Some(worker));
    eventually("the waiting event is delivered", || async { (hook.delivered().len() == 1).then_some(()) }).await;
    wait_depth(&http, &base, &webhooks, 0).await;
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_delays_fire_in_due_order_through_the_tiers() {
    let Some((_turn, cluster, http, hook)) = setup(2).await else { return };
    let base = cluster.api.base.clone();
    // Three payment timeouts scheduled in the order 3 s, 1 s, 2 s.
    let mut orders = Vec::new();
    for (i, timeout) in ["3s", "1s", "2s"].iter().enumerate() {
        let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": timeout })).await;
        let body = json!({ "merchant_order_no": format!("M-{i}"), "amount": 100, "currency": "CNY" });
        let (s, o) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
        assert_eq!(s, 201, "{o}");
        orders.push((key, o["id"].as_str().unwrap_or_default().to_owned()));
    }
    let mut closed = Vec::new();
    for (key, id) in &orders {
        let o = wait_status(&http, &base, key, id, "closed").await;
        let late = closed_late_ms(&o);
        assert!((0..1_000).contains(&late), "order {id} closed {late} ms after its deadline");
        closed.push((unix_ms(&o, "closed_at"), id.clone()));
    }
    closed.sort();
    let fired: Vec<&str> = closed.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(fired, [orders[1].1.as_str(), orders[2].1.as_str(), orders[0].1.as_str()], "due order: 1s, 2s, 3s");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

/// The RFC 3339 time in `order[field]` as Unix milliseconds.
fn unix_ms(order: &Value, field: &str) -> i64 {
    time::OffsetDateTime::parse(
        order[field].as_str().unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    .expect("timestamp")
}

/// How long after its deadline a closed order closed, in milliseconds.
fn closed_late_ms(order: &Value) -> i64 {
    unix_ms(order, "closed_at") - unix_ms(order, "expires_at")
}

/// Messages in each delay tier queue of `topology`, the fired queue included (a passive
/// declare reports the count).
async fn tier_depths(topology: &Topology) -> Vec<u32> {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("broker");
    let mut depths = Vec::new();
    for queue in topology.tiers.queues() {
        let ch = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let q = ch.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await;
        depths.push(q.map(|q| q.message_count()).unwrap_or(0));
    }
    let _ = conn.close(200, "done".into()).await;
    depths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_lost_inside_the_broker_still_fires() {
    let grace = [("PAYQ_RABBITMQ__REPUBLISH_GRACE", "1s")];
    let Some((_turn, cluster, http, hook)) = setup_with(1, &grace).await else { return };
    let base = cluster.api.base.clone();
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "3s" })).await;
    let body = json!({ "merchant_order_no": "LOST-1", "amount": 100, "currency": "CNY" });
    let (s, o) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_str().unwrap_or_default().to_owned();
    // The payment timeout waits in a tier queue; purge every tier, as a lost node would.
    eventually("the timer waits in a tier queue", || async {
        (tier_depths(&cluster.topology).await.iter().sum::<u32>() > 0).then_some(())
    })
    .await;
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    for q in cluster.topology.tiers.queues() {
        ch.queue_purge(q.as_str().into(), Default::default()).await.expect("purge");
    }
    let _ = conn.close(200, "done".into()).await;
    assert_eq!(tier_depths(&cluster.topology).await.iter().sum::<u32>(), 0, "the broker holds no copy");
    // Due at 3 s; published again 1 s (the grace) after that: the order still closes.
    let closed = wait_status(&http, &base, &key, &id, "closed").await;
    assert_eq!(closed["close_reason"], "timeout", "{closed}");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

fn rabbitmqctl(action: &str) -> bool {
    std::process::Command::new("rabbitmqctl")
        .arg(action)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The broker stopped (`rabbitmqctl stop_app`) until dropped: it is started again even
/// when the test fails half-way.
struct BrokerOutage;

impl BrokerOutage {
    fn begin() -> BrokerOutage {
        assert!(rabbitmqctl("stop_app"), "rabbitmqctl stop_app");
        BrokerOutage
    }
}

impl Drop for BrokerOutage {
    fn drop(&mut self) {
        if !rabbitmqctl("start_app") {
            eprintln!("rabbitmqctl start_app failed: start RabbitMQ by hand");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_for_10s_under_load_loses_nothing() {
    let Some((_turn, cluster, http, hook)) = setup(2).await else { return };
    let base = cluster.api.base.clone();
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "30s" })).await;
    let mut paid = Vec::new();
    for i in 0..20 {
        paid.push(order_paid(&http, &base, &key, &format!("R-{i}"), 100, json!({ "callback_delay": "300ms" })).await);
    }
    let outage = BrokerOutage::begin();
    // The API keeps taking orders and payments while the broker is away: the outbox grows.
    let outage_began = tokio::time::Instant::now();
    for i in 20..40 {
        paid.push(order_paid(&http, &base, &key, &format!("R-{i}"), 100, json!({ "callback_delay": "300ms" })).await);
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage_began.elapsed())).await;
    drop(outage);

    assert_each_paid_once(&cluster, &http, &key, &hook, &paid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_delivery_redelivers_and_applies_once() {
    let Some((_turn, mut cluster, http, hook)) = setup(2).await else { return };
    let base = cluster.api.base.clone();
    let key =
        merchant(&http, &base, &hook.url, json!({ "payment_timeout": "20s", "post_pay_check_delay": "200ms" })).await;
    let outcomes = ["succeeded", "no_callback", "duplicate_callbacks"];
    let mut ids = Vec::new();
    for i in 0..45 {
        let simulate = json!({ "outcome": outcomes[i % 3], "callback_delay": format!("{}ms", 100 + i * 20) });
        ids.push(order_paid(&http, &base, &key, &format!("K-{i}"), 100, simulate).await);
    }
    if let Some(worker) = cluster.workers[0].take() {
        worker.kill9();
    }
    assert_each_paid_once(&cluster, &http, &key, &hook, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_the_delivery_limit() {
    let Some((_turn, cluster, http, _hook)) = setup(1).await else { return };
    let base = cluster.api.base.clone();
    // Wait until the topology is there (declared at start-up), then publish something no
    // payq can read: no claim header.
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let props = BasicProperties::default().with_message_id("poison-1".into()).with_type("payment.timeout".into());
    ch.basic_publish(
        cluster.topology.commands().as_str().into(),
        cluster.topology.work_queue(WorkQueue::Timers).as_str().into(),
        BasicPublishOptions::default(),
        br#"{"order_id":"nothing"}"#,
        props,
    )
    .await
    .expect("publish");
    let dead = eventually("the poison message reaches the dead letters", || async {
        let (_, r) = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/dead-letters"), ADMIN, None).await;
        r["data"].as_array().and_then(|d| d.iter().find(|x| x["message_id"] == "poison-1").cloned())
    })
    .await;
    assert!(dead["last_error"].as_str().unwrap_or_default().contains("deliveries"), "{dead}");
    assert_eq!(dead["kind"], "payment.timeout");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn the_plugin_engine_says_clearly_when_the_plugin_is_missing() {
    let _turn = BROKER.lock().await;
    if !services_up().await {
        return;
    }
    let db = TestDb::postgres().await;
    let prefix = format!("payqp{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .arg("serve")
        .env("PAYQ_DATABASE_URL", &db.url)
        .env("PAYQ_AMQP_URL", amqp_url())
        .env("PAYQ_DELAY_ENGINE", "rabbitmq-plugin")
        .env("PAYQ_RABBITMQ__PREFIX", &prefix)
        .env("PAYQ_LISTEN", "127.0.0.1:0")
        .env_remove("PAYQ_CONFIG")
        .stdout(std::process::Stdio::null())
        .output();
    remove_topology(Topology::new(prefix));
    let out = out.expect("payq runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "payq must refuse to start without the plugin");
    assert!(stderr.contains("rabbitmq_delayed_message_exchange"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_delete_removes_what_declare_made_and_asks_first() {
    let _turn = BROKER.lock().await;
    if !services_up().await {
        return;
    }
    let prefix = format!("payqt{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let payq = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
            .args(args)
            .args(["--amqp-url", &amqp_url()])
            .env_remove("PAYQ_CONFIG")
            .env("PAYQ_RABBITMQ__PREFIX", &prefix)
            .output()
            .expect("payq topology runs")
    };
    let exists = |name: String| async move {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default()).await.expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        let passive = lapin::options::ExchangeDeclareOptions { passive: true, ..Default::default() };
        ch.exchange_declare(name.as_str().into(), lapin::ExchangeKind::Topic, passive, FieldTable::default())
            .await
            .is_ok()
    };
    assert!(payq(&["topology", "declare"]).status.success());
    assert!(exists(format!("{prefix}.events")).await);
    let refused = payq(&["topology", "delete"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"), "{refused:?}");
    assert!(exists(format!("{prefix}.events")).await, "nothing is deleted without --yes");
    let deleted = payq(&["topology", "delete", "--yes"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!exists(format!("{prefix}.events")).await);
    assert!(!exists(format!("{prefix}.delay.in")).await);
}

#[test]
fn topology_print_names_what_the_settings_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .args(["topology", "print"])
        .env_remove("PAYQ_CONFIG")
        .env("PAYQ_RABBITMQ__PREFIX", "shop7")
        .env("PAYQ_RABBITMQ__TIER_QUEUE_TYPE", "quorum")
        .output()
        .expect("payq topology print runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["shop7.events", "shop7.timers", "shop7.delay.in", "shop7.delay.after.28", "shop7.delay.out"] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    assert!(!text.contains("payq."), "only the configured prefix:\n{text}");
    assert!(text.contains("queue    shop7.delay.0 (durable; x-queue-type=quorum"), "{text}");
    assert!(text.contains("queue    shop7.delay.fired (durable; x-queue-type=quorum)"), "{text}");
    assert!(text.contains("binding  shop7.delay.out -> queue shop7.delay.fired"), "{text}");
}

/// Real-channel payments on an API process and two workers sharing RabbitMQ: each payment
/// is created at Alipay once (the pay request's call; the queued request, delayed in the
/// tiers until the request's claim runs out, finds it done on whichever worker takes it),
/// paid by Alipay's notification, and a refund is executed at Alipay once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_channel_payments_are_created_once_with_two_workers() {
    const SECRETS_KEY: &str = "d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d15d";
    let extra = [("PAYQ_SECRETS_KEY", SECRETS_KEY), ("PAYQ_PAYMENT__CHANNEL_TIMEOUT", "1s")];
    let Some((_turn, cluster, http, hook)) = setup_with(2, &extra).await else { return };
    let base = cluster.api.base.clone();
    let gateway = payq_gateways::alipay::AlipaySandbox::start().await.expect("Alipay's local gateway");
    let body = json!({ "name": "Tea", "webhook_url": hook.url, "settings": { "refund_review": "300ms" } });
    let (s, shop) = call(&http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(body)).await;
    assert_eq!(s, 201, "{shop}");
    let key = shop["api_key"].as_str().unwrap_or_default().to_owned();
    let channels = json!({ "channels": { "alipay": gateway.credentials() } });
    let url = format!("{base}/v1/merchants/{}", shop["id"].as_str().unwrap_or_default());
    let (s, set_up) = call(&http, reqwest::Method::PATCH, url, ADMIN, Some(channels)).await;
    assert_eq!(s, 200, "{set_up}");

    let mut orders = Vec::new();
    for i in 0..8 {
        let body = json!({ "merchant_order_no": format!("RC-{i}"), "amount": 1000 + i, "currency": "CNY" });
        let (s, order) = call(&http, reqwest::Method::POST, format!("{base}/v1/orders"), &key, Some(body)).await;
        assert_eq!(s, 201, "{order}");
        orders.push(order["id"].as_str().unwrap_or_default().to_owned());
    }
    let pays = orders.iter().map(|id| {
        let body = json!({ "channel": "alipay" });
        call(&http, reqwest::Method::POST, format!("{base}/v1/orders/{id}/pay"), &key, Some(body))
    });
    let mut payments = Vec::new();
    for (s, order) in futures_util::future::join_all(pays).await {
        assert_eq!(s, 202, "{order}");
        payments.push(order["payment"]["id"].as_str().unwrap_or_default().to_owned());
    }
    // Every queued request has had its turn on a worker (due 3 s after its pay request).
    eventually("the queued payment requests ran", || async {
        let (_, stats) = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await;
        (stats["pending_messages_by_kind"]["payment.request"].as_i64().unwrap_or(0) == 0).then_some(())
    })
    .await;
    for payment in &payments {
        let creates = gateway.trade(payment).and_then(|t| t.calls.get("alipay.trade.precreate").copied());
        assert_eq!(creates, Some(1), "{payment}");
        let (status, body) = gateway.buyer_pays(payment).await.expect("notified");
        assert_eq!((status, body.as_str()), (200, "success"));
    }
    for id in &orders {
        wait_status(&http, &base, &key, id, "paid").await;
    }
    let (s, refund) = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/orders/{}/refunds", orders[0]),
        &key,
        Some(json!({ "amount": 400 })),
    )
    .await;
    assert_eq!(s, 201, "{refund}");
    eventually("the refund is executed at Alipay", || async {
        (gateway.trade(&payments[0]).map(|t| t.refunds.values().sum::<i64>()) == Some(400)).then_some(())
    })
    .await;
    let refund_calls = gateway.trade(&payments[0]).and_then(|t| t.calls.get("alipay.trade.refund").copied());
    assert_eq!(refund_calls, Some(1));

    // The day's reconciliation runs on one of the two workers, once: one bill request,
    // every payment and the refund matched, one event.
    let today = payq_gateways::bills::china_date(payq_domain::Timestamp::now().millis());
    let body = json!({ "merchant_id": shop["id"], "channel": "alipay", "bill_date": today });
    let (s, run) =
        call(&http, reqwest::Method::POST, format!("{base}/v1/admin/reconciliations"), ADMIN, Some(body)).await;
    assert_eq!(s, 202, "{run}");
    let run_url = format!("{base}/v1/admin/reconciliations/{}", run["id"].as_str().unwrap_or_default());
    let run = eventually("the reconciliation completes", || async {
        let (_, run) = call(&http, reqwest::Method::GET, run_url.clone(), ADMIN, None).await;
        (run["status"] == "completed").then_some(run)
    })
    .await;
    assert_eq!(run["counts"]["matched"], 9, "{run}");
    assert_eq!(gateway.bill_book().requests(), 1);
    let (_, events) = call(&http, reqwest::Method::GET, format!("{base}/v1/events?limit=100"), &key, None).await;
    let completed =
        events["data"].as_array().map_or(0, |e| e.iter().filter(|e| e["type"] == "reconciliation.completed").count());
    assert_eq!(completed, 1, "{events}");
    let (code, out) = cluster.verify();
    assert_eq!(code, 0, "{out}");
}

/// `PAYQ_AMQP_URL` naming a cluster's nodes: the first is down (nothing listens on its
/// port), so every process connects to the next; orders are paid and their events
/// delivered once, as with one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_is_passed_over_for_the_next() {
    let nodes = format!("amqp://guest:guest@127.0.0.1:1/%2f,{}", amqp_url());
    let Some((_turn, cluster, http, hook)) = setup_with(1, &[("PAYQ_AMQP_URL", &nodes)]).await else { return };
    let base = cluster.api.base.clone();
    let key = merchant(&http, &base, &hook.url, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(order_paid(&http, &base, &key, &format!("N-{i}"), 100 + i, json!({})).await);
    }
    assert_each_paid_once(&cluster, &http, &key, &hook, &ids).await;
    let stats = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await.1;
    assert!(stats["queue_depths"].is_object(), "the stats found the live node: {stats}");
}
