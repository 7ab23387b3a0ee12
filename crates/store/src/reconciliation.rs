//! Reconciliation runs and their discrepancies (docs/channels.md, "Reconciliation"), the
//! days whose runs are scheduled, and the day's payments and refunds a run compares.

use crate::{Store, StoreError, StoreResult, Tx, rows};
use payq_domain::{
    BillChannel, BillDate, Discrepancy, DiscrepancyId, DiscrepancyKind, MerchantId, PaymentId, ReconciliationId,
    ReconciliationRun, RefundId, RunCounts, RunStatus, RunTotals, Timestamp,
};

/// A discrepancy to record (its id and run are given by the run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDiscrepancy {
    pub kind: DiscrepancyKind,
    pub payment_id: Option<PaymentId>,
    pub refund_id: Option<RefundId>,
    pub channel_txn_id: Option<String>,
    pub merchant_order_no: Option<String>,
    pub payq_amount: Option<i64>,
    pub channel_amount: Option<i64>,
    pub payq_status: Option<String>,
    pub channel_status: Option<String>,
}

/// A run's outcome, written in one go.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub counts: RunCounts,
    pub totals: RunTotals,
    /// The bill file, base64.
    pub bill: String,
    pub discrepancies: Vec<NewDiscrepancy>,
    /// Fees to record on payments.
    pub fees: Vec<(PaymentId, i64)>,
}

/// Filters of the run list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub merchant_id: Option<MerchantId>,
    pub channel: Option<BillChannel>,
    pub bill_date: Option<BillDate>,
    pub status: Option<RunStatus>,
}

fn run(row: &crate::db::Row) -> StoreResult<ReconciliationRun> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    Ok(ReconciliationRun {
        id: rows::parse(row, "id")?,
        merchant_id: rows::parse(row, "merchant_id")?,
        channel: BillChannel::parse(&channel).ok_or_else(|| StoreError::Corrupt(format!("channel {channel:?}")))?,
        bill_date: rows::parse(row, "bill_date")?,
        status: RunStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("run status {status:?}")))?,
        attempts: row.try_get("attempts")?,
        started_at: row.try_get::<Option<i64>>("started_at")?.map(Timestamp::from_millis),
        completed_at: row.try_get::<Option<i64>>("completed_at")?.map(Timestamp::from_millis),
        error: row.try_get("error")?,
        counts: RunCounts {
            matched: row.try_get("matched")?,
            missing_in_payq: row.try_get("missing_in_payq")?,
            missing_at_channel: row.try_get("missing_at_channel")?,
            amount_mismatch: row.try_get("amount_mismatch")?,
            status_mismatch: row.try_get("status_mismatch")?,
        },
        totals: RunTotals {
            channel_amount: row.try_get("channel_amount")?,
            payq_amount: row.try_get("payq_amount")?,
            refunds: row.try_get("refunds")?,
            fees: row.try_get("fees")?,
        },
        generation: row.try_get("generation")?,
    })
}

fn discrepancy(row: &crate::db::Row) -> StoreResult<Discrepancy> {
    let kind: String = row.try_get("kind")?;
    let id_of = |col: &str| -> StoreResult<Option<String>> { row.try_get(col) };
    Ok(Discrepancy {
        id: rows::parse(row, "id")?,
        run_id: rows::parse(row, "run_id")?,
        kind: DiscrepancyKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("discrepancy kind {kind:?}")))?,
        payment_id: id_of("payment_id")?
            .map(|s| s.parse())
            .transpose()
            .map_err(|e: payq_domain::IdError| StoreError::Corrupt(e.to_string()))?,
        refund_id: id_of("refund_id")?
            .map(|s| s.parse())
            .transpose()
            .map_err(|e: payq_domain::IdError| StoreError::Corrupt(e.to_string()))?,
        channel_txn_id: row.try_get("channel_txn_id")?,
        merchant_order_no: row.try_get("merchant_order_no")?,
        payq_amount: row.try_get("payq_amount")?,
        channel_amount: row.try_get("channel_amount")?,
        payq_status: row.try_get("payq_status")?,
        channel_status: row.try_get("channel_status")?,
        resolved_at: row.try_get::<Option<i64>>("resolved_at")?.map(Timestamp::from_millis),
        resolved_by: row.try_get("resolved_by")?,
        note: row.try_get("note")?,
    })
}

