//! Production faults, each asserting its target (docs/operations.md, "Faults and what payq
//! guarantees"): a merchant endpoint that hangs, requests cut off by `kill -9`, concurrent
//! requests on one order, work held by a killed process, and a full disk. `payq verify`
//! passes after each. Every test runs on the backend of the run (SQLite, or PostgreSQL with
//! `PAYQ_TEST_DATABASE=postgres`), except the full disk, which is a SQLite file on a small
//! tmpfs.

use crate::crash::{Server, call};
use crate::helpers::{eventually, spawn_app, spawn_app_with, verify_db};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A webhook endpoint that accepts connections and never answers; counts the connections.
async fn hung_endpoint() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            held.push(socket); // kept open, never read or answered
        }
    });
    (url, accepted, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_webhook_endpoint_never_delays_another_merchants_payments() {
    let app = spawn_app().await;
    let (hung, accepted, _endpoint) = hung_endpoint().await;
    let r = app.post("/v1/merchants", &app.admin_token, json!({ "name": "Hung Shop", "webhook_url": hung })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let x = r.body["api_key"].as_str().expect("key").to_owned();
    // 300 orders of merchant X: 300 deliveries to an endpoint that never answers.
    let creates = (0..300).map(|i| {
        app.post("/v1/orders", &x, json!({ "merchant_order_no": format!("X-{i}"), "amount": 100, "currency": "CNY" }))
    });
    for r in join_all(creates).await {
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Wait until the endpoint is actually tying up deliveries (X's whole share of them).
    eventually("deliveries to the hung endpoint are in flight", || async {
        (accepted.load(Ordering::Relaxed) >= 16).then_some(())
    })
    .await;
    let stats = app.get("/v1/admin/stats", &app.admin_token).await;
    assert!(stats.body["pending_messages_by_kind"]["webhook.deliver"].as_i64() >= Some(250), "{}", stats.body);

    // Merchant Y: 10 payments one after another, each paid within 1 s.
    let y = app.merchant().await;
    for i in 0..10 {
        let order = app.order(&y, &format!("Y-{i}"), 500).await;
        let id = order["id"].as_str().expect("id").to_owned();
        let started = Instant::now();
        app.pay(&y, &id, json!({})).await;
        loop {
            let o = app.get(&format!("/v1/orders/{id}"), &y.key).await;
            if o.body["status"] == "paid" {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(1), "payment {i} of Y not paid within 1 s: {}", o.body);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let (code, out) = app.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_cut_off_by_kill_9_can_be_retried_with_their_keys() {
    let db = crate::db::TestDb::new().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let server = Server::start_with(&db.url, &[]);
    let hook = crate::receiver::Receiver::start().await;
    let key = crate::crash::merchant(&http, &server.base, &hook.url, json!({})).await;
    let body = |i: usize| json!({ "merchant_order_no": format!("K-{i}"), "amount": 100 + i, "currency": "CNY" });
    let send = |base: String, i: usize| {
        let (http, key) = (http.clone(), key.clone());
        async move {
            let r = http
                .post(format!("{base}/v1/orders"))
                .bearer_auth(&key)
                .header("idempotency-key", format!("key-{i}"))
                .json(&body(i))
                .send()
                .await;
            match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    Some((status, r.json::<Value>().await.unwrap_or(Value::Null)))
                }
                Err(_) => None, // cut off by the kill
            }
        }
    };
    // 200 concurrent creations with keys; the process is killed while they run.
    let first: Vec<_> = (0..200).map(|i| tokio::spawn(send(server.base.clone(), i))).collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.kill9();
    let mut answered = BTreeMap::new();
    for (i, handle) in first.into_iter().enumerate() {
        if let Ok(Some((status, order))) = handle.await
            && status == 201
        {
            answered.insert(i, order["id"].as_str().unwrap_or_default().to_owned());
        }
    }

    let server = Server::start_with(&db.url, &[]);
    let restarted = Instant::now();
    let mut ids = BTreeMap::new();
    for i in 0..200 {
        // Retried with the same key and body until it answers, within 5 s of the restart.
        let (status, order) = loop {
            let (status, order) = send(server.base.clone(), i).await.expect("the restarted payq answers");
            if status != 409 {
                break (status, order);
            }
            assert_eq!(order["code"], "idempotency_in_progress", "{order}");
            assert!(restarted.elapsed() < Duration::from_secs(5), "key-{i} still locked 5 s after the restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status == 201 || status == 200, "key-{i}: {status} {order}");
        let id = order["id"].as_str().expect("order id").to_owned();
        if let Some(before) = answered.get(&i) {
            assert_eq!(&id, before, "key-{i}: the retry returns the order the first answer named");
        }
        ids.insert(i, id);
    }
    // The order each retry names is the one stored under its merchant_order_no, once.
    for (i, id) in &ids {
        let (status, order) =
            call(&http, reqwest::Method::GET, format!("{}/v1/orders/{id}", server.base), &key, None).await;
        assert_eq!(status, 200, "{order}");
        assert_eq!(order["merchant_order_no"], format!("K-{i}"));
    }
    let mut conn = db.connect().await;
    let dupes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT merchant_order_no FROM orders GROUP BY merchant_order_no HAVING COUNT(*) > 1) d",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(dupes, 0, "a merchant_order_no exists twice");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders").fetch_one(&mut conn).await.expect("count");
    assert_eq!(count, 200);
    drop(server);
    let (code, out) = verify_db(&db.url);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pay_and_close_on_one_order_never_answer_5xx_or_both() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let mut orders = Vec::new();
    for i in 0..25 {
        orders.push(app.order(&m, &format!("C-{i}"), 100).await["id"].as_str().expect("id").to_owned());
    }
    let races = orders.iter().map(|id| {
        let app = &app;
        let key = m.key.clone();
        async move {
            let calls = (0..8).map(|k| {
                let (path, body) = if k % 2 == 0 {
                    (format!("/v1/orders/{id}/pay"), json!({ "channel": "sim" }))
                } else {
                    (format!("/v1/orders/{id}/close"), json!({}))
                };
                let key = key.clone();
                async move { (k % 2 == 0, app.post(&path, &key, body).await) }
            });
            (id.clone(), join_all(calls).await)
        }
    });
    for (id, answers) in join_all(races).await {
        let mut paid = 0;
        let mut closed = 0;
        for (is_pay, r) in &answers {
            assert!(r.status < 500, "order {id}: {} {}", r.status, r.body);
            match (is_pay, r.status) {
                (true, 202) => paid += 1,
                (false, 200) => closed += 1,
                (_, 409) => assert!(
                    matches!(r.body["code"].as_str(), Some("invalid_state" | "conflict")),
                    "order {id}: {}",
                    r.body
                ),
                (_, s) => panic!("order {id}: unexpected {s} {}", r.body),
            }
        }
        assert_eq!(paid + closed, 1, "order {id}: exactly one of pay ({paid}) and close ({closed}) wins");
        let want = if paid == 1 { "paid" } else { "closed" };
        app.wait_order(&m, &id, want).await;
    }
    let (code, out) = app.verify();
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_kill_9_payments_in_flight_resume_within_5_s_of_the_restart() {
    let db = crate::db::TestDb::new().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    // A lease far longer than the test: only the lifeline can hand the work back in time.
    let env = [("PAYQ_ENGINE__LEASE", "60s".to_owned())];
    let server = Server::start_with(&db.url, &env);
    let hook = crate::receiver::Receiver::start().await;
    let key = crate::crash::merchant(&http, &server.base, &hook.url, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let body = json!({ "merchant_order_no": format!("P-{i}"), "amount": 100, "currency": "CNY" });
        let (s, order) =
            call(&http, reqwest::Method::POST, format!("{}/v1/orders", server.base), &key, Some(body)).await;
        assert_eq!(s, 201, "{order}");
        ids.push(order["id"].as_str().expect("id").to_owned());
    }
    let pays = ids.iter().map(|id| {
        let body = json!({ "channel": "sim", "simulate": { "callback_delay": "300ms" } });
        call(&http, reqwest::Method::POST, format!("{}/v1/orders/{id}/pay", server.base), &key, Some(body))
    });
    for (s, body) in join_all(pays).await {
        assert_eq!(s, 202, "{body}");
    }
    server.kill9();

    let server = Server::start_with(&db.url, &env);
    let restarted = Instant::now();
    for id in &ids {
        loop {
            let (_, o) = call(&http, reqwest::Method::GET, format!("{}/v1/orders/{id}", server.base), &key, None).await;
            if o["status"] == "paid" {
                break;
            }
            if restarted.elapsed() >= Duration::from_secs(5) {
                let events = crate::crash::all_events(&http, &server.base, &key).await;
                let of_order: Vec<_> = events
                    .iter()
                    .filter(|e| e["data"]["order"]["id"] == id.as_str())
                    .map(|e| e["type"].clone())
                    .collect();
                panic!("order {id} not paid 5 s after the restart: {o}\nevents: {of_order:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(server);
    let (code, out) = verify_db(&db.url);
    assert_eq!(code, 0, "{out}");
}

/// A small tmpfs for a database, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mounting a tmpfs (needs root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem holding `path` until a write fails.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler file");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_and_payq_recovers_when_space_returns() {
    let fs = Tmpfs::mount("8m");
    let db_url = format!("sqlite://{}", fs.path("payq.db").display());
    let app = spawn_app_with(|s| s.database_url = db_url.clone()).await;
    let m = app.merchant().await;
    app.paid_order(&m, "before-1", 100).await;
    fill(&fs.path("filler"));

    // Writes fail for lack of space: 503 storage_unavailable, never 500, and not ready.
    let mut refused = None;
    for i in 0..2_000 {
        let body = json!({
            "merchant_order_no": format!("full-{i}"), "amount": 100, "currency": "CNY",
            "description": "x".repeat(480),
        });
        let r = app.post("/v1/orders", &m.key, body).await;
        assert!(r.status == 201 || r.status == 503, "{} {}", r.status, r.body);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the disk fills up within 2,000 orders");
    crate::helpers::assert_problem(&refused, 503, "storage_unavailable");
    let ready = app.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503, "{}", ready.body);

    // Space comes back: ready again, and writes work, without a restart.
    std::fs::remove_file(fs.path("filler")).expect("remove the filler");
    eventually("payq is ready again", || async {
        (app.send(reqwest::Method::GET, "/readyz", None, None).await.status == 200).then_some(())
    })
    .await;
    app.paid_order(&m, "after-1", 100).await;
    let (code, out) = app.verify();
    assert_eq!(code, 0, "{out}");
}

/// Makes the PostgreSQL database `name` read-only for new sessions (as a primary demoted by
/// a failover, or a standby, answers), or writable again, and ends every session on it so
/// that payq's pools reconnect to the server as it now is.
async fn set_read_only(name: &str, read_only: bool) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&crate::db::pg_server_url()).await.expect("PostgreSQL answers");
    let change =
        if read_only { "SET default_transaction_read_only = on" } else { "RESET default_transaction_read_only" };
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} {change}")))
        .execute(&mut admin)
        .await
        .expect("alter the test database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut admin)
    .await
    .expect("end the test database's sessions");
}

/// A PostgreSQL server that turns read-only under payq (a demoted primary still reached
/// after a failover) refuses every write with SQLSTATE 25006: payq answers `503
/// storage_unavailable`, never `500`, keeps nothing of the refused requests, and writes
/// again once the server takes writes, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_answers_503_and_payq_writes_again_once_it_is_writable() {
    if tokio::net::TcpStream::connect("127.0.0.1:5432").await.is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI: PostgreSQL must answer on 127.0.0.1:5432");
        eprintln!("skipping: PostgreSQL is not reachable");
        return;
    }
    let db = crate::db::TestDb::postgres().await;
    let name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let db_url = db.url.clone();
    let app = spawn_app_with(|s| s.database_url = db_url.clone()).await;
    let m = app.merchant().await;
    app.paid_order(&m, "before-1", 100).await;

    set_read_only(&name, true).await;
    let mut tried = 0;
    let refused = eventually("payq refuses writes on the read-only server", || {
        tried += 1;
        let body = json!({ "merchant_order_no": format!("ro-{tried}"), "amount": 100, "currency": "CNY" });
        let (app, key) = (&app, &m.key);
        async move {
            let r = app.post("/v1/orders", key, body).await;
            assert!(r.status == 503, "a write on a read-only server: {} {}", r.status, r.body);
            (r.body["code"] == "storage_unavailable").then_some(r)
        }
    })
    .await;
    crate::helpers::assert_problem(&refused, 503, "storage_unavailable");

    set_read_only(&name, false).await;
    eventually("payq writes again", || async {
        let body = json!({ "merchant_order_no": "after-1", "amount": 100, "currency": "CNY" });
        let status = app.post("/v1/orders", &m.key, body).await.status;
        (status == 201 || status == 200).then_some(())
    })
    .await;
    let orders = app.get("/v1/orders?limit=100", &m.key).await;
    let numbers: Vec<&str> =
        orders.body["data"].as_array().into_iter().flatten().filter_map(|o| o["merchant_order_no"].as_str()).collect();
    assert!(numbers.iter().all(|n| !n.starts_with("ro-")), "nothing of the refused requests: {numbers:?}");
    assert!(numbers.contains(&"after-1") && numbers.contains(&"before-1"), "{numbers:?}");
    let (code, out) = app.verify();
    assert_eq!(code, 0, "{out}");
}
