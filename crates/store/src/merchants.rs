//! Merchants and their credentials.

use crate::{Store, StoreError, StoreResult, Tx, rows};
use payq_domain::{EventType, Merchant, MerchantChannels, MerchantId, MerchantSettings, Timestamp};

/// A merchant to insert. The API key is stored only as its hash.
pub struct NewMerchant<'a> {
    pub id: &'a MerchantId,
    pub name: &'a str,
    pub webhook_url: Option<&'a str>,
    pub webhook_events: Option<&'a [EventType]>,
    pub settings: &'a MerchantSettings,
    pub api_key_id: &'a str,
    pub api_key_hash: &'a str,
    pub webhook_secret: &'a str,
    pub created_at: Timestamp,
}

/// A merchant with what is needed to authenticate it and sign its webhooks.
pub struct MerchantCredentials {
    pub merchant: Merchant,
    /// The key id (public part) of the current API key.
    pub api_key_id: String,
    pub api_key_hash: String,
    pub webhook_secret: String,
    /// The hash of the API key before the last rotation (`previous_api_key_id`).
    pub previous_api_key: Option<PreviousSecret>,
    /// The webhook secret before the last rotation, while it still signs.
    pub previous_webhook_secret: Option<PreviousSecret>,
}

/// A credential replaced by a rotation, kept working until `until`.
pub struct PreviousSecret {
    /// The secret (for an API key, its hash).
    pub value: String,
    pub until: Timestamp,
}

impl PreviousSecret {
    /// The secret, if it still works at `now`.
    pub fn valid_at(&self, now: Timestamp) -> Option<&str> {
        (now < self.until).then_some(self.value.as_str())
    }
}

macro_rules! select_merchants {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, webhook_url, webhook_events, settings, channels, created_at, api_key_id, api_key_hash, ",
            "webhook_secret, previous_api_key_id, previous_api_key_hash, previous_api_key_until, ",
            "previous_webhook_secret, previous_webhook_secret_until FROM merchants ",
            $tail
        )
    };
}

