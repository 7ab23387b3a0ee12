//! `sim`: a built-in payment channel that behaves like a real one. It records payments in
//! its own ledger, then calls payq back over real HTTP (`POST /v1/channels/sim/notify`),
//! signed, after `callback_delay`. `simulate.outcome` picks what happens:
//!
//! - `succeeded` (default): paid, one callback;
//! - `failed`: declined, one callback;
//! - `no_callback`: paid, but no callback: payq must find out by querying;
//! - `duplicate_callbacks`: paid, the same callback three times;
//! - `late`: paid only after the order's expiry and after payq closed the payment (closing
//!   it does not stop it).

use crate::{ChannelError, ChannelStatus, PaymentChannel, PaymentRequest, RefundOutcome, Started};
use backon::{ExponentialBuilder, Retryable};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use payq_domain::crypto;
use payq_domain::{HumanDuration, PaymentId, RefundId, Timestamp};
use payq_store::{SimStatus, SimTxn, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The header carrying the callback signature.
pub const SIGNATURE_HEADER: &str = "sim-signature";

/// How the simulated payment should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SimOutcome {
    #[default]
    Succeeded,
    Failed,
    NoCallback,
    DuplicateCallbacks,
    Late,
}

impl SimOutcome {
    fn parse(s: &str) -> SimOutcome {
        [Self::Succeeded, Self::Failed, Self::NoCallback, Self::DuplicateCallbacks, Self::Late]
            .into_iter()
            .find(|o| o.as_str() == s)
            .unwrap_or_default()
    }

    fn as_str(self) -> &'static str {
        match self {
            SimOutcome::Succeeded => "succeeded",
            SimOutcome::Failed => "failed",
            SimOutcome::NoCallback => "no_callback",
            SimOutcome::DuplicateCallbacks => "duplicate_callbacks",
            SimOutcome::Late => "late",
        }
    }
}

/// The `simulate` object of a pay request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Simulate {
    #[serde(default)]
    pub outcome: SimOutcome,
    /// Delay before the callback (default 200ms).
    pub callback_delay: Option<HumanDuration>,
}

/// The body of a callback.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimNotification {
    pub payment_id: String,
    pub txn_id: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
}

/// The simulated channel.
pub struct SimChannel {
    store: Store,
    secret: String,
    default_delay: HumanDuration,
    http: reqwest::Client,
    /// Base URL of payq's own API, known once the listener is bound.
    callback_base: OnceLock<String>,
    /// Cancelled when payq stops: payments not yet settled wait for [`SimChannel::resume`]
    /// in the next process, and a callback payq can no longer take is not retried (payq's
    /// query finds the payment instead).
    stopping: tokio_util::sync::CancellationToken,
    /// Callbacks payq answered with a success, for tests that wait until every callback
    /// the channel meant to send has landed.
    callbacks_answered: std::sync::atomic::AtomicU64,
}

