//! Delays inside RabbitMQ without a plugin: a tier of quorum queues `payq.delay.<k>` whose
//! per-queue TTL is `base × 2^k`, dead-lettering from tier to tier by the binary digits of
//! the delay, then into the delivery exchange.
//!
//! A delayed message's routing key is the delay in units of `base`, one word per level,
//! most significant first, followed by the target routing key:
//! `1.0.1.<target>` (levels 2, 1, 0) waits 4 + 1 = 5 units. The topic exchange of level
//! `k` (`payq.delay.x.<k>`) sends a message whose level-`k` digit is `1` to queue
//! `payq.delay.<k>` and one whose digit is `0` straight on to the exchange of level
//! `k - 1`; the queue of level `k` dead-letters, when its TTL expires, to the exchange of
//! level `k - 1` (level 0: to the delivery exchange `payq.delay.deliver`), keeping the
//! routing key. Consumers bind to the delivery exchange with `<levels × *>.<target>`.
//!
//! Every queue of a level holds messages of one TTL, so they expire in the order they
//! arrived: no head-of-line blocking. Queues are quorum queues (replicated) and dead-letter
//! `at-least-once` (which needs `x-overflow: reject-publish`). Precision is one `base`.

use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// The tier layout.
#[derive(Debug, Clone)]
pub struct Tiers {
    /// Name prefix: `payq` in production (`payq.delay.*`), something unique in tests.
    pub prefix: String,
    /// Smallest delay step (the precision).
    pub base: Duration,
    /// Number of levels; the longest delay is `base × (2^levels − 1)`.
    pub levels: u32,
}

/// Why a delay cannot be expressed.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("delay {0:?} exceeds the longest the tiers hold ({1:?})")]
    TooLong(Duration, Duration),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

impl Tiers {
    /// The default layout: 100 ms steps over 29 levels (up to 621 days).
    pub fn new(prefix: impl Into<String>) -> Tiers {
        Tiers { prefix: prefix.into(), base: Duration::from_millis(100), levels: 29 }
    }

    /// The queue of level `k`.
    pub fn queue(&self, k: u32) -> String {
        format!("{}.delay.{k}", self.prefix)
    }

    /// The topic exchange of level `k`.
    pub fn exchange(&self, k: u32) -> String {
        format!("{}.delay.x.{k}", self.prefix)
    }

    /// Where messages arrive when their delay is over.
    pub fn deliver_exchange(&self) -> String {
        format!("{}.delay.deliver", self.prefix)
    }

    /// Where delayed messages are published.
    pub fn entry_exchange(&self) -> String {
        self.exchange(self.levels - 1)
    }

    /// The longest delay the tiers hold.
    pub fn max_delay(&self) -> Duration {
        self.base.saturating_mul(u32::try_from((1u64 << self.levels) - 1).unwrap_or(u32::MAX))
    }

    /// The routing key that delays a message for `delay` (rounded up to a `base` step)
    /// and then delivers it with routing key `target`.
    pub fn routing_key(&self, delay: Duration, target: &str) -> Result<String, TierError> {
        if delay > self.max_delay() {
            return Err(TierError::TooLong(delay, self.max_delay()));
        }
        let units = delay.as_nanos().div_ceil(self.base.as_nanos().max(1));
        let mut key = String::with_capacity(self.levels as usize * 2 + target.len());
        for k in (0..self.levels).rev() {
            key.push(if (units >> k) & 1 == 1 { '1' } else { '0' });
            key.push('.');
        }
        key.push_str(target);
        Ok(key)
    }

    /// The binding key on the delivery exchange for messages to `target`.
    pub fn deliver_binding(&self, target: &str) -> String {
        let mut key = "*.".repeat(self.levels as usize);
        key.push_str(target);
        key
    }

    /// The binding key on level `k`'s exchange matching digit `digit` of level `k`.
    fn level_binding(&self, k: u32, digit: char) -> String {
        let before = (self.levels - 1 - k) as usize;
        format!("{}{digit}.#", "*.".repeat(before))
    }

    /// Declares the exchanges, queues and bindings (idempotent).
    pub async fn declare(&self, channel: &Channel) -> Result<(), TierError> {
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        channel
            .exchange_declare(
                self.deliver_exchange().as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        for k in 0..self.levels {
            channel
                .exchange_declare(self.exchange(k).as_str().into(), ExchangeKind::Topic, durable, FieldTable::default())
                .await?;
        }
        for k in 0..self.levels {
            let next = if k == 0 { self.deliver_exchange() } else { self.exchange(k - 1) };
            let ttl = i64::try_from(self.base.as_millis().saturating_mul(1u128 << k)).unwrap_or(i64::MAX);
            let queue_args = args(&[
                ("x-queue-type", AMQPValue::LongString(LongString::from("quorum"))),
                ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
                ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from(next.as_str()))),
                ("x-dead-letter-strategy", AMQPValue::LongString(LongString::from("at-least-once"))),
                ("x-overflow", AMQPValue::LongString(LongString::from("reject-publish"))),
            ]);
            let q = self.queue(k);
            channel
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                    queue_args,
                )
                .await?;
            channel
                .queue_bind(
                    q.as_str().into(),
                    self.exchange(k).as_str().into(),
                    self.level_binding(k, '1').as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            channel
                .exchange_bind(
                    next.as_str().into(),
                    self.exchange(k).as_str().into(),
                    self.level_binding(k, '0').as_str().into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_spell_the_delay_in_binary() {
        let t = Tiers { prefix: "payq".into(), base: Duration::from_millis(100), levels: 4 };
        assert_eq!(
            t.routing_key(Duration::from_millis(500), "payq.timers").ok().as_deref(),
            Some("0.1.0.1.payq.timers")
        );
        assert_eq!(t.routing_key(Duration::ZERO, "x").ok().as_deref(), Some("0.0.0.0.x"));
        // Rounded up to the next step.
        assert_eq!(t.routing_key(Duration::from_millis(101), "x").ok().as_deref(), Some("0.0.1.0.x"));
        assert!(t.routing_key(Duration::from_millis(1_600), "x").is_err());
        assert_eq!(t.deliver_binding("payq.timers"), "*.*.*.*.payq.timers");
        assert_eq!(t.level_binding(3, '1'), "1.#");
        assert_eq!(t.level_binding(0, '0'), "*.*.*.0.#");
    }

    #[test]
    fn the_default_layout_holds_a_year() {
        assert!(Tiers::new("payq").max_delay() >= Duration::from_secs(366 * 24 * 3600));
    }
}
