//! Human durations as payq's settings and API write them: `"500ms"`, `"30s"`, `"15m"`,
//! `"48h"`, `"7d"`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a whole number and a unit (ms, s, m, h, d), e.g. \"500ms\" or \"15m\"")]
pub struct DurationError(String);

/// A duration that parses from and prints as a short human string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "15m")]
pub struct HumanDuration(Duration);

/// The longest accepted duration (10 years), so that due times never overflow.
const MAX_MILLIS: u64 = 10 * 366 * 24 * 3600 * 1000;

impl HumanDuration {
    /// Builds from milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// The std duration.
    pub fn as_std(self) -> Duration {
        self.0
    }

    /// Shortest duration a merchant or an order may set.
    pub const MIN_SETTING: HumanDuration = HumanDuration::from_millis(100);
    /// Longest duration a merchant or an order may set.
    pub const MAX_SETTING: HumanDuration = HumanDuration::from_millis(365 * 86_400_000);

    /// Whether this is a duration a merchant or an order may set: 100ms to 365d.
    pub fn check_bounds(self) -> Result<(), DurationError> {
        if (Self::MIN_SETTING..=Self::MAX_SETTING).contains(&self) {
            Ok(())
        } else {
            Err(DurationError(format!("{self} (allowed: 100ms to 365d)")))
        }
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    /// `humantime`'s syntax (`500ms`, `30s`, `15m`, `48h`, `2d`, also `1h 30m`), whole
    /// milliseconds (a finer remainder is dropped), at most about ten years.
    fn from_str(s: &str) -> Result<Self, DurationError> {
        let err = || DurationError(s.chars().take(40).collect());
        let parsed = humantime::parse_duration(s).map_err(|_| err())?;
        let ms = u64::try_from(parsed.as_millis()).ok().filter(|ms| *ms <= MAX_MILLIS).ok_or_else(err)?;
        Ok(HumanDuration(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = DurationError;
    fn try_from(s: String) -> Result<Self, DurationError> {
        s.parse()
    }
}

impl From<HumanDuration> for String {
    fn from(d: HumanDuration) -> String {
        d.to_string()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("500ms".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(500));
        assert_eq!("30s".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(30_000));
        assert_eq!("15m".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(900_000));
        assert_eq!("48h".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(172_800_000));
        assert_eq!("2d".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(172_800_000));
        assert_eq!("1h 30m".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(5_400_000));
        assert_eq!("1.5s".parse::<HumanDuration>().map(HumanDuration::as_millis), Ok(1_500));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "15", "m", "-1s", "11y", "99999999999999999999h", "3 parsecs"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prints_the_largest_whole_unit() {
        assert_eq!(HumanDuration::from_millis(900_000).to_string(), "15m");
        assert_eq!(HumanDuration::from_millis(1_500).to_string(), "1500ms");
        assert_eq!(HumanDuration::from_millis(0).to_string(), "0ms");
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in ".{0,24}") {
            let _ = text.parse::<HumanDuration>();
        }

        #[test]
        fn printed_durations_parse_back(ms in 0u64..=MAX_MILLIS) {
            let d = HumanDuration::from_millis(ms);
            proptest::prop_assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }
}
