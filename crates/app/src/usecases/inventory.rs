//! Inventory: stock per SKU for the post-payment check.

use super::{InputError, LookupError, Payq, WriteError};
use payq_domain::{InventoryLevel, Merchant};

impl Payq {
    /// Sets the stock of a SKU.
    pub async fn put_inventory(
        &self,
        merchant: &Merchant,
        sku: &str,
        available: i64,
    ) -> Result<InventoryLevel, WriteError> {
        if sku.is_empty() || sku.len() > 64 {
            return Err(InputError::Malformed("sku must be 1 to 64 characters".into()).into());
        }
        if sku.chars().any(char::is_control) {
            return Err(InputError::OutOfBounds("sku must not contain control characters".into()).into());
        }
        if available < 0 {
            return Err(InputError::Malformed("available must be zero or more".into()).into());
        }
        let mut tx = self.store.begin().await?;
        tx.put_inventory(&merchant.id, sku, available).await?;
        tx.commit().await?;
        Ok(InventoryLevel { sku: sku.to_owned(), available })
    }

    /// The stock of a SKU.
    pub async fn inventory(&self, merchant: &Merchant, sku: &str) -> Result<InventoryLevel, LookupError> {
        self.store.inventory(&merchant.id, sku).await?.ok_or(LookupError::NotFound("sku"))
    }
}
