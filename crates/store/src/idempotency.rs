//! `Idempotency-Key` records: the first response to a key is kept and replayed.
//!
//! A key is first *reserved* for the request that brought it, with a short lease that the
//! request renews while it runs. A request cut off by a crash (or whose outcome could not
//! be recorded) leaves a reservation whose lease runs out within seconds; the next request
//! with the key then takes it over and runs afresh, so a key is never locked for good.

use crate::{Store, StoreError, StoreResult};
use payq_domain::Timestamp;

/// A response kept for replay.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What the store knows about a key when a request arrives with it.
#[derive(Debug, Clone)]
pub enum IdempotencyBegin {
    /// First use, or a reservation whose lease ran out: the key is now reserved for this
    /// request.
    Reserved,
    /// The same request was answered before: replay this.
    Replay(StoredResponse),
    /// The key was used with a different request.
    Mismatch,
    /// The first request with this key is still running (its lease is live).
    InProgress,
}

impl Store {
    /// Reserves `key` for `lease_ms` for a request whose content hashes to `request_hash`,
    /// or says why not.
    pub async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> StoreResult<IdempotencyBegin> {
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        if !self.backend().one_writer() {
            // Two first uses at once: one inserts, the other waits here and then sees it.
            crate::db::query("SELECT pg_advisory_xact_lock(hashtext($1::text || ' ' || $2::text))")
                .bind(principal)
                .bind(key)
                .execute(tx.conn())
                .await?;
        }
        let row = crate::db::query(
            "SELECT request_hash, status, response, locked_until FROM idempotency_keys
             WHERE principal = $1 AND key = $2",
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
                let locked_until: Option<i64> = row.try_get("locked_until")?;
                match (hash == request_hash, status, body) {
                    (false, _, _) => IdempotencyBegin::Mismatch,
                    (true, Some(status), Some(body)) => IdempotencyBegin::Replay(StoredResponse {
                        status: u16::try_from(status).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                        body,
                    }),
                    (true, _, _) if locked_until.is_some_and(|until| until > now) => IdempotencyBegin::InProgress,
                    (true, _, _) => {
                        // The request that reserved it is gone: this one takes the key over.
                        crate::db::query(
                            "UPDATE idempotency_keys SET locked_until = $1 WHERE principal = $2 AND key = $3",
                        )
                        .bind(now.saturating_add(lease_ms))
                        .bind(principal)
                        .bind(key)
                        .execute(tx.conn())
                        .await?;
                        IdempotencyBegin::Reserved
                    }
                }
            }
            None => {
                crate::db::query(
                    "INSERT INTO idempotency_keys (principal, key, request_hash, created_at, locked_until)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(principal)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(now.saturating_add(lease_ms))
                .execute(tx.conn())
                .await?;
                IdempotencyBegin::Reserved
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Extends the reservation of a key whose request is still running.
    pub async fn idempotency_renew(&self, principal: &str, key: &str, lease_ms: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::db::query(
            "UPDATE idempotency_keys SET locked_until = $1 WHERE principal = $2 AND key = $3 AND status IS NULL",
        )
        .bind(Timestamp::now().millis().saturating_add(lease_ms))
        .bind(principal)
        .bind(key)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Keeps the response to a reserved key.
    pub async fn idempotency_complete(&self, principal: &str, key: &str, response: &StoredResponse) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::db::query(
            "UPDATE idempotency_keys SET status = $1, response = $2, locked_until = NULL
             WHERE principal = $3 AND key = $4",
        )
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
        crate::db::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND status IS NULL")
            .bind(principal)
            .bind(key)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// Deletes keys older than `before`. Returns how many.
    pub async fn idempotency_expire(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = crate::db::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before.millis())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
