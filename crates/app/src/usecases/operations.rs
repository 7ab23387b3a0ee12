//! What the edges read and do beside the payment flow: API-key authentication, readiness,
//! the merchant's order and event lists, the operator's dead letters, counts and searches,
//! and the `Idempotency-Key` reservations. The HTTP API, the console and the checkout page
//! reach the store only through these and the other use cases (docs/architecture.md).

use super::{LookupError, Payq, StoreFault};
use crate::crypto::{ApiKey, constant_time_eq, sha256_hex};
use payq_domain::{
    DeadLetterId, Event, EventId, Merchant, MerchantId, MessageId, Order, OrderId, OrderStatus, PaymentId, Timestamp,
};
use payq_store::{
    DeadLetter, IdempotencyBegin, MessageStats, MinuteCounts, OrderHistory, OrderPage, OrderSearch, PaymentRecord,
    StoreError, StoredResponse,
};

/// Why an API key was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a key of any merchant's, or one whose rotation overlap has ended.
    #[error("invalid API key")]
    Refused,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// Why a page of events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// `after` names no event of the merchant's.
    #[error("after names no event of this merchant")]
    UnknownAfter,
    #[error(transparent)]
    Store(#[from] StoreFault),
}

/// The counts an operator watches: orders by status and the store's timers and jobs.
#[derive(Debug)]
pub struct Stats {
    /// Orders by status name.
    pub orders_by_status: Vec<(String, i64)>,
    /// Pending and dead messages.
    pub messages: MessageStats,
}

/// A lookup whose `NotFound` names `what`; other store errors are faults.
fn found<T>(result: Result<T, StoreError>, what: &'static str) -> Result<T, LookupError> {
    match result {
        Err(StoreError::NotFound) => Err(LookupError::NotFound(what)),
        other => Ok(other.map_err(StoreFault::from)?),
    }
}

impl Payq {
    /// The merchant whose API key `token` is: the current key, or the one it replaced while
    /// the rotation's overlap lasts.
    pub async fn authenticate(&self, token: &str) -> Result<Merchant, AuthError> {
        let key_id = ApiKey::key_id_of(token).ok_or(AuthError::Refused)?;
        let creds = match self.store.merchant_by_api_key_id(key_id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(AuthError::Refused),
            Err(e) => return Err(StoreFault::from(e).into()),
        };
        let presented = sha256_hex(token.as_bytes());
        let expected = if creds.api_key_id == key_id {
            Some(creds.api_key_hash.as_str())
        } else {
            creds.previous_api_key.as_ref().and_then(|previous| previous.valid_at(Timestamp::now()))
        };
        if !expected.is_some_and(|hash| constant_time_eq(&presented, hash)) {
            return Err(AuthError::Refused);
        }
        Ok(creds.merchant)
    }

    /// Whether the store answers (the readiness probe).
    pub async fn is_ready(&self) -> bool {
        self.store.is_ready().await
    }

    /// A page of the merchant's orders, newest first.
    pub async fn list_orders(
        &self,
        merchant: &Merchant,
        status: Option<OrderStatus>,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<OrderPage, StoreFault> {
        Ok(self.store.list_orders(&merchant.id, status, after, limit).await?)
    }

    /// The order `id` of the merchant `merchant`, whoever asks (the checkout page's signed
    /// link names both).
    pub async fn merchant_order(&self, merchant: &MerchantId, id: &OrderId) -> Result<(Merchant, Order), LookupError> {
        let m = found(self.store.merchant(merchant).await, "merchant")?;
        let order = found(self.store.order(merchant, id).await, "order")?;
        Ok((m, order))
    }

    /// A payment, by id (a channel's notification names it).
    pub async fn payment(&self, id: &PaymentId) -> Result<PaymentRecord, LookupError> {
        found(self.store.payment(id).await, "payment")
    }

    /// A page of the merchant's events, oldest first, after `after`; `.1`: whether more follow.
    pub async fn events(
        &self,
        merchant: &Merchant,
        after: Option<&EventId>,
        limit: u32,
    ) -> Result<(Vec<Event>, bool), EventsError> {
        if let Some(after) = after
            && !self.store.event_exists(&merchant.id, after).await.map_err(StoreFault::from)?
        {
            return Err(EventsError::UnknownAfter);
        }
        Ok(self.store.events(&merchant.id, after, limit).await.map_err(StoreFault::from)?)
    }

    /// The newest dead letters.
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreFault> {
        Ok(self.store.dead_letters(limit).await?)
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: &DeadLetterId) -> Result<DeadLetter, LookupError> {
        found(self.store.dead_letter(id).await, "dead letter")
    }

    /// Puts a dead letter back in its queue, due now; answers the new message's id.
    pub async fn replay_dead_letter(&self, id: &DeadLetterId) -> Result<MessageId, LookupError> {
        found(self.store.replay_dead_letter(id).await, "dead letter")
    }

    /// Deletes every dead letter; answers how many there were.
    pub async fn purge_dead_letters(&self) -> Result<u64, StoreFault> {
        Ok(self.store.purge_dead_letters().await?)
    }

    /// Orders by status and the store's pending and dead messages, now.
    pub async fn stats(&self) -> Result<Stats, StoreFault> {
        let orders_by_status = self.store.order_counts().await?;
        let messages = self.store.message_stats(Timestamp::now()).await?;
        Ok(Stats { orders_by_status, messages })
    }

    /// Orders created and paid per minute since `since`.
    pub async fn orders_per_minute(&self, since: Timestamp) -> Result<Vec<MinuteCounts>, StoreFault> {
        Ok(self.store.orders_per_minute(since).await?)
    }

    /// The first `limit` merchants, by name.
    pub async fn merchants(&self, limit: u32) -> Result<Vec<Merchant>, StoreFault> {
        Ok(self.store.merchants(limit).await?)
    }

    /// Every merchant's orders that match `search`, newest first.
    pub async fn search_orders(
        &self,
        search: &OrderSearch,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<OrderPage, StoreFault> {
        Ok(self.store.search_orders(search, after, limit).await?)
    }

    /// An order with its timeline, refunds, pending work and dead letters.
    pub async fn order_history(&self, id: &OrderId) -> Result<OrderHistory, LookupError> {
        found(self.store.order_history(id).await, "order")
    }

    /// Reserves `key` of `principal` for `lease_ms` for a request hashing to `request_hash`.
    pub async fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<IdempotencyBegin, StoreFault> {
        Ok(self.store.idempotency_begin(principal, key, request_hash, lease_ms).await?)
    }

    /// Extends a reservation the request still holds.
    pub async fn idempotency_renew(&self, principal: &str, key: &str, lease_ms: i64) -> Result<(), StoreFault> {
        Ok(self.store.idempotency_renew(principal, key, lease_ms).await?)
    }

    /// Keeps the request's answer for its repeats.
    pub async fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreFault> {
        Ok(self.store.idempotency_complete(principal, key, response).await?)
    }

    /// Gives the key up, so a repeat runs afresh (the request failed on payq's side).
    pub async fn idempotency_release(&self, principal: &str, key: &str) -> Result<(), StoreFault> {
        Ok(self.store.idempotency_release(principal, key).await?)
    }
}
