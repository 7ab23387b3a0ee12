//! Recording a payment's start at its channel: what the channel answered (its trade id and
//! the buyer's next step), the end of the start's channel claim and the first payment
//! query, written together or not at all (docs/architecture.md, "One statement per state
//! change").

use crate::{ChannelCall, NewMessage, Store, StoreError, StoreResult};
use payq_domain::{NextAction, PaymentId, PaymentStatus};

/// The start's compare-and-set on the payment (its parameters `$1` to `$6`), as SQLite runs
/// it and as PostgreSQL's one statement holds it.
macro_rules! record_start {
    () => {
        "UPDATE payments SET status = $1, channel_txn_id = COALESCE($2, channel_txn_id),
             next_action = COALESCE($3, next_action), updated_at = $4 WHERE id = $5 AND status = $6"
    };
}

/// What a payment's start writes.
pub struct PaymentStart<'a> {
    pub id: &'a PaymentId,
    /// The status the start found, and the one it leaves (the payment state machine's
    /// answer): the start is recorded only while the payment is still in `from`, so a
    /// callback applied meanwhile keeps its outcome.
    pub from: PaymentStatus,
    pub to: PaymentStatus,
    /// The channel's trade id, if it gave one.
    pub channel_txn_id: Option<&'a str>,
    /// What the buyer does next (a QR code, a page, a payer's parameters).
    pub next_action: Option<&'a NextAction>,
    /// The claimed channel call this start made, finished for good whether or not the
    /// payment was still waiting for it.
    pub finish: Option<ChannelCall<'a>>,
    /// The payment's first query, scheduled only if the start is recorded.
    pub first_query: Option<NewMessage>,
}

impl Store {
    /// Records a payment's start (see [`PaymentStart`]) and answers whether the payment was
    /// still in `from`. On PostgreSQL this is one autocommitted statement, one round trip
    /// instead of a transaction's six; on SQLite one write transaction of the writer.
    pub async fn record_payment_start(&self, start: PaymentStart<'_>) -> StoreResult<bool> {
        let next_action =
            start.next_action.map(serde_json::to_string).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let first_query = start.first_query.map(crate::scheduling::Unwritten::try_from).transpose()?;
        if self.backend().one_writer() {
            let mut tx = self.begin().await?;
            if let Some(call) = start.finish {
                tx.finish_channel_call(call).await?;
            }
            let started = crate::db::query(record_start!())
                .bind(start.to.as_str())
                .bind(start.channel_txn_id)
                .bind(next_action)
                .bind(crate::now_ms())
                .bind(start.id.as_str())
                .bind(start.from.as_str())
                .execute(tx.conn())
                .await?
                .rows_affected()
                > 0;
            if started && let Some(query) = first_query {
                tx.schedule_unwritten(query);
            }
            tx.commit().await?;
            return Ok(started);
        }
        let now = crate::now_ms();
        let (call_id, call_done) =
            start.finish.map_or((None, None), |call| (Some(call.id()), Some(crate::channel_calls::DONE)));
        let scheduled = first_query.is_some();
        let q = first_query.as_ref();
        let outcome = crate::db::query(concat!(
            "WITH started AS (",
            record_start!(),
            " RETURNING id),
             finished AS (
                 INSERT INTO channel_calls (id, owner, claimed_until) SELECT CAST($7 AS TEXT), NULL, CAST($8 AS BIGINT)
                 WHERE $7 IS NOT NULL
                 ON CONFLICT (id) DO UPDATE SET owner = NULL, claimed_until = excluded.claimed_until),
             queued AS (
                 INSERT INTO messages (id, kind, key, ordinal, payload, scheduled_at, due_at, created_at, lane)
                 SELECT CAST($9 AS TEXT), CAST($10 AS TEXT), CAST($11 AS TEXT), NULL, CAST($12 AS TEXT),
                        CAST($13 AS BIGINT), CAST($13 AS BIGINT), $4, CAST($14 AS INTEGER)
                 FROM started WHERE $9 IS NOT NULL)
             SELECT COUNT(*) AS n FROM started"
        ))
        .bind(start.to.as_str())
        .bind(start.channel_txn_id)
        .bind(next_action)
        .bind(now)
        .bind(start.id.as_str())
        .bind(start.from.as_str())
        .bind(call_id)
        .bind(call_done)
        .bind(q.map(|m| m.id.as_str()))
        .bind(q.map(|m| m.kind.as_str()))
        .bind(q.and_then(|m| m.key.as_deref()))
        .bind(q.map(|m| m.payload.as_str()))
        .bind(q.map(|m| m.due_at.millis()))
        .bind(q.map(|m| m.lane.code()))
        .fetch_one(self.read())
        .await;
        self.note_write(&outcome);
        let n: i64 = outcome?.try_get("n")?;
        if n > 0 && scheduled {
            self.announce_messages();
            self.notify_messages_changed();
        }
        Ok(n > 0)
    }
}
