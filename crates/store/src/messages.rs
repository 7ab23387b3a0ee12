//! The delay engine's queue: timers, commands and deliveries as rows with a due time.
//!
//! A row is written in the transaction of the state change that causes it. Workers claim due
//! rows with a lease (the claim pushes `due_at` to the lease's end and stamps a claim token),
//! then complete, retry or dead-letter them. A crashed worker's rows become due again when
//! its lease runs out. Totals of fired, retried and dead-lettered messages are kept in
//! `engine_counters`, written in the same transactions.

use crate::{Store, StoreError, StoreResult, Tx};
use payq_domain::{DeadLetterId, MessageId, Timestamp};

/// A message to schedule.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// What handles it, e.g. `"payment.timeout"`.
    pub kind: String,
    /// What it is about (e.g. an order id), so that it can be cancelled by kind and key.
    pub key: Option<String>,
    /// Which dispatcher claims it.
    pub lane: crate::Lane,
    /// Position among the messages of the same kind and key, for handlers that must go in
    /// order (webhook deliveries of one order).
    pub ordinal: Option<i64>,
    pub payload: serde_json::Value,
    pub due_at: Timestamp,
}

/// A message claimed by a worker.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// The row's integer key (claims and completions address rows by it).
    pub seq: i64,
    pub id: MessageId,
    pub kind: String,
    pub key: Option<String>,
    pub ordinal: Option<i64>,
    pub lane: crate::Lane,
    pub payload: String,
    pub scheduled_at: Timestamp,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The claim token; completing with a stale token does nothing.
    pub claim: i64,
}

/// Rows per engine counter on PostgreSQL.
const COUNTER_SHARDS: i64 = 16;

/// The row of a counter to bump. On PostgreSQL, concurrent transactions would queue on one
/// row per counter: each bumps one of a few rows at random (summed on read).
fn counter_shard(backend: crate::Backend) -> i64 {
    if backend.one_writer() { 0 } else { (rand_claim() >> 1).rem_euclid(COUNTER_SHARDS) }
}

pub(crate) fn claimed(row: &crate::db::Row) -> StoreResult<ClaimedMessage> {
    let attempts: i64 = row.try_get("attempts")?;
    Ok(ClaimedMessage {
        seq: row.try_get("seq")?,
        id: crate::rows::parse(row, "id")?,
        kind: row.try_get("kind")?,
        key: row.try_get("key")?,
        ordinal: row.try_get("ordinal")?,
        lane: crate::Lane::from_code(row.try_get("lane")?),
        payload: row.try_get("payload")?,
        scheduled_at: Timestamp::from_millis(row.try_get("scheduled_at")?),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        claim: row.try_get("claim")?,
    })
}

impl Tx {
    /// Cancels the pending messages of `kind` about `key` (a timer that became pointless).
    pub async fn cancel_messages(&mut self, kind: &str, key: &str) -> StoreResult<()> {
        self.cancel_messages_of(&[(kind, key)]).await
    }

    /// Cancels the pending messages of each `(kind, key)`: those scheduled in this
    /// transaction and not written yet at once, those written before by a `DELETE` that
    /// goes with the transaction's next write of messages (on PostgreSQL in the same
    /// statement; see `Tx::write_scheduled`). A message scheduled after the cancel stays.
    pub async fn cancel_messages_of(&mut self, which: &[(&str, &str)]) -> StoreResult<()> {
        self.unwritten.retain(|m| !which.iter().any(|(kind, key)| m.kind == *kind && m.key.as_deref() == Some(*key)));
        self.uncancelled.extend(which.iter().map(|(kind, key)| ((*kind).to_owned(), (*key).to_owned())));
        Ok(())
    }

