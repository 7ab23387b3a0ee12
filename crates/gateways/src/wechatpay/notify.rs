//! The local WeChat Pay gateway's notifications: a transaction's or a refund's state,
//! encrypted under the merchant's API v3 key and signed with the platform key as WeChat Pay
//! sends them, or spoiled on purpose ([`Forgery`]).

use super::*;

impl WechatPaySandbox {
    /// The transaction a notification carries (before encryption).
    pub fn notification(&self, out_trade_no: &str, amount: i64, trade_state: &str) -> Value {
        transaction_json(&self.inner, out_trade_no, amount, trade_state)
    }

    /// The resource of WeChat Pay's refund notification, unsealed.
    pub fn refund_notification(
        &self,
        out_trade_no: &str,
        out_refund_no: &str,
        amount: i64,
        total: i64,
        status: &str,
    ) -> Value {
        json!({
            "mchid": self.mch_id,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id(out_trade_no),
            "out_refund_no": out_refund_no,
            "refund_id": format!("5030{}", out_refund_no.trim_start_matches("ref_")),
            "refund_status": status,
            "success_time": protocol::rfc3339_china(payq_domain::Timestamp::now().millis()),
            "user_received_account": "招商银行信用卡0403",
            "amount": { "total": total, "refund": amount, "payer_total": total, "payer_refund": amount },
        })
    }

    /// Posts `transaction` to `url` as WeChat Pay does: sealed in `resource` under the API
    /// v3 key and signed under the platform certificate, or spoiled as `forgery` says;
    /// answers payq's reply (status, body).
    pub async fn notify(&self, url: &str, transaction: &Value, forgery: Forgery) -> anyhow::Result<(u16, String)> {
        let other_key = payq_domain::crypto::random_hex(16);
        let api_v3_key = if forgery == Forgery::EncryptedWithAnotherKey { &other_key } else { &self.api_v3_key };
        let nonce = payq_domain::crypto::random_hex(6);
        // A transaction's notification, or a refund's (its resource has `refund_status`).
        let (kind, event_type, summary) =
            match (transaction["refund_status"].as_str(), transaction["trade_state"] == "SUCCESS") {
                (Some(status), _) => ("refund", format!("REFUND.{status}"), "退款状态变更"),
                (None, true) => ("transaction", "TRANSACTION.SUCCESS".to_owned(), "支付成功"),
                (None, false) => ("transaction", "TRANSACTION.CLOSED".to_owned(), "交易关闭"),
            };
        let ciphertext = protocol::encrypt_resource(api_v3_key, &nonce, kind, transaction.to_string().as_bytes())?;
        let envelope = json!({
            "id": format!("EV-{}", payq_domain::crypto::random_hex(8)),
            "create_time": protocol::rfc3339_china(payq_domain::Timestamp::now().millis()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": kind,
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "associated_data": kind,
                "nonce": nonce,
            },
        })
        .to_string();
        let now = payq_domain::Timestamp::now().unix_seconds();
        let at = if forgery == Forgery::Stale { now - 600 } else { now };
        // In a switch-over WeChat Pay signs notifications with either key; the sandbox
        // takes them in turn, so that a test meets both.
        let turn = self.inner.notifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (name, key) = self.inner.signing_keys[turn % self.inner.signing_keys.len()].clone();
        let signer = match forgery {
            Forgery::SignedWithAnotherKey => MerchantKey::from_pem(&self.merchant_private_key_pem)?,
            _ => key,
        };
        let sign_nonce = payq_domain::crypto::random_hex(16);
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("wechatpay-serial", &name)
            .header("wechatpay-timestamp", at.to_string())
            .header("wechatpay-nonce", &sign_nonce)
            .header("wechatpay-signature", signer.sign(&format!("{at}\n{sign_nonce}\n{envelope}\n")))
            .header("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048")
            .body(envelope)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }
}
