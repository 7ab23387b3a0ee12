//! The Alipay open-platform protocol, without any I/O: RSA2 signatures (SHA256withRSA,
//! PKCS#1 v1.5) over the sorted `key=value` string of a request's or a notification's
//! parameters, the public request parameters, verification of a gateway response's `sign`
//! over the exact text of its response node, and amounts as yuan strings.
//!
//! How the pieces are used is in docs/channels.md; the adapter that calls the gateway
//! builds on these functions.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::PublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use std::collections::BTreeMap;

/// Why Alipay material could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlipayProtocolError {
    /// A key is not a PEM RSA key of the expected kind (the message says which).
    #[error("{0}")]
    Key(String),
    /// A response is not the JSON the gateway sends.
    #[error("malformed gateway response: {0}")]
    Malformed(String),
    /// The signature does not match the content under Alipay's public key.
    #[error("signature does not verify")]
    BadSignature,
    /// An amount that yuan with two decimals cannot express exactly.
    #[error("not an amount in yuan with at most two decimals: {0:?}")]
    Amount(String),
}

/// The application's private key (PKCS#8, PEM or bare base64), which signs requests.
pub use crate::rsa_keys::RsaSigner as AppKey;

impl From<crate::rsa_keys::KeyError> for AlipayProtocolError {
    fn from(e: crate::rsa_keys::KeyError) -> Self {
        AlipayProtocolError::Key(e.0)
    }
}

/// Alipay's public key (PEM, `-----BEGIN PUBLIC KEY-----`), which verifies responses and
/// notifications.
#[derive(Debug, Clone)]
pub struct AlipayPublicKey(VerifyingKey<Sha256>);

impl AlipayPublicKey {
    /// Reads a public key (SubjectPublicKeyInfo): PEM, or its base64 alone as Alipay's
    /// console shows it.
    pub fn from_pem(pem: &str) -> Result<AlipayPublicKey, AlipayProtocolError> {
        let bad = |e: String| AlipayProtocolError::Key(format!("alipay_public_key is not a PEM RSA public key ({e})"));
        let der = crate::rsa_keys::der_of(pem).ok_or_else(|| bad("neither PEM nor base64".into()))?;
        let key = PublicKey::from_public_key_der(&der).map_err(|e| bad(e.to_string()))?;
        Ok(AlipayPublicKey(VerifyingKey::new(key)))
    }

    /// Whether `sign` (base64) is Alipay's RSA2 signature of `content`.
    pub fn verify(&self, content: &str, sign: &str) -> Result<(), AlipayProtocolError> {
        let raw = BASE64.decode(sign.trim()).map_err(|_| AlipayProtocolError::BadSignature)?;
        let signature = Signature::try_from(raw.as_slice()).map_err(|_| AlipayProtocolError::BadSignature)?;
        self.0.verify(content.as_bytes(), &signature).map_err(|_| AlipayProtocolError::BadSignature)
    }
}

/// The string a request or a notification is signed over: its parameters sorted by name,
/// as `name=value` joined by `&`, raw (not URL-encoded), leaving out `sign`, parameters
/// named in `leave_out` and empty values.
pub fn signing_string<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, leave_out: &[&str]) -> String {
    let sorted: BTreeMap<&str, &str> =
        params.into_iter().filter(|(k, v)| *k != "sign" && !leave_out.contains(k) && !v.is_empty()).collect();
    let mut out = String::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Where Alipay calls back and sends the buyer back, as public parameters of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Callbacks<'a> {
    /// `notify_url`: where Alipay posts its notification.
    pub notify_url: Option<&'a str>,
    /// `return_url`: where Alipay's page sends the buyer when done (page and wap pay).
    pub return_url: Option<&'a str>,
}

