//! Security findings, each asserting the fixed behaviour (docs/security.md): redirects are
//! never followed, secrets stay out of the database and of every output, only authenticated
//! requests leave idempotency records, `/metrics` stays bounded, every bound's edge is
//! accepted and one past it refused with nothing stored, and signature timestamps far from
//! now are refused without arithmetic overflow.

use crate::helpers::{assert_problem, eventually, reply, spawn_app, spawn_app_with};
use crate::receiver::Receiver;
use payq_domain::Timestamp;
use serde_json::json;

#[tokio::test]
async fn a_redirecting_webhook_is_a_failed_attempt_and_its_target_gets_nothing() {
    let target = Receiver::start().await;
    let redirect_to = target.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let redirector = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move || {
        let to = redirect_to.clone();
        async move { (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, to)]) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let app = spawn_app_with(|s| s.webhook.retry_schedule = "50ms,50ms".into()).await;
    let r = app.post("/v1/merchants", &app.admin_token, json!({ "name": "R", "webhook_url": redirector })).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = crate::helpers::TestMerchant {
        id: r.body["id"].as_str().unwrap_or_default().into(),
        key: r.body["api_key"].as_str().unwrap_or_default().into(),
    };
    app.order(&m, "R-1", 100).await;
    let dead = eventually("the redirected delivery is dead-lettered", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(dead["kind"], "webhook.deliver");
    assert_eq!(dead["attempts"], 3, "1 + 2 retries, each a failure");
    assert!(dead["last_error"].as_str().is_some_and(|e| e.contains("302")), "{dead}");
    assert!(target.log().is_empty(), "the redirect target received {:?}", target.log());
}

#[tokio::test]
async fn secrets_are_not_stored_in_idempotent_responses() {
    let app = spawn_app().await;
    let body = json!({ "name": "Keyed Shop" });
    let send = || {
        app.http
            .post(app.url("/v1/merchants"))
            .bearer_auth(&app.admin_token)
            .header("idempotency-key", "merchant-1")
            .json(&body)
            .send()
    };
    let first = send().await.expect("sent");
    assert_eq!(first.status().as_u16(), 201);
    let first: serde_json::Value = first.json().await.expect("json");
    let key = first["api_key"].as_str().expect("api key shown once").to_owned();
    let secret = first["webhook_secret"].as_str().expect("secret shown once").to_owned();

    let replay: serde_json::Value = send().await.expect("sent").json().await.expect("json");
    assert_eq!(replay["id"], first["id"], "the replay names the same merchant");
    assert!(replay.get("api_key").is_none() && replay.get("webhook_secret").is_none(), "{replay}");

    // Nowhere in the database but `merchants.webhook_secret` (which signs webhooks).
    let mut conn = app.db.connect().await;
    for (table, column) in [("idempotency_keys", "response"), ("events", "body"), ("merchants", "name")] {
        let texts: Vec<Option<String>> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {column} FROM {table}")))
                .fetch_all(&mut conn)
                .await
                .expect("read");
        for text in texts.into_iter().flatten() {
            assert!(!text.contains(&key) && !text.contains(&secret), "{table}.{column} holds a secret");
        }
    }
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT api_key_hash FROM merchants").fetch_all(&mut conn).await.expect("read");
    assert!(hashes.iter().all(|h| h != &key), "the API key is stored hashed");
}

#[tokio::test]
async fn anonymous_posts_with_keys_leave_nothing_behind() {
    let app = spawn_app().await;
    for i in 0..20 {
        let r = app
            .http
            .post(app.url("/v1/orders"))
            .header("idempotency-key", format!("anon-{i}"))
            .bearer_auth(if i % 2 == 0 { "sk_nobody_nothing" } else { "" })
            .json(&json!({ "merchant_order_no": "A", "amount": 1, "currency": "CNY" }))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status().as_u16(), 401);
    }
    let mut conn = app.db.connect().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys").fetch_one(&mut conn).await.expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn metrics_labels_come_from_fixed_sets() {
    let app = spawn_app().await;
    let size =
        || async { app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text").len() };
    for i in 0..5 {
        let method = reqwest::Method::from_bytes(format!("WARMUP{i}").as_bytes()).expect("method");
        let _ = app.http.request(method, app.url("/v1/orders")).send().await;
    }
    let before = size().await;
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).expect("method");
        let _ = app.http.request(method, app.url(&format!("/v1/nothing/{i}"))).send().await;
    }
    let after = size().await;
    assert!(after < before + 2_000, "/metrics grew from {before} to {after} bytes");
    let text = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(!text.contains("INVENTED"), "an invented method became a label");
}

