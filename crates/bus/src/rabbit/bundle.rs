//! Bundles: delayed messages that wait the same time travel the delay tiers together.
//!
//! A dead-letter hop costs the broker about as much whatever the message holds, so the
//! relay packs the delayed messages of one batch that share a delay (in tier steps) into
//! one tier message, a [`Bundle`] (JSON, docs/messages.md), routed to the fired queue
//! `payq.delay.fired`. The [`Splitter`] consumes that queue and publishes each bundled
//! message, with its own `message_id`, type, headers and body, to `payq.commands`, where it
//! reaches its work queue as if it had been published there; the bundle is acknowledged
//! only once every one of them is confirmed. A bundle handled twice publishes its messages
//! twice, and consumers drop the copy by claim token; a bundle lost in the broker loses
//! only copies (each timer's row stays in the store, and the relay publishes it again after
//! the grace period). Before publishing, the splitter asks the store which of a bundle's
//! messages are still pending under their claim token, in one read: a timer cancelled
//! meanwhile (the payment query of a paid order, the timeout of a paid order) goes no
//! further, instead of costing a publish, a delivery and a look-up to be dropped by the
//! consumer. If the store cannot answer, everything is published and consumers check.

use super::error::RabbitError;
use super::publisher::{ConfirmedPublisher, Outgoing, PublishError};
use super::tiers::Tiers;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use payq_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The `type` of a bundle message.
pub const BUNDLE_KIND: &str = "payq.delay.bundle";
/// Most messages in one bundle: a bundle is one AMQP message, kept well below the
/// broker's frame and memory comfort.
pub const BUNDLE_LIMIT: usize = 200;
/// Bundles handled at once by one splitter.
const SPLIT_CONCURRENCY: usize = 8;

/// Header carrying the claim token a delivery must match.
pub const CLAIM_HEADER: &str = "payq-claim";
/// Header carrying the message's key (e.g. the order id), when it has one.
pub const KEY_HEADER: &str = "payq-key";
/// Header carrying when the message was due (RFC 3339).
pub const DUE_HEADER: &str = "payq-due-at";

/// Messages that wait the same delay, as one tier message's body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    pub messages: Vec<BundledMessage>,
}

/// One message of a bundle: where it goes when the delay is over, and what it carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundledMessage {
    /// Routing key on `payq.commands`: the work queue.
    pub routing_key: String,
    pub message_id: String,
    /// The message kind (the AMQP `type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The claim token (`payq-claim`).
    pub claim: i64,
    /// The message's key (`payq-key`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When it was due, RFC 3339 (`payq-due-at`).
    pub due_at: String,
    /// The message body (JSON, as text).
    pub body: String,
}

impl BundledMessage {
    /// The application headers the message carries on its own.
    pub fn headers(&self) -> FieldTable {
        message_headers(self.claim, self.key.as_deref(), &self.due_at)
    }
}

/// The application headers of a payq message: claim token, key and due time.
pub fn message_headers(claim: i64, key: Option<&str>, due_at: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(CLAIM_HEADER.into(), AMQPValue::LongLongInt(claim));
    if let Some(key) = key {
        headers.insert(KEY_HEADER.into(), AMQPValue::LongString(LongString::from(key)));
    }
    headers.insert(DUE_HEADER.into(), AMQPValue::LongString(LongString::from(due_at)));
    headers
}

/// Groups messages by the delay they wait (any key that orders them, e.g. tier steps)
/// into bundles of at most [`BUNDLE_LIMIT`]; each bundle keeps the indexes of its
/// messages in the input, so a publish outcome can be traced back to them.
pub fn group<K: Ord + Clone>(items: Vec<(K, BundledMessage)>) -> Vec<(K, Vec<usize>, Bundle)> {
    let mut by_delay: BTreeMap<K, Vec<(usize, BundledMessage)>> = BTreeMap::new();
    for (i, (delay, message)) in items.into_iter().enumerate() {
        by_delay.entry(delay).or_default().push((i, message));
    }
    let mut out = Vec::new();
    for (delay, mut messages) in by_delay {
        while !messages.is_empty() {
            let rest = messages.split_off(messages.len().min(BUNDLE_LIMIT));
            let (indexes, messages_now): (Vec<usize>, Vec<BundledMessage>) = messages.into_iter().unzip();
            out.push((delay.clone(), indexes, Bundle { messages: messages_now }));
            messages = rest;
        }
    }
    out
}

