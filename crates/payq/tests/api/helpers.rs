//! `spawn_app()`: a real payq on port 0 with a fresh database, plus helpers to drive it
//! over HTTP and to look at its database.

use crate::db::TestDb;
use payq_app::config::Settings;
use payq_app::{Application, crypto};
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running payq for one test.
pub struct TestApp {
    pub base: String,
    pub admin_token: String,
    pub sim_secret: String,
    pub db_url: String,
    pub http: reqwest::Client,
    /// The simulated channel of this payq.
    pub sim: std::sync::Arc<payq_channels::sim::SimChannel>,
    shutdown: CancellationToken,
    pub db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for tests: short schedules so time-driven behaviour shows within a second.
pub fn test_settings(db_url: &str) -> Settings {
    let mut s = Settings { listen: "127.0.0.1:0".into(), database_url: db_url.into(), ..Settings::default() };
    s.admin_token = Some("test-admin-token".into());
    s.payment.query_schedule = "100ms,200ms,400ms,800ms".into();
    // WeChat Pay's 5 minutes before a trade may be closed, shortened like every timer.
    s.payment.wechatpay_close_after = payq_domain::HumanDuration::from_millis(100);
    s.sim.callback_delay = "50ms".parse().unwrap_or(s.sim.callback_delay);
    s.engine.base_backoff = "50ms".parse().unwrap_or(s.engine.base_backoff);
    s.engine.max_attempts = 3;
    // Webhook endpoints in tests live on 127.0.0.1.
    s.webhook.allow_private = true;
    s
}

/// Starts payq with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts payq with the test settings, adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db.url);
    tweak(&mut settings);
    // The database payq really runs on (a tweak may move it), for `verify` and direct reads.
    let db_url = settings.database_url.clone();
    let app = Application::build(settings).await.expect("payq builds");
    let base = format!("http://{}", app.local_addr());
    let admin_token = app.admin_token().to_owned();
    let sim_secret = app.sim_secret().to_owned();
    let sim = app.sim_channel();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move { app.run_until_stopped(stop).await });
    TestApp {
        base,
        admin_token,
        sim_secret,
        db_url,
        http: payq_channels::http_client().build().expect("an HTTP client"),
        sim,
        shutdown,
        db,
    }
}

/// A merchant's id and API key.
pub struct TestMerchant {
    pub id: String,
    pub key: String,
}

