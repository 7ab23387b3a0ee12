//! A local WeChat Pay API v3 gateway on 127.0.0.1, for tests and `payq demo`: it checks
//! each request's `WECHATPAY2-SHA256-RSA2048` signature against the merchant's public key,
//! signs its answers with a platform certificate it issues itself, keeps transactions and
//! refunds in memory, and plays the buyer: [`WechatPaySandbox::buyer_pays`] marks a
//! transaction paid and posts WeChat Pay's encrypted, signed notification to the
//! `notify_url` the Native pay named. Keys, certificate and API v3 key are made at start.
//! It is a counterpart to check payq against, never a stand-in for WeChat Pay in
//! production.

mod api;
mod notify;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use payq_channels::rsa_keys::{der_of, pem_pair};
use payq_channels::wechatpay::protocol::{self as protocol, MerchantKey, SignedRequest};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One transaction at the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxTransaction {
    /// `NOTPAY`, `SUCCESS`, `REFUND` or `CLOSED`.
    pub trade_state: String,
    /// In fen.
    pub amount: i64,
    pub notify_url: String,
    /// Fen refunded, by `out_refund_no`.
    pub refunds: HashMap<String, i64>,
    /// Calls made for this transaction, by operation (`native`, `query`, `close`,
    /// `refund`).
    pub calls: HashMap<String, u32>,
    /// The create call's `time_expire` (RFC 3339).
    pub time_expire: String,
    /// `NATIVE`, `JSAPI` (mini programs too), `MWEB` (H5) or `APP`.
    pub trade_type: String,
    /// The app paid in (the merchant's app id, or its mini program's for a mini program).
    pub appid: String,
    /// The buyer's openid (JSAPI) and IP address (H5), as the create call gave them.
    pub openid: String,
    pub client_ip: String,
    /// When the trade was created, unix milliseconds.
    pub created_ms: i64,
}

/// The app id of the mini program the sandbox's merchant has.
pub const MINI_PROGRAM_APP_ID: &str = "wxmini00000000001";

/// How a notification the sandbox posts is spoiled, to check that payq refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// As WeChat Pay sends it.
    Genuine,
    /// Signed with a key that is not the platform certificate's.
    SignedWithAnotherKey,
    /// `resource` sealed with another API v3 key.
    EncryptedWithAnotherKey,
    /// Signed ten minutes ago (a replay).
    Stale,
}

/// What the merchant a sandbox plays verifies WeChat Pay with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKeys {
    /// Platform certificates only (a merchant set up before 2024).
    Certificate,
    /// A WeChat Pay public key only (`PUB_KEY_ID_…`; a merchant set up since 2024).
    PublicKey,
    /// Both, during the switch-over: notifications come signed with either at random.
    Both,
}

/// A refund WeChat Pay accepted and has not finished.
#[derive(Debug, Clone)]
struct ProcessingRefund {
    out_trade_no: String,
    amount: i64,
    total: i64,
}

#[derive(Default)]
struct Books {
    transactions: HashMap<String, SandboxTransaction>,
    /// Answer refunds `PROCESSING` (until [`WechatPaySandbox::finish_refund`]) instead of
    /// `SUCCESS`.
    refunds_processing: bool,
    /// Refunds answered `PROCESSING`, by `out_refund_no`.
    processing: HashMap<String, ProcessingRefund>,
    /// How long after its creation a trade may be closed, in milliseconds (WeChat Pay: 5
    /// minutes; the sandbox: none unless set).
    close_after: i64,
    /// Refunds that ended `ABNORMAL` or `CLOSED`, by `out_refund_no`.
    refused: HashMap<String, (ProcessingRefund, String)>,
    /// Accept calls and never answer (a gateway that hangs).
    hang: bool,
    /// Carry out every call at once but answer only after this long (a slow gateway).
    delay: Option<std::time::Duration>,
}

struct Inner {
    mch_id: String,
    app_id: String,
    /// The merchant's API certificate serial, which requests must name.
    serial_no: String,
    /// Verifies the merchant's requests.
    merchant_public_key: VerifyingKey<Sha256>,
    /// Sign answers and notifications, each with the name `Wechatpay-Serial` gives it: the
    /// platform certificate's key (by its serial, written without leading zeros as the Java
    /// SDK writes it), the WeChat Pay public key (by its id), or both, certificate first.
    signing_keys: Vec<(String, MerchantKey)>,
    /// Notifications sent so far.
    notifications: std::sync::atomic::AtomicUsize,
    api_v3_key: String,
    /// Where the sandbox listens (its H5 pages are there).
    base_url: String,
    books: Mutex<Books>,
    /// The money that moved, for the day's bills.
    bills: Mutex<crate::bills::BillBook>,
}

