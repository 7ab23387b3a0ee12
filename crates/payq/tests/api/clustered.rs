//! payq on clustered services, under load (SPEC §8 "Clustered services"): real `payq serve`
//! processes (one API, workers) on a RabbitMQ cluster of three nodes and on a PostgreSQL
//! primary with a synchronous standby, from `scripts/cluster.sh` (which `.ci/run` starts).
//! While several clients create and pay orders through `sim`, recording every outcome,
//! RabbitMQ nodes are stopped and started, or the primary dies and the standby is promoted.
//! Afterwards every acknowledged order exists, every acknowledged payment is paid exactly
//! once with its events delivered, no request took more than 10 s, every failed request was
//! a `503` problem, and `payq verify` passes.
//!
//! The tests stop cluster nodes, so they take turns. Without the cluster
//! (`PAYQ_CLUSTER_AMQP_URL`, `PAYQ_CLUSTER_DATABASE_URL`: `scripts/cluster.sh env`) they are
//! skipped, unless `CI` is set: then they fail.

use crate::crash::{ADMIN, Server, all_events, call, merchant};
use crate::db::TestDb;
use crate::helpers::eventually_within;
use crate::receiver::Receiver;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest a request may take, switch or not.
const LONGEST_REQUEST: Duration = Duration::from_secs(10);

/// The cluster's AMQP URL (three nodes) and database URL (primary and standby), if running.
fn cluster_urls() -> Option<(String, String)> {
    let amqp = std::env::var("PAYQ_CLUSTER_AMQP_URL").ok();
    let db = std::env::var("PAYQ_CLUSTER_DATABASE_URL").ok();
    if let (Some(amqp), Some(db)) = (amqp, db) {
        return Some((amqp, db));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI: start the clustered services (scripts/cluster.sh start) and export scripts/cluster.sh env"
    );
    eprintln!("skipping: no clustered services (scripts/cluster.sh start; export $(scripts/cluster.sh env))");
    None
}

/// Runs `scripts/cluster.sh args…` and answers its output; a failure fails the test.
fn cluster_script(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh");
    let out = std::process::Command::new("bash").arg(script).args(args).output().expect("scripts/cluster.sh runs");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One API process and `workers` worker processes on `db_url` and the cluster's RabbitMQ.
struct Processes {
    api: Server,
    _workers: Vec<Server>,
}

impl Processes {
    fn start(db_url: &str, amqp_url: &str, prefix: &str, workers: usize) -> Processes {
        let env = vec![
            ("PAYQ_AMQP_URL", amqp_url.to_owned()),
            ("PAYQ_RABBITMQ__PREFIX", prefix.to_owned()),
            ("PAYQ_ENGINE__MAX_ATTEMPTS", "20".to_owned()),
        ];
        let mut api_env = env.clone();
        api_env.push(("PAYQ_ROLE", "api".into()));
        let api = Server::start_with(db_url, &api_env);
        let mut worker_env = env;
        worker_env.push(("PAYQ_ROLE", "worker".into()));
        worker_env.push(("PAYQ_SIM__CALLBACK_URL", api.base.clone()));
        let workers = (0..workers).map(|_| Server::start_with(db_url, &worker_env)).collect();
        Processes { api, _workers: workers }
    }
}

/// What one request answered.
#[derive(Debug, Clone)]
struct Answer {
    /// The HTTP status, or `None` when no answer came.
    status: Option<u16>,
    body: Value,
    /// When it was sent, from the start of the load, and how long it took.
    sent: Duration,
    took: Duration,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One client's attempt at an order: its creation and, if created, its payment.
#[derive(Debug)]
struct Attempt {
    create: Answer,
    pay: Option<Answer>,
}

impl Attempt {
    fn order_id(&self) -> Option<&str> {
        self.create.ok().then(|| self.create.body["id"].as_str()).flatten()
    }
}

/// Clients creating and paying orders until stopped; every answer is kept.
struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Load {
    fn start(http: &reqwest::Client, base: &str, key: &str, clients: usize) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|client| {
                let (http, base, key, stop) = (http.clone(), base.to_owned(), key.to_owned(), stop.clone());
                tokio::spawn(async move {
                    let mut attempts = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let no = format!("L{client}-{}", attempts.len());
                        let body = json!({ "merchant_order_no": no, "amount": 100, "currency": "CNY" });
                        let create = send(&http, started, format!("{base}/v1/orders"), &key, body).await;
                        let pay = match create.ok().then(|| create.body["id"].as_str()).flatten() {
                            Some(id) => {
                                let body = json!({ "channel": "sim", "simulate": { "callback_delay": "200ms" } });
                                Some(send(&http, started, format!("{base}/v1/orders/{id}/pay"), &key, body).await)
                            }
                            None => None,
                        };
                        attempts.push(Attempt { create, pay });
                        // A steady load that leaves the cluster's five servers some CPU.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    attempts
                })
            })
            .collect();
        Load { started, stop, clients }
    }

    /// Stops the clients and answers every attempt.
    async fn finish(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in self.clients {
            all.extend(client.await.expect("a load client"));
        }
        all
    }

    /// How long since the load started.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }
}

