use super::*;

/// The key and expected signature of the official Go SDK's test of SHA256withRSA
/// (wechatpay-apiv3/wechatpay-go, `utils/sign_test.go`), signing `"source"`.
const SDK_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDZUJN33V+dSfvd
fL0Mu+39XrZNXFFMQSy1V15FpncHeV47SmV0TzTqZc7hHB0ddqAdDi8Z5k3TKqb7
6sOwYr5TcAfuR6PIPaleyE0/0KrljBum2Isa2Nyq7Dgc3ElBQ6YN4l/a+DpvKaz1
FSKmKrhLNskqokWVSlu4g8OlKlbPXQ9ibII14MZRQrrkTmHYHzfi7GXXM0thAKuR
0HNvyhTHBh4/lrYM3GaMvmWwkwvsMavnOex6+eioZHBOb1/EIZ/LzC6zuHArPpyW
3daGaZ1rtQB1vVzTyERAVVFsXXgBHvfFud3w3ShsJYk8JvMwK2RpJ5/gV0QSARcm
LDRUAlPzAgMBAAECggEBAMc7rDeUaXiWv6bMGbZ3BTXpg1FhdddnWUnYE8HfX/km
OFI7XtBHXcgYFpcjYz4D5787pcsk7ezPidAj58zqenuclmjKnUmT3pfbI5eCA2v4
C9HnbYDrmUPK1ZcADtka4D6ScDccpNYNa1g2TFHzkIrEa6H+q7S3O2fqxY/DRVtN
0JIXalBb8daaqL5QVzSmM2BMVnHy+YITJWIkP2a3pKs9C0W65JGDsnG0wVrHinHF
+cnhFZIbaPEI//DAFMc9NkrWOKVRTEgcCUxCFaHOZVNxDWZD7A2ZfJB2rK6eg//y
gEiFDR2h6mTaDowMB4YF2n2dsIO4/dCG8vPHI20jn4ECgYEA/ZGu6lEMlO0XZnam
AZGtiNgLcCfM/C2ZERZE7QTRPZH1WdK92Al9ndldsswFw4baJrJLCmghjF/iG4zi
hhBvLnOLksnZUfjdumxoHDWXo2QBWbI5QsWIE7AuTiWgWj1I7X4fCXSQf6i+M/y2
6TogQ7d0ANpZFyOkTNMn/tiJvLECgYEA22XqlamG/yfAGWery5KNH2DGlTIyd6xJ
WtJ9j3jU99lZ0bCQ5xhiBbU9ImxCi3zgTsoqLWgA/p00HhNFNoUcTl9ofc0G3zwT
D1y0ZzcnVKxGJdZ6ohW52V0hJStAigtjYAsUgjm7//FH7PiQDBDP1Wa6xSRkDQU/
aSbQxvEE8+MCgYEA3bb8krW7opyM0XL9RHH0oqsFlVO30Oit5lrqebS0oHl3Zsr2
ZGgoBlWBsEzk3UqUhTFwm/DhJLTSJ/TQPRkxnhQ5/mewNhS9C7yua7wQkzVmWN+V
YeUGTvDGDF6qDz12/vJAgSwDDRym8x4NcXD5tTw7mmNRcwIfL22SkysThIECgYAV
BgccoEoXWS/HP2/u6fQr9ZIR6eV8Ij5FPbZacTG3LlS1Cz5XZra95UgebFFUHHtC
EY1JHJY7z8SWvTH8r3Su7eWNaIAoFBGffzqqSVazfm6aYZsOvRY6BfqPHT3p/H1h
Tq6AbBffxrcltgvXnCTORjHPglU0CjSxVs7awW3AEQKBgB5WtaC8VLROM7rkfVIq
+RXqE5vtJfa3e3N7W3RqxKp4zHFAPfr82FK5CX2bppEaxY7SEZVvVInKDc5gKdG/
jWNRBmvvftZhY59PILHO2X5vO4FXh7suEjy6VIh0gsnK36mmRboYIBGsNuDHjXLe
BDa+8mDLkWu5nHEhOxy2JJZl
-----END PRIVATE KEY-----";
const SDK_SIGNATURE: &str = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==";

// A certificate and its key made with OpenSSL for these tests only
// (`openssl req -x509 -newkey rsa:2048 …`); OpenSSL reports its serial as below.
const PLATFORM_CERT: &str = include_str!("../testdata/wechatpay-platform-cert.pem");
const PLATFORM_KEY: &str = include_str!("../testdata/wechatpay-platform-key.pem");
const PLATFORM_SERIAL: &str = "7BC466A5733CE16ECB4961AB6F7DFD5BB22651E5";

