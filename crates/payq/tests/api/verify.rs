use crate::helpers::{payq_cli, spawn_app};

#[tokio::test]
async fn verify_passes_on_a_healthy_database_and_fails_on_a_broken_one() {
    let app = spawn_app().await;
    let m = app.merchant().await;
    let order = app.paid_order(&m, "V-1", 1000).await;
    app.order(&m, "V-2", 500).await;
    let (code, out) = app.verify();
    assert_eq!(code, 0, "{out}");

    let mut conn = app.db.connect().await;
    // An unpaid order loses its timeout; a paid order "forgets" its payment.
    sqlx::query("DELETE FROM messages WHERE kind = 'payment.timeout'").execute(&mut conn).await.expect("delete");
    sqlx::query("UPDATE orders SET status = 'closed' WHERE id = $1")
        .bind(order["id"].as_str().unwrap_or_default())
        .execute(&mut conn)
        .await
        .expect("update");
    let (code, out) = app.verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unpaid_order_has_timer"), "{out}");
    assert!(out.contains("captured_payment_accounted"), "{out}");
}

#[test]
fn verify_on_a_mistyped_sqlite_path_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-dir").join("payq.db");
    let out = payq_cli(&["verify", "--database-url", &format!("sqlite://{}", missing.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "verify must not pass on a database that does not exist");
    assert!(stderr.contains("no payq database at"), "{stderr}");
    assert!(!missing.exists() && !missing.parent().is_some_and(std::path::Path::exists), "nothing is created");
}