/// A bundle on its way into the tiers: publish `body` to `exchange` with `routing_key`
/// and `headers` (type [`BUNDLE_KIND`]).
#[derive(Debug)]
pub struct TierMessage {
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub headers: FieldTable,
    pub body: String,
}

impl TierMessage {
    /// The message as the confirmed publisher takes it.
    pub fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            exchange: &self.exchange,
            routing_key: &self.routing_key,
            message_id: &self.message_id,
            kind: BUNDLE_KIND,
            body: self.body.as_bytes(),
            headers: self.headers.clone(),
        }
    }
}

impl Bundle {
    /// The tier message that delays this bundle for `steps` tier steps, to come out in the
    /// fired queue.
    pub fn into_tiers(&self, tiers: &Tiers, steps: u128) -> Result<TierMessage, RabbitError> {
        let route = tiers.route_steps(steps)?;
        let body = serde_json::to_string(self).map_err(|e| RabbitError::Encode(e.to_string()))?;
        let mut headers = FieldTable::default();
        for (name, value) in route.headers {
            headers.insert(name.into(), value);
        }
        let first = self.messages.first().map_or("", |m| m.message_id.as_str());
        Ok(TierMessage {
            exchange: route.exchange,
            routing_key: tiers.fired_queue(),
            message_id: format!("bundle-{first}-{}", self.messages.len()),
            headers,
            body,
        })
    }
}

/// Consumes the fired queue and publishes each bundled message still pending to its exchange.
pub struct Splitter {
    /// Where the messages' rows are, to publish only those still pending; `None`
    /// publishes every message (bundles with no store behind them, as in `payq bench`).
    pub store: Option<Store>,
    /// The queue bundles arrive in when their delay is over (`payq.delay.fired`).
    pub fired_queue: String,
    /// Where the bundled messages go (`payq.commands`).
    pub exchange: String,
    /// Longest wait for one confirm.
    pub confirm_timeout: Duration,
}

impl Splitter {
    /// Splits bundles on `conn` until `stop` is cancelled or the connection fails.
    pub async fn run(&self, conn: &lapin::Connection, stop: &CancellationToken) -> Result<(), RabbitError> {
        let channel = conn.create_channel().await?;
        let prefetch = u16::try_from(SPLIT_CONCURRENCY * 2).unwrap_or(16);
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let publisher = ConfirmedPublisher::new(conn.create_channel().await?, self.confirm_timeout).await?;
        let consumer = channel
            .basic_consume(
                self.fired_queue.as_str().into(),
                "payq-splitter".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let split = consumer.take_until(stop.cancelled()).for_each_concurrent(SPLIT_CONCURRENCY, |delivery| {
            let publisher = &publisher;
            async move {
                let Ok(delivery) = delivery else { return };
                let settle = match self.split(publisher, &delivery.data).await {
                    Split::Done => delivery.ack(BasicAckOptions::default()).await,
                    Split::Again => {
                        delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await
                    }
                };
                if let Err(e) = settle {
                    tracing::warn!(error = %e, "delay splitter: cannot settle a bundle");
                }
            }
        });
        split.await;
        Ok(())
    }

    /// Publishes one bundle's messages.
    async fn split(&self, publisher: &ConfirmedPublisher, data: &[u8]) -> Split {
        metrics::counter!("payq_amqp_delivered_total").increment(1);
        let bundle: Bundle = match serde_json::from_slice(data) {
            Ok(b) => b,
            Err(e) => {
                // Not payq's: its timers, if any, are published again after the grace period.
                tracing::warn!(error = %e, "delay splitter: dropping a message that is not a bundle");
                return Split::Done;
            }
        };
        let pending = self.still_pending(&bundle).await;
        let dropped = bundle.messages.len() - pending.iter().filter(|p| **p).count();
        metrics::counter!("payq_delay_dropped_in_split_total").increment(dropped as u64);
        let live: Vec<&BundledMessage> =
            bundle.messages.iter().zip(&pending).filter(|(_, pending)| **pending).map(|(m, _)| m).collect();
        let outgoing: Vec<Outgoing<'_>> = live
            .iter()
            .map(|m| Outgoing {
                exchange: &self.exchange,
                routing_key: &m.routing_key,
                message_id: &m.message_id,
                kind: &m.kind,
                body: m.body.as_bytes(),
                headers: m.headers(),
            })
            .collect();
        let results = publisher.publish_many(&outgoing).await;
        metrics::counter!("payq_delay_bundled_messages_total").increment(outgoing.len() as u64);
        let mut again = false;
        for (m, result) in live.iter().zip(results) {
            match result {
                Ok(()) => {}
                // The broker may be going away: hand the bundle back.
                Err(e @ (PublishError::Amqp(_) | PublishError::Timeout(_))) => {
                    tracing::warn!(message_id = %m.message_id, error = %e, "delay splitter: publish failed; bundle requeued");
                    again = true;
                }
                // Would fail again: the row stays, and the relay publishes it again later.
                Err(e) => {
                    tracing::warn!(message_id = %m.message_id, error = %e, "delay splitter: publish refused; left to the relay")
                }
            }
        }
        if again { Split::Again } else { Split::Done }
    }

    /// Whether each message of the bundle is still pending under its claim token, as the
    /// consumer would find it ([`Store::deliveries`]); all of them when the store cannot
    /// say (the consumers check again).
    async fn still_pending(&self, bundle: &Bundle) -> Vec<bool> {
        let Some(store) = &self.store else {
            return vec![true; bundle.messages.len()];
        };
        let wanted: Vec<(String, i64)> = bundle.messages.iter().map(|m| (m.message_id.clone(), m.claim)).collect();
        match store.deliveries(&wanted).await {
            Ok(found) => found.iter().map(Option::is_some).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "delay splitter: cannot look up a bundle's messages; publishing them all");
                vec![true; wanted.len()]
            }
        }
    }
}

