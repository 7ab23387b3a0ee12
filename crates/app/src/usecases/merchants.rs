//! Merchants: creation, and the self-service of an existing one (update, rotation of its
//! API key and webhook secret).

use super::{InputError, LookupError, Payq, StoreFault, WriteError, check_text};
use crate::crypto::{self, ApiKey};
use payq_domain::{EventType, HumanDuration, Merchant, MerchantChannels, MerchantId, MerchantSettings, Timestamp};
use payq_store::{NewMerchant, Store, StoreError};
use serde::{Deserialize, Serialize};

/// `POST /v1/merchants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    pub name: String,
    pub webhook_url: Option<String>,
    /// The event types the webhook receives; omitted or `null` for every type.
    pub webhook_events: Option<Vec<EventType>>,
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

/// `PATCH /v1/merchants/{id}` body: what is present changes, the rest stays.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMerchant {
    pub name: Option<String>,
    /// A new URL, or `null` to stop webhooks.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    /// The event types the webhook receives, or `null` for every type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<EventType>>)]
    pub webhook_events: Option<Option<Vec<EventType>>>,
    /// The settings to change; those not named keep their value.
    #[schema(value_type = Option<MerchantSettings>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// Real payment channels to set up or remove (see docs/channels.md).
    pub channels: Option<super::channel_setup::ChannelsUpdate>,
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
pub(crate) fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/merchants/{id}/rotate` body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCredentials {
    /// Issue a new API key.
    #[serde(default)]
    pub api_key: bool,
    /// Issue a new webhook secret.
    #[serde(default)]
    pub webhook_secret: bool,
    /// How long the replaced ones keep working (0s to 30d; default 24h).
    pub overlap: Option<HumanDuration>,
}

/// The credentials a rotation issued, shown only in its response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedCredentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Until when the replaced credentials keep working.
    pub previous_valid_until: Timestamp,
}

/// Why a merchant could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum MerchantChangeError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("merchant not found")]
    MerchantNotFound,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

impl From<StoreError> for MerchantChangeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => MerchantChangeError::MerchantNotFound,
            e => MerchantChangeError::Store(e.into()),
        }
    }
}

/// Longest overlap a rotation may give the credentials it replaces.
const MAX_OVERLAP: HumanDuration = HumanDuration::from_millis(30 * 86_400_000);
/// The overlap when none is asked for.
const DEFAULT_OVERLAP: HumanDuration = HumanDuration::from_millis(86_400_000);

impl Payq {
    /// Changes what the request names of a merchant's name, webhook URL, event filter and
    /// settings, checked as at creation.
    pub async fn update_merchant(&self, id: &MerchantId, req: UpdateMerchant) -> Result<Merchant, MerchantChangeError> {
        let name = req.name.as_deref().map(checked_name).transpose()?.map(str::to_owned);
        if let Some(Some(url)) = &req.webhook_url {
            check_webhook_url(Some(url), self.settings.webhook.allow_private).await?;
        }
        let mut tx = self.store.begin().await?;
        let mut merchant = tx.merchant(id).await?;
        if let Some(changes) = req.settings {
            merchant.settings = merged_settings(&merchant.settings, changes)?;
        }
        if let Some(name) = name {
            merchant.name = name;
        }
        let webhook_before = (merchant.webhook_url.clone(), merchant.webhook_events.clone());
        if let Some(url) = req.webhook_url {
            merchant.webhook_url = url;
        }
        if let Some(events) = req.webhook_events {
            merchant.webhook_events = events;
        }
        let webhook_changed =
            (webhook_before != (merchant.webhook_url.clone(), merchant.webhook_events.clone())).then(Timestamp::now);
        if let Some(channels) = req.channels {
            self.apply_channels(&mut tx, &mut merchant, channels).await?;
        }
        tx.update_merchant(&merchant, webhook_changed).await?;
        tx.commit().await?;
        Ok(merchant)
    }

    /// Issues a new API key and/or webhook secret; the replaced ones keep working for the
    /// overlap (webhooks are signed with both meanwhile).
    pub async fn rotate_credentials(
        &self,
        id: &MerchantId,
        req: RotateCredentials,
    ) -> Result<RotatedCredentials, MerchantChangeError> {
        if !req.api_key && !req.webhook_secret {
            return Err(InputError::Malformed("name what to rotate: api_key, webhook_secret or both".into()).into());
        }
        let overlap = req.overlap.unwrap_or(DEFAULT_OVERLAP);
        if overlap > MAX_OVERLAP {
            return Err(InputError::OutOfBounds(format!("overlap must be at most 30d, got {overlap}")).into());
        }
        let until = Timestamp::now().plus_millis(overlap.as_millis());
        let mut rotated = RotatedCredentials { api_key: None, webhook_secret: None, previous_valid_until: until };
        let mut tx = self.store.begin().await?;
        if req.api_key {
            let key = ApiKey::generate();
            tx.rotate_api_key(id, &key.key_id, &key.hash, until).await?;
            rotated.api_key = Some(key.key);
        }
        if req.webhook_secret {
            let secret = new_webhook_secret();
            tx.rotate_webhook_secret(id, &secret, until).await?;
            rotated.webhook_secret = Some(secret);
        }
        tx.commit().await?;
        Ok(rotated)
    }

    /// A merchant, without secrets.
    pub async fn merchant(&self, id: &MerchantId) -> Result<Merchant, LookupError> {
        match self.store.merchant(id).await {
            Err(StoreError::NotFound) => Err(LookupError::NotFound("merchant")),
            other => Ok(other?),
        }
    }

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
    let name = checked_name(&req.name)?;
    req.settings.validate().map_err(|e| InputError::OutOfBounds(e.to_string()))?;
    check_webhook_url(req.webhook_url.as_deref(), allow_private).await?;
    let key = ApiKey::generate();
    let webhook_secret = new_webhook_secret();
    let merchant = Merchant {
        id: MerchantId::generate(),
        name: name.to_owned(),
        webhook_url: req.webhook_url,
        webhook_events: req.webhook_events,
        settings: req.settings,
        channels: MerchantChannels::default(),
        created_at: Timestamp::now(),
    };
    let mut tx = store.begin().await?;
    tx.insert_merchant(NewMerchant {
        id: &merchant.id,
        name: &merchant.name,
        webhook_url: merchant.webhook_url.as_deref(),
        webhook_events: merchant.webhook_events.as_deref(),
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

fn new_webhook_secret() -> String {
    format!("whsec_{}", crypto::random_hex(32))
}

/// A merchant's name, trimmed: 1 to 200 characters, no control characters.
fn checked_name(name: &str) -> Result<&str, InputError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(InputError::Malformed("name must not be empty".into()));
    }
    check_text("name", Some(name), 200)?;
    Ok(name)
}

/// A webhook URL within the URL policy (see docs/security.md).
async fn check_webhook_url(url: Option<&str>, allow_private: bool) -> Result<(), InputError> {
    if let Some(url) = url {
        crate::url_policy::check(url, allow_private).await.map_err(|e| InputError::Malformed(e.to_string()))?;
    }
    Ok(())
}

/// `current` with the fields named in `changes` replaced, checked against the bounds.
fn merged_settings(
    current: &MerchantSettings,
    changes: serde_json::Map<String, serde_json::Value>,
) -> Result<MerchantSettings, InputError> {
    let mut merged = match serde_json::to_value(current) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    merged.extend(changes);
    let settings: MerchantSettings = serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| InputError::Malformed(format!("settings: {e}")))?;
    settings.validate().map_err(|e| InputError::OutOfBounds(e.to_string()))?;
    Ok(settings)
}
