//! `payq demo` end to end: the real binary runs its story against an in-process payq and
//! every order ends where the story says.

/// Runs `payq demo` with `args` and its in-process payq, whatever the environment says.
fn demo(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .arg("demo")
        .args(args)
        .env_remove("PAYQ_CONFIG")
        .env_remove("PAYQ_DATABASE_URL")
        .env_remove("PAYQ_ADMIN_TOKEN")
        .output()
        .expect("payq demo runs")
}

/// Asserts that the demo's payq logged no warning or error: a run that went as it should
/// ends quietly, its shutdown included.
fn assert_quiet(out: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let loud: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    assert!(loud.is_empty(), "{}", loud.join("\n"));
}

#[test]
fn the_demo_story_plays_out() {
    let out = demo(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 8, "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("!! ")), "{stdout}");
    assert!(stdout.contains("payment.late_refunded") && stdout.contains("merchant.ship_reminder"), "{stdout}");
    assert_quiet(&out);
}

#[test]
fn the_alipay_demo_pays_queries_closes_and_refunds_through_a_local_gateway() {
    let out = demo(&["--channel", "alipay"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "\"type\":\"qr_code\"",
        "notification was answered 200 \"success\"",
        "alipay.trade.query: \"paid\"",
        "payment at Alipay TRADE_CLOSED",
        "Alipay refunded 880 fen",
        "(wap): pay answered 202 with next_action type \"redirect\"",
        "the browser opened Alipay's checkout page (signature checked)",
        "(app): pay answered 202 with next_action type \"alipay_app\"",
        "the Alipay app took the order string (signature checked)",
        "every step went as it should",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    assert_quiet(&out);
}

#[test]
fn the_wechatpay_demo_pays_queries_closes_and_refunds_through_a_local_gateway() {
    let out = demo(&["--channel", "wechatpay"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for step in [
        "\"type\":\"qr_code\"",
        "weixin://wxpay/bizpayurl",
        "notification was answered 204",
        "out-trade-no/{out_trade_no}: \"paid\"",
        "payment at WeChat Pay CLOSED",
        "WeChat Pay refunded 880 fen",
        "(h5): pay answered 202 with next_action type \"redirect\"",
        "the browser opened WeChat Pay's H5 page",
        "(jsapi): pay answered 202 with next_action type \"wechat_jsapi\"",
        "WeChat checked paySign against the merchant's key",
        "every step went as it should",
    ] {
        assert!(stdout.contains(step), "{step}: {stdout}");
    }
    assert!(!stdout.contains("PRIVATE KEY") && !stdout.contains("api_v3_key"), "{stdout}");
    assert_quiet(&out);
}
