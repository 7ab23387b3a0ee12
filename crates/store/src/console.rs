//! Reads for the operator console (docs/console.md): searches and histories across
//! merchants, which the merchant API never needs.

use crate::dead_letters::DeadLetter;
use crate::orders::OrderPage;
use crate::pending::PendingMessage;
use crate::rows::{self, select_orders};
use crate::{Store, StoreError, StoreResult};
use payq_domain::{Event, Merchant, MerchantId, Order, OrderId, OrderStatus, Refund, Timestamp};

/// What to look for among all orders; every part given must match.
#[derive(Debug, Default, Clone)]
pub struct OrderSearch {
    pub id: Option<OrderId>,
    pub merchant_order_no: Option<String>,
    pub status: Option<OrderStatus>,
    pub merchant_id: Option<MerchantId>,
}

/// An event of an order and whether its webhook delivery succeeded.
#[derive(Debug, Clone)]
pub struct TimelineEvent {
    pub event: Event,
    /// Attempts it took and when it was delivered, if it was.
    pub delivered: Option<(i64, Timestamp)>,
}

/// Everything that happened to an order and what is still to happen.
#[derive(Debug, Clone)]
pub struct OrderHistory {
    pub order: Order,
    pub events: Vec<TimelineEvent>,
    pub refunds: Vec<Refund>,
    /// Timers and jobs still pending for the order, its payments and refunds, soonest first.
    pub pending: Vec<PendingMessage>,
    /// Those that ran out of attempts.
    pub dead_letters: Vec<DeadLetter>,
}

/// Orders created and paid in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCounts {
    pub minute: Timestamp,
    pub created: i64,
    pub paid: i64,
}

/// The kinds of message that can concern an order (by order, payment or refund id).
const ORDER_MESSAGE_KINDS: &str = "'payment.request', 'payment.timeout', 'payment.query', 'payment.close', \
                                   'refund.execute', \
                                   'order.check', 'order.ship_reminder', 'webhook.deliver'";

impl Store {
    /// A page of all merchants' orders matching `q`, newest first, after the order `after`.
    pub async fn search_orders(&self, q: &OrderSearch, after: Option<&OrderId>, limit: u32) -> StoreResult<OrderPage> {
        let rows = crate::db::query(select_orders!(
            "WHERE ($1 IS NULL OR o.id = $1) AND ($2 IS NULL OR o.merchant_order_no = $2)
               AND ($3 IS NULL OR o.status = $3) AND ($4 IS NULL OR o.merchant_id = $4)
               AND ($5 IS NULL OR o.id < $5)
             ORDER BY o.id DESC LIMIT $6"
        ))
        .bind(q.id.as_ref().map(OrderId::as_str))
        .bind(q.merchant_order_no.as_deref())
        .bind(q.status.map(OrderStatus::as_str))
        .bind(q.merchant_id.as_ref().map(MerchantId::as_str))
        .bind(after.map(OrderId::as_str))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.read())
        .await?;
        crate::orders::order_page(&rows, limit)
    }

    /// An order's history: its events with their deliveries, refunds, pending timers and
    /// jobs, and dead letters.
    pub async fn order_history(&self, id: &OrderId) -> StoreResult<OrderHistory> {
        let row = crate::db::query(select_orders!("WHERE o.id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        let order = rows::order(&row)?;

        let events = crate::db::query(
            "SELECT e.body, d.attempts, d.delivered_at FROM events e
             LEFT JOIN webhook_deliveries d ON d.event_id = e.id
             WHERE e.order_id = $1 ORDER BY e.seq",
        )
        .bind(id.as_str())
        .fetch_all(self.read())
        .await?
        .iter()
        .map(|r| {
            let body: String = r.try_get("body")?;
            let attempts: Option<i64> = r.try_get("attempts")?;
            let at: Option<i64> = r.try_get("delivered_at")?;
            Ok(TimelineEvent {
                event: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?,
                delivered: attempts.zip(at.map(Timestamp::from_millis)),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;

        let refunds = crate::db::query("SELECT * FROM refunds WHERE order_id = $1 ORDER BY created_at")
            .bind(id.as_str())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(rows::refund)
            .collect::<StoreResult<Vec<_>>>()?;

        // The order's own id and those of its payments and refunds key its messages.
        let payments: Vec<String> = crate::db::query("SELECT id FROM payments WHERE order_id = $1")
            .bind(id.as_str())
            .fetch_all(self.read())
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<StoreResult<_>>()?;
        let mut keys = vec![id.as_str().to_owned()];
        keys.extend(payments);
        keys.extend(refunds.iter().map(|r| r.id.as_str().to_owned()));
        let keys_json = serde_json::to_string(&keys).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let keys_listed = self.backend().in_json_texts("key", "$1");
        let dead_keys_listed = self.backend().in_json_texts("d.key", "$1");
        let pending = crate::db::query(&format!(
            "SELECT id, kind, key, due_at, attempts, last_error FROM messages
             WHERE kind IN ({ORDER_MESSAGE_KINDS}) AND {keys_listed} ORDER BY due_at"
        ))
        .bind(keys_json.as_str())
        .fetch_all(self.read())
        .await?
        .iter()
        .map(crate::pending::pending_message)
        .collect::<StoreResult<Vec<_>>>()?;
        let dead_letters =
            crate::db::query(&format!("SELECT * FROM dead_letters d WHERE {dead_keys_listed} ORDER BY d.created_at"))
                .bind(keys_json.as_str())
                .fetch_all(self.read())
                .await?
                .iter()
                .map(crate::dead_letters::dead_letter)
                .collect::<StoreResult<Vec<_>>>()?;
        Ok(OrderHistory { order, events, refunds, pending, dead_letters })
    }

    /// Orders created and paid per minute since `since`, oldest minute first (minutes with
    /// neither are left out).
    pub async fn orders_per_minute(&self, since: Timestamp) -> StoreResult<Vec<MinuteCounts>> {
        let rows = crate::db::query(
            "SELECT minute, SUM(created) AS created, SUM(paid) AS paid FROM (
                 SELECT created_at / 60000 AS minute, 1 AS created, 0 AS paid FROM orders WHERE created_at >= $1
                 UNION ALL
                 SELECT paid_at / 60000 AS minute, 0 AS created, 1 AS paid FROM orders WHERE paid_at >= $1
             ) AS per_order GROUP BY minute ORDER BY minute",
        )
        .bind(since.millis())
        .fetch_all(self.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MinuteCounts {
                    minute: Timestamp::from_millis(r.try_get::<i64>("minute")? * 60_000),
                    created: r.try_get("created")?,
                    paid: r.try_get("paid")?,
                })
            })
            .collect()
    }

    /// All merchants, newest first, at most `limit`.
    pub async fn merchants(&self, limit: u32) -> StoreResult<Vec<Merchant>> {
        crate::db::query(
            "SELECT id, name, webhook_url, webhook_events, settings, created_at FROM merchants
             ORDER BY created_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?
        .iter()
        .map(rows::merchant)
        .collect()
    }
}
