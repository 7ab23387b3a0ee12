//! The simulated channel's own ledger: what the "bank" behind channel `sim` knows about
//! payments and refunds. payq's code reads it only through the channel, never directly.

use crate::{Store, StoreError, StoreResult};
use payq_domain::Timestamp;

/// Where a payment is in the simulated channel's ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimStatus {
    /// Waiting for the buyer.
    Pending,
    /// Paid.
    Succeeded,
    /// Declined.
    Failed,
    /// Closed before it was paid.
    Closed,
}

impl SimStatus {
    /// The name the ledger stores.
    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Pending => "pending",
            SimStatus::Succeeded => "succeeded",
            SimStatus::Failed => "failed",
            SimStatus::Closed => "closed",
        }
    }

    /// Reads a stored name; anything else is a corrupt row.
    fn parse(s: &str) -> StoreResult<SimStatus> {
        [SimStatus::Pending, SimStatus::Succeeded, SimStatus::Failed, SimStatus::Closed]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown simulated-channel status {s:?}")))
    }
}

/// A payment as the simulated channel records it.
#[derive(Debug, Clone)]
pub struct SimTxn {
    pub txn_id: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: SimStatus,
    pub outcome: String,
    pub refunded: i64,
    /// When the channel settles it (pays, declines, ...), while it is pending.
    pub settle_at: Option<Timestamp>,
}

fn sim_txn(row: &crate::db::Row) -> StoreResult<SimTxn> {
    Ok(SimTxn {
        txn_id: row.try_get("txn_id")?,
        payment_id: row.try_get("payment_id")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        status: SimStatus::parse(&row.try_get::<String>("status")?)?,
        outcome: row.try_get("outcome")?,
        refunded: row.try_get("refunded")?,
        settle_at: row.try_get::<Option<i64>>("settle_at")?.map(Timestamp::from_millis),
    })
}

impl Store {
    /// Records a payment at the simulated channel; a second call for the same payment
    /// returns the first record.
    pub async fn sim_create(&self, txn: &SimTxn) -> StoreResult<SimTxn> {
        let now = Timestamp::now().millis();
        // A repeat leaves the first record as it is (the no-op update only makes it the
        // statement's answer): one statement either way.
        let row = self
            .write_one(
                crate::db::query(
                    "INSERT INTO sim_channel_txns (txn_id, payment_id, amount, currency, status, outcome, settle_at,
                        created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7)
                     ON CONFLICT (payment_id) DO UPDATE SET payment_id = sim_channel_txns.payment_id RETURNING *",
                )
                .bind(&txn.txn_id)
                .bind(&txn.payment_id)
                .bind(txn.amount)
                .bind(&txn.currency)
                .bind(txn.status.as_str())
                .bind(&txn.outcome)
                .bind(now)
                .bind(txn.settle_at.map(Timestamp::millis)),
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("the simulated channel's insert returned no row".into()))?;
        sim_txn(&row)
    }

    /// Moves a simulated-channel payment from `pending` to `to`; returns the record after.
    pub async fn sim_settle(&self, txn_id: &str, to: SimStatus) -> StoreResult<SimTxn> {
        self.sim_set_status(txn_id, to, true).await
    }

    /// Sets a simulated-channel payment's status (only if pending, with `pending_only`) and
    /// returns the record after.
    async fn sim_set_status(&self, txn_id: &str, to: SimStatus, pending_only: bool) -> StoreResult<SimTxn> {
        let changed = self
            .write_one(
                crate::db::query(
                    "UPDATE sim_channel_txns SET status = $1, updated_at = $2
                     WHERE txn_id = $3 AND (status = 'pending' OR NOT $4) RETURNING *",
                )
                .bind(to.as_str())
                .bind(Timestamp::now().millis())
                .bind(txn_id)
                .bind(pending_only),
            )
            .await?;
        match changed {
            Some(row) => sim_txn(&row),
            // Settled already (or no such payment): the record as it stands.
            None => self.sim_txn(txn_id).await,
        }
    }

    /// Refunds part of a succeeded simulated-channel payment, once per `refund_id`.
    /// Returns false if the refund would exceed what was paid.
    pub async fn sim_refund(&self, txn_id: &str, refund_id: &str, amount: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let seen: i64 = crate::db::query_scalar("SELECT COUNT(*) FROM sim_channel_refunds WHERE refund_id = $1")
            .bind(refund_id)
            .fetch_one(tx.conn())
            .await?;
        if seen > 0 {
            tx.commit().await?;
            return Ok(true);
        }
        let done = crate::db::query(
            "UPDATE sim_channel_txns SET refunded = refunded + $1, updated_at = $2
             WHERE txn_id = $3 AND status = 'succeeded' AND refunded + $1 <= amount",
        )
        .bind(amount)
        .bind(Timestamp::now().millis())
        .bind(txn_id)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        crate::db::query(
            "INSERT INTO sim_channel_refunds (refund_id, txn_id, amount, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(refund_id)
        .bind(txn_id)
        .bind(amount)
        .bind(Timestamp::now().millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// A simulated-channel payment by payq's payment id.
    pub async fn sim_txn_by_payment(&self, payment_id: &str) -> StoreResult<SimTxn> {
        self.sim_txn_where("SELECT * FROM sim_channel_txns WHERE payment_id = $1", payment_id).await
    }

    /// A simulated-channel payment by the channel's transaction id.
    pub async fn sim_txn(&self, txn_id: &str) -> StoreResult<SimTxn> {
        self.sim_txn_where("SELECT * FROM sim_channel_txns WHERE txn_id = $1", txn_id).await
    }

    /// The one simulated-channel payment `select` finds with `key`.
    async fn sim_txn_where(&self, select: &'static str, key: &str) -> StoreResult<SimTxn> {
        let row = crate::db::query(select).bind(key).fetch_optional(self.read()).await?.ok_or(StoreError::NotFound)?;
        sim_txn(&row)
    }

    /// Marks a simulated-channel payment succeeded whatever its status (a `late` payment
    /// that the channel takes after saying it closed it).
    pub async fn sim_force_succeed(&self, txn_id: &str) -> StoreResult<SimTxn> {
        self.sim_set_status(txn_id, SimStatus::Succeeded, false).await
    }

    /// Pending simulated-channel payments (to resume settling them after a restart).
    pub async fn sim_pending(&self) -> StoreResult<Vec<SimTxn>> {
        let rows =
            crate::db::query("SELECT * FROM sim_channel_txns WHERE status = 'pending' AND settle_at IS NOT NULL")
                .fetch_all(self.read())
                .await?;
        rows.iter().map(sim_txn).collect()
    }
}
