//! payq's RabbitMQ topology (docs/operations.md) as data: one description that `payq topology print`
//! lists and `payq topology declare` (and start-up) declares, idempotently.
//!
//! - `payq.events` (topic): every event, routing key = event type; downstream systems bind
//!   their own queues, payq binds `payq.webhooks` with its own name as the key, and the
//!   relay names that key in the `BCC` header of the events a merchant's webhook takes.
//! - `payq.commands` (direct) → work queues `payq.risk`, `payq.channel`, `payq.timers`,
//!   `payq.webhooks`, `payq.refunds`: quorum queues with a delivery limit that dead-letter
//!   (at least once) to `payq.dead` → `payq.dead-letters`.
//! - `payq.delay.*`: the delay tiers ([`super::tiers`]); delayed commands come out of
//!   `payq.delay.deliver` into their work queue.

use super::tiers::{TierError, Tiers};
use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::fmt;

/// A work queue, by purpose (`payq.risk`, …): what its consumers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkQueue {
    /// Payment starts: risk control, then the channel.
    Risk,
    /// Channel queries and closes.
    Channel,
    /// Deadlines, checks, reminders and reconciliation days and runs.
    Timers,
    /// Webhook deliveries.
    Webhooks,
    /// Refunds at the channel.
    Refunds,
}

impl WorkQueue {
    /// Every work queue.
    pub const ALL: [WorkQueue; 5] =
        [WorkQueue::Risk, WorkQueue::Channel, WorkQueue::Timers, WorkQueue::Webhooks, WorkQueue::Refunds];

    /// The purpose, the last part of the queue's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkQueue::Risk => "risk",
            WorkQueue::Channel => "channel",
            WorkQueue::Timers => "timers",
            WorkQueue::Webhooks => "webhooks",
            WorkQueue::Refunds => "refunds",
        }
    }
}

/// A queue argument's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Str(String),
    Int(i64),
}

/// One thing to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Exchange {
        name: String,
        kind: Kind,
    },
    Queue {
        name: String,
        args: Vec<(&'static str, Arg)>,
    },
    /// `destination` is a queue, or an exchange when `to_exchange`.
    Binding {
        source: String,
        destination: String,
        key: String,
        to_exchange: bool,
    },
}

/// The kinds of exchange payq declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Routes by exact routing key (commands, the delay tiers' delivery).
    Direct,
    /// Routes to every bound queue (dead letters).
    Fanout,
    /// Routes by pattern (events).
    Topic,
}

impl Kind {
    /// RabbitMQ's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Fanout => "fanout",
            Kind::Topic => "topic",
        }
    }

    fn to_lapin(self) -> ExchangeKind {
        match self {
            Kind::Direct => ExchangeKind::Direct,
            Kind::Fanout => ExchangeKind::Fanout,
            Kind::Topic => ExchangeKind::Topic,
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Exchange { name, kind } => write!(f, "exchange {name} ({}, durable)", kind.as_str()),
            Item::Queue { name, args } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|(k, v)| match v {
                        Arg::Str(s) => format!("{k}={s}"),
                        Arg::Int(i) => format!("{k}={i}"),
                    })
                    .collect();
                write!(f, "queue    {name} (durable; {})", args.join(", "))
            }
            Item::Binding { source, destination, key, to_exchange } => {
                let what = if *to_exchange { "exchange" } else { "queue" };
                write!(f, "binding  {source} -> {what} {destination} [{key}]")
            }
        }
    }
}

/// The topology under a name prefix (`payq` in production).
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub tiers: Tiers,
    /// Deliveries of one message before it is dead-lettered (`x-delivery-limit`).
    pub delivery_limit: i64,
}

impl Topology {
    /// The production topology: prefix `payq`, 100 ms × 29 delay levels, 10 deliveries.
    pub fn new(prefix: impl Into<String>) -> Topology {
        let prefix = prefix.into();
        Topology { tiers: Tiers::new(prefix.clone()), prefix, delivery_limit: 10 }
    }

    /// `payq.events`.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// `payq.commands`.
    pub fn commands(&self) -> String {
        format!("{}.commands", self.prefix)
    }

    /// The name of work queue `queue` (e.g. `payq.timers`).
    pub fn work_queue(&self, queue: WorkQueue) -> String {
        format!("{}.{}", self.prefix, queue.as_str())
    }

    /// The key that routes an event on `payq.events` to `payq.webhooks` as well (the
    /// queue's name, which is no event type): the relay puts it in the `BCC` header of the
    /// events a merchant's webhook takes, so the others never reach the queue.
    pub fn webhook_route(&self) -> String {
        self.work_queue(WorkQueue::Webhooks)
    }

    /// `payq.dead`.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// `payq.dead-letters`.
    pub fn dead_letters(&self) -> String {
        format!("{}.dead-letters", self.prefix)
    }

