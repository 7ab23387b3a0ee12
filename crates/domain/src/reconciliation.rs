//! Reconciliation (对账): a run compares one merchant's payments and refunds at one real
//! channel on one bill date with the channel's own bill; each difference is a
//! discrepancy a person resolves. The rules are in docs/channels.md, "Reconciliation".

use crate::{DiscrepancyId, MerchantId, PaymentId, ReconciliationId, RefundId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A channel that has bills to reconcile against (the simulated channel has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BillChannel {
    Alipay,
    Wechatpay,
}

impl BillChannel {
    /// Every channel with bills.
    pub const ALL: [BillChannel; 2] = [BillChannel::Alipay, BillChannel::Wechatpay];

    /// The channel's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BillChannel::Alipay => "alipay",
            BillChannel::Wechatpay => "wechatpay",
        }
    }

    /// The channel named `name`, if it has bills.
    pub fn parse(name: &str) -> Option<BillChannel> {
        BillChannel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for BillChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A calendar day (`YYYY-MM-DD`) a bill covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BillDate(time::Date);

/// A bill date that does not read.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a date (YYYY-MM-DD)")]
pub struct BillDateError(String);

impl BillDate {
    /// The day `date`.
    pub fn new(date: time::Date) -> BillDate {
        BillDate(date)
    }

    /// The calendar date.
    pub fn date(self) -> time::Date {
        self.0
    }

    /// The day before.
    pub fn previous(self) -> Option<BillDate> {
        self.0.previous_day().map(BillDate)
    }

    /// The day after.
    pub fn next(self) -> Option<BillDate> {
        self.0.next_day().map(BillDate)
    }
}

impl std::str::FromStr for BillDate {
    type Err = BillDateError;
    fn from_str(s: &str) -> Result<BillDate, BillDateError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        if s.len() != 10 {
            return Err(BillDateError(s.chars().take(32).collect()));
        }
        time::Date::parse(s, &format).map(BillDate).map_err(|_| BillDateError(s.chars().take(32).collect()))
    }
}

impl fmt::Display for BillDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.0.year(), u8::from(self.0.month()), self.0.day())
    }
}

impl Serialize for BillDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BillDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BillDate, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for its time (or for a worker).
    Scheduled,
    /// The channel has not made the day's bill yet; asked again every retry interval.
    WaitingForBill,
    /// Downloading and matching.
    Running,
    Completed,
    /// The bill could not be had or read; `error` says why.
    Failed,
}

impl RunStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Scheduled => "scheduled",
            RunStatus::WaitingForBill => "waiting_for_bill",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<RunStatus> {
        [RunStatus::Scheduled, RunStatus::WaitingForBill, RunStatus::Running, RunStatus::Completed, RunStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }

    /// Whether the run has ended (until it is run again).
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed)
    }
}

/// How a bill row and payq's record of it compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// The channel has a success payq does not know (or knows as not succeeded).
    MissingInPayq,
    /// payq has a success the channel's bill does not show.
    MissingAtChannel,
    /// Both have it, with different amounts.
    AmountMismatch,
    /// Both have it, one as succeeded and the other not.
    StatusMismatch,
}

impl DiscrepancyKind {
    /// Every kind.
    pub const ALL: [DiscrepancyKind; 4] = [
        DiscrepancyKind::MissingInPayq,
        DiscrepancyKind::MissingAtChannel,
        DiscrepancyKind::AmountMismatch,
        DiscrepancyKind::StatusMismatch,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::MissingInPayq => "missing_in_payq",
            DiscrepancyKind::MissingAtChannel => "missing_at_channel",
            DiscrepancyKind::AmountMismatch => "amount_mismatch",
            DiscrepancyKind::StatusMismatch => "status_mismatch",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<DiscrepancyKind> {
        DiscrepancyKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// How many rows ended as each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunCounts {
    pub matched: i64,
    pub missing_in_payq: i64,
    pub missing_at_channel: i64,
    pub amount_mismatch: i64,
    pub status_mismatch: i64,
}

impl RunCounts {
    /// Counts one more of `kind`.
    pub fn add(&mut self, kind: DiscrepancyKind) {
        match kind {
            DiscrepancyKind::MissingInPayq => self.missing_in_payq += 1,
            DiscrepancyKind::MissingAtChannel => self.missing_at_channel += 1,
            DiscrepancyKind::AmountMismatch => self.amount_mismatch += 1,
            DiscrepancyKind::StatusMismatch => self.status_mismatch += 1,
        }
    }

    /// Discrepancies in all.
    pub fn discrepancies(&self) -> i64 {
        self.missing_in_payq + self.missing_at_channel + self.amount_mismatch + self.status_mismatch
    }
}

/// Sums of the day, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunTotals {
    /// Payments the channel's bill shows.
    pub channel_amount: i64,
    /// Payments payq recorded as succeeded that day.
    pub payq_amount: i64,
    /// Refunds the channel's bill shows.
    pub refunds: i64,
    /// The channel's fees on the day's payments.
    pub fees: i64,
}

/// A reconciliation run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReconciliationRun {
    #[schema(value_type = String)]
    pub id: ReconciliationId,
    #[schema(value_type = String)]
    pub merchant_id: MerchantId,
    pub channel: BillChannel,
    #[schema(value_type = String, example = "2026-12-03")]
    pub bill_date: BillDate,
    pub status: RunStatus,
    /// Bill requests made so far.
    pub attempts: i64,
    #[schema(value_type = Option<String>)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>)]
    pub completed_at: Option<Timestamp>,
    /// The channel's answer or the reason the run failed (or is waiting).
    pub error: Option<String>,
    pub counts: RunCounts,
    pub totals: RunTotals,
    /// Bumped each time the run is started again, so that an older start's result is
    /// never written over a newer one's.
    #[serde(skip)]
    pub generation: i64,
}

/// A difference between a channel's bill and payq's records.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Discrepancy {
    #[schema(value_type = String)]
    pub id: DiscrepancyId,
    #[schema(value_type = String)]
    pub run_id: ReconciliationId,
    pub kind: DiscrepancyKind,
    #[schema(value_type = Option<String>)]
    pub payment_id: Option<PaymentId>,
    #[schema(value_type = Option<String>)]
    pub refund_id: Option<RefundId>,
    pub channel_txn_id: Option<String>,
    /// The merchant order number payq sent the channel (payq's payment id), as the bill
    /// shows it.
    pub merchant_order_no: Option<String>,
    pub payq_amount: Option<i64>,
    pub channel_amount: Option<i64>,
    pub payq_status: Option<String>,
    pub channel_status: Option<String>,
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<Timestamp>,
    /// Who resolved it (`admin`, or the console's operator).
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_dates_read_and_print_as_yyyy_mm_dd() {
        let d: BillDate = "2026-12-03".parse().expect("date");
        assert_eq!(d.to_string(), "2026-12-03");
        assert_eq!(d.previous().map(|p| p.to_string()).as_deref(), Some("2026-12-02"));
        for bad in ["2026-13-01", "2026-1-1", "yesterday", "2026-12-03T00:00:00Z", ""] {
            assert!(bad.parse::<BillDate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for k in DiscrepancyKind::ALL {
            assert_eq!(DiscrepancyKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
        }
        for c in BillChannel::ALL {
            assert_eq!(BillChannel::parse(c.as_str()), Some(c));
        }
        assert_eq!(BillChannel::parse("sim"), None);
        assert_eq!(RunStatus::parse("waiting_for_bill"), Some(RunStatus::WaitingForBill));
    }
}
