//! Reconciliation (对账): every day, for each merchant and real channel, the channel's bill
//! for the previous day against payq's payments and refunds (docs/channels.md,
//! "Reconciliation"; docs/operations.md says what to do with each discrepancy).
//!
//! The day's timer (`reconciliation.day`) is set once however many processes start (a row
//! per bill date); it opens one run per merchant and channel, each run a job of its own
//! (`reconciliation.run`) that downloads the bill, matches it and records the result in one
//! transaction. A run started again gets a new generation: an older start's job finds it
//! replaced and does nothing.

use super::{Payq, ProcessError, StoreFault};
use crate::jobs::{Job, ReconciliationDayJob, ReconciliationRunJob};
use payq_channels::bill::{BillError, BillRowKind};
use payq_domain::{
    BillChannel, BillDate, Discrepancy, DiscrepancyId, DiscrepancyKind, EventType, MerchantId, PaymentId,
    ReconciliationId, ReconciliationRun, RunStatus, Timestamp,
};
use payq_store::{NewEvent, RunFilter, RunResult, StoreError, Succeeded, Tx};
use std::collections::{HashMap, HashSet};

/// Why a reconciliation could not be started or a discrepancy resolved.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("merchant not found")]
    MerchantNotFound,
    /// The merchant has not set the channel up.
    #[error("the merchant has no {0} credentials; set them with PATCH /v1/merchants/{{id}}")]
    ChannelNotSetUp(BillChannel),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A bill date in the future, or too far back for the channels to have a bill.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<StoreError> for ReconcileError {
    fn from(e: StoreError) -> Self {
        ReconcileError::Store(e.into())
    }
}

/// The instant a calendar day starts in `zone`.
fn day_start(date: BillDate, zone: &jiff::tz::TimeZone) -> Result<Timestamp, ProcessError> {
    let d = date.date();
    let civil = jiff::civil::date(d.year() as i16, u8::from(d.month()) as i8, d.day() as i8);
    let zoned =
        civil.at(0, 0, 0, 0).to_zoned_datetime(zone.clone()).map_err(|e| ProcessError::Broken(e.to_string()))?;
    Ok(Timestamp::from_millis(zoned.timestamp().as_millisecond()))
}

/// The bill date whose reconciliation is due next after `now`, and when.
fn next_due(
    now: Timestamp,
    zone: &jiff::tz::TimeZone,
    (hour, minute, second): (i8, i8, i8),
) -> Result<(BillDate, Timestamp), ProcessError> {
    let broken = |e: jiff::Error| ProcessError::Broken(e.to_string());
    let now = jiff::Timestamp::from_millisecond(now.millis()).map_err(broken)?.to_zoned_datetime(zone.clone());
    let mut day = now.date();
    loop {
        let due = day.at(hour, minute, second, 0).to_zoned_datetime(zone.clone()).map_err(broken)?;
        if due > now {
            let previous = day.yesterday().map_err(broken)?;
            let date = time::Date::from_calendar_date(
                i32::from(previous.year()),
                time::Month::try_from(previous.month() as u8).map_err(|e| ProcessError::Broken(e.to_string()))?,
                previous.day() as u8,
            )
            .map_err(|e| ProcessError::Broken(e.to_string()))?;
            return Ok((BillDate::new(date), Timestamp::from_millis(due.timestamp().as_millisecond())));
        }
        day = day.tomorrow().map_err(broken)?;
    }
}

/// When `date`'s reconciliation is due: at `at` on the day after.
fn due_for(date: BillDate, zone: &jiff::tz::TimeZone, at: (i8, i8, i8)) -> Result<Timestamp, ProcessError> {
    let after = date.next().ok_or_else(|| ProcessError::Broken(format!("no day after {date}")))?;
    // The first `at` after the day after begins (just before it).
    let (_, due) = next_due(day_start(after, zone)?.plus_millis(-1), zone, at)?;
    Ok(due)
}

