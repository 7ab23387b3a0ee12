//! The WeChat Pay API v3 protocol, without any I/O: the `WECHATPAY2-SHA256-RSA2048`
//! request signature, verification of answers and notifications against the platform
//! certificates (`Wechatpay-Serial`, `-Timestamp`, `-Nonce`, `-Signature`, within a
//! freshness window), and decryption of a notification's `resource` (AEAD_AES_256_GCM with
//! the merchant's API v3 key).
//!
//! The adapter that calls the API builds on these functions (docs/channels.md).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::PublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use x509_cert::der::{DecodePem, Encode};

/// Why WeChat Pay material could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WechatPayProtocolError {
    /// A key or certificate does not read (the message says which).
    #[error("{0}")]
    Key(String),
    /// The answer names a platform certificate payq does not have.
    #[error("unknown platform certificate serial {0:?}")]
    UnknownSerial(String),
    /// The signature's timestamp is too far from now (a replay, or a clock far off).
    #[error("stale signature timestamp")]
    Stale,
    /// The signature does not match under the platform certificate's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The `resource` does not decrypt under the API v3 key (or was altered).
    #[error("resource does not decrypt with the API v3 key")]
    Undecryptable,
}

/// The merchant's private key (PKCS#8, PEM or bare base64), which signs requests.
pub use crate::rsa_keys::RsaSigner as MerchantKey;

/// What a `Wechatpay-Serial` header names: a platform certificate by its serial number,
/// or a WeChat Pay public key by its id (`PUB_KEY_ID_…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyName {
    /// A certificate serial, as a number: upper-case hex without leading zeros.
    Serial(String),
    /// A public key id, as WeChat Pay gives it.
    PublicKeyId(String),
}

impl KeyName {
    /// Reads a `Wechatpay-Serial` header (or a stored name): a public key id, or a serial
    /// in hex of any case with or without leading zeros (WeChat Pay's own SDKs write them
    /// both ways). `None` for anything else.
    pub fn parse(text: &str) -> Option<KeyName> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix(PUBLIC_KEY_ID_PREFIX) {
            let fine = !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
            return fine.then(|| KeyName::PublicKeyId(text.to_owned()));
        }
        if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let significant = text.trim_start_matches('0');
        Some(KeyName::Serial(if significant.is_empty() { "0".into() } else { significant.to_ascii_uppercase() }))
    }

    /// The name as shown and as looked up: the serial number or the public key id.
    pub fn as_str(&self) -> &str {
        match self {
            KeyName::Serial(s) | KeyName::PublicKeyId(s) => s,
        }
    }
}

/// How every WeChat Pay public key id begins.
pub const PUBLIC_KEY_ID_PREFIX: &str = "PUB_KEY_ID_";

/// A key WeChat Pay signs answers and notifications with: a platform certificate's or a
/// WeChat Pay public key, with the name `Wechatpay-Serial` gives it.
#[derive(Debug, Clone)]
pub struct VerificationKey {
    pub name: KeyName,
    key: VerifyingKey<Sha256>,
}

impl VerificationKey {
    /// Reads a PEM X.509 platform certificate with an RSA key.
    pub fn from_certificate_pem(pem: &str) -> Result<VerificationKey, WechatPayProtocolError> {
        let bad = |e: String| WechatPayProtocolError::Key(format!("platform certificate does not read ({e})"));
        let cert = x509_cert::Certificate::from_pem(pem.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
        // DER keeps a leading zero byte on serials whose high bit is set; WeChat Pay names
        // certificates by the number itself.
        let serial = hex::encode_upper(cert.tbs_certificate.serial_number.as_bytes());
        let name = KeyName::parse(&serial).ok_or_else(|| bad("no serial number".into()))?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| bad(e.to_string()))?;
        let key = PublicKey::from_public_key_der(&spki).map_err(|e| bad(format!("not an RSA key: {e}")))?;
        Ok(VerificationKey { name, key: VerifyingKey::new(key) })
    }

    /// Reads a WeChat Pay public key (PEM `PUBLIC KEY`, or bare base64 of its DER) with its
    /// id (`PUB_KEY_ID_…`).
    pub fn from_public_key_pem(id: &str, pem: &str) -> Result<VerificationKey, WechatPayProtocolError> {
        let bad = |e: String| WechatPayProtocolError::Key(format!("public_key does not read ({e})"));
        let name = match KeyName::parse(id) {
            Some(name @ KeyName::PublicKeyId(_)) => name,
            _ => return Err(WechatPayProtocolError::Key("public_key_id must be PUB_KEY_ID_ and its digits".into())),
        };
        let pem = pem.trim();
        let key = if pem.starts_with("-----") {
            PublicKey::from_public_key_pem(pem).map_err(|e| bad(e.to_string()))?
        } else {
            let der = BASE64.decode(pem.split_whitespace().collect::<String>()).map_err(|e| bad(e.to_string()))?;
            PublicKey::from_public_key_der(&der).map_err(|e| bad(e.to_string()))?
        };
        Ok(VerificationKey { name, key: VerifyingKey::new(key) })
    }

