//! Orders and their payment attempts.

use crate::rows::{self, select_orders};
use crate::{Store, StoreError, StoreResult, Tx};
use payq_domain::{Currency, MerchantId, Order, OrderId, OrderItem, OrderStatus, PaymentId, PaymentStatus, Timestamp};

/// What an id passed to [`Tx::hold_order`] names.
pub(crate) enum OrderOf {
    Order,
    Payment,
    Refund,
}

/// An order to insert.
pub struct NewOrder<'a> {
    pub id: &'a OrderId,
    pub merchant_id: &'a MerchantId,
    pub merchant_order_no: &'a str,
    /// Hash of the creating request's content, to tell a retry from a conflicting reuse.
    pub request_hash: &'a str,
    pub amount: i64,
    pub currency: Currency,
    pub description: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    pub items: &'a [OrderItem],
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A payment attempt to insert; it becomes the order's current payment.
pub struct NewPayment<'a> {
    pub id: &'a PaymentId,
    pub order: &'a Order,
    pub channel: payq_domain::ChannelName,
    /// The channel's instructions, as JSON: the simulated channel's, or how a real
    /// channel's payment is started (its payer and return URL).
    pub simulate: Option<&'a str>,
    /// How the buyer pays through a real channel.
    pub product: Option<payq_domain::PayProduct>,
    pub created_at: Timestamp,
}

/// One page of a merchant's orders, newest first.
pub struct OrderPage {
    pub orders: Vec<Order>,
    pub has_more: bool,
}

/// A page of at most `limit` orders from `rows`, fetched with a limit of `limit + 1` (the
/// extra row only says whether more follow).
pub(crate) fn order_page(rows: &[crate::db::Row], limit: u32) -> StoreResult<OrderPage> {
    let mut orders = rows.iter().map(rows::order).collect::<StoreResult<Vec<_>>>()?;
    let has_more = orders.len() > limit as usize;
    orders.truncate(limit as usize);
    Ok(OrderPage { orders, has_more })
}

/// A payment attempt with what workers need to drive it.
#[derive(Debug, Clone)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub merchant_id: MerchantId,
    pub channel: payq_domain::ChannelName,
    pub channel_txn_id: Option<String>,
    pub status: PaymentStatus,
    pub failure_reason: Option<String>,
    pub amount: i64,
    pub currency: Currency,
    pub customer_id: Option<String>,
    pub simulate: Option<String>,
    /// How the buyer pays through a real channel.
    pub product: Option<payq_domain::PayProduct>,
    /// The buyer's next step, once the channel gave one.
    pub next_action: Option<payq_domain::NextAction>,
    pub created_at: Timestamp,
    /// When the payment last changed (for a pending one: when payq recorded the channel's
    /// answer to its start, so the channel created it no later).
    pub updated_at: Timestamp,
}

fn payment_record(row: &crate::db::Row) -> StoreResult<PaymentRecord> {
    payment_record_as(row, "")
}

/// The payment attempt of a row whose payment columns are named with `prefix`.
fn payment_record_as(row: &crate::db::Row, prefix: &str) -> StoreResult<PaymentRecord> {
    let col = |name: &str| format!("{prefix}{name}");
    let status: String = row.try_get(&col("status"))?;
    Ok(PaymentRecord {
        id: rows::parse(row, &col("id"))?,
        order_id: rows::parse(row, &col("order_id"))?,
        merchant_id: rows::parse(row, &col("merchant_id"))?,
        channel: rows::parse(row, &col("channel"))?,
        channel_txn_id: row.try_get(&col("channel_txn_id"))?,
        status: PaymentStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("payment status {status}")))?,
        failure_reason: row.try_get(&col("failure_reason"))?,
        amount: row.try_get(&col("amount"))?,
        currency: rows::parse(row, &col("currency"))?,
        customer_id: row.try_get(&col("customer_id"))?,
        simulate: row.try_get(&col("simulate"))?,
        product: row
            .try_get::<Option<String>>(&col("product"))?
            .map(|p| {
                payq_domain::PayProduct::parse(&p).ok_or_else(|| StoreError::Corrupt(format!("payment product {p}")))
            })
            .transpose()?,
        next_action: row
            .try_get::<Option<String>>(&col("next_action"))?
            .map(|a| serde_json::from_str(&a).map_err(|e| StoreError::Corrupt(format!("next_action: {e}"))))
            .transpose()?,
        created_at: Timestamp::from_millis(row.try_get(&col("created_at"))?),
        updated_at: Timestamp::from_millis(row.try_get(&col("updated_at"))?),
    })
}

