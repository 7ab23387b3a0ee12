//! The command line refuses what it cannot do, with a message that says what it can.

use crate::helpers::payq_cli;

#[test]
fn bench_refuses_an_unknown_engine_and_names_the_known_ones() {
    let out = payq_cli(&["bench", "timers", "--engine", "store,bogus", "--amqp-url", ""]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "an unknown engine is an error");
    assert!(stderr.contains("unknown engine \"bogus\""), "{stderr}");
    assert!(stderr.contains("store-pg") && stderr.contains("redis"), "the known engines are listed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("| engine |"), "nothing was measured: {stdout}");
}

#[tokio::test]
async fn timers_and_dead_letters_say_what_they_found_and_refuse_unknown_kinds() {
    let app = crate::helpers::spawn_app().await;
    let m = app.merchant().await;
    app.order(&m, "CLI-1", 1000).await;
    let db = app.db_url.as_str();

    let listed = payq_cli(&["timers", "list", "--kind", "payment.timeout", "--database-url", db]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("payment.timeout"), "the order's timeout is listed: {stdout}");

    let none = payq_cli(&["timers", "list", "--kind", "refund.execute", "--database-url", db]);
    assert_eq!(none.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&none.stdout).contains("no pending messages of kind refund.execute"));

    let bogus = payq_cli(&["timers", "list", "--kind", "nonsense", "--database-url", db]);
    let stderr = String::from_utf8_lossy(&bogus.stderr);
    assert_ne!(bogus.status.code(), Some(0), "an unknown kind is an error");
    assert!(stderr.contains("unknown kind \"nonsense\"") && stderr.contains("payment.timeout"), "{stderr}");

    let dlq = payq_cli(&["dlq", "list", "--database-url", db]);
    assert_eq!(dlq.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&dlq.stdout).contains("no dead letters"));
}
