//! What follows a payment: the post-payment stock check and the ship reminders.

use super::{Payq, ProcessError, StoreFault, publish, record, save};
use crate::jobs::{Job, OrderCheckJob, ShipReminderJob};
use payq_domain::{EventType, Order, OrderId, OrderStatus, Timestamp};
use payq_store::Tx;

impl Payq {
    /// Schedules the post-payment check and the first ship reminder of an order that was
    /// just paid, in the transaction that marks it paid.
    pub(crate) async fn schedule_follow_up(&self, tx: &mut Tx, order: &Order) -> Result<(), StoreFault> {
        let settings = tx.merchant(&order.merchant_id).await?.settings;
        let paid_at = order.paid_at.unwrap_or_else(Timestamp::now);
        tx.schedule(
            Job::OrderCheck(OrderCheckJob { order_id: order.id.clone() })
                .message(order.id.as_str(), paid_at.plus_millis(settings.post_pay_check_delay.as_millis())),
        )
        .await?;
        if settings.ship_reminder_max > 0 {
            tx.schedule(
                Job::ShipReminder(ShipReminderJob { order_id: order.id.clone(), attempt: 1 })
                    .message(order.id.as_str(), paid_at.plus_millis(settings.ship_deadline.as_millis())),
            )
            .await?;
        }
        Ok(())
    }

    /// The post-payment check: takes the order's items from stock atomically; on any
    /// shortage cancels the order (`out_of_stock`) and refunds it in full.
    pub async fn post_pay_check(&self, order_id: &OrderId) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let mut order = tx.order(order_id).await?;
        if order.status != OrderStatus::Paid || order.checked_at.is_some() {
            return Ok(()); // shipped, cancelled or refunded meanwhile, or already checked
        }
        match tx.take_inventory(&order.merchant_id, &order.items).await? {
            None => {
                order.checked_at = Some(Timestamp::now());
                save(&mut tx, &mut order).await?;
                record(&mut tx, EventType::OrderCheckPassed, &order, None).await?;
            }
            Some(shortage) => {
                tracing::info!(order = %order.id, sku = %shortage.sku, wanted = shortage.wanted,
                    available = shortage.available, "post-payment check failed: out of stock");
                order.checked_at = Some(Timestamp::now());
                self.cancel_and_refund(&mut tx, order, payq_domain::CloseReason::OutOfStock).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sends ship reminder `attempt` for a paid order that has not shipped, and schedules
    /// the next one.
    pub async fn ship_reminder(&self, order_id: &OrderId, attempt: u32) -> Result<(), ProcessError> {
        let mut tx = self.store.begin().await?;
        let mut order = tx.order(order_id).await?;
        let settings = tx.merchant(&order.merchant_id).await?.settings;
        // Only the reminder that is next is sent: a repeat of an earlier one is a no-op.
        if order.status != OrderStatus::Paid
            || order.ship_reminders_sent + 1 != attempt
            || attempt > settings.ship_reminder_max
        {
            return Ok(());
        }
        order.ship_reminders_sent = attempt;
        save(&mut tx, &mut order).await?;
        let data =
            serde_json::json!({ "order": order, "attempt": attempt, "max_attempts": settings.ship_reminder_max });
        publish(&mut tx, EventType::ShipReminder, &order, data).await?;
        if attempt < settings.ship_reminder_max {
            tx.schedule(
                Job::ShipReminder(ShipReminderJob { order_id: order.id.clone(), attempt: attempt + 1 }).message(
                    order.id.as_str(),
                    Timestamp::now().plus_millis(settings.ship_reminder_interval.as_millis()),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
