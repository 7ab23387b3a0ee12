//! `payq demo` end to end: the real binary runs its story against an in-process payq and
//! every order ends where the story says.

#[test]
fn the_demo_story_plays_out() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payq"))
        .arg("demo")
        .env_remove("PAYQ_CONFIG")
        .env_remove("PAYQ_DATABASE_URL")
        .env_remove("PAYQ_ADMIN_TOKEN")
        .output()
        .expect("payq demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 8, "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("!! ")), "{stdout}");
    assert!(stdout.contains("payment.late_refunded") && stdout.contains("merchant.ship_reminder"), "{stdout}");
}
