//! Creating merchants.

use super::{InputError, Payq, WriteError, check_text};
use crate::crypto::{self, ApiKey};
use payq_domain::{Merchant, MerchantId, MerchantSettings, Timestamp};
use payq_store::{NewMerchant, Store};
use serde::{Deserialize, Serialize};

/// `POST /v1/merchants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    pub name: String,
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub settings: MerchantSettings,
}

/// A new merchant with its secrets, shown only once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedMerchant {
    #[serde(flatten)]
    pub merchant: Merchant,
    /// The merchant's API key. Shown once: a replay of the creating request (same
    /// `Idempotency-Key`) answers the same merchant without it.
    #[schema(required = false)]
    pub api_key: String,
    /// The secret that signs the merchant's webhooks. Shown once, like `api_key`.
    #[schema(required = false)]
    pub webhook_secret: String,
}

impl Payq {
    /// Creates a merchant with a fresh API key and webhook secret.
    pub async fn create_merchant(&self, req: CreateMerchant) -> Result<CreatedMerchant, WriteError> {
        create_merchant(&self.store, req, self.settings.webhook.allow_private).await
    }
}

/// Creates a merchant with a fresh API key and webhook secret (also used by
/// `payq merchant create`, which has no channel).
/// `allow_private` lifts the webhook URL policy (`webhook.allow_private`).
pub async fn create_merchant(
    store: &Store,
    req: CreateMerchant,
    allow_private: bool,
) -> Result<CreatedMerchant, WriteError> {
    let name = req.name.trim();
    if name.is_empty() {
        return Err(InputError::Malformed("name must not be empty".into()).into());
    }
    check_text("name", Some(name), 200)?;
    req.settings.validate().map_err(|e| InputError::OutOfBounds(e.to_string()))?;
    if let Some(url) = req.webhook_url.as_deref() {
        crate::url_policy::check(url, allow_private).await.map_err(|e| InputError::Malformed(e.to_string()))?;
    }
    let key = ApiKey::generate();
    let webhook_secret = format!("whsec_{}", crypto::random_hex(32));
    let merchant = Merchant {
        id: MerchantId::generate(),
        name: name.to_owned(),
        webhook_url: req.webhook_url,
        settings: req.settings,
        created_at: Timestamp::now(),
    };
    let mut tx = store.begin().await?;
    tx.insert_merchant(NewMerchant {
        id: &merchant.id,
        name: &merchant.name,
        webhook_url: merchant.webhook_url.as_deref(),
        settings: &merchant.settings,
        api_key_id: &key.key_id,
        api_key_hash: &key.hash,
        webhook_secret: &webhook_secret,
        created_at: merchant.created_at,
    })
    .await?;
    tx.commit().await?;
    Ok(CreatedMerchant { merchant, api_key: key.key, webhook_secret })
}
