//! The merchant's event log. Each state change writes its event in the change's
//! transaction; the log is read back oldest first.

use crate::merchants::MerchantCredentials;
use crate::{Store, StoreError, StoreResult, Tx};
use payq_domain::{Event, EventId, EventType, MerchantId, OrderId, Timestamp};
use std::collections::HashMap;

/// An event to record.
pub struct NewEvent<'a> {
    pub event_type: EventType,
    pub merchant_id: &'a MerchantId,
    pub order_id: Option<&'a OrderId>,
    /// `{order, refund?}` as the API returns them.
    pub data: serde_json::Value,
}

/// An event appended in a transaction and not yet written (see [`Tx::insert_event`]).
pub(crate) struct UnwrittenEvent {
    pub(crate) id: EventId,
    merchant_id: MerchantId,
    event_type: EventType,
    order_id: Option<OrderId>,
    created_at: i64,
    body: String,
}

impl UnwrittenEvent {
    /// The row as a JSON array, in the order of [`EVENT_COLUMNS`].
    pub(crate) fn json_row(&self) -> serde_json::Value {
        serde_json::json!([
            self.id.as_str(),
            self.merchant_id.as_str(),
            self.event_type.as_str(),
            self.order_id.as_ref().map(OrderId::as_str),
            self.created_at,
            self.body
        ])
    }
}

/// The columns of an event row, and how they are read from a JSON array of
/// [`UnwrittenEvent::json_row`]s (`value` is each element).
pub(crate) const EVENT_COLUMNS: &str = "id, merchant_id, type, order_id, created_at, body";
pub(crate) const EVENT_VALUES: &str =
    "value ->> 0, value ->> 1, value ->> 2, value ->> 3, CAST(value ->> 4 AS BIGINT), value ->> 5";

impl Tx {
    /// Appends an event to the merchant's log. It is written with the transaction's
    /// messages, in the same statement on PostgreSQL (docs/architecture.md, "One statement
    /// per state change"); a delivery scheduled with [`Tx::schedule_in_event_order`] takes
    /// the event's position in the log as its ordinal.
    pub fn insert_event(&mut self, e: NewEvent<'_>) -> StoreResult<Event> {
        let event = Event {
            id: EventId::generate(),
            event_type: e.event_type,
            created_at: Timestamp::now().to_rfc3339(),
            merchant_id: e.merchant_id.clone(),
            data: e.data,
        };
        let body = serde_json::to_string(&event).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        self.unwritten_events.push(UnwrittenEvent {
            id: event.id.clone(),
            merchant_id: event.merchant_id.clone(),
            event_type: event.event_type,
            order_id: e.order_id.cloned(),
            created_at: Timestamp::now().millis(),
            body,
        });
        Ok(event)
    }

    /// Writes one event as a plain `INSERT` and returns its position in the log (SQLite).
    pub(crate) async fn write_event(&mut self, e: &UnwrittenEvent) -> StoreResult<i64> {
        let seq = crate::db::query_scalar(
            "INSERT INTO events (id, merchant_id, type, order_id, created_at, body) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING seq",
        )
        .bind(e.id.as_str())
        .bind(e.merchant_id.as_str())
        .bind(e.event_type.as_str())
        .bind(e.order_id.as_ref().map(OrderId::as_str))
        .bind(e.created_at)
        .bind(e.body.as_str())
        .fetch_one(self.conn())
        .await?;
        Ok(seq)
    }
}

fn event(row: &crate::db::Row) -> StoreResult<Event> {
    let body: String = row.try_get("body")?;
    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("event body: {e}")))
}

