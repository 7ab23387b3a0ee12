//! Claims on the calls payq makes to a payment channel. Whoever is about to call a channel
//! (the pay request, a job, a second delivery of that job) first claims the call in a
//! transaction; only the holder calls. A call done for good (a payment created at its
//! channel) stays claimed for ever, so it is never made again; a call that failed is
//! released for the next try. A claim is a lease: if its holder dies, the lifeline releases
//! it at once, and a hung holder loses it when the lease ends (docs/architecture.md, "One
//! call per channel step").

use crate::{StoreResult, Tx};
use payq_domain::{PaymentId, RefundId, Timestamp};

/// `claimed_until` of a call done for good.
pub(crate) const DONE: i64 = i64::MAX;

/// One call to a payment channel, about one payment or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelCall<'a> {
    /// Create the payment at its channel (precreate, native, …): once per payment.
    Create(&'a PaymentId),
    /// Ask the channel about the payment.
    Query(&'a PaymentId),
    /// Close the unpaid payment at its channel (at the order's deadline).
    Close(&'a PaymentId),
    /// Execute the refund at the channel.
    Refund(&'a RefundId),
}

impl ChannelCall<'_> {
    /// The call's stored id.
    pub(crate) fn id(self) -> String {
        match self {
            ChannelCall::Create(p) => format!("create:{p}"),
            ChannelCall::Query(p) => format!("query:{p}"),
            ChannelCall::Close(p) => format!("close:{p}"),
            ChannelCall::Refund(r) => format!("refund:{r}"),
        }
    }
}

/// What became of a claim on a [`ChannelCall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClaim {
    /// This transaction holds the call: make it.
    Claimed,
    /// Another holder may be making the call until then.
    HeldUntil(Timestamp),
    /// The call was made and must not be made again.
    Done,
}

impl Tx {
    /// Claims `call` for this process until `lease_until`, unless someone holds it or it
    /// is done. Takes effect with the transaction.
    pub async fn claim_channel_call(
        &mut self,
        call: ChannelCall<'_>,
        lease_until: Timestamp,
    ) -> StoreResult<CallClaim> {
        let id = call.id();
        let owner = self.process_id().as_str().to_owned();
        let claimed = crate::db::query(
            "INSERT INTO channel_calls (id, owner, claimed_until) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, claimed_until = excluded.claimed_until
             WHERE channel_calls.claimed_until <= $4",
        )
        .bind(id.as_str())
        .bind(owner)
        .bind(lease_until.millis())
        .bind(crate::now_ms())
        .execute(self.conn())
        .await?
        .rows_affected();
        if claimed == 1 {
            return Ok(CallClaim::Claimed);
        }
        let until: Option<i64> = crate::db::query_scalar("SELECT claimed_until FROM channel_calls WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
        Ok(match until {
            Some(DONE) => CallClaim::Done,
            Some(ms) => CallClaim::HeldUntil(Timestamp::from_millis(ms)),
            // Released between the two statements (only a concurrent lifeline does that).
            None => CallClaim::HeldUntil(Timestamp::now()),
        })
    }

    /// Marks `call` done for good: it is never claimed again.
    pub async fn finish_channel_call(&mut self, call: ChannelCall<'_>) -> StoreResult<()> {
        crate::db::query(
            "INSERT INTO channel_calls (id, owner, claimed_until) VALUES ($1, NULL, $2)
             ON CONFLICT (id) DO UPDATE SET owner = NULL, claimed_until = excluded.claimed_until",
        )
        .bind(call.id())
        .bind(DONE)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Hands `call` back, unless it is done: the next try may claim it at once.
    pub async fn release_channel_call(&mut self, call: ChannelCall<'_>) -> StoreResult<()> {
        crate::db::query("DELETE FROM channel_calls WHERE id = $1 AND claimed_until < $2")
            .bind(call.id())
            .bind(DONE)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl crate::Store {
    /// Hands `call` back in a transaction of its own (see [`Tx::release_channel_call`]).
    pub async fn release_channel_call(&self, call: ChannelCall<'_>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        tx.release_channel_call(call).await?;
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::{CallClaim, ChannelCall};
    use crate::Store;
    use payq_domain::{PaymentId, RefundId, Timestamp};

    async fn claim(store: &Store, call: ChannelCall<'_>, lease_ms: i64) -> CallClaim {
        let mut tx = store.begin().await.expect("tx");
        let claim = tx.claim_channel_call(call, Timestamp::now().plus_millis(lease_ms)).await.expect("claim");
        tx.commit().await.expect("commit");
        claim
    }

    #[tokio::test]
    async fn a_call_has_one_holder_until_it_is_released_runs_out_or_is_done() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("payq.db").display())).await.expect("store");
        let payment = PaymentId::generate();
        let create = ChannelCall::Create(&payment);
        assert_eq!(claim(&store, create, 60_000).await, CallClaim::Claimed);
        assert!(matches!(claim(&store, create, 60_000).await, CallClaim::HeldUntil(_)), "held");
        // Calls about the same payment are claimed apart.
        assert_eq!(claim(&store, ChannelCall::Query(&payment), 60_000).await, CallClaim::Claimed);
        store.release_channel_call(create).await.expect("release");
        assert_eq!(claim(&store, create, 60_000).await, CallClaim::Claimed, "released");
        let mut tx = store.begin().await.expect("tx");
        tx.finish_channel_call(create).await.expect("finish");
        tx.commit().await.expect("commit");
        assert_eq!(claim(&store, create, 60_000).await, CallClaim::Done);
        store.release_channel_call(create).await.expect("release");
        assert_eq!(claim(&store, create, 60_000).await, CallClaim::Done, "a done call stays done");
        // A lease that ran out is claimed again.
        let refund = RefundId::generate();
        assert_eq!(claim(&store, ChannelCall::Refund(&refund), -1).await, CallClaim::Claimed);
        assert_eq!(claim(&store, ChannelCall::Refund(&refund), 60_000).await, CallClaim::Claimed, "ran out");
        // A claim not committed is no claim.
        let mut tx = store.begin().await.expect("tx");
        let other = PaymentId::generate();
        assert_eq!(
            tx.claim_channel_call(ChannelCall::Close(&other), Timestamp::now().plus_millis(60_000))
                .await
                .expect("claim"),
            CallClaim::Claimed
        );
        tx.rollback().await.expect("rollback");
        assert_eq!(claim(&store, ChannelCall::Close(&other), 60_000).await, CallClaim::Claimed);
    }

    #[tokio::test]
    async fn the_claims_of_a_process_that_died_are_released_by_the_lifeline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("payq.db").display());
        let dead = Store::open(&url).await.expect("store");
        dead.heartbeat("api").await.expect("beat");
        let payment = PaymentId::generate();
        let create = ChannelCall::Create(&payment);
        assert_eq!(claim(&dead, create, 60_000).await, CallClaim::Claimed);
        let live = Store::open(&url).await.expect("store");
        assert!(matches!(claim(&live, create, 60_000).await, CallClaim::HeldUntil(_)));
        // Silent for "less than nothing": every other process counts as dead.
        live.release_claims_of_dead_processes(-1, false).await.expect("lifeline");
        assert_eq!(claim(&live, create, 60_000).await, CallClaim::Claimed, "the dead process's claim was released");
    }
}
