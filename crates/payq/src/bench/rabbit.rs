//! The RabbitMQ peers: the two ways teams usually build delays on RabbitMQ without a plugin.
//!
//! - **per-message TTL**: one wait queue; each message carries its own `expiration` and is
//!   dead-lettered into the fired queue when it expires. RabbitMQ only expires messages at
//!   the head of a queue, so a short delay behind a long one waits for it (head-of-line
//!   blocking).
//! - **TTL+DLX fixed levels**: one wait queue per delay level with `x-message-ttl`; a delay
//!   is rounded up to the next level, so timers fire up to one level gap late.
//!
//! Messages are persistent, queues durable, publishes confirmed; the consumer of the fired
//! queue reads with auto-ack and computes lateness from the due time in the body.

use super::TimersArgs;
use super::batched::{self, InsertBatch};
use super::stats::{Fired, Report};
use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use payq_domain::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// Which peer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PerMessageTtl,
    FixedLevels,
    /// payq's plugin-free tiers (`delay.engine = "rabbitmq"`), the default queue type:
    /// classic queues with TTL 100 ms × 2^k, dead-lettering at most once from tier to tier.
    Tiers,
    /// The same tiers as quorum queues, dead-lettering at least once.
    QuorumTiers,
}

/// Delay levels of the fixed-level setup, in milliseconds.
const LEVELS_MS: [u64; 7] = [100, 250, 500, 1_000, 2_000, 5_000, 10_000];
/// Longest wait for a batch of confirms (a confirm in flight when the connection drops
/// never resolves).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

impl Mode {
    fn engine(self) -> &'static str {
        match self {
            Mode::PerMessageTtl => "RabbitMQ per-message TTL",
            Mode::FixedLevels => "RabbitMQ TTL+DLX levels",
            Mode::Tiers => "RabbitMQ tiers (payq, classic)",
            Mode::QuorumTiers => "RabbitMQ tiers (payq, quorum)",
        }
    }
}

struct Peer {
    mode: Mode,
    tiers: Option<payq_bus::rabbit::tiers::Tiers>,
    channel: Channel,
    wait_queues: Vec<String>,
    fired_queue: String,
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

impl Peer {
    async fn declare(conn: &Connection, mode: Mode) -> anyhow::Result<Peer> {
        let channel = conn.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let name = match mode {
            Mode::PerMessageTtl => "ttl",
            Mode::FixedLevels => "levels",
            Mode::Tiers => "tiers",
            Mode::QuorumTiers => "qtiers",
        };
        let prefix = format!("payq.bench.{name}.{}", std::process::id());
        let fired_queue = format!("{prefix}.fired");
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(fired_queue.as_str().into(), durable, FieldTable::default()).await?;
        let dlx = [
            ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from(""))),
            ("x-dead-letter-routing-key", AMQPValue::LongString(LongString::from(fired_queue.as_str()))),
        ];
        let mut wait_queues = Vec::new();
        let mut tiers = None;
        match mode {
            Mode::Tiers | Mode::QuorumTiers => {
                let mut t = payq_bus::rabbit::tiers::Tiers::new(prefix.clone());
                if mode == Mode::QuorumTiers {
                    t.queue_type = payq_bus::rabbit::tiers::TierQueueType::Quorum;
                }
                t.declare(&channel).await?;
                channel
                    .queue_bind(
                        fired_queue.as_str().into(),
                        t.deliver_exchange().as_str().into(),
                        t.deliver_binding(&fired_queue).as_str().into(),
                        Default::default(),
                        FieldTable::default(),
                    )
                    .await?;
                wait_queues.extend((0..t.levels).map(|k| t.queue(k)));
                tiers = Some(t);
            }
            Mode::PerMessageTtl => {
                let q = format!("{prefix}.wait");
                channel.queue_declare(q.as_str().into(), durable, table(&dlx)).await?;
                wait_queues.push(q);
            }
            Mode::FixedLevels => {
                for ms in LEVELS_MS {
                    let q = format!("{prefix}.wait.{ms}");
                    let mut args = dlx.to_vec();
                    args.push(("x-message-ttl", AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(0))));
                    channel.queue_declare(q.as_str().into(), durable, table(&args)).await?;
                    wait_queues.push(q);
                }
            }
        }
        Ok(Peer { mode, tiers, channel, wait_queues, fired_queue })
    }

    /// Publishes a timer of `delay_ms`; the body is its due time (Unix ms).
    async fn publish(&self, delay_ms: u64) -> anyhow::Result<()> {
        let due = Timestamp::now().millis() + i64::try_from(delay_ms).unwrap_or(0);
        let mut props = BasicProperties::default().with_delivery_mode(2);
        let (exchange, routing_key) = match (self.mode, &self.tiers) {
            (Mode::Tiers | Mode::QuorumTiers, Some(t)) => {
                let route = t.route(Duration::from_millis(delay_ms))?;
                let mut headers = FieldTable::default();
                for (name, value) in route.headers {
                    headers.insert(name.into(), value);
                }
                props = props.with_headers(headers);
                (route.exchange, self.fired_queue.clone())
            }
            (Mode::PerMessageTtl, _) => {
                props = props.with_expiration(delay_ms.to_string().into());
                (String::new(), self.wait_queues[0].clone())
            }
            _ => {
                let level = LEVELS_MS.iter().position(|l| *l >= delay_ms).unwrap_or(LEVELS_MS.len() - 1);
                (String::new(), self.wait_queues[level].clone())
            }
        };
        let _confirm = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                routing_key.as_str().into(),
                BasicPublishOptions::default(),
                due.to_string().as_bytes(),
                props,
            )
            .await?;
        Ok(())
    }

    async fn confirm(&self) -> anyhow::Result<()> {
        let returned = tokio::time::timeout(CONFIRM_TIMEOUT, self.channel.wait_for_confirms())
            .await
            .context("publisher confirms timed out")??;
        anyhow::ensure!(returned.is_empty(), "{} messages returned", returned.len());
        Ok(())
    }

    async fn cleanup(&self) {
        for q in self.wait_queues.iter().chain([&self.fired_queue]) {
            let _ = self.channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        if let Some(t) = &self.tiers {
            for x in t.exchanges() {
                let _ = self.channel.exchange_delete(x.as_str().into(), Default::default()).await;
            }
        }
    }
}

