//! The outbox relay: publishes the messages committed in the store to RabbitMQ.
//!
//! Each round claims a batch of unpublished rows (a durable claim with a fresh token, see
//! `payq_store::OutboxMessage`), publishes them back to back with `mandatory` and
//! publisher confirms, and marks published only those positively confirmed and not
//! returned. A nacked, returned or unconfirmed message is released to be tried again after
//! a back-off and reported; it is never dropped. While RabbitMQ is down the rows simply
//! wait (the API keeps accepting orders) and the relay reconnects with back-off.
//!
//! Where a message goes depends on the delay engine: into the delay tiers with the
//! remaining delay, bundled with the batch's other messages that wait as many tier steps
//! (`rabbitmq`; every relay also splits the bundles that come out, [`super::bundle`]),
//! into the `x-delayed-message` exchange with `x-delay` (`rabbitmq-plugin`), or, with the
//! `store` engine, only once due and straight to its work queue. Messages the [`Router`] marks as events go to the `payq.events` topic
//! exchange with the event type as routing key; those the merchant's webhook takes also
//! go to `payq.webhooks`, and the others are done once announced.

use super::bundle::{self, BundledMessage, Splitter, TierMessage};
use super::connect::{NodeCursor, connect_until};
use super::declare::{declare_all, plugin_exchange};
use super::error::{RabbitError, RouteError};
use super::publisher::{ConfirmedPublisher, Outgoing, PublishError};
use super::tiers::TierError;
use super::topology::{Topology, WorkQueue};
use lapin::types::{AMQPValue, FieldTable, LongString};
use payq_domain::Timestamp;
use payq_store::{OutboxMessage, Store};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use super::bundle::{CLAIM_HEADER, DUE_HEADER, KEY_HEADER};

/// How delays are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayMode {
    /// The plugin-free tiers (`delay.engine = "rabbitmq"`).
    Tiers,
    /// The `x-delayed-message` exchange (`delay.engine = "rabbitmq-plugin"`).
    Plugin,
    /// Timers stay in the store; only due messages are published (`delay.engine = "store"`).
    Store,
}

/// Where one message goes.
#[derive(Debug, Clone)]
pub enum Route {
    /// A command for this work queue.
    Work(WorkQueue),
    /// An event for `payq.events`: its type (the routing key) and body. With `webhook` it
    /// also reaches payq's own `payq.webhooks` queue (named in the message's `BCC` header,
    /// which the broker strips), and the row waits for that delivery; without, the
    /// announcement is all there is to do, and the row is done once the broker confirms it.
    Event { event_type: String, body: String, webhook: bool },
}

/// Decides the route of each message (payq's jobs know their queues and events).
pub trait Router: Send + Sync + 'static {
    /// The route of each message of a batch, in order, or why it has none (that message is
    /// released and retried). One call per batch, so what the routes need from the store
    /// is read once for the batch.
    fn route_all(&self, batch: &[OutboxMessage]) -> impl Future<Output = Vec<Result<Route, RouteError>>> + Send;
}

/// Tuning of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows published per round.
    pub batch: u32,
    /// How long a claim holds rows before another relay may take them.
    pub lease: Duration,
    /// Longest wait for one confirm.
    pub confirm_timeout: Duration,
    /// Wait before a failed publication is tried again.
    pub retry_after: Duration,
    /// Longest sleep without looking at the outbox.
    pub idle_poll: Duration,
    /// A published message still pending this long after its due time (and its
    /// publication) is published again: its copy in the broker is taken as lost.
    pub republish_grace: Duration,
    /// How far ahead of its due time a delayed message is published into the broker's
    /// delays (the RabbitMQ delay engines): a timer due later waits in the store, so one
    /// cancelled before then (an order paid before its timeout) never reaches RabbitMQ.
    pub publish_ahead: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 500,
            // Short: the rows of a relay that died wait this long before another takes them.
            lease: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            idle_poll: Duration::from_millis(500),
            republish_grace: Duration::from_secs(60),
            publish_ahead: Duration::from_secs(1),
        }
    }
}