    /// Checks that `signature` (base64) is this key's
    /// `message`.
    pub fn verify_message(&self, message: &str, signature: &str) -> Result<(), WechatPayProtocolError> {
        let raw = BASE64.decode(signature.trim()).map_err(|_| WechatPayProtocolError::BadSignature)?;
        let signature = Signature::try_from(raw.as_slice()).map_err(|_| WechatPayProtocolError::BadSignature)?;
        self.key.verify(message.as_bytes(), &signature).map_err(|_| WechatPayProtocolError::BadSignature)
    }
}

/// One request as it is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The URL's path with its query (`/v3/pay/transactions/native`).
    pub path_and_query: &'a str,
    /// Unix seconds.
    pub timestamp: i64,
    /// A random string, new for each request.
    pub nonce: &'a str,
    /// The JSON body; empty for a `GET`.
    pub body: &'a str,
}

impl SignedRequest<'_> {
    /// The message a request is signed over: method, path with query, timestamp, nonce and
    /// body, each followed by a newline.
    pub fn message(&self) -> String {
        format!("{}\n{}\n{}\n{}\n{}\n", self.method, self.path_and_query, self.timestamp, self.nonce, self.body)
    }

    /// The `Authorization` header of this request from merchant `mch_id`, whose API
    /// certificate has serial `serial_no`.
    pub fn authorization(&self, key: &MerchantKey, mch_id: &str, serial_no: &str) -> String {
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{mch_id}\",nonce_str=\"{}\",signature=\"{}\",\
             timestamp=\"{}\",serial_no=\"{serial_no}\"",
            self.nonce,
            key.sign(&self.message()),
            self.timestamp
        )
    }
}

/// The signature headers of an answer or a notification.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    /// `Wechatpay-Serial`.
    pub serial: &'a str,
    /// `Wechatpay-Timestamp` (unix seconds).
    pub timestamp: &'a str,
    /// `Wechatpay-Nonce`.
    pub nonce: &'a str,
    /// `Wechatpay-Signature` (base64).
    pub signature: &'a str,
}

/// How far a signature's timestamp may be from now.
pub const FRESHNESS_S: i64 = 300;

/// Checks an answer's or a notification's signature: `timestamp\nnonce\nbody\n` under the
/// key `Wechatpay-Serial` names (a platform certificate or the WeChat Pay public key), with
/// a timestamp within [`FRESHNESS_S`] of `now`.
pub fn verify(
    keys: &[VerificationKey],
    headers: SignatureHeaders<'_>,
    body: &str,
    now_unix_s: i64,
) -> Result<(), WechatPayProtocolError> {
    let unknown = || WechatPayProtocolError::UnknownSerial(headers.serial.chars().take(64).collect());
    let name = KeyName::parse(headers.serial).ok_or_else(unknown)?;
    let cert = keys.iter().find(|k| k.name == name).ok_or_else(unknown)?;
    let at: i64 = headers.timestamp.trim().parse().map_err(|_| WechatPayProtocolError::Stale)?;
    if (now_unix_s - at).abs() > FRESHNESS_S {
        return Err(WechatPayProtocolError::Stale);
    }
    cert.verify_message(&format!("{}\n{}\n{body}\n", headers.timestamp, headers.nonce), headers.signature)
}

/// The signature the buyer's WeChat checks when the merchant's page or app asks it to pay
/// (`paySign` of JSAPI and mini programs over `appId\ntimeStamp\nnonceStr\npackage\n`,
/// `sign` of the app SDK over `appid\ntimestamp\nnoncestr\nprepayid\n`): SHA256withRSA
/// under the merchant's key, as the official SDKs' `PrepayWithRequestPayment` make it.
pub fn client_signature(key: &MerchantKey, lines: [&str; 4]) -> String {
    key.sign(&client_message(lines))
}