impl Tx {
    /// Inserts the order unless the merchant has one with its `merchant_order_no` already,
    /// and returns it as the API shows it: `None` when the number is taken (read that order
    /// with [`Tx::order_by_merchant_order_no`]). One statement, and no read back: a new
    /// order has no payment, nothing refunded and version 0. On PostgreSQL a concurrent
    /// insert of the same number is waited for, so the loser finds the winner's order.
    pub async fn insert_order(&mut self, o: NewOrder<'_>) -> StoreResult<Option<Order>> {
        let items = serde_json::to_string(o.items).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let inserted = crate::db::query(
            "INSERT INTO orders (id, merchant_id, merchant_order_no, request_hash, status, amount, currency,
                description, customer_id, items, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (merchant_id, merchant_order_no) DO NOTHING",
        )
        .bind(o.id.as_str())
        .bind(o.merchant_id.as_str())
        .bind(o.merchant_order_no)
        .bind(o.request_hash)
        .bind(OrderStatus::PendingPayment.as_str())
        .bind(o.amount)
        .bind(o.currency.code())
        .bind(o.description)
        .bind(o.customer_id)
        .bind(items)
        .bind(o.created_at.millis())
        .bind(o.expires_at.millis())
        .execute(self.conn())
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        // Nobody else sees the row before this transaction commits: it is held already.
        self.held.push(o.id.as_str().to_owned());
        Ok(Some(Order {
            id: o.id.clone(),
            merchant_id: o.merchant_id.clone(),
            merchant_order_no: o.merchant_order_no.to_owned(),
            status: OrderStatus::PendingPayment,
            amount: o.amount,
            currency: o.currency,
            amount_refunded: 0,
            description: o.description.map(str::to_owned),
            customer_id: o.customer_id.map(str::to_owned),
            items: o.items.to_vec(),
            created_at: o.created_at,
            expires_at: o.expires_at,
            paid_at: None,
            shipped_at: None,
            closed_at: None,
            cancelled_at: None,
            close_reason: None,
            carrier: None,
            tracking_no: None,
            payment: None,
            ship_reminders_sent: 0,
            checked_at: None,
            version: 0,
        }))
    }

    /// An order by id, read inside this transaction and held until it ends: SQLite's writer
    /// is exclusive, and PostgreSQL locks the row, so one order has one writer at a time and
    /// the loser of a race reads the winner's outcome instead of failing its write.
    pub async fn order(&mut self, id: &OrderId) -> StoreResult<Order> {
        self.lock_order(id).await?;
        let row = crate::db::query(select_orders!("WHERE o.id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::order(&row)
    }

    /// The merchant's order with this `merchant_order_no` and the hash of the request that
    /// created it.
    pub async fn order_by_merchant_order_no(
        &mut self,
        merchant: &MerchantId,
        merchant_order_no: &str,
    ) -> StoreResult<Option<(Order, String)>> {
        let row = crate::db::query(select_orders!("WHERE o.merchant_id = $1 AND o.merchant_order_no = $2"))
            .bind(merchant.as_str())
            .bind(merchant_order_no)
            .fetch_optional(self.conn())
            .await?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Some((rows::order(&row)?, row.try_get("request_hash")?))),
        }
    }

    /// Holds the order until this transaction ends, so that checks over its rows (the
    /// refunds held against it) cannot interleave with another transaction's. SQLite's
    /// writer is exclusive already; PostgreSQL locks the row (`FOR UPDATE`).
    pub async fn lock_order(&mut self, id: &OrderId) -> StoreResult<()> {
        self.hold_order(OrderOf::Order, id.as_str()).await
    }