/// What became of one bundle.
enum Split {
    /// Every message confirmed (or left to the relay): acknowledge.
    Done,
    /// Hand it back to the queue.
    Again,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> BundledMessage {
        BundledMessage {
            routing_key: "payq.timers".into(),
            message_id: format!("msg_{n}"),
            kind: "order.timeout".into(),
            claim: i64::try_from(n).unwrap_or(0),
            key: n.is_multiple_of(2).then(|| format!("ord_{n}")),
            due_at: "2026-11-30T10:00:00Z".into(),
            body: format!("{{\"n\":{n}}}"),
        }
    }

    #[test]
    fn messages_of_one_delay_share_bundles_of_at_most_the_limit() {
        let mut items: Vec<(u32, BundledMessage)> = (0..BUNDLE_LIMIT + 10).map(|n| (7, message(n))).collect();
        items.push((3, message(9_999)));
        let groups = group(items);
        let sizes: Vec<(u32, usize)> = groups.iter().map(|(d, _, b)| (*d, b.messages.len())).collect();
        assert_eq!(sizes, vec![(3, 1), (7, BUNDLE_LIMIT), (7, 10)]);
        // Indexes point back at the input.
        assert_eq!(groups[0].1, vec![BUNDLE_LIMIT + 10]);
        assert_eq!(groups[1].1[0], 0);
        assert_eq!(groups[2].1[9], BUNDLE_LIMIT + 9);
        assert_eq!(groups[2].2.messages[9], message(BUNDLE_LIMIT + 9));
    }

    #[test]
    fn a_bundle_reads_back_as_written() {
        let bundle = Bundle { messages: vec![message(1), message(2)] };
        let text = serde_json::to_string(&bundle).unwrap_or_default();
        assert!(text.contains("\"type\":\"order.timeout\""), "{text}");
        assert!(!text.contains("\"key\":null"), "{text}");
        let back: Bundle = serde_json::from_str(&text).unwrap_or(Bundle { messages: Vec::new() });
        assert_eq!(back, bundle);
        let headers = back.messages[1].headers();
        assert!(headers.inner().contains_key(KEY_HEADER) && headers.inner().contains_key(CLAIM_HEADER));
        assert!(!back.messages[0].headers().inner().contains_key(KEY_HEADER));
    }
}