/// A running sandbox gateway.
#[derive(Clone)]
pub struct WechatPaySandbox {
    /// The API base URL (`http://127.0.0.1:<port>`).
    pub base_url: String,
    pub mch_id: String,
    pub app_id: String,
    /// The merchant's API certificate serial.
    pub serial_no: String,
    /// The merchant's private key (PKCS#8 PEM), made for this run.
    pub merchant_private_key_pem: String,
    pub api_v3_key: String,
    /// The platform certificate (PEM) the sandbox signs with, made for this run (unless
    /// it plays a merchant with a public key only).
    pub platform_certificate_pem: String,
    /// The WeChat Pay public key's id and PEM, made for this run (unless it plays a
    /// merchant with platform certificates only).
    pub public_key: Option<(String, String)>,
    /// What the merchant it plays verifies WeChat Pay with.
    pub keys: SandboxKeys,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

impl WechatPaySandbox {
    /// Starts a gateway on a free port of 127.0.0.1 with fresh keys, a fresh platform
    /// certificate and a fresh API v3 key: a merchant set up before 2024.
    pub async fn start() -> anyhow::Result<WechatPaySandbox> {
        WechatPaySandbox::start_with(SandboxKeys::Certificate).await
    }

    /// Starts a gateway that signs as `keys` says, with fresh keys for each.
    pub async fn start_with(keys: SandboxKeys) -> anyhow::Result<WechatPaySandbox> {
        let (merchant_private, merchant_public) = pem_pair()?;
        let (platform_private, platform_public) = pem_pair()?;
        let platform_key = MerchantKey::from_pem(&platform_private)?;
        let platform_der = der_of(&platform_public).ok_or_else(|| anyhow::anyhow!("platform key"))?;
        // At most 20 octets and positive (RFC 5280). The first hex digit is a zero, so
        // payq meets the serial written with and without it (the SDKs differ there).
        let mut serial: [u8; 20] = rand::random();
        serial[0] = (serial[0] & 0x0f) | 0x01;
        let certificate = protocol::self_signed_certificate(
            &platform_key,
            &platform_der,
            &serial,
            "WeChat Pay sandbox platform (payq)",
            std::time::Duration::from_secs(365 * 86_400),
        )?;
        let platform_serial = hex::encode_upper(serial).trim_start_matches('0').to_owned();
        let public_key = match keys {
            SandboxKeys::Certificate => None,
            SandboxKeys::PublicKey | SandboxKeys::Both => {
                let (private, public) = pem_pair()?;
                // As WeChat Pay makes them: `01`, the merchant id, a date and 14 digits.
                let id = format!("PUB_KEY_ID_011900000109{}{:014}", "20261204", rand::random::<u64>() % 10u64.pow(14));
                Some((id, MerchantKey::from_pem(&private)?, public))
            }
        };
        let mut signing_keys = Vec::new();
        if keys != SandboxKeys::PublicKey {
            signing_keys.push((platform_serial, platform_key));
        }
        if let Some((id, key, _)) = &public_key {
            signing_keys.push((id.clone(), key.clone()));
        }
        let inner = Inner {
            mch_id: "1900000109".into(),
            app_id: "wxd678efh567hg6787".into(),
            serial_no: payq_domain::crypto::random_hex(20).to_ascii_uppercase(),
            merchant_public_key: VerifyingKey::new(rsa::PublicKey::from_public_key_pem(&merchant_public)?),
            signing_keys,
            notifications: std::sync::atomic::AtomicUsize::new(0),
            api_v3_key: payq_domain::crypto::random_hex(16),
            base_url: String::new(),
            books: Mutex::default(),
            bills: Mutex::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner { base_url: format!("http://{addr}"), ..inner });
        let app = axum::Router::new().fallback(api::api).with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WechatPaySandbox {
            base_url: format!("http://{addr}"),
            mch_id: inner.mch_id.clone(),
            app_id: inner.app_id.clone(),
            serial_no: inner.serial_no.clone(),
            merchant_private_key_pem: merchant_private,
            api_v3_key: inner.api_v3_key.clone(),
            platform_certificate_pem: certificate,
            public_key: public_key.map(|(id, _, pem)| (id, pem)),
            keys,
            inner,
            http: payq_channels::http_client().timeout(std::time::Duration::from_secs(10)).build()?,
        })
    }