/// How long after `at` (from the start of the load) the first order created after it was
/// acknowledged.
fn first_write_after(attempts: &[Attempt], at: Duration) -> Option<Duration> {
    attempts.iter().filter(|a| a.create.ok() && a.create.sent >= at).map(|a| a.create.sent + a.create.took - at).min()
}

/// Sends one authenticated POST, never waiting more than 15 s.
async fn send(http: &reqwest::Client, started: Instant, url: String, key: &str, body: Value) -> Answer {
    let sent = started.elapsed();
    let at = Instant::now();
    let answer = http.post(url).bearer_auth(key).json(&body).timeout(Duration::from_secs(15)).send().await;
    let (status, body) = match answer {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (None, json!(e.to_string())),
    };
    Answer { status, body, sent, took: at.elapsed() }
}

/// Every request answered within [`LONGEST_REQUEST`] and every failure was a `503`
/// `storage_unavailable` problem; every acknowledged order exists, every acknowledged
/// payment ends paid with exactly one `payment.succeeded`, every event reached the webhook,
/// and `payq verify` passes on `db_url`. Answers how many requests failed.
async fn assert_nothing_lost(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    hook: &Receiver,
    db_url: &str,
    attempts: &[Attempt],
) -> usize {
    let mut failed = 0;
    for answer in attempts.iter().flat_map(|a| std::iter::once(&a.create).chain(a.pay.as_ref())) {
        assert!(answer.took <= LONGEST_REQUEST, "a request took {:?}: {answer:?}", answer.took);
        if !answer.ok() {
            failed += 1;
            assert_eq!(answer.status, Some(503), "a failed request is a 503 problem: {answer:?}");
            assert_eq!(answer.body["code"], "storage_unavailable", "{answer:?}");
        }
    }
    let mut paid = Vec::new();
    for attempt in attempts {
        let Some(id) = attempt.order_id() else { continue };
        let (status, order) = call(http, reqwest::Method::GET, format!("{base}/v1/orders/{id}"), key, None).await;
        assert_eq!(status, 200, "an acknowledged order exists: {order}");
        if attempt.pay.as_ref().is_some_and(Answer::ok) {
            paid.push(id.to_owned());
        }
    }
    for id in &paid {
        eventually_within(&format!("order {id} is paid"), Duration::from_secs(60), || async {
            let (_, order) = call(http, reqwest::Method::GET, format!("{base}/v1/orders/{id}"), key, None).await;
            (order["status"] == "paid").then_some(())
        })
        .await;
    }
    let events = all_events(http, base, key).await;
    for id in &paid {
        let succeeded = events
            .iter()
            .filter(|e| e["type"] == "payment.succeeded" && e["data"]["order"]["id"] == id.as_str())
            .count();
        assert_eq!(succeeded, 1, "order {id} paid exactly once");
    }
    eventually_within("every event reaches the webhook", Duration::from_secs(60), || async {
        let delivered: std::collections::HashSet<String> = hook.delivered().into_iter().collect();
        events.iter().all(|e| e["id"].as_str().is_some_and(|id| delivered.contains(id))).then_some(())
    })
    .await;
    let (code, out) = crate::helpers::verify_db(db_url);
    assert_eq!(code, 0, "{out}");
    failed
}

