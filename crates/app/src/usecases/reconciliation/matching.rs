//! Matching a channel's bill with payq's records: pure, no I/O. Each bill row finds its
//! payment or refund, or becomes a discrepancy (docs/channels.md, "Reconciliation").

use payq_channels::bill::{BillRow, BillRowKind, BillRowStatus};
use payq_domain::{DiscrepancyKind, MerchantId, PaymentId, RunCounts, RunTotals};
use payq_store::{NewDiscrepancy, Recorded};
use std::collections::{HashMap, HashSet};

/// The outcome of matching a bill with payq's records.
#[derive(Debug, Default)]
pub(crate) struct Matched {
    pub counts: RunCounts,
    pub totals: RunTotals,
    pub discrepancies: Vec<NewDiscrepancy>,
    pub fees: Vec<(PaymentId, i64)>,
    /// Payments the channel took that payq has not settled: to be asked about and settled.
    pub to_settle: Vec<PaymentId>,
}

/// Matches a bill's `rows` with the day's succeeded payments and refunds of `merchant`
/// (`day_payments`, `day_refunds`) and with `others` (records the rows name that are not
/// among them, by id: another day's, another merchant's, or not succeeded).
pub(crate) fn match_bill(
    merchant: &MerchantId,
    rows: &[BillRow],
    day_payments: &[Recorded],
    day_refunds: &[Recorded],
    others: &HashMap<String, Recorded>,
) -> Matched {
    let mut out = Matched::default();
    let payments: HashMap<&str, &Recorded> = day_payments.iter().map(|r| (r.id.as_str(), r)).collect();
    let refunds: HashMap<&str, &Recorded> = day_refunds.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    out.totals.payq_amount = day_payments.iter().map(|p| p.amount).sum();
    for row in rows {
        let no = match row.kind {
            BillRowKind::Payment => row.out_trade_no.as_str(),
            BillRowKind::Refund => row.out_refund_no.as_deref().unwrap_or_default(),
        };
        let day = match row.kind {
            BillRowKind::Payment => payments.get(no).copied(),
            BillRowKind::Refund => refunds.get(no).copied(),
        };
        let recorded = day.or_else(|| others.get(no));
        // An account shared by several merchants: another merchant's row is theirs.
        if recorded.is_some_and(|r| &r.merchant_id != merchant) {
            continue;
        }
        let succeeded_at_channel = row.status == BillRowStatus::Succeeded;
        if succeeded_at_channel {
            match row.kind {
                BillRowKind::Payment => {
                    out.totals.channel_amount += row.amount;
                    out.totals.fees += row.fee;
                }
                BillRowKind::Refund => {
                    out.totals.refunds += row.amount;
                    out.totals.fees -= row.fee;
                }
            }
        }
        let found = |kind: DiscrepancyKind, r: Option<&Recorded>| NewDiscrepancy {
            kind,
            payment_id: r
                .map(|r| r.payment_id.as_str())
                .or(Some(row.out_trade_no.as_str()))
                .and_then(|p| p.parse().ok()),
            refund_id: match row.kind {
                BillRowKind::Refund => Some(no).and_then(|n| n.parse().ok()),
                BillRowKind::Payment => None,
            },
            channel_txn_id: Some(row.channel_txn_id.clone()).filter(|t| !t.is_empty()),
            merchant_order_no: Some(row.out_trade_no.clone()),
            payq_amount: r.map(|r| r.amount),
            channel_amount: Some(row.amount),
            payq_status: r.map(|r| r.status.clone()),
            channel_status: Some(row.status.as_str().to_owned()),
        };
        let payq_succeeded = recorded.is_some_and(|r| r.status == "succeeded");
        if let Some(r) = recorded {
            seen.insert(r.id.as_str());
        }
        let kind = match (succeeded_at_channel, recorded) {
            // Not money that moved, and payq does not count it as such either.
            (false, _) if !payq_succeeded => continue,
            (false, _) => Some(DiscrepancyKind::StatusMismatch),
            (true, None) => Some(DiscrepancyKind::MissingInPayq),
            (true, Some(r)) if r.status != "succeeded" => match row.kind {
                BillRowKind::Payment => {
                    if let Ok(id) = r.id.parse() {
                        out.to_settle.push(id);
                    }
                    Some(DiscrepancyKind::MissingInPayq)
                }
                BillRowKind::Refund => Some(DiscrepancyKind::StatusMismatch),
            },
            (true, Some(r)) if r.amount != row.amount => Some(DiscrepancyKind::AmountMismatch),
            (true, Some(_)) => None,
        };
        if row.kind == BillRowKind::Payment
            && succeeded_at_channel
            && let Some(r) = recorded
            && let Ok(id) = r.id.parse()
        {
            out.fees.push((id, row.fee));
        }
        match kind {
            Some(kind) => {
                out.counts.add(kind);
                out.discrepancies.push(found(kind, recorded));
            }
            None => out.counts.matched += 1,
        }
    }
    for r in day_payments.iter().chain(day_refunds) {
        if seen.contains(r.id.as_str()) {
            continue;
        }
        let is_refund = r.id != r.payment_id;
        out.counts.add(DiscrepancyKind::MissingAtChannel);
        out.discrepancies.push(NewDiscrepancy {
            kind: DiscrepancyKind::MissingAtChannel,
            payment_id: r.payment_id.parse().ok(),
            refund_id: if is_refund { r.id.parse().ok() } else { None },
            channel_txn_id: None,
            merchant_order_no: Some(r.payment_id.clone()),
            payq_amount: Some(r.amount),
            channel_amount: None,
            payq_status: Some(r.status.clone()),
            channel_status: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(id: &str, merchant: &MerchantId, amount: i64, status: &str) -> Recorded {
        Recorded {
            id: id.into(),
            merchant_id: merchant.clone(),
            payment_id: id.into(),
            amount,
            status: status.into(),
            channel: payq_domain::ChannelName::Alipay,
        }
    }

    fn paid(no: &str, amount: i64) -> BillRow {
        BillRow {
            kind: BillRowKind::Payment,
            out_trade_no: no.into(),
            out_refund_no: None,
            channel_txn_id: format!("t{no}"),
            amount,
            fee: 6,
            status: BillRowStatus::Succeeded,
        }
    }

    #[test]
    fn each_row_and_record_ends_as_one_outcome() {
        let me = MerchantId::generate();
        let them = MerchantId::generate();
        let p = |n: u8| format!("pay_{:032x}", n);
        let day = vec![
            recorded(&p(1), &me, 100, "succeeded"),
            recorded(&p(2), &me, 200, "succeeded"),
            recorded(&p(3), &me, 300, "succeeded"),
        ];
        let others = HashMap::from([
            (p(4), recorded(&p(4), &me, 400, "closed")),
            (p(5), recorded(&p(5), &them, 500, "succeeded")),
        ]);
        let rows = vec![paid(&p(1), 100), paid(&p(2), 250), paid(&p(4), 400), paid(&p(5), 500), paid(&p(9), 900)];
        let m = match_bill(&me, &rows, &day, &[], &others);
        assert_eq!(
            m.counts,
            RunCounts { matched: 1, missing_in_payq: 2, missing_at_channel: 1, amount_mismatch: 1, status_mismatch: 0 }
        );
        assert_eq!(m.to_settle.len(), 1, "the closed payment the channel has as paid is settled");
        assert_eq!(m.to_settle[0].as_str(), p(4));
        let kinds: Vec<_> = m.discrepancies.iter().map(|d| (d.kind, d.merchant_order_no.clone())).collect();
        assert!(kinds.contains(&(DiscrepancyKind::MissingAtChannel, Some(p(3)))));
        assert!(kinds.contains(&(DiscrepancyKind::AmountMismatch, Some(p(2)))));
        assert!(kinds.contains(&(DiscrepancyKind::MissingInPayq, Some(p(9)))));
        assert_eq!(m.totals.channel_amount, 100 + 250 + 400 + 900, "another merchant's row is theirs");
        assert_eq!(m.totals.payq_amount, 600);
    }
}