    /// The `channels.wechatpay` object that sets a merchant up with this sandbox: its
    /// platform certificate, its public key, or both, as `keys` says.
    pub fn credentials(&self) -> Value {
        let mut c = json!({
            "mch_id": self.mch_id,
            "app_id": self.app_id,
            "serial_no": self.serial_no,
            "private_key": self.merchant_private_key_pem,
            "api_v3_key": self.api_v3_key,
            "mini_program_app_id": MINI_PROGRAM_APP_ID,
            "base_url": self.base_url,
        });
        if self.keys != SandboxKeys::PublicKey {
            c["platform_certificates"] = json!([self.platform_certificate_pem]);
        }
        if let Some((id, pem)) = &self.public_key {
            c["public_key_id"] = json!(id);
            c["public_key"] = json!(pem);
        }
        c
    }

    /// The serial number of the sandbox's platform certificate, as `Wechatpay-Serial`
    /// gives it (without leading zeros).
    pub fn platform_serial(&self) -> String {
        hex_serial_of(&self.platform_certificate_pem)
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        lock(&self.inner)
    }

    /// The transaction with this `out_trade_no`, if the sandbox has one.
    pub fn transaction(&self, out_trade_no: &str) -> Option<SandboxTransaction> {
        self.books().transactions.get(out_trade_no).cloned()
    }

    /// Makes the gateway hang (accept and never answer) or answer again.
    pub fn set_hang(&self, hang: bool) {
        self.books().hang = hang;
    }