/// Whether `merchant` has `channel` set up.
fn has_channel(merchant: &payq_domain::Merchant, channel: BillChannel) -> bool {
    match channel {
        BillChannel::Alipay => merchant.channels.alipay.is_some(),
        BillChannel::Wechatpay => merchant.channels.wechatpay.is_some(),
    }
}

mod matching;
pub(crate) use matching::match_bill;

impl Payq {
    /// Sets the timer of the next day's reconciliation, unless a process already has.
    pub async fn schedule_next_reconciliation(&self) -> Result<(), StoreFault> {
        let mut tx = self.store.begin().await?;
        self.schedule_next_reconciliation_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Payq::schedule_next_reconciliation`] inside `tx` (when a merchant sets a real
    /// channel up).
    pub(crate) async fn schedule_next_reconciliation_in(&self, tx: &mut Tx) -> Result<(), StoreFault> {
        let settings = &self.settings.reconciliation;
        let unexpected = |e: String| StoreFault::Unexpected(anyhow::anyhow!(e));
        let zone = settings.zone().map_err(|e| unexpected(e.to_string()))?;
        let at = settings.time_of_day().map_err(|e| unexpected(e.to_string()))?;
        let (date, due) = next_due(Timestamp::now(), &zone, at).map_err(|e| unexpected(e.to_string()))?;
        schedule_day(tx, date, due).await
    }

    /// The day's timer: opens a run for each merchant and real channel (a run that exists
    /// is left alone), and sets the next day's timer.
    pub async fn reconciliation_day(&self, date: BillDate) -> Result<(), ProcessError> {
        let settings = &self.settings.reconciliation;
        let zone = settings.zone().map_err(|e| ProcessError::Broken(e.to_string()))?;
        let at = settings.time_of_day().map_err(|e| ProcessError::Broken(e.to_string()))?;
        let mut merchants = Vec::new();
        for channel in BillChannel::ALL {
            for id in self.store.merchants_with_channel(channel).await.map_err(StoreFault::from)? {
                let merchant = self.store.merchant(&id).await.map_err(StoreFault::from)?;
                if has_channel(&merchant, channel) {
                    merchants.push((id, channel));
                }
            }
        }
        let mut tx = self.store.begin().await.map_err(StoreFault::from)?;
        for (merchant, channel) in &merchants {
            let (run, start) = tx.open_run(merchant, *channel, date, false).await.map_err(StoreFault::from)?;
            if start {
                schedule_run(&mut tx, &run, Timestamp::now()).await?;
            }
        }
        if let Some(next) = date.next() {
            schedule_day(&mut tx, next, due_for(next, &zone, at)?).await?;
        }
        tx.commit().await.map_err(StoreFault::from)?;
        Ok(())
    }

    /// Starts (or starts again) the reconciliation of `merchant`'s `channel` for `date`
    /// now; its result replaces the earlier one when it completes.
    pub async fn start_reconciliation(
        &self,
        merchant: &MerchantId,
        channel: BillChannel,
        date: BillDate,
    ) -> Result<ReconciliationRun, ReconcileError> {
        let m = match self.store.merchant(merchant).await {
            Ok(m) => m,
            Err(StoreError::NotFound) => return Err(ReconcileError::MerchantNotFound),
            Err(e) => return Err(e.into()),
        };
        if !has_channel(&m, channel) {
            return Err(ReconcileError::ChannelNotSetUp(channel));
        }
        let zone = self.settings.reconciliation.zone().map_err(|e| ReconcileError::Invalid(e.to_string()))?;
        let today = jiff::Timestamp::now().to_zoned_datetime(zone).date();
        let today = format!("{today}").parse::<BillDate>().map_err(|e| ReconcileError::Invalid(e.to_string()))?;
        if date > today {
            return Err(ReconcileError::Invalid(format!("bill_date {date} is in the future")));
        }
        let mut tx = self.store.begin().await?;
        let (run, _) = tx.open_run(merchant, channel, date, true).await?;
        schedule_run(&mut tx, &run, Timestamp::now()).await?;
        tx.commit().await?;
        Ok(run)
    }

    /// One start of a run: downloads the bill, matches it, records the result. A bill not
    /// ready is asked for again after `retry_every` for `retry_for`; a bill that cannot be
    /// read fails the run and changes nothing else.
    pub async fn run_reconciliation(&self, id: &ReconciliationId, generation: i64) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await.map_err(StoreFault::from)?;
        let started = tx.start_run(id, generation).await.map_err(StoreFault::from)?;
        tx.commit().await.map_err(StoreFault::from)?;
        let Some((run, first_asked)) = started else {
            return Ok(()); // replaced by a newer start, or already ended
        };
        let date = run.bill_date.to_string();
        let bill = match self.channel_for(run.channel.into(), &run.merchant_id).await {
            Ok(channel) => channel.trade_bill(&date).await,
            Err(e) => Err(BillError::Refused(e.to_string())),
        };
        let bill = match bill {
            Ok(bill) => bill,
            Err(e @ (BillError::NotReady(_) | BillError::Unavailable(_))) => {
                return self.wait_for_bill(&run, first_asked, &e.to_string()).await;
            }
            Err(e @ (BillError::Refused(_) | BillError::Malformed(_) | BillError::Unsupported(_))) => {
                tracing::warn!(run = %run.id, error = %e, "reconciliation failed");
                let mut tx = self.store.begin().await.map_err(StoreFault::from)?;
                tx.set_run_status(&run.id, generation, RunStatus::Failed, &e.to_string())
                    .await
                    .map_err(StoreFault::from)?;
                tx.commit().await.map_err(StoreFault::from)?;
                return Ok(());
            }
        };
        let zone = self.settings.reconciliation.zone().map_err(|e| ProcessError::Broken(e.to_string()))?;
        let (from, to) =
            (day_start(run.bill_date, &zone)?, day_start(run.bill_date.next().unwrap_or(run.bill_date), &zone)?);
        let payments = self
            .store
            .succeeded(Succeeded::Payments, &run.merchant_id, run.channel, (from, to))
            .await
            .map_err(StoreFault::from)?;
        let refunds = self
            .store
            .succeeded(Succeeded::Refunds, &run.merchant_id, run.channel, (from, to))
            .await
            .map_err(StoreFault::from)?;
        let known: HashSet<&str> = payments.iter().chain(&refunds).map(|r| r.id.as_str()).collect();
        let mut others = HashMap::new();
        for row in &bill.rows {
            let (no, refund) = match row.kind {
                BillRowKind::Payment => (row.out_trade_no.as_str(), false),
                BillRowKind::Refund => (row.out_refund_no.as_deref().unwrap_or_default(), true),
            };
            if no.is_empty() || known.contains(no) || others.contains_key(no) {
                continue;
            }
            let found =
                if refund { self.store.recorded_refund(no).await } else { self.store.recorded_payment(no).await };
            if let Some(r) = found.map_err(StoreFault::from)? {
                others.insert(no.to_owned(), r);
            }
        }
        let matched = match_bill(&run.merchant_id, &bill.rows, &payments, &refunds, &others);
        // Money the channel took that payq never settled: asked about at once and settled
        // the ordinary way (a closed order's late payment is refunded), once.
        for payment in &matched.to_settle {
            self.settle_from_channel(payment).await?;
        }
        let result = RunResult {
            counts: matched.counts,
            totals: matched.totals,
            bill: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bill.raw),
            discrepancies: matched.discrepancies,
            fees: matched.fees,
        };
        let mut tx = self.store.begin().await.map_err(StoreFault::from)?;
        if tx.complete_run(&run.id, generation, &result).await.map_err(StoreFault::from)? {
            let run = ReconciliationRun {
                status: RunStatus::Completed,
                counts: result.counts,
                totals: result.totals,
                completed_at: Some(Timestamp::now()),
                error: None,
                ..run.clone()
            };
            announce(&mut tx, &run).await?;
        }
        tx.commit().await.map_err(StoreFault::from)?;
        tracing::info!(run = %run.id, merchant = %run.merchant_id, channel = %run.channel, date = %date,
            matched = result.counts.matched, discrepancies = result.counts.discrepancies(), "reconciliation completed");
        self.refresh_discrepancy_gauge().await;
        Ok(())
    }

    /// A bill not ready (or a channel not answering): ask again after `retry_every`, for
    /// `retry_for` since the first request; then the run fails with the channel's answer.
    async fn wait_for_bill(
        &self,
        run: &ReconciliationRun,
        first_asked: Timestamp,
        why: &str,
    ) -> Result<(), ProcessError> {
        let settings = &self.settings.reconciliation;
        let retry_at = Timestamp::now().plus_millis(settings.retry_every.as_millis());
        let gave_up = retry_at.millis() - first_asked.millis() > settings.retry_for.as_millis();
        let mut tx = self.store.begin().await.map_err(StoreFault::from)?;
        if gave_up {
            let error = format!("no bill after {}: {why}", settings.retry_for);
            tx.set_run_status(&run.id, run.generation, RunStatus::Failed, &error).await.map_err(StoreFault::from)?;
        } else if tx
            .set_run_status(&run.id, run.generation, RunStatus::WaitingForBill, why)
            .await
            .map_err(StoreFault::from)?
        {
            schedule_run(&mut tx, run, retry_at).await?;
        }
        tx.commit().await.map_err(StoreFault::from)?;
        Ok(())
    }

    /// Asks the channel about a payment it has as paid and settles it through the ordinary
    /// path (once: a payment already settled is left alone).
    async fn settle_from_channel(&self, payment_id: &PaymentId) -> Result<(), ProcessError> {
        let payment = self.store.payment(payment_id).await.map_err(StoreFault::from)?;
        if payment.status == payq_domain::PaymentStatus::Succeeded {
            return Ok(());
        }
        let call = Some(payq_store::ChannelCall::Query(payment_id));
        self.claim_call(call).await?;
        let settled = async {
            let status =
                self.channel_for(payment.channel, &payment.merchant_id).await?.query_payment(payment_id).await?;
            if let payq_channels::ChannelStatus::Succeeded { .. } = status {
                self.apply_channel_status(payment_id, status).await?;
            }
            Ok(())
        };
        self.release_after(call, settled.await).await
    }

    /// Runs matching `filter`, newest first: at most `limit`, and whether there are more.
    pub async fn reconciliation_runs(
        &self,
        filter: &RunFilter,
        limit: u32,
    ) -> Result<(Vec<ReconciliationRun>, bool), ReconcileError> {
        let mut runs = self.store.reconciliation_runs(filter, limit.saturating_add(1)).await?;
        let more = runs.len() > limit as usize;
        runs.truncate(limit as usize);
        Ok((runs, more))
    }

    /// A run by id.
    pub async fn reconciliation_run(&self, id: &ReconciliationId) -> Result<ReconciliationRun, ReconcileError> {
        match self.store.reconciliation_run(id).await {
            Ok(run) => Ok(run),
            Err(StoreError::NotFound) => Err(ReconcileError::NotFound("reconciliation")),
            Err(e) => Err(e.into()),
        }
    }

    /// A run's discrepancies.
    pub async fn discrepancies(&self, id: &ReconciliationId) -> Result<Vec<Discrepancy>, ReconcileError> {
        self.reconciliation_run(id).await?;
        Ok(self.store.discrepancies(id).await?)
    }

    /// Resolves a discrepancy with a note, recording who (`by`) and when.
    pub async fn resolve_discrepancy(
        &self,
        id: &DiscrepancyId,
        by: &str,
        note: &str,
    ) -> Result<Discrepancy, ReconcileError> {
        super::check_text("note", Some(note), 1000).map_err(|e| ReconcileError::Invalid(e.to_string()))?;
        let mut tx = self.store.begin().await?;
        let resolved = match tx.resolve_discrepancy(id, by, note).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return Err(ReconcileError::NotFound("discrepancy")),
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        self.refresh_discrepancy_gauge().await;
        Ok(resolved)
    }

    /// Sets `payq_reconciliation_discrepancies{channel,kind}` from the store.
    pub async fn refresh_discrepancy_gauge(&self) {
        refresh_discrepancy_gauge(&self.store).await;
    }
}

/// Sets `payq_reconciliation_discrepancies{channel,kind}` (open discrepancies) from `store`.
pub async fn refresh_discrepancy_gauge(store: &payq_store::Store) {
    let Ok(open) = store.open_discrepancy_counts().await else {
        return;
    };
    for channel in BillChannel::ALL {
        for kind in DiscrepancyKind::ALL {
            let n = open.iter().find(|(c, k, _)| c == channel.as_str() && k == kind.as_str()).map_or(0, |(_, _, n)| *n);
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("payq_reconciliation_discrepancies", "channel" => channel.as_str(), "kind" => kind.as_str())
                .set(n as f64);
        }
    }
}

/// Sets the timer of `date`'s reconciliation at `due`, unless it is set.
async fn schedule_day(tx: &mut Tx, date: BillDate, due: Timestamp) -> Result<(), StoreFault> {
    if tx.schedule_reconciliation_day(date, due).await? {
        let job = Job::ReconciliationDay(ReconciliationDayJob { bill_date: date });
        tx.schedule(job.message(&date.to_string(), due)).await?;
    }
    Ok(())
}

/// Schedules the job that starts `run`'s current generation at `at`.
async fn schedule_run(tx: &mut Tx, run: &ReconciliationRun, at: Timestamp) -> Result<(), StoreFault> {
    let job = Job::ReconciliationRun(ReconciliationRunJob { run_id: run.id.clone(), generation: run.generation });
    tx.schedule(job.message(run.id.as_str(), at)).await?;
    Ok(())
}

/// Appends `reconciliation.completed` to the merchant's event log and schedules its
/// webhook delivery (with RabbitMQ, its announcement), as for every event.
async fn announce(tx: &mut Tx, run: &ReconciliationRun) -> Result<(), StoreFault> {
    let data = serde_json::json!({ "reconciliation": run });
    let event = NewEvent {
        event_type: EventType::ReconciliationCompleted,
        merchant_id: &run.merchant_id,
        order_id: None,
        data,
    };
    super::announce(tx, event, run.id.as_str()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_next_at_time_for_the_day_before() {
        let zone = jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone");
        // 2025-12-04 01:00 UTC is 09:00 in Shanghai: today's 10:00 is still ahead.
        let now = Timestamp::from_millis(1_764_810_000_000);
        let (date, due) = next_due(now, &zone, (10, 0, 0)).expect("due");
        assert_eq!(date.to_string(), "2025-12-03");
        assert_eq!(due.millis() - now.millis(), 3_600_000);
        let (date, _) = next_due(due, &zone, (10, 0, 0)).expect("due");
        assert_eq!(date.to_string(), "2025-12-04", "at 10:00 sharp, the next is tomorrow's");
        let d: BillDate = "2025-12-03".parse().expect("date");
        let due = due_for(d, &zone, (0, 0, 0)).expect("due");
        assert_eq!(due.millis(), 1_764_777_600_000, "2025-12-04 00:00 in Shanghai");
        let due = due_for(d, &zone, (10, 0, 0)).expect("due");
        assert_eq!(due.millis(), 1_764_777_600_000 + 36_000_000);
    }
}
