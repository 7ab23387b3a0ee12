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
    assert!(stdout.lines().next().is_some_and(|h| h.contains("| kind ") && h.contains("| due ")), "a table: {stdout}");

    let stats = payq_cli(&["timers", "stats", "--database-url", db]);
    let stdout = String::from_utf8_lossy(&stats.stdout);
    assert_eq!(stats.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("pending: 1 "), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("| payment.timeout ") && l.contains("| 1 ")), "{stdout}");
    assert!(!stdout.contains('{'), "tables, not JSON: {stdout}");

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

#[test]
fn a_mistyped_setting_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |toml: &str, env: &[(&str, &str)]| {
        let file = dir.path().join("payq.toml");
        std::fs::write(&file, toml).expect("config written");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
            .args(["--config", &file.display().to_string(), "verify", "--database-url", "sqlite://nowhere/payq.db"])
            .envs(env.iter().copied())
            .output()
            .expect("payq runs");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run("listne = \"127.0.0.1:9999\"\n", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown setting `listne`") && err.contains("listen"), "{err}");
    let (code, err) = run("[risk]\nmax_amont = 5\n", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown setting `risk.max_amont`") && err.contains("max_amount"), "{err}");
    let (code, err) = run("", &[("PAYQ_RISK__MAX_AMONT", "5")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown setting `risk.max_amont`"), "{err}");
    // A value outside a setting's choices names the choices.
    let (code, err) = run("role = \"boss\"\n", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown role \"boss\": use api, worker, all"), "{err}");
    assert!(!err.contains("variant constructor"), "{err}");
    // Known settings pass this check (and the command goes on to its own error).
    let (_, err) = run("listen = \"127.0.0.1:9999\"\n[risk]\nmax_amount = 5\n", &[("PAYQ_RISK__MAX_AMOUNT", "7")]);
    assert!(!err.contains("unknown setting"), "{err}");
}

/// `payq load --pay --webhook` runs the whole lifecycle against a real payq: every order is
/// created, paid through `sim`, and its `payment.succeeded` webhook reaches the load
/// generator's own endpoint, which it waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_webhooks_receives_one_payment_succeeded_per_order() {
    let app = crate::helpers::spawn_app().await;
    let (base, token) = (app.base.clone(), app.admin_token.clone());
    let out = tokio::task::spawn_blocking(move || {
        let orders = ["--orders", "20", "--concurrency", "4", "--pay", "--webhook"];
        payq_cli(&[&["load", "--url", &base, "--admin-token", &token][..], &orders[..]].concat())
    })
    .await
    .expect("payq load ran");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("errors 0") && text.contains("webhooks: 20 of 20 payment.succeeded received"), "{text}");
}