#[tokio::test]
async fn each_bound_accepts_its_edge_and_refuses_one_past_it() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let order = |no: &str, amount: i64| json!({ "merchant_order_no": no, "amount": amount, "currency": "CNY" });
    assert_eq!(app.post("/v1/orders", &m.key, order("edge-1", 1)).await.status, 201);
    assert_eq!(app.post("/v1/orders", &m.key, order("edge-max", 1_000_000_000_000)).await.status, 201);
    let with_timeout = |t: &str| json!({ "merchant_order_no": format!("t-{t}"), "amount": 1, "currency": "CNY", "payment_timeout": t });
    let shortest = app.post("/v1/orders", &m.key, with_timeout("100ms")).await;
    assert_eq!(shortest.status, 201, "{}", shortest.body);
    assert_eq!(app.post("/v1/orders", &m.key, with_timeout("365d")).await.status, 201);
    // The order with the shortest timeout closes by itself; let it, before comparing.
    app.wait_order(&m, shortest.body["id"].as_str().unwrap_or_default(), "closed").await;
    let settings = |s: serde_json::Value| json!({ "name": "Bounds", "settings": s });
    for edge in
        [json!({ "ship_deadline": "100ms" }), json!({ "refund_review": "365d" }), json!({ "ship_reminder_max": 20 })]
    {
        let r = app.post("/v1/merchants", &app.admin_token, settings(edge.clone())).await;
        assert_eq!(r.status, 201, "{edge}: {}", r.body);
    }

    let before = app.db_fingerprint().await;
    let past = [
        order("past-max", 1_000_000_000_001),
        order("past-zero", 0),
        order("past-i64", i64::MAX),
        with_timeout("99ms"),
        with_timeout("366d"),
        order("bad\u{7}bell", 1),
        json!({ "merchant_order_no": "sku-1", "amount": 1, "currency": "CNY", "items": [{ "sku": "a\r\nb", "quantity": 1 }] }),
        json!({ "merchant_order_no": "sku-2", "amount": 1, "currency": "CNY", "items": [{ "sku": "a\u{0}", "quantity": 1 }] }),
    ];
    for body in past {
        assert_problem(&app.post("/v1/orders", &m.key, body).await, 400, "validation_failed");
    }
    for bad in [
        json!({ "ship_deadline": "1s", "ship_reminder_interval": "99ms" }),
        json!({ "refund_review": "366d" }),
        json!({ "ship_reminder_max": 21 }),
        json!({ "ship_reminder_max": 4_294_967_295u64 }),
    ] {
        let r = app.post("/v1/merchants", &app.admin_token, settings(bad.clone())).await;
        assert_problem(&r, 400, "validation_failed");
    }
    let r = app
        .http
        .post(app.url("/v1/orders"))
        .bearer_auth(&m.key)
        .header("idempotency-key", "tab\tinside")
        .json(&order("keyed", 1))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(app.db_fingerprint().await, before, "refused input stored nothing");
}

#[tokio::test]
async fn a_callback_timestamp_far_from_now_is_refused() {
    let app = spawn_app().await;
    let note = json!({ "payment_id": "pay_01a22b16067a71e491094d2f55bfd88d", "txn_id": "sim_x", "status": "succeeded", "amount": 1, "currency": "CNY", "failure_reason": null });
    let now = Timestamp::now().unix_seconds();
    let before = app.db_fingerprint().await;
    for t in [now.wrapping_add(i64::MIN), i64::MIN, i64::MAX, now - (1 << 62)] {
        assert_problem(&app.notify_signed(&note, &app.sim_secret, t).await, 401, "unauthorized");
    }
    assert_eq!(app.db_fingerprint().await, before);
}

