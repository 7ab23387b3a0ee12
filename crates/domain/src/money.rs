//! Money: an integer amount in the currency's minor unit, always travelling with its
//! ISO 4217 currency. Arithmetic is checked; there is no floating point anywhere.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The currencies payq accepts, with their ISO 4217 minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Cny,
    Usd,
    Eur,
    Jpy,
    Gbp,
    Hkd,
}

impl Currency {
    /// Every supported currency.
    pub const ALL: [Currency; 6] =
        [Currency::Cny, Currency::Usd, Currency::Eur, Currency::Jpy, Currency::Gbp, Currency::Hkd];

    /// The ISO 4217 code, e.g. `"CNY"`.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Jpy => "JPY",
            Currency::Gbp => "GBP",
            Currency::Hkd => "HKD",
        }
    }

    /// Digits after the decimal point in the minor unit (JPY has none).
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Jpy => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::ALL.into_iter().find(|c| c.code() == s).ok_or_else(|| MoneyError::UnknownCurrency(s.to_owned()))
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// Why an amount or a sum of amounts was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a positive integer in minor units, got {0}")]
    NotPositive(i64),
    #[error("amount must be at most 10^12 minor units, got {0}")]
    TooLarge(i64),
    #[error("unknown currency {0:?}; supported: CNY, USD, EUR, JPY, GBP, HKD")]
    UnknownCurrency(String),
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflows")]
    Overflow,
    #[error("amount would become negative")]
    Negative,
}

/// A non-negative amount of money in minor units of `currency`.
///
/// Order and refund amounts are built with [`Money::new`], which refuses zero and negative
/// values; running totals (e.g. the amount refunded) start at [`Money::zero`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// The largest amount an order or refund may have: 10^12 minor units.
    pub const MAX_MINOR: i64 = 1_000_000_000_000;

    /// An amount of an order or refund: 1 ≤ `minor` ≤ [`Money::MAX_MINOR`].
    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive(minor));
        }
        if minor > Money::MAX_MINOR {
            return Err(MoneyError::TooLarge(minor));
        }
        Ok(Money { minor, currency })
    }

    /// Zero in `currency`: the start of a running total.
    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    /// Rebuilds a stored non-negative amount (e.g. a running total read from the store).
    pub fn from_stored(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money { minor, currency })
    }

    /// The amount in minor units.
    pub fn minor(self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// Whether the amount is zero.
    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    fn same_currency(self, rhs: Money) -> Result<(), MoneyError> {
        if self.currency != rhs.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, rhs.currency));
        }
        Ok(())
    }

    /// `self + rhs`, refusing mixed currencies and overflow.
    pub fn checked_add(self, rhs: Money) -> Result<Money, MoneyError> {
        self.same_currency(rhs)?;
        let minor = self.minor.checked_add(rhs.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, currency: self.currency })
    }

    /// `self - rhs`, refusing mixed currencies and results below zero.
    pub fn checked_sub(self, rhs: Money) -> Result<Money, MoneyError> {
        self.same_currency(rhs)?;
        let minor = self.minor.checked_sub(rhs.minor).ok_or(MoneyError::Overflow)?;
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        Ok(Money { minor, currency: self.currency })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        if exp == 0 {
            return write!(f, "{} {}", self.minor, self.currency);
        }
        let scale = 10i64.pow(exp);
        write!(f, "{}.{:0width$} {}", self.minor / scale, self.minor % scale, self.currency, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_zero_and_negative() {
        assert_eq!(Money::new(0, Currency::Cny), Err(MoneyError::NotPositive(0)));
        assert_eq!(Money::new(-5, Currency::Usd), Err(MoneyError::NotPositive(-5)));
    }

    #[test]
    fn parses_known_currencies_only() {
        assert_eq!("JPY".parse::<Currency>(), Ok(Currency::Jpy));
        assert!("XXX".parse::<Currency>().is_err());
        assert!("cny".parse::<Currency>().is_err());
        assert_eq!(Currency::Jpy.exponent(), 0);
        assert_eq!(Currency::Cny.exponent(), 2);
    }

    #[test]
    fn displays_in_major_units() {
        assert_eq!(Money::new(1999, Currency::Cny).map(|m| m.to_string()), Ok("19.99 CNY".into()));
        assert_eq!(Money::new(500, Currency::Jpy).map(|m| m.to_string()), Ok("500 JPY".into()));
    }

    #[test]
    fn refuses_mixed_currencies() {
        let a = Money::zero(Currency::Cny);
        let b = Money::zero(Currency::Usd);
        assert!(matches!(a.checked_add(b), Err(MoneyError::CurrencyMismatch(..))));
    }

    proptest! {
        #[test]
        fn add_is_checked(a in 0i64..=i64::MAX, b in 0i64..=i64::MAX) {
            let x = Money::from_stored(a, Currency::Eur).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let y = Money::from_stored(b, Currency::Eur).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match a.checked_add(b) {
                Some(sum) => prop_assert_eq!(x.checked_add(y).map(Money::minor), Ok(sum)),
                None => prop_assert_eq!(x.checked_add(y), Err(MoneyError::Overflow)),
            }
        }

        #[test]
        fn sub_never_goes_negative(a in 0i64..1_000_000_000, b in 0i64..1_000_000_000) {
            let x = Money::from_stored(a, Currency::Gbp).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let y = Money::from_stored(b, Currency::Gbp).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match x.checked_sub(y) {
                Ok(d) => { prop_assert!(a >= b); prop_assert_eq!(d.minor(), a - b); }
                Err(e) => { prop_assert!(a < b); prop_assert_eq!(e, MoneyError::Negative); }
            }
        }

        #[test]
        fn add_then_sub_roundtrips(a in 0i64..i64::MAX / 2, b in 0i64..i64::MAX / 2) {
            let x = Money::from_stored(a, Currency::Hkd).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let y = Money::from_stored(b, Currency::Hkd).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = x.checked_add(y).and_then(|s| s.checked_sub(y));
            prop_assert_eq!(back, Ok(x));
        }
    }
}
