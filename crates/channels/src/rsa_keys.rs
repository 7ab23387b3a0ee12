//! RSA keys as payment channels use them: SHA256withRSA (PKCS#1 v1.5) signatures made
//! with a PKCS#8 private key, read from PEM (any line length) or from its bare base64, as
//! the providers' tools hand keys out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::PrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};

/// A key that does not read, with why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct KeyError(pub String);

/// A private key that signs with SHA256withRSA.
#[derive(Clone)]
pub struct RsaSigner(SigningKey<Sha256>);

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(..)")
    }
}

impl RsaSigner {
    /// Reads a PKCS#8 private key: PEM, or its base64 alone.
    pub fn from_pem(text: &str) -> Result<RsaSigner, KeyError> {
        let bad = |e: String| KeyError(format!("private_key is not a PKCS#8 PEM RSA private key ({e})"));
        let der = der_of(text).ok_or_else(|| bad("neither PEM nor base64".into()))?;
        let key = PrivateKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
        Ok(RsaSigner(SigningKey::new(key)))
    }

    /// The signature of `message`, base64.
    pub fn sign(&self, message: &str) -> String {
        BASE64.encode(self.sign_bytes(message.as_bytes()))
    }

    /// The raw signature of `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_vec()
    }
}

/// The DER inside a PEM block (whatever its line length) or a bare base64 key.
pub fn der_of(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    BASE64.decode(body).ok().filter(|d| !d.is_empty())
}

/// A fresh 2048-bit RSA key pair as PEM: the PKCS#8 private key and the public key
/// (SubjectPublicKeyInfo), for local gateways and tests.
pub fn pem_pair() -> anyhow::Result<(String, String)> {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = <rsa::PrivateKey as rsa::Generate>::generate();
    let private = key.to_pkcs8_pem(LineEnding::LF)?.to_string();
    let public = rsa::PublicKey::from(&key).to_public_key_pem(LineEnding::LF)?;
    Ok((private, public))
}