/// The relay of one process; run as many as you like (claims skip each other's rows).
pub struct Relay<R: Router> {
    pub store: Store,
    pub amqp_url: String,
    pub topology: Topology,
    pub mode: DelayMode,
    pub router: Arc<R>,
    pub config: RelayConfig,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<R: Router> Relay<R> {
    /// Publishes until `shutdown` is cancelled, reconnecting whenever the broker goes away.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut cursor = NodeCursor::default();
        while !shutdown.is_cancelled() {
            let Some(conn) = connect_until(&self.amqp_url, &mut cursor, &shutdown, "outbox relay").await else {
                return;
            };
            if let Err(e) = declare_all(&conn, &self.topology, self.mode).await {
                tracing::warn!(error = %e, "outbox relay: cannot declare the topology; reconnecting");
                sleep_or_stop(&shutdown, Duration::from_secs(1)).await;
                continue;
            }
            let publisher = match conn.create_channel().await {
                Ok(ch) => ConfirmedPublisher::new(ch, self.config.confirm_timeout).await,
                Err(e) => Err(PublishError::Amqp(e)),
            };
            let publisher = match publisher {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: no confirm channel; reconnecting");
                    sleep_or_stop(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            tracing::info!(mode = ?self.mode, "outbox relay connected");
            // Bundles out of the tiers are split by every relay while it is connected.
            let split_stop = shutdown.child_token();
            let split = async {
                if self.mode != DelayMode::Tiers {
                    return;
                }
                let splitter = Splitter {
                    store: Some(self.store.clone()),
                    fired_queue: self.topology.tiers.fired_queue(),
                    exchange: self.topology.commands(),
                    confirm_timeout: self.config.confirm_timeout,
                };
                if let Err(e) = splitter.run(&conn, &split_stop).await {
                    tracing::warn!(error = %e, "delay splitter stopped; it starts again with the next connection");
                }
            };
            let publish = async {
                self.publish_while_connected(&publisher, &conn, &shutdown).await;
                split_stop.cancel();
            };
            tokio::join!(publish, split);
            let _ = conn.close(200, "payq relay reconnecting".into()).await;
        }
    }

    async fn publish_while_connected(
        &self,
        publisher: &ConfirmedPublisher,
        conn: &lapin::Connection,
        shutdown: &CancellationToken,
    ) {
        // How often to look for lost copies: a few times per grace period.
        let republish_every = (self.config.republish_grace / 4).max(Duration::from_millis(200));
        let mut last_republish = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            if !conn.status().connected() {
                tracing::warn!("outbox relay: connection lost; reconnecting");
                return;
            }
            if last_republish.elapsed() >= republish_every {
                last_republish = tokio::time::Instant::now();
                if !self.republish_lost(publisher).await {
                    return;
                }
            }
            let horizon = self.horizon();
            let batch = match self.store.claim_for_publish(horizon, self.config.batch, millis(self.config.lease)).await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: cannot claim messages");
                    sleep_or_stop(shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                self.wait_for_work(horizon, shutdown).await;
                continue;
            }
            if !self.publish_batch(publisher, &batch).await {
                return;
            }
        }
    }

    /// Publishes again the messages whose copies did not arrive in time; `false` when the
    /// connection failed.
    async fn republish_lost(&self, publisher: &ConfirmedPublisher) -> bool {
        let cutoff = Timestamp::now().plus_millis(-millis(self.config.republish_grace));
        let lost = match self.store.claim_for_republish(cutoff, self.config.batch, millis(self.config.lease)).await {
            Ok(lost) => lost,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: cannot look for lost messages");
                return true;
            }
        };
        if lost.is_empty() {
            return true;
        }
        tracing::warn!(count = lost.len(), "outbox relay: publishing again messages not handled in time");
        metrics::counter!("payq_outbox_republished_total").increment(lost.len() as u64);
        self.publish_batch(publisher, &lost).await
    }