const RUN_COLUMNS: &str = "id, merchant_id, channel, bill_date, status, generation, attempts, started_at, completed_at,
    error, matched, missing_in_payq, missing_at_channel, amount_mismatch, status_mismatch, channel_amount, payq_amount,
    refunds, fees";

impl Tx {
    /// Marks `date`'s reconciliation as scheduled at `due_at`; false when it already was
    /// (by this process or another).
    pub async fn schedule_reconciliation_day(&mut self, date: BillDate, due_at: Timestamp) -> StoreResult<bool> {
        let done = crate::db::query(
            "INSERT INTO reconciliation_days (bill_date, due_at) VALUES ($1, $2) ON CONFLICT (bill_date) DO NOTHING",
        )
        .bind(date.to_string())
        .bind(due_at.millis())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The run of (`merchant`, `channel`, `date`), made `scheduled` now: a new run, or the
    /// existing one started again (a new generation, its result to be replaced) when
    /// `again`; an existing run is left as it is otherwise. Answers the run and whether it
    /// is to be started (a job is then due for its generation).
    pub async fn open_run(
        &mut self,
        merchant: &MerchantId,
        channel: BillChannel,
        date: BillDate,
        again: bool,
    ) -> StoreResult<(ReconciliationRun, bool)> {
        let now = Timestamp::now().millis();
        let inserted = crate::db::query(
            "INSERT INTO reconciliation_runs (id, merchant_id, channel, bill_date, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'scheduled', $5, $5)
             ON CONFLICT (merchant_id, channel, bill_date) DO NOTHING",
        )
        .bind(ReconciliationId::generate().as_str())
        .bind(merchant.as_str())
        .bind(channel.as_str())
        .bind(date.to_string())
        .bind(now)
        .execute(self.conn())
        .await?
        .rows_affected()
            == 1;
        if !inserted && again {
            crate::db::query(
                "UPDATE reconciliation_runs SET status = 'scheduled', generation = generation + 1, attempts = 0,
                    first_asked_at = NULL, started_at = NULL, completed_at = NULL, error = NULL, updated_at = $1
                 WHERE merchant_id = $2 AND channel = $3 AND bill_date = $4",
            )
            .bind(now)
            .bind(merchant.as_str())
            .bind(channel.as_str())
            .bind(date.to_string())
            .execute(self.conn())
            .await?;
        }
        let row = crate::db::query(&format!(
            "SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE merchant_id = $1 AND channel = $2 AND bill_date = $3"
        ))
        .bind(merchant.as_str())
        .bind(channel.as_str())
        .bind(date.to_string())
        .fetch_one(self.conn())
        .await?;
        Ok((run(&row)?, inserted || again))
    }

    /// Moves generation `generation` of run `id` to `running` and counts a bill request;
    /// answers the run and when its first bill request was made, or `None` when a newer
    /// start replaced this one (or it already ended).
    pub async fn start_run(
        &mut self,
        id: &ReconciliationId,
        generation: i64,
    ) -> StoreResult<Option<(ReconciliationRun, Timestamp)>> {
        let now = Timestamp::now().millis();
        let done = crate::db::query(
            "UPDATE reconciliation_runs SET status = 'running', attempts = attempts + 1,
                first_asked_at = COALESCE(first_asked_at, $1), started_at = COALESCE(started_at, $1), updated_at = $1
             WHERE id = $2 AND generation = $3 AND status IN ('scheduled', 'waiting_for_bill', 'running')",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(generation)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row =
            crate::db::query(&format!("SELECT {RUN_COLUMNS}, first_asked_at FROM reconciliation_runs WHERE id = $1"))
                .bind(id.as_str())
                .fetch_one(self.conn())
                .await?;
        let first: i64 = row.try_get("first_asked_at")?;
        Ok(Some((run(&row)?, Timestamp::from_millis(first))))
    }

    /// Ends generation `generation` of run `id` as `status` (`waiting_for_bill` or `failed`)
    /// with `error`; false when a newer start replaced it.
    pub async fn set_run_status(
        &mut self,
        id: &ReconciliationId,
        generation: i64,
        status: RunStatus,
        error: &str,
    ) -> StoreResult<bool> {
        let now = Timestamp::now().millis();
        let completed = status.is_final().then_some(now);
        let done = crate::db::query(
            "UPDATE reconciliation_runs SET status = $1, error = $2, completed_at = $3, updated_at = $4
             WHERE id = $5 AND generation = $6",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(completed)
        .bind(now)
        .bind(id.as_str())
        .bind(generation)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Writes generation `generation` of run `id`'s result: it is `completed`, its
    /// discrepancies replace the earlier ones (a discrepancy found again keeps its
    /// resolution), and the fees go on the payments. False when a newer start replaced it.
    pub async fn complete_run(
        &mut self,
        id: &ReconciliationId,
        generation: i64,
        result: &RunResult,
    ) -> StoreResult<bool> {
        let now = Timestamp::now().millis();
        let done = crate::db::query(
            "UPDATE reconciliation_runs SET status = 'completed', error = NULL, completed_at = $1, updated_at = $1,
                matched = $2, missing_in_payq = $3, missing_at_channel = $4, amount_mismatch = $5, status_mismatch = $6,
                channel_amount = $7, payq_amount = $8, refunds = $9, fees = $10, bill = $11
             WHERE id = $12 AND generation = $13",
        )
        .bind(now)
        .bind(result.counts.matched)
        .bind(result.counts.missing_in_payq)
        .bind(result.counts.missing_at_channel)
        .bind(result.counts.amount_mismatch)
        .bind(result.counts.status_mismatch)
        .bind(result.totals.channel_amount)
        .bind(result.totals.payq_amount)
        .bind(result.totals.refunds)
        .bind(result.totals.fees)
        .bind(result.bill.as_str())
        .bind(id.as_str())
        .bind(generation)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let channel: String = crate::db::query_scalar("SELECT channel FROM reconciliation_runs WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(self.conn())
            .await?;
        let earlier = crate::db::query("SELECT * FROM reconciliation_discrepancies WHERE run_id = $1")
            .bind(id.as_str())
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(discrepancy)
            .collect::<StoreResult<Vec<_>>>()?;
        crate::db::query("DELETE FROM reconciliation_discrepancies WHERE run_id = $1")
            .bind(id.as_str())
            .execute(self.conn())
            .await?;
        for d in &result.discrepancies {
            let same = earlier.iter().find(|e| {
                e.kind == d.kind
                    && e.payment_id == d.payment_id
                    && e.refund_id == d.refund_id
                    && e.merchant_order_no == d.merchant_order_no
                    && e.resolved_at.is_some()
            });
            crate::db::query(
                "INSERT INTO reconciliation_discrepancies (id, run_id, channel, kind, payment_id, refund_id,
                    channel_txn_id, merchant_order_no, payq_amount, channel_amount, payq_status, channel_status,
                    resolved_at, resolved_by, note, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(DiscrepancyId::generate().as_str())
            .bind(id.as_str())
            .bind(channel.as_str())
            .bind(d.kind.as_str())
            .bind(d.payment_id.as_ref().map(PaymentId::as_str))
            .bind(d.refund_id.as_ref().map(RefundId::as_str))
            .bind(d.channel_txn_id.as_deref())
            .bind(d.merchant_order_no.as_deref())
            .bind(d.payq_amount)
            .bind(d.channel_amount)
            .bind(d.payq_status.as_deref())
            .bind(d.channel_status.as_deref())
            .bind(same.and_then(|e| e.resolved_at).map(Timestamp::millis))
            .bind(same.and_then(|e| e.resolved_by.clone()))
            .bind(same.and_then(|e| e.note.clone()))
            .bind(now)
            .execute(self.conn())
            .await?;
        }
        for (payment, fee) in &result.fees {
            crate::db::query("UPDATE payments SET fee = $1 WHERE id = $2")
                .bind(*fee)
                .bind(payment.as_str())
                .execute(self.conn())
                .await?;
        }
        Ok(true)
    }

    /// Resolves a discrepancy (once: a resolved one keeps its first resolution).
    pub async fn resolve_discrepancy(&mut self, id: &DiscrepancyId, by: &str, note: &str) -> StoreResult<Discrepancy> {
        crate::db::query(
            "UPDATE reconciliation_discrepancies SET resolved_at = $1, resolved_by = $2, note = $3
             WHERE id = $4 AND resolved_at IS NULL",
        )
        .bind(Timestamp::now().millis())
        .bind(by)
        .bind(note)
        .bind(id.as_str())
        .execute(self.conn())
        .await?;
        let row = crate::db::query("SELECT * FROM reconciliation_discrepancies WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        discrepancy(&row)
    }
}

impl Store {
    /// A run by id.
    pub async fn reconciliation_run(&self, id: &ReconciliationId) -> StoreResult<ReconciliationRun> {
        let row = crate::db::query(&format!("SELECT {RUN_COLUMNS} FROM reconciliation_runs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        run(&row)
    }

    /// Runs matching `filter`, newest bill date first, at most `limit` (the caller asks
    /// one more to know whether there are more).
    pub async fn reconciliation_runs(&self, filter: &RunFilter, limit: u32) -> StoreResult<Vec<ReconciliationRun>> {
        let found = crate::db::query(&format!(
            "SELECT {RUN_COLUMNS} FROM reconciliation_runs
             WHERE ($1 IS NULL OR merchant_id = $1) AND ($2 IS NULL OR channel = $2)
               AND ($3 IS NULL OR bill_date = $3) AND ($4 IS NULL OR status = $4)
             ORDER BY bill_date DESC, channel, merchant_id LIMIT $5"
        ))
        .bind(filter.merchant_id.as_ref().map(MerchantId::as_str))
        .bind(filter.channel.map(BillChannel::as_str))
        .bind(filter.bill_date.map(|d| d.to_string()))
        .bind(filter.status.map(RunStatus::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.read())
        .await?;
        found.iter().map(run).collect()
    }

    /// A run's discrepancies, in the order found.
    pub async fn discrepancies(&self, run_id: &ReconciliationId) -> StoreResult<Vec<Discrepancy>> {
        let found = crate::db::query("SELECT * FROM reconciliation_discrepancies WHERE run_id = $1 ORDER BY id")
            .bind(run_id.as_str())
            .fetch_all(self.read())
            .await?;
        found.iter().map(discrepancy).collect()
    }

    /// A discrepancy by id.
    pub async fn discrepancy(&self, id: &DiscrepancyId) -> StoreResult<Discrepancy> {
        let row = crate::db::query("SELECT * FROM reconciliation_discrepancies WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        discrepancy(&row)
    }

    /// Open (unresolved) discrepancies by channel and kind.
    pub async fn open_discrepancy_counts(&self) -> StoreResult<Vec<(String, String, i64)>> {
        let found = crate::db::query(
            "SELECT channel, kind, COUNT(*) AS n FROM reconciliation_discrepancies WHERE resolved_at IS NULL
             GROUP BY channel, kind",
        )
        .fetch_all(self.read())
        .await?;
        found.iter().map(|r| Ok((r.try_get("channel")?, r.try_get("kind")?, r.try_get("n")?))).collect()
    }
}
