//! Per-merchant settings that drive payq's timers, with their documented defaults (README, "Configuration").

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

/// Why merchant settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{field} must be between 100ms and 365d, got {value}")]
    DurationOutOfBounds { field: &'static str, value: HumanDuration },
    #[error("ship_reminder_max must be between 0 and 20, got {0}")]
    TooManyReminders(u32),
}

impl MerchantSettings {
    /// Most ship reminders a merchant may ask for.
    pub const MAX_SHIP_REMINDERS: u32 = 20;

    /// Checks the bounds: every duration within [`HumanDuration::check_bounds`], at most
    /// [`MerchantSettings::MAX_SHIP_REMINDERS`] reminders. Settings outside them would let one
    /// merchant flood the engine (a reminder every millisecond) or overflow due times.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (field, value) in [
            ("payment_timeout", self.payment_timeout),
            ("post_pay_check_delay", self.post_pay_check_delay),
            ("ship_deadline", self.ship_deadline),
            ("ship_reminder_interval", self.ship_reminder_interval),
            ("refund_review", self.refund_review),
        ] {
            value.check_bounds().map_err(|_| SettingsError::DurationOutOfBounds { field, value })?;
        }
        if self.ship_reminder_max > Self::MAX_SHIP_REMINDERS {
            return Err(SettingsError::TooManyReminders(self.ship_reminder_max));
        }
        Ok(())
    }
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

    #[test]
    fn bounds_accept_their_edges_and_refuse_one_past() {
        let with = |json: &str| serde_json::from_str::<MerchantSettings>(json).map(|s| s.validate()).ok();
        assert_eq!(with(r#"{"ship_deadline":"100ms"}"#), Some(Ok(())));
        assert_eq!(with(r#"{"ship_deadline":"365d"}"#), Some(Ok(())));
        assert!(matches!(with(r#"{"ship_reminder_interval":"99ms"}"#), Some(Err(_))));
        assert!(matches!(with(r#"{"refund_review":"366d"}"#), Some(Err(_))));
        assert_eq!(with(r#"{"ship_reminder_max":20}"#), Some(Ok(())));
        assert_eq!(with(r#"{"ship_reminder_max":21}"#), Some(Err(SettingsError::TooManyReminders(21))));
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(ms in 0u64..40_000_000_000, max in proptest::num::u32::ANY) {
            let s = MerchantSettings {
                ship_reminder_interval: HumanDuration::from_millis(ms),
                ship_reminder_max: max,
                ..MerchantSettings::default()
            };
            let ok = s.validate().is_ok();
            proptest::prop_assert_eq!(ok, (100..=365 * 86_400_000).contains(&ms) && max <= 20);
        }
    }
}
