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
