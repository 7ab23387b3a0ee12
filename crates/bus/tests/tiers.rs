//! The tiered delay engine against the real local RabbitMQ: mixed delays published out of
//! order fire in due order, each within one step of its due time.
//!
//! Needs RabbitMQ (`PAYQ_TEST_AMQP_URL`, default guest@127.0.0.1:5672). Without one the
//! test is skipped locally and fails under CI (`CI` set).

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use payq_bus::rabbit::tiers::Tiers;
use std::time::{Duration, Instant};

async fn connect() -> Option<Connection> {
    let url = std::env::var("PAYQ_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    match tokio::time::timeout(Duration::from_secs(10), Connection::connect(&url, ConnectionProperties::default()))
        .await
    {
        Ok(Ok(c)) => Some(c),
        other => {
            assert!(std::env::var_os("CI").is_none(), "RabbitMQ at {url} is required under CI: {other:?}");
            eprintln!("skipping: RabbitMQ at {url} unreachable");
            None
        }
    }
}

#[tokio::test]
async fn mixed_delays_fire_in_due_order_through_the_tiers() {
    let Some(conn) = connect().await else { return };
    let channel = conn.create_channel().await.expect("channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let unique = format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let tiers = Tiers { prefix: format!("payqtest{unique}"), base: Duration::from_millis(100), levels: 6 };
    tiers.declare(&channel).await.expect("declare");
    // Declaring twice is harmless.
    tiers.declare(&channel).await.expect("declare again");

    let target = "test.target";
    let inbox = format!("{}.inbox", tiers.prefix);
    channel
        .queue_declare(
            inbox.as_str().into(),
            QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .expect("inbox");
    channel
        .queue_bind(
            inbox.as_str().into(),
            tiers.deliver_exchange().as_str().into(),
            tiers.deliver_binding(target).as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind inbox");
    let mut consumer = channel
        .basic_consume(
            inbox.as_str().into(),
            "test".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await
        .expect("consume");

    let start = Instant::now();
    for secs in [3u64, 1, 2] {
        let key = tiers.routing_key(Duration::from_secs(secs), target).expect("key");
        channel
            .basic_publish(
                tiers.entry_exchange().as_str().into(),
                key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                secs.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
    }
    let returned = tokio::time::timeout(Duration::from_secs(10), channel.wait_for_confirms())
        .await
        .expect("confirms in time")
        .expect("confirms");
    assert!(returned.is_empty(), "every delayed message was routable");

    let mut arrivals = Vec::new();
    while arrivals.len() < 3 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("delivery");
        let secs: u64 = String::from_utf8_lossy(&delivery.data).parse().expect("body");
        arrivals.push((secs, start.elapsed()));
    }
    let order: Vec<u64> = arrivals.iter().map(|(s, _)| *s).collect();
    assert_eq!(order, [1, 2, 3], "due order, whatever the publish order");
    for (secs, at) in &arrivals {
        let due = Duration::from_secs(*secs);
        assert!(*at >= due && *at < due + Duration::from_millis(700), "{secs}s delay arrived after {at:?}");
    }

    for k in 0..tiers.levels {
        let _ = channel.queue_delete(tiers.queue(k).as_str().into(), QueueDeleteOptions::default()).await;
        let _ = channel.exchange_delete(tiers.exchange(k).as_str().into(), ExchangeDeleteOptions::default()).await;
    }
    let _ = channel.exchange_delete(tiers.deliver_exchange().as_str().into(), ExchangeDeleteOptions::default()).await;
}
