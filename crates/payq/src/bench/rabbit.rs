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
use lapin::options::ExchangeDeclareOptions;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use payq_bus::rabbit::bundle::{self, BundledMessage, Splitter, TierMessage};
use payq_bus::rabbit::publisher::{ConfirmedPublisher, Outgoing};
use payq_bus::rabbit::tiers::Tiers;
use payq_domain::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which peer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PerMessageTtl,
    FixedLevels,
    /// payq's plugin-free tiers (`delay.engine = "rabbitmq"`), the default queue type:
    /// classic queues with TTL 100 ms × 2^k, dead-lettering at most once from tier to tier;
    /// timers that wait as many steps travel as one bundle, published with batched confirms
    /// as the relay does, and split into the fired queue by payq's splitter.
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
    tiers: Option<Tiers>,
    /// The exchange the splitter publishes fired timers to (tiers only).
    commands: String,
    channel: Channel,
    /// The same channel, for batches published with their confirms awaited together.
    publisher: ConfirmedPublisher,
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
        // Puts the channel in confirm mode, for every peer.
        let publisher = ConfirmedPublisher::new(channel.clone(), CONFIRM_TIMEOUT).await?;
        let name = match mode {
            Mode::PerMessageTtl => "ttl",
            Mode::FixedLevels => "levels",
            Mode::Tiers => "tiers",
            Mode::QuorumTiers => "qtiers",
        };
        let prefix = format!("payq.bench.{name}.{}", std::process::id());
        let fired_queue = format!("{prefix}.fired");
        let commands = format!("{prefix}.commands");
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
                let mut t = Tiers::new(prefix.clone());
                if mode == Mode::QuorumTiers {
                    t.queue_type = payq_bus::rabbit::tiers::TierQueueType::Quorum;
                }
                t.declare(&channel).await?;
                let direct = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
                channel
                    .exchange_declare(commands.as_str().into(), ExchangeKind::Direct, direct, FieldTable::default())
                    .await?;
                channel
                    .queue_bind(
                        fired_queue.as_str().into(),
                        commands.as_str().into(),
                        fired_queue.as_str().into(),
                        Default::default(),
                        FieldTable::default(),
                    )
                    .await?;
                wait_queues.extend(t.queues());
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
        Ok(Peer { mode, tiers, commands, channel, publisher, wait_queues, fired_queue })
    }

    /// Publishes a timer of `delay_ms`; the body is its due time (Unix ms).
    async fn publish(&self, delay_ms: u64) -> anyhow::Result<()> {
        let due = Timestamp::now().millis() + i64::try_from(delay_ms).unwrap_or(0);
        let mut props = BasicProperties::default().with_delivery_mode(2);
        let (exchange, routing_key) = match self.mode {
            Mode::PerMessageTtl => {
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

    /// Publishes timers due at `dues` through the tiers as the relay does: bundled by tier
    /// steps, one batch of confirms.
    async fn publish_bundled(&self, tiers: &Tiers, dues: Vec<i64>) -> anyhow::Result<()> {
        let now = Timestamp::now().millis();
        let items = dues
            .into_iter()
            .enumerate()
            .map(|(i, due)| {
                let delay = Duration::from_millis(u64::try_from(due.saturating_sub(now)).unwrap_or(0));
                let message = BundledMessage {
                    routing_key: self.fired_queue.clone(),
                    message_id: format!("t{now}-{i}"),
                    kind: "bench.timer".into(),
                    claim: 0,
                    key: None,
                    due_at: String::new(),
                    body: due.to_string(),
                };
                (tiers.steps(delay), message)
            })
            .collect();
        let mut messages = Vec::new();
        for (steps, _, b) in bundle::group(items) {
            messages.push(b.into_tiers(tiers, steps)?);
        }
        let outgoing: Vec<Outgoing<'_>> = messages.iter().map(TierMessage::outgoing).collect();
        for result in self.publisher.publish_many(&outgoing).await {
            result?;
        }
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
            let _ = self.channel.exchange_delete(self.commands.as_str().into(), Default::default()).await;
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
    let split_stop = CancellationToken::new();
    // The splitter on a connection of its own, as a relay has.
    let mut splitter = None;
    if let Some(t) = &peer.tiers {
        let split = Splitter {
            store: None,
            fired_queue: t.fired_queue(),
            exchange: peer.commands.clone(),
            confirm_timeout: CONFIRM_TIMEOUT,
        };
        let split_conn = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
        let stop = split_stop.clone();
        splitter = Some(tokio::spawn(async move {
            let outcome = split.run(&split_conn, &stop).await;
            let _ = split_conn.close(200, "bench done".into()).await;
            outcome
        }));
    }
    let engine = mode.engine();
    let publisher = Publisher(Arc::new(tokio::sync::Mutex::new(peer)));
    let result = batched::scenarios(args, engine, &publisher, &fired).await;
    consumer.abort();
    split_stop.cancel();
    if let Some(splitter) = splitter {
        let _ = splitter.await;
    }
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
        if let Some(tiers) = &peer.tiers {
            return peer.publish_bundled(tiers, dues).await;
        }
        for due in dues {
            let delay = due.saturating_sub(Timestamp::now().millis()).max(0);
            peer.publish(u64::try_from(delay).unwrap_or(0)).await?;
        }
        peer.confirm().await
    }
}