/// The message [`client_signature`] signs: each line followed by a newline.
pub fn client_message(lines: [&str; 4]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Decrypts a notification's `resource` (`AEAD_AES_256_GCM`): `ciphertext` is base64 of the
/// encrypted text followed by its 16-byte tag. The API v3 key is 32 bytes (a 16-byte key
/// selects AES-128, as the official SDKs do).
pub fn decrypt_resource(
    api_v3_key: &str,
    nonce: &str,
    associated_data: &str,
    ciphertext: &str,
) -> Result<Vec<u8>, WechatPayProtocolError> {
    let sealed = BASE64.decode(ciphertext.trim()).map_err(|_| WechatPayProtocolError::Undecryptable)?;
    let nonce: [u8; 12] = nonce.as_bytes().try_into().map_err(|_| WechatPayProtocolError::Undecryptable)?;
    let payload = Payload { msg: &sealed, aad: associated_data.as_bytes() };
    let nonce = Nonce::from(nonce);
    let opened = match api_v3_key.len() {
        32 => Aes256Gcm::new_from_slice(api_v3_key.as_bytes()).map(|c| c.decrypt(&nonce, payload)),
        16 => Aes128Gcm::new_from_slice(api_v3_key.as_bytes()).map(|c| c.decrypt(&nonce, payload)),
        _ => return Err(WechatPayProtocolError::Undecryptable),
    };
    match opened {
        Ok(Ok(plain)) => Ok(plain),
        _ => Err(WechatPayProtocolError::Undecryptable),
    }
}

/// `at_millis` as WeChat Pay writes times: RFC 3339 in China time, to the second
/// (`2026-11-30T18:00:00+08:00`).
pub fn rfc3339_china(at_millis: i64) -> String {
    let china = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(china);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    at.format(&format).unwrap_or_default()
}

/// A notification's envelope: what it is about, and its encrypted `resource`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Notification {
    pub id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, …
    pub event_type: String,
    pub resource: EncryptedResource,
}

/// A notification's encrypted content (`AEAD_AES_256_GCM`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: String,
    pub nonce: String,
}

impl EncryptedResource {
    /// The resource's plain text under the API v3 key.
    pub fn open(&self, api_v3_key: &str) -> Result<Vec<u8>, WechatPayProtocolError> {
        if self.algorithm != "AEAD_AES_256_GCM" {
            return Err(WechatPayProtocolError::Undecryptable);
        }
        decrypt_resource(api_v3_key, &self.nonce, &self.associated_data, &self.ciphertext)
    }
}

/// Seals `plain` as a notification's `ciphertext` (base64 of the encrypted text and its
/// tag) under a 32-byte API v3 key: what WeChat Pay does, for local gateways and tests.
pub fn encrypt_resource(
    api_v3_key: &str,
    nonce: &str,
    associated_data: &str,
    plain: &[u8],
) -> Result<String, WechatPayProtocolError> {
    let nonce: [u8; 12] = nonce.as_bytes().try_into().map_err(|_| WechatPayProtocolError::Undecryptable)?;
    let cipher = Aes256Gcm::new_from_slice(api_v3_key.as_bytes()).map_err(|_| WechatPayProtocolError::Undecryptable)?;
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad: associated_data.as_bytes() })
        .map_err(|_| WechatPayProtocolError::Undecryptable)?;
    Ok(BASE64.encode(sealed))
}

/// A self-signed X.509 certificate (PEM) for `key`'s public half, with serial `serial`
/// (bytes) valid for `valid_for` from now: a platform certificate for local gateways and
/// tests, which WeChat Pay's own certificates stand for in production.
pub fn self_signed_certificate(
    key: &MerchantKey,
    public_key_der: &[u8],
    serial: &[u8],
    common_name: &str,
    valid_for: std::time::Duration,
) -> Result<String, WechatPayProtocolError> {
    use std::str::FromStr;
    use x509_cert::der::asn1::{BitString, ObjectIdentifier};
    use x509_cert::der::{Decode, EncodePem};
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
    let bad = |e: String| WechatPayProtocolError::Key(format!("certificate not made ({e})"));
    let algorithm = AlgorithmIdentifierOwned { oid: SHA256_WITH_RSA, parameters: Some(x509_cert::der::Any::null()) };
    let name = x509_cert::name::Name::from_str(&format!("CN={common_name}")).map_err(|e| bad(e.to_string()))?;
    let tbs = x509_cert::TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: x509_cert::serial_number::SerialNumber::new(serial).map_err(|e| bad(e.to_string()))?,
        signature: algorithm.clone(),
        issuer: name.clone(),
        validity: x509_cert::time::Validity::from_now(valid_for).map_err(|e| bad(e.to_string()))?,
        subject: name,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(public_key_der).map_err(|e| bad(e.to_string()))?,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: None,
    };
    let signed = key.sign_bytes(&tbs.to_der().map_err(|e| bad(e.to_string()))?);
    let certificate = x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signed).map_err(|e| bad(e.to_string()))?,
    };
    certificate.to_pem(x509_cert::der::pem::LineEnding::LF).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
