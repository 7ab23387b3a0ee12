//! Which events have reached their merchant's webhook.

use crate::{Store, StoreResult};
use payq_domain::{EventId, MerchantId, Timestamp};

impl Store {
    /// Records a delivery (once; a repeat is ignored).
    pub async fn record_webhook_delivery(
        &self,
        event: &EventId,
        merchant: &MerchantId,
        attempts: u32,
    ) -> StoreResult<()> {
        let insert = crate::db::query(
            "INSERT INTO webhook_deliveries (event_id, merchant_id, attempts, delivered_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.as_str())
        .bind(merchant.as_str())
        .bind(i64::from(attempts))
        .bind(Timestamp::now().millis());
        self.write_one(insert).await?;
        Ok(())
    }
}
