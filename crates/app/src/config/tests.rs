//! The settings' defaults, layering and checks.

use super::*;

#[test]
fn schedule_parses() {
    let s = parse_schedule("15s, 30s,3m").unwrap_or_default();
    assert_eq!(s.iter().map(|d| d.as_millis()).collect::<Vec<_>>(), vec![15_000, 30_000, 180_000]);
    assert!(parse_schedule("15s,bogus").is_err());
}

#[test]
fn flags_override_defaults() {
    let s = Settings::load(Some(PathBuf::from("/nonexistent.toml")), &[]);
    assert!(s.is_err(), "an explicit config file that is missing is an error");
    let s = Settings::load(None, &[("listen", "127.0.0.1:9999".into())]).map(|s| s.listen);
    assert_eq!(s.ok().as_deref(), Some("127.0.0.1:9999"));
}

#[test]
fn the_delay_engine_is_one_of_four_and_auto_follows_the_broker() {
    for name in ["auto", "store", "rabbitmq", "rabbitmq-plugin"] {
        let engine = DelayEngine::try_from(name.to_owned()).map(DelayEngine::as_str);
        assert_eq!(engine, Ok(name));
    }
    assert_eq!(DelayEngine::try_from(String::new()), Ok(DelayEngine::Auto));
    let err = DelayEngine::try_from("redis".to_owned()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("unknown delay engine \"redis\"") && err.contains("rabbitmq-plugin"), "{err}");
    let mut s = Settings::default();
    assert_eq!(s.delay_engine(), DelayEngine::Store);
    s.amqp_url = Some("amqp://127.0.0.1:5672".into());
    assert_eq!(s.delay_engine(), DelayEngine::Rabbitmq);
    s.delay.engine = DelayEngine::RabbitmqPlugin;
    assert_eq!(s.delay_engine(), DelayEngine::RabbitmqPlugin);
    let loaded = Settings::load(None, &[("delay.engine", "bogus".into())]);
    assert!(loaded.is_err(), "an unknown engine is refused when the settings load");
}