    /// Publishes one claimed batch; `false` when the connection failed. Delayed messages
    /// that wait the same number of tier steps go as one bundle ([`super::bundle`]).
    async fn publish_batch(&self, publisher: &ConfirmedPublisher, batch: &[OutboxMessage]) -> bool {
        let now = Timestamp::now();
        // Each prepared address with the messages it carries (one, or a bundle's).
        let mut prepared: Vec<(Address, Vec<&OutboxMessage>)> = Vec::with_capacity(batch.len());
        let mut delayed: Vec<(u128, BundledMessage)> = Vec::new();
        let mut delayed_rows: Vec<&OutboxMessage> = Vec::new();
        let mut failed: Vec<(&OutboxMessage, String)> = Vec::new();
        let routes = self.router.route_all(batch).await;
        for (m, route) in batch.iter().zip(routes) {
            match route.map_err(RabbitError::from).and_then(|route| self.address(m, route, now)) {
                Ok(Addressed::Now(addr)) => prepared.push((addr, vec![m])),
                Ok(Addressed::Delayed { steps, message }) => {
                    delayed.push((steps, message));
                    delayed_rows.push(m);
                }
                Err(e) => failed.push((m, e.to_string())),
            }
        }
        for (steps, indexes, bundle) in bundle::group(delayed) {
            let rows: Vec<&OutboxMessage> = indexes.iter().filter_map(|i| delayed_rows.get(*i).copied()).collect();
            match bundle.into_tiers(&self.topology.tiers, steps) {
                Ok(tier_message) => prepared.push((Address::from(tier_message), rows)),
                Err(e) => failed.extend(rows.into_iter().map(|m| (m, e.to_string()))),
            }
        }
        let outgoing: Vec<Outgoing<'_>> = prepared
            .iter()
            .map(|(a, _)| Outgoing {
                exchange: &a.exchange,
                routing_key: &a.routing_key,
                message_id: &a.message_id,
                kind: &a.kind,
                body: a.body.as_bytes(),
                headers: a.headers.clone(),
            })
            .collect();
        let results = publisher.publish_many(&outgoing).await;
        let mut published = Vec::new();
        let mut announced = Vec::new();
        let mut connection_failed = false;
        for ((address, rows), result) in prepared.iter().zip(results) {
            match result {
                Ok(()) if address.announce_only => announced.extend(rows.iter().map(|m| &m.message)),
                Ok(()) => published.extend(rows.iter().map(|m| &m.message)),
                // No system subscribes to this event type, and payq's webhook has no use
                // for it: announced to nobody, which is done too.
                Err(PublishError::Returned(_)) if address.announce_only => {
                    metrics::counter!("payq_events_unrouted_total").increment(rows.len() as u64);
                    announced.extend(rows.iter().map(|m| &m.message));
                }
                Err(e) => {
                    connection_failed |= matches!(e, PublishError::Amqp(_) | PublishError::Timeout(_));
                    failed.extend(rows.iter().map(|m| (*m, e.to_string())));
                }
            }
        }
        metrics::counter!("payq_outbox_published_total").increment((published.len() + announced.len()) as u64);
        if let Err(e) = self.store.mark_published(&published).await {
            // The rows' leases expire and they are published again; consumers drop the
            // stale copies by claim token.
            tracing::warn!(error = %e, "outbox relay: could not mark messages published");
        }
        if !announced.is_empty() {
            metrics::counter!("payq_messages_fired_total", "kind" => "webhook.deliver")
                .increment(announced.len() as u64);
            if let Err(e) = self.store.complete_messages(&announced, &[]).await {
                // Their leases expire and they are announced again: at least once.
                tracing::warn!(error = %e, "outbox relay: could not record announced events");
            }
        }
        if !failed.is_empty() {
            metrics::counter!("payq_outbox_publish_failures_total").increment(failed.len() as u64);
            let retry_at = Timestamp::now().plus_millis(millis(self.config.retry_after));
            for (m, error) in &failed {
                tracing::warn!(message_id = %m.message.id, kind = %m.message.kind, error = %error, "publish failed; will retry");
                if let Err(e) = self.store.release_unpublished(&m.message, retry_at).await {
                    tracing::warn!(error = %e, "outbox relay: could not release a message");
                }
            }
        }
        !connection_failed
    }