async fn consume(conn: &Connection, queue: &str, fired: Arc<Fired>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let channel = conn.create_channel().await?;
    channel.basic_qos(2_000, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "payq-bench".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    Ok(tokio::spawn(async move {
        let _channel = channel;
        while let Some(Ok(delivery)) = consumer.next().await {
            let due = std::str::from_utf8(&delivery.data).ok().and_then(|s| s.parse::<i64>().ok());
            fired.record([due.unwrap_or_else(|| Timestamp::now().millis())]);
        }
    }))
}

/// Runs the mixed, drain and steady scenarios on one peer.
pub async fn run(args: &TimersArgs, mode: Mode) -> anyhow::Result<Vec<Report>> {
    let conn = match Connection::connect(&args.amqp_url, ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => {
            println!("{}: skipped, RabbitMQ at {} unreachable: {e}", mode.engine(), args.amqp_url);
            return Ok(Vec::new());
        }
    };
    let peer = Peer::declare(&conn, mode).await?;
    let fired = Arc::new(Fired::default());
    let consumer = consume(&conn, &peer.fired_queue, fired.clone()).await?;
    let engine = mode.engine();
    let publisher = Publisher(Arc::new(tokio::sync::Mutex::new(peer)));
    let result = batched::scenarios(args, engine, &publisher, &fired).await;
    consumer.abort();
    publisher.0.lock().await.cleanup().await;
    let _ = conn.close(200, "bench done".into()).await;
    result
}

/// Publishes batches of timers on the peer's one channel, one batch at a time, each batch
/// confirmed before the next.
#[derive(Clone)]
struct Publisher(Arc<tokio::sync::Mutex<Peer>>);

impl InsertBatch for Publisher {
    async fn insert(&self, dues: Vec<i64>) -> anyhow::Result<()> {
        let peer = self.0.lock().await;
        for due in dues {
            let delay = due.saturating_sub(Timestamp::now().millis()).max(0);
            peer.publish(u64::try_from(delay).unwrap_or(0)).await?;
        }
        peer.confirm().await
    }
}
