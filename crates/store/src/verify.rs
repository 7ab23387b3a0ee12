//! The invariants payq guarantees (docs/operations.md), checked on a database (`payq verify`).

use crate::{Store, StoreResult};

/// One broken invariant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// The order, payment or refund concerned.
    pub subject: String,
    pub detail: String,
}

impl Store {
    /// Checks every invariant and returns what is broken (empty when all hold).
    pub async fn verify(&self) -> StoreResult<Vec<Violation>> {
        let mut out = Vec::new();

        // Money taken at the channel is on a paid order, or refunded (or being refunded), or
        // its result is still on its way (the payment is pending with a query or the order's
        // timeout still to run).
        let rows = crate::db::query(
            "SELECT s.txn_id, s.payment_id, s.amount, s.refunded, o.id AS order_id, o.status,
                    o.current_payment_id,
                    CASE WHEN p.status = 'pending' AND EXISTS (SELECT 1 FROM messages m
                      WHERE (m.kind IN ('payment.query', 'payment.close') AND m.key = p.id)
                         OR (m.kind IN ('payment.timeout', 'payment.request') AND m.key IN (o.id, p.id)))
                    THEN 1 ELSE 0 END AS in_flight,
                    (SELECT CAST(COALESCE(SUM(r.amount), 0) AS BIGINT) FROM refunds r
                      WHERE r.payment_id = s.payment_id AND r.status IN ('processing', 'succeeded')) AS refunding
             FROM sim_channel_txns s
             LEFT JOIN payments p ON p.id = s.payment_id
             LEFT JOIN orders o ON o.id = p.order_id
             WHERE s.status = 'succeeded'",
        )
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let payment: String = r.try_get("payment_id")?;
            let amount: i64 = r.try_get("amount")?;
            let refunded: i64 = r.try_get("refunded")?;
            let refunding: i64 = r.try_get("refunding")?;
            let status: Option<String> = r.try_get("status")?;
            let current: Option<String> = r.try_get("current_payment_id")?;
            let in_flight = r.try_get::<i64>("in_flight")? != 0;
            let on_paid_order = matches!(status.as_deref(), Some("paid" | "shipped" | "refunded" | "cancelled"))
                && current.as_deref() == Some(payment.as_str());
            if !on_paid_order && !in_flight && refunded.max(refunding) < amount {
                out.push(Violation {
                    invariant: "captured_payment_accounted",
                    subject: payment,
                    detail: format!(
                        "captured {amount} at the channel, order status {}, refunded {refunded}",
                        status.unwrap_or_else(|| "missing".into())
                    ),
                });
            }
        }

        // Refunds never exceed payments, and the order's refunded total matches its refunds.
        let rows = crate::db::query(
            "SELECT o.id, o.amount, o.amount_refunded,
                    (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds r WHERE r.order_id = o.id
                      AND r.status IN ('pending_review', 'processing', 'succeeded')) AS held,
                    (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds r WHERE r.order_id = o.id
                      AND r.status = 'succeeded') AS succeeded
             FROM orders o WHERE EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = o.id)",
        )
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let id: String = r.try_get("id")?;
            let amount: i64 = r.try_get("amount")?;
            let refunded: i64 = r.try_get("amount_refunded")?;
            let held: i64 = r.try_get("held")?;
            let succeeded: i64 = r.try_get("succeeded")?;
            if held > amount {
                out.push(Violation {
                    invariant: "refunds_within_payment",
                    subject: id.clone(),
                    detail: format!("refunds hold {held} of a {amount} payment"),
                });
            }
            if refunded != succeeded {
                out.push(Violation {
                    invariant: "refunded_total_matches",
                    subject: id,
                    detail: format!("amount_refunded {refunded} but succeeded refunds sum to {succeeded}"),
                });
            }
        }

        // Every unpaid order has its payment timeout pending.
        let rows = crate::db::query(
            "SELECT o.id, o.status FROM orders o
             WHERE o.status IN ('pending_payment', 'paying')
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.kind = 'payment.timeout' AND m.key = o.id)",
        )
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let status: String = r.try_get("status")?;
            out.push(Violation {
                invariant: "unpaid_order_has_timer",
                subject: r.try_get("id")?,
                detail: format!("order is {status} with no payment timeout pending"),
            });
        }

        // Every in-flight refund has a message that will finish it.
        let rows = crate::db::query(
            "SELECT r.id, r.status FROM refunds r
             WHERE r.status IN ('pending_review', 'processing')
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.kind = 'refund.execute' AND m.key = r.id)",
        )
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let status: String = r.try_get("status")?;
            out.push(Violation {
                invariant: "refund_has_message",
                subject: r.try_get("id")?,
                detail: format!("refund is {status} with nothing pending to finish it"),
            });
        }
        // Every paid order has its post-payment check and its next ship reminder pending
        // (or done).
        let reminder_max = self.backend().json_text("mc.settings", "ship_reminder_max");
        let rows = crate::db::query(&format!(
            "SELECT o.id, CASE WHEN o.checked_at IS NOT NULL OR EXISTS (SELECT 1 FROM messages m
                      WHERE m.kind = 'order.check' AND m.key = o.id) THEN 1 ELSE 0 END AS check_ok,
                    CASE WHEN o.ship_reminders_sent >= COALESCE(CAST({reminder_max} AS BIGINT), 3)
                      OR EXISTS (SELECT 1 FROM messages m WHERE m.kind = 'order.ship_reminder' AND m.key = o.id)
                      THEN 1 ELSE 0 END AS reminder_ok
             FROM orders o JOIN merchants mc ON mc.id = o.merchant_id WHERE o.status = 'paid'"
        ))
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let id: String = r.try_get("id")?;
            if r.try_get::<i64>("check_ok")? == 0 {
                out.push(Violation {
                    invariant: "paid_order_has_check",
                    subject: id.clone(),
                    detail: "paid order with neither a post-payment check pending nor one done".into(),
                });
            }
            if r.try_get::<i64>("reminder_ok")? == 0 {
                out.push(Violation {
                    invariant: "paid_order_has_reminder",
                    subject: id,
                    detail: "paid, unshipped order with no ship reminder pending".into(),
                });
            }
        }

        // Every event the merchant's webhook receives is delivered, dead-lettered, or on its
        // way. What it receives is judged from when its URL and filter last changed.
        let (message_event, dead_event) =
            (self.backend().json_text("m.payload", "event_id"), self.backend().json_text("d.payload", "event_id"));
        let wanted = self.backend().json_array_has("mc.webhook_events", "e.type");
        let rows = crate::db::query(&format!(
            "SELECT e.id, e.type FROM events e JOIN merchants mc ON mc.id = e.merchant_id
             WHERE mc.webhook_url IS NOT NULL AND e.created_at >= mc.webhook_since
               AND (mc.webhook_events IS NULL OR {wanted})
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.kind = 'webhook.deliver'
                                 AND {message_event} = e.id)
               AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.kind = 'webhook.deliver'
                                 AND {dead_event} = e.id)"
        ))
        .fetch_all(self.read())
        .await?;
        for r in rows {
            let kind: String = r.try_get("type")?;
            out.push(Violation {
                invariant: "event_delivered",
                subject: r.try_get("id")?,
                detail: format!("{kind} event neither delivered, dead-lettered nor pending delivery"),
            });
        }
        Ok(out)
    }
}