    /// Every exchange, queue and binding, in declaration order.
    pub fn items(&self) -> Vec<Item> {
        let mut out = vec![
            Item::Exchange { name: self.events(), kind: Kind::Topic },
            Item::Exchange { name: self.commands(), kind: Kind::Direct },
            Item::Exchange { name: self.dead_exchange(), kind: Kind::Fanout },
            Item::Queue { name: self.dead_letters(), args: vec![("x-queue-type", Arg::Str("quorum".into()))] },
            Item::Binding {
                source: self.dead_exchange(),
                destination: self.dead_letters(),
                key: String::new(),
                to_exchange: false,
            },
        ];
        out.push(Item::Exchange { name: self.tiers.deliver_exchange(), kind: Kind::Direct });
        for queue in WorkQueue::ALL {
            let q = self.work_queue(queue);
            out.push(Item::Queue {
                name: q.clone(),
                args: vec![
                    ("x-queue-type", Arg::Str("quorum".into())),
                    ("x-delivery-limit", Arg::Int(self.delivery_limit)),
                    ("x-dead-letter-exchange", Arg::Str(self.dead_exchange())),
                    ("x-dead-letter-strategy", Arg::Str("at-least-once".into())),
                    ("x-overflow", Arg::Str("reject-publish".into())),
                ],
            });
            out.push(Item::Binding {
                source: self.commands(),
                destination: q.clone(),
                key: q.clone(),
                to_exchange: false,
            });
            out.push(Item::Binding {
                source: self.tiers.deliver_exchange(),
                destination: q.clone(),
                key: self.tiers.deliver_binding(&q),
                to_exchange: false,
            });
        }
        out.push(Item::Binding {
            source: self.events(),
            destination: self.work_queue(WorkQueue::Webhooks),
            key: self.webhook_route(),
            to_exchange: false,
        });
        out
    }

    /// Declares everything (idempotent), the delay tiers included.
    pub async fn declare(&self, channel: &Channel) -> Result<(), TierError> {
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        for item in self.items() {
            match item {
                Item::Exchange { name, kind } => {
                    channel
                        .exchange_declare(name.as_str().into(), kind.to_lapin(), durable, FieldTable::default())
                        .await?;
                }
                Item::Queue { name, args } => {
                    let mut table = FieldTable::default();
                    for (k, v) in args {
                        let v = match v {
                            Arg::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
                            Arg::Int(i) => AMQPValue::LongLongInt(i),
                        };
                        table.insert(k.into(), v);
                    }
                    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
                    channel.queue_declare(name.as_str().into(), options, table).await?;
                }
                Item::Binding { source, destination, key, to_exchange: false } => {
                    channel
                        .queue_bind(
                            destination.as_str().into(),
                            source.as_str().into(),
                            key.as_str().into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                }
                Item::Binding { source, destination, key, to_exchange: true } => {
                    channel
                        .exchange_bind(
                            destination.as_str().into(),
                            source.as_str().into(),
                            key.as_str().into(),
                            ExchangeBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                }
            }
        }
        // Earlier versions bound every event to the webhook queue; unbinding is idempotent.
        channel
            .queue_unbind(
                self.work_queue(WorkQueue::Webhooks).as_str().into(),
                self.events().as_str().into(),
                "#".into(),
                FieldTable::default(),
            )
            .await?;
        self.tiers.declare(channel).await
    }

    /// Every queue name, for clean-up and inspection.
    pub fn queues(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .items()
            .into_iter()
            .filter_map(|i| match i {
                Item::Queue { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        out.extend(self.tiers.queues());
        out
    }

    /// Every exchange name.
    pub fn exchanges(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .items()
            .into_iter()
            .filter_map(|i| match i {
                Item::Exchange { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        out.extend(self.tiers.headers_exchanges());
        out
    }
}

/// Messages waiting in each of the topology's queues, by a passive declare of each (a
/// queue that does not exist is left out). Gives up after `limit`.
pub async fn queue_depths(
    url: &str,
    topology: &Topology,
    limit: std::time::Duration,
) -> Result<Vec<(String, u32)>, super::RabbitError> {
    let count = async {
        let (conn, _) = super::connect::connect_first(url, 0).await?;
        let mut depths = Vec::new();
        let mut channel = conn.create_channel().await?;
        for q in topology.queues() {
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            match channel.queue_declare(q.as_str().into(), passive, FieldTable::default()).await {
                Ok(declared) => depths.push((q, declared.message_count())),
                // A missing queue closes the channel: go on with a fresh one.
                Err(_) => channel = conn.create_channel().await?,
            }
        }
        let _ = conn.close(200, "payq stats".into()).await;
        Ok::<_, super::RabbitError>(depths)
    };
    tokio::time::timeout(limit, count).await.map_err(|_| super::RabbitError::Timeout(limit))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        let t = Topology::new("payq");
        let lines: Vec<String> = t.items().iter().map(ToString::to_string).collect();
        let text = lines.join("\n");
        for name in [
            "payq.events",
            "payq.commands",
            "payq.risk",
            "payq.channel",
            "payq.timers",
            "payq.webhooks",
            "payq.refunds",
            "payq.dead",
            "payq.dead-letters",
            "payq.delay.out",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(text.contains("x-delivery-limit=10"));
        assert!(text.contains("binding  payq.events -> queue payq.webhooks [payq.webhooks]"));
        assert_eq!(t.queues().len(), 6 + 29 + 1);
        let exchanges = t.exchanges();
        assert!(
            exchanges.contains(&"payq.delay.in".to_owned()) && exchanges.contains(&"payq.delay.after.28".to_owned())
        );
    }
}