    /// Whether `signature` is the merchant's signature of the buyer's side of a payment
    /// (`lines` as [`protocol::client_message`] joins them): what the buyer's WeChat checks
    /// before it pays.
    pub fn merchant_signed(&self, lines: [&str; 4], signature: &str) -> bool {
        use base64::Engine;
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return false;
        };
        Signature::try_from(raw.as_slice()).is_ok_and(|s| {
            self.inner.merchant_public_key.verify(protocol::client_message(lines).as_bytes(), &s).is_ok()
        })
    }

    /// Refuses to close a trade younger than `age` (`403 RULE_LIMIT`), as WeChat Pay does
    /// within 5 minutes of a trade's creation.
    pub fn set_close_after(&self, age: std::time::Duration) {
        self.books().close_after = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    }

    /// The calls payq made about a transaction, by operation (`create`, `query`, `close`,
    /// `refund`).
    pub fn calls(&self, out_trade_no: &str, operation: &str) -> u32 {
        self.transaction(out_trade_no).and_then(|t| t.calls.get(operation).copied()).unwrap_or(0)
    }

    /// Makes refunds answer `PROCESSING` and stay so until [`WechatPaySandbox::finish_refund`]
    /// (`false`: they succeed at once again).
    pub fn set_refunds_processing(&self, processing: bool) {
        self.books().refunds_processing = processing;
    }

    /// Whether refund `out_refund_no` is waiting to finish.
    pub fn refund_processing(&self, out_refund_no: &str) -> bool {
        self.books().processing.contains_key(out_refund_no)
    }

    /// Finishes a refund that is `PROCESSING` with `status` (`SUCCESS`, `ABNORMAL` or
    /// `CLOSED`); WeChat Pay's refund notification goes to payq when `notify`. Answers
    /// payq's reply to it, or `None` when nothing was sent.
    pub async fn finish_refund(
        &self,
        out_refund_no: &str,
        status: &str,
        notify: bool,
    ) -> anyhow::Result<Option<(u16, String)>> {
        let (refund, url) = {
            let mut books = self.books();
            let refund = books
                .processing
                .remove(out_refund_no)
                .ok_or_else(|| anyhow::anyhow!("no refund {out_refund_no} processing"))?;
            let t =
                books.transactions.get_mut(&refund.out_trade_no).ok_or_else(|| anyhow::anyhow!("no transaction"))?;
            let url = t.notify_url.clone();
            if status == "SUCCESS" {
                let refund_id = format!("5030{}", out_refund_no.trim_start_matches("ref_"));
                bills(&self.inner).refunded(&refund.out_trade_no, out_refund_no, &refund_id, refund.amount);
                t.refunds.insert(out_refund_no.to_owned(), refund.amount);
                t.trade_state = "REFUND".into();
            } else {
                books.refused.insert(out_refund_no.to_owned(), (refund.clone(), status.to_owned()));
            }
            (refund, url)
        };
        if !notify {
            return Ok(None);
        }
        let resource =
            self.refund_notification(&refund.out_trade_no, out_refund_no, refund.amount, refund.total, status);
        self.notify(&url, &resource, Forgery::Genuine).await.map(Some)
    }

    /// Makes the gateway slow: it carries out each call at once and answers after `delay`
    /// (`None`: at once again).
    pub fn set_delay(&self, delay: Option<std::time::Duration>) {
        self.books().delay = delay;
    }

    /// The buyer pays without WeChat Pay notifying anyone (a lost notification): only a
    /// query finds out.
    pub fn buyer_pays_silently(&self, out_trade_no: &str) -> bool {
        let amount = match self.books().transactions.get_mut(out_trade_no) {
            Some(t) if t.trade_state == "NOTPAY" => {
                t.trade_state = "SUCCESS".into();
                t.amount
            }
            _ => return false,
        };
        self.bill_book().paid(out_trade_no, &transaction_id(out_trade_no), amount);
        true
    }

    /// The buyer's payment goes through although the transaction was closed (a race with
    /// the close), and WeChat Pay notifies no one: only the day's bill shows it.
    pub fn buyer_pays_after_close_silently(&self, out_trade_no: &str) -> bool {
        let amount = match self.books().transactions.get_mut(out_trade_no) {
            Some(t) if t.trade_state == "CLOSED" => {
                t.trade_state = "SUCCESS".into();
                t.amount
            }
            _ => return false,
        };
        self.bill_book().paid(out_trade_no, &transaction_id(out_trade_no), amount);
        true
    }

    /// The money that moved at this gateway, for its bills (and for tests to spoil them).
    pub fn bill_book(&self) -> MutexGuard<'_, crate::bills::BillBook> {
        bills(&self.inner)
    }

    /// The buyer pays (also after payq closed the transaction: a late payment) and WeChat
    /// Pay posts its notification; answers payq's reply (status, body).
    pub async fn buyer_pays(&self, out_trade_no: &str) -> anyhow::Result<(u16, String)> {
        let (amount, url) = {
            let mut books = self.books();
            let t = books
                .transactions
                .get_mut(out_trade_no)
                .ok_or_else(|| anyhow::anyhow!("no transaction {out_trade_no}"))?;
            if !matches!(t.trade_state.as_str(), "SUCCESS" | "REFUND") {
                bills(&self.inner).paid(out_trade_no, &transaction_id(out_trade_no), t.amount);
            }
            t.trade_state = "SUCCESS".into();
            (t.amount, t.notify_url.clone())
        };
        self.notify(&url, &self.notification(out_trade_no, amount, "SUCCESS"), Forgery::Genuine).await
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Books> {
    inner.books.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// WeChat Pay's own reference for a transaction.
fn transaction_id(out_trade_no: &str) -> String {
    format!("4200{}", out_trade_no.trim_start_matches("pay_"))
}

fn transaction_json(inner: &Inner, out_trade_no: &str, amount: i64, trade_state: &str) -> Value {
    let mut t = json!({
        "appid": inner.app_id,
        "mchid": inner.mch_id,
        "out_trade_no": out_trade_no,
        "trade_type": "NATIVE",
        "trade_state": trade_state,
        "trade_state_desc": trade_state,
        "amount": { "total": amount, "currency": "CNY", "payer_total": amount, "payer_currency": "CNY" },
    });
    if matches!(trade_state, "SUCCESS" | "REFUND") {
        t["transaction_id"] = json!(transaction_id(out_trade_no));
        t["success_time"] = json!(protocol::rfc3339_china(payq_domain::Timestamp::now().millis()));
    }
    t
}

fn bills(inner: &Inner) -> MutexGuard<'_, crate::bills::BillBook> {
    inner.bills.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A certificate's serial as `Wechatpay-Serial` names it (upper-case hex, no leading zeros).
fn hex_serial_of(pem: &str) -> String {
    protocol::VerificationKey::from_certificate_pem(pem).map(|k| k.name.as_str().to_owned()).unwrap_or_default()
}
