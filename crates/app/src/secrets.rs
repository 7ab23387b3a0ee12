//! Secrets sealed at rest: channel credentials (private keys, API keys) are stored only
//! encrypted with AES-256-GCM under the key `PAYQ_SECRETS_KEY` (32 bytes as 64 hex
//! characters), so a copy of the database alone does not reveal them. Each sealed value
//! carries its own random nonce and is authenticated: a value altered or sealed under
//! another key does not open. See docs/security.md.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;

/// The marker and format version in front of every sealed value.
const SEALED_PREFIX: &str = "v1.";
/// Bytes of an AES-GCM nonce.
const NONCE_LEN: usize = 12;

/// Why a key or a sealed value could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("PAYQ_SECRETS_KEY must be 32 bytes written as 64 hexadecimal characters (e.g. `openssl rand -hex 32`)")]
    BadKey,
    #[error("a sealed secret does not open with PAYQ_SECRETS_KEY (another key sealed it, or it was altered)")]
    Unopenable,
}

/// The key that seals and opens secrets.
#[derive(Clone)]
pub struct SecretsKey(Aes256Gcm);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Reads the key from its 64 hexadecimal characters.
    pub fn from_hex(hex_key: &str) -> Result<SecretsKey, SecretsError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretsError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| SecretsError::BadKey)?;
        Ok(SecretsKey(cipher))
    }

    /// Seals `plain`: `v1.` and the base64 of a fresh nonce followed by the ciphertext.
    pub fn seal(&self, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption fails only for inputs beyond AES-GCM's limit (64 GiB).
        let sealed = self.0.encrypt(&Nonce::from(nonce), plain).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", BASE64.encode(out))
    }

    /// Opens a value [`SecretsKey::seal`] made under this key.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or(SecretsError::Unopenable)?;
        let raw = BASE64.decode(encoded).map_err(|_| SecretsError::Unopenable)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretsError::Unopenable);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::Unopenable)?;
        self.0.decrypt(&Nonce::from(nonce), ciphertext).map_err(|_| SecretsError::Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_values_open_only_under_their_key_and_unaltered() {
        let key = SecretsKey::from_hex(KEY).expect("key");
        let sealed = key.seal(b"-----BEGIN PRIVATE KEY-----");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("PRIVATE"), "the plain text shows through: {sealed}");
        assert_eq!(key.open(&sealed).expect("opens"), b"-----BEGIN PRIVATE KEY-----");
        // A fresh nonce each time: the same secret never seals to the same text.
        assert_ne!(key.seal(b"same"), key.seal(b"same"));
        let other = SecretsKey::from_hex(&"ab".repeat(32)).expect("other key");
        assert_eq!(other.open(&sealed), Err(SecretsError::Unopenable));
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.open(&String::from_utf8(altered).expect("text")), Err(SecretsError::Unopenable));
        for junk in ["", "v1.", "v1.!!!", "v2.AAAA", "v1.AAAA"] {
            assert_eq!(key.open(junk), Err(SecretsError::Unopenable), "{junk:?}");
        }
    }

    #[test]
    fn keys_are_64_hex_characters() {
        for bad in ["", "00", &"0".repeat(63), &"zz".repeat(32), &"00".repeat(33)] {
            assert_eq!(SecretsKey::from_hex(bad).err(), Some(SecretsError::BadKey), "{bad:?}");
        }
        assert!(format!("{:?}", SecretsKey::from_hex(KEY).expect("key")).contains(".."));
    }
}
