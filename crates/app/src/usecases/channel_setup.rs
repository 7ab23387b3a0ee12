//! A merchant's real-channel credentials (`channels` on `PATCH /v1/merchants/{id}`):
//! checked when they are set, stored only sealed with `PAYQ_SECRETS_KEY`, and shown only
//! without their keys (docs/channels.md, docs/security.md).

use super::merchants::{MerchantChangeError, present};
use super::{InputError, Payq};
use payq_channels::alipay::client::{AlipayAccount, PRODUCTION_GATEWAY};
use payq_channels::alipay::protocol::{AlipayPublicKey, AppKey};
use payq_channels::wechatpay::client::{PRODUCTION_BASE_URL, WechatPayAccount};
use payq_channels::wechatpay::protocol::{KeyName, MerchantKey, VerificationKey};
use payq_domain::{AlipayChannel, Merchant, MerchantChannels, WechatPayChannel};
use payq_store::Tx;
use serde::{Deserialize, Serialize};

/// `channels` of a merchant update: each channel named is set, or removed with `null`;
/// channels not named stay as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsUpdate {
    /// The merchant's Alipay application, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AlipayCredentials>)]
    pub alipay: Option<Option<AlipayCredentials>>,
    /// The merchant's WeChat Pay account, or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<WechatPayCredentials>)]
    pub wechatpay: Option<Option<WechatPayCredentials>>,
}

/// A merchant's Alipay application. The private key is never returned nor logged.
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlipayCredentials {
    /// The application's id on the Alipay open platform.
    pub app_id: String,
    /// The application's private key (PKCS#8 PEM); signs requests.
    pub private_key: String,
    /// Alipay's public key (PEM); verifies answers and notifications.
    pub alipay_public_key: String,
    /// The gateway; default Alipay's production gateway.
    pub gateway_url: Option<String>,
}

impl std::fmt::Debug for AlipayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayCredentials")
            .field("app_id", &self.app_id)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

impl AlipayCredentials {
    fn gateway(&self) -> &str {
        self.gateway_url.as_deref().unwrap_or(PRODUCTION_GATEWAY)
    }

    /// The account the gateway client calls with; fails on keys that do not read.
    pub fn account(&self) -> Result<AlipayAccount, InputError> {
        let bad =
            |e: payq_channels::alipay::protocol::AlipayProtocolError| InputError::Malformed(format!("alipay: {e}"));
        Ok(AlipayAccount {
            app_id: self.app_id.clone(),
            app_key: AppKey::from_pem(&self.private_key).map_err(|e| bad(e.into()))?,
            alipay_public_key: AlipayPublicKey::from_pem(&self.alipay_public_key).map_err(bad)?,
            gateway_url: self.gateway().to_owned(),
        })
    }

    /// Checks every field: an app id of 1 to 32 letters and digits, keys that read, an
    /// `http(s)` gateway.
    fn check(&self) -> Result<(), InputError> {
        let id_ok = !self.app_id.is_empty()
            && self.app_id.len() <= 32
            && self.app_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            return Err(InputError::Malformed("alipay: app_id must be 1 to 32 letters and digits".into()));
        }
        check_url("alipay: gateway_url", self.gateway())?;
        self.account().map(|_| ())
    }

    fn public(&self) -> AlipayChannel {
        AlipayChannel { app_id: self.app_id.clone(), gateway_url: self.gateway().to_owned() }
    }
}

/// Refuses anything but an `http(s)` URL with a host and no user name.
fn check_url(what: &str, url: &str) -> Result<(), InputError> {
    let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
    if parsed.is_none_or(|u| u.host().is_none() || !u.username().is_empty()) {
        return Err(InputError::Malformed(format!("{what} must be an http(s) URL, got {url:?}")));
    }
    Ok(())
}