    /// Where a message goes on its route: published now (to its queue, the events
    /// exchange or the plugin's exchange), or into the tiers with the messages that wait
    /// as many steps.
    fn address(&self, m: &OutboxMessage, route: Route, now: Timestamp) -> Result<Addressed, RabbitError> {
        let msg = &m.message;
        let due_at = m.due_at.to_rfc3339();
        let mut headers = bundle::message_headers(msg.claim, msg.key.as_deref(), &due_at);
        let delay = Duration::from_millis(u64::try_from(m.due_at.millis().saturating_sub(now.millis())).unwrap_or(0));
        let address = |exchange: String, routing_key: String, body: String, headers: FieldTable| Address {
            exchange,
            routing_key,
            message_id: msg.id.as_str().to_owned(),
            kind: msg.kind.clone(),
            body,
            headers,
            announce_only: false,
        };
        let now_address =
            |exchange, routing_key, body, headers| Addressed::Now(address(exchange, routing_key, body, headers));
        let (target, body) = match route {
            Route::Event { event_type, body, webhook } if delay < self.topology.tiers.base => {
                if webhook {
                    let to_webhooks = AMQPValue::LongString(LongString::from(self.topology.webhook_route()));
                    headers.insert("BCC".into(), AMQPValue::FieldArray(vec![to_webhooks].into()));
                }
                let announcement = address(self.topology.events(), event_type, body, headers);
                return Ok(Addressed::Now(Address { announce_only: !webhook, ..announcement }));
            }
            // A delayed event delivery (a retry) goes to the webhooks queue only, so other
            // subscribers see each event once.
            Route::Event { body, .. } => (self.topology.work_queue(WorkQueue::Webhooks), body),
            Route::Work(queue) => (self.topology.work_queue(queue), msg.payload.clone()),
        };
        if delay < self.topology.tiers.base || self.mode == DelayMode::Store {
            return Ok(now_address(self.topology.commands(), target, body, headers));
        }
        match self.mode {
            DelayMode::Plugin => {
                headers.insert("x-delay".into(), AMQPValue::LongLongInt(millis(delay)));
                Ok(now_address(plugin_exchange(&self.topology), target, body, headers))
            }
            _ => {
                let tiers = &self.topology.tiers;
                if delay > tiers.max_delay() {
                    return Err(TierError::TooLong(delay, tiers.max_delay()).into());
                }
                let message = BundledMessage {
                    routing_key: target,
                    message_id: msg.id.as_str().to_owned(),
                    kind: msg.kind.clone(),
                    claim: msg.claim,
                    key: msg.key.clone(),
                    due_at,
                    body,
                };
                Ok(Addressed::Delayed { steps: tiers.steps(delay), message })
            }
        }
    }

    /// How far ahead of its due time a message is published: at once into the work queue
    /// with the store engine (it keeps the delays), `publish_ahead` into the broker's
    /// delays otherwise.
    fn ahead(&self) -> Duration {
        match self.mode {
            DelayMode::Store => Duration::ZERO,
            DelayMode::Tiers | DelayMode::Plugin => self.config.publish_ahead,
        }
    }

    /// The latest due time a claim takes now.
    fn horizon(&self) -> Timestamp {
        Timestamp::now().plus_millis(millis(self.ahead()))
    }

    /// Sleeps until something is scheduled, the next unpublished message beyond `horizon`
    /// comes within it, or the poll.
    async fn wait_for_work(&self, horizon: Timestamp, shutdown: &CancellationToken) {
        let mut wait = self.config.idle_poll;
        if let Ok(Some(due)) = self.store.next_unpublished_due_after(horizon).await {
            let ms = due.millis().saturating_sub(millis(self.ahead())).saturating_sub(Timestamp::now().millis()).max(1);
            wait = wait.min(Duration::from_millis(u64::try_from(ms).unwrap_or(1)));
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.store.messages_changed(payq_store::Lane::Work) => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Where one AMQP message goes, and what it carries.
struct Address {
    exchange: String,
    routing_key: String,
    message_id: String,
    kind: String,
    body: String,
    headers: FieldTable,
    /// An event that only needs announcing: its row is done once the broker has it.
    announce_only: bool,
}

impl From<TierMessage> for Address {
    fn from(t: TierMessage) -> Address {
        let kind = bundle::BUNDLE_KIND.to_owned();
        Address {
            exchange: t.exchange,
            routing_key: t.routing_key,
            message_id: t.message_id,
            kind,
            body: t.body,
            headers: t.headers,
            announce_only: false,
        }
    }
}

/// A message's way out of the relay.
enum Addressed {
    /// Published as it is.
    Now(Address),
    /// Into the tiers, bundled with the messages that wait as many steps.
    Delayed { steps: u128, message: BundledMessage },
}

pub(crate) async fn sleep_or_stop(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
