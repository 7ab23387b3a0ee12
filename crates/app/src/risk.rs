//! Risk control: the rules every payment request passes before the channel is called
//! (docs/operations.md), configured in `[risk]`.

use crate::config::RiskSettings;
use payq_domain::{Order, Timestamp};
use payq_store::{Store, StoreResult};

/// A rule that refused a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskRule {
    MaxAmount,
    Velocity,
    MerchantDailyVolume,
    BlockedCustomer,
}

impl RiskRule {
    /// The rule's name in `failure_reason: "risk:<rule>"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskRule::MaxAmount => "max_amount",
            RiskRule::Velocity => "velocity",
            RiskRule::MerchantDailyVolume => "merchant_daily_volume",
            RiskRule::BlockedCustomer => "blocked_customer",
        }
    }
}

/// Checks `order` against the rules, on committed data (the payment attempt being started
/// is itself counted in velocity and volume). `None` means it passes.
pub async fn check(rules: &RiskSettings, store: &Store, order: &Order) -> StoreResult<Option<RiskRule>> {
    if order.amount > rules.max_amount {
        return Ok(Some(RiskRule::MaxAmount));
    }
    if let Some(customer) = order.customer_id.as_deref() {
        if rules.blocked_customers.iter().any(|b| b == customer) {
            return Ok(Some(RiskRule::BlockedCustomer));
        }
        let minute_ago = Timestamp::now().plus_millis(-60_000);
        if store.payments_by_customer_since(customer, minute_ago).await? > i64::from(rules.velocity) {
            return Ok(Some(RiskRule::Velocity));
        }
    }
    if let Some(limit) = rules.merchant_daily_volume {
        let day_ago = Timestamp::now().plus_millis(-86_400_000);
        if store.merchant_volume_since(&order.merchant_id, order.currency, day_ago).await? > limit {
            return Ok(Some(RiskRule::MerchantDailyVolume));
        }
    }
    Ok(None)
}
