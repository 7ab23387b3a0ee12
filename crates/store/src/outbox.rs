//! The messages table as the outbox and inbox of the RabbitMQ transport.
//!
//! A relay claims unpublished rows (stamping a fresh claim token and a short relay lease, in
//! a transaction that commits before anything is published), publishes each with its token,
//! and after a positive confirm stamps `published_at`. A consumer handles a delivery only
//! while the row with the delivery's `message_id` still carries the delivery's token: a
//! duplicate, a stale copy from an earlier publication and a cancelled timer all find no
//! such row and are dropped. Completing, retrying or dead-lettering the row uses the same
//! statements as the store engine. A relay that dies mid-way leaves leases that expire;
//! its rows are then claimed and published again under a new token.

use crate::{Store, StoreResult};
use payq_domain::Timestamp;

/// A message claimed for publication, with when it is due.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub message: crate::ClaimedMessage,
    pub due_at: Timestamp,
}

const RETURNING: &str = "RETURNING seq, id, kind, key, ordinal, lane, payload, scheduled_at, attempts, claim, due_at";

/// A claimed row (selected with [`RETURNING`]) as a message to publish.
fn outbox_message(row: &crate::db::Row) -> StoreResult<OutboxMessage> {
    Ok(OutboxMessage {
        message: crate::messages::claimed(row)?,
        due_at: Timestamp::from_millis(row.try_get("due_at")?),
    })
}

impl Store {
    /// Claims up to `limit` unpublished messages due by `horizon` (those due within
    /// `rabbitmq.publish_ahead` for the RabbitMQ delay engines, the due ones for the store
    /// engine), earliest due first, holding them for `lease_ms`. PostgreSQL only (`FOR
    /// UPDATE SKIP LOCKED`); the batch comes back in `seq` order.
    pub async fn claim_for_publish(
        &self,
        horizon: Timestamp,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        let rows = crate::db::query(&format!(
            "UPDATE messages SET claim = $1, attempts = attempts + 1, relay_lease = $2
             WHERE seq IN (SELECT seq FROM messages
                           WHERE published_at IS NULL AND (relay_lease IS NULL OR relay_lease <= $3) AND due_at <= $4
                           ORDER BY due_at, seq LIMIT $5 FOR UPDATE SKIP LOCKED)
             {RETURNING}"
        ))
        .bind(crate::messages::rand_claim())
        .bind(now.saturating_add(lease_ms))
        .bind(now)
        .bind(horizon.millis())
        .bind(i64::from(limit))
        .fetch_all(tx.conn())
        .await?;
        // Committed before publishing, so a consumer finds the token the delivery carries;
        // not waited on to reach the disk: a claim lost in a crash leaves the rows
        // unpublished under their old token, so the copies already sent are dropped as
        // stale and the rows are published again.
        tx.commit_relaxed().await?;
        let mut out = rows.iter().map(outbox_message).collect::<StoreResult<Vec<_>>>()?;
        out.sort_by_key(|m| m.message.seq);
        Ok(out)
    }

