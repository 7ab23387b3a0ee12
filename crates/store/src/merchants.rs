//! Merchants and their credentials.

use crate::{Store, StoreError, StoreResult, Tx, rows};
use payq_domain::{Merchant, MerchantId, MerchantSettings, Timestamp};

/// A merchant to insert. The API key is stored only as its hash.
pub struct NewMerchant<'a> {
    pub id: &'a MerchantId,
    pub name: &'a str,
    pub webhook_url: Option<&'a str>,
    pub settings: &'a MerchantSettings,
    pub api_key_id: &'a str,
    pub api_key_hash: &'a str,
    pub webhook_secret: &'a str,
    pub created_at: Timestamp,
}

/// A merchant with what is needed to authenticate it and sign its webhooks.
pub struct MerchantCredentials {
    pub merchant: Merchant,
    pub api_key_hash: String,
    pub webhook_secret: String,
}

macro_rules! select_merchants {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, webhook_url, settings, created_at, api_key_hash, webhook_secret FROM merchants ",
            $tail
        )
    };
}

impl Tx {
    /// Inserts a merchant.
    pub async fn insert_merchant(&mut self, m: NewMerchant<'_>) -> StoreResult<()> {
        let settings = serde_json::to_string(m.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        crate::db::query(
            "INSERT INTO merchants (id, name, webhook_url, settings, api_key_id, api_key_hash, webhook_secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(m.id.as_str())
        .bind(m.name)
        .bind(m.webhook_url)
        .bind(settings)
        .bind(m.api_key_id)
        .bind(m.api_key_hash)
        .bind(m.webhook_secret)
        .bind(m.created_at.millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// A merchant, read inside this transaction.
    pub async fn merchant(&mut self, id: &MerchantId) -> StoreResult<Merchant> {
        Ok(self.merchant_credentials(id).await?.merchant)
    }

    /// A merchant with its credentials, read inside this transaction.
    pub async fn merchant_credentials(&mut self, id: &MerchantId) -> StoreResult<MerchantCredentials> {
        let row = crate::db::query(select_merchants!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        credentials(&row)
    }
}

fn credentials(row: &crate::db::Row) -> StoreResult<MerchantCredentials> {
    Ok(MerchantCredentials {
        merchant: rows::merchant(row)?,
        api_key_hash: row.try_get("api_key_hash")?,
        webhook_secret: row.try_get("webhook_secret")?,
    })
}

impl Store {
    /// A merchant by id.
    pub async fn merchant(&self, id: &MerchantId) -> StoreResult<Merchant> {
        Ok(self.merchant_with_credentials(id).await?.merchant)
    }

    /// A merchant by id, with its credentials.
    pub async fn merchant_with_credentials(&self, id: &MerchantId) -> StoreResult<MerchantCredentials> {
        let row = crate::db::query(select_merchants!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        credentials(&row)
    }

    /// The merchant whose API key has the public part `key_id`.
    pub async fn merchant_by_api_key_id(&self, key_id: &str) -> StoreResult<MerchantCredentials> {
        let row = crate::db::query(select_merchants!("WHERE api_key_id = $1"))
            .bind(key_id)
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        credentials(&row)
    }
}
