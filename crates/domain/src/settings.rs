//! Per-merchant settings that drive payq's timers, with the defaults of SPEC §3.

use crate::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// A merchant's timing settings. Missing fields take their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MerchantSettings {
    /// How long an unpaid order stays open.
    pub payment_timeout: HumanDuration,
    /// Delay after payment before the order's stock check.
    pub post_pay_check_delay: HumanDuration,
    /// How long after payment the merchant has to ship before a reminder.
    pub ship_deadline: HumanDuration,
    /// Time between ship reminders.
    pub ship_reminder_interval: HumanDuration,
    /// How many reminders at most.
    pub ship_reminder_max: u32,
    /// How long a refund waits for review before it executes.
    pub refund_review: HumanDuration,
}

impl Default for MerchantSettings {
    fn default() -> Self {
        const MIN: u64 = 60_000;
        const HOUR: u64 = 60 * MIN;
        MerchantSettings {
            payment_timeout: HumanDuration::from_millis(15 * MIN),
            post_pay_check_delay: HumanDuration::from_millis(5 * MIN),
            ship_deadline: HumanDuration::from_millis(48 * HOUR),
            ship_reminder_interval: HumanDuration::from_millis(12 * HOUR),
            ship_reminder_max: 3,
            refund_review: HumanDuration::from_millis(HOUR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_overrides() {
        let s: MerchantSettings = serde_json::from_str(r#"{"payment_timeout":"300ms"}"#).unwrap_or_default();
        assert_eq!(s.payment_timeout.as_millis(), 300);
        assert_eq!(s.refund_review.to_string(), "1h");
        assert!(serde_json::from_str::<MerchantSettings>(r#"{"bogus":1}"#).is_err());
    }
}