/// The public parameters of one gateway call, signed: `app_id`, `method`, `format`,
/// `charset`, `sign_type=RSA2`, `timestamp` (`yyyy-MM-dd HH:mm:ss`, China time as the
/// gateway expects), `version=1.0`, `notify_url` and `return_url` when given,
/// `biz_content`, and `sign`.
pub fn signed_request(
    key: &AppKey,
    app_id: &str,
    method: &str,
    biz_content: &str,
    callbacks: Callbacks<'_>,
    timestamp: &str,
) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = [
        ("app_id", app_id),
        ("method", method),
        ("format", "JSON"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", timestamp),
        ("version", "1.0"),
        ("biz_content", biz_content),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(url) = callbacks.notify_url {
        params.insert("notify_url".into(), url.to_owned());
    }
    if let Some(url) = callbacks.return_url {
        params.insert("return_url".into(), url.to_owned());
    }
    let content = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
    params.insert("sign".into(), key.sign(&content));
    params
}

/// The gateway's timestamp format for `at` (milliseconds since the epoch), in China
/// Standard Time (UTC+8), the zone the gateway reads it in.
pub fn gateway_timestamp(at_millis: i64) -> String {
    let china = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(china);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.format(&format).unwrap_or_default()
}

/// The response node of a gateway answer, checked against Alipay's signature: the answer
/// is `{"<method with _ for .>_response": {...}, "sign": "..."}` and the signature covers the
/// node's exact text as sent.
pub fn verified_response(
    body: &str,
    method: &str,
    key: &AlipayPublicKey,
) -> Result<serde_json::Value, AlipayProtocolError> {
    let envelope: BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(body).map_err(|e| AlipayProtocolError::Malformed(e.to_string()))?;
    let node_name = format!("{}_response", method.replace('.', "_"));
    let node = envelope
        .get(&node_name)
        .ok_or_else(|| AlipayProtocolError::Malformed(format!("no {node_name} in the answer")))?;
    let sign: Option<String> = match envelope.get("sign") {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| AlipayProtocolError::Malformed(e.to_string()))?,
        None => None,
    };
    let value: serde_json::Value =
        serde_json::from_str(node.get()).map_err(|e| AlipayProtocolError::Malformed(e.to_string()))?;
    match sign {
        Some(sign) => key.verify(node.get(), &sign)?,
        // The gateway leaves unsigned only the answers to requests it could not read at
        // all (a bad app id or signature): those are errors, never a payment's state.
        None if value.get("code").and_then(|c| c.as_str()) != Some("10000") => {}
        None => return Err(AlipayProtocolError::BadSignature),
    }
    Ok(value)
}

/// Checks a notification's form parameters against Alipay's signature (over every
/// parameter except `sign` and `sign_type`).
pub fn verify_notification(params: &[(String, String)], key: &AlipayPublicKey) -> Result<(), AlipayProtocolError> {
    let sign = params.iter().find(|(k, _)| k == "sign").map(|(_, v)| v.as_str()).unwrap_or_default();
    let content = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &["sign_type"]);
    key.verify(&content, sign)
}

