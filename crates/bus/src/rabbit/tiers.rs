//! Delays inside RabbitMQ without a plugin: a tier of queues `payq.delay.<k>` whose
//! per-queue TTL is `base × 2^k`, dead-lettering from tier to tier by the binary digits of
//! the delay, then into the delivery exchange.
//!
//! A delayed message keeps its routing key (payq's relay sends bundles, routed to
//! `payq.delay.fired`, see [`super::bundle`]); its path is in its headers. A delay of
//! 5 units (binary 101) waits in queue 2 (4 units), then in queue 0 (1 unit):
//! `payq-tier-in: "2"`, `payq-tier-after-2: "0"`, `payq-tier-after-0: "out"`. The entry
//! exchange `payq.delay.in` sends it to the queue its `payq-tier-in` names; when the TTL
//! of queue `k` runs out, the queue dead-letters to `payq.delay.after.<k>`, which sends it
//! to the queue its `payq-tier-after-<k>` names, or to the delivery exchange
//! `payq.delay.out` (direct), where queues are bound by routing key. All of
//! these are headers exchanges with one binding per possible next step, so a hop costs
//! the broker one small match, and a message makes one hop per set bit of its delay.
//!
//! Every queue of a level holds messages of one TTL, so they expire in the order they
//! arrived: no head-of-line blocking. Precision is one `base`.
//!
//! The tier queues hold copies only: each timer's database row stays until the timer is
//! handled, and the relay publishes a timer again when it has not been handled by its due
//! time plus a grace period. So the tiers may lose a message without losing a timer, and
//! their queue type is a choice ([`TierQueueType`]): classic queues dead-letter at most
//! once; quorum queues are replicated and dead-letter `at-least-once` (which needs
//! `x-overflow: reject-publish`). With bundles both fire about as fast
//! (docs/benchmarks.md).

use lapin::options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

/// The queue type of the delay tiers (`[rabbitmq] tier_queue_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierQueueType {
    /// Classic queues, at-most-once dead-lettering: the default (the relay's republication
    /// covers what a node loss or a purge drops; steadier lateness, docs/benchmarks.md).
    #[default]
    Classic,
    /// Quorum queues, replicated, at-least-once dead-lettering.
    Quorum,
}

impl TierQueueType {
    /// The `x-queue-type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TierQueueType::Classic => "classic",
            TierQueueType::Quorum => "quorum",
        }
    }
}

/// The tier layout.
#[derive(Debug, Clone)]
pub struct Tiers {
    /// Name prefix: `payq` in production (`payq.delay.*`), something unique in tests.
    pub prefix: String,
    /// The queue type of every tier.
    pub queue_type: TierQueueType,
    /// Smallest delay step (the precision).
    pub base: Duration,
    /// Number of levels; the longest delay is `base × (2^levels − 1)`.
    pub levels: u32,
}

/// Why a delay cannot be expressed.
#[derive(Debug, Clone, thiserror::Error)]
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

/// Where a delayed message is published: the entry exchange, with the headers that spell
/// its path through the tiers (its routing key stays its target's).
#[derive(Debug, Clone)]
pub struct TierRoute {
    pub exchange: String,
    pub headers: Vec<(String, AMQPValue)>,
}

/// The header naming the first tier.
const IN_HEADER: &str = "payq-tier-in";
/// The step after tier `k` leaves: a lower tier, or [`OUT`].
fn after_header(k: u32) -> String {
    format!("payq-tier-after-{k}")
}
/// The step that leaves the tiers for the delivery exchange.
const OUT: &str = "out";

impl Tiers {
    /// The default layout: 100 ms steps over 29 levels (up to 621 days).
    pub fn new(prefix: impl Into<String>) -> Tiers {
        Tiers {
            prefix: prefix.into(),
            queue_type: TierQueueType::default(),
            base: Duration::from_millis(100),
            levels: 29,
        }
    }

    /// The queue of level `k`.
    pub fn queue(&self, k: u32) -> String {
        format!("{}.delay.{k}", self.prefix)
    }

    /// The exchange queue `k` dead-letters to when its TTL runs out.
    pub fn after_exchange(&self, k: u32) -> String {
        format!("{}.delay.after.{k}", self.prefix)
    }

