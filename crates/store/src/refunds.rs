//! Refunds.

use crate::{Store, StoreError, StoreResult, Tx, rows};
use payq_domain::{MerchantId, OrderId, PaymentId, Refund, RefundId};

impl Tx {
    /// Inserts a refund of `payment`.
    pub async fn insert_refund(&mut self, refund: &Refund, payment: &PaymentId) -> StoreResult<()> {
        crate::db::query(
            "INSERT INTO refunds (id, order_id, merchant_id, payment_id, amount, currency, reason, status,
                execute_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(refund.id.as_str())
        .bind(refund.order_id.as_str())
        .bind(refund.merchant_id.as_str())
        .bind(payment.as_str())
        .bind(refund.amount)
        .bind(refund.currency.code())
        .bind(refund.reason.as_deref())
        .bind(refund.status.as_str())
        .bind(refund.execute_at.millis())
        .bind(refund.created_at.millis())
        .bind(refund.updated_at.millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// A refund by id, read inside this transaction, its order held first (as by
    /// [`Tx::order`]) so that the refund cannot change under this transaction.
    pub async fn refund(&mut self, id: &RefundId) -> StoreResult<Refund> {
        self.hold_order(crate::orders::OrderOf::Refund, id.as_str()).await?;
        let row = crate::db::query("SELECT * FROM refunds WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::refund(&row)
    }

    /// The payment a refund refunds.
    pub async fn refund_payment_id(&mut self, id: &RefundId) -> StoreResult<PaymentId> {
        let raw: String = crate::db::query_scalar("SELECT payment_id FROM refunds WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        raw.parse().map_err(|e: payq_domain::IdError| StoreError::Corrupt(e.to_string()))
    }

    /// Writes a refund's status if its version is unchanged, and bumps the version.
    pub async fn update_refund(&mut self, refund: &Refund) -> StoreResult<()> {
        let done = crate::db::query(
            "UPDATE refunds SET status = $1, failure_reason = $2, execute_at = $3, updated_at = $4,
                version = version + 1 WHERE id = $5 AND version = $6",
        )
        .bind(refund.status.as_str())
        .bind(refund.failure_reason.as_deref())
        .bind(refund.execute_at.millis())
        .bind(refund.updated_at.millis())
        .bind(refund.id.as_str())
        .bind(refund.version)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("refund {} changed concurrently", refund.id)));
        }
        Ok(())
    }

    /// Minor units held by the order's refunds that are pending, processing or succeeded.
    pub async fn refunds_held(&mut self, order: &OrderId) -> StoreResult<i64> {
        let n: i64 = crate::db::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds
             WHERE order_id = $1 AND status IN ('pending_review', 'processing', 'succeeded')",
        )
        .bind(order.as_str())
        .fetch_one(self.conn())
        .await?;
        Ok(n)
    }

    /// The order's refunds still awaiting review.
    pub async fn refunds_pending_review(&mut self, order: &OrderId) -> StoreResult<Vec<Refund>> {
        let rows =
            crate::db::query("SELECT * FROM refunds WHERE order_id = $1 AND status = 'pending_review' ORDER BY id")
                .bind(order.as_str())
                .fetch_all(self.conn())
                .await?;
        rows.iter().map(rows::refund).collect()
    }
}

impl Store {
    /// The merchant's refund `id`; another merchant's refund is `NotFound`.
    pub async fn refund(&self, merchant: &MerchantId, id: &RefundId) -> StoreResult<Refund> {
        let row = crate::db::query("SELECT * FROM refunds WHERE id = $1 AND merchant_id = $2")
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::refund(&row)
    }
}
