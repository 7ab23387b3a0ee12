//! Why an order closed unpaid or was cancelled after payment: payq's own reasons, or the
//! merchant's words when it cancels (SPEC: `close_reason`).

use serde::{Serialize, Serializer};
use std::fmt;

/// Why an order closed or was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its deadline passed unpaid (`timeout`).
    Timeout,
    /// The merchant closed it before it was paid (`merchant_closed`).
    MerchantClosed,
    /// The post-payment check found an item out of stock (`out_of_stock`).
    OutOfStock,
    /// The merchant cancelled it after payment without saying why (`merchant_cancelled`).
    MerchantCancelled,
    /// The merchant cancelled it after payment, in its own words.
    Merchant(String),
}

impl CloseReason {
    /// payq's own reasons, by their names.
    const NAMED: [CloseReason; 4] =
        [CloseReason::Timeout, CloseReason::MerchantClosed, CloseReason::OutOfStock, CloseReason::MerchantCancelled];

    /// The reason as the API and the store spell it.
    pub fn as_str(&self) -> &str {
        match self {
            CloseReason::Timeout => "timeout",
            CloseReason::MerchantClosed => "merchant_closed",
            CloseReason::OutOfStock => "out_of_stock",
            CloseReason::MerchantCancelled => "merchant_cancelled",
            CloseReason::Merchant(words) => words,
        }
    }

    /// Reads a stored reason: one of payq's names, else the merchant's words.
    pub fn parse(s: &str) -> CloseReason {
        CloseReason::NAMED.into_iter().find(|r| r.as_str() == s).unwrap_or_else(|| CloseReason::Merchant(s.to_owned()))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CloseReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_as_themselves_and_other_words_as_the_merchants() {
        for r in CloseReason::NAMED {
            assert_eq!(CloseReason::parse(r.as_str()), r);
        }
        assert_eq!(CloseReason::parse("damaged in transit"), CloseReason::Merchant("damaged in transit".into()));
        assert_eq!(serde_json::to_value(CloseReason::OutOfStock).expect("json"), serde_json::json!("out_of_stock"));
    }
}