    /// Where delayed messages are published.
    pub fn entry_exchange(&self) -> String {
        format!("{}.delay.in", self.prefix)
    }

    /// Where messages arrive when their delay is over (direct: bind by routing key).
    pub fn deliver_exchange(&self) -> String {
        format!("{}.delay.out", self.prefix)
    }

    /// The queue bundles arrive in when their delay is over (see [`super::bundle`]).
    pub fn fired_queue(&self) -> String {
        format!("{}.delay.fired", self.prefix)
    }

    /// Every queue of the tiers: the levels, then the fired queue.
    pub fn queues(&self) -> Vec<String> {
        let mut out: Vec<String> = (0..self.levels).map(|k| self.queue(k)).collect();
        out.push(self.fired_queue());
        out
    }

    /// The headers exchanges of the tiers: the entry and one after each level.
    pub fn headers_exchanges(&self) -> Vec<String> {
        let mut out = vec![self.entry_exchange()];
        out.extend((0..self.levels).map(|k| self.after_exchange(k)));
        out
    }

    /// Every exchange of the tiers, for clean-up and inspection.
    pub fn exchanges(&self) -> Vec<String> {
        let mut out = self.headers_exchanges();
        out.push(self.deliver_exchange());
        out
    }

    /// The longest delay the tiers hold.
    pub fn max_delay(&self) -> Duration {
        self.base.saturating_mul(u32::try_from((1u64 << self.levels) - 1).unwrap_or(u32::MAX))
    }

    /// The route that delays a message for `delay` (rounded up to a `base` step); publish
    /// it with the target's routing key.
    pub fn route(&self, delay: Duration) -> Result<TierRoute, TierError> {
        if delay > self.max_delay() {
            return Err(TierError::TooLong(delay, self.max_delay()));
        }
        self.route_steps(self.steps(delay))
    }

    /// `delay` in tier steps, rounded up.
    pub fn steps(&self, delay: Duration) -> u128 {
        delay.as_nanos().div_ceil(self.base.as_nanos().max(1))
    }

    /// The route that delays a message for `units` steps.
    pub fn route_steps(&self, units: u128) -> Result<TierRoute, TierError> {
        if units >= 1u128 << self.levels {
            return Err(TierError::TooLong(
                self.base.saturating_mul(u32::try_from(units).unwrap_or(u32::MAX)),
                self.max_delay(),
            ));
        }
        let bits: Vec<u32> = (0..self.levels).rev().filter(|k| (units >> k) & 1 == 1).collect();
        let Some(first) = bits.first() else {
            return Ok(TierRoute { exchange: self.deliver_exchange(), headers: Vec::new() });
        };
        let text = |v: String| AMQPValue::LongString(LongString::from(v));
        let mut headers = vec![(IN_HEADER.to_owned(), text(first.to_string()))];
        for (i, k) in bits.iter().enumerate() {
            let next = bits.get(i + 1).map_or_else(|| OUT.to_owned(), ToString::to_string);
            headers.push((after_header(*k), text(next)));
        }
        Ok(TierRoute { exchange: self.entry_exchange(), headers })
    }

    /// The binding key on the delivery exchange for messages to `target`.
    pub fn deliver_binding(&self, target: &str) -> String {
        target.to_owned()
    }

    /// The arguments of level `k`'s queue.
    pub fn queue_arguments(&self, k: u32) -> Vec<(&'static str, AMQPValue)> {
        let ttl = i64::try_from(self.base.as_millis().saturating_mul(1u128 << k)).unwrap_or(i64::MAX);
        let text = |v: &str| AMQPValue::LongString(LongString::from(v));
        let mut out = vec![
            ("x-queue-type", text(self.queue_type.as_str())),
            ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
            ("x-dead-letter-exchange", text(&self.after_exchange(k))),
        ];
        if self.queue_type == TierQueueType::Quorum {
            out.push(("x-dead-letter-strategy", text("at-least-once")));
            out.push(("x-overflow", text("reject-publish")));
        }
        out
    }

    /// Every binding of the tiers: `(source exchange, destination, header, value,
    /// destination is an exchange)`.
    pub fn bindings(&self) -> Vec<(String, String, String, String, bool)> {
        let mut out = Vec::new();
        for k in 0..self.levels {
            out.push((self.entry_exchange(), self.queue(k), IN_HEADER.to_owned(), k.to_string(), false));
        }
        for k in 0..self.levels {
            for j in 0..k {
                out.push((self.after_exchange(k), self.queue(j), after_header(k), j.to_string(), false));
            }
            out.push((self.after_exchange(k), self.deliver_exchange(), after_header(k), OUT.to_owned(), true));
        }
        out
    }

