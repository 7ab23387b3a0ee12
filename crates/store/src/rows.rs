//! Reading rows back into domain types. A value that does not parse is a
//! [`StoreError::Corrupt`], never a panic.

use crate::StoreError;
use crate::db::Row as AnyRow;
use payq_domain::{
    Currency, Merchant, MerchantSettings, Order, OrderItem, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus,
    Timestamp,
};
use std::str::FromStr;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(crate) fn parse<T: FromStr>(row: &AnyRow, col: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let raw: String = row.try_get(col)?;
    raw.parse().map_err(|e| corrupt(col, e))
}

fn ts(row: &AnyRow, col: &str) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_millis(row.try_get(col)?))
}

fn opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row.try_get::<Option<i64>>(col)?.map(Timestamp::from_millis))
}

pub(crate) fn merchant(row: &AnyRow) -> Result<Merchant, StoreError> {
    let settings: String = row.try_get("settings")?;
    let webhook_events: Option<String> = row.try_get("webhook_events")?;
    Ok(Merchant {
        id: parse(row, "id")?,
        name: row.try_get("name")?,
        webhook_url: row.try_get("webhook_url")?,
        webhook_events: webhook_events
            .map(|e| serde_json::from_str(&e).map_err(|e| corrupt("webhook_events", e)))
            .transpose()?,
        settings: serde_json::from_str::<MerchantSettings>(&settings).map_err(|e| corrupt("settings", e))?,
        channels: row
            .try_get::<Option<String>>("channels")?
            .map(|c| serde_json::from_str(&c).map_err(|e| corrupt("channels", e)))
            .transpose()?
            .unwrap_or_default(),
        created_at: ts(row, "created_at")?,
    })
}

/// The columns of an order `o` and its current payment `p`, as [`order`] reads them.
macro_rules! order_columns {
    () => {
        concat!(
            "o.id, o.merchant_id, o.merchant_order_no, o.status, o.amount, o.currency, ",
            "o.amount_refunded, o.description, o.customer_id, o.items, o.created_at, o.expires_at, o.paid_at, ",
            "o.shipped_at, o.closed_at, o.cancelled_at, o.close_reason, o.carrier, o.tracking_no, ",
            "o.ship_reminders_sent, o.checked_at, o.version, o.request_hash, p.id AS p_id, p.channel AS p_channel, ",
            "p.channel_txn_id AS p_channel_txn_id, p.status AS p_status, p.failure_reason AS p_failure_reason, ",
            "p.next_action AS p_next_action, p.product AS p_product "
        )
    };
}
pub(crate) use order_columns;

/// A `SELECT` of orders `o` with their current payment `p`, followed by `$tail`
/// (a static string, so the query stays a literal).
macro_rules! select_orders {
    ($tail:literal) => {
        concat!(
            "SELECT ",
            crate::rows::order_columns!(),
            "FROM orders o LEFT JOIN payments p ON p.id = o.current_payment_id ",
            $tail
        )
    };
}
pub(crate) use select_orders;

pub(crate) fn order(row: &AnyRow) -> Result<Order, StoreError> {
    let items: String = row.try_get("items")?;
    let payment = match row.try_get::<Option<String>>("p_id")? {
        None => None,
        Some(id) => {
            let status: String = row.try_get("p_status")?;
            Some(Payment {
                id: id.parse().map_err(|e| corrupt("payment id", e))?,
                channel: parse(row, "p_channel")?,
                channel_txn_id: row.try_get("p_channel_txn_id")?,
                status: PaymentStatus::parse(&status).ok_or_else(|| corrupt("payment status", &status))?,
                failure_reason: row.try_get("p_failure_reason")?,
                product: row
                    .try_get::<Option<String>>("p_product")?
                    .map(|p| payq_domain::PayProduct::parse(&p).ok_or_else(|| corrupt("payment product", &p)))
                    .transpose()?,
                next_action: row
                    .try_get::<Option<String>>("p_next_action")?
                    .map(|a| serde_json::from_str(&a).map_err(|e| corrupt("next_action", e)))
                    .transpose()?,
            })
        }
    };
    let reminders: i64 = row.try_get("ship_reminders_sent")?;
    Ok(Order {
        id: parse(row, "id")?,
        merchant_id: parse(row, "merchant_id")?,
        merchant_order_no: row.try_get("merchant_order_no")?,
        status: parse::<OrderStatus>(row, "status")?,
        amount: row.try_get("amount")?,
        currency: parse::<Currency>(row, "currency")?,
        amount_refunded: row.try_get("amount_refunded")?,
        description: row.try_get("description")?,
        customer_id: row.try_get("customer_id")?,
        items: serde_json::from_str::<Vec<OrderItem>>(&items).map_err(|e| corrupt("items", e))?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
        paid_at: opt_ts(row, "paid_at")?,
        shipped_at: opt_ts(row, "shipped_at")?,
        closed_at: opt_ts(row, "closed_at")?,
        cancelled_at: opt_ts(row, "cancelled_at")?,
        close_reason: row.try_get::<Option<String>>("close_reason")?.map(|r| payq_domain::CloseReason::parse(&r)),
        carrier: row.try_get("carrier")?,
        tracking_no: row.try_get("tracking_no")?,
        payment,
        ship_reminders_sent: u32::try_from(reminders).map_err(|e| corrupt("ship_reminders_sent", e))?,
        checked_at: opt_ts(row, "checked_at")?,
        version: row.try_get("version")?,
    })
}

pub(crate) fn refund(row: &AnyRow) -> Result<Refund, StoreError> {
    Ok(Refund {
        id: parse(row, "id")?,
        order_id: parse(row, "order_id")?,
        merchant_id: parse(row, "merchant_id")?,
        amount: row.try_get("amount")?,
        currency: parse::<Currency>(row, "currency")?,
        reason: row.try_get("reason")?,
        status: parse::<RefundStatus>(row, "status")?,
        execute_at: ts(row, "execute_at")?,
        created_at: ts(row, "created_at")?,
        updated_at: ts(row, "updated_at")?,
        failure_reason: row.try_get("failure_reason")?,
        version: row.try_get("version")?,
    })
}