    /// Holds the order that `id` (an order, payment or refund id) belongs to until this
    /// transaction ends: a no-op on SQLite (its writer is exclusive), `FOR UPDATE` of the
    /// order row on PostgreSQL.
    pub(crate) async fn hold_order(&mut self, of: OrderOf, id: &str) -> StoreResult<()> {
        if !self.backend().one_writer() && !self.held.iter().any(|held| held == id) {
            let sql = match of {
                OrderOf::Order => "SELECT id FROM orders WHERE id = $1 FOR UPDATE",
                OrderOf::Payment => {
                    "SELECT id FROM orders WHERE id = (SELECT order_id FROM payments WHERE id = $1) FOR UPDATE"
                }
                OrderOf::Refund => {
                    "SELECT id FROM orders WHERE id = (SELECT order_id FROM refunds WHERE id = $1) FOR UPDATE"
                }
            };
            let order: Option<String> = crate::db::query_scalar(sql).bind(id).fetch_optional(self.conn()).await?;
            // The lock lasts until the transaction ends.
            if let Some(order) = order {
                self.held.push(id.to_owned());
                if order != id {
                    self.held.push(order);
                }
            }
        }
        Ok(())
    }

    /// Writes the order's mutable fields if its version is still `order.version`, and bumps
    /// the version. A lost race is a `Conflict`.
    pub async fn update_order(&mut self, order: &Order) -> StoreResult<()> {
        let done = crate::db::query(
            "UPDATE orders SET status = $1, amount_refunded = $2, paid_at = $3, shipped_at = $4, closed_at = $5,
                cancelled_at = $6, close_reason = $7, carrier = $8, tracking_no = $9, ship_reminders_sent = $10,
                checked_at = $13, current_payment_id = $14, version = version + 1
             WHERE id = $11 AND version = $12",
        )
        .bind(order.status.as_str())
        .bind(order.amount_refunded)
        .bind(order.paid_at.map(Timestamp::millis))
        .bind(order.shipped_at.map(Timestamp::millis))
        .bind(order.closed_at.map(Timestamp::millis))
        .bind(order.cancelled_at.map(Timestamp::millis))
        .bind(order.close_reason.as_ref().map(payq_domain::CloseReason::as_str))
        .bind(order.carrier.as_deref())
        .bind(order.tracking_no.as_deref())
        .bind(i64::from(order.ship_reminders_sent))
        .bind(order.id.as_str())
        .bind(order.version)
        .bind(order.checked_at.map(Timestamp::millis))
        .bind(order.payment.as_ref().map(|p| p.id.as_str()))
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("order {} changed concurrently", order.id)));
        }
        Ok(())
    }

    /// Inserts a payment attempt and returns it as its order shows it. It becomes the
    /// order's current payment when the order is saved with it ([`Tx::update_order`]).
    pub async fn insert_payment(&mut self, p: NewPayment<'_>) -> StoreResult<payq_domain::Payment> {
        crate::db::query(
            "INSERT INTO payments (id, order_id, merchant_id, channel, status, amount, currency, customer_id,
                simulate, created_at, updated_at, product)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11)",
        )
        .bind(p.id.as_str())
        .bind(p.order.id.as_str())
        .bind(p.order.merchant_id.as_str())
        .bind(p.channel.as_str())
        .bind(PaymentStatus::Pending.as_str())
        .bind(p.order.amount)
        .bind(p.order.currency.code())
        .bind(p.order.customer_id.as_deref())
        .bind(p.simulate)
        .bind(p.created_at.millis())
        .bind(p.product.map(payq_domain::PayProduct::as_str))
        .execute(self.conn())
        .await?;
        Ok(payq_domain::Payment {
            id: p.id.clone(),
            channel: p.channel,
            channel_txn_id: None,
            status: PaymentStatus::Pending,
            failure_reason: None,
            product: p.product,
            next_action: None,
        })
    }

    /// A payment attempt, read inside this transaction. Its order is held first (as by
    /// [`Tx::order`]), so what is read cannot change under this transaction: two channel
    /// results for one payment are applied one after the other, the second seeing the first.
    pub async fn payment(&mut self, id: &PaymentId) -> StoreResult<PaymentRecord> {
        self.hold_order(OrderOf::Payment, id.as_str()).await?;
        let row = crate::db::query("SELECT * FROM payments WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        payment_record(&row)
    }

    /// Moves a payment attempt from `from` to `to` (the use case asked the payment state
    /// machine, `PaymentStatus::on`), with what the channel said. Compare-and-set on the
    /// status read: a payment that changed since is a `Conflict`, and nothing is written.
    pub async fn update_payment(
        &mut self,
        id: &PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        channel_txn_id: Option<&str>,
        failure_reason: Option<&str>,
    ) -> StoreResult<()> {
        let done = crate::db::query(
            "UPDATE payments SET status = $1, channel_txn_id = COALESCE($2, channel_txn_id),
                failure_reason = $3, updated_at = $4 WHERE id = $5 AND status = $6",
        )
        .bind(to.as_str())
        .bind(channel_txn_id)
        .bind(failure_reason)
        .bind(crate::now_ms())
        .bind(id.as_str())
        .bind(from.as_str())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("payment {id} is no longer {}", from.as_str())));
        }
        Ok(())
    }
}