    /// Declares the exchanges, queues and bindings (idempotent). Tier queues that exist
    /// with other arguments (another queue type, an earlier layout) make this fail: they
    /// hold only copies, so they can be deleted (payq publishes what they held again).
    pub async fn declare(&self, channel: &Channel) -> Result<(), TierError> {
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        channel
            .exchange_declare(
                self.deliver_exchange().as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        for x in self.headers_exchanges() {
            channel.exchange_declare(x.as_str().into(), ExchangeKind::Headers, durable, FieldTable::default()).await?;
        }
        for k in 0..self.levels {
            channel
                .queue_declare(
                    self.queue(k).as_str().into(),
                    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                    args(&self.queue_arguments(k)),
                )
                .await?;
        }
        let fired = self.fired_queue();
        let fired_type = [("x-queue-type", AMQPValue::LongString(LongString::from(self.queue_type.as_str())))];
        channel
            .queue_declare(
                fired.as_str().into(),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                args(&fired_type),
            )
            .await?;
        channel
            .queue_bind(
                fired.as_str().into(),
                self.deliver_exchange().as_str().into(),
                self.deliver_binding(&fired).as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for (source, destination, header, value, to_exchange) in self.bindings() {
            let arguments = args(&[
                ("x-match", AMQPValue::LongString(LongString::from("all"))),
                (header.as_str(), AMQPValue::LongString(LongString::from(value.as_str()))),
            ]);
            if to_exchange {
                channel
                    .exchange_bind(
                        destination.as_str().into(),
                        source.as_str().into(),
                        "".into(),
                        ExchangeBindOptions::default(),
                        arguments,
                    )
                    .await?;
            } else {
                channel
                    .queue_bind(
                        destination.as_str().into(),
                        source.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        arguments,
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(route: &'a TierRoute, name: &str) -> Option<&'a str> {
        route.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| match v {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        })
    }

    #[test]
    fn headers_spell_the_path_by_the_binary_digits_of_the_delay() {
        let t = Tiers { levels: 4, ..Tiers::new("payq") };
        let r = t.route(Duration::from_millis(500)).expect("in range");
        assert_eq!(r.exchange, "payq.delay.in");
        assert_eq!(header(&r, "payq-tier-in"), Some("2"));
        assert_eq!(header(&r, "payq-tier-after-2"), Some("0"));
        assert_eq!(header(&r, "payq-tier-after-0"), Some("out"));
        assert_eq!(r.headers.len(), 3);
        // Nothing to wait: straight out.
        let now = t.route(Duration::ZERO).expect("in range");
        assert_eq!(now.exchange, "payq.delay.out");
        assert!(now.headers.is_empty());
        // Rounded up to the next step: 101 ms is 2 units.
        let r = t.route(Duration::from_millis(101)).expect("in range");
        assert_eq!(header(&r, "payq-tier-in"), Some("1"));
        assert_eq!(header(&r, "payq-tier-after-1"), Some("out"));
        assert!(t.route(Duration::from_millis(1_600)).is_err());
        assert_eq!(t.deliver_binding("payq.timers"), "payq.timers");
    }

    #[test]
    fn every_step_a_route_names_has_a_binding() {
        let t = Tiers { levels: 6, ..Tiers::new("p") };
        let bindings = t.bindings();
        for units in 1..64u64 {
            let route = t.route(t.base * u32::try_from(units).unwrap_or(0)).expect("in range");
            for (name, value) in &route.headers {
                let AMQPValue::LongString(value) = value else { panic!("text headers") };
                let value = std::str::from_utf8(value.as_bytes()).unwrap_or_default();
                assert!(
                    bindings.iter().any(|(_, _, h, v, _)| h == name && v == value),
                    "{units} units: no binding for {name}={value}"
                );
            }
        }
    }

    #[test]
    fn the_default_layout_holds_a_year() {
        assert!(Tiers::new("payq").max_delay() >= Duration::from_secs(366 * 24 * 3600));
    }
}
