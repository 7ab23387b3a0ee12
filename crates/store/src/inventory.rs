//! Stock per SKU, and taking an order's items from it atomically.

use crate::{Store, StoreResult, Tx};
use payq_domain::{InventoryLevel, MerchantId, OrderItem};

/// A SKU that lacked stock when an order's items were taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub sku: String,
    pub wanted: u32,
    pub available: i64,
}

impl Tx {
    /// Sets the stock of a SKU.
    pub async fn put_inventory(&mut self, merchant: &MerchantId, sku: &str, available: i64) -> StoreResult<()> {
        crate::db::query(
            "INSERT INTO inventory (merchant_id, sku, available) VALUES ($1, $2, $3)
             ON CONFLICT (merchant_id, sku) DO UPDATE SET available = excluded.available",
        )
        .bind(merchant.as_str())
        .bind(sku)
        .bind(available)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Takes the items from stock, all or none. SKUs never set are not tracked. On a
    /// shortage nothing is taken and the first short SKU is returned.
    pub async fn take_inventory(
        &mut self,
        merchant: &MerchantId,
        items: &[OrderItem],
    ) -> StoreResult<Option<Shortage>> {
        let mut wanted = std::collections::BTreeMap::<&str, u32>::new();
        for item in items {
            let q = wanted.entry(item.sku.as_str()).or_default();
            *q = q.saturating_add(item.quantity);
        }
        for (sku, quantity) in &wanted {
            let available: Option<i64> =
                crate::db::query_scalar("SELECT available FROM inventory WHERE merchant_id = $1 AND sku = $2")
                    .bind(merchant.as_str())
                    .bind(*sku)
                    .fetch_optional(self.conn())
                    .await?;
            let Some(available) = available else { continue };
            if available < i64::from(*quantity) {
                return Ok(Some(Shortage { sku: (*sku).to_owned(), wanted: *quantity, available }));
            }
        }
        for (sku, quantity) in &wanted {
            crate::db::query("UPDATE inventory SET available = available - $1 WHERE merchant_id = $2 AND sku = $3")
                .bind(i64::from(*quantity))
                .bind(merchant.as_str())
                .bind(*sku)
                .execute(self.conn())
                .await?;
        }
        Ok(None)
    }
}

impl Store {
    /// The stock of a SKU, if it was ever set.
    pub async fn inventory(&self, merchant: &MerchantId, sku: &str) -> StoreResult<Option<InventoryLevel>> {
        let available: Option<i64> =
            crate::db::query_scalar("SELECT available FROM inventory WHERE merchant_id = $1 AND sku = $2")
                .bind(merchant.as_str())
                .bind(sku)
                .fetch_optional(self.read())
                .await?;
        Ok(available.map(|available| InventoryLevel { sku: sku.to_owned(), available }))
    }
}
