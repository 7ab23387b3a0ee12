//! Clean shutdown: `payq serve` stopped by SIGTERM with work in hand finishes it, closes its
//! store and exits 0 without a warning or an error; a restart on the same database finds
//! every order where it was and `payq verify` passes.

use crate::crash::{ADMIN, call, listening_address, merchant, order_paid};
use crate::receiver::Receiver;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `payq serve` on `db_url`, its log (every level from INFO) written to `log`.
fn serve(db_url: &str, log: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payq"))
        .arg("serve")
        .env("PAYQ_DATABASE_URL", db_url)
        .env("PAYQ_LISTEN", "127.0.0.1:0")
        .env("PAYQ_ADMIN_TOKEN", ADMIN)
        .env("PAYQ_SIM_SECRET", "shutdown-sim-secret")
        .env("PAYQ_WEBHOOK__ALLOW_PRIVATE", "true")
        .env("PAYQ_LOG", "info")
        .env_remove("PAYQ_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).expect("log file")))
        .spawn()
        .expect("payq serve starts");
    let base = listening_address(&mut child);
    (child, base)
}

/// Sends SIGTERM and waits up to `limit` for the process to exit.
fn terminate(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(sent.success(), "SIGTERM sent");
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("payq serve did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log's lines at WARN or ERROR.
fn warnings(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_work_in_hand_exits_cleanly_and_quietly() {
    let db = crate::db::TestDb::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("serve.log");
    let hook = Receiver::start().await;
    let http = payq_channels::http_client().build().expect("an HTTP client");
    let (mut child, base) = serve(&db.url, &log);
    let key = merchant(&http, &base, &hook.url, json!({ "payment_timeout": "1h" })).await;
    // Payments whose callbacks are still on their way, and webhooks to deliver.
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(order_paid(&http, &base, &key, &format!("S-{i}"), 100 + i, json!({ "callback_delay": "50ms" })).await);
    }
    let status = terminate(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("shutting down"), "{text}");
    assert_eq!(warnings(&log), Vec::<String>::new(), "{text}");

    // Nothing was lost: every order is there after a restart and settles, and verify passes.
    let (mut child, base) = serve(&db.url, &dir.path().join("again.log"));
    for id in &ids {
        crate::helpers::eventually(&format!("order {id} is paid after the restart"), || async {
            let (_, o) = call(&http, reqwest::Method::GET, format!("{base}/v1/orders/{id}"), &key, None).await;
            (o["status"] == "paid").then_some(())
        })
        .await;
    }
    let status = terminate(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    let (code, out) = crate::helpers::verify_db(&db.url);
    assert_eq!(code, 0, "{out}");
}