fn payq(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .args(args)
        .env_remove("PAYQ_CONFIG")
        .env_remove("PAYQ_ADMIN_TOKEN")
        .env_remove("PAYQ_DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("payq runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn secrets_never_show_in_output_and_the_sqlite_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("private.db");
    let (ok, out) = payq(&["migrate", "--database-url", &format!("sqlite://{}", db.display())], &[]);
    assert!(ok, "{out}");
    let mode = std::fs::metadata(&db).expect("database file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "database file mode {mode:o}");

    let (ok, out) = payq(&["verify", "--database-url", "postgres://payq:hunter2-secret@127.0.0.1:1/payq"], &[]);
    assert!(!ok, "{out}");
    assert!(!out.contains("hunter2-secret") && out.contains("payq:***@"), "{out}");

    let (_, out) = payq(&["load", "--help"], &[("PAYQ_ADMIN_TOKEN", "tok-hunter2-very-secret")]);
    assert!(!out.contains("hunter2"), "{out}");
    let (_, out) = payq(&["demo", "--help"], &[("PAYQ_ADMIN_TOKEN", "tok-hunter2-very-secret")]);
    assert!(!out.contains("hunter2"), "{out}");

    let url = format!("sqlite://{}", dir.path().join("short.db").display());
    let (ok, out) =
        payq(&["serve", "--listen", "127.0.0.1:0", "--database-url", &url], &[("PAYQ_ADMIN_TOKEN", "short")]);
    assert!(!ok && out.contains("too short"), "{out}");
}

#[tokio::test]
async fn internal_webhook_urls_are_refused_at_creation_and_at_delivery() {
    let app = spawn_app_with(|s| {
        s.webhook.allow_private = false;
        s.webhook.retry_schedule = "50ms".into();
    })
    .await;
    let before = app.db_fingerprint().await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://0.0.0.0/hook",
        "http://2130706433/hook",
        "http://0x7f000001/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "http://user:pass@93.184.215.14/hook",
        "ftp://93.184.215.14/hook",
    ] {
        let r = app.post("/v1/merchants", &app.admin_token, json!({ "name": "S", "webhook_url": url })).await;
        assert_problem(&r, 400, "invalid_request");
    }
    assert_eq!(app.db_fingerprint().await, before, "no merchant was created");

    // A URL accepted while public, then pointed at an internal address: the delivery is
    // refused at delivery time, the internal endpoint receives nothing, and the delivery
    // ends dead-lettered.
    let internal = Receiver::start().await;
    let r = app
        .post("/v1/merchants", &app.admin_token, json!({ "name": "S", "webhook_url": "http://93.184.215.14/hook" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let m = crate::helpers::TestMerchant {
        id: r.body["id"].as_str().unwrap_or_default().into(),
        key: r.body["api_key"].as_str().unwrap_or_default().into(),
    };
    let mut conn = app.db.connect().await;
    sqlx::query("UPDATE merchants SET webhook_url = $1 WHERE id = $2")
        .bind(&internal.url)
        .bind(&m.id)
        .execute(&mut conn)
        .await
        .expect("repoint the URL");
    app.order(&m, "S-1", 100).await;
    let dead = eventually("the refused delivery is dead-lettered", || async {
        let r = app.get("/v1/admin/dead-letters", &app.admin_token).await;
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert!(dead["last_error"].as_str().is_some_and(|e| e.contains("not publicly routable")), "{dead}");
    assert!(internal.log().is_empty(), "the internal endpoint was called");
}

#[tokio::test]
async fn framework_errors_are_problems_too() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let r = app.send(reqwest::Method::DELETE, "/v1/orders", Some(&m.key), None).await;
    assert_problem(&r, 405, "method_not_allowed");
    assert!(r.headers.get("allow").is_some(), "405 keeps its Allow header");
    let r = app.send(reqwest::Method::PUT, "/healthz", None, None).await;
    assert_problem(&r, 405, "method_not_allowed");
    assert_problem(&app.get("/v1/orders/%FF%FE", &m.key).await, 400, "invalid_request");
    assert_problem(&app.get("/v1/orders?limit=abc", &m.key).await, 400, "invalid_request");
    // Past payq's request limits: 414 for an 8 KiB URI, 431 for 32 KiB of headers.
    let long = format!("/v1/orders?after={}", "a".repeat(9 * 1024));
    assert_problem(&app.get(&long, &m.key).await, 414, "uri_too_long");
    let big = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("x-padding", "p".repeat(40 * 1024))
        .send()
        .await
        .expect("payq answers");
    assert_problem(&reply(big).await, 431, "headers_too_large");
    let mut many = app.http.get(format!("{}/healthz", app.base));
    for i in 0..80 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let many = many.send().await.expect("payq answers");
    assert_problem(&reply(many).await, 431, "headers_too_large");
}
