//! payq's channel clients against the local gateways (`payq_gateways`), which check each
//! request's signature with the merchant's key and sign their answers with their own:
//! the calls, the answers believed and the answers refused, for both real channels.

mod alipay {
    use payq_app::usecases::AlipayCredentials;
    use payq_channels::alipay::client::*;
    use payq_channels::{ChannelError, ChannelStatus, RefundOutcome};
    use payq_gateways::alipay::AlipaySandbox;
    use std::time::Duration;

    async fn start() -> (AlipayAccount, AlipaySandbox) {
        let sandbox = AlipaySandbox::start().await.expect("sandbox");
        let credentials: AlipayCredentials = serde_json::from_value(sandbox.credentials()).expect("credentials");
        (credentials.account().expect("account"), sandbox)
    }

    fn client() -> AlipayClient {
        AlipayClient::new(Duration::from_secs(5)).expect("client")
    }

    fn pay(no: &str) -> Precreate<'_> {
        Precreate {
            out_trade_no: no,
            amount: 8888,
            subject: "order",
            notify_url: "http://127.0.0.1/notify",
            expires_at_ms: payq_domain::Timestamp::now().millis() + 900_000,
        }
    }

    #[tokio::test]
    async fn a_payment_goes_from_qr_code_to_paid_and_is_refunded_once_per_request_no() {
        let (account, sandbox) = start().await;
        let c = client();
        let qr = c.precreate(&account, &pay("pay_1")).await.expect("qr");
        assert!(qr.starts_with("https://qr.alipay.com/"), "{qr}");
        // Not scanned yet: Alipay has no trade.
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), ChannelStatus::NotFound);
        assert!(sandbox.buyer_scans("pay_1"));
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), ChannelStatus::Pending);
        assert_eq!(c.query(&account, "pay_unknown").await.expect("query"), ChannelStatus::NotFound);
        assert!(sandbox.buyer_pays_silently("pay_1"));
        let paid = ChannelStatus::Succeeded { txn_id: "20261".into() };
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), paid);
        // Paid: closing it says so instead of closing.
        assert_eq!(c.close(&account, "pay_1").await.expect("close"), paid);
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("refund"), RefundOutcome::Succeeded);
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("same refund"), RefundOutcome::Succeeded);
        assert!(matches!(
            c.refund(&account, "pay_1", "ref_2", 5000).await.expect("too much"),
            RefundOutcome::Refused { .. }
        ));
        assert_eq!(sandbox.trade("pay_1").map(|t| t.refunds.values().sum::<i64>()), Some(5000));
    }

    #[tokio::test]
    async fn an_unpaid_payment_closes_and_one_never_scanned_is_not_found() {
        let (account, sandbox) = start().await;
        let c = client();
        c.precreate(&account, &pay("pay_2")).await.expect("qr");
        assert!(sandbox.buyer_scans("pay_2"));
        assert_eq!(c.close(&account, "pay_2").await.expect("close"), ChannelStatus::Closed);
        assert_eq!(c.query(&account, "pay_2").await.expect("query"), ChannelStatus::Closed);
        // Never scanned: Alipay answers ACQ.TRADE_NOT_EXIST, and the buyer cannot pay after.
        c.precreate(&account, &pay("pay_4")).await.expect("qr");
        assert_eq!(c.close(&account, "pay_4").await.expect("close"), ChannelStatus::NotFound);
        assert!(!sandbox.buyer_pays_silently("pay_4"), "closed for good");
        assert_eq!(c.close(&account, "pay_never").await.expect("close"), ChannelStatus::NotFound);
    }

    #[tokio::test]
    async fn unknown_results_are_unavailable_never_an_outcome() {
        let (account, sandbox) = start().await;
        let c = client();
        c.precreate(&account, &pay("pay_3")).await.expect("qr");
        // Answers that do not verify under the merchant's Alipay public key: someone else's
        // answers, never believed.
        let (other, _) = start().await;
        let mut forged = account.clone();
        forged.alipay_public_key = other.alipay_public_key.clone();
        assert!(matches!(c.query(&forged, "pay_3").await, Err(ChannelError::Unavailable(_))), "forged answer");
        sandbox.set_failure(Some(502));
        assert!(matches!(c.query(&account, "pay_3").await, Err(ChannelError::Unavailable(_))), "HTTP 502");
        sandbox.set_failure(None);
        let mut nowhere = account.clone();
        nowhere.gateway_url = "http://127.0.0.1:9/gateway.do".into();
        assert!(matches!(c.precreate(&nowhere, &pay("pay_4")).await, Err(ChannelError::Unavailable(_))));
        // A wrong application key: the gateway refuses the signature, a definite answer.
        let mut wrong_key = account.clone();
        wrong_key.app_key = other.app_key.clone();
        assert!(matches!(c.precreate(&wrong_key, &pay("pay_5")).await, Err(ChannelError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_gateway_that_hangs_is_unavailable_after_the_timeout() {
        let (account, sandbox) = start().await;
        sandbox.set_hang(true);
        let c = AlipayClient::new(Duration::from_millis(300)).expect("client");
        let started = std::time::Instant::now();
        assert!(matches!(c.query(&account, "pay_6").await, Err(ChannelError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

mod wechatpay {
    use payq_app::usecases::WechatPayCredentials;
    use payq_channels::wechatpay::client::*;
    use payq_channels::{ChannelError, ChannelStatus, RefundOutcome};
    use payq_gateways::wechatpay::WechatPaySandbox;
    use std::time::Duration;

    async fn start() -> (WechatPayAccount, WechatPaySandbox) {
        let sandbox = WechatPaySandbox::start().await.expect("sandbox");
        let credentials: WechatPayCredentials = serde_json::from_value(sandbox.credentials()).expect("credentials");
        (credentials.account().expect("account"), sandbox)
    }

    fn client() -> WechatPayClient {
        WechatPayClient::new(Duration::from_secs(5)).expect("client")
    }

    fn pay(no: &str) -> NativePay<'_> {
        NativePay {
            out_trade_no: no,
            amount: 8888,
            description: "order",
            notify_url: "http://127.0.0.1/notify",
            expires_at_ms: payq_domain::Timestamp::now().millis() + 900_000,
        }
    }

    #[tokio::test]
    async fn a_payment_goes_from_code_url_to_paid_and_is_refunded_once_per_refund_no() {
        let (account, sandbox) = start().await;
        let c = client();
        let url = c.native(&account, &pay("pay_1")).await.expect("code_url");
        assert!(url.starts_with("weixin://wxpay/bizpayurl?pr="), "{url}");
        assert_eq!(c.native(&account, &pay("pay_1")).await.expect("the same payment"), url);
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), ChannelStatus::Pending);
        assert_eq!(c.query(&account, "pay_unknown").await.expect("query"), ChannelStatus::NotFound);
        assert!(sandbox.buyer_pays_silently("pay_1"));
        let paid = ChannelStatus::Succeeded { txn_id: "42001".into() };
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), paid);
        // Paid: closing it says so instead of closing.
        assert_eq!(c.close(&account, "pay_1").await.expect("close"), paid);
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("refund"), RefundOutcome::Succeeded);
        assert_eq!(c.refund(&account, "pay_1", "ref_1", 5000).await.expect("same refund"), RefundOutcome::Succeeded);
        assert!(matches!(
            c.refund(&account, "pay_1", "ref_2", 5000).await.expect("too much"),
            RefundOutcome::Refused { .. }
        ));
        let t = sandbox.transaction("pay_1").expect("transaction");
        assert_eq!(t.refunds.values().sum::<i64>(), 5000);
        assert_eq!(t.calls.get("refund"), Some(&2), "the repeated refund was looked up, not made again");
        // Refunded in part: still paid.
        assert_eq!(c.query(&account, "pay_1").await.expect("query"), paid);
    }

    #[tokio::test]
    async fn an_unpaid_payment_closes_and_one_never_made_is_not_found() {
        let (account, _sandbox) = start().await;
        let c = client();
        c.native(&account, &pay("pay_2")).await.expect("code_url");
        assert_eq!(c.close(&account, "pay_2").await.expect("close"), ChannelStatus::Closed);
        assert_eq!(c.query(&account, "pay_2").await.expect("query"), ChannelStatus::Closed);
        assert_eq!(c.close(&account, "pay_never").await.expect("close"), ChannelStatus::NotFound);
        assert!(matches!(
            c.refund(&account, "pay_never", "ref_3", 1).await.expect("refused"),
            RefundOutcome::Refused { .. }
        ));
    }

    #[tokio::test]
    async fn unknown_results_are_unavailable_never_an_outcome() {
        let (account, sandbox) = start().await;
        let c = client();
        c.native(&account, &pay("pay_3")).await.expect("code_url");
        // Answers that do not verify under the merchant's platform certificates: someone
        // else's answers, never believed.
        let (other, _) = start().await;
        let mut forged = account.clone();
        forged.verification_keys = other.verification_keys.clone();
        assert!(matches!(c.query(&forged, "pay_3").await, Err(ChannelError::Unavailable(_))), "forged answer");
        assert!(matches!(c.close(&forged, "pay_3").await, Err(ChannelError::Unavailable(_))), "forged close");
        assert!(matches!(c.refund(&forged, "pay_3", "ref_4", 1).await, Err(ChannelError::Unavailable(_))));
        // The close itself went through; only its answer could not be believed, and the
        // query schedule finds the truth.
        assert_eq!(sandbox.transaction("pay_3").map(|t| t.trade_state), Some("CLOSED".into()));
        let mut nowhere = account.clone();
        nowhere.base_url = "http://127.0.0.1:9".into();
        assert!(matches!(c.native(&nowhere, &pay("pay_4")).await, Err(ChannelError::Unavailable(_))));
        assert!(matches!(c.query(&nowhere, "pay_3").await, Err(ChannelError::Unavailable(_))));
        // A wrong merchant key: the gateway refuses the signature, a definite answer to a
        // payment request, and no answer at all about a payment's state.
        let mut wrong_key = account.clone();
        wrong_key.merchant_key = other.merchant_key.clone();
        assert!(matches!(c.native(&wrong_key, &pay("pay_5")).await, Err(ChannelError::Invalid(_))));
        assert!(matches!(c.query(&wrong_key, "pay_3").await, Err(ChannelError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_gateway_that_hangs_is_unavailable_after_the_timeout() {
        let (account, sandbox) = start().await;
        sandbox.set_hang(true);
        let c = WechatPayClient::new(Duration::from_millis(300)).expect("client");
        let started = std::time::Instant::now();
        assert!(matches!(c.native(&account, &pay("pay_6")).await, Err(ChannelError::Unavailable(_))));
        assert!(matches!(c.query(&account, "pay_6").await, Err(ChannelError::Unavailable(_))));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
