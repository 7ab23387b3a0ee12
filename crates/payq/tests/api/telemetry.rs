//! Telemetry of a real `payq serve` process (its own metrics recorder and log output):
//! every metric described and present from the start, process metrics, an access-log line
//! per request carrying its request id, no colour codes in a log file, and valid JSON lines
//! only in JSON mode.

use crate::helpers::eventually;
use payq_app::telemetry::{METRICS, MetricKind};
use std::process::{Child, Command, Stdio};

/// `payq serve` on a fresh SQLite file with `env`, its stderr written to a file.
struct LoggedServer {
    child: Child,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl LoggedServer {
    fn start(env: &[(&str, &str)]) -> LoggedServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("payq.log");
        let child = Command::new(env!("CARGO_BIN_EXE_payq"))
            .arg("serve")
            .env("PAYQ_DATABASE_URL", format!("sqlite://{}", dir.path().join("payq.db").display()))
            .env("PAYQ_LISTEN", "127.0.0.1:0")
            .env("PAYQ_ADMIN_TOKEN", "telemetry-admin-token")
            .env_remove("PAYQ_CONFIG")
            .env_remove("PAYQ_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("payq serve starts");
        LoggedServer { child, _dir: dir, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The base URL, from the start-up log line (`addr=` in text, `listen` in JSON).
    async fn base(&self) -> String {
        eventually("payq logs that it started", || async {
            let text = self.log_text();
            let line = text.lines().find(|l| l.contains("payq started"))?.to_owned();
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
                return json["fields"]["listen"].as_str().map(str::to_owned);
            }
            let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
            Some(format!("http://{addr}"))
        })
        .await
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text `/metrics` answers.
async fn scrape(base: &str) -> String {
    let client = payq_channels::http_client().build().expect("an HTTP client");
    let answer = client.get(format!("{base}/metrics")).send().await.expect("scraped");
    answer.text().await.expect("text")
}

#[tokio::test]
async fn every_metric_is_described_and_counters_and_gauges_read_0_from_the_start() {
    let server = LoggedServer::start(&[]);
    let base = server.base().await;
    let text = scrape(&base).await;
    for &(name, kind, _) in METRICS {
        if kind == MetricKind::Histogram || name == "payq_http_requests_total" {
            continue; // these appear with their first observation (the route is a label)
        }
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}:\n{text}");
        assert!(text.lines().any(|l| l.starts_with(name) && l.ends_with(" 0")), "{name} is not at 0:\n{text}");
    }
    for line in [
        "payq_dead_letters 0",
        "payq_messages_pending 0",
        r#"payq_webhook_deliveries_total{outcome="delivered"} 0"#,
        r#"payq_messages_fired_total{kind="payment.timeout"} 0"#,
        r#"payq_messages_failed_total{kind="webhook.deliver"} 0"#,
        r#"payq_reconciliation_discrepancies{channel="alipay",kind="missing_in_payq"} 0"#,
        r#"payq_reconciliation_discrepancies{channel="wechatpay",kind="amount_mismatch"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}:\n{text}");
    }
    for process in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        assert!(text.contains(&format!("# HELP {process} ")), "no {process}:\n{text}");
    }
    // Those are described too, once observed.
    let text = scrape(&base).await;
    assert!(text.contains("# HELP payq_http_request_duration_seconds "), "{text}");
    assert!(text.contains("# HELP payq_http_requests_total "), "{text}");
}

#[tokio::test]
async fn each_request_is_logged_once_with_its_request_id_and_the_log_file_has_no_colour_codes() {
    let server = LoggedServer::start(&[("PAYQ_LOG", "info")]);
    let base = server.base().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let r = http.get(format!("{base}/v1/orders")).header("x-request-id", "req-telemetry-1").send().await;
    let r = r.expect("sent");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some("req-telemetry-1"));
    // A request without an id gets one, echoed back.
    let r = http.get(format!("{base}/healthz")).send().await.expect("sent");
    let generated = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated:?}");

    let line = eventually("the access log names the request", || async {
        server.log_text().lines().find(|l| l.contains("req-telemetry-1")).map(str::to_owned)
    })
    .await;
    assert!(line.contains("status=401") && line.contains("path=/v1/orders"), "{line}");
    assert!(line.contains("method=GET") && line.contains("latency="), "{line}");
    let text = server.log_text();
    assert_eq!(text.lines().filter(|l| l.contains("req-telemetry-1")).count(), 1, "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a log file:\n{text}");
    assert!(!text.contains("sqlx"), "sqlx's routine logs stay below warn:\n{text}");
}

#[tokio::test]
async fn in_json_mode_every_log_line_is_one_json_object_with_one_message() {
    let server = LoggedServer::start(&[("PAYQ_LOG", "info"), ("PAYQ_LOG_FORMAT", "json")]);
    let base = server.base().await;
    let r = payq_channels::http_client()
        .build()
        .expect("an HTTP client")
        .get(format!("{base}/v1/orders"))
        .header("x-request-id", "req-json-1")
        .send()
        .await;
    assert_eq!(r.expect("sent").status(), 401);
    eventually("the request is logged", || async { server.log_text().contains("req-json-1").then_some(()) }).await;
    let text = server.log_text();
    for line in text.lines() {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        assert!(json["fields"]["message"].is_string(), "{line}");
        assert_eq!(line.matches("\"message\"").count(), 1, "one message per line: {line}");
    }
    let access = text.lines().find(|l| l.contains("req-json-1")).unwrap_or_default();
    let access: serde_json::Value = serde_json::from_str(access).unwrap_or_default();
    assert_eq!(access["span"]["request_id"], "req-json-1", "{access}");
    assert_eq!(access["fields"]["status"], 401, "{access}");
}