impl SimChannel {
    /// A channel keeping its ledger in `store` and signing callbacks with `secret`.
    pub fn new(store: Store, secret: String, default_delay: HumanDuration) -> anyhow::Result<Arc<SimChannel>> {
        let http = crate::http_client().timeout(Duration::from_secs(10)).build()?;
        Ok(Arc::new(SimChannel {
            store,
            secret,
            default_delay,
            http,
            callback_base: OnceLock::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
            callbacks_answered: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Sets where callbacks go (`http://127.0.0.1:8080`).
    pub fn set_callback_base(&self, base: String) {
        let _ = self.callback_base.set(base);
    }

    /// Stops settling payments and sending callbacks: payq is shutting down.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// How many callbacks payq has answered with a success since this channel started.
    pub fn callbacks_answered(&self) -> u64 {
        self.callbacks_answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The signing secret (payq verifies callbacks with it).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Resumes settling the payments that were pending when the process stopped (a real
    /// channel keeps working while payq is down).
    pub async fn resume(self: &Arc<Self>) -> anyhow::Result<usize> {
        let pending = self.store.sim_pending().await?;
        let n = pending.len();
        for txn in pending {
            let outcome = SimOutcome::parse(&txn.outcome);
            self.settle_later(txn, outcome);
        }
        Ok(n)
    }

    fn settle_later(self: &Arc<Self>, txn: SimTxn, outcome: SimOutcome) {
        let this = self.clone();
        tokio::spawn(async move {
            let ms = txn.settle_at.map_or(0, |t| t.millis().saturating_sub(Timestamp::now().millis()).max(0));
            let due = tokio::time::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
            if this.stopping.run_until_cancelled(due).await.is_none() {
                return; // still pending in the ledger: the next process resumes it
            }
            let (status, reason) = match outcome {
                SimOutcome::Failed => (SimStatus::Failed, Some("card_declined".to_owned())),
                _ => (SimStatus::Succeeded, None),
            };
            let settled = match outcome {
                SimOutcome::Late => {
                    this.wait_until_closed(&txn.txn_id).await;
                    this.store.sim_force_succeed(&txn.txn_id).await
                }
                _ => this.store.sim_settle(&txn.txn_id, status).await,
            };
            let settled = match settled {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(txn = %txn.txn_id, error = %e, "sim channel could not settle a payment");
                    return;
                }
            };
            if settled.status != status {
                return; // closed before it was paid
            }
            let callbacks = match outcome {
                SimOutcome::NoCallback => 0,
                SimOutcome::DuplicateCallbacks => 3,
                _ => 1,
            };
            let note = SimNotification {
                payment_id: settled.payment_id.clone(),
                txn_id: settled.txn_id.clone(),
                status: status.as_str().to_owned(),
                amount: settled.amount,
                currency: settled.currency.clone(),
                failure_reason: reason,
            };
            for _ in 0..callbacks {
                this.send_callback(&note).await;
            }
        });
    }

    /// Waits (up to [`LATE_WAIT`]) until payq has closed the payment at the channel, and
    /// [`AFTER_CLOSE`] more, so a `late` payment really arrives after its order closed,
    /// however late the closing timer fires.
    async fn wait_until_closed(&self, txn_id: &str) {
        let deadline = tokio::time::Instant::now() + LATE_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.store.sim_txn(txn_id).await {
                Ok(t) if t.status != SimStatus::Pending => {
                    // payq closes the order right after the channel said closed.
                    tokio::time::sleep(AFTER_CLOSE).await;
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(txn = %txn_id, error = %e, "sim channel could not read a payment"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts a callback, retrying a few times on failure as a real channel would.
    async fn send_callback(&self, note: &SimNotification) {
        let Some(base) = self.callback_base.get() else {
            tracing::warn!("sim channel has no callback address yet");
            return;
        };
        let Ok(body) = serde_json::to_vec(note) else {
            return;
        };
        let send = || async {
            let t = Timestamp::now().unix_seconds();
            let r = self
                .http
                .post(format!("{base}/v1/channels/sim/notify"))
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, crypto::signature_header(&self.secret, t, &body))
                .body(body.clone())
                .send()
                .await
                .map_err(|e| format!("sim callback failed: {e}"))?;
            if r.status().is_success() { Ok(()) } else { Err(format!("sim callback refused: {}", r.status())) }
        };
        // Five attempts, 200 ms apart at first and doubling, like a channel's notify retries.
        let backoff = ExponentialBuilder::default().with_min_delay(Duration::from_millis(200)).with_max_times(4);
        let sent = send
            .retry(backoff)
            .when(|_| !self.stopping.is_cancelled())
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "retrying"))
            .await;
        match sent {
            Ok(()) => {
                self.callbacks_answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) if self.stopping.is_cancelled() => {
                tracing::info!(error = %e, "sim callback not sent: payq is stopping (its query finds the payment)");
            }
            Err(e) => tracing::warn!(error = %e, "sim callback given up"),
        }
    }
}

/// How long a `late` payment waits for payq to close it before it succeeds anyway.
const LATE_WAIT: Duration = Duration::from_secs(60);

/// How long after payq closed it a `late` payment succeeds.
const AFTER_CLOSE: Duration = Duration::from_millis(300);

/// When a payment with these instructions settles: after the callback delay, and for a
/// `late` payment only after the order's expiry.
fn settle_at(simulate: &Simulate, default_delay: HumanDuration, expires_at: Timestamp) -> Timestamp {
    let delay = simulate.callback_delay.unwrap_or(default_delay).as_millis();
    let from = match simulate.outcome {
        SimOutcome::Late => expires_at.max(Timestamp::now()),
        _ => Timestamp::now(),
    };
    from.plus_millis(delay)
}

fn db(e: StoreError) -> ChannelError {
    ChannelError::Unavailable(e.to_string())
}

fn status_of(txn: &SimTxn) -> ChannelStatus {
    match txn.status {
        SimStatus::Succeeded => ChannelStatus::Succeeded { txn_id: txn.txn_id.clone() },
        SimStatus::Failed => ChannelStatus::Failed { reason: "card_declined".into() },
        SimStatus::Closed => ChannelStatus::Closed,
        SimStatus::Pending => ChannelStatus::Pending,
    }
}

/// A handle that implements [`PaymentChannel`] for the shared simulated channel.
#[derive(Clone)]
pub struct Sim(pub Arc<SimChannel>);

impl PaymentChannel for Sim {
    fn name(&self) -> payq_domain::ChannelName {
        payq_domain::ChannelName::Sim
    }

    fn create_payment(&self, req: PaymentRequest) -> BoxFuture<'_, Result<Started, ChannelError>> {
        async move {
            let simulate: Simulate = match req.instructions {
                Some(v) => serde_json::from_value(v).map_err(|e| ChannelError::Invalid(e.to_string()))?,
                None => Simulate::default(),
            };
            let txn = SimTxn {
                txn_id: format!("sim_{}", crypto::random_hex(12)),
                payment_id: req.payment_id.to_string(),
                amount: req.amount,
                currency: req.currency.code().to_owned(),
                status: SimStatus::Pending,
                outcome: simulate.outcome.as_str().into(),
                refunded: 0,
                settle_at: Some(settle_at(&simulate, self.0.default_delay, req.expires_at)),
            };
            let recorded = self.0.store.sim_create(&txn).await.map_err(db)?;
            if recorded.txn_id == txn.txn_id {
                self.0.settle_later(recorded.clone(), simulate.outcome);
            }
            Ok(Started { txn_id: Some(recorded.txn_id), next_action: None })
        }
        .boxed()
    }

    fn query_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>> {
        async move {
            let txn = match self.0.store.sim_txn_by_payment(payment_id.as_str()).await {
                Ok(txn) => txn,
                Err(StoreError::NotFound) => return Ok(ChannelStatus::NotFound),
                Err(e) => return Err(db(e)),
            };
            // The bank settles on time even if the process that took the payment died before
            // it could (another payq process asks): settle it now.
            let overdue = txn.settle_at.is_some_and(|t| t.millis() <= Timestamp::now().millis());
            let outcome = SimOutcome::parse(&txn.outcome);
            if txn.status == SimStatus::Pending && overdue && !matches!(outcome, SimOutcome::Late) {
                let status =
                    if matches!(outcome, SimOutcome::Failed) { SimStatus::Failed } else { SimStatus::Succeeded };
                let settled = self.0.store.sim_settle(&txn.txn_id, status).await.map_err(db)?;
                return Ok(status_of(&settled));
            }
            Ok(status_of(&txn))
        }
        .boxed()
    }

    fn close_payment<'a>(&'a self, payment_id: &'a PaymentId) -> BoxFuture<'a, Result<ChannelStatus, ChannelError>> {
        async move {
            let txn = match self.0.store.sim_txn_by_payment(payment_id.as_str()).await {
                Ok(txn) => txn,
                Err(StoreError::NotFound) => return Ok(ChannelStatus::NotFound),
                Err(e) => return Err(db(e)),
            };
            // The race a `late` payment simulates: the channel says closed, and takes the
            // money anyway afterwards (see `wait_until_closed`).
            let after = self.0.store.sim_settle(&txn.txn_id, SimStatus::Closed).await.map_err(db)?;
            Ok(status_of(&after))
        }
        .boxed()
    }

    fn refund<'a>(
        &'a self,
        payment_id: &'a PaymentId,
        refund_id: &'a RefundId,
        amount: i64,
    ) -> BoxFuture<'a, Result<RefundOutcome, ChannelError>> {
        async move {
            let txn = match self.0.store.sim_txn_by_payment(payment_id.as_str()).await {
                Ok(txn) => txn,
                Err(StoreError::NotFound) => {
                    return Ok(RefundOutcome::Refused { reason: "unknown payment".into() });
                }
                Err(e) => return Err(db(e)),
            };
            match self.0.store.sim_refund(&txn.txn_id, refund_id.as_str(), amount).await.map_err(db)? {
                true => Ok(RefundOutcome::Succeeded),
                false => Ok(RefundOutcome::Refused { reason: "refund exceeds the captured amount".into() }),
            }
        }
        .boxed()
    }
}