/// A unique name prefix for a test's queues and exchanges.
fn prefix() -> String {
    format!("payqc{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// Creates and pays one order, and answers how long until its payment completed (the sim
/// channel's call and callback went through RabbitMQ and a worker).
async fn one_payment_completes(http: &reqwest::Client, base: &str, key: &str, no: &str) -> Duration {
    let at = Instant::now();
    let body = json!({ "merchant_order_no": no, "amount": 100, "currency": "CNY" });
    let (status, order) = call(http, reqwest::Method::POST, format!("{base}/v1/orders"), key, Some(body)).await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let body = json!({ "channel": "sim", "simulate": { "callback_delay": "50ms" } });
    let (status, reply) =
        call(http, reqwest::Method::POST, format!("{base}/v1/orders/{id}/pay"), key, Some(body)).await;
    assert_eq!(status, 202, "{reply}");
    eventually_within(&format!("order {no} is paid"), Duration::from_secs(60), || async {
        let (_, order) = call(http, reqwest::Method::GET, format!("{base}/v1/orders/{id}"), key, None).await;
        (order["status"] == "paid").then_some(())
    })
    .await;
    at.elapsed()
}

/// `payq topology print` for a cluster (several nodes in `PAYQ_AMQP_URL`) names quorum delay
/// tiers; for one node, classic ones (the delay tiers' default there).
#[test]
fn the_delay_tiers_are_quorum_queues_on_a_cluster() {
    let print = |amqp_url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
            .args(["topology", "print"])
            .env_remove("PAYQ_CONFIG")
            .env_remove("PAYQ_RABBITMQ__TIER_QUEUE_TYPE")
            .env("PAYQ_AMQP_URL", amqp_url)
            .env("PAYQ_DATABASE_URL", "postgres://127.0.0.1/unused")
            .output()
            .expect("payq topology print runs");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cluster = print("amqp://127.0.0.1:5701/%2f,amqp://127.0.0.1:5702/%2f");
    assert!(cluster.contains("queue    payq.delay.0 (durable; x-queue-type=quorum"), "{cluster}");
    assert!(cluster.contains("queue    payq.delay.fired (durable; x-queue-type=quorum)"), "{cluster}");
    let one = print("amqp://127.0.0.1:5672/%2f");
    assert!(one.contains("queue    payq.delay.0 (durable; x-queue-type=classic"), "{one}");
    for text in [&cluster, &one] {
        assert!(text.contains("queue    payq.timers (durable; x-queue-type=quorum"), "{text}");
    }
}

/// RabbitMQ node `node` stopped until dropped: started again even when the test fails.
struct NodeDown(&'static str);

impl NodeDown {
    fn begin(node: &'static str) -> NodeDown {
        cluster_script(&["rabbit-stop", node]);
        NodeDown(node)
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        cluster_script(&["rabbit-start", self.0]);
    }
}

/// The node every process connects to first (payq-a) stops under load and starts again;
/// then another (payq-b) stops and starts. Work queues and tiers are quorum queues there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_nodes_stopped_in_turn_under_load_lose_nothing() {
    let _turn = TURN.lock().await;
    let Some((amqp_url, _)) = cluster_urls() else { return };
    let db = TestDb::postgres().await;
    let prefix = prefix();
    let processes = Processes::start(&db.url, &amqp_url, &prefix, 2);
    let base = processes.api.base.clone();
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let hook = Receiver::start().await;
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "120s" })).await;
    one_payment_completes(&http, &base, &key, "warm-up").await;
    // On a cluster, every work queue and delay tier is a quorum queue.
    let queues = cluster_script(&["rabbit-queues"]);
    let ours: Vec<&str> = queues.lines().filter(|l| l.starts_with(&format!("{prefix}."))).collect();
    assert!(ours.len() > 10, "{queues}");
    assert!(ours.iter().all(|l| l.ends_with("quorum")), "{ours:?}");
    let stats = call(&http, reqwest::Method::GET, format!("{base}/v1/admin/stats"), ADMIN, None).await.1;
    assert!(stats["queue_depths"].is_object(), "{stats}");

    let load = Load::start(&http, &base, &key, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in ["a", "b"] {
        let down = NodeDown::begin(node);
        let recovered = one_payment_completes(&http, &base, &key, &format!("after-{node}-stopped")).await;
        eprintln!("RabbitMQ node payq-{node} stopped: a payment started then completed in {recovered:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(down);
        let recovered = one_payment_completes(&http, &base, &key, &format!("after-{node}-started")).await;
        eprintln!("RabbitMQ node payq-{node} started again: a payment completed in {recovered:?}");
    }
    let attempts = load.finish().await;
    let failed = assert_nothing_lost(&http, &base, &key, &hook, &db.url, &attempts).await;
    eprintln!("{} orders attempted, {failed} requests failed (503)", attempts.len());
    assert!(attempts.iter().filter(|a| a.order_id().is_some()).count() >= 20, "the load ran");
}

/// The primary dies under load (an immediate shutdown, as a lost machine) and the standby
/// is promoted: payq, given both hosts with `target_session_attrs=read-write`, moves its
/// pools to the new primary by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_failover_under_load_loses_nothing() {
    let _turn = TURN.lock().await;
    let Some((amqp_url, db_url)) = cluster_urls() else { return };
    // A fresh pair (an earlier run leaves the standby promoted and the primary dead).
    cluster_script(&["pg-reset"]);
    let processes = Processes::start(&db_url, &amqp_url, &prefix(), 1);
    let base = processes.api.base.clone();
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let hook = Receiver::start().await;
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "120s" })).await;
    one_payment_completes(&http, &base, &key, "warm-up").await;

    let load = Load::start(&http, &base, &key, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster_script(&["pg-kill-primary"]);
    // The time a cluster manager takes to decide that the primary is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoted = load.now();
    cluster_script(&["pg-promote"]);
    let promoted_in = load.now() - promoted;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let attempts = load.finish().await;
    let first_write = first_write_after(&attempts, promoted).expect("a write succeeded after the promotion");
    eprintln!(
        "PostgreSQL failover: pg_ctl promote took {promoted_in:?}; first acknowledged order {first_write:?} after the promotion began"
    );
    let recovered = one_payment_completes(&http, &base, &key, "after-failover").await;
    eprintln!("after the failover a payment completed in {recovered:?}");
    let failed = assert_nothing_lost(&http, &base, &key, &hook, &db_url, &attempts).await;
    eprintln!("{} orders attempted, {failed} requests failed (503)", attempts.len());
    let status = call(&http, reqwest::Method::GET, format!("{base}/readyz"), ADMIN, None).await.0;
    assert_eq!(status, 200, "ready on the new primary");
}