impl Store {
    /// How many payment attempts this customer made since `since` (risk velocity).
    pub async fn payments_by_customer_since(&self, customer_id: &str, since: Timestamp) -> StoreResult<i64> {
        let n: i64 =
            crate::db::query_scalar("SELECT COUNT(*) FROM payments WHERE customer_id = $1 AND created_at >= $2")
                .bind(customer_id)
                .bind(since.millis())
                .fetch_one(self.read())
                .await?;
        Ok(n)
    }

    /// The merchant's succeeded payment volume since `since`, in minor units of `currency`.
    pub async fn merchant_volume_since(
        &self,
        merchant: &MerchantId,
        currency: Currency,
        since: Timestamp,
    ) -> StoreResult<i64> {
        let n: i64 = crate::db::query_scalar(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments
             WHERE merchant_id = $1 AND currency = $2 AND created_at >= $3 AND status IN ('pending', 'succeeded')",
        )
        .bind(merchant.as_str())
        .bind(currency.code())
        .bind(since.millis())
        .fetch_one(self.read())
        .await?;
        Ok(n)
    }

    /// The merchant's order `id`; another merchant's order is `NotFound`.
    pub async fn order(&self, merchant: &MerchantId, id: &OrderId) -> StoreResult<Order> {
        let row = crate::db::query(select_orders!("WHERE o.id = $1 AND o.merchant_id = $2"))
            .bind(id.as_str())
            .bind(merchant.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        rows::order(&row)
    }

    /// A page of the merchant's orders, newest first, optionally of one status, starting
    /// after the order `after`.
    pub async fn list_orders(
        &self,
        merchant: &MerchantId,
        status: Option<OrderStatus>,
        after: Option<&OrderId>,
        limit: u32,
    ) -> StoreResult<OrderPage> {
        let rows = crate::db::query(select_orders!(
            "WHERE o.merchant_id = $1 AND ($2 IS NULL OR o.status = $2) AND ($3 IS NULL OR o.id < $3)
             ORDER BY o.id DESC LIMIT $4"
        ))
        .bind(merchant.as_str())
        .bind(status.map(OrderStatus::as_str))
        .bind(after.map(OrderId::as_str))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.read())
        .await?;
        order_page(&rows, limit)
    }

    /// A payment attempt by id.
    pub async fn payment(&self, id: &PaymentId) -> StoreResult<PaymentRecord> {
        let row = crate::db::query("SELECT * FROM payments WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound)?;
        payment_record(&row)
    }

    /// A payment attempt and its order (with the order's current payment), read together in
    /// one statement, so from one snapshot.
    pub async fn payment_and_order(&self, id: &PaymentId) -> StoreResult<(PaymentRecord, Order)> {
        let row = crate::db::query(concat!(
            "SELECT x.id AS x_id, x.order_id AS x_order_id, x.merchant_id AS x_merchant_id, x.channel AS x_channel, ",
            "x.channel_txn_id AS x_channel_txn_id, x.status AS x_status, x.failure_reason AS x_failure_reason, ",
            "x.amount AS x_amount, x.currency AS x_currency, x.customer_id AS x_customer_id, ",
            "x.simulate AS x_simulate, x.product AS x_product, x.next_action AS x_next_action, ",
            "x.created_at AS x_created_at, x.updated_at AS x_updated_at, ",
            crate::rows::order_columns!(),
            "FROM payments x JOIN orders o ON o.id = x.order_id ",
            "LEFT JOIN payments p ON p.id = o.current_payment_id WHERE x.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.read())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok((payment_record_as(&row, "x_")?, rows::order(&row)?))
    }

    /// Counts of orders by status.
    pub async fn order_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = crate::db::query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY status")
            .fetch_all(self.read())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }
}