    async fn bump(&mut self, counter: String, by: i64) -> StoreResult<()> {
        let shard = counter_shard(self.backend());
        crate::db::query(
            "INSERT INTO engine_counters (name, shard, n) VALUES ($1, $2, $3)
             ON CONFLICT (name, shard) DO UPDATE SET n = engine_counters.n + excluded.n",
        )
        .bind(counter)
        .bind(shard)
        .bind(by)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Store {
    /// Claims up to `limit` due messages of `lane` for `lease_ms`, earliest first, with
    /// this process as their owner.
    pub async fn claim_due(
        &self,
        lane: crate::Lane,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        if !self.backend().one_writer() {
            return self.claim_due_skip_locked(lane, now, limit, lease_ms).await;
        }
        // Candidates come from a reader, which sees only committed rows: a message is never
        // handled before the change that scheduled it is durable and visible to the
        // handler's own reads.
        let candidates: Vec<i64> = crate::db::query_scalar(
            "SELECT seq FROM messages WHERE lane = $1 AND due_at <= $2 ORDER BY due_at LIMIT $3",
        )
        .bind(lane.code())
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        // `due_at <= now` again: another worker may have claimed a candidate meanwhile.
        let rows = crate::db::query(&format!(
            "UPDATE messages SET due_at = $1, claim = $2, attempts = attempts + 1, owner = $4
             WHERE due_at <= $3 AND {}
             RETURNING seq, id, kind, key, ordinal, lane, payload, scheduled_at, attempts, claim",
            self.backend().in_json_ints("seq", "$5")
        ))
        .bind(now.millis().saturating_add(lease_ms))
        .bind(rand_claim())
        .bind(now.millis())
        .bind(self.process_id().as_str())
        .bind(crate::sql::json_list(&candidates))
        .fetch_all(tx.conn())
        .await?;
        claimed_batch(tx, &rows).await
    }

    /// [`Store::claim_due`] on PostgreSQL: one statement, rows locked by another claim are
    /// skipped rather than waited for. Candidates are committed rows by construction.
    async fn claim_due_skip_locked(
        &self,
        lane: crate::Lane,
        now: Timestamp,
        limit: u32,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let mut tx = self.begin().await?;
        let rows = crate::db::query(
            "UPDATE messages SET due_at = $1, claim = $2, attempts = attempts + 1, owner = $5
             WHERE seq IN (SELECT seq FROM messages WHERE lane = $6 AND due_at <= $3 ORDER BY due_at LIMIT $4
                           FOR UPDATE SKIP LOCKED)
             RETURNING seq, id, kind, key, ordinal, lane, payload, scheduled_at, attempts, claim",
        )
        .bind(now.millis().saturating_add(lease_ms))
        .bind(rand_claim())
        .bind(now.millis())
        .bind(i64::from(limit))
        .bind(self.process_id().as_str())
        .bind(lane.code())
        .fetch_all(tx.conn())
        .await?;
        claimed_batch(tx, &rows).await
    }

    /// When the next message of `lane` becomes due, if any is pending.
    pub async fn next_due(&self, lane: crate::Lane) -> StoreResult<Option<Timestamp>> {
        let due: Option<i64> = crate::db::query_scalar("SELECT MIN(due_at) FROM messages WHERE lane = $1")
            .bind(lane.code())
            .fetch_one(self.read())
            .await?;
        Ok(due.map(Timestamp::from_millis))
    }

    /// Pushes the leases of messages still being handled to `until`, so a slow handler is
    /// not taken over while it runs.
    pub async fn extend_leases(&self, held: &[&ClaimedMessage], until: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for m in held {
            crate::db::query("UPDATE messages SET due_at = $1 WHERE seq = $2 AND claim = $3")
                .bind(until.millis())
                .bind(m.seq)
                .bind(m.claim)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    /// Removes handled messages (those whose claim is still ours), counts them as fired and
    /// records the webhook deliveries they made, in one transaction. The commit is durable:
    /// a completion lost in a crash would only run the messages again, but one lost in a
    /// PostgreSQL failover (a commit the standby never received) leaves its row pending
    /// until the republish grace has passed, and an order's later webhooks wait behind it
    /// all that time.
    pub async fn complete_messages(
        &self,
        done: &[&ClaimedMessage],
        delivered: &[crate::WebhookDelivery],
    ) -> StoreResult<()> {
        if done.is_empty() && delivered.is_empty() {
            return Ok(());
        }
        let now = crate::now_ms();
        if self.backend().one_writer() {
            return self.complete_on_sqlite(done, delivered, now).await;
        }
        // One statement, autocommitted: the rows go and the counters move together.
        // Rows are locked in `seq` order (the index scan of `= ANY`), as every other
        // statement that writes several messages locks them, and counters in name order:
        // two such statements never wait for each other in a cycle.
        let mut pairs: Vec<[i64; 2]> = done.iter().map(|m| [m.seq, m.claim]).collect();
        pairs.sort_unstable();
        let pairs = serde_json::to_string(&pairs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // The deliveries go in the same statement (a data-modifying `WITH` always runs).
        let complete = crate::db::query(
            "WITH done AS (DELETE FROM messages m
                           WHERE m.seq = ANY(ARRAY(SELECT (p ->> 0)::BIGINT FROM jsonb_array_elements($1::JSONB) AS p))
                             AND (m.seq, m.claim) IN (SELECT (p ->> 0)::BIGINT, (p ->> 1)::BIGINT
                                                      FROM jsonb_array_elements($1::JSONB) AS p)
                           RETURNING m.kind),
                  delivered AS (INSERT INTO webhook_deliveries (event_id, merchant_id, attempts, delivered_at)
                                SELECT d ->> 0, d ->> 1, (d ->> 2)::BIGINT, $4 FROM jsonb_array_elements($3::JSONB) AS d
                                ON CONFLICT (event_id) DO NOTHING)
             INSERT INTO engine_counters (name, shard, n)
             SELECT 'fired:' || done.kind, $2, COUNT(*) FROM done GROUP BY done.kind ORDER BY done.kind
             ON CONFLICT (name, shard) DO UPDATE SET n = engine_counters.n + excluded.n",
        )
        .bind(pairs)
        .bind(counter_shard(self.backend()))
        .bind(crate::webhooks::as_json_rows(delivered))
        .bind(now);
        let outcome = complete.execute(self.read()).await;
        self.note_write(&outcome);
        outcome.map(|_| ())
    }

    /// [`Store::complete_messages`] on SQLite: one statement per claim and kind (a claim
    /// token covers a whole claimed batch), counted from what each removed, and one for the
    /// deliveries, in one transaction of the writer.
    async fn complete_on_sqlite(
        &self,
        done: &[&ClaimedMessage],
        delivered: &[crate::WebhookDelivery],
        now: i64,
    ) -> StoreResult<()> {
        let mut groups = std::collections::BTreeMap::<(i64, &str), Vec<i64>>::new();
        for m in done {
            groups.entry((m.claim, m.kind.as_str())).or_default().push(m.seq);
        }
        let sql = format!("DELETE FROM messages WHERE claim = $1 AND {}", self.backend().in_json_ints("seq", "$2"));
        let mut fired = std::collections::BTreeMap::<&str, i64>::new();
        let mut tx = self.begin().await?;
        for ((claim, kind), seqs) in groups {
            let removed =
                crate::db::query(&sql).bind(claim).bind(crate::sql::json_list(&seqs)).execute(tx.conn()).await?;
            *fired.entry(kind).or_default() += i64::try_from(removed.rows_affected()).unwrap_or(i64::MAX);
        }
        for (kind, n) in fired.into_iter().filter(|(_, n)| *n > 0) {
            tx.bump(format!("fired:{kind}"), n).await?;
        }
        if !delivered.is_empty() {
            crate::db::query(&format!(
                "INSERT INTO webhook_deliveries (event_id, merchant_id, attempts, delivered_at)
                 SELECT value ->> 0, value ->> 1, value ->> 2, $2 FROM {}
                 WHERE true ON CONFLICT (event_id) DO NOTHING",
                self.backend().json_elements("$1")
            ))
            .bind(crate::webhooks::as_json_rows(delivered))
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        // Readers see only committed batches: waiting keeps what they report (pending
        // messages, an earlier delivery still due) in step with the engine.
        tx.commit().await
    }

    /// Puts a failed message back to run again at `due_at`, keeping the error.
    pub async fn retry_message(&self, m: &ClaimedMessage, due_at: Timestamp, error: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = crate::db::query(
            "UPDATE messages SET due_at = $1, last_error = $2, published_at = NULL, relay_lease = NULL, owner = NULL
             WHERE seq = $3 AND claim = $4",
        )
        .bind(due_at.millis())
        .bind(error)
        .bind(m.seq)
        .bind(m.claim)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 1 {
            tx.bump(format!("retried:{}", m.kind), 1).await?;
        }
        tx.mark_message_scheduled();
        tx.commit().await?;
        self.notify_messages_changed();
        Ok(())
    }

    /// Puts a message back to run at `due_at` without counting this as an attempt (it was
    /// not its turn yet).
    pub async fn defer_message(&self, m: &ClaimedMessage, due_at: Timestamp) -> StoreResult<()> {
        self.defer_messages(&[(m, due_at)]).await
    }

    /// [`Store::defer_message`] for many messages, in one transaction.
    pub async fn defer_messages(&self, deferred: &[(&ClaimedMessage, Timestamp)]) -> StoreResult<()> {
        if deferred.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for (m, due_at) in deferred {
            crate::db::query(
                "UPDATE messages SET due_at = $1, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
                    published_at = NULL, relay_lease = NULL, owner = NULL
                 WHERE seq = $2 AND claim = $3",
            )
            .bind(due_at.millis())
            .bind(m.seq)
            .bind(m.claim)
            .execute(tx.conn())
            .await?;
        }
        tx.mark_message_scheduled();
        tx.commit().await?;
        self.notify_messages_changed();
        Ok(())
    }

    /// Moves a message that cannot succeed to the dead letters, with its last error.
    pub async fn dead_letter_message(&self, m: &ClaimedMessage, error: &str) -> StoreResult<DeadLetterId> {
        let id = DeadLetterId::generate();
        let mut tx = self.begin().await?;
        let done = crate::db::query("DELETE FROM messages WHERE seq = $1 AND claim = $2")
            .bind(m.seq)
            .bind(m.claim)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 1 {
            crate::db::query(
                "INSERT INTO dead_letters (id, message_id, kind, key, ordinal, payload, attempts, last_error, created_at, lane)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id.as_str())
            .bind(m.id.as_str())
            .bind(&m.kind)
            .bind(m.key.as_deref())
            .bind(m.ordinal)
            .bind(&m.payload)
            .bind(i64::from(m.attempts))
            .bind(error)
            .bind(crate::now_ms())
            .bind(m.lane.code())
            .execute(tx.conn())
            .await?;
            tx.bump(format!("dead_lettered:{}", m.kind), 1).await?;
        }
        tx.commit().await?;
        // A later message of the same key may have been waiting for this one.
        self.notify_messages_changed();
        Ok(id)
    }
}

/// Commits a claim and reads its rows, in the order they were scheduled. The claim need not
/// wait for its fsync: a claim lost in a crash only means the messages come due again,
/// which handlers tolerate.
async fn claimed_batch(tx: Tx, rows: &[crate::db::Row]) -> StoreResult<Vec<ClaimedMessage>> {
    tx.commit_relaxed().await?;
    let mut out = rows.iter().map(claimed).collect::<StoreResult<Vec<_>>>()?;
    out.sort_by_key(|m| m.scheduled_at);
    Ok(out)
}

pub(crate) fn rand_claim() -> i64 {
    // A fresh, non-zero token per claim, from the random bits of a UUIDv7.
    let id = payq_domain::MessageId::generate();
    let h =
        id.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    i64::from_ne_bytes(h.to_ne_bytes()) | 1
}