impl Store {
    /// The merchant's events, oldest first, after the event `after`; `.1` is whether more
    /// follow.
    pub async fn events(
        &self,
        merchant: &MerchantId,
        after: Option<&EventId>,
        limit: u32,
    ) -> StoreResult<(Vec<Event>, bool)> {
        let rows = crate::db::query(
            "SELECT body FROM events
             WHERE merchant_id = $1 AND seq > COALESCE((SELECT seq FROM events WHERE id = $2 AND merchant_id = $1), 0)
             ORDER BY seq LIMIT $3",
        )
        .bind(merchant.as_str())
        .bind(after.map(EventId::as_str))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.read())
        .await?;
        let mut events = rows.iter().map(event).collect::<StoreResult<Vec<_>>>()?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        Ok((events, more))
    }

    /// Whether the event `after` exists for the merchant.
    pub async fn event_exists(&self, merchant: &MerchantId, id: &EventId) -> StoreResult<bool> {
        let n: i64 = crate::db::query_scalar("SELECT COUNT(*) FROM events WHERE id = $1 AND merchant_id = $2")
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_one(self.read())
            .await?;
        Ok(n > 0)
    }

    /// An event's stored JSON body (the exact bytes webhooks send), its type and merchant.
    pub async fn event_body(&self, id: &EventId) -> StoreResult<EventBody> {
        let row = crate::db::query("SELECT merchant_id, type, body FROM events WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        event_body(&row)
    }

    /// The events `ids` (those that exist) as the relay announces them, by id: each stored
    /// body, and whether its merchant's webhook takes it (a webhook URL, and a filter that
    /// lets its type through). One read for a batch of messages to route.
    pub async fn events_to_announce(&self, ids: &[EventId]) -> StoreResult<HashMap<EventId, Announcement>> {
        let ids = serde_json::to_string(&ids.iter().map(EventId::as_str).collect::<Vec<_>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let backend = self.backend();
        let wanted = backend.json_array_has("m.webhook_events", "e.type");
        let listed = backend.in_json_texts("e.id", "$1");
        let sql = format!(
            "SELECT e.id, e.merchant_id, e.type, e.body,
                    (m.webhook_url IS NOT NULL AND (m.webhook_events IS NULL OR {wanted})) AS webhook
             FROM events e LEFT JOIN merchants m ON m.id = e.merchant_id WHERE {listed}"
        );
        let rows = crate::db::query(&sql).bind(ids).fetch_all(self.read()).await?;
        rows.iter()
            .map(|row| {
                let webhook: Option<bool> = row.try_get("webhook")?;
                let announcement = Announcement { event: event_body(row)?, webhook: webhook.unwrap_or(false) };
                Ok((crate::rows::parse(row, "id")?, announcement))
            })
            .collect()
    }

    /// What a webhook delivery of event `id` needs, in one read: the event, its merchant
    /// (`None` when the merchant is gone), whether a delivery of `earlier` (kind, key and
    /// ordinal: the order's earlier events) is still pending, and whether the event has
    /// reached the webhook already.
    pub async fn delivery_context(
        &self,
        id: &EventId,
        earlier: Option<(&str, &str, i64)>,
    ) -> StoreResult<DeliveryContext> {
        let row = crate::db::query(
            "SELECT e.merchant_id, e.type, e.body, m.*,
                    EXISTS (SELECT 1 FROM messages q WHERE q.kind = $2 AND q.key = $3 AND q.ordinal < $4) AS earlier_pending,
                    EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) AS delivered
             FROM events e LEFT JOIN merchants m ON m.id = e.merchant_id WHERE e.id = $1",
        )
        .bind(id.as_str())
        .bind(earlier.map(|(kind, _, _)| kind))
        .bind(earlier.map(|(_, key, _)| key))
        .bind(earlier.map(|(_, _, ordinal)| ordinal))
        .fetch_optional(self.read())
        .await?
        .ok_or(StoreError::NotFound)?;
        let event = event_body(&row)?;
        let merchant = match row.try_get::<Option<String>>("id")? {
            Some(_) => Some(crate::merchants::credentials(&row)?),
            None => None,
        };
        Ok(DeliveryContext {
            event,
            merchant,
            earlier_pending: row.try_get("earlier_pending")?,
            delivered: row.try_get("delivered")?,
        })
    }

    /// The merchant's event `id` (`NotFound` for another merchant's).
    pub async fn merchant_event_body(&self, merchant: &MerchantId, id: &EventId) -> StoreResult<EventBody> {
        match self.event_body(id).await {
            Ok(event) if &event.merchant_id == merchant => Ok(event),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(e),
        }
    }
}

/// What a webhook delivery needs (see [`Store::delivery_context`]).
pub struct DeliveryContext {
    pub event: EventBody,
    /// `None` when the merchant is gone.
    pub merchant: Option<MerchantCredentials>,
    /// An earlier delivery about the same key is still pending.
    pub earlier_pending: bool,
    /// The event has reached the webhook already.
    pub delivered: bool,
}

/// An event's merchant, type and body from a row that selects `merchant_id`, `type` and
/// `body`.
fn event_body(row: &crate::db::Row) -> StoreResult<EventBody> {
    Ok(EventBody {
        merchant_id: crate::rows::parse(row, "merchant_id")?,
        event_type: row.try_get("type")?,
        body: row.try_get("body")?,
    })
}

/// An event as the relay announces it on `payq.events`.
pub struct Announcement {
    pub event: EventBody,
    /// Whether the merchant's webhook takes the event (then it also goes to payq's own
    /// webhook queue).
    pub webhook: bool,
}

/// An event as webhooks send it.
pub struct EventBody {
    pub merchant_id: MerchantId,
    /// The wire name of its type, e.g. `order.created`.
    pub event_type: String,
    /// The exact JSON bytes a webhook sends.
    pub body: String,
}
