//! Secrets and signatures: random tokens, API-key hashing, constant-time comparison and
//! the `t=<unix>,v1=<hex hmac>` signature scheme used by webhooks and channel callbacks.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// `bytes` random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

/// SHA-256 of `data` as hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    // Digests of equal length, compared in constant time: neither the position of the
    // first difference nor the secret's length shows in the timing.
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// A merchant API key: `sk_<key id>_<secret>`. The key id finds the merchant; the whole
/// key is stored only as a hash.
pub struct ApiKey {
    /// The full key, shown to the merchant once.
    pub key: String,
    /// The lookup part.
    pub key_id: String,
    /// SHA-256 of the full key.
    pub hash: String,
}

impl ApiKey {
    /// A fresh key with 256 random bits of secret.
    pub fn generate() -> ApiKey {
        let key_id = random_hex(8);
        let key = format!("sk_{key_id}_{}", random_hex(32));
        let hash = sha256_hex(key.as_bytes());
        ApiKey { key, key_id, hash }
    }

    /// The key id of a presented key, if it has the right shape.
    pub fn key_id_of(presented: &str) -> Option<&str> {
        let rest = presented.strip_prefix("sk_")?;
        let (id, secret) = rest.split_once('_')?;
        (id.len() == 16 && secret.len() == 64).then_some(id)
    }
}

/// `hex(HMAC-SHA256(secret, "<t>.<body>"))`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value `t=<t>,v1=<signature>`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    signature_header_for_all(&[secret], t, body)
}

/// The header value `t=<t>,v1=<signature>,v1=<signature>…` with one signature per secret
/// (the current one first): during a secret's rotation a receiver that knows either secret
/// finds a `v1` it can check.
pub fn signature_header_for_all(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&sign(secret, t, body));
    }
    header
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is missing or malformed")]
    Malformed,
    #[error("signature timestamp is more than {0} seconds away from now")]
    Stale(i64),
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a `t=…,v1=…` header against `body`, refusing timestamps more than `tolerance_s`
/// seconds from `now_s`.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = t.filter(|_| !signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    // abs_diff cannot overflow, whatever `t` a caller sends (t = now - 2^63 included).
    if now_s.abs_diff(t) > tolerance_s.unsigned_abs() {
        return Err(SignatureError::Stale(tolerance_s));
    }
    let expected = sign(secret, t, body);
    if !signatures.iter().any(|v1| constant_time_eq(&expected, v1)) {
        return Err(SignatureError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_a_lookup_part_and_a_hash() {
        let k = ApiKey::generate();
        assert_eq!(ApiKey::key_id_of(&k.key), Some(k.key_id.as_str()));
        assert_eq!(sha256_hex(k.key.as_bytes()), k.hash);
        assert_eq!(ApiKey::key_id_of("sk_short_x"), None);
    }

    #[test]
    fn signatures_verify_and_refuse() {
        let h = signature_header("s3cret", 1_000, b"{}");
        assert_eq!(verify_signature("s3cret", &h, b"{}", 1_010, 300), Ok(()));
        assert_eq!(verify_signature("other", &h, b"{}", 1_010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature("s3cret", &h, b"{ }", 1_010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature("s3cret", &h, b"{}", 2_000, 300), Err(SignatureError::Stale(300)));
        assert_eq!(verify_signature("s3cret", "garbage", b"{}", 1_000, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn a_header_signed_with_two_secrets_verifies_with_either() {
        let h = signature_header_for_all(&["new", "old"], 1_000, b"{}");
        assert_eq!(h.matches(",v1=").count(), 2);
        assert_eq!(verify_signature("new", &h, b"{}", 1_000, 300), Ok(()));
        assert_eq!(verify_signature("old", &h, b"{}", 1_000, 300), Ok(()));
        assert_eq!(verify_signature("third", &h, b"{}", 1_000, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn a_timestamp_far_in_the_past_or_future_is_stale_not_an_overflow() {
        let now = 1_800_000_000i64;
        for t in [i64::MIN, now.wrapping_sub(1 << 62), i64::MAX, -1] {
            let h = signature_header("s3cret", t, b"{}");
            assert_eq!(verify_signature("s3cret", &h, b"{}", now, 300), Err(SignatureError::Stale(300)), "t={t}");
        }
    }

    #[test]
    fn equal_strings_compare_equal_whatever_their_length() {
        assert!(constant_time_eq("admin-token-0123456789", "admin-token-0123456789"));
        assert!(!constant_time_eq("admin-token-0123456789", "admin-token-012345678"));
        assert!(!constant_time_eq("", "x"));
    }

    proptest::proptest! {
        #[test]
        fn signature_headers_never_panic(header in ".{0,80}", now in proptest::num::i64::ANY) {
            let _ = verify_signature("s3cret", &header, b"{}", now, 300);
        }
    }
}
