//! Faults: `kill -9` of the real `payq serve` process with orders in flight, then a
//! restart on the same database. Nothing may be lost or applied twice.

use crate::helpers::{eventually, eventually_within};
use crate::receiver::Receiver;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const ADMIN: &str = "crash-admin-token";

/// A `payq serve` child process.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    fn start(db_url: &str) -> Server {
        Server::start_with(db_url, &[])
    }

    /// Starts `payq serve` on `db_url` with the crash tests' settings plus `env`.
    pub fn start_with(db_url: &str, env: &[(&str, String)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_payq"))
            .arg("serve")
            .env("PAYQ_DATABASE_URL", db_url)
            .env("PAYQ_LISTEN", "127.0.0.1:0")
            .env("PAYQ_ADMIN_TOKEN", ADMIN)
            .env("PAYQ_SIM_SECRET", "crash-sim-secret")
            .env("PAYQ_PAYMENT_QUERY_SCHEDULE", "300ms,600ms,1s,2s")
            .env("PAYQ_WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,400ms,800ms")
            .env("PAYQ_ENGINE__BASE_BACKOFF", "50ms")
            .env("PAYQ_WEBHOOK__ALLOW_PRIVATE", "true")
            // No short lease: a killed process's claims come back through the lifeline (its
            // heartbeat stops), within seconds, as in production.
            .env("PAYQ_LOG", "warn")
            .env_remove("PAYQ_CONFIG")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            // PAYQ_TEST_SERVER_LOGS=dir keeps each server's log there, for debugging.
            .stderr(match std::env::var_os("PAYQ_TEST_SERVER_LOGS") {
                Some(dir) => std::fs::File::create(
                    std::path::Path::new(&dir).join(format!("payq-{}.log", uuid::Uuid::now_v7().simple())),
                )
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("payq serve starts");
        let base = listening_address(&mut child);
        Server { child, base }
    }

    /// Kills the process now (also done when dropped).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The base URL a `payq serve` child started with piped stdout prints; its stdout is then
/// drained so that the child never blocks on a full pipe.
pub fn listening_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().expect("payq prints its address").expect("stdout line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    base
}

pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("sent");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates a merchant through `base` with `settings` and the webhook `hook`; returns its key.
pub async fn merchant(http: &reqwest::Client, base: &str, hook: &str, settings: Value) -> String {
    let body = json!({ "name": "Crash Shop", "webhook_url": hook, "settings": settings });
    let (status, merchant) = call(http, reqwest::Method::POST, format!("{base}/v1/merchants"), ADMIN, Some(body)).await;
    assert_eq!(status, 201, "{merchant}");
    merchant["api_key"].as_str().unwrap_or_default().to_owned()
}

/// Creates order `no` through `base` and pays it with `simulate`; returns its id.
pub async fn order_paid(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    no: &str,
    amount: i64,
    simulate: Value,
) -> String {
    let body = json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY" });
    let (s, order) = call(http, reqwest::Method::POST, format!("{base}/v1/orders"), key, Some(body)).await;
    assert_eq!(s, 201, "{order}");
    let id = order["id"].as_str().unwrap_or_default().to_owned();
    let body = json!({ "channel": "sim", "simulate": simulate });
    let (s, body) = call(http, reqwest::Method::POST, format!("{base}/v1/orders/{id}/pay"), key, Some(body)).await;
    assert_eq!(s, 202, "{body}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_100_orders_in_flight_then_restart_loses_nothing() {
    let db = crate::db::TestDb::new().await;
    let db_url = db.url.clone();
    let hook = Receiver::start().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    // Quick retries, and enough of them that a busy machine's slow moment does not
    // dead-letter a delivery: this test is about the crash, not the retry limit.
    let retries = [("PAYQ_WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,400ms,800ms,1s,2s,4s,8s".to_owned())];
    let server = Server::start_with(&db_url, &retries);

    let key =
        merchant(&http, &server.base, &hook.url, json!({ "payment_timeout": "4s", "post_pay_check_delay": "300ms" }))
            .await;

    // 100 orders, paid with a mix of outcomes and callback delays, all in flight.
    let outcomes = ["succeeded", "failed", "no_callback", "duplicate_callbacks"];
    let mut expected = Vec::new();
    for i in 0..100i64 {
        let outcome = outcomes[usize::try_from(i).unwrap_or(0) % outcomes.len()];
        let simulate = json!({ "outcome": outcome, "callback_delay": format!("{}ms", 200 + (i * 37) % 700) });
        let id = order_paid(&http, &server.base, &key, &format!("K-{i}"), 100 + i, simulate).await;
        expected.push((id, if outcome == "failed" { "closed" } else { "paid" }));
    }
    server.kill9();

    let server = Server::start_with(&db_url, &retries);
    // The dead process's claims come back when its heartbeat is seen to stop, then 100
    // orders' queries, timeouts and callbacks run: on a loaded two-core machine that takes
    // longer than one order's usual 10 s. What is asserted is that none is lost.
    for (id, want) in &expected {
        eventually_within(&format!("order {id} becomes {want} after the restart"), Duration::from_secs(45), || async {
            let (_, o) = call(&http, reqwest::Method::GET, format!("{}/v1/orders/{id}", server.base), &key, None).await;
            (o["status"] == *want).then_some(())
        })
        .await;
    }
    // Every event of the log reaches the webhook; a delivery cut short by the kill may be
    // repeated, with the same Payq-Event-Id, but each event is recorded delivered once.
    let events = all_events(&http, &server.base, &key).await;
    let ids: BTreeSet<String> = events.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
    // About 400 deliveries to one merchant, at most 16 at a time, one order's in order,
    // and the dead process's claims released first: more than the usual 10 s on a busy CI.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: BTreeSet<String> = hook.delivered().into_iter().collect();
        let missing: Vec<&String> = ids.difference(&delivered).collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            // What the server holds, to tell a slow delivery from a lost one.
            let stats =
                call(&http, reqwest::Method::GET, format!("{}/v1/admin/stats", server.base), ADMIN, None).await.1;
            let dead = call(&http, reqwest::Method::GET, format!("{}/v1/admin/dead-letters", server.base), ADMIN, None)
                .await
                .1;
            panic!(
                "{} of {} events never delivered, e.g. {:?}\nstats: {stats}\ndead letters: {dead}",
                missing.len(),
                ids.len(),
                missing.iter().take(5).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Each paid order was paid exactly once.
    for (id, want) in &expected {
        let succeeded = events
            .iter()
            .filter(|e| e["type"] == "payment.succeeded" && e["data"]["order"]["id"] == id.as_str())
            .count();
        assert_eq!(succeeded, usize::from(*want == "paid"), "order {id}");
    }
    let (code, out) = crate::helpers::verify_db(&db_url);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_store_and_survive_one_being_killed() {
    let db = crate::db::TestDb::new().await;
    let db_url = db.url.clone();
    let hook = Receiver::start().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let a = Server::start(&db_url);
    let b = Server::start(&db_url);

    let key = merchant(&http, &a.base, &hook.url, json!({ "payment_timeout": "3s" })).await;
    let mut ids = Vec::new();
    for i in 0..60i64 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let simulate = json!({ "callback_delay": format!("{}ms", 100 + i * 13) });
        ids.push(order_paid(&http, base, &key, &format!("T-{i}"), 100, simulate).await);
    }
    a.kill9();

    // Process b finishes everything: each order ends paid (the channel took the money and b
    // learned it by callback or query) or closed at its deadline (a died before the channel
    // settled it), never both, and nothing is left in between.
    for id in &ids {
        eventually(&format!("order {id} settles"), || async {
            let (_, o) = call(&http, reqwest::Method::GET, format!("{}/v1/orders/{id}", b.base), &key, None).await;
            matches!(o["status"].as_str(), Some("paid" | "closed")).then_some(())
        })
        .await;
    }
    let events = all_events(&http, &b.base, &key).await;
    for id in &ids {
        let of = |t: &str| events.iter().filter(|e| e["type"] == t && e["data"]["order"]["id"] == id.as_str()).count();
        assert!(
            of("payment.succeeded") + of("order.closed") == 1,
            "order {id}: succeeded {} closed {}",
            of("payment.succeeded"),
            of("order.closed")
        );
    }
    let (code, out) = crate::helpers::verify_db(&db_url);
    assert_eq!(code, 0, "{out}");
}

/// The merchant's whole event log, oldest first.
pub async fn all_events(http: &reqwest::Client, base: &str, key: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let cursor = if after.is_empty() { String::new() } else { format!("&after={after}") };
        let (_, page) =
            call(http, reqwest::Method::GET, format!("{base}/v1/events?limit=100{cursor}"), key, None).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if let Some(last) = data.last().and_then(|e| e["id"].as_str()) {
            after = last.to_owned();
        }
        events.extend(data);
        if page["has_more"] != true {
            return events;
        }
    }
}