/// Minor units (fen) as the yuan string Alipay expects: `1999` → `"19.99"`.
pub fn yuan(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A yuan string as minor units, exactly: `"19.99"` → `1999`, `"20"` → `2000`; more than
/// two decimals, signs, exponents or overflow are refused.
pub fn minor_units(yuan: &str) -> Result<i64, AlipayProtocolError> {
    let bad = || AlipayProtocolError::Amount(yuan.chars().take(32).collect());
    let (whole, fraction) = yuan.split_once('.').unwrap_or((yuan, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (yuan.contains('.') && !digits(fraction)) || fraction.len() > 2 {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    whole.checked_mul(100).and_then(|w| w.checked_add(cents)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 2048-bit key made for these tests only, and a signature OpenSSL made with it
    // (`openssl dgst -sha256 -sign alipay-app-key.pem content.txt | base64 -w0`): an
    // independent implementation of SHA256withRSA, checked against ours both ways.
    const TEST_KEY: &str = include_str!("../testdata/alipay-app-key.pem");
    const TEST_PUBLIC_KEY: &str = include_str!("../testdata/alipay-app-pub.pem");
    const CONTENT: &str = include_str!("../testdata/content.txt");
    const OPENSSL_SIGNATURE: &str = include_str!("../testdata/content.sig");

    #[test]
    fn signatures_match_openssl_byte_for_byte_and_verify_both_ways() {
        let key = AppKey::from_pem(TEST_KEY).expect("test key");
        let public = AlipayPublicKey::from_pem(TEST_PUBLIC_KEY).expect("test public key");
        assert_eq!(key.sign(CONTENT), OPENSSL_SIGNATURE.trim());
        assert_eq!(public.verify(CONTENT, OPENSSL_SIGNATURE), Ok(()));
        assert_eq!(
            public.verify(&CONTENT.replace("88.88", "88.89"), OPENSSL_SIGNATURE),
            Err(AlipayProtocolError::BadSignature)
        );
        assert_eq!(public.verify(CONTENT, "not base64!"), Err(AlipayProtocolError::BadSignature));
    }

    #[test]
    fn the_signed_request_signs_its_sorted_parameters() {
        // The content OpenSSL signed is the documented form of this request's parameters.
        let key = AppKey::from_pem(TEST_KEY).expect("test key");
        let biz = r#"{"out_trade_no":"pay_01","total_amount":"88.88","subject":"Iphone6 16G"}"#;
        let params = signed_request(
            &key,
            "2021000000000001",
            "alipay.trade.precreate",
            biz,
            Callbacks { notify_url: Some("https://shop.example/v1/channels/alipay/notify"), return_url: None },
            "2026-11-30 18:00:00",
        );
        assert_eq!(params.get("sign").map(String::as_str), Some(OPENSSL_SIGNATURE.trim()));
        assert_eq!(params.get("sign_type").map(String::as_str), Some("RSA2"));
        assert_eq!(params.get("format").map(String::as_str), Some("JSON"));
    }

    #[test]
    fn signing_strings_sort_and_skip_sign_empty_values_and_named_parameters() {
        let params = [("b", "2"), ("sign", "x"), ("a", "1"), ("empty", ""), ("sign_type", "RSA2")];
        assert_eq!(signing_string(params, &[]), "a=1&b=2&sign_type=RSA2");
        assert_eq!(signing_string(params, &["sign_type"]), "a=1&b=2");
    }

    #[test]
    fn notifications_verify_without_sign_and_sign_type() {
        let key = AppKey::from_pem(TEST_KEY).expect("test key");
        let public = AlipayPublicKey::from_pem(TEST_PUBLIC_KEY).expect("test public key");
        let mut params: Vec<(String, String)> = [
            ("app_id", "2021000000000001"),
            ("out_trade_no", "pay_01"),
            ("total_amount", "88.88"),
            ("trade_status", "TRADE_SUCCESS"),
            ("trade_no", "2026113022001400001"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let content = signing_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &[]);
        params.push(("sign".into(), key.sign(&content)));
        params.push(("sign_type".into(), "RSA2".into()));
        assert_eq!(verify_notification(&params, &public), Ok(()));
        params[2].1 = "0.01".into();
        assert_eq!(verify_notification(&params, &public), Err(AlipayProtocolError::BadSignature));
    }

    /// A real notification Alipay sent and signed, with the public key it verifies under,
    /// from the tests of Alipay's official Node.js SDK (alipay-sdk-nodejs-all,
    /// `test/alipay.test.ts`, "checkNotifySign … verify sign should delete sign_type").
    #[test]
    fn a_notification_alipay_signed_verifies_as_alipay_sdk_verifies_it() {
        let der = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqObrdC7hrgAVM98tK0nv3hSQRGGKT4lBsQjHiGjeYZjOPIPHR5knm2jnnz/YGIXIofVHkA/tAlBAd5DrY7YpvI4tP5EONLtZKC2ghBMx7McI2wRD0xiqzxOQr1FuhZGJ8/AUokBzJrzY+aGX2xcOrxFYRlFilvVLTXg4LWjR1tdPkO6+i7wQZAIVMClPkwVRZEbaERRHlKqTzv2gGv5rDU8gRoe1LeaN+6BlbTqHWkQcNCUNrA8C6l17XAXGKDsm/9TFWwO8EPHHHCaQdjtV5/FdcWIt+L8SR1ss7EXTjYDFtxcKVv9rEoY1lX8T4mX+GbXfZHraG5NCF1+XioL5JwIDAQAB";
        // As the SDK's test has it: the base64 alone, and in a PEM block of one long line.
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{der}\n-----END PUBLIC KEY-----\n");
        assert!(AlipayPublicKey::from_pem(&pem).is_ok());
        let alipay = AlipayPublicKey::from_pem(der).expect("Alipay's notification key");
        let mut params: Vec<(String, String)> = [
            ("gmt_create", "2019-08-15 15:56:22"),
            ("charset", "utf-8"),
            ("seller_email", "z97-yuquerevenue@service.aliyun.com"),
            ("subject", "语雀空间 500人规模"),
            ("sign", "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4ELNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0YjCh4x7wVSov+lrmOQ=="),
            ("buyer_id", "2088102534368455"),
            ("invoice_amount", "0.10"),
            ("notify_id", "2019081500222155624068450559358070"),
            ("fund_bill_list", r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#),
            ("notify_type", "trade_status_sync"),
            ("trade_status", "TRADE_SUCCESS"),
            ("receipt_amount", "0.10"),
            ("buyer_pay_amount", "0.10"),
            ("sign_type", "RSA2"),
            ("app_id", "2019073166072302"),
            ("seller_id", "2088531891668739"),
            ("gmt_payment", "2019-08-15 15:56:24"),
            ("notify_time", "2019-08-15 15:56:25"),
            ("version", "1.0"),
            ("out_trade_no", "20190815155618536-564-57"),
            ("total_amount", "0.10"),
            ("trade_no", "2019081522001468450512505578"),
            ("auth_app_id", "2019073166072302"),
            ("buyer_logon_id", "xud***@126.com"),
            ("point_amount", "0.00"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(verify_notification(&params, &alipay), Ok(()));
        assert_eq!(minor_units("0.10"), Ok(10));
        // One changed value, and it no longer verifies.
        if let Some(amount) = params.iter_mut().find(|(k, _)| k == "total_amount") {
            amount.1 = "0.11".into();
        }
        assert_eq!(verify_notification(&params, &alipay), Err(AlipayProtocolError::BadSignature));
    }

    #[test]
    fn responses_verify_over_the_exact_node_text() {
        let key = AppKey::from_pem(TEST_KEY).expect("test key");
        let public = AlipayPublicKey::from_pem(TEST_PUBLIC_KEY).expect("test public key");
        let node =
            r#"{"code":"10000","msg":"Success","out_trade_no":"pay_01","qr_code":"https://qr.alipay.com/bax01"}"#;
        let body = format!(r#"{{"alipay_trade_precreate_response":{node},"sign":"{}"}}"#, key.sign(node));
        let value = verified_response(&body, "alipay.trade.precreate", &public).expect("verified");
        assert_eq!(value["qr_code"], "https://qr.alipay.com/bax01");
        let forged = body.replace("bax01", "bax02");
        assert_eq!(
            verified_response(&forged, "alipay.trade.precreate", &public),
            Err(AlipayProtocolError::BadSignature)
        );
        let unsigned_success = format!(r#"{{"alipay_trade_precreate_response":{node}}}"#);
        assert_eq!(
            verified_response(&unsigned_success, "alipay.trade.precreate", &public),
            Err(AlipayProtocolError::BadSignature)
        );
        let unsigned_error = r#"{"alipay_trade_precreate_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}}"#;
        let value = verified_response(unsigned_error, "alipay.trade.precreate", &public).expect("an error answer");
        assert_eq!(value["code"], "40002");
        assert!(matches!(
            verified_response("{", "alipay.trade.precreate", &public),
            Err(AlipayProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn amounts_convert_exactly() {
        assert_eq!(yuan(1999), "19.99");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(200_000), "2000.00");
        assert_eq!(minor_units("19.99"), Ok(1999));
        assert_eq!(minor_units("0.05"), Ok(5));
        assert_eq!(minor_units("20"), Ok(2000));
        assert_eq!(minor_units("20.5"), Ok(2050));
        for bad in ["", ".5", "1.", "1.234", "-1.00", "1e3", "+1", "92233720368547758.08", "1,00"] {
            assert!(minor_units(bad).is_err(), "{bad:?} accepted");
        }
        for minor in [0, 1, 99, 100, 123_456_789] {
            assert_eq!(minor_units(&yuan(minor)), Ok(minor));
        }
    }

    #[test]
    fn timestamps_are_china_time() {
        // 2026-11-30T10:00:00Z is 18:00 in Beijing.
        assert_eq!(gateway_timestamp(1_796_032_800_000), "2026-11-30 18:00:00");
    }

    #[test]
    fn keys_of_the_wrong_kind_are_named_in_the_error() {
        let e = AppKey::from_pem(TEST_PUBLIC_KEY).expect_err("a public key cannot sign");
        assert!(e.to_string().contains("private_key"), "{e}");
        let e = AlipayPublicKey::from_pem("not a key").expect_err("garbage");
        assert!(e.to_string().contains("alipay_public_key"), "{e}");
    }
}
