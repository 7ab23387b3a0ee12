//! `Idempotency-Key` records: the first response to a key is kept and replayed.

use crate::{Store, StoreError, StoreResult};
use payq_domain::Timestamp;
use sqlx::Row;

/// A response kept for replay.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What the store knows about a key when a request arrives with it.
#[derive(Debug, Clone)]
pub enum IdempotencyBegin {
    /// First use: the key is now reserved for this request.
    Reserved,
    /// The same request was answered before: replay this.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

impl Store {
    /// Reserves `key` for a request whose content hashes to `request_hash`, or says why not.
    pub async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
    ) -> StoreResult<IdempotencyBegin> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency_keys WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .fetch_optional(tx.conn())
        .await?;
        let outcome = match row {
            Some(row) => {
                let hash: String = row.try_get("request_hash")?;
                let status: Option<i64> = row.try_get("status")?;
                let body: Option<String> = row.try_get("response")?;
                match (hash == request_hash, status, body) {
                    (false, _, _) => IdempotencyBegin::Mismatch,
                    (true, Some(status), Some(body)) => IdempotencyBegin::Replay(StoredResponse {
                        status: u16::try_from(status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        body,
                    }),
                    (true, _, _) => IdempotencyBegin::InProgress,
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(principal)
                .bind(key)
                .bind(request_hash)
                .bind(Timestamp::now().millis())
                .execute(tx.conn())
                .await?;
                IdempotencyBegin::Reserved
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Keeps the response to a reserved key.
    pub async fn idempotency_complete(&self, principal: &str, key: &str, response: &StoredResponse) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE idempotency_keys SET status = $1, response = $2 WHERE principal = $3 AND key = $4")
            .bind(i64::from(response.status))
            .bind(&response.body)
            .bind(principal)
            .bind(key)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Frees a reserved key whose request failed without an answer worth keeping, so the
    /// client can retry with it.
    pub async fn idempotency_release(&self, principal: &str, key: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL")
            .bind(principal)
            .bind(key)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Deletes keys older than `before`. Returns how many.
    pub async fn idempotency_expire(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before.millis())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