/// A merchant's WeChat Pay account (API v3). The private key and the API v3 key are never
/// returned nor logged.
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WechatPayCredentials {
    /// The merchant id (`mchid`).
    pub mch_id: String,
    /// The app id (`appid`) payments are made in.
    pub app_id: String,
    /// The serial number of the merchant's API certificate.
    pub serial_no: String,
    /// The merchant's API private key (PKCS#8 PEM); signs requests.
    pub private_key: String,
    /// The API v3 key (32 characters); decrypts notifications.
    pub api_v3_key: String,
    /// WeChat Pay's platform certificates (PEM); verify answers and notifications. A
    /// merchant set up since 2024 has none: it has a WeChat Pay public key instead.
    #[serde(default)]
    pub platform_certificates: Vec<String>,
    /// The app id of the merchant's mini program, for payments inside it (`mini_program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mini_program_app_id: Option<String>,
    /// The WeChat Pay public key's id (`PUB_KEY_ID_…`), with `public_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_id: Option<String>,
    /// The WeChat Pay public key (PEM); verifies answers and notifications that name
    /// `public_key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The API's base URL; default WeChat Pay's production API.
    pub base_url: Option<String>,
}

impl std::fmt::Debug for WechatPayCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayCredentials")
            .field("mch_id", &self.mch_id)
            .field("app_id", &self.app_id)
            .field("serial_no", &self.serial_no)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The most platform certificates a merchant keeps (WeChat Pay overlaps two while it
/// rotates them).
const MAX_PLATFORM_CERTIFICATES: usize = 8;

impl WechatPayCredentials {
    fn base_url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(PRODUCTION_BASE_URL)
    }

    /// Every key WeChat Pay may sign with for this merchant: its platform certificates and
    /// its public key.
    fn verification_keys(&self) -> Result<Vec<VerificationKey>, InputError> {
        let bad = |e: payq_channels::wechatpay::protocol::WechatPayProtocolError| {
            InputError::Malformed(format!("wechatpay: {e}"))
        };
        let mut keys: Vec<VerificationKey> = self
            .platform_certificates
            .iter()
            .map(|pem| VerificationKey::from_certificate_pem(pem).map_err(bad))
            .collect::<Result<_, _>>()?;
        match (&self.public_key_id, &self.public_key) {
            (Some(id), Some(pem)) => keys.push(VerificationKey::from_public_key_pem(id, pem).map_err(bad)?),
            (None, None) => {}
            _ => return Err(InputError::Malformed("wechatpay: public_key_id and public_key go together".into())),
        }
        Ok(keys)
    }

    /// The account the API client calls with; fails on keys that do not read.
    pub fn account(&self) -> Result<WechatPayAccount, InputError> {
        Ok(WechatPayAccount {
            mch_id: self.mch_id.clone(),
            app_id: self.app_id.clone(),
            serial_no: self.serial_no.clone(),
            merchant_key: MerchantKey::from_pem(&self.private_key)
                .map_err(|e| InputError::Malformed(format!("wechatpay: {e}")))?,
            api_v3_key: self.api_v3_key.clone(),
            verification_keys: self.verification_keys()?,
            public_key_id: self.public_key_id.clone(),
            mini_program_app_id: self.mini_program_app_id.clone(),
            base_url: self.base_url().to_owned(),
        })
    }

    /// Checks every field: ids of letters and digits, a hex serial, a 32-character API v3
    /// key, one to eight certificates and a key that read, an `http(s)` base URL.
    fn check(&self) -> Result<(), InputError> {
        let bad = |why: &str| Err(InputError::Malformed(format!("wechatpay: {why}")));
        let word =
            |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !word(&self.mch_id, 32) {
            return bad("mch_id must be 1 to 32 letters and digits");
        }
        if !word(&self.app_id, 32) {
            return bad("app_id must be 1 to 32 letters and digits");
        }
        if self.mini_program_app_id.as_deref().is_some_and(|id| !word(id, 32)) {
            return bad("mini_program_app_id must be 1 to 32 letters and digits");
        }
        if !(word(&self.serial_no, 64) && self.serial_no.bytes().all(|b| b.is_ascii_hexdigit())) {
            return bad("serial_no must be the API certificate's serial number in hex");
        }
        if self.api_v3_key.len() != 32 {
            return bad("api_v3_key must be the 32 characters set in the merchant platform");
        }
        if self.platform_certificates.len() > MAX_PLATFORM_CERTIFICATES {
            return bad("platform_certificates holds at most 8 PEM certificates");
        }
        if self.platform_certificates.is_empty() && self.public_key.is_none() {
            return bad(
                "platform_certificates or public_key_id and public_key are needed to check WeChat Pay's answers",
            );
        }
        check_url("wechatpay: base_url", self.base_url())?;
        self.account().map(|_| ())
    }

    fn public(&self) -> WechatPayChannel {
        let serials = self
            .verification_keys()
            .map(|keys| {
                keys.into_iter()
                    .filter_map(|k| match k.name {
                        KeyName::Serial(serial) => Some(serial),
                        KeyName::PublicKeyId(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        WechatPayChannel {
            mch_id: self.mch_id.clone(),
            app_id: self.app_id.clone(),
            serial_no: self.serial_no.clone(),
            platform_serials: serials,
            public_key_id: self.public_key_id.clone(),
            mini_program_app_id: self.mini_program_app_id.clone(),
            base_url: self.base_url().to_owned(),
        }
    }
}

/// Every channel credential of one merchant, as sealed in the store.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SealedChannels {
    pub alipay: Option<AlipayCredentials>,
    pub wechatpay: Option<WechatPayCredentials>,
}

impl SealedChannels {
    fn public(&self) -> MerchantChannels {
        MerchantChannels {
            alipay: self.alipay.as_ref().map(AlipayCredentials::public),
            wechatpay: self.wechatpay.as_ref().map(WechatPayCredentials::public),
        }
    }

    fn is_empty(&self) -> bool {
        self.alipay.is_none() && self.wechatpay.is_none()
    }
}

/// Why credentials cannot be used: the key to open them is missing or wrong.
fn no_key() -> InputError {
    InputError::Malformed(
        "PAYQ_SECRETS_KEY is not set: payq stores channel credentials only encrypted with it; set it to 64 hex \
         characters (e.g. `openssl rand -hex 32`) on every payq process and restart"
            .into(),
    )
}

impl Payq {
    /// Opens sealed channel credentials (none when there are none).
    pub(crate) fn open_channels(&self, sealed: Option<String>) -> Result<SealedChannels, InputError> {
        let Some(sealed) = sealed else {
            return Ok(SealedChannels::default());
        };
        let key = self.secrets.as_ref().ok_or_else(no_key)?;
        let plain = key.open(&sealed).map_err(|e| InputError::Malformed(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| InputError::Malformed(format!("stored channel credentials: {e}")))
    }

    /// Applies `update` to the merchant's channels inside `tx`: the sealed credentials and
    /// the public view on `merchant` (written with the rest of the merchant).
    pub(crate) async fn apply_channels(
        &self,
        tx: &mut Tx,
        merchant: &mut Merchant,
        update: ChannelsUpdate,
    ) -> Result<(), MerchantChangeError> {
        if let Some(Some(alipay)) = &update.alipay {
            alipay.check()?;
        }
        if let Some(Some(wechatpay)) = &update.wechatpay {
            wechatpay.check()?;
        }
        let mut channels = self.open_channels(tx.channel_secrets(&merchant.id).await?)?;
        if let Some(alipay) = update.alipay {
            channels.alipay = alipay;
        }
        if let Some(wechatpay) = update.wechatpay {
            channels.wechatpay = wechatpay;
        }
        let sealed = if channels.is_empty() {
            None
        } else {
            let key = self.secrets.as_ref().ok_or_else(no_key)?;
            let plain = serde_json::to_vec(&channels).map_err(|e| InputError::Malformed(e.to_string()))?;
            Some(key.seal(&plain))
        };
        tx.set_channel_secrets(&merchant.id, sealed.as_deref()).await?;
        if !channels.is_empty() {
            // Its bills are reconciled daily from now on.
            self.schedule_next_reconciliation_in(tx).await?;
        }
        merchant.channels = channels.public();
        Ok(())
    }
}