    /// Claims up to `limit` published messages that are still pending although they were
    /// due, and published, before `cutoff` (their copy in the broker was lost, or is stuck
    /// behind consumers that are down), holding them for `lease_ms` under a fresh claim
    /// token: a copy still in the broker is then stale and dropped by its consumer.
    /// PostgreSQL only (`FOR UPDATE SKIP LOCKED`).
    pub async fn claim_for_republish(
        &self,
        cutoff: Timestamp,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        let rows = crate::db::query(&format!(
            "UPDATE messages SET claim = $1, relay_lease = $2, published_at = NULL
             WHERE seq IN (SELECT seq FROM messages
                           WHERE published_at IS NOT NULL AND due_at <= $3 AND published_at <= $3
                           ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             {RETURNING}"
        ))
        .bind(crate::messages::rand_claim())
        .bind(now.saturating_add(lease_ms))
        .bind(cutoff.millis())
        .bind(i64::from(limit))
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(outbox_message).collect()
    }

    /// Records the publications the broker confirmed. A row a consumer already handed back
    /// (retried or deferred: its relay lease is cleared) is left to be published again.
    /// One statement per claim token (a claimed batch shares one), whatever the number of
    /// rows: a statement text that changed with the batch size would be prepared anew for
    /// each size and push the hot statements out of the connection's statement cache.
    pub async fn mark_published(&self, published: &[&crate::ClaimedMessage]) -> StoreResult<()> {
        if published.is_empty() {
            return Ok(());
        }
        let mut by_claim = std::collections::BTreeMap::<i64, Vec<i64>>::new();
        for m in published {
            by_claim.entry(m.claim).or_default().push(m.seq);
        }
        let sql = format!(
            "UPDATE messages SET relay_lease = NULL, published_at = $1
             WHERE relay_lease IS NOT NULL AND claim = $2 AND {}",
            self.backend().in_json_ints("seq", "$3")
        );
        let now = Timestamp::now().millis();
        let mut tx = self.begin().await?;
        for (claim, seqs) in by_claim {
            crate::db::query(&sql).bind(now).bind(claim).bind(crate::sql::json_list(&seqs)).execute(tx.conn()).await?;
        }
        tx.commit_relaxed().await
    }

    /// Gives a message whose publication failed back to the relays, to try again at `retry_at`.
    pub async fn release_unpublished(&self, m: &crate::ClaimedMessage, retry_at: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::db::query("UPDATE messages SET relay_lease = $1 WHERE seq = $2 AND claim = $3 AND published_at IS NULL")
            .bind(retry_at.millis())
            .bind(m.seq)
            .bind(m.claim)
            .execute(tx.conn())
            .await?;
        tx.commit_relaxed().await
    }

    /// The pending messages deliveries stand for, one answer per `(id, claim)` in order:
    /// the row with that id if it still carries the delivery's claim token. One statement
    /// for all of them (consumers gather the look-ups of a burst of deliveries).
    pub async fn deliveries(&self, wanted: &[(String, i64)]) -> StoreResult<Vec<Option<crate::ClaimedMessage>>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = wanted.iter().map(|(id, _)| id.as_str()).collect();
        let ids = serde_json::to_string(&ids).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
        let sql = format!(
            "SELECT seq, id, kind, key, ordinal, lane, payload, scheduled_at, attempts, claim FROM messages WHERE {}",
            self.backend().in_json_texts("id", "$1")
        );
        let rows = crate::db::query(&sql).bind(ids).fetch_all(self.read()).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let m = crate::messages::claimed(row)?;
            found.insert((m.id.to_string(), m.claim), m);
        }
        Ok(wanted.iter().map(|key| found.get(key).cloned()).collect())
    }

    /// The pending message with this id, whatever its token (for dead letters that come
    /// back from the broker).
    pub async fn message_by_id(&self, id: &str) -> StoreResult<Option<crate::ClaimedMessage>> {
        let row = crate::db::query(
            "SELECT seq, id, kind, key, ordinal, lane, payload, scheduled_at, attempts, claim FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.read())
        .await?;
        row.as_ref().map(crate::messages::claimed).transpose()
    }

    /// When the earliest unpublished message due after `horizon` is due, if any: the next
    /// time a relay that claimed everything up to `horizon` has work. (Rows within the
    /// horizon that it could not claim are held by another relay or wait for a retry;
    /// the relays' poll finds them.)
    pub async fn next_unpublished_due_after(&self, horizon: Timestamp) -> StoreResult<Option<Timestamp>> {
        let due: Option<i64> =
            crate::db::query_scalar("SELECT MIN(due_at) FROM messages WHERE published_at IS NULL AND due_at > $1")
                .bind(horizon.millis())
                .fetch_one(self.read())
                .await?;
        Ok(due.map(Timestamp::from_millis))
    }

    /// Records a message the broker dead-lettered (its delivery limit ran out) that no
    /// pending row stands for, as a dead letter that can be inspected and replayed.
    pub async fn record_foreign_dead_letter(
        &self,
        message_id: &str,
        kind: &str,
        payload: &str,
        attempts: i64,
        error: &str,
    ) -> StoreResult<payq_domain::DeadLetterId> {
        let id = payq_domain::DeadLetterId::generate();
        let mut tx = self.begin().await?;
        crate::db::query(
            "INSERT INTO dead_letters (id, message_id, kind, key, ordinal, payload, attempts, last_error, created_at)
             VALUES ($1, $2, $3, NULL, NULL, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(message_id)
        .bind(kind)
        .bind(payload)
        .bind(attempts)
        .bind(error)
        .bind(crate::now_ms())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Lane, NewMessage, Store};
    use payq_domain::Timestamp;

    #[tokio::test]
    async fn deliveries_answer_in_order_and_only_for_the_current_claim() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("payq.db").display());
        let store = Store::open(&url).await.expect("store");
        let mut tx = store.begin().await.expect("tx");
        for n in 0..3 {
            tx.schedule(NewMessage {
                kind: "test".into(),
                key: Some(format!("k{n}")),
                lane: Lane::Work,
                ordinal: None,
                payload: serde_json::json!({ "n": n }),
                due_at: Timestamp::from_millis(0),
            })
            .await
            .expect("schedule");
        }
        tx.commit().await.expect("commit");
        let claimed = store.claim_due(Lane::Work, Timestamp::now(), 10, 60_000).await.expect("claim");
        assert_eq!(claimed.len(), 3);
        let ask: Vec<(String, i64)> = vec![
            (claimed[2].id.to_string(), claimed[2].claim),
            ("no-such-message".into(), claimed[0].claim),
            (claimed[0].id.to_string(), claimed[0].claim + 1),
            (claimed[1].id.to_string(), claimed[1].claim),
        ];
        // SQLite's claims commit without waiting: wait until readers see this one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let found = store.deliveries(&ask).await.expect("deliveries");
            if found[0].is_some() || std::time::Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let seqs: Vec<Option<i64>> = found.iter().map(|m| m.as_ref().map(|m| m.seq)).collect();
        assert_eq!(seqs, vec![Some(claimed[2].seq), None, None, Some(claimed[1].seq)]);
        assert_eq!(found[3].as_ref().map(|m| m.payload.clone()), Some(claimed[1].payload.clone()));
        assert!(store.deliveries(&[]).await.expect("nothing asked").is_empty());
    }
}