/// A response's status and JSON body (or `Null`).
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates a merchant with default settings adjusted by `settings`.
    pub async fn merchant_with(&self, settings: Value) -> TestMerchant {
        let r =
            self.post("/v1/merchants", &self.admin_token, json!({ "name": "Test Shop", "settings": settings })).await;
        assert_eq!(r.status, 201, "{}", r.body);
        TestMerchant {
            id: r.body["id"].as_str().expect("id").to_owned(),
            key: r.body["api_key"].as_str().expect("api_key").to_owned(),
        }
    }

    pub async fn merchant(&self) -> TestMerchant {
        self.merchant_with(json!({})).await
    }

    /// Creates an order of `amount` CNY and returns its JSON.
    pub async fn order(&self, m: &TestMerchant, no: &str, amount: i64) -> Value {
        self.order_with(m, json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY" })).await
    }

    pub async fn order_with(&self, m: &TestMerchant, body: Value) -> Value {
        let r = self.post("/v1/orders", &m.key, body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body
    }

    /// Pays an order through `sim` with `simulate`, expecting `202 paying`.
    pub async fn pay(&self, m: &TestMerchant, order_id: &str, simulate: Value) -> Value {
        let r = self
            .post(&format!("/v1/orders/{order_id}/pay"), &m.key, json!({ "channel": "sim", "simulate": simulate }))
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body["status"], "paying");
        r.body
    }

    /// Creates and pays an order, waiting until it is `paid`.
    pub async fn paid_order(&self, m: &TestMerchant, no: &str, amount: i64) -> Value {
        let order = self.order(m, no, amount).await;
        let id = order["id"].as_str().expect("id").to_owned();
        self.pay(m, &id, json!({})).await;
        self.wait_order(m, &id, "paid").await
    }

    /// Polls the order until it has `status`, for at most 10 s; if it never does, fails
    /// with the order, its pending messages and the dead letters (to tell a slow machine
    /// from a lost step).
    pub async fn wait_order(&self, m: &TestMerchant, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/v1/orders/{id}"), &m.key).await;
            if r.body["status"] == status {
                return r.body;
            }
            if tokio::time::Instant::now() >= deadline {
                let mut conn = self.db.connect().await;
                let pending: Vec<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT kind, COALESCE(key, ''), due_at, attempts FROM messages ORDER BY due_at LIMIT 20",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap_or_default();
                let dead = self.get("/v1/admin/dead-letters", &self.admin_token).await.body;
                panic!(
                    "order {id} never became {status} within 10 s\norder: {}\npending: {pending:?}\ndead letters: {dead}",
                    r.body
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the refund until it has `status`.
    pub async fn wait_refund(&self, m: &TestMerchant, id: &str, status: &str) -> Value {
        eventually(&format!("refund {id} becomes {status}"), || async {
            let r = self.get(&format!("/v1/refunds/{id}"), &m.key).await;
            (r.body["status"] == status).then_some(r.body)
        })
        .await
    }

    /// All of the merchant's events, oldest first.
    pub async fn events(&self, m: &TestMerchant) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/events?limit=100&after={a}"),
                None => "/v1/events?limit=100".to_owned(),
            };
            let r = self.get(&path, &m.key).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page = r.body["data"].as_array().cloned().unwrap_or_default();
            after = page.last().and_then(|e| e["id"].as_str()).map(str::to_owned);
            out.extend(page);
            if r.body["has_more"] != true {
                return out;
            }
        }
    }

    /// The event types recorded for an order, oldest first.
    pub async fn event_types(&self, m: &TestMerchant, order_id: &str) -> Vec<String> {
        self.events(m)
            .await
            .into_iter()
            .filter(|e| e["data"]["order"]["id"] == order_id)
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    }

    /// Posts a simulated-channel callback signed with `secret` at unix time `t`.
    pub async fn notify_signed(&self, body: &Value, secret: &str, t: i64) -> Reply {
        let raw = serde_json::to_vec(body).expect("json");
        let r = self
            .http
            .post(self.url("/v1/channels/sim/notify"))
            .header("content-type", "application/json")
            .header("sim-signature", crypto::signature_header(secret, t, &raw))
            .body(raw)
            .send()
            .await
            .expect("sent");
        reply(r).await
    }

    /// The due times (unix ms) of the messages of `kind` still pending for `key`: what is
    /// still to come for it. Negative tests assert on this instead of waiting to see that
    /// nothing happens.
    pub async fn pending(&self, kind: &str, key: &str) -> Vec<i64> {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT due_at FROM messages WHERE kind = '{kind}' AND key = '{key}' ORDER BY due_at"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("pending messages")
    }

    /// How many of the simulated channel's payments have not settled yet.
    pub async fn sim_unsettled(&self) -> i64 {
        let mut conn = self.db.connect().await;
        sqlx::query_scalar("SELECT COUNT(*) FROM sim_channel_txns WHERE status = 'pending'")
            .fetch_one(&mut conn)
            .await
            .expect("count")
    }

    /// A fingerprint of every table: row counts and the sum of versions. Equal
    /// fingerprints mean nothing was written.
    pub async fn db_fingerprint(&self) -> Vec<(String, i64)> {
        let mut conn = self.db.connect().await;
        let mut out = Vec::new();
        for table in [
            "merchants",
            "orders",
            "payments",
            "refunds",
            "inventory",
            "events",
            "messages",
            "dead_letters",
            "sim_channel_txns",
        ] {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .expect("count");
            out.push((table.to_owned(), n));
        }
        for table in ["orders", "refunds"] {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM {table}"
            )))
            .fetch_one(&mut conn)
            .await
            .expect("sum");
            out.push((format!("{table}.version"), n));
        }
        let inv: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(available), 0) AS BIGINT) FROM inventory")
            .fetch_one(&mut conn)
            .await
            .expect("sum");
        out.push(("inventory.available".into(), inv));
        out
    }

    /// Runs `payq verify` on this app's database and returns its exit code and output.
    /// payq with `secrets_key` and `tweak`, and a merchant (refund review `100ms`) set up
    /// with `channel`'s `credentials`: the start of every real-channel test.
    pub async fn with_channel(
        secrets_key: &str,
        tweak: impl FnOnce(&mut Settings),
        channel: &str,
        credentials: Value,
    ) -> (TestApp, TestMerchant) {
        let app = spawn_app_with(|s| {
            s.secrets_key = Some(secrets_key.into());
            tweak(s);
        })
        .await;
        let m = app.merchant_with(serde_json::json!({ "refund_review": "100ms" })).await;
        let r = app
            .send(
                reqwest::Method::PATCH,
                &format!("/v1/merchants/{}", m.id),
                Some(&app.admin_token),
                Some(serde_json::json!({ "channels": { channel: credentials } })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        (app, m)
    }

    /// Creates a CNY order of `amount` fen (with `payment_timeout` when given) and pays it
    /// through `channel`; the `202` answer.
    pub async fn pay_through(
        &self,
        m: &TestMerchant,
        channel: &str,
        no: &str,
        amount: i64,
        timeout: Option<&str>,
    ) -> Value {
        let mut body = serde_json::json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY",
                                           "description": "Tea, 2 boxes" });
        if let Some(t) = timeout {
            body["payment_timeout"] = serde_json::json!(t);
        }
        let order = self.order_with(m, body).await;
        let id = order["id"].as_str().unwrap_or_default();
        let r = self.post(&format!("/v1/orders/{id}/pay"), &m.key, serde_json::json!({ "channel": channel })).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body["status"], "paying");
        r.body
    }

    /// What a channel's notification could change: every table's rows but the message
    /// queue, whose follow-up work (event deliveries, a payment request's completion) goes
    /// on by itself.
    pub async fn notification_state(&self) -> Vec<(String, i64)> {
        self.db_fingerprint().await.into_iter().filter(|(table, _)| table != "messages").collect()
    }

    pub fn verify(&self) -> (i32, String) {
        verify_db(&self.db_url)
    }
}

/// Runs `payq verify` on a database and returns its exit code and output.
pub fn verify_db(db_url: &str) -> (i32, String) {
    let out = payq_cli(&["verify", "--database-url", db_url]);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the real `payq` binary with `args` (no configuration file) and returns what it did.
pub fn payq_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .args(args)
        .env_remove("PAYQ_CONFIG")
        .output()
        .expect("the payq binary runs")
}

pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, content_type, headers }
}

/// Polls `probe` every 25 ms until it yields a value, failing after 10 s.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(10), probe).await
}

/// [`eventually`] with a deadline of `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asserts a problem response with `status` and `code`.
pub fn assert_problem(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(r.body["code"], code, "body: {}", r.body);
    assert_eq!(r.body["status"], status);
    assert!(r.content_type.starts_with("application/problem+json"), "content-type {}", r.content_type);
    assert!(r.body["title"].is_string() && r.body["detail"].is_string() && r.body["type"].is_string());
}

/// An order's id and its payment's id.
pub fn order_and_payment_ids(order: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&order["id"]), text(&order["payment"]["id"]))
}
