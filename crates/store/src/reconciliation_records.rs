//! What a reconciliation run compares a bill with: the merchants with a channel, and the
//! day's succeeded payments and refunds at it (docs/channels.md, "Reconciliation").

use crate::{Store, StoreError, StoreResult, rows};
use payq_domain::{BillChannel, MerchantId, PaymentId, Timestamp};

/// A payment or refund payq recorded at a channel, as reconciliation compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub id: String,
    pub merchant_id: MerchantId,
    /// The payment (for a refund: the refunded payment).
    pub payment_id: String,
    pub amount: i64,
    pub status: String,
    pub channel: payq_domain::ChannelName,
}

/// Which of a day's succeeded records to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Succeeded {
    Payments,
    Refunds,
}

impl Store {
    /// The merchants that have `channel` set up.
    pub async fn merchants_with_channel(&self, channel: BillChannel) -> StoreResult<Vec<MerchantId>> {
        let found: Vec<String> = crate::db::query_scalar("SELECT id FROM merchants WHERE channels LIKE $1 ORDER BY id")
            .bind(format!("%\"{}\"%", channel.as_str()))
            .fetch_all(self.read())
            .await?;
        found
            .iter()
            .map(|id| id.parse().map_err(|e: payq_domain::IdError| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    /// The merchant's payments (or refunds) that succeeded at `channel` in [`from`, `to`).
    pub async fn succeeded(
        &self,
        what: Succeeded,
        merchant: &MerchantId,
        channel: BillChannel,
        (from, to): (Timestamp, Timestamp),
    ) -> StoreResult<Vec<Recorded>> {
        let sql = match what {
            Succeeded::Payments => {
                "SELECT id, merchant_id, id AS payment_id, amount, status, channel FROM payments
                 WHERE merchant_id = $1 AND channel = $2 AND status = 'succeeded' AND updated_at >= $3
                   AND updated_at < $4"
            }
            Succeeded::Refunds => {
                "SELECT r.id, r.merchant_id, r.payment_id, r.amount, r.status, p.channel FROM refunds r
                 JOIN payments p ON p.id = r.payment_id
                 WHERE r.merchant_id = $1 AND r.status = 'succeeded' AND r.updated_at >= $3 AND r.updated_at < $4
                   AND p.channel = $2"
            }
        };
        let found = crate::db::query(sql)
            .bind(merchant.as_str())
            .bind(channel.as_str())
            .bind(from.millis())
            .bind(to.millis())
            .fetch_all(self.read())
            .await?;
        found.iter().map(recorded).collect()
    }

    /// A payment as reconciliation compares it, whatever its merchant or day.
    pub async fn recorded_payment(&self, id: &str) -> StoreResult<Option<Recorded>> {
        let found = crate::db::query(
            "SELECT id, merchant_id, id AS payment_id, amount, status, channel FROM payments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.read())
        .await?;
        found.as_ref().map(recorded).transpose()
    }

    /// A refund as reconciliation compares it, whatever its merchant or day.
    pub async fn recorded_refund(&self, id: &str) -> StoreResult<Option<Recorded>> {
        let found = crate::db::query(
            "SELECT r.id, r.merchant_id, r.payment_id, r.amount, r.status, p.channel FROM refunds r
             JOIN payments p ON p.id = r.payment_id WHERE r.id = $1",
        )
        .bind(id)
        .fetch_optional(self.read())
        .await?;
        found.as_ref().map(recorded).transpose()
    }

    /// The fee the channel's bill showed for a payment.
    pub async fn payment_fee(&self, id: &PaymentId) -> StoreResult<Option<i64>> {
        let fee: Option<Option<i64>> = crate::db::query_scalar("SELECT fee FROM payments WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?;
        Ok(fee.flatten())
    }
}

fn recorded(row: &crate::db::Row) -> StoreResult<Recorded> {
    Ok(Recorded {
        id: row.try_get("id")?,
        merchant_id: rows::parse(row, "merchant_id")?,
        payment_id: row.try_get("payment_id")?,
        amount: row.try_get("amount")?,
        status: row.try_get("status")?,
        channel: rows::parse(row, "channel")?,
    })
}
