//! Publishing with the guarantees in docs/messages.md: persistent messages, publisher confirms,
//! `mandatory` with returned messages reported, `message_id`, `content_type`,
//! `timestamp` and `type` set. A publish succeeds only on a positive confirm with no
//! return; every other outcome is an error the caller retries (the outbox row stays).
//!
//! A confirm in flight when the connection drops never resolves in lapin, so every wait
//! is bounded by a timeout; after one, the message may or may not be in the broker, and
//! consumers drop the duplicate of a republish by `message_id`.

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use std::time::Duration;

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    /// Unique per message; consumers deduplicate on it.
    pub message_id: &'a str,
    /// The message kind, e.g. `order.created`.
    pub kind: &'a str,
    /// JSON.
    pub body: &'a [u8],
    /// Application headers (`payq-claim`, `x-delay`, …).
    pub headers: FieldTable,
}

/// Why a publish did not take.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("unroutable: returned by the broker ({0})")]
    Returned(String),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no confirm within {0:?}; the message may or may not have been stored")]
    Timeout(Duration),
    #[error("publisher confirms are not enabled on the channel")]
    NotConfirmed,
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// A channel in confirm mode.
pub struct ConfirmedPublisher {
    channel: Channel,
    confirm_timeout: Duration,
}

impl ConfirmedPublisher {
    /// Puts `channel` in confirm mode.
    pub async fn new(channel: Channel, confirm_timeout: Duration) -> Result<ConfirmedPublisher, PublishError> {
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ConfirmedPublisher { channel, confirm_timeout })
    }

    /// Publishes and waits for the broker's confirm.
    pub async fn publish(&self, m: &Outgoing<'_>) -> Result<(), PublishError> {
        self.publish_many(std::slice::from_ref(m)).await.pop().unwrap_or(Err(PublishError::NotConfirmed))
    }

    /// Publishes a batch back to back, then waits for all the confirms (each bounded by
    /// the timeout): one round trip's latency for the whole batch. The results are in the
    /// order of `batch`.
    pub async fn publish_many(&self, batch: &[Outgoing<'_>]) -> Vec<Result<(), PublishError>> {
        let seconds =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut pending = Vec::with_capacity(batch.len());
        metrics::counter!("payq_amqp_published_total").increment(batch.len() as u64);
        for m in batch {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(m.message_id.into())
                .with_type(m.kind.into())
                .with_timestamp(seconds)
                .with_headers(m.headers.clone());
            let sent = self
                .channel
                .basic_publish(
                    m.exchange.into(),
                    m.routing_key.into(),
                    BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                    m.body,
                    props,
                )
                .await;
            pending.push(sent);
        }
        let waits = pending.into_iter().map(|sent| async move {
            let confirm = sent?;
            let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
                .await
                .map_err(|_| PublishError::Timeout(self.confirm_timeout))??;
            match confirmation {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(returned)) => Err(PublishError::Returned(returned.reply_text.to_string())),
                Confirmation::Nack(_) => Err(PublishError::Nacked),
                Confirmation::NotRequested => Err(PublishError::NotConfirmed),
            }
        });
        futures_util::future::join_all(waits).await
    }
}