impl Tx {
    /// Inserts a merchant.
    pub async fn insert_merchant(&mut self, m: NewMerchant<'_>) -> StoreResult<()> {
        let settings = serde_json::to_string(m.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        crate::db::query(
            "INSERT INTO merchants (id, name, webhook_url, webhook_events, settings, api_key_id, api_key_hash,
                                    webhook_secret, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(m.id.as_str())
        .bind(m.name)
        .bind(m.webhook_url)
        .bind(webhook_events_column(m.webhook_events)?)
        .bind(settings)
        .bind(m.api_key_id)
        .bind(m.api_key_hash)
        .bind(m.webhook_secret)
        .bind(m.created_at.millis())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Writes a merchant's name, webhook URL, event filter and settings. `webhook_changed`
    /// is when the URL or the filter changed, if they did.
    pub async fn update_merchant(&mut self, m: &Merchant, webhook_changed: Option<Timestamp>) -> StoreResult<()> {
        let settings = serde_json::to_string(&m.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let channels = (m.channels != MerchantChannels::default())
            .then(|| serde_json::to_string(&m.channels))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let n = crate::db::query(
            "UPDATE merchants SET name = $2, webhook_url = $3, webhook_events = $4, settings = $5,
                 webhook_since = COALESCE($6, webhook_since), channels = $7 WHERE id = $1",
        )
        .bind(m.id.as_str())
        .bind(m.name.as_str())
        .bind(m.webhook_url.as_deref())
        .bind(webhook_events_column(m.webhook_events.as_deref())?)
        .bind(settings)
        .bind(webhook_changed.map(Timestamp::millis))
        .bind(channels)
        .execute(self.conn())
        .await?;
        if n.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Replaces the merchant's sealed channel credentials (`None`: it has none).
    pub async fn set_channel_secrets(&mut self, id: &MerchantId, sealed: Option<&str>) -> StoreResult<()> {
        let n = crate::db::query("UPDATE merchants SET channel_secrets = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(sealed)
            .execute(self.conn())
            .await?;
        if n.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// The merchant's sealed channel credentials, if it has any, read in this transaction.
    pub async fn channel_secrets(&mut self, id: &MerchantId) -> StoreResult<Option<String>> {
        crate::db::query_scalar("SELECT channel_secrets FROM merchants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Replaces the merchant's API key; the current one keeps working until `until`.
    pub async fn rotate_api_key(
        &mut self,
        id: &MerchantId,
        key_id: &str,
        key_hash: &str,
        until: Timestamp,
    ) -> StoreResult<()> {
        let n = crate::db::query(
            "UPDATE merchants SET previous_api_key_id = api_key_id, previous_api_key_hash = api_key_hash,
                 previous_api_key_until = $4, api_key_id = $2, api_key_hash = $3 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(key_id)
        .bind(key_hash)
        .bind(until.millis())
        .execute(self.conn())
        .await?;
        if n.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Replaces the merchant's webhook secret; webhooks are signed with the current one
    /// too until `until`.
    pub async fn rotate_webhook_secret(&mut self, id: &MerchantId, secret: &str, until: Timestamp) -> StoreResult<()> {
        let n = crate::db::query(
            "UPDATE merchants SET previous_webhook_secret = webhook_secret, previous_webhook_secret_until = $3,
                 webhook_secret = $2 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(secret)
        .bind(until.millis())
        .execute(self.conn())
        .await?;
        if n.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
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

/// A merchant row (any query selecting `merchants`' columns by their names) with its credentials.
pub(crate) fn credentials(row: &crate::db::Row) -> StoreResult<MerchantCredentials> {
    let previous = |value: &str, until: &str| -> StoreResult<Option<PreviousSecret>> {
        let value: Option<String> = row.try_get(value)?;
        let until: Option<i64> = row.try_get(until)?;
        Ok(value.zip(until).map(|(value, until)| PreviousSecret { value, until: Timestamp::from_millis(until) }))
    };
    Ok(MerchantCredentials {
        merchant: rows::merchant(row)?,
        api_key_id: row.try_get("api_key_id")?,
        api_key_hash: row.try_get("api_key_hash")?,
        webhook_secret: row.try_get("webhook_secret")?,
        previous_api_key: previous("previous_api_key_hash", "previous_api_key_until")?,
        previous_webhook_secret: previous("previous_webhook_secret", "previous_webhook_secret_until")?,
    })
}

/// The stored form of a webhook's event filter: a JSON array of wire names, NULL for all.
fn webhook_events_column(events: Option<&[EventType]>) -> StoreResult<Option<String>> {
    events.map(|e| serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))).transpose()
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

    /// One merchant's sealed channel credentials, if any merchant has some (the start-up
    /// check that `PAYQ_SECRETS_KEY` is set and opens them).
    pub async fn any_channel_secrets(&self) -> StoreResult<Option<String>> {
        crate::db::query_scalar("SELECT channel_secrets FROM merchants WHERE channel_secrets IS NOT NULL LIMIT 1")
            .fetch_optional(self.read())
            .await
    }

    /// The merchant's sealed channel credentials, if it has any.
    pub async fn merchant_channel_secrets(&self, id: &MerchantId) -> StoreResult<Option<String>> {
        crate::db::query_scalar("SELECT channel_secrets FROM merchants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The merchants whose shown channel configuration names the WeChat Pay key `name` (a
    /// platform certificate's serial, upper-case hex without leading zeros, which also finds
    /// serials stored with them; or a public key id, `PUB_KEY_ID_…`), with their sealed
    /// credentials: whom a WeChat Pay notification signed under that key may be for. At
    /// most 16, to be checked by the caller; none for a name of other characters than
    /// letters, digits and `_` (which also keeps `LIKE`'s `%` out).
    pub async fn merchants_with_channel_key(&self, name: &str) -> StoreResult<Vec<(MerchantId, Option<String>)>> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Ok(Vec::new());
        }
        let found = crate::db::query(
            "SELECT id, channel_secrets FROM merchants WHERE channels LIKE $1 ESCAPE '\\' ORDER BY id LIMIT 16",
        )
        .bind(format!("%{}\"%", name.replace('_', "\\_")))
        .fetch_all(self.read())
        .await?;
        found.iter().map(|row| Ok((rows::parse(row, "id")?, row.try_get("channel_secrets")?))).collect()
    }

    /// The merchant whose API key, or whose previous API key, has the public part `key_id`.
    pub async fn merchant_by_api_key_id(&self, key_id: &str) -> StoreResult<MerchantCredentials> {
        let row = crate::db::query(select_merchants!("WHERE api_key_id = $1 OR previous_api_key_id = $1"))
            .bind(key_id)
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        credentials(&row)
    }
}
