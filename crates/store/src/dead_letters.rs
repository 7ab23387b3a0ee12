//! Dead letters: messages that kept failing, kept with their last error for inspection and
//! replay.

use crate::{Store, StoreError, StoreResult};
use payq_domain::{DeadLetterId, MessageId, Timestamp};

/// A dead-lettered message.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = String)]
    pub id: DeadLetterId,
    pub message_id: String,
    pub kind: String,
    pub key: Option<String>,
    /// Position among deliveries of the same key (kept so a replay still goes in order).
    #[serde(skip)]
    pub ordinal: Option<i64>,
    /// The lane the message ran in (a replay runs there again).
    #[serde(skip)]
    pub lane: crate::Lane,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub last_error: String,
    #[schema(value_type = String)]
    pub created_at: Timestamp,
}

pub(crate) fn dead_letter(row: &crate::db::Row) -> StoreResult<DeadLetter> {
    let payload: String = row.try_get("payload")?;
    Ok(DeadLetter {
        id: crate::rows::parse(row, "id")?,
        message_id: row.try_get("message_id")?,
        kind: row.try_get("kind")?,
        key: row.try_get("key")?,
        ordinal: row.try_get("ordinal")?,
        lane: crate::Lane::from_code(row.try_get("lane")?),
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

impl Store {
    /// Dead letters, newest first.
    pub async fn dead_letters(&self, limit: u32) -> StoreResult<Vec<DeadLetter>> {
        let rows = crate::db::query("SELECT * FROM dead_letters ORDER BY id DESC LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(self.read())
            .await?;
        rows.iter().map(dead_letter).collect()
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: &DeadLetterId) -> StoreResult<DeadLetter> {
        let row = crate::db::query("SELECT * FROM dead_letters WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        dead_letter(&row)
    }

    /// Moves a dead letter back into the queue, due now, with a fresh attempt count.
    pub async fn replay_dead_letter(&self, id: &DeadLetterId) -> StoreResult<MessageId> {
        let mut tx = self.begin().await?;
        let row = crate::db::query("SELECT * FROM dead_letters WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        let dl = dead_letter(&row)?;
        crate::db::query("DELETE FROM dead_letters WHERE id = $1").bind(id.as_str()).execute(tx.conn()).await?;
        let msg = tx
            .schedule(crate::NewMessage {
                kind: dl.kind,
                key: dl.key,
                lane: dl.lane,
                ordinal: dl.ordinal,
                payload: dl.payload,
                due_at: Timestamp::now(),
            })
            .await?;
        tx.commit().await?;
        Ok(msg)
    }

    /// How many dead letters there are.
    pub async fn dead_letter_count(&self) -> StoreResult<i64> {
        crate::db::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(self.read()).await
    }

    /// Deletes every dead letter; how many there were.
    pub async fn purge_dead_letters(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = crate::db::query("DELETE FROM dead_letters").execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
