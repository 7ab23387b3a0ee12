//! What waits in the delay engine's queue, for people: pending messages, counts by kind
//! and due time, the most overdue one, and the engine's totals (`payq timers stats`,
//! `/v1/admin/stats`, the console).

use crate::{Store, StoreResult};
use payq_domain::Timestamp;

/// A message still waiting, for inspection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingMessage {
    pub id: String,
    pub kind: String,
    pub key: Option<String>,
    pub due_at: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// Pending messages by kind and due time, the most overdue one, and engine totals.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MessageStats {
    /// `(kind, pending count)`.
    pub pending_by_kind: Vec<(String, i64)>,
    /// `(bucket, count)` for due-time buckets: overdue, <1m, <1h, <1d, later.
    pub pending_by_due: Vec<(String, i64)>,
    /// How late the most overdue message is, in milliseconds.
    pub oldest_overdue_ms: Option<i64>,
    pub pending_total: i64,
    pub dead_letters: i64,
    /// `(counter, total)`, e.g. `("fired:payment.timeout", 12)`.
    pub counters: Vec<(String, i64)>,
}

impl Store {
    /// Pending messages, soonest first.
    pub async fn pending_messages(&self, kind: Option<&str>, limit: u32) -> StoreResult<Vec<PendingMessage>> {
        let rows = crate::db::query(
            "SELECT id, kind, key, due_at, attempts, last_error FROM messages
             WHERE ($1 IS NULL OR kind = $1) ORDER BY due_at LIMIT $2",
        )
        .bind(kind)
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?;
        rows.iter().map(pending_message).collect()
    }

    /// Pending messages by kind (an index scan).
    pub async fn pending_by_kind(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = crate::db::query("SELECT kind, COUNT(*) AS n FROM messages GROUP BY kind ORDER BY kind")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("kind")?, r.try_get("n")?))).collect()
    }

    /// Counts for `payq timers stats` and `/v1/admin/stats`.
    pub async fn message_stats(&self, now: Timestamp) -> StoreResult<MessageStats> {
        let pairs = |rows: Vec<crate::db::Row>, k: &str, v: &str| -> StoreResult<Vec<(String, i64)>> {
            rows.iter().map(|r| Ok((r.try_get(k)?, r.try_get(v)?))).collect()
        };
        let by_kind = crate::db::query("SELECT kind, COUNT(*) AS n FROM messages GROUP BY kind ORDER BY kind")
            .fetch_all(self.read())
            .await?;
        let pending_by_kind = pairs(by_kind, "kind", "n")?;
        let n = now.millis();
        let by_due = crate::db::query(
            "SELECT CASE WHEN due_at <= $1 THEN 'overdue' WHEN due_at <= $1 + 60000 THEN '<1m'
                         WHEN due_at <= $1 + 3600000 THEN '<1h' WHEN due_at <= $1 + 86400000 THEN '<1d'
                         ELSE 'later' END AS bucket, COUNT(*) AS n
             FROM messages GROUP BY bucket",
        )
        .bind(n)
        .fetch_all(self.read())
        .await?;
        let pending_by_due = pairs(by_due, "bucket", "n")?;
        let oldest: Option<i64> = crate::db::query_scalar("SELECT MIN(due_at) FROM messages WHERE due_at <= $1")
            .bind(n)
            .fetch_one(self.read())
            .await?;
        let dead_letters: i64 =
            crate::db::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(self.read()).await?;
        let counters = crate::db::query(
            "SELECT name, CAST(SUM(n) AS BIGINT) AS n FROM engine_counters GROUP BY name ORDER BY name",
        )
        .fetch_all(self.read())
        .await?;
        Ok(MessageStats {
            pending_total: pending_by_kind.iter().map(|(_, n)| n).sum(),
            pending_by_kind,
            pending_by_due,
            oldest_overdue_ms: oldest.map(|due| n - due),
            dead_letters,
            counters: pairs(counters, "name", "n")?,
        })
    }
}

/// A pending message from a row of `id, kind, key, due_at, attempts, last_error`.
pub(crate) fn pending_message(r: &crate::db::Row) -> StoreResult<PendingMessage> {
    Ok(PendingMessage {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        key: r.try_get("key")?,
        due_at: Timestamp::from_millis(r.try_get("due_at")?),
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
    })
}
