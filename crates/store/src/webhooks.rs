//! Which events have reached their merchant's webhook.

use crate::{Store, StoreResult};
use payq_domain::{EventId, MerchantId, Timestamp};

impl Store {
    /// Whether the event was delivered to the merchant's webhook.
    pub async fn webhook_delivered(&self, event: &EventId) -> StoreResult<bool> {
        let n: i64 = crate::db::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE event_id = $1")
            .bind(event.as_str())
            .fetch_one(self.read())
            .await?;
        Ok(n > 0)
    }

    /// Records a delivery (once; a repeat is ignored).
    pub async fn record_webhook_delivery(
        &self,
        event: &EventId,
        merchant: &MerchantId,
        attempts: u32,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::db::query(
            "INSERT INTO webhook_deliveries (event_id, merchant_id, attempts, delivered_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.as_str())
        .bind(merchant.as_str())
        .bind(i64::from(attempts))
        .bind(Timestamp::now().millis())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }
}
