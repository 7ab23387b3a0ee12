use crate::helpers::spawn_app;

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