#[test]
fn requests_sign_as_the_official_sdk_signs() {
    let key = MerchantKey::from_pem(SDK_KEY).expect("the SDK's test key");
    assert_eq!(key.sign("source"), SDK_SIGNATURE);
    let request = SignedRequest {
        method: "GET",
        path_and_query: "/v3/certificates",
        timestamp: 1554208460,
        nonce: "593BEC0C930BF1AFEB40B4A08C8FB242",
        body: "",
    };
    let message = "GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n";
    assert_eq!(request.message(), message);
    let header = request.authorization(&key, "1900009191", "5157F09EFDC096DE15EBE81A47057A72");
    assert_eq!(
        header,
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",\
                 signature=\"{}\",timestamp=\"1554208460\",serial_no=\"5157F09EFDC096DE15EBE81A47057A72\"",
            key.sign(message)
        )
    );
}

#[test]
fn resources_decrypt_as_the_official_sdk_decrypts_them() {
    // wechatpay-go `utils/aes_test.go`: a 16-byte test key, hence AES-128-GCM there.
    let plain = decrypt_resource(
        "testAPIv3Key0000",
        "wCq51qZv4Yfg",
        "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
        "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
    );
    assert_eq!(plain, Ok(b"Hello World".to_vec()));
    for (key, nonce, ad, text) in [
        (
            "testAPIv3Key1111",
            "wCq51qZv4Yfg",
            "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8",
            "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC",
        ),
        ("testAPIv3Key0000", "wCq51qZv4Yfg", "other associated data", "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"),
        ("testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "SGVsbG8gV29ybGQK"),
        ("testAPIv3Key0000", "short", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"),
        ("not a aes key", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC"),
        ("testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "invalid cipher"),
    ] {
        assert_eq!(
            decrypt_resource(key, nonce, ad, text),
            Err(WechatPayProtocolError::Undecryptable),
            "{key} {ad} {text}"
        );
    }
}

#[test]
fn a_32_byte_api_v3_key_is_aes_256() {
    use aes_gcm::aead::Aead;
    let key = "0123456789abcdef0123456789abcdef";
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes()).expect("key");
    let sealed = cipher
        .encrypt(&Nonce::from(*b"nonce0123456"), Payload { msg: b"{\"trade_state\":\"SUCCESS\"}", aad: b"transaction" })
        .expect("sealed");
    let plain = decrypt_resource(key, "nonce0123456", "transaction", &BASE64.encode(sealed));
    assert_eq!(plain, Ok(b"{\"trade_state\":\"SUCCESS\"}".to_vec()));
}

#[test]
fn answers_verify_under_the_named_certificate_while_fresh() {
    let cert = VerificationKey::from_certificate_pem(PLATFORM_CERT).expect("certificate");
    assert_eq!(cert.name, KeyName::Serial(PLATFORM_SERIAL.into()));
    let signer = MerchantKey::from_pem(PLATFORM_KEY).expect("platform key");
    let body = r#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#;
    let signature = signer.sign(&format!("1700000000\nnonce-1\n{body}\n"));
    let headers =
        SignatureHeaders { serial: PLATFORM_SERIAL, timestamp: "1700000000", nonce: "nonce-1", signature: &signature };
    let certs = [cert];
    assert_eq!(verify(&certs, headers, body, 1_700_000_100), Ok(()));
    assert_eq!(
        verify(&certs, headers, &body.replace("p4l", "x4l"), 1_700_000_100),
        Err(WechatPayProtocolError::BadSignature)
    );
    assert_eq!(verify(&certs, headers, body, 1_700_000_000 + FRESHNESS_S + 1), Err(WechatPayProtocolError::Stale));
    let other = SignatureHeaders { serial: "0000", ..headers };
    assert!(matches!(verify(&certs, other, body, 1_700_000_100), Err(WechatPayProtocolError::UnknownSerial(_))));
    let garbage = SignatureHeaders { signature: "!!", ..headers };
    assert_eq!(verify(&certs, garbage, body, 1_700_000_100), Err(WechatPayProtocolError::BadSignature));
}

/// The platform certificate of the official Go SDK's verifier test
/// (wechatpay-go `core/auth/verifiers/sha256withrsa_verifier_test.go`), serial
/// `F5765756002FDD77`, whose key made [`SDK_SIGNATURE`] of `"source"`.
const SDK_PLATFORM_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIDVzCCAj+gAwIBAgIJAPV2V1YAL913MA0GCSqGSIb3DQEBCwUAMEIxCzAJBgNV
BAYTAlhYMRUwEwYDVQQHDAxEZWZhdWx0IENpdHkxHDAaBgNVBAoME0RlZmF1bHQg
Q29tcGFueSBMdGQwHhcNMjEwNDI3MDg0MDMyWhcNMzEwNDI1MDg0MDMyWjBCMQsw
CQYDVQQGEwJYWDEVMBMGA1UEBwwMRGVmYXVsdCBDaXR5MRwwGgYDVQQKDBNEZWZh
dWx0IENvbXBhbnkgTHRkMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA
2VCTd91fnUn73Xy9DLvt/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXag
HQ4vGeZN0yqm++rDsGK+U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOm
DeJf2vg6byms9RUipiq4SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B83
4uxl1zNLYQCrkdBzb8oUxwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGf
y8wus7hwKz6clt3Whmmda7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtk
aSef4FdEEgEXJiw0VAJT8wIDAQABo1AwTjAdBgNVHQ4EFgQUT1c7nd/SUO76HSoZ
umNUJv1R5PwwHwYDVR0jBBgwFoAUT1c7nd/SUO76HSoZumNUJv1R5PwwDAYDVR0T
BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAM+tslqBxYwqL9fdvGG6hfy69sjfX
UhBtBLWYugKKQCOWWLeq5dDWm3i5Cx2Rgiy9uc7RfmJNxQfIKlcoCNP85BjDoG1B
YnVc6znlcrT9uHgseha3987WwZsFAQbcy8TLUYHzVB8gmDgq8O08xdIe0eczatI8
t3Rg8WXO6Gs66JJ4JR+rD01o3FiSOQCRWhn19NSyDydsgPlOR2t9B9L+MkJwlsMG
Krn85TnwL3qcInzRnU8X86faXXJrI0IJi44tECKw8ftngCl6vyNwNNKPDwdkcuuV
8y3iBixO5IuKxEKEp2wGPV/4W1AXO73Z3Gb7z/1oxdgeO0hVqz1hBasTCQ==
-----END CERTIFICATE-----";

#[test]
fn signatures_verify_under_a_platform_certificate_as_the_official_sdk_verifies_them() {
    let cert = VerificationKey::from_certificate_pem(SDK_PLATFORM_CERT).expect("the SDK's test certificate");
    assert_eq!(cert.name.as_str(), "F5765756002FDD77");
    assert_eq!(cert.verify_message("source", SDK_SIGNATURE), Ok(()));
    assert_eq!(cert.verify_message("wrong source", SDK_SIGNATURE), Err(WechatPayProtocolError::BadSignature));
}

/// A fresh key and a self-signed certificate of it with serial `serial`.
fn fresh_certificate(serial: &[u8]) -> (MerchantKey, String) {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = <rsa::PrivateKey as rsa::Generate>::generate();
    let public_der = rsa::PublicKey::from(&key).to_public_key_der().expect("public key").into_vec();
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("private key");
    let signer = MerchantKey::from_pem(&pem).expect("signer");
    let duration = std::time::Duration::from_secs(3600);
    let cert = self_signed_certificate(&signer, &public_der, serial, "payq test platform", duration).expect("cert");
    (signer, cert)
}

#[test]
fn self_signed_certificates_read_back_with_their_serial_and_key() {
    let (signer, cert_pem) = fresh_certificate(&[0x3A, 0x01, 0xFF]);
    let cert = VerificationKey::from_certificate_pem(&cert_pem).expect("reads back");
    assert_eq!(cert.name.as_str(), "3A01FF");
    let signature = signer.sign("1\nn\n{}\n");
    let headers = SignatureHeaders { serial: "3a01ff", timestamp: "1", nonce: "n", signature: &signature };
    assert_eq!(verify(&[cert], headers, "{}", 1), Ok(()));
}

#[test]
fn serials_are_numbers_whatever_their_case_and_leading_zeros() {
    // The Java SDK writes `BigInteger.toString(16)` (no leading zero), the Go SDK the
    // bytes in hex (with it); both name the same certificate.
    for (a, b) in [("0A01FF", "a01ff"), ("00F5765756002FDD77", "F5765756002FDD77"), ("0", "0000")] {
        assert_eq!(KeyName::parse(a), KeyName::parse(b), "{a} {b}");
    }
    assert_eq!(KeyName::parse("0a01ff"), Some(KeyName::Serial("A01FF".into())));
    assert_ne!(KeyName::parse("A01FF"), KeyName::parse("A01FF0"));
    let id = "PUB_KEY_ID_0111022734482025121100291855003000";
    assert_eq!(KeyName::parse(id), Some(KeyName::PublicKeyId(id.into())));
    for bad in ["", "xyz", "PUB_KEY_ID_", "PUB_KEY_ID_12 34", "pub_key_id_123", &"F".repeat(65)] {
        assert_eq!(KeyName::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn a_certificate_whose_serial_starts_with_a_zero_digit_answers_to_either_form() {
    let (signer, cert_pem) = fresh_certificate(&[0x0A, 0x01]);
    let keys = [VerificationKey::from_certificate_pem(&cert_pem).expect("reads back")];
    let signature = signer.sign("1\nn\n{}\n");
    for serial in ["A01", "0A01", "0a01", "000A01"] {
        let headers = SignatureHeaders { serial, timestamp: "1", nonce: "n", signature: &signature };
        assert_eq!(verify(&keys, headers, "{}", 1), Ok(()), "{serial}");
    }
}

/// The Go SDK's test certificate's key, as a WeChat Pay public key would be given.
fn sdk_public_key_pem() -> String {
    use rsa::pkcs8::EncodePublicKey;
    let cert = x509_cert::Certificate::from_pem(SDK_PLATFORM_CERT.as_bytes()).expect("certificate");
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().expect("spki");
    let key = PublicKey::from_public_key_der(&spki).expect("rsa");
    key.to_public_key_pem(rsa::pkcs8::LineEnding::LF).expect("pem")
}

#[test]
fn signatures_verify_under_a_wechatpay_public_key_named_by_its_id() {
    let id = "PUB_KEY_ID_0112345678902026120400000000000001";
    let key = VerificationKey::from_public_key_pem(id, &sdk_public_key_pem()).expect("public key");
    assert_eq!(key.verify_message("source", SDK_SIGNATURE), Ok(()));
    // Bare base64 of the key reads too (the merchant platform shows it that way).
    let bare: String = sdk_public_key_pem().lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(VerificationKey::from_public_key_pem(id, &bare).is_ok());
    assert!(VerificationKey::from_public_key_pem("F5765756002FDD77", &bare).is_err(), "an id, not a serial");
    assert!(VerificationKey::from_public_key_pem(id, PLATFORM_CERT).is_err(), "a certificate is not a key");

    // A merchant in switch-over keeps both; each signature is checked with the key its
    // header names, and a key of the other name does not stand in.
    let signer = MerchantKey::from_pem(PLATFORM_KEY).expect("platform key");
    let keys = [VerificationKey::from_certificate_pem(PLATFORM_CERT).expect("certificate"), key];
    let body = "{}";
    let by_certificate = signer.sign(&format!("1700000000\nn\n{body}\n"));
    let headers =
        SignatureHeaders { serial: PLATFORM_SERIAL, timestamp: "1700000000", nonce: "n", signature: &by_certificate };
    assert_eq!(verify(&keys, headers, body, 1_700_000_000), Ok(()));
    let misnamed = SignatureHeaders { serial: id, ..headers };
    assert_eq!(verify(&keys, misnamed, body, 1_700_000_000), Err(WechatPayProtocolError::BadSignature));
    let unknown = SignatureHeaders { serial: "PUB_KEY_ID_0199999999992026120400000000000001", ..headers };
    assert!(matches!(verify(&keys, unknown, body, 1_700_000_000), Err(WechatPayProtocolError::UnknownSerial(_))));
}

#[test]
fn the_buyers_side_is_signed_as_the_official_sdk_signs_it() {
    // wechatpay-go `services/payments/jsapi` PrepayWithRequestPayment: appId, timeStamp,
    // nonceStr and package, each followed by a newline, signed with the merchant's key
    // (the app's `sign` the same over appid, timestamp, noncestr and prepayid).
    let lines = ["wx8888888888888888", "1414561699", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "prepay_id=wx2014102720"];
    assert_eq!(
        client_message(lines),
        "wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx2014102720\n"
    );
    let key = MerchantKey::from_pem(SDK_KEY).expect("the SDK's test key");
    let signature = client_signature(&key, lines);
    let cert = VerificationKey::from_certificate_pem(SDK_PLATFORM_CERT).expect("the SDK's key pair's certificate");
    assert_eq!(cert.verify_message(&client_message(lines), &signature), Ok(()));
}

#[test]
fn sealed_resources_open_and_times_are_china_time() {
    let key = "0123456789abcdef0123456789abcdef";
    let sealed = encrypt_resource(key, "nonce0123456", "transaction", b"{}").expect("sealed");
    let resource = EncryptedResource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: sealed,
        associated_data: "transaction".into(),
        nonce: "nonce0123456".into(),
    };
    assert_eq!(resource.open(key), Ok(b"{}".to_vec()));
    assert_eq!(resource.open("0123456789abcdef0123456789abcdeX"), Err(WechatPayProtocolError::Undecryptable));
    let other = EncryptedResource { algorithm: "SM4".into(), ..resource };
    assert_eq!(other.open(key), Err(WechatPayProtocolError::Undecryptable));
    // 2026-11-30T10:00:00Z
    assert_eq!(rfc3339_china(1_796_032_800_000), "2026-11-30T18:00:00+08:00");
}

#[test]
fn keys_and_certificates_of_the_wrong_kind_are_named() {
    assert!(VerificationKey::from_certificate_pem(PLATFORM_KEY).is_err());
    let e = MerchantKey::from_pem(PLATFORM_CERT).expect_err("a certificate cannot sign");
    assert!(e.to_string().contains("private_key"), "{e}");
}
